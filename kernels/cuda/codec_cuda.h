// codec_cuda.h — the gradient codecs' encode and decode on the GPU (C interface; the kernels are
// in codec_kernels.cuh, launched by codec_kernels.cu).
//
// What they compute: exactly what the host codecs compute (collectives/codec_blockq.c,
// collectives/codec_topk.c), bit for bit, on device memory:
//   - block quantization (int8, int4, int2): x = grad + residual per value; per block of 64
//     values an fp32 scale max|x| / qmax and codes round(x / scale) (halves away from zero); the
//     payload in the host's layout (scales, then the packed codes), the residual x - q scale (0 in
//     a block with a value that is not finite, whose scale is NaN); and the decode, which adds a
//     payload's values into a gradient;
//   - top-k: x = grad + residual; the k values of largest |x| (ties to the lower index, values
//     that are not finite first) by a radix select over the bits of |x|, their indices in
//     increasing order and their values (fp32, or int2's payload of them), and the residual
//     (a sent value leaves what its decoding lost, an unsent one x, one that is not finite 0).
//     The rest of the top-k payload (header, indices as LEB128 varints, zstd) is packing of a few
//     kilobytes to megabytes and stays on the host, in codec_topk.c.
//
// Status: proven under emulation only. tests/emu/test_codec_emu.cc runs these kernels and their
// launch code on CPU threads (one per GPU thread, shuffles and barriers as rendezvous) and
// compares every byte of the payload and every bit of the residual with the host codec, on
// sizes from 1 to 100003, values that are not finite, zeros, ties and rounding halves. The same
// comparison on the hardware is tests/gpu/test_cuda_codec.c (label gpu), which has still to be
// run on a GPU, to confirm the device's rounding (the kernels use only correctly rounded
// operations: __fadd_rn, __fsub_rn, __fmul_rn, __fdiv_rn, roundf) and to measure time. One
// known difference, by design: where a decoded sum or an fp32 top-k value is NaN, a GPU writes
// its canonical NaN (0x7fffffff) where the host keeps another NaN's bits; both are NaN, which is
// all the trainer's non-finite check looks at.
//
// Not used by training yet: the reducer hands the codec host memory (collectives/codec.h), and
// encodes after the gradients were copied from the device. Plugging these in means encoding
// before that copy, so that only the payload crosses PCIe (an int8 payload is 26% of the fp32
// bytes, top-k at 1% about 1.3%): the CUDA backend would encode each bucket on its stream into a
// device payload buffer (the residual living on the device, saved and loaded by the codec's
// checkpoint hooks through a copy), copy the payload to the host, and the codec seam would take
// the encoded bucket instead of encoding it (for top-k, the host packs the indices and values
// the device chose). Decoding stays where the payloads arrive (the host) unless the sum is
// copied back to the device, when cuda_codec_blockq_decode_add can accumulate there.
//
// Every function enqueues on `stream` and returns at once; pointers are device memory. Sizes:
// the host codec's (codec_blockq_payload_bytes, codec_topk_k); bits and k out of range are a
// bug (fatal, TS_ERR_INTERNAL).
#ifndef TESSERA_CODEC_CUDA_H
#define TESSERA_CODEC_CUDA_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// bytes of a block-quantized payload of `count` values of `bits` (8, 4, 2) bits:
// 4 ceil(count / 64) + ceil(count bits / 8)
size_t cuda_codec_blockq_payload_bytes(int bits, size_t count);

// x = grad + residual (grad NULL: x = residual) quantized to `bits` into payload
// (cuda_codec_blockq_payload_bytes); residual[0 .. count) becomes what the codes lost
void cuda_codec_blockq_encode(int bits, const float *grad, float *residual, size_t count,
                              void *payload, cudaStream_t stream);

// grad[0 .. count) += the values of a payload of `count` values of `bits` bits
void cuda_codec_blockq_decode_add(int bits, const void *payload, size_t count, float *grad,
                                  cudaStream_t stream);

// scratch bytes for cuda_codec_topk_encode of k of count values (about 4 k with int2 values,
// plus 8 KB, plus 1 byte per 256 values)
size_t cuda_codec_topk_scratch_bytes(size_t count, size_t k, int value_bits);

// x = grad + residual; of its count values (count <= 2^31) the k (1 <= k <= count; nothing for
// count 0) of largest |x|: indices[0 .. k) increasing; values: their x (value_bits 32: k floats)
// or int2's payload of them (value_bits 2: cuda_codec_blockq_payload_bytes(2, k) bytes);
// residual[0 .. count) becomes the error feedback. scratch: cuda_codec_topk_scratch_bytes.
void cuda_codec_topk_encode(const float *grad, float *residual, size_t count, size_t k,
                            int value_bits, uint32_t *indices, void *values, void *scratch,
                            cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
