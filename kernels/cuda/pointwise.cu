// pointwise.cu — CUDA GELU (forward, backward), elementwise add and dtype conversions.
//
// Every kernel here is a grid-stride loop over n elements of the activation type T (fp32 or
// bf16), computing in fp32 and rounding once on store. When every pointer is 16-byte aligned a
// thread moves P = 16/sizeof(T) elements per access (one 128-bit load or store); the last n % P
// elements are then done one by one by the first threads of the grid. Otherwise P = 1.
// Launch: 256 threads per block, as many blocks as the work needs, at most PW_MAX_BLOCKS (the
// grid-stride loop covers the rest, so any n that fits in size_t works).
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#define PW_THREADS    256
#define PW_MAX_BLOCKS 65536

#define GELU_K0 0.7978845608028654f // sqrt(2/pi)
#define GELU_K1 0.044715f

// P elements of T moved by one aligned access
template <typename T, int P> using pw_pack = cuda_pack<T, P>;

static unsigned pw_grid(size_t work) {
    size_t g = (work + PW_THREADS - 1) / PW_THREADS;
    if (g < 1) g = 1;
    return (unsigned)(g < PW_MAX_BLOCKS ? g : PW_MAX_BLOCKS);
}

// 0.5 x (1 + tanh u) = x sigmoid(2u), u = k0 (x + k1 x^3): the same form and the same cap on
// the exponent as the CPU kernel (the cap keeps 1/(1+e) a normal number far into saturation)
__device__ __forceinline__ float gelu_sigmoid(float x) {
    float z = -2.0f * GELU_K0 * (x + GELU_K1 * x * x * x);
    z = fminf(z, 80.0f);
    return 1.0f / (1.0f + expf(z));
}

__device__ __forceinline__ float gelu_value(float x) { return x * gelu_sigmoid(x); }

// d/dx [x s(2u)] = s + 2 x s (1 - s) du/dx,  du/dx = k0 (1 + 3 k1 x^2)
__device__ __forceinline__ float gelu_slope(float x) {
    const float s = gelu_sigmoid(x);
    const float du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * x * x);
    return s + 2.0f * x * s * (1.0f - s) * du;
}

// ---- the element operations, one functor per op ---------------------------------------------
// Each takes the current output value (read only by the accumulating ops) and up to two inputs.
struct op_gelu_fwd {
    static constexpr bool reads_out = false;
    __device__ float operator()(float, float x, float) const { return gelu_value(x); }
};
struct op_gelu_bwd { // out = dinp, a = inp, b = dout
    static constexpr bool reads_out = true;
    __device__ float operator()(float o, float x, float d) const { return o + d * gelu_slope(x); }
};
struct op_add {
    static constexpr bool reads_out = false;
    __device__ float operator()(float, float a, float b) const { return a + b; }
};
struct op_add_inplace { // out = y, a = x
    static constexpr bool reads_out = true;
    __device__ float operator()(float y, float x, float) const { return y + x; }
};
struct op_copy {
    static constexpr bool reads_out = false;
    __device__ float operator()(float, float a, float) const { return a; }
};

// out[i] = op(out[i], a[i], b[i]) for i < n; b may be NULL when the op ignores it.
// TO, TA, TB: element types of out, a, b (each fp32 or bf16).  P: elements per access.
// grid-stride: thread g handles packs g, g + G, g + 2G, ... (G = threads in the grid)
template <int P, typename TO, typename TA, typename TB, typename Op>
__global__ void pw_map_kernel(TO *out, const TA *a, const TB *b, size_t n, Op op) {
    const size_t g0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t npack = n / P;
    for (size_t i = g0; i < npack; i += stride) {
        pw_pack<TO, P> o{};
        if (Op::reads_out) o = reinterpret_cast<const pw_pack<TO, P> *>(out)[i];
        const pw_pack<TA, P> x = reinterpret_cast<const pw_pack<TA, P> *>(a)[i];
        pw_pack<TB, P> y{};
        if (b) y = reinterpret_cast<const pw_pack<TB, P> *>(b)[i];
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float ov = Op::reads_out ? to_f32(o.v[k]) : 0.0f;
            const float yv = b ? to_f32(y.v[k]) : 0.0f;
            o.v[k] = from_f32<TO>(op(ov, to_f32(x.v[k]), yv));
        }
        reinterpret_cast<pw_pack<TO, P> *>(out)[i] = o;
    }
    // the n % P elements past the last whole pack (none when P == 1)
    const size_t t = npack * P + g0;
    if (P > 1 && t < n) {
        const float ov = Op::reads_out ? to_f32(out[t]) : 0.0f;
        const float yv = b ? to_f32(b[t]) : 0.0f;
        out[t] = from_f32<TO>(op(ov, to_f32(a[t]), yv));
    }
}

