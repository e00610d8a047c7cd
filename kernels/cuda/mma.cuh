// mma.cuh — the warp-level primitives the tensor-core kernels are written in (CUDA side).
//
// flash_attention.cuh uses only what is declared here and in common.cuh's CUDA_LAUNCH and
// shfl_xor (the shuffle warp.cuh's reductions are written over), so the same kernel source also
// compiles for the host against tests/emu/emu_prims.h, which implements every primitive below,
// the launch and the shuffle on CPU threads (one per GPU thread) from the layouts of the PTX ISA.
// Keep the two files in step.
//
// Layouts (PTX ISA, "Matrix fragments for mma.m16n8k16" with .bf16), for lane l of a warp,
// g = l / 4 (group) and q = l % 4 (thread in group); a "pair" is two bf16 in one 32-bit register,
// the lower-indexed element in the low half:
//   A (16x16, row-major), 4 registers: a0 = A[g][2q..2q+1], a1 = A[g+8][2q..], a2 = A[g][2q+8..],
//                                      a3 = A[g+8][2q+8..]
//   B (16x8, column-major, B[k][n]), 2 registers: b0 = B[2q..2q+1][g], b1 = B[2q+8..2q+9][g]
//   C, D (16x8, fp32), 4 floats: c0,c1 = C[g][2q], C[g][2q+1]; c2,c3 = C[g+8][2q], C[g+8][2q+1]
// ldmatrix .x4 loads four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i
// (16 bytes each, 16-byte aligned, shared memory); register i of lane l receives the pair
// M_i[g][2q..2q+1]; with .trans it receives M_i[2q][g], M_i[2q+1][g] (the transpose).
#ifndef TESSERA_CUDA_MMA_CUH
#define TESSERA_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

// ---- where the kernel runs ------------------------------------------------------------------
__device__ __forceinline__ int mma_tid(void) { return (int)threadIdx.x; }
__device__ __forceinline__ int mma_bx(void) { return (int)blockIdx.x; }
__device__ __forceinline__ int mma_by(void) { return (int)blockIdx.y; }
__device__ __forceinline__ int mma_gridx(void) { return (int)gridDim.x; }
__device__ __forceinline__ void mma_sync_block(void) { __syncthreads(); }
// the kernel's dynamic shared memory (16-byte aligned)
__device__ __forceinline__ char *mma_smem(void) {
    extern __shared__ __align__(16) char mma_dyn_smem[];
    return mma_dyn_smem;
}

// ---- values -----------------------------------------------------------------------------------
__device__ __forceinline__ float bf16_f32(bf16 x) { return __bfloat162float(x); }
// two floats rounded to bf16 (nearest even) as one pair, lo in the low half
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
__device__ __forceinline__ float2 unpack_bf16x2(uint32_t v) {
    __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162 *>(&v);
    return __bfloat1622float2(h);
}

// ---- shared-memory fragment loads ---------------------------------------------------------------
__device__ __forceinline__ uint32_t mma_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16 *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(mma_smem_addr(row))
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const bf16 *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(mma_smem_addr(row))
                 : "memory");
}

// ---- the tensor-core product: c += a b (m16n8k16, bf16 inputs, fp32 accumulators) -----------
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- asynchronous global -> shared copies (sm_80+) -------------------------------------------
// 16 bytes from src to dst (both 16-byte aligned); valid == false writes 16 zero bytes instead
// (src is not read, but must still be a valid address)
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(mma_smem_addr(dst)),
                 "l"(__cvta_generic_to_global(src)), "r"(n)
                 : "memory");
}
// the same for 4 bytes (both 4-byte aligned), through L1 (.ca: .cg takes 16 bytes only)
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid) {
    const int n = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(mma_smem_addr(dst)),
                 "l"(__cvta_generic_to_global(src)), "r"(n)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// wait until at most N of this thread's committed groups are still in flight
template <int N> __device__ __forceinline__ void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#endif
