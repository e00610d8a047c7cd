// model.h — what the runtime needs from a model architecture, and the registry of architectures
// by name (`model.arch`).
//
// An architecture describes its shape as a short list of named integers (dims): the first ones are
// [model] config keys of the same names (layers, heads, width, seq_len, vocab), the others it
// derives from them (GPT-2: padded_vocab). The same names are the shape attributes of a weights
// file. Every architecture has the dims "seq_len" (longest sequence) and "vocab" (tokens are
// < vocab): the data loader and the sampler need them.
//
// Its parameters are one contiguous buffer described by a table of named tensors (model_tensor);
// gradients, master weights and optimizer moments mirror the buffer, so the optimizer, the
// reducer and the checkpoints work on the table and the flat buffers without knowing the model.
//
// Like the kernels, the models are compiled in float and in double (kernels/precision.h); the
// double build's symbols carry _f64 (TS_REAL). The tensor table is precision-independent.
//
// Adding an architecture: docs/architecture.md, "A new model".
#ifndef TESSERA_MODEL_H
#define TESSERA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "kernels/backend.h"

#define MODEL_MAX_NAME  40 // bytes of a tensor name, NUL included
#define MODEL_MAX_DIMS  8  // named integers in a shape
#define MODEL_MAX_ARCHS 8  // architectures the registry holds (built-in and registered)

// ---------------------------------------------------------------------------------------------
// precision-independent: the parameter table and the shape's names

typedef struct {
    char name[MODEL_MAX_NAME];
    int ndim;
    int shape[2];  // shape[1] == 1 when ndim == 1
    size_t offset; // in elements, into the flat buffer
    size_t numel;
    int layer; // block index, -1 for tensors outside the blocks
    int decay; // 1: AdamW weight decay applies (matrices)
} model_tensor;

// Append one tensor (d1 == 0: a vector of d0) at *off to out (when out is not NULL and *n < cap),
// counting it in *n and *off: what an architecture's param_table is made of. Weight decay is on
// for matrices.
void model_table_add(model_tensor *out, int cap, int *n, size_t *off, const char *name, int layer,
                     int d0, int d1);
const model_tensor *model_find_tensor(const model_tensor *t, int n, const char *name);

typedef struct {
    const char *name;  // "layers": the [model] key (config dims) and the weights-file attribute
    int from_config;   // 1: the [model] key of that name gives it; 0: the architecture derives it
    int min, max;      // bounds of a derived dim in a file (a config dim has its key's bounds)
    const char *label; // shown to people instead of name (NULL: the name): "padded"
} model_dim;

// ---------------------------------------------------------------------------------------------
// per precision: the architecture, the shape, the model

typedef struct TS_REAL(model_arch) TS_REAL(model_arch);
typedef struct TS_REAL(model) TS_REAL(model);

typedef struct {
    const TS_REAL(model_arch) * arch;
    int dim[MODEL_MAX_DIMS]; // in arch->dims order
} TS_REAL(model_shape);

struct TS_REAL(model_arch) {
    const char *name;  // as in model.arch and the weights file's "arch" attribute: "gpt2"
    const char *title; // as in log lines: "GPT-2"
    int n_dims;        // <= MODEL_MAX_DIMS
    const model_dim *dims;

    // Derive the dims that are not config keys (where 0) and check the whole shape: TS_OK, or
    // TS_ERR_INPUT with one line in why saying what is wrong and what is expected.
    ts_status (*complete)(TS_REAL(model_shape) * s, char *why, size_t why_len);
    // The table of named tensors of a complete shape: returns the count; out (when not NULL,
    // cap >= count) receives them, *n_params (when not NULL) the flat buffer's length.
    int (*param_table)(const TS_REAL(model_shape) * s, model_tensor *out, int cap,
                       size_t *n_params);
    // One line for people: "4 layers, 4 heads, width 128, context 128, vocabulary 256 (padded
    // 256)".
    void (*describe)(const TS_REAL(model_shape) * s, char *buf, size_t len);
    // Elements between rows of logits (>= vocab: a padded LM head).
    int (*logits_stride)(const TS_REAL(model_shape) * s);
    // Backend bytes of the architecture's own state (activations, their gradients, scratch) for
    // micro-batches up to max_B: what create allocates besides weights and gradients.
    size_t (*state_bytes)(const TS_REAL(model_shape) * s, const TS_REAL(backend) * be, int max_B);

    // Allocate that state into m->impl (m's common fields are set, weights allocated).
    void (*create)(TS_REAL(model) * m);
    void (*destroy)(TS_REAL(model) * m);
    // Host values of the initial weights (n_params), deterministic in seed.
    void (*init_weights)(const TS_REAL(model) * m, real *host, uint64_t seed);
    // See model_forward / model_backward / model_logits.
    double (*forward)(TS_REAL(model) * m, const int *tokens, const int *targets, int B, int T,
                      real dloss);
    ts_status (*backward)(TS_REAL(model) * m);
    const void *(*logits)(const TS_REAL(model) * m);
};

