// test_config.c — the config layer (runtime/config.c): the key table, defaults, the file parser
// and its error lines, overrides, the resolved config's round trip, cross-key checks (each error
// naming where its key was set: file line, override or default), and the split of the global
// batch over ranks.
//
// usage: test_config BAD_DIR CONFIGS_DIR
//   BAD_DIR      tests/config/bad: every *.ini there must fail with exactly one error line that
//                matches its "# expect:" regex (the same files drive the command-line tests)
//   CONFIGS_DIR  configs/: every shipped config must parse and validate
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <regex.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/balance.h"
#include "runtime/config.h"
#include "tests/unit/expect.h"

// ---------------------------------------------------------------------------------------------
// capturing error lines: every log line is copied to a temporary file

static FILE *g_log_file;

static void log_capture_reset(void) {
    if (g_log_file) fclose(g_log_file);
    g_log_file = tmpfile();
    log_set_file(g_log_file);
}

// The error lines logged since the last reset (body after "tessera: error: "), their count.
static int log_capture_errors(char *first, size_t n) {
    fflush(g_log_file);
    rewind(g_log_file);
    char line[4096];
    int count = 0;
    first[0] = '\0';
    const char *tag = "tessera: error: ";
    while (fgets(line, sizeof line, g_log_file)) {
        if (strncmp(line, tag, strlen(tag)) != 0) continue;
        line[strcspn(line, "\n")] = '\0';
        if (count++ == 0) snprintf(first, n, "%s", line + strlen(tag));
    }
    return count;
}

// `text` must be rejected with exactly one error line equal to `want`.
static void expect_text_error(const char *text, const char *want) {
    tessera_config cfg;
    config_defaults(&cfg);
    log_capture_reset();
    ts_status st = config_parse_text(&cfg, text, strlen(text), "t.ini");
    char got[4096];
    int n = log_capture_errors(got, sizeof got);
    if (st != TS_ERR_INPUT || n != 1 || strcmp(got, want) != 0) {
        fprintf(stderr, "text:\n%s\n  status %d, %d error lines\n  want: %s\n  got:  %s\n", text,
                (int)st, n, want, got);
        g_failures++;
    }
}

static void expect_override_error(const char *arg, const char *want) {
    tessera_config cfg;
    config_defaults(&cfg);
    log_capture_reset();
    ts_status st = config_apply_override(&cfg, arg);
    char got[4096];
    int n = log_capture_errors(got, sizeof got);
    if (st != TS_ERR_INPUT || n != 1 || strcmp(got, want) != 0) {
        fprintf(stderr, "override %s: status %d, %d error lines\n  want: %s\n  got:  %s\n", arg,
                (int)st, n, want, got);
        g_failures++;
    }
}

// Same values for every key (where they came from aside).
static int configs_equal(const tessera_config *a, const tessera_config *b) {
    return memcmp(a, b, offsetof(tessera_config, origin)) == 0;
}

// index of section.name in cfg_keys, or -1
static int key_index(const char *section, const char *name) {
    for (int i = 0; i < cfg_n_keys; i++)
        if (strcmp(cfg_keys[i].section, section) == 0 && strcmp(cfg_keys[i].name, name) == 0)
            return i;
    return -1;
}

// ---------------------------------------------------------------------------------------------

static void test_key_table(void) {
    // every field of tessera_config has exactly one key; keys do not overlap
    CHECK(cfg_n_keys == 63);
    unsigned char used[sizeof(tessera_config)] = {0};
    for (int i = 0; i < cfg_n_keys; i++) {
        const cfg_key *k = &cfg_keys[i];
        size_t want = k->type == CFG_INT || k->type == CFG_BOOL ? sizeof(int)
                      : k->type == CFG_INT64                    ? sizeof(int64_t)
                      : k->type == CFG_FLOAT                    ? sizeof(double)
                                                                : k->size;
        CHECK(k->size == want);
        CHECK(k->offset + k->size <= sizeof(tessera_config));
        for (size_t b = k->offset; b < k->offset + k->size; b++) {
            CHECK(!used[b]);
            used[b] = 1;
        }
        CHECK(k->help && k->help[0]);
        CHECK(k->def != NULL);
        CHECK((k->type == CFG_ENUM) == (k->choices != NULL));
        for (int j = 0; j < i; j++)
            CHECK(strcmp(k->section, cfg_keys[j].section) != 0 ||
                  strcmp(k->name, cfg_keys[j].name) != 0);
        // a section's keys are listed together
        if (i > 1 && strcmp(k->section, cfg_keys[i - 1].section) != 0)
            for (int j = 0; j < i; j++)
                CHECK(strcmp(k->section, cfg_keys[j].section) != 0);
    }
}

