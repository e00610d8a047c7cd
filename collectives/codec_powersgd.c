// codec_powersgd.c — the codec `powersgd` (Vogels, Karimireddy and Jaggi, 2019): each matrix of
// the model travels as a rank-r approximation P Q^T (r = comm.powersgd_rank), with error feedback.
//
// For a matrix M (rows x cols, row-major) of a bucket, on every rank, with E this rank's error
// feedback and Q (cols x r) the matrix's Q of the step before (the same on every rank; at first,
// seeded pseudo-normal values):
//   round 0   M' = M + E;  P = M' Q (rows x r), all-reduced: the sum over ranks
//   round 1   P^ = P with orthonormal columns (Gram-Schmidt, the same on every rank);
//             Q_r = M'^T P^ (cols x r, this rank's own), all-reduced: Q = the sum of the Q_r;
//             E = M' - P^ Q_r^T, what this rank's share of the approximation leaves out
//   result    P^ Q^T = the sum over ranks of P^ P^^T M'_r: the summed M' projected onto the
//             columns of P^. Q, its columns scaled to unit length, warm-starts the next step.
// Mass is conserved on every rank: P^ Q_r^T + E = M', so over the steps the results add up to the
// gradients, less what the ranks' E still hold. A matrix whose sum over ranks has rank <= r comes
// out exact (to rounding): the columns of P^ then span it.
//
// Which matrices: the coded parts the codec layer hands over, each one whole tensor (the reducer
// cuts the buckets at tensor boundaries: whole_tensors) of at least comm.dense_below values with
// both dimensions above r. Vectors and thinner matrices (the `dense` hook), small tensors and
// anything else travel exact, as fp32 in round 0's all-reduce.
//
// Wire: CODEC_WIRE_ROUNDS, two float all-reduces per bucket: r * rows floats per matrix (and the
// dense values) in the first, r * cols in the second. A matrix costs 4 r (rows + cols) bytes
// against 4 rows cols in fp32.
//
// State, per rank: E for every value of the flat buffer ("residual", n fp32; between the rounds
// of a bucket it holds M') and every matrix's Q ("q", cols * r fp32 each, in table order; the same
// on every rank). A value that is not finite spoils its matrix for the step on every rank alike:
// the matrix decodes to NaN (which the trainer's non-finite check sees), keeps its Q, and leaves
// no error feedback behind.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "collectives/codec_ef.h"

typedef struct {
    float *residual; // n: E (M' while a bucket is between its rounds)
    float *q;        // every matrix's Q (cols x r), back to back
    size_t q_len;
    size_t *q_at; // per tensor of the table: where its Q starts in q (SIZE_MAX: not a matrix)
    double *work; // max(rows, cols) * r
} powersgd_state;

static size_t psgd_rank(const codec *cx) { return (size_t)cx->params.powersgd_rank; }

// vectors and matrices too thin for a rank-r approximation to save anything travel dense
static int powersgd_dense(const codec *cx, const codec_tensor *t) {
    return t->rows <= psgd_rank(cx) || t->cols <= psgd_rank(cx);
}

// scale each of the r columns of a (m x r) to unit length; a column that is zero or not finite
// keeps `keep`'s column (when given) or stays as it is
static void unit_columns(float *a, size_t m, size_t r, const float *keep, float *out) {
    for (size_t j = 0; j < r; j++) {
        double ss = 0;
        for (size_t i = 0; i < m; i++)
            ss += (double)a[i * r + j] * a[i * r + j];
        double norm = sqrt(ss);
        int ok = norm > 0 && isfinite(norm);
        for (size_t i = 0; i < m; i++)
            out[i * r + j] = ok     ? (float)(a[i * r + j] / norm)
                             : keep ? keep[i * r + j]
                                    : a[i * r + j];
    }
}

