// layernorm.cu — CUDA LayerNorm: forward, fused residual add + forward, and backward.
//
// Rows are independent, so the row-wise work (statistics, normalisation, the input gradient)
// gives each row to one warp: lanes stride over the C channels, sums are combined with warp_sum
// (warp.cuh: every lane ends with the same bits). Rows are re-read from L1/L2 for each pass
// rather than held in registers, so any C works. Statistics use two passes (mean, then the mean
// of squared deviations), which has no cancellation problem whatever the mean.
//
// The weight gradients sum over rows: rows are cut into at most LN_MAX_CHUNKS chunks, a thread
// per (chunk, channel) sums its chunk in row order into a scratch partial, and a second kernel
// adds the partials in chunk order into dw, db. The chunking depends on N only, so the result
// is the same bits on every run and every GPU.
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#define LN_EPS         1e-5f
#define LN_WARPS       8 // rows per block in the row-wise kernels (256 threads)
#define LN_MAX_BLOCKS  65536
#define LN_COL_THREADS 128 // channels per block in the column-sum kernels
#define LN_MAX_CHUNKS  64  // row chunks for dw/db partial sums
#define LN_MIN_ROWS    32  // rows per chunk at least

template <typename T, int P> using ln_pack = cuda_pack<T, P>;

template <typename T, int P> __device__ __forceinline__ ln_pack<T, P> ln_load(const T *p, int i) {
    return reinterpret_cast<const ln_pack<T, P> *>(p)[i];
}
template <typename T, int P>
__device__ __forceinline__ void ln_store(T *p, int i, ln_pack<T, P> x) {
    reinterpret_cast<ln_pack<T, P> *>(p)[i] = x;
}

static unsigned ln_row_grid(int N) {
    const size_t g = ((size_t)N + LN_WARPS - 1) / LN_WARPS;
    return (unsigned)(g < LN_MAX_BLOCKS ? g : LN_MAX_BLOCKS);
}

// ---------------------------------------------------------------------------------------------
// forward

// out (N,C) = (x - mean) * rstd * w + b, mean/rstd (N) saved in fp32. x is inp (RESID false) or
// residual = a + b_in rounded to T and stored (RESID true): the statistics and the output are
// computed from the stored value, which is what backward will read.
// Block: LN_WARPS warps, one row per warp; rows grid-stride over the grid. P channels per access
// (P > 1 only when C % P == 0 and every pointer is 16-byte aligned).
template <typename T, int P, bool RESID>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, T *residual, const T *a,
                                         const T *b_in, const T *w, const T *b, int N, int C) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int cp = C / P; // packs per row
    for (size_t row = (size_t)blockIdx.x * LN_WARPS + warp; row < (size_t)N;
         row += (size_t)gridDim.x * LN_WARPS) {
        const size_t off = row * C;
        const T *x = RESID ? residual + off : a + off;
        // pass 1: (residual and) sum
        float s = 0.0f;
        for (int i = lane; i < cp; i += 32) {
            ln_pack<T, P> xv = ln_load<T, P>(a + off, i);
            if (RESID) {
                const ln_pack<T, P> bv = ln_load<T, P>(b_in + off, i);
#pragma unroll
                for (int k = 0; k < P; k++)
                    xv.v[k] = from_f32<T>(to_f32(xv.v[k]) + to_f32(bv.v[k]));
                ln_store<T, P>(residual + off, i, xv);
            }
#pragma unroll
            for (int k = 0; k < P; k++)
                s += to_f32(xv.v[k]);
        }
        const float m = warp_sum(s) / C;
        // pass 2: variance around the mean (each lane re-reads what it wrote itself)
        float ss = 0.0f;
        for (int i = lane; i < cp; i += 32) {
            const ln_pack<T, P> xv = ln_load<T, P>(x, i);
#pragma unroll
            for (int k = 0; k < P; k++) {
                const float d = to_f32(xv.v[k]) - m;
                ss += d * d;
            }
        }
        const float r = 1.0f / sqrtf(warp_sum(ss) / C + LN_EPS);
        // pass 3: normalise
        for (int i = lane; i < cp; i += 32) {
            const ln_pack<T, P> xv = ln_load<T, P>(x, i);
            const ln_pack<T, P> wv = ln_load<T, P>(w, i), bv = ln_load<T, P>(b, i);
            ln_pack<T, P> o;
#pragma unroll
            for (int k = 0; k < P; k++)
                o.v[k] = from_f32<T>((to_f32(xv.v[k]) - m) * r * to_f32(wv.v[k]) + to_f32(bv.v[k]));
            ln_store<T, P>(out + off, i, o);
        }
        if (lane == 0) {
            mean[row] = m;
            rstd[row] = r;
        }
    }
}

