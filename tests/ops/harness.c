// harness.c — the backend tests' start-up from the registry, skipping and check lines
// (harness.h).
#include "tests/ops/harness.h"

#include <math.h>
#include <stdio.h>

#include "kernels/registry.h"

void harness_init(harness *h) {
    memset(h, 0, sizeof *h);
    log_init(0, 1);
    setvbuf(stdout, NULL, _IOLBF, 0); // lines in order with the log on stderr
}

int harness_start(harness *h, const char *name, const char *mode_arg, const char *test) {
    harness_init(h);
    h->name = name;
    if (!mode_arg || (strcmp(mode_arg, "f32") != 0 && strcmp(mode_arg, "bf16") != 0)) {
        log_error("%s: backend %s: mode '%s': expected f32 or bf16", test, name,
                  mode_arg ? mode_arg : "");
        return 1;
    }
    h->mode = strcmp(mode_arg, "bf16") == 0 ? TS_BF16 : TS_F32;
    const backend_entry *e = backend_registry_find(name);
    if (!e) {
        log_error("%s: no backend named '%s' in the registry (expected %s)", test, name,
                  backend_registry_choices + strlen("auto|"));
        return 1;
    }
    if (e->missing) {
        printf("SKIP: this build has no %s backend (%s): %s (%s %s) not run\n", e->title,
               e->missing, test, name, mode_arg);
        return HARNESS_SKIP;
    }
    char why[256] = "";
    const int devices = e->probe(why, sizeof why);
    if (devices <= 0) {
        printf("SKIP: %s: %s (%s %s) not run\n", why, test, name, mode_arg);
        return HARNESS_SKIP;
    }
    const backend *dev = NULL;
    if (e->create(&dev, h->mode, 0) != TS_OK) {
        log_error("%s: cannot create the %s backend (%s)", test, e->title, mode_arg);
        return 1;
    }
    h->dev = dev;
    h->cpu = backend_cpu_create();
    printf("%s backend on %s (%d device%s), mode %s: activations %s, parameters %s\n", e->title,
           dev->device, devices, devices == 1 ? "" : "s", mode_arg, ts_dtype_name(dev->act_dtype),
           ts_dtype_name(dev->param_dtype));
    if (dev->act_dtype != h->mode || dev->param_dtype != h->mode) {
        log_error("%s: asked for a %s backend, got activations %s and parameters %s", test,
                  mode_arg, ts_dtype_name(dev->act_dtype), ts_dtype_name(dev->param_dtype));
        return 1;
    }
    return 0;
}

void harness_stop(harness *h) {
    if (h->dev) h->dev->destroy(h->dev);
    if (h->cpu) h->cpu->destroy(h->cpu);
    h->dev = h->cpu = NULL;
}

int harness_finish(const harness *h, const char *test, const char *label) {
    if (h->failures)
        printf("FAIL: %s (%s): %d of %d checks failed\n", test, label, h->failures, h->checks);
    else
        printf("PASS: %s (%s): %d checks\n", test, label, h->checks);
    return h->failures ? 1 : 0;
}

int harness_check_err(harness *h, const char *what, double err, double tol) {
    int ok = err <= tol; // NaN fails
    h->checks++;
    if (!ok) h->failures++;
    printf("  %-60s err %.3e  (tol %.0e)  %s\n", what, err, tol, ok ? "ok" : "FAIL");
    return ok;
}

double harness_rel_err(const float *got, const float *ref, size_t n) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        double a = got[i], b = ref[i];
        if (!isfinite(a) || !isfinite(b)) return NAN;
        diff += (a - b) * (a - b);
        norm += b * b;
    }
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

int harness_check_close(harness *h, const char *what, const float *got, const float *ref, size_t n,
                        double tol) {
    return harness_check_err(h, what, harness_rel_err(got, ref, n), tol);
}
