// gpt2.h — GPT-2, one architecture of the model interface (models/model.h), registered as "gpt2".
//
// Layout: token + learned position embeddings, L pre-LayerNorm blocks (causal multi-head
// attention, GELU-tanh MLP), final LayerNorm, LM head tied to the token embedding.
// Shape: the [model] keys layers, heads, width, seq_len, vocab, and padded_vocab (vocab rounded up
// to a multiple of 128: the LM head's rows; rows vocab..padded_vocab-1 of wte stay zero).
// All parameters live in one contiguous buffer (backend memory) described by a table of named
// tensors, in forward order, one layer's tensors contiguous:
//   wte (Vp,C)  wpe (maxT,C)
//   h.<l>.ln1.w (C)  h.<l>.ln1.b (C)  h.<l>.attn.qkv.w (3C,C)  h.<l>.attn.qkv.b (3C)
//   h.<l>.attn.proj.w (C,C)  h.<l>.attn.proj.b (C)  h.<l>.ln2.w (C)  h.<l>.ln2.b (C)
//   h.<l>.mlp.fc.w (4C,C)  h.<l>.mlp.fc.b (4C)  h.<l>.mlp.proj.w (C,4C)  h.<l>.mlp.proj.b (C)
//   lnf.w (C)  lnf.b (C)
// Weights are (out, in) like torch.nn.Linear. Gradients, master weights and optimizer moments
// mirror the parameter buffer. Element types follow the backend (see kernels/backend.h):
// `params` and the activations are in the backend's param/act dtypes (void*), everything that
// accumulates or is optimised is `real`.
#ifndef TESSERA_GPT2_H
#define TESSERA_GPT2_H

#include <stddef.h>

#include "models/model.h"

// the shape as a struct (what the model computes with; tests build shapes from it)
typedef struct {
    int layers;       // L
    int heads;        // NH
    int width;        // C
    int seq_len;      // maxT: the position table's length
    int vocab;        // V: real vocabulary (tokens must be < V)
    int padded_vocab; // Vp >= V, multiple of 128 (rows V..Vp-1 of wte stay zero); 0: derived
} gpt2_config;

// Round the vocabulary up to a multiple of 128 (the padded LM head size).
int gpt2_padded_vocab(int vocab);

// Fill the table of named tensors for cfg (no allocation of parameters). Returns the number of
// tensors; when out is not NULL it receives them (cap must be >= the count).
int gpt2_param_table(const gpt2_config *cfg, model_tensor *out, int cap, size_t *n_params);

// The model interface's entry for GPT-2 (listed by the registry in model.c).
extern const TS_REAL(model_arch) TS_REAL(model_arch_gpt2);

// cfg as a model shape of architecture "gpt2" (not checked: model_shape_complete / model_create)
void TS_REAL(gpt2_shape)(TS_REAL(model_shape) * out, const gpt2_config *cfg);

#endif
