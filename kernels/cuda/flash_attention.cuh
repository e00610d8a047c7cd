// flash_attention.cuh — causal multi-head flash attention, forward and backward, on tensor cores
// (mma.sync m16n8k16, bf16 inputs, fp32 accumulation). Kernel bodies only: flash_attention.cu
// launches them on the GPU; tests/emu/ compiles this same file for the host, against an
// emulation of the primitives of mma.cuh, and checks it against a reference on every test run.
// Include mma.cuh (or the emulation) before this file.
//
// Shapes (as backend.h): qkv (B,T,3C), row (b,t) = q | k | v, head h of q at column h*HS; out,
// dout (B,T,C); lse, dsum (B,NH,T) fp32. HS (head size) is 64 or 128; T is any length >= 1.
//
// Algorithm (Dao, "FlashAttention-2", 2023). With x = scale q.k and everything in base 2
// (s = x log2 e), the forward keeps for each query row the running maximum m and the running sum
// l of exp2(s - m) while it walks the key tiles left to right, rescaling its output accumulator
// whenever m grows; P = exp2(s - m) is rounded to bf16 for the P V product. It saves
// lse2 = m + log2(l) per row, so the backward recomputes P = exp2(s - lse2) exactly normalised,
// without the T x T matrix ever reaching global memory.
// Backward: dsum = rowsum(dO * O) (flash_bwd_dsum_kernel), then dS = P * (dP - dsum) with
// dP = dO V^T, and dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO. It is deterministic: dK and
// dV come from one kernel over key tiles (each block owns 64 keys and walks the query tiles),
// dQ from a second kernel over query tiles (each block owns 64 queries and walks the key tiles).
// No output is shared between blocks, so there are no atomics and every run gives the same bits;
// the price is that S and dP are computed twice (7 tile products instead of 5).
//
// Tiling. Every kernel has 4 warps (128 threads); a warp owns 16 rows (MW = 1) or 32 rows
// (MW = 2: two 16-row m-tiles that share every K and V fragment it loads, halving the
// shared-memory reads per product) of the tile its block owns: queries in the forward and dQ
// kernels, keys in the dK/dV kernel. The softmax statistics of a row live in one quad of lanes
// and need no shared memory. Tiles of K, V (forward, dQ) or of Q, dO (dK/dV) are double-buffered:
// the copy of tile j+1 (cp.async) runs under the products of tile j. Shared-memory rows are padded
// by 8 elements (16 bytes) so the 8 row addresses of an ldmatrix fall in 8 different bank
// groups. Budgets, LD = HS + 8 elements of 2 bytes:
//   forward   HS 64: MW 2, Q (128) + 2 x (K, V) (64)  = 384 LD:  55 KB
//             HS 128: MW 1, Q (64) + 2 x (K, V) (64)  = 320 LD:  87 KB
//   dQ        Q, dO (64) + 2 x (K, V) (64)             = 384 LD:  55 KB (HS 64), 104 KB (128)
//             (FLASH_DQ_MW_64=2: Q, dO (128) + 2 x (K, V) = 512 LD: 74 KB at HS 64)
//   dK/dV     K, V (64) + 2 x (Q, dO) (BQ) + lse2, dsum: BQ = 64 (HS 64): 56 KB; 32 (HS 128): 70 KB
// Registers (ptxas, sm_90a): forward 255 at HS 64 (2 blocks per SM), 168 at HS 128 (2 blocks:
// shared memory); an A100 SM (164 KB) holds 2 and 1 forward blocks.
// Causality: a query tile only visits key tiles at or left of its diagonal, a warp skips the
// products of a tile whose every key comes after its every row, and only the tiles that cross
// the diagonal (or reach past T) are masked. Blocks are ordered heaviest first (query tiles from
// the end, key tiles from the start) to even out the last wave.
//
// Launches: flash_launch_forward / flash_launch_backward at the end of this file give every
// kernel its grid and shared memory through CUDA_LAUNCH, the one launch macro, which the GPU build
// (common.cuh) and the host emulation define each in its own way; reductions across lanes are
// warp.cuh's, over the shuffle each of them provides.
#ifndef TESSERA_FLASH_ATTENTION_CUH
#define TESSERA_FLASH_ATTENTION_CUH

#include <math.h>
#include <stdint.h>

#include "kernels/cuda/warp.cuh"