static void test_defaults(void) {
    tessera_config c;
    config_defaults(&c);
    CHECK(strcmp(c.run.name, "run") == 0);
    CHECK(strcmp(c.run.out_dir, "runs") == 0);
    CHECK(c.run.seed == 1337);
    CHECK(strcmp(c.run.backend, "auto") == 0);
    CHECK(c.run.threads == 0);
    CHECK(c.model.layers == 4 && c.model.heads == 4 && c.model.width == 128);
    CHECK(c.model.seq_len == 128 && c.model.vocab == 256);
    CHECK(strcmp(c.data.train, "data/fortunes/train_*.bin") == 0);
    CHECK(strcmp(c.data.val, "data/fortunes/val_*.bin") == 0);
    CHECK(strcmp(c.data.tokenizer, "byte") == 0);
    CHECK(c.train.steps == 1000 && c.train.global_batch == 32 && c.train.micro_batch == 16);
    CHECK(c.train.lr == 1e-3 && c.train.lr_min_ratio == 0.1 && c.train.warmup_steps == 50);
    CHECK(c.train.weight_decay == 0.1 && c.train.beta1 == 0.9 && c.train.beta2 == 0.95);
    CHECK(c.train.eps == 1e-8 && c.train.grad_clip == 1.0);
    CHECK(c.eval.every == 100 && c.eval.batches == 4);
    CHECK(c.log.every == 10 && c.log.sample_tokens == 200);
    CHECK(c.comm.timeout_s == 300.0 && strcmp(c.comm.codec, "none") == 0);
    log_capture_reset();
    CHECK(config_validate(&c, 1) == TS_OK);
    CHECK(config_validate(&c, 32) == TS_OK);

    // an empty file (or one of comments) changes nothing
    tessera_config d;
    config_defaults(&d);
    const char *empty = "# nothing here\n\n   # indented comment\n";
    CHECK(config_parse_text(&d, empty, strlen(empty), "empty.ini") == TS_OK);
    CHECK(configs_equal(&c, &d));
    CHECK(config_parse_text(&d, "", 0, "empty.ini") == TS_OK);
    CHECK(configs_equal(&c, &d));
}

static void test_parse(void) {
    // BOM, CRLF, trailing '#' comments, underscores, escapes, no final newline
    const char *text = "\xEF\xBB\xBF# a test config\r\n"
                       "[run]\r\n"
                       "name = \"my \\\"quoted\\\" run # not a comment\"   # a comment\r\n"
                       "seed=42\n"
                       "backend = \"cpu\"\n"
                       "\n"
                       "[train] # the optimizer\n"
                       "steps = 1_000_000\n"
                       "lr = 3e-4#tight comment\n"
                       "beta2 = 1\n"
                       "grad_clip = -0.0\n"
                       "\t# an indented comment\n"
                       "[model]\n"
                       "vocab = 50257";
    tessera_config c, d;
    config_defaults(&c);
    config_defaults(&d);
    log_capture_reset();
    CHECK(config_parse_text(&c, text, strlen(text), "t.ini") == TS_ERR_INPUT); // beta2 = 1
    CHECK(configs_equal(&c, &d)); // nothing applied from a rejected text
    char *fixed = strdup(text);
    memcpy(strstr(fixed, "beta2 = 1"), "beta2 = 0", 9);
    CHECK(config_parse_text(&c, fixed, strlen(fixed), "t.ini") == TS_OK);
    free(fixed);
    CHECK(strcmp(c.run.name, "my \"quoted\" run # not a comment") == 0);
    CHECK(c.run.seed == 42);
    CHECK(strcmp(c.run.backend, "cpu") == 0);
    CHECK(c.train.steps == 1000000);
    CHECK(c.train.lr == 3e-4);
    CHECK(c.train.beta2 == 0.0);
    CHECK(c.train.grad_clip == 0.0);
    CHECK(c.model.vocab == 50257);
    CHECK(c.model.layers == 4); // untouched keys keep their values

    // each key set records its line; untouched keys stay defaults; overrides record the argument
    int lr = key_index("train", "lr"), seed = key_index("run", "seed");
    int layers = key_index("model", "layers"), vocab = key_index("model", "vocab");
    CHECK(c.origin[lr].from == CFG_FROM_FILE && c.origin[lr].line == 9);
    CHECK(strcmp(c.origin[lr].text, "t.ini") == 0);
    CHECK(c.origin[seed].from == CFG_FROM_FILE && c.origin[seed].line == 4);
    CHECK(c.origin[vocab].from == CFG_FROM_FILE && c.origin[vocab].line == 14);
    CHECK(c.origin[seed].order < c.origin[lr].order && c.origin[lr].order < c.origin[vocab].order);
    CHECK(c.origin[layers].from == CFG_FROM_DEFAULT && c.origin[layers].order == 0);
    CHECK(config_apply_override(&c, "--train.lr=0.5") == TS_OK);
    CHECK(c.origin[lr].from == CFG_FROM_OVERRIDE &&
          strcmp(c.origin[lr].text, "--train.lr=0.5") == 0);
    CHECK(c.origin[lr].order > c.origin[vocab].order);

    // a line of exactly 198 characters is fine, and so is a string of 180
    char line[400];
    int used = (int)strlen("train = \"d/*.bin\" #");
    snprintf(line, sizeof line, "[data]\ntrain = \"d/*.bin\" #%0*d\nval = \"%0*d\"\n", 198 - used,
             0, 180, 0);
    config_defaults(&c);
    CHECK(config_parse_text(&c, line, strlen(line), "t.ini") == TS_OK);
    CHECK(strcmp(c.data.train, "d/*.bin") == 0);
    CHECK(strlen(c.data.val) == 180);
}