template <typename T, bool RESID>
static void layernorm_forward(T *out, float *mean, float *rstd, T *residual, const T *a,
                              const T *b_in, const T *w, const T *b, int N, int C, cudaStream_t s) {
    if (N <= 0 || C <= 0) return;
    constexpr int P = 16 / sizeof(T);
    const bool vec = C % P == 0 && cuda_aligned16(out) && cuda_aligned16(a) && cuda_aligned16(w) &&
                     cuda_aligned16(b) &&
                     (!RESID || (cuda_aligned16(residual) && cuda_aligned16(b_in)));
    if (vec)
        CUDA_LAUNCH(ln_row_grid(N), 32 * LN_WARPS, 0, s, layernorm_forward_kernel<T, P, RESID>, out,
                    mean, rstd, residual, a, b_in, w, b, N, C);
    else
        CUDA_LAUNCH(ln_row_grid(N), 32 * LN_WARPS, 0, s, layernorm_forward_kernel<T, 1, RESID>, out,
                    mean, rstd, residual, a, b_in, w, b, N, C);
}

// ---------------------------------------------------------------------------------------------
// backward: with xhat = (x - mean) rstd and g = dout * w,
//   dinp += rstd (g - mean_c(g) - xhat mean_c(g xhat));  dw += sum_n dout xhat;  db += sum_n dout

// dinp (N,C) += ... One warp per row (LN_WARPS rows per block, grid-stride over rows), two
// passes over the row: the two means, then the update. P as in forward.
template <typename T, int P>
__global__ void layernorm_backward_inp_kernel(T *dinp, const T *dout, const T *inp, const T *w,
                                              const float *mean, const float *rstd, int N, int C) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int cp = C / P;
    for (size_t row = (size_t)blockIdx.x * LN_WARPS + warp; row < (size_t)N;
         row += (size_t)gridDim.x * LN_WARPS) {
        const size_t off = row * C;
        const float m = mean[row], r = rstd[row];
        float sg = 0.0f, sgx = 0.0f;
        for (int i = lane; i < cp; i += 32) {
            const ln_pack<T, P> d = ln_load<T, P>(dout + off, i), x = ln_load<T, P>(inp + off, i);
            const ln_pack<T, P> wv = ln_load<T, P>(w, i);
#pragma unroll
            for (int k = 0; k < P; k++) {
                const float g = to_f32(d.v[k]) * to_f32(wv.v[k]);
                sg += g;
                sgx += g * ((to_f32(x.v[k]) - m) * r);
            }
        }
        sg = warp_sum(sg) / C;
        sgx = warp_sum(sgx) / C;
        for (int i = lane; i < cp; i += 32) {
            const ln_pack<T, P> d = ln_load<T, P>(dout + off, i), x = ln_load<T, P>(inp + off, i);
            const ln_pack<T, P> wv = ln_load<T, P>(w, i);
            ln_pack<T, P> dx = ln_load<T, P>(dinp + off, i);
#pragma unroll
            for (int k = 0; k < P; k++) {
                const float g = to_f32(d.v[k]) * to_f32(wv.v[k]);
                const float xhat = (to_f32(x.v[k]) - m) * r;
                dx.v[k] = from_f32<T>(to_f32(dx.v[k]) + r * (g - sg - xhat * sgx));
            }
            ln_store<T, P>(dinp + off, i, dx);
        }
    }
}

// Partial sums of dw, db over one chunk of rows. Grid (ceil(C / LN_COL_THREADS), nchunk),
// LN_COL_THREADS threads, one channel each; chunk k covers rows [k*rows, min(N, (k+1)*rows)).
// part (nchunk, 2, C): [k][0][c] = sum dout xhat, [k][1][c] = sum dout.
template <typename T>
__global__ void layernorm_backward_part_kernel(float *part, const T *dout, const T *inp,
                                               const float *mean, const float *rstd, int N, int C,
                                               int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int k = blockIdx.y;
    const int n0 = k * rows, n1 = min(N, n0 + rows);
    float pw = 0.0f, pb = 0.0f;
    for (int n = n0; n < n1; n++) {
        const size_t i = (size_t)n * C + c;
        const float d = to_f32(dout[i]);
        pw += d * ((to_f32(inp[i]) - mean[n]) * rstd[n]);
        pb += d;
    }
    float *p = part + (size_t)k * 2 * C;
    p[c] = pw;
    p[C + c] = pb;
}

