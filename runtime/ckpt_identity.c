// ckpt_identity.c — the run identity checkpoints carry: which config keys make it, its hash, the
// lineage id, the IDENTITY file (see ckpt_identity.h).
#define _GNU_SOURCE // open_memstream
#include "runtime/ckpt_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/fs.h"

#define IDENTITY_HEADER    "tessera-identity 1"
#define IDENTITY_MAX_BYTES 256 // the file is four short lines

// ---------------------------------------------------------------------------------------------
// which keys make the identity

// Keys a resume may change: where the run directory is and how the run starts (run.name,
// out_dir, resume, overwrite), how it computes (threads, backend, precision, micro_batch), how
// long it trains (train.steps), what it only reports or audits (data.val, data.tokenizer,
// data.log_samples), and whole sections about evaluation, logging, communication, checkpoints and
// the split of each step's batch over ranks (balance: who computes a sample, never which samples
// a step trains, except that `drop` delays a late rank's by a step). Everything else decides the
// trained weights: seed, model, training data, optimizer and schedule, global batch.
static const char *const resumable_keys[] = {
    "run.name",       "run.out_dir",      "run.resume",    "run.overwrite",
    "run.threads",    "run.backend",      "run.precision", "data.val",
    "data.tokenizer", "data.log_samples", "train.steps",   "train.micro_batch",
};
static const char *const resumable_sections[] = {"eval", "log", "comm", "ckpt", "balance"};

int ckpt_identity_resumable(const char *section, const char *key) {
    for (size_t i = 0; i < sizeof resumable_sections / sizeof *resumable_sections; i++)
        if (strcmp(section, resumable_sections[i]) == 0) return 1;
    size_t ls = strlen(section);
    for (size_t i = 0; i < sizeof resumable_keys / sizeof *resumable_keys; i++) {
        const char *k = resumable_keys[i];
        if (strncmp(k, section, ls) == 0 && k[ls] == '.' && strcmp(k + ls + 1, key) == 0) return 1;
    }
    return 0;
}

// The identity keys of cfg as lines "section.key = value" in key-table order (config_write's
// text, filtered): malloc'ed, NUL-terminated.
static char *identity_lines(const tessera_config *cfg) {
    char *text = NULL, *out = NULL;
    size_t text_len = 0, out_len = 0;
    FILE *mem = open_memstream(&text, &text_len);
    FILE *res = open_memstream(&out, &out_len);
    if (!mem || !res) ts_panic(__FILE__, __LINE__, "open_memstream failed");
    config_write(cfg, mem);
    fclose(mem);
    char section[64] = "";
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char key[64];
        int n = 0;
        if (line[0] == '[' && sscanf(line, "[%63[^]]]%n", section, &n) == 1) continue;
        if (line[0] == '#' || !line[0] || sscanf(line, "%63s = %n", key, &n) != 1 || n == 0)
            continue;
        if (!ckpt_identity_resumable(section, key))
            fprintf(res, "%s.%s = %s\n", section, key, line + n);
    }
    free(text);
    fclose(res);
    return out;
}

// walk two identity texts (same keys, same order) line by line; calls visit for each pair
typedef void (*identity_visit_fn)(const char *a, const char *b, size_t len_a, size_t len_b,
                                  void *ctx);
static void identity_pairs(const char *a, const char *b, identity_visit_fn visit, void *ctx) {
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        visit(a, b, la, lb, ctx);
        a += la + (ea != NULL);
        b += lb + (eb != NULL);
    }
}

typedef struct {
    FILE *out; // the lines that differ from the default
} hash_ctx;

static void hash_visit(const char *line, const char *def, size_t len, size_t len_def, void *ctx) {
    hash_ctx *h = ctx;
    if (len != len_def || memcmp(line, def, len) != 0) fprintf(h->out, "%.*s\n", (int)len, line);
}

void ckpt_identity_of(const tessera_config *cfg, uint64_t lineage, ckpt_identity *id) {
    tessera_config def;
    config_defaults(&def);
    char *lines = identity_lines(cfg), *def_lines = identity_lines(&def);
    char *text = NULL;
    size_t text_len = 0;
    hash_ctx h = {open_memstream(&text, &text_len)};
    if (!h.out) ts_panic(__FILE__, __LINE__, "open_memstream failed");
    identity_pairs(lines, def_lines, hash_visit, &h);
    fclose(h.out);
    id->lineage = lineage;
    id->seed = cfg->run.seed;
    id->config_hash = XXH64(text, text_len, 0);
    free(text);
    free(lines);
    free(def_lines);
}