static void test_text_errors(void) {
    expect_text_error("[train]\nlrr = 0.1\n",
                      "t.ini:2: [train] unknown key \"lrr\" (did you mean \"lr\"?)");
    expect_text_error("[train]\nwarmup = 5\n",
                      "t.ini:2: [train] unknown key \"warmup\" (did you mean \"warmup_steps\"?)");
    expect_text_error("[train]\nlayers = 5\n",
                      "t.ini:2: [train] unknown key \"layers\" (did you mean [model] layers?)");
    expect_text_error("[train]\nfoo = 5\n",
                      "t.ini:2: [train] unknown key \"foo\" (tessera train --help lists the keys)");
    expect_text_error("\n[trian]\n", "t.ini:2: unknown section [trian] (did you mean [train]?)");
    expect_text_error("[optimizer]\n",
                      "t.ini:1: unknown section [optimizer] (sections: run, "
                      "model, data, train, eval, log, comm, ckpt, diloco, balance)");
    expect_text_error("[train\n", "t.ini:1: expected \"]\" to close the section header");
    expect_text_error("[train] x\n",
                      "t.ini:1: unexpected text after [train] (only a # comment may follow)");
    expect_text_error("[train]\nlr = 1\n[model]\n[train]\n",
                      "t.ini:4: section [train] appears twice (first on line 1)");
    expect_text_error("lr = 0.1\n",
                      "t.ini:1: key \"lr\" is outside any section (put it under [train])");
    expect_text_error(
        "train.lr = 0.1\n",
        "t.ini:1: key \"train.lr\" is outside any section (write lr = ... under [train])");
    expect_text_error(
        "foo = 1\n", "t.ini:1: key \"foo\" is outside any section (add a [section] line above it)");
    expect_text_error("[train]\nlr = abc\n",
                      "t.ini:2: [train] lr: expected a number in [0, 10], got \"abc\"");
    expect_text_error("[train]\nlr = nan\n",
                      "t.ini:2: [train] lr: expected a number in [0, 10], got \"nan\"");
    expect_text_error("[train]\nlr = 0x10\n",
                      "t.ini:2: [train] lr: expected a number in [0, 10], got \"0x10\"");
    expect_text_error("[train]\nlr = 1e999\n",
                      "t.ini:2: [train] lr: expected a number in [0, 10], got \"1e999\"");
    expect_text_error("[train]\nlr =\n",
                      "t.ini:2: [train] lr: expected a number in [0, 10], got \"\"");
    expect_text_error(
        "[train]\nsteps = 1.5\n",
        "t.ini:2: [train] steps: expected an integer in [1, 1000000000], got \"1.5\"");
    expect_text_error(
        "[train]\nsteps = 10 20\n",
        "t.ini:2: [train] steps: expected an integer in [1, 1000000000], got \"10 20\"");
    expect_text_error(
        "[train]\nsteps = 1__0\n",
        "t.ini:2: [train] steps: expected an integer in [1, 1000000000], got \"1__0\"");
    expect_text_error("[train]\nsteps = \"10\"\n",
                      "t.ini:2: [train] steps: expected an integer in [1, 1000000000], got \"10\"");
    expect_text_error("[model]\nlayers = 0\n",
                      "t.ini:2: [model] layers: expected an integer in [1, 4096], got \"0\"");
    expect_text_error("[model]\nvocab = 99999999999999999999\n",
                      "t.ini:2: [model] vocab: expected an integer in [2, 2147483520], got "
                      "\"99999999999999999999\"");
    expect_text_error(
        "[run]\nseed = -1\n",
        "t.ini:2: [run] seed: expected an integer in [0, 9007199254740991], got \"-1\"");
    expect_text_error("[comm]\ntimeout_s = 0\n",
                      "t.ini:2: [comm] timeout_s: expected a number in [0.01, 86400], got \"0\"");
    expect_text_error("[run]\nname = myrun\n",
                      "t.ini:2: [run] name: expected a quoted string, got myrun (write \"myrun\")");
    expect_text_error(
        "[run]\nname = \"myrun\n",
        "t.ini:2: [run] name: expected a quoted string, got \"myrun (missing closing quote)");
    expect_text_error("[run]\nname = \"a\" b\n", "t.ini:2: [run] name: expected a quoted string, "
                                                 "got \"a\" b (unexpected text after the string)");
    expect_text_error("[run]\nname = \"a\\tb\"\n",
                      "t.ini:2: [run] name: expected a quoted string, got \"a\\tb\" (only \\\\ and "
                      "\\\" escapes are supported)");
    expect_text_error("[run]\nbackend = \"gpu\"\n",
                      "t.ini:2: [run] backend: expected one of auto|cpu|cuda, got \"gpu\"");
    expect_text_error(
        "[run]\nbackend = cpu\n",
        "t.ini:2: [run] backend: expected one of auto|cpu|cuda, got cpu (write \"cpu\")");
    expect_text_error("[run]\nname = \"a;b\"\n",
                      "t.ini:2: [run] name: ';' is not allowed in config values");
    expect_text_error("[run]\nname = \"a ;b\"\n",
                      "t.ini:2: [run] name: ';' is not allowed in config values");
    expect_text_error("[run]\nseed = 1 ; comment\n",
                      "t.ini:2: [run] seed: ';' is not allowed in config values");
    expect_text_error("; comment\n",
                      "t.ini:1: ';' comments are not supported (start comments with '#')");
    expect_text_error("[run]\nseed = 1\n  2\n",
                      "t.ini:3: indented line: continuation lines are not supported (remove the "
                      "leading whitespace)");
    expect_text_error("[run]\n seed = 1\n",
                      "t.ini:2: indented line: continuation lines are not supported (remove the "
                      "leading whitespace)");
    expect_text_error("[run]\nseed: 1\n",
                      "t.ini:2: expected \"key = value\", \"[section]\" or \"# comment\"");
    expect_text_error("[run]\nseed\n",
                      "t.ini:2: expected \"key = value\", \"[section]\" or \"# comment\"");
    expect_text_error("[run]\n = 1\n",
                      "t.ini:2: indented line: continuation lines are not supported (remove the "
                      "leading whitespace)");
    expect_text_error("[run]\n= 1\n", "t.ini:2: expected a key name before '='");
    expect_text_error("[train]\nlr = 0.1\nsteps = 5\nlr = 0.2\n",
                      "t.ini:4: [train] lr: duplicate key (first set on line 2)");

    // over-long lines: 199 characters (libinih would shift the following line numbers) and a
    // much longer one (libinih would split it); also a long comment line
    char text[1200];
    snprintf(text, sizeof text, "[data]\ntrain = \"%0*d\"\n", 199 - (int)strlen("train = \"\""), 0);
    expect_text_error(text, "t.ini:2: line is 199 characters long; at most 198 are allowed");
    snprintf(text, sizeof text, "[data]\n\n# %0*d\n", 900, 0);
    expect_text_error(text, "t.ini:3: line is 902 characters long; at most 198 are allowed");
    // a string that fits its line but not the field
    snprintf(text, sizeof text, "[run]\nname = \"%0*d\"\n", 150, 0);
    expect_text_error(text,
                      "t.ini:2: [run] name: expected a string of at most 127 characters, got 150");
    snprintf(text, sizeof text, "[data]\nval = \"%0*d\"\n", 181, 0);
    expect_text_error(text,
                      "t.ini:2: [data] val: expected a string of at most 180 characters, got 181");
    const char nul[] = "[run]\nseed = 1\0\n";
    tessera_config c;
    config_defaults(&c);
    log_capture_reset();
    CHECK(config_parse_text(&c, nul, sizeof nul - 1, "t.ini") == TS_ERR_INPUT);
    char got[512];
    CHECK(log_capture_errors(got, sizeof got) == 1);
    CHECK(strcmp(got, "t.ini:2: unexpected NUL byte (is this a text file?)") == 0);
}

