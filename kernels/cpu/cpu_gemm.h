// cpu_gemm.h — the GEMM of the CPU kernels: CBLAS when the build has it, else plain loops.
//
//   cpu_gemm(CblasRowMajor, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
//   C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C,   op(X) = X or X^T
//
// with CBLAS's argument order and meaning. With TESSERA_HAVE_CBLAS (CMake defines it when it
// finds OpenBLAS) cpu_gemm is cblas_sgemm / cblas_dgemm. Without it (a machine that only checks
// the GPU path and has no BLAS) this header declares the CBLAS enumerators with their standard
// values and provides a straightforward row-major GEMM, so the callers read the same either way.
// The fallback is correct for every transpose combination but only row-major; it is meant for
// the CPU reference in tests, not for training speed.
//
// Fallback semantics kept from BLAS: beta == 0 overwrites C without reading it (C may hold
// garbage or NaN); K == 0 gives beta * C. The loops are deterministic: each element of C is
// summed over k in a fixed order on one thread. Rows of C are split across OpenMP threads; called
// inside a parallel region (the attention kernels) the inner region runs on the calling thread.
#ifndef TESSERA_CPU_GEMM_H
#define TESSERA_CPU_GEMM_H

#include "kernels/precision.h"

#ifdef TESSERA_HAVE_CBLAS

#include <cblas.h>

#ifdef TESSERA_F64
#define cpu_gemm cblas_dgemm
#else
#define cpu_gemm cblas_sgemm
#endif

#else // no CBLAS: the fallback loops

#include <stddef.h>
#include <stdlib.h>

#include "base/common.h"

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };

// below this many multiply-adds the GEMM runs on the calling thread
#define CPU_GEMM_PARALLEL_MIN 65536

static inline void cpu_gemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                            enum CBLAS_TRANSPOSE tb, int M, int N, int K, real alpha, const real *A,
                            int lda, const real *B, int ldb, real beta, real *C, int ldc) {
    TS_ASSERT(order == CblasRowMajor);
    if (M <= 0 || N <= 0) return;
    const int at = ta != CblasNoTrans, bt = tb != CblasNoTrans;
    // element (i,k) of op(A)
#define GA(i, k)              (at ? A[(size_t)(k)*lda + (i)] : A[(size_t)(i)*lda + (k)])
    const double work = (double)M * N * (K > 0 ? K : 1);
#pragma omp parallel for schedule(static) if (work >= CPU_GEMM_PARALLEL_MIN)
    for (int i = 0; i < M; i++) {
        real *c = C + (size_t)i * ldc;
        // scale (or clear) the row first, then accumulate alpha * sum_k into it
        if (beta == 0) {
            for (int j = 0; j < N; j++)
                c[j] = 0;
        } else if (beta != 1) {
            for (int j = 0; j < N; j++)
                c[j] *= beta;
        }
        if (K <= 0 || alpha == 0) continue;
        if (bt) {
            // op(B)(k,j) = B[j,k]: each C[i,j] is a dot product of two rows read with stride 1
            // (when A is not transposed)
            for (int j = 0; j < N; j++) {
                const real *b = B + (size_t)j * ldb;
                real s = 0;
                if (!at) {
                    const real *a = A + (size_t)i * lda;
#pragma omp simd reduction(+ : s)
                    for (int k = 0; k < K; k++)
                        s += a[k] * b[k];
                } else {
                    for (int k = 0; k < K; k++)
                        s += A[(size_t)k * lda + i] * b[k];
                }
                c[j] += alpha * s;
            }
        } else {
            // op(B)(k,:) is row k of B: add alpha * op(A)(i,k) * B[k,:] to the row, k in order
            for (int k = 0; k < K; k++) {
                const real aik = alpha * GA(i, k);
                const real *b = B + (size_t)k * ldb;
#pragma omp simd
                for (int j = 0; j < N; j++)
                    c[j] += aik * b[j];
            }
        }
    }
#undef GA
}

#endif // TESSERA_HAVE_CBLAS

#endif
