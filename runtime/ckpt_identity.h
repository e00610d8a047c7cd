// ckpt_identity.h — the identity of a run as its checkpoints record it: the seed, a hash of the
// resolved config without the keys a resume may change, and the lineage (an id made at a fresh
// start and inherited by every resume). Each step directory holds it as the file IDENTITY, which
// the MANIFEST covers (docs/checkpoint-format.md):
//
//   tessera-identity 1
//   lineage 7f3a9c0d12e4b5a6      16 lowercase hex digits
//   seed 1337                     run.seed
//   config 5c1e0f0a9b8c7d6e       XXH64 (seed 0) of the identity text, 16 lowercase hex digits
//
// The identity text is one line "section.key = value" per identity key whose value differs from
// the key's default, in key-table order. Identity keys are all keys except those a resume may
// change: run.name, run.out_dir, run.resume, run.overwrite, run.threads, run.backend,
// run.precision, data.val, data.tokenizer, data.log_samples, train.steps, train.micro_batch and
// every key of [eval], [log], [comm] and [ckpt]. A key at its default is left out so that a later
// version adding a key (whose default keeps the old behaviour) still recognizes the run.
//
// A step directory without IDENTITY was written before identities existed: it reads as lineage 0,
// which a fresh start never makes; a run resumed from one continues lineage 0 (its IDENTITY files
// then say lineage 0000000000000000), so pruning treats the old directories as its own.
#ifndef TESSERA_CKPT_IDENTITY_H
#define TESSERA_CKPT_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "runtime/config.h"

#define CKPT_IDENTITY_FILE "IDENTITY"

typedef struct {
    uint64_t lineage;     // 0: a directory written before identities (no IDENTITY file)
    int64_t seed;         // run.seed
    uint64_t config_hash; // XXH64 of the identity text
} ckpt_identity;

// 1 when [section] key may change when a run resumes (it is not part of the identity)
int ckpt_identity_resumable(const char *section, const char *key);

// The identity of cfg, with the given lineage.
void ckpt_identity_of(const tessera_config *cfg, uint64_t lineage, ckpt_identity *id);

// A new lineage id, never 0: a hash of the clocks, the process id and salt (the caller's own
// distinguishing value, e.g. its start time).
uint64_t ckpt_identity_new_lineage(uint64_t salt);

// 1 when a and b describe the same run: same seed and same config hash (the lineage aside)
int ckpt_identity_same_run(const ckpt_identity *a, const ckpt_identity *b);

// The identity keys on which two configs differ: the count, and in out the first one as
// "[section] key = A in the checkpoint, B here" ("" when none).
int ckpt_identity_diff(const tessera_config *theirs, const tessera_config *ours, char *out,
                       size_t out_len);

// Create dir/IDENTITY (it must not exist), written and fsynced: a file of a directory that is
// committed as a whole afterwards.
ts_status ckpt_identity_write(const char *dir, const ckpt_identity *id);

// Read dir/IDENTITY. TS_OK with *present = 1, or with *present = 0 and lineage 0 when the file
// does not exist (a directory written before identities). TS_ERR_INPUT when it is not a regular
// file or not in the format above (why says which). Logs nothing.
ts_status ckpt_identity_read(const char *dir, ckpt_identity *id, int *present, char *why,
                             size_t why_len);

#endif
