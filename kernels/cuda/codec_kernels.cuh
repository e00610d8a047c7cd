// codec_kernels.cuh — the gradient codecs' encode and decode on the GPU: block quantization
// (int8, int4, int2 with an fp32 scale per block of 64, error feedback) and the top-k choice with
// its error feedback. Kernel bodies and their launch code only: codec_kernels.cu gives them a C
// interface (codec_cuda.h); tests/emu/ compiles this same file for the host against an emulation
// of the primitives, and checks it bit for bit against the host codecs (collectives/codec_*.c).
//
// What the includer provides (kernels/cuda/common.cuh + mma.cuh on the GPU, tests/emu/emu_prims.h
// on the host): mma_tid, mma_bx, mma_gridx, mma_sync_block and mma_smem (where a thread runs,
// the barrier, dynamic shared memory), shfl_xor on unsigned (warp.cuh reduces with it),
// atomicAdd on unsigned, CUDA_LAUNCH, dim3 and cudaStream_t. Blocks are CODEC_THREADS threads;
// every kernel walks its work with a grid stride, so any grid is correct (the launchers cap it at
// max_blocks; the emulated test takes few blocks to walk the stride).
//
// Exactness. Each value goes through the host codec's operations in the host's order, each
// rounded once to fp32 (codec_fadd .. codec_fdiv: __fadd_rn .. __fdiv_rn on the GPU, which nvcc
// never fuses into an fma nor approximates: -fmad and -prec-div do not touch them; plain operators
// on the host, compiled without contraction as collectives/ is), so the payload and the residual
// are the host's, bit for bit. Subnormals must be kept as the host keeps them: no -ftz (nor
// -use_fast_math, which implies it) for this code.
// Maxima are taken on the bits of |x| (the order of non-negative floats is that of their bits),
// which is exact, and whose order of evaluation cannot matter. Histogram counts are integers.
//
// Block quantization (codec_blockq.c): one warp per block of 64 values, two values a lane.
// x = grad + residual; the block's amax is a warp maximum of |x| (a value that is not finite
// counts as the largest, and makes the block's scale NaN, its residual 0); scale = amax / qmax;
// q = round(x / scale) (halves away from zero) clamped to [-qmax, qmax]; residual = x - q scale.
// Payload as the host lays it out: the fp32 scales (little-endian), then the codes `bits` to a
// byte, two's complement, value i at bit (i bits) % 8 of byte i bits / 8. A byte holds the codes
// of 8 / bits neighbouring lanes, or-ed together over shuffles; lane l % (8 / bits) == 0 stores
// it. Every payload byte is written exactly once, the unused high bits of the last one as 0.
// Decode-accumulate: grad[i] += q scale (NaN under a NaN scale), one thread a value.
//
// Top-k (codec_topk.c): the k values of largest |x|, ties to the lower index, a value that is
// not finite above every finite one; the keys are the host's (the bits of |x|, every non-finite
// value mapped to 0x7f800000). Kernels in order:
//   init        clear the histogram, want = k
//   3 x (hist, select)  the radix select of the host, digit by digit (bits 30..20, 19..9, 8..0):
//               hist counts the keys that agree with the digits found so far (a shared-memory
//               histogram per block, added into the global one with atomics; the first pass also
//               forms x = grad + residual in the residual's place), select (one block) finds the
//               digit where the count from the top reaches `want` and clears the histogram.
//               After the third: the cut key, and `take`, how many of the values with exactly
//               that key are chosen (those of lowest index)
//   count       per tile of CODEC_TOPK_TILE values: how many keys lie above the cut, how many on it
//   scan        (one block) per tile: how many values on the cut come before it, and where its
//               chosen values go in the output (running sums over the tiles)
//   write       per tile: each thread its CODEC_TOPK_PER consecutive values, placed by a block
//               scan of the per-thread counts: the chosen indices in increasing order and their
//               x; the residual of a sent value 0 (fp32 values), of an unsent value that is not
//               finite 0, of the others x
//   int2 values: the chosen x quantized as int2 (the block quantization above, of the k values)
//               and the residual of each sent value set to what its code lost (scatter)
// The output is what the host codec puts in its payload before packing: the k indices, their
// values (fp32, or int2's payload of them). Packing the indices as varints and zstd stays on the
// host (codec_topk.c), as does the header.
#ifndef TESSERA_CODEC_KERNELS_CUH
#define TESSERA_CODEC_KERNELS_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cuda/warp.cuh"

