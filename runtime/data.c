// data.c — token shards: validation and mmap on open, the seeded sample order, writing shards
// atomically, and the unigram entropy of a dataset.
//
// Sections: shard validation and mmap | dataset open/close | sequences and sample order |
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/rng.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shards are little-endian; this host is not"
#endif

#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * (int)sizeof(int32_t))

// ---------------------------------------------------------------------------------------------
// shard validation and mmap

static uint32_t shard_token_at(const data_shard *sh, uint64_t i) {
    const uint8_t *p = sh->map + SHARD_HEADER_BYTES + i * (uint64_t)sh->token_bytes;
    if (sh->token_bytes == 2) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

// Index of the first token >= vocab, or n_tokens when all are in range. The common case (all
// valid) is a branch-free max over the whole shard; only a failing shard is scanned twice.
static uint64_t shard_find_bad_token(const data_shard *sh, uint32_t vocab) {
    const uint8_t *base = sh->map + SHARD_HEADER_BYTES;
    uint32_t max = 0;
    if (sh->token_bytes == 2) {
        const uint16_t *t = (const uint16_t *)base; // header is 1024 bytes: aligned
        for (uint64_t i = 0; i < sh->n_tokens; i++)
            max = t[i] > max ? t[i] : max;
    } else {
        const uint32_t *t = (const uint32_t *)base;
        for (uint64_t i = 0; i < sh->n_tokens; i++)
            max = t[i] > max ? t[i] : max;
    }
    if (max < vocab) return sh->n_tokens;
    for (uint64_t i = 0; i < sh->n_tokens; i++)
        if (shard_token_at(sh, i) >= vocab) return i;
    return sh->n_tokens;
}

// Map one shard and check everything about it; on failure log one line and unmap.
static ts_status shard_open(data_shard *sh, const char *path, int vocab) {
    memset(sh, 0, sizeof *sh);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int err = errno;
        log_error("%s: cannot open shard: %s", path, strerror(err));
        return err == ENOENT || err == EACCES || err == EISDIR ? TS_ERR_INPUT : TS_ERR_SYSTEM;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        log_error("%s: cannot stat shard: %s", path, strerror(errno));
        close(fd);
        return TS_ERR_SYSTEM;
    }
    if (!S_ISREG(st.st_mode)) {
        log_error("%s: not a regular file; expected a token shard", path);
        close(fd);
        return TS_ERR_INPUT;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < (uint64_t)SHARD_HEADER_BYTES) {
        log_error("%s: file is %" PRIu64 " bytes, shorter than the %d-byte shard header", path,
                  size, SHARD_HEADER_BYTES);
        close(fd);
        return TS_ERR_INPUT;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int map_errno = errno;
    close(fd); // the mapping keeps the file
    if (map == MAP_FAILED) {
        log_error("%s: cannot mmap %" PRIu64 " bytes: %s", path, size, strerror(map_errno));
        return TS_ERR_SYSTEM;
    }
    sh->map = map;
    sh->map_bytes = size;

    int32_t header[3];
    memcpy(header, map, sizeof header);
    ts_status res = TS_ERR_INPUT;
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
    uint64_t bad = shard_find_bad_token(sh, (uint32_t)vocab);
    if (bad < sh->n_tokens) {
        log_error("%s: token %" PRIu32 " at byte offset %" PRIu64 " (token %" PRIu64
                  "), expected < vocab %d",
                  path, shard_token_at(sh, bad),
                  (uint64_t)SHARD_HEADER_BYTES + bad * (uint64_t)sh->token_bytes, bad, vocab);
        goto fail;
    }
    sh->path = ts_malloc(strlen(path) + 1, "shard path");
    strcpy(sh->path, path);
    return TS_OK;
fail:
    munmap((void *)sh->map, sh->map_bytes);
    memset(sh, 0, sizeof *sh);
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
        if (ds->shards[i].map) munmap((void *)ds->shards[i].map, ds->shards[i].map_bytes);
        free(ds->shards[i].path);
    }
    free(ds->shards);
    free(ds->seq_start);
    memset(ds, 0, sizeof *ds);
}

// ---------------------------------------------------------------------------------------------
// sequences and sample order

void dataset_sequence(const dataset *ds, uint64_t i, int32_t *out) {
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
    for (int t = 0; t <= ds->T; t++)
        out[t] = (int32_t)shard_token_at(sh, first + (uint64_t)t);
}

void dataset_sample(const dataset *ds, uint64_t seed, uint64_t g, int32_t *out) {
    uint64_t epoch = g / ds->n_seq;
    dataset_sequence(ds, data_permute(g % ds->n_seq, ds->n_seq, seed, epoch), out);
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

double dataset_unigram_entropy(const dataset *ds, int vocab) {
    uint64_t *count = ts_calloc((size_t)vocab, sizeof(uint64_t), "unigram counts");
    uint64_t total = 0;
    for (int s = 0; s < ds->n_shards; s++) {
        const data_shard *sh = &ds->shards[s];
        for (uint64_t i = 0; i < sh->n_tokens; i++) {
            uint32_t t = shard_token_at(sh, i);
            TS_ASSERT(t < (uint32_t)vocab); // checked on open; a smaller vocab here is a bug
            count[t]++;
        }
        total += sh->n_tokens;
    }
    double h = 0.0;
    for (int v = 0; v < vocab; v++) {
        if (count[v] == 0) continue;
        double p = (double)count[v] / (double)total;
        h -= p * log(p);
    }
    free(count);
    return h;
}
