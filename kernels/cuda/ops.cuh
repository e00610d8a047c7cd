// ops.cuh — the CUDA backend's context and the launchers of its kernels, shared between the
// kernel files and backend_cuda.cu (which wraps them into the backend struct). Internal to
// kernels/cuda/.
//
// Every launcher mirrors one op of kernels/backend.h (same shapes and semantics, documented
// there), with two additions: the backend's context `cx` (stream, scratch, cuBLASLt handles:
// struct cuda_ctx below) first, and `dt`, the element type of the void* activation/parameter
// buffers (TS_F32 or TS_BF16). `float *` arguments are fp32 always (gradients, master weights,
// moments, LayerNorm statistics, losses). Launchers only enqueue work on cx->stream: they never
// synchronize, never allocate (scratch comes from cuda_scratch()), and launch through
// CUDA_LAUNCH (common.cuh). One exception: attention backward keeps a buffer of its own in the
// context, allocated by its first call (and reallocated, after a stream sync, when a call needs
// more), freed by cuda_attention_free.
//
// Determinism: no launcher may use floating-point atomics on an output; reductions over rows
// (embedding and bias gradients, LayerNorm dw/db, sums of squares) go through per-block partial
// results combined in a fixed order, so two runs give the same bits.
#ifndef TESSERA_CUDA_OPS_CUH
#define TESSERA_CUDA_OPS_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#include "kernels/backend.h"

// ---- the context of one CUDA backend (be->ctx) -----------------------------------------------
// Everything the launchers share, made by backend_cuda_create and freed by the backend's destroy:
// nothing a kernel file uses lives in a file-level variable.
struct cuda_matmul_state; // matmul.cu: cuBLASLt and cuBLAS handles, workspace, algorithm cache

typedef struct cuda_ctx {
    int device; // the device the stream belongs to
    cudaStream_t stream;
    void *scratch; // cuda_scratch(): scratch_bytes of device memory
    size_t scratch_bytes;
    struct cuda_matmul_state *mm;
    void *att_bwd_buf; // attention.cu: the simple path's backward buffer (dpreatt | datt)
    size_t att_bwd_bytes;
    bool att_flash_warned; // attention.cu: TESSERA_ATTENTION=flash could not be honoured (once)
    char device_name[256];
} cuda_ctx;

// ---- provided by backend_cuda.cu -----------------------------------------------------------
// The context's scratch buffer, of at least `bytes`, valid until the next launcher on the same
// stream uses it (sized at start-up: callers must not need more than cuda_scratch_max()).
void *cuda_scratch(cuda_ctx *cx, size_t bytes);
size_t cuda_scratch_max(const cuda_ctx *cx);

// ---- matmul.cu (cuBLASLt: bf16/fp32 inputs, fp32 accumulation) ------------------------------
void cuda_matmul_forward(cuda_ctx *cx, ts_dtype dt, void *out, const void *inp, const void *w,
                         const void *bias, int N, int C, int OC);
void cuda_matmul_gelu_forward(cuda_ctx *cx, ts_dtype dt, void *pre, void *out, const void *inp,
                              const void *w, const void *bias, int N, int C, int OC);
void cuda_matmul_backward(cuda_ctx *cx, ts_dtype dt, void *dinp, float *dw, float *dbias,
                          const void *dout, const void *inp, const void *w, int N, int C, int OC);
void cuda_matmul_init(cuda_ctx *cx); // the handles, workspace and algorithm cache of cx->mm
void cuda_matmul_free(cuda_ctx *cx);

// ---- attention.cu ----------------------------------------------------------------------------
// The backend's entry points: they choose the path (flash or simple) from dt, the head size and
// TESSERA_ATTENTION, the same one in all three for the same arguments; the state is that path's.
size_t cuda_attention_state_bytes(cuda_ctx *cx, ts_dtype dt, int B, int T, int C, int NH);
void cuda_attention_forward(cuda_ctx *cx, ts_dtype dt, void *out, void *state, const void *qkv,
                            int B, int T, int C, int NH);
void cuda_attention_backward(cuda_ctx *cx, ts_dtype dt, void *dqkv, const void *dout,
                             const void *qkv, const void *out, const void *state, int B, int T,
                             int C, int NH);
