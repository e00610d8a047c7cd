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

static acts_strides strides_of(const gpt2_config *c, int max_B, size_t esz) {
    acts_strides s;
    s.bt = (size_t)max_B * c->seq_len;
    s.btc = s.bt * c->width;
    s.esz = esz;
    return s;
}

// element i of a buffer of elements of esz bytes
static inline void *at(const void *base, size_t i, size_t esz) { return (char *)base + i * esz; }

// carve base into regions; with base == NULL just count elements
static size_t acts_layout(const gpt2_config *c, acts_strides s, void *base, acts_view *v) {
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

static size_t stats_layout(const gpt2_config *c, acts_strides s, real *base, stats_view *v) {
    size_t L = (size_t)c->layers, off = 0;
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

// GPT-2's own state (model->impl): the shape as a struct, and the activations
typedef struct {
    gpt2_config cfg;
    int B, T;          // shape of the last forward
    acts_strides s;    // activations are sized for (max_B, maxT)
    size_t n_acts;     // elements of act_dtype in acts (and in grad_acts)
    size_t n_stats;    // `real` elements in stats
    void *acts;        // backend memory: all forward activations
    void *grad_acts;   // backend memory: activation gradients (same layout)
    real *stats;       // backend memory: LayerNorm means and rstds, per-token losses
    int *tokens;       // backend memory (max_B*maxT)
    int *targets;      // backend memory (max_B*maxT)
    real *losses_host; // host copy of per-token losses (max_B*maxT)
    // backend memory: what attention forward saves for backward, in the backend's own layout;
    // layer l's at byte att_state_stride * l, the stride being attention_state_bytes for
    // (max_B, maxT) rounded up to 256
    void *att_state;
    size_t att_state_stride;
} gpt2_state;

// the parameters of one block, as pointers into a flat buffer of esz-byte elements
typedef struct {
    void *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} block_params;

static block_params block_at(const TS_REAL(model) * m, void *flat, size_t esz, int l) {
    // tensors 2 + 12*l ... follow the order of gpt2_param_table
    const model_tensor *t = &m->tensors[2 + 12 * l];
    block_params p;
    void **f = &p.ln1w;
    for (int i = 0; i < 12; i++)
        f[i] = at(flat, t[i].offset, esz);
    return p;
}

// ---------------------------------------------------------------------------------------------
// shape: the [model] keys, and the padded vocabulary derived from vocab

static const model_dim gpt2_dims[] = {
    {"layers", 1, 0, 0, NULL}, {"heads", 1, 0, 0, NULL},
    {"width", 1, 0, 0, NULL},  {"seq_len", 1, 0, 0, NULL},
    {"vocab", 1, 0, 0, NULL},  {"padded_vocab", 0, 2, 2147483647, "padded"},
};
enum { D_LAYERS, D_HEADS, D_WIDTH, D_SEQ_LEN, D_VOCAB, D_PADDED_VOCAB, GPT2_N_DIMS };

static gpt2_config config_of(const TS_REAL(model_shape) * s) {
    gpt2_config c = {s->dim[D_LAYERS],  s->dim[D_HEADS], s->dim[D_WIDTH],
                     s->dim[D_SEQ_LEN], s->dim[D_VOCAB], s->dim[D_PADDED_VOCAB]};
    return c;
}

void TS_REAL(gpt2_shape)(TS_REAL(model_shape) * out, const gpt2_config *c) {
    TS_REAL(model_shape_init)(out, &TS_REAL(model_arch_gpt2));
    const int v[GPT2_N_DIMS] = {c->layers,  c->heads, c->width,
                                c->seq_len, c->vocab, c->padded_vocab};
    memcpy(out->dim, v, sizeof v);
}

static ts_status gpt2_complete(TS_REAL(model_shape) * s, char *why, size_t why_len) {
    gpt2_config c = config_of(s);
    if (c.layers < 1 || c.heads < 1 || c.width < 1 || c.seq_len < 1 || c.vocab < 2) {
        snprintf(why, why_len,
                 "layers, heads, width and seq_len must be >= 1 and vocab >= 2 (got %d, %d, %d, "
                 "%d, vocab %d)",
                 c.layers, c.heads, c.width, c.seq_len, c.vocab);
        return TS_ERR_INPUT;
    }
    if (c.width % c.heads != 0) {
        snprintf(why, why_len, "width %d is not a multiple of heads %d", c.width, c.heads);
        return TS_ERR_INPUT;
    }
    if (c.vocab > 2147483520) {
        snprintf(why, why_len, "vocab %d is too large to pad to a multiple of 128", c.vocab);
        return TS_ERR_INPUT;
    }
    int padded = gpt2_padded_vocab(c.vocab);
    if (s->dim[D_PADDED_VOCAB] == 0) s->dim[D_PADDED_VOCAB] = padded;
    if (s->dim[D_PADDED_VOCAB] != padded) {
        snprintf(why, why_len,
                 "padded_vocab %d: expected %d (vocab %d rounded up to a multiple "
                 "of 128)",
                 s->dim[D_PADDED_VOCAB], padded, c.vocab);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

static int gpt2_table(const TS_REAL(model_shape) * s, model_tensor *out, int cap,
                      size_t *n_params) {
    gpt2_config c = config_of(s);
    return gpt2_param_table(&c, out, cap, n_params);
}

static void gpt2_describe(const TS_REAL(model_shape) * s, char *buf, size_t len) {
    gpt2_config c = config_of(s);
    snprintf(buf, len, "%d layers, %d heads, width %d, context %d, vocabulary %d (padded %d)",
             c.layers, c.heads, c.width, c.seq_len, c.vocab, c.padded_vocab);
}

static int gpt2_logits_stride(const TS_REAL(model_shape) * s) { return s->dim[D_PADDED_VOCAB]; }

// every size of the state, from the shape alone (the fit check needs them before create)
static void state_sizes(const gpt2_config *c, const TS_REAL(backend) * be, int max_B,
                        gpt2_state *gs) {
    memset(gs, 0, sizeof *gs);
    gs->cfg = *c;
    gs->s = strides_of(c, max_B, ts_dtype_size(be->act_dtype));
    gs->n_acts = acts_layout(c, gs->s, NULL, NULL);
    gs->n_stats = stats_layout(c, gs->s, NULL, NULL);
    size_t state = be->attention_state_bytes(be, max_B, c->seq_len, c->width, c->heads);
    gs->att_state_stride = (state + 255) / 256 * 256;
}

static size_t gpt2_state_bytes(const TS_REAL(model_shape) * s, const TS_REAL(backend) * be,
                               int max_B) {
    gpt2_config c = config_of(s);
    gpt2_state gs;
    state_sizes(&c, be, max_B, &gs);
    size_t bt = (size_t)max_B * c.seq_len;
    return gs.n_acts * gs.s.esz * 2 + gs.n_stats * sizeof(real) +
           (size_t)c.layers * gs.att_state_stride + 2 * bt * sizeof(int);
}

// ---------------------------------------------------------------------------------------------
// lifetime

static void gpt2_create(TS_REAL(model) * m) {
    const TS_REAL(backend) *be = m->be;
    gpt2_config c = config_of(&m->shape);
    gpt2_state *gs = ts_calloc(1, sizeof *gs, "GPT-2 state");
    state_sizes(&c, be, m->max_B, gs);
    size_t bt = (size_t)m->max_B * c.seq_len;
    gs->acts = be->alloc(be, gs->n_acts * gs->s.esz);
    gs->grad_acts = be->alloc(be, gs->n_acts * gs->s.esz);
    gs->stats = be->alloc(be, gs->n_stats * sizeof(real));
    gs->att_state = be->alloc(be, (size_t)c.layers * gs->att_state_stride);
    gs->tokens = be->alloc(be, bt * sizeof(int));
    gs->targets = be->alloc(be, bt * sizeof(int));
    gs->losses_host = ts_calloc(bt, sizeof(real), "per-token losses");
    m->impl = gs;
}

static void gpt2_destroy(TS_REAL(model) * m) {
    gpt2_state *gs = m->impl;
    if (!gs) return;
    m->be->free(m->be, gs->acts);
    m->be->free(m->be, gs->grad_acts);
    m->be->free(m->be, gs->stats);
    m->be->free(m->be, gs->att_state);
    m->be->free(m->be, gs->tokens);
    m->be->free(m->be, gs->targets);
    free(gs->losses_host);
    free(gs);
    m->impl = NULL;
}

// initialisation depends only on the seed (base/rng.h); uniform in (0, 1): never 0 for the log
static double uniform01(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * 0x1.0p-53; }

static double normal01(uint64_t *s) {
    double u1 = uniform01(s), u2 = uniform01(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// GPT-2 initialisation, deterministic in seed: weights N(0, 0.02), residual projections
// (attn.proj.w, mlp.proj.w) N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weights 1; the padding
// rows of wte stay 0.
static void gpt2_init_weights(const TS_REAL(model) * m, real *host, uint64_t seed) {
    const gpt2_state *gs = m->impl;
    double resid_std = 0.02 / sqrt(2.0 * gs->cfg.layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
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
        if (strcmp(t->name, "wte") == 0) n = (size_t)gs->cfg.vocab * gs->cfg.width; // pad rows 0
        for (size_t j = 0; j < n; j++)
            p[j] = (real)(std * normal01(&s));
    }
}

static const void *gpt2_logits(const TS_REAL(model) * m) {
    const gpt2_state *gs = m->impl;
    acts_view a;
    acts_layout(&gs->cfg, gs->s, gs->acts, &a);
    return a.logits;
}

// ---------------------------------------------------------------------------------------------
// forward

static double gpt2_forward(TS_REAL(model) * m, const int *tokens, const int *targets, int B, int T,
                           real dloss) {
    const TS_REAL(backend) *be = m->be;
    gpt2_state *gs = m->impl;
    const gpt2_config *c = &gs->cfg;
    int C = c->width, NH = c->heads, L = c->layers, Vp = c->padded_vocab;
    int BT = B * T;
    gs->B = B;
    gs->T = T;
    acts_strides s = gs->s;
    size_t e = s.esz, pe = ts_dtype_size(be->param_dtype);
    acts_view a;
    stats_view st;
    acts_layout(c, s, gs->acts, &a);
    stats_layout(c, s, gs->stats, &st);
    be->to_device(be, gs->tokens, tokens, (size_t)BT * sizeof(int));
    if (targets) be->to_device(be, gs->targets, targets, (size_t)BT * sizeof(int));

    const void *wte = at(m->params, m->tensors[0].offset, pe);
    const void *wpe = at(m->params, m->tensors[1].offset, pe);
    const void *lnfw = at(m->params, m->tensors[m->n_tensors - 2].offset, pe);
    const void *lnfb = at(m->params, m->tensors[m->n_tensors - 1].offset, pe);
    be->embed_forward(be, a.encoded, gs->tokens, wte, wpe, B, T, C);
    block_params p0 = block_at(m, m->params, pe, 0);
    be->layernorm_forward(be, a.ln1, st.ln1_mean, st.ln1_rstd, a.encoded, p0.ln1w, p0.ln1b, BT, C);
    for (int l = 0; l < L; l++) {
        block_params p = block_at(m, m->params, pe, l);
        const void *residual = l == 0 ? a.encoded : at(a.residual3, (l - 1) * s.btc, e);
        void *ln1 = at(a.ln1, l * s.btc, e), *qkv = at(a.qkv, l * 3 * s.btc, e);
        void *atty = at(a.atty, l * s.btc, e), *attproj = at(a.attproj, l * s.btc, e);
        void *att_state = at(gs->att_state, l, gs->att_state_stride);
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

    be->classifier(be, a.logits, st.losses, gs->targets, BT, c->vocab, Vp, dloss);
    be->to_host(be, gs->losses_host, st.losses, (size_t)BT * sizeof(real));
    double sum = 0.0;
    for (int i = 0; i < BT; i++)
        sum += gs->losses_host[i];
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

static ts_status gpt2_backward(TS_REAL(model) * m) {
    const TS_REAL(backend) *be = m->be;
    gpt2_state *gs = m->impl;
    const gpt2_config *c = &gs->cfg;
    int B = gs->B, T = gs->T, C = c->width, NH = c->heads, L = c->layers, Vp = c->padded_vocab;
    int BT = B * T;
    acts_strides s = gs->s;
    size_t e = s.esz, pe = ts_dtype_size(be->param_dtype);
    acts_view a, d;
    stats_view st;
    acts_layout(c, s, gs->acts, &a);
    acts_layout(c, s, gs->grad_acts, &d);
    stats_layout(c, s, gs->stats, &st);
    be->zero(be, gs->grad_acts, gs->n_acts * e);

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
                               at(a.atty, o, e), at(gs->att_state, l, gs->att_state_stride), B, T,
                               C, NH);
        be->matmul_backward(be, at(d.ln1, o, e), g.qkvw, g.qkvb, at(d.qkv, o3, e), at(a.ln1, o, e),
                            p.qkvw, BT, C, 3 * C);
        be->add_inplace(be, dresidual, dres2, (size_t)BT * C);
        be->layernorm_backward(be, dresidual, g.ln1w, g.ln1b, at(d.ln1, o, e), residual, p.ln1w,
                               st.ln1_mean + ob, st.ln1_rstd + ob, BT, C);
        GRADS_READY(m->tensors[2 + 12 * l].offset);
    }
    be->embed_backward(be, dwte, dwpe, d.encoded, gs->tokens, B, T, C);
    GRADS_READY(0);
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// the architecture, as the registry lists it (models/model.c)

const TS_REAL(model_arch) TS_REAL(model_arch_gpt2) = {
    .name = "gpt2",
    .title = "GPT-2",
    .n_dims = GPT2_N_DIMS,
    .dims = gpt2_dims,
    .complete = gpt2_complete,
    .param_table = gpt2_table,
    .describe = gpt2_describe,
    .logits_stride = gpt2_logits_stride,
    .state_bytes = gpt2_state_bytes,
    .create = gpt2_create,
    .destroy = gpt2_destroy,
    .init_weights = gpt2_init_weights,
    .forward = gpt2_forward,
    .backward = gpt2_backward,
    .logits = gpt2_logits,
};
