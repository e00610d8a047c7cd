// cpu_ops.h — internal declarations shared by the CPU kernel files (not a public header).
//
// The kernels are compiled once in float and once in double; TS_REAL() gives every symbol here a
// _f64 suffix in the double build so both builds can be linked into one binary. The semantics of
// each op are documented once, in kernels/backend.h.
//
// Determinism: no op uses atomics or cross-thread OpenMP reductions (whose combining order is
// unspecified); `omp simd` reductions stay inside one thread and have a fixed order. Sums over
// rows are done serially per output element or through fixed-size chunks whose partial sums are
// combined in chunk order, so the kernels' own loops give the same bits at any thread count.
// GEMMs are OpenBLAS's (deterministic for a given thread count and CPU kernel) or, without
// OpenBLAS, cpu_gemm.h's loops (deterministic).
#ifndef TESSERA_CPU_OPS_H
#define TESSERA_CPU_OPS_H

#include <stddef.h>
#include <tgmath.h>

#include "kernels/backend.h"

// below this many elements an op runs on the calling thread: waking the team costs more
#define CPU_PARALLEL_MIN 16384

// e^x for the kernels. libm's expf is a call, which keeps every loop around it scalar; the float
// version here is plain arithmetic, so softmax and GELU loops vectorize. x = n ln2 + r with
// |r| <= ln2/2 (ln2 split in a high part exact in float and a low correction), e^r from its
// Taylor series to r^7 (truncation below 1e-8 relative), 2^n written into the exponent bits.
// About 2 ulp; results below e^-87 flush to 0 (no subnormals), x is clamped at 88; NaN stays NaN.
// The double build keeps libm: it serves the gradient checks, where accuracy is the point.
#ifdef TESSERA_F64
static inline double cpu_exp(double x) { return exp(x); }
#else
static inline float cpu_exp(float x) {
    const float magic = 12582912.0f; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    union {
        float f;
        int i;
    } t, m = {magic}, two_n;
    t.f = xc * 1.44269504088896341f + magic;
    const float n = t.f - magic;
    const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    two_n.i = (t.i - m.i + 127) << 23;
    return x < -87.0f ? 0.0f : p * two_n.f;
}
#endif

// cpu_dense.c: embedding, LayerNorm, matmul (BLAS)
void TS_REAL(cpu_embed_forward)(real *out, const int *tokens, const real *wte, const real *wpe,
                                int B, int T, int C);
void TS_REAL(cpu_embed_backward)(real *dwte, real *dwpe, const real *dout, const int *tokens, int B,
                                 int T, int C);
void TS_REAL(cpu_layernorm_forward)(real *out, real *mean, real *rstd, const real *inp,
                                    const real *w, const real *b, int N, int C);
void TS_REAL(cpu_layernorm_backward)(real *dinp, real *dw, real *db, const real *dout,
                                     const real *inp, const real *w, const real *mean,
                                     const real *rstd, int N, int C);
void TS_REAL(cpu_matmul_forward)(real *out, const real *inp, const real *w, const real *bias, int N,
                                 int C, int OC);
void TS_REAL(cpu_matmul_backward)(real *dinp, real *dw, real *dbias, const real *dout,
                                  const real *inp, const real *w, int N, int C, int OC);

// cpu_attention.c: causal multi-head self-attention
void TS_REAL(cpu_attention_forward)(real *out, real *preatt, real *att, const real *qkv, int B,
                                    int T, int C, int NH);
void TS_REAL(cpu_attention_backward)(real *dqkv, real *dpreatt, real *datt, const real *dout,
                                     const real *qkv, const real *att, int B, int T, int C, int NH);

// cpu_pointwise.c: GELU, elementwise arithmetic, classifier, AdamW, reductions
void TS_REAL(cpu_gelu_forward)(real *out, const real *inp, size_t n);
void TS_REAL(cpu_gelu_backward)(real *dinp, const real *inp, const real *dout, size_t n);
void TS_REAL(cpu_add)(real *out, const real *a, const real *b, size_t n);
void TS_REAL(cpu_add_inplace)(real *y, const real *x, size_t n);
void TS_REAL(cpu_classifier)(real *logits, real *losses, const int *targets, int N, int V, int Vp,
                             real dloss);
void TS_REAL(cpu_adamw)(real *param, const real *grad, real *m, real *v, size_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, int t);
double TS_REAL(cpu_sum_squares)(const real *x, size_t n);
void TS_REAL(cpu_scale)(real *x, real s, size_t n);

#endif
