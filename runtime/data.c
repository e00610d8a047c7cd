// data.c — token shards: validation on open, reading sequences, the seeded sample order, writing
// shards atomically, and the unigram entropy of a dataset.
//
// Shards are read with pread, not mapped: a shard truncated while a run uses it then gives an
// error line naming it (and the rank's status file) instead of SIGBUS.
//
// Sections: shard reading and validation | dataset open/close | sequences and sample order |
// permutation | shard writing | statistics.
//
// Shards are read as they lie on disk: llm.c writes host-order (little-endian) integers, and so do
// we, so a big-endian host would need byte swaps that nobody has asked for yet.
#include "runtime/data.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/rng.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shards are little-endian; this host is not"
#endif

#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * (int)sizeof(int32_t))

// ---------------------------------------------------------------------------------------------
// shard reading and validation

static uint32_t token_in(const uint8_t *p, int token_bytes, size_t i) {
    if (token_bytes == 2) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

// Read n tokens of sh starting at token `first` into buf (as stored: token_bytes each). A shard
// that ends early was truncated after it was opened (its size was checked then): one error line
// naming the shard, the offset and both sizes.
static ts_status shard_read(const data_shard *sh, uint64_t first, size_t n, void *buf) {
    uint64_t offset = (uint64_t)SHARD_HEADER_BYTES + first * (uint64_t)sh->token_bytes;
    size_t want = n * (size_t)sh->token_bytes, done = 0;
    while (done < want) {
        ssize_t got = pread(sh->fd, (char *)buf + done, want - done, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            log_error("%s: reading %zu bytes at byte offset %" PRIu64 " failed: %s", sh->path,
                      want - done, offset + done, strerror(errno));
            return TS_ERR_SYSTEM;
        }
        if (got == 0) {
            struct stat st;
            long long now = fstat(sh->fd, &st) == 0 ? (long long)st.st_size : -1;
            log_error("%s: the file ends at byte %lld, expected %" PRIu64 " bytes: the shard was "
                      "truncated while tessera was using it (reading byte offset %" PRIu64 ")",
                      sh->path, now, sh->file_bytes, offset + done);
            return TS_ERR_INPUT;
        }
        done += (size_t)got;
    }
    return TS_OK;
}

// Call fn on every token of sh, in blocks (the shard is read, never mapped: a shard truncated
// under a mapping would kill the process with SIGBUS instead of an error line).
typedef ts_status (*shard_block_fn)(const data_shard *sh, const uint8_t *tokens, size_t n,
                                    uint64_t first, void *ctx);

static ts_status shard_each_block(const data_shard *sh, shard_block_fn fn, void *ctx) {
    enum { BLOCK_BYTES = 1 << 20 };
    size_t per = BLOCK_BYTES / (size_t)sh->token_bytes;
    uint8_t *buf = ts_malloc(BLOCK_BYTES, "shard block");
    ts_status st = TS_OK;
    for (uint64_t first = 0; first < sh->n_tokens && st == TS_OK; first += per) {
        size_t n = sh->n_tokens - first < per ? (size_t)(sh->n_tokens - first) : per;
        st = shard_read(sh, first, n, buf);
        if (st == TS_OK) st = fn(sh, buf, n, first, ctx);
    }
    free(buf);
    return st;
}

// every token < vocab. The common case (all valid) is a branch-free max over the block; only a
// failing block is scanned again for the first bad token.
static ts_status check_block(const data_shard *sh, const uint8_t *tokens, size_t n, uint64_t first,
                             void *ctx) {
    uint32_t vocab = *(const uint32_t *)ctx, max = 0;
    if (sh->token_bytes == 2) {
        const uint16_t *t = (const uint16_t *)tokens; // a malloc'ed block: aligned
        for (size_t i = 0; i < n; i++)
            max = t[i] > max ? t[i] : max;
    } else {
        const uint32_t *t = (const uint32_t *)tokens;
        for (size_t i = 0; i < n; i++)
            max = t[i] > max ? t[i] : max;
    }
    if (max < vocab) return TS_OK;
    size_t i = 0;
    while (token_in(tokens, sh->token_bytes, i) < vocab)
        i++;
    uint64_t index = first + i;
    log_error("%s: token %" PRIu32 " at byte offset %" PRIu64 " (token %" PRIu64
              "), expected < vocab %" PRIu32,
              sh->path, token_in(tokens, sh->token_bytes, i),
              (uint64_t)SHARD_HEADER_BYTES + index * (uint64_t)sh->token_bytes, index, vocab);
    return TS_ERR_INPUT;
}

// Open one shard and check everything about it; on failure log one line and close it.
static ts_status shard_open(data_shard *sh, const char *path, int vocab) {
    memset(sh, 0, sizeof *sh);
    sh->fd = -1;
    // a glob can match a FIFO or a device node: refused without being opened (fs_open_regular)
    TS_CHECK(fs_open_regular(path, "token shard", &sh->fd));
    sh->path = ts_malloc(strlen(path) + 1, "shard path");
    strcpy(sh->path, path);
    ts_status res = TS_ERR_INPUT;
    struct stat st;
    if (fstat(sh->fd, &st) != 0) {
        log_error("%s: cannot stat shard: %s", path, strerror(errno));
        res = TS_ERR_SYSTEM;
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < (uint64_t)SHARD_HEADER_BYTES) {
        log_error("%s: file is %" PRIu64 " bytes, shorter than the %d-byte shard header", path,
                  size, SHARD_HEADER_BYTES);
        goto fail;
    }
    sh->file_bytes = size;
    int32_t header[3];
    ssize_t got = pread(sh->fd, header, sizeof header, 0);
    if (got != (ssize_t)sizeof header) {
        log_error("%s: cannot read the shard header: %s", path,
                  got < 0 ? strerror(errno) : "file ends early");
        goto fail;
    }
    if (header[0] == SHARD_MAGIC_U16) {
        sh->token_bytes = 2;
        if (header[1] != SHARD_VERSION_U16) {
            log_error("%s: version %d at byte offset 4, expected %d for magic %d (uint16 tokens)",
                      path, header[1], SHARD_VERSION_U16, SHARD_MAGIC_U16);
            goto fail;
        }
    } else if (header[0] == SHARD_MAGIC_U32) {
        sh->token_bytes = 4;
        if (header[1] != SHARD_VERSION_U32) {
            log_error("%s: version %d at byte offset 4, expected %d for magic %d (uint32 tokens)",
                      path, header[1], SHARD_VERSION_U32, SHARD_MAGIC_U32);
            goto fail;
        }
    } else {
        log_error("%s: magic %d at byte offset 0, expected %d (uint16 tokens) or %d (uint32 "
                  "tokens); not a token shard",
                  path, header[0], SHARD_MAGIC_U16, SHARD_MAGIC_U32);
        goto fail;
    }
    if (header[2] < 0) {
        log_error("%s: token count %d at byte offset 8, expected a count >= 0", path, header[2]);
        goto fail;
    }
    sh->n_tokens = (uint64_t)header[2];
    uint64_t expect = (uint64_t)SHARD_HEADER_BYTES + sh->n_tokens * (uint64_t)sh->token_bytes;
    if (size != expect) {
        log_error("%s: file is %" PRIu64 " bytes, expected %" PRIu64 " (%d-byte header + %" PRIu64
                  " tokens x %d bytes, token count at byte offset 8)%s",
                  path, size, expect, SHARD_HEADER_BYTES, sh->n_tokens, sh->token_bytes,
                  size < expect ? "; truncated?" : "");
        goto fail;
    }
    uint32_t v = (uint32_t)vocab;
    if ((res = shard_each_block(sh, check_block, &v)) != TS_OK) goto fail;
    return TS_OK;
fail:
    close(sh->fd);
    free(sh->path);
    memset(sh, 0, sizeof *sh);
    sh->fd = -1;
    return res;
}

// ---------------------------------------------------------------------------------------------
// dataset open/close

// the directory glob could not read, and why (for the error line)
static char g_glob_path[512];
static int g_glob_errno;

static int data_glob_error(const char *path, int err) {
    snprintf(g_glob_path, sizeof g_glob_path, "%s", path);
    g_glob_errno = err;
    return 1; // stop: GLOB_ABORTED
}

ts_status dataset_open(dataset *ds, const char *pattern, int T, int vocab) {
    memset(ds, 0, sizeof *ds);
    TS_ASSERT(T >= 1 && vocab >= 1);
    glob_t g;
    g_glob_errno = 0;
    int rc = glob(pattern, GLOB_ERR, data_glob_error, &g); // sorted by name
    if (rc == GLOB_NOMATCH) {
        log_error("%s: no file matches this pattern; expected token shards (make them with "
                  "`tessera prepare`, or point [data] train/val at yours)",
                  pattern);
        return TS_ERR_INPUT;
    }
    if (rc == GLOB_ABORTED && g_glob_errno == ENOENT) {
        log_error("%s: no file matches this pattern: directory %s does not exist; expected token "
                  "shards (make them with `tessera prepare`, or point [data] train/val at yours)",
                  pattern, g_glob_path);
        return TS_ERR_INPUT;
    }
    if (rc != 0) {
        log_error("%s: cannot list files for this pattern (%s%s%s)", pattern,
                  rc == GLOB_NOSPACE ? "out of memory" : g_glob_path,
                  rc == GLOB_NOSPACE ? "" : ": ",
                  rc == GLOB_NOSPACE ? "" : strerror(g_glob_errno ? g_glob_errno : EIO));
        return rc == GLOB_NOSPACE ? TS_ERR_SYSTEM : TS_ERR_INPUT;
    }

    ts_status res = TS_OK;
    ds->T = T;
    ds->vocab = vocab;
    ds->shards = ts_calloc(g.gl_pathc, sizeof(data_shard), "shards");
    ds->seq_start = ts_calloc(g.gl_pathc + 1, sizeof(uint64_t), "shard sequence offsets");
    uint64_t n_tokens = 0, largest = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        TS_CHECK_GOTO(shard_open(&ds->shards[i], g.gl_pathv[i], vocab), res, fail);
        data_shard *sh = &ds->shards[i];
        ds->n_shards = (int)i + 1;
        // windows of T+1 tokens at stride T: need 1 + k*T <= n_tokens
        sh->n_seq = sh->n_tokens > (uint64_t)T ? (sh->n_tokens - 1) / (uint64_t)T : 0;
        if (sh->n_seq == 0)
            log_info("%s: %" PRIu64 " tokens, fewer than one sequence of T+1 = %d; it adds no "
                     "sequences",
                     sh->path, sh->n_tokens, T + 1);
        ds->seq_start[i + 1] = ds->seq_start[i] + sh->n_seq;
        n_tokens += sh->n_tokens;
        largest = sh->n_tokens > largest ? sh->n_tokens : largest;
    }
    ds->n_seq = ds->seq_start[ds->n_shards];
    if (ds->n_seq == 0) {
        log_error("%s: %" PRIu64 " tokens in %d shard(s), the largest holds %" PRIu64
                  "; expected at least one shard with T+1 = %d tokens (one sequence)",
                  pattern, n_tokens, ds->n_shards, largest, T + 1);
        res = TS_ERR_INPUT;
        goto fail;
    }
    globfree(&g);
    return TS_OK;
fail:
    globfree(&g);
    dataset_close(ds);
    return res;
}