// dw[c] += sum_k part[k][0][c];  db[c] += sum_k part[k][1][c], k in order. One thread per c.
__global__ void layernorm_backward_sum_kernel(float *dw, float *db, const float *part, int nchunk,
                                              int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sw = 0.0f, sb = 0.0f;
    for (int k = 0; k < nchunk; k++) {
        sw += part[(size_t)k * 2 * C + c];
        sb += part[(size_t)k * 2 * C + C + c];
    }
    dw[c] += sw;
    db[c] += sb;
}

// Scratch: nchunk * 2 * C floats, nchunk <= LN_MAX_CHUNKS: at most 512 * C bytes.
template <typename T>
static void layernorm_backward(cuda_ctx *cx, T *dinp, float *dw, float *db, const T *dout,
                               const T *inp, const T *w, const float *mean, const float *rstd,
                               int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t s = cx->stream;
    constexpr int P = 16 / sizeof(T);
    const bool vec = C % P == 0 && cuda_aligned16(dinp) && cuda_aligned16(dout) &&
                     cuda_aligned16(inp) && cuda_aligned16(w);
    if (vec)
        CUDA_LAUNCH(ln_row_grid(N), 32 * LN_WARPS, 0, s, layernorm_backward_inp_kernel<T, P>, dinp,
                    dout, inp, w, mean, rstd, N, C);
    else
        CUDA_LAUNCH(ln_row_grid(N), 32 * LN_WARPS, 0, s, layernorm_backward_inp_kernel<T, 1>, dinp,
                    dout, inp, w, mean, rstd, N, C);

    // rows per chunk: LN_MIN_ROWS at least, and few enough chunks to stay within LN_MAX_CHUNKS
    int rows = (int)(((size_t)N + LN_MAX_CHUNKS - 1) / LN_MAX_CHUNKS);
    if (rows < LN_MIN_ROWS) rows = LN_MIN_ROWS;
    const int nchunk = (int)(((size_t)N + rows - 1) / rows);
    float *part = (float *)cuda_scratch(cx, (size_t)nchunk * 2 * C * sizeof(float));
    const unsigned cblocks = cuda_ceil_div((size_t)C, LN_COL_THREADS);
    CUDA_LAUNCH(dim3(cblocks, (unsigned)nchunk), LN_COL_THREADS, 0, s,
                layernorm_backward_part_kernel<T>, part, dout, inp, mean, rstd, N, C, rows);
    CUDA_LAUNCH(cblocks, LN_COL_THREADS, 0, s, layernorm_backward_sum_kernel, dw, db, part, nchunk,
                C);
}

// ---------------------------------------------------------------------------------------------
// launchers

void cuda_layernorm_forward(cuda_ctx *cx, ts_dtype dt, void *out, float *mean, float *rstd,
                            const void *inp, const void *w, const void *b, int N, int C) {
    TS_DISPATCH(dt, T,
                (layernorm_forward<T, false>((T *)out, mean, rstd, (T *)nullptr, (const T *)inp,
                                             (const T *)nullptr, (const T *)w, (const T *)b, N, C,
                                             cx->stream)));
}

void cuda_residual_layernorm_forward(cuda_ctx *cx, ts_dtype dt, void *residual, void *out,
                                     float *mean, float *rstd, const void *a, const void *b_in,
                                     const void *w, const void *b, int N, int C) {
    TS_DISPATCH(dt, T,
                (layernorm_forward<T, true>((T *)out, mean, rstd, (T *)residual, (const T *)a,
                                            (const T *)b_in, (const T *)w, (const T *)b, N, C,
                                            cx->stream)));
}

void cuda_layernorm_backward(cuda_ctx *cx, ts_dtype dt, void *dinp, float *dw, float *db,
                             const void *dout, const void *inp, const void *w, const float *mean,
                             const float *rstd, int N, int C) {
    TS_DISPATCH(dt, T,
                layernorm_backward(cx, (T *)dinp, dw, db, (const T *)dout, (const T *)inp,
                                   (const T *)w, mean, rstd, N, C));
}