#define CODEC_CUDA_BLOCK 64 // values per quantization block (collectives' CODEC_BLOCKQ_BLOCK)
#define CODEC_THREADS    256
#define CODEC_WARPS      (CODEC_THREADS / 32)
#define CODEC_MAX_BLOCKS 4096u       // the launchers' grid cap (grid-stride kernels)
#define CODEC_KEY_NONFIN 0x7f800000u // the key of every value that is not finite
#define CODEC_NAN_BITS   0x7fc00000u // the NaN a block's scale becomes (the host's NAN)
#define CODEC_TOPK_BINS  2048        // the widest digit of the radix select: 11 bits
#define CODEC_TOPK_PER   8           // consecutive values per thread in a tile
#define CODEC_TOPK_TILE  (CODEC_THREADS * CODEC_TOPK_PER)
#define CODEC_TOPK_MAX_N ((size_t)1 << 31) // indices and counts in 32 bits (the host's limit)

// ---------------------------------------------------------------------------------------------
// fp32 arithmetic rounded once per operation, as the host codec computes it

#ifdef __CUDACC__
__device__ __forceinline__ float codec_fadd(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float codec_fsub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float codec_fmul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float codec_fdiv(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ uint32_t codec_bits(float x) { return __float_as_uint(x); }
__device__ __forceinline__ float codec_float(uint32_t u) { return __uint_as_float(u); }
#else
inline float codec_fadd(float a, float b) { return a + b; }
inline float codec_fsub(float a, float b) { return a - b; }
inline float codec_fmul(float a, float b) { return a * b; }
inline float codec_fdiv(float a, float b) { return a / b; }
inline uint32_t codec_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
inline float codec_float(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}
#endif

// |x| as an integer of the same order; every value that is not finite gets CODEC_KEY_NONFIN
__device__ __forceinline__ uint32_t codec_key(float x) {
    const uint32_t b = codec_bits(x) & 0x7fffffffu;
    return b < CODEC_KEY_NONFIN ? b : CODEC_KEY_NONFIN;
}

// The exclusive running sum of v over the block's threads (thread t gets the sum over threads
// below t); *total: the sum over all, in every thread. sm: CODEC_WARPS words of shared memory,
// free again when it returns (it ends with a barrier). Every thread of the block must call it.
__device__ __forceinline__ unsigned codec_block_scan(unsigned v, unsigned *sm, unsigned *total) {
    const int lane = mma_tid() % 32, warp = mma_tid() / 32;
    unsigned warp_total;
    const unsigned incl = warp_scan_sum(v, lane, &warp_total);
    if (lane == 0) sm[warp] = warp_total;
    mma_sync_block();
    unsigned below = 0, all = 0;
    for (int w = 0; w < CODEC_WARPS; w++) {
        const unsigned s = sm[w];
        if (w < warp) below += s;
        all += s;
    }
    mma_sync_block();
    *total = all;
    return below + incl - v;
}

// payload bytes of m values quantized to `bits` (codec_blockq_payload_bytes)
inline size_t codec_cuda_blockq_bytes(int bits, size_t m) {
    return 4 * ((m + CODEC_CUDA_BLOCK - 1) / CODEC_CUDA_BLOCK) + (m * (size_t)bits + 7) / 8;
}

// ---------------------------------------------------------------------------------------------
// block quantization

// x[0 .. m) (plus add[i] first when add is not NULL: x = grad + residual) into payload; x[i]
// becomes what value i lost (0 in a block with a value that is not finite)
template <int BITS>
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_blockq_quantize_kernel(const float *add, float *x, size_t m, unsigned char *payload) {
    static_assert(BITS == 8 || BITS == 4 || BITS == 2, "codec: 8, 4 or 2 bits");
    constexpr int QMAX = (1 << (BITS - 1)) - 1;
    constexpr unsigned MASK = (1u << BITS) - 1u;
    constexpr int PER_BYTE = 8 / BITS;
    const int lane = mma_tid() % 32, warp = mma_tid() / 32;
    const size_t blocks = (m + CODEC_CUDA_BLOCK - 1) / CODEC_CUDA_BLOCK;
    unsigned char *codes = payload + 4 * blocks;
    // the loop's bounds are the same in every lane of a warp: all of them reach the shuffles
    for (size_t b = (size_t)mma_bx() * CODEC_WARPS + warp; b < blocks;
         b += (size_t)mma_gridx() * CODEC_WARPS) {
        float v[2];
        uint32_t key = 0;
        for (int h = 0; h < 2; h++) {
            const size_t i = b * CODEC_CUDA_BLOCK + 32 * h + lane;
            v[h] = 0.0f;
            if (i < m) v[h] = add ? codec_fadd(add[i], x[i]) : x[i];
            const uint32_t kh = codec_key(v[h]);
            key = kh > key ? kh : key;
        }
        key = warp_reduce(key, warp_op_max());
        const bool finite = key < CODEC_KEY_NONFIN;
        const float scale =
            finite ? codec_fdiv(codec_float(key), (float)QMAX) : codec_float(CODEC_NAN_BITS);
        if (lane < 4) payload[4 * b + lane] = (unsigned char)(codec_bits(scale) >> (8 * lane));
        for (int h = 0; h < 2; h++) {
            const size_t i = b * CODEC_CUDA_BLOCK + 32 * h + lane;
            int q = 0;
            if (finite && scale > 0.0f) {
                const float r = roundf(codec_fdiv(v[h], scale));
                q = r > (float)QMAX ? QMAX : r < (float)-QMAX ? -QMAX : (int)r;
            }
            if (i < m) x[i] = finite ? codec_fsub(v[h], codec_fmul((float)q, scale)) : 0.0f;
            // lanes past m hold q = 0: the last byte's unused bits stay 0
            unsigned c = ((unsigned)q & MASK) << ((lane % PER_BYTE) * BITS);
            for (int mask = 1; mask < PER_BYTE; mask <<= 1)
                c = warp_op_or()(c, shfl_xor(c, mask));
            if (i < m && lane % PER_BYTE == 0) codes[i * BITS / 8] = (unsigned char)c;
        }
    }
}

// grad[i] += what value i of the payload (m values of BITS bits) decodes to
template <int BITS>
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_blockq_decode_add_kernel(const unsigned char *payload, size_t m, float *grad) {
    constexpr unsigned MASK = (1u << BITS) - 1u;
    const size_t blocks = (m + CODEC_CUDA_BLOCK - 1) / CODEC_CUDA_BLOCK;
    const unsigned char *codes = payload + 4 * blocks;
    for (size_t i = (size_t)mma_bx() * CODEC_THREADS + mma_tid(); i < m;
         i += (size_t)mma_gridx() * CODEC_THREADS) {
        const unsigned char *s = payload + 4 * (i / CODEC_CUDA_BLOCK);
        const uint32_t sbits =
            (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
        const size_t bit = i * BITS;
        int q = (int)((codes[bit / 8] >> (bit % 8)) & MASK);
        if (q >= 1 << (BITS - 1)) q -= 1 << BITS;
        const bool nan = (sbits & 0x7fffffffu) > CODEC_KEY_NONFIN;
        const float v =
            nan ? codec_float(CODEC_NAN_BITS) : codec_fmul((float)q, codec_float(sbits));
        grad[i] = codec_fadd(grad[i], v);
    }
}

// ---------------------------------------------------------------------------------------------
// top-k

// the radix select's state between kernels (device memory): the digits found so far, and how
// many of the values agreeing with them are still to choose; after the last pass, the cut key
// and `take`
typedef struct {
    uint32_t prefix, want;
} codec_topk_state;

// the digits of the radix select: pass 0 bits 30..20, pass 1 bits 19..9, pass 2 bits 8..0
template <int PASS> __host__ __device__ constexpr int codec_topk_shift(void) {
    return PASS == 0 ? 20 : PASS == 1 ? 9 : 0;
}
template <int PASS> __host__ __device__ constexpr int codec_topk_width(void) {
    return PASS == 2 ? 9 : 11;
}
template <int PASS> __host__ __device__ constexpr int codec_topk_bins(void) {
    return 1 << codec_topk_width<PASS>();
}

__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_init_kernel(unsigned *hist, codec_topk_state *st, uint32_t k) {
    for (int d = mma_tid(); d < CODEC_TOPK_BINS; d += CODEC_THREADS)
        hist[d] = 0;
    if (mma_tid() == 0) {
        st->prefix = 0;
        st->want = k;
    }
}

// The histogram of the pass's digit over the keys that agree with st->prefix above it (shared
// memory: one counter per bin). Pass 0 first forms x[i] = add[i] + x[i] (add NULL: x as it is).
template <int PASS>
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_hist_kernel(const float *add, float *x, size_t n, unsigned *hist,
                           const codec_topk_state *st) {
    constexpr int SHIFT = codec_topk_shift<PASS>(), BINS = codec_topk_bins<PASS>();
    constexpr int ABOVE = SHIFT + codec_topk_width<PASS>(); // the digits found so far: bits >= it
    unsigned *h = reinterpret_cast<unsigned *>(mma_smem());
    for (int d = mma_tid(); d < BINS; d += CODEC_THREADS)
        h[d] = 0;
    mma_sync_block();
    const uint32_t prefix = st->prefix;
    for (size_t i = (size_t)mma_bx() * CODEC_THREADS + mma_tid(); i < n;
         i += (size_t)mma_gridx() * CODEC_THREADS) {
        float v = x[i];
        if (PASS == 0 && add) {
            v = codec_fadd(add[i], v);
            x[i] = v;
        }
        const uint32_t key = codec_key(v);
        if ((key >> ABOVE) == (prefix >> ABOVE)) atomicAdd(&h[(key >> SHIFT) & (BINS - 1)], 1u);
    }
    mma_sync_block();
    for (int d = mma_tid(); d < BINS; d += CODEC_THREADS)
        if (h[d]) atomicAdd(&hist[d], h[d]);
}

// One block. The host's walk down the histogram: the highest digit d where the count of the
// digits >= d reaches want (digit 0 if none does); want -= the count above d. Thread t holds
// the bins [t PER, (t + 1) PER); the one whose range holds d (thread 0 when no range does)
// finds it. Clears the histogram for the next pass.
template <int PASS>
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_select_kernel(unsigned *hist, codec_topk_state *st) {
    constexpr int BINS = codec_topk_bins<PASS>(), PER = BINS / CODEC_THREADS;
    static_assert(BINS % CODEC_THREADS == 0, "codec: whole bins per thread");
    unsigned *sm = reinterpret_cast<unsigned *>(mma_smem());
    const int t = mma_tid();
    const uint32_t want = st->want, prefix = st->prefix; // read before the scan's barriers
    unsigned mine = 0;
    for (int j = 0; j < PER; j++)
        mine += hist[t * PER + j];
    unsigned total;
    const unsigned below = codec_block_scan(mine, sm, &total);
    unsigned above = total - below - mine; // the count of the bins above this thread's
    if (above < want && (above + mine >= want || t == 0)) {
        int d = t * PER + PER - 1;
        while (d > 0 && above + hist[d] < want)
            above += hist[d--];
        st->prefix = prefix | (uint32_t)d << codec_topk_shift<PASS>();
        st->want = want - above;
    }
    for (int j = 0; j < PER; j++)
        hist[t * PER + j] = 0;
}

// per-thread counts of the keys above the cut (low 16 bits) and on it (high 16 bits) among
// values [lo, lo + CODEC_TOPK_PER) of x[0 .. n)
__device__ __forceinline__ unsigned codec_topk_counts(const float *x, size_t n, size_t lo,
                                                      uint32_t cut) {
    unsigned above = 0, on = 0;
    for (int j = 0; j < CODEC_TOPK_PER; j++) {
        if (lo + j >= n) break;
        const uint32_t key = codec_key(x[lo + j]);
        above += key > cut;
        on += key == cut;
    }
    return above | on << 16; // at most CODEC_TOPK_TILE each over a tile: no carry
}

// per tile: tile_above[t], tile_on[t] = the keys above and on the cut
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_count_kernel(const float *x, size_t n, const codec_topk_state *st,
                            unsigned *tile_above, unsigned *tile_on) {
    unsigned *sm = reinterpret_cast<unsigned *>(mma_smem());
    const uint32_t cut = st->prefix;
    const size_t tiles = (n + CODEC_TOPK_TILE - 1) / CODEC_TOPK_TILE;
    for (size_t t = mma_bx(); t < tiles; t += mma_gridx()) {
        const size_t lo = t * CODEC_TOPK_TILE + (size_t)mma_tid() * CODEC_TOPK_PER;
        unsigned total;
        codec_block_scan(codec_topk_counts(x, n, lo, cut), sm, &total);
        if (mma_tid() == 0) {
            tile_above[t] = total & 0xffffu;
            tile_on[t] = total >> 16;
        }
    }
}

// One block. In place, per tile t: tile_above[t] becomes where its first chosen value goes in
// the output, tile_on[t] how many values on the cut come before the tile (the first `take` of
// those are chosen). Thread j walks tiles [j R, (j + 1) R) in order, R = ceil(tiles / threads).
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_scan_kernel(unsigned *tile_above, unsigned *tile_on, size_t tiles,
                           const codec_topk_state *st) {
    unsigned *sm = reinterpret_cast<unsigned *>(mma_smem());
    const uint32_t take = st->want;
    const size_t per = (tiles + CODEC_THREADS - 1) / CODEC_THREADS;
    const size_t lo = (size_t)mma_tid() * per, hi = lo + per < tiles ? lo + per : tiles;
    unsigned on = 0, total;
    for (size_t t = lo; t < hi; t++)
        on += tile_on[t];
    unsigned on_before = codec_block_scan(on, sm, &total), chosen = 0;
    for (size_t t = lo; t < hi; t++) {
        const unsigned left = take > on_before ? take - on_before : 0; // ties still to choose
        const unsigned tile_chosen = tile_above[t] + (tile_on[t] < left ? tile_on[t] : left);
        on_before += tile_on[t];
        tile_on[t] = on_before - tile_on[t];
        tile_above[t] = tile_chosen;
        chosen += tile_chosen;
    }
    unsigned at = codec_block_scan(chosen, sm, &total);
    for (size_t t = lo; t < hi; t++) {
        const unsigned c = tile_above[t];
        tile_above[t] = at;
        at += c;
    }
}

// Per tile: the chosen indices (increasing) and values into idx/vals at the tile's place; the
// residual x of a sent value 0 when zero_sent (fp32 values), of an unsent value that is not
// finite 0. Positions at or past k are never written (they cannot occur when the counts agree).
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_write_kernel(float *x, size_t n, size_t k, const codec_topk_state *st,
                            const unsigned *tile_at, const unsigned *tile_on_before, uint32_t *idx,
                            float *vals, int zero_sent) {
    unsigned *sm = reinterpret_cast<unsigned *>(mma_smem());
    const uint32_t cut = st->prefix, take = st->want;
    const size_t tiles = (n + CODEC_TOPK_TILE - 1) / CODEC_TOPK_TILE;
    for (size_t t = mma_bx(); t < tiles; t += mma_gridx()) {
        const size_t lo = t * CODEC_TOPK_TILE + (size_t)mma_tid() * CODEC_TOPK_PER;
        unsigned total;
        const unsigned before = codec_block_scan(codec_topk_counts(x, n, lo, cut), sm, &total);
        const unsigned on_before = tile_on_before[t];
        const unsigned left = take > on_before ? take - on_before : 0; // ties of this tile chosen
        unsigned rank = before >> 16; // this thread's first tie: its rank among the tile's ties
        size_t pos = (size_t)tile_at[t] + (before & 0xffffu) + (rank < left ? rank : left);
        for (int j = 0; j < CODEC_TOPK_PER; j++) {
            const size_t i = lo + j;
            if (i >= n) break;
            const float v = x[i];
            const uint32_t key = codec_key(v);
            const bool chosen = key > cut || (key == cut && rank < left);
            if (key == cut) rank++;
            if (chosen) {
                if (pos < k) {
                    idx[pos] = (uint32_t)i;
                    vals[pos] = v;
                }
                pos++;
                if (zero_sent) x[i] = 0.0f;
            } else if (key == CODEC_KEY_NONFIN) {
                x[i] = 0.0f;
            }
        }
    }
}

// x[idx[j]] = lost[j]: the residual of each sent value, what its int2 code lost
__global__ void __launch_bounds__(CODEC_THREADS)
    codec_topk_scatter_kernel(float *x, const uint32_t *idx, const float *lost, size_t k) {
    for (size_t j = (size_t)mma_bx() * CODEC_THREADS + mma_tid(); j < k;
         j += (size_t)mma_gridx() * CODEC_THREADS)
        x[idx[j]] = lost[j];
}

// ---------------------------------------------------------------------------------------------
// launches (s: the stream; max_blocks: the grid cap of the grid-stride kernels)

inline unsigned codec_grid(size_t units, unsigned max_blocks) {
    if (units < 1) units = 1;
    return (unsigned)(units < max_blocks ? units : max_blocks);
}

// x = add + x (add NULL: x) quantized to `bits` (8, 4, 2) into payload
// (codec_cuda_blockq_bytes); x becomes the residual
inline void codec_launch_blockq_quantize(int bits, const float *add, float *x, size_t m,
                                         unsigned char *payload, cudaStream_t s,
                                         unsigned max_blocks = CODEC_MAX_BLOCKS) {
    if (m == 0) return;
    const size_t blocks = (m + CODEC_CUDA_BLOCK - 1) / CODEC_CUDA_BLOCK;
    const unsigned grid = codec_grid((blocks + CODEC_WARPS - 1) / CODEC_WARPS, max_blocks);
    if (bits == 8)
        CUDA_LAUNCH(grid, CODEC_THREADS, 0, s, codec_blockq_quantize_kernel<8>, add, x, m, payload);
    else if (bits == 4)
        CUDA_LAUNCH(grid, CODEC_THREADS, 0, s, codec_blockq_quantize_kernel<4>, add, x, m, payload);
    else
        CUDA_LAUNCH(grid, CODEC_THREADS, 0, s, codec_blockq_quantize_kernel<2>, add, x, m, payload);
}

// grad[0 .. m) += the values of a payload of m values of `bits` bits
inline void codec_launch_blockq_decode_add(int bits, const unsigned char *payload, size_t m,
                                           float *grad, cudaStream_t s,
                                           unsigned max_blocks = CODEC_MAX_BLOCKS) {
    if (m == 0) return;
    const unsigned grid = codec_grid((m + CODEC_THREADS - 1) / CODEC_THREADS, max_blocks);
    if (bits == 8)
        CUDA_LAUNCH(grid, CODEC_THREADS, 0, s, codec_blockq_decode_add_kernel<8>, payload, m, grad);
    else if (bits == 4)
        CUDA_LAUNCH(grid, CODEC_THREADS, 0, s, codec_blockq_decode_add_kernel<4>, payload, m, grad);
    else
        CUDA_LAUNCH(grid, CODEC_THREADS, 0, s, codec_blockq_decode_add_kernel<2>, payload, m, grad);
}

// the top-k scratch: histogram, state, two counters per tile, and with int2 values the k
// chosen values before quantization (4-byte words throughout)
inline size_t codec_topk_tiles(size_t n) { return (n + CODEC_TOPK_TILE - 1) / CODEC_TOPK_TILE; }
inline size_t codec_topk_scratch_bytes(size_t n, size_t k, int value_bits) {
    return 4 * (CODEC_TOPK_BINS + sizeof(codec_topk_state) / 4 + 2 * codec_topk_tiles(n)) +
           (value_bits == 2 ? 4 * k : 0);
}

template <int PASS>
inline void codec_launch_topk_pass(const float *add, float *x, size_t n, unsigned *hist,
                                   codec_topk_state *st, cudaStream_t s, unsigned max_blocks) {
    const unsigned grid = codec_grid((n + CODEC_THREADS - 1) / CODEC_THREADS, max_blocks);
    CUDA_LAUNCH(grid, CODEC_THREADS, codec_topk_bins<PASS>() * sizeof(unsigned), s,
                codec_topk_hist_kernel<PASS>, add, x, n, hist, (const codec_topk_state *)st);
    CUDA_LAUNCH(1, CODEC_THREADS, CODEC_WARPS * sizeof(unsigned), s, codec_topk_select_kernel<PASS>,
                hist, st);
}

// x = grad + residual (in res's place), its k (1 <= k <= n <= CODEC_TOPK_MAX_N) values of
// largest |x| chosen: idx[0 .. k) their indices, increasing; values: their x (value_bits 32: k
// floats) or int2's payload of them (value_bits 2: codec_cuda_blockq_bytes(2, k) bytes); res
// becomes the error feedback. scratch: codec_topk_scratch_bytes(n, k, value_bits), 4-aligned.
inline void codec_launch_topk_encode(const float *grad, float *res, size_t n, size_t k,
                                     int value_bits, uint32_t *idx, void *values, void *scratch,
                                     cudaStream_t s, unsigned max_blocks = CODEC_MAX_BLOCKS) {
    if (n == 0 || k == 0) return;
    const size_t tiles = codec_topk_tiles(n);
    unsigned *hist = reinterpret_cast<unsigned *>(scratch);
    codec_topk_state *st = reinterpret_cast<codec_topk_state *>(hist + CODEC_TOPK_BINS);
    unsigned *tile_a = reinterpret_cast<unsigned *>(st + 1), *tile_b = tile_a + tiles;
    float *vals = value_bits == 2 ? reinterpret_cast<float *>(tile_b + tiles)
                                  : reinterpret_cast<float *>(values);
    const size_t smem = CODEC_WARPS * sizeof(unsigned);
    CUDA_LAUNCH(1, CODEC_THREADS, 0, s, codec_topk_init_kernel, hist, st, (uint32_t)k);
    codec_launch_topk_pass<0>(grad, res, n, hist, st, s, max_blocks);
    codec_launch_topk_pass<1>(nullptr, res, n, hist, st, s, max_blocks);
    codec_launch_topk_pass<2>(nullptr, res, n, hist, st, s, max_blocks);
    const unsigned grid = codec_grid(tiles, max_blocks);
    CUDA_LAUNCH(grid, CODEC_THREADS, smem, s, codec_topk_count_kernel, (const float *)res, n,
                (const codec_topk_state *)st, tile_a, tile_b);
    CUDA_LAUNCH(1, CODEC_THREADS, smem, s, codec_topk_scan_kernel, tile_a, tile_b, tiles,
                (const codec_topk_state *)st);
    CUDA_LAUNCH(grid, CODEC_THREADS, smem, s, codec_topk_write_kernel, res, n, k,
                (const codec_topk_state *)st, (const unsigned *)tile_a, (const unsigned *)tile_b,
                idx, vals, value_bits == 2 ? 0 : 1);
    if (value_bits == 2) {
        codec_launch_blockq_quantize(2, nullptr, vals, k, reinterpret_cast<unsigned char *>(values),
                                     s, max_blocks);
        CUDA_LAUNCH(codec_grid((k + CODEC_THREADS - 1) / CODEC_THREADS, max_blocks), CODEC_THREADS,
                    0, s, codec_topk_scatter_kernel, res, (const uint32_t *)idx,
                    (const float *)vals, k);
    }
}

#endif
