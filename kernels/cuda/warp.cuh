// warp.cuh — the reductions across the lanes of a warp that every kernel uses: warp_reduce over
// all 32 lanes, quad_reduce over the 4 lanes of a quad (where an mma fragment keeps a row), and
// their sum and max forms; warp_scan_sum, the running sum over the lanes. common.cuh adds
// block_reduce on top of them.
//
// Written over one primitive, shfl_xor(v, mask) (v of the lane `lane ^ mask`, every lane of the
// warp taking part; float, double and unsigned), which the includer provides: common.cuh on the
// GPU (__shfl_xor_sync), and tests/emu/emu_prims.h in the host emulation, so the flash and codec
// kernels reduce through the same code on both.
//
// Determinism: a xor butterfly leaves every lane with the same value, bit for bit, whatever the
// operation, and the order of the steps is fixed (warp: masks 16, 8, 4, 2, 1; quad: 1, 2), so a
// reduction gives the same bits on every run. Each step computes op(mine, theirs).
#ifndef TESSERA_CUDA_WARP_CUH
#define TESSERA_CUDA_WARP_CUH

struct warp_op_sum {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct warp_op_max {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ __forceinline__ unsigned operator()(unsigned a, unsigned b) const {
        return a > b ? a : b;
    }
};
struct warp_op_or {
    __device__ __forceinline__ unsigned operator()(unsigned a, unsigned b) const { return a | b; }
};

// op over the 32 lanes of the warp; T needs a shfl_xor overload
template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
    for (int mask = 16; mask > 0; mask >>= 1)
        v = op(v, shfl_xor(v, mask));
    return v;
}

// op over the 4 lanes of each quad (lanes 4g .. 4g+3); all 32 lanes take part
template <typename T, typename Op> __device__ __forceinline__ T quad_reduce(T v, Op op) {
    v = op(v, shfl_xor(v, 1));
    return op(v, shfl_xor(v, 2));
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    return warp_reduce(v, warp_op_sum());
}
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, warp_op_max()); }

// The inclusive running sum over the lanes: lane l gets v of lanes 0..l; *total (when not NULL)
// the sum of all 32 in every lane. A xor butterfly too: after the step with mask m each lane holds
// the total of its aligned group of 2m lanes, and adds the lower half's when it sits in the upper.
__device__ __forceinline__ unsigned warp_scan_sum(unsigned v, int lane, unsigned *total) {
    unsigned group = v;
#pragma unroll
    for (int mask = 1; mask < 32; mask <<= 1) {
        const unsigned other = shfl_xor(group, mask);
        if (lane & mask) v += other;
        group += other;
    }
    if (total) *total = group;
    return v;
}

#endif
