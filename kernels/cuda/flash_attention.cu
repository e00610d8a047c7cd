// flash_attention.cu — the launchers of the flash-attention kernels (flash_attention.cuh):
// bf16 activations, head size 64 or 128, any T. attention.cu decides when they are used.
//
// State saved by the forward for the backward: lse2 (B,NH,T) fp32, nothing else (the backward
// also reads the forward's output). The backward's dsum (B,NH,T) fp32 lives in the backend's
// scratch.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops.cuh"

#include "kernels/cuda/flash_attention.cuh"

bool cuda_flash_supported(ts_dtype dt, int C, int NH) {
    if (dt != TS_BF16 || NH <= 0 || C % NH != 0) return false;
    const int hs = C / NH;
    return hs == 64 || hs == 128;
}

size_t cuda_flash_state_bytes(int B, int T, int NH) { return (size_t)B * NH * T * sizeof(float); }

// kernels needing more than 48 KB of dynamic shared memory must say so once
template <typename K> static void flash_allow_smem(K kernel, int bytes, bool *done) {
    if (*done) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    *done = true;
}

static flash_params flash_make_params(const void *qkv, int B, int T, int C, int NH) {
    // tiles of 64 rows along gridDim.y (at most 65535), heads along gridDim.x
    if (T > 65535 * 64) {
        ts_fatal(TS_ERR_INTERNAL,
                 "flash attention: T = %d is longer than the %d the launch grid can cover", T,
                 65535 * 64);
    }
    flash_params p;
    memset(&p, 0, sizeof p);
    p.qkv = (const bf16 *)qkv;
    p.B = B;
    p.T = T;
    p.C = C;
    p.NH = NH;
    p.scale = 1.0f / sqrtf((float)(C / NH));
    p.scale_log2 = p.scale * 1.4426950408889634f;
    return p;
}

static void flash_check_aligned(const void *p, const char *what) {
    if (!cuda_aligned16(p)) {
        ts_fatal(TS_ERR_INTERNAL, "flash attention: %s at %p is not 16-byte aligned", what, p);
    }
}

template <int HS> static void flash_forward_hs(const flash_params &p, cudaStream_t s) {
    static bool smem_set = false;
    const int smem = flash_fwd_smem<HS>();
    flash_allow_smem(flash_fwd_kernel<HS>, smem, &smem_set);
    dim3 grid((unsigned)(p.B * p.NH), cuda_ceil_div(p.T, flash_fwd_rows<HS>()));
    flash_fwd_kernel<HS><<<grid, FLASH_THREADS, smem, s>>>(p);
    CUDA_CHECK_LAUNCH();
}

template <int HS> static void flash_backward_hs(const flash_params &p, cudaStream_t s) {
    static bool dkv_set = false, dq_set = false;
    const size_t rows = (size_t)p.B * p.T * p.NH;
    const size_t needed = (rows + FLASH_THREADS / 32 - 1) / (FLASH_THREADS / 32);
    const unsigned dsum_blocks = (unsigned)(needed < 65536 ? needed : 65536);
    flash_bwd_dsum_kernel<HS><<<dsum_blocks, FLASH_THREADS, 0, s>>>(p);
    CUDA_CHECK_LAUNCH();
    dim3 grid((unsigned)(p.B * p.NH), cuda_ceil_div(p.T, FLASH_BR));
    flash_allow_smem(flash_bwd_dkv_kernel<HS>, flash_dkv_smem<HS>(), &dkv_set);
    flash_bwd_dkv_kernel<HS><<<grid, FLASH_THREADS, flash_dkv_smem<HS>(), s>>>(p);
    CUDA_CHECK_LAUNCH();
    flash_allow_smem(flash_bwd_dq_kernel<HS>, flash_dq_smem<HS>(), &dq_set);
    dim3 dq_grid((unsigned)(p.B * p.NH), cuda_ceil_div(p.T, flash_dq_rows<HS>()));
    flash_bwd_dq_kernel<HS><<<dq_grid, FLASH_THREADS, flash_dq_smem<HS>(), s>>>(p);
    CUDA_CHECK_LAUNCH();
}

void cuda_flash_forward(void *out, float *lse, const void *qkv, int B, int T, int C, int NH,
                        cudaStream_t s) {
    if (B <= 0 || T <= 0) return;
    TS_ASSERT(cuda_flash_supported(TS_BF16, C, NH));
    flash_check_aligned(qkv, "qkv");
    flash_check_aligned(out, "out");
    flash_params p = flash_make_params(qkv, B, T, C, NH);
    p.out = (bf16 *)out;
    p.lse = lse;
    if (C / NH == 64)
        flash_forward_hs<64>(p, s);
    else
        flash_forward_hs<128>(p, s);
}

void cuda_flash_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                         const float *lse, int B, int T, int C, int NH, cudaStream_t s) {
    if (B <= 0 || T <= 0) return;
    TS_ASSERT(cuda_flash_supported(TS_BF16, C, NH));
    flash_check_aligned(qkv, "qkv");
    flash_check_aligned(dout, "dout");
    flash_check_aligned(out, "out");
    flash_check_aligned(dqkv, "dqkv");
    flash_params p = flash_make_params(qkv, B, T, C, NH);
    p.dout = (const bf16 *)dout;
    p.o = (const bf16 *)out;
    p.lse = (float *)lse;
    p.dqkv = (bf16 *)dqkv;
    const size_t dsum_bytes = (size_t)B * NH * T * sizeof(float);
    if (dsum_bytes > cuda_scratch_max()) {
        ts_fatal(TS_ERR_INTERNAL,
                 "flash attention backward needs %zu bytes of scratch (B=%d, T=%d, NH=%d) but "
                 "the backend has %zu",
                 dsum_bytes, B, T, NH, cuda_scratch_max());
    }
    p.dsum = (float *)cuda_scratch(dsum_bytes);
    if (C / NH == 64)
        flash_backward_hs<64>(p, s);
    else
        flash_backward_hs<128>(p, s);
}
