// config_file.c — reading config files. libinih splits the text into sections and
// `key = value` pairs; a line reader of ours hands it the text line by line and first rejects what
// libinih would silently misread: an indented line (libinih continues the previous value with
// it), ';' (libinih starts a comment at " ;", even inside quotes), a line longer than libinih's
// buffer (split in two, shifting every later line number). Values are then checked by the key
// table's parser (config.c), and FILE:LINE is recorded as the origin of each key set, for
// config_validate's messages. Every error is one line "FILE:LINE: ...".
#define INI_HANDLER_LINENO 1 // the handler gets the line number (libinih 55 passes it)
#include <ini.h>

#include "base/fs.h"
#include "runtime/config.h"
#include "runtime/config_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *text, *filename;
    size_t len, pos;
    int lineno;  // lines handed to libinih so far
    int section; // section of the lines being read (-1: none yet)
    int section_line[CFG_MAX_SECTIONS];
    int key_line[CFG_MAX_KEYS]; // where each key was set in this text (0: not set)
    tessera_config *cfg;
    int failed; // an error was reported: ignore the rest
} cfg_parse_state;

static void cfg_fail(cfg_parse_state *st, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_fail(cfg_parse_state *st, int line, const char *fmt, ...) {
    char body[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    log_error("%s:%d: %s", st->filename, line, body);
    st->failed = 1;
}

// "[train] lr: " or "lr: " before any section, for messages about one line
static void cfg_where(const cfg_parse_state *st, const char *name, char *buf, size_t n) {
    const char *names[CFG_MAX_SECTIONS];
    cfg_sections(names);
    if (st->section >= 0)
        snprintf(buf, n, "[%s] %s: ", names[st->section], name);
    else
        snprintf(buf, n, "%s: ", name);
}

static int cfg_check_section_line(cfg_parse_state *st, const char *line, size_t n) {
    const char *close = memchr(line, ']', n);
    if (!close) {
        cfg_fail(st, st->lineno, "expected \"]\" to close the section header");
        return 0;
    }
    char name[64];
    size_t nl = (size_t)(close - line - 1);
    snprintf(name, sizeof name, "%.*s", (int)(nl < 60 ? nl : 60), line + 1);
    const char *after = close + 1, *end = line + n;
    while (after < end && (*after == ' ' || *after == '\t'))
        after++;
    if (after < end && *after != '#') {
        cfg_fail(st, st->lineno, "unexpected text after [%s] (only a # comment may follow)", name);
        return 0;
    }
    int s = cfg_find_section(name);
    if (s < 0) {
        const char *hint = cfg_suggest_section(name);
        char list[128];
        cfg_section_list(list, sizeof list);
        if (hint)
            cfg_fail(st, st->lineno, "unknown section [%s] (did you mean [%s]?)", name, hint);
        else
            cfg_fail(st, st->lineno, "unknown section [%s] (sections: %s)", name, list);
        return 0;
    }
    if (st->section_line[s]) {
        cfg_fail(st, st->lineno, "section [%s] appears twice (first on line %d)", name,
                 st->section_line[s]);
        return 0;
    }
    st->section_line[s] = st->lineno;
    st->section = s;
    return 1;
}

// Rules libinih does not enforce, checked on each raw line (n characters, no newline).
static int cfg_check_line(cfg_parse_state *st, const char *line, size_t n, int max_line) {
    if (memchr(line, '\0', n)) {
        cfg_fail(st, st->lineno, "unexpected NUL byte (is this a text file?)");
        return 0;
    }
    if (n > (size_t)max_line) {
        cfg_fail(st, st->lineno, "line is %zu characters long; at most %d are allowed", n,
                 max_line);
        return 0;
    }
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == n || line[i] == '#') return 1; // blank or comment (indented comments are harmless)
    if (i > 0) {
        cfg_fail(st, st->lineno,
                 "indented line: continuation lines are not supported (remove the leading "
                 "whitespace)");
        return 0;
    }
    if (line[0] == ';') {
        cfg_fail(st, st->lineno, "';' comments are not supported (start comments with '#')");
        return 0;
    }
    if (line[0] == '[') return cfg_check_section_line(st, line, n);

    size_t sep = 0;
    while (sep < n && line[sep] != '=' && line[sep] != ':')
        sep++;
    if (sep == n || line[sep] == ':') {
        cfg_fail(st, st->lineno, "expected \"key = value\", \"[section]\" or \"# comment\"");
        return 0;
    }
    size_t name_len = sep;
    while (name_len > 0 && (line[name_len - 1] == ' ' || line[name_len - 1] == '\t'))
        name_len--;
    if (name_len == 0) {
        cfg_fail(st, st->lineno, "expected a key name before '='");
        return 0;
    }
    if (memchr(line, ';', n)) {
        char name[64], where[96];
        snprintf(name, sizeof name, "%.*s", (int)(name_len < 60 ? name_len : 60), line);
        cfg_where(st, name, where, sizeof where);
        cfg_fail(st, st->lineno, "%s';' is not allowed in config values", where);
        return 0;
    }
    return 1;
}

// libinih's line source: one whole line of the text per call, after the checks above.
static char *cfg_reader(char *str, int num, void *stream) {
    cfg_parse_state *st = stream;
    if (st->failed || st->pos >= st->len) return NULL;
    const char *line = st->text + st->pos;
    size_t rest = st->len - st->pos;
    const char *nl = memchr(line, '\n', rest);
    size_t n = nl ? (size_t)(nl - line) : rest;
    st->pos += nl ? n + 1 : n;
    if (n > 0 && line[n - 1] == '\r') n--;
    st->lineno++;
    int max_line = num - 2 < CFG_MAX_LINE ? num - 2 : CFG_MAX_LINE; // room for '\n' and NUL
    if (!cfg_check_line(st, line, n, max_line)) return NULL;
    memcpy(str, line, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value,
                       int lineno) {
    cfg_parse_state *st = user;
    if (st->failed) return 1;
    if (section[0] == '\0') {
        int hint = cfg_suggest_key("", name);
        const char *dot = strchr(name, '.');
        if (dot) {
            char sec[64];
            snprintf(sec, sizeof sec, "%.*s", (int)(dot - name < 60 ? dot - name : 60), name);
            if (cfg_find_key(sec, dot + 1) >= 0) {
                cfg_fail(st, lineno,
                         "key \"%s\" is outside any section (write %s = ... under [%s])", name,
                         dot + 1, sec);
                return 0;
            }
        }
        if (hint >= 0 && strcmp(cfg_keys[hint].name, name) == 0)
            cfg_fail(st, lineno, "key \"%s\" is outside any section (put it under [%s])", name,
                     cfg_keys[hint].section);
        else
            cfg_fail(st, lineno,
                     "key \"%s\" is outside any section (add a [section] line above it)", name);
        return 0;
    }
    int k = cfg_find_key(section, name);
    if (k < 0) {
        int hint = cfg_suggest_key(section, name);
        if (hint >= 0 && strcmp(cfg_keys[hint].section, section) == 0)
            cfg_fail(st, lineno, "[%s] unknown key \"%s\" (did you mean \"%s\"?)", section, name,
                     cfg_keys[hint].name);
        else if (hint >= 0)
            cfg_fail(st, lineno, "[%s] unknown key \"%s\" (did you mean [%s] %s?)", section, name,
                     cfg_keys[hint].section, cfg_keys[hint].name);
        else
            cfg_fail(st, lineno, "[%s] unknown key \"%s\" (tessera train --help lists the keys)",
                     section, name);
        return 0;
    }
    if (st->key_line[k]) {
        cfg_fail(st, lineno, "[%s] %s: duplicate key (first set on line %d)", section, name,
                 st->key_line[k]);
        return 0;
    }
    st->key_line[k] = lineno;
    char err[512];
    if (!cfg_parse_value(&cfg_keys[k], value, 1, st->cfg, err, sizeof err)) {
        cfg_fail(st, lineno, "[%s] %s: %s", section, name, err);
        return 0;
    }
    cfg_set_origin(st->cfg, k, CFG_FROM_FILE, lineno, st->filename);
    return 1;
}

ts_status config_parse_text(tessera_config *cfg, const char *text, size_t len,
                            const char *filename) {
    TS_ASSERT(cfg_n_keys <= CFG_MAX_KEYS);
    tessera_config work = *cfg; // committed only when the whole text is good
    cfg_parse_state st;
    memset(&st, 0, sizeof st);
    st.text = text;
    st.len = len;
    st.filename = filename;
    st.section = -1;
    st.cfg = &work;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) st.pos = 3; // UTF-8 byte order mark
    int rc = ini_parse_stream(cfg_reader, &st, cfg_handler, &st);
    if (st.failed) return TS_ERR_INPUT;
    if (rc == -2) {
        log_error("%s: out of memory while parsing", filename);
        return TS_ERR_SYSTEM;
    }
    if (rc != 0) { // the checks above should leave libinih nothing to reject
        log_error("%s:%d: expected \"key = value\", \"[section]\" or \"# comment\"", filename, rc);
        return TS_ERR_INPUT;
    }
    *cfg = work;
    return TS_OK;
}

ts_status config_read_file(const char *path, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    int fd;
    TS_CHECK(fs_open_regular(path, "config file", &fd));
    char *buf = ts_malloc(CONFIG_MAX_BYTES + 1, "config file");
    size_t n = 0;
    int read_errno = 0;
    while (n < CONFIG_MAX_BYTES + 1) { // one byte past the limit tells "too large"
        ssize_t got = read(fd, buf + n, CONFIG_MAX_BYTES + 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) read_errno = errno;
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(fd);
    if (read_errno) {
        log_error("%s: cannot read config file: %s", path, strerror(read_errno));
        free(buf);
        return TS_ERR_INPUT;
    }
    if (n > CONFIG_MAX_BYTES) {
        log_error("%s: larger than %d bytes; is this really a config file?", path,
                  CONFIG_MAX_BYTES);
        free(buf);
        return TS_ERR_INPUT;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// command lines: CONFIG [--section.key=value ...] [--resume auto|PATH]

// `--resume X` and `--resume=X` are short for --run.resume=X
static int config_is_resume_pair(int argc, char **argv, int i) {
    return strcmp(argv[i], "--resume") == 0 && i + 1 < argc;
}

ts_status config_find_path(int argc, char **argv, const char *cmd, const char **path) {
    *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (config_is_resume_pair(argc, argv, i)) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--", 2) == 0) continue;
        if (*path) {
            log_error("%s: unexpected argument \"%s\" (one CONFIG file, then "
                      "--section.key=value overrides)",
                      cmd, argv[i]);
            return TS_ERR_INPUT;
        }
        *path = argv[i];
    }
    if (!*path) {
        log_error("%s: missing CONFIG file (usage: tessera %s CONFIG [--section.key=value ...])",
                  cmd, cmd);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status config_apply_args(tessera_config *cfg, int argc, char **argv, const char *skip_prefix) {
    for (int i = 1; i < argc; i++) {
        char alias[CFG_STR + 32];
        ts_status st = TS_OK;
        if (config_is_resume_pair(argc, argv, i)) {
            snprintf(alias, sizeof alias, "--run.resume=%s", argv[++i]);
            st = config_apply_override(cfg, alias);
        } else if (strncmp(argv[i], "--resume=", 9) == 0) {
            snprintf(alias, sizeof alias, "--run.resume=%s", argv[i] + 9);
            st = config_apply_override(cfg, alias);
        } else if (skip_prefix && strncmp(argv[i], skip_prefix, strlen(skip_prefix)) == 0) {
            continue; // an option of the command itself, not a key
        } else if (strncmp(argv[i], "--", 2) == 0) {
            st = config_apply_override(cfg, argv[i]);
        }
        if (st != TS_OK) return st;
    }
    return TS_OK;
}
