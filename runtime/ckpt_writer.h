// ckpt_writer.h — asynchronous checkpoint saves: the training loop copies the state into a host
// snapshot (allocated once, fp32 weights and both AdamW moments) and a background thread
// compresses and writes it as a step directory (ckpt_dir_save: state.h5, IDENTITY, MANIFEST,
// atomic commit, pruning). One save at a
// time: the next one waits for the previous to finish. HDF5 (a serial build) is not thread-safe:
// while a save is in flight nothing else in the process may call HDF5 — call ckpt_writer_wait
// before any other HDF5 work (the final model.h5, a resume).
#ifndef TESSERA_CKPT_WRITER_H
#define TESSERA_CKPT_WRITER_H

#include <pthread.h>
#include <stddef.h>

#include "base/common.h"
#include "models/model.h"
#include "runtime/ckpt_dir.h"
#include "runtime/ckpt_state.h"
#include "runtime/config.h"

typedef struct {
    size_t n;         // floats in each snapshot buffer (the model's n_params)
    float *w, *m, *v; // the snapshot: master weights, AdamW moments (NULL where not allocated)
    ckpt_codec_state codec;   // and every rank's gradient codec state (name "": none)
    ckpt_codec_state outer;   // and every rank's local SGD state (name "": none)
    ckpt_codec_state balance; // and the balancing state (one blob, the same on every rank)
    // the save in flight (valid while running)
    pthread_t thread;
    int running; // a thread was started and not yet joined
    int writing; // it has not finished yet (atomic: ckpt_writer_busy)
    char dir[4096];
    const model *model;
    const tessera_config *cfg;
    ckpt_state_meta meta;
    ckpt_identity id; // the run's identity and lineage, recorded in the step directory
    double stall_ms, wait_ms, step_ms; // what the loop paid for this save, and a step's time
    // outcome of the saves joined so far
    ts_status result; // of the last one
    double write_ms;  // its time in the background
    int failures;     // consecutive failed saves (0 after a success)
} ckpt_writer;

// Allocate the snapshot: weights when with_weights, moments always (n floats each, zeroed).
void ckpt_writer_create(ckpt_writer *wr, size_t n, int with_weights);

// Wait for the save in flight, if any, and account its outcome (failures). Returns the seconds
// waited.
double ckpt_writer_wait(ckpt_writer *wr);

// Start writing the snapshot (already filled) as dir/step-<meta->step> of run id on a background
// thread. stall_ms/wait_ms/step_ms only go into its log line. Must not be called while a save
// runs.
ts_status ckpt_writer_start(ckpt_writer *wr, const char *dir, const model *m,
                            const tessera_config *cfg, const ckpt_state_meta *meta,
                            const ckpt_identity *id, double stall_ms, double wait_ms,
                            double step_ms);

// A save is being written right now (the background thread takes CPU from the loop).
int ckpt_writer_busy(const ckpt_writer *wr);

// Wait for a pending save, then free the snapshot. Safe on a zeroed struct.
void ckpt_writer_destroy(ckpt_writer *wr);

#endif
