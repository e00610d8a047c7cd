// ckpt_state.h — the state file of a training checkpoint: everything a run needs to continue, as
// <run_dir>/ckpt/<host>/step-NNNNNNNN/state.h5 (the step directory around it, its IDENTITY and
// MANIFEST are runtime/ckpt_dir.h's; layout in docs/checkpoint-format.md).
//
// state.h5: attributes on "/" (format "tessera-checkpoint", version, step, world_size,
// global_batch, seed, optimizer_t, next_sample, config = the resolved config text) and, per
// parameter tensor of the model's table, /params/<name> (fp32 master weights), /adam_m/<name> and
// /adam_v/<name> (AdamW moments, whole: a ZeRO-1 run gathers its shards before saving), chunked
// and zstd-compressed; /codec (every rank's gradient codec state, ckpt_codec.h) and /outer. These
// functions work on whole host buffers (n_params floats each) and are called on the writing ranks
// (one per replica host) and the reading rank only; choosing them, gathering and broadcasting is
// the trainer's business.
#ifndef TESSERA_CKPT_STATE_H
#define TESSERA_CKPT_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "models/model.h"
#include "runtime/ckpt_codec.h"
#include "runtime/config.h"

#define CKPT_STATE_FILE "state.h5"

typedef struct {
    int step;             // optimizer steps completed (the loop continues at this index)
    int world;            // ranks of the run that wrote it
    int global_batch;     // sequences per step
    int opt_t;            // AdamW updates applied (steps minus skipped ones)
    int64_t seed;         // run.seed
    uint64_t next_sample; // the next fresh global sample (step * global_batch unless samples were
                          // given back: then less, and /balance holds the queue)
    // gradient codec state (/codec): written when set and named, filled on load when set
    ckpt_codec_state *codec;
    // local SGD's per-rank state (/outer, named "diloco"): written when set and named, filled on
    // load when set
    ckpt_codec_state *outer;
    // the balancing state (/balance, named "balance": the sample queue, speeds, shares): written
    // when set and named, filled on load when set (name "" when the file has none)
    ckpt_codec_state *balance;
} ckpt_state_meta;

// Create the state file at path (it must not exist) from the three buffers (n_params floats
// each), written and fsynced: a file of a step directory committed as a whole afterwards. The
// file is built in memory and written with plain write(2). On failure one error line is logged.
ts_status ckpt_state_write(const char *path, const model *m, const tessera_config *cfg,
                           const ckpt_state_meta *meta, const float *master, const float *adam_m,
                           const float *adam_v);

// Read and check the attributes on "/" of a state file (path: .../state.h5): every one of the
// type, shape and bounds docs/checkpoint-format.md gives, and consistent with each other. On
// TS_OK *config holds the resolved config text (malloc'ed: free it). Else one error line naming
// the file and the attribute, TS_ERR_INPUT.
ts_status ckpt_state_read_meta(const char *path, ckpt_state_meta *meta, char **config);

// Read step_dir/state.h5 into meta and the three buffers (n_params floats each). Every attribute
// is checked as ckpt_state_read_meta checks it, every dataset before it is read (hard links only,
// chunked with the zstd filter alone, float32, the tensor's shape: runtime/h5read.h). The model
// (architecture and shape) in the checkpoint's config must equal cfg's. Else one error line and
// TS_ERR_INPUT. meta->codec and meta->outer are inputs: NULL, or where the /codec (/outer)
// group's state goes (set them before the call; every other field of meta is filled).
ts_status ckpt_state_load(const char *step_dir, const model *m, const tessera_config *cfg,
                          ckpt_state_meta *meta, float *master, float *adam_m, float *adam_v);

// The resolved config a checkpoint was written with (step_dir/state.h5's attribute "config"):
// malloc'ed text, or NULL with one error line.
char *ckpt_state_read_config(const char *step_dir);

#endif
