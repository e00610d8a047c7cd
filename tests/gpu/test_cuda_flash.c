// test_cuda_flash.c — the flash-attention kernels on the GPU against the CPU backend.
//
//   test_cuda_flash bf16 [T:HS:B:NH ...]    exit 0: all checks pass, 1: a check failed,
//                                           77: no CUDA device (skipped, never "passed")
//
// The CUDA backend in bf16 mode takes the flash kernels for head sizes 64 and 128 (attention.cu);
// this test runs its attention op at T = 64, 256, 1024 and 1000 (not a multiple of the 64-row
// tile) for both head sizes, and once with 48 heads' worth of blocks (several waves), on inputs
// rounded to bf16 and given to the CPU (fp32) as those rounded numbers. Checks per shape, as ||gpu
// - cpu|| / ||cpu||:
//   out                    1e-2   one bf16 rounding of P before P V, one of the output (2^-9 each)
//   dq, dk, dv (each)      2e-2   P and dS rounded to bf16 before their products, bf16 outputs
//   += into dqkv           1e-2   a second backward without zeroing gives twice the first
//   repeat                 0      a backward from zero again: the same bits (no atomics)
// The state the forward saves is checked by its size (B*NH*T fp32, the log-sum-exp) and
// through the backward, which reads nothing else of the forward but its output. The same
// kernels run on the CPU in test_flash_emu (tests/emu/), against a double reference.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ops/harness.h"

static harness G;
static uint64_t RNG = 0xf1a5ba11u;

static float *rand_host(size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = harness_round_bf16((float)harness_rng_uniform(&RNG, lo, hi));
    return x;
}

