// gpt2.c — GPT-2 forward and backward as a sequence of backend kernel calls.
//
// Compiled twice (float and double, see kernels/precision.h). Nothing here knows which backend
// runs the ops: every buffer is backend memory and every computation is a backend call.
#include "gpt2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// activations: one buffer carved into named regions. Per-layer regions are sized for
// (max_B, maxT) so a smaller micro-batch or sequence just uses a prefix of each.

typedef struct {
    real *encoded;                   // (B,T,C)
    real *ln1, *ln1_mean, *ln1_rstd; // (L,B,T,C) (L,B,T) (L,B,T)
    real *qkv;                       // (L,B,T,3C)
    real *atty;                      // (L,B,T,C)
    real *preatt, *att;              // (L,B,NH,T,T)
    real *attproj, *residual2;       // (L,B,T,C)
    real *ln2, *ln2_mean, *ln2_rstd;
    real *fch, *fch_gelu;            // (L,B,T,4C)
    real *fcproj, *residual3;        // (L,B,T,C)
    real *lnf, *lnf_mean, *lnf_rstd; // (B,T,C) (B,T) (B,T)
    real *logits;                    // (B,T,Vp)
    real *losses;                    // (B,T)
} acts_view;

typedef struct {
    size_t btc, bt, att; // per-layer strides
} acts_strides;

static acts_strides strides_of(const TS_REAL(gpt2) * m) {
    const gpt2_config *c = &m->cfg;
    acts_strides s;
    s.bt = (size_t)m->max_B * c->seq_len;
    s.btc = s.bt * c->width;
    s.att = (size_t)m->max_B * c->heads * c->seq_len * c->seq_len;
    return s;
}

// carve base into regions; with base == NULL just count elements
static size_t acts_layout(const TS_REAL(gpt2) * m, real *base, acts_view *v) {
    const gpt2_config *c = &m->cfg;
    acts_strides s = strides_of(m);
    size_t L = (size_t)c->layers, off = 0;
    acts_view tmp;
    if (!v) v = &tmp;
#define REGION(field, n)                                                                           \
    v->field = base ? base + off : NULL;                                                           \
    off += (n)
    REGION(encoded, s.btc);
    REGION(ln1, L * s.btc);
    REGION(ln1_mean, L * s.bt);
    REGION(ln1_rstd, L * s.bt);
    REGION(qkv, L * 3 * s.btc);
    REGION(atty, L * s.btc);
    REGION(preatt, L * s.att);
    REGION(att, L * s.att);
    REGION(attproj, L * s.btc);
    REGION(residual2, L * s.btc);
    REGION(ln2, L * s.btc);
    REGION(ln2_mean, L * s.bt);
    REGION(ln2_rstd, L * s.bt);
    REGION(fch, L * 4 * s.btc);
    REGION(fch_gelu, L * 4 * s.btc);
    REGION(fcproj, L * s.btc);
    REGION(residual3, L * s.btc);
    REGION(lnf, s.btc);
    REGION(lnf_mean, s.bt);
    REGION(lnf_rstd, s.bt);
    REGION(logits, s.bt * c->padded_vocab);
    REGION(losses, s.bt);
#undef REGION
    return off;
}

// the parameters of one block, as pointers into a flat buffer (params or grads)
typedef struct {
    real *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} block_params;

static block_params block_at(const TS_REAL(gpt2) * m, real *flat, int l) {
    // tensors 2 + 12*l ... follow the order of gpt2_param_table
    const gpt2_tensor *t = &m->tensors[2 + 12 * l];
    block_params p;
    real **f = &p.ln1w;
    for (int i = 0; i < 12; i++) f[i] = flat + t[i].offset;
    return p;
}

// ---------------------------------------------------------------------------------------------
// lifetime

