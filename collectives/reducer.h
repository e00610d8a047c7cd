// reducer.h — sums gradients over ranks in buckets, overlapped with backward.
//
// The flat gradient buffer is cut into buckets of about bucket_mb MiB, from its END backwards:
// backward produces gradients from the last tensors of the parameter table (final LayerNorm,
// last block) to the first (embeddings), so reverse layer order is reverse buffer order and
// every bucket is one contiguous range. A codec that works on whole tensors (powersgd: its
// whole_tensors flag) gets buckets cut at tensor boundaries instead: as many whole tensors as fit
// in bucket_mb, a larger tensor alone. The model reports, after each block of its backward,
// that every gradient from some offset to the end is final (the model's grads_ready hook,
// models/model.h); the reducer then starts the collectives of the buckets that became complete, and
// advances those in flight, while backward continues on earlier layers. reducer_finish waits for
// the rest.
//
// With ZeRO-1 the buckets are reduce-scattered instead of all-reduced: rank r then holds the
// summed gradient of its chunk of each bucket (comm_chunk), which is all its optimizer shard
// needs; reducer_gather_params all-gathers the updated weights afterwards.
//
// A device backend's gradients go through a host staging buffer (the communicator works on host
// memory): each bucket is copied down before its collective starts and back up when it ends.
//
// Each bucket travels through the gradient codec (codec.h): encoded when it starts, decoded when
// its collective completes. With the codec `none` the bucket is all-reduced (reduce-scattered)
// as fp32 in place, exactly as without a codec.
#ifndef TESSERA_REDUCER_H
#define TESSERA_REDUCER_H

#include "collectives/codec.h"
#include "collectives/comm.h"
#include "kernels/backend.h"

typedef struct {
    size_t first, count; // range of the flat buffer
    codec_bucket xfer;   // its trip through codec and communicator (xfer.req: in flight)
    int started, done;
    double t_start, t_done; // seconds (ts_now) of this step, for the overlap trace
} reducer_bucket;

typedef struct {
    comm *comm;
    codec *codec; // the trainer's; the same on every rank
    const backend *be;
    real *grads;   // the model's gradients (backend memory)
    real *staging; // host copy when the backend's memory is a device's, else NULL
    size_t n;      // elements
    int zero;      // 1: reduce-scatter (ZeRO-1)
    int overlap;   // 1: start buckets during backward; 0: all at the end
    int n_buckets;
    reducer_bucket *buckets; // buckets[0] is the LAST range of the buffer (first to be ready)
    int active;              // collecting in the current backward
    double t_backward_end;   // when backward finished (for the overlap trace)
} reducer;

ts_status reducer_create(reducer *r, comm *c, codec *cx, const backend *be, real *grads, size_t n,
                         double bucket_mb, int zero, int overlap);
void reducer_destroy(reducer *r);

// Arm the reducer for the backward that follows (the last micro-step of an optimizer step).
void reducer_begin(reducer *r);
// Hook for the model's grads_ready: gradients at offsets >= ready_from are final.
ts_status reducer_grads_ready(reducer *r, size_t ready_from);
// After backward: start what is left, wait for everything, copy back to the device.
ts_status reducer_finish(reducer *r);

// ZeRO-1: the elements this rank owns: for each bucket its chunk [first, first + count)
// (absolute offsets in the flat buffer). Returns the number of chunks written (n_buckets).
int reducer_owned(const reducer *r, size_t *first, size_t *count);
// ZeRO-1: all-gather the weights (fp32 master, backend memory) of every bucket.
ts_status reducer_gather_params(reducer *r, real *master);

#endif
