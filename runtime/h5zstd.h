// h5zstd.h — the zstd HDF5 filter (registered filter id 32015) that compresses checkpoint chunks.
//
// The same source is built twice: into tessera (register the filter in-process, then add it to a
// dataset creation property list) and as a loadable HDF5 plugin (libh5zstd.so in
// <build>/hdf5-plugins) so that h5dump, h5py and any HDF5 reader given HDF5_PLUGIN_PATH can read
// the data. The stored format is the one other zstd filters for id 32015 use: each chunk is one or
// more zstd frames, and the filter's first client value cd_values[0] is the compression level
// (optional; readers ignore it). tessera adds cd_values[1], the chunk's uncompressed size in
// bytes, when a dataset is created (other zstd filters ignore it): a chunk that decodes to any
// other size is refused before it is decoded, never cut or zero-filled. Files written before
// that (cd_values[0] only) are read with the size tessera's reader expects
// (h5zstd_expect_chunk_bytes). Format notes for users: docs/checkpoint-format.md.
#ifndef TESSERA_H5ZSTD_H
#define TESSERA_H5ZSTD_H

#include <hdf5.h>

#include "base/common.h"

#define H5ZSTD_FILTER_ID     32015
#define H5ZSTD_LEVEL_DEFAULT 3
#define H5ZSTD_N_VALUES      2 // cd_values: level, chunk bytes

// Register the filter with the HDF5 library of this process. Idempotent; call it before opening
// a file whose datasets use the filter (h5zstd_set calls it too).
ts_status h5zstd_register(void);

// Add the zstd filter, at `level` (1..22 as zstd defines them, negative for its fast modes,
// 0 for zstd's default), to a dataset creation property list. Chunking must already be set on
// `dcpl` by the caller. Returns 0, or -1 (with one error line logged) if the filter could not be
// registered or added.
int h5zstd_set(hid_t dcpl, int level);

// The uncompressed size of every chunk the calling thread reads next (0: none expected): for
// files whose datasets do not record it in cd_values[1]. Chunks that decode to another size fail
// to read. The reader sets it from the dataset's chunk dimensions before H5Dread and clears it
// after.
void h5zstd_expect_chunk_bytes(size_t bytes);

#endif
