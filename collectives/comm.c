// comm.c — what every communicator backend shares: picking the backend (comm_init), chunking,
// dtype and op names, argument checks, the blocking calls (start + wait) and the
// start-up / shut-down watchdog.
//
// Backend choice, in order:
//   TESSERA_COMM=self  -> "self" (a world of 1), even under mpirun
//   TESSERA_COMM=mpi   -> "mpi" (an error when tessera was built without MPI)
//   started by mpirun  -> "mpi"; Open MPI's launcher exports OMPI_COMM_WORLD_SIZE to every rank,
//                         and PMIx-based launchers export PMIX_RANK
//   otherwise          -> "self"
// Calling MPI_Init in a process that was not started by a launcher would make it a singleton
// MPI world, which only costs start-up time, so plain runs stay on "self".
//
// A rank that gives up on a deadline leaves its status file (base/status_file.h) with reason
// peer_lost, the collective and the peer it waited for.
#include "collectives/comm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/env.h"

// ---------------------------------------------------------------------------------------------
// backend choice

static int comm_started_by_launcher(void) {
    return env_get("OMPI_COMM_WORLD_SIZE") != NULL || env_get("PMIX_RANK") != NULL;
}

ts_status comm_init(comm **out, int *argc, char ***argv, double init_timeout_s) {
    *out = NULL;
    int forced; // TESSERA_COMM: 0 unset, 1 self, 2 mpi
    TS_CHECK(env_get_choice("TESSERA_COMM", &forced));
    int want_mpi = forced ? forced == 2 : comm_started_by_launcher();

    if (!want_mpi) {
        (void)argc, (void)argv, (void)init_timeout_s;
        *out = comm_self_create();
        return TS_OK;
    }
#ifdef TESSERA_HAVE_MPI
    return comm_mpi_create(out, argc, argv, init_timeout_s);
#else
    // N copies of a world-of-1 trainer would each train alone and overwrite each other's
    // checkpoints, so refuse rather than fall back to "self".
    if (forced)
        log_error("environment TESSERA_COMM=mpi: this tessera was built without MPI "
                  "(install libopenmpi-dev and rebuild, or set TESSERA_COMM=self)");
    else
        log_error("started by mpirun, but this tessera was built without MPI "
                  "(install libopenmpi-dev and rebuild, or set TESSERA_COMM=self)");
    return TS_ERR_INPUT;
#endif
}

// ---------------------------------------------------------------------------------------------
// chunks, dtypes, names

void comm_chunk(size_t n, int size, int r, size_t *first, size_t *count) {
    size_t base = n / (size_t)size, extra = n % (size_t)size, ur = (size_t)r;
    *count = base + (ur < extra ? 1 : 0);
    *first = ur * base + (ur < extra ? ur : extra);
}

size_t comm_dtype_size(comm_dtype dt) {
    switch (dt) {
    case COMM_F32: return sizeof(float);
    case COMM_F64: return sizeof(double);
    case COMM_I32: return sizeof(int32_t);
    }
    return dt == COMM_BYTES ? 1 : 0;
}

const char *comm_op_name(comm_op op) {
    switch (op) {
    case COMM_ALL_REDUCE_SUM: return "all-reduce (sum)";
    case COMM_ALL_REDUCE_MAX: return "all-reduce (max)";
    case COMM_REDUCE_SCATTER_SUM: return "reduce-scatter (sum)";
    case COMM_ALL_GATHER: return "all-gather";
    case COMM_BROADCAST: return "broadcast";
    case COMM_BARRIER: return "barrier";
    case COMM_ALL_REDUCE_COMBINE: return "all-reduce (combine)";
    case COMM_REDUCE_SCATTER_COMBINE: return "reduce-scatter (combine)";
    case COMM_ALL_GATHER_V: return "all-gather (variable blocks)";
    }
    return "unknown collective";
}

