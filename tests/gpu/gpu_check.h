// gpu_check.h — what the GPU tests share: choosing the CUDA backend's mode from the command
// line, skipping (exit 77) on a machine without a device, host-side bf16 rounding, a seeded
// generator and the error measure every check prints.
//
// Error measure: ||got - ref|| / ||ref|| over the whole tensor (absolute when ref is all zero);
// a non-finite value in either fails the check. Each check prints one line with the measured
// error and its tolerance, so a run on the GPU machine shows how close every op came.
#ifndef TESSERA_GPU_CHECK_H
#define TESSERA_GPU_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backend.h"
#include "kernels/cuda/backend_cuda.h"

#define GPU_EXIT_SKIP 77

typedef struct {
    ts_dtype mode;      // TS_F32 or TS_BF16: the CUDA backend's activations and parameters
    const backend *gpu; // the CUDA backend in that mode
    const backend *cpu; // the reference
    int checks, failures;
} gpu_ctx;

// Parse argv[1] ("f32" or "bf16"), skip without a device (returns GPU_EXIT_SKIP after a line
// saying so), create the backend (returns 1 when that fails). 0: ready.
int gpu_check_start(gpu_ctx *g, int argc, char **argv, const char *usage);

// Final line and exit status: 0 when every check passed, 1 otherwise.
int gpu_check_finish(const gpu_ctx *g, const char *test);

// float -> nearest bf16 (ties to even), as a float; what the device stores for x
static inline float gpu_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u); // finite: round
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

// x as the backend's activation type holds it
static inline float gpu_round_act(const gpu_ctx *g, float x) {
    return g->mode == TS_BF16 ? gpu_round_bf16(x) : x;
}

// splitmix64 (base/rng.h) and uniform floats in [lo, hi)
static inline uint64_t gpu_rng_next(uint64_t *s) { return rng_next(s); }
static inline float gpu_rng_uniform(uint64_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(gpu_rng_next(s) >> 11) * 0x1p-53);
}
static inline int gpu_rng_int(uint64_t *s, int n) { return (int)(gpu_rng_next(s) % (uint64_t)n); }

// ||got - ref|| / ||ref|| (absolute when ref is 0); NaN when a value is not finite
double gpu_rel_err(const float *got, const float *ref, size_t n);

// One check line "  what  rel 1.2e-06 (tol 1e-05) ok"; counts a failure when err > tol or NaN.
int gpu_check_err(gpu_ctx *g, const char *what, double err, double tol);
int gpu_check_close(gpu_ctx *g, const char *what, const float *got, const float *ref, size_t n,
                    double tol);

#endif
