// cpu_backend.c — the CPU backend: host memory, thread control and the table of CPU ops.
//
// "Device" memory is ordinary 64-byte aligned host memory, so copies are memcpy and there is
// nothing to synchronize. The ops themselves live in cpu_dense.c, cpu_attention.c and
// cpu_pointwise.c.
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h> // openblas_set_num_threads, openblas_get_corename (OpenBLAS only)

#include "../../runtime/common.h"
#include "cpu_ops.h"

static void *cpu_alloc(size_t bytes) { return ts_aligned_alloc(bytes, "backend memory"); }

static void cpu_free(void *p) { free(p); }

static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_synchronize(void) {}

static const TS_REAL(backend) cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .synchronize = cpu_synchronize,
    .embed_forward = TS_REAL(cpu_embed_forward),
    .embed_backward = TS_REAL(cpu_embed_backward),
    .layernorm_forward = TS_REAL(cpu_layernorm_forward),
    .layernorm_backward = TS_REAL(cpu_layernorm_backward),
    .matmul_forward = TS_REAL(cpu_matmul_forward),
    .matmul_backward = TS_REAL(cpu_matmul_backward),
    .attention_forward = TS_REAL(cpu_attention_forward),
    .attention_backward = TS_REAL(cpu_attention_backward),
    .gelu_forward = TS_REAL(cpu_gelu_forward),
    .gelu_backward = TS_REAL(cpu_gelu_backward),
    .add = TS_REAL(cpu_add),
    .add_inplace = TS_REAL(cpu_add_inplace),
    .classifier = TS_REAL(cpu_classifier),
    .adamw = TS_REAL(cpu_adamw),
    .sum_squares = TS_REAL(cpu_sum_squares),
    .scale = TS_REAL(cpu_scale),
};

// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels from the CPU model and falls back
// to the generic "Prescott" (SSE3) kernels for a model it does not know, e.g. CPUs newer than the
// library; matmuls then run about 5x slower. The choice is made when the library loads, so all
// we can do is tell the user, once, how to override it (an info line on rank 0: it is advice, not
// a problem with the run).
static void cpu_check_blas_core(void) {
#ifdef OPENBLAS_VERSION
    static int checked;
    if (checked) return;
    checked = 1;
    const char *core = openblas_get_corename();
    if (!core || strcmp(core, "Prescott") != 0 || !__builtin_cpu_supports("avx2")) return;
    log_info("note: OpenBLAS does not recognise this CPU and uses its generic kernels (core %s): "
             "matmuls run several times slower than they could. ---> HINT: export "
             "OPENBLAS_CORETYPE=%s before starting tessera (with mpirun: -x OPENBLAS_CORETYPE)",
             core, __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell");
#endif
}

const TS_REAL(backend) * TS_REAL(backend_cpu)(void) {
    cpu_check_blas_core();
    return &cpu_backend;
}

// OpenBLAS built for OpenMP (Debian's openblas-openmp) follows omp_set_num_threads on its next
// call; setting it explicitly as well keeps other OpenBLAS builds in step.
void TS_REAL(backend_cpu_set_threads)(int threads) {
    if (threads <= 0) return;
    omp_set_num_threads(threads);
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(threads);
#endif
}
