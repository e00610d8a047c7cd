// prepare.c — what `tessera prepare` does: text files -> byte-level token shards (vocab 256) +
// stats.txt.
//
// Sections: input files | documents | shard sinks | stats.txt and the up-to-date check |
// data_prepare (the command line is app/cmd_prepare.c).
//
// Text is cut into documents: in a file with lines holding only "%" (fortune files) the text
// between such lines is a document; in other files a paragraph (lines between blank lines) is.
// Each document is written as its text (leading and trailing blank lines dropped, a final newline
// added when missing) followed by one empty line, which replaces the "%" separators. Document d
// (0-based over all files in order) is held out for validation when floor((d+1) f) > floor(d f):
// with f = 0.05 every 20th document, spread evenly through the corpus so the validation text has
// the training text's distribution.
#include "runtime/prepare.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "runtime/data.h"

#define PREPARE_VOCAB  256
#define PREPARE_FORMAT "tessera-prepare-1" // bump when the text -> token mapping changes

// ---------------------------------------------------------------------------------------------
// input files: named files, every regular file directly inside a named directory (not symlinks,
// not hidden files, not subdirectories), or the matches of a glob

typedef struct {
    char *path;
    uint64_t size;
    int64_t mtime_ns;
    int from_dir; // binary files found in a directory are skipped; named ones are an error
} input_file;

typedef struct {
    input_file *f;
    int n, cap;
} input_list;

static void inputs_add(input_list *l, const char *path, const struct stat *st, int from_dir) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        input_file *g = ts_malloc((size_t)l->cap * sizeof *g, "input list");
        if (l->n) memcpy(g, l->f, (size_t)l->n * sizeof *g);
        free(l->f);
        l->f = g;
    }
    input_file *f = &l->f[l->n++];
    f->path = ts_malloc(strlen(path) + 1, "input path");
    strcpy(f->path, path);
    f->size = (uint64_t)st->st_size;
    f->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    f->from_dir = from_dir;
}

static void inputs_free(input_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->f[i].path);
    free(l->f);
    memset(l, 0, sizeof *l);
}

static int not_hidden(const struct dirent *e) { return e->d_name[0] != '.'; }

static ts_status inputs_add_dir(input_list *l, const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, not_hidden, alphasort); // by name (C locale: byte order)
    if (n < 0) {
        log_error("%s: cannot read directory: %s", dir, strerror(errno));
        return TS_ERR_INPUT;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) inputs_add(l, path, &st, 1);
        free(names[i]);
    }
    free(names);
    return TS_OK;
}

