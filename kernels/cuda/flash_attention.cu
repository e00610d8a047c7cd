// flash_attention.cu — the backend's entry points to the flash-attention kernels
// (flash_attention.cuh, which also holds their launch configurations): bf16 activations, head
// size 64 or 128, any T. attention.cu decides when they are used.
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

// Kernels with more than 48 KB of dynamic shared memory must be allowed it, once per device: all
// of them, at backend creation (the largest, dQ at head size 128, takes 104 KB of an A100's 163).
template <typename K> static void flash_allow_smem(K kernel, int bytes) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

void cuda_flash_init(void) {
    flash_allow_smem(flash_fwd_kernel<64>, flash_fwd_smem<64>());
    flash_allow_smem(flash_fwd_kernel<128>, flash_fwd_smem<128>());
    flash_allow_smem(flash_bwd_dkv_kernel<64>, flash_dkv_smem<64>());
    flash_allow_smem(flash_bwd_dkv_kernel<128>, flash_dkv_smem<128>());
    flash_allow_smem(flash_bwd_dq_kernel<64>, flash_dq_smem<64>());
    flash_allow_smem(flash_bwd_dq_kernel<128>, flash_dq_smem<128>());
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

void cuda_flash_forward(cuda_ctx *cx, void *out, float *lse, const void *qkv, int B, int T, int C,
                        int NH) {
    if (B <= 0 || T <= 0) return;
    TS_ASSERT(cuda_flash_supported(TS_BF16, C, NH));
    flash_check_aligned(qkv, "qkv");
    flash_check_aligned(out, "out");
    flash_params p = flash_make_params(qkv, B, T, C, NH);
    p.out = (bf16 *)out;
    p.lse = lse;
    if (C / NH == 64)
        flash_launch_forward<64>(p, cx->stream);
    else
        flash_launch_forward<128>(p, cx->stream);
}

void cuda_flash_backward(cuda_ctx *cx, void *dqkv, const void *dout, const void *qkv,
                         const void *out, const float *lse, int B, int T, int C, int NH) {
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
    if (dsum_bytes > cuda_scratch_max(cx)) {
        ts_fatal(TS_ERR_INTERNAL,
                 "flash attention backward needs %zu bytes of scratch (B=%d, T=%d, NH=%d) but "
                 "the backend has %zu",
                 dsum_bytes, B, T, NH, cuda_scratch_max(cx));
    }
    p.dsum = (float *)cuda_scratch(cx, dsum_bytes);
    if (C / NH == 64)
        flash_launch_backward<64>(p, cx->stream);
    else
        flash_launch_backward<128>(p, cx->stream);
}
