// train_internal.h — what the trainer's files share: the trainer's state and the agreement
// helpers (internal to runtime/train*.c).
#ifndef TESSERA_TRAIN_INTERNAL_H
#define TESSERA_TRAIN_INTERNAL_H

#include <stdio.h>

#include "collectives/codec.h"
#include "collectives/comm.h"
#include "collectives/reducer.h"
#include "runtime/balance.h"
#include "runtime/ckpt_identity.h"
#include "runtime/ckpt_writer.h"
#include "runtime/config.h"
#include "runtime/data.h"
#include "runtime/optim.h"
#include "runtime/sample.h"
#include "runtime/train.h"

#define TRAIN_HOST_MAX 64 // bytes of a host name, NUL included (longer names are cut)

// this rank's host: TESSERA_HOST, else gethostname(), made safe as a directory name
void train_host_name(char out[TRAIN_HOST_MAX]);

// local SGD (DiLoCo mode): train_outer.c
typedef struct {
    size_t first, count; // range of the flat buffer: whole tensors
    codec_bucket xfer;
    int done;
} train_outer_bucket;

typedef struct {
    int on;          // diloco.inner_steps > 0
    int H, period;   // inner steps per sync of a fragment; steps between fragment syncs
    size_t n;        // parameters
    float weight;    // this rank's share of the global batch / global_batch
    float *anchor;   // the shared parameters after the last sync (host)
    float *momentum; // the outer optimizer's momentum (host)
    float *delta;    // pseudo-gradients: this rank's in, the average over ranks out (host)
    float *local;    // host copy of the rank's parameters (scratch)
    float *saved;    // the rank's parameters while validation runs on the anchor
    int n_frag;      // fragments (1: no streaming)
    size_t *frag_first, *frag_count;
    int n_buckets, *bucket_lo; // fragment f's buckets: [bucket_lo[f], bucket_lo[f + 1])
    train_outer_bucket *buckets;
    int inflight;      // fragment whose sync is in flight (-1: none)
    int inflight_done; // its collectives have completed: delta holds the average
    int inflight_step; // the step after which it started
    double t_start, t_done;
    uint64_t syncs, skipped; // outer steps taken, skipped (non-finite)
    // samples trained since each fragment's last sync: by this rank, by all ranks (the weight of
    // the rank's pseudo-gradient is their ratio)
    double *win_mine, *win_all;
} train_outer;

struct trainer {
    tessera_config cfg;
    comm *comm;
    const backend *be;
    int threads;
    model model;
    optim_state opt;
    dataset train, val;
    int share, offset; // this rank's sequences of the step's samples (bal.list), where they start
    int micro;         // micro-batch size used on this rank
    balance bal;       // the shares of every rank, the speeds they follow, the sample queue
    double hook_s;     // this step's time in the gradient hooks (bucket encoding, progress)
    double post_s;     // the previous step's own work after its collective (optimizer)
    int32_t *seq_buf;  // (micro, T+1) host tokens
    int *inputs, *targets;
    char run_dir[CFG_STR + 160];
    FILE *metrics;
    FILE *log_file; // rank 0: every log line of the run, also what only the terminal saw
    // rank 0: the lines logged before the run directory is committed (train.log gets them then)
    FILE *log_early;
    char *log_early_text;
    size_t log_early_len;
    tokenizer tok; // rank 0: decodes the end-of-run sample
    codec *codec;  // how gradient buckets travel (comm.codec); its state is checkpointed
    reducer red;   // bucketed gradient sums over ranks
    // this step's time split: compute (forward, backward, optimizer), waiting on peers
    double t_compute, t_wait;
    FILE *trace;     // comm.trace: per-step bucket timestamps (JSON lines), or NULL
    FILE *samples;   // data.log_samples: the global sample indices this rank trained on
    int stopped;     // the loop ended early on a planned stop (signal or STOP file)
    uint64_t run_id; // rank 0's wall-clock start in ns, the same on every rank
    int start_step;  // first step the loop runs: 0, or the step a resumed checkpoint completed
    char *hosts;     // every rank's host name, (size, TRAIN_HOST_MAX) bytes
    char ckpt_root[CFG_STR + 240]; // <run_dir>/ckpt/<host>: this host's checkpoints
    int ckpt_writer;               // this rank writes a replica
    int host_leader;               // the lowest rank on its host: looks after ckpt_root
    ckpt_identity identity;        // the run's identity and lineage, recorded in checkpoints
    ckpt_writer writer;            // the host snapshot and its background writer
    int snapshot;                  // writer.m/v (and .w on a writer) are allocated
    int stop_warned;               // a STOP that is not a regular file was reported
    train_outer outer;             // local SGD (diloco.inner_steps > 0)
    // bytes this rank sent and received for checkpoints (state gathered to the writers), since
    // the start: reported apart from the training traffic
    uint64_t ckpt_sent, ckpt_recv;
};

// one status for all ranks: the worst (design invariant 5: shared decisions are agreed)
ts_status train_agree(comm *c, ts_status mine);