static void test_overrides(void) {
    tessera_config c;
    config_defaults(&c);
    log_capture_reset();
    CHECK(config_apply_override(&c, "--train.lr=3e-4") == TS_OK && c.train.lr == 3e-4);
    CHECK(config_apply_override(&c, "train.steps=7") == TS_OK && c.train.steps == 7);
    CHECK(config_apply_override(&c, "--run.name=two words") == TS_OK);
    CHECK(strcmp(c.run.name, "two words") == 0);
    CHECK(config_apply_override(&c, "--run.name=\"quoted\"") == TS_OK);
    CHECK(strcmp(c.run.name, "quoted") == 0);
    CHECK(config_apply_override(&c, "--data.train=/tmp/x=y/train_*.bin") == TS_OK);
    CHECK(strcmp(c.data.train, "/tmp/x=y/train_*.bin") == 0);
    CHECK(config_apply_override(&c, "--run.backend=cuda") == TS_OK);
    CHECK(strcmp(c.run.backend, "cuda") == 0);
    CHECK(config_apply_override(&c, "--run.seed=9007199254740991") == TS_OK);
    CHECK(c.run.seed == 9007199254740991LL);
    CHECK(config_apply_override(&c, "--comm.timeout_s=1") == TS_OK && c.comm.timeout_s == 1.0);
    char first[256];
    CHECK(log_capture_errors(first, sizeof first) == 0);

    expect_override_error("--train.lr",
                          "--train.lr: expected --section.key=value (e.g. --train.lr=3e-4)");
    expect_override_error("--lr=1", "--lr: expected --section.key=value (e.g. --train.lr=3e-4)");
    expect_override_error("--.lr=1", "--.lr: expected --section.key=value (e.g. --train.lr=3e-4)");
    expect_override_error("--train.=1",
                          "--train.: expected --section.key=value (e.g. --train.lr=3e-4)");
    expect_override_error("--train.lr=abc",
                          "--train.lr: expected a number in [0, 10], got \"abc\"");
    expect_override_error("--train.lr=1 # c",
                          "--train.lr: expected a number in [0, 10], got \"1 # c\"");
    expect_override_error("--trian.lr=1",
                          "--trian.lr: unknown section \"trian\" (did you mean \"train\"?)");
    expect_override_error("--foo.lr=1",
                          "--foo.lr: unknown section \"foo\" (sections: run, model, data, train, "
                          "eval, log, comm, ckpt, diloco, balance)");
    expect_override_error("--train.lrr=1",
                          "--train.lrr: unknown key \"lrr\" (did you mean --train.lr?)");
    expect_override_error("--train.every=1",
                          "--train.every: unknown key \"every\" (did you mean --eval.every?)");
    expect_override_error("--run.backend=gpu",
                          "--run.backend: expected one of auto|cpu|cuda, got \"gpu\"");
    expect_override_error("--run.name=a;b",
                          "--run.name: ';' is not allowed in config values, got \"a;b\"");
    expect_override_error(
        "--run.name=a\nb",
        "--run.name: control characters are not allowed in strings, got \"a\\x0ab\"");
    char arg[400];
    snprintf(arg, sizeof arg, "--data.train=%0*d", 181, 0);
    expect_override_error(arg,
                          "--data.train: expected a string of at most 180 characters, got 181");
    snprintf(arg, sizeof arg, "--data.train=%0*d\"", 179, 0); // the quote is escaped when written
    expect_override_error(arg,
                          "--data.train: expected a string of at most 180 characters, got 181");
}

