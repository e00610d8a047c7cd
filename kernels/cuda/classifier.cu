// classifier.cu — CUDA fused softmax + cross-entropy loss + logit gradient.
//
// One block per row of logits (N,Vp), of which the first V columns are classes:
//   pass 1: max and sum of exp over the V logits together (online softmax: each thread keeps a
//           running max and a sum scaled to it; the per-thread pairs are merged across the
//           block in a fixed tree), loss = log(sum) - (logit[target] - max);
//   pass 2: only when dloss != 0, the row is overwritten with (softmax - onehot) * dloss in the
//           activation type, and the padding columns V..Vp-1 with 0.
// So the row is read once (loss only) or twice and written once; probabilities are never stored
// anywhere else. Arithmetic is fp32.
//
// A target outside [0, V) is a data error. The CPU backend aborts on it; here the row's loss is
// written as NaN (and with dloss != 0 its gradient row as NaN), so the trainer's finite check on
// the loss stops the step instead of training on garbage.
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#define CLS_THREADS 512

template <typename T, int P> using cls_pack = cuda_pack<T, P>;

// The running pair (m, s): m the max of the logits seen (-inf before any finite one), s the sum
// of exp(x - m). While m is -inf every x seen was -inf or NaN, so s is 0 or NaN and is kept as it
// is (a NaN must reach the loss); rescaling with exp(-inf - m') could give 0 * inf otherwise.
__device__ __forceinline__ float cls_ref(float m) { return m == -INFINITY ? 0.0f : m; }

// the running pair of a thread, a warp or the block
struct cls_pair {
    float m, s;
};

// merge y into x: the sum of exp relative to the larger max
struct cls_merge {
    __device__ __forceinline__ cls_pair operator()(cls_pair x, cls_pair y) const {
        const float mn = fmaxf(x.m, y.m);
        const float a = x.m == -INFINITY ? x.s : x.s * expf(x.m - mn);
        const float b = y.m == -INFINITY ? y.s : y.s * expf(y.m - mn);
        return cls_pair{mn, a + b};
    }
};

// a pair crosses lanes member by member (for warp_reduce)
__device__ __forceinline__ cls_pair shfl_xor(cls_pair x, int mask) {
    return cls_pair{shfl_xor(x.m, mask), shfl_xor(x.s, mask)};
}

// Grid N blocks (row n = blockIdx.x), CLS_THREADS threads striding over the row in packs of P
// logits (P > 1 only when Vp % P == 0 and logits is 16-byte aligned, so every row is aligned).
template <typename T, int P>
__global__ void __launch_bounds__(CLS_THREADS)
    classifier_kernel(T *logits, float *losses, const int *targets, int V, int Vp, float dloss) {
    __shared__ cls_pair warp_ms[CLS_THREADS / 32];
    __shared__ float row_m, row_s;
    const size_t n = blockIdx.x;
    T *row = logits + n * Vp;
    const int tgt = targets[n];
    const bool bad = tgt < 0 || tgt >= V;

    // pass 1: running max m and sum s of exp(x - m) over this thread's logits
    float m = -INFINITY, s = 0.0f;
    const int vpacks = (V + P - 1) / P; // packs holding a class; the last may be partly padding
    for (int p = threadIdx.x; p < vpacks; p += CLS_THREADS) {
        const cls_pack<T, P> x = reinterpret_cast<const cls_pack<T, P> *>(row)[p];
        float xv[P];
        float mp = -INFINITY;
#pragma unroll
        for (int k = 0; k < P; k++) {
            xv[k] = p * P + k < V ? to_f32(x.v[k]) : -INFINITY;
            mp = fmaxf(mp, xv[k]);
        }
        if (mp > m) {
            if (m != -INFINITY) s *= expf(m - mp);
            m = mp;
        }
        const float r = cls_ref(m);
#pragma unroll
        for (int k = 0; k < P; k++)
            s += expf(xv[k] - r);
    }
    // merge across the block (warps, then warp 0 over them); one thread publishes the result
    const cls_pair row_pair =
        block_reduce<CLS_THREADS>(cls_pair{m, s}, cls_merge(), cls_pair{-INFINITY, 0.0f}, warp_ms);
    if (threadIdx.x == 0) {
        row_m = row_pair.m;
        row_s = row_pair.s;
        losses[n] = bad ? NAN : logf(row_pair.s) - (to_f32(row[tgt]) - row_pair.m);
    }
    if (dloss == 0.0f) return; // uniform across the block: nothing else to do
    __syncthreads();
    const float mx = row_m, f = bad ? NAN : dloss / row_s;

    // pass 2: dlogits = exp(x - max) * dloss / sum, minus dloss at the target; 0 in the padding
    for (int p = threadIdx.x; p < Vp / P; p += CLS_THREADS) {
        cls_pack<T, P> x = reinterpret_cast<const cls_pack<T, P> *>(row)[p];
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int v = p * P + k;
            float g = 0.0f;
            if (v < V) {
                g = expf(to_f32(x.v[k]) - mx) * f;
                if (v == tgt) g -= dloss;
            }
            x.v[k] = from_f32<T>(g);
        }
        reinterpret_cast<cls_pack<T, P> *>(row)[p] = x;
    }
}

template <typename T>
static void classifier(T *logits, float *losses, const int *targets, int N, int V, int Vp,
                       float dloss, cudaStream_t s) {
    if (N <= 0) return;
    constexpr int P = 16 / sizeof(T);
    if (Vp % P == 0 && ((uintptr_t)logits & 15) == 0)
        CUDA_LAUNCH(N, CLS_THREADS, 0, s, classifier_kernel<T, P>, logits, losses, targets, V, Vp,
                    dloss);
    else
        CUDA_LAUNCH(N, CLS_THREADS, 0, s, classifier_kernel<T, 1>, logits, losses, targets, V, Vp,
                    dloss);
}

// logits (N,Vp) in dt, losses (N) fp32, targets (N) int32. No scratch.
void cuda_classifier(cuda_ctx *cx, ts_dtype dt, void *logits, float *losses, const int *targets,
                     int N, int V, int Vp, float dloss) {
    TS_DISPATCH(dt, T, classifier((T *)logits, losses, targets, N, V, Vp, dloss, cx->stream));
}
