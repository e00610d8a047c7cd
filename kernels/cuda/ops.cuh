// ops.cuh — the launchers of the CUDA kernels, shared between the kernel files and
// backend_cuda.cu (which wraps them into the backend struct). Internal to kernels/cuda/.
//
// Every launcher mirrors one op of kernels/backend.h (same shapes and semantics, documented
// there), with two additions: `dt`, the element type of the void* activation/parameter buffers
// (TS_F32 or TS_BF16), and the stream to launch on. `float *` arguments are fp32 always
// (gradients, master weights, moments, LayerNorm statistics, losses). Launchers only enqueue
// work: they never synchronize, never allocate (scratch comes from cuda_scratch()), and check
// the launch with CUDA_CHECK_LAUNCH (a device sync + check in debug builds). One exception:
// attention backward keeps a buffer of its own, allocated by its first call (and reallocated,
// after a stream sync, when a call needs more), freed by cuda_attention_free.
//
// Determinism: no launcher may use floating-point atomics on an output; reductions over rows
// (embedding and bias gradients, LayerNorm dw/db, sums of squares) go through per-block partial
// results combined in a fixed order, so two runs give the same bits.
#ifndef TESSERA_CUDA_OPS_CUH
#define TESSERA_CUDA_OPS_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#include "kernels/backend.h"

// ---- provided by backend_cuda.cu -----------------------------------------------------------
// A device scratch buffer of at least `bytes`, valid until the next call on the same stream
// order (sized at start-up by the backend: callers must not need more than cuda_scratch_max()).
void *cuda_scratch(size_t bytes);
size_t cuda_scratch_max(void);

// ---- matmul.cu (cuBLASLt: bf16/fp32 inputs, fp32 accumulation) ------------------------------
void cuda_matmul_forward(ts_dtype dt, void *out, const void *inp, const void *w, const void *bias,
                         int N, int C, int OC, cudaStream_t s);
void cuda_matmul_gelu_forward(ts_dtype dt, void *pre, void *out, const void *inp, const void *w,
                              const void *bias, int N, int C, int OC, cudaStream_t s);
void cuda_matmul_backward(ts_dtype dt, void *dinp, float *dw, float *dbias, const void *dout,
                          const void *inp, const void *w, int N, int C, int OC, cudaStream_t s);
void cuda_matmul_init(void); // create the cuBLASLt handle and workspace (called once)
void cuda_matmul_free(void);

// ---- attention.cu ----------------------------------------------------------------------------
// The backend's entry points: they choose the path (flash or simple) from dt, the head size and
// TESSERA_ATTENTION, the same one in all three for the same arguments; the state is that path's.
size_t cuda_attention_state_bytes(ts_dtype dt, int B, int T, int C, int NH);
void cuda_attention_forward(ts_dtype dt, void *out, void *state, const void *qkv, int B, int T,
                            int C, int NH, cudaStream_t s);
void cuda_attention_backward(ts_dtype dt, void *dqkv, const void *dout, const void *qkv,
                             const void *out, const void *state, int B, int T, int C, int NH,
                             cudaStream_t s);
void cuda_attention_free(void); // backward's own buffer (called at backend teardown)
// The simple path: batched matmuls + fused causal softmax, materialising the (T,T) scores.
// State: preatt | att, (B,NH,T,T) each, of dt.
size_t cuda_attention_simple_state_bytes(ts_dtype dt, int B, int T, int C, int NH);
void cuda_attention_simple_forward(ts_dtype dt, void *out, void *state, const void *qkv, int B,
                                   int T, int C, int NH, cudaStream_t s);
void cuda_attention_simple_backward(ts_dtype dt, void *dqkv, const void *dout, const void *qkv,
                                    const void *state, int B, int T, int C, int NH, cudaStream_t s);

// ---- flash_attention.cu (bf16, head size 64 or 128; attention.cu chooses) -------------------
bool cuda_flash_supported(ts_dtype dt, int C, int NH);
size_t cuda_flash_state_bytes(int B, int T, int NH); // lse2, (B,NH,T) fp32
void cuda_flash_forward(void *out, float *lse, const void *qkv, int B, int T, int C, int NH,
                        cudaStream_t s);
void cuda_flash_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                         const float *lse, int B, int T, int C, int NH, cudaStream_t s);

// ---- embed.cu --------------------------------------------------------------------------------
void cuda_embed_forward(ts_dtype dt, void *out, const int *tokens, const void *wte, const void *wpe,
                        int B, int T, int C, cudaStream_t s);
void cuda_embed_backward(ts_dtype dt, float *dwte, float *dwpe, const void *dout, const int *tokens,
                         int B, int T, int C, cudaStream_t s);

// ---- layernorm.cu ----------------------------------------------------------------------------
void cuda_layernorm_forward(ts_dtype dt, void *out, float *mean, float *rstd, const void *inp,
                            const void *w, const void *b, int N, int C, cudaStream_t s);
void cuda_residual_layernorm_forward(ts_dtype dt, void *residual, void *out, float *mean,
                                     float *rstd, const void *a, const void *b_in, const void *w,
                                     const void *b, int N, int C, cudaStream_t s);
void cuda_layernorm_backward(ts_dtype dt, void *dinp, float *dw, float *db, const void *dout,
                             const void *inp, const void *w, const float *mean, const float *rstd,
                             int N, int C, cudaStream_t s);

// ---- pointwise.cu (GELU, add, conversions) ---------------------------------------------------
void cuda_gelu_forward(ts_dtype dt, void *out, const void *inp, size_t n, cudaStream_t s);
void cuda_gelu_backward(ts_dtype dt, void *dinp, const void *inp, const void *dout, size_t n,
                        cudaStream_t s);
void cuda_add(ts_dtype dt, void *out, const void *a, const void *b, size_t n, cudaStream_t s);
void cuda_add_inplace(ts_dtype dt, void *y, const void *x, size_t n, cudaStream_t s);
// dst (dt) = src (fp32) and back
void cuda_convert_from_f32(ts_dtype dt, void *dst, const float *src, size_t n, cudaStream_t s);
void cuda_convert_to_f32(ts_dtype dt, float *dst, const void *src, size_t n, cudaStream_t s);

// ---- classifier.cu ---------------------------------------------------------------------------
void cuda_classifier(ts_dtype dt, void *logits, float *losses, const int *targets, int N, int V,
                     int Vp, float dloss, cudaStream_t s);

// ---- optimizer.cu (AdamW, norms) -------------------------------------------------------------
// master (fp32) updated; param (dt) written from it unless param == master
void cuda_adamw(ts_dtype dt, float *master, void *param, const float *grad, float *m, float *v,
                size_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int t,
                cudaStream_t s);
// sum of squares in double, deterministic; synchronizes the stream to return it
double cuda_sum_squares(const float *x, size_t n, cudaStream_t s);
void cuda_scale(float *x, float k, size_t n, cudaStream_t s);

#endif
