// codec.h — gradient codecs: how a bucket of fp32 gradients travels between ranks.
//
// The seam between the reducer and the communicator. For each bucket (a range of the flat
// gradient buffer, n fp32 values in host memory), the codec encodes this rank's values into a
// payload of bytes, the communicator moves the payloads, and the codec decodes what arrives and
// accumulates it into the bucket, which then holds the sum over ranks (or its approximation).
// How the payloads meet is the codec's choice (codec_wire):
//
//   CODEC_WIRE_SUM_F32  the payload is the fp32 bucket itself, summed in place by the
//                       communicator's float all-reduce (reduce-scatter with ZeRO-1). Nothing is
//                       copied or converted: this is the path of `none`, byte for byte and sum
//                       for sum what the reducer did before codecs existed.
//   CODEC_WIRE_COMBINE  the payload is a sequence of fixed-size elements (elem_bytes each, e.g. a
//                       block of quantized values with its scale), of a length that depends only
//                       on the bucket's length; the communicator all-reduces it with the codec's
//                       combine (comm.h, start_combine), and each rank decodes the one result.
//   CODEC_WIRE_GATHER   each rank's payload has its own length (e.g. the top-k values and their
//                       indices); the communicator all-gathers them (start_all_gather_v), and
//                       each rank decodes every rank's payload in rank order, adding them up, so
//                       all ranks hold the same bits.
//   CODEC_WIRE_ROUNDS   the codec's own rounds of float all-reduces (sums), each round's floats
//                       made from the sums of the rounds before (powersgd: P = M Q, summed and
//                       orthogonalized, then Q = M^T P, summed; the bucket is P Q^T). No payload
//                       of bytes: the codec fills float buffers the layer provides (see `round`).
//
// Small tensors travel exact. Given the model's tensor table (codec_params.tensors), the codec
// layer splits each bucket, once at its first use, into parts (codec_part): the values of a
// tensor of fewer than params.dense_below values (biases, LayerNorm gains) are dense, the others
// coded (neighbouring coded tensors make one part). Only coded parts go through the codec's
// encode and decode (one call per part, with the part's own first and count); dense values
// travel as fp32 and are summed exactly, in an order fixed by the world size:
//   GATHER   appended to each rank's payload and added up in rank order with the rest (below);
//   COMBINE  a float all-reduce of their own, started with the combine.
//   ROUNDS   after the codec's floats in the first round's all-reduce.
// Without a tensor table every value is coded. SUM_F32 sums every value exactly anyway: no split.
// A codec may send more tensors dense (its `dense` hook: powersgd, vectors and matrices too thin
// for its rank). A codec with whole_tensors (powersgd) gets each coded tensor as a part of its
// own, whole: pieces of tensors cut by the bucket's ends and values in no tensor travel dense,
// and the reducer cuts its buckets at tensor boundaries so that there are none.
//
// The rounds of a ROUNDS bucket advance at points that are the same on every rank (the
// communicator needs every rank to start its collectives in the same order, and whether a
// collective has completed when a rank looks differs between ranks): codec_bucket_test advances
// a round at its second call after the round started (waiting for it if need be; the reducer
// calls it once per bucket each time backward reports progress, the same on every rank), and
// codec_bucket_advance / codec_bucket_wait at once.
//
// A GATHER payload as it travels (little-endian), its body:
//   u64 length of each coded part's payload   only when the bucket has more than one coded part
//   each coded part's payload                 in bucket order
//   each dense value, fp32                    in bucket order
// With params.zstd (comm.zstd) one byte comes first: 0, the body as it is; 1, a zstd frame (level
// 1) of the body, sent when it is smaller (not tried for a codec with no_zstd). The layer checks
// every rank's payload before decoding it: a bad first byte or zstd frame, a body larger than the
// split allows, lengths that do not add up, or a part's payload longer than payload_bytes() allows,
// are TS_ERR_INPUT (one error line naming the rank). COMBINE payloads are combined along the ring
// as they are: no zstd.
//
// A codec owns per-rank state (error-feedback buffers: what the encoding lost this step, added
// back before encoding the next), created for the whole flat buffer and indexed by the bucket's
// offset in it. The state is checkpointed through two hooks (see "checkpoint hooks" below).
//
// Every rank must use the same codec (the config key comm.codec, the same on every rank).
// A world of one rank reduces nothing: the reducer then calls no codec at all.
//
// Adding a codec: a file collectives/codec_<name>.c defining a codec_ops, its row in the
// registry (codec.c) and its name in CODEC_CHOICES below (tests/mpi/test_codec.c checks that the
// two agree); see docs/architecture.md.
#ifndef TESSERA_CODEC_H
#define TESSERA_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "collectives/comm.h"

