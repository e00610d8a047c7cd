// test_codec_emu.cc — the gradient codecs' kernels (kernels/cuda/codec_kernels.cuh), compiled
// for the host against the emulated primitives (emu_prims.h) and launched by their own launch
// code, compared bit for bit with the host codecs (collectives/codec_blockq.c, codec_topk.c) on
// the cases of codec_cases.h.
//
//   test_codec_emu [small]     small: without the sizes in the hundred thousands
//
// Grids: the launchers' own, capped at 4 blocks (run in a shuffled order), so that small sizes
// get the grids they get on the GPU and from a few thousand values on every grid-stride loop
// takes several turns (and the test stays fast: an emulated block costs milliseconds).
#include "tests/emu/emu_prims.h"

#include "kernels/cuda/codec_kernels.cuh"

#include "tests/emu/codec_cases.h"

#include <chrono>
#include <vector>

static_assert(CODEC_CUDA_BLOCK == CODEC_BLOCKQ_BLOCK, "the kernels' block is the host codec's");

namespace {

const unsigned EMU_BLOCKS = 4; // the grid cap

void emu_blockq_encode(void *, int bits, const float *grad, float *res, size_t n,
                       unsigned char *payload) {
    codec_launch_blockq_quantize(bits, grad, res, n, payload, nullptr, EMU_BLOCKS);
}

void emu_blockq_decode_add(void *, int bits, const unsigned char *payload, size_t n, float *grad) {
    codec_launch_blockq_decode_add(bits, payload, n, grad, nullptr, EMU_BLOCKS);
}

void emu_topk_encode(void *, const float *grad, float *res, size_t n, size_t k, int bits,
                     uint32_t *idx, void *values) {
    // scratch as the GPU leaves it: garbage (the kernels clear what they count in)
    std::vector<uint32_t> scratch(codec_topk_scratch_bytes(n, k, bits) / 4, 0x7f7f7f7fu);
    codec_launch_topk_encode(grad, res, n, k, bits, idx, values, scratch.data(), nullptr,
                             EMU_BLOCKS);
}

} // namespace

int main(int argc, char **argv) {
    const bool big = !(argc > 1 && strcmp(argv[1], "small") == 0);
    if (argc > 1 && big) {
        fprintf(stderr, "usage: test_codec_emu [small]\n");
        return 2;
    }
    const auto t0 = std::chrono::steady_clock::now();
    // the launchers' payload size is the host codec's
    for (int bits = 2; bits <= 8; bits *= 2)
        for (size_t n = 0; n < 1000; n++)
            if (codec_cuda_blockq_bytes(bits, n) != codec_blockq_payload_bytes(bits, n)) {
                printf("FAIL: %zu values of %d bits: %zu payload bytes, the host codec's %zu\n", n,
                       bits, codec_cuda_blockq_bytes(bits, n), codec_blockq_payload_bytes(bits, n));
                return 1;
            }
    codec_device dev = {emu_blockq_encode, emu_blockq_decode_add, emu_topk_encode, nullptr, 1};
    const int failed = codec_cases_run(&dev, big);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%s (%.1f s)\n", failed ? "FAILED" : "all ok", secs);
    return failed ? 1 : 0;
}
