// backend_cuda.cu — the CUDA backend: device set-up, its context, memory, and the table of ops
// (kernels/backend.h) built on the launchers of ops.cuh; its registry entry.
//
// A backend owns one context (cuda_ctx, ops.cuh, at be->ctx): a device, one stream, the scratch
// buffer, the cuBLASLt handles and the attention buffers. Every op is enqueued on that stream in
// call order, so ops need no other synchronization; to_host, act_to_host, sum_squares and
// synchronize wait for it. The table's ops are thin wrappers that pass the context and the
// table's activation type (bf16 with fp32 master weights, or all fp32) to a launcher.
//
// Scratch: one device buffer of BE_SCRATCH_BYTES per context, allocated at creation. Launchers
// take their temporaries from it (cuda_scratch) instead of allocating during training; its size
// covers the largest user, the attention head-major copies: 4 x B*T*C elements = 192 MiB for
// GPT-2 124M at B=16, T=1024 in fp32 (96 MiB in bf16). Attention works on fewer samples at a time
// when a model needs more. Attention backward also keeps a buffer of its own in the context
// (attention.cu), allocated by its first call.
//
// One device per process: CUDA's current device is the process's, so every backend of a process
// runs on the same one (a second device is refused).
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#define BE_SCRATCH_BYTES ((size_t)256 << 20)

typedef backend cuda_backend;

static cuda_ctx *ctx_of(const cuda_backend *be) { return (cuda_ctx *)be->ctx; }

// the device this process's backends run on (-1: none yet) and how many backends use it
static int be_process_device = -1, be_process_backends;

// ---------------------------------------------------------------------------------------------
// scratch (ops.cuh)

void *cuda_scratch(cuda_ctx *cx, size_t bytes) {
    if (bytes > cx->scratch_bytes) {
        ts_fatal(TS_ERR_INTERNAL,
                 "CUDA scratch: %zu bytes requested but the backend has %zu (a kernel needs "
                 "more temporary memory than was set aside at start-up)",
                 bytes, cx->scratch_bytes);
    }
    return cx->scratch;
}

size_t cuda_scratch_max(const cuda_ctx *cx) { return cx->scratch_bytes; }

// ---------------------------------------------------------------------------------------------
// memory

static size_t be_device_free(void) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return free_b;
}

static size_t be_mem_free(const cuda_backend *be) {
    (void)be;
    return be_device_free();
}

static void *be_alloc(const cuda_backend *be, size_t bytes) {
    cuda_ctx *cx = ctx_of(be);
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        cudaGetLastError();
        ts_fatal(TS_ERR_SYSTEM,
                 "CUDA device %d: out of memory allocating %zu bytes (%.1f MiB; %.1f MiB free): "
                 "%s",
                 cx->device, bytes, bytes / 1048576.0, be_device_free() / 1048576.0,
                 cudaGetErrorString(err));
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cx->stream));
    CUDA_CHECK(cudaStreamSynchronize(cx->stream));
    return p;
}

static void be_free(const cuda_backend *be, void *p) {
    (void)be;
    if (p) CUDA_CHECK(cudaFree(p));
}

static void be_zero(const cuda_backend *be, void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ctx_of(be)->stream));
}

// the host buffer may be pageable and reused by the caller at once: wait for the copy
static void be_to_device(const cuda_backend *be, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    cudaStream_t s = ctx_of(be)->stream;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}

static void be_to_host(const cuda_backend *be, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaStream_t s = ctx_of(be)->stream;
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}

static void be_synchronize(const cuda_backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
}

// n elements of DT <-> host fp32; bf16 goes through fp32 in the scratch buffer, in chunks
template <ts_dtype DT>
static void be_act_to_host(const cuda_backend *be, real *host_dst, const void *src, size_t n) {
    if constexpr (DT == TS_F32) {
        be_to_host(be, host_dst, src, n * sizeof(float));
        return;
    }
    cuda_ctx *cx = ctx_of(be);
    const size_t chunk = cuda_scratch_max(cx) / sizeof(float);
    float *tmp = (float *)cuda_scratch(cx, chunk * sizeof(float));
    for (size_t i = 0; i < n; i += chunk) {
        const size_t m = n - i < chunk ? n - i : chunk;
        cuda_convert_to_f32(cx, DT, tmp, (const char *)src + i * ts_dtype_size(DT), m);
        be_to_host(be, host_dst + i, tmp, m * sizeof(float));
    }
}

