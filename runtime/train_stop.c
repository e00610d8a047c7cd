// train_stop.c — planned stops: a signal (SIGUSR1/SIGUSR2, which mpirun forwards to the ranks
// without escalating; SIGTERM to mpirun would kill them within about two seconds) or a regular file
// <run_dir>/STOP, read by every rank each step. Either raises this rank's request; the step's loss
// sum spreads it to all ranks, which finish the step, checkpoint, and exit 0.
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/train_internal.h"

static volatile sig_atomic_t g_stop_signal;

void trainer_request_stop(void) { g_stop_signal = 1; }

static void train_stop_path(const trainer *tr, char *out, size_t cap) {
    snprintf(out, cap, "%s/STOP", tr->run_dir);
}

int train_stop_requested(trainer *tr) {
    if (g_stop_signal) return 1;
    char path[sizeof tr->run_dir + 16];
    train_stop_path(tr, path, sizeof path);
    struct stat sb;
    if (lstat(path, &sb) != 0) return 0;
    if (S_ISREG(sb.st_mode)) return 1;
    // only a regular file is a request: a directory (or anything else) there cannot be served
    // (removed) and would stop every later run at once
    if (!tr->stop_warned)
        log_warn("%s: not a regular file, ignored (a stop request is an empty file: touch it)",
                 path);
    tr->stop_warned = 1;
    return 0;
}

void train_stop_serve(trainer *tr, int votes, int step) {
    log_info("stop requested (%s on %d rank%s): stopping after step %d with a checkpoint; "
             "continue with --resume auto",
             g_stop_signal ? "signal" : "stop file", votes, votes > 1 ? "s" : "", step);
    char path[sizeof tr->run_dir + 16];
    train_stop_path(tr, path, sizeof path);
    // served: a resumed run must not stop again at once
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("%s: cannot remove the served stop request: %s", path, strerror(errno));
    tr->stopped = 1;
}