uint64_t ckpt_identity_new_lineage(uint64_t salt) {
    struct timespec rt, mono;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    uint64_t words[6] = {(uint64_t)rt.tv_sec,    (uint64_t)rt.tv_nsec, (uint64_t)mono.tv_sec,
                         (uint64_t)mono.tv_nsec, (uint64_t)getpid(),   salt};
    uint64_t id = XXH64(words, sizeof words, 0);
    return id ? id : 1; // 0 means "written before identities"
}

int ckpt_identity_same_run(const ckpt_identity *a, const ckpt_identity *b) {
    return a->seed == b->seed && a->config_hash == b->config_hash;
}

typedef struct {
    int count;
    char *out;
    size_t out_len;
} diff_ctx;

static void diff_visit(const char *a, const char *b, size_t la, size_t lb, void *ctx) {
    diff_ctx *d = ctx;
    if (la == lb && memcmp(a, b, la) == 0) return;
    if (d->count++ > 0 || !d->out_len) return;
    // "section.key = value": name the key once, then both values
    const char *dot = memchr(a, '.', la), *eq = strstr(a, " = ");
    const char *eq_b = strstr(b, " = ");
    if (!dot || !eq || !eq_b || eq + 3 > a + la || eq_b + 3 > b + lb || dot > eq) {
        snprintf(d->out, d->out_len, "%.*s in the checkpoint, %.*s here", (int)la, a, (int)lb, b);
        return;
    }
    snprintf(d->out, d->out_len, "[%.*s] %.*s = %.*s in the checkpoint, %.*s here", (int)(dot - a),
             a, (int)(eq - dot - 1), dot + 1, (int)(la - (size_t)(eq + 3 - a)), eq + 3,
             (int)(lb - (size_t)(eq_b + 3 - b)), eq_b + 3);
}

int ckpt_identity_diff(const tessera_config *theirs, const tessera_config *ours, char *out,
                       size_t out_len) {
    if (out_len) out[0] = '\0';
    char *a = identity_lines(theirs), *b = identity_lines(ours);
    diff_ctx d = {0, out, out_len};
    identity_pairs(a, b, diff_visit, &d);
    free(a);
    free(b);
    return d.count;
}

// ---------------------------------------------------------------------------------------------
// the IDENTITY file

// the file's exact text for id
static int identity_text(const ckpt_identity *id, char *text, size_t len) {
    return snprintf(text, len,
                    IDENTITY_HEADER "\nlineage %016" PRIx64 "\nseed %" PRId64 "\nconfig %016" PRIx64
                                    "\n",
                    id->lineage, id->seed, id->config_hash);
}

ts_status ckpt_identity_write(const char *dir, const ckpt_identity *id) {
    char text[IDENTITY_MAX_BYTES], path[4200];
    int n = identity_text(id, text, sizeof text);
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_IDENTITY_FILE);
    return fs_write_new_file(path, text, (size_t)n);
}

ts_status ckpt_identity_read(const char *dir, ckpt_identity *id, int *present, char *why,
                             size_t why_len) {
    memset(id, 0, sizeof *id);
    *present = 0;
    char path[4200], text[IDENTITY_MAX_BYTES + 1];
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_IDENTITY_FILE);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return TS_OK; // written before identities: lineage 0
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, why_len, "%s: %s", CKPT_IDENTITY_FILE,
                 fd < 0 && errno != ELOOP ? strerror(errno) : "not a regular file");
        if (fd >= 0) close(fd);
        return TS_ERR_INPUT;
    }
    ssize_t n = read(fd, text, IDENTITY_MAX_BYTES + 1);
    close(fd);
    if (n < 0 || n > IDENTITY_MAX_BYTES) {
        snprintf(why, why_len, "%s: %s", CKPT_IDENTITY_FILE,
                 n < 0 ? strerror(errno) : "longer than an identity file");
        return TS_ERR_INPUT;
    }
    text[n] = '\0';
    // the fields, then the exact text they make: anything else (other spacing, upper-case
    // digits, a missing newline, more lines) is not an identity file
    unsigned long long lineage = 0, config = 0;
    long long seed = -1;
    char canon[IDENTITY_MAX_BYTES];
    int ok = sscanf(text, IDENTITY_HEADER "\nlineage %16llx\nseed %lld\nconfig %16llx", &lineage,
                    &seed, &config) == 3 &&
             seed >= 0;
    if (ok) {
        *id = (ckpt_identity){(uint64_t)lineage, (int64_t)seed, (uint64_t)config};
        ok =
            identity_text(id, canon, sizeof canon) == (int)n && memcmp(canon, text, (size_t)n) == 0;
    }
    if (!ok) {
        memset(id, 0, sizeof *id);
        snprintf(why, why_len,
                 "%s: not a tessera identity file (expected \"%s\", then lineage, seed and config "
                 "lines)",
                 CKPT_IDENTITY_FILE, IDENTITY_HEADER);
        return TS_ERR_INPUT;
    }
    *present = 1;
    return TS_OK;
}
