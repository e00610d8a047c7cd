// backend.h — the compute backend interface: one struct of operations that models/ calls.
//
// The CPU backend (kernels/cpu/) is the reference; the CUDA backend implements the same struct.
// Conventions shared by every op:
//   * Shapes are row-major; "(B,T,C)" means B*T*C contiguous elements, C fastest.
//   * Forward ops overwrite their outputs.
//   * Backward ops ACCUMULATE (+=) into every gradient they write, for parameters and for
//     activations alike; the caller zeroes gradient buffers when a new accumulation starts.
//     This is what lets the residual stream, the tied embedding and gradient accumulation over
//     micro-batches work without extra copies.
//   * Pointers given to ops point into backend memory (alloc); token arrays are int32 in
//     backend memory too.
#ifndef TESSERA_BACKEND_H
#define TESSERA_BACKEND_H

#include <stddef.h>

#include "precision.h"

typedef struct TS_REAL(backend) {
    const char *name; // "cpu", "cuda"

    // ---- memory ------------------------------------------------------------------------
    void *(*alloc)(size_t bytes); // zeroed; never returns NULL (fatal, with the size)
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);
    void (*synchronize)(void);

    // ---- ops ---------------------------------------------------------------------------
    // out(B,T,C) = wte[tokens[b,t], :] + wpe[t, :]          wte (V,C), wpe (maxT,C)
    void (*embed_forward)(real *out, const int *tokens, const real *wte, const real *wpe, int B,
                          int T, int C);
    // dwte[tokens[b,t], :] += dout[b,t,:];  dwpe[t,:] += sum_b dout[b,t,:]
    void (*embed_backward)(real *dwte, real *dwpe, const real *dout, const int *tokens, int B,
                           int T, int C);

    // out(N,C) = (inp - mean) * rstd * w + b, eps 1e-5; saves mean(N), rstd(N)
    void (*layernorm_forward)(real *out, real *mean, real *rstd, const real *inp, const real *w,
                              const real *b, int N, int C);
    void (*layernorm_backward)(real *dinp, real *dw, real *db, const real *dout, const real *inp,
                               const real *w, const real *mean, const real *rstd, int N, int C);

    // out(N,OC) = inp(N,C) @ w(OC,C)^T + bias(OC)            bias may be NULL
    void (*matmul_forward)(real *out, const real *inp, const real *w, const real *bias, int N,
                           int C, int OC);
    // dinp += dout @ w;  dw += dout^T @ inp;  dbias += sum_n dout   (dbias may be NULL)
    void (*matmul_backward)(real *dinp, real *dw, real *dbias, const real *dout, const real *inp,
                            const real *w, int N, int C, int OC);

    // causal multi-head self-attention. qkv (B,T,3C) holds q | k | v, each C = NH heads of
    // C/NH; out (B,T,C). preatt and att (B,NH,T,T): scores and softmax probabilities, saved
    // for backward (entries above the diagonal are unused).
    void (*attention_forward)(real *out, real *preatt, real *att, const real *qkv, int B, int T,
                              int C, int NH);
    // dqkv += ...; dpreatt and datt (B,NH,T,T) are scratch the caller provides (zeroed here)
    void (*attention_backward)(real *dqkv, real *dpreatt, real *datt, const real *dout,
                               const real *qkv, const real *att, int B, int T, int C, int NH);

    // GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    void (*gelu_forward)(real *out, const real *inp, size_t n);
    void (*gelu_backward)(real *dinp, const real *inp, const real *dout, size_t n); // dinp +=

    void (*add)(real *out, const real *a, const real *b, size_t n); // out = a + b
    void (*add_inplace)(real *y, const real *x, size_t n);          // y += x

    // Fused classifier over logits (N,Vp), of which the first V columns are real classes.
    // losses[n] = -log softmax(logits[n, :V])[targets[n]]  (written)
    // If dloss != 0, logits is OVERWRITTEN by dlogits = (softmax - onehot(target)) * dloss,
    // with columns V..Vp-1 set to 0; if dloss == 0 the logits are left untouched.
    void (*classifier)(real *logits, real *losses, const int *targets, int N, int V, int Vp,
                       real dloss);

    // AdamW with bias correction on n elements; t is the 1-based step.
    // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (mhat / (sqrt(vhat) + eps) + wd p)
    void (*adamw)(real *param, const real *grad, real *m, real *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int t);

    double (*sum_squares)(const real *x, size_t n); // sum x^2, accumulated in double
    void (*scale)(real *x, real s, size_t n);       // x *= s
} TS_REAL(backend);

// The CPU backend. threads: OpenMP threads for kernels (and BLAS), 0 = leave as is.
const TS_REAL(backend) * TS_REAL(backend_cpu)(void);
void TS_REAL(backend_cpu_set_threads)(int threads);

#endif
