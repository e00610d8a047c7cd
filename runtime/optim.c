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

void optim_create_sharded(optim_state *o, const model *m, const size_t *first, const size_t *count,
                          int n_ranges) {
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
    o->m = m->be->alloc(m->be, (o->n_owned ? o->n_owned : 1) * sizeof(real));
    o->v = m->be->alloc(m->be, (o->n_owned ? o->n_owned : 1) * sizeof(real));
}

void optim_create(optim_state *o, const model *m) {
    size_t first = 0, count = m->n_params;
    optim_create_sharded(o, m, &first, &count, 1);
}

void optim_destroy(optim_state *o, const model *m) {
    if (o->m) m->be->free(m->be, o->m);
    if (o->v) m->be->free(m->be, o->v);
    free(o->first);
    free(o->count);
    free(o->moment_at);
    memset(o, 0, sizeof *o);
}

double optim_grad_norm(const model *m) {
    return sqrt(m->be->sum_squares(m->be, m->grads, m->n_params));
}

double optim_grad_sumsq(const optim_state *o, const model *m) {
    double s = 0;
    for (int i = 0; i < o->n_ranges; i++)
        if (o->count[i]) s += m->be->sum_squares(m->be, m->grads + o->first[i], o->count[i]);
    return s;
}

// plain SGD on [a, b): master -= lr * (grad + wd * master), in double per value, on host memory
// (a device backend's piece is copied down and back: SGD is the reference optimizer of the
// local-SGD equivalence, not a fast path)
static void optim_sgd_piece(const backend *be, real *master, const real *grad, size_t n, double lr,
                            double wd) {
    real *w = master, *g = (real *)grad;
    if (!be->host_memory) {
        w = ts_malloc(n * sizeof(real), "sgd weights");
        g = ts_malloc(n * sizeof(real), "sgd gradients");
        be->to_host(be, w, master, n * sizeof(real));
        be->to_host(be, g, grad, n * sizeof(real));
    }
    for (size_t i = 0; i < n; i++)
        w[i] = (real)((double)w[i] - lr * ((double)g[i] + wd * (double)w[i]));
    if (!be->host_memory) {
        be->to_device(be, master, w, n * sizeof(real));
        free(w);
        free(g);
    }
}

void optim_scale_grads(optim_state *o, model *m, double s) {
    for (int r = 0; r < o->n_ranges; r++)
        if (o->count[r]) m->be->scale(m->be, m->grads + o->first[r], (real)s, o->count[r]);
}

void optim_step(optim_state *o, model *m, const tessera_config *cfg, double lr, double norm) {
    const backend *be = m->be;
    double clip = cfg->train.grad_clip;
    size_t psz = ts_dtype_size(be->param_dtype);
    int scale = clip > 0 && norm > clip;
    int sgd = strcmp(cfg->train.optimizer, "sgd") == 0;
    o->t++;
    for (int r = 0; r < o->n_ranges; r++) {
        size_t lo = o->first[r], hi = o->first[r] + o->count[r];
        if (scale && hi > lo) be->scale(be, m->grads + lo, (real)(clip / norm), hi - lo);
        // AdamW per tensor piece: weight decay depends on the tensor
        for (int i = 0; i < m->n_tensors; i++) {
            const model_tensor *t = &m->tensors[i];
            size_t a = t->offset > lo ? t->offset : lo;
            size_t b = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (a >= b) continue;
            size_t mo = o->moment_at[r] + (a - lo);
            float wd = t->decay ? (float)cfg->train.weight_decay : 0.0f;
            void *param = (char *)m->params + a * psz;
            if (sgd) {
                optim_sgd_piece(be, m->master + a, m->grads + a, b - a, lr, wd);
                be->params_from_master(be, param, m->master + a, b - a);
                continue;
            }
            be->adamw(be, m->master + a, param, m->grads + a, o->m + mo, o->v + mo, b - a,
                      (float)lr, (float)cfg->train.beta1, (float)cfg->train.beta2,
                      (float)cfg->train.eps, wd, o->t);
        }
    }
}
