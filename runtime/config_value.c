// config_value.c — what the key table drives besides the file parser: values from and to text,
// defaults, where each key was set, --section.key=value overrides, `tessera train --help` and the
// resolved config written to the run directory.
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
void cfg_format_value(const cfg_key *k, const tessera_config *cfg, char *buf, size_t n) {
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
// help, resolved config

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