#define FLASH_THREADS 128
#define FLASH_BR      64 // queries per block (dQ); keys per block (dK/dV)
#define FLASH_BC      64 // keys per tile (forward, dQ)

typedef struct {
    const bf16 *qkv;  // (B,T,3C)
    bf16 *out;        // forward: (B,T,C)
    float *lse;       // forward writes, backward reads: (B,NH,T), base 2, of the scaled scores
    const bf16 *dout; // backward: (B,T,C)
    const bf16 *o;    // backward: the forward's out
    float *dsum;      // backward: (B,NH,T), rowsum(dout * out)
    bf16 *dqkv;       // backward: (B,T,3C), accumulated into (+=)
    int B, T, C, NH;
    float scale;      // 1/sqrt(HS)
    float scale_log2; // scale * log2(e)
} flash_params;

// m-tiles of 16 rows per warp in the forward, its rows per block, and each kernel's shared memory
template <int HS> __host__ __device__ constexpr int flash_fwd_mw(void) { return HS <= 64 ? 2 : 1; }
template <int HS> __host__ __device__ constexpr int flash_fwd_rows(void) {
    return 64 * flash_fwd_mw<HS>();
}
template <int HS> __host__ __device__ constexpr int flash_fwd_smem(void) {
    return (flash_fwd_rows<HS>() + 4 * FLASH_BC) * (HS + 8) * 2;
}
// dQ keeps 16 rows per warp by default. FLASH_DQ_MW_64=2 gives it the forward's 32 rows per
// warp at HS 64 (half the shared-memory reads per product), for 255 registers and a small spill
// (ptxas, sm_90a) instead of 169: which one is faster is for a GPU to tell (gpu_attn_bench).
// Both are checked in emulation (tests/emu).
#ifndef FLASH_DQ_MW_64
#define FLASH_DQ_MW_64 1
#endif
template <int HS> __host__ __device__ constexpr int flash_dq_mw(void) {
    return HS <= 64 ? FLASH_DQ_MW_64 : 1;
}
template <int HS> __host__ __device__ constexpr int flash_dq_rows(void) {
    return 64 * flash_dq_mw<HS>();
}
template <int HS> __host__ __device__ constexpr int flash_dq_smem(void) {
    return (2 * flash_dq_rows<HS>() + 4 * FLASH_BC) * (HS + 8) * 2;
}
template <int HS> __host__ __device__ constexpr int flash_dkv_bq(void) {
    return HS <= 64 ? 64 : 32;
}
template <int HS> __host__ __device__ constexpr int flash_dkv_smem(void) {
    return (2 * FLASH_BR + 4 * flash_dkv_bq<HS>()) * (HS + 8) * 2 + 4 * flash_dkv_bq<HS>() * 4;
}

// Copy rows r0 .. r0+R-1 (HS elements each, row i at src + i*stride) into a padded shared tile;
// rows at or past T are zero-filled. All threads of the block take part; nothing is waited for.
template <int HS, int R>
__device__ __forceinline__ void flash_load_tile(bf16 *tile, const bf16 *src, int64_t stride, int r0,
                                                int T, int tid) {
    constexpr int LD = HS + 8, CHUNKS = HS / 8; // 16-byte chunks per row
    for (int c = tid; c < R * CHUNKS; c += FLASH_THREADS) {
        const int r = c / CHUNKS, ch = c % CHUNKS;
        const bool valid = r0 + r < T;
        const bf16 *s = valid ? src + (int64_t)(r0 + r) * stride + ch * 8 : src;
        cp_async16(tile + r * LD + ch * 8, s, valid);
    }
}

