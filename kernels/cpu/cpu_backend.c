// cpu_backend.c — the CPU backend: host memory, thread control, its context and the table of
// CPU ops.
//
// "Device" memory is ordinary 64-byte aligned host memory, so copies are memcpy and there is
// nothing to synchronize. The ops themselves live in cpu_dense.c, cpu_attention.c and
// cpu_pointwise.c; the functions here adapt them to the interface (void* buffers are `real`
// arrays: act_dtype = param_dtype = real's type). The context (cpu_ctx, be->ctx) holds the one
// thing ops keep between calls: the attention backward's scratch.
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#ifdef TESSERA_HAVE_CBLAS
#include <cblas.h> // openblas_set_num_threads, openblas_get_corename (OpenBLAS only)
#endif

#include "base/common.h"
#include "kernels/cpu/cpu_ops.h"
#ifndef TESSERA_F64
#include "kernels/registry.h" // the float build provides the registry's entry
#endif

typedef TS_REAL(backend) cpu_backend;

// what the ops of one CPU backend keep between calls
typedef struct {
    // dpreatt | datt, (B,NH,T,T) each: attention backward's scratch, grown when a call needs
    // more and kept for the next
    real *att_scratch;
    size_t att_scratch_n; // elements
} cpu_ctx;

// ---------------------------------------------------------------------------------------------
// memory

static void *cpu_alloc(const cpu_backend *be, size_t bytes) {
    (void)be;
    return ts_aligned_alloc(bytes, "backend memory");
}

static void cpu_free(const cpu_backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_zero(const cpu_backend *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) memset(p, 0, bytes);
}