// Launch the map with 128-bit accesses when every pointer allows it. P is set by the widest
// element type among out, a, b (16 bytes of the widest type); narrower types then move 8 bytes.
template <typename TO, typename TA, typename TB, typename Op>
static void pw_map(TO *out, const TA *a, const TB *b, size_t n, Op op, cudaStream_t s) {
    if (n == 0) return;
    constexpr size_t wmax = sizeof(TO) > sizeof(TA)
                                ? (sizeof(TO) > sizeof(TB) ? sizeof(TO) : sizeof(TB))
                                : (sizeof(TA) > sizeof(TB) ? sizeof(TA) : sizeof(TB));
    constexpr int P = (int)(16 / wmax);
    const bool vec = cuda_aligned16(out) && cuda_aligned16(a) && (!b || cuda_aligned16(b));
    if (vec)
        CUDA_LAUNCH(pw_grid(n / P + 1), PW_THREADS, 0, s, pw_map_kernel<P, TO, TA, TB, Op>, out, a,
                    b, n, op);
    else
        CUDA_LAUNCH(pw_grid(n), PW_THREADS, 0, s, pw_map_kernel<1, TO, TA, TB, Op>, out, a, b, n,
                    op);
}

// ---------------------------------------------------------------------------------------------
// launchers (shapes: n elements of dt; see backend.h)

void cuda_gelu_forward(cuda_ctx *cx, ts_dtype dt, void *out, const void *inp, size_t n) {
    TS_DISPATCH(dt, T,
                pw_map((T *)out, (const T *)inp, (const T *)nullptr, n, op_gelu_fwd(), cx->stream));
}

// dinp += dout * gelu'(inp)
void cuda_gelu_backward(cuda_ctx *cx, ts_dtype dt, void *dinp, const void *inp, const void *dout,
                        size_t n) {
    TS_DISPATCH(dt, T,
                pw_map((T *)dinp, (const T *)inp, (const T *)dout, n, op_gelu_bwd(), cx->stream));
}

void cuda_add(cuda_ctx *cx, ts_dtype dt, void *out, const void *a, const void *b, size_t n) {
    TS_DISPATCH(dt, T, pw_map((T *)out, (const T *)a, (const T *)b, n, op_add(), cx->stream));
}

void cuda_add_inplace(cuda_ctx *cx, ts_dtype dt, void *y, const void *x, size_t n) {
    TS_DISPATCH(dt, T,
                pw_map((T *)y, (const T *)x, (const T *)nullptr, n, op_add_inplace(), cx->stream));
}

// dst (dt) = src (fp32): a device copy for fp32, round-to-nearest-even for bf16
void cuda_convert_from_f32(cuda_ctx *cx, ts_dtype dt, void *dst, const float *src, size_t n) {
    if (n == 0) return;
    cudaStream_t s = cx->stream;
    if (dt != TS_BF16) {
        if (dst != (const void *)src)
            CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, s));
        return;
    }
    pw_map((bf16 *)dst, src, (const float *)nullptr, n, op_copy(), s);
}

// dst (fp32) = src (dt): exact in both cases
void cuda_convert_to_f32(cuda_ctx *cx, ts_dtype dt, float *dst, const void *src, size_t n) {
    if (n == 0) return;
    cudaStream_t s = cx->stream;
    if (dt != TS_BF16) {
        if ((const void *)dst != src)
            CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, s));
        return;
    }
    pw_map(dst, (const bf16 *)src, (const float *)nullptr, n, op_copy(), s);
}