static ts_status inputs_add_arg(input_list *l, const char *arg) {
    struct stat st;
    if (stat(arg, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return inputs_add_dir(l, arg);
        if (S_ISREG(st.st_mode)) {
            inputs_add(l, arg, &st, 0);
            return TS_OK;
        }
        log_error("%s: not a regular file or directory; expected text", arg);
        return TS_ERR_INPUT;
    }
    glob_t g;
    if (strpbrk(arg, "*?[") && glob(arg, 0, NULL, &g) == 0) {
        ts_status res = TS_OK;
        for (size_t i = 0; i < g.gl_pathc && res == TS_OK; i++)
            res = inputs_add_arg(l, g.gl_pathv[i]);
        globfree(&g);
        return res;
    }
    log_error("%s: no such file or directory; expected a text file, a directory or a glob", arg);
    return TS_ERR_INPUT;
}

static ts_status file_read_all(const char *path, char **buf, size_t *len) {
    int fd; // checked regular when listed; checked again here, where it is opened
    TS_CHECK(fs_open_regular(path, "input text", &fd));
    FILE *f = fdopen(fd, "rb");
    struct stat st;
    if (!f || fstat(fd, &st) != 0) {
        log_error("%s: cannot open: %s", path, strerror(errno));
        if (f)
            fclose(f);
        else
            close(fd);
        return TS_ERR_INPUT;
    }
    *buf = ts_malloc((size_t)st.st_size, "input text");
    *len = fread(*buf, 1, (size_t)st.st_size, f); // pass 2 recounts: a change shows
    int err = ferror(f);
    fclose(f);
    if (err) {
        log_error("%s: read error", path);
        free(*buf);
        return TS_ERR_SYSTEM;
    }
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// documents

typedef void (*doc_fn)(void *ctx, const char *text, size_t len);

static int line_is_blank(const char *p, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') return 0;
    return 1;
}

static int line_is_percent(const char *p, size_t len) { // "%", "%\n" or "%\r\n"
    return len >= 1 && p[0] == '%' &&
           (len == 1 || (len == 2 && p[1] == '\n') || (len == 3 && p[1] == '\r' && p[2] == '\n'));
}

// Call fn for each document of buf (see the top of the file): spans of whole lines from the
// first to the last non-blank line between separators.
static void text_split_documents(const char *buf, size_t n, doc_fn fn, void *ctx) {
    int fortune = 0;
    for (size_t ls = 0; ls < n && !fortune;) {
        const char *nl = memchr(buf + ls, '\n', n - ls);
        size_t le = nl ? (size_t)(nl - buf) + 1 : n;
        fortune = line_is_percent(buf + ls, le - ls);
        ls = le;
    }
    size_t doc_start = 0, doc_end = 0; // doc_end == 0: no document open
    for (size_t ls = 0; ls < n;) {
        const char *nl = memchr(buf + ls, '\n', n - ls);
        size_t le = nl ? (size_t)(nl - buf) + 1 : n;
        int blank = line_is_blank(buf + ls, le - ls);
        if (fortune ? line_is_percent(buf + ls, le - ls) : blank) {
            if (doc_end) fn(ctx, buf + doc_start, doc_end - doc_start);
            doc_end = 0;
        } else if (!blank) {
            if (!doc_end) doc_start = ls;
            doc_end = le;
        }
        ls = le;
    }
    if (doc_end) fn(ctx, buf + doc_start, doc_end - doc_start);
}

// ---------------------------------------------------------------------------------------------
// shard sinks: buffer tokens and write prefix_NNN.bin each time shard_tokens are collected.
// With buf == NULL a sink only counts (the first pass, which checks the corpus before writing).

typedef struct {
    const char *dir, *prefix;
    uint32_t *buf;
    size_t fill, cap;
    int shards;
    uint64_t tokens, docs;
    ts_status status;
} shard_sink;

static void sink_flush(shard_sink *s) {
    if (s->fill == 0) return;
    if (s->buf && s->status == TS_OK) { // after a failure the pass only runs to its end
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_%03d.bin", s->dir, s->prefix, s->shards);
        s->status = shard_write(path, s->buf, s->fill, PREPARE_VOCAB);
        if (s->status == TS_OK) log_info("wrote %s (%zu tokens)", path, s->fill);
    }
    s->shards++;
    s->fill = 0;
}

static void sink_put(shard_sink *s, const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (s->buf) s->buf[s->fill] = (uint8_t)text[i];
        if (++s->fill == s->cap) sink_flush(s);
    }
    s->tokens += len;
}

typedef struct {
    shard_sink *train, *val;
    double val_fraction;
    uint64_t doc; // documents seen so far, over all files
} doc_router;

static void route_document(void *ctx, const char *text, size_t len) {
    doc_router *r = ctx;
    double f = r->val_fraction;
    int held_out = floor((double)(r->doc + 1) * f) > floor((double)r->doc * f);
    shard_sink *s = held_out ? r->val : r->train;
    sink_put(s, text, len);
    if (text[len - 1] != '\n') sink_put(s, "\n", 1);
    sink_put(s, "\n", 1); // the blank line between documents
    s->docs++;
    r->doc++;
}

// One pass over every input file. Files found in directories that hold a NUL byte (fortune's
// .dat indexes, stray binaries) are skipped; a named file holding one is an error.
static ts_status corpus_pass(const input_list *in, doc_router *r, int *n_read, int *n_binary,
                             uint64_t *n_bytes) {
    *n_read = *n_binary = 0;
    *n_bytes = 0;
    for (int i = 0; i < in->n; i++) {
        char *buf;
        size_t len;
        TS_CHECK(file_read_all(in->f[i].path, &buf, &len));
        const char *nul = memchr(buf, 0, len);
        if (nul) {
            size_t off = (size_t)(nul - buf);
            free(buf);
            if (in->f[i].from_dir) {
                log_debug("skipping %s: binary (NUL byte at offset %zu)", in->f[i].path, off);
                (*n_binary)++;
                continue;
            }
            log_error("%s: NUL byte at offset %zu; expected a text file", in->f[i].path, off);
            return TS_ERR_INPUT;
        }
        text_split_documents(buf, len, route_document, r);
        free(buf);
        (*n_read)++;
        *n_bytes += len;
        if (r->train->status != TS_OK) return r->train->status;
        if (r->val->status != TS_OK) return r->val->status;
    }
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// stats.txt and the up-to-date check. The inputs are summarised by a hash of the format tag,
// the options and every input's path, size and mtime; stats.txt is written last, so a run that
// stopped half-way is never taken as up to date.

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t inputs_hash(const input_list *in, const prepare_options *o) {
    char line[4400];
    uint64_t h = 0xcbf29ce484222325ULL;
    int k = snprintf(line, sizeof line, "%s vf=%.17g st=%zu\n", PREPARE_FORMAT, o->val_fraction,
                     o->shard_tokens);
    h = fnv1a(h, line, (size_t)k);
    for (int i = 0; i < in->n; i++) {
        k = snprintf(line, sizeof line, "%s\t%" PRIu64 "\t%" PRId64 "\n", in->f[i].path,
                     in->f[i].size, in->f[i].mtime_ns);
        h = fnv1a(h, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
    }
    return h;
}

// Value of "key N" in stats.txt's text, or -1 when absent.
static int64_t stats_get(const char *text, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ') return strtoll(p + kl + 1, NULL, 10);
    }
    return -1;
}

// Shard file names and sizes follow from the byte counts: every shard holds shard_tokens but
// the last of each split.
static int stats_outputs_present(const char *dir, const char *prefix, int64_t shards, int64_t bytes,
                                 int64_t shard_tokens) {
    for (int64_t i = 0; i < shards; i++) {
        int64_t tokens = i + 1 < shards ? shard_tokens : bytes - (shards - 1) * shard_tokens;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_%03d.bin", dir, prefix, (int)i);
        struct stat st;
        if (stat(path, &st) != 0 || st.st_size != 1024 + 2 * tokens) return 0;
    }
    return 1;
}

static int prepare_up_to_date(const char *dir, uint64_t hash) {
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/stats.txt", dir);
    if (access(path, R_OK) != 0 || file_read_all(path, &text, &len) != TS_OK) return 0;
    char *z = ts_malloc(len + 1, "stats.txt"); // NUL-terminated copy for strstr/strtoll
    memcpy(z, text, len);
    z[len] = 0;
    free(text);
    char want[64];
    snprintf(want, sizeof want, "inputs_hash %016" PRIx64 "\n", hash);
    int64_t st = stats_get(z, "shard_tokens"), n_train = stats_get(z, "shards_train");
    int ok = strstr(z, want) != NULL && st > 0 && n_train >= 1 &&
             stats_outputs_present(dir, "train", n_train, stats_get(z, "bytes_train"), st) &&
             stats_outputs_present(dir, "val", stats_get(z, "shards_val"),
                                   stats_get(z, "bytes_val"), st);
    free(z);
    return ok;
}

static ts_status stats_write(const char *dir, const char *body) {
    char path[4096];
    snprintf(path, sizeof path, "%s/stats.txt", dir);
    return fs_atomic_write(path, NULL, body, strlen(body));
}

// Remove train_NNN.bin / val_NNN.bin left by an earlier run that made more shards, so that the
// glob train_*.bin names exactly this run's shards.
static void remove_stale_shards(const char *dir, int n_train, int n_val) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int idx, end = 0;
        const char *name = e->d_name;
        int limit = -1;
        if (sscanf(name, "train_%3d.bin%n", &idx, &end) == 1 && end == 13 && !name[end])
            limit = n_train;
        else if (sscanf(name, "val_%3d.bin%n", &idx, &end) == 1 && end == 11 && !name[end])
            limit = n_val;
        if (limit < 0 || idx < limit) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (unlink(path) == 0) log_info("removed stale %s", path);
    }
    closedir(d);
}