// config_write -> config_parse_text gives the same struct, and every written line fits.
static void round_trip(const tessera_config *a) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_write(a, f);
    fclose(f);
    tessera_config b;
    config_defaults(&b);
    log_capture_reset();
    ts_status st = config_parse_text(&b, buf, len, "resolved.ini");
    CHECK(st == TS_OK);
    CHECK(configs_equal(a, &b));
    for (char *line = buf; *line;) {
        size_t n = strcspn(line, "\n");
        CHECK(n <= 198);
        line += n + (line[n] == '\n');
    }
    // where the values came from is not written: the same text as with every origin cleared
    tessera_config plain = *a;
    memset(plain.origin, 0, sizeof plain.origin);
    char *plain_buf = NULL;
    size_t plain_len = 0;
    f = open_memstream(&plain_buf, &plain_len);
    config_write(&plain, f);
    fclose(f);
    CHECK(plain_len == len && strcmp(plain_buf, buf) == 0);
    free(plain_buf);
    if (st != TS_OK || !configs_equal(a, &b)) fprintf(stderr, "written config:\n%s", buf);
    free(buf);
}

static void test_round_trip(void) {
    tessera_config c;
    config_defaults(&c);
    round_trip(&c);
    const char *sets[] = {
        "--run.name=a \"quoted\" \\ name # with a hash",
        "--run.seed=9007199254740991",
        "--run.backend=cpu",
        "--train.lr=0.30000000000000004",
        "--train.eps=1e-30",
        "--train.beta2=0.999999",
        "--train.weight_decay=0",
        "--train.grad_clip=1000000",
        "--comm.timeout_s=0.3333333333333333",
        "--model.vocab=2147483520",
        "--eval.every=0",
    };
    log_capture_reset();
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        CHECK(config_apply_override(&c, sets[i]) == TS_OK);
    // the longest strings allowed, with characters that need escaping
    char longest[200];
    memset(longest, '\\', 45); // 45 escaped backslashes + 90 digits: 180 characters written
    snprintf(longest + 45, sizeof longest - 45, "%0*d", 90, 0);
    strcpy(c.data.tokenizer, longest);
    round_trip(&c);
}

// config_validate must fail with exactly one error line equal to `want`.
static void expect_invalid(const tessera_config *c, int world, const char *what, const char *want) {
    log_capture_reset();
    ts_status st = config_validate(c, world);
    char got[1024];
    int n = log_capture_errors(got, sizeof got);
    if (st != TS_ERR_INPUT || n != 1 || strcmp(got, want) != 0) {
        fprintf(stderr, "validate %s: status %d, %d lines\n  want: %s\n  got:  %s\n", what, (int)st,
                n, want, got);
        g_failures++;
    }
}

// The defaults, then `text` as file t.ini (may be NULL), then the overrides (space-separated).
static void load(tessera_config *c, const char *text, const char *overrides) {
    config_defaults(c);
    log_capture_reset();
    if (text) CHECK(config_parse_text(c, text, strlen(text), "t.ini") == TS_OK);
    char args[512];
    snprintf(args, sizeof args, "%s", overrides);
    for (char *arg = strtok(args, " "); arg; arg = strtok(NULL, " "))
        CHECK(config_apply_override(c, arg) == TS_OK);
}

