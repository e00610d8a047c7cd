// comm.h — communicators: rank, size and collectives, blocking and non-blocking, every one with
// a deadline, every byte counted.
//
// Backends: "self" (a world of 1: collectives are copies or no-ops) and "mpi" (Open MPI
// point-to-point on host memory: the algorithms are ours, so the bytes moved, the summation
// order and the peer a rank is waiting for are known). The NCCL backend (device memory) will
// implement the same struct; see nccl.h.
//
// Non-blocking use: `start` posts a collective and returns a request; the caller then calls
// `test` now and then (Open MPI has no asynchronous progress: a request advances only inside
// test/wait) and finally `wait`, which returns when it is done or when the request's deadline
// (start time + timeout_s) has passed. A collective that misses its deadline returns
// TS_ERR_PEER after logging which collective it was and which peer it was waiting for; the
// caller exits with the "peer lost" code (75).
//
// Buffers are in-place. Reduce-scatter and all-gather split a buffer of n elements into `size`
// chunks, chunk r (comm_chunk) being rank r's: after reduce-scatter, rank r's chunk holds the sum
// over ranks of that chunk (the rest of the buffer is scratch); all-gather sends every rank's
// chunk to every rank. Chunks differ in length by at most one element: no padding, no
// divisibility requirement.
//
// Every sum is done in an order fixed by the world size, the same on every rank: results are
// bit-identical run to run and across ranks.
//
// What gradient codecs need (collectives/codec.h), beside the sums:
//   - a reduction with a caller-given combine (start_combine): all-reduce or reduce-scatter of n
//     elements of any size, element i of the result combining the ranks' elements i in the same
//     order as the float sums (see comm_combine). The elements might be blocks of quantized
//     values with their scale: the ring cuts buffers only between elements.
//   - an all-gather of variable-length byte blocks (start_all_gather_v): every rank contributes a
//     block of its own length, possibly empty, and receives every block and every length. The
//     lengths travel first (an all-gather of one 8-byte length per rank), then the blocks, in
//     one request with one deadline.
#ifndef TESSERA_COMM_H
#define TESSERA_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "base/status_file.h"

typedef struct comm comm;
typedef struct comm_req comm_req; // one collective in flight (owned by the communicator)

typedef enum { COMM_F32 = 0, COMM_F64, COMM_I32 } comm_dtype;

typedef enum {
    COMM_ALL_REDUCE_SUM = 0,
    COMM_ALL_REDUCE_MAX,
    COMM_REDUCE_SCATTER_SUM,
    COMM_ALL_GATHER,
    COMM_BROADCAST,
    COMM_BARRIER,
    COMM_ALL_REDUCE_COMBINE,     // start_combine only
    COMM_REDUCE_SCATTER_COMBINE, // start_combine only
    COMM_ALL_GATHER_V,           // start_all_gather_v only
} comm_op;

// A caller-given reduction over elements of `esize` bytes (1 <= esize <= COMM_COMBINE_MAX_ESIZE):
// fn(dst, src, n, src_first, ctx) sets dst[i] = src[i] (+) dst[i] when src_first, else
// dst[i] (+) src[i], for the n elements at dst and src (neither aligned beyond one byte). The
// left operand is always the partial result of the ranks that come first in the algorithm's
// order (the order of the float sums, comm_sched.h), so every rank evaluates the same expression
// and holds the same bytes afterwards, whatever fn rounds; fn must be deterministic and must
// not fail (a malformed element is the caller's bug to catch before starting).
typedef void (*comm_combine_fn)(void *dst, const void *src, size_t n, int src_first, void *ctx);
typedef struct {
    comm_combine_fn fn;
    size_t esize; // bytes per element
    void *ctx;    // passed to fn
} comm_combine;

#define COMM_COMBINE_MAX_ESIZE ((size_t)64 << 10)

// Exact accounting of this rank's traffic and waiting, cumulative since creation.
typedef struct {
    uint64_t bytes_sent, bytes_recv; // payload bytes through the network layer
    uint64_t collectives;            // collectives completed
    double wait_s;                   // time inside wait() (blocked on peers)
} comm_stats;

