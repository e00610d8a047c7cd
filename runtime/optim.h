// optim.h — learning-rate schedule and the AdamW step over the parameter table.
#ifndef TESSERA_OPTIM_H
#define TESSERA_OPTIM_H

#include "../models/gpt2.h"
#include "config.h"

// Linear warmup over warmup_steps (from lr/warmup to lr), then cosine decay to lr*lr_min_ratio
// at the last step. step is 0-based.
double optim_lr_at(const tessera_config *cfg, int step);

typedef struct {
    real *m, *v; // first and second moments, backend memory, mirroring the parameters
    int t;       // updates applied so far
} optim_state;

void optim_create(optim_state *o, const gpt2 *model);
void optim_destroy(optim_state *o, const gpt2 *model);

// Global gradient norm (L2 over all gradients) of the model's grads.
double optim_grad_norm(const gpt2 *model);

// Scale gradients to norm <= clip (when clip > 0 and norm > clip), then one AdamW update with
// weight decay on matrices only.
void optim_step(optim_state *o, gpt2 *model, const tessera_config *cfg, double lr, double norm);

#endif