static ts_status powersgd_init(codec *cx) {
    if (cx->params.powersgd_rank < 1) {
        log_error("codec powersgd: rank %d (comm.powersgd_rank: 1 or more)",
                  cx->params.powersgd_rank);
        return TS_ERR_INPUT;
    }
    size_t r = psgd_rank(cx), widest = 1;
    int nt = cx->params.n_tensors;
    powersgd_state *s = ts_calloc(1, sizeof *s, "powersgd state");
    s->residual = ts_calloc(cx->n ? cx->n : 1, sizeof(float), "powersgd error feedback");
    s->q_at = ts_calloc(nt ? (size_t)nt : 1, sizeof(size_t), "powersgd matrices");
    for (int i = 0; i < nt; i++) {
        const codec_tensor *t = &cx->params.tensors[i];
        if (codec_tensor_dense(cx, t)) {
            s->q_at[i] = SIZE_MAX;
            continue;
        }
        s->q_at[i] = s->q_len;
        s->q_len += t->cols * r;
        if (t->rows > widest) widest = t->rows;
        if (t->cols > widest) widest = t->cols;
    }
    s->q = ts_malloc((s->q_len ? s->q_len : 1) * sizeof(float), "powersgd Q");
    s->work = ts_malloc(widest * r * sizeof(double), "powersgd scratch");
    // Q at first: each value the sum of 12 uniforms less 6 (close to a standard normal; only
    // exact arithmetic, so every rank on every machine draws the same), seeded per matrix
    for (int i = 0; i < nt; i++) {
        if (s->q_at[i] == SIZE_MAX) continue;
        const codec_tensor *t = &cx->params.tensors[i];
        float *q = s->q + s->q_at[i];
        uint64_t seed = rng_mix64(0x706f77657273ull + (uint64_t)i);
        for (size_t k = 0; k < t->cols * r; k++) {
            double v = -6.0;
            for (int u = 0; u < 12; u++)
                v += rng_uniform01(&seed);
            q[k] = (float)v;
        }
        unit_columns(q, t->cols, r, NULL, q);
    }
    cx->state = s;
    return TS_OK;
}

static void powersgd_destroy(codec *cx) {
    powersgd_state *s = cx->state;
    if (!s) return;
    free(s->residual);
    free(s->q);
    free(s->q_at);
    free(s->work);
    free(s);
    cx->state = NULL;
}

// the matrix the coded part [first, first + count) is, and its Q (NULL: none such)
static const codec_tensor *powersgd_matrix(const codec *cx, size_t first, size_t count, float **q) {
    const powersgd_state *s = cx->state;
    const codec_tensor *t = codec_tensor_at(cx, first);
    if (!t || t->rows * t->cols != count || s->q_at[t - cx->params.tensors] == SIZE_MAX)
        return NULL;
    *q = s->q + s->q_at[t - cx->params.tensors];
    return t;
}

static size_t powersgd_round_floats(const codec *cx, size_t first, size_t count, int k) {
    float *q;
    const codec_tensor *t = powersgd_matrix(cx, first, count, &q);
    return !t ? 0 : psgd_rank(cx) * (k == 0 ? t->rows : t->cols);
}

static int all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

// c (m x r) = a (m x n) b (n x r), all row-major, in double
static void mul_ab(const float *a, const float *b, float *c, size_t m, size_t n, size_t r,
                   double *acc) {
    for (size_t i = 0; i < m; i++) {
        memset(acc, 0, r * sizeof *acc);
        for (size_t l = 0; l < n; l++) {
            double v = a[i * n + l];
            for (size_t j = 0; j < r; j++)
                acc[j] += v * b[l * r + j];
        }
        for (size_t j = 0; j < r; j++)
            c[i * r + j] = (float)acc[j];
    }
}

// c (n x r) = a^T b, a (m x n), b (m x r), in double
static void mul_atb(const float *a, const float *b, float *c, size_t m, size_t n, size_t r,
                    double *acc) {
    memset(acc, 0, n * r * sizeof *acc);
    for (size_t i = 0; i < m; i++)
        for (size_t l = 0; l < n; l++) {
            double v = a[i * n + l];
            for (size_t j = 0; j < r; j++)
                acc[l * r + j] += v * b[i * r + j];
        }
    for (size_t k = 0; k < n * r; k++)
        c[k] = (float)acc[k];
}

