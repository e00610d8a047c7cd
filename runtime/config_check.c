// config_check.c — the checks across keys (config_validate): each names the key set last, with
// the other key's value and where it came from.
#include "runtime/balance.h"
#include "runtime/config.h"
#include "runtime/config_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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

// A check between keys a and b (values a_value, b_value as text): the error is about the one set
// last: "expected <what it should be> <the other key> = <value> (<origin>), got <value>; why".
static ts_status cfg_reject_pair(const cfg_checker *ck, int a, int b, const char *a_value,
                                 const char *b_value, const char *a_expected,
                                 const char *b_expected, const char *why) {
    int a_last = cfg_recency(ck, a) >= cfg_recency(ck, b);
    int subject = a_last ? a : b, other = a_last ? b : a;
    char note[CFG_STR + 32];
    cfg_origin_note(ck, other, subject, note, sizeof note);
    return cfg_reject(ck, subject, "expected %s %s.%s = %s (%s), got %s; %s",
                      a_last ? a_expected : b_expected, cfg_keys[other].section,
                      cfg_keys[other].name, a_last ? b_value : a_value, note,
                      a_last ? a_value : b_value, why);
}

// local SGD with the keys it cannot go with
static ts_status cfg_check_diloco(const cfg_checker *ck) {
    const tessera_config *cfg = ck->cfg;
    int H = cfg->diloco.inner_steps, F = cfg->diloco.fragments;
    if (H == 0) return TS_OK;
    int inner = cfg_key_index("diloco", "inner_steps");
    char hs[32], other[32];
    snprintf(hs, sizeof hs, "%d", H);
    if (cfg->comm.zero_stage == 1) {
        snprintf(other, sizeof other, "%d", cfg->comm.zero_stage);
        return cfg_reject_pair(ck, inner, cfg_key_index("comm", "zero_stage"), hs, other,
                               "0 (plain data parallelism) with", "0 with",
                               "in local SGD every rank keeps its own whole inner optimizer "
                               "state, which ZeRO-1 would shard");
    }
    if (F > 1 && H % F != 0) {
        snprintf(other, sizeof other, "%d", F);
        return cfg_reject_pair(ck, inner, cfg_key_index("diloco", "fragments"), hs, other,
                               "a multiple of", "a divisor of",
                               "one fragment is synced every inner_steps / fragments steps");
    }
    if (F == 1 && cfg->ckpt.every > 0 && cfg->ckpt.every % H != 0) {
        snprintf(other, sizeof other, "%d", cfg->ckpt.every);
        return cfg_reject_pair(ck, inner, cfg_key_index("ckpt", "every"), hs, other, "a divisor of",
                               "a multiple of",
                               "checkpoints are taken right after the ranks' parameters are "
                               "synced (with diloco.fragments > 1, at any step)");
    }
    return TS_OK;
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
    // (and balance.speeds: none declared)
    int resume_key = cfg_key_index("run", "resume"),
        speeds_key = cfg_key_index("balance", "speeds");
    for (int k = 0; k < cfg_n_keys; k++)
        if (cfg_keys[k].type == CFG_STRING && k != resume_key && k != speeds_key &&
            ((const char *)cfg + cfg_keys[k].offset)[0] == '\0')
            return cfg_reject(ck, k, "expected a non-empty string, got \"\"");
    // declared speeds: positive numbers (how many is checked against the world size at start:
    // a restart on fewer ranks keeps its config)
    double unused;
    int n_speeds;
    if (balance_parse_speeds(cfg->balance.speeds, 0, &unused, &n_speeds) < 0 && n_speeds < 0)
        return cfg_reject(ck, cfg_key_index("balance", "speeds"),
                          "expected positive numbers separated by commas (\"1,1,0.5\": one "
                          "relative speed per rank), got \"%s\"",
                          cfg->balance.speeds);
    return cfg_check_diloco(ck);
}