// Fragment addresses. For a row-major tile with leading dimension LD:
// A operand, 16 rows from r0 x 16 columns from c0 (ldsm_x4): lane l gives row r0 + l%16,
// column c0 + 8 (l/16).
template <int LD>
__device__ __forceinline__ const bf16 *frag_a(const bf16 *t, int r0, int c0, int lane) {
    return t + (r0 + (lane & 15)) * LD + c0 + (lane >> 4) * 8;
}
// B operand for two n-blocks of 8 where B[k][n] = tile[n][k] (the tile's rows are the n index):
// rows n0..n0+15, columns (k) c0..c0+15, with ldsm_x4: registers 0,1 = b0,b1 of rows n0..n0+7,
// registers 2,3 = b0,b1 of rows n0+8..n0+15.
template <int LD>
__device__ __forceinline__ const bf16 *frag_bt(const bf16 *t, int n0, int c0, int lane) {
    return t + (n0 + (lane & 7) + ((lane >> 4) << 3)) * LD + c0 + ((lane >> 3) & 1) * 8;
}
// B operand for two n-blocks of 8 where B[k][n] = tile[k][n] (the tile's rows are the k index):
// rows (k) k0..k0+15, columns (n) c0..c0+15, with ldsm_x4_trans: registers 0,1 = b0,b1 of
// columns c0..c0+7, registers 2,3 = b0,b1 of columns c0+8..c0+15.
template <int LD>
__device__ __forceinline__ const bf16 *frag_bn(const bf16 *t, int k0, int c0, int lane) {
    return t + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + c0 + (lane >> 4) * 8;
}

// acc[mt][n-block] (MW m-tiles of 16 rows x 8*NB) += A (16*MW rows of tile `a` from ar0, HS
// columns) times tile `b`^T (rows 0 .. 8*NB - 1 of `b`, HS columns): a product of two row-major
// tiles along their rows, e.g. S = Q K^T. Each B fragment loaded serves all MW m-tiles.
template <int HS, int NB, int MW>
__device__ __forceinline__ void flash_mm_rows(float (*acc)[NB][4], const bf16 *a, int ar0,
                                              const bf16 *b, int lane) {
    constexpr int LD = HS + 8;
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        uint32_t af[MW][4];
#pragma unroll
        for (int mt = 0; mt < MW; mt++)
            ldsm_x4(af[mt], frag_a<LD>(a, ar0 + 16 * mt, kk * 16, lane));
#pragma unroll
        for (int nb = 0; nb < NB / 2; nb++) {
            uint32_t r[4];
            ldsm_x4(r, frag_bt<LD>(b, nb * 16, kk * 16, lane));
#pragma unroll
            for (int mt = 0; mt < MW; mt++) {
                mma_bf16_16816(acc[mt][2 * nb], af[mt], r[0], r[1]);
                mma_bf16_16816(acc[mt][2 * nb + 1], af[mt], r[2], r[3]);
            }
        }
    }
}

