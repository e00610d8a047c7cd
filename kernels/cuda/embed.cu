// embed.cu — CUDA token + position embedding, forward and (deterministic) backward.
//
// Forward is a gather. Backward has two sums:
//   dwpe[t,:] += sum_b dout[b,t,:]       every (t, c) has a thread that adds the B rows in order;
//   dwte[v,:] += sum of dout rows at the positions holding token v.
// Tokens repeat, so several positions add into one row of dwte, and float atomics would make the
// result depend on timing. Instead the B*T (token, position) pairs are sorted by token with CUB's
// radix sort (stable: positions of one token stay in increasing order), and one block per run of
// equal tokens adds that token's rows in position order. Both sums thus run in the same order as
// the CPU reference (b, then t), so in fp32 they give the same bits.
#include <stdint.h>

#include <cub/cub.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#define EMB_THREADS    256
#define EMB_MAX_BLOCKS 65536
// scratch regions start on this boundary (what CUB and vector loads want)
#define EMB_ALIGN 256

template <typename T, int P> using emb_pack = cuda_pack<T, P>;

static unsigned emb_grid(size_t work) {
    size_t g = (work + EMB_THREADS - 1) / EMB_THREADS;
    if (g < 1) g = 1;
    return (unsigned)(g < EMB_MAX_BLOCKS ? g : EMB_MAX_BLOCKS);
}

static size_t emb_align_up(size_t x) { return (x + EMB_ALIGN - 1) / EMB_ALIGN * EMB_ALIGN; }

// ---------------------------------------------------------------------------------------------
// forward: out (B,T,C) = wte[tokens] + wpe[t]; wte (V,C), wpe (maxT,C), tokens (B,T) int32.
// P channels per access (C % P == 0 and 16-byte aligned rows when P > 1), grid-stride over the
// B*T*C/P packs; a pack never crosses a row because C % P == 0.
template <typename T, int P>
__global__ void embed_forward_kernel(T *out, const int *tokens, const T *wte, const T *wpe, int T_,
                                     int C, size_t npack) {
    const size_t cp = (size_t)C / P; // packs per row
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < npack;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t bt = i / cp, c = (i - bt * cp) * P;
        const size_t t = bt % (size_t)T_;
        const size_t tok = (size_t)tokens[bt];
        const emb_pack<T, P> we = *reinterpret_cast<const emb_pack<T, P> *>(wte + tok * C + c);
        const emb_pack<T, P> pe = *reinterpret_cast<const emb_pack<T, P> *>(wpe + t * C + c);
        emb_pack<T, P> o;
#pragma unroll
        for (int k = 0; k < P; k++)
            o.v[k] = from_f32<T>(to_f32(we.v[k]) + to_f32(pe.v[k]));
        *reinterpret_cast<emb_pack<T, P> *>(out + bt * C + c) = o;
    }
}

template <typename T>
static void embed_forward(T *out, const int *tokens, const T *wte, const T *wpe, int B, int T_,
                          int C, cudaStream_t s) {
    const size_t n = (size_t)B * T_ * C;
    if (n == 0) return;
    constexpr int P = 16 / sizeof(T);
    if (C % P == 0 && cuda_aligned16(out) && cuda_aligned16(wte) && cuda_aligned16(wpe))
        CUDA_LAUNCH(emb_grid(n / P), EMB_THREADS, 0, s, embed_forward_kernel<T, P>, out, tokens,
                    wte, wpe, T_, C, n / P);
    else
        CUDA_LAUNCH(emb_grid(n), EMB_THREADS, 0, s, embed_forward_kernel<T, 1>, out, tokens, wte,
                    wpe, T_, C, n);
}

// ---------------------------------------------------------------------------------------------
// backward

// dwpe (T,C) += sum_b dout[b,t,:]. One thread per (t, c), grid-stride over T*C; the thread adds
// the B rows onto dwpe's value in order of b (coalesced over c).
template <typename T>
__global__ void embed_backward_pos_kernel(float *dwpe, const T *dout, int B, int T_, int C) {
    const size_t tc_n = (size_t)T_ * C;
    for (size_t tc = (size_t)blockIdx.x * blockDim.x + threadIdx.x; tc < tc_n;
         tc += (size_t)gridDim.x * blockDim.x) {
        float acc = dwpe[tc];
        for (int b = 0; b < B; b++)
            acc += to_f32(dout[(size_t)b * tc_n + tc]);
        dwpe[tc] = acc;
    }
}

