// gpt2.c — GPT-2 forward and backward as a sequence of backend kernel calls.
//
// Compiled twice (float and double, see kernels/precision.h). Nothing here knows which backend
// runs the ops: every buffer is backend memory and every computation is a backend call.
#include "models/gpt2.h"

#include "base/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// activations: one buffer (act_dtype) carved into named regions, and one small `real` buffer for
// LayerNorm statistics and losses. Per-layer regions are sized for (max_B, maxT) so a smaller
// micro-batch or sequence just uses a prefix of each. What attention forward saves for backward
// is the backend's own (attention_state_bytes): one more buffer, one slot per layer, outside the
// activations (it has no gradient).

typedef struct {
    void *encoded;             // (B,T,C)
    void *ln1;                 // (L,B,T,C)
    void *qkv;                 // (L,B,T,3C)
    void *atty;                // (L,B,T,C)
    void *attproj, *residual2; // (L,B,T,C)
    void *ln2;                 // (L,B,T,C)
    void *fch, *fch_gelu;      // (L,B,T,4C)
    void *fcproj, *residual3;  // (L,B,T,C)
    void *lnf;                 // (B,T,C)
    void *logits;              // (B,T,Vp)
} acts_view;

typedef struct {
    real *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd; // (L,B,T)
    real *lnf_mean, *lnf_rstd;                       // (B,T)
    real *losses;                                    // (B,T)
} stats_view;

typedef struct {
    size_t btc, bt; // per-layer strides, in elements
    size_t esz;     // bytes per activation element
} acts_strides;

static acts_strides strides_of(const TS_REAL(gpt2) * m) {
    const gpt2_config *c = &m->cfg;
    acts_strides s;
    s.bt = (size_t)m->max_B * c->seq_len;
    s.btc = s.bt * c->width;
    s.esz = ts_dtype_size(m->be->act_dtype);
    return s;
}

// element i of a buffer of elements of esz bytes
static inline void *at(const void *base, size_t i, size_t esz) { return (char *)base + i * esz; }

// carve base into regions; with base == NULL just count elements
static size_t acts_layout(const TS_REAL(gpt2) * m, void *base, acts_view *v) {
    const gpt2_config *c = &m->cfg;
    acts_strides s = strides_of(m);
    size_t L = (size_t)c->layers, off = 0;
    acts_view tmp;
    if (!v) v = &tmp;
#define REGION(field, n)                                                                           \
    v->field = base ? at(base, off, s.esz) : NULL;                                                 \
    off += (n)
    REGION(encoded, s.btc);
    REGION(ln1, L * s.btc);
    REGION(qkv, L * 3 * s.btc);
    REGION(atty, L * s.btc);
    REGION(attproj, L * s.btc);
    REGION(residual2, L * s.btc);
    REGION(ln2, L * s.btc);
    REGION(fch, L * 4 * s.btc);
    REGION(fch_gelu, L * 4 * s.btc);
    REGION(fcproj, L * s.btc);
    REGION(residual3, L * s.btc);
    REGION(lnf, s.btc);
    REGION(logits, s.bt * c->padded_vocab);
#undef REGION
    return off;
}

static size_t stats_layout(const TS_REAL(gpt2) * m, real *base, stats_view *v) {
    acts_strides s = strides_of(m);
    size_t L = (size_t)m->cfg.layers, off = 0;
    stats_view tmp;
    if (!v) v = &tmp;
#define REGION(field, n)                                                                           \
    v->field = base ? base + off : NULL;                                                           \
    off += (n)
    REGION(ln1_mean, L * s.bt);
    REGION(ln1_rstd, L * s.bt);
    REGION(ln2_mean, L * s.bt);
    REGION(ln2_rstd, L * s.bt);
    REGION(lnf_mean, s.bt);
    REGION(lnf_rstd, s.bt);
    REGION(losses, s.bt);
#undef REGION
    return off;
}

// the parameters of one block, as pointers into a flat buffer of esz-byte elements
typedef struct {
    void *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} block_params;

