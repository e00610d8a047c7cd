// common.c — status names, exit-code mapping, logging, the ways to die, checked allocation,
// clock.
#include "base/common.h"

#include "base/env.h"
#include "base/status_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int ts_exit_code(ts_status st) {
    switch (st) {
    case TS_OK: return TS_EXIT_OK;
    case TS_ERR_INPUT: return TS_EXIT_INPUT;
    case TS_ERR_PEER: return TS_EXIT_PEER_LOST;
    case TS_ERR_SYSTEM: return TS_EXIT_SYSTEM;
    case TS_ERR_INTERNAL: return TS_EXIT_INTERNAL;
    }
    return TS_EXIT_INTERNAL;
}

const char *ts_status_name(ts_status st) {
    switch (st) {
    case TS_OK: return "ok";
    case TS_ERR_INPUT: return "bad input";
    case TS_ERR_PEER: return "peer lost";
    case TS_ERR_SYSTEM: return "system error";
    case TS_ERR_INTERNAL: return "internal error";
    }
    return "unknown";
}

const char *ts_status_reason(ts_status st) {
    switch (st) {
    case TS_OK: return "finished";
    case TS_ERR_INPUT: return "bad_input";
    case TS_ERR_PEER: return "peer_lost";
    case TS_ERR_SYSTEM: return "system";
    case TS_ERR_INTERNAL: break;
    }
    return "internal";
}

// ---------------------------------------------------------------------------------------------
// logging

static struct {
    int rank, world;
    log_level level;
    int quiet_errors;
    FILE *file;
    char last_error[2048]; // the last error line, kept for log_replay_last_error
} g_log = {0, 1, LOG_INFO, 0, NULL, ""};

void log_init(int rank, int world) {
    g_log.rank = rank;
    g_log.world = world;
    const char *lvl = env_get("TESSERA_LOG");
    if (lvl && strcmp(lvl, "debug") == 0) g_log.level = LOG_DEBUG;
    if (lvl && strcmp(lvl, "warn") == 0) g_log.level = LOG_WARN;
    if (lvl && strcmp(lvl, "error") == 0) g_log.level = LOG_ERROR;
}

void log_set_level(log_level lvl) { g_log.level = lvl; }
void log_set_quiet_errors(int quiet) { g_log.quiet_errors = quiet; }
void log_set_file(FILE *f) { g_log.file = f; }

static void log_vemit(log_level lvl, int all_ranks, const char *fmt, va_list ap) {
    static const char *tags[] = {"error: ", "warning: ", "", "debug: "};
    char prefix[48];
    if (g_log.world > 1)
        snprintf(prefix, sizeof prefix, "tessera[%d]: ", g_log.rank);
    else
        snprintf(prefix, sizeof prefix, "tessera: ");
    char body[2048];
    vsnprintf(body, sizeof body, fmt, ap);
    if (lvl == LOG_ERROR) snprintf(g_log.last_error, sizeof g_log.last_error, "%s", body);
    if (g_log.file) {
        fprintf(g_log.file, "%s%s%s\n", prefix, tags[lvl], body);
        fflush(g_log.file);
    }
    if (lvl > g_log.level) return;
    if (lvl == LOG_ERROR && g_log.quiet_errors) return;
    if ((lvl == LOG_INFO || lvl == LOG_DEBUG) && !all_ranks && g_log.rank != 0) return;
    FILE *out = lvl <= LOG_WARN ? stderr : stdout;
    fprintf(out, "%s%s%s\n", prefix, tags[lvl], body);
    fflush(out);
}

void log_msg(log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vemit(lvl, lvl <= LOG_WARN, fmt, ap);
    va_end(ap);
}

void log_all(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vemit(LOG_INFO, 1, fmt, ap);
    va_end(ap);
}

void log_replay_last_error(void) {
    int quiet = g_log.quiet_errors;
    g_log.quiet_errors = 0;
    if (g_log.last_error[0]) log_msg(LOG_ERROR, "%s", g_log.last_error);
    g_log.quiet_errors = quiet;
}

// ---------------------------------------------------------------------------------------------
// the ways to die: each leaves the status file, so the launcher knows why

TS_NORETURN void ts_panic(const char *file, int line, const char *msg) {
    fprintf(stderr, "tessera[%d]: internal error at %s:%d: %s\n", g_log.rank, file, line, msg);
    fprintf(stderr,
            "---> HINT: this is a bug in tessera; please report it with the command line\n");
    fflush(stderr);
    if (g_log.file) fprintf(g_log.file, "internal error at %s:%d: %s\n", file, line, msg);
    status_file_write("internal", NULL, -1, TS_EXIT_INTERNAL);
    abort();
}

TS_NORETURN void ts_exit(ts_status st) {
    if (st != TS_ERR_PEER || !status_file_written())
        status_file_write(ts_status_reason(st), NULL, -1, ts_exit_code(st));
    // Out at once: other threads (the checkpoint writer, OpenMP workers, MPI's progress
    // threads) may be inside a library whose exit handlers would race them, hang or crash. The
    // streams are flushed; files being written stay temporaries, which nothing takes for whole.
    fflush(NULL);
    _exit(ts_exit_code(st));
}

TS_NORETURN void ts_fatal(ts_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vemit(LOG_ERROR, 1, fmt, ap);
    va_end(ap);
    if (st == TS_OK) st = TS_ERR_INTERNAL; // dying is never "ok"
    ts_exit(st);
}

// ---------------------------------------------------------------------------------------------
// allocation and time

void *ts_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        ts_fatal(TS_ERR_SYSTEM, "out of memory allocating %zu bytes for %s", bytes, what);
    }
    return p;
}

void *ts_calloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        ts_fatal(TS_ERR_SYSTEM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    }
    return p;
}

void *ts_aligned_alloc(size_t bytes, const char *what) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        ts_fatal(TS_ERR_SYSTEM, "out of memory allocating %zu bytes for %s", bytes, what);
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

double ts_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