static void test_validate(void) {
    const char *heads_why = "; each head gets width / heads channels";
    const char *batch_why = "; every rank needs at least one sequence per step";
    char want[512];
    tessera_config c;

    // from an override: the line starts with the argument
    load(&c, NULL, "--model.heads=3");
    snprintf(want, sizeof want,
             "--model.heads=3: expected a divisor of model.width = 128 (default), got 3%s",
             heads_why);
    expect_invalid(&c, 1, "override heads", want);
    load(&c, NULL, "--train.global_batch=2");
    snprintf(want, sizeof want,
             "--train.global_batch=2: expected at least the number of ranks (3), got 2%s",
             batch_why);
    expect_invalid(&c, 3, "override global_batch", want);
    load(&c, NULL, "--run.name=a/b");
    expect_invalid(&c, 1, "override name a/b",
                   "--run.name=a/b: expected a directory name (not empty, no '/', not \".\" or "
                   "\"..\"), got \"a/b\"");
    load(&c, NULL, "--run.name=..");
    expect_invalid(&c, 1, "override name ..",
                   "--run.name=..: expected a directory name (not empty, no '/', not \".\" or "
                   "\"..\"), got \"..\"");
    load(&c, NULL, "--data.val=");
    expect_invalid(&c, 1, "override empty", "--data.val=: expected a non-empty string, got \"\"");

    // from the file: FILE:LINE: [section] key
    load(&c, "[model]\nwidth = 30\n", "");
    snprintf(want, sizeof want,
             "t.ini:2: [model] width: expected a multiple of model.heads = 4 (default), got 30%s",
             heads_why);
    expect_invalid(&c, 1, "file width, default heads", want);
    load(&c, "[run]\nname = \"\"\n", "");
    expect_invalid(&c, 1, "file empty name",
                   "t.ini:2: [run] name: expected a directory name (not empty, no '/', not \".\" "
                   "or \"..\"), got \"\"");
    load(&c, "[data]\ntokenizer = \"\"\n", "");
    expect_invalid(&c, 1, "file empty tokenizer",
                   "t.ini:2: [data] tokenizer: expected a non-empty string, got \"\"");
    load(&c, "[train]\nglobal_batch = 3\n", "");
    CHECK(config_validate(&c, 3) == TS_OK);
    snprintf(want, sizeof want,
             "t.ini:2: [train] global_batch: expected at least the number of ranks (4), got 3%s",
             batch_why);
    expect_invalid(&c, 4, "file global_batch", want);

    // a default: [section] key (default)
    load(&c, NULL, "");
    snprintf(want, sizeof want,
             "[train] global_batch (default): expected at least the number of ranks (33), got 32%s",
             batch_why);
    expect_invalid(&c, 33, "default global_batch", want);

    // two keys: the one set last is named, the other given with its value and origin
    load(&c, "[model]\nheads = 3\nwidth = 128\n", ""); // width on the later line
    snprintf(want, sizeof want,
             "t.ini:3: [model] width: expected a multiple of model.heads = 3 (line 2), got 128%s",
             heads_why);
    expect_invalid(&c, 1, "file, width later", want);
    load(&c, "[model]\nwidth = 128\nheads = 3\n", ""); // heads on the later line
    snprintf(want, sizeof want,
             "t.ini:3: [model] heads: expected a divisor of model.width = 128 (line 2), got 3%s",
             heads_why);
    expect_invalid(&c, 1, "file, heads later", want);
    load(&c, "[model]\nwidth = 96\nheads = 4\n", "--model.width=30"); // override over the file
    snprintf(want, sizeof want,
             "--model.width=30: expected a multiple of model.heads = 4 (t.ini:3), got 30%s",
             heads_why);
    expect_invalid(&c, 1, "override width over file heads", want);
    load(&c, "[model]\nwidth = 96\n", "--model.heads=5"); // override over the file
    snprintf(want, sizeof want,
             "--model.heads=5: expected a divisor of model.width = 96 (t.ini:2), got 5%s",
             heads_why);
    expect_invalid(&c, 1, "override heads over file width", want);
    load(&c, NULL, "--model.width=30 --model.heads=8"); // the later override
    snprintf(want, sizeof want,
             "--model.heads=8: expected a divisor of model.width = 30 (command line), got 8%s",
             heads_why);
    expect_invalid(&c, 1, "two overrides", want);
    load(&c, NULL, "--model.heads=8 --model.width=30 --model.heads=7"); // heads set again
    snprintf(want, sizeof want,
             "--model.heads=7: expected a divisor of model.width = 30 (command line), got 7%s",
             heads_why);
    expect_invalid(&c, 1, "override repeated", want);

    // fields a program set directly: re-checked by their key's rules, named as such
    config_defaults(&c);
    c.model.width = 30;
    snprintf(want, sizeof want,
             "[model] width (set by the program): expected a multiple of model.heads = 4 "
             "(default), got 30%s",
             heads_why);
    expect_invalid(&c, 1, "program width", want);
    config_defaults(&c);
    c.model.seq_len = 1;
    expect_invalid(&c, 1, "program seq_len",
                   "[model] seq_len (set by the program): expected an integer in [2, 1048576], "
                   "got \"1\"");
    config_defaults(&c);
    c.model.heads = 0; // never reaches width % heads
    expect_invalid(&c, 1, "program heads 0",
                   "[model] heads (set by the program): expected an integer in [1, 65536], got "
                   "\"0\"");
    config_defaults(&c);
    c.train.lr = NAN;
    expect_invalid(&c, 1, "program lr nan",
                   "[train] lr (set by the program): expected a number in [0, 10], got \"nan\"");
    config_defaults(&c);
    strcpy(c.run.backend, "gpu");
    expect_invalid(&c, 1, "program backend",
                   "[run] backend (set by the program): expected one of auto|cpu|cuda, got "
                   "\"gpu\"");
    config_defaults(&c);
    strcpy(c.run.name, "a\nb");
    expect_invalid(&c, 1, "program name newline",
                   "[run] name (set by the program): control characters are not allowed in "
                   "strings, got \"a\\x0ab\"");
    config_defaults(&c);
    c.train.global_batch = 3;
    log_capture_reset();
    CHECK(config_validate(&c, 3) == TS_OK);
    snprintf(want, sizeof want,
             "[train] global_batch (set by the program): expected at least the number of ranks "
             "(4), got 3%s",
             batch_why);
    expect_invalid(&c, 4, "program global_batch", want);
}

static void test_batch_share(void) {
    balance_params p = {0, BALANCE_WAIT, 0.1, 0.5, 2, 2, NULL};
    balance b;
    int want_share[3] = {3, 3, 2}, want_offset[3] = {0, 3, 6};
    balance_init(&b, &p, 3, 8, 0);
    for (int r = 0; r < 3; r++)
        CHECK(b.share[r] == want_share[r] && b.offset[r] == want_offset[r]);
    balance_free(&b);
    const int worlds[] = {1, 2, 3, 5};
    const int globals[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 31, 32, 33, 512, 100003};
    for (size_t w = 0; w < sizeof worlds / sizeof worlds[0]; w++)
        for (size_t g = 0; g < sizeof globals / sizeof globals[0]; g++) {
            int world = worlds[w], global = globals[g];
            if (global < world) continue;
            balance_init(&b, &p, world, global, 0);
            int sum = 0, lo = global, hi = 0, next = 0, prev = global;
            for (int r = 0; r < world; r++) {
                int share = b.share[r];
                CHECK(b.offset[r] == next); // contiguous, in rank order
                CHECK(share <= prev);       // earlier ranks take the larger shares
                CHECK(share >= 1);
                next += share;
                sum += share;
                prev = share;
                if (share < lo) lo = share;
                if (share > hi) hi = share;
            }
            CHECK(sum == global);
            CHECK(hi - lo <= 1);
            balance_free(&b);
        }
}

