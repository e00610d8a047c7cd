// cmd_train.c — `tessera train`: signals, the communicator, the trainer (runtime/train.h), and
// the status file and exit code the launcher reads.
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "app/commands.h"
#include "base/common.h"
#include "base/status_file.h"
#include "collectives/comm.h"
#include "runtime/train.h"

static void train_on_stop_signal(int sig) {
    (void)sig;
    trainer_request_stop();
}

// The launcher reads why each rank ended from <run_dir>/rank-R.status (a lost peer's file was
// written where the deadline expired) and, while mpirun still runs, from this line.
static void train_leave_status(const char *reason, ts_status st) {
    if (st != TS_OK)
        log_all("exit %d (%s) at step %ld", ts_exit_code(st), reason, status_file_step());
    if (st == TS_ERR_PEER) return;
    status_file_write(reason, NULL, -1, ts_exit_code(st));
}

int cmd_train(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            trainer_print_usage(stdout);
            return TS_EXIT_OK;
        }
    // a file-size limit (ulimit -f) must fail a write with EFBIG, not kill the process: a
    // checkpoint that does not fit is then an ordinary failed save
    signal(SIGXFSZ, SIG_IGN);
    struct sigaction stop = {0};
    stop.sa_handler = train_on_stop_signal;
    sigemptyset(&stop.sa_mask);
    stop.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &stop, NULL);
    sigaction(SIGUSR2, &stop, NULL);
    log_init(0, 1);
    // the config (with comm.init_timeout_s) is read only after MPI is up: start-up gets the
    // key's default deadline
    comm *c = NULL;
    ts_status st = comm_init(&c, &argc, &argv, 600.0);
    if (st != TS_OK) return ts_exit_code(st);
    log_init(c->rank, c->size);

    trainer *tr = NULL;
    st = trainer_open(&tr, c, argc, argv);
    if (st == TS_OK) st = trainer_run(tr);
    if (st == TS_OK) trainer_sample(tr);
    const char *reason = trainer_exit_reason(tr, st);
    double finalize_s = trainer_finalize_timeout(tr);
    trainer_close(tr); // a checkpoint still being written is committed first
    train_leave_status(reason, st);
    if (st == TS_ERR_PEER) return ts_exit_code(st); // a lost peer would hang MPI_Finalize
    c->timeout_s = finalize_s;
    c->finalize(c); // under a watchdog with this deadline
    return ts_exit_code(st);
}
