// sample.h — `tessera sample` and the text generation used at the end of training.
#ifndef TESSERA_SAMPLE_H
#define TESSERA_SAMPLE_H

#include <stdint.h>
#include <stdio.h>

#include "base/common.h"
#include "models/model.h"

typedef struct {
    int length;        // tokens to generate
    float temperature; // > 0
    int top_k;         // 0 = whole vocabulary
    uint64_t seed;
} sample_options;

// Decoder for generated tokens: bytes for the byte-level tokenizer, llm.c's tokenizer file
// (magic 20240328) for GPT-2 tokens, or token ids when neither is available.
typedef struct {
    int n; // entries (0: print ids)
    char **piece;
    int *piece_len;
    int eot; // end-of-text token or -1
    int byte_level;
} tokenizer;

// spec: "byte", a tokenizer file path, or "" (ids). A file must be a regular file (a FIFO is
// refused, not waited on), hold at least `vocab` tokens and no more than its size allows, and an
// end-of-text token < vocab; else one error line naming the file and the offset, TS_ERR_INPUT.
ts_status tokenizer_load(tokenizer *tok, const char *spec, int vocab);
void tokenizer_free(tokenizer *tok);
void tokenizer_write(const tokenizer *tok, int token, FILE *out);

// Generate opt->length tokens after the prompt tokens and write prompt + continuation to out.
// m must have been created with max_B >= 1 and hold the weights.
ts_status sample_generate(model *m, const tokenizer *tok, const int *prompt, int n_prompt,
                          const sample_options *opt, FILE *out);

#endif
