// gpt2.h — GPT-2: parameter table, activations, forward and backward as kernel calls.
//
// Layout: token + learned position embeddings, L pre-LayerNorm blocks (causal multi-head
// attention, GELU-tanh MLP), final LayerNorm, LM head tied to the token embedding.
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
#include <stdint.h>

#include "base/common.h"
#include "kernels/backend.h"

typedef struct {
    int layers;       // L
    int heads;        // NH
    int width;        // C
    int seq_len;      // maxT: the position table's length
    int vocab;        // V: real vocabulary (tokens must be < V)
    int padded_vocab; // Vp >= V, multiple of 128 (rows V..Vp-1 of wte stay zero)
} gpt2_config;

#define GPT2_MAX_NAME 40

typedef struct {
    char name[GPT2_MAX_NAME];
    int ndim;
    int shape[2];
    size_t offset; // in elements, into the flat buffer
    size_t numel;
    int layer; // block index, -1 for embeddings and final LayerNorm
    int decay; // 1: AdamW weight decay applies (matrices)
} gpt2_tensor;

typedef struct TS_REAL(gpt2) {
    gpt2_config cfg;
    const TS_REAL(backend) * be;
    int n_tensors;
    gpt2_tensor *tensors;
    size_t n_params;
    real *master; // backend memory, n_params: the weights (what is saved and optimised)
    void *params; // backend memory, n_params of param_dtype: what the ops compute with
                  // (== master when param_dtype is real's type)
    real *grads;  // backend memory, n_params (accumulated by backward)

    int max_B;         // activations are sized for (max_B, maxT)
    int B, T;          // shape of the last forward
    size_t n_acts;     // elements of act_dtype in acts (and in grad_acts)
    size_t n_stats;    // `real` elements in stats
    void *acts;        // backend memory: all forward activations
    void *grad_acts;   // backend memory: activation gradients (same layout)
    real *stats;       // backend memory: LayerNorm means and rstds, per-token losses
    int *tokens;       // backend memory (max_B*maxT)
    int *targets;      // backend memory (max_B*maxT)
    real *losses_host; // host copy of per-token losses (max_B*maxT)
    size_t bytes;      // backend memory this model holds
    // backend memory: what attention forward saves for backward, in the backend's own layout;
    // layer l's at byte att_state_stride * l, the stride being attention_state_bytes for
    // (max_B, maxT) rounded up to 256
    void *att_state;
    size_t att_state_stride;

    // Optional hook, called by backward each time the gradients at flat offsets >= ready_from
    // have their final value (after the final LayerNorm, after each block, after the
    // embeddings: ready_from decreases to 0). The reducer starts communication from it while
    // backward goes on. A non-OK status stops backward and is returned by gpt2_backward.
    ts_status (*grads_ready)(void *ctx, size_t ready_from);
    void *grads_ready_ctx;
} TS_REAL(gpt2);

// Round the vocabulary up to a multiple of 128 (the padded LM head size).
int gpt2_padded_vocab(int vocab);

// Fill the table of named tensors for cfg (no allocation of parameters). Returns the number of
// tensors; when out is not NULL it receives them (cap must be >= the count).
int gpt2_param_table(const gpt2_config *cfg, gpt2_tensor *out, int cap, size_t *n_params);

// Allocate parameters, gradients and activations for micro-batches up to max_B sequences.
// Refuses (TS_ERR_INPUT, one line with the numbers) shapes that are inconsistent, and a model
// that does not fit in the backend's free memory (needed vs free). extra_bytes: what the caller
// will allocate besides (optimizer state), counted in the check.
ts_status TS_REAL(gpt2_create_ex)(TS_REAL(gpt2) * m, const gpt2_config *cfg,
                                  const TS_REAL(backend) * be, int max_B, size_t extra_bytes);
ts_status TS_REAL(gpt2_create)(TS_REAL(gpt2) * m, const gpt2_config *cfg,
                               const TS_REAL(backend) * be, int max_B);
void TS_REAL(gpt2_destroy)(TS_REAL(gpt2) * m);

// Master weights changed (loaded, broadcast): refresh the compute copy.
void TS_REAL(gpt2_sync_params)(TS_REAL(gpt2) * m);

// GPT-2 initialisation, deterministic in seed: weights N(0, 0.02), residual projections
// (attn.proj.w, mlp.proj.w) N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weights 1.
void TS_REAL(gpt2_init_weights)(TS_REAL(gpt2) * m, uint64_t seed);

const gpt2_tensor *gpt2_find_tensor(const gpt2_tensor *t, int n, const char *name);

// Forward on tokens (B,T) (host int32). If targets (host, (B,T)) is given, computes per-token
// losses and returns their SUM (in double); if dloss != 0 the logits are replaced by their
// gradient (scaled by dloss per token) ready for gpt2_backward. Without targets returns 0 and
// keeps the logits, (B,T,Vp), readable through gpt2_logits.
double TS_REAL(gpt2_forward)(TS_REAL(gpt2) * m, const int *tokens, const int *targets, int B, int T,
                             real dloss);
// Backward of the last forward (which must have been called with targets and dloss != 0).
// Accumulates into m->grads; call gpt2_zero_grad at the start of an accumulation. Returns the
// grads_ready hook's status (TS_OK without a hook).
ts_status TS_REAL(gpt2_backward)(TS_REAL(gpt2) * m);
void TS_REAL(gpt2_zero_grad)(TS_REAL(gpt2) * m);
// Pointer (backend memory, act_dtype) to logits of the last forward, (B,T,Vp).
const void *TS_REAL(gpt2_logits)(const TS_REAL(gpt2) * m);

#endif
