// test_backend_ops.c — every op on every backend of the registry, against the CPU reference.
//
//   test_backend_ops                          every backend: the CPU as below, then every other
//                                             backend in each mode (SKIP where it cannot run)
//   test_backend_ops cpu                      the CPU backend (the reference itself):
//      1. every forward op against a direct double reference, plus exact/direct checks of adamw,
//         sum_squares, scale, add, the classifier and the memory ops (float and double builds)
//      2. finite-difference gradients of every backward op in double, with negative controls
//      3. every op forward and backward in float against the same in double on shared inputs:
//         max |f32 - f64| / max |f64| <= PREC_TOL per output tensor
//      4. determinism: two float runs at the same thread count are bit-identical
//   test_backend_ops NAME f32|bf16 [--quick]  backend NAME (e.g. cuda) in that mode against the
//                                             CPU backend, op by op (ops_compare.c)
//
// One line per check (harness.h). Exit 0 when every check passes, 1 otherwise, 77 when the
// backend named cannot run here (not built, or no device): ctest shows that as skipped.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/registry.h"
#include "tests/ops/ops.h"

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

static void check_precisions(harness *h, const backend *be, const struct backend_f64 *be64) {
    ops_result f[OPS_MAX_RESULTS], d[OPS_MAX_RESULTS];
    int nf = ops_run_all(be, &compare_shape, 42, f);
    int nd = ops_run_all_f64(be64, &compare_shape, 42, d);
    harness_check_err(h, "prec f32 vs f64: as many results", nf != nd, 0);
    for (int i = 0; i < nf && i < nd; i++) {
        double err = f[i].n == d[i].n ? max_rel_diff(f[i].data, d[i].data, f[i].n) : INFINITY;
        char what[96];
        snprintf(what, sizeof what, "prec f32 vs f64 %s (max rel diff)", f[i].name);
        harness_check_err(h, what, err, PREC_TOL);
    }
    ops_results_free(f, nf);
    ops_results_free(d, nd);
}

static void check_determinism(harness *h, const backend *be) {
    ops_result a[OPS_MAX_RESULTS], b[OPS_MAX_RESULTS];
    int na = ops_run_all(be, &compare_shape, 7, a);
    int nb = ops_run_all(be, &compare_shape, 7, b);
    int differ = na != nb;
    for (int i = 0; i < na && i < nb; i++)
        differ += a[i].n != b[i].n || memcmp(a[i].data, b[i].data, a[i].n * sizeof(double)) != 0;
    char what[96];
    snprintf(what, sizeof what, "det f32 every op, two runs, %d threads: tensors differing",
             omp_get_max_threads());
    harness_check_err(h, what, differ, 0);
    ops_results_free(a, na);
    ops_results_free(b, nb);
}

// the CPU backend of the registry (float) and of the double build (finite differences)
static int run_cpu(void) {
    harness h;
    harness_init(&h);
    const backend *be = NULL;
    if (backend_entry_cpu.create(&be, TS_F32, 0) != TS_OK) return 1;
    const struct backend_f64 *be64 = ops_cpu_f64_create();
    printf("[cpu] the reference: references, finite differences, float vs double, determinism\n");
    ops_check_reference(&h, be);
    ops_check_reference_f64(&h, be64);
    ops_check_gradients_f64(&h, be64);
    check_precisions(&h, be, be64);
    check_determinism(&h, be);
    be->destroy(be);
    ops_cpu_f64_destroy(be64);
    return harness_finish(&h, "test_backend_ops", "cpu");
}

// backend `name` in `mode` against the CPU: 0 passed, 1 failed, HARNESS_SKIP
static int run_device(const char *name, const char *mode, int quick) {
    harness h;
    int rc = harness_start(&h, name, mode, "test_backend_ops");
    if (rc == 0) {
        ops_compare(&h, quick);
        char label[64];
        snprintf(label, sizeof label, "%s %s", name, mode);
        rc = harness_finish(&h, "test_backend_ops", label);
    }
    harness_stop(&h);
    return rc;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); // lines in order even if a check crashes
    int quick = 0, nargs = 0;
    const char *args[2] = {NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (nargs < 2)
            args[nargs++] = argv[i];
        else
            nargs = 3;
    }
    if (nargs > 2 || (nargs == 1 && strcmp(args[0], "cpu") != 0) ||
        (nargs == 2 && strcmp(args[0], "cpu") == 0)) {
        fprintf(stderr, "usage: %s [cpu | NAME f32|bf16 [--quick]]\n", argv[0]);
        return 2;
    }
    if (nargs == 1) return run_cpu();
    if (nargs == 2) return run_device(args[0], args[1], quick);

    // every backend of the registry
    int failed = run_cpu() != 0;
    static const char *const modes[] = {"f32", "bf16"};
    for (int i = 0; i < backend_registry_count(); i++) {
        const backend_entry *e = backend_registry_at(i);
        if (e == &backend_entry_cpu) continue;
        for (int m = 0; m < 2; m++)
            failed |= run_device(e->name, modes[m], quick) == 1;
    }
    printf("test_backend_ops: %s\n", failed ? "some checks FAILED" : "all checks passed");
    return failed ? 1 : 0;
}