ts_status TS_REAL(gpt2_create)(TS_REAL(gpt2) * m, const gpt2_config *cfg,
                               const TS_REAL(backend) * be, int max_B) {
    memset(m, 0, sizeof *m);
    if (cfg->layers < 1 || cfg->heads < 1 || cfg->width < 1 || cfg->seq_len < 1 ||
        cfg->vocab < 2 || max_B < 1) {
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
    m->params = be->alloc(m->n_params * sizeof(real));
    m->grads = be->alloc(m->n_params * sizeof(real));
    m->n_acts = acts_layout(m, NULL, NULL);
    m->acts = be->alloc(m->n_acts * sizeof(real));
    m->grad_acts = be->alloc(m->n_acts * sizeof(real));
    size_t bt = (size_t)max_B * m->cfg.seq_len;
    m->tokens = be->alloc(bt * sizeof(int));
    m->targets = be->alloc(bt * sizeof(int));
    m->losses_host = ts_calloc(bt, sizeof(real), "per-token losses");
    return TS_OK;
}

void TS_REAL(gpt2_destroy)(TS_REAL(gpt2) * m) {
    if (!m->be) return;
    m->be->free(m->params);
    m->be->free(m->grads);
    m->be->free(m->acts);
    m->be->free(m->grad_acts);
    m->be->free(m->tokens);
    m->be->free(m->targets);
    free(m->tensors);
    free(m->losses_host);
    memset(m, 0, sizeof *m);
}

// splitmix64: a small, well-mixed generator so initialisation depends only on the seed
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 0.5) * 0x1.0p-53; }

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
            for (size_t j = 0; j < t->numel; j++) p[j] = is_ln_weight ? 1 : 0;
            continue;
        }
        int resid = strstr(t->name, "attn.proj.w") || strstr(t->name, "mlp.proj.w");
        double std = resid ? resid_std : 0.02;
        size_t n = t->numel;
        if (strcmp(t->name, "wte") == 0) n = (size_t)m->cfg.vocab * m->cfg.width; // pad rows 0
        for (size_t j = 0; j < n; j++) p[j] = (real)(std * normal01(&s));
    }
    m->be->to_device(m->params, host, m->n_params * sizeof(real));
    free(host);
}

void TS_REAL(gpt2_zero_grad)(TS_REAL(gpt2) * m) {
    m->be->zero(m->grads, m->n_params * sizeof(real));
}

const real *TS_REAL(gpt2_logits)(const TS_REAL(gpt2) * m) {
    acts_view a;
    acts_layout(m, m->acts, &a);
    return a.logits;
}

// ---------------------------------------------------------------------------------------------
// forward

double TS_REAL(gpt2_forward)(TS_REAL(gpt2) * m, const int *tokens, const int *targets, int B,
                             int T, real dloss) {
    const TS_REAL(backend) *be = m->be;
    const gpt2_config *c = &m->cfg;
    TS_ASSERT(B >= 1 && B <= m->max_B && T >= 1 && T <= c->seq_len);
    int C = c->width, NH = c->heads, L = c->layers, Vp = c->padded_vocab;
    int BT = B * T;
    m->B = B;
    m->T = T;
    acts_strides s = strides_of(m);
    acts_view a;
    acts_layout(m, m->acts, &a);
    be->to_device(m->tokens, tokens, (size_t)BT * sizeof(int));
    if (targets) be->to_device(m->targets, targets, (size_t)BT * sizeof(int));

    const real *wte = m->params + m->tensors[0].offset;
    const real *wpe = m->params + m->tensors[1].offset;
    be->embed_forward(a.encoded, m->tokens, wte, wpe, B, T, C);
    const real *residual = a.encoded;
    for (int l = 0; l < L; l++) {
        block_params p = block_at(m, m->params, l);
        real *ln1 = a.ln1 + l * s.btc, *ln1_mean = a.ln1_mean + l * s.bt;
        real *ln1_rstd = a.ln1_rstd + l * s.bt, *qkv = a.qkv + l * 3 * s.btc;
        real *atty = a.atty + l * s.btc, *preatt = a.preatt + l * s.att, *att = a.att + l * s.att;
        real *attproj = a.attproj + l * s.btc, *residual2 = a.residual2 + l * s.btc;
        real *ln2 = a.ln2 + l * s.btc, *ln2_mean = a.ln2_mean + l * s.bt;
        real *ln2_rstd = a.ln2_rstd + l * s.bt, *fch = a.fch + l * 4 * s.btc;
        real *fch_gelu = a.fch_gelu + l * 4 * s.btc, *fcproj = a.fcproj + l * s.btc;
        real *residual3 = a.residual3 + l * s.btc;

        be->layernorm_forward(ln1, ln1_mean, ln1_rstd, residual, p.ln1w, p.ln1b, BT, C);
        be->matmul_forward(qkv, ln1, p.qkvw, p.qkvb, BT, C, 3 * C);
        be->attention_forward(atty, preatt, att, qkv, B, T, C, NH);
        be->matmul_forward(attproj, atty, p.projw, p.projb, BT, C, C);
        be->add(residual2, residual, attproj, (size_t)BT * C);
        be->layernorm_forward(ln2, ln2_mean, ln2_rstd, residual2, p.ln2w, p.ln2b, BT, C);
        be->matmul_forward(fch, ln2, p.fcw, p.fcb, BT, C, 4 * C);
        be->gelu_forward(fch_gelu, fch, (size_t)BT * 4 * C);
        be->matmul_forward(fcproj, fch_gelu, p.fcprojw, p.fcprojb, BT, 4 * C, C);
        be->add(residual3, residual2, fcproj, (size_t)BT * C);
        residual = residual3;
    }
    const real *lnfw = m->params + m->tensors[m->n_tensors - 2].offset;
    const real *lnfb = m->params + m->tensors[m->n_tensors - 1].offset;
    be->layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, lnfw, lnfb, BT, C);
    be->matmul_forward(a.logits, a.lnf, wte, NULL, BT, C, Vp);
    if (!targets) return 0.0;

    be->classifier(a.logits, a.losses, m->targets, BT, c->vocab, Vp, dloss);
    be->to_host(m->losses_host, a.losses, (size_t)BT * sizeof(real));
    double sum = 0.0;
    for (int i = 0; i < BT; i++) sum += m->losses_host[i];
    return sum;
}

