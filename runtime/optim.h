// optim.h — learning-rate schedule and the AdamW step over the parameter table, whole or
// sharded (ZeRO-1: this rank updates only the ranges of the flat buffer it owns).
#ifndef TESSERA_OPTIM_H
#define TESSERA_OPTIM_H

#include "models/model.h"
#include "runtime/config.h"

// Linear warmup over warmup_steps (from lr/warmup to lr), then cosine decay to lr*lr_min_ratio
// at the last step. step is 0-based.
double optim_lr_at(const tessera_config *cfg, int step);

typedef struct {
    real *m, *v;  // first and second moments (backend memory), for the owned elements only
    int t;        // updates applied so far
    int n_ranges; // owned ranges of the flat buffer (1 range [0, n_params) when not sharded)
    size_t *first, *count;
    size_t *moment_at; // where each range's moments start in m and v
    size_t n_owned;    // elements this rank optimises
} optim_state;

// Whole optimizer state (every rank updates every parameter).
void optim_create(optim_state *o, const model *m);
// Sharded: only the given ranges (absolute offsets into the flat buffer) are owned.
void optim_create_sharded(optim_state *o, const model *m, const size_t *first, const size_t *count,
                          int n_ranges);
void optim_destroy(optim_state *o, const model *m);

// Sum of squares of the owned gradients (the whole norm^2 when not sharded).
double optim_grad_sumsq(const optim_state *o, const model *m);
// Global gradient norm (L2 over all gradients) of the model's grads (not sharded).
double optim_grad_norm(const model *m);

// Multiply the owned gradients by s.
void optim_scale_grads(optim_state *o, model *m, double s);

// Scale the owned gradients to norm <= clip (when clip > 0 and norm > clip), then one update of
// the owned parameters (train.optimizer: AdamW, or SGD without momentum), with weight decay on
// matrices only.
void optim_step(optim_state *o, model *m, const tessera_config *cfg, double lr, double norm);

#endif