// DIR/train_*.bin with glob's special characters in DIR escaped
static void train_pattern(const char *dir, char *out, size_t cap) {
    size_t k = 0;
    for (const char *p = dir; *p && k + 2 < cap; p++) {
        if (strchr("*?[\\", *p)) out[k++] = '\\';
        out[k++] = *p;
    }
    snprintf(out + k, cap - k, "/train_*.bin");
}

// ---------------------------------------------------------------------------------------------
// data_prepare

// "the inputs" for messages: the only input, or the first and a count
static void inputs_describe(const char *const *args, int n_args, char *out, size_t cap) {
    if (n_args == 1)
        snprintf(out, cap, "%s", args[0]);
    else
        snprintf(out, cap, "%s (and %d more inputs)", args[0], n_args - 1);
}

ts_status prepare_run(const char *const *args, int n_args, const prepare_options *o) {
    input_list in = {0};
    char what[4200];
    inputs_describe(args, n_args, what, sizeof what);
    ts_status res = TS_OK;
    uint32_t *train_buf = NULL, *val_buf = NULL;
    for (int i = 0; i < n_args; i++)
        TS_CHECK_GOTO(inputs_add_arg(&in, args[i]), res, done);
    if (in.n == 0) {
        log_error("%s: no regular files to read; expected text files", what);
        res = TS_ERR_INPUT;
        goto done;
    }
    uint64_t hash = inputs_hash(&in, o);
    if (prepare_up_to_date(o->out_dir, hash)) {
        log_info("%s: up to date (inputs and options unchanged since stats.txt was written)",
                 o->out_dir);
        goto done;
    }

    // pass 1: count, so that nothing is written for a corpus that is refused
    shard_sink train = {o->out_dir, "train", NULL, 0, o->shard_tokens, 0, 0, 0, TS_OK};
    shard_sink val = {o->out_dir, "val", NULL, 0, o->shard_tokens, 0, 0, 0, TS_OK};
    doc_router r = {&train, &val, o->val_fraction, 0};
    int n_read, n_binary;
    uint64_t n_bytes;
    TS_CHECK_GOTO(corpus_pass(&in, &r, &n_read, &n_binary, &n_bytes), res, done);
    log_info("read %d files (%d binary skipped): %" PRIu64 " bytes, %" PRIu64 " documents, %" PRIu64
             " held out for validation",
             n_read, n_binary, n_bytes, r.doc, val.docs);
    if (train.tokens + val.tokens < o->min_bytes) {
        log_error("%s: corpus is %" PRIu64 " bytes of text from %d files, expected at least "
                  "--min-bytes %" PRIu64 " (add inputs or lower --min-bytes)",
                  what, train.tokens + val.tokens, n_read, o->min_bytes);
        res = TS_ERR_INPUT;
        goto done;
    }
    if (train.docs == 0 || (o->val_fraction > 0 && val.docs == 0)) {
        log_error("%s: %" PRIu64 " documents, too few to hold out --val-fraction %g and keep "
                  "some for training (expected at least %.0f)",
                  what, r.doc, o->val_fraction,
                  o->val_fraction > 0 ? ceil(1.0 / o->val_fraction) : 1.0);
        res = TS_ERR_INPUT;
        goto done;
    }

    // pass 2: write. stats.txt goes first and comes back last.
    TS_CHECK_GOTO(fs_mkdir_p(o->out_dir, "prepare: --out"), res, done);
    char stats_path[4096];
    snprintf(stats_path, sizeof stats_path, "%s/stats.txt", o->out_dir);
    if (unlink(stats_path) != 0 && errno != ENOENT) {
        log_error("%s: cannot remove: %s", stats_path, strerror(errno));
        res = TS_ERR_SYSTEM;
        goto done;
    }
    train_buf = ts_malloc(o->shard_tokens * sizeof(uint32_t), "train shard");
    val_buf = ts_malloc(o->shard_tokens * sizeof(uint32_t), "val shard");
    shard_sink train2 = {o->out_dir, "train", train_buf, 0, o->shard_tokens, 0, 0, 0, TS_OK};
    shard_sink val2 = {o->out_dir, "val", val_buf, 0, o->shard_tokens, 0, 0, 0, TS_OK};
    doc_router r2 = {&train2, &val2, o->val_fraction, 0};
    TS_CHECK_GOTO(corpus_pass(&in, &r2, &n_read, &n_binary, &n_bytes), res, done);
    sink_flush(&train2);
    sink_flush(&val2);
    TS_CHECK_GOTO(train2.status, res, done);
    TS_CHECK_GOTO(val2.status, res, done);
    if (train2.tokens != train.tokens || val2.tokens != val.tokens) {
        log_error("inputs changed while being read (%" PRIu64 " then %" PRIu64
                  " bytes); run prepare again",
                  train.tokens + val.tokens, train2.tokens + val2.tokens);
        res = TS_ERR_INPUT;
        goto done;
    }
    remove_stale_shards(o->out_dir, train2.shards, val2.shards);

    // the entropy is measured on the shards as written, which also re-validates them
    char pattern[8192];
    train_pattern(o->out_dir, pattern, sizeof pattern);
    dataset ds;
    TS_CHECK_GOTO(dataset_open(&ds, pattern, 1, PREPARE_VOCAB), res, done);
    double h;
    res = dataset_unigram_entropy(&ds, PREPARE_VOCAB, &h);
    dataset_close(&ds);
    if (res != TS_OK) goto done;

    char body[1024];
    snprintf(body, sizeof body,
             "# written by tessera prepare: byte-level tokens (vocab %d)\n"
             "files %d\nbytes_train %" PRIu64 "\nbytes_val %" PRIu64 "\n"
             "documents_train %" PRIu64 "\ndocuments_val %" PRIu64 "\n"
             "shards_train %d\nshards_val %d\nshard_tokens %zu\n"
             "unigram_entropy_nats %.6f\ninputs_hash %016" PRIx64 "\n",
             PREPARE_VOCAB, n_read, train2.tokens, val2.tokens, train2.docs, val2.docs,
             train2.shards, val2.shards, o->shard_tokens, h, hash);
    TS_CHECK_GOTO(stats_write(o->out_dir, body), res, done);
    log_info("prepared %s: %" PRIu64 " training bytes in %d shard(s), %" PRIu64
             " validation bytes in %d; unigram entropy of the training text %.4f nats/byte "
             "(%.4f bits), the loss of a model that knows only byte frequencies",
             o->out_dir, train2.tokens, train2.shards, val2.tokens, val2.shards, h, h / log(2.0));
done:
    free(train_buf);
    free(val_buf);
    inputs_free(&in);
    return res;
}

ts_status data_prepare(const char *const *inputs, int n_inputs, const char *out_dir,
                       double val_fraction, size_t shard_tokens) {
    prepare_options o = {out_dir, val_fraction, shard_tokens, 0};
    TS_ASSERT(n_inputs >= 1 && val_fraction >= 0 && val_fraction < 1 && shard_tokens >= 2);
    return prepare_run(inputs, n_inputs, &o);
}