void dataset_close(dataset *ds) {
    for (int i = 0; i < ds->n_shards; i++) {
        if (ds->shards[i].fd >= 0) close(ds->shards[i].fd);
        free(ds->shards[i].path);
    }
    free(ds->shards);
    free(ds->seq_start);
    memset(ds, 0, sizeof *ds);
}

// ---------------------------------------------------------------------------------------------
// sequences and sample order

ts_status dataset_sequence(const dataset *ds, uint64_t i, int32_t *out) {
    TS_ASSERT(i < ds->n_seq);
    // the last shard k with seq_start[k] <= i: an empty shard shares its start with the next
    // one, so the last such k is the shard that holds sequence i
    int lo = 0, hi = ds->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ds->seq_start[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    const data_shard *sh = &ds->shards[lo];
    uint64_t first = (i - ds->seq_start[lo]) * (uint64_t)ds->T;
    // the T+1 tokens as stored go to the front of out, then widen in place from the last one
    // (token t's stored bytes lie at or below out[t], so none is overwritten before it is read)
    TS_CHECK(shard_read(sh, first, (size_t)ds->T + 1, out));
    for (int t = ds->T; t >= 0; t--) {
        uint32_t v = token_in((const uint8_t *)out, sh->token_bytes, (size_t)t);
        // checked when the shard was opened: a token out of range now means the file changed
        if (v >= (uint32_t)ds->vocab) {
            log_error("%s: token %" PRIu32 " at byte offset %" PRIu64 ", expected < vocab %d: the "
                      "shard changed while tessera was using it",
                      sh->path, v,
                      (uint64_t)SHARD_HEADER_BYTES + (first + (uint64_t)t) * sh->token_bytes,
                      ds->vocab);
            return TS_ERR_INPUT;
        }
        out[t] = (int32_t)v;
    }
    return TS_OK;
}

ts_status dataset_sample(const dataset *ds, uint64_t seed, uint64_t g, int32_t *out) {
    uint64_t epoch = g / ds->n_seq;
    return dataset_sequence(ds, data_permute(g % ds->n_seq, ds->n_seq, seed, epoch), out);
}

// ---------------------------------------------------------------------------------------------
// permutation: a balanced Feistel network on 2h bits (4^h >= n) with cycle walking. Each round
// is a bijection whatever the round function, so the network permutes [0, 4^h); stepping again
// while the value is >= n restricts it to a bijection on [0, n) (the walk stays on i's cycle,
// which reaches back below n). 4^h < 4n, so a walk averages fewer than 4 steps. No memory.

#define PERMUTE_ROUNDS 6

uint64_t data_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch) {
    TS_ASSERT(i < n);
    if (n == 1) return 0;
    int bits = 64 - __builtin_clzll(n - 1); // 2^bits >= n
    int h = (bits + 1) / 2;
    uint64_t mask = (1ULL << h) - 1;
    uint64_t key =
        rng_mix64(rng_mix64(seed ^ 0x5eed5eed5eed5eedULL) ^ (epoch + 0x9e3779b97f4a7c15ULL));
    uint64_t keys[PERMUTE_ROUNDS];
    for (int r = 0; r < PERMUTE_ROUNDS; r++)
        keys[r] = rng_mix64(key + (uint64_t)r * 0x632be59bd9b4e019ULL);
    uint64_t x = i;
    do {
        uint64_t left = x >> h, right = x & mask;
        for (int r = 0; r < PERMUTE_ROUNDS; r++) {
            uint64_t next = left ^ (rng_mix64(right ^ keys[r]) & mask);
            left = right;
            right = next;
        }
        x = (left << h) | right;
    } while (x >= n);
    return x;
}

