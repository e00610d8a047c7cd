// ops_compare.c — every op of a device backend (h->dev, e.g. CUDA) against the CPU backend
// (h->cpu), on random inputs; run by `test_backend_ops NAME f32|bf16 [--quick]`.
//
// One run tests one mode of the backend: f32 (everything in fp32, compared tightly) or bf16
// (activations and compute parameters in bf16, fp32 gradients, master weights and moments). Both
// backends get the same inputs: values are drawn on the host, rounded to the device's activation
// type, and given to the CPU as those rounded numbers, so the only differences left are the
// kernels' own rounding and summation order.
//
// Shapes are chosen so that nothing is a multiple of a block size (B=3, T=37, C=72 with 3 heads
// of 24, OC=200, V=301 padded to 384, n=10007 for elementwise ops), plus GPT-2's head size 64 at
// C=768 (skipped with --quick, which keeps memcheck runs short), and attention at T=1.
// Backward ops start from non-zero gradient buffers, so += is checked, not just =, and are run a
// second time from the same state to check that they give the same bits (no float atomics).
//
// Tolerances, as ||dev - cpu|| / ||cpu|| per tensor:
//   TOL_F32   1e-5  f32 mode, and fp32-only ops in both modes (AdamW master/moments, scale)
//   TOL_ACC   1e-3  bf16 mode, fp32 outputs computed from bf16 inputs (parameter gradients,
//                   LayerNorm statistics, losses): fp32 arithmetic on identical inputs
//   TOL_BF16  1e-2  bf16 mode, outputs stored in bf16 (one rounding is up to 2^-9 relative)
//   sum_squares 1e-9 (double accumulation on both sides); scale and copies are exact.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ops/ops.h"

#define TOL_F32  1e-5
#define TOL_ACC  1e-3
#define TOL_BF16 1e-2

static harness *H; // the run in progress (ops_compare)
static uint64_t RNG = 0x5eed0fc0dau;
static const char *SHAPE = ""; // prefix of check names

typedef struct {
    const char *name;
    int B, T, C, NH, OC, V, Vp, maxT;
} shape;

static double tol_act(void) { return H->mode == TS_BF16 ? TOL_BF16 : TOL_F32; }
static double tol_acc(void) { return H->mode == TS_BF16 ? TOL_ACC : TOL_F32; }

static const char *nm(const char *what) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s%s", SHAPE, what);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// a tensor on both backends

typedef struct {
    size_t n;
    int act;    // 1: elements of the CUDA backend's activation type; 0: fp32 (real*)
    float *ref; // CPU backend memory: the reference computes here
    void *dev;  // CUDA backend memory
} pair;

static size_t pair_esz(int act) { return act ? ts_dtype_size(H->mode) : sizeof(float); }

static pair pair_alloc(size_t n, int act) {
    pair p = {n, act, H->cpu->alloc(H->cpu, n * sizeof(float)),
              H->dev->alloc(H->dev, n * pair_esz(act))};
    return p;
}

// both copies = host (activations rounded to the device type first)
static void pair_set(pair *p, const float *host) {
    for (size_t i = 0; i < p->n; i++)
        p->ref[i] = p->act ? harness_round_act(H, host[i]) : host[i];
    if (p->act)
        H->dev->act_to_device(H->dev, p->dev, p->ref, p->n);
    else
        H->dev->to_device(H->dev, p->dev, p->ref, p->n * sizeof(float));
}

static pair pair_rand(size_t n, int act, float lo, float hi) {
    pair p = pair_alloc(n, act);
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = (float)harness_rng_uniform(&RNG, lo, hi);
    pair_set(&p, h);
    free(h);
    return p;
}

// the device copy, as floats on the host (caller frees)
static float *pair_fetch(const pair *p) {
    float *h = malloc(p->n * sizeof(float));
    H->dev->synchronize(H->dev);
    if (p->act)
        H->dev->act_to_host(H->dev, h, p->dev, p->n);
    else
        H->dev->to_host(H->dev, h, p->dev, p->n * sizeof(float));
    return h;
}

