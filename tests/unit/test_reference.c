// test_reference.c — tessera's GPT-2 against an independent PyTorch implementation.
//
// Reads the fixture written by tests/reference/gen_gpt2_fixture.py (format in
// tests/reference/README.md): a tiny GPT-2's parameters, tokens and targets, and what float64
// torch computed from them: logits, mean loss, every parameter gradient, and five AdamW steps.
// Loads the same parameters into the model, runs the same computations through the backend and
// compares each tensor by its relative error ||ours - ref|| / ||ref||.
//
// This file is compiled twice (tests/cmake/reference.cmake): once in float against
// tessera_compute_f32 and once with TESSERA_F64 against tessera_compute_f64; the tolerances
// below are per precision.
//
//   test_reference_f32 FIXTURE      exit 0: all within tolerance, 1: a mismatch or bad fixture
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gpt2.h"

#ifdef TESSERA_F64
#define PRECISION "f64"
// double against double: only summation order differs
static const double TOL_FORWARD = 1e-10; // logits, loss
static const double TOL_GRAD = 1e-10;
static const double TOL_ADAM = 1e-10; // AdamW losses and final parameters
static const double TOL_ADAM_QKV_BIAS = 1e-10;
#else
#define PRECISION "f32"
static const double TOL_FORWARD = 1e-5;
static const double TOL_GRAD = 1e-5;
// The key third of attn.qkv.b has an exactly zero gradient (softmax ignores a constant added to
// every score of a row), so in float it is rounding noise of ~1e-12 that AdamW divides by
// eps = 1e-8 and turns into real, noise-driven moves; in float torch this alone gives 6e-6 on
// qkv.b after five steps (tessera: 5e-6 and 7e-6). Every other tensor stays under 1e-6.
static const double TOL_ADAM = 1e-5;
static const double TOL_ADAM_QKV_BIAS = 3e-5;
#endif

// ---------------------------------------------------------------------------------------------
// fixture

#define FX_MAGIC   "TSGPT2RF"
#define FX_VERSION 1

typedef struct {
    char name[64];
    int ndim;
    int shape[4];
    size_t numel;
    const double *data; // points into the file image (8-byte aligned copy)
} fx_array;

typedef struct {
    int L, NH, C, maxT, V, Vp, B, T, steps;
    double lr, beta1, beta2, eps, weight_decay;
    int *tokens, *targets; // (B,T)
    int n_arrays;
    fx_array *arrays;
    double *values; // storage of every array's data
} fixture;

typedef struct {
    const char *path;
    const unsigned char *buf;
    size_t size, pos;
} fx_reader;

static int fx_read(fx_reader *r, void *dst, size_t bytes, const char *what) {
    if (r->size - r->pos < bytes) {
        log_error("%s: offset %zu: file ends while reading %s (%zu bytes expected)", r->path,
                  r->pos, what, bytes);
        return -1;
    }
    memcpy(dst, r->buf + r->pos, bytes);
    r->pos += bytes;
    return 0;
}

static int fx_read_i32(fx_reader *r, int *v, const char *what) {
    int32_t x;
    if (fx_read(r, &x, 4, what)) return -1;
    *v = x;
    return 0;
}