// run a step every rank takes on its own input (its copy of the shards) with errors held
// back; if any rank failed, the lowest failing rank prints its error line, once for the job
#define TRAIN_AGREE_QUIET(c, call, res)                                                            \
    do {                                                                                           \
        log_set_quiet_errors(1);                                                                   \
        ts_status mine_ = (call);                                                                  \
        log_set_quiet_errors(0);                                                                   \
        int who_[2] = {mine_ != TS_OK ? -(c)->rank : -(c)->size, (int)mine_};                      \
        (res) = (c)->all_reduce_max_i32((c), who_, 2);                                             \
        if ((res) == TS_OK && who_[1] != TS_OK) {                                                  \
            if (-who_[0] == (c)->rank) log_replay_last_error();                                    \
            (res) = (ts_status)who_[1];                                                            \
        }                                                                                          \
    } while (0)

// train_balance.c: the balancing state's set-up, checkpoint and resume
ts_status train_balance_setup(trainer *tr); // after the communicator, before the model
void train_balance_snapshot(trainer *tr);   // into the writer's snapshot (writers)
// resume: the holder's /balance state (s, read from a checkpoint of saved_world ranks whose
// next_sample is given) to every rank: the queue always, speeds and shares at the same world size
ts_status train_balance_restore(trainer *tr, int holder, const ckpt_codec_state *s,
                                uint64_t next_sample, int saved_world, const char *what);
// The holder's side of it: the /balance state checked against the checkpoint's attributes. Fills
// queue (global_batch room; *n_queue) and, when the world size is the same (*same), share, speed
// and fixed (world entries each). Else one error line naming `what`, TS_ERR_INPUT.
ts_status train_balance_check(const ckpt_codec_state *s, uint64_t next_sample, int saved_world,
                              int world, int global_batch, uint64_t *queue, int *n_queue,
                              int *share, double *speed, double *fixed, int *same,
                              const char *what);

// train_step.c: one step and the validation pass
typedef struct {
    double loss, norm, lr; // mean token loss over the global batch, gradient norm, learning rate
    double comm_s;         // the gradient reduction's span (first bucket started to last done)
    int skipped;           // non-finite loss or gradient: no update
    int stop_votes;        // ranks asked to stop during this step
    int used;              // samples trained (global_batch unless late ranks gave some back)
    int late;              // ranks past the deadline
} train_step_result;
ts_status train_step(trainer *tr, int step, train_step_result *res); // step is 0-based
ts_status train_validate(trainer *tr, double *mean_loss);

// train_outer.c: local SGD
ts_status train_outer_create(trainer *tr); // after the model, the codec and the optimizer
void train_outer_destroy(trainer *tr);
// after inner step k (1-based) has updated the rank's parameters: the syncs due now (final: the
// run's last step or a planned stop: every fragment); *comm_s the time spent waiting for them
ts_status train_outer_after_step(trainer *tr, int k, int final, double *comm_s);
// after an inner step: this rank trained `mine` samples, all ranks `all`
void train_outer_count(trainer *tr, int mine, int all);
// advance a sync in flight (called during backward)
ts_status train_outer_poll(trainer *tr);
// validation runs on the anchor: swap it in, and the rank's parameters back afterwards
void train_outer_enter_anchor(trainer *tr);
void train_outer_leave_anchor(trainer *tr);
// checkpoint state of this rank (blob of named arrays; a fragment in flight is completed first)
ts_status train_outer_pack(trainer *tr, unsigned char **blob, size_t *len);
const char *train_outer_state_name(void); // "diloco": the /outer group's state name
// restore from this rank's blob (mine: its own when the world size is the same, else rank
// 0's) and rank 0's (first: momentum, the fragment in flight); same_world: the rank's own
// parameters too (streaming)
ts_status train_outer_unpack(trainer *tr, const unsigned char *mine, size_t mine_len,
                             const unsigned char *first, size_t first_len, int same_world,
                             const char *what);

// train_report.c: the progress line and metrics record of each log window, the final report
typedef struct {
    double t_start, t_window; // the loop's start, the window's start
    double loss, comm_s;      // sums over the window's steps
    int steps;
    int64_t used;                    // samples trained in the window
    int late;                        // ranks late, summed over its steps
    uint64_t sent0, recv0;           // the communicator's counters at the window's start
    uint64_t ckpt_sent0, ckpt_recv0; // and the checkpoints' share of them
    double wait0;
} train_report;
void train_report_begin(train_report *r, trainer *tr);
void train_report_step(train_report *r, const train_step_result *res);
// the window ends after `step` (1-based); val_loss and stall_ms when this step evaluated/saved
void train_report_window(train_report *r, trainer *tr, int step, const train_step_result *res,
                         const double *val_loss, const double *stall_ms);
ts_status train_report_final(trainer *tr, double val_loss, int done_steps);

// train_stop.c: planned stops (a signal or a STOP file)
int train_stop_requested(trainer *tr);
void train_stop_serve(trainer *tr, int votes, int step);

// train_ckpt.c: checkpoints and resume
ts_status train_ckpt_setup(trainer *tr);
// a fresh start: no checkpoint root of the run directory holds a checkpoint (else one error line,
// unless run.overwrite); the first rank of each host checks its host's root, rank 0 also the
// roots of hosts outside the job that it sees under <run_dir>/ckpt/
ts_status train_ckpt_check_fresh(trainer *tr);
// the run directory is taken: run.overwrite's removal of the earlier run's checkpoints (the same
// roots), and the leftovers of interrupted saves in each host's own root
ts_status train_ckpt_commit(trainer *tr, int overwrite);
ts_status train_save_checkpoint(trainer *tr, int step, double step_ms, double *stall_ms);
ts_status train_ckpt_finish(trainer *tr);
ts_status train_resume(trainer *tr);

#endif
