// common.cuh — what every CUDA kernel file needs: error checks, the launch macro, warp and block
// reductions, bf16 helpers, launch sizing.
#ifndef TESSERA_CUDA_COMMON_CUH
#define TESSERA_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/common.h"
#include "kernels/backend.h"

// A failing CUDA call is fatal: the device state is unknown afterwards. The message names the
// statement, file and line, and the device (a poor man's backtrace is not possible here).
#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) cuda_fail(#call, cudaGetErrorString(err_), __FILE__, __LINE__);   \
    } while (0)

// After every launch: the launch itself is checked always; in debug builds (no NDEBUG) the
// kernel is also waited for, so an illegal address is reported at the kernel that caused it.
#ifdef NDEBUG
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
#else
#define CUDA_CHECK_LAUNCH()                                                                        \
    do {                                                                                           \
        CUDA_CHECK(cudaGetLastError());                                                            \
        CUDA_CHECK(cudaDeviceSynchronize());                                                       \
    } while (0)
#endif

static inline void cuda_fail(const char *what, const char *why, const char *file, int line) {
    int dev = -1;
    cudaGetDevice(&dev);
    fprintf(stderr, "---> HINT: run the gpu tests under compute-sanitizer to find the kernel\n");
    ts_fatal(TS_ERR_INTERNAL, "CUDA error on device %d at %s:%d: %s: %s", dev, file, line, what,
             why);
}

static inline unsigned cuda_ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// ---- launches ---------------------------------------------------------------------------------
// Every kernel is launched through CUDA_LAUNCH(grid, block, shared_bytes, stream, kernel, args...),
// which checks the launch (CUDA_CHECK_LAUNCH, at the caller's file and line). The host emulation
// (tests/emu/emu_prims.h) defines the same macro to run a kernel on CPU threads, so a launcher
// written with it (flash_attention.cuh's) runs unchanged in both.
template <typename... Params, typename... Args>
static inline void cuda_launch_kernel(dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                      void (*kernel)(Params...), Args... args) {
    kernel<<<grid, block, smem, s>>>(args...);
}
#define CUDA_LAUNCH(grid, block, smem, stream, ...)                                                \
    do {                                                                                           \
        cuda_launch_kernel(grid, block, smem, stream, __VA_ARGS__);                                \
        CUDA_CHECK_LAUNCH();                                                                       \
    } while (0)

// ---- reductions ---------------------------------------------------------------------------------
// the shuffle warp.cuh is written over
__device__ __forceinline__ float shfl_xor(float v, int mask) {
    return __shfl_xor_sync(0xffffffffu, v, mask);
}
__device__ __forceinline__ double shfl_xor(double v, int mask) {
    return __shfl_xor_sync(0xffffffffu, v, mask);
}
__device__ __forceinline__ unsigned shfl_xor(unsigned v, int mask) {
    return __shfl_xor_sync(0xffffffffu, v, mask);
}

#include "kernels/cuda/warp.cuh"

// op over the block (THREADS threads, a multiple of 32): each warp reduces its lanes, lane 0
// leaves the warp's result in shared[warp] (THREADS/32 elements of the caller's shared memory),
// then warp 0 reduces those, the missing lanes contributing `identity`. The result is valid in
// every lane of warp 0 (the same bits in each); other warps get their own warp's result. Every
// thread of the block must call it (it holds a barrier). Fixed order: deterministic.
template <int THREADS, typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity, T *shared) {
    static_assert(THREADS % 32 == 0 && THREADS <= 1024, "block_reduce: whole warps, <= 1024");
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_reduce(v, op);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) v = warp_reduce(lane < THREADS / 32 ? shared[lane] : identity, op);
    return v;
}

// P elements of T moved as one aligned vector (16 bytes for P = 16 / sizeof(T)); use only on
// pointers that pass cuda_aligned16 and counts divisible by P
template <typename T, int P> struct alignas(sizeof(T) * P) cuda_pack { T v[P]; };

static inline bool cuda_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// ---- element access for the two activation types --------------------------------------------
typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16(x); }

// Dispatch a templated launcher on the runtime dtype:  TS_DISPATCH(dt, T, body using T)
#define TS_DISPATCH(dt, T, ...)                                                                    \
    do {                                                                                           \
        if ((dt) == TS_BF16) {                                                                     \
            typedef bf16 T;                                                                        \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

#endif