static block_params block_at(const TS_REAL(gpt2) * m, void *flat, size_t esz, int l) {
    // tensors 2 + 12*l ... follow the order of gpt2_param_table
    const gpt2_tensor *t = &m->tensors[2 + 12 * l];
    block_params p;
    void **f = &p.ln1w;
    for (int i = 0; i < 12; i++)
        f[i] = at(flat, t[i].offset, esz);
    return p;
}

// ---------------------------------------------------------------------------------------------
// lifetime

ts_status TS_REAL(gpt2_create_ex)(TS_REAL(gpt2) * m, const gpt2_config *cfg,
                                  const TS_REAL(backend) * be, int max_B, size_t extra_bytes) {
    memset(m, 0, sizeof *m);
    if (cfg->layers < 1 || cfg->heads < 1 || cfg->width < 1 || cfg->seq_len < 1 || cfg->vocab < 2 ||
        max_B < 1) {
        log_error("model: layers, heads, width, seq_len and micro-batch must be >= 1 and vocab "
                  ">= 2 (got %d, %d, %d, %d, %d, vocab %d)",
                  cfg->layers, cfg->heads, cfg->width, cfg->seq_len, max_B, cfg->vocab);
        return TS_ERR_INPUT;
    }
    if (cfg->width % cfg->heads != 0) {
        log_error("model: width %d is not a multiple of heads %d", cfg->width, cfg->heads);
        return TS_ERR_INPUT;
    }
    m->cfg = *cfg;
    if (m->cfg.padded_vocab < m->cfg.vocab) m->cfg.padded_vocab = gpt2_padded_vocab(cfg->vocab);
    m->be = be;
    m->max_B = max_B;
    m->n_tensors = gpt2_param_table(&m->cfg, NULL, 0, NULL);
    m->tensors = ts_calloc((size_t)m->n_tensors, sizeof(gpt2_tensor), "parameter table");
    gpt2_param_table(&m->cfg, m->tensors, m->n_tensors, &m->n_params);
    m->n_acts = acts_layout(m, NULL, NULL);
    m->n_stats = stats_layout(m, NULL, NULL);
    size_t state = be->attention_state_bytes(be, max_B, m->cfg.seq_len, m->cfg.width, m->cfg.heads);
    m->att_state_stride = (state + 255) / 256 * 256;

    // everything is sized here, once; refuse what cannot fit before allocating any of it
    size_t psz = ts_dtype_size(be->param_dtype), asz = ts_dtype_size(be->act_dtype);
    int shared_master = psz == sizeof(real) && be->param_dtype != TS_BF16;
    size_t bt = (size_t)max_B * m->cfg.seq_len;
    m->bytes = m->n_params * sizeof(real) * 2 + (shared_master ? 0 : m->n_params * psz) +
               m->n_acts * asz * 2 + m->n_stats * sizeof(real) +
               (size_t)m->cfg.layers * m->att_state_stride + 2 * bt * sizeof(int);
    size_t avail = be->mem_free ? be->mem_free(be) : 0;
    if (avail && m->bytes + extra_bytes > avail) {
        log_error("model: needs %.2f GiB of %s memory (weights, gradients, activations for "
                  "micro-batch %d, optimizer state), only %.2f GiB are free; lower "
                  "train.micro_batch or the model size",
                  (double)(m->bytes + extra_bytes) / (1 << 30), be->name, max_B,
                  (double)avail / (1 << 30));
        free(m->tensors);
        memset(m, 0, sizeof *m);
        return TS_ERR_INPUT;
    }
    m->master = be->alloc(be, m->n_params * sizeof(real));
    m->params = shared_master ? (void *)m->master : be->alloc(be, m->n_params * psz);
    m->grads = be->alloc(be, m->n_params * sizeof(real));
    m->acts = be->alloc(be, m->n_acts * asz);
    m->grad_acts = be->alloc(be, m->n_acts * asz);
    m->stats = be->alloc(be, m->n_stats * sizeof(real));
    m->att_state = be->alloc(be, (size_t)m->cfg.layers * m->att_state_stride);
    m->tokens = be->alloc(be, bt * sizeof(int));
    m->targets = be->alloc(be, bt * sizeof(int));
    m->losses_host = ts_calloc(bt, sizeof(real), "per-token losses");
    return TS_OK;
}

