// prepare.h — text files -> byte-level token shards (vocab 256) + stats.txt: the work of
// `tessera prepare` (its command line is app/cmd_prepare.c).
#ifndef TESSERA_PREPARE_H
#define TESSERA_PREPARE_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

#define FORTUNES_DIR "/usr/share/games/fortunes"
#define PREPARE_USAGE                                                                              \
    "usage: tessera prepare [--out DIR] [--val-fraction F] [--shard-tokens N] [--min-bytes N] "    \
    "[INPUT...]"

typedef struct {
    const char *out_dir;
    double val_fraction;
    size_t shard_tokens;
    uint64_t min_bytes; // refuse a smaller corpus
} prepare_options;

// Read args (text files, directories, globs), write the shards and stats.txt into o->out_dir;
// nothing when stats.txt says the same inputs and options were prepared already.
ts_status prepare_run(const char *const *args, int n_args, const prepare_options *o);

#endif
