// common.h — the status type, exit codes, logging and check macros every layer uses.
//
// Non-kernel functions return ts_status. A failing call is logged once where it fails (one clear
// line for the user) and TS_CHECK adds one "at file:line" trace line per frame at debug level as
// the status propagates, so the user sees a single error line and a developer can see the path.
#ifndef TESSERA_COMMON_H
#define TESSERA_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus // the CUDA sources are C++ and include this header
#define TS_NORETURN [[noreturn]]
extern "C" {
#else
#define TS_NORETURN _Noreturn
#endif

// ---------------------------------------------------------------------------------------------
// status and exit codes (documented for users in docs/exit-codes.md)

typedef enum {
    TS_OK = 0,
    TS_ERR_INPUT,    // bad config, data shard, checkpoint or command line  -> exit 2
    TS_ERR_PEER,     // a peer was lost: a collective deadline expired      -> exit 75
    TS_ERR_SYSTEM,   // an OS call failed (I/O, memory)                     -> exit 1
    TS_ERR_INTERNAL, // a bug                                               -> exit 70
} ts_status;

enum {
    TS_EXIT_OK = 0,
    TS_EXIT_SYSTEM = 1,
    TS_EXIT_INPUT = 2,
    TS_EXIT_INTERNAL = 70,
    TS_EXIT_PEER_LOST = 75,
};

int ts_exit_code(ts_status st);
const char *ts_status_name(ts_status st);

// ---------------------------------------------------------------------------------------------
// logging. Every line is prefixed "tessera[rank]" (rank omitted in a world of 1). Errors and
// warnings print on every rank unless log_set_quiet_errors() was called (config errors under
// mpirun print on rank 0 only); info prints on rank 0 only; debug when TESSERA_LOG=debug.

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

void log_init(int rank, int world);
void log_set_level(log_level lvl);
void log_set_quiet_errors(int quiet); // 1: errors from this rank are suppressed
void log_set_file(FILE *f);           // also copy every line (all levels) to this file
// print again the last error line logged (even if it was suppressed): when several ranks fail
// the same way, they log quietly, agree, and one of them tells the user
void log_replay_last_error(void);
void log_msg(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// info-level line printed on every rank (for per-rank diagnostics)
void log_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

// propagate a failing status, leaving one trace line per frame at debug level
#define TS_CHECK(call)                                                                             \
    do {                                                                                           \
        ts_status st_ = (call);                                                                    \
        if (st_ != TS_OK) {                                                                        \
            log_debug("  at %s:%d: %s", __FILE__, __LINE__, #call);                                \
            return st_;                                                                            \
        }                                                                                          \
    } while (0)

// same, but jump to a cleanup label with the status stored in `res`
#define TS_CHECK_GOTO(call, res, label)                                                            \
    do {                                                                                           \
        (res) = (call);                                                                            \
        if ((res) != TS_OK) {                                                                      \
            log_debug("  at %s:%d: %s", __FILE__, __LINE__, #call);                                \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

// true invariants only: a failure here is a bug in tessera, never bad input
#define TS_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) ts_panic(__FILE__, __LINE__, "assertion failed: " #cond);                     \
    } while (0)

TS_NORETURN void ts_panic(const char *file, int line, const char *msg);

// The one way to die: log the message as an error line, write this rank's status file (reason
// from st: bad_input, system, internal, peer_lost; see base/status_file.h) and exit with
// ts_exit_code(st). For failures deep in code that cannot return a status (CUDA checks, the
// allocator); everything else returns its status up to the command, which calls ts_exit.
TS_NORETURN void ts_fatal(ts_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Write the status file for st (reason as above), flush the streams and leave at once with its
// code (_exit: no exit handlers run while other threads may be inside a library).
TS_NORETURN void ts_exit(ts_status st);
// The status file's reason for st: "finished" (TS_OK), "bad_input", "peer_lost", "system",
// "internal".
const char *ts_status_reason(ts_status st);

// allocation that never returns NULL (out of memory is fatal and reported with the size)
void *ts_malloc(size_t bytes, const char *what);
void *ts_calloc(size_t n, size_t size, const char *what);
void *ts_aligned_alloc(size_t bytes, const char *what); // 64-byte aligned, zeroed

double ts_now(void); // monotonic seconds

#ifdef __cplusplus
}
#endif

#endif
