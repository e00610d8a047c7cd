// comm_mpi.c — the "mpi" communicator: Open MPI collectives on host memory, each with a deadline.
//
// Every collective is started non-blocking (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) and then
// polled with MPI_Test, sleeping between polls (1 us growing to 1 ms), until it completes or the
// communicator's deadline (c->timeout_s) passes. A blocking MPI call would wait forever for a
// peer that is partitioned away or hung; polling turns that into TS_ERR_PEER, which the trainer
// reports with the "peer lost" exit code so the launcher restarts the job.
//
// MPI_COMM_WORLD uses MPI_ERRORS_RETURN, so MPI failures come back as return codes: they are
// logged with MPI's own error string and also returned as TS_ERR_PEER (in practice they mean a
// peer's connection broke).
//
// After a collective failed, its request is still pending on a peer that may never answer, so
// finalize skips MPI_Finalize (which would wait for that peer) and only frees memory; the process
// is about to exit with the peer-lost code anyway.
//
// Sums are deterministic for a given world size and message length: Open MPI's reduction picks
// the same algorithm and order every time. Point-to-point ring algorithms can later replace the
// bodies of the comm_mpi_all_reduce_* functions without changing the waiting logic.
#ifdef TESSERA_HAVE_MPI

#include "comm.h"

#include <mpi.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    int initialized_here; // we called MPI_Init_thread, so finalize calls MPI_Finalize
    int failed;           // a collective expired or errored: MPI_Finalize could hang
} comm_mpi_impl;

// MPI counts are int; longer buffers go in pieces of this many elements (or bytes)
#define COMM_MPI_MAX_CHUNK ((size_t)1 << 30)

// ---------------------------------------------------------------------------------------------
// errors and waiting

static ts_status comm_mpi_fail(comm *c, const char *call, const char *op, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    log_error("%s on rank %d failed in %s: %s", op, c->rank, call, msg);
    ((comm_mpi_impl *)c->impl)->failed = 1;
    return TS_ERR_PEER;
}

// Poll one started request until it completes or `deadline` (ts_now() seconds) passes.
// `op` names the collective for the error line; `started` is when the whole collective began.
static ts_status comm_mpi_wait(comm *c, MPI_Request *req, const char *op, double started,
                               double deadline) {
    long sleep_ns = 1000;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return comm_mpi_fail(c, "MPI_Test", op, rc);
        if (done) return TS_OK;
        double now = ts_now();
        if (now >= deadline) {
            // A collective request cannot be cancelled; it stays pending until the process exits.
            ((comm_mpi_impl *)c->impl)->failed = 1;
            log_error("%s on rank %d of %d did not complete within the %.1f s deadline "
                      "(waited %.1f s): a peer is lost or stalled (an MPI collective cannot tell "
                      "which one)",
                      op, c->rank, c->size, c->timeout_s, now - started);
            return TS_ERR_PEER;
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        sleep_ns = sleep_ns < 500000 ? sleep_ns * 2 : 1000000; // back off to 1 ms
    }
}

// ---------------------------------------------------------------------------------------------
// collectives

static ts_status comm_mpi_all_reduce(comm *c, void *buf, size_t n, size_t elem_bytes,
                                     MPI_Datatype type, MPI_Op mpi_op, const char *op) {
    if (((comm_mpi_impl *)c->impl)->failed) {
        log_error("%s on rank %d: the communicator already lost a peer", op, c->rank);
        return TS_ERR_PEER;
    }
    double started = ts_now();
    double deadline = started + c->timeout_s;
    size_t off = 0;
    do { // at least once, so a zero-length reduce still meets the peers
        size_t len = n - off < COMM_MPI_MAX_CHUNK ? n - off : COMM_MPI_MAX_CHUNK;
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem_bytes, (int)len, type,
                                mpi_op, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return comm_mpi_fail(c, "MPI_Iallreduce", op, rc);
        TS_CHECK(comm_mpi_wait(c, &req, op, started, deadline));
        off += len;
    } while (off < n);
    return TS_OK;
}