// ---------------------------------------------------------------------------------------------
// backward (the reverse of forward; every op accumulates into its gradients)

void TS_REAL(gpt2_backward)(TS_REAL(gpt2) * m) {
    const TS_REAL(backend) *be = m->be;
    const gpt2_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->width, NH = c->heads, L = c->layers, Vp = c->padded_vocab;
    int BT = B * T;
    acts_strides s = strides_of(m);
    acts_view a, d;
    acts_layout(m, m->acts, &a);
    acts_layout(m, m->grad_acts, &d);
    be->zero(m->grad_acts, m->n_acts * sizeof(real));

    const real *wte = m->params + m->tensors[0].offset;
    real *dwte = m->grads + m->tensors[0].offset;
    real *dwpe = m->grads + m->tensors[1].offset;
    const real *lnfw = m->params + m->tensors[m->n_tensors - 2].offset;
    real *dlnfw = m->grads + m->tensors[m->n_tensors - 2].offset;
    real *dlnfb = m->grads + m->tensors[m->n_tensors - 1].offset;

    // a.logits holds dlogits (written by the classifier in forward)
    be->matmul_backward(d.lnf, dwte, NULL, a.logits, a.lnf, wte, BT, C, Vp);
    const real *last = a.residual3 + (L - 1) * s.btc;
    real *dlast = d.residual3 + (L - 1) * s.btc;
    be->layernorm_backward(dlast, dlnfw, dlnfb, d.lnf, last, lnfw, a.lnf_mean, a.lnf_rstd, BT, C);

    for (int l = L - 1; l >= 0; l--) {
        block_params p = block_at(m, m->params, l);
        block_params g = block_at(m, m->grads, l);
        const real *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * s.btc;
        real *dresidual = l == 0 ? d.encoded : d.residual3 + (l - 1) * s.btc;
        size_t o = l * s.btc, o4 = l * 4 * s.btc, o3 = l * 3 * s.btc, ob = l * s.bt,
               oa = l * s.att;

        // residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
        real *dres3 = d.residual3 + o;
        be->matmul_backward(d.fch_gelu + o4, g.fcprojw, g.fcprojb, dres3, a.fch_gelu + o4,
                            p.fcprojw, BT, 4 * C, C);
        be->gelu_backward(d.fch + o4, a.fch + o4, d.fch_gelu + o4, (size_t)BT * 4 * C);
        be->matmul_backward(d.ln2 + o, g.fcw, g.fcb, d.fch + o4, a.ln2 + o, p.fcw, BT, C, 4 * C);
        be->add_inplace(d.residual2 + o, dres3, (size_t)BT * C);
        be->layernorm_backward(d.residual2 + o, g.ln2w, g.ln2b, d.ln2 + o, a.residual2 + o, p.ln2w,
                               a.ln2_mean + ob, a.ln2_rstd + ob, BT, C);

        // residual2 = residual + proj(attention(qkv(ln1(residual))))
        real *dres2 = d.residual2 + o;
        be->matmul_backward(d.atty + o, g.projw, g.projb, dres2, a.atty + o, p.projw, BT, C, C);
        be->attention_backward(d.qkv + o3, d.preatt + oa, d.att + oa, d.atty + o, a.qkv + o3,
                               a.att + oa, B, T, C, NH);
        be->matmul_backward(d.ln1 + o, g.qkvw, g.qkvb, d.qkv + o3, a.ln1 + o, p.qkvw, BT, C,
                            3 * C);
        be->add_inplace(dresidual, dres2, (size_t)BT * C);
        be->layernorm_backward(dresidual, g.ln1w, g.ln1b, d.ln1 + o, residual, p.ln1w,
                               a.ln1_mean + ob, a.ln1_rstd + ob, BT, C);
    }
    be->embed_backward(dwte, dwpe, d.encoded, m->tokens, B, T, C);
}
