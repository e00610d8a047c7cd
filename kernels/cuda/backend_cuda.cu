// backend_cuda.cu — the CUDA backend: device set-up, memory, the scratch buffer, and the table
// of ops (kernels/backend.h) built on the launchers of ops.cuh.
//
// One device and one stream per process: every op is enqueued on that stream in call order, so
// ops need no other synchronization; to_host, act_to_host, sum_squares and synchronize wait for
// it. Two tables share that state, one per activation type (bf16 with fp32 master weights, or
// all fp32); a table's ops are thin wrappers that pass its type and the stream to a launcher.
//
// Scratch: one device buffer of BE_SCRATCH_BYTES, allocated at creation. Launchers take their
// temporaries from it (cuda_scratch) instead of allocating during training; its size covers
// the largest user, the attention head-major copies: 4 x B*T*C elements = 192 MiB for GPT-2
// 124M at B=16, T=1024 in fp32 (96 MiB in bf16). Attention works on fewer samples at a time
// when a model needs more. Attention backward also keeps a buffer of its own (attention.cu),
// allocated by its first call.
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#define BE_SCRATCH_BYTES ((size_t)256 << 20)

static int be_device = -1; // the device the backend runs on, -1 before creation
static cudaStream_t be_stream;
static void *be_scratch;
static char be_device_name[256];
static backend be_tables[2]; // [0] fp32, [1] bf16

// ---------------------------------------------------------------------------------------------
// scratch (ops.cuh)

void *cuda_scratch(size_t bytes) {
    if (bytes > BE_SCRATCH_BYTES) {
        ts_fatal(TS_ERR_INTERNAL,
                 "CUDA scratch: %zu bytes requested but the backend has %zu (a kernel needs "
                 "more temporary memory than was set aside at start-up)",
                 bytes, (size_t)BE_SCRATCH_BYTES);
    }
    return be_scratch;
}

size_t cuda_scratch_max(void) { return BE_SCRATCH_BYTES; }

// ---------------------------------------------------------------------------------------------
// memory

static size_t be_mem_free(void) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return free_b;
}

static void *be_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        cudaGetLastError();
        ts_fatal(TS_ERR_SYSTEM,
                 "CUDA device %d: out of memory allocating %zu bytes (%.1f MiB; %.1f MiB free): "
                 "%s",
                 be_device, bytes, bytes / 1048576.0, be_mem_free() / 1048576.0,
                 cudaGetErrorString(err));
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, be_stream));
    CUDA_CHECK(cudaStreamSynchronize(be_stream));
    return p;
}

static void be_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

static void be_zero(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, be_stream));
}

// the host buffer may be pageable and reused by the caller at once: wait for the copy
static void be_to_device(void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, be_stream));
    CUDA_CHECK(cudaStreamSynchronize(be_stream));
}

static void be_to_host(void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, be_stream));
    CUDA_CHECK(cudaStreamSynchronize(be_stream));
}

static void be_synchronize(void) { CUDA_CHECK(cudaStreamSynchronize(be_stream)); }

// n elements of DT <-> host fp32; bf16 goes through fp32 in the scratch buffer, in chunks
template <ts_dtype DT> static void be_act_to_host(real *host_dst, const void *src, size_t n) {
    if constexpr (DT == TS_F32) {
        be_to_host(host_dst, src, n * sizeof(float));
        return;
    }
    const size_t chunk = cuda_scratch_max() / sizeof(float);
    float *tmp = (float *)cuda_scratch(chunk * sizeof(float));
    for (size_t i = 0; i < n; i += chunk) {
        const size_t m = n - i < chunk ? n - i : chunk;
        cuda_convert_to_f32(DT, tmp, (const char *)src + i * ts_dtype_size(DT), m, be_stream);
        be_to_host(host_dst + i, tmp, m * sizeof(float));
    }
}

