// commands.h — the subcommands of the tessera program. Each takes its own argv (argv[0] is the
// command's name: main passes argc - 1, argv + 1) and returns the process exit code
// (docs/exit-codes.md).
#ifndef TESSERA_COMMANDS_H
#define TESSERA_COMMANDS_H

// tessera train CONFIG [--section.key=value ...] [--resume auto|PATH]
int cmd_train(int argc, char **argv);
// tessera config CONFIG [--section.key=value ...] [--world=N]: check a config, print it resolved
int cmd_config(int argc, char **argv);
// tessera prepare [--out DIR] [--val-fraction F] [--shard-tokens N] [--min-bytes N] [INPUT...]
int cmd_prepare(int argc, char **argv);
// tessera sample --model FILE [...]: generate text from saved weights
int cmd_sample(int argc, char **argv);
// tessera ckpt verify DIR: 0 intact, 1 damaged, 2 bad command line or unreadable DIR;
// tessera ckpt info PATH: what a checkpoint's manifest lists or a weights file holds
int cmd_ckpt(int argc, char **argv);

#endif