static void pair_check(const char *what, const pair *p, double tol) {
    float *h = pair_fetch(p);
    harness_check_close(H, nm(what), h, p->ref, p->n, tol);
    free(h);
}

// raw device bytes (for bit-exact repeat checks)
static void *pair_bytes(const pair *p) {
    size_t bytes = p->n * pair_esz(p->act);
    void *h = malloc(bytes);
    H->dev->synchronize(H->dev);
    H->dev->to_host(H->dev, h, p->dev, bytes);
    return h;
}

// after an op was run a second time from the same inputs: same bits as `first`?
static void check_same_bits(const char *what, const pair *p, const void *first) {
    void *again = pair_bytes(p);
    size_t esz = pair_esz(p->act), diff = 0;
    for (size_t i = 0; i < p->n; i++)
        if (memcmp((const char *)again + i * esz, (const char *)first + i * esz, esz)) diff++;
    char buf[96];
    snprintf(buf, sizeof buf, "%s repeat: differing elements", what);
    harness_check_err(H, nm(buf), (double)diff, 0);
    free(again);
}

// restore the device copy from the reference's starting values `init` (host floats)
static void pair_reset(pair *p, const float *init) {
    if (p->act)
        H->dev->act_to_device(H->dev, p->dev, init, p->n);
    else
        H->dev->to_device(H->dev, p->dev, init, p->n * sizeof(float));
}

static float *copy_of(const float *x, size_t n) {
    float *c = malloc(n * sizeof(float));
    memcpy(c, x, n * sizeof(float));
    return c;
}

static void pair_free(pair *p) {
    H->cpu->free(H->cpu, p->ref);
    H->dev->free(H->dev, p->dev);
}

// int32 array on both backends
typedef struct {
    int *ref, *dev;
} ipair;

static ipair ipair_new(const int *host, size_t n) {
    ipair p = {H->cpu->alloc(H->cpu, n * sizeof(int)), H->dev->alloc(H->dev, n * sizeof(int))};
    memcpy(p.ref, host, n * sizeof(int));
    H->dev->to_device(H->dev, p.dev, host, n * sizeof(int));
    return p;
}

static void ipair_free(ipair *p) {
    H->cpu->free(H->cpu, p->ref);
    H->dev->free(H->dev, p->dev);
}

// ---------------------------------------------------------------------------------------------
// memory and conversions

static void check_memory(void) {
    const backend *be = H->dev;
    const size_t n = 12345; // bytes; odd on purpose
    unsigned char *h = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++)
        h[i] = (unsigned char)harness_rng_next(&RNG);

    void *d = be->alloc(be, n);
    be->to_host(be, back, d, n);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++)
        nonzero += back[i] != 0;
    harness_check_err(H, "alloc: non-zero bytes", (double)nonzero, 0);

    be->to_device(be, d, h, n);
    be->to_host(be, back, d, n);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff += back[i] != h[i];
    harness_check_err(H, "to_device/to_host: differing bytes", (double)diff, 0);

    be->zero(be, (char *)d + 8, 1000);
    be->synchronize(be);
    be->to_host(be, back, d, n);
    diff = 0;
    for (size_t i = 0; i < n; i++)
        diff += back[i] != (i >= 8 && i < 1008 ? 0 : h[i]);
    harness_check_err(H, "zero (bytes 8..1007): wrong bytes", (double)diff, 0);
    be->free(be, d);

    // activations: the device keeps each float rounded to its type (bf16: to nearest, ties even)
    const size_t m = 10007;
    float *x = malloc(m * sizeof(float)), *y = malloc(m * sizeof(float));
    for (size_t i = 0; i < m; i++)
        x[i] = (float)harness_rng_uniform(&RNG, -300, 300);
    x[0] = 1.00390625f; // halfway between two bf16 values: rounds to even (1.0)
    void *a = be->alloc(be, m * ts_dtype_size(H->mode));
    be->act_to_device(be, a, x, m);
    be->act_to_host(be, y, a, m);
    diff = 0;
    for (size_t i = 0; i < m; i++)
        diff += y[i] != harness_round_act(H, x[i]);
    harness_check_err(H, "act_to_device/act_to_host: not rounded", (double)diff, 0);

    // params_from_master: param (param_dtype) = master (fp32)
    float *master = be->alloc(be, m * sizeof(float));
    be->to_device(be, master, x, m * sizeof(float));
    be->params_from_master(be, a, master, m);
    be->act_to_host(be, y, a, m);
    diff = 0;
    for (size_t i = 0; i < m; i++)
        diff += y[i] != harness_round_act(H, x[i]);
    harness_check_err(H, "params_from_master: not rounded", (double)diff, 0);
    be->free(be, master);
    be->free(be, a);

    size_t free_bytes = be->mem_free ? be->mem_free(be) : 0;
    printf("  mem_free: %.2f GiB\n", (double)free_bytes / (1 << 30));
    harness_check_err(H, "mem_free reports free memory (0: no)", free_bytes > 0 ? 0 : 1, 0);
    free(x);
    free(y);
    free(h);
    free(back);
}