template <ts_dtype DT>
static void be_act_to_device(const cuda_backend *be, void *dst, const real *host_src, size_t n) {
    if constexpr (DT == TS_F32) {
        be_to_device(be, dst, host_src, n * sizeof(float));
        return;
    }
    cuda_ctx *cx = ctx_of(be);
    const size_t chunk = cuda_scratch_max(cx) / sizeof(float);
    float *tmp = (float *)cuda_scratch(cx, chunk * sizeof(float));
    for (size_t i = 0; i < n; i += chunk) {
        const size_t m = n - i < chunk ? n - i : chunk;
        be_to_device(be, tmp, host_src + i, m * sizeof(float));
        cuda_convert_from_f32(cx, DT, (char *)dst + i * ts_dtype_size(DT), tmp, m);
    }
    be_synchronize(be); // the scratch is free again when this returns
}

template <ts_dtype DT>
static void be_params_from_master(const cuda_backend *be, void *param, const real *master,
                                  size_t n) {
    if (param == (const void *)master || !n) return;
    cuda_ctx *cx = ctx_of(be);
    if constexpr (DT == TS_F32)
        CUDA_CHECK(cudaMemcpyAsync(param, master, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                   cx->stream));
    else
        cuda_convert_from_f32(cx, DT, param, master, n);
}

// ---------------------------------------------------------------------------------------------
// ops: the launcher with the context and this table's type

