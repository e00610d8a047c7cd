// harness.h — the one harness of the backend tests (test_backend_ops, and the CUDA training and
// flash tests): the backend under test taken from the registry by name and mode, skipping
// (exit 77) where this build or this host cannot run it; the CPU reference beside it; seeded
// inputs; bf16 rounding as a device stores it; and the check line every test prints.
//
// Check line: "  <what>  err 1.234e-06  (tol 1e-05)  ok" (or FAIL): the measured error next to
// its tolerance, so a run shows how close every check came (scripts/gpu-check collects the
// closest). A NaN error fails. Comparisons of a device backend against the CPU measure
// ||got - ref|| / ||ref|| over the whole tensor (harness_rel_err).
//
// Precision-independent: the CPU tests compiled in double (TESSERA_F64) use the checks and the
// generator; only code built in float dereferences the backends.
#ifndef TESSERA_TEST_HARNESS_H
#define TESSERA_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/common.h"
#include "base/rng.h"
#include "kernels/backend.h"

#define HARNESS_SKIP 77 // ctest's SKIP_RETURN_CODE: shown as skipped, never as passed

struct backend; // the float build's backend (kernels/backend.h)

typedef struct {
    const char *name;          // the backend under test, as the registry names it
    ts_dtype mode;             // its activations and compute parameters: TS_F32 or TS_BF16
    const struct backend *dev; // the backend under test
    const struct backend *cpu; // the reference: the CPU backend
    int checks, failures;
} harness;

// ---- the backends -----------------------------------------------------------------------------
// A fresh harness (no backend yet): for tests that make their own.
void harness_init(harness *h);
// The registry's backend `name` in mode `mode_arg` ("f32" or "bf16"), and the CPU backend as the
// reference. 0: ready; HARNESS_SKIP after a "SKIP:" line when this build lacks the backend or this
// host has no device for it; 1 after an error line (bad mode, creation failed).
int harness_start(harness *h, const char *name, const char *mode_arg, const char *test);
// Destroy the backends harness_start made.
void harness_stop(harness *h);
// The final line ("PASS: test (label): N checks" or "FAIL: ...: k of N checks failed") and the
// exit status: 0 when every check passed, 1 otherwise.
int harness_finish(const harness *h, const char *test, const char *label);

// ---- checks -----------------------------------------------------------------------------------
// One check line; counts the check, and a failure when err > tol or err is NaN. Returns 1 when
// the check passed, 0 when it failed.
int harness_check_err(harness *h, const char *what, double err, double tol);
// ||got - ref|| / ||ref|| (absolute when ref is 0); NaN when a value is not finite
double harness_rel_err(const float *got, const float *ref, size_t n);
int harness_check_close(harness *h, const char *what, const float *got, const float *ref, size_t n,
                        double tol);

// ---- inputs -----------------------------------------------------------------------------------
// splitmix64 (base/rng.h); uniform in [lo, hi) rounded to float, so that float and double runs,
// and the host and a device, share exact inputs
static inline uint64_t harness_rng_next(uint64_t *s) { return rng_next(s); }
static inline double harness_rng_uniform(uint64_t *s, double lo, double hi) {
    double u = (double)(harness_rng_next(s) >> 11) * 0x1p-53;
    return (double)(float)(lo + (hi - lo) * u);
}
static inline int harness_rng_int(uint64_t *s, int n) {
    return (int)(harness_rng_next(s) % (uint64_t)n);
}

// float -> nearest bf16 (ties to even), as a float: what a device stores for x
static inline float harness_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u); // finite: round
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
// x as the backend under test holds an activation
static inline float harness_round_act(const harness *h, float x) {
    return h->mode == TS_BF16 ? harness_round_bf16(x) : x;
}

#endif