template <ts_dtype DT> static void be_act_to_device(void *dst, const real *host_src, size_t n) {
    if constexpr (DT == TS_F32) {
        be_to_device(dst, host_src, n * sizeof(float));
        return;
    }
    const size_t chunk = cuda_scratch_max() / sizeof(float);
    float *tmp = (float *)cuda_scratch(chunk * sizeof(float));
    for (size_t i = 0; i < n; i += chunk) {
        const size_t m = n - i < chunk ? n - i : chunk;
        be_to_device(tmp, host_src + i, m * sizeof(float));
        cuda_convert_from_f32(DT, (char *)dst + i * ts_dtype_size(DT), tmp, m, be_stream);
    }
    be_synchronize(); // the scratch is free again when this returns
}

template <ts_dtype DT>
static void be_params_from_master(void *param, const real *master, size_t n) {
    if (param == (const void *)master || !n) return;
    if constexpr (DT == TS_F32)
        CUDA_CHECK(
            cudaMemcpyAsync(param, master, n * sizeof(float), cudaMemcpyDeviceToDevice, be_stream));
    else
        cuda_convert_from_f32(DT, param, master, n, be_stream);
}

// ---------------------------------------------------------------------------------------------
// ops: the launcher with this table's type and the stream

template <ts_dtype DT>
static void be_embed_forward(void *out, const int *tokens, const void *wte, const void *wpe, int B,
                             int T, int C) {
    cuda_embed_forward(DT, out, tokens, wte, wpe, B, T, C, be_stream);
}
template <ts_dtype DT>
static void be_embed_backward(real *dwte, real *dwpe, const void *dout, const int *tokens, int B,
                              int T, int C) {
    cuda_embed_backward(DT, dwte, dwpe, dout, tokens, B, T, C, be_stream);
}
template <ts_dtype DT>
static void be_layernorm_forward(void *out, real *mean, real *rstd, const void *inp, const void *w,
                                 const void *b, int N, int C) {
    cuda_layernorm_forward(DT, out, mean, rstd, inp, w, b, N, C, be_stream);
}
template <ts_dtype DT>
static void be_residual_layernorm_forward(void *residual, void *out, real *mean, real *rstd,
                                          const void *a, const void *b_in, const void *w,
                                          const void *b, int N, int C) {
    cuda_residual_layernorm_forward(DT, residual, out, mean, rstd, a, b_in, w, b, N, C, be_stream);
}
template <ts_dtype DT>
static void be_layernorm_backward(void *dinp, real *dw, real *db, const void *dout, const void *inp,
                                  const void *w, const real *mean, const real *rstd, int N, int C) {
    cuda_layernorm_backward(DT, dinp, dw, db, dout, inp, w, mean, rstd, N, C, be_stream);
}
template <ts_dtype DT>
static void be_matmul_forward(void *out, const void *inp, const void *w, const void *bias, int N,
                              int C, int OC) {
    cuda_matmul_forward(DT, out, inp, w, bias, N, C, OC, be_stream);
}
template <ts_dtype DT>
static void be_matmul_gelu_forward(void *pre, void *out, const void *inp, const void *w,
                                   const void *bias, int N, int C, int OC) {
    cuda_matmul_gelu_forward(DT, pre, out, inp, w, bias, N, C, OC, be_stream);
}
template <ts_dtype DT>
static void be_matmul_backward(void *dinp, real *dw, real *dbias, const void *dout, const void *inp,
                               const void *w, int N, int C, int OC) {
    cuda_matmul_backward(DT, dinp, dw, dbias, dout, inp, w, N, C, OC, be_stream);
}
template <ts_dtype DT> static size_t be_attention_state_bytes(int B, int T, int C, int NH) {
    return cuda_attention_state_bytes(DT, B, T, C, NH);
}
template <ts_dtype DT>
static void be_attention_forward(void *out, void *state, const void *qkv, int B, int T, int C,
                                 int NH) {
    cuda_attention_forward(DT, out, state, qkv, B, T, C, NH, be_stream);
}
template <ts_dtype DT>
static void be_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                                  const void *state, int B, int T, int C, int NH) {
    cuda_attention_backward(DT, dqkv, dout, qkv, out, state, B, T, C, NH, be_stream);
}
template <ts_dtype DT> static void be_gelu_forward(void *out, const void *inp, size_t n) {
    cuda_gelu_forward(DT, out, inp, n, be_stream);
}
template <ts_dtype DT>
static void be_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n) {
    cuda_gelu_backward(DT, dinp, inp, dout, n, be_stream);
}
template <ts_dtype DT> static void be_add(void *out, const void *a, const void *b, size_t n) {
    cuda_add(DT, out, a, b, n, be_stream);
}
template <ts_dtype DT> static void be_add_inplace(void *y, const void *x, size_t n) {
    cuda_add_inplace(DT, y, x, n, be_stream);
}
template <ts_dtype DT>
static void be_classifier(void *logits, real *losses, const int *targets, int N, int V, int Vp,
                          real dloss) {
    cuda_classifier(DT, logits, losses, targets, N, V, Vp, dloss, be_stream);
}
template <ts_dtype DT>
static void be_adamw(real *master, void *param, const real *grad, real *m, real *v, size_t n,
                     float lr, float beta1, float beta2, float eps, float weight_decay, int t) {
    cuda_adamw(DT, master, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, t, be_stream);
}
static double be_sum_squares(const real *x, size_t n) { return cuda_sum_squares(x, n, be_stream); }
static void be_scale(real *x, real s, size_t n) { cuda_scale(x, s, n, be_stream); }

