// backend.h — the compute backend interface: one struct of operations that models/ calls.
//
// The CPU backend (kernels/cpu/) is the reference; the CUDA backend (kernels/cuda/) implements
// the same struct, so models/ never changes with the backend. Backends are found by name in the
// registry (kernels/registry.h), which the trainer asks for `run.backend`.
//
// Context. Every entry takes the backend itself as its first argument (`be->op(be, ...)`), and
// the backend keeps what its ops share in be->ctx: the CUDA backend its stream, cuBLASLt handles,
// scratch buffer and device; the CPU backend the attention backward's scratch. Nothing an op
// needs lives in a file-level variable, so two backends of one kind are independent (ops of one
// backend are still not to be called from two threads at once).
//
// Element types. A backend declares the type of its activations and of the parameters the ops
// compute with (act_dtype, param_dtype): fp32 (or fp64 in the double build) on the CPU; bf16 or
// fp32 on CUDA. Those buffers are passed as void* and addressed in elements of that type
// (ts_dtype_size). Everything that accumulates or is optimised stays in `real` (fp32 in the
// float build): gradients of parameters, the fp32 master weights, AdamW moments, LayerNorm
// statistics and per-token losses. When param_dtype is `real`'s own type the master weights ARE
// the compute parameters (one buffer); otherwise the model keeps both and the optimizer writes
// the compute copy from the master weights.
//
// Conventions shared by every op:
//   * Shapes are row-major; "(B,T,C)" means B*T*C contiguous elements, C fastest.
//   * Forward ops overwrite their outputs.
//   * Backward ops ACCUMULATE (+=) into every gradient they write, for parameters and for
//     activations alike; the caller zeroes gradient buffers when a new accumulation starts.
//     This is what lets the residual stream, the tied embedding and gradient accumulation over
//     micro-batches work without extra copies (and fuses the residual add into LayerNorm
//     backward).
//   * Pointers given to ops point into backend memory (alloc); token arrays are int32 in
//     backend memory too. Ops may run asynchronously; to_host and synchronize wait for them.
//   * Backend memory is host memory exactly when host_memory is set: callers that need a host
//     buffer (the communicators, checkpoints) use backend memory directly then, and go through
//     to_host/to_device otherwise.
#ifndef TESSERA_BACKEND_H
#define TESSERA_BACKEND_H

#include <stddef.h>

#include "kernels/precision.h"

typedef enum { TS_F32 = 0, TS_BF16 = 1, TS_F64 = 2 } ts_dtype;

static inline size_t ts_dtype_size(ts_dtype t) { return t == TS_BF16 ? 2 : t == TS_F64 ? 8 : 4; }
static inline const char *ts_dtype_name(ts_dtype t) {
    return t == TS_BF16 ? "bf16" : t == TS_F64 ? "fp64" : "fp32";
}

typedef struct TS_REAL(backend) TS_REAL(backend);

struct TS_REAL(backend) {
    const char *name;     // "cpu", "cuda": its name in the registry and in run.backend
    const char *device;   // what runs the ops, for the log ("CPU", "NVIDIA H200")
    ts_dtype act_dtype;   // activations (void* buffers of ops)
    ts_dtype param_dtype; // parameters as the ops read them
    int host_memory;      // 1: alloc returns host memory (the CPU); 0: device memory
    void *ctx;            // the backend's own state, for its ops (opaque to callers)

    // Free what the backend holds (its context, handles, streams) and the backend itself; its
    // memory must have been freed first. Backends from the registry are destroyed this way.
    void (*destroy)(const TS_REAL(backend) * be);

    // ---- memory ------------------------------------------------------------------------
    // zeroed; never returns NULL (fatal, with the size)
    void *(*alloc)(const TS_REAL(backend) * be, size_t bytes);
    void (*free)(const TS_REAL(backend) * be, void *p);
    void (*zero)(const TS_REAL(backend) * be, void *p, size_t bytes);
    void (*to_device)(const TS_REAL(backend) * be, void *dst, const void *host_src, size_t bytes);
    void (*to_host)(const TS_REAL(backend) * be, void *host_dst, const void *src, size_t bytes);
    void (*synchronize)(const TS_REAL(backend) * be);
    // bytes the backend can still allocate, or 0 when it cannot tell (the CPU)
    size_t (*mem_free)(const TS_REAL(backend) * be);
    // n elements of act_dtype <-> host `real`, converting (for tests and inspection)
    void (*act_to_host)(const TS_REAL(backend) * be, real *host_dst, const void *src, size_t n);
    void (*act_to_device)(const TS_REAL(backend) * be, void *dst, const real *host_src, size_t n);
    // compute parameters from master weights: param (param_dtype) = master (real); a no-op when
    // they are the same buffer
    void (*params_from_master)(const TS_REAL(backend) * be, void *param, const real *master,
                               size_t n);

    // ---- ops ---------------------------------------------------------------------------
    // out(B,T,C) = wte[tokens[b,t], :] + wpe[t, :]          wte (V,C), wpe (maxT,C)
    void (*embed_forward)(const TS_REAL(backend) * be, void *out, const int *tokens,
                          const void *wte, const void *wpe, int B, int T, int C);
    // dwte[tokens[b,t], :] += dout[b,t,:];  dwpe[t,:] += sum_b dout[b,t,:]   (deterministic)
    void (*embed_backward)(const TS_REAL(backend) * be, real *dwte, real *dwpe, const void *dout,
                           const int *tokens, int B, int T, int C);

