// attention.cu — CUDA causal multi-head self-attention: the backend's entry points, and the
// simple path (batched GEMMs and a fused softmax).
//
// Shapes as in backend.h: qkv (B,T,3C), row (b,t) = q | k | v, each C = NH heads of hs = C/NH;
// out and dout (B,T,C). The simple path's state (what forward saves for backward) is
// preatt | att, (B,NH,T,T) each, of the activation type; its backward's dpreatt and datt
// ((nb,NH,T,T) each for a chunk of nb samples, below) live in a device buffer of the backend's
// context (cx->att_bwd_buf), grown when a call needs more and freed by cuda_attention_free.
//
// One head's Q, K, V are (T,hs) matrices with row stride 3C inside qkv, and the heads of one
// batch row are hs apart, so (b,h) pairs are not one stride apart. The kernels therefore first
// copy q, k, v into scratch as (B,NH,T,hs) contiguous "head-major" tensors; every product is
// then one strided-batched GEMM over the B*NH heads (cuda_gemm_batched, matmul.cu). Scores are
// computed for the full (T,T) square and the softmax masks the upper triangle (simple, not
// flash attention: half of the score products are wasted).
//
// Forward, per head:  P = scale Q K^T;  A = causal_softmax(P);  O = A V;  out = merge(O)
// Backward, per head: dA = dO V^T;  dV = A^T dO;  dP = A * (dA - rowsum(A * dA));
//                     dQ = scale dP K;  dK = scale dP^T Q;  dqkv += merge(dQ | dK | dV)
// Entries above the diagonal of P, A, dP and dA are written as 0, as the CPU reference does.
//
// Scratch: 4 head-major slots of (nb,NH,T,hs) elements (3 in forward) from the backend's scratch
// (cuda_scratch). The batch is processed in chunks of nb samples, nb as large as that scratch
// allows (all of B for GPT-2 124M at B=16, T=1024), so a larger model still runs, in more
// launches.
// Accumulation is fp32 inside the GEMMs and kernels; in bf16 mode the scores, probabilities and
// head-major copies are stored in bf16.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/env.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

// matmul.cu: row-major C[i] = alpha op(A[i]) op(B[i]) + beta C[i] for i < batch, where matrix i
// of X starts stride_x elements after matrix i-1; all of type dt, fp32 accumulation.
void cuda_gemm_batched(cuda_ctx *cx, ts_dtype dt, bool trans_a, bool trans_b, int M, int N, int K,
                       float alpha, const void *A, int64_t lda, int64_t stride_a, const void *B,
                       int64_t ldb, int64_t stride_b, float beta, void *C, int64_t ldc,
                       int64_t stride_c, int batch);

#define ATT_THREADS    256
#define ATT_MAX_BLOCKS 65536
#define ATT_WARPS      (ATT_THREADS / 32) // softmax rows per block

static unsigned att_grid(size_t work) {
    size_t g = (work + ATT_THREADS - 1) / ATT_THREADS;
    if (g < 1) g = 1;
    return (unsigned)(g < ATT_MAX_BLOCKS ? g : ATT_MAX_BLOCKS);
}

// up to three head-major tensors handled by one launch
template <typename T> struct att_parts { T *p[3]; };

// ---------------------------------------------------------------------------------------------
// layout changes

// Head-major copies: dst.p[j] (nb,NH,T,hs) = part j of src, where row (b,t) of src starts at
// (b*T + t) * row_stride and part j is its columns j*C .. j*C + C-1 (head h at j*C + h*hs).
// One thread per head-major element i (all parts), grid-stride; reads and writes run along hs.
template <typename T>
__global__ void att_split_heads_kernel(att_parts<T> dst, const T *src, int nparts,
                                       int64_t row_stride, int NH, int Tn, int hs, size_t n) {
    const int64_t C = (int64_t)NH * hs;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hs);
        size_t r = i / hs;
        const int t = (int)(r % Tn);
        r /= Tn;
        const int h = (int)(r % NH);
        const size_t b = r / NH;
        const T *row = src + ((int64_t)b * Tn + t) * row_stride + (int64_t)h * hs + d;
        for (int j = 0; j < nparts; j++)
            dst.p[j][i] = row[j * C];
    }
}