struct comm {
    const char *name; // "self" or "mpi"
    int rank, size;
    double timeout_s; // deadline of each collective, seconds after its start
    // how ring collectives cut each round (comm_sched.h, comm_ring_cut): bytes per step and
    // steps in flight, chosen by the backend at creation (0 for "self")
    size_t ring_segment;
    int ring_window;

    // ---- non-blocking ----------------------------------------------------------------------
    // Post a collective on buf (n elements of dt; BROADCAST: from `root`; BARRIER: buf NULL,
    // n 0). At most COMM_MAX_INFLIGHT requests may be in flight at once.
    ts_status (*start)(comm *c, comm_op op, void *buf, size_t n, comm_dtype dt, int root,
                       comm_req **req);
    // Advance the request; *done = 1 when it has completed (the request is then released and
    // must not be used again). An expired deadline returns TS_ERR_PEER.
    ts_status (*test)(comm *c, comm_req *req, int *done);
    // Block until the request completes (released) or its deadline passes (TS_ERR_PEER).
    ts_status (*wait)(comm *c, comm_req *req);

    // ---- blocking (start + wait) -----------------------------------------------------------
    ts_status (*all_reduce_sum_f32)(comm *c, float *buf, size_t n);
    ts_status (*all_reduce_sum_f64)(comm *c, double *buf, size_t n);
    ts_status (*all_reduce_max_i32)(comm *c, int *buf, size_t n);
    ts_status (*reduce_scatter_sum_f32)(comm *c, float *buf, size_t n);
    ts_status (*all_gather_f32)(comm *c, float *buf, size_t n);
    ts_status (*broadcast)(comm *c, void *buf, size_t bytes, int root);
    ts_status (*barrier)(comm *c);

    // ---- for codecs (non-blocking, then blocking) ------------------------------------------
    // Post a reduction with a caller-given combine: op COMM_ALL_REDUCE_COMBINE (every rank ends
    // with the whole result) or COMM_REDUCE_SCATTER_COMBINE (rank r's chunk of the n elements,
    // comm_chunk, holds the result; the rest of buf is scratch). *cb is copied.
    ts_status (*start_combine)(comm *c, comm_op op, void *buf, size_t n, const comm_combine *cb,
                               comm_req **req);
    // Post an all-gather of variable-length blocks: this rank's `bytes` bytes at `block` (read
    // until the request completes; may be NULL when bytes is 0). When done, out holds every
    // rank's block back to back in rank order (rank r's at lens[0] + ... + lens[r-1]) and
    // lens[0 .. size) their lengths. out has room for `cap` bytes, the same cap on every rank:
    // blocks that add up to more fail on every rank alike (TS_ERR_INTERNAL, logged), before any
    // block moves. block and out must not overlap; block, out and lens stay the caller's to keep
    // alive until the request completes.
    ts_status (*start_all_gather_v)(comm *c, const void *block, size_t bytes, void *out, size_t cap,
                                    size_t *lens, comm_req **req);
    ts_status (*all_reduce_combine)(comm *c, void *buf, size_t n, const comm_combine *cb);
    ts_status (*reduce_scatter_combine)(comm *c, void *buf, size_t n, const comm_combine *cb);
    ts_status (*all_gather_v)(comm *c, const void *block, size_t bytes, void *out, size_t cap,
                              size_t *lens);

    comm_stats stats;
    void (*finalize)(comm *c); // MPI_Finalize for mpi (under a watchdog); frees c
    void *impl;
};

#define COMM_MAX_INFLIGHT 64

// Rank r's chunk of n elements split over `size` ranks: [*first, *first + *count). The first
// n % size chunks hold one element more.
void comm_chunk(size_t n, int size, int r, size_t *first, size_t *count);

size_t comm_dtype_size(comm_dtype dt);
const char *comm_op_name(comm_op op);

// Pick the backend: "mpi" when tessera was built with MPI and started by mpirun (or when
// TESSERA_COMM=mpi), else "self". MPI_Init runs under a watchdog: a start-up that overruns
// init_timeout_s ends the process with the peer-lost code.
ts_status comm_init(comm **out, int *argc, char ***argv, double init_timeout_s);

comm *comm_self_create(void);
#ifdef TESSERA_HAVE_MPI
ts_status comm_mpi_create(comm **out, int *argc, char ***argv, double init_timeout_s);
#endif

#endif