// ---------------------------------------------------------------------------------------------
// embedding and LayerNorm

static void check_embed(const shape *s) {
    const int B = s->B, T = s->T, C = s->C, BT = B * T;
    int *tok = malloc(BT * sizeof(int));
    // every fifth position is token 7, so rows of dwte receive several contributions
    for (int i = 0; i < BT; i++)
        tok[i] = i % 5 == 0 ? 7 : harness_rng_int(&RNG, s->V);
    ipair tokens = ipair_new(tok, BT);
    pair wte = pair_rand((size_t)s->Vp * C, 1, -1, 1),
         wpe = pair_rand((size_t)s->maxT * C, 1, -1, 1);
    pair out = pair_alloc((size_t)BT * C, 1);
    H->cpu->embed_forward(H->cpu, out.ref, tokens.ref, wte.ref, wpe.ref, B, T, C);
    H->dev->embed_forward(H->dev, out.dev, tokens.dev, wte.dev, wpe.dev, B, T, C);
    pair_check("embed_forward.out", &out, tol_act());

    pair dwte = pair_rand((size_t)s->Vp * C, 0, -1, 1),
         dwpe = pair_rand((size_t)s->maxT * C, 0, -1, 1);
    float *dwte0 = copy_of(dwte.ref, dwte.n), *dwpe0 = copy_of(dwpe.ref, dwpe.n);
    pair dout = pair_rand((size_t)BT * C, 1, -1, 1);
    H->cpu->embed_backward(H->cpu, dwte.ref, dwpe.ref, dout.ref, tokens.ref, B, T, C);
    H->dev->embed_backward(H->dev, dwte.dev, dwpe.dev, dout.dev, tokens.dev, B, T, C);
    pair_check("embed_backward.dwte (+=, repeated tokens)", &dwte, tol_acc());
    pair_check("embed_backward.dwpe (+=)", &dwpe, tol_acc());
    void *b1 = pair_bytes(&dwte), *b2 = pair_bytes(&dwpe);
    pair_reset(&dwte, dwte0);
    pair_reset(&dwpe, dwpe0);
    H->dev->embed_backward(H->dev, dwte.dev, dwpe.dev, dout.dev, tokens.dev, B, T, C);
    check_same_bits("embed_backward.dwte", &dwte, b1);
    check_same_bits("embed_backward.dwpe", &dwpe, b2);
    free(b1), free(b2), free(dwte0), free(dwpe0), free(tok);
    pair *all[] = {&wte, &wpe, &out, &dwte, &dwpe, &dout};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pair_free(all[i]);
    ipair_free(&tokens);
}

