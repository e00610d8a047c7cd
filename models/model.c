// model.c — the registry of architectures and what every model does the same way: shapes, the
// fit check, weights and gradients, dispatch to the architecture (see model.h).
//
// Compiled twice (float and double, see kernels/precision.h), like the architectures.
#include "models/model.h"
#include "models/gpt2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// the registry: the built-in architectures, then those registered at run time

static const TS_REAL(model_arch) * archs[MODEL_MAX_ARCHS] = {&TS_REAL(model_arch_gpt2)};
static int n_archs = 1;

// room for every name and a '|' after each
char TS_REAL(model_arch_choices)[MODEL_MAX_ARCHS * 24] = "gpt2";

int TS_REAL(model_arch_count)(void) { return n_archs; }

const TS_REAL(model_arch) * TS_REAL(model_arch_at)(int i) {
    return i >= 0 && i < n_archs ? archs[i] : NULL;
}

const TS_REAL(model_arch) * TS_REAL(model_arch_find)(const char *name) {
    for (int i = 0; i < n_archs; i++)
        if (strcmp(archs[i]->name, name) == 0) return archs[i];
    return NULL;
}

void TS_REAL(model_arch_list)(char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n_archs && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", archs[i]->name);
}

ts_status TS_REAL(model_register)(const TS_REAL(model_arch) * arch) {
    char *choices = TS_REAL(model_arch_choices);
    size_t used = strlen(choices), name_len = strlen(arch->name);
    if (TS_REAL(model_arch_find)(arch->name)) {
        log_error("model: an architecture named \"%s\" is already registered", arch->name);
        return TS_ERR_INPUT;
    }
    if (n_archs == MODEL_MAX_ARCHS ||
        used + 1 + name_len + 1 > sizeof TS_REAL(model_arch_choices) ||
        arch->n_dims > MODEL_MAX_DIMS || name_len == 0 || strchr(arch->name, '|')) {
        log_error("model: cannot register architecture \"%s\" (at most %d architectures of %d "
                  "dims, names without '|')",
                  arch->name, MODEL_MAX_ARCHS, MODEL_MAX_DIMS);
        return TS_ERR_INPUT;
    }
    archs[n_archs++] = arch;
    snprintf(choices + used, sizeof TS_REAL(model_arch_choices) - used, "|%s", arch->name);
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// shapes

void TS_REAL(model_shape_init)(TS_REAL(model_shape) * s, const TS_REAL(model_arch) * arch) {
    memset(s, 0, sizeof *s);
    s->arch = arch;
}

int TS_REAL(model_dim_index)(const TS_REAL(model_arch) * arch, const char *name) {
    for (int i = 0; i < arch->n_dims; i++)
        if (strcmp(arch->dims[i].name, name) == 0) return i;
    return -1;
}

int TS_REAL(model_shape_get)(const TS_REAL(model_shape) * s, const char *name) {
    int i = TS_REAL(model_dim_index)(s->arch, name);
    return i < 0 ? -1 : s->dim[i];
}

int TS_REAL(model_shape_set)(TS_REAL(model_shape) * s, const char *name, int value) {
    int i = TS_REAL(model_dim_index)(s->arch, name);
    if (i < 0) return 0;
    s->dim[i] = value;
    return 1;
}

ts_status TS_REAL(model_shape_complete)(TS_REAL(model_shape) * s, char *why, size_t why_len) {
    return s->arch->complete(s, why, why_len);
}

void TS_REAL(model_shape_format)(const TS_REAL(model_shape) * s, int config_only, char *buf,
                                 size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0, shown = 0; i < s->arch->n_dims && used < len; i++) {
        if (config_only && !s->arch->dims[i].from_config) continue;
        used += (size_t)snprintf(buf + used, len - used, "%s%s %d", shown++ ? " " : "",
                                 s->arch->dims[i].name, s->dim[i]);
    }
}

int TS_REAL(model_param_table)(const TS_REAL(model_shape) * s, model_tensor *out, int cap,
                               size_t *n_params) {
    return s->arch->param_table(s, out, cap, n_params);
}

// the compute copy of the weights is the master itself when the backend computes in real
static int shares_master(const TS_REAL(backend) * be) {
    return ts_dtype_size(be->param_dtype) == sizeof(real) && be->param_dtype != TS_BF16;
}