// Parse the whole fixture; returns 0 or -1 after one error line naming the offset.
static int fixture_load(fixture *fx, const char *path) {
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("%s: cannot open the reference fixture (regenerate with "
                  "tests/reference/gen_gpt2_fixture.py)",
                  path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 0) {
        log_error("%s: cannot read the file size", path);
        fclose(f);
        return -1;
    }
    unsigned char *buf = ts_malloc((size_t)size + 1, "fixture");
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    fx_reader r = {path, buf, got, 0};
    int rc = -1;

    char magic[8];
    int version;
    if (fx_read(&r, magic, 8, "magic") || fx_read_i32(&r, &version, "version")) goto done;
    if (memcmp(magic, FX_MAGIC, 8) != 0 || version != FX_VERSION) {
        log_error("%s: offset 0: expected magic %s version %d", path, FX_MAGIC, FX_VERSION);
        goto done;
    }
    int *ints[] = {&fx->L, &fx->NH, &fx->C, &fx->maxT, &fx->V, &fx->Vp, &fx->B, &fx->T, &fx->steps};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (fx_read_i32(&r, ints[i], "config")) goto done;
    double *hyper[] = {&fx->lr, &fx->beta1, &fx->beta2, &fx->eps, &fx->weight_decay};
    for (size_t i = 0; i < sizeof hyper / sizeof hyper[0]; i++)
        if (fx_read(&r, hyper[i], 8, "AdamW hyperparameters")) goto done;
    if (fx->B <= 0 || fx->T <= 0 || fx->T > fx->maxT || fx->B * fx->T > 1 << 20) {
        log_error("%s: offset 12: bad shape B=%d T=%d maxT=%d", path, fx->B, fx->T, fx->maxT);
        goto done;
    }
    size_t n_tok = (size_t)fx->B * fx->T;
    fx->tokens = ts_malloc(n_tok * sizeof(int), "fixture tokens");
    fx->targets = ts_malloc(n_tok * sizeof(int), "fixture targets");
    for (size_t i = 0; i < n_tok; i++)
        if (fx_read_i32(&r, &fx->tokens[i], "tokens")) goto done;
    for (size_t i = 0; i < n_tok; i++)
        if (fx_read_i32(&r, &fx->targets[i], "targets")) goto done;
    if (fx_read_i32(&r, &fx->n_arrays, "array count")) goto done;
    if (fx->n_arrays <= 0 || fx->n_arrays > 10000) {
        log_error("%s: offset %zu: bad array count %d", path, r.pos - 4, fx->n_arrays);
        goto done;
    }
    fx->arrays = ts_calloc((size_t)fx->n_arrays, sizeof(fx_array), "fixture arrays");
    // the doubles are stored unaligned after variable-length names: copy them out
    fx->values = ts_malloc(got, "fixture values");
    size_t used = 0;
    for (int i = 0; i < fx->n_arrays; i++) {
        fx_array *a = &fx->arrays[i];
        int len;
        if (fx_read_i32(&r, &len, "name length")) goto done;
        if (len <= 0 || len >= (int)sizeof a->name) {
            log_error("%s: offset %zu: bad name length %d", path, r.pos - 4, len);
            goto done;
        }
        if (fx_read(&r, a->name, (size_t)len, "name") || fx_read_i32(&r, &a->ndim, "ndim"))
            goto done;
        if (a->ndim < 0 || a->ndim > 4) {
            log_error("%s: offset %zu: %s: bad ndim %d", path, r.pos - 4, a->name, a->ndim);
            goto done;
        }
        a->numel = 1;
        for (int d = 0; d < a->ndim; d++) {
            if (fx_read_i32(&r, &a->shape[d], "shape")) goto done;
            if (a->shape[d] <= 0) {
                log_error("%s: offset %zu: %s: bad dimension %d", path, r.pos - 4, a->name,
                          a->shape[d]);
                goto done;
            }
            a->numel *= (size_t)a->shape[d];
        }
        if (fx_read(&r, fx->values + used, a->numel * sizeof(double), a->name)) goto done;
        a->data = fx->values + used;
        used += a->numel;
    }
    if (r.pos != r.size) {
        log_error("%s: offset %zu: %zu unexpected bytes after the last array", path, r.pos,
                  r.size - r.pos);
        goto done;
    }
    rc = 0;
done:
    free(buf);
    return rc;
}

static void fixture_free(fixture *fx) {
    free(fx->tokens);
    free(fx->targets);
    free(fx->arrays);
    free(fx->values);
}

