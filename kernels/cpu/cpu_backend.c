// cpu_backend.c — the CPU backend: host memory, thread control and the table of CPU ops.
//
// "Device" memory is ordinary 64-byte aligned host memory, so copies are memcpy and there is
// nothing to synchronize. The ops themselves live in cpu_dense.c, cpu_attention.c and
// cpu_pointwise.c.
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#ifdef TESSERA_HAVE_CBLAS
#include <cblas.h> // openblas_set_num_threads, openblas_get_corename (OpenBLAS only)
#endif

#include "base/common.h"
#include "kernels/cpu/cpu_ops.h"

static void *cpu_alloc(size_t bytes) { return ts_aligned_alloc(bytes, "backend memory"); }

static void cpu_free(void *p) { free(p); }

static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_synchronize(void) {}

static size_t cpu_mem_free(void) { return 0; }

// activations are `real` on the CPU: converting is copying
static void cpu_act_to_host(real *dst, const void *src, size_t n) {
    cpu_copy(dst, src, n * sizeof(real));
}
static void cpu_act_to_device(void *dst, const real *src, size_t n) {
    cpu_copy(dst, src, n * sizeof(real));
}
static void cpu_params_from_master(void *param, const real *master, size_t n) {
    if (param != (const void *)master) cpu_copy(param, master, n * sizeof(real));
}

// ---------------------------------------------------------------------------------------------
// the interface's void* buffers are `real` arrays here (act_dtype = param_dtype = real's type)

static void cpu_embed_fwd(void *out, const int *tokens, const void *wte, const void *wpe, int B,
                          int T, int C) {
    TS_REAL(cpu_embed_forward)(out, tokens, wte, wpe, B, T, C);
}
static void cpu_embed_bwd(real *dwte, real *dwpe, const void *dout, const int *tokens, int B, int T,
                          int C) {
    TS_REAL(cpu_embed_backward)(dwte, dwpe, dout, tokens, B, T, C);
}
static void cpu_ln_fwd(void *out, real *mean, real *rstd, const void *inp, const void *w,
                       const void *b, int N, int C) {
    TS_REAL(cpu_layernorm_forward)(out, mean, rstd, inp, w, b, N, C);
}
static void cpu_residual_ln_fwd(void *residual, void *out, real *mean, real *rstd, const void *a,
                                const void *b_in, const void *w, const void *b, int N, int C) {
    TS_REAL(cpu_add)(residual, a, b_in, (size_t)N * C);
    TS_REAL(cpu_layernorm_forward)(out, mean, rstd, residual, w, b, N, C);
}
static void cpu_ln_bwd(void *dinp, real *dw, real *db, const void *dout, const void *inp,
                       const void *w, const real *mean, const real *rstd, int N, int C) {
    TS_REAL(cpu_layernorm_backward)(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
static void cpu_mm_fwd(void *out, const void *inp, const void *w, const void *bias, int N, int C,
                       int OC) {
    TS_REAL(cpu_matmul_forward)(out, inp, w, bias, N, C, OC);
}
static void cpu_mm_gelu_fwd(void *pre, void *out, const void *inp, const void *w, const void *bias,
                            int N, int C, int OC) {
    TS_REAL(cpu_matmul_forward)(pre, inp, w, bias, N, C, OC);
    TS_REAL(cpu_gelu_forward)(out, pre, (size_t)N * OC);
}
static void cpu_mm_bwd(void *dinp, real *dw, real *dbias, const void *dout, const void *inp,
                       const void *w, int N, int C, int OC) {
    TS_REAL(cpu_matmul_backward)(dinp, dw, dbias, dout, inp, w, N, C, OC);
}
// attention state: preatt | att, (B,NH,T,T) each (see backend.h)
static size_t cpu_att_state_bytes(int B, int T, int C, int NH) {
    (void)C;
    return 2 * (size_t)B * NH * T * T * sizeof(real);
}
static void cpu_att_fwd(void *out, void *state, const void *qkv, int B, int T, int C, int NH) {
    real *preatt = state, *att = preatt + (size_t)B * NH * T * T;
    TS_REAL(cpu_attention_forward)(out, preatt, att, qkv, B, T, C, NH);
}
// dpreatt | datt, (B,NH,T,T) each: backward's scratch, kept between calls and grown when a call
// needs more (one per precision: this file is compiled once for each). Like every op, not to be
// called from two threads at once.
static real *cpu_att_scratch;
static size_t cpu_att_scratch_n;

static void cpu_att_bwd(void *dqkv, const void *dout, const void *qkv, const void *out,
                        const void *state, int B, int T, int C, int NH) {
    (void)out;
    const size_t n = (size_t)B * NH * T * T;
    if (2 * n > cpu_att_scratch_n) {
        real *grown = realloc(cpu_att_scratch, 2 * n * sizeof(real));
        if (!grown) {
            ts_fatal(TS_ERR_SYSTEM,
                     "out of memory allocating %zu bytes for the attention backward scratch",
                     2 * n * sizeof(real));
        }
        cpu_att_scratch = grown;
        cpu_att_scratch_n = 2 * n;
    }
    const real *att = (const real *)state + n;
    real *dpreatt = cpu_att_scratch, *datt = cpu_att_scratch + n;
    TS_REAL(cpu_attention_backward)(dqkv, dpreatt, datt, dout, qkv, att, B, T, C, NH);
}
static void cpu_gelu_fwd(void *out, const void *inp, size_t n) {
    TS_REAL(cpu_gelu_forward)(out, inp, n);
}
static void cpu_gelu_bwd(void *dinp, const void *inp, const void *dout, size_t n) {
    TS_REAL(cpu_gelu_backward)(dinp, inp, dout, n);
}
static void cpu_add_op(void *out, const void *a, const void *b, size_t n) {
    TS_REAL(cpu_add)(out, a, b, n);
}
static void cpu_add_inplace_op(void *y, const void *x, size_t n) {
    TS_REAL(cpu_add_inplace)(y, x, n);
}
static void cpu_classifier_op(void *logits, real *losses, const int *targets, int N, int V, int Vp,
                              real dloss) {
    TS_REAL(cpu_classifier)(logits, losses, targets, N, V, Vp, dloss);
}
// the master weights are the parameters; a separate param buffer gets a copy
static void cpu_adamw_op(real *master, void *param, const real *grad, real *m, real *v, size_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay, int t) {
    TS_REAL(cpu_adamw)(master, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
    if (param && param != (void *)master) cpu_copy(param, master, n * sizeof(real));
}

#ifdef TESSERA_F64
#define CPU_DTYPE TS_F64
#else
#define CPU_DTYPE TS_F32
#endif

static const TS_REAL(backend) cpu_backend = {
    .name = "cpu",
    .device = "CPU",
    .act_dtype = CPU_DTYPE,
    .param_dtype = CPU_DTYPE,
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
