// ckpt_codec.h — gradient codec state in a checkpoint's /codec group (layout in
// docs/checkpoint-format.md). The trainer gathers every rank's state (codec_state_gather) into a
// ckpt_codec_state for the writers; a reader gets it back the same way for codec_state_restore.
#ifndef TESSERA_CKPT_CODEC_H
#define TESSERA_CKPT_CODEC_H

#include <hdf5.h>
#include <stddef.h>

#include "base/common.h"

typedef struct {
    char name[32];      // the codec whose state this is; "" when there is none
    int world;          // ranks whose state it holds: lens[0 .. world)
    unsigned char *all; // their state blobs back to back (collectives/codec.h's form)
    size_t *lens;
} ckpt_codec_state;

void ckpt_codec_state_free(ckpt_codec_state *s); // frees all and lens, zeroes s

// Fill the freshly created /codec group. With state (s && s->name[0]): a group named after the
// codec with attribute world_size and, per rank, a group rank-R holding one uint8 dataset per
// array of its blob (chunked, zstd, attribute xxh64). Without: attribute status = "empty: no
// codec or outer optimizer", exactly as checkpoints without codec state have always had it.
// Returns 1 on success.
int ckpt_codec_write(hid_t group, const ckpt_codec_state *s);

// Read the /codec group of `file` (path: for messages) into s: name "" when it holds no state.
// A damaged group (a missing rank, a dataset that is not uint8 or whose values do not hash to
// its xxh64) is one error line naming the path, TS_ERR_INPUT.
ts_status ckpt_codec_read(hid_t file, const char *path, ckpt_codec_state *s);
// The same for another group of the same layout: /outer (local SGD's per-rank state, named
// "diloco"; see runtime/train_outer.c).
ts_status ckpt_codec_read_group(hid_t file, const char *path, const char *gname,
                                ckpt_codec_state *s);
// The same with bounds checked before anything is allocated: at most max_world ranks, each array
// at most max_bytes (the trainer's bounds: from the model's size and the global batch).
ts_status ckpt_codec_read_capped(hid_t file, const char *path, const char *gname, int max_world,
                                 size_t max_bytes, ckpt_codec_state *s);

#endif