// The registry's names, in its order: the choices of the config key comm.codec.
#define CODEC_CHOICES "none|bf16|int8|int4|int2|topk|powersgd"

typedef struct codec codec;

typedef enum {
    CODEC_WIRE_SUM_F32 = 0,
    CODEC_WIRE_COMBINE,
    CODEC_WIRE_GATHER,
    CODEC_WIRE_ROUNDS
} codec_wire;

#define CODEC_MAX_ROUNDS 4 // ROUNDS: all-reduces per bucket, at most

// ---- checkpoint hooks ------------------------------------------------------------------------
// A codec's state is a list of named byte arrays of this rank (names: [A-Za-z0-9_]+, at most
// CODEC_STATE_NAME_MAX characters; the codec defines their layout and byte order: little-endian
// fp32 for error feedback). The checkpoint code calls save() on every rank at a checkpoint and
// load() on resume, each with an io whose put()/get() store and fetch arrays in the checkpoint's
// /codec group, per rank (docs/checkpoint-format.md):
//   - save(cx, io) calls io->put(io, name, data, bytes) once per array; nothing else may change.
//     A codec without state has no save hook (NULL): then nothing is stored or moved and the
//     checkpoint is laid out exactly as before codecs (no new group, dataset or attribute; only
//     the resolved config it carries gains the line comm.codec = "none", like any new key).
//   - load(cx, io) calls io->get(io, name, data, bytes) for each array it needs, with the exact
//     length it expects; get() fails (TS_ERR_INPUT, one error line naming the checkpoint) when
//     the array is missing or of another length. load() is called only with state saved by a
//     codec of the same name and a world of the same size; otherwise the codec keeps the state
//     it was created with (zero error feedback) and the trainer says so in a warning.
// Both run on the training thread between steps; what put() receives is copied before it
// returns.
#define CODEC_STATE_NAME_MAX 63

typedef struct codec_state_io codec_state_io;
struct codec_state_io {
    ts_status (*put)(codec_state_io *io, const char *name, const void *data, size_t bytes);
    ts_status (*get)(codec_state_io *io, const char *name, void *data, size_t bytes);
    void *ctx; // the checkpoint code's
};

// ---- a codec ---------------------------------------------------------------------------------
// A tensor of the flat buffer: rows x cols values from offset (cols 1: a vector), row-major, in the
// model's parameter table order (increasing offsets, not overlapping; the buffer between or
// after them, if any, belongs to no tensor). Codecs that work on matrices (powersgd) and the
// small-tensor rule (dense_below) read them.
typedef struct {
    size_t offset, rows, cols;
} codec_tensor;

