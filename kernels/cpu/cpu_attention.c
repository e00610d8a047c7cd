// cpu_attention.c — CPU causal multi-head self-attention, forward and backward.
//
// qkv is (B,T,3C): row (b,t) holds q | k | v, each of C = NH heads of hs = C/NH contiguous
// values, so one head's Q, K and V are (T,hs) matrices with row stride 3C. Work is split by
// (batch, head): each pair reads and writes only its own hs-wide columns of qkv, dqkv and out and
// its own (T,T) slices of the score buffers, so threads never share an output and the result
// does not depend on the thread count.
//
// The four products per direction (Q K^T, A V, and in backward dO V^T, A^T dO, dP K, dP^T Q) are
// GEMMs on those strided matrices. Inside the parallel region OpenBLAS runs single-threaded. To
// skip most of the masked upper triangle, query rows go in blocks of QBLK: a block of queries
// only meets the keys up to its last row (and in the transposed products a block of keys only
// meets the queries from its first row on). Softmax and its backward are row loops that
// vectorize, the backward using the row's dot product sum(att * datt) instead of the Jacobian.
#include <string.h>

#include "kernels/cpu/cpu_gemm.h"
#include "kernels/cpu/cpu_ops.h"

#define QBLK 64 // query (or key) rows per block of the triangular products

#define ROW_MAJ CblasRowMajor
#define NO_T    CblasNoTrans
#define TR      CblasTrans

void TS_REAL(cpu_attention_forward)(real *out, real *preatt, real *att, const real *qkv, int B,
                                    int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const real scale = 1 / sqrt((real)hs);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * T * C >= CPU_PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const real *Q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *K = Q + C, *V = Q + 2 * C;
            real *P = preatt + ((size_t)b * NH + h) * T * T;
            real *A = att + ((size_t)b * NH + h) * T * T;
            real *O = out + (size_t)b * T * C + (size_t)h * hs;

            // P[t, :t0+nt] = scale * Q[t] . K for the query block t0..t0+nt
            for (int t0 = 0; t0 < T; t0 += QBLK) {
                const int nt = T - t0 < QBLK ? T - t0 : QBLK;
                cpu_gemm(ROW_MAJ, NO_T, TR, nt, t0 + nt, hs, scale, Q + (size_t)t0 * C3, C3, K, C3,
                         0, P + (size_t)t0 * T, T);
            }
            for (int t = 0; t < T; t++) {
                real *p = P + (size_t)t * T, *a = A + (size_t)t * T;
                real mx = p[0], sum = 0;
#pragma omp simd reduction(max : mx)
                for (int u = 1; u <= t; u++)
                    mx = p[u] > mx ? p[u] : mx;
#pragma omp simd reduction(+ : sum)
                for (int u = 0; u <= t; u++) {
                    a[u] = cpu_exp(p[u] - mx);
                    sum += a[u];
                }
                const real inv = 1 / sum;
#pragma omp simd
                for (int u = 0; u <= t; u++)
                    a[u] *= inv;
                // above the diagonal: zero, which also masks the A V product below
                for (int u = t + 1; u < T; u++)
                    p[u] = a[u] = 0;
            }
            // O[t0..] = A[t0.., :t0+nt] V[:t0+nt]
            for (int t0 = 0; t0 < T; t0 += QBLK) {
                const int nt = T - t0 < QBLK ? T - t0 : QBLK;
                cpu_gemm(ROW_MAJ, NO_T, NO_T, nt, hs, t0 + nt, 1, A + (size_t)t0 * T, T, V, C3, 0,
                         O + (size_t)t0 * C, C);
            }
        }
    }
}

// With A = att, dO = dout of the head:
//   dA = dO V^T                        dV += A^T dO
//   dP[t,u] = A[t,u] (dA[t,u] - sum_j A[t,j] dA[t,j])
//   dQ += scale dP K                   dK += scale dP^T Q
void TS_REAL(cpu_attention_backward)(real *dqkv, real *dpreatt, real *datt, const real *dout,
                                     const real *qkv, const real *att, int B, int T, int C,
                                     int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const real scale = 1 / sqrt((real)hs);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * T * C >= CPU_PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
            const real *Q = qkv + off, *K = Q + C, *V = Q + 2 * C;
            real *dQ = dqkv + off, *dK = dQ + C, *dV = dQ + 2 * C;
            const real *A = att + ((size_t)b * NH + h) * T * T;
            real *dA = datt + ((size_t)b * NH + h) * T * T;
            real *dP = dpreatt + ((size_t)b * NH + h) * T * T;
            const real *dO = dout + (size_t)b * T * C + (size_t)h * hs;

            for (int t0 = 0; t0 < T; t0 += QBLK) {
                const int nt = T - t0 < QBLK ? T - t0 : QBLK;
                cpu_gemm(ROW_MAJ, NO_T, TR, nt, t0 + nt, hs, 1, dO + (size_t)t0 * C, C, V, C3, 0,
                         dA + (size_t)t0 * T, T);
            }
            for (int t = 0; t < T; t++) {
                const real *a = A + (size_t)t * T;
                real *da = dA + (size_t)t * T, *dp = dP + (size_t)t * T;
                real s = 0;
#pragma omp simd reduction(+ : s)
                for (int u = 0; u <= t; u++)
                    s += a[u] * da[u];
#pragma omp simd
                for (int u = 0; u <= t; u++)
                    dp[u] = a[u] * (da[u] - s);
                for (int u = t + 1; u < T; u++)
                    dp[u] = da[u] = 0;
            }
            for (int t0 = 0; t0 < T; t0 += QBLK) {
                const int nt = T - t0 < QBLK ? T - t0 : QBLK;
                // queries t0.. meet keys :t0+nt
                cpu_gemm(ROW_MAJ, NO_T, NO_T, nt, hs, t0 + nt, scale, dP + (size_t)t0 * T, T, K, C3,
                         1, dQ + (size_t)t0 * C3, C3);
                // keys t0..t0+nt meet queries t0..T-1: column block of A and dP from row t0
                const size_t blk = (size_t)t0 * T + t0;
                cpu_gemm(ROW_MAJ, TR, NO_T, nt, hs, T - t0, 1, A + blk, T, dO + (size_t)t0 * C, C,
                         1, dV + (size_t)t0 * C3, C3);
                cpu_gemm(ROW_MAJ, TR, NO_T, nt, hs, T - t0, scale, dP + blk, T, Q + (size_t)t0 * C3,
                         C3, 1, dK + (size_t)t0 * C3, C3);
            }
        }
    }
}
