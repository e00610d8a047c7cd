// gpt2_table.c — GPT-2's table of named parameter tensors (precision-independent).
#include "models/gpt2.h"

#include <stdio.h>
#include <string.h>

int gpt2_padded_vocab(int vocab) { return (vocab + 127) / 128 * 128; }

int gpt2_param_table(const gpt2_config *cfg, model_tensor *out, int cap, size_t *n_params) {
    int C = cfg->width, n = 0;
    size_t off = 0;
    char name[MODEL_MAX_NAME];
    model_table_add(out, cap, &n, &off, "wte", -1, cfg->padded_vocab, C);
    model_table_add(out, cap, &n, &off, "wpe", -1, cfg->seq_len, C);
    for (int l = 0; l < cfg->layers; l++) {
#define LAYER_TENSOR(suffix, d0, d1)                                                               \
    snprintf(name, sizeof name, "h.%d." suffix, l);                                                \
    model_table_add(out, cap, &n, &off, name, l, d0, d1)
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
    model_table_add(out, cap, &n, &off, "lnf.w", -1, C, 0);
    model_table_add(out, cap, &n, &off, "lnf.b", -1, C, 0);
    if (n_params) *n_params = off;
    return n;
}
