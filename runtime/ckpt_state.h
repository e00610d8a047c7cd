// ckpt_state.h — training checkpoints: everything a run needs to continue, in
// <run_dir>/ckpt/<host>/step-NNNNNNNN/ (state.h5 + MANIFEST; layout in
// docs/checkpoint-format.md). ckpt_dir below is one host's checkpoint root.
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
#include "models/gpt2.h"
#include "runtime/ckpt_codec.h"
#include "runtime/config.h"

#define CKPT_STATE_FILE "state.h5"

typedef struct {
    int step;             // optimizer steps completed (the loop continues at this index)
    int world;            // ranks of the run that wrote it
    int global_batch;     // sequences per step
    int opt_t;            // AdamW updates applied (steps minus skipped ones)
    int64_t seed;         // run.seed
    uint64_t next_sample; // next global sample index = step * global_batch (the loader's state)
    // gradient codec state (/codec): written when set and named, filled on load when set
    ckpt_codec_state *codec;
} ckpt_state_meta;

// Write ckpt_dir/step-NNNNNNNN atomically (a .tmp directory, state.h5 fsynced, MANIFEST, rename,
// fsync of ckpt_dir), then delete all but the newest `keep` step directories. Leftover
// step-*.tmp/.old/.del directories of an interrupted save are removed first. ckpt_dir is created
// if missing. On failure nothing but the .tmp directory is touched (removed when possible) and
// one error line is logged.
ts_status ckpt_state_save(const char *ckpt_dir, const gpt2 *m, const tessera_config *cfg,
                          const ckpt_state_meta *meta, const float *master, const float *adam_m,
                          const float *adam_v, int keep);

// Which step directory to resume from. spec "auto": the newest step directory of ckpt_dir whose
// manifest verifies (damaged ones are skipped with a warning "skipping step-...: why"); none:
// TS_OK with out[0] == '\0'. Any other spec is a step directory, which must verify (else one
// error line, TS_ERR_INPUT).
ts_status ckpt_state_pick(const char *ckpt_dir, const char *spec, char *out, size_t out_len);

// Read step_dir/state.h5 into meta and the three buffers (n_params floats each). The model shape
// in the checkpoint's config must equal cfg's, else one error line and TS_ERR_INPUT.
ts_status ckpt_state_load(const char *step_dir, const gpt2 *m, const tessera_config *cfg,
                          ckpt_state_meta *meta, float *master, float *adam_m, float *adam_v);

#endif
