// data.h — token shards (llm.c's format), the deterministic sample order, and `prepare`.
//
// Shard format: int32 header[256] — header[0] magic, header[1] version, header[2] token count —
// then the tokens: magic 20240520 / version 1 -> uint16 tokens; magic 20240801 / version 7 ->
// uint32 tokens (vocabularies above 65535).
//
// A dataset is the ordered list of shards matching a glob. It is cut into non-overlapping
// sequences of T+1 tokens (stride T, the last token of one is the first of the next); sample g of
// a run (global index, 0-based) is a function of (seed, g) only (design invariant 1): epoch
// e = g / n_seq reads sequence perm_{seed,e}(g mod n_seq), a seeded bijection over [0, n_seq).
#ifndef TESSERA_DATA_H
#define TESSERA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

#define SHARD_HEADER_INTS 256
#define SHARD_MAGIC_U16   20240520
#define SHARD_VERSION_U16 1
#define SHARD_MAGIC_U32   20240801
#define SHARD_VERSION_U32 7

typedef struct {
    char *path;
    int fd;          // open for the dataset's life; read with pread (never mapped)
    int token_bytes; // 2 or 4
    uint64_t n_tokens;
    uint64_t file_bytes; // size when opened (header + tokens)
    uint64_t n_seq;      // sequences of T+1 tokens this shard provides
} data_shard;

typedef struct {
    int T;
    int vocab; // every token is < vocab (checked on open, and again as sequences are read)
    int n_shards;
    data_shard *shards;
    uint64_t *seq_start; // prefix sums of n_seq (n_shards + 1)
    uint64_t n_seq;      // total sequences
} dataset;

// Open every shard matching pattern (sorted by name), check header, size and that every token is
// < vocab. Only regular files are opened: a FIFO or a device node the pattern matches is refused
// without being opened. Errors name the file and the byte offset (TS_ERR_INPUT).
ts_status dataset_open(dataset *ds, const char *pattern, int T, int vocab);
void dataset_close(dataset *ds);

// Tokens of sample g (T+1 of them: inputs are [0,T), targets [1,T+1)) in the run's order.
// A shard truncated or rewritten since it was opened (short read, a token >= vocab): one error
// line naming the shard and the byte offset, TS_ERR_INPUT (an I/O error: TS_ERR_SYSTEM).
ts_status dataset_sample(const dataset *ds, uint64_t seed, uint64_t g, int32_t *out);
// Sequence i in file order (no shuffling), used for validation; errors as dataset_sample.
ts_status dataset_sequence(const dataset *ds, uint64_t i, int32_t *out);

// The seeded bijection on [0, n) used for epoch e.
uint64_t data_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch);

// Write tokens as a shard (uint16 format when vocab <= 65536, else uint32). Written to a
// temporary name, fsynced and renamed: a shard on disk is always whole.
ts_status shard_write(const char *path, const uint32_t *tokens, size_t n, int vocab);

// tessera prepare: byte-tokenize text files (files, directories or globs) into
// <out_dir>/train_NNN.bin and <out_dir>/val_NNN.bin; val_fraction of the documents (every
// 1/val_fraction-th one, spread through the corpus) is held out. Also writes <out_dir>/stats.txt
// with the training text's unigram entropy in nats per byte. Implemented in prepare.c.
ts_status data_prepare(const char *const *inputs, int n_inputs, const char *out_dir,
                       double val_fraction, size_t shard_tokens);

// Unigram entropy in nats/token of the tokens of a dataset (over all its shards) into *out;
// errors as dataset_sample (every shard is read again).
ts_status dataset_unigram_entropy(const dataset *ds, int vocab, double *out);

#endif
