// test_cuda_codec.c — the gradient codecs' kernels on the GPU (kernels/cuda/codec_cuda.h)
// against the host codecs, bit for bit, on the cases of tests/emu/codec_cases.h (the same the
// emulated test runs, with the sizes in the hundred thousands).
//
//   test_cuda_codec       exit 0: all checks pass, 1: a check failed, 77: no CUDA device
//                         (skipped, never "passed")
//
// Each kernel call copies its inputs to fresh device buffers (the payload and value buffers
// prefilled from the host, so that a byte the kernel leaves unwritten, or one it writes past the
// end, shows), runs on the default stream, and copies everything back. NaN sums are compared as
// NaN only (the GPU's canonical NaN; see codec_cases.h).
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/codec_cuda.h"
#include "tests/emu/codec_cases.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "test_cuda_codec: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,         \
                    cudaGetErrorString(err_));                                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *to_device(const void *host, size_t bytes) {
    void *d = NULL;
    CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    if (host && bytes) CHECK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
}

static void to_host(void *host, void *d, size_t bytes) {
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaGetLastError());
    if (bytes) CHECK(cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost));
    CHECK(cudaFree(d));
}

static void gpu_blockq_encode(void *ctx, int bits, const float *grad, float *res, size_t n,
                              unsigned char *payload) {
    (void)ctx;
    const size_t bytes = cuda_codec_blockq_payload_bytes(bits, n) + CODEC_CASES_GUARD;
    float *dg = to_device(grad, n * 4), *dr = to_device(res, n * 4);
    void *dp = to_device(payload, bytes);
    cuda_codec_blockq_encode(bits, dg, dr, n, dp, 0);
    to_host(res, dr, n * 4);
    to_host(payload, dp, bytes);
    CHECK(cudaFree(dg));
}

static void gpu_blockq_decode_add(void *ctx, int bits, const unsigned char *payload, size_t n,
                                  float *grad) {
    (void)ctx;
    void *dp = to_device(payload, cuda_codec_blockq_payload_bytes(bits, n));
    float *dg = to_device(grad, n * 4);
    cuda_codec_blockq_decode_add(bits, dp, n, dg, 0);
    to_host(grad, dg, n * 4);
    CHECK(cudaFree(dp));
}

static void gpu_topk_encode(void *ctx, const float *grad, float *res, size_t n, size_t k, int bits,
                            uint32_t *idx, void *values) {
    (void)ctx;
    const size_t vbytes =
        (bits == 2 ? cuda_codec_blockq_payload_bytes(2, k) : 4 * k) + CODEC_CASES_GUARD;
    const size_t ibytes = 4 * k + CODEC_CASES_GUARD;
    float *dg = to_device(grad, n * 4), *dr = to_device(res, n * 4);
    uint32_t *di = to_device(idx, ibytes);
    void *dv = to_device(values, vbytes);
    void *scratch = to_device(NULL, cuda_codec_topk_scratch_bytes(n, k, bits));
    cuda_codec_topk_encode(dg, dr, n, k, bits, di, dv, scratch, 0);
    to_host(res, dr, n * 4);
    to_host(idx, di, ibytes);
    to_host(values, dv, vbytes);
    CHECK(cudaFree(dg));
    CHECK(cudaFree(scratch));
}

// Time (not a check): encode of a bucket of n values, the mean of 10 runs after a warm-up, and
// what it moves (grad and residual read, residual written, payload or choice written).
static void time_encode(size_t n) {
    float *g = to_device(NULL, n * 4), *r = to_device(NULL, n * 4);
    CHECK(cudaMemset(g, 0, n * 4));
    CHECK(cudaMemset(r, 0, n * 4));
    const size_t k = n / 100;
    void *p = to_device(NULL, cuda_codec_blockq_payload_bytes(8, n)), *v = to_device(NULL, 4 * k);
    uint32_t *idx = to_device(NULL, 4 * k);
    void *scratch = to_device(NULL, cuda_codec_topk_scratch_bytes(n, k, 32));
    cudaEvent_t t0, t1;
    CHECK(cudaEventCreate(&t0));
    CHECK(cudaEventCreate(&t1));
    for (int which = 0; which < 2; which++) {
        float ms = 0;
        for (int rep = 0; rep < 11; rep++) {
            if (rep == 1) CHECK(cudaEventRecord(t0, 0));
            if (which == 0)
                cuda_codec_blockq_encode(8, g, r, n, p, 0);
            else
                cuda_codec_topk_encode(g, r, n, k, 32, idx, v, scratch, 0);
        }
        CHECK(cudaEventRecord(t1, 0));
        CHECK(cudaEventSynchronize(t1));
        CHECK(cudaEventElapsedTime(&ms, t0, t1));
        ms /= 10;
        printf("time: %s encode of %zu values: %.3f ms, %.0f GB/s of grad + residual\n",
               which ? "topk (1%, fp32)" : "int8", n, ms, 12.0 * (double)n / (ms * 1e6));
    }
    CHECK(cudaEventDestroy(t0));
    CHECK(cudaEventDestroy(t1));
    void *bufs[6] = {g, r, p, v, idx, scratch};
    for (int i = 0; i < 6; i++)
        CHECK(cudaFree(bufs[i]));
}

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("SKIP: test_cuda_codec: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    codec_device dev = {gpu_blockq_encode, gpu_blockq_decode_add, gpu_topk_encode, NULL, 0};
    const int failed = codec_cases_run(&dev, 1);
    time_encode((size_t)1 << 24); // 64 MB of fp32 gradient
    printf("%s: test_cuda_codec (gpu)\n", failed ? "FAIL" : "PASS");
    return failed ? 1 : 0;
}
