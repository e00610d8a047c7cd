// gpt2_table.c — GPT-2's table of named parameter tensors (precision-independent).
#include "models/gpt2.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int gpt2_padded_vocab(int vocab) { return (vocab + 127) / 128 * 128; }

// append one tensor to the table (counting only when out is NULL)
static void table_add(gpt2_tensor *out, int cap, int *n, size_t *off, const char *name, int layer,
                      int d0, int d1) {
    size_t numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    if (out && *n < cap) {
        gpt2_tensor *t = &out[*n];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->ndim = d1 > 0 ? 2 : 1;
        t->shape[0] = d0;
        t->shape[1] = d1 > 0 ? d1 : 1;
        t->offset = *off;
        t->numel = numel;
        t->layer = layer;
        t->decay = t->ndim == 2;
    }
    (*n)++;
    *off += numel;
}

int gpt2_param_table(const gpt2_config *cfg, gpt2_tensor *out, int cap, size_t *n_params) {
    int C = cfg->width, n = 0;
    size_t off = 0;
    char name[GPT2_MAX_NAME];
    table_add(out, cap, &n, &off, "wte", -1, cfg->padded_vocab, C);
    table_add(out, cap, &n, &off, "wpe", -1, cfg->seq_len, C);
    for (int l = 0; l < cfg->layers; l++) {
#define LAYER_TENSOR(suffix, d0, d1)                                                               \
    snprintf(name, sizeof name, "h.%d." suffix, l);                                                \
    table_add(out, cap, &n, &off, name, l, d0, d1)
        LAYER_TENSOR("ln1.w", C, 0);
        LAYER_TENSOR("ln1.b", C, 0);
        LAYER_TENSOR("attn.qkv.w", 3 * C, C);
        LAYER_TENSOR("attn.qkv.b", 3 * C, 0);
        LAYER_TENSOR("attn.proj.w", C, C);
        LAYER_TENSOR("attn.proj.b", C, 0);
        LAYER_TENSOR("ln2.w", C, 0);
        LAYER_TENSOR("ln2.b", C, 0);
        LAYER_TENSOR("mlp.fc.w", 4 * C, C);
        LAYER_TENSOR("mlp.fc.b", 4 * C, 0);
        LAYER_TENSOR("mlp.proj.w", C, 4 * C);
        LAYER_TENSOR("mlp.proj.b", C, 0);
#undef LAYER_TENSOR
    }
    table_add(out, cap, &n, &off, "lnf.w", -1, C, 0);
    table_add(out, cap, &n, &off, "lnf.b", -1, C, 0);
    if (n_params) *n_params = off;
    return n;
}

const gpt2_tensor *gpt2_find_tensor(const gpt2_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}