void cuda_attention_free(cuda_ctx *cx); // backward's own buffer (called at backend teardown)
// The simple path: batched matmuls + fused causal softmax, materialising the (T,T) scores.
// State: preatt | att, (B,NH,T,T) each, of dt.
size_t cuda_attention_simple_state_bytes(ts_dtype dt, int B, int T, int C, int NH);
void cuda_attention_simple_forward(cuda_ctx *cx, ts_dtype dt, void *out, void *state,
                                   const void *qkv, int B, int T, int C, int NH);
void cuda_attention_simple_backward(cuda_ctx *cx, ts_dtype dt, void *dqkv, const void *dout,
                                    const void *qkv, const void *state, int B, int T, int C,
                                    int NH);

// ---- flash_attention.cu (bf16, head size 64 or 128; attention.cu chooses) -------------------
void cuda_flash_init(void); // allow the kernels their shared memory (on the current device)
bool cuda_flash_supported(ts_dtype dt, int C, int NH);
size_t cuda_flash_state_bytes(int B, int T, int NH); // lse2, (B,NH,T) fp32
void cuda_flash_forward(cuda_ctx *cx, void *out, float *lse, const void *qkv, int B, int T, int C,
                        int NH);
void cuda_flash_backward(cuda_ctx *cx, void *dqkv, const void *dout, const void *qkv,
                         const void *out, const float *lse, int B, int T, int C, int NH);

// ---- embed.cu --------------------------------------------------------------------------------
void cuda_embed_forward(cuda_ctx *cx, ts_dtype dt, void *out, const int *tokens, const void *wte,
                        const void *wpe, int B, int T, int C);
void cuda_embed_backward(cuda_ctx *cx, ts_dtype dt, float *dwte, float *dwpe, const void *dout,
                         const int *tokens, int B, int T, int C);

// ---- layernorm.cu ----------------------------------------------------------------------------
void cuda_layernorm_forward(cuda_ctx *cx, ts_dtype dt, void *out, float *mean, float *rstd,
                            const void *inp, const void *w, const void *b, int N, int C);
void cuda_residual_layernorm_forward(cuda_ctx *cx, ts_dtype dt, void *residual, void *out,
                                     float *mean, float *rstd, const void *a, const void *b_in,
                                     const void *w, const void *b, int N, int C);
void cuda_layernorm_backward(cuda_ctx *cx, ts_dtype dt, void *dinp, float *dw, float *db,
                             const void *dout, const void *inp, const void *w, const float *mean,
                             const float *rstd, int N, int C);

// ---- pointwise.cu (GELU, add, conversions) ---------------------------------------------------
void cuda_gelu_forward(cuda_ctx *cx, ts_dtype dt, void *out, const void *inp, size_t n);
void cuda_gelu_backward(cuda_ctx *cx, ts_dtype dt, void *dinp, const void *inp, const void *dout,
                        size_t n);
void cuda_add(cuda_ctx *cx, ts_dtype dt, void *out, const void *a, const void *b, size_t n);
void cuda_add_inplace(cuda_ctx *cx, ts_dtype dt, void *y, const void *x, size_t n);
// dst (dt) = src (fp32) and back
void cuda_convert_from_f32(cuda_ctx *cx, ts_dtype dt, void *dst, const float *src, size_t n);
void cuda_convert_to_f32(cuda_ctx *cx, ts_dtype dt, float *dst, const void *src, size_t n);

// ---- classifier.cu ---------------------------------------------------------------------------
void cuda_classifier(cuda_ctx *cx, ts_dtype dt, void *logits, float *losses, const int *targets,
                     int N, int V, int Vp, float dloss);

// ---- optimizer.cu (AdamW, norms) -------------------------------------------------------------
// master (fp32) updated; param (dt) written from it unless param == master
void cuda_adamw(cuda_ctx *cx, ts_dtype dt, float *master, void *param, const float *grad, float *m,
                float *v, size_t n, float lr, float beta1, float beta2, float eps,
                float weight_decay, int t);
// sum of squares in double, deterministic; synchronizes the stream to return it
double cuda_sum_squares(cuda_ctx *cx, const float *x, size_t n);
void cuda_scale(cuda_ctx *cx, float *x, float k, size_t n);

#endif