ts_status TS_REAL(gpt2_create)(TS_REAL(gpt2) * m, const gpt2_config *cfg,
                               const TS_REAL(backend) * be, int max_B) {
    return TS_REAL(gpt2_create_ex)(m, cfg, be, max_B, 0);
}

void TS_REAL(gpt2_destroy)(TS_REAL(gpt2) * m) {
    if (!m->be) return;
    if (m->params != (void *)m->master) m->be->free(m->be, m->params);
    m->be->free(m->be, m->master);
    m->be->free(m->be, m->grads);
    m->be->free(m->be, m->acts);
    m->be->free(m->be, m->grad_acts);
    m->be->free(m->be, m->stats);
    m->be->free(m->be, m->att_state);
    m->be->free(m->be, m->tokens);
    m->be->free(m->be, m->targets);
    free(m->tensors);
    free(m->losses_host);
    memset(m, 0, sizeof *m);
}

void TS_REAL(gpt2_sync_params)(TS_REAL(gpt2) * m) {
    m->be->params_from_master(m->be, m->params, m->master, m->n_params);
}

// initialisation depends only on the seed (base/rng.h); uniform in (0, 1): never 0 for the log
static double uniform01(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * 0x1.0p-53; }

static double normal01(uint64_t *s) {
    double u1 = uniform01(s), u2 = uniform01(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void TS_REAL(gpt2_init_weights)(TS_REAL(gpt2) * m, uint64_t seed) {
    real *host = ts_calloc(m->n_params, sizeof(real), "initial weights");
    double resid_std = 0.02 / sqrt(2.0 * m->cfg.layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        real *p = host + t->offset;
        // each tensor has its own stream so adding layers does not shift the others
        uint64_t s = seed * 0x100000001B3ull + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        const char *suffix = strrchr(t->name, '.');
        int is_ln_weight = strstr(t->name, "ln") != NULL && suffix && strcmp(suffix, ".w") == 0;
        if (t->ndim == 1) {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = is_ln_weight ? 1 : 0;
            continue;
        }
        int resid = strstr(t->name, "attn.proj.w") || strstr(t->name, "mlp.proj.w");
        double std = resid ? resid_std : 0.02;
        size_t n = t->numel;
        if (strcmp(t->name, "wte") == 0) n = (size_t)m->cfg.vocab * m->cfg.width; // pad rows 0
        for (size_t j = 0; j < n; j++)
            p[j] = (real)(std * normal01(&s));
    }
    m->be->to_device(m->be, m->master, host, m->n_params * sizeof(real));
    free(host);
    TS_REAL(gpt2_sync_params)(m);
}

void TS_REAL(gpt2_zero_grad)(TS_REAL(gpt2) * m) {
    m->be->zero(m->be, m->grads, m->n_params * sizeof(real));
}

const void *TS_REAL(gpt2_logits)(const TS_REAL(gpt2) * m) {
    acts_view a;
    acts_layout(m, m->acts, &a);
    return a.logits;
}

// ---------------------------------------------------------------------------------------------
// forward

double TS_REAL(gpt2_forward)(TS_REAL(gpt2) * m, const int *tokens, const int *targets, int B, int T,
                             real dloss) {
    const TS_REAL(backend) *be = m->be;
    const gpt2_config *c = &m->cfg;
    TS_ASSERT(B >= 1 && B <= m->max_B && T >= 1 && T <= c->seq_len);
    int C = c->width, NH = c->heads, L = c->layers, Vp = c->padded_vocab;
    int BT = B * T;
    m->B = B;
    m->T = T;
    acts_strides s = strides_of(m);
    size_t e = s.esz, pe = ts_dtype_size(be->param_dtype);
    acts_view a;
    stats_view st;
    acts_layout(m, m->acts, &a);
    stats_layout(m, m->stats, &st);
    be->to_device(be, m->tokens, tokens, (size_t)BT * sizeof(int));
    if (targets) be->to_device(be, m->targets, targets, (size_t)BT * sizeof(int));

    const void *wte = at(m->params, m->tensors[0].offset, pe);
    const void *wpe = at(m->params, m->tensors[1].offset, pe);
    const void *lnfw = at(m->params, m->tensors[m->n_tensors - 2].offset, pe);
    const void *lnfb = at(m->params, m->tensors[m->n_tensors - 1].offset, pe);
    be->embed_forward(be, a.encoded, m->tokens, wte, wpe, B, T, C);
    block_params p0 = block_at(m, m->params, pe, 0);
    be->layernorm_forward(be, a.ln1, st.ln1_mean, st.ln1_rstd, a.encoded, p0.ln1w, p0.ln1b, BT, C);
    for (int l = 0; l < L; l++) {
        block_params p = block_at(m, m->params, pe, l);
        const void *residual = l == 0 ? a.encoded : at(a.residual3, (l - 1) * s.btc, e);
        void *ln1 = at(a.ln1, l * s.btc, e), *qkv = at(a.qkv, l * 3 * s.btc, e);
        void *atty = at(a.atty, l * s.btc, e), *attproj = at(a.attproj, l * s.btc, e);
        void *att_state = at(m->att_state, l, m->att_state_stride);
        void *residual2 = at(a.residual2, l * s.btc, e), *ln2 = at(a.ln2, l * s.btc, e);
        void *fch = at(a.fch, l * 4 * s.btc, e), *fch_gelu = at(a.fch_gelu, l * 4 * s.btc, e);
        void *fcproj = at(a.fcproj, l * s.btc, e), *residual3 = at(a.residual3, l * s.btc, e);
        size_t ob = l * s.bt;

        // ln1 of this block was computed by the previous block's fused residual+LayerNorm
        be->matmul_forward(be, qkv, ln1, p.qkvw, p.qkvb, BT, C, 3 * C);
        be->attention_forward(be, atty, att_state, qkv, B, T, C, NH);
        be->matmul_forward(be, attproj, atty, p.projw, p.projb, BT, C, C);
        be->residual_layernorm_forward(be, residual2, ln2, st.ln2_mean + ob, st.ln2_rstd + ob,
                                       residual, attproj, p.ln2w, p.ln2b, BT, C);
        be->matmul_gelu_forward(be, fch, fch_gelu, ln2, p.fcw, p.fcb, BT, C, 4 * C);
        be->matmul_forward(be, fcproj, fch_gelu, p.fcprojw, p.fcprojb, BT, 4 * C, C);
        if (l + 1 < L) {
            block_params pn = block_at(m, m->params, pe, l + 1);
            be->residual_layernorm_forward(
                be, residual3, at(a.ln1, (l + 1) * s.btc, e), st.ln1_mean + (l + 1) * s.bt,
                st.ln1_rstd + (l + 1) * s.bt, residual2, fcproj, pn.ln1w, pn.ln1b, BT, C);
        } else {
            be->residual_layernorm_forward(be, residual3, a.lnf, st.lnf_mean, st.lnf_rstd,
                                           residual2, fcproj, lnfw, lnfb, BT, C);
        }
    }
    be->matmul_forward(be, a.logits, a.lnf, wte, NULL, BT, C, Vp);
    if (!targets) return 0.0;

    be->classifier(be, a.logits, st.losses, m->targets, BT, c->vocab, Vp, dloss);
    be->to_host(be, m->losses_host, st.losses, (size_t)BT * sizeof(real));
    double sum = 0.0;
    for (int i = 0; i < BT; i++)
        sum += m->losses_host[i];
    return sum;
}

// ---------------------------------------------------------------------------------------------
// backward (the reverse of forward; every op accumulates into its gradients)

// tell the hook (if any) that gradients from flat offset `from` on are final
#define GRADS_READY(from)                                                                          \
    do {                                                                                           \
        if (m->grads_ready) {                                                                      \
            ts_status hs_ = m->grads_ready(m->grads_ready_ctx, (from));                            \
            if (hs_ != TS_OK) return hs_;                                                          \
        }                                                                                          \
    } while (0)

ts_status TS_REAL(gpt2_backward)(TS_REAL(gpt2) * m) {
    const TS_REAL(backend) *be = m->be;
    const gpt2_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->width, NH = c->heads, L = c->layers, Vp = c->padded_vocab;
    int BT = B * T;
    acts_strides s = strides_of(m);
    size_t e = s.esz, pe = ts_dtype_size(be->param_dtype);
    acts_view a, d;
    stats_view st;
    acts_layout(m, m->acts, &a);
    acts_layout(m, m->grad_acts, &d);
    stats_layout(m, m->stats, &st);
    be->zero(be, m->grad_acts, m->n_acts * e);

    const void *wte = at(m->params, m->tensors[0].offset, pe);
    const void *lnfw = at(m->params, m->tensors[m->n_tensors - 2].offset, pe);
    real *dwte = m->grads + m->tensors[0].offset;
    real *dwpe = m->grads + m->tensors[1].offset;
    real *dlnfw = m->grads + m->tensors[m->n_tensors - 2].offset;
    real *dlnfb = m->grads + m->tensors[m->n_tensors - 1].offset;

    // a.logits holds dlogits (written by the classifier in forward)
    be->matmul_backward(be, d.lnf, dwte, NULL, a.logits, a.lnf, wte, BT, C, Vp);
    const void *last = at(a.residual3, (L - 1) * s.btc, e);
    void *dlast = at(d.residual3, (L - 1) * s.btc, e);
    be->layernorm_backward(be, dlast, dlnfw, dlnfb, d.lnf, last, lnfw, st.lnf_mean, st.lnf_rstd, BT,
                           C);
    GRADS_READY(m->tensors[m->n_tensors - 2].offset);

    for (int l = L - 1; l >= 0; l--) {
        block_params p = block_at(m, m->params, pe, l);
        block_params g = block_at(m, m->grads, sizeof(real), l);
        const void *residual = l == 0 ? a.encoded : at(a.residual3, (l - 1) * s.btc, e);
        void *dresidual = l == 0 ? d.encoded : at(d.residual3, (l - 1) * s.btc, e);
        size_t o = l * s.btc, o4 = l * 4 * s.btc, o3 = l * 3 * s.btc, ob = l * s.bt;

        // residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
        void *dres3 = at(d.residual3, o, e), *dres2 = at(d.residual2, o, e);
        be->matmul_backward(be, at(d.fch_gelu, o4, e), g.fcprojw, g.fcprojb, dres3,
                            at(a.fch_gelu, o4, e), p.fcprojw, BT, 4 * C, C);
        be->gelu_backward(be, at(d.fch, o4, e), at(a.fch, o4, e), at(d.fch_gelu, o4, e),
                          (size_t)BT * 4 * C);
        be->matmul_backward(be, at(d.ln2, o, e), g.fcw, g.fcb, at(d.fch, o4, e), at(a.ln2, o, e),
                            p.fcw, BT, C, 4 * C);
        be->add_inplace(be, dres2, dres3, (size_t)BT * C);
        be->layernorm_backward(be, dres2, g.ln2w, g.ln2b, at(d.ln2, o, e), at(a.residual2, o, e),
                               p.ln2w, st.ln2_mean + ob, st.ln2_rstd + ob, BT, C);

        // residual2 = residual + proj(attention(qkv(ln1(residual))))
        be->matmul_backward(be, at(d.atty, o, e), g.projw, g.projb, dres2, at(a.atty, o, e),
                            p.projw, BT, C, C);
        be->attention_backward(be, at(d.qkv, o3, e), at(d.atty, o, e), at(a.qkv, o3, e),
                               at(a.atty, o, e), at(m->att_state, l, m->att_state_stride), B, T, C,
                               NH);
        be->matmul_backward(be, at(d.ln1, o, e), g.qkvw, g.qkvb, at(d.qkv, o3, e), at(a.ln1, o, e),
                            p.qkvw, BT, C, 3 * C);
        be->add_inplace(be, dresidual, dres2, (size_t)BT * C);
        be->layernorm_backward(be, dresidual, g.ln1w, g.ln1b, at(d.ln1, o, e), residual, p.ln1w,
                               st.ln1_mean + ob, st.ln1_rstd + ob, BT, C);
        GRADS_READY(m->tensors[2 + 12 * l].offset);
    }
    be->embed_backward(be, dwte, dwpe, d.encoded, m->tokens, B, T, C);
    GRADS_READY(0);
    return TS_OK;
}