typedef struct {
    const char *name; // the value of comm.codec
    const char *help; // one line for docs and messages
    codec_wire wire;
    // COMBINE: bytes per payload element, and the combine (elementwise, the codec as ctx)
    size_t elem_bytes;
    comm_combine_fn combine;
    // GATHER: 1 when comm.zstd is not worth trying on its payloads (measured)
    int no_zstd;
    // ROUNDS: all-reduces per bucket, 1 .. CODEC_MAX_ROUNDS
    int rounds;
    // 1: coded parts are whole tensors, one each (see above)
    int whole_tensors;
    // Allocate cx->state for the flat buffer of cx->n values (NULL: no state).
    ts_status (*init)(codec *cx);
    void (*destroy)(codec *cx); // free cx->state (NULL: nothing to free)
    // COMBINE, GATHER: the most payload bytes for `count` values (COMBINE: exactly that many).
    size_t (*payload_bytes)(const codec *cx, size_t count);
    // COMBINE, GATHER: encode this rank's values grad[0 .. count), the range starting at
    // `first` of the flat buffer, into payload; *bytes = its length. May update the state.
    ts_status (*encode)(codec *cx, size_t first, const float *grad, size_t count, void *payload,
                        size_t *bytes);
    // COMBINE, GATHER: add the values of one payload (COMBINE: the combined one; GATHER: one
    // rank's, called for ranks 0, 1, ..., size-1 in turn) into grad[0 .. count), which the
    // codec layer zeroed before the first.
    ts_status (*decode)(codec *cx, size_t first, const void *payload, size_t bytes, float *grad,
                        size_t count);
    // Tensors that travel dense beside those of fewer than params.dense_below values (NULL: none).
    int (*dense)(const codec *cx, const codec_tensor *t);
    // ROUNDS: the floats that the coded part [first, first + count) sends in round k.
    size_t (*round_floats)(const codec *cx, size_t first, size_t count, int k);
    // ROUNDS: step k (0 .. rounds) of the coded part [first, first + count), whose values are
    // grad[0 .. count). sums[j], j < k: the sum over ranks of what the part sent in round j (the
    // codec may rewrite it: it stays the bucket's until the bucket is done); sums[k], k < rounds:
    // where the part's round_floats(k) floats of round k go. At k = rounds: write the part's
    // result (the sum over ranks, or its approximation) into grad. All ranks must compute the
    // same result from the same sums.
    ts_status (*round)(codec *cx, size_t first, float *grad, size_t count, int k,
                       float *const *sums);
    ts_status (*save)(const codec *cx, codec_state_io *io); // NULL: no state to checkpoint
    ts_status (*load)(codec *cx, codec_state_io *io);
} codec_ops;

// Bytes this rank handed to the communicator, cumulative since creation: raw = fp32 bytes of the
// buckets, encoded = what the codec made of them (with the dense values), payload = what went to
// the communicator: encoded, or with comm.zstd on a GATHER wire its zstd-compressed form (for
// `none` all three the same). zstd_s: seconds spent compressing and decompressing.
typedef struct {
    uint64_t raw_bytes, encoded_bytes, payload_bytes;
    uint64_t buckets;
    double zstd_s;
} codec_stats;

// What a codec is configured with (config keys comm.*; codec_params_default gives the defaults).
typedef struct {
    size_t dense_below;          // tensors of fewer values travel uncompressed (fp32)
    double topk_fraction;        // topk: the fraction of each bucket's values sent
    int topk_value_bits;         // topk: 32 (fp32 values) or 2 (2-bit codes with a scale per block)
    int powersgd_rank;           // powersgd: the rank r of the approximation
    int zstd;                    // 1: lossless zstd on encoded payloads where it makes them smaller
    const codec_tensor *tensors; // the model's tensors (NULL: none known); copied at creation
    int n_tensors;
} codec_params;

void codec_params_default(codec_params *p);

struct codec {
    const codec_ops *ops;
    int rank, size;
    size_t n;            // values of the flat gradient buffer
    codec_params params; // params.tensors points at the codec's own copy
    codec_stats stats;
    void *state; // the codec's own
    void *zstd;  // the codec layer's zstd contexts (codec_bucket.c), made at the first use
};

// The registry: codecs by name, `none` first. NULL when unknown.
const codec_ops *codec_find(const char *name);
int codec_count(void);
const codec_ops *codec_at(int i);
// "none, ..." : the registry's names, comma-separated, for messages
void codec_names(char *buf, size_t len);

