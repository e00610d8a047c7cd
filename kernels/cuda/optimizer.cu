// optimizer.cu — CUDA AdamW update, sum of squares (gradient norm) and scaling.
//
// AdamW updates the fp32 master weights and moments elementwise, exactly the formula of the CPU
// reference, and writes the compute copy of the parameters (bf16 or a separate fp32 buffer)
// from the updated master in the same pass.
//
// The sum of squares is the one global reduction: a fixed number of blocks (a function of n
// only) each sum a fixed, strided subset of the elements in double and write one partial; a
// single block then adds the partials in a fixed tree. The same n gives the same bits on every
// run, whatever the GPU.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

#include <math.h>

#define OPT_THREADS    256
#define OPT_MAX_BLOCKS 65536
#define SS_THREADS     256
#define SS_MAX_BLOCKS  1024 // partial sums of the first pass, at most

static unsigned opt_grid(size_t n) {
    size_t g = (n + OPT_THREADS - 1) / OPT_THREADS;
    if (g < 1) g = 1;
    return (unsigned)(g < OPT_MAX_BLOCKS ? g : OPT_MAX_BLOCKS);
}

// ---------------------------------------------------------------------------------------------
// AdamW on n elements, grid-stride, one element per thread per step. c1, c2: the bias
// corrections 1/(1 - beta^t), taken in double on the host as the CPU does. param may be NULL
// (nothing to write: it is the master buffer itself).
template <typename T>
__global__ void adamw_kernel(float *master, T *param, const float *grad, float *m, float *v,
                             size_t n, float lr, float b1, float b2, float eps, float wd, float c1,
                             float c2) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = grad[i];
        const float mi = b1 * m[i] + (1.0f - b1) * g;
        const float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = master[i];
        p -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + wd * p);
        master[i] = p;
        if (param) param[i] = from_f32<T>(p);
    }
}

void cuda_adamw(cuda_ctx *cx, ts_dtype dt, float *master, void *param, const float *grad, float *m,
                float *v, size_t n, float lr, float beta1, float beta2, float eps,
                float weight_decay, int t) {
    if (n == 0) return;
    const float c1 = (float)(1.0 / (1.0 - pow((double)beta1, t)));
    const float c2 = (float)(1.0 / (1.0 - pow((double)beta2, t)));
    if (param == (void *)master) param = nullptr;
    const unsigned grid = opt_grid(n);
    TS_DISPATCH(dt, T,
                CUDA_LAUNCH(grid, OPT_THREADS, 0, cx->stream, adamw_kernel<T>, master, (T *)param,
                            grad, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2));
}

// ---------------------------------------------------------------------------------------------
// sum of squares

// Pass 1. Grid G blocks of SS_THREADS; thread g of the grid sums x[g], x[g + G*SS_THREADS], ...
// in double; part[blockIdx.x] = the block's sum.
__global__ void __launch_bounds__(SS_THREADS)
    sum_squares_part_kernel(double *part, const float *x, size_t n) {
    __shared__ double warp_sums[SS_THREADS / 32];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * SS_THREADS + threadIdx.x; i < n;
         i += (size_t)gridDim.x * SS_THREADS) {
        const double xi = x[i];
        acc += xi * xi;
    }
    acc = block_reduce<SS_THREADS>(acc, warp_op_sum(), 0.0, warp_sums);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// Pass 2. One block of SS_THREADS: thread j adds part[j], part[j + SS_THREADS], ... in order,
// then the block tree; out[0] = the total.
__global__ void __launch_bounds__(SS_THREADS)
    sum_squares_final_kernel(double *out, const double *part, int nparts) {
    __shared__ double warp_sums[SS_THREADS / 32];
    double acc = 0.0;
    for (int j = threadIdx.x; j < nparts; j += SS_THREADS)
        acc += part[j];
    acc = block_reduce<SS_THREADS>(acc, warp_op_sum(), 0.0, warp_sums);
    if (threadIdx.x == 0) out[0] = acc;
}

// Scratch: (G + 1) doubles, G <= SS_MAX_BLOCKS: at most 8200 bytes.
double cuda_sum_squares(cuda_ctx *cx, const float *x, size_t n) {
    if (n == 0) return 0.0;
    cudaStream_t s = cx->stream;
    size_t g = (n + SS_THREADS - 1) / SS_THREADS;
    const int nparts = (int)(g < SS_MAX_BLOCKS ? g : SS_MAX_BLOCKS);
    double *part = (double *)cuda_scratch(cx, (size_t)(nparts + 1) * sizeof(double));
    double *total = part + nparts;
    CUDA_LAUNCH(nparts, SS_THREADS, 0, s, sum_squares_part_kernel, part, x, n);
    CUDA_LAUNCH(1, SS_THREADS, 0, s, sum_squares_final_kernel, total, part, nparts);
    double host = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return host;
}

// ---------------------------------------------------------------------------------------------
// x (n, fp32) *= k, grid-stride

__global__ void scale_kernel(float *x, float k, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= k;
}

void cuda_scale(cuda_ctx *cx, float *x, float k, size_t n) {
    if (n == 0) return;
    CUDA_LAUNCH(opt_grid(n), OPT_THREADS, 0, cx->stream, scale_kernel, x, k, n);
}