    // out(N,C) = (inp - mean) * rstd * w + b, eps 1e-5; saves mean(N), rstd(N)
    void (*layernorm_forward)(const TS_REAL(backend) * be, void *out, real *mean, real *rstd,
                              const void *inp, const void *w, const void *b, int N, int C);
    // fused residual add + LayerNorm: residual = a + b_in; out = LayerNorm(residual)
    void (*residual_layernorm_forward)(const TS_REAL(backend) * be, void *residual, void *out,
                                       real *mean, real *rstd, const void *a, const void *b_in,
                                       const void *w, const void *b, int N, int C);
    // dinp += ...; dw += ...; db += ...
    void (*layernorm_backward)(const TS_REAL(backend) * be, void *dinp, real *dw, real *db,
                               const void *dout, const void *inp, const void *w, const real *mean,
                               const real *rstd, int N, int C);

    // out(N,OC) = inp(N,C) @ w(OC,C)^T + bias(OC)            bias may be NULL
    void (*matmul_forward)(const TS_REAL(backend) * be, void *out, const void *inp, const void *w,
                           const void *bias, int N, int C, int OC);
    // the same followed by GELU: pre (N,OC) = inp @ w^T + bias (kept for backward),
    // out = gelu(pre)
    void (*matmul_gelu_forward)(const TS_REAL(backend) * be, void *pre, void *out, const void *inp,
                                const void *w, const void *bias, int N, int C, int OC);
    // dinp += dout @ w;  dw += dout^T @ inp;  dbias += sum_n dout   (dinp, dbias may be NULL)
    void (*matmul_backward)(const TS_REAL(backend) * be, void *dinp, real *dw, real *dbias,
                            const void *dout, const void *inp, const void *w, int N, int C, int OC);

    // causal multi-head self-attention. qkv (B,T,3C) holds q | k | v, each C = NH heads of
    // C/NH; out (B,T,C).
    // attention_state_bytes: bytes of backend memory attention_forward needs for what it saves
    // for attention_backward, for these shapes (a buffer sized for larger B or T also serves
    // smaller ones); layout is the backend's own. The CPU backend keeps preatt | att there,
    // (B,NH,T,T) each, of act_dtype: scores and softmax probabilities (entries above the
    // diagonal are 0; tests may read them in that order).
    size_t (*attention_state_bytes)(const TS_REAL(backend) * be, int B, int T, int C, int NH);
    void (*attention_forward)(const TS_REAL(backend) * be, void *out, void *state, const void *qkv,
                              int B, int T, int C, int NH);
    // dqkv += ...; out and state as attention_forward left them (some backends need out); any
    // scratch is the backend's own
    void (*attention_backward)(const TS_REAL(backend) * be, void *dqkv, const void *dout,
                               const void *qkv, const void *out, const void *state, int B, int T,
                               int C, int NH);

    // GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    void (*gelu_forward)(const TS_REAL(backend) * be, void *out, const void *inp, size_t n);
    // dinp += dout * gelu'(inp)
    void (*gelu_backward)(const TS_REAL(backend) * be, void *dinp, const void *inp,
                          const void *dout, size_t n);

    // out = a + b;  y += x
    void (*add)(const TS_REAL(backend) * be, void *out, const void *a, const void *b, size_t n);
    void (*add_inplace)(const TS_REAL(backend) * be, void *y, const void *x, size_t n);

    // Fused classifier over logits (N,Vp), of which the first V columns are real classes.
    // losses[n] = -log softmax(logits[n, :V])[targets[n]]  (written)
    // If dloss != 0, logits is OVERWRITTEN by dlogits = (softmax - onehot(target)) * dloss,
    // with columns V..Vp-1 set to 0; if dloss == 0 the logits are left untouched.
    void (*classifier)(const TS_REAL(backend) * be, void *logits, real *losses, const int *targets,
                       int N, int V, int Vp, real dloss);

    // AdamW with bias correction on n elements; t is the 1-based step.
    // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr (mhat / (sqrt(vhat) + eps) + wd w)
    // on the master weights, then param = w in param_dtype (param == master: nothing to write)
    void (*adamw)(const TS_REAL(backend) * be, real *master, void *param, const real *grad, real *m,
                  real *v, size_t n, float lr, float beta1, float beta2, float eps,
                  float weight_decay, int t);

    // sum x^2, accumulated in double;  x *= s
    double (*sum_squares)(const TS_REAL(backend) * be, const real *x, size_t n);
    void (*scale)(const TS_REAL(backend) * be, real *x, real s, size_t n);
};

#ifdef __cplusplus
extern "C" {
#endif
// The CPU backend, computing in `real` (fp32, or fp64 in the double build).
// backend_cpu: the process's default instance, made on first use and never destroyed (for tools
// and tests that want one CPU backend); backend_cpu_create: a new one, with its own context,
// freed by be->destroy (the registry's constructor).
const TS_REAL(backend) * TS_REAL(backend_cpu)(void);
const TS_REAL(backend) * TS_REAL(backend_cpu_create)(void);
// OpenMP threads for the CPU kernels (and BLAS) of the whole process, 0 = leave as is
void TS_REAL(backend_cpu_set_threads)(int threads);
#ifdef __cplusplus
}
#endif

#endif