// The inverse: part j of dst = src.p[j] (ADD: dst += src.p[j], in fp32 then rounded once).
template <typename T, bool ADD>
__global__ void att_merge_heads_kernel(T *dst, att_parts<T> src, int nparts, int64_t row_stride,
                                       int NH, int Tn, int hs, size_t n) {
    const int64_t C = (int64_t)NH * hs;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hs);
        size_t r = i / hs;
        const int t = (int)(r % Tn);
        r /= Tn;
        const int h = (int)(r % NH);
        const size_t b = r / NH;
        T *row = dst + ((int64_t)b * Tn + t) * row_stride + (int64_t)h * hs + d;
        for (int j = 0; j < nparts; j++) {
            const float v = to_f32(src.p[j][i]);
            row[j * C] = from_f32<T>(ADD ? to_f32(row[j * C]) + v : v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// softmax, forward and backward: one warp per row of a (T,T) score matrix; `rows` rows of
// length T, row r is query t = r % T. Block of ATT_THREADS = ATT_WARPS rows; grid-stride over
// rows. Each lane walks columns lane, lane+32, ... in order and the warp combines its 32 partial
// results with warp_max / warp_sum (warp.cuh): every lane ends with the same value, bit for
// bit, so the result is deterministic.

// A[t,u] = exp(P[t,u] - max) / sum for u <= t; A and P = 0 for u > t.
template <typename T> __global__ void att_softmax_kernel(T *att, T *preatt, int Tn, size_t rows) {
    const int lane = threadIdx.x % 32;
    for (size_t row = (size_t)blockIdx.x * ATT_WARPS + threadIdx.x / 32; row < rows;
         row += (size_t)gridDim.x * ATT_WARPS) {
        const int t = (int)(row % Tn);
        T *p = preatt + row * Tn, *a = att + row * Tn;
        // max, then the sum of exponentials, over the causal part of the row
        float m = -INFINITY;
        for (int u = lane; u <= t; u += 32)
            m = fmaxf(m, to_f32(p[u]));
        m = warp_max(m); // finite: column 0 is always present
        float s = 0.0f;
        for (int u = lane; u <= t; u += 32)
            s += expf(to_f32(p[u]) - m);
        s = warp_sum(s);
        const float inv = 1.0f / s;
        for (int u = lane; u < Tn; u += 32) {
            if (u <= t) {
                a[u] = from_f32<T>(expf(to_f32(p[u]) - m) * inv);
            } else {
                a[u] = from_f32<T>(0.0f);
                p[u] = from_f32<T>(0.0f);
            }
        }
    }
}

// dP[t,u] = A[t,u] (dA[t,u] - sum_j A[t,j] dA[t,j]) for u <= t; dP and dA = 0 for u > t.
template <typename T>
__global__ void att_softmax_backward_kernel(T *dpreatt, T *datt, const T *att, int Tn,
                                            size_t rows) {
    const int lane = threadIdx.x % 32;
    for (size_t row = (size_t)blockIdx.x * ATT_WARPS + threadIdx.x / 32; row < rows;
         row += (size_t)gridDim.x * ATT_WARPS) {
        const int t = (int)(row % Tn);
        const T *a = att + row * Tn;
        T *da = datt + row * Tn, *dp = dpreatt + row * Tn;
        float s = 0.0f;
        for (int u = lane; u <= t; u += 32)
            s += to_f32(a[u]) * to_f32(da[u]);
        s = warp_sum(s);
        for (int u = lane; u < Tn; u += 32) {
            if (u <= t) {
                dp[u] = from_f32<T>(to_f32(a[u]) * (to_f32(da[u]) - s));
            } else {
                dp[u] = from_f32<T>(0.0f);
                da[u] = from_f32<T>(0.0f);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scratch planning

typedef struct {
    int nb;            // samples per chunk
    size_t slot_bytes; // one head-major tensor of nb samples, rounded up to 256 bytes
    char *base;
} att_plan;

static size_t att_round256(size_t x) { return (x + 255) & ~(size_t)255; }

static att_plan att_plan_scratch(cuda_ctx *cx, ts_dtype dt, int B, int T, int C, int nslots,
                                 const char *what) {
    const size_t sample = (size_t)T * C * ts_dtype_size(dt); // one sample of one slot
    const size_t have = cuda_scratch_max(cx);
    att_plan pl;
    size_t nb = have / nslots > 256 ? (have / nslots - 256) / sample : 0;
    if (nb > (size_t)B) nb = (size_t)B;
    if (nb < 1) {
        ts_fatal(TS_ERR_INTERNAL,
                 "CUDA attention %s needs %zu bytes of scratch for one sample (T=%d, C=%d, %s) "
                 "but the backend has %zu",
                 what, nslots * att_round256(sample), T, C, ts_dtype_name(dt), have);
    }
    pl.nb = (int)nb;
    pl.slot_bytes = att_round256(nb * sample);
    pl.base = (char *)cuda_scratch(cx, nslots * pl.slot_bytes);
    return pl;
}

// backward's dpreatt | datt: a device buffer of the context kept between calls, grown when a
// call needs more (the old one freed once the stream is done with it). The first backward
// allocates it: 2 x nb*NH*T*T elements, 0.75 GiB for GPT-2 124M at B=16, T=1024 in bf16.
static void *att_backward_scratch(cuda_ctx *cx, size_t bytes) {
    if (bytes <= cx->att_bwd_bytes) return cx->att_bwd_buf;
    if (cx->att_bwd_buf) {
        CUDA_CHECK(cudaStreamSynchronize(cx->stream));
        CUDA_CHECK(cudaFree(cx->att_bwd_buf));
        cx->att_bwd_buf = NULL;
        cx->att_bwd_bytes = 0;
    }
    cudaError_t err = cudaMalloc(&cx->att_bwd_buf, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        cx->att_bwd_buf = NULL;
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
        int dev = -1;
        cudaGetDevice(&dev);
        ts_fatal(TS_ERR_SYSTEM,
                 "CUDA device %d: out of memory allocating %zu bytes (%.1f MiB; %.1f MiB free) "
                 "for the attention backward scratch: %s; lower train.micro_batch",
                 dev, bytes, bytes / 1048576.0, free_b / 1048576.0, cudaGetErrorString(err));
    }
    cx->att_bwd_bytes = bytes;
    return cx->att_bwd_buf;
}

void cuda_attention_free(cuda_ctx *cx) {
    if (cx->att_bwd_buf) CUDA_CHECK(cudaFree(cx->att_bwd_buf));
    cx->att_bwd_buf = NULL;
    cx->att_bwd_bytes = 0;
}

// ---------------------------------------------------------------------------------------------
// the launchers of the simple path

template <typename T>
static void att_forward(cuda_ctx *cx, T *out, T *preatt, T *att, const T *qkv, int B, int Tn, int C,
                        int NH) {
    cudaStream_t s = cx->stream;
    const ts_dtype dt = sizeof(T) == 2 ? TS_BF16 : TS_F32;
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const int64_t TT = (int64_t)Tn * Tn, Thd = (int64_t)Tn * hs;
    att_plan pl = att_plan_scratch(cx, dt, B, Tn, C, 3, "forward");
    T *q = (T *)pl.base, *k = (T *)(pl.base + pl.slot_bytes),
      *v = (T *)(pl.base + 2 * pl.slot_bytes);
    T *o = q; // Q is dead once the scores exist

    for (int b0 = 0; b0 < B; b0 += pl.nb) {
        const int nb = B - b0 < pl.nb ? B - b0 : pl.nb;
        const int nbh = nb * NH;
        const size_t n = (size_t)nb * Tn * C, rows = (size_t)nbh * Tn;
        T *P = preatt + (size_t)b0 * NH * TT, *A = att + (size_t)b0 * NH * TT;

        att_parts<T> qkv_h = {{q, k, v}};
        CUDA_LAUNCH(att_grid(n), ATT_THREADS, 0, s, att_split_heads_kernel<T>, qkv_h,
                    qkv + (size_t)b0 * Tn * 3 * C, 3, 3 * (int64_t)C, NH, Tn, hs, n);
        // P(T,T) = scale Q(T,hs) K(T,hs)^T per head
        cuda_gemm_batched(cx, dt, false, true, Tn, Tn, hs, scale, q, hs, Thd, k, hs, Thd, 0.0f, P,
                          Tn, TT, nbh);
        CUDA_LAUNCH(att_grid(rows * 32), ATT_THREADS, 0, s, att_softmax_kernel<T>, A, P, Tn, rows);
        // O(T,hs) = A(T,T) V(T,hs) per head
        cuda_gemm_batched(cx, dt, false, false, Tn, hs, Tn, 1.0f, A, Tn, TT, v, hs, Thd, 0.0f, o,
                          hs, Thd, nbh);
        att_parts<T> o_h = {{o, NULL, NULL}};
        CUDA_LAUNCH(att_grid(n), ATT_THREADS, 0, s, att_merge_heads_kernel<T, false>,
                    out + (size_t)b0 * Tn * C, o_h, 1, C, NH, Tn, hs, n);
    }
}

template <typename T>
static void att_backward(cuda_ctx *cx, T *dqkv, const T *dout, const T *qkv, const T *att, int B,
                         int Tn, int C, int NH) {
    cudaStream_t s = cx->stream;
    const ts_dtype dt = sizeof(T) == 2 ? TS_BF16 : TS_F32;
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const int64_t TT = (int64_t)Tn * Tn, Thd = (int64_t)Tn * hs;
    att_plan pl = att_plan_scratch(cx, dt, B, Tn, C, 4, "backward");
    // dA and dP of one chunk, reused by the next (the stream orders them)
    const size_t chunk_tt = (size_t)pl.nb * NH * TT;
    T *dA = (T *)att_backward_scratch(cx, 2 * chunk_tt * sizeof(T)), *dP = dA + chunk_tt;
    T *slot[4];
    for (int i = 0; i < 4; i++)
        slot[i] = (T *)(pl.base + i * pl.slot_bytes);
    // slots: 0 Q; 1 K, then dK; 2 V, then dV; 3 dO, then dQ
    T *q = slot[0], *k = slot[1], *v = slot[2], *dO = slot[3];
    T *dV = slot[2], *dQ = slot[3], *dK = slot[1];

    for (int b0 = 0; b0 < B; b0 += pl.nb) {
        const int nb = B - b0 < pl.nb ? B - b0 : pl.nb;
        const int nbh = nb * NH;
        const size_t n = (size_t)nb * Tn * C, rows = (size_t)nbh * Tn;
        const T *A = att + (size_t)b0 * NH * TT;

        att_parts<T> qkv_h = {{q, k, v}}, do_h = {{dO, NULL, NULL}};
        CUDA_LAUNCH(att_grid(n), ATT_THREADS, 0, s, att_split_heads_kernel<T>, qkv_h,
                    qkv + (size_t)b0 * Tn * 3 * C, 3, 3 * (int64_t)C, NH, Tn, hs, n);
        CUDA_LAUNCH(att_grid(n), ATT_THREADS, 0, s, att_split_heads_kernel<T>, do_h,
                    dout + (size_t)b0 * Tn * C, 1, C, NH, Tn, hs, n);
        // dA(T,T) = dO(T,hs) V(T,hs)^T   (V is dead afterwards: its slot takes dV)
        cuda_gemm_batched(cx, dt, false, true, Tn, Tn, hs, 1.0f, dO, hs, Thd, v, hs, Thd, 0.0f, dA,
                          Tn, TT, nbh);
        // dV(T,hs) = A(T,T)^T dO(T,hs)   (dO is dead afterwards: its slot takes dQ)
        cuda_gemm_batched(cx, dt, true, false, Tn, hs, Tn, 1.0f, A, Tn, TT, dO, hs, Thd, 0.0f, dV,
                          hs, Thd, nbh);
        CUDA_LAUNCH(att_grid(rows * 32), ATT_THREADS, 0, s, att_softmax_backward_kernel<T>, dP, dA,
                    A, Tn, rows);
        // dQ(T,hs) = scale dP(T,T) K(T,hs)   (K is dead afterwards: its slot takes dK)
        cuda_gemm_batched(cx, dt, false, false, Tn, hs, Tn, scale, dP, Tn, TT, k, hs, Thd, 0.0f, dQ,
                          hs, Thd, nbh);
        // dK(T,hs) = scale dP(T,T)^T Q(T,hs)
        cuda_gemm_batched(cx, dt, true, false, Tn, hs, Tn, scale, dP, Tn, TT, q, hs, Thd, 0.0f, dK,
                          hs, Thd, nbh);
        att_parts<T> d_h = {{dQ, dK, dV}};
        CUDA_LAUNCH(att_grid(n), ATT_THREADS, 0, s, att_merge_heads_kernel<T, true>,
                    dqkv + (size_t)b0 * Tn * 3 * C, d_h, 3, 3 * (int64_t)C, NH, Tn, hs, n);
    }
}

size_t cuda_attention_simple_state_bytes(ts_dtype dt, int B, int T, int C, int NH) {
    (void)C;
    return 2 * (size_t)B * NH * T * T * ts_dtype_size(dt);
}

void cuda_attention_simple_forward(cuda_ctx *cx, ts_dtype dt, void *out, void *state,
                                   const void *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    TS_ASSERT(NH > 0 && C % NH == 0);
    const size_t n = (size_t)B * NH * T * T;
    TS_DISPATCH(
        dt, E,
        att_forward<E>(cx, (E *)out, (E *)state, (E *)state + n, (const E *)qkv, B, T, C, NH));
}

void cuda_attention_simple_backward(cuda_ctx *cx, ts_dtype dt, void *dqkv, const void *dout,
                                    const void *qkv, const void *state, int B, int T, int C,
                                    int NH) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    TS_ASSERT(NH > 0 && C % NH == 0);
    const size_t n = (size_t)B * NH * T * T;
    TS_DISPATCH(dt, E,
                att_backward<E>(cx, (E *)dqkv, (const E *)dout, (const E *)qkv,
                                (const E *)state + n, B, T, C, NH));
}

// ---------------------------------------------------------------------------------------------
// the backend's entry points: the path is chosen here, from the element type, the head size and
// TESSERA_ATTENTION (auto | flash | simple; read at every call, so change it only between
// models). auto and flash take the flash kernels (flash_attention.cu) for bf16 with head size 64
// or 128; everything else, or simple, takes the path above. Forward and backward choose the same
// path for the same (dt, C, NH), so backward reads the state its forward wrote, and the choice
// does not depend on B or T, so state sized for the largest shapes serves smaller ones.

static bool att_use_flash(cuda_ctx *cx, ts_dtype dt, int C, int NH) {
    enum { ATT_AUTO, ATT_FLASH, ATT_SIMPLE }; // the knob's choices (base/env.c)
    int choice;
    if (env_get_choice("TESSERA_ATTENTION", &choice) != TS_OK) ts_exit(TS_ERR_INPUT);
    const bool ok = cuda_flash_supported(dt, C, NH);
    if (choice == ATT_SIMPLE) return false;
    if (choice == ATT_FLASH && !ok && !cx->att_flash_warned) {
        log_warn("TESSERA_ATTENTION=flash: the flash kernels need bf16 and head size 64 or 128 "
                 "(here %s, head size %d): using the simple path",
                 ts_dtype_name(dt), NH > 0 ? C / NH : 0);
        cx->att_flash_warned = true;
    }
    return ok;
}

size_t cuda_attention_state_bytes(cuda_ctx *cx, ts_dtype dt, int B, int T, int C, int NH) {
    if (att_use_flash(cx, dt, C, NH)) return cuda_flash_state_bytes(B, T, NH);
    return cuda_attention_simple_state_bytes(dt, B, T, C, NH);
}

void cuda_attention_forward(cuda_ctx *cx, ts_dtype dt, void *out, void *state, const void *qkv,
                            int B, int T, int C, int NH) {
    if (att_use_flash(cx, dt, C, NH))
        cuda_flash_forward(cx, out, (float *)state, qkv, B, T, C, NH);
    else
        cuda_attention_simple_forward(cx, dt, out, state, qkv, B, T, C, NH);
}

void cuda_attention_backward(cuda_ctx *cx, ts_dtype dt, void *dqkv, const void *dout,
                             const void *qkv, const void *out, const void *state, int B, int T,
                             int C, int NH) {
    if (att_use_flash(cx, dt, C, NH))
        cuda_flash_backward(cx, dqkv, dout, qkv, out, (const float *)state, B, T, C, NH);
    else
        cuda_attention_simple_backward(cx, dt, dqkv, dout, qkv, state, B, T, C, NH);
}