// The array called name, checked to hold numel values; NULL after an error line.
static const fx_array *fixture_get(const fixture *fx, const char *name, size_t numel) {
    for (int i = 0; i < fx->n_arrays; i++) {
        if (strcmp(fx->arrays[i].name, name) != 0) continue;
        if (fx->arrays[i].numel != numel) {
            log_error("fixture: %s has %zu values, the model expects %zu", name,
                      fx->arrays[i].numel, numel);
            return NULL;
        }
        return &fx->arrays[i];
    }
    log_error("fixture: no array named %s", name);
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// comparison

static int g_failures;

// ||ours - ref|| / ||ref|| over n values (absolute when ref is all zero); one line per tensor.
// ours has stride `stride` between rows of `cols` values (to skip padded vocabulary columns).
static void compare(const char *what, const real *ours, size_t rows, size_t cols, size_t stride,
                    const double *ref, double tol) {
    double diff = 0, norm = 0;
    int finite = 1;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double a = ours[i * stride + j], b = ref[i * cols + j];
            if (!isfinite(a)) finite = 0;
            diff += (a - b) * (a - b);
            norm += b * b;
        }
    double err = norm > 0 ? sqrt(diff / norm) : sqrt(diff);
    int ok = finite && err <= tol;
    printf("  %-28s %s %.3e  (tol %.0e)  %s\n", what, norm > 0 ? "rel" : "abs", err, tol,
           ok ? "ok" : "MISMATCH");
    if (!ok) {
        g_failures++;
        log_error("reference " PRECISION ": %s differs from torch: error %.3e > %.0e%s", what, err,
                  tol, finite ? "" : " (non-finite values)");
    }
}

// ---------------------------------------------------------------------------------------------
// the checks

// The model's table must be the fixture's: same names, same shapes, same order.
static int check_table(const fixture *fx, const TS_REAL(model) * m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        char name[96];
        snprintf(name, sizeof name, "param/%s", t->name);
        const fx_array *a = fixture_get(fx, name, t->numel);
        if (!a) return -1;
        if (a != &fx->arrays[i] || a->ndim != t->ndim || a->shape[0] != t->shape[0] ||
            (t->ndim == 2 && a->shape[1] != t->shape[1])) {
            log_error("fixture: %s is array %d with ndim %d, the model's tensor %d has ndim %d "
                      "shape (%d,%d)",
                      name, (int)(a - fx->arrays), a->ndim, i, t->ndim, t->shape[0], t->shape[1]);
            return -1;
        }
    }
    return 0;
}

// Every tensor of the model's buffer `dev` (backend memory) against the fixture's prefix/<name>.
// tol_qkv_bias applies to the attention biases (qkv.b), tol to every other tensor.
static int compare_tensors(const fixture *fx, const TS_REAL(model) * m, const real *dev,
                           const char *prefix, double tol, double tol_qkv_bias) {
    real *host = ts_malloc(m->n_params * sizeof(real), "host copy");
    m->be->to_host(m->be, host, dev, m->n_params * sizeof(real));
    int rc = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        char name[96];
        snprintf(name, sizeof name, "%s/%s", prefix, t->name);
        const fx_array *a = fixture_get(fx, name, t->numel);
        if (!a) {
            rc = -1;
            break;
        }
        size_t len = strlen(t->name);
        int qkv_bias = len >= 10 && strcmp(t->name + len - 10, "attn.qkv.b") == 0;
        compare(name, host + t->offset, 1, t->numel, t->numel, a->data,
                qkv_bias ? tol_qkv_bias : tol);
    }
    free(host);
    return rc;
}

