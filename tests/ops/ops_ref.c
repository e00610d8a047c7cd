// ops_ref.c — the CPU backend's op checks compiled twice, in float and in double (TESSERA_F64):
// every forward op against a direct reference computed here in double, direct checks of the
// optimizer and elementwise ops, and a run of every op forward and backward whose outputs
// test_backend_ops.c compares across the two precisions.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h" // cpu_exp
#include "tests/ops/ops.h"

#define PREC (sizeof(real) == sizeof(float) ? "f32" : "f64")
// forward ops against the double reference: a few units of the working precision's rounding
#define REF_TOL (sizeof(real) == sizeof(float) ? 2e-6 : 1e-12)

static real *rand_real(const TS_REAL(backend) * be, size_t n, uint64_t *rng, double lo, double hi) {
    real *x = be->alloc(be, n * sizeof(real));
    for (size_t i = 0; i < n; i++)
        x[i] = (real)harness_rng_uniform(rng, lo, hi);
    return x;
}

static int *rand_int(const TS_REAL(backend) * be, size_t n, uint64_t *rng, int hi) {
    int *x = be->alloc(be, n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        x[i] = harness_rng_int(rng, hi);
    return x;
}

static double *to_double(const real *x, size_t n) {
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = (double)x[i];
    return d;
}

// max |x - ref| / max |ref|: error relative to the tensor's scale, robust to entries near zero
static double max_rel_diff(const real *x, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - ref[i]);
        if (!(d <= num)) num = d; // also catches NaN
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

// one check line, "ref f32 <what>"
static void report(harness *h, const char *what, double err, double tol) {
    char name[96];
    snprintf(name, sizeof name, "ref %s %s", PREC, what);
    harness_check_err(h, name, err, tol);
}

// ---------------------------------------------------------------------------------------------
// forward ops against direct references

static void check_embed_layernorm(harness *h, const TS_REAL(backend) * be, uint64_t *rng) {
    const int B = 2, T = 17, C = 48, V = 30, maxT = 20, N = B * T;
    int *tok = rand_int(be, N, rng, V);
    real *wte = rand_real(be, (size_t)V * C, rng, -1, 1);
    real *wpe = rand_real(be, (size_t)maxT * C, rng, -1, 1);
    real *out = be->alloc(be, (size_t)N * C * sizeof(real));
    double *ref = malloc((size_t)N * C * sizeof(double));
    be->embed_forward(be, out, tok, wte, wpe, B, T, C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            ref[n * C + c] = (double)wte[tok[n] * C + c] + (double)wpe[(n % T) * C + c];
    report(h, "embed.out", max_rel_diff(out, ref, (size_t)N * C), REF_TOL);

    // LayerNorm of rows with a large common offset: the one-pass statistics must not cancel
    real *x = rand_real(be, (size_t)N * C, rng, -1, 1);
    for (int i = 0; i < N * C; i++)
        x[i] += (real)(10 * (i / C % 3));
    real *w = rand_real(be, C, rng, 0.5, 1.5), *b = rand_real(be, C, rng, -0.5, 0.5);
    real *mean = be->alloc(be, N * sizeof(real)), *rstd = be->alloc(be, N * sizeof(real));
    double rm[N], rr[N];
    be->layernorm_forward(be, out, mean, rstd, x, w, b, N, C);
    for (int n = 0; n < N; n++) {
        double s = 0, v = 0;
        for (int c = 0; c < C; c++)
            s += x[n * C + c];
        s /= C;
        for (int c = 0; c < C; c++)
            v += (x[n * C + c] - s) * (x[n * C + c] - s);
        rm[n] = s;
        rr[n] = 1 / sqrt(v / C + 1e-5);
        for (int c = 0; c < C; c++)
            ref[n * C + c] = (x[n * C + c] - s) * rr[n] * w[c] + b[c];
    }
    report(h, "layernorm.out", max_rel_diff(out, ref, (size_t)N * C), 4 * REF_TOL);
    report(h, "layernorm.mean", max_rel_diff(mean, rm, N), REF_TOL);
    report(h, "layernorm.rstd", max_rel_diff(rstd, rr, N), 4 * REF_TOL);

    be->free(be, tok), be->free(be, wte), be->free(be, wpe), be->free(be, out), be->free(be, x),
        be->free(be, w);
    be->free(be, b), be->free(be, mean), be->free(be, rstd);
    free(ref);
}

static void check_matmul_gelu(harness *h, const TS_REAL(backend) * be, uint64_t *rng) {
    const int N = 34, C = 48, OC = 40;
    real *x = rand_real(be, (size_t)N * C, rng, -1, 1);
    real *w = rand_real(be, (size_t)OC * C, rng, -1, 1);
    real *bias = rand_real(be, OC, rng, -1, 1);
    real *out = be->alloc(be, (size_t)N * OC * sizeof(real));
    double *ref = malloc((size_t)N * (OC > C ? OC : C) * sizeof(double));
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        be->matmul_forward(be, out, x, w, with_bias ? bias : NULL, N, C, OC);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double s = with_bias ? bias[o] : 0;
                for (int c = 0; c < C; c++)
                    s += (double)x[n * C + c] * w[o * C + c];
                ref[n * OC + o] = s;
            }
        report(h, with_bias ? "matmul.out" : "matmul.out (no bias)",
               max_rel_diff(out, ref, (size_t)N * OC), 4 * REF_TOL);
    }

    // GELU over a range that reaches both saturated ends
    real *g = be->alloc(be, (size_t)N * C * sizeof(real));
    for (int i = 0; i < N * C; i++)
        x[i] = (real)(-8.0 + 16.0 * i / (N * C));
    be->gelu_forward(be, g, x, (size_t)N * C);
    for (int i = 0; i < N * C; i++) {
        double v = x[i];
        ref[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    report(h, "gelu.out", max_rel_diff(g, ref, (size_t)N * C), REF_TOL);

    be->free(be, x), be->free(be, w), be->free(be, bias), be->free(be, out), be->free(be, g);
    free(ref);
}

static void check_attention(harness *h, const TS_REAL(backend) * be, uint64_t *rng) {
    const int B = 2, T = 150, C = 48, NH = 3, hs = C / NH; // T: three row blocks, ragged
    real *qkv = rand_real(be, (size_t)B * T * 3 * C, rng, -2, 2);
    real *out = be->alloc(be, (size_t)B * T * C * sizeof(real));
    // the CPU backend's state: preatt | att, (B,NH,T,T) each
    real *state = be->alloc(be, be->attention_state_bytes(be, B, T, C, NH));
    const real *att = state + (size_t)B * NH * T * T;
    double *rout = calloc((size_t)B * T * C, sizeof(double));
    double *ratt = calloc((size_t)B * NH * T * T, sizeof(double));
    be->attention_forward(be, out, state, qkv, B, T, C, NH);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double s[T], mx = -INFINITY, sum = 0;
                const real *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                for (int u = 0; u <= t; u++) {
                    const real *k = qkv + ((size_t)b * T + u) * 3 * C + C + h * hs;
                    s[u] = 0;
                    for (int i = 0; i < hs; i++)
                        s[u] += (double)q[i] * k[i];
                    s[u] /= sqrt((double)hs);
                    mx = fmax(mx, s[u]);
                }
                for (int u = 0; u <= t; u++)
                    sum += exp(s[u] - mx);
                double *a = ratt + (((size_t)b * NH + h) * T + t) * T;
                double *o = rout + ((size_t)b * T + t) * C + h * hs;
                for (int u = 0; u <= t; u++) {
                    a[u] = exp(s[u] - mx) / sum;
                    const real *v = qkv + ((size_t)b * T + u) * 3 * C + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++)
                        o[i] += a[u] * v[i];
                }
            }
    report(h, "attention.out", max_rel_diff(out, rout, (size_t)B * T * C), 4 * REF_TOL);
    report(h, "attention.att", max_rel_diff(att, ratt, (size_t)B * NH * T * T), 4 * REF_TOL);
    be->free(be, qkv), be->free(be, out), be->free(be, state);
    free(rout), free(ratt);
}

