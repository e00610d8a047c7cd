// h5read.h — opening HDF5 files that tessera did not necessarily write (the weights file, a
// checkpoint's state.h5) and reading their float32 tensors.
//
// HDF5 can make a file's dataset read bytes from elsewhere: a soft or external link to another
// file, external storage (raw bytes of any file), a virtual dataset (slices of other files). None
// of that is ever what tessera wrote, and all of it would bypass the checkpoint's manifest, so a
// dataset is checked before a byte of it is read: every link on the way a hard link, the layout
// the one tessera writes, the element type float32, the shape the model's.
#ifndef TESSERA_H5READ_H
#define TESSERA_H5READ_H

#include <hdf5.h>

#include "base/common.h"

// Open path read-only as an HDF5 file. It must be a regular file (checked before HDF5 opens it: a
// FIFO would block forever, a device never end). what: "weights file"; expected: what the file
// should be, for the message when it is not HDF5. One error line and TS_ERR_INPUT:
//   "PATH: cannot read WHAT: REASON", "PATH: WHAT is not a regular file (...); expected EXPECTED",
//   "PATH: not an HDF5 file (expected EXPECTED)".
ts_status h5read_open(const char *path, const char *what, const char *expected, hid_t *file);

typedef enum {
    H5READ_CONTIGUOUS, // the weights file: contiguous storage, no filter
    H5READ_ZSTD,       // checkpoints: chunked (chunks within the shape), the zstd filter alone
} h5read_layout;

// Read dataset `name` ("params/wte": groups and the dataset, from "/") of the open file `file`
// (at path, for messages) into out: ndim (1 or 2) dimensions dims, read as native floats. Refused
// before reading, with one error line "PATH: dataset '/NAME' ..., expected ..." and TS_ERR_INPUT:
// a missing dataset; a soft or external link on the way; a group that is not a group; external
// storage; a virtual, compact or other layout than `layout`; another filter; storage not wholly
// written; a type other than 32-bit little-endian IEEE float; another shape. A zstd chunk that
// does not decode to exactly its size fails the read. out NULL: only the checks (`tessera ckpt
// info`). ds_out (may be NULL): on TS_OK, the open dataset (for its attributes; the caller
// closes it).
ts_status h5read_tensor(hid_t file, const char *path, const char *name, int ndim,
                        const hsize_t dims[], h5read_layout layout, float *out, hid_t *ds_out);

#endif