// Create the codec `name` for a flat buffer of n values on rank `rank` of `size`. An unknown name
// is one error line listing the known ones, TS_ERR_INPUT.
ts_status codec_create(codec **out, const char *name, int rank, int size, size_t n);
// The same for a codec given by its ops (tests; codec_create after the lookup).
ts_status codec_create_with(codec **out, const codec_ops *ops, int rank, int size, size_t n);
// Both with parameters (NULL: the defaults): what the trainer calls.
ts_status codec_create_params(codec **out, const char *name, int rank, int size, size_t n,
                              const codec_params *p);
ts_status codec_create_with_params(codec **out, const codec_ops *ops, int rank, int size, size_t n,
                                   const codec_params *p);
void codec_destroy(codec *cx);

// Whether the codec keeps state that a checkpoint must hold (a save hook).
int codec_has_state(const codec *cx);
// Whether tensor t travels dense (exact fp32) under the codec: fewer than params.dense_below
// values, or the codec's dense hook says so.
int codec_tensor_dense(const codec *cx, const codec_tensor *t);
// The tensor of the table that starts at `first` of the flat buffer (NULL: none).
const codec_tensor *codec_tensor_at(const codec *cx, size_t first);

// ---- one bucket's trip through codec and communicator (codec_bucket.c) ----------------------
// A part of a bucket: values [at, at + count) of it, dense (fp32, exact) or coded by the codec.
typedef struct {
    size_t at, count;
    int dense;
} codec_part;

// Kept by the reducer per bucket, across steps (its split and payload buffers are made on first
// use and reused).
typedef struct {
    size_t first, count; // range of the flat buffer
    float *grad;         // host memory of the range: this rank's values in, the result out
    int scatter;         // ZeRO-1: only this rank's chunk of the result (comm_chunk) is needed
    comm_req *req;       // the collective in flight, NULL when none
    comm_req *dense_req; // COMBINE: the dense values' all-reduce in flight, NULL when none
    // the split of [split_first, split_first + split_count): parts[0 .. n_parts), of which
    // n_coded are coded, with n_dense dense values; `most` bytes of payload at the most
    int split;
    size_t split_first, split_count;
    codec_part *parts;
    int n_parts, n_coded;
    size_t n_dense, most;
    float *dense; // COMBINE: the dense values, gathered for their all-reduce
    // ROUNDS: the round in flight, test calls since it started, and each round's floats
    int round, polls;
    float *sums[CODEC_MAX_ROUNDS];
    size_t round_n[CODEC_MAX_ROUNDS];
    unsigned char *payload, *gathered;
    size_t payload_cap, gathered_cap, payload_len;
    size_t *lens; // GATHER: every rank's payload length
} codec_bucket;

// Encode the bucket (grad[0 .. count) at offset `first`) and start its collective (ROUNDS: its
// first). With CODEC_WIRE_SUM_F32 and scatter set, only this rank's chunk of grad holds the sum
// afterwards (the rest is scratch); the other wires decode the whole bucket on every rank.
ts_status codec_bucket_start(codec *cx, comm *c, codec_bucket *b, size_t first, float *grad,
                             size_t count, int scatter);
// Advance the bucket's collective; when it has completed, decode: *done = 1. (ROUNDS: a round
// advances at the second call after it started, see above.)
ts_status codec_bucket_test(codec *cx, comm *c, codec_bucket *b, int *done);
// Block until the bucket's collective has completed (or its deadline passed), then take the next
// step: decode (*done = 1), or start the next round (ROUNDS).
ts_status codec_bucket_advance(codec *cx, comm *c, codec_bucket *b, int *done);
// Block until the bucket is done (every round) and decoded.
ts_status codec_bucket_wait(codec *cx, comm *c, codec_bucket *b);
void codec_bucket_free(codec_bucket *b);

