// optim.c — learning-rate schedule and the AdamW step over the parameter table.
#include "runtime/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double optim_lr_at(const tessera_config *cfg, int step) {
    double lr = cfg->train.lr, lr_min = lr * cfg->train.lr_min_ratio;
    int warmup = cfg->train.warmup_steps, total = cfg->train.steps;
    if (step < warmup) return lr * (step + 1) / warmup;
    if (total - 1 <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - 1 - warmup);
    if (progress > 1) progress = 1;
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + cos(M_PI * progress));
}

void optim_create_sharded(optim_state *o, const gpt2 *model, const size_t *first,
                          const size_t *count, int n_ranges) {
    memset(o, 0, sizeof *o);
    o->n_ranges = n_ranges;
    o->first = ts_calloc((size_t)n_ranges, sizeof(size_t), "optimizer ranges");
    o->count = ts_calloc((size_t)n_ranges, sizeof(size_t), "optimizer ranges");
    o->moment_at = ts_calloc((size_t)n_ranges, sizeof(size_t), "optimizer ranges");
    for (int i = 0; i < n_ranges; i++) {
        o->first[i] = first[i];
        o->count[i] = count[i];
        o->moment_at[i] = o->n_owned;
        o->n_owned += count[i];
    }
    o->m = model->be->alloc(model->be, (o->n_owned ? o->n_owned : 1) * sizeof(real));
    o->v = model->be->alloc(model->be, (o->n_owned ? o->n_owned : 1) * sizeof(real));
}

void optim_create(optim_state *o, const gpt2 *model) {
    size_t first = 0, count = model->n_params;
    optim_create_sharded(o, model, &first, &count, 1);
}

void optim_destroy(optim_state *o, const gpt2 *model) {
    if (o->m) model->be->free(model->be, o->m);
    if (o->v) model->be->free(model->be, o->v);
    free(o->first);
    free(o->count);
    free(o->moment_at);
    memset(o, 0, sizeof *o);
}

double optim_grad_norm(const gpt2 *model) {
    return sqrt(model->be->sum_squares(model->be, model->grads, model->n_params));
}

double optim_grad_sumsq(const optim_state *o, const gpt2 *model) {
    double s = 0;
    for (int i = 0; i < o->n_ranges; i++)
        if (o->count[i])
            s += model->be->sum_squares(model->be, model->grads + o->first[i], o->count[i]);
    return s;
}

void optim_step(optim_state *o, gpt2 *model, const tessera_config *cfg, double lr, double norm) {
    const backend *be = model->be;
    double clip = cfg->train.grad_clip;
    size_t psz = ts_dtype_size(be->param_dtype);
    int scale = clip > 0 && norm > clip;
    o->t++;
    for (int r = 0; r < o->n_ranges; r++) {
        size_t lo = o->first[r], hi = o->first[r] + o->count[r];
        if (scale && hi > lo) be->scale(be, model->grads + lo, (real)(clip / norm), hi - lo);
        // AdamW per tensor piece: weight decay depends on the tensor
        for (int i = 0; i < model->n_tensors; i++) {
            const gpt2_tensor *t = &model->tensors[i];
            size_t a = t->offset > lo ? t->offset : lo;
            size_t b = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (a >= b) continue;
            size_t mo = o->moment_at[r] + (a - lo);
            float wd = t->decay ? (float)cfg->train.weight_decay : 0.0f;
            void *param = (char *)model->params + a * psz;
            be->adamw(be, model->master + a, param, model->grads + a, o->m + mo, o->v + mo, b - a,
                      (float)lr, (float)cfg->train.beta1, (float)cfg->train.beta2,
                      (float)cfg->train.eps, wd, o->t);
        }
    }
}
