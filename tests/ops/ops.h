// ops.h — what the parts of test_backend_ops share: the CPU checks (ops_ref.c, compiled in float
// and in double; ops_grad.c, double only), the comparison of a device backend with the CPU
// (ops_compare.c), and the program that runs them (test_backend_ops.c).
//
// Precision-independent: results cross the float/double boundary as double arrays, so one
// translation unit can compare both builds of the kernels; the backends are passed as the
// incomplete struct types of each build.
#ifndef TESSERA_TEST_OPS_H
#define TESSERA_TEST_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tests/ops/harness.h"

struct backend;     // the float build's backend
struct backend_f64; // the double build's

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

// ---- the CPU backend (ops_ref.c, ops_grad.c) ---------------------------------------------------
// Runs every op forward and backward on `be` at `shape` on inputs drawn from `seed` (values
// rounded to float, so both builds see the same numbers). Returns the number of results written
// to res.
int ops_run_all(const struct backend *be, const ops_shape *shape, uint64_t seed, ops_result *res);
int ops_run_all_f64(const struct backend_f64 *be, const ops_shape *shape, uint64_t seed,
                    ops_result *res);

// Forward ops against direct references computed in double in the test, and the direct checks
// of adamw, sum_squares, scale, add, classifier and the memory ops.
void ops_check_reference(harness *h, const struct backend *be);
void ops_check_reference_f64(harness *h, const struct backend_f64 *be);

// Finite-difference check of every backward op in double, with its negative controls.
void ops_check_gradients_f64(harness *h, const struct backend_f64 *be);

// the CPU backend of the double build (the registry holds the float one), made and freed from
// code compiled in float
const struct backend_f64 *ops_cpu_f64_create(void);
void ops_cpu_f64_destroy(const struct backend_f64 *be);

// ---- a device backend against the CPU (ops_compare.c) -------------------------------------------
// Every op of h->dev against h->cpu on random inputs, in h->mode; quick: the small shapes only.
void ops_compare(harness *h, int quick);

static inline void ops_results_free(ops_result *res, int n) {
    for (int i = 0; i < n; i++)
        free(res[i].data);
}

#endif