// ---- checkpoint state in memory --------------------------------------------------------------
// The checkpoint code's side of the hooks, without a file: save() into a blob (the arrays one
// after another: u16 name length, name, u64 byte count, bytes; little-endian), load() from one.
// A blob is what travels between ranks (all-gathered to the writers at a checkpoint, sent from
// the reader on resume). Both return TS_OK with *len 0 / nothing loaded for a codec without
// state.
ts_status codec_state_pack(const codec *cx, unsigned char **blob, size_t *len); // free(*blob)
ts_status codec_state_unpack(codec *cx, const unsigned char *blob, size_t len, const char *what);
// A checkpoint: every rank's blob, all-gathered (the writers store them; the others drop them).
// *all: the blobs back to back in rank order (free()), lens[0 .. size) their lengths. Every rank
// calls it when the codec has state (the same everywhere); nothing moves for one without.
ts_status codec_state_gather(const codec *cx, comm *c, unsigned char **all, size_t *lens);
// Every rank's blob (mine, len bytes) to every rank: *all back to back in rank order (free()),
// lens[0 .. size) their lengths. Every rank calls it.
ts_status codec_blob_gather(comm *c, const unsigned char *mine, size_t len, unsigned char **all,
                            size_t *lens);
// A resume: `holder` read a checkpoint whose codec state (saved_name: "" when none; blobs `all`
// with lengths lens[0 .. saved_world)) only it passes; every rank calls this. When the codec has
// state and the checkpoint holds state of the same codec from a world of the same size, every
// rank gets its own blob (broadcast from the holder) and loads it (codec_state_unpack, `what`
// naming the checkpoint in errors; the caller agrees on the outcome). Otherwise the codec keeps
// its fresh state and the holder says why in a warning. Nothing moves for a codec without state.
ts_status codec_state_restore(codec *cx, comm *c, int holder, const char *saved_name,
                              int saved_world, const unsigned char *all, const size_t *lens,
                              const char *what);
// Append one array to a blob (*blob NULL and *len 0 to begin; free(*blob)): how a checkpoint
// reader rebuilds a rank's blob from stored arrays. A bad name is TS_ERR_INPUT (logged).
ts_status codec_state_append(unsigned char **blob, size_t *len, const char *name, const void *data,
                             size_t bytes);
// Walk a blob's arrays: *pos starts at 0; returns 1 and fills name/data/bytes per array, 0 at
// the end, -1 (logged, naming `what`) when the blob is malformed.
int codec_state_next(const unsigned char *blob, size_t len, size_t *pos,
                     char name[CODEC_STATE_NAME_MAX + 1], const unsigned char **data, size_t *bytes,
                     const char *what);

// ---- the block-quantizing codecs (codec_blockq.c) -------------------------------------------
// int8, int4, int2: values per block, each block with one fp32 scale
#define CODEC_BLOCKQ_BLOCK 64
// their exact payload for `count` values of `bits` bits:
// 4 * ceil(count / CODEC_BLOCKQ_BLOCK) + ceil(count * bits / 8)
size_t codec_blockq_payload_bytes(int bits, size_t count);
// The quantization itself (also topk's 2-bit values): m values x into such a payload of `bits`
// bits (its layout: codec_blockq.c), and lost[i] = x[i] - what value i decodes to (0 in a block
// holding a value that is not finite); lost may be x.
void codec_blockq_quantize(int bits, const float *x, size_t m, unsigned char *payload, float *lost);
// What value i of such a payload of m values decodes to: its code times its block's scale (NaN
// under a NaN scale); *code (when not NULL) = the code.
float codec_blockq_value(int bits, const unsigned char *payload, size_t m, size_t i, int *code);

// ---- the top-k codec (codec_topk.c) ---------------------------------------------------------
// values sent of a bucket of `count`: max(1, ceil(fraction * count)), at most count (0 of none)
size_t codec_topk_k(double fraction, size_t count);
// a payload's header: u32 k, u8 flags, u32 length of the index stream
#define CODEC_TOPK_HEADER 9
// a payload's exact length: k values of value_bits (32 or 2) bits with an index stream of
// index_bytes (the LEB128 varints of the index gaps, or their zstd frame when that is shorter):
// CODEC_TOPK_HEADER + index_bytes + (value_bits 32: 4k; 2: 4 * ceil(k / 64) + ceil(k / 4))
size_t codec_topk_payload_bytes(int value_bits, size_t k, size_t index_bytes);

#endif
