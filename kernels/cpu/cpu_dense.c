// cpu_dense.c — CPU embedding, LayerNorm and matmul (forward and backward).
//
// Matmuls go to cpu_gemm (cpu_gemm.h: CBLAS, or plain loops in a build without it). The sums
// over rows that backward needs (embedding and bias gradients, LayerNorm weight gradients) are
// computed in a fixed order that does not depend on the thread count, so gradients are
// bit-identical run to run.
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "base/common.h"
#include "kernels/cpu/cpu_gemm.h"
#include "kernels/cpu/cpu_ops.h"

// column block width for the column-sum loops: wide enough for whole cache lines per row
#define COL_BLOCK 256
// rows per chunk for LayerNorm weight-gradient partial sums
#define LN_ROWS 32

// ---------------------------------------------------------------------------------------------
// embedding

void TS_REAL(cpu_embed_forward)(real *out, const int *tokens, const real *wte, const real *wpe,
                                int B, int T, int C) {
    const int BT = B * T;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PARALLEL_MIN)
    for (int bt = 0; bt < BT; bt++) {
        const real *we = wte + (size_t)tokens[bt] * C;
        const real *pe = wpe + (size_t)(bt % T) * C;
        real *o = out + (size_t)bt * C;
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = we[c] + pe[c];
    }
}

// Tokens repeat, so rows of dwte are not owned by one (b,t): threads split the channels instead,
// and each walks all tokens in order.
void TS_REAL(cpu_embed_backward)(real *dwte, real *dwpe, const real *dout, const int *tokens, int B,
                                 int T, int C) {
    const int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= CPU_PARALLEL_MIN)
    for (int blk = 0; blk < nblk; blk++) {
        const int c0 = blk * COL_BLOCK;
        const int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                const real *d = dout + ((size_t)b * T + t) * C;
                real *we = dwte + (size_t)tokens[b * T + t] * C;
                real *pe = dwpe + (size_t)t * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    we[c] += d[c];
                    pe[c] += d[c];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

// Statistics in one pass over the row. Sums are taken around the row's first element, which
// keeps sum(d^2) - sum(d)^2/C free of the cancellation that plain sum(x^2) suffers when the mean
// is large against the spread.
void TS_REAL(cpu_layernorm_forward)(real *out, real *mean, real *rstd, const real *inp,
                                    const real *w, const real *b, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C;
        real *o = out + (size_t)n * C;
        const real shift = x[0];
        real s = 0, ss = 0;
#pragma omp simd reduction(+ : s, ss)
        for (int c = 0; c < C; c++) {
            real d = x[c] - shift;
            s += d;
            ss += d * d;
        }
        real m = s / C;
        real var = ss / C - m * m;
        if (var < 0) var = 0;
        real r = 1 / sqrt(var + (real)1e-5);
        m += shift;
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - m) * r * w[c] + b[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

// With xhat = (x - mean) rstd and g = dout * w:
//   dinp += rstd (g - mean(g) - xhat mean(g xhat));  dw += dout xhat;  db += dout.
// Rows are processed in chunks of LN_ROWS; each chunk sums its dw, db into its own partial row,
// and the partials are added in chunk order, so dw and db do not depend on the thread count.
void TS_REAL(cpu_layernorm_backward)(real *dinp, real *dw, real *db, const real *dout,
                                     const real *inp, const real *w, const real *mean,
                                     const real *rstd, int N, int C) {
    const int nchunk = (N + LN_ROWS - 1) / LN_ROWS;
    real *part = ts_calloc((size_t)nchunk * 2 * C, sizeof(real), "layernorm partial sums");
#pragma omp parallel if ((size_t)N * C >= CPU_PARALLEL_MIN)
    {
#pragma omp for schedule(static)
        for (int k = 0; k < nchunk; k++) {
            real *pw = part + (size_t)k * 2 * C;
            real *pb = pw + C;
            const int n1 = (k + 1) * LN_ROWS < N ? (k + 1) * LN_ROWS : N;
            for (int n = k * LN_ROWS; n < n1; n++) {
                const real *x = inp + (size_t)n * C;
                const real *d = dout + (size_t)n * C;
                real *dx = dinp + (size_t)n * C;
                const real m = mean[n], r = rstd[n];
                real sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
                for (int c = 0; c < C; c++) {
                    real g = d[c] * w[c];
                    sg += g;
                    sgx += g * (x[c] - m) * r;
                }
                sg /= C;
                sgx /= C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    real xhat = (x[c] - m) * r;
                    dx[c] += r * (d[c] * w[c] - sg - xhat * sgx);
                    pw[c] += d[c] * xhat;
                    pb[c] += d[c];
                }
            }
        }
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            real sw = 0, sb = 0;
            for (int k = 0; k < nchunk; k++) {
                sw += part[(size_t)k * 2 * C + c];
                sb += part[(size_t)k * 2 * C + C + c];
            }
            dw[c] += sw;
            db[c] += sb;
        }
    }
    free(part);
}

// ---------------------------------------------------------------------------------------------
// matmul: out(N,OC) = inp(N,C) @ w(OC,C)^T + bias

void TS_REAL(cpu_matmul_forward)(real *out, const real *inp, const real *w, const real *bias, int N,
                                 int C, int OC) {
    real beta = 0;
    if (bias) {
        // start from the bias and let the GEMM add onto it
#pragma omp parallel for schedule(static) if ((size_t)N * OC >= CPU_PARALLEL_MIN)
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(real));
        beta = 1;
    }
    cpu_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1, inp, C, w, C, beta, out, OC);
}

void TS_REAL(cpu_matmul_backward)(real *dinp, real *dw, real *dbias, const real *dout,
                                  const real *inp, const real *w, int N, int C, int OC) {
    // dinp(N,C) += dout(N,OC) @ w(OC,C)
    if (dinp)
        cpu_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1, dout, OC, w, C, 1, dinp,
                 C);
    // dw(OC,C) += dout^T(OC,N) @ inp(N,C)
    cpu_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
    if (!dbias) return;
    // dbias(OC) += column sums of dout: each column block sums its rows in order
    const int nblk = (OC + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)N * OC >= CPU_PARALLEL_MIN)
    for (int blk = 0; blk < nblk; blk++) {
        const int c0 = blk * COL_BLOCK;
        const int nc = c0 + COL_BLOCK < OC ? COL_BLOCK : OC - c0;
        real acc[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const real *d = dout + (size_t)n * OC + c0;
#pragma omp simd
            for (int c = 0; c < nc; c++)
                acc[c] += d[c];
        }
        for (int c = 0; c < nc; c++)
            dbias[c0 + c] += acc[c];
    }
}