template <ts_dtype DT>
static void be_embed_forward(const cuda_backend *be, void *out, const int *tokens, const void *wte,
                             const void *wpe, int B, int T, int C) {
    cuda_embed_forward(ctx_of(be), DT, out, tokens, wte, wpe, B, T, C);
}
template <ts_dtype DT>
static void be_embed_backward(const cuda_backend *be, real *dwte, real *dwpe, const void *dout,
                              const int *tokens, int B, int T, int C) {
    cuda_embed_backward(ctx_of(be), DT, dwte, dwpe, dout, tokens, B, T, C);
}
template <ts_dtype DT>
static void be_layernorm_forward(const cuda_backend *be, void *out, real *mean, real *rstd,
                                 const void *inp, const void *w, const void *b, int N, int C) {
    cuda_layernorm_forward(ctx_of(be), DT, out, mean, rstd, inp, w, b, N, C);
}
template <ts_dtype DT>
static void be_residual_layernorm_forward(const cuda_backend *be, void *residual, void *out,
                                          real *mean, real *rstd, const void *a, const void *b_in,
                                          const void *w, const void *b, int N, int C) {
    cuda_residual_layernorm_forward(ctx_of(be), DT, residual, out, mean, rstd, a, b_in, w, b, N, C);
}
template <ts_dtype DT>
static void be_layernorm_backward(const cuda_backend *be, void *dinp, real *dw, real *db,
                                  const void *dout, const void *inp, const void *w,
                                  const real *mean, const real *rstd, int N, int C) {
    cuda_layernorm_backward(ctx_of(be), DT, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
template <ts_dtype DT>
static void be_matmul_forward(const cuda_backend *be, void *out, const void *inp, const void *w,
                              const void *bias, int N, int C, int OC) {
    cuda_matmul_forward(ctx_of(be), DT, out, inp, w, bias, N, C, OC);
}
template <ts_dtype DT>
static void be_matmul_gelu_forward(const cuda_backend *be, void *pre, void *out, const void *inp,
                                   const void *w, const void *bias, int N, int C, int OC) {
    cuda_matmul_gelu_forward(ctx_of(be), DT, pre, out, inp, w, bias, N, C, OC);
}
template <ts_dtype DT>
static void be_matmul_backward(const cuda_backend *be, void *dinp, real *dw, real *dbias,
                               const void *dout, const void *inp, const void *w, int N, int C,
                               int OC) {
    cuda_matmul_backward(ctx_of(be), DT, dinp, dw, dbias, dout, inp, w, N, C, OC);
}
template <ts_dtype DT>
static size_t be_attention_state_bytes(const cuda_backend *be, int B, int T, int C, int NH) {
    return cuda_attention_state_bytes(ctx_of(be), DT, B, T, C, NH);
}
template <ts_dtype DT>
static void be_attention_forward(const cuda_backend *be, void *out, void *state, const void *qkv,
                                 int B, int T, int C, int NH) {
    cuda_attention_forward(ctx_of(be), DT, out, state, qkv, B, T, C, NH);
}
template <ts_dtype DT>
static void be_attention_backward(const cuda_backend *be, void *dqkv, const void *dout,
                                  const void *qkv, const void *out, const void *state, int B, int T,
                                  int C, int NH) {
    cuda_attention_backward(ctx_of(be), DT, dqkv, dout, qkv, out, state, B, T, C, NH);
}
template <ts_dtype DT>
static void be_gelu_forward(const cuda_backend *be, void *out, const void *inp, size_t n) {
    cuda_gelu_forward(ctx_of(be), DT, out, inp, n);
}
template <ts_dtype DT>
static void be_gelu_backward(const cuda_backend *be, void *dinp, const void *inp, const void *dout,
                             size_t n) {
    cuda_gelu_backward(ctx_of(be), DT, dinp, inp, dout, n);
}
template <ts_dtype DT>
static void be_add(const cuda_backend *be, void *out, const void *a, const void *b, size_t n) {
    cuda_add(ctx_of(be), DT, out, a, b, n);
}
template <ts_dtype DT>
static void be_add_inplace(const cuda_backend *be, void *y, const void *x, size_t n) {
    cuda_add_inplace(ctx_of(be), DT, y, x, n);
}
template <ts_dtype DT>
static void be_classifier(const cuda_backend *be, void *logits, real *losses, const int *targets,
                          int N, int V, int Vp, real dloss) {
    cuda_classifier(ctx_of(be), DT, logits, losses, targets, N, V, Vp, dloss);
}
template <ts_dtype DT>
static void be_adamw(const cuda_backend *be, real *master, void *param, const real *grad, real *m,
                     real *v, size_t n, float lr, float beta1, float beta2, float eps,
                     float weight_decay, int t) {
    cuda_adamw(ctx_of(be), DT, master, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay,
               t);
}
static double be_sum_squares(const cuda_backend *be, const real *x, size_t n) {
    return cuda_sum_squares(ctx_of(be), x, n);
}
static void be_scale(const cuda_backend *be, real *x, real s, size_t n) {
    cuda_scale(ctx_of(be), x, s, n);
}

static void be_destroy(const cuda_backend *be);

template <ts_dtype DT> static void be_fill_table(cuda_backend *b, cuda_ctx *cx) {
    memset(b, 0, sizeof(*b));
    b->name = "cuda";
    b->device = cx->device_name;
    b->act_dtype = DT;
    b->param_dtype = DT;
    b->host_memory = 0;
    b->ctx = cx;
    b->destroy = be_destroy;
    b->alloc = be_alloc;
    b->free = be_free;
    b->zero = be_zero;
    b->to_device = be_to_device;
    b->to_host = be_to_host;
    b->synchronize = be_synchronize;
    b->mem_free = be_mem_free;
    b->act_to_host = be_act_to_host<DT>;
    b->act_to_device = be_act_to_device<DT>;
    b->params_from_master = be_params_from_master<DT>;
    b->embed_forward = be_embed_forward<DT>;
    b->embed_backward = be_embed_backward<DT>;
    b->layernorm_forward = be_layernorm_forward<DT>;
    b->residual_layernorm_forward = be_residual_layernorm_forward<DT>;
    b->layernorm_backward = be_layernorm_backward<DT>;
    b->matmul_forward = be_matmul_forward<DT>;
    b->matmul_gelu_forward = be_matmul_gelu_forward<DT>;
    b->matmul_backward = be_matmul_backward<DT>;
    b->attention_state_bytes = be_attention_state_bytes<DT>;
    b->attention_forward = be_attention_forward<DT>;
    b->attention_backward = be_attention_backward<DT>;
    b->gelu_forward = be_gelu_forward<DT>;
    b->gelu_backward = be_gelu_backward<DT>;
    b->add = be_add<DT>;
    b->add_inplace = be_add_inplace<DT>;
    b->classifier = be_classifier<DT>;
    b->adamw = be_adamw<DT>;
    b->sum_squares = be_sum_squares;
    b->scale = be_scale;
}

// ---------------------------------------------------------------------------------------------
// creation and tear-down (backend_cuda.h)

extern "C" int backend_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // no driver or no device: not an error for the caller
        return 0;
    }
    return n > 0 ? n : 0;
}