// acc[mt] (MW m-tiles of 16 x HS) += P[mt] (16 x 8*NB, in accumulator layout, fp32, rounded to
// bf16 here) times the row-major tile `b` (8*NB rows, HS columns): e.g. O += P V.
template <int HS, int NB, int MW>
__device__ __forceinline__ void flash_mm_acc(float (*acc)[HS / 8][4], const float (*p)[NB][4],
                                             const bf16 *b, int lane) {
    constexpr int LD = HS + 8;
#pragma unroll
    for (int kk = 0; kk < NB / 2; kk++) {
        // the accumulators of two n-blocks are the A fragment of one 16-wide k slice
        uint32_t af[MW][4];
#pragma unroll
        for (int mt = 0; mt < MW; mt++) {
            af[mt][0] = pack_bf16x2(p[mt][2 * kk][0], p[mt][2 * kk][1]);
            af[mt][1] = pack_bf16x2(p[mt][2 * kk][2], p[mt][2 * kk][3]);
            af[mt][2] = pack_bf16x2(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
            af[mt][3] = pack_bf16x2(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < HS / 16; dp++) {
            uint32_t r[4];
            ldsm_x4_trans(r, frag_bn<LD>(b, kk * 16, dp * 16, lane));
#pragma unroll
            for (int mt = 0; mt < MW; mt++) {
                mma_bf16_16816(acc[mt][2 * dp], af[mt], r[0], r[1]);
                mma_bf16_16816(acc[mt][2 * dp + 1], af[mt], r[2], r[3]);
            }
        }
    }
}

// The head a block works on (blockIdx.x = b NH + h): its q, k, v rows (stride rs = 3C), its
// rows of out, dout and dqkv (dK, dV at dq + C, dq + 2C), and its lse2 / dsum rows.
struct flash_head {
    int64_t rs;
    const bf16 *q, *k, *v, *dout;
    bf16 *out, *dq;
    float *lse, *dsum;
};

template <int HS> __device__ __forceinline__ flash_head flash_head_of(const flash_params &p) {
    const int bh = mma_bx(), b = bh / p.NH, h = bh % p.NH;
    const int64_t rs = 3 * (int64_t)p.C, qoff = (int64_t)b * p.T * rs + h * HS;
    const int64_t ooff = (int64_t)b * p.T * p.C + h * HS, loff = (int64_t)bh * p.T;
    flash_head hd;
    hd.rs = rs;
    hd.q = p.qkv + qoff;
    hd.k = hd.q + p.C;
    hd.v = hd.q + 2 * p.C;
    hd.dout = p.dout ? p.dout + ooff : nullptr; // the forward has no dout, dqkv, dsum
    hd.out = p.out ? p.out + ooff : nullptr;
    hd.dq = p.dqkv ? p.dqkv + qoff : nullptr;
    hd.lse = p.lse + loff;
    hd.dsum = p.dsum ? p.dsum + loff : nullptr;
    return hd;
}

// The first row of the query tile of this block when tiles of BR rows are launched from the
// last one (blockIdx.y = 0 is the tile that sees the most keys)
__device__ __forceinline__ int flash_query_tile(int T, int BR) {
    return ((T + BR - 1) / BR - 1 - mma_by()) * BR;
}

// Step j of a walk over nkb key tiles with K and V double-buffered (stage j & 1): request tile
// j+1 into the other stage (freed by the barrier that ended step j-1), wait for tile j and
// publish it to the block. Returns the stage of tile j.
template <int HS>
__device__ __forceinline__ int flash_kv_step(bf16 *sK, bf16 *sV, const flash_head &hd, int j,
                                             int nkb, int T, int tid) {
    constexpr int LD = HS + 8, BC = FLASH_BC;
    const int st = j & 1;
    if (j + 1 < nkb) {
        flash_load_tile<HS, BC>(sK + (st ^ 1) * BC * LD, hd.k, hd.rs, (j + 1) * BC, T, tid);
        flash_load_tile<HS, BC>(sV + (st ^ 1) * BC * LD, hd.v, hd.rs, (j + 1) * BC, T, tid);
    }
    cp_async_commit();
    cp_async_wait<1>(); // everything but the tile just requested
    mma_sync_block();
    return st;
}

// dst[0..1] += (lo, hi) for a bf16 pair in global memory (4-byte aligned), rounded once
__device__ __forceinline__ void flash_add_pair(bf16 *dst, float lo, float hi) {
    uint32_t *p = reinterpret_cast<uint32_t *>(dst);
    const float2 old = unpack_bf16x2(*p);
    *p = pack_bf16x2(old.x + lo, old.y + hi);
}

// ---------------------------------------------------------------------------------------------
// forward: grid (B*NH, ceil(T / flash_fwd_rows<HS>())), FLASH_THREADS, flash_fwd_smem<HS>()

template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS) flash_fwd_kernel(flash_params p) {
    constexpr int LD = HS + 8, MW = flash_fwd_mw<HS>(), BR = flash_fwd_rows<HS>(), BC = FLASH_BC;
    constexpr int NB = BC / 8, ND = HS / 8;
    const int T = p.T, q0 = flash_query_tile(T, BR);
    const int tid = mma_tid(), warp = tid / 32, lane = tid % 32, g = lane >> 2, tq = lane & 3;
    const flash_head hd = flash_head_of<HS>(p);

    bf16 *sQ = reinterpret_cast<bf16 *>(mma_smem());
    bf16 *sK = sQ + BR * LD, *sV = sK + 2 * BC * LD; // two stages each

    const int kend = T < q0 + BR ? T : q0 + BR, nkb = (kend + BC - 1) / BC;
    flash_load_tile<HS, BR>(sQ, hd.q, hd.rs, q0, T, tid);
    flash_load_tile<HS, BC>(sK, hd.k, hd.rs, 0, T, tid);
    flash_load_tile<HS, BC>(sV, hd.v, hd.rs, 0, T, tid);
    cp_async_commit();

    // rows of this warp: wr0 .. wr0 + 16 MW - 1; of m-tile mt: wr0 + 16 mt + g (c0, c1), + 8 (c2,
    // c3)
    const int wr0 = q0 + warp * 16 * MW;
    float o[MW][ND][4], m[MW][2], l[MW][2];
#pragma unroll
    for (int mt = 0; mt < MW; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int i = 0; i < ND; i++)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
    }

    for (int j = 0; j < nkb; j++) {
        const int st = flash_kv_step<HS>(sK, sV, hd, j, nkb, T, tid), k0 = j * BC;

        // a tile whose every key comes after every row of the warp adds nothing (warp-uniform)
        if (k0 <= wr0 + 16 * MW - 1) {
            const bf16 *kt = sK + st * BC * LD, *vt = sV + st * BC * LD;
            float s[MW][NB][4];
#pragma unroll
            for (int mt = 0; mt < MW; mt++)
#pragma unroll
                for (int i = 0; i < NB; i++)
                    s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
            flash_mm_rows<HS, NB, MW>(s, sQ, warp * 16 * MW, kt, lane);

            // mask the keys after the query (tiles crossing the diagonal, or reaching past T),
            // then the row maxima of the raw scores (scale > 0 keeps the order)
            const bool diag = k0 + BC - 1 > wr0;
            float mx[MW][2];
#pragma unroll
            for (int mt = 0; mt < MW; mt++) {
                mx[mt][0] = mx[mt][1] = -INFINITY;
#pragma unroll
                for (int nb = 0; nb < NB; nb++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int row = wr0 + 16 * mt + g + (e >> 1) * 8;
                        if (diag && k0 + nb * 8 + tq * 2 + (e & 1) > row) s[mt][nb][e] = -INFINITY;
                        mx[mt][e >> 1] = fmaxf(mx[mt][e >> 1], s[mt][nb][e]);
                    }
            }
#pragma unroll
            for (int mt = 0; mt < MW; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const float v = quad_reduce(mx[mt][r], warp_op_max()); // the row's quad
                    // new running maximum, base 2; a row with no visible key yet keeps
                    // m = -inf and l = 0 (base 0 avoids -inf - -inf)
                    const float mnew = fmaxf(m[mt][r], v * p.scale_log2);
                    const float base = mnew == -INFINITY ? 0.0f : mnew;
                    const float corr = exp2f(m[mt][r] - base); // 0 while m = -inf
                    m[mt][r] = mnew;
                    mx[mt][r] = base;
                    l[mt][r] *= corr;
#pragma unroll
                    for (int i = 0; i < ND; i++) {
                        o[mt][i][2 * r] *= corr;
                        o[mt][i][2 * r + 1] *= corr;
                    }
                }
                // P = exp2(s scale_log2 - base); l is this lane's share of the row sum (its
                // columns): the quad adds them up at the end
#pragma unroll
            for (int mt = 0; mt < MW; mt++)
#pragma unroll
                for (int nb = 0; nb < NB; nb++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float pe = exp2f(fmaf(s[mt][nb][e], p.scale_log2, -mx[mt][e >> 1]));
                        s[mt][nb][e] = pe;
                        l[mt][e >> 1] += pe;
                    }
            flash_mm_acc<HS, NB, MW>(o, s, vt, lane);
        }
        mma_sync_block(); // this stage is refilled two tiles from now
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MW; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float lr = quad_reduce(l[mt][r], warp_op_sum());
            const int t = wr0 + 16 * mt + g + 8 * r;
            if (t >= T) continue;
            const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
#pragma unroll
            for (int i = 0; i < ND; i++) {
                uint32_t *dst =
                    reinterpret_cast<uint32_t *>(hd.out + (int64_t)t * p.C + i * 8 + tq * 2);
                *dst = pack_bf16x2(o[mt][i][2 * r] * inv, o[mt][i][2 * r + 1] * inv);
            }
            if (tq == 0) hd.lse[t] = m[mt][r] + log2f(lr);
        }
}