// ---------------------------------------------------------------------------------------------
// shard writing: one durable write (base/fs.h) through <path>.tmp

typedef struct {
    const int32_t *header;
    const uint32_t *tokens;
    size_t n;
    int narrow; // uint16 tokens
} shard_content;

static ts_status shard_produce(int fd, const char *tmp, void *ctx) {
    const shard_content *c = ctx;
    TS_CHECK(fs_write_all(fd, c->header, SHARD_HEADER_INTS * sizeof(int32_t), tmp));
    if (!c->narrow) return fs_write_all(fd, c->tokens, c->n * sizeof(uint32_t), tmp);
    enum { CHUNK = 1 << 15 };
    uint16_t buf[CHUNK];
    for (size_t i = 0; i < c->n; i += CHUNK) {
        size_t m = c->n - i < CHUNK ? c->n - i : CHUNK;
        for (size_t j = 0; j < m; j++)
            buf[j] = (uint16_t)c->tokens[i + j];
        TS_CHECK(fs_write_all(fd, buf, m * sizeof(uint16_t), tmp));
    }
    return TS_OK;
}

ts_status shard_write(const char *path, const uint32_t *tokens, size_t n, int vocab) {
    TS_ASSERT(vocab >= 1);
    if (n > INT32_MAX) {
        log_error("%s: %zu tokens, expected at most %d per shard (the header count is int32)", path,
                  n, INT32_MAX);
        return TS_ERR_INPUT;
    }
    for (size_t i = 0; i < n; i++)
        TS_ASSERT(tokens[i] < (uint32_t)vocab);
    int narrow = vocab <= 65536;
    int32_t header[SHARD_HEADER_INTS] = {0};
    header[0] = narrow ? SHARD_MAGIC_U16 : SHARD_MAGIC_U32;
    header[1] = narrow ? SHARD_VERSION_U16 : SHARD_VERSION_U32;
    header[2] = (int32_t)n;

    shard_content content = {header, tokens, n, narrow};
    return fs_atomic_write_with(path, NULL, shard_produce, &content);
}