ts_status comm_check_start(const comm *c, comm_op op, const void *buf, size_t n, comm_dtype dt,
                           int root) {
    const char *name = comm_op_name(op);
    if (op < COMM_ALL_REDUCE_SUM || op > COMM_ALL_GATHER_V) {
        log_error("collective %d: no such collective", (int)op);
        return TS_ERR_INTERNAL;
    }
    if (op > COMM_BARRIER) {
        log_error("%s through start(): use %s", name,
                  op == COMM_ALL_GATHER_V ? "start_all_gather_v" : "start_combine");
        return TS_ERR_INTERNAL;
    }
    if (comm_dtype_size(dt) == 0) {
        log_error("%s: dtype %d is not f32, f64 or i32", name, (int)dt);
        return TS_ERR_INTERNAL;
    }
    int reduces =
        op == COMM_ALL_REDUCE_SUM || op == COMM_ALL_REDUCE_MAX || op == COMM_REDUCE_SCATTER_SUM;
    if (reduces && dt == COMM_BYTES) {
        log_error("%s of raw bytes: a reduction needs f32, f64 or i32", name);
        return TS_ERR_INTERNAL;
    }
    if (op == COMM_BARRIER && (buf != NULL || n != 0)) {
        log_error("barrier with a buffer (%zu elements): expected NULL and 0", n);
        return TS_ERR_INTERNAL;
    }
    if (op != COMM_BARRIER && n > 0 && buf == NULL) {
        log_error("%s of %zu elements on a NULL buffer", name, n);
        return TS_ERR_INTERNAL;
    }
    if (op == COMM_BROADCAST && (root < 0 || root >= c->size)) {
        log_error("broadcast from root %d in a world of %d", root, c->size);
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

ts_status comm_check_combine(comm_op op, const void *buf, size_t n, const comm_combine *cb) {
    if (op != COMM_ALL_REDUCE_COMBINE && op != COMM_REDUCE_SCATTER_COMBINE) {
        log_error("start_combine of %s: expected all-reduce or reduce-scatter (combine)",
                  comm_op_name(op));
        return TS_ERR_INTERNAL;
    }
    if (!cb || !cb->fn || cb->esize < 1 || cb->esize > COMM_COMBINE_MAX_ESIZE) {
        log_error("%s without a combine function or with elements of %zu bytes (expected 1 to "
                  "%zu)",
                  comm_op_name(op), cb ? cb->esize : 0, COMM_COMBINE_MAX_ESIZE);
        return TS_ERR_INTERNAL;
    }
    if (n > 0 && buf == NULL) {
        log_error("%s of %zu elements on a NULL buffer", comm_op_name(op), n);
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

ts_status comm_check_all_gather_v(const void *block, size_t bytes, const void *out, size_t cap,
                                  const size_t *lens) {
    const char *name = comm_op_name(COMM_ALL_GATHER_V);
    if ((bytes > 0 && block == NULL) || (cap > 0 && out == NULL) || lens == NULL) {
        log_error("%s with a NULL block (%zu bytes), output (%zu bytes) or length table", name,
                  bytes, cap);
        return TS_ERR_INTERNAL;
    }
    const unsigned char *b = block, *o = out;
    if (bytes > 0 && cap > 0 && b < o + cap && o < b + bytes) {
        log_error("%s: the block overlaps the output buffer", name);
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

ts_status comm_all_gather_v_place(comm_req *q, int rank, int size) {
    size_t total = 0, at = 0;
    for (int r = 0; r < size; r++) {
        if (r == rank) at = total;
        total += q->lens[r];
    }
    if (total > q->n) {
        log_error("%s: the blocks add up to %zu bytes, the output holds %zu (expected room for "
                  "every rank's block)",
                  comm_op_name(q->op), total, q->n);
        return TS_ERR_INTERNAL;
    }
    if (q->block_bytes > 0) memcpy(q->buf + at, q->block, q->block_bytes);
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// request slots

comm_req *comm_req_acquire(comm_req *slots, comm_op op, void *buf, size_t n, comm_dtype dt,
                           int root, uint64_t seq, double timeout_s) {
    for (int i = 0; i < COMM_MAX_INFLIGHT; i++) {
        comm_req *q = &slots[i];
        if (q->state != COMM_REQ_FREE) continue;
        q->state = COMM_REQ_ACTIVE;
        q->op = op;
        q->dt = dt;
        q->buf = buf;
        q->n = n;
        q->esize = comm_dtype_size(dt);
        q->root = root;
        memset(&q->combine, 0, sizeof q->combine);
        q->block = NULL;
        q->block_bytes = 0;
        q->lens = NULL;
        q->seq = seq;
        q->started = ts_now();
        q->deadline = q->started + timeout_s;
        return q;
    }
    log_error("%s: %d collectives already in flight (the most a communicator allows)",
              comm_op_name(op), COMM_MAX_INFLIGHT);
    return NULL;
}

comm_req *comm_req_acquire_combine(comm_req *slots, comm_op op, void *buf, size_t n,
                                   const comm_combine *cb, uint64_t seq, double timeout_s) {
    comm_req *q = comm_req_acquire(slots, op, buf, n, COMM_BYTES, 0, seq, timeout_s);
    if (!q) return NULL;
    q->combine = *cb;
    q->esize = cb->esize;
    return q;
}

comm_req *comm_req_acquire_all_gather_v(comm_req *slots, const void *block, size_t bytes, void *out,
                                        size_t cap, size_t *lens, uint64_t seq, double timeout_s) {
    comm_req *q =
        comm_req_acquire(slots, COMM_ALL_GATHER_V, out, cap, COMM_BYTES, 0, seq, timeout_s);
    if (!q) return NULL;
    q->block = block;
    q->block_bytes = bytes;
    q->lens = lens;
    return q;
}

ts_status comm_req_check(const comm_req *slots, const comm_req *req) {
    uintptr_t at = (uintptr_t)req, lo = (uintptr_t)slots;
    if (!req || at < lo || at >= (uintptr_t)(slots + COMM_MAX_INFLIGHT) ||
        (at - lo) % sizeof *slots != 0 || req->state == COMM_REQ_FREE) {
        log_error("test/wait on a request that is not in flight (already completed?)");
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// blocking calls: start + wait, the same for every backend

static ts_status comm_run(comm *c, comm_op op, void *buf, size_t n, comm_dtype dt, int root) {
    comm_req *req = NULL;
    TS_CHECK(c->start(c, op, buf, n, dt, root, &req));
    return c->wait(c, req);
}

static ts_status comm_all_reduce_sum_f32(comm *c, float *buf, size_t n) {
    return comm_run(c, COMM_ALL_REDUCE_SUM, buf, n, COMM_F32, 0);
}
static ts_status comm_all_reduce_sum_f64(comm *c, double *buf, size_t n) {
    return comm_run(c, COMM_ALL_REDUCE_SUM, buf, n, COMM_F64, 0);
}
static ts_status comm_all_reduce_max_i32(comm *c, int *buf, size_t n) {
    return comm_run(c, COMM_ALL_REDUCE_MAX, buf, n, COMM_I32, 0);
}
static ts_status comm_reduce_scatter_sum_f32(comm *c, float *buf, size_t n) {
    return comm_run(c, COMM_REDUCE_SCATTER_SUM, buf, n, COMM_F32, 0);
}
static ts_status comm_all_gather_f32(comm *c, float *buf, size_t n) {
    return comm_run(c, COMM_ALL_GATHER, buf, n, COMM_F32, 0);
}
static ts_status comm_broadcast(comm *c, void *buf, size_t bytes, int root) {
    return comm_run(c, COMM_BROADCAST, buf, bytes, COMM_BYTES, root);
}
static ts_status comm_barrier(comm *c) { return comm_run(c, COMM_BARRIER, NULL, 0, COMM_F32, 0); }

static ts_status comm_all_reduce_combine(comm *c, void *buf, size_t n, const comm_combine *cb) {
    comm_req *req = NULL;
    TS_CHECK(c->start_combine(c, COMM_ALL_REDUCE_COMBINE, buf, n, cb, &req));
    return c->wait(c, req);
}
static ts_status comm_reduce_scatter_combine(comm *c, void *buf, size_t n, const comm_combine *cb) {
    comm_req *req = NULL;
    TS_CHECK(c->start_combine(c, COMM_REDUCE_SCATTER_COMBINE, buf, n, cb, &req));
    return c->wait(c, req);
}
static ts_status comm_all_gather_v(comm *c, const void *block, size_t bytes, void *out, size_t cap,
                                   size_t *lens) {
    comm_req *req = NULL;
    TS_CHECK(c->start_all_gather_v(c, block, bytes, out, cap, lens, &req));
    return c->wait(c, req);
}

void comm_set_blocking_ops(comm *c) {
    c->all_reduce_sum_f32 = comm_all_reduce_sum_f32;
    c->all_reduce_sum_f64 = comm_all_reduce_sum_f64;
    c->all_reduce_max_i32 = comm_all_reduce_max_i32;
    c->reduce_scatter_sum_f32 = comm_reduce_scatter_sum_f32;
    c->all_gather_f32 = comm_all_gather_f32;
    c->broadcast = comm_broadcast;
    c->barrier = comm_barrier;
    c->all_reduce_combine = comm_all_reduce_combine;
    c->reduce_scatter_combine = comm_reduce_scatter_combine;
    c->all_gather_v = comm_all_gather_v;
}

// ---------------------------------------------------------------------------------------------
// watchdog

static void *comm_watchdog_main(void *arg) {
    comm_watchdog *w = arg;
    // the condition variable runs on CLOCK_MONOTONIC, like ts_now()
    struct timespec until;
    until.tv_sec = (time_t)w->deadline;
    until.tv_nsec = (long)((w->deadline - (double)until.tv_sec) * 1e9);
    pthread_mutex_lock(&w->mutex);
    while (!w->stopped && ts_now() < w->deadline)
        pthread_cond_timedwait(&w->cond, &w->mutex, &until);
    int expired = !w->stopped;
    pthread_mutex_unlock(&w->mutex);
    if (expired) {
        log_error("%s did not return within %g s: a host of this job is unreachable or hung "
                  "(check the hostfile, ssh and firewalls): peer lost",
                  w->what, w->timeout_s);
        status_file_write("peer_lost", w->what, -1, TS_EXIT_PEER_LOST);
        _exit(TS_EXIT_PEER_LOST); // exit() would run atexit handlers against a live main thread
    }
    return NULL;
}

ts_status comm_watchdog_start(comm_watchdog *w, const char *what, double timeout_s) {
    memset(w, 0, sizeof *w);
    w->what = what;
    w->timeout_s = timeout_s;
    if (timeout_s <= 0) return TS_OK;
    w->deadline = ts_now() + timeout_s;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->mutex, NULL);
    int rc = pthread_create(&w->thread, NULL, comm_watchdog_main, w);
    if (rc != 0) {
        log_error("cannot start the watchdog thread for %s: %s", what, strerror(rc));
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mutex);
        return TS_ERR_SYSTEM;
    }
    w->running = 1;
    return TS_OK;
}

void comm_watchdog_stop(comm_watchdog *w) {
    if (!w->running) return;
    pthread_mutex_lock(&w->mutex);
    w->stopped = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mutex);
    w->running = 0;
}
