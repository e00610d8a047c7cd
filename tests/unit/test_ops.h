// test_ops.h — declarations shared by the op tests: test_ops.c (float, main),
// test_ops_run.c (compiled in float and in double) and test_ops_grad.c (double only).
//
// This header is precision-independent: results cross the float/double boundary as double
// arrays, so one translation unit can compare both builds of the kernels.
#ifndef TESSERA_TEST_OPS_H
#define TESSERA_TEST_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    int B, T, C, NH; // attention / activations (B,T,C), NH heads
    int OC;          // matmul output width
    int V, Vp;       // classifier classes, padded row length
    int maxT;        // rows of the position table (>= T)
} ops_shape;

#define OPS_MAX_RESULTS 48

// one output of one op, converted to double
typedef struct {
    const char *name; // "layernorm.dinp"
    double *data;
    size_t n;
} ops_result;

// Runs every op forward and backward at `shape` on inputs drawn from `seed` (values rounded to
// float, so both builds see the same numbers). Returns the number of results written to res.
int ops_run_all(const ops_shape *shape, uint64_t seed, ops_result *res);
int ops_run_all_f64(const ops_shape *shape, uint64_t seed, ops_result *res);

// Forward ops against direct references computed in double in the test, and the direct checks
// of adamw, sum_squares, scale, add, classifier and the memory ops. Returns failures.
int ops_check_reference(void);
int ops_check_reference_f64(void);

// Finite-difference check of every backward op in double, with its negative controls.
// Returns failures.
int ops_check_gradients_f64(void);

static inline void ops_results_free(ops_result *res, int n) {
    for (int i = 0; i < n; i++)
        free(res[i].data);
}

// splitmix64: a small deterministic generator, identical in every translation unit
static inline uint64_t ops_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// uniform in [lo, hi), rounded to float so that float and double runs share exact inputs
static inline double ops_rng_uniform(uint64_t *s, double lo, double hi) {
    double u = (double)(ops_rng_next(s) >> 11) * 0x1p-53;
    return (double)(float)(lo + (hi - lo) * u);
}

static inline int ops_rng_int(uint64_t *s, int n) { return (int)(ops_rng_next(s) % (uint64_t)n); }

#endif
