// gpu_check.c — the GPU tests' shared start-up, skipping and error reporting (gpu_check.h).
#include "tests/gpu/gpu_check.h"

#include <math.h>
#include <stdio.h>

int gpu_check_start(gpu_ctx *g, int argc, char **argv, const char *usage) {
    memset(g, 0, sizeof *g);
    log_init(0, 1);
    setvbuf(stdout, NULL, _IOLBF, 0); // lines in order with the log on stderr
    if (argc < 2 || (strcmp(argv[1], "f32") != 0 && strcmp(argv[1], "bf16") != 0)) {
        log_error("usage: %s %s", argv[0], usage);
        return 1;
    }
    g->mode = strcmp(argv[1], "bf16") == 0 ? TS_BF16 : TS_F32;
    int n = backend_cuda_device_count();
    if (n == 0) {
        // never reported as passed: ctest shows the test as skipped (SKIP_RETURN_CODE 77)
        printf("SKIP: no CUDA device (driver or GPU missing): %s not run\n", argv[0]);
        return GPU_EXIT_SKIP;
    }
    if (backend_cuda_create(&g->gpu, g->mode, 0) != TS_OK) {
        log_error("%s: cannot create the CUDA backend (%s)", argv[0], ts_dtype_name(g->mode));
        return 1;
    }
    g->cpu = backend_cpu();
    printf("CUDA backend on %s (%d device%s), mode %s: activations %s, parameters %s\n",
           g->gpu->device, n, n == 1 ? "" : "s", ts_dtype_name(g->mode),
           ts_dtype_name(g->gpu->act_dtype), ts_dtype_name(g->gpu->param_dtype));
    if (g->gpu->act_dtype != g->mode || g->gpu->param_dtype != g->mode) {
        log_error("%s: asked for a %s backend, got activations %s and parameters %s", argv[0],
                  ts_dtype_name(g->mode), ts_dtype_name(g->gpu->act_dtype),
                  ts_dtype_name(g->gpu->param_dtype));
        return 1;
    }
    return 0;
}

int gpu_check_finish(const gpu_ctx *g, const char *test) {
    if (g->failures)
        printf("FAIL: %s (%s): %d of %d checks failed\n", test, ts_dtype_name(g->mode), g->failures,
               g->checks);
    else
        printf("PASS: %s (%s): %d checks\n", test, ts_dtype_name(g->mode), g->checks);
    return g->failures ? 1 : 0;
}

double gpu_rel_err(const float *got, const float *ref, size_t n) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        double a = got[i], b = ref[i];
        if (!isfinite(a) || !isfinite(b)) return NAN;
        diff += (a - b) * (a - b);
        norm += b * b;
    }
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

int gpu_check_err(gpu_ctx *g, const char *what, double err, double tol) {
    int ok = err <= tol; // NaN fails
    g->checks++;
    if (!ok) g->failures++;
    printf("  %-56s err %.3e  (tol %.0e)  %s\n", what, err, tol, ok ? "ok" : "FAIL");
    return ok;
}

int gpu_check_close(gpu_ctx *g, const char *what, const float *got, const float *ref, size_t n,
                    double tol) {
    return gpu_check_err(g, what, gpu_rel_err(got, ref, n), tol);
}