// part `which` (0 q, 1 k, 2 v) of a (B*T, 3C) tensor, as a contiguous copy
static float *part(const float *x, size_t rows, int C, int which) {
    float *p = malloc(rows * C * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        memcpy(p + r * C, x + r * 3 * C + (size_t)which * C, C * sizeof(float));
    return p;
}

static void check_shape(int T, int HS, int B, int NH) {
    const int C = NH * HS;
    const size_t rows = (size_t)B * T, nqkv = rows * 3 * C, nout = rows * C;
    char name[96];
    printf("[bf16] attention T=%d HS=%d B=%d NH=%d\n", T, HS, B, NH);

    float *h_qkv = rand_host(nqkv, -1.5f, 1.5f), *h_dout = rand_host(nout, -1.0f, 1.0f);
    // the CPU reference
    const backend *cpu = G.cpu, *gpu = G.dev;
    float *c_qkv = cpu->alloc(cpu, nqkv * 4), *c_dout = cpu->alloc(cpu, nout * 4);
    float *c_out = cpu->alloc(cpu, nout * 4), *c_dqkv = cpu->alloc(cpu, nqkv * 4);
    void *c_state = cpu->alloc(cpu, cpu->attention_state_bytes(cpu, B, T, C, NH));
    memcpy(c_qkv, h_qkv, nqkv * 4);
    memcpy(c_dout, h_dout, nout * 4);
    cpu->attention_forward(cpu, c_out, c_state, c_qkv, B, T, C, NH);
    cpu->attention_backward(cpu, c_dqkv, c_dout, c_qkv, c_out, c_state, B, T, C, NH);

    // the GPU
    const size_t state = gpu->attention_state_bytes(gpu, B, T, C, NH);
    snprintf(name, sizeof name, "state bytes (B*NH*T*4 = %zu)", (size_t)B * NH * T * 4);
    harness_check_err(&G, name, fabs((double)state - (double)B * NH * T * 4), 0);
    void *g_qkv = gpu->alloc(gpu, nqkv * 2), *g_dout = gpu->alloc(gpu, nout * 2);
    void *g_out = gpu->alloc(gpu, nout * 2), *g_dqkv = gpu->alloc(gpu, nqkv * 2),
         *g_state = gpu->alloc(gpu, state);
    gpu->act_to_device(gpu, g_qkv, h_qkv, nqkv);
    gpu->act_to_device(gpu, g_dout, h_dout, nout);
    gpu->attention_forward(gpu, g_out, g_state, g_qkv, B, T, C, NH);
    float *out = malloc(nout * 4), *dqkv = malloc(nqkv * 4), *twice = malloc(nqkv * 4);
    gpu->act_to_host(gpu, out, g_out, nout);
    harness_check_close(&G, "out", out, c_out, nout, 1e-2);

    gpu->attention_backward(gpu, g_dqkv, g_dout, g_qkv, g_out, g_state, B, T, C, NH);
    gpu->act_to_host(gpu, dqkv, g_dqkv, nqkv);
    static const char *parts[3] = {"dq", "dk", "dv"};
    for (int w = 0; w < 3; w++) {
        float *got = part(dqkv, rows, C, w), *ref = part(c_dqkv, rows, C, w);
        harness_check_close(&G, parts[w], got, ref, nout, 2e-2);
        free(got), free(ref);
    }

    // bits of the first backward, then += and a repeat from zero
    unsigned short *bits = malloc(nqkv * 2), *bits2 = malloc(nqkv * 2);
    gpu->to_host(gpu, bits, g_dqkv, nqkv * 2);
    gpu->attention_backward(gpu, g_dqkv, g_dout, g_qkv, g_out, g_state, B, T, C, NH);
    gpu->act_to_host(gpu, twice, g_dqkv, nqkv);
    for (size_t i = 0; i < nqkv; i++)
        dqkv[i] *= 2;
    harness_check_close(&G, "second backward: += (twice the first)", twice, dqkv, nqkv, 1e-2);
    gpu->zero(gpu, g_dqkv, nqkv * 2);
    gpu->attention_backward(gpu, g_dqkv, g_dout, g_qkv, g_out, g_state, B, T, C, NH);
    gpu->to_host(gpu, bits2, g_dqkv, nqkv * 2);
    size_t differ = 0;
    for (size_t i = 0; i < nqkv; i++)
        differ += bits[i] != bits2[i];
    harness_check_err(&G, "repeat from zero: elements with different bits", (double)differ, 0);

    gpu->free(gpu, g_qkv), gpu->free(gpu, g_dout), gpu->free(gpu, g_out), gpu->free(gpu, g_dqkv),
        gpu->free(gpu, g_state);
    cpu->free(cpu, c_qkv), cpu->free(cpu, c_dout), cpu->free(cpu, c_out), cpu->free(cpu, c_dqkv),
        cpu->free(cpu, c_state);
    free(h_qkv), free(h_dout), free(out), free(dqkv), free(twice), free(bits), free(bits2);
}

int main(int argc, char **argv) {
    int rc = harness_start(&G, "cuda", argc > 1 ? argv[1] : NULL, argv[0]);
    if (rc) return rc; // HARNESS_SKIP without a device, 1 on a bad mode
    if (G.mode != TS_BF16) {
        log_error("test_cuda_flash: the flash kernels are bf16 only: run it as 'test_cuda_flash "
                  "bf16'");
        return 1;
    }
    if (argc > 2) {
        for (int i = 2; i < argc; i++) {
            int T, HS, B, NH;
            if (sscanf(argv[i], "%d:%d:%d:%d", &T, &HS, &B, &NH) != 4 || T < 1 || B < 1 || NH < 1 ||
                (HS != 64 && HS != 128)) {
                log_error("test_cuda_flash: bad shape '%s': expected T:HS:B:NH with HS 64 or 128",
                          argv[i]);
                return 1;
            }
            check_shape(T, HS, B, NH);
        }
    } else {
        static const int shapes[][4] = {{64, 64, 3, 4},    {256, 64, 2, 3},   {1024, 64, 2, 2},
                                        {1000, 64, 1, 3},  {64, 128, 2, 2},   {256, 128, 2, 2},
                                        {1024, 128, 1, 2}, {1000, 128, 1, 2}, {1, 64, 2, 2},
                                        {1024, 64, 4, 12}}; // many waves of blocks
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
    }
    return harness_finish(&G, "test_cuda_flash", ts_dtype_name(G.mode));
}
