// gpu_attn_bench.c — causal attention forward and forward+backward on the CUDA backend (bf16).
//
//   gpu_attn_bench [--batch 32] [--seq-len 1024] [--heads 12] [--head-size 64] [--iters 20]
//                  [--warmup 3] [--impl flash|simple]
//
// The op as the model calls it: qkv (B,T,3C) in, out (B,T,C), then the backward into dqkv with
// the saved state. --impl picks the kernel (TESSERA_ATTENTION, see docs/environment.md): flash
// (the default for bf16 and head size 64 or 128) or simple (batched GEMMs + softmax over the
// full T x T scores). Each iteration is timed with a synchronize after it, so the figures are
// wall time including launches. FLOPs counted as in the FlashAttention papers: the causal
// forward does 2 products of B*NH*T*T*HS/2 multiply-adds each (4 B NH T^2 HS / 2 flops), the
// backward 2.5 times that. Progress on stderr, one JSON object on stdout; the PyTorch peer is
// bench/gpu_attn_torch.py (same shapes, same layout, SDPA with the flash backend).
//
// Exit: 0; 2 bad arguments; 77 no CUDA device.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "kernels/cuda/backend_cuda.h"

int main(int argc, char **argv) {
    log_init(0, 1);
    int B = 32, T = 1024, NH = 12, HS = 64, iters = 20, warmup = 3;
    const char *impl = "flash";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--batch"))
            rc = bench_parse_int(a, v, 1, &B);
        else if (!strcmp(a, "--seq-len"))
            rc = bench_parse_int(a, v, 1, &T);
        else if (!strcmp(a, "--heads"))
            rc = bench_parse_int(a, v, 1, &NH);
        else if (!strcmp(a, "--head-size"))
            rc = bench_parse_int(a, v, 8, &HS);
        else if (!strcmp(a, "--iters"))
            rc = bench_parse_int(a, v, 1, &iters);
        else if (!strcmp(a, "--warmup"))
            rc = bench_parse_int(a, v, 0, &warmup);
        else if (!strcmp(a, "--impl") && v && (!strcmp(v, "flash") || !strcmp(v, "simple")))
            impl = v;
        else {
            log_error("gpu_attn_bench: unknown or incomplete option '%s' (see the header of "
                      "bench/gpu_attn_bench.c)",
                      a);
            return TS_EXIT_INPUT;
        }
        if (rc) return TS_EXIT_INPUT;
        i++;
    }
    if (backend_cuda_device_count() == 0) {
        fprintf(stderr, "gpu_attn_bench: no CUDA device: nothing measured\n");
        return 77;
    }
    setenv("TESSERA_ATTENTION", impl, 1);
    const backend *be;
    if (backend_cuda_create(&be, TS_BF16, 0) != TS_OK) return TS_EXIT_INPUT;

    const int C = NH * HS;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C;
    const size_t state = be->attention_state_bytes(be, B, T, C, NH);
    // what the backend took (flash keeps B*NH*T floats): flash falls back for other head sizes
    impl = state == (size_t)B * NH * T * sizeof(float) ? "flash" : "simple";
    real *host = malloc(nqkv * sizeof(real));
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < nqkv; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        host[i] = (real)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
    }
    void *qkv = be->alloc(be, nqkv * 2), *out = be->alloc(be, nout * 2),
         *dout = be->alloc(be, nout * 2);
    void *dqkv = be->alloc(be, nqkv * 2), *st = be->alloc(be, state);
    be->act_to_device(be, qkv, host, nqkv);
    be->act_to_device(be, dout, host, nout);
    fprintf(stderr,
            "gpu_attn_bench: %s attention on %s, B=%d T=%d NH=%d HS=%d, state %.1f MiB, %d "
            "warm-up + %d timed iterations\n",
            impl, be->device, B, T, NH, HS, state / 1048576.0, warmup, iters);

    double *fwd = calloc((size_t)iters, sizeof(double)),
           *both = calloc((size_t)iters, sizeof(double));
    for (int it = 0; it < warmup + iters; it++) {
        be->synchronize(be);
        double t0 = ts_now();
        be->attention_forward(be, out, st, qkv, B, T, C, NH);
        be->synchronize(be);
        double t1 = ts_now();
        be->attention_backward(be, dqkv, dout, qkv, out, st, B, T, C, NH);
        be->synchronize(be);
        double t2 = ts_now();
        if (it >= warmup) {
            fwd[it - warmup] = (t1 - t0) * 1e3;
            both[it - warmup] = (t2 - t0) * 1e3;
        }
    }
    const double fwd_ms = bench_median(fwd, iters), both_ms = bench_median(both, iters);
    const double fwd_flops = 4.0 * B * NH * (double)T * T * HS / 2, both_flops = 3.5 * fwd_flops;
    fprintf(stderr,
            "gpu_attn_bench: forward %.3f ms (%.1f TFLOP/s), forward+backward %.3f ms (%.1f "
            "TFLOP/s)\n",
            fwd_ms, fwd_flops / fwd_ms / 1e9, both_ms, both_flops / both_ms / 1e9);
    printf("{\"impl\": \"tessera-%s\", \"device\": \"%s\", \"batch\": %d, \"seq_len\": %d, "
           "\"heads\": %d, \"head_size\": %d, \"iters\": %d, \"ms_forward\": %.4f, "
           "\"ms_forward_backward\": %.4f, \"tflops_forward\": %.2f, "
           "\"tflops_forward_backward\": %.2f}\n",
           impl, be->device, B, T, NH, HS, iters, fwd_ms, both_ms, fwd_flops / fwd_ms / 1e9,
           both_flops / both_ms / 1e9);
    be->free(be, qkv), be->free(be, out), be->free(be, dout), be->free(be, dqkv), be->free(be, st);
    free(host), free(fwd), free(both);
    be->destroy(be);
    return 0;
}