// ---------------------------------------------------------------------------------------------
// backward, step 1: dsum[b,h,t] = sum_d dout[b,t,h,d] out[b,t,h,d]; one warp per row,
// FLASH_THREADS threads, grid-stride over the B*T*NH rows

template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS) flash_bwd_dsum_kernel(flash_params p) {
    constexpr int WPB = FLASH_THREADS / 32;
    const int lane = mma_tid() % 32;
    const int64_t rows = (int64_t)p.B * p.T * p.NH;
    for (int64_t row = (int64_t)mma_bx() * WPB + mma_tid() / 32; row < rows;
         row += (int64_t)mma_gridx() * WPB) {
        const int h = (int)(row % p.NH);
        const int64_t bt = row / p.NH;
        const int64_t off = bt * p.C + h * HS;
        float acc = 0.0f;
        for (int d = lane * 2; d < HS; d += 64) {
            const float2 a = unpack_bf16x2(*reinterpret_cast<const uint32_t *>(p.dout + off + d));
            const float2 o = unpack_bf16x2(*reinterpret_cast<const uint32_t *>(p.o + off + d));
            acc += a.x * o.x + a.y * o.y;
        }
        acc = warp_sum(acc);
        const int64_t b = bt / p.T, t = bt % p.T;
        if (lane == 0) p.dsum[(b * p.NH + h) * p.T + t] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// backward, step 2: dK and dV. grid (B*NH, ceil(T/64)), FLASH_THREADS, flash_dkv_smem<HS>()

template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS) flash_bwd_dkv_kernel(flash_params p) {
    constexpr int LD = HS + 8, BK = FLASH_BR, BQ = flash_dkv_bq<HS>(), NB = BQ / 8, ND = HS / 8;
    const int T = p.T, C = p.C;
    const int k0 = mma_by() * BK; // key tile 0 (the most query tiles) first
    const int tid = mma_tid(), warp = tid / 32, lane = tid % 32, g = lane >> 2, tq = lane & 3;
    const flash_head hd = flash_head_of<HS>(p);
    const int64_t rs = hd.rs;
    const bf16 *Qg = hd.q, *dOg = hd.dout;
    const float *Lg = hd.lse, *Dg = hd.dsum;

    bf16 *sK = reinterpret_cast<bf16 *>(mma_smem());
    bf16 *sV = sK + BK * LD, *sQ = sV + BK * LD, *sdO = sQ + 2 * BQ * LD;
    float *sL = reinterpret_cast<float *>(sdO + 2 * BQ * LD), *sD = sL + 2 * BQ;

    const int qb0 = k0 / BQ, nqb = (T + BQ - 1) / BQ; // query tiles with a query >= k0
    flash_load_tile<HS, BK>(sK, hd.k, rs, k0, T, tid);
    flash_load_tile<HS, BK>(sV, hd.v, rs, k0, T, tid);
    flash_load_tile<HS, BQ>(sQ, Qg, rs, qb0 * BQ, T, tid);
    flash_load_tile<HS, BQ>(sdO, dOg, C, qb0 * BQ, T, tid);
    if (tid < BQ) { // lse2 and dsum of the tile's queries (0 past T), in the same group
        const int t = qb0 * BQ + tid;
        cp_async4(sL + tid, Lg + (t < T ? t : 0), t < T);
        cp_async4(sD + tid, Dg + (t < T ? t : 0), t < T);
    }
    cp_async_commit();

    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++)
        for (int e = 0; e < 4; e++)
            dk[i][e] = dv[i][e] = 0.0f;
    const int key0 = k0 + warp * 16 + g; // key of c0, c1; key0 + 8 of c2, c3

    for (int i = qb0; i < nqb; i++) {
        const int st = (i - qb0) & 1, qs = i * BQ;
        if (i + 1 < nqb) {
            const int nst = st ^ 1;
            flash_load_tile<HS, BQ>(sQ + nst * BQ * LD, Qg, rs, qs + BQ, T, tid);
            flash_load_tile<HS, BQ>(sdO + nst * BQ * LD, dOg, C, qs + BQ, T, tid);
            if (tid < BQ) {
                const int t = qs + BQ + tid;
                cp_async4(sL + nst * BQ + tid, Lg + (t < T ? t : 0), t < T);
                cp_async4(sD + nst * BQ + tid, Dg + (t < T ? t : 0), t < T);
            }
        }
        cp_async_commit();
        cp_async_wait<1>();
        mma_sync_block();
        const bf16 *qt = sQ + st * BQ * LD, *dot = sdO + st * BQ * LD;
        const float *lt = sL + st * BQ, *dt = sD + st * BQ;

        // a warp whose every key comes after every query of the tile has nothing to add
        if (qs + BQ - 1 >= k0 + warp * 16) {
            // S^T (16 keys x BQ queries) = K Q^T, then P^T = exp2(s - lse2[query]), 0 where masked
            float s[NB][4];
#pragma unroll
            for (int n = 0; n < NB; n++)
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            flash_mm_rows<HS, NB, 1>(&s, sK, warp * 16, qt, lane);
            const bool diag = k0 + BK - 1 > qs; // some key of the tile comes after some query
#pragma unroll
            for (int n = 0; n < NB; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qi = n * 8 + tq * 2 + (e & 1), t = qs + qi;
                    const bool off = t >= T || (diag && key0 + (e >> 1) * 8 > t);
                    s[n][e] = off ? 0.0f : exp2f(fmaf(s[n][e], p.scale_log2, -lt[qi]));
                }
            // dV += P^T dO
            flash_mm_acc<HS, NB, 1>(&dv, &s, dot, lane);
            // dP^T (16 keys x BQ queries) = V dO^T;  dS^T = P^T (dP^T - dsum[query])
            float dp[NB][4];
#pragma unroll
            for (int n = 0; n < NB; n++)
                dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
            flash_mm_rows<HS, NB, 1>(&dp, sV, warp * 16, dot, lane);
#pragma unroll
            for (int n = 0; n < NB; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    dp[n][e] = s[n][e] * (dp[n][e] - dt[n * 8 + tq * 2 + (e & 1)]);
            // dK += dS^T Q   (scaled at the end)
            flash_mm_acc<HS, NB, 1>(&dk, &dp, qt, lane);
        }
        mma_sync_block();
    }
    cp_async_wait<0>();

    bf16 *dKg = hd.dq + C, *dVg = hd.dq + 2 * C;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int t = key0 + 8 * r;
        if (t >= T) continue;
#pragma unroll
        for (int i = 0; i < ND; i++) {
            const int64_t off = (int64_t)t * rs + i * 8 + tq * 2;
            flash_add_pair(dKg + off, dk[i][2 * r] * p.scale, dk[i][2 * r + 1] * p.scale);
            flash_add_pair(dVg + off, dv[i][2 * r], dv[i][2 * r + 1]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// backward, step 3: dQ. grid (B*NH, ceil(T / flash_dq_rows<HS>())), FLASH_THREADS,
// flash_dq_smem<HS>()

template <int HS>
__global__ void __launch_bounds__(FLASH_THREADS) flash_bwd_dq_kernel(flash_params p) {
    constexpr int LD = HS + 8, MW = flash_dq_mw<HS>(), BR = flash_dq_rows<HS>(), BC = FLASH_BC;
    constexpr int NB = BC / 8, ND = HS / 8;
    const int T = p.T, q0 = flash_query_tile(T, BR);
    const int tid = mma_tid(), warp = tid / 32, lane = tid % 32, g = lane >> 2, tq = lane & 3;
    const flash_head hd = flash_head_of<HS>(p);

    bf16 *sQ = reinterpret_cast<bf16 *>(mma_smem());
    bf16 *sdO = sQ + BR * LD, *sK = sdO + BR * LD, *sV = sK + 2 * BC * LD;

    const int kend = T < q0 + BR ? T : q0 + BR, nkb = (kend + BC - 1) / BC;
    flash_load_tile<HS, BR>(sQ, hd.q, hd.rs, q0, T, tid);
    flash_load_tile<HS, BR>(sdO, hd.dout, p.C, q0, T, tid);
    flash_load_tile<HS, BC>(sK, hd.k, hd.rs, 0, T, tid);
    flash_load_tile<HS, BC>(sV, hd.v, hd.rs, 0, T, tid);
    cp_async_commit();

    // rows of this warp: wr0 .. wr0 + 16 MW - 1; of m-tile mt: wr0 + 16 mt + g (c0, c1), + 8
    const int wr0 = q0 + warp * 16 * MW;
    float lse[MW][2], dsum[MW][2], dq[MW][ND][4];
#pragma unroll
    for (int mt = 0; mt < MW; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int t = wr0 + 16 * mt + g + 8 * r;
            lse[mt][r] = t < T ? hd.lse[t] : 0.0f;
            dsum[mt][r] = t < T ? hd.dsum[t] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < ND; i++)
            dq[mt][i][0] = dq[mt][i][1] = dq[mt][i][2] = dq[mt][i][3] = 0.0f;
    }

    for (int j = 0; j < nkb; j++) {
        const int st = flash_kv_step<HS>(sK, sV, hd, j, nkb, T, tid), k0 = j * BC;

        // a tile whose every key comes after every row of the warp adds nothing (warp-uniform)
        if (k0 <= wr0 + 16 * MW - 1) {
            const bf16 *kt = sK + st * BC * LD, *vt = sV + st * BC * LD;
            // P = exp2(s - lse2), 0 after the diagonal and for queries past T
            float s[MW][NB][4], dp[MW][NB][4];
#pragma unroll
            for (int mt = 0; mt < MW; mt++)
#pragma unroll
                for (int n = 0; n < NB; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        s[mt][n][e] = dp[mt][n][e] = 0.0f;
            flash_mm_rows<HS, NB, MW>(s, sQ, warp * 16 * MW, kt, lane);
            const bool diag = k0 + BC - 1 > wr0;
#pragma unroll
            for (int mt = 0; mt < MW; mt++)
#pragma unroll
                for (int n = 0; n < NB; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int t = wr0 + 16 * mt + g + (e >> 1) * 8;
                        const int key = k0 + n * 8 + tq * 2 + (e & 1);
                        const bool off = t >= T || (diag && key > t);
                        s[mt][n][e] =
                            off ? 0.0f : exp2f(fmaf(s[mt][n][e], p.scale_log2, -lse[mt][e >> 1]));
                    }
            // dP = dO V^T;  dS = P (dP - dsum)
            flash_mm_rows<HS, NB, MW>(dp, sdO, warp * 16 * MW, vt, lane);
#pragma unroll
            for (int mt = 0; mt < MW; mt++)
#pragma unroll
                for (int n = 0; n < NB; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        dp[mt][n][e] = s[mt][n][e] * (dp[mt][n][e] - dsum[mt][e >> 1]);
            // dQ += dS K   (scaled at the end)
            flash_mm_acc<HS, NB, MW>(dq, dp, kt, lane);
        }
        mma_sync_block();
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MW; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int t = wr0 + 16 * mt + g + 8 * r;
            if (t >= T) continue;
#pragma unroll
            for (int i = 0; i < ND; i++)
                flash_add_pair(hd.dq + (int64_t)t * hd.rs + i * 8 + tq * 2,
                               dq[mt][i][2 * r] * p.scale, dq[mt][i][2 * r + 1] * p.scale);
        }
}

// ---------------------------------------------------------------------------------------------
// launches (shapes from p; s: the stream). Kernels needing more than 48 KB of dynamic shared
// memory must have been allowed it on the device first (cuda_flash_init, at backend creation).

template <int HS> void flash_launch_forward(const flash_params &p, cudaStream_t s) {
    const dim3 grid((unsigned)(p.B * p.NH),
                    (unsigned)((p.T + flash_fwd_rows<HS>() - 1) / flash_fwd_rows<HS>()));
    CUDA_LAUNCH(grid, FLASH_THREADS, flash_fwd_smem<HS>(), s, flash_fwd_kernel<HS>, p);
}

// dsum, then dK/dV, then dQ. dsum runs grid-stride over the B*T*NH rows, one warp per row, on at
// most dsum_max_blocks blocks (the emulated test takes few, to walk the stride).
template <int HS>
void flash_launch_backward(const flash_params &p, cudaStream_t s,
                           unsigned dsum_max_blocks = 65536) {
    const size_t rows = (size_t)p.B * p.T * p.NH;
    const size_t needed = (rows + FLASH_THREADS / 32 - 1) / (FLASH_THREADS / 32);
    const unsigned dsum_blocks = (unsigned)(needed < dsum_max_blocks ? needed : dsum_max_blocks);
    CUDA_LAUNCH(dsum_blocks, FLASH_THREADS, 0, s, flash_bwd_dsum_kernel<HS>, p);
    const dim3 dkv_grid((unsigned)(p.B * p.NH), (unsigned)((p.T + FLASH_BR - 1) / FLASH_BR));
    CUDA_LAUNCH(dkv_grid, FLASH_THREADS, flash_dkv_smem<HS>(), s, flash_bwd_dkv_kernel<HS>, p);
    const dim3 dq_grid((unsigned)(p.B * p.NH),
                       (unsigned)((p.T + flash_dq_rows<HS>() - 1) / flash_dq_rows<HS>()));
    CUDA_LAUNCH(dq_grid, FLASH_THREADS, flash_dq_smem<HS>(), s, flash_bwd_dq_kernel<HS>, p);
}

#endif
