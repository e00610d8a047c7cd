// optim.c — learning-rate schedule and the AdamW step over the parameter table.
#include "optim.h"

#include <math.h>

double optim_lr_at(const tessera_config *cfg, int step) {
    double lr = cfg->train.lr, lr_min = lr * cfg->train.lr_min_ratio;
    int warmup = cfg->train.warmup_steps, total = cfg->train.steps;
    if (step < warmup) return lr * (step + 1) / warmup;
    if (total - 1 <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - 1 - warmup);
    if (progress > 1) progress = 1;
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + cos(M_PI * progress));
}

void optim_create(optim_state *o, const gpt2 *model) {
    o->m = model->be->alloc(model->n_params * sizeof(real));
    o->v = model->be->alloc(model->n_params * sizeof(real));
    o->t = 0;
}

void optim_destroy(optim_state *o, const gpt2 *model) {
    model->be->free(o->m);
    model->be->free(o->v);
    o->m = o->v = NULL;
}

double optim_grad_norm(const gpt2 *model) {
    return sqrt(model->be->sum_squares(model->grads, model->n_params));
}

void optim_step(optim_state *o, gpt2 *model, const tessera_config *cfg, double lr, double norm) {
    const backend *be = model->be;
    double clip = cfg->train.grad_clip;
    if (clip > 0 && norm > clip) be->scale(model->grads, (real)(clip / norm), model->n_params);
    o->t++;
    for (int i = 0; i < model->n_tensors; i++) {
        const gpt2_tensor *t = &model->tensors[i];
        float wd = t->decay ? (float)cfg->train.weight_decay : 0.0f;
        void *param = (char *)model->params + t->offset * ts_dtype_size(be->param_dtype);
        be->adamw(model->master + t->offset, param, model->grads + t->offset, o->m + t->offset,
                  o->v + t->offset, t->numel, (float)lr, (float)cfg->train.beta1,
                  (float)cfg->train.beta2, (float)cfg->train.eps, wd, o->t);
    }
}