// classifier: losses against log-sum-exp, gradient against softmax - onehot, padding zeroed,
// logits untouched when dloss == 0, and the same losses either way
static void check_classifier(harness *h, const TS_REAL(backend) * be, uint64_t *rng) {
    const int N = 9, V = 37, Vp = 48;
    const real dloss = (real)0.125;
    real *logits = rand_real(be, (size_t)N * Vp, rng, -6, 6);
    real *orig = be->alloc(be, (size_t)N * Vp * sizeof(real));
    memcpy(orig, logits, (size_t)N * Vp * sizeof(real));
    int *tgt = rand_int(be, N, rng, V);
    real *loss0 = be->alloc(be, N * sizeof(real)), *loss1 = be->alloc(be, N * sizeof(real));
    double rl[N], *rg = malloc((size_t)N * Vp * sizeof(double));
    for (int n = 0; n < N; n++) {
        const real *l = orig + n * Vp;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, l[v]);
        for (int v = 0; v < V; v++)
            sum += exp(l[v] - mx);
        rl[n] = log(sum) + mx - l[tgt[n]];
        for (int v = 0; v < Vp; v++)
            rg[n * Vp + v] = v < V ? (exp(l[v] - mx) / sum - (v == tgt[n])) * dloss : 0;
    }
    be->classifier(be, logits, loss0, tgt, N, V, Vp, 0);
    report(h, "classifier.loss", max_rel_diff(loss0, rl, N), 4 * REF_TOL);
    int same = memcmp(logits, orig, (size_t)N * Vp * sizeof(real)) == 0;
    report(h, "classifier dloss=0 keeps", same ? 0 : 1, 0);
    be->classifier(be, logits, loss1, tgt, N, V, Vp, dloss);
    report(h, "classifier.dlogits", max_rel_diff(logits, rg, (size_t)N * Vp), 4 * REF_TOL);
    int pad = 1;
    for (int n = 0; n < N; n++)
        for (int v = V; v < Vp; v++)
            pad &= logits[n * Vp + v] == 0;
    report(h, "classifier pad zeroed", pad ? 0 : 1, 0);
    report(h, "classifier.loss (dloss)", max_rel_diff(loss1, rl, N), 4 * REF_TOL);
    be->free(be, logits), be->free(be, orig), be->free(be, tgt), be->free(be, loss0),
        be->free(be, loss1);
    free(rg);
}