static int run_reference(const fixture *fx) {
    const TS_REAL(backend) *be = TS_REAL(backend_cpu)();
    gpt2_config cfg = {.layers = fx->L,
                       .heads = fx->NH,
                       .width = fx->C,
                       .seq_len = fx->maxT,
                       .vocab = fx->V,
                       .padded_vocab = fx->Vp};
    if (gpt2_padded_vocab(fx->V) != fx->Vp) {
        log_error("fixture: Vp=%d, but tessera pads V=%d to %d", fx->Vp, fx->V,
                  gpt2_padded_vocab(fx->V));
        return -1;
    }
    TS_REAL(model_shape) shape;
    TS_REAL(gpt2_shape)(&shape, &cfg);
    TS_REAL(model) m;
    if (TS_REAL(model_create)(&m, &shape, be, fx->B) != TS_OK) return -1;
    int B = fx->B, T = fx->T, BT = B * T, V = fx->V, Vp = fx->Vp;
    int rc = -1;
    real *host = ts_malloc(m.n_params * sizeof(real), "parameters");
    real *logits = ts_malloc((size_t)BT * Vp * sizeof(real), "logits");
    real *adam_m = be->alloc(be, m.n_params * sizeof(real));
    real *adam_v = be->alloc(be, m.n_params * sizeof(real));
    if (check_table(fx, &m)) goto done;

    // the fixture's parameters, converted to this precision
    for (int i = 0; i < m.n_tensors; i++) {
        const model_tensor *t = &m.tensors[i];
        const double *src = fx->arrays[i].data; // check_table: array i is param/<tensor i>
        for (size_t j = 0; j < t->numel; j++)
            host[t->offset + j] = (real)src[j];
    }
    be->to_device(be, m.master, host, m.n_params * sizeof(real));

    // logits: a forward without targets keeps them (a forward with dloss != 0 overwrites them)
    printf("[%s] forward, B=%d T=%d (maxT=%d) V=%d Vp=%d\n", PRECISION, B, T, fx->maxT, V, Vp);
    const fx_array *ref_logits = fixture_get(fx, "logits", (size_t)BT * V);
    const fx_array *ref_loss = fixture_get(fx, "loss", 1);
    if (!ref_logits || !ref_loss) goto done;
    TS_REAL(model_forward)(&m, fx->tokens, NULL, B, T, 0);
    be->to_host(be, logits, TS_REAL(model_logits)(&m), (size_t)BT * Vp * sizeof(real));
    compare("logits", logits, (size_t)BT, (size_t)V, (size_t)Vp, ref_logits->data, TOL_FORWARD);

    // loss and gradients of the mean loss
    real dloss = (real)(1.0 / BT);
    TS_REAL(model_zero_grad)(&m);
    real loss = (real)(TS_REAL(model_forward)(&m, fx->tokens, fx->targets, B, T, dloss) / BT);
    compare("loss", &loss, 1, 1, 1, ref_loss->data, TOL_FORWARD);
    TS_REAL(model_backward)(&m);
    printf("[%s] gradients of the mean loss\n", PRECISION);
    if (compare_tensors(fx, &m, m.grads, "grad", TOL_GRAD, TOL_GRAD)) goto done;

    // AdamW from the same parameters, the same batch every step
    printf("[%s] %d AdamW steps: lr %g betas (%g, %g) eps %g weight decay %g (matrices)\n",
           PRECISION, fx->steps, fx->lr, fx->beta1, fx->beta2, fx->eps, fx->weight_decay);
    const fx_array *ref_losses = fixture_get(fx, "adam_losses", (size_t)fx->steps);
    if (!ref_losses) goto done;
    real *losses = ts_malloc((size_t)fx->steps * sizeof(real), "losses");
    for (int step = 1; step <= fx->steps; step++) {
        TS_REAL(model_zero_grad)(&m);
        losses[step - 1] =
            (real)(TS_REAL(model_forward)(&m, fx->tokens, fx->targets, B, T, dloss) / BT);
        TS_REAL(model_backward)(&m);
        for (int i = 0; i < m.n_tensors; i++) {
            const model_tensor *t = &m.tensors[i];
            be->adamw(be, m.master + t->offset, m.master + t->offset, m.grads + t->offset,
                      adam_m + t->offset, adam_v + t->offset, t->numel, (float)fx->lr,
                      (float)fx->beta1, (float)fx->beta2, (float)fx->eps,
                      t->decay ? (float)fx->weight_decay : 0.0f, step);
        }
    }
    compare("adam_losses", losses, 1, (size_t)fx->steps, (size_t)fx->steps, ref_losses->data,
            TOL_ADAM);
    free(losses);
    if (compare_tensors(fx, &m, m.master, "adam_final", TOL_ADAM, TOL_ADAM_QKV_BIAS)) goto done;
    rc = 0;
done:
    be->free(be, adam_m);
    be->free(be, adam_v);
    free(logits);
    free(host);
    TS_REAL(model_destroy)(&m);
    return rc;
}

int main(int argc, char **argv) {
    log_init(0, 1);
    if (argc != 2) {
        log_error("usage: %s FIXTURE", argv[0]);
        return 1;
    }
    fixture fx;
    if (fixture_load(&fx, argv[1])) {
        fixture_free(&fx);
        return 1;
    }
    int rc = run_reference(&fx);
    fixture_free(&fx);
    if (rc != 0) return 1;
    if (g_failures) {
        printf("[%s] FAIL: %d tensors differ from the torch reference\n", PRECISION, g_failures);
        return 1;
    }
    printf("[%s] all tensors match the torch reference\n", PRECISION);
    return 0;
}
