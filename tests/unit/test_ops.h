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

#include "base/rng.h"

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

static inline uint64_t ops_rng_next(uint64_t *s) { return rng_next(s); }

// uniform in [lo, hi), rounded to float so that float and double runs share exact inputs
static inline double ops_rng_uniform(uint64_t *s, double lo, double hi) {
    double u = (double)(ops_rng_next(s) >> 11) * 0x1p-53;
    return (double)(float)(lo + (hi - lo) * u);
}

static inline int ops_rng_int(uint64_t *s, int n) { return (int)(ops_rng_next(s) % (uint64_t)n); }

#endif
