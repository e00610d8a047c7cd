// ckpt.h — saved weights as an HDF5 file.
//
// Layout: attributes on "/" (format "tessera-weights", arch when it is not "gpt2", version, the
// architecture's shape dims — GPT-2: layers, heads, width, seq_len, vocab, padded_vocab — and
// step) and one float32 dataset per parameter tensor under /params, named as in the model's
// parameter table, with the tensor's shape. A file without arch is GPT-2's. Written to a temporary
// name, flushed, fsynced and renamed, so the file on disk is always whole.
#ifndef TESSERA_CKPT_H
#define TESSERA_CKPT_H

#include "base/common.h"
#include "models/model.h"

ts_status ckpt_write_weights(const char *path, const model *m, int step);

// Read the model's architecture and shape stored in a weights file (to create the model before
// loading): every attribute checked, the shape completed by its architecture (derived dims must
// be what it derives).
ts_status ckpt_read_shape(const char *path, model_shape *shape, int *step);
// Load weights into m (whose shape must match the file's).
ts_status ckpt_read_weights(const char *path, model *m);

#endif