// what backend_cuda_create made; the backend struct comes first, so be->ctx's owner is the
// allocation to free
typedef struct {
    cuda_backend be;
    cuda_ctx cx;
} cuda_instance;

extern "C" ts_status backend_cuda_create(const backend **out, ts_dtype act_dtype, int device) {
    if (act_dtype != TS_F32 && act_dtype != TS_BF16) {
        log_error("CUDA backend: activation type %s is not supported (expected bf16 or fp32)",
                  ts_dtype_name(act_dtype));
        return TS_ERR_INPUT;
    }
    if (be_process_device >= 0 && device != be_process_device) {
        log_error("CUDA backend: already running on device %d, cannot also use device %d "
                  "(one device per process)",
                  be_process_device, device);
        return TS_ERR_INPUT;
    }
    const int count = backend_cuda_device_count();
    if (count == 0) {
        log_error("CUDA backend: no usable CUDA device (no GPU, or no driver) on this host");
        return TS_ERR_INPUT;
    }
    if (device < 0 || device >= count) {
        log_error("CUDA backend: device %d requested but this host has %d (expected 0..%d)", device,
                  count, count - 1);
        return TS_ERR_INPUT;
    }

    cuda_instance *in = (cuda_instance *)calloc(1, sizeof(*in));
    if (!in) {
        log_error("CUDA backend: out of host memory for the backend");
        return TS_ERR_SYSTEM;
    }
    cuda_ctx *cx = &in->cx;
    cx->device = device;
    cudaError_t err = cudaSetDevice(device);
    cudaDeviceProp prop;
    memset(&prop, 0, sizeof(prop));
    if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, device);
    if (err == cudaSuccess) err = cudaStreamCreate(&cx->stream);
    if (err != cudaSuccess) {
        cudaGetLastError();
        log_error("CUDA backend: cannot start device %d: %s", device, cudaGetErrorString(err));
        free(in);
        return TS_ERR_SYSTEM;
    }
    err = cudaMalloc(&cx->scratch, BE_SCRATCH_BYTES);
    if (err != cudaSuccess) {
        cudaGetLastError();
        log_error("CUDA backend: device %d: cannot allocate the %zu MiB scratch buffer: %s", device,
                  BE_SCRATCH_BYTES >> 20, cudaGetErrorString(err));
        cudaStreamDestroy(cx->stream);
        free(in);
        return TS_ERR_SYSTEM;
    }
    cx->scratch_bytes = BE_SCRATCH_BYTES;
    cuda_matmul_init(cx);
    cuda_flash_init();
    snprintf(cx->device_name, sizeof(cx->device_name), "%s", prop.name);
    if (act_dtype == TS_BF16)
        be_fill_table<TS_BF16>(&in->be, cx);
    else
        be_fill_table<TS_F32>(&in->be, cx);
    be_process_device = device;
    be_process_backends++;
    *out = &in->be;

    log_info("CUDA backend: device %d, %s (compute capability %d.%d, %.1f GiB, %.1f GiB free), "
             "%s activations and parameters, fp32 gradients and master weights",
             device, prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0,
             be_device_free() / 1073741824.0, ts_dtype_name(act_dtype));
    return TS_OK;
}

static void be_destroy(const cuda_backend *be) {
    cuda_ctx *cx = ctx_of(be);
    CUDA_CHECK(cudaStreamSynchronize(cx->stream));
    cuda_matmul_free(cx);
    cuda_attention_free(cx);
    CUDA_CHECK(cudaFree(cx->scratch));
    CUDA_CHECK(cudaStreamDestroy(cx->stream));
    if (--be_process_backends == 0) be_process_device = -1;
    free((cuda_instance *)be); // the struct is the instance's first member
}

// ---------------------------------------------------------------------------------------------
// the registry entry (kernels/registry.h)

static int be_probe(char *why, size_t why_len) {
    const int n = backend_cuda_device_count();
    if (n == 0) snprintf(why, why_len, "no CUDA device is usable on this host");
    return n;
}

static ts_status be_create_entry(const backend **out, ts_dtype act_dtype, int device) {
    return backend_cuda_create(out, act_dtype, device);
}

extern "C" const backend_entry backend_entry_cuda = {
    "cuda", "CUDA", 1, be_probe, be_create_entry, NULL,
};
