// ckpt_tool.h — `tessera ckpt`: check and describe checkpoints from the command line.
//
//   tessera ckpt verify DIR   is DIR a whole checkpoint (its MANIFEST intact, every file matching)?
//   tessera ckpt info PATH    what a checkpoint directory's manifest lists, or what a weights
//                             file written by `tessera train` holds
#ifndef TESSERA_CKPT_TOOL_H
#define TESSERA_CKPT_TOOL_H

// argv[0] is "ckpt". Returns the process exit code: verify gives 0 intact, 1 damaged, 2 bad
// command line or PATH not a readable directory; info gives 0, or 2 on unreadable input.
int cmd_ckpt(int argc, char **argv);

#endif
