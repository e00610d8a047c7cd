// test_ops.c — tests of the CPU backend ops (kernels/cpu/), in float and double.
//
//   1. every forward op against a direct double reference, plus exact/direct checks of adamw,
//      sum_squares, scale, add, the classifier and the memory ops (both precisions)
//   2. finite-difference gradients of every backward op in double, with negative controls
//   3. every op forward and backward in float against the same in double on shared inputs:
//      max |f32 - f64| / max |f64| <= PREC_TOL per output tensor
//   4. determinism: two float runs at the same thread count are bit-identical
// One line per checked tensor; exit 0 when everything passes, 1 otherwise.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/unit/test_ops.h"

#define PREC_TOL 1e-5 // float vs double, relative to the tensor's largest magnitude

static double max_rel_diff(const double *x, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(x[i] - ref[i]);
        if (!(d <= num)) num = d; // NaN propagates
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

// medium shape: several threads' worth of rows, ragged column blocks and LayerNorm chunks
static const ops_shape compare_shape = {
    .B = 4, .T = 96, .C = 320, .NH = 5, .OC = 960, .V = 300, .Vp = 384, .maxT = 100};

static int check_precisions(void) {
    ops_result f[OPS_MAX_RESULTS], d[OPS_MAX_RESULTS];
    int nf = ops_run_all(&compare_shape, 42, f);
    int nd = ops_run_all_f64(&compare_shape, 42, d);
    int fails = nf != nd;
    for (int i = 0; i < nf && i < nd; i++) {
        double err = f[i].n == d[i].n ? max_rel_diff(f[i].data, d[i].data, f[i].n) : INFINITY;
        int ok = err <= PREC_TOL;
        printf("prec  f32 vs f64  %-22s max rel diff %.2e  (tol %.0e)  %s\n", f[i].name, err,
               PREC_TOL, ok ? "ok" : "FAIL");
        fails += !ok;
    }
    ops_results_free(f, nf);
    ops_results_free(d, nd);
    return fails;
}

static int check_determinism(void) {
    ops_result a[OPS_MAX_RESULTS], b[OPS_MAX_RESULTS];
    int na = ops_run_all(&compare_shape, 7, a);
    int nb = ops_run_all(&compare_shape, 7, b);
    int differ = na != nb;
    for (int i = 0; i < na && i < nb; i++)
        differ += a[i].n != b[i].n || memcmp(a[i].data, b[i].data, a[i].n * sizeof(double)) != 0;
    printf("det   f32  every op, two runs, %d threads: %s\n", omp_get_max_threads(),
           differ ? "DIFFER" : "bit-identical");
    ops_results_free(a, na);
    ops_results_free(b, nb);
    return differ ? 1 : 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); // lines in order even if a check crashes
    int fails = 0;
    fails += ops_check_reference();
    fails += ops_check_reference_f64();
    fails += ops_check_gradients_f64();
    fails += check_precisions();
    fails += check_determinism();
    if (fails) {
        printf("test_ops: %d check(s) FAILED\n", fails);
        return 1;
    }
    printf("test_ops: all checks passed\n");
    return 0;
}