// shares from speeds: the least makespan (checked against every split of 10 over 3 ranks), each
// rank at least one sequence; the queue of samples given back, and re-balancing on drift
static void test_balance(void) {
    const double v[3] = {4, 2, 1}, f[3] = {0.1, 0, 0.3};
    int s[3];
    balance_optimal(3, 10, v, f, s);
    CHECK(s[0] + s[1] + s[2] == 10 && s[0] >= 1 && s[1] >= 1 && s[2] >= 1);
    double got = 0, best = 1e30;
    for (int r = 0; r < 3; r++)
        if (f[r] + s[r] / v[r] > got) got = f[r] + s[r] / v[r];
    for (int a = 1; a <= 8; a++)
        for (int c = 1; a + c <= 9; c++) {
            int x[3] = {a, c, 10 - a - c};
            double m = 0;
            for (int r = 0; r < 3; r++)
                if (f[r] + x[r] / v[r] > m) m = f[r] + x[r] / v[r];
            if (m < best) best = m;
        }
    CHECK(fabs(got - best) < 1e-12);
    // declared speeds: a count equal to the world, positive finite numbers, commas between
    double d[3];
    int nd;
    CHECK(balance_parse_speeds("", 3, d, &nd) == 0 && nd == 0);
    CHECK(balance_parse_speeds(" 1, 0.5,2", 3, d, &nd) == 1 && nd == 3 && d[1] == 0.5);
    CHECK(balance_parse_speeds("1,2", 3, d, &nd) == -1 && nd == 2);
    const char *bad_speeds[] = {"1,,2",    "1,2,",    "1;2;3",     "1,-2,3", "1,0,3",
                                "1,nan,3", "1,inf,3", "1,1e999,3", "1 2 3",  "x"};
    for (size_t i = 0; i < sizeof bad_speeds / sizeof bad_speeds[0]; i++)
        EXPECT(balance_parse_speeds(bad_speeds[i], 3, d, &nd) == -1 && nd == -1,
               "speeds \"%s\" accepted (count %d)", bad_speeds[i], nd);
    // a rank far slower than the rest keeps one sequence
    const double slow[3] = {100, 100, 0.01}, zero[3] = {0, 0, 0};
    balance_optimal(3, 10, slow, zero, s);
    CHECK(s[2] == 1);

    // step 1 of 3 ranks x 4: rank 1 does 1 of its 4; its 3 others come first in step 2
    balance_params p = {1, BALANCE_DROP, 0.1, 0.5, 2, 2, NULL};
    balance b;
    balance_init(&b, &p, 3, 12, 0);
    balance_plan(&b);
    CHECK(b.list[0] == 0 && b.list[11] == 11);
    double done[3] = {4, 1, 4}, fb[3] = {1, 1, 1}, fx[3] = {0, 0, 0}, late[3] = {0, 1, 0};
    CHECK(balance_commit(&b, done, fb, fx, late, 1, 1, 0, NULL, 0) == 9);
    CHECK(b.n_queue == 3 && b.queue[0] == 5 && b.queue[2] == 7 && b.cursor == 12);
    CHECK(b.drops == 1 && b.dropped == 3);
    balance_plan(&b);
    CHECK(b.list[0] == 5 && b.list[2] == 7 && b.list[3] == 12 && b.list[11] == 20);
    // measured 4, 1 and 4 samples/s: rank 1 gets less than the others
    CHECK(b.speed[1] == 1 && b.speed[0] == 4);
    CHECK(b.share[1] < b.share[0] && b.share[0] + b.share[1] + b.share[2] == 12);
    int before[3] = {b.share[0], b.share[1], b.share[2]};
    // nothing given back: the cursor moves past the 9 fresh samples, the queue empties; the
    // same speeds again change nothing
    double all[3] = {b.share[0], b.share[1], b.share[2]};
    CHECK(balance_commit(&b, all, (double[]){all[0] / 4, all[1], all[2] / 4}, fx,
                         (double[]){0, 0, 0}, 1, 2, 0, NULL, 0) == 12);
    CHECK(b.n_queue == 0 && b.cursor == 21);
    CHECK(memcmp(before, b.share, sizeof before) == 0);
    balance_free(&b);
}

static void test_help(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_help(f);
    fclose(f);
    for (int i = 0; i < cfg_n_keys; i++) {
        char full[64];
        snprintf(full, sizeof full, "  %s.%s ", cfg_keys[i].section, cfg_keys[i].name);
        CHECK(strstr(buf, full) != NULL);
        CHECK(strstr(buf, cfg_keys[i].help) != NULL);
    }
    char row[256];
    snprintf(row, sizeof row, "  %-22s %-34s %-28s %s\n", "train.lr", "number in [0, 10]", "0.001",
             "peak learning rate, reached after warmup");
    CHECK(strstr(buf, row) != NULL);
    snprintf(row, sizeof row, "  %-22s %-34s %-28s ", "run.backend", "one of auto|cpu|cuda",
             "\"auto\"");
    CHECK(strstr(buf, row) != NULL);
    snprintf(row, sizeof row, "  %-22s %-34s %-28s ", "run.seed",
             "integer in [0, 9007199254740991]", "1337");
    CHECK(strstr(buf, row) != NULL);
    free(buf);
}

