// cpu_pointwise.c — CPU GELU, elementwise arithmetic, fused classifier, AdamW and reductions.
//
// Everything here is elementwise or row-wise, so OpenMP splits it freely; the one global sum
// (sum_squares) goes through fixed-size chunks added in order, independent of the thread count.
#include <stdlib.h>
#include <tgmath.h>

#include "base/common.h"
#include "kernels/cpu/cpu_ops.h"

#define GELU_K0 0.7978845608028654 // sqrt(2/pi)
#define GELU_K1 0.044715

// sum_squares: elements per partial sum
#define SUMSQ_CHUNK 65536

// 0.5 x (1 + tanh u) = x sigmoid(2u) exactly, u = k0 (x + k1 x^3); the sigmoid form needs one
// exponential and no tanh, so the loop vectorizes. The exponent is capped at 80, far into the
// saturated range, to keep 1/(1+e) a normal number.
static inline real gelu_sigmoid(real x) {
    real z = (real)(-2 * GELU_K0) * (x + (real)GELU_K1 * x * x * x);
    z = z > 80 ? 80 : z;
    return 1 / (1 + cpu_exp(z));
}

void TS_REAL(cpu_gelu_forward)(real *out, const real *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] * gelu_sigmoid(inp[i]);
}

// d/dx [x s(2u)] = s + 2 x s (1 - s) du/dx,  du/dx = k0 (1 + 3 k1 x^2)
void TS_REAL(cpu_gelu_backward)(real *dinp, const real *inp, const real *dout, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        const real x = inp[i], s = gelu_sigmoid(x);
        const real du = (real)GELU_K0 * (1 + 3 * (real)GELU_K1 * x * x);
        dinp[i] += dout[i] * (s + 2 * x * s * (1 - s) * du);
    }
}

void TS_REAL(cpu_add)(real *out, const real *a, const real *b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void TS_REAL(cpu_add_inplace)(real *y, const real *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void TS_REAL(cpu_scale)(real *x, real s, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

double TS_REAL(cpu_sum_squares)(const real *x, size_t n) {
    const size_t nchunk = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    if (nchunk == 0) return 0;
    double one;
    double *part = nchunk == 1 ? &one : ts_malloc(nchunk * sizeof(double), "sum_squares");
#pragma omp parallel for schedule(static) if (nchunk > 1)
    for (size_t k = 0; k < nchunk; k++) {
        const size_t i1 = (k + 1) * SUMSQ_CHUNK < n ? (k + 1) * SUMSQ_CHUNK : n;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t i = k * SUMSQ_CHUNK; i < i1; i++)
            s += (double)x[i] * (double)x[i];
        part[k] = s;
    }
    double total = 0;
    for (size_t k = 0; k < nchunk; k++)
        total += part[k];
    if (part != &one) free(part);
    return total;
}

// One row at a time: max, then exponentials (stored in place when the gradient is wanted, so
// each logit is exponentiated once), then loss = log(sum) - (logit[target] - max).
void TS_REAL(cpu_classifier)(real *logits, real *losses, const int *targets, int N, int V, int Vp,
                             real dloss) {
#pragma omp parallel for schedule(static) if ((size_t)N * Vp >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        real *l = logits + (size_t)n * Vp;
        const int tgt = targets[n];
        TS_ASSERT(tgt >= 0 && tgt < V);
        real mx = l[0];
#pragma omp simd reduction(max : mx)
        for (int v = 1; v < V; v++)
            mx = l[v] > mx ? l[v] : mx;
        const real lt = l[tgt];
        real sum = 0;
        if (dloss != 0) {
#pragma omp simd reduction(+ : sum)
            for (int v = 0; v < V; v++) {
                real e = cpu_exp(l[v] - mx);
                l[v] = e;
                sum += e;
            }
            const real f = dloss / sum;
#pragma omp simd
            for (int v = 0; v < V; v++)
                l[v] *= f;
            l[tgt] -= dloss;
            for (int v = V; v < Vp; v++)
                l[v] = 0;
        } else {
#pragma omp simd reduction(+ : sum)
            for (int v = 0; v < V; v++)
                sum += cpu_exp(l[v] - mx);
        }
        losses[n] = log(sum) - (lt - mx);
    }
}

// Bias corrections are taken in double once per call; the update itself runs in `real`.
// (The square root vectorizes only when the kernels are built with -fno-math-errno; otherwise the
// loop stays scalar, a few ns per element.)
void TS_REAL(cpu_adamw)(real *param, const real *grad, real *m, real *v, size_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, int t) {
    const real b1 = beta1, b2 = beta2, e = eps, wd = weight_decay, lr_ = lr;
    const real c1 = (real)(1.0 / (1.0 - pow((double)beta1, t)));
    const real c2 = (real)(1.0 / (1.0 - pow((double)beta2, t)));
#pragma omp parallel for simd schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        const real g = grad[i];
        const real mi = b1 * m[i] + (1 - b1) * g;
        const real vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= lr_ * (mi * c1 / (sqrt(vi * c2) + e) + wd * param[i]);
    }
}