struct TS_REAL(model) {
    const TS_REAL(model_arch) * arch;
    TS_REAL(model_shape) shape;
    const TS_REAL(backend) * be;
    int n_tensors;
    model_tensor *tensors;
    size_t n_params;
    real *master; // backend memory, n_params: the weights (what is saved and optimised)
    void *params; // backend memory, n_params of param_dtype: what the ops compute with
                  // (== master when param_dtype is real's type)
    real *grads;  // backend memory, n_params (accumulated by backward)
    int max_B;    // micro-batches of up to max_B sequences
    int seq_len, vocab, logits_stride; // the shape's, for callers
    size_t bytes;                      // backend memory this model holds
    void *impl;                        // the architecture's own state

    // Optional hook, called by backward each time the gradients at flat offsets >= ready_from
    // have their final value (ready_from decreases to 0). The reducer starts communication from
    // it while backward goes on. A non-OK status stops backward and is returned by
    // model_backward.
    ts_status (*grads_ready)(void *ctx, size_t ready_from);
    void *grads_ready_ctx;
};

// ---------------------------------------------------------------------------------------------
// the registry

// the architectures, built-in first (GPT-2), then those registered: i in 0 .. count-1
int TS_REAL(model_arch_count)(void);
const TS_REAL(model_arch) * TS_REAL(model_arch_at)(int i);
// the architecture named `name`, or NULL
const TS_REAL(model_arch) * TS_REAL(model_arch_find)(const char *name);
// Add an architecture (a test's, a plug-in's): TS_ERR_INPUT (one line) for a name already taken,
// a full registry or more dims than MODEL_MAX_DIMS. Call before any config is parsed.
ts_status TS_REAL(model_register)(const TS_REAL(model_arch) * arch);
// model.arch's choices for the config table: every name, '|'-separated ("gpt2")
extern char TS_REAL(model_arch_choices)[];
// "gpt2, toy": the names, for messages
void TS_REAL(model_arch_list)(char *buf, size_t len);

// ---------------------------------------------------------------------------------------------
// shapes

// every dim 0 (unset)
void TS_REAL(model_shape_init)(TS_REAL(model_shape) * s, const TS_REAL(model_arch) * arch);
// the dim's index in the architecture, or -1
int TS_REAL(model_dim_index)(const TS_REAL(model_arch) * arch, const char *name);
// the dim's value, or -1 when the architecture has no such dim
int TS_REAL(model_shape_get)(const TS_REAL(model_shape) * s, const char *name);
// 1 set, 0 no such dim
int TS_REAL(model_shape_set)(TS_REAL(model_shape) * s, const char *name, int value);
// derive and check (arch->complete)
ts_status TS_REAL(model_shape_complete)(TS_REAL(model_shape) * s, char *why, size_t why_len);
// the dims as "layers 2 heads 2 ... padded_vocab 128" (all, or only the config ones)
void TS_REAL(model_shape_format)(const TS_REAL(model_shape) * s, int config_only, char *buf,
                                 size_t len);
int TS_REAL(model_param_table)(const TS_REAL(model_shape) * s, model_tensor *out, int cap,
                               size_t *n_params);
// Backend bytes a model of shape s holds for micro-batches up to max_B (weights, compute copy,
// gradients, the architecture's state): what model_create checks against free memory.
size_t TS_REAL(model_memory_bytes)(const TS_REAL(model_shape) * s, const TS_REAL(backend) * be,
                                   int max_B);

// ---------------------------------------------------------------------------------------------
// the model

// Allocate weights, gradients and the architecture's state for micro-batches up to max_B
// sequences. Refuses (TS_ERR_INPUT, one line with the numbers) a shape that does not complete,
// and a model that does not fit in the backend's free memory (needed vs free). extra_bytes: what
// the caller will allocate besides (optimizer state), counted in the check.
ts_status TS_REAL(model_create_ex)(TS_REAL(model) * m, const TS_REAL(model_shape) * s,
                                   const TS_REAL(backend) * be, int max_B, size_t extra_bytes);
ts_status TS_REAL(model_create)(TS_REAL(model) * m, const TS_REAL(model_shape) * s,
                                const TS_REAL(backend) * be, int max_B);
void TS_REAL(model_destroy)(TS_REAL(model) * m);

// Initial weights, deterministic in seed (then synced to the compute copy).
void TS_REAL(model_init_weights)(TS_REAL(model) * m, uint64_t seed);
// Master weights changed (loaded, broadcast, optimised in shards): refresh the compute copy.
void TS_REAL(model_sync_params)(TS_REAL(model) * m);
void TS_REAL(model_zero_grad)(TS_REAL(model) * m);

// Forward on tokens (B,T) (host int32). If targets (host, (B,T)) is given, computes per-token
// losses and returns their SUM (in double); if dloss != 0 the logits are replaced by their
// gradient (scaled by dloss per token) ready for model_backward. Without targets returns 0 and
// keeps the logits, (B,T,logits_stride) of act_dtype, readable through model_logits.
double TS_REAL(model_forward)(TS_REAL(model) * m, const int *tokens, const int *targets, int B,
                              int T, real dloss);
// Backward of the last forward (called with targets and dloss != 0). Accumulates into m->grads;
// call model_zero_grad at the start of an accumulation. Returns the grads_ready hook's status
// (TS_OK without a hook).
ts_status TS_REAL(model_backward)(TS_REAL(model) * m);
// Pointer (backend memory, act_dtype) to the logits of the last forward, (B,T,logits_stride).
const void *TS_REAL(model_logits)(const TS_REAL(model) * m);

#endif