size_t TS_REAL(model_memory_bytes)(const TS_REAL(model_shape) * s, const TS_REAL(backend) * be,
                                   int max_B) {
    size_t n_params = 0;
    s->arch->param_table(s, NULL, 0, &n_params);
    size_t weights = n_params * sizeof(real) * 2 +
                     (shares_master(be) ? 0 : n_params * ts_dtype_size(be->param_dtype));
    return weights + s->arch->state_bytes(s, be, max_B);
}

// ---------------------------------------------------------------------------------------------
// the model

ts_status TS_REAL(model_create_ex)(TS_REAL(model) * m, const TS_REAL(model_shape) * s,
                                   const TS_REAL(backend) * be, int max_B, size_t extra_bytes) {
    memset(m, 0, sizeof *m);
    TS_REAL(model_shape) shape = *s;
    char why[512];
    if (shape.arch->complete(&shape, why, sizeof why) != TS_OK) {
        log_error("model: %s", why);
        return TS_ERR_INPUT;
    }
    if (max_B < 1) {
        log_error("model: the micro-batch must be >= 1 (got %d)", max_B);
        return TS_ERR_INPUT;
    }
    // everything is sized here, once; refuse what cannot fit before allocating any of it
    size_t bytes = TS_REAL(model_memory_bytes)(&shape, be, max_B);
    size_t avail = be->mem_free ? be->mem_free(be) : 0;
    if (avail && bytes + extra_bytes > avail) {
        log_error("model: needs %.2f GiB of %s memory (weights, gradients, activations for "
                  "micro-batch %d, optimizer state), only %.2f GiB are free; lower "
                  "train.micro_batch or the model size",
                  (double)(bytes + extra_bytes) / (1 << 30), be->name, max_B,
                  (double)avail / (1 << 30));
        return TS_ERR_INPUT;
    }
    m->arch = shape.arch;
    m->shape = shape;
    m->be = be;
    m->max_B = max_B;
    m->bytes = bytes;
    m->seq_len = TS_REAL(model_shape_get)(&shape, "seq_len");
    m->vocab = TS_REAL(model_shape_get)(&shape, "vocab");
    m->logits_stride = m->arch->logits_stride(&shape);
    m->n_tensors = m->arch->param_table(&shape, NULL, 0, NULL);
    m->tensors = ts_calloc((size_t)m->n_tensors, sizeof(model_tensor), "parameter table");
    m->arch->param_table(&shape, m->tensors, m->n_tensors, &m->n_params);
    size_t psz = ts_dtype_size(be->param_dtype);
    m->master = be->alloc(be, m->n_params * sizeof(real));
    m->params = shares_master(be) ? (void *)m->master : be->alloc(be, m->n_params * psz);
    m->grads = be->alloc(be, m->n_params * sizeof(real));
    m->arch->create(m);
    return TS_OK;
}

ts_status TS_REAL(model_create)(TS_REAL(model) * m, const TS_REAL(model_shape) * s,
                                const TS_REAL(backend) * be, int max_B) {
    return TS_REAL(model_create_ex)(m, s, be, max_B, 0);
}

void TS_REAL(model_destroy)(TS_REAL(model) * m) {
    if (!m->be) return;
    m->arch->destroy(m);
    if (m->params != (void *)m->master) m->be->free(m->be, m->params);
    m->be->free(m->be, m->master);
    m->be->free(m->be, m->grads);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

void TS_REAL(model_sync_params)(TS_REAL(model) * m) {
    m->be->params_from_master(m->be, m->params, m->master, m->n_params);
}

void TS_REAL(model_init_weights)(TS_REAL(model) * m, uint64_t seed) {
    real *host = ts_calloc(m->n_params, sizeof(real), "initial weights");
    m->arch->init_weights(m, host, seed);
    m->be->to_device(m->be, m->master, host, m->n_params * sizeof(real));
    free(host);
    TS_REAL(model_sync_params)(m);
}

void TS_REAL(model_zero_grad)(TS_REAL(model) * m) {
    m->be->zero(m->be, m->grads, m->n_params * sizeof(real));
}

double TS_REAL(model_forward)(TS_REAL(model) * m, const int *tokens, const int *targets, int B,
                              int T, real dloss) {
    TS_ASSERT(B >= 1 && B <= m->max_B && T >= 1 && T <= m->seq_len);
    return m->arch->forward(m, tokens, targets, B, T, dloss);
}

ts_status TS_REAL(model_backward)(TS_REAL(model) * m) { return m->arch->backward(m); }

const void *TS_REAL(model_logits)(const TS_REAL(model) * m) { return m->arch->logits(m); }
