// ops_grad.c — finite-difference check of every backward op of the CPU backend, in double.
//
// For each op a scalar loss L = sum(out * R) with a fixed random R; the analytic gradients come
// from the op's backward with dout = R, written into buffers pre-filled with random values (the
// prefill is subtracted afterwards, so a backward that overwrites instead of accumulating fails),
// and are compared with central differences of L for every element of every input:
//     ||g_fd - g|| / ||g|| <= FD_TOL   per tensor.
// Two negative controls show that the checker can fail.
#ifndef TESSERA_F64
#error "ops_grad.c is compiled in double only (TESSERA_F64)"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/ops/ops.h"

#define FD_TOL  1e-6 // relative error per gradient tensor
#define FD_STEP 1e-5 // central-difference step; truncation error ~ h^2, rounding ~ 1e-16 / h

// small shapes: every element is perturbed, twice
enum { B = 2, T = 5, C = 8, NH = 2, OC = 12, V = 7, VP = 16, MAXT = 6, N = B * T };

#define MAX_IN 3

typedef struct {
    const char *op;
    int n_in;
    const char *in_name[MAX_IN];
    real *in[MAX_IN];   // inputs perturbed by the finite differences
    real *grad[MAX_IN]; // their gradients, written by backward
    size_t in_n[MAX_IN];
    real *out; // the output the loss is taken over
    size_t out_n;
    int uniform_dout; // 1: R is one repeated value (the classifier's scalar dloss)
    void (*forward)(void);
    void (*backward)(const real *dout);
} fd_case;

static const backend_f64 *be;

// buffers of the op under test; only the ones it uses are set
static struct {
    int *tok;
    real *a, *b, *c;     // inputs
    real *da, *db, *dc;  // their gradients
    real *out, *s1, *s2; // output and saved state / scratch
} S;

static void embed_fwd(void) { be->embed_forward(be, S.out, S.tok, S.a, S.b, B, T, C); }
static void embed_bwd(const real *d) { be->embed_backward(be, S.da, S.db, d, S.tok, B, T, C); }

static void ln_fwd(void) { be->layernorm_forward(be, S.out, S.s1, S.s2, S.a, S.b, S.c, N, C); }
static void ln_bwd(const real *d) {
    be->layernorm_backward(be, S.da, S.db, S.dc, d, S.a, S.b, S.s1, S.s2, N, C);
}

static void mm_fwd(void) { be->matmul_forward(be, S.out, S.a, S.b, S.c, N, C, OC); }
static void mm_bwd(const real *d) {
    be->matmul_backward(be, S.da, S.db, S.dc, d, S.a, S.b, N, C, OC);
}

// attention runs at two shapes: the small one, and one longer than the kernel's row blocks
static int aB, aT, aC, aNH;
static void attn_fwd(void) { be->attention_forward(be, S.out, S.s1, S.a, aB, aT, aC, aNH); }
static void attn_bwd(const real *d) {
    be->attention_backward(be, S.da, d, S.a, S.out, S.s1, aB, aT, aC, aNH);
}

static void gelu_fwd(void) { be->gelu_forward(be, S.out, S.a, (size_t)N * C); }
static void gelu_bwd(const real *d) { be->gelu_backward(be, S.da, S.a, d, (size_t)N * C); }

// the classifier writes dlogits in place (not accumulated): run it on a copy and add the result
static void cls_fwd(void) { be->classifier(be, S.a, S.out, S.tok, N, V, VP, 0); }
static void cls_bwd(const real *d) {
    memcpy(S.s1, S.a, (size_t)N * VP * sizeof(real));
    be->classifier(be, S.s1, S.s2, S.tok, N, V, VP, d[0]);
    for (size_t i = 0; i < (size_t)N * VP; i++)
        S.da[i] += S.s1[i];
}

static real *rand_buf(size_t n, uint64_t *rng, double lo, double hi) {
    real *x = be->alloc(be, n * sizeof(real));
    for (size_t i = 0; i < n; i++)
        x[i] = harness_rng_uniform(rng, lo, hi);
    return x;
}

static double loss_of(const fd_case *fc, const real *R) {
    fc->forward();
    double L = 0;
    for (size_t i = 0; i < fc->out_n; i++)
        L += fc->out[i] * R[i];
    return L;
}

