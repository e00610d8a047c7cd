// config.c — the training configuration's key table (cfg_keys[]) and what it drives besides the
// file parser (config_file.c): values from and to text, defaults, --section.key=value overrides,
// `tessera train --help`, the resolved config written to the run directory, the checks across
// keys and the split of the global batch over ranks.
#include "runtime/config.h"
#include "collectives/codec.h" // CODEC_CHOICES: the codec registry's names
#include "runtime/config_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// the key table

#define CFG_FIELD(sec, field)                                                                      \
    offsetof(tessera_config, sec.field), sizeof(((tessera_config *)0)->sec.field)
#define KEY(sec, field, type, def, lo, hi, choices, help)                                          \
    { #sec, #field, type, CFG_FIELD(sec, field), def, lo, hi, choices, help }

// Defaults are written as on the command line (strings unquoted) and parsed by the same code as
// every other value, so a default outside its own bounds is caught by config_defaults.
const cfg_key cfg_keys[] = {
    KEY(run, name, CFG_STRING, "run", 0, 0, NULL,
        "run name: the run directory is <out_dir>/<name>"),
    KEY(run, out_dir, CFG_STRING, "runs", 0, 0, NULL, "folder where run directories are created"),
    KEY(run, seed, CFG_INT64, "1337", 0, 9007199254740991.0, NULL,
        "seed of the data order and the initial weights"),
    KEY(run, backend, CFG_ENUM, "auto", 0, 0, "auto|cpu|cuda",
        "compute backend (auto: CUDA when tessera was built with it and a GPU is present, else "
        "the CPU)"),
    KEY(run, precision, CFG_ENUM, "bf16", 0, 0, "bf16|fp32",
        "CUDA: bf16 activations and weights with fp32 master weights (bf16), or all fp32 (fp32, "
        "for checking); the CPU computes in fp32 either way"),
    KEY(run, threads, CFG_INT, "0", 0, 1024, NULL,
        "compute threads per rank (0: the host's cores divided by its ranks)"),
    KEY(run, resume, CFG_STRING, "", 0, 0, NULL,
        "resume from a checkpoint: empty = start fresh; \"auto\" = the newest intact one in "
        "<run_dir>/ckpt/<host> of any rank (none: start fresh); or the path of a step-NNNNNNNN "
        "directory"),

    KEY(model, layers, CFG_INT, "4", 1, 4096, NULL, "transformer blocks"),
    KEY(model, heads, CFG_INT, "4", 1, 65536, NULL, "attention heads (must divide width)"),
    KEY(model, width, CFG_INT, "128", 1, 65536, NULL, "channels of the residual stream"),
    KEY(model, seq_len, CFG_INT, "128", 2, 1048576, NULL, "tokens per training sequence"),
    // the padded vocabulary (next multiple of 128) must still fit an int
    KEY(model, vocab, CFG_INT, "256", 2, 2147483520.0, NULL,
        "vocabulary size (the LM head is padded to a multiple of 128)"),

    KEY(data, train, CFG_STRING, "data/fortunes/train_*.bin", 0, 0, NULL,
        "glob pattern of the training token shards"),
    KEY(data, val, CFG_STRING, "data/fortunes/val_*.bin", 0, 0, NULL,
        "glob pattern of the validation token shards"),
    KEY(data, tokenizer, CFG_STRING, "byte", 0, 0, NULL,
        "\"byte\" or a GPT-2 tokenizer file, to decode samples"),
    KEY(data, log_samples, CFG_BOOL, "false", 0, 0, NULL,
        "append the global index of every sample each rank trains on to "
        "<run_dir>/samples.rank-R.txt (to audit the data order)"),

    KEY(train, steps, CFG_INT, "1000", 1, 1e9, NULL, "optimizer steps"),
    KEY(train, global_batch, CFG_INT, "32", 1, 16777216, NULL,
        "sequences per optimizer step, over all ranks"),
    KEY(train, micro_batch, CFG_INT, "16", 1, 65536, NULL,
        "most sequences per forward/backward on one rank"),
    KEY(train, lr, CFG_FLOAT, "1e-3", 0, 10, NULL, "peak learning rate, reached after warmup"),
    KEY(train, lr_min_ratio, CFG_FLOAT, "0.1", 0, 1, NULL,
        "final learning rate of the cosine decay, as a fraction of lr"),
    KEY(train, warmup_steps, CFG_INT, "50", 0, 1e9, NULL, "steps of linear warmup"),
    KEY(train, weight_decay, CFG_FLOAT, "0.1", 0, 10, NULL, "AdamW weight decay (matrices only)"),
    KEY(train, beta1, CFG_FLOAT, "0.9", 0, 0.999999, NULL, "AdamW first-moment decay"),
    KEY(train, beta2, CFG_FLOAT, "0.95", 0, 0.999999, NULL, "AdamW second-moment decay"),
    KEY(train, eps, CFG_FLOAT, "1e-8", 1e-30, 1, NULL, "AdamW denominator epsilon"),
    KEY(train, grad_clip, CFG_FLOAT, "1.0", 0, 1e6, NULL,
        "clip the global gradient norm to this (0: no clipping)"),

    KEY(eval, every, CFG_INT, "100", 0, 1e9, NULL, "validate every N steps (0: only at the end)"),
    KEY(eval, batches, CFG_INT, "4", 1, 1000000, NULL,
        "validation batches of global_batch sequences each"),

    KEY(log, every, CFG_INT, "10", 1, 1e9, NULL, "progress line and metrics every N steps"),
    KEY(log, sample_tokens, CFG_INT, "200", 0, 1000000, NULL,
        "tokens sampled at the end of the run (0: none)"),

    KEY(comm, timeout_s, CFG_FLOAT, "300", 0.01, 86400, NULL,
        "deadline in seconds for any collective (then: peer lost)"),
    KEY(comm, init_timeout_s, CFG_FLOAT, "600", 1, 86400, NULL,
        "deadline in seconds for MPI start-up and shut-down (MPI_Init, MPI_Finalize; a watchdog "
        "ends the process after it)"),
    KEY(comm, bucket_mb, CFG_FLOAT, "4", 0.0009765625, 4096, NULL,
        "gradient bucket size in MiB: each bucket is summed over ranks as soon as backward "
        "has produced it"),
    KEY(comm, overlap, CFG_BOOL, "true", 0, 0, NULL,
        "start each bucket's reduction during backward (false: all after backward)"),
    KEY(comm, trace, CFG_BOOL, "false", 0, 0, NULL,
        "write comm_trace.jsonl: when each bucket's reduction started and ended, and when "
        "backward ended, per step (rank 0)"),
    KEY(comm, zero_stage, CFG_INT, "0", 0, 1, NULL,
        "ZeRO stage: 0 = every rank holds the whole optimizer state; 1 = optimizer state "
        "sharded over ranks (reduce-scatter gradients, all-gather weights)"),
    KEY(comm, codec, CFG_ENUM, "none", 0, 0, CODEC_CHOICES,
        "gradient codec: how each bucket travels between ranks (none: fp32, summed exactly)"),
    KEY(ckpt, every, CFG_INT, "0", 0, 1e9, NULL,
        "write a checkpoint to <run_dir>/ckpt/<host> every N steps (0: only at the end of the "
        "run)"),
    KEY(ckpt, keep, CFG_INT, "2", 1, 1000000, NULL,
        "newest checkpoints kept; older ones are deleted after a successful save"),
    KEY(ckpt, replicas, CFG_INT, "2", 1, 1000000, NULL,
        "full copies of each checkpoint: the first N ranks (in rank order) on distinct hosts "
        "each write one to their own disk"),
    KEY(ckpt, max_failures, CFG_INT, "3", 1, 1000000, NULL,
        "consecutive failed checkpoint writes (disk full, I/O error) after which the run stops "
        "(exit 1); a failed write is logged and retried at the next interval"),
};
const int cfg_n_keys = (int)(sizeof cfg_keys / sizeof cfg_keys[0]);
_Static_assert(sizeof cfg_keys / sizeof cfg_keys[0] <= CFG_MAX_KEYS,
               "raise CFG_MAX_KEYS (config.h): the origin table holds one entry per key");

// ---------------------------------------------------------------------------------------------
// lookups and "did you mean"

// Sections in table order; the table lists each section's keys together.
int cfg_sections(const char **names) {
    int n = 0;
    for (int i = 0; i < cfg_n_keys; i++)
        if (n == 0 || strcmp(names[n - 1], cfg_keys[i].section) != 0)
            names[n++] = cfg_keys[i].section;
    return n;
}

int cfg_find_section(const char *name) {
    const char *names[CFG_MAX_SECTIONS];
    int n = cfg_sections(names);
    for (int s = 0; s < n; s++)
        if (strcmp(names[s], name) == 0) return s;
    return -1;
}

int cfg_find_key(const char *section, const char *name) {
    for (int i = 0; i < cfg_n_keys; i++)
        if (strcmp(cfg_keys[i].section, section) == 0 && strcmp(cfg_keys[i].name, name) == 0)
            return i;
    return -1;
}

// Edit distance with adjacent transpositions counting one ("trian" -> "train").
static int cfg_distance(const char *a, const char *b) {
    enum { N = 48 };
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la >= N || lb >= N) return 1000;
    int d[N][N];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

// How far a typed name is from a known one; large when not worth suggesting. A prefix of at
// least 4 characters counts as close ("warmup" -> "warmup_steps").
static int cfg_closeness(const char *typed, const char *known) {
    size_t lt = strlen(typed), lk = strlen(known);
    if (lt >= 4 && lk >= 4 && (strncmp(typed, known, lt < lk ? lt : lk) == 0)) return 1;
    int d = cfg_distance(typed, known);
    int limit = lt <= 4 ? 1 : 2;
    return d <= limit ? d : 1000;
}

// The closest key to section/name (a key of the same name in another section costs one more).
int cfg_suggest_key(const char *section, const char *name) {
    int best = -1, best_d = 1000;
    for (int i = 0; i < cfg_n_keys; i++) {
        int d = cfg_closeness(name, cfg_keys[i].name);
        if (d < 1000 && strcmp(cfg_keys[i].section, section) != 0) d += 1;
        if (d < best_d) best_d = d, best = i;
    }
    return best;
}

const char *cfg_suggest_section(const char *name) {
    const char *names[CFG_MAX_SECTIONS];
    int n = cfg_sections(names), best_d = 1000;
    const char *best = NULL;
    for (int s = 0; s < n; s++) {
        int d = cfg_closeness(name, names[s]);
        if (d < best_d) best_d = d, best = names[s];
    }
    return best;
}

void cfg_section_list(char *buf, size_t n) {
    const char *names[CFG_MAX_SECTIONS];
    int ns = cfg_sections(names);
    size_t used = 0;
    buf[0] = '\0';
    for (int s = 0; s < ns && used < n; s++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", s ? ", " : "", names[s]);
}

// ---------------------------------------------------------------------------------------------
// values: text -> struct field, struct field -> text

// The value as the user wrote it, for "got ...": quoted unless it already starts with a quote,
// cut after 60 characters, control characters shown as \xNN so the message stays one line.
static void cfg_show(const char *text, char *buf, size_t n) {
    char cut[80];
    size_t j = 0, i = 0;
    for (; text[i] && i < 60 && j + 5 < sizeof cut; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            j += (size_t)snprintf(cut + j, sizeof cut - j, "\\x%02x", c);
        else
            cut[j++] = (char)c;
    }
    cut[j] = '\0';
    snprintf(buf, n, text[0] == '"' ? "%s%s" : "\"%s%s\"", cut, text[i] ? "..." : "");
}

static void cfg_fmt_double(double v, char *buf, size_t n) {
    // shortest form that reads back to the same double, always with a '.' or an exponent so a
    // TOML reader sees a float
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (isfinite(v) && !strpbrk(buf, ".eE")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static void cfg_fmt_bound(const cfg_key *k, double v, char *buf, size_t n) {
    if (k->type == CFG_FLOAT)
        snprintf(buf, n, "%g", v);
    else
        snprintf(buf, n, "%.0f", v);
}

// "an integer in [1, 4096]", "a number in [0, 10]", "true or false", ...
static void cfg_describe(const cfg_key *k, char *buf, size_t n) {
    char lo[32], hi[32];
    cfg_fmt_bound(k, k->min, lo, sizeof lo);
    cfg_fmt_bound(k, k->max, hi, sizeof hi);
    switch (k->type) {
    case CFG_INT:
    case CFG_INT64: snprintf(buf, n, "an integer in [%s, %s]", lo, hi); break;
    case CFG_FLOAT: snprintf(buf, n, "a number in [%s, %s]", lo, hi); break;
    case CFG_BOOL: snprintf(buf, n, "true or false"); break;
    case CFG_STRING: snprintf(buf, n, "a quoted string"); break;
    case CFG_ENUM: snprintf(buf, n, "one of %s", k->choices); break;
    }
}

// Split off the value token: up to whitespace or '#'. What follows may only be a '#' comment,
// and only in a file. Returns 0 when something else follows.
static int cfg_token(const char *text, int in_file, char *tok, size_t n) {
    size_t len = strcspn(text, " \t#");
    if (len >= n) return 0;
    memcpy(tok, text, len);
    tok[len] = '\0';
    const char *rest = text + len;
    rest += strspn(rest, " \t");
    return *rest == '\0' || (in_file && *rest == '#');
}

// Decimal digits with optional sign and single '_' between digits (TOML); underscores removed.
static int cfg_clean_number(const char *tok, char *out, size_t n, int allow_float) {
    size_t j = 0;
    int digits = 0;
    for (size_t i = 0; tok[i]; i++) {
        char c = tok[i];
        if (c == '_') {
            if (i == 0 || !(tok[i - 1] >= '0' && tok[i - 1] <= '9') ||
                !(tok[i + 1] >= '0' && tok[i + 1] <= '9'))
                return 0;
            continue;
        }
        int ok = (c >= '0' && c <= '9') || c == '+' || c == '-' ||
                 (allow_float && (c == '.' || c == 'e' || c == 'E'));
        if (!ok || j + 1 >= n) return 0;
        digits += c >= '0' && c <= '9';
        out[j++] = c;
    }
    out[j] = '\0';
    return digits > 0;
}

// A quoted string: "..." with \\ and \" as the only escapes. Returns 0 with *why set on error.
static int cfg_unquote(const char *text, int in_file, char *out, size_t n, const char **why) {
    const char *p = text + 1;
    size_t j = 0;
    for (;; p++) {
        if (*p == '\0') return *why = "missing closing quote", 0;
        if (*p == '"') break;
        char c = *p;
        if (c == '\\') {
            p++;
            if (*p != '\\' && *p != '"')
                return *why = "only \\\\ and \\\" escapes are supported", 0;
            c = *p;
        }
        if (j + 1 >= n) return *why = "string too long", 0;
        out[j++] = c;
    }
    out[j] = '\0';
    p++;
    p += strspn(p, " \t");
    if (*p != '\0' && !(in_file && *p == '#')) return *why = "unexpected text after the string", 0;
    return 1;
}

// Parse `text` (a file's value, or an override's) for key k into the struct. On error, err gets
// "expected ..., got ..." and 0 is returned.
int cfg_parse_value(const cfg_key *k, const char *text, int in_file, tessera_config *cfg, char *err,
                    size_t errn) {
    char *dst = (char *)cfg + k->offset;
    char want[96], got[80], tok[64], num[64];
    cfg_describe(k, want, sizeof want);
    cfg_show(text, got, sizeof got);

    if (k->type == CFG_STRING || k->type == CFG_ENUM) {
        char s[CFG_STR + 8];
        const char *why = NULL;
        if (text[0] == '"') {
            if (!cfg_unquote(text, in_file, s, sizeof s, &why)) {
                snprintf(err, errn, "expected %s, got %s (%s)", want, got, why);
                return 0;
            }
        } else if (in_file) {
            // strings in a file are quoted (TOML); an enum's choices are strings too
            snprintf(err, errn, "expected %s, got %s (write \"%s\")",
                     k->type == CFG_ENUM ? want : "a quoted string", text, text);
            return 0;
        } else {
            snprintf(s, sizeof s, "%s", text); // the shell already took the quotes off
        }
        size_t len = strlen(s), escaped = len;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            escaped += c == '"' || c == '\\';
            if (c == ';') {
                snprintf(err, errn, "';' is not allowed in config values, got %s", got);
                return 0;
            }
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                snprintf(err, errn, "control characters are not allowed in strings, got %s", got);
                return 0;
            }
        }
        size_t cap = k->size - 1 < CFG_MAX_STRING ? k->size - 1 : CFG_MAX_STRING;
        if (escaped > cap) {
            snprintf(err, errn, "expected a string of at most %zu characters, got %zu", cap,
                     escaped);
            return 0;
        }
        if (k->type == CFG_ENUM) {
            size_t cl = strlen(k->choices), start = 0, found = 0;
            for (size_t i = 0; i <= cl && !found; i++)
                if (i == cl || k->choices[i] == '|') {
                    found = i - start == len && strncmp(k->choices + start, s, len) == 0;
                    start = i + 1;
                }
            if (!found) {
                char q[80];
                cfg_show(s, q, sizeof q);
                snprintf(err, errn, "expected %s, got %s", want, q);
                return 0;
            }
        }
        memset(dst, 0, k->size);
        memcpy(dst, s, len);
        return 1;
    }

    int clean = cfg_token(text, in_file, tok, sizeof tok);
    switch (k->type) {
    case CFG_BOOL: {
        if (clean && (strcmp(tok, "true") == 0 || strcmp(tok, "false") == 0)) {
            *(int *)dst = tok[0] == 't';
            return 1;
        }
        break;
    }
    case CFG_INT:
    case CFG_INT64: {
        if (!clean || !cfg_clean_number(tok, num, sizeof num, 0)) break;
        char *end;
        errno = 0;
        long long v = strtoll(num, &end, 10);
        if (*end || errno == ERANGE || (double)v < k->min || (double)v > k->max) break;
        if (k->type == CFG_INT)
            *(int *)dst = (int)v;
        else
            *(int64_t *)dst = (int64_t)v;
        return 1;
    }
    case CFG_FLOAT: {
        if (!clean || !cfg_clean_number(tok, num, sizeof num, 1)) break;
        char *end;
        double v = strtod(num, &end);
        if (*end || !isfinite(v) || v < k->min || v > k->max) break;
        *(double *)dst = v;
        return 1;
    }
    default: break;
    }
    snprintf(err, errn, "expected %s, got %s", want, got);
    return 0;
}

// The field's value in file syntax.
static void cfg_format_value(const cfg_key *k, const tessera_config *cfg, char *buf, size_t n) {
    const char *src = (const char *)cfg + k->offset;
    switch (k->type) {
    case CFG_INT: snprintf(buf, n, "%d", *(const int *)src); break;
    case CFG_INT64: snprintf(buf, n, "%" PRId64, *(const int64_t *)src); break;
    case CFG_FLOAT: cfg_fmt_double(*(const double *)src, buf, n); break;
    case CFG_BOOL: snprintf(buf, n, "%s", *(const int *)src ? "true" : "false"); break;
    case CFG_STRING:
    case CFG_ENUM: {
        size_t j = 0;
        buf[j++] = '"';
        for (size_t i = 0; src[i] && i < k->size && j + 3 < n; i++) {
            if (src[i] == '"' || src[i] == '\\') buf[j++] = '\\';
            buf[j++] = src[i];
        }
        buf[j++] = '"';
        buf[j] = '\0';
        break;
    }
    }
}

void config_defaults(tessera_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < cfg_n_keys; i++) {
        char err[256];
        if (!cfg_parse_value(&cfg_keys[i], cfg_keys[i].def, 0, cfg, err, sizeof err)) {
            char msg[400];
            snprintf(msg, sizeof msg, "default of %s.%s: %s", cfg_keys[i].section, cfg_keys[i].name,
                     err);
            ts_panic(__FILE__, __LINE__, msg);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// origins: where each key was set

void cfg_set_origin(tessera_config *cfg, int k, cfg_from from, int line, const char *text) {
    int last = 0;
    for (int i = 0; i < cfg_n_keys; i++)
        if (cfg->origin[i].order > last) last = cfg->origin[i].order;
    cfg_origin *o = &cfg->origin[k];
    o->from = from;
    o->line = line;
    o->order = last + 1;
    // an accepted argument always fits; a file name of CFG_STR characters or more is cut
    snprintf(o->text, sizeof o->text, "%s", text);
}

// ---------------------------------------------------------------------------------------------
// overrides

ts_status config_apply_override(tessera_config *cfg, const char *arg) {
    const char *key = strncmp(arg, "--", 2) == 0 ? arg + 2 : arg;
    const char *eq = strchr(key, '=');
    const char *dot = memchr(key, '.', eq ? (size_t)(eq - key) : strlen(key));
    char shown[96]; // the argument up to '=', as typed, for messages
    size_t shown_len = eq ? (size_t)(eq - arg) : strlen(arg);
    snprintf(shown, sizeof shown, "%.*s", (int)(shown_len < 80 ? shown_len : 80), arg);
    if (!eq || !dot || dot == key || dot + 1 == eq) {
        log_error("%s: expected --section.key=value (e.g. --train.lr=3e-4)", shown);
        return TS_ERR_INPUT;
    }
    char section[64], name[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - key < 60 ? dot - key : 60), key);
    snprintf(name, sizeof name, "%.*s", (int)(eq - dot - 1 < 60 ? eq - dot - 1 : 60), dot + 1);
    if (cfg_find_section(section) < 0) {
        const char *hint = cfg_suggest_section(section);
        char list[128];
        cfg_section_list(list, sizeof list);
        if (hint)
            log_error("%s: unknown section \"%s\" (did you mean \"%s\"?)", shown, section, hint);
        else
            log_error("%s: unknown section \"%s\" (sections: %s)", shown, section, list);
        return TS_ERR_INPUT;
    }
    int k = cfg_find_key(section, name);
    if (k < 0) {
        int hint = cfg_suggest_key(section, name);
        if (hint >= 0)
            log_error("%s: unknown key \"%s\" (did you mean --%s.%s?)", shown, name,
                      cfg_keys[hint].section, cfg_keys[hint].name);
        else
            log_error("%s: unknown key \"%s\" (tessera train --help lists the keys)", shown, name);
        return TS_ERR_INPUT;
    }
    char err[512];
    if (!cfg_parse_value(&cfg_keys[k], eq + 1, 0, cfg, err, sizeof err)) {
        log_error("%s: %s", shown, err);
        return TS_ERR_INPUT;
    }
    cfg_set_origin(cfg, k, CFG_FROM_OVERRIDE, 0, arg);
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// checks across keys
//
// Each error starts with where the offending key got its value (cfg->origin): "FILE:LINE:
// [section] key: ", the override "--section.key=value: ", or "[section] key (default): ". A key
// still marked as a default whose value differs from the default was set by the program itself
// ("(set by the program)"). When a check involves two keys, the message is about the one set
// last — an override over a file line, a later override or line over an earlier one, anything
// over a default — and names the other with its value and origin.

typedef struct {
    const tessera_config *cfg;
    tessera_config def; // the defaults, to tell a default from a value the program set
} cfg_checker;

static int cfg_key_index(const char *section, const char *name) {
    int k = cfg_find_key(section, name);
    TS_ASSERT(k >= 0);
    return k;
}

static int cfg_same_value(const cfg_key *k, const tessera_config *a, const tessera_config *b) {
    const char *x = (const char *)a + k->offset, *y = (const char *)b + k->offset;
    if (k->type == CFG_STRING || k->type == CFG_ENUM) return strncmp(x, y, k->size) == 0;
    if (k->type == CFG_FLOAT) return *(const double *)x == *(const double *)y;
    return memcmp(x, y, k->size) == 0;
}

// How recently key k was set: 0 a default, 1 set by the program (when is unknown, but after the
// defaults), 1 + its order when the file or an override set it.
static int cfg_recency(const cfg_checker *ck, int k) {
    const cfg_origin *o = &ck->cfg->origin[k];
    if (o->from != CFG_FROM_DEFAULT) return 1 + o->order;
    return cfg_same_value(&cfg_keys[k], ck->cfg, &ck->def) ? 0 : 1;
}

// The start of an error line about key k.
static void cfg_origin_prefix(const cfg_checker *ck, int k, char *buf, size_t n) {
    const cfg_origin *o = &ck->cfg->origin[k];
    const cfg_key *key = &cfg_keys[k];
    if (o->from == CFG_FROM_FILE)
        snprintf(buf, n, "%s:%d: [%s] %s: ", o->text, o->line, key->section, key->name);
    else if (o->from == CFG_FROM_OVERRIDE)
        snprintf(buf, n, "%s: ", o->text);
    else
        snprintf(buf, n, "[%s] %s (%s): ", key->section, key->name,
                 cfg_recency(ck, k) ? "set by the program" : "default");
}

// Where the other key of a two-key check was set, relative to the subject's origin: "line 4"
// (same file), "FILE:4", "command line", "default" or "set by the program".
static void cfg_origin_note(const cfg_checker *ck, int other, int subject, char *buf, size_t n) {
    const cfg_origin *o = &ck->cfg->origin[other], *s = &ck->cfg->origin[subject];
    if (o->from == CFG_FROM_FILE && s->from == CFG_FROM_FILE && strcmp(o->text, s->text) == 0)
        snprintf(buf, n, "line %d", o->line);
    else if (o->from == CFG_FROM_FILE)
        snprintf(buf, n, "%s:%d", o->text, o->line);
    else if (o->from == CFG_FROM_OVERRIDE)
        snprintf(buf, n, "command line");
    else
        snprintf(buf, n, "%s", cfg_recency(ck, other) ? "set by the program" : "default");
}

static ts_status cfg_reject(const cfg_checker *ck, int k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ts_status cfg_reject(const cfg_checker *ck, int k, const char *fmt, ...) {
    char where[CFG_STR + 96], body[1024];
    cfg_origin_prefix(ck, k, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    log_error("%s%s", where, body);
    return TS_ERR_INPUT;
}

ts_status config_validate(const tessera_config *cfg, int world) {
    cfg_checker check, *ck = &check;
    ck->cfg = cfg;
    config_defaults(&ck->def);
    tessera_config scratch; // where the values are parsed again
    config_defaults(&scratch);

    // every value by its key's own rules first (the parsers enforce them, a program setting
    // fields directly may not), so that the checks below see values in range
    for (int k = 0; k < cfg_n_keys; k++) {
        char text[2 * CFG_STR + 8], err[512];
        cfg_format_value(&cfg_keys[k], cfg, text, sizeof text);
        if (!cfg_parse_value(&cfg_keys[k], text, 1, &scratch, err, sizeof err))
            return cfg_reject(ck, k, "%s", err);
    }

    int heads = cfg_key_index("model", "heads"), width = cfg_key_index("model", "width");
    if (cfg->model.width % cfg->model.heads != 0) {
        if (cfg_recency(ck, width) > cfg_recency(ck, heads)) {
            char note[CFG_STR + 32];
            cfg_origin_note(ck, heads, width, note, sizeof note);
            return cfg_reject(ck, width,
                              "expected a multiple of model.heads = %d (%s), got %d; each head "
                              "gets width / heads channels",
                              cfg->model.heads, note, cfg->model.width);
        } else {
            char note[CFG_STR + 32];
            cfg_origin_note(ck, width, heads, note, sizeof note);
            return cfg_reject(ck, heads,
                              "expected a divisor of model.width = %d (%s), got %d; each head "
                              "gets width / heads channels",
                              cfg->model.width, note, cfg->model.heads);
        }
    }
    if (cfg->train.global_batch < world)
        return cfg_reject(ck, cfg_key_index("train", "global_batch"),
                          "expected at least the number of ranks (%d), got %d; every rank needs "
                          "at least one sequence per step",
                          world, cfg->train.global_batch);
    const char *name = cfg->run.name;
    if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        int k = cfg_key_index("run", "name");
        char shown[2 * CFG_STR + 8];
        cfg_format_value(&cfg_keys[k], cfg, shown, sizeof shown);
        return cfg_reject(ck, k,
                          "expected a directory name (not empty, no '/', not \".\" or "
                          "\"..\"), got %s",
                          shown);
    }
    // run.resume is the one string whose empty value means something (start fresh)
    int resume_key = cfg_key_index("run", "resume");
    for (int k = 0; k < cfg_n_keys; k++)
        if (cfg_keys[k].type == CFG_STRING && k != resume_key &&
            ((const char *)cfg + cfg_keys[k].offset)[0] == '\0')
            return cfg_reject(ck, k, "expected a non-empty string, got \"\"");
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// help, resolved config, batch split

void config_print_help(FILE *out) {
    tessera_config def;
    config_defaults(&def);
    fprintf(out, "Config keys. In the file: `key = value` under [section]; on the command line: "
                 "--section.key=value.\n"
                 "Strings are \"quoted\" in the file (not needed on the command line).\n\n");
    fprintf(out, "  %-22s %-34s %-28s %s\n", "key", "value", "default", "meaning");
    for (int i = 0; i < cfg_n_keys; i++) {
        const cfg_key *k = &cfg_keys[i];
        char full[64], want[96], val[CFG_STR + 8];
        snprintf(full, sizeof full, "%s.%s", k->section, k->name);
        cfg_describe(k, want, sizeof want);
        cfg_format_value(k, &def, val, sizeof val);
        const char *w = strncmp(want, "an ", 3) == 0 ? want + 3 : want + 2; // drop the article
        if (k->type == CFG_ENUM || k->type == CFG_BOOL) w = want;
        fprintf(out, "  %-22s %-34s %-28s %s\n", full, w, val, k->help);
    }
}

void config_write(const tessera_config *cfg, FILE *out) {
    fprintf(out, "# tessera config, every key resolved (defaults, file and overrides applied)\n");
    const char *prev = "";
    for (int i = 0; i < cfg_n_keys; i++) {
        const cfg_key *k = &cfg_keys[i];
        if (strcmp(k->section, prev) != 0) fprintf(out, "\n[%s]\n", k->section);
        prev = k->section;
        char val[CFG_STR + 8];
        cfg_format_value(k, cfg, val, sizeof val);
        fprintf(out, "%s = %s\n", k->name, val);
    }
}

void config_batch_share(int global_batch, int world, int rank, int *share, int *offset) {
    TS_ASSERT(world >= 1 && rank >= 0 && rank < world && global_batch >= 0);
    // the first (global_batch % world) ranks take one sequence more
    int base = global_batch / world, extra = global_batch % world;
    *share = base + (rank < extra);
    *offset = rank * base + (rank < extra ? rank : extra);
}
