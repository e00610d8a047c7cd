// codec_kernels.cu — the C interface (codec_cuda.h) to the gradient codecs' kernels
// (codec_kernels.cuh, which also holds their launch code): checks the arguments and launches.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"

#include "kernels/cuda/codec_cuda.h"
#include "kernels/cuda/codec_kernels.cuh"

static void codec_check_bits(int bits, const char *what) {
    if (bits != 8 && bits != 4 && bits != 2)
        ts_fatal(TS_ERR_INTERNAL, "%s: %d bits (expected 8, 4 or 2)", what, bits);
}

size_t cuda_codec_blockq_payload_bytes(int bits, size_t count) {
    codec_check_bits(bits, "cuda_codec_blockq_payload_bytes");
    return codec_cuda_blockq_bytes(bits, count);
}

void cuda_codec_blockq_encode(int bits, const float *grad, float *residual, size_t count,
                              void *payload, cudaStream_t stream) {
    codec_check_bits(bits, "cuda_codec_blockq_encode");
    codec_launch_blockq_quantize(bits, grad, residual, count, (unsigned char *)payload, stream);
}

void cuda_codec_blockq_decode_add(int bits, const void *payload, size_t count, float *grad,
                                  cudaStream_t stream) {
    codec_check_bits(bits, "cuda_codec_blockq_decode_add");
    codec_launch_blockq_decode_add(bits, (const unsigned char *)payload, count, grad, stream);
}

size_t cuda_codec_topk_scratch_bytes(size_t count, size_t k, int value_bits) {
    return codec_topk_scratch_bytes(count, k, value_bits);
}

void cuda_codec_topk_encode(const float *grad, float *residual, size_t count, size_t k,
                            int value_bits, uint32_t *indices, void *values, void *scratch,
                            cudaStream_t stream) {
    if ((value_bits != 32 && value_bits != 2) || count > CODEC_TOPK_MAX_N ||
        (count > 0 && (k < 1 || k > count)))
        ts_fatal(TS_ERR_INTERNAL,
                 "cuda_codec_topk_encode: k = %zu of %zu values of %d bits (expected 1 <= k <= "
                 "count <= 2^31, 32 or 2 bits)",
                 k, count, value_bits);
    if (((uintptr_t)scratch & 3) != 0)
        ts_fatal(TS_ERR_INTERNAL, "cuda_codec_topk_encode: scratch at %p is not 4-byte aligned",
                 scratch);
    codec_launch_topk_encode(grad, residual, count, k, value_bits, indices, values, scratch,
                             stream);
}
