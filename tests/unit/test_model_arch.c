// test_model_arch.c — a second architecture needs nothing outside models/ and kernels/: a toy
// model (token + position embeddings, one linear head) registered from this program is chosen by
// model.arch, sized, trained by the runtime's optimizer and saved to and loaded from a weights
// file and a checkpoint by the runtime's code, which knows nothing of it. Also: GPT-2 weights
// files carry no arch attribute (they stay what they were), an unknown arch is refused.
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/model.h"
#include "runtime/ckpt.h"
#include "runtime/ckpt_state.h"
#include "runtime/config.h"
#include "runtime/model_config.h"
#include "runtime/optim.h"
#include "tests/unit/expect.h"

// ---------------------------------------------------------------------------------------------
// the toy: logits (B,T,V) = (wte[token] + wpe[t]) @ head^T

static const model_dim toy_dims[] = {
    {"width", 1, 0, 0, NULL}, {"seq_len", 1, 0, 0, NULL}, {"vocab", 1, 0, 0, NULL}};
enum { TOY_C, TOY_T, TOY_V };

typedef struct {
    void *enc, *denc, *logits; // (maxB,T,C), (maxB,T,C), (maxB,T,V)
    real *losses;              // (maxB,T)
    int *tokens, *targets;
    real *losses_host;
    int B, T;
} toy_state;