// The columns of p (m x r) made orthonormal in place: modified Gram-Schmidt, each column twice
// against the ones before it, in double. A column with (next to) nothing left beyond them
// becomes zero.
static void orthonormalize(float *p, size_t m, size_t r, double *w) {
    for (size_t k = 0; k < m * r; k++)
        w[k] = p[k];
    for (size_t j = 0; j < r; j++) {
        double n0 = 0, nj = 0;
        for (size_t i = 0; i < m; i++)
            n0 += w[i * r + j] * w[i * r + j];
        for (int pass = 0; pass < 2; pass++)
            for (size_t l = 0; l < j; l++) {
                double dot = 0;
                for (size_t i = 0; i < m; i++)
                    dot += w[i * r + l] * w[i * r + j];
                for (size_t i = 0; i < m; i++)
                    w[i * r + j] -= dot * w[i * r + l];
            }
        for (size_t i = 0; i < m; i++)
            nj += w[i * r + j] * w[i * r + j];
        double scale = nj > 1e-24 * n0 && nj > 0 ? 1.0 / sqrt(nj) : 0.0;
        for (size_t i = 0; i < m; i++)
            w[i * r + j] *= scale;
    }
    for (size_t k = 0; k < m * r; k++)
        p[k] = (float)w[k];
}

static ts_status powersgd_round(codec *cx, size_t first, float *grad, size_t count, int k,
                                float *const *sums) {
    powersgd_state *s = cx->state;
    float *q;
    const codec_tensor *t = powersgd_matrix(cx, first, count, &q);
    if (!t) {
        log_error("codec powersgd: values %zu..%zu are not a matrix of the tensor table", first,
                  first + count);
        return TS_ERR_INTERNAL;
    }
    size_t rows = t->rows, cols = t->cols, r = psgd_rank(cx);
    float *m = s->residual + first; // M' from round 0 on, E after round 1
    if (k == 0) {                   // M' = M + E;  P = M' Q
        for (size_t i = 0; i < count; i++)
            m[i] += grad[i];
        mul_ab(m, q, sums[0], rows, cols, r, s->work);
    } else if (k == 1) { // P^; Q_r = M'^T P^; E = M' - P^ Q_r^T
        float *p = sums[0], *qr = sums[1];
        if (!all_finite(p, rows * r)) { // on every rank alike: no Q_r, no error feedback
            memset(qr, 0, cols * r * sizeof(float));
            memset(m, 0, count * sizeof(float));
            return TS_OK;
        }
        orthonormalize(p, rows, r, s->work);
        mul_atb(m, p, qr, rows, cols, r, s->work);
        for (size_t i = 0; i < rows; i++)
            for (size_t l = 0; l < cols; l++) {
                double a = 0;
                for (size_t j = 0; j < r; j++)
                    a += (double)p[i * r + j] * qr[l * r + j];
                float e = (float)((double)m[i * cols + l] - a);
                m[i * cols + l] = isfinite(e) ? e : 0.0f;
            }
    } else { // the sum over ranks: P^ Q^T; Q warm-starts the next step
        const float *p = sums[0];
        float *qs = sums[1];
        if (!all_finite(p, rows * r)) {
            for (size_t i = 0; i < count; i++)
                grad[i] = NAN;
            return TS_OK;
        }
        for (size_t i = 0; i < rows; i++)
            for (size_t l = 0; l < cols; l++) {
                double a = 0;
                for (size_t j = 0; j < r; j++)
                    a += (double)p[i * r + j] * qs[l * r + j];
                grad[i * cols + l] = (float)a;
            }
        unit_columns(qs, cols, r, q, q);
    }
    return TS_OK;
}

static ts_status powersgd_save(const codec *cx, codec_state_io *io) {
    const powersgd_state *s = cx->state;
    TS_CHECK(codec_state_put_f32(io, "residual", s->residual, cx->n));
    return codec_state_put_f32(io, "q", s->q, s->q_len);
}

static ts_status powersgd_load(codec *cx, codec_state_io *io) {
    powersgd_state *s = cx->state;
    TS_CHECK(codec_state_get_f32(io, "residual", s->residual, cx->n));
    return codec_state_get_f32(io, "q", s->q, s->q_len);
}

const codec_ops codec_powersgd_ops = {
    .name = "powersgd",
    .help = "rank-r approximations P Q^T of the matrices (P, then Q all-reduced), error "
            "feedback; vectors and small tensors exact",
    .wire = CODEC_WIRE_ROUNDS,
    .rounds = 2,
    .whole_tensors = 1,
    .init = powersgd_init,
    .destroy = powersgd_destroy,
    .dense = powersgd_dense,
    .round_floats = powersgd_round_floats,
    .round = powersgd_round,
    .save = powersgd_save,
    .load = powersgd_load,
};
