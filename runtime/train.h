// train.h — the trainer: data-parallel training of a model as a config describes it, one rank
// per process (the command line is app/cmd_train.c).
//
//   trainer_open   read and check the config (rank 0 reads, every rank checks), set up the
//                  backend, run directory, data, model, reducer, optimizer; resume
//   trainer_run    the training loop: steps, evaluation, checkpoints, reports, planned stops
//   trainer_sample the end-of-run sample (rank 0, when log.sample_tokens > 0)
//   trainer_close  tear down (a checkpoint still being written is committed first)
#ifndef TESSERA_TRAIN_H
#define TESSERA_TRAIN_H

#include <stdio.h>

#include "base/common.h"
#include "collectives/comm.h"

typedef struct trainer trainer;

// *out is set even on failure (pass it to trainer_close); argv as `tessera train` receives it
ts_status trainer_open(trainer **out, comm *c, int argc, char **argv);
ts_status trainer_run(trainer *tr);
void trainer_sample(trainer *tr);
void trainer_close(trainer *tr);

// the status file's reason for how the run ended: "stopped" after a planned stop, else
// ts_status_reason(st)
const char *trainer_exit_reason(const trainer *tr, ts_status st);
// the deadline of MPI_Finalize: comm.init_timeout_s of the config (600 s before one was read)
double trainer_finalize_timeout(const trainer *tr);
// ask for a planned stop at the end of the current step (async-signal-safe)
void trainer_request_stop(void);
// `tessera train --help`
void trainer_print_usage(FILE *out);

#endif
