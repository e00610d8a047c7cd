// train.h — `tessera train`: the data-parallel training loop.
#ifndef TESSERA_TRAIN_H
#define TESSERA_TRAIN_H

// argv[0] is "train". Returns the process exit code.
int cmd_train(int argc, char **argv);

#endif