static double rel_err(const double *fd, const double *g, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (fd[i] - g[i]) * (fd[i] - g[i]);
        den += g[i] * g[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// Runs the check; with control != 0 it also runs the negative controls on the first input.
static void fd_check(harness *h, const fd_case *fc, uint64_t *rng, int control) {
    real *R = rand_buf(fc->out_n, rng, -1, 1);
    if (fc->uniform_dout)
        for (size_t i = 1; i < fc->out_n; i++)
            R[i] = R[0];

    // analytic: backward at the unperturbed point into pre-filled gradient buffers
    double *g[MAX_IN], *prefill[MAX_IN];
    fc->forward();
    for (int k = 0; k < fc->n_in; k++) {
        prefill[k] = malloc(fc->in_n[k] * sizeof(double));
        for (size_t i = 0; i < fc->in_n[k]; i++)
            fc->grad[k][i] = prefill[k][i] = harness_rng_uniform(rng, -1, 1);
    }
    fc->backward(R);
    for (int k = 0; k < fc->n_in; k++) {
        g[k] = malloc(fc->in_n[k] * sizeof(double));
        for (size_t i = 0; i < fc->in_n[k]; i++)
            g[k][i] = fc->grad[k][i] - prefill[k][i];
    }

    for (int k = 0; k < fc->n_in; k++) {
        double *fd = malloc(fc->in_n[k] * sizeof(double));
        for (size_t i = 0; i < fc->in_n[k]; i++) {
            real x0 = fc->in[k][i];
            fc->in[k][i] = x0 + FD_STEP;
            double lp = loss_of(fc, R);
            fc->in[k][i] = x0 - FD_STEP;
            double lm = loss_of(fc, R);
            fc->in[k][i] = x0;
            fd[i] = (lp - lm) / (2 * FD_STEP);
        }
        char name[96];
        snprintf(name, sizeof name, "fd f64 %s.%s", fc->op, fc->in_name[k]);
        harness_check_err(h, name, rel_err(fd, g[k], fc->in_n[k]), FD_TOL);

        if (control && k == 0) {
            // 1) one analytic element off by 1e-4 of the tensor's norm must be reported
            double norm = 0;
            for (size_t i = 0; i < fc->in_n[k]; i++)
                norm += g[k][i] * g[k][i];
            norm = sqrt(norm);
            double saved = g[k][1];
            g[k][1] += 1e-4 * norm;
            double e1 = rel_err(fd, g[k], fc->in_n[k]);
            g[k][1] = saved;
            // the check must fail here: the negative control passes when rel err > FD_TOL
            char what[160];
            snprintf(what, sizeof what,
                     "neg %s: one element off by 1e-4 |g| (rel err %.2e): undetected", name, e1);
            harness_check_err(h, what, e1 > FD_TOL ? 0 : 1, 0);
            // 2) a backward that overwrote its gradient instead of accumulating would leave
            //    buffer - prefill = g - prefill: that must be reported too
            double *raw = malloc(fc->in_n[k] * sizeof(double));
            for (size_t i = 0; i < fc->in_n[k]; i++)
                raw[i] = g[k][i] - prefill[k][i];
            double e2 = rel_err(fd, raw, fc->in_n[k]);
            snprintf(what, sizeof what,
                     "neg %s: overwrite, not accumulate (rel err %.2e): undetected", name, e2);
            harness_check_err(h, what, e2 > FD_TOL ? 0 : 1, 0);
            free(raw);
        }
        free(fd);
    }
    for (int k = 0; k < fc->n_in; k++)
        free(g[k]), free(prefill[k]);
    be->free(be, R);
}

static void free_state(void) {
    void *p[] = {S.tok, S.a, S.b, S.c, S.da, S.db, S.dc, S.out, S.s1, S.s2};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (p[i]) be->free(be, p[i]);
    memset(&S, 0, sizeof S);
}

void ops_check_gradients_f64(harness *h, const backend_f64 *cpu) {
    be = cpu;
    uint64_t rng = 777;
    const size_t NC = (size_t)N * C;

    // embedding: inputs wte (V,C) and wpe (MAXT,C); rows of unused tokens and t >= T get zero
    S.tok = be->alloc(be, N * sizeof(int));
    for (int i = 0; i < N; i++)
        S.tok[i] = harness_rng_int(&rng, V);
    S.a = rand_buf((size_t)V * C, &rng, -1, 1), S.b = rand_buf((size_t)MAXT * C, &rng, -1, 1);
    S.da = be->alloc(be, (size_t)V * C * sizeof(real)),
    S.db = be->alloc(be, (size_t)MAXT * C * sizeof(real));
    S.out = be->alloc(be, NC * sizeof(real));
    fd_check(h,
             &(fd_case){"embed",
                        2,
                        {"dwte", "dwpe"},
                        {S.a, S.b},
                        {S.da, S.db},
                        {(size_t)V * C, (size_t)MAXT * C},
                        S.out,
                        NC,
                        0,
                        embed_fwd,
                        embed_bwd},
             &rng, 0);
    free_state();

    // layernorm: inputs inp (N,C), w (C), b (C)
    S.a = rand_buf(NC, &rng, -2, 2), S.b = rand_buf(C, &rng, 0.5, 1.5),
    S.c = rand_buf(C, &rng, -1, 1);
    S.da = be->alloc(be, NC * sizeof(real)), S.db = be->alloc(be, C * sizeof(real));
    S.dc = be->alloc(be, C * sizeof(real));
    S.out = be->alloc(be, NC * sizeof(real)), S.s1 = be->alloc(be, N * sizeof(real));
    S.s2 = be->alloc(be, N * sizeof(real));
    fd_check(h,
             &(fd_case){"layernorm",
                        3,
                        {"dinp", "dw", "db"},
                        {S.a, S.b, S.c},
                        {S.da, S.db, S.dc},
                        {NC, C, C},
                        S.out,
                        NC,
                        0,
                        ln_fwd,
                        ln_bwd},
             &rng, 0);
    free_state();

    // matmul: inputs inp (N,C), w (OC,C), bias (OC); carries the negative controls
    S.a = rand_buf(NC, &rng, -1, 1), S.b = rand_buf((size_t)OC * C, &rng, -1, 1);
    S.c = rand_buf(OC, &rng, -1, 1);
    S.da = be->alloc(be, NC * sizeof(real)), S.db = be->alloc(be, (size_t)OC * C * sizeof(real));
    S.dc = be->alloc(be, OC * sizeof(real)), S.out = be->alloc(be, (size_t)N * OC * sizeof(real));
    fd_check(h,
             &(fd_case){"matmul",
                        3,
                        {"dinp", "dw", "dbias"},
                        {S.a, S.b, S.c},
                        {S.da, S.db, S.dc},
                        {NC, (size_t)OC * C, OC},
                        S.out,
                        (size_t)N * OC,
                        0,
                        mm_fwd,
                        mm_bwd},
             &rng, 1);
    free_state();

    // attention: input qkv (B,T,3C); T = 70 spans two row blocks of the kernel (64 rows)
    const int shapes[2][4] = {{B, T, C, NH}, {1, 70, 4, 2}};
    for (int k = 0; k < 2; k++) {
        aB = shapes[k][0], aT = shapes[k][1], aC = shapes[k][2], aNH = shapes[k][3];
        const size_t n = (size_t)aB * aT * aC;
        S.a = rand_buf(3 * n, &rng, -2, 2), S.da = be->alloc(be, 3 * n * sizeof(real));
        S.out = be->alloc(be, n * sizeof(real));
        S.s1 = be->alloc(be, be->attention_state_bytes(be, aB, aT, aC, aNH));
        fd_check(h,
                 &(fd_case){k ? "attention(T=70)" : "attention",
                            1,
                            {"dqkv"},
                            {S.a},
                            {S.da},
                            {3 * n},
                            S.out,
                            n,
                            0,
                            attn_fwd,
                            attn_bwd},
                 &rng, 0);
        free_state();
    }

    // gelu: input (N*C) over [-4, 4]
    S.a = rand_buf(NC, &rng, -4, 4), S.da = be->alloc(be, NC * sizeof(real));
    S.out = be->alloc(be, NC * sizeof(real));
    fd_check(h,
             &(fd_case){"gelu", 1, {"dinp"}, {S.a}, {S.da}, {NC}, S.out, NC, 0, gelu_fwd, gelu_bwd},
             &rng, 0);
    free_state();

    // classifier: input logits (N,VP) with V real classes; L = dloss * sum_n loss_n, and the
    // padding columns must get exactly the zero gradient the differences see
    S.tok = be->alloc(be, N * sizeof(int));
    for (int i = 0; i < N; i++)
        S.tok[i] = harness_rng_int(&rng, V);
    S.a = rand_buf((size_t)N * VP, &rng, -3, 3),
    S.da = be->alloc(be, (size_t)N * VP * sizeof(real));
    S.out = be->alloc(be, N * sizeof(real)), S.s1 = be->alloc(be, (size_t)N * VP * sizeof(real));
    S.s2 = be->alloc(be, N * sizeof(real));
    fd_check(h,
             &(fd_case){"classifier",
                        1,
                        {"dlogits"},
                        {S.a},
                        {S.da},
                        {(size_t)N * VP},
                        S.out,
                        N,
                        1,
                        cls_fwd,
                        cls_bwd},
             &rng, 0);
    free_state();
}

const backend_f64 *ops_cpu_f64_create(void) { return backend_cpu_create_f64(); }

void ops_cpu_f64_destroy(const backend_f64 *cpu) { cpu->destroy(cpu); }