// keys[i] = tokens[i], pos[i] = i for the B*T positions (the sort works in place on these)
__global__ void embed_sort_init_kernel(int *keys, int *pos, const int *tokens, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n;
         i += (size_t)gridDim.x * blockDim.x) {
        keys[i] = tokens[i];
        pos[i] = (int)i;
    }
}

// dwte[v,:] += dout rows of the positions holding v. keys (n) are the tokens sorted, pos (n) the
// matching positions (increasing within a run of equal keys).
// Grid (n, ceil(C / EMB_THREADS)), EMB_THREADS threads: block x = i handles the run of equal
// keys that starts at i (and exits at once when i is not the start of a run); block y picks a
// span of channels, one per thread. Each run is walked in position order.
template <typename T>
__global__ void embed_backward_tok_kernel(float *dwte, const T *dout, const int *keys,
                                          const int *pos, int n, int C) {
    const int i = blockIdx.x;
    const int tok = keys[i];
    if (i > 0 && keys[i - 1] == tok) return;
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    // end of the run: the first index past i whose key differs (keys ascend), found by bisection
    // so that the loop below has a known trip count and its loads can be issued ahead
    int lo = i + 1, hi = n;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (keys[mid] == tok)
            lo = mid + 1;
        else
            hi = mid;
    }
    float *row = dwte + (size_t)tok * C + c;
    float acc = *row;
#pragma unroll 4
    for (int j = i; j < lo; j++)
        acc += to_f32(dout[(size_t)pos[j] * C + c]);
    *row = acc;
}

// Scratch layout (each region starts on EMB_ALIGN bytes):
//   keys, keys_alt, pos, pos_alt : 4 x (B*T) int32 — the sort's double buffers
//   CUB temporary storage        : cub_bytes (queried; about 4 KiB + 1 KiB per CUB tile of
//                                  B*T positions, at most 4*B*T + 8 KiB)
// In all at most 20*B*T + 16 KiB bytes.
template <typename T>
static void embed_backward(cuda_ctx *cx, float *dwte, float *dwpe, const T *dout, const int *tokens,
                           int B, int T_, int C) {
    const int n = B * T_;
    if (n == 0 || C == 0) return;
    cudaStream_t s = cx->stream;

    CUDA_LAUNCH(emb_grid((size_t)T_ * C), EMB_THREADS, 0, s, embed_backward_pos_kernel<T>, dwpe,
                dout, B, T_, C);

    // sort (token, position) pairs by token
    const size_t arr = emb_align_up((size_t)n * sizeof(int));
    cub::DoubleBuffer<int> keys(nullptr, nullptr), pos(nullptr, nullptr);
    size_t cub_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, keys, pos, n, 0,
                                               (int)(8 * sizeof(int)), s));
    char *scratch = (char *)cuda_scratch(cx, 4 * arr + emb_align_up(cub_bytes));
    keys = cub::DoubleBuffer<int>((int *)scratch, (int *)(scratch + arr));
    pos = cub::DoubleBuffer<int>((int *)(scratch + 2 * arr), (int *)(scratch + 3 * arr));
    void *cub_tmp = scratch + 4 * arr;

    CUDA_LAUNCH(emb_grid(n), EMB_THREADS, 0, s, embed_sort_init_kernel, keys.Current(),
                pos.Current(), tokens, n);
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_tmp, cub_bytes, keys, pos, n, 0,
                                               (int)(8 * sizeof(int)), s));
    CUDA_CHECK_LAUNCH(); // CUB's own launches

    const dim3 grid((unsigned)n, cuda_ceil_div((size_t)C, EMB_THREADS));
    CUDA_LAUNCH(grid, EMB_THREADS, 0, s, embed_backward_tok_kernel<T>, dwte, dout, keys.Current(),
                pos.Current(), n, C);
}

// ---------------------------------------------------------------------------------------------
// launchers

void cuda_embed_forward(cuda_ctx *cx, ts_dtype dt, void *out, const int *tokens, const void *wte,
                        const void *wpe, int B, int T, int C) {
    TS_DISPATCH(
        dt, E,
        embed_forward((E *)out, tokens, (const E *)wte, (const E *)wpe, B, T, C, cx->stream));
}

void cuda_embed_backward(cuda_ctx *cx, ts_dtype dt, float *dwte, float *dwpe, const void *dout,
                         const int *tokens, int B, int T, int C) {
    TS_DISPATCH(dt, E, embed_backward(cx, dwte, dwpe, (const E *)dout, tokens, B, T, C));
}