static void test_read_file(void) {
    char *text;
    size_t len;
    log_capture_reset();
    CHECK(config_read_file("no/such/config.ini", &text, &len) == TS_ERR_INPUT);
    char got[512];
    CHECK(log_capture_errors(got, sizeof got) == 1);
    CHECK(strcmp(got, "no/such/config.ini: cannot open config file: No such file or directory") ==
          0);
    log_capture_reset();
    CHECK(config_read_file(".", &text, &len) == TS_ERR_INPUT);
    CHECK(log_capture_errors(got, sizeof got) == 1);
    CHECK(strcmp(got, ".: config file is not a regular file (a FIFO, device, directory or "
                      "socket); expected a regular file") == 0);
    // a FIFO would block a reader forever: refused before it is opened
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/tessera-config-fifo-%d", (int)getpid());
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0);
    log_capture_reset();
    CHECK(config_read_file(fifo, &text, &len) == TS_ERR_INPUT);
    CHECK(log_capture_errors(got, sizeof got) == 1 && strstr(got, "is not a regular file"));
    unlink(fifo);
}

// ---------------------------------------------------------------------------------------------
// the files shared with the command-line tests

// What `tessera train FILE ARGS` does with its config before any other work, at `world` ranks.
static ts_status load_like_train(const char *path, char *args, int world) {
    tessera_config cfg;
    config_defaults(&cfg);
    char *text;
    size_t len;
    TS_CHECK(config_read_file(path, &text, &len));
    ts_status st = config_parse_text(&cfg, text, len, path);
    free(text);
    if (st != TS_OK) return st;
    for (char *arg = strtok(args, " "); arg; arg = strtok(NULL, " "))
        TS_CHECK(config_apply_override(&cfg, arg));
    return config_validate(&cfg, world);
}

// "# key: value" header line of a case file
static int case_field(const char *text, const char *key, char *out, size_t n) {
    char tag[32];
    snprintf(tag, sizeof tag, "# %s: ", key);
    const char *p = strstr(text, tag);
    if (!p) return 0;
    p += strlen(tag);
    size_t len = strcspn(p, "\n");
    snprintf(out, n, "%.*s", (int)len, p);
    return 1;
}

static int list_ini(const char *dir, char names[][256], int cap) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".ini") == 0)
            snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

static void test_bad_files(const char *dir) {
    static char names[128][256];
    int n = list_ini(dir, names, 128);
    CHECK(n >= 13);
    for (int i = 0; i < n; i++) {
        char path[1024], expect[512], args[512] = "", ranks[32] = "1", *text;
        size_t len;
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) continue;
        CHECK(config_read_file(path, &text, &len) == TS_OK);
        int has_expect = case_field(text, "expect", expect, sizeof expect);
        case_field(text, "args", args, sizeof args);
        case_field(text, "ranks", ranks, sizeof ranks);
        free(text);
        if (!has_expect) {
            fprintf(stderr, "%s: no \"# expect:\" line\n", path);
            g_failures++;
            continue;
        }
        regex_t re;
        if (regcomp(&re, expect, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "%s: bad regex %s\n", path, expect);
            g_failures++;
            continue;
        }
        // the largest rank count the case is run with
        int world = 1;
        for (char *p = ranks; *p; p++)
            if (*p >= '1' && *p <= '9' && *p - '0' > world) world = *p - '0';
        log_capture_reset();
        ts_status st = load_like_train(path, args, world);
        char got[4096];
        int lines = log_capture_errors(got, sizeof got);
        if (st != TS_ERR_INPUT || lines != 1 || regexec(&re, got, 0, NULL, 0) != 0) {
            fprintf(stderr, "%s: status %d, %d error lines\n  want: %s\n  got:  %s\n", path,
                    (int)st, lines, expect, got);
            g_failures++;
        }
        regfree(&re);
    }
}

static void test_shipped_configs(const char *dir) {
    static char names[32][256];
    int n = list_ini(dir, names, 32);
    CHECK(n >= 3);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) continue;
        seen += strcmp(names[i], "demo.ini") == 0 || strcmp(names[i], "tiny.ini") == 0 ||
                strcmp(names[i], "gpt2-124m.ini") == 0;
        for (int world = 1; world <= 2; world++) {
            log_capture_reset();
            char none[1] = "";
            ts_status st = load_like_train(path, none, world);
            char got[4096];
            if (st != TS_OK) {
                log_capture_errors(got, sizeof got);
                fprintf(stderr, "%s (world %d): %s\n", path, world, got);
                g_failures++;
            }
        }
    }
    CHECK(seen == 3);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_config BAD_DIR CONFIGS_DIR\n");
        return 2;
    }
    log_set_quiet_errors(1); // expected errors go to the capture file only
    test_key_table();
    test_defaults();
    test_parse();
    test_text_errors();
    test_overrides();
    test_round_trip();
    test_validate();
    test_batch_share();
    test_balance();
    test_help();
    test_read_file();
    test_bad_files(argv[1]);
    test_shipped_configs(argv[2]);
    if (g_failures) {
        fprintf(stderr, "test_config: %d checks failed\n", g_failures);
        return 1;
    }
    printf("test_config: all checks passed\n");
    return 0;
}
