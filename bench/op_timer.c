// op_timer.c — a backend whose ops are another backend's, each timed and charged to its call site
// (op_timer.h). Matmuls are told apart by shape; matmuls and attention also count their FLOPs.
#include "bench/op_timer.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

// ---------------------------------------------------------------------------------------------
// the table of timed sites

#define MAX_SITES 64

typedef struct {
    char name[64];
    double seconds;
    double flops; // useful flops (matmul: 2 N C OC per product; attention: causal half)
    long calls;
} site;

static site sites[MAX_SITES];
static int n_sites;
static const backend *inner;
static int sync_ops; // synchronize around every op (asynchronous backends)

static site *site_get(const char *name) {
    for (int i = 0; i < n_sites; i++)
        if (strcmp(sites[i].name, name) == 0) return &sites[i];
    TS_ASSERT(n_sites < MAX_SITES);
    site *s = &sites[n_sites++];
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

// the clock at the start of an op (after the device has finished what came before)
static double op_begin(void) {
    if (sync_ops) inner->synchronize(inner);
    return ts_now();
}

static void site_add(const char *name, double t0, double flops) {
    if (sync_ops) inner->synchronize(inner);
    site *s = site_get(name);
    s->seconds += ts_now() - t0;
    s->flops += flops;
    s->calls++;
}

// ---------------------------------------------------------------------------------------------
// wrappers (be: the timed copy): call the inner op, charge its time to a site (signatures:
// kernels/backend.h). Entries not wrapped are the inner ones, which find their context in the
// copy (timed.ctx == inner->ctx).

static void w_embed_forward(const backend *be, void *out, const int *tok, const void *wte,
                            const void *wpe, int B, int T, int C) {
    (void)be;
    double t0 = op_begin();
    inner->embed_forward(inner, out, tok, wte, wpe, B, T, C);
    site_add("embed_forward", t0, 0);
}

static void w_embed_backward(const backend *be, real *dwte, real *dwpe, const void *d,
                             const int *tok, int B, int T, int C) {
    (void)be;
    double t0 = op_begin();
    inner->embed_backward(inner, dwte, dwpe, d, tok, B, T, C);
    site_add("embed_backward", t0, 0);
}

static void w_ln_forward(const backend *be, void *out, real *mean, real *rstd, const void *inp,
                         const void *w, const void *b, int N, int C) {
    (void)be;
    double t0 = op_begin();
    inner->layernorm_forward(inner, out, mean, rstd, inp, w, b, N, C);
    site_add("layernorm_forward", t0, 0);
}

static void w_res_ln_forward(const backend *be, void *residual, void *out, real *mean, real *rstd,
                             const void *a, const void *b_in, const void *w, const void *b, int N,
                             int C) {
    (void)be;
    double t0 = op_begin();
    inner->residual_layernorm_forward(inner, residual, out, mean, rstd, a, b_in, w, b, N, C);
    site_add("residual_layernorm_forward", t0, 0);
}

static void w_ln_backward(const backend *be, void *dinp, real *dw, real *db, const void *dout,
                          const void *inp, const void *w, const real *mean, const real *rstd, int N,
                          int C) {
    (void)be;
    double t0 = op_begin();
    inner->layernorm_backward(inner, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    site_add("layernorm_backward", t0, 0);
}

static void w_mm_forward(const backend *be, void *out, const void *inp, const void *w,
                         const void *bias, int N, int C, int OC) {
    (void)be;
    char name[64];
    snprintf(name, sizeof name, "matmul_forward %dx%d->%d", N, C, OC);
    double t0 = op_begin();
    inner->matmul_forward(inner, out, inp, w, bias, N, C, OC);
    site_add(name, t0, 2.0 * N * C * OC);
}

static void w_mm_gelu_forward(const backend *be, void *pre, void *out, const void *inp,
                              const void *w, const void *bias, int N, int C, int OC) {
    (void)be;
    char name[64];
    snprintf(name, sizeof name, "matmul_gelu_forward %dx%d->%d", N, C, OC);
    double t0 = op_begin();
    inner->matmul_gelu_forward(inner, pre, out, inp, w, bias, N, C, OC);
    site_add(name, t0, 2.0 * N * C * OC);
}

static void w_mm_backward(const backend *be, void *dinp, real *dw, real *dbias, const void *dout,
                          const void *inp, const void *w, int N, int C, int OC) {
    (void)be;
    char name[64];
    snprintf(name, sizeof name, "matmul_backward %dx%d->%d", N, C, OC);
    double t0 = op_begin();
    inner->matmul_backward(inner, dinp, dw, dbias, dout, inp, w, N, C, OC);
    site_add(name, t0, (dinp ? 4.0 : 2.0) * N * C * OC);
}

// causal attention: Q K^T and A V over the lower triangle, 2 products of T*T/2 * hs MACs each
static double attention_flops(int B, int T, int C) { return 2.0 * 2.0 * B * (T * T / 2.0) * C; }

static void w_att_forward(const backend *be, void *out, void *state, const void *qkv, int B, int T,
                          int C, int NH) {
    (void)be;
    double t0 = op_begin();
    inner->attention_forward(inner, out, state, qkv, B, T, C, NH);
    site_add("attention_forward", t0, attention_flops(B, T, C));
}

static void w_att_backward(const backend *be, void *dqkv, const void *dout, const void *qkv,
                           const void *out, const void *state, int B, int T, int C, int NH) {
    (void)be;
    double t0 = op_begin();
    inner->attention_backward(inner, dqkv, dout, qkv, out, state, B, T, C, NH);
    site_add("attention_backward", t0, 2 * attention_flops(B, T, C));
}

static void w_gelu_forward(const backend *be, void *out, const void *inp, size_t n) {
    (void)be;
    double t0 = op_begin();
    inner->gelu_forward(inner, out, inp, n);
    site_add("gelu_forward", t0, 0);
}

static void w_gelu_backward(const backend *be, void *dinp, const void *inp, const void *dout,
                            size_t n) {
    (void)be;
    double t0 = op_begin();
    inner->gelu_backward(inner, dinp, inp, dout, n);
    site_add("gelu_backward", t0, 0);
}

static void w_add(const backend *be, void *out, const void *a, const void *b, size_t n) {
    (void)be;
    double t0 = op_begin();
    inner->add(inner, out, a, b, n);
    site_add("add (residual)", t0, 0);
}

static void w_add_inplace(const backend *be, void *y, const void *x, size_t n) {
    (void)be;
    double t0 = op_begin();
    inner->add_inplace(inner, y, x, n);
    site_add("add_inplace (residual grad)", t0, 0);
}

static void w_classifier(const backend *be, void *logits, real *losses, const int *targets, int N,
                         int V, int Vp, real dloss) {
    (void)be;
    double t0 = op_begin();
    inner->classifier(inner, logits, losses, targets, N, V, Vp, dloss);
    site_add("classifier (softmax+xent)", t0, 0);
}

static void w_adamw(const backend *be, real *master, void *param, const real *g, real *m, real *v,
                    size_t n, float lr, float b1, float b2, float eps, float wd, int t) {
    (void)be;
    double t0 = op_begin();
    inner->adamw(inner, master, param, g, m, v, n, lr, b1, b2, eps, wd, t);
    site_add("adamw", t0, 0);
}

static double w_sum_squares(const backend *be, const real *x, size_t n) {
    (void)be;
    double t0 = op_begin();
    double r = inner->sum_squares(inner, x, n);
    site_add("grad norm (sum_squares)", t0, 0);
    return r;
}

static void w_scale(const backend *be, real *x, real s, size_t n) {
    (void)be;
    double t0 = op_begin();
    inner->scale(inner, x, s, n);
    site_add("grad clip (scale)", t0, 0);
}

static void w_zero(const backend *be, void *p, size_t bytes) {
    (void)be;
    double t0 = op_begin();
    inner->zero(inner, p, bytes);
    site_add("zero (grads, activation grads)", t0, 0);
}

// ---------------------------------------------------------------------------------------------

static int cmp_site(const void *a, const void *b) {
    double x = ((const site *)a)->seconds, y = ((const site *)b)->seconds;
    return (x < y) - (x > y);
}

// ---------------------------------------------------------------------------------------------
// the interface (op_timer.h)

const backend *op_timer_wrap(const backend *be, int sync) {
    static backend timed;
    inner = be;
    sync_ops = sync;
    timed = *be;
    timed.embed_forward = w_embed_forward;
    timed.embed_backward = w_embed_backward;
    timed.layernorm_forward = w_ln_forward;
    timed.residual_layernorm_forward = w_res_ln_forward;
    timed.layernorm_backward = w_ln_backward;
    timed.matmul_forward = w_mm_forward;
    timed.matmul_gelu_forward = w_mm_gelu_forward;
    timed.matmul_backward = w_mm_backward;
    timed.attention_forward = w_att_forward;
    timed.attention_backward = w_att_backward;
    timed.gelu_forward = w_gelu_forward;
    timed.gelu_backward = w_gelu_backward;
    timed.add = w_add;
    timed.add_inplace = w_add_inplace;
    timed.classifier = w_classifier;
    timed.adamw = w_adamw;
    timed.sum_squares = w_sum_squares;
    timed.scale = w_scale;
    timed.zero = w_zero;
    return &timed;
}

void op_timer_reset(void) {
    memset(sites, 0, sizeof sites);
    n_sites = 0;
}

void op_timer_print(FILE *f, double step_s, int steps) {
    qsort(sites, (size_t)n_sites, sizeof sites[0], cmp_site);
    double total = 0;
    for (int i = 0; i < n_sites; i++)
        total += sites[i].seconds;
    fprintf(f, "%-40s %10s %7s %7s %9s\n", "op / call site", "ms/step", "share", "calls",
            "GFLOP/s");
    for (int i = 0; i < n_sites; i++) {
        const site *x = &sites[i];
        char gf[32] = "";
        if (x->flops > 0) snprintf(gf, sizeof gf, "%.1f", x->flops / x->seconds / 1e9);
        fprintf(f, "%-40s %10.2f %6.1f%% %7ld %9s\n", x->name, x->seconds / steps * 1e3,
                100 * x->seconds / step_s, x->calls / steps, gf);
    }
    fprintf(f, "%-40s %10.2f %6.1f%%\n", "(outside ops: model glue, loss copy)",
            (step_s - total) / steps * 1e3, 100 * (step_s - total) / step_s);
}