static ts_status toy_complete(model_shape *s, char *why, size_t n) {
    if (s->dim[TOY_C] < 1 || s->dim[TOY_T] < 1 || s->dim[TOY_V] < 2) {
        snprintf(why, n, "toy: width and seq_len must be >= 1, vocab >= 2");
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

static int toy_table(const model_shape *s, model_tensor *out, int cap, size_t *n_params) {
    int n = 0;
    size_t off = 0;
    model_table_add(out, cap, &n, &off, "wte", -1, s->dim[TOY_V], s->dim[TOY_C]);
    model_table_add(out, cap, &n, &off, "wpe", -1, s->dim[TOY_T], s->dim[TOY_C]);
    model_table_add(out, cap, &n, &off, "head", 0, s->dim[TOY_V], s->dim[TOY_C]);
    if (n_params) *n_params = off;
    return n;
}

static void toy_describe(const model_shape *s, char *buf, size_t len) {
    snprintf(buf, len, "width %d, context %d, vocabulary %d", s->dim[TOY_C], s->dim[TOY_T],
             s->dim[TOY_V]);
}

static int toy_stride(const model_shape *s) { return s->dim[TOY_V]; }

static size_t toy_state_bytes(const model_shape *s, const backend *be, int max_B) {
    size_t bt = (size_t)max_B * s->dim[TOY_T], esz = ts_dtype_size(be->act_dtype);
    return bt * (2 * (size_t)s->dim[TOY_C] + s->dim[TOY_V]) * esz + bt * sizeof(real) +
           2 * bt * sizeof(int);
}

static void toy_create(model *m) {
    const backend *be = m->be;
    toy_state *t = calloc(1, sizeof *t);
    size_t bt = (size_t)m->max_B * m->seq_len, esz = ts_dtype_size(be->act_dtype);
    int C = m->shape.dim[TOY_C];
    t->enc = be->alloc(be, bt * C * esz);
    t->denc = be->alloc(be, bt * C * esz);
    t->logits = be->alloc(be, bt * m->vocab * esz);
    t->losses = be->alloc(be, bt * sizeof(real));
    t->tokens = be->alloc(be, bt * sizeof(int));
    t->targets = be->alloc(be, bt * sizeof(int));
    t->losses_host = calloc(bt, sizeof(real));
    m->impl = t;
}

static void toy_destroy(model *m) {
    toy_state *t = m->impl;
    const backend *be = m->be;
    be->free(be, t->enc);
    be->free(be, t->denc);
    be->free(be, t->logits);
    be->free(be, t->losses);
    be->free(be, t->tokens);
    be->free(be, t->targets);
    free(t->losses_host);
    free(t);
}

static void toy_init(const model *m, real *host, uint64_t seed) {
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < m->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        host[i] = (real)((double)(s >> 11) * 0x1.0p-53 - 0.5) * 0.2f;
    }
}

static double toy_forward(model *m, const int *tokens, const int *targets, int B, int T,
                          real dloss) {
    toy_state *t = m->impl;
    const backend *be = m->be;
    size_t pe = ts_dtype_size(be->param_dtype);
    int C = m->shape.dim[TOY_C], V = m->vocab, BT = B * T;
    const char *p = m->params;
    t->B = B;
    t->T = T;
    be->to_device(be, t->tokens, tokens, (size_t)BT * sizeof(int));
    be->embed_forward(be, t->enc, t->tokens, p + m->tensors[0].offset * pe,
                      p + m->tensors[1].offset * pe, B, T, C);
    be->matmul_forward(be, t->logits, t->enc, p + m->tensors[2].offset * pe, NULL, BT, C, V);
    if (!targets) return 0;
    be->to_device(be, t->targets, targets, (size_t)BT * sizeof(int));
    be->classifier(be, t->logits, t->losses, t->targets, BT, V, V, dloss);
    be->to_host(be, t->losses_host, t->losses, (size_t)BT * sizeof(real));
    double sum = 0;
    for (int i = 0; i < BT; i++)
        sum += t->losses_host[i];
    return sum;
}

static ts_status toy_backward(model *m) {
    toy_state *t = m->impl;
    const backend *be = m->be;
    size_t pe = ts_dtype_size(be->param_dtype);
    int C = m->shape.dim[TOY_C], V = m->vocab, BT = t->B * t->T;
    be->zero(be, t->denc, (size_t)BT * C * ts_dtype_size(be->act_dtype));
    be->matmul_backward(be, t->denc, m->grads + m->tensors[2].offset, NULL, t->logits, t->enc,
                        (const char *)m->params + m->tensors[2].offset * pe, BT, C, V);
    be->embed_backward(be, m->grads + m->tensors[0].offset, m->grads + m->tensors[1].offset,
                       t->denc, t->tokens, t->B, t->T, C);
    return m->grads_ready ? m->grads_ready(m->grads_ready_ctx, 0) : TS_OK;
}

static const void *toy_logits(const model *m) { return ((const toy_state *)m->impl)->logits; }

static const model_arch toy_arch = {
    .name = "toy",
    .title = "Toy",
    .n_dims = 3,
    .dims = toy_dims,
    .complete = toy_complete,
    .param_table = toy_table,
    .describe = toy_describe,
    .logits_stride = toy_stride,
    .state_bytes = toy_state_bytes,
    .create = toy_create,
    .destroy = toy_destroy,
    .init_weights = toy_init,
    .forward = toy_forward,
    .backward = toy_backward,
    .logits = toy_logits,
};

// ---------------------------------------------------------------------------------------------

static int has_arch_attr(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int yes = H5Aexists(f, "arch") > 0;
    H5Fclose(f);
    return yes;
}

static void read_back(const model *m, float *out) {
    m->be->to_host(m->be, out, m->master, m->n_params * sizeof(float));
}

int main(void) {
    CHECK(model_register(&toy_arch) == TS_OK);
    CHECK(model_register(&toy_arch) == TS_ERR_INPUT); // a name is registered once
    CHECK(strcmp(model_arch_choices, "gpt2|toy") == 0);

    // the config chooses the toy; it reads width, seq_len and vocab from [model]
    tessera_config cfg;
    config_defaults(&cfg);
    const char *text = "[model]\narch = \"toy\"\nwidth = 8\nseq_len = 6\nvocab = 11\n";
    CHECK(config_parse_text(&cfg, text, strlen(text), "toy.ini") == TS_OK);
    CHECK(config_validate(&cfg, 1) == TS_OK);
    model_shape shape;
    CHECK(model_config_shape(&cfg, &shape) == TS_OK);
    CHECK(shape.arch == &toy_arch && model_shape_get(&shape, "vocab") == 11);
    CHECK(model_shape_get(&shape, "layers") == -1);
    snprintf(cfg.model.arch, sizeof cfg.model.arch, "nope"); // set by a program: refused
    model_shape bad;
    CHECK(model_config_shape(&cfg, &bad) == TS_ERR_INPUT);
    snprintf(cfg.model.arch, sizeof cfg.model.arch, "toy");

    // train it with the runtime's optimizer: the loss on one batch must fall
    int B = 2, T = 6, tok[12], tgt[12];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (i * 7 + 3) % 11;
        tgt[i] = (i * 5 + 1) % 11;
    }
    model m;
    CHECK(model_create(&m, &shape, backend_cpu(), B) == TS_OK);
    CHECK(m.n_tensors == 3 && m.n_params == (11 + 6 + 11) * 8 && m.logits_stride == 11);
    CHECK(model_memory_bytes(&shape, backend_cpu(), B) == m.bytes && m.bytes > 0);
    model_init_weights(&m, 5);
    cfg.train.lr = 1e-2;
    cfg.train.weight_decay = 0;
    optim_state o;
    optim_create(&o, &m);
    double first = 0, last = 0;
    for (int s = 0; s < 60; s++) {
        model_zero_grad(&m);
        last = model_forward(&m, tok, tgt, B, T, (real)(1.0 / (B * T))) / (B * T);
        if (s == 0) first = last;
        CHECK(model_backward(&m) == TS_OK);
        optim_step(&o, &m, &cfg, cfg.train.lr, optim_grad_norm(&m));
    }
    EXPECT(last < 0.5 * first, "toy loss %.4f -> %.4f", first, last);

    // weights file: written with arch "toy", read back by the same code as GPT-2's
    char dir[] = "/tmp/tessera-model-arch-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], gpath[256], step_dir[300];
    snprintf(path, sizeof path, "%s/toy.h5", dir);
    CHECK(ckpt_write_weights(path, &m, 60) == TS_OK);
    CHECK(has_arch_attr(path) == 1);
    model_shape read;
    int step = -1;
    CHECK(ckpt_read_shape(path, &read, &step) == TS_OK);
    CHECK(read.arch == &toy_arch && step == 60 &&
          memcmp(read.dim, shape.dim, sizeof read.dim) == 0);
    model m2;
    CHECK(model_create(&m2, &read, backend_cpu(), 1) == TS_OK);
    CHECK(ckpt_read_weights(path, &m2) == TS_OK);
    float *a = calloc(m.n_params, sizeof(float)), *b = calloc(m.n_params, sizeof(float));
    read_back(&m, a);
    read_back(&m2, b);
    CHECK(memcmp(a, b, m.n_params * sizeof(float)) == 0);

    // checkpoint: the table's tensors, the toy's shape from the resolved config
    ckpt_state_meta meta = {60, 1, 2, 60, cfg.run.seed, 120, NULL, NULL, NULL};
    float *mom = calloc(m.n_params, sizeof(float));
    snprintf(step_dir, sizeof step_dir, "%s/step-%08d", dir, 60);
    char state_path[400];
    snprintf(state_path, sizeof state_path, "%s/%s", step_dir, CKPT_STATE_FILE);
    CHECK(mkdir(step_dir, 0755) == 0);
    CHECK(ckpt_state_write(state_path, &m, &cfg, &meta, a, mom, mom) == TS_OK);
    ckpt_state_meta got;
    memset(&got, 0, sizeof got); // got.codec NULL: the /codec state is not wanted
    memset(b, 0, m.n_params * sizeof(float));
    CHECK(ckpt_state_load(step_dir, &m2, &cfg, &got, b, mom, mom) == TS_OK);
    CHECK(memcmp(a, b, m.n_params * sizeof(float)) == 0 && got.step == 60);
    tessera_config gcfg; // the same checkpoint refused for a GPT-2 config
    config_defaults(&gcfg);
    CHECK(ckpt_state_load(step_dir, &m2, &gcfg, &got, b, mom, mom) == TS_ERR_INPUT);

    // a GPT-2 weights file has no arch attribute: the files written before architectures had
    // names and those written now are the same
    model_shape gshape;
    CHECK(model_config_shape(&gcfg, &gshape) == TS_OK && gshape.arch == model_arch_find("gpt2"));
    gcfg.model.layers = 1;
    gcfg.model.width = 8;
    gcfg.model.heads = 2;
    gcfg.model.seq_len = 4;
    CHECK(model_config_shape(&gcfg, &gshape) == TS_OK);
    CHECK(model_shape_get(&gshape, "padded_vocab") == 256);
    model g;
    CHECK(model_create(&g, &gshape, backend_cpu(), 1) == TS_OK);
    model_init_weights(&g, 1);
    snprintf(gpath, sizeof gpath, "%s/gpt2.h5", dir);
    CHECK(ckpt_write_weights(gpath, &g, 0) == TS_OK);
    CHECK(has_arch_attr(gpath) == 0);
    CHECK(ckpt_read_shape(gpath, &read, &step) == TS_OK && read.arch == gshape.arch);

    model_destroy(&g);
    optim_destroy(&o, &m);
    model_destroy(&m);
    model_destroy(&m2);
    free(a);
    free(b);
    free(mom);
    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("%s\n", g_failures ? "FAIL" : "PASS");
    return g_failures != 0;
}
