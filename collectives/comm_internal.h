// comm_internal.h — what the communicator backends share and the trainer does not see: argument
// checks, the blocking calls built on start + wait, and the watchdog that bounds MPI start-up
// and shut-down.
#ifndef TESSERA_COMM_INTERNAL_H
#define TESSERA_COMM_INTERNAL_H

#include <pthread.h>

#include "collectives/comm.h"

// A dtype the public header does not name: raw bytes, for broadcast(buf, bytes, root) and for
// copies (all-gather, broadcast) of any buffer. Reductions refuse it.
#define COMM_BYTES ((comm_dtype)(COMM_I32 + 1))

// One collective in flight. Every backend keeps COMM_MAX_INFLIGHT of these slots; `backend`
// points at the backend's own progress state for the slot (MPI requests, the current step).
typedef enum { COMM_REQ_FREE = 0, COMM_REQ_ACTIVE, COMM_REQ_DONE } comm_req_state;

struct comm_req {
    comm_req_state state; // DONE: complete, not yet reported by test/wait
    comm_op op;
    comm_dtype dt;
    unsigned char *buf; // ALL_GATHER_V: out
    size_t n, esize;    // elements and bytes per element (ALL_GATHER_V: cap and 1)
    int root;
    comm_combine combine; // *_COMBINE: the caller's reduction (else fn NULL)
    // ALL_GATHER_V: this rank's block, and where the lengths go
    const unsigned char *block;
    size_t block_bytes;
    size_t *lens;
    uint64_t seq;             // start order: the same on every rank for the same collective
    double started, deadline; // ts_now() seconds
    void *backend;
};

// Take a free slot for a checked start() call; NULL (logged) when COMM_MAX_INFLIGHT are busy.
comm_req *comm_req_acquire(comm_req *slots, comm_op op, void *buf, size_t n, comm_dtype dt,
                           int root, uint64_t seq, double timeout_s);
// Check that req is one of `slots` and not released; logs and returns TS_ERR_INTERNAL if not.
ts_status comm_req_check(const comm_req *slots, const comm_req *req);

// Check a start() call's arguments (op, dtype, buffer, root; BARRIER: NULL buffer and n 0).
// A wrong combination is a bug in the caller: logged, TS_ERR_INTERNAL.
ts_status comm_check_start(const comm *c, comm_op op, const void *buf, size_t n, comm_dtype dt,
                           int root);
// The same for start_combine and start_all_gather_v.
ts_status comm_check_combine(comm_op op, const void *buf, size_t n, const comm_combine *cb);
ts_status comm_check_all_gather_v(const void *block, size_t bytes, const void *out, size_t cap,
                                  const size_t *lens);
// Take a slot for a checked start_combine / start_all_gather_v call (comm_req_acquire, then the
// fields those calls add).
comm_req *comm_req_acquire_combine(comm_req *slots, comm_op op, void *buf, size_t n,
                                   const comm_combine *cb, uint64_t seq, double timeout_s);
comm_req *comm_req_acquire_all_gather_v(comm_req *slots, const void *block, size_t bytes, void *out,
                                        size_t cap, size_t *lens, uint64_t seq, double timeout_s);
// ALL_GATHER_V once every length is known (lens[0 .. size)): the blocks must fit the request's
// cap (else logged, TS_ERR_INTERNAL: the same verdict on every rank, which hold the same
// lengths); this rank's block is copied to its place in out.
ts_status comm_all_gather_v_place(comm_req *q, int rank, int size);

// Fill c's blocking entry points (all_reduce_sum_f32 ... barrier, all_reduce_combine ...
// all_gather_v) with start + wait.
void comm_set_blocking_ops(comm *c);

// ---- watchdog -------------------------------------------------------------------------------
// A thread that ends the process with the peer-lost code if the main thread has not called
// comm_watchdog_stop within timeout_s: MPI_Init_thread and MPI_Finalize have no timeout of
// their own and can wait forever for an unreachable host. On expiry it logs one line, writes
// the status file (collective = `what`, reason peer_lost) and calls _exit(75).
typedef struct {
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int stopped, running;
    double deadline; // ts_now() seconds
    double timeout_s;
    const char *what; // "MPI_Init_thread", "MPI_Finalize"
} comm_watchdog;

// timeout_s <= 0: no watchdog (the call may wait forever).
ts_status comm_watchdog_start(comm_watchdog *w, const char *what, double timeout_s);
void comm_watchdog_stop(comm_watchdog *w);

#endif