// ---------------------------------------------------------------------------------------------
// direct checks: adamw, sum_squares, scale, add, memory

static void check_adamw(harness *h, const TS_REAL(backend) * be, uint64_t *rng) {
    const size_t n = 40000; // above the parallel threshold
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    real *p = rand_real(be, n, rng, -1, 1), *m = be->alloc(be, n * sizeof(real));
    real *v = be->alloc(be, n * sizeof(real));
    double *rp = to_double(p, n), *rm = calloc(n, sizeof(double)), *rv = calloc(n, sizeof(double));
    real *g = be->alloc(be, n * sizeof(real));
    for (int t = 1; t <= 3; t++) {
        for (size_t i = 0; i < n; i++)
            g[i] = (real)harness_rng_uniform(rng, -1, 1);
        be->adamw(be, p, p, g, m, v, n, lr, b1, b2, eps, wd, t);
        for (size_t i = 0; i < n; i++) {
            rm[i] = (double)b1 * rm[i] + (1 - (double)b1) * g[i];
            rv[i] = (double)b2 * rv[i] + (1 - (double)b2) * g[i] * g[i];
            double mhat = rm[i] / (1 - pow(b1, t)), vhat = rv[i] / (1 - pow(b2, t));
            rp[i] -= (double)lr * (mhat / (sqrt(vhat) + eps) + (double)wd * rp[i]);
        }
    }
    report(h, "adamw.param (3 steps)", max_rel_diff(p, rp, n), 4 * REF_TOL);
    report(h, "adamw.m", max_rel_diff(m, rm, n), 4 * REF_TOL);
    report(h, "adamw.v", max_rel_diff(v, rv, n), 4 * REF_TOL);
    be->free(be, p), be->free(be, m), be->free(be, v), be->free(be, g);
    free(rp), free(rm), free(rv);
}