static void check_layernorm(const shape *s) {
    const int N = s->B * s->T, C = s->C;
    const size_t NC = (size_t)N * C;
    // rows with a mean far from 0 against their spread (what the residual stream looks like)
    pair inp = pair_rand(NC, 1, -1, 1);
    {
        float *h = malloc(NC * sizeof(float));
        for (size_t i = 0; i < NC; i++)
            h[i] = inp.ref[i] + 3.0f;
        pair_set(&inp, h);
        free(h);
    }
    pair w = pair_rand(C, 1, 0.5f, 1.5f), b = pair_rand(C, 1, -0.5f, 0.5f);
    pair out = pair_alloc(NC, 1), mean = pair_alloc(N, 0), rstd = pair_alloc(N, 0);
    H->cpu->layernorm_forward(H->cpu, out.ref, mean.ref, rstd.ref, inp.ref, w.ref, b.ref, N, C);
    H->dev->layernorm_forward(H->dev, out.dev, mean.dev, rstd.dev, inp.dev, w.dev, b.dev, N, C);
    pair_check("layernorm_forward.out", &out, tol_act());
    pair_check("layernorm_forward.mean", &mean, tol_acc());
    pair_check("layernorm_forward.rstd", &rstd, tol_acc());

    // fused residual add + LayerNorm
    pair a = pair_rand(NC, 1, -2, 2), b_in = pair_rand(NC, 1, -1, 1);
    pair res = pair_alloc(NC, 1), out2 = pair_alloc(NC, 1), mean2 = pair_alloc(N, 0),
         rstd2 = pair_alloc(N, 0);
    H->cpu->residual_layernorm_forward(H->cpu, res.ref, out2.ref, mean2.ref, rstd2.ref, a.ref,
                                       b_in.ref, w.ref, b.ref, N, C);
    H->dev->residual_layernorm_forward(H->dev, res.dev, out2.dev, mean2.dev, rstd2.dev, a.dev,
                                       b_in.dev, w.dev, b.dev, N, C);
    pair_check("residual_layernorm_forward.residual", &res, tol_act());
    pair_check("residual_layernorm_forward.out", &out2, tol_act());
    // (the device may take the statistics of the rounded residual: bf16 tolerance there)
    pair_check("residual_layernorm_forward.mean", &mean2, tol_act());
    pair_check("residual_layernorm_forward.rstd", &rstd2, tol_act());

    // backward with the forward's statistics (the CPU's, given to both)
    pair m_in = pair_alloc(N, 0), r_in = pair_alloc(N, 0);
    pair_set(&m_in, mean.ref);
    pair_set(&r_in, rstd.ref);
    pair dout = pair_rand(NC, 1, -1, 1);
    pair dinp = pair_rand(NC, 1, -1, 1), dw = pair_rand(C, 0, -1, 1), db = pair_rand(C, 0, -1, 1);
    float *dinp0 = copy_of(dinp.ref, NC), *dw0 = copy_of(dw.ref, C), *db0 = copy_of(db.ref, C);
    H->cpu->layernorm_backward(H->cpu, dinp.ref, dw.ref, db.ref, dout.ref, inp.ref, w.ref, m_in.ref,
                               r_in.ref, N, C);
    H->dev->layernorm_backward(H->dev, dinp.dev, dw.dev, db.dev, dout.dev, inp.dev, w.dev, m_in.dev,
                               r_in.dev, N, C);
    pair_check("layernorm_backward.dinp (+=)", &dinp, tol_act());
    pair_check("layernorm_backward.dw (+=)", &dw, tol_acc());
    pair_check("layernorm_backward.db (+=)", &db, tol_acc());
    void *b1 = pair_bytes(&dinp), *b2 = pair_bytes(&dw), *b3 = pair_bytes(&db);
    pair_reset(&dinp, dinp0);
    pair_reset(&dw, dw0);
    pair_reset(&db, db0);
    H->dev->layernorm_backward(H->dev, dinp.dev, dw.dev, db.dev, dout.dev, inp.dev, w.dev, m_in.dev,
                               r_in.dev, N, C);
    check_same_bits("layernorm_backward.dinp", &dinp, b1);
    check_same_bits("layernorm_backward.dw", &dw, b2);
    check_same_bits("layernorm_backward.db", &db, b3);
    free(b1), free(b2), free(b3), free(dinp0), free(dw0), free(db0);
    pair *all[] = {&inp,  &w,     &b,     &out,  &mean, &rstd, &a,    &b_in, &res,
                   &out2, &mean2, &rstd2, &m_in, &r_in, &dout, &dinp, &dw,   &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pair_free(all[i]);
}

// ---------------------------------------------------------------------------------------------
// matmul: out(N,OC) = inp(N,C) @ w(OC,C)^T + bias

static void check_matmul_one(const char *tag, int N, int C, int OC, int with_bias) {
    char what[96];
#define NAME(s)                                                                                    \
    (snprintf(what, sizeof what, "matmul[%s %dx%dx%d%s] %s", tag, N, C, OC,                        \
              with_bias ? "" : " no bias", s),                                                     \
     what)
    pair inp = pair_rand((size_t)N * C, 1, -1, 1), w = pair_rand((size_t)OC * C, 1, -0.2f, 0.2f);
    pair bias = pair_rand(OC, 1, -0.5f, 0.5f);
    void *bias_ref = with_bias ? bias.ref : NULL, *bias_dev = with_bias ? bias.dev : NULL;
    pair out = pair_alloc((size_t)N * OC, 1);
    H->cpu->matmul_forward(H->cpu, out.ref, inp.ref, w.ref, bias_ref, N, C, OC);
    H->dev->matmul_forward(H->dev, out.dev, inp.dev, w.dev, bias_dev, N, C, OC);
    pair_check(NAME("forward.out"), &out, tol_act());

    pair pre = pair_alloc((size_t)N * OC, 1), act = pair_alloc((size_t)N * OC, 1);
    H->cpu->matmul_gelu_forward(H->cpu, pre.ref, act.ref, inp.ref, w.ref, bias_ref, N, C, OC);
    H->dev->matmul_gelu_forward(H->dev, pre.dev, act.dev, inp.dev, w.dev, bias_dev, N, C, OC);
    pair_check(NAME("gelu_forward.pre"), &pre, tol_act());
    pair_check(NAME("gelu_forward.out"), &act, tol_act());

    // backward: all gradients, then without dinp and dbias (the LM head's call)
    pair dout = pair_rand((size_t)N * OC, 1, -1, 1);
    pair dinp = pair_rand((size_t)N * C, 1, -1, 1), dw = pair_rand((size_t)OC * C, 0, -1, 1);
    pair dbias = pair_rand(OC, 0, -1, 1);
    float *dinp0 = copy_of(dinp.ref, dinp.n), *dw0 = copy_of(dw.ref, dw.n),
          *dbias0 = copy_of(dbias.ref, dbias.n);
    H->cpu->matmul_backward(H->cpu, dinp.ref, dw.ref, dbias.ref, dout.ref, inp.ref, w.ref, N, C,
                            OC);
    H->dev->matmul_backward(H->dev, dinp.dev, dw.dev, dbias.dev, dout.dev, inp.dev, w.dev, N, C,
                            OC);
    pair_check(NAME("backward.dinp (+=)"), &dinp, tol_act());
    pair_check(NAME("backward.dw (+=)"), &dw, tol_acc());
    pair_check(NAME("backward.dbias (+=)"), &dbias, tol_acc());
    void *b1 = pair_bytes(&dinp), *b2 = pair_bytes(&dw), *b3 = pair_bytes(&dbias);
    pair_reset(&dinp, dinp0);
    pair_reset(&dw, dw0);
    pair_reset(&dbias, dbias0);
    H->dev->matmul_backward(H->dev, dinp.dev, dw.dev, dbias.dev, dout.dev, inp.dev, w.dev, N, C,
                            OC);
    check_same_bits(NAME("backward.dinp"), &dinp, b1);
    check_same_bits(NAME("backward.dw"), &dw, b2);
    check_same_bits(NAME("backward.dbias"), &dbias, b3);
    free(b1), free(b2), free(b3);

    pair_reset(&dw, dw0);
    memcpy(dw.ref, dw0, dw.n * sizeof(float));
    H->cpu->matmul_backward(H->cpu, NULL, dw.ref, NULL, dout.ref, inp.ref, w.ref, N, C, OC);
    H->dev->matmul_backward(H->dev, NULL, dw.dev, NULL, dout.dev, inp.dev, w.dev, N, C, OC);
    pair_check(NAME("backward (dw only).dw (+=)"), &dw, tol_acc());
    free(dinp0), free(dw0), free(dbias0);
    pair *all[] = {&inp, &w, &bias, &out, &pre, &act, &dout, &dinp, &dw, &dbias};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pair_free(all[i]);
#undef NAME
}

static void check_matmul(const shape *s) {
    const int N = s->B * s->T;
    check_matmul_one(s->name, N, s->C, s->OC, 1);     // like qkv / fc
    check_matmul_one(s->name, N, s->OC, s->C, 1);     // like the MLP projection
    check_matmul_one(s->name, N, s->C, s->Vp, 0);     // like the LM head
    check_matmul_one(s->name, 1, s->C, s->OC + 1, 1); // a single row, odd width
}

// ---------------------------------------------------------------------------------------------
// attention

// The state each forward saves is its backend's own (the CUDA one opaque), so only out and the
// gradient are compared; each backward starts from its own forward's state, on the same qkv.
static void check_attention_at(int B, int T, int C, int NH) {
    char what[96];
#define NAME(s)                                                                                    \
    (snprintf(what, sizeof what, "attention[B=%d T=%d C=%d NH=%d] %s", B, T, C, NH, s), what)
    pair qkv = pair_rand((size_t)B * T * 3 * C, 1, -2, 2);
    pair out = pair_alloc((size_t)B * T * C, 1);
    void *cpu_state = H->cpu->alloc(H->cpu, H->cpu->attention_state_bytes(H->cpu, B, T, C, NH));
    void *gpu_state = H->dev->alloc(H->dev, H->dev->attention_state_bytes(H->dev, B, T, C, NH));
    H->cpu->attention_forward(H->cpu, out.ref, cpu_state, qkv.ref, B, T, C, NH);
    H->dev->attention_forward(H->dev, out.dev, gpu_state, qkv.dev, B, T, C, NH);
    pair_check(NAME("forward.out"), &out, tol_act());

    pair dout = pair_rand((size_t)B * T * C, 1, -1, 1);
    pair dqkv = pair_rand((size_t)B * T * 3 * C, 1, -1, 1);
    float *dqkv0 = copy_of(dqkv.ref, dqkv.n);
    H->cpu->attention_backward(H->cpu, dqkv.ref, dout.ref, qkv.ref, out.ref, cpu_state, B, T, C,
                               NH);
    H->dev->attention_backward(H->dev, dqkv.dev, dout.dev, qkv.dev, out.dev, gpu_state, B, T, C,
                               NH);
    pair_check(NAME("backward.dqkv (+=)"), &dqkv, tol_act());
    void *b1 = pair_bytes(&dqkv);
    pair_reset(&dqkv, dqkv0);
    H->dev->attention_backward(H->dev, dqkv.dev, dout.dev, qkv.dev, out.dev, gpu_state, B, T, C,
                               NH);
    check_same_bits(NAME("backward.dqkv"), &dqkv, b1);
    free(b1), free(dqkv0);
    H->cpu->free(H->cpu, cpu_state);
    H->dev->free(H->dev, gpu_state);
    pair *all[] = {&qkv, &out, &dout, &dqkv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pair_free(all[i]);
#undef NAME
}

static void check_attention(const shape *s) {
    check_attention_at(s->B, s->T, s->C, s->NH);
    check_attention_at(s->B, 1, s->C, s->NH);
}

// ---------------------------------------------------------------------------------------------
// elementwise ops and the classifier

static void check_pointwise(size_t n) {
    char what[96];
#define NAME(s) (snprintf(what, sizeof what, "%s [n=%zu]", s, n), what)
    pair inp = pair_rand(n, 1, -5, 5), out = pair_alloc(n, 1);
    H->cpu->gelu_forward(H->cpu, out.ref, inp.ref, n);
    H->dev->gelu_forward(H->dev, out.dev, inp.dev, n);
    pair_check(NAME("gelu_forward.out"), &out, tol_act());
    pair dout = pair_rand(n, 1, -1, 1), dinp = pair_rand(n, 1, -1, 1);
    H->cpu->gelu_backward(H->cpu, dinp.ref, inp.ref, dout.ref, n);
    H->dev->gelu_backward(H->dev, dinp.dev, inp.dev, dout.dev, n);
    pair_check(NAME("gelu_backward.dinp (+=)"), &dinp, tol_act());

    pair a = pair_rand(n, 1, -1, 1), b = pair_rand(n, 1, -1, 1), sum = pair_alloc(n, 1);
    H->cpu->add(H->cpu, sum.ref, a.ref, b.ref, n);
    H->dev->add(H->dev, sum.dev, a.dev, b.dev, n);
    pair_check(NAME("add.out"), &sum, tol_act());
    H->cpu->add_inplace(H->cpu, a.ref, b.ref, n);
    H->dev->add_inplace(H->dev, a.dev, b.dev, n);
    pair_check(NAME("add_inplace.y"), &a, tol_act());
    pair *all[] = {&inp, &out, &dout, &dinp, &a, &b, &sum};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pair_free(all[i]);
#undef NAME
}

static void check_classifier(const shape *s) {
    const int N = s->B * s->T, V = s->V, Vp = s->Vp;
    char what[96];
#define NAME(x) (snprintf(what, sizeof what, "classifier[N=%d V=%d Vp=%d] %s", N, V, Vp, x), what)
    int *tg = malloc(N * sizeof(int));
    for (int i = 0; i < N; i++)
        tg[i] = harness_rng_int(&RNG, V);
    tg[0] = V - 1; // the last real class
    ipair targets = ipair_new(tg, N);
    // the padding columns hold large values: counting them in the softmax would show
    float *h = malloc((size_t)N * Vp * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int v = 0; v < Vp; v++)
            h[(size_t)n * Vp + v] = v < V ? (float)harness_rng_uniform(&RNG, -4, 4) : 50;
    pair logits = pair_alloc((size_t)N * Vp, 1);
    pair_set(&logits, h);
    pair losses = pair_alloc(N, 0);

    // dloss == 0: losses only, logits untouched
    H->cpu->classifier(H->cpu, logits.ref, losses.ref, targets.ref, N, V, Vp, 0);
    H->dev->classifier(H->dev, logits.dev, losses.dev, targets.dev, N, V, Vp, 0);
    pair_check(NAME("losses (dloss 0)"), &losses, tol_acc());
    pair_check(NAME("logits untouched (dloss 0)"), &logits, 0);

    // dloss != 0: logits become dlogits, padding columns 0
    const float dloss = 1.0f / N;
    H->cpu->classifier(H->cpu, logits.ref, losses.ref, targets.ref, N, V, Vp, dloss);
    H->dev->classifier(H->dev, logits.dev, losses.dev, targets.dev, N, V, Vp, dloss);
    pair_check(NAME("losses"), &losses, tol_acc());
    pair_check(NAME("dlogits (padding 0)"), &logits, tol_act());
    float *d = pair_fetch(&logits);
    size_t pad_nonzero = 0;
    for (int n = 0; n < N; n++)
        for (int v = V; v < Vp; v++)
            pad_nonzero += d[(size_t)n * Vp + v] != 0;
    harness_check_err(H, NAME("dlogits padding: non-zero entries"), (double)pad_nonzero, 0);
    free(d), free(h), free(tg);
    pair_free(&logits);
    pair_free(&losses);
    ipair_free(&targets);
#undef NAME
}

// ---------------------------------------------------------------------------------------------
// optimizer ops (fp32 state; the bf16 compute copy of the parameters)

static void check_adamw(size_t n) {
    char what[96];
#define NAME(s) (snprintf(what, sizeof what, "adamw[n=%zu] %s", n, s), what)
    pair master = pair_rand(n, 0, -1, 1), grad = pair_rand(n, 0, -0.1f, 0.1f);
    pair m = pair_rand(n, 0, -0.01f, 0.01f), v = pair_rand(n, 0, 0, 1e-3f);
    pair param = pair_alloc(n, 1);          // the compute copy, in the activation/parameter type
    for (int step = 3; step <= 4; step++) { // twice: the second reads the first's moments
        H->cpu->adamw(H->cpu, master.ref, master.ref, grad.ref, m.ref, v.ref, n, 1e-3f, 0.9f, 0.95f,
                      1e-8f, 0.1f, step);
        H->dev->adamw(H->dev, master.dev, param.dev, grad.dev, m.dev, v.dev, n, 1e-3f, 0.9f, 0.95f,
                      1e-8f, 0.1f, step);
    }
    pair_check(NAME("master"), &master, TOL_F32);
    pair_check(NAME("m"), &m, TOL_F32);
    pair_check(NAME("v"), &v, TOL_F32);
    // the compute copy is the master rounded to param_dtype; a master within 1e-7 of the CPU's
    // may round the other way at a tie, so this is not bit-exact
    for (size_t i = 0; i < n; i++)
        param.ref[i] = harness_round_act(H, master.ref[i]);
    pair_check(NAME("param copy (param_dtype)"), &param, H->mode == TS_BF16 ? TOL_ACC : TOL_F32);

    // param == master: the single-buffer form the fp32 mode uses
    if (H->mode == TS_F32) {
        H->cpu->adamw(H->cpu, master.ref, master.ref, grad.ref, m.ref, v.ref, n, 1e-3f, 0.9f, 0.95f,
                      1e-8f, 0.0f, 5);
        H->dev->adamw(H->dev, master.dev, master.dev, grad.dev, m.dev, v.dev, n, 1e-3f, 0.9f, 0.95f,
                      1e-8f, 0.0f, 5);
        pair_check(NAME("master (param == master, no decay)"), &master, TOL_F32);
    }
    pair *all[] = {&master, &grad, &m, &v, &param};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pair_free(all[i]);
#undef NAME
}

static void check_norm_ops(size_t n) {
    char what[96];
#define NAME(s) (snprintf(what, sizeof what, "%s [n=%zu]", s, n), what)
    pair x = pair_rand(n, 0, -1, 1);
    double ref = H->cpu->sum_squares(H->cpu, x.ref, n);
    double got = H->dev->sum_squares(H->dev, x.dev, n),
           again = H->dev->sum_squares(H->dev, x.dev, n);
    harness_check_err(H, NAME("sum_squares (double)"), fabs(got - ref) / ref, 1e-9);
    harness_check_err(H, NAME("sum_squares repeat: same bits (0: yes)"),
                      memcmp(&got, &again, sizeof got) ? 1 : 0, 0);
    H->cpu->scale(H->cpu, x.ref, 0.37f, n);
    H->dev->scale(H->dev, x.dev, 0.37f, n);
    pair_check(NAME("scale (exact)"), &x, 0);
    pair_free(&x);
#undef NAME
}

// ---------------------------------------------------------------------------------------------

static void run_shape(const shape *s) {
    static char prefix[64];
    printf("[%s] shape %s: B=%d T=%d C=%d NH=%d OC=%d V=%d Vp=%d maxT=%d\n", ts_dtype_name(H->mode),
           s->name, s->B, s->T, s->C, s->NH, s->OC, s->V, s->Vp, s->maxT);
    snprintf(prefix, sizeof prefix, "%s: ", s->name);
    SHAPE = prefix;
    check_embed(s);
    check_layernorm(s);
    SHAPE = "";
    check_matmul(s);
    check_attention(s);
    check_classifier(s);
    check_pointwise((size_t)s->B * s->T * 4 * s->C);
}

void ops_compare(harness *h, int quick) {
    H = h;
    const shape shapes[] = {
        {"odd", 3, 37, 72, 3, 200, 301, 384, 40},
        {"gpt2-heads", 2, 65, 768, 12, 3072, 1000, 1024, 80}, // head size 64, C multiple of 8
    };
    printf("[%s] memory and conversions\n", ts_dtype_name(H->mode));
    check_memory();
    printf("[%s] elementwise, optimizer\n", ts_dtype_name(H->mode));
    check_pointwise(10007);
    check_pointwise(1);
    check_adamw(10007);
    check_adamw(1);
    check_norm_ops(1000003);
    check_norm_ops(7);
    int nshapes = quick ? 1 : (int)(sizeof shapes / sizeof *shapes);
    for (int i = 0; i < nshapes; i++)
        run_shape(&shapes[i]);
}
