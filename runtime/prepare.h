// prepare.h — the `tessera prepare` subcommand: text files -> byte-level token shards.
//
// The work itself is data_prepare() (data.h); this is its command line.
#ifndef TESSERA_PREPARE_H
#define TESSERA_PREPARE_H

// tessera prepare [--out DIR] [--val-fraction F] [--shard-tokens N] [--min-bytes N] [INPUT...]
// argv[0] is the subcommand's name ("prepare"), options follow: main passes (argc-1, argv+1).
// Returns the process exit code: 0 done or up to date, 2 bad command line or input, 1 I/O error.
int cmd_prepare(int argc, char **argv);

#endif