// values k/4 with small k: every sum, product and square below is exact in both precisions
static void check_exact_ops(harness *h, const TS_REAL(backend) * be) {
    const size_t n = 200003; // several sum_squares chunks and a ragged end
    real *a = be->alloc(be, n * sizeof(real)), *b = be->alloc(be, n * sizeof(real));
    real *o = be->alloc(be, n * sizeof(real));
    double want = 0;
    for (size_t i = 0; i < n; i++) {
        a[i] = (real)((double)((int)(i % 13) - 6) / 4);
        b[i] = (real)((double)((int)(i % 7) - 3) / 4);
        want += (double)a[i] * a[i];
    }
    report(h, "sum_squares (exact)", fabs(be->sum_squares(be, a, n) - want), 0);
    report(h, "sum_squares (n=0)", fabs(be->sum_squares(be, a, 0)), 0);
    int bad = 0;
    be->add(be, o, a, b, n);
    for (size_t i = 0; i < n; i++)
        bad += o[i] != a[i] + b[i];
    report(h, "add (exact)", bad, 0);
    bad = 0;
    be->add_inplace(be, o, a, n);
    for (size_t i = 0; i < n; i++)
        bad += o[i] != 2 * a[i] + b[i];
    report(h, "add_inplace (exact)", bad, 0);
    bad = 0;
    be->scale(be, o, (real)-1.5, n);
    for (size_t i = 0; i < n; i++)
        bad += o[i] != (real)-1.5 * (2 * a[i] + b[i]);
    report(h, "scale (exact)", bad, 0);
    bad = 0;

    // memory: zeroed and 64-byte aligned; copies round-trip; zero clears
    unsigned char *d = be->alloc(be, 1000), host[1000];
    for (int i = 0; i < 1000; i++)
        bad += d[i] != 0, host[i] = (unsigned char)i;
    bad += ((uintptr_t)d % 64) != 0;
    be->to_device(be, d, host, 1000);
    memset(host, 0, sizeof host);
    be->to_host(be, host, d, 1000);
    be->synchronize(be);
    for (int i = 0; i < 1000; i++)
        bad += host[i] != (unsigned char)i;
    be->zero(be, d, 1000);
    for (int i = 0; i < 1000; i++)
        bad += d[i] != 0;
    report(h, "memory ops", bad, 0);
    be->free(be, d), be->free(be, a), be->free(be, b), be->free(be, o);
}

// the kernels' own exponential over its whole range: relative error against libm in double;
// in float, below -87 the result must be exactly 0 (the true value is under 1.7e-38)
static void check_exp(harness *h) {
    const int is_float = sizeof(real) == sizeof(float);
    double worst = 0;
    int flushed = 1;
    for (int i = -200000; i <= 176000; i++) {
        const real x = (real)(i * 5e-4);
        const double want = exp((double)x), got = cpu_exp(x);
        if (is_float && x < -87) {
            flushed &= got == 0;
            continue;
        }
        const double e = fabs(got - want) / want;
        if (!(e <= worst)) worst = e;
    }
    report(h, "cpu_exp [-100, 88]", worst, is_float ? 2e-7 : 1e-15);
    if (is_float) report(h, "cpu_exp below -87 is 0", flushed ? 0 : 1, 0);
}

void TS_REAL(ops_check_reference)(harness *h, const TS_REAL(backend) * be) {
    uint64_t rng = 1234;
    check_exp(h);
    check_embed_layernorm(h, be, &rng);
    check_matmul_gelu(h, be, &rng);
    check_attention(h, be, &rng);
    check_classifier(h, be, &rng);
    check_adamw(h, be, &rng);
    check_exact_ops(h, be);
}