static void cpu_copy(const cpu_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_synchronize(const cpu_backend *be) { (void)be; }

static size_t cpu_mem_free(const cpu_backend *be) {
    (void)be;
    return 0;
}

// activations are `real` on the CPU: converting is copying
static void cpu_act_to_host(const cpu_backend *be, real *dst, const void *src, size_t n) {
    cpu_copy(be, dst, src, n * sizeof(real));
}
static void cpu_act_to_device(const cpu_backend *be, void *dst, const real *src, size_t n) {
    cpu_copy(be, dst, src, n * sizeof(real));
}
static void cpu_params_from_master(const cpu_backend *be, void *param, const real *master,
                                   size_t n) {
    if (param != (const void *)master) cpu_copy(be, param, master, n * sizeof(real));
}

// ---------------------------------------------------------------------------------------------
// ops

static void cpu_embed_fwd(const cpu_backend *be, void *out, const int *tokens, const void *wte,
                          const void *wpe, int B, int T, int C) {
    (void)be;
    TS_REAL(cpu_embed_forward)(out, tokens, wte, wpe, B, T, C);
}
static void cpu_embed_bwd(const cpu_backend *be, real *dwte, real *dwpe, const void *dout,
                          const int *tokens, int B, int T, int C) {
    (void)be;
    TS_REAL(cpu_embed_backward)(dwte, dwpe, dout, tokens, B, T, C);
}
static void cpu_ln_fwd(const cpu_backend *be, void *out, real *mean, real *rstd, const void *inp,
                       const void *w, const void *b, int N, int C) {
    (void)be;
    TS_REAL(cpu_layernorm_forward)(out, mean, rstd, inp, w, b, N, C);
}
static void cpu_residual_ln_fwd(const cpu_backend *be, void *residual, void *out, real *mean,
                                real *rstd, const void *a, const void *b_in, const void *w,
                                const void *b, int N, int C) {
    (void)be;
    TS_REAL(cpu_add)(residual, a, b_in, (size_t)N * C);
    TS_REAL(cpu_layernorm_forward)(out, mean, rstd, residual, w, b, N, C);
}
static void cpu_ln_bwd(const cpu_backend *be, void *dinp, real *dw, real *db, const void *dout,
                       const void *inp, const void *w, const real *mean, const real *rstd, int N,
                       int C) {
    (void)be;
    TS_REAL(cpu_layernorm_backward)(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
static void cpu_mm_fwd(const cpu_backend *be, void *out, const void *inp, const void *w,
                       const void *bias, int N, int C, int OC) {
    (void)be;
    TS_REAL(cpu_matmul_forward)(out, inp, w, bias, N, C, OC);
}
static void cpu_mm_gelu_fwd(const cpu_backend *be, void *pre, void *out, const void *inp,
                            const void *w, const void *bias, int N, int C, int OC) {
    (void)be;
    TS_REAL(cpu_matmul_forward)(pre, inp, w, bias, N, C, OC);
    TS_REAL(cpu_gelu_forward)(out, pre, (size_t)N * OC);
}
static void cpu_mm_bwd(const cpu_backend *be, void *dinp, real *dw, real *dbias, const void *dout,
                       const void *inp, const void *w, int N, int C, int OC) {
    (void)be;
    TS_REAL(cpu_matmul_backward)(dinp, dw, dbias, dout, inp, w, N, C, OC);
}
// attention state: preatt | att, (B,NH,T,T) each (see backend.h)
static size_t cpu_att_state_bytes(const cpu_backend *be, int B, int T, int C, int NH) {
    (void)be, (void)C;
    return 2 * (size_t)B * NH * T * T * sizeof(real);
}
static void cpu_att_fwd(const cpu_backend *be, void *out, void *state, const void *qkv, int B,
                        int T, int C, int NH) {
    (void)be;
    real *preatt = state, *att = preatt + (size_t)B * NH * T * T;
    TS_REAL(cpu_attention_forward)(out, preatt, att, qkv, B, T, C, NH);
}
static void cpu_att_bwd(const cpu_backend *be, void *dqkv, const void *dout, const void *qkv,
                        const void *out, const void *state, int B, int T, int C, int NH) {
    (void)out;
    cpu_ctx *cx = be->ctx;
    const size_t n = (size_t)B * NH * T * T;
    if (2 * n > cx->att_scratch_n) {
        real *grown = realloc(cx->att_scratch, 2 * n * sizeof(real));
        if (!grown) {
            ts_fatal(TS_ERR_SYSTEM,
                     "out of memory allocating %zu bytes for the attention backward scratch",
                     2 * n * sizeof(real));
        }
        cx->att_scratch = grown;
        cx->att_scratch_n = 2 * n;
    }
    const real *att = (const real *)state + n;
    real *dpreatt = cx->att_scratch, *datt = cx->att_scratch + n;
    TS_REAL(cpu_attention_backward)(dqkv, dpreatt, datt, dout, qkv, att, B, T, C, NH);
}
static void cpu_gelu_fwd(const cpu_backend *be, void *out, const void *inp, size_t n) {
    (void)be;
    TS_REAL(cpu_gelu_forward)(out, inp, n);
}
static void cpu_gelu_bwd(const cpu_backend *be, void *dinp, const void *inp, const void *dout,
                         size_t n) {
    (void)be;
    TS_REAL(cpu_gelu_backward)(dinp, inp, dout, n);
}
static void cpu_add_op(const cpu_backend *be, void *out, const void *a, const void *b, size_t n) {
    (void)be;
    TS_REAL(cpu_add)(out, a, b, n);
}
static void cpu_add_inplace_op(const cpu_backend *be, void *y, const void *x, size_t n) {
    (void)be;
    TS_REAL(cpu_add_inplace)(y, x, n);
}
static void cpu_classifier_op(const cpu_backend *be, void *logits, real *losses, const int *targets,
                              int N, int V, int Vp, real dloss) {
    (void)be;
    TS_REAL(cpu_classifier)(logits, losses, targets, N, V, Vp, dloss);
}
// the master weights are the parameters; a separate param buffer gets a copy
static void cpu_adamw_op(const cpu_backend *be, real *master, void *param, const real *grad,
                         real *m, real *v, size_t n, float lr, float beta1, float beta2, float eps,
                         float weight_decay, int t) {
    TS_REAL(cpu_adamw)(master, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
    if (param && param != (void *)master) cpu_copy(be, param, master, n * sizeof(real));
}
static double cpu_sum_squares_op(const cpu_backend *be, const real *x, size_t n) {
    (void)be;
    return TS_REAL(cpu_sum_squares)(x, n);
}
static void cpu_scale_op(const cpu_backend *be, real *x, real s, size_t n) {
    (void)be;
    TS_REAL(cpu_scale)(x, s, n);
}

// ---------------------------------------------------------------------------------------------
// the table, instances

#ifdef TESSERA_F64
#define CPU_DTYPE TS_F64
#else
#define CPU_DTYPE TS_F32
#endif

static void cpu_destroy(const cpu_backend *be);

// every field but ctx: an instance is this table with a context of its own
static const cpu_backend cpu_table = {
    .name = "cpu",
    .device = "CPU",
    .act_dtype = CPU_DTYPE,
    .param_dtype = CPU_DTYPE,
    .host_memory = 1,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .synchronize = cpu_synchronize,
    .mem_free = cpu_mem_free,
    .act_to_host = cpu_act_to_host,
    .act_to_device = cpu_act_to_device,
    .params_from_master = cpu_params_from_master,
    .embed_forward = cpu_embed_fwd,
    .embed_backward = cpu_embed_bwd,
    .layernorm_forward = cpu_ln_fwd,
    .residual_layernorm_forward = cpu_residual_ln_fwd,
    .layernorm_backward = cpu_ln_bwd,
    .matmul_forward = cpu_mm_fwd,
    .matmul_gelu_forward = cpu_mm_gelu_fwd,
    .matmul_backward = cpu_mm_bwd,
    .attention_state_bytes = cpu_att_state_bytes,
    .attention_forward = cpu_att_fwd,
    .attention_backward = cpu_att_bwd,
    .gelu_forward = cpu_gelu_fwd,
    .gelu_backward = cpu_gelu_bwd,
    .add = cpu_add_op,
    .add_inplace = cpu_add_inplace_op,
    .classifier = cpu_classifier_op,
    .adamw = cpu_adamw_op,
    .sum_squares = cpu_sum_squares_op,
    .scale = cpu_scale_op,
};

// the default instance (backend_cpu): its context is freed by destroy, the struct stays
static cpu_ctx cpu_default_ctx;
static cpu_backend cpu_default;

static void cpu_destroy(const cpu_backend *be) {
    cpu_ctx *cx = be->ctx;
    free(cx->att_scratch);
    cx->att_scratch = NULL;
    cx->att_scratch_n = 0;
    if (be == &cpu_default) return;
    free(cx);
    free((cpu_backend *)be);
}

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
    if (!cpu_default.ctx) {
        cpu_default = cpu_table;
        cpu_default.ctx = &cpu_default_ctx;
    }
    return &cpu_default;
}

const TS_REAL(backend) * TS_REAL(backend_cpu_create)(void) {
    cpu_check_blas_core();
    cpu_backend *be = ts_malloc(sizeof *be, "CPU backend");
    *be = cpu_table;
    be->ctx = ts_calloc(1, sizeof(cpu_ctx), "CPU backend context");
    return be;
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

// ---------------------------------------------------------------------------------------------
// the registry entry (kernels/registry.h; the float build's backend is the one that trains)

#ifndef TESSERA_F64
static int cpu_probe(char *why, size_t why_len) {
    (void)why, (void)why_len;
    return 1; // this host: one "device", always usable
}

static ts_status cpu_create_entry(const backend **out, ts_dtype act_dtype, int device) {
    (void)act_dtype; // the CPU computes in fp32 whatever precision is asked for
    if (device != 0) {
        log_error("CPU backend: device %d requested but the CPU backend has one, device 0", device);
        return TS_ERR_INPUT;
    }
    *out = backend_cpu_create();
    return TS_OK;
}

const backend_entry backend_entry_cpu = {
    .name = "cpu",
    .title = "CPU",
    .preference = 0,
    .probe = cpu_probe,
    .create = cpu_create_entry,
};
#endif