static ts_status comm_mpi_all_reduce_sum_f32(comm *c, float *buf, size_t n) {
    return comm_mpi_all_reduce(c, buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, "all_reduce_sum_f32");
}

static ts_status comm_mpi_all_reduce_sum_f64(comm *c, double *buf, size_t n) {
    return comm_mpi_all_reduce(c, buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM, "all_reduce_sum_f64");
}

static ts_status comm_mpi_all_reduce_max_i32(comm *c, int *buf, size_t n) {
    return comm_mpi_all_reduce(c, buf, n, sizeof *buf, MPI_INT, MPI_MAX, "all_reduce_max_i32");
}

static ts_status comm_mpi_broadcast(comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size) {
        log_error("broadcast from root %d in a world of %d", root, c->size);
        return TS_ERR_INTERNAL;
    }
    if (((comm_mpi_impl *)c->impl)->failed) {
        log_error("broadcast on rank %d: the communicator already lost a peer", c->rank);
        return TS_ERR_PEER;
    }
    double started = ts_now();
    double deadline = started + c->timeout_s;
    size_t off = 0;
    do {
        size_t len = bytes - off < COMM_MPI_MAX_CHUNK ? bytes - off : COMM_MPI_MAX_CHUNK;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return comm_mpi_fail(c, "MPI_Ibcast", "broadcast", rc);
        TS_CHECK(comm_mpi_wait(c, &req, "broadcast", started, deadline));
        off += len;
    } while (off < bytes);
    return TS_OK;
}

static ts_status comm_mpi_barrier(comm *c) {
    if (((comm_mpi_impl *)c->impl)->failed) {
        log_error("barrier on rank %d: the communicator already lost a peer", c->rank);
        return TS_ERR_PEER;
    }
    double started = ts_now();
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return comm_mpi_fail(c, "MPI_Ibarrier", "barrier", rc);
    return comm_mpi_wait(c, &req, "barrier", started, started + c->timeout_s);
}

// ---------------------------------------------------------------------------------------------
// lifetime

static void comm_mpi_finalize(comm *c) {
    comm_mpi_impl *impl = c->impl;
    if (impl->initialized_here && !impl->failed) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    } else if (impl->failed) {
        log_debug("skipping MPI_Finalize on rank %d: a peer is lost", c->rank);
    }
    free(impl);
    free(c);
}

ts_status comm_mpi_create(comm **out, int *argc, char ***argv) {
    *out = NULL;
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        // only the main thread calls MPI; OpenMP worker threads never do
        int provided = MPI_THREAD_SINGLE;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            log_error("MPI_Init_thread failed (code %d): is this process started by mpirun?", rc);
            return TS_ERR_SYSTEM;
        }
        if (provided < MPI_THREAD_FUNNELED)
            log_warn("MPI provides thread level %d, below MPI_THREAD_FUNNELED (%d)", provided,
                     MPI_THREAD_FUNNELED);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

    comm *c = ts_calloc(1, sizeof *c, "mpi communicator");
    comm_mpi_impl *impl = ts_calloc(1, sizeof *impl, "mpi communicator state");
    impl->initialized_here = !already;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    c->name = "mpi";
    c->timeout_s = 300.0; // default deadline; the trainer sets it from the config
    c->all_reduce_sum_f32 = comm_mpi_all_reduce_sum_f32;
    c->all_reduce_sum_f64 = comm_mpi_all_reduce_sum_f64;
    c->all_reduce_max_i32 = comm_mpi_all_reduce_max_i32;
    c->broadcast = comm_mpi_broadcast;
    c->barrier = comm_mpi_barrier;
    c->finalize = comm_mpi_finalize;
    c->impl = impl;
    *out = c;
    return TS_OK;
}

#endif // TESSERA_HAVE_MPI