// ---------------------------------------------------------------------------------------------
// every op forward and backward on shared inputs, outputs returned as double arrays. Each op
// draws its own inputs (instead of consuming the previous op's output), so the float and double
// runs feed every op exactly the same numbers and a difference is that op's own rounding.

static void keep(ops_result *res, int *k, const char *name, const real *x, size_t n) {
    res[*k] = (ops_result){name, to_double(x, n), n};
    (*k)++;
}

int TS_REAL(ops_run_all)(const TS_REAL(backend) * be, const ops_shape *s, uint64_t seed,
                         ops_result *res) {
    const int B = s->B, T = s->T, C = s->C, NH = s->NH, OC = s->OC, V = s->V, Vp = s->Vp;
    const int N = B * T;
    const size_t NC = (size_t)N * C, NO = (size_t)N * OC, att_n = (size_t)B * NH * T * T;
    uint64_t rng = seed;
    int k = 0;

    // embedding
    int *tok = rand_int(be, N, &rng, V);
    real *wte = rand_real(be, (size_t)V * C, &rng, -1, 1);
    real *wpe = rand_real(be, (size_t)s->maxT * C, &rng, -1, 1);
    real *eo = be->alloc(be, NC * sizeof(real)), *deo = rand_real(be, NC, &rng, -1, 1);
    real *dwte = rand_real(be, (size_t)V * C, &rng, -1, 1);
    real *dwpe = rand_real(be, (size_t)s->maxT * C, &rng, -1, 1);
    be->embed_forward(be, eo, tok, wte, wpe, B, T, C);
    be->embed_backward(be, dwte, dwpe, deo, tok, B, T, C);
    keep(res, &k, "embed.out", eo, NC);
    keep(res, &k, "embed.dwte", dwte, (size_t)V * C);
    keep(res, &k, "embed.dwpe", dwpe, (size_t)s->maxT * C);

    // layernorm
    real *li = rand_real(be, NC, &rng, -2, 2);
    real *lw = rand_real(be, C, &rng, 0.5, 1.5), *lb = rand_real(be, C, &rng, -0.5, 0.5);
    real *lo = be->alloc(be, NC * sizeof(real));
    real *mean = be->alloc(be, N * sizeof(real)), *rstd = be->alloc(be, N * sizeof(real));
    real *dlo = rand_real(be, NC, &rng, -1, 1), *dli = rand_real(be, NC, &rng, -1, 1);
    real *dlw = rand_real(be, C, &rng, -1, 1), *dlb = rand_real(be, C, &rng, -1, 1);
    be->layernorm_forward(be, lo, mean, rstd, li, lw, lb, N, C);
    be->layernorm_backward(be, dli, dlw, dlb, dlo, li, lw, mean, rstd, N, C);
    keep(res, &k, "layernorm.out", lo, NC);
    keep(res, &k, "layernorm.mean", mean, N);
    keep(res, &k, "layernorm.rstd", rstd, N);
    keep(res, &k, "layernorm.dinp", dli, NC);
    keep(res, &k, "layernorm.dw", dlw, C);
    keep(res, &k, "layernorm.db", dlb, C);

    // matmul (N,C) -> (N,OC)
    real *mi = rand_real(be, NC, &rng, -1, 1);
    real *mw = rand_real(be, (size_t)OC * C, &rng, -0.3, 0.3), *mb = rand_real(be, OC, &rng, -1, 1);
    real *mo = be->alloc(be, NO * sizeof(real));
    real *dmo = rand_real(be, NO, &rng, -1, 1), *dmi = rand_real(be, NC, &rng, -1, 1);
    real *dmw = rand_real(be, (size_t)OC * C, &rng, -1, 1), *dmb = rand_real(be, OC, &rng, -1, 1);
    be->matmul_forward(be, mo, mi, mw, mb, N, C, OC);
    be->matmul_backward(be, dmi, dmw, dmb, dmo, mi, mw, N, C, OC);
    keep(res, &k, "matmul.out", mo, NO);
    keep(res, &k, "matmul.dinp", dmi, NC);
    keep(res, &k, "matmul.dw", dmw, (size_t)OC * C);
    keep(res, &k, "matmul.dbias", dmb, OC);

    // attention
    // the CPU backend's state is preatt | att, (B,NH,T,T) each
    real *qkv = rand_real(be, NC * 3, &rng, -2, 2), *ao = be->alloc(be, NC * sizeof(real));
    real *ast = be->alloc(be, be->attention_state_bytes(be, B, T, C, NH));
    real *dao = rand_real(be, NC, &rng, -1, 1), *dqkv = rand_real(be, NC * 3, &rng, -1, 1);
    be->attention_forward(be, ao, ast, qkv, B, T, C, NH);
    be->attention_backward(be, dqkv, dao, qkv, ao, ast, B, T, C, NH);
    keep(res, &k, "attention.out", ao, NC);
    keep(res, &k, "attention.preatt", ast, att_n);
    keep(res, &k, "attention.att", ast + att_n, att_n);
    keep(res, &k, "attention.dqkv", dqkv, NC * 3);

    // gelu
    real *gi = rand_real(be, NO, &rng, -4, 4), *go = be->alloc(be, NO * sizeof(real));
    real *dgo = rand_real(be, NO, &rng, -1, 1), *dgi = rand_real(be, NO, &rng, -1, 1);
    be->gelu_forward(be, go, gi, NO);
    be->gelu_backward(be, dgi, gi, dgo, NO);
    keep(res, &k, "gelu.out", go, NO);
    keep(res, &k, "gelu.dinp", dgi, NO);

    // add, add_inplace, scale, sum_squares
    real *ea = rand_real(be, NC, &rng, -1, 1), *eb = rand_real(be, NC, &rng, -1, 1);
    real *ec = rand_real(be, NC, &rng, -1, 1), *ed = be->alloc(be, NC * sizeof(real));
    be->add(be, ed, ea, eb, NC);
    keep(res, &k, "add.out", ed, NC);
    be->add_inplace(be, eb, ec, NC);
    keep(res, &k, "add_inplace.y", eb, NC);
    be->scale(be, ec, (real)0.3, NC);
    keep(res, &k, "scale.x", ec, NC);
    real ss = (real)be->sum_squares(be, ea, NC);
    keep(res, &k, "sum_squares", &ss, 1);

    // classifier
    real *logits = rand_real(be, (size_t)N * Vp, &rng, -5, 5),
         *losses = be->alloc(be, N * sizeof(real));
    int *tgt = rand_int(be, N, &rng, V);
    be->classifier(be, logits, losses, tgt, N, V, Vp, (real)(1.0 / N));
    keep(res, &k, "classifier.losses", losses, N);
    keep(res, &k, "classifier.dlogits", logits, (size_t)N * Vp);

    // adamw, two steps
    const size_t np = (size_t)OC * C;
    real *ap = rand_real(be, np, &rng, -1, 1), *ag = rand_real(be, np, &rng, -1, 1);
    real *am = be->alloc(be, np * sizeof(real)), *av = be->alloc(be, np * sizeof(real));
    for (int t = 1; t <= 2; t++)
        be->adamw(be, ap, ap, ag, am, av, np, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
    keep(res, &k, "adamw.param", ap, np);
    keep(res, &k, "adamw.m", am, np);
    keep(res, &k, "adamw.v", av, np);

    void *bufs[] = {tok,  wte, wpe,    eo,     deo, dwte, dwpe, li, lw,  lb,  lo,  mean,
                    rstd, dlo, dli,    dlw,    dlb, mi,   mw,   mb, mo,  dmo, dmi, dmw,
                    dmb,  qkv, ao,     ast,    dao, dqkv, gi,   go, dgo, dgi, ea,  eb,
                    ec,   ed,  logits, losses, tgt, ap,   ag,   am, av};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be->free(be, bufs[i]);
    return k;
}