template <ts_dtype DT> static void be_fill_table(backend *b) {
    memset(b, 0, sizeof(*b));
    b->name = "cuda";
    b->device = be_device_name;
    b->act_dtype = DT;
    b->param_dtype = DT;
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
// the C interface (backend_cuda.h)

extern "C" int backend_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // no driver or no device: not an error for the caller
        return 0;
    }
    return n > 0 ? n : 0;
}

extern "C" ts_status backend_cuda_create(const backend **out, ts_dtype act_dtype, int device) {
    if (act_dtype != TS_F32 && act_dtype != TS_BF16) {
        log_error("CUDA backend: activation type %s is not supported (expected bf16 or fp32)",
                  ts_dtype_name(act_dtype));
        return TS_ERR_INPUT;
    }
    const int which = act_dtype == TS_BF16 ? 1 : 0;
    if (be_device >= 0) {
        if (device != be_device) {
            log_error("CUDA backend: already running on device %d, cannot also use device %d "
                      "(one device per process)",
                      be_device, device);
            return TS_ERR_INPUT;
        }
        *out = &be_tables[which];
        return TS_OK;
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
    cudaError_t err = cudaSetDevice(device);
    cudaDeviceProp prop;
    memset(&prop, 0, sizeof(prop));
    if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, device);
    if (err == cudaSuccess) err = cudaStreamCreate(&be_stream);
    if (err != cudaSuccess) {
        cudaGetLastError();
        log_error("CUDA backend: cannot start device %d: %s", device, cudaGetErrorString(err));
        return TS_ERR_SYSTEM;
    }
    err = cudaMalloc(&be_scratch, BE_SCRATCH_BYTES);
    if (err != cudaSuccess) {
        cudaGetLastError();
        log_error("CUDA backend: device %d: cannot allocate the %zu MiB scratch buffer: %s", device,
                  BE_SCRATCH_BYTES >> 20, cudaGetErrorString(err));
        cudaStreamDestroy(be_stream);
        return TS_ERR_SYSTEM;
    }
    be_device = device;
    cuda_matmul_init();

    snprintf(be_device_name, sizeof(be_device_name), "%s", prop.name);
    be_fill_table<TS_F32>(&be_tables[0]);
    be_fill_table<TS_BF16>(&be_tables[1]);
    *out = &be_tables[which];

    log_info("CUDA backend: device %d, %s (compute capability %d.%d, %.1f GiB, %.1f GiB free), "
             "%s activations and parameters, fp32 gradients and master weights",
             device, prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0,
             be_mem_free() / 1073741824.0, ts_dtype_name(act_dtype));
    return TS_OK;
}

extern "C" void backend_cuda_destroy(void) {
    if (be_device < 0) return;
    CUDA_CHECK(cudaStreamSynchronize(be_stream));
    cuda_matmul_free();
    cuda_attention_free();
    CUDA_CHECK(cudaFree(be_scratch));
    CUDA_CHECK(cudaStreamDestroy(be_stream));
    be_scratch = NULL;
    be_stream = NULL;
    be_device = -1;
}