// ---------------------------------------------------------------------------------------------
// statistics

typedef struct {
    uint64_t *count;
    uint32_t vocab;
} unigram_counts;

static ts_status count_block(const data_shard *sh, const uint8_t *tokens, size_t n, uint64_t first,
                             void *ctx) {
    unigram_counts *c = ctx;
    for (size_t i = 0; i < n; i++) {
        uint32_t t = token_in(tokens, sh->token_bytes, i);
        if (t >= c->vocab) { // checked on open: the file changed since
            log_error("%s: token %" PRIu32 " at byte offset %" PRIu64 ", expected < vocab %" PRIu32
                      ": the shard changed while tessera was using it",
                      sh->path, t,
                      (uint64_t)SHARD_HEADER_BYTES + (first + i) * (uint64_t)sh->token_bytes,
                      c->vocab);
            return TS_ERR_INPUT;
        }
        c->count[t]++;
    }
    return TS_OK;
}

ts_status dataset_unigram_entropy(const dataset *ds, int vocab, double *out) {
    TS_ASSERT(vocab >= ds->vocab); // a smaller vocabulary than the one checked on open is a bug
    unigram_counts c = {ts_calloc((size_t)vocab, sizeof(uint64_t), "unigram counts"),
                        (uint32_t)vocab};
    uint64_t total = 0;
    ts_status st = TS_OK;
    for (int s = 0; s < ds->n_shards && st == TS_OK; s++) {
        st = shard_each_block(&ds->shards[s], count_block, &c);
        total += ds->shards[s].n_tokens;
    }
    double h = 0.0;
    for (int v = 0; v < vocab && st == TS_OK; v++) {
        if (c.count[v] == 0) continue;
        double p = (double)c.count[v] / (double)total;
        h -= p * log(p);
    }
    free(c.count);
    *out = h;
    return st;
}
