// comm_sched.h — the collectives as point-to-point schedules: for a rank and a step, which
// message goes to which peer, where it lands and what gets reduced.
//
// A schedule is a pure function of (collective, n, element size, world size, rank, root, step):
// there is no MPI in it, so the same schedule serves any transport that can send and receive,
// and the bytes a rank moves are known in advance. Each step holds at most one send and one
// receive, posted together; the step's reduction runs once both have completed.
//
// Algorithms (p ranks, r this rank, n elements, chunk k = comm_chunk(n, p, k)):
//   ring                 all-reduce of >= COMM_SMALL_BYTES, reduce-scatter, all-gather.
//                        Reduce-scatter: p - 1 rounds; in round k rank r sends chunk r-k-1 to
//                        r+1 and adds chunk r-k-2 from r-1 into its own (indices mod p), so
//                        chunk j is summed starting at rank j+1 and moving up the ring, ending
//                        complete on rank j. All-gather: p - 1 rounds, round k sends chunk r-k,
//                        receives chunk r-k-1. All-reduce is the two in a row. Each round is cut
//                        into `segments` steps of at most cut.segment bytes (comm_ring_cut), so
//                        a received segment is added while it is still in cache and the scratch
//                        buffer stays small, and up to `window` <= `segments` steps are in
//                        flight: a step is posted once the step `window` before it has been
//                        added in; its send reads a segment finished `segments` >= `window`
//                        steps earlier, and its receive goes to scratch slot step % window.
//   recursive doubling   all-reduce below COMM_SMALL_BYTES (or n < p): with q the largest power
//                        of two <= p and e = p - q, ranks 2i < 2e first hand their vector to
//                        2i+1; q ranks then exchange whole vectors with the partner at distance
//                        1, 2, 4, ... (in the renumbered world); finally 2i+1 hands the result
//                        back to 2i. Every sum puts the lower ranks' part first, so all ranks
//                        evaluate the same expression and hold the same bits.
//   binomial tree        broadcast below COMM_SMALL_BYTES: ceil(log2 p) rounds.
//   chain                broadcast from COMM_SMALL_BYTES: root -> root+1 -> ... in segments of
//                        COMM_CHAIN_SEGMENT bytes, each rank forwarding segment i-1 while it
//                        receives segment i.
//   dissemination        barrier: ceil(log2 p) rounds of zero-byte messages to r + 2^k, from
//                        r - 2^k.
//   ring of blocks       all-gather of variable blocks, once every rank knows every length
//                        (the lengths themselves travel first, as a ring all-gather of one
//                        8-byte element per rank): p - 1 rounds, round k sends block r-k to r+1
//                        and receives block r-k-1 from r-1, each round cut into as many steps as
//                        the longest block has cut.segment-byte segments (the window as for
//                        the ring above).
// The combine collectives (COMM_*_COMBINE) use the schedules of the sums they stand for.
// Messages of zero bytes are not sent (both sides know the lengths), except the barrier's. No
// message is longer than max(cut.segment, COMM_CHAIN_SEGMENT, COMM_SMALL_BYTES), except
// recursive doubling's when n < p: then n * esize is tiny anyway.
//
// The cut (segment size and window) changes how a round is sliced, never what is summed in
// which order: results are the same bits for every cut. Ranks must agree on the segment size
// (it sets the messages' lengths); the window is each rank's own.
#ifndef TESSERA_COMM_SCHED_H
#define TESSERA_COMM_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "collectives/comm.h"

#define COMM_SMALL_BYTES   ((size_t)64 << 10)  // latency algorithms below, bandwidth ones above
#define COMM_CHAIN_SEGMENT ((size_t)256 << 10) // broadcast pipeline segment
#define COMM_MAX_WINDOW    32                  // ring steps in flight at most

// How the ring and the ring of blocks cut a round into steps, and how many steps a rank keeps
// in flight. comm_mpi.c picks one per world (see there); NULL in comm_sched_init means
// COMM_CUT_LOCAL.
typedef struct {
    size_t segment; // bytes per step at most (whole elements, at least one)
    int window;     // steps in flight at most, 1 .. COMM_MAX_WINDOW
} comm_ring_cut;

// All ranks on one host (shared memory): large segments, two in flight.
#define COMM_CUT_LOCAL ((comm_ring_cut){(size_t)512 << 10, 2})
// Ranks on several hosts (TCP): segments below Open MPI's TCP eager limit (64 KiB with the
// header), so each goes out without a rendezvous handshake; 8 in flight until comm_mpi.c has
// measured the links' rate, then as many as that rate fills in 50 ms.
#define COMM_CUT_NETWORK ((comm_ring_cut){(size_t)63 << 10, 8})

typedef enum {
    COMM_ALGO_NONE = 0, // nothing to move: one rank, or no data
    COMM_ALGO_RING,
    COMM_ALGO_RECURSIVE_DOUBLING,
    COMM_ALGO_BINOMIAL,
    COMM_ALGO_CHAIN,
    COMM_ALGO_DISSEMINATION,
    COMM_ALGO_RING_BLOCKS,
} comm_algo;

typedef struct {
    comm_op op;
    comm_algo algo;
    int rank, size, root;
    size_t n, esize;  // elements, bytes per element
    int steps;        // on this rank
    int window;       // steps that may be in flight at once (1 .. COMM_MAX_WINDOW)
    int segments;     // ring: steps per round
    size_t seg_elems; // ring: elements per segment (the last of a chunk may be shorter)
    // ring of blocks: block r's length and byte offset, for r < size (the caller's arrays)
    const uint64_t *blk_len, *blk_off;
} comm_sched;

typedef struct {
    int peer;           // -1: no message this step
    int to_scratch;     // a receive into the scratch buffer instead of buf
    size_t off;         // byte offset into buf
    size_t scratch_off; // byte offset into scratch, for a receive into scratch
    size_t bytes;
} comm_msg;

typedef struct {
    comm_msg send, recv;
    // after both messages: buf[red_off, red_off + recv.bytes) = received OP buf when
    // scratch_first, else buf OP received (the lower ranks' part comes first)
    int reduce;
    int scratch_first;
    size_t red_off;
} comm_step;

// cut: the ring's (NULL: COMM_CUT_LOCAL); the other algorithms ignore it.
void comm_sched_init(comm_sched *s, comm_op op, size_t n, size_t esize, int size, int rank,
                     int root, const comm_ring_cut *cut);
// The block phase of COMM_ALL_GATHER_V (len and off: `size` entries, kept alive by the caller).
void comm_sched_init_blocks(comm_sched *s, int size, int rank, const uint64_t *len,
                            const uint64_t *off, const comm_ring_cut *cut);
// Step `step` of this rank's schedule. A ring step receives into scratch slot step % window.
void comm_sched_step(const comm_sched *s, int step, comm_step *out);
size_t comm_sched_scratch_bytes(const comm_sched *s);
const char *comm_algo_name(comm_algo algo);

// dst[i] = a OP b over n elements, (a, b) = (src[i], dst[i]) when src_first else (dst[i],
// src[i]); OP is + or max.
void comm_reduce(void *dst, const void *src, size_t n, comm_dtype dt, int max, int src_first);

// A completed step's reduction (cs->reduce set): buf + red_off combined with what the step
// received into scratch, by cb->fn when cb is given (the *_COMBINE collectives), else with
// comm_reduce over dt (max: COMM_ALL_REDUCE_MAX).
void comm_step_reduce(const comm_step *cs, unsigned char *buf, const unsigned char *scratch,
                      size_t esize, comm_dtype dt, int max, const comm_combine *cb);

#endif
