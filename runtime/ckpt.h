// ckpt.h — saved weights as an HDF5 file.
//
// Layout: attributes on "/" (format "tessera-weights", version, layers, heads, width, seq_len,
// vocab, padded_vocab, step) and one float32 dataset per parameter tensor under /params, named as
// in the model's parameter table, with the tensor's shape. Written to a temporary name, flushed,
// fsynced and renamed, so the file on disk is always whole.
#ifndef TESSERA_CKPT_H
#define TESSERA_CKPT_H

#include "base/common.h"
#include "models/gpt2.h"

ts_status ckpt_write_weights(const char *path, const gpt2 *m, int step);

// Read the model shape stored in a weights file (to create the model before loading).
ts_status ckpt_read_config(const char *path, gpt2_config *cfg, int *step);
// Load weights into m (whose config must match the file's).
ts_status ckpt_read_weights(const char *path, gpt2 *m);

#endif
