// comm_mpi.c — the "mpi" communicator: our own collective algorithms (comm_sched.h) run over
// Open MPI point-to-point messages on host memory, every request with a deadline.
//
// Only MPI_Isend, MPI_Irecv and the test calls move data; MPI collectives are never used, so
// this file knows every byte it moves, the order of every sum, and, when a deadline passes,
// which peer it was waiting for. MPI runs at MPI_THREAD_FUNNELED: only the main thread calls
// it, and nothing here starts threads except the watchdog, which never calls MPI.
//
// A request is a state machine over its schedule's steps. Advancing it means: when the oldest
// posted step's Isend/Irecv have completed (MPI_Testall), apply the step's reduction and post
// the next step (the ring keeps up to `window` steps in flight, see comm_sched.h). Open MPI makes
// no progress on its own, so requests advance only inside start/test/wait; every such call advances
// all requests in flight, not just the one asked about, so ranks that wait for their requests in
// different orders cannot deadlock.
//
// Requests in flight at the same time are kept apart by their MPI tag, the request's sequence
// number modulo COMM_MPI_TAGS: every rank starts collectives in the same order, so the numbers
// agree, and at most COMM_MAX_INFLIGHT are in flight, so two live requests never share a tag.
// Within a request, messages between the same two ranks are matched in the order they were
// posted (MPI does not let messages overtake each other), which is the schedule's order.
//
// Deadlines: a request that is not complete by start + timeout_s fails. test/wait then log one
// line naming the collective, the training step and the peer of the pending receive (else
// send), write the status file (reason peer_lost, exit code 75) and return TS_ERR_PEER. The
// communicator is then failed: every later call returns TS_ERR_PEER at once, and finalize skips
// MPI_Finalize, which would wait for the lost peer. MPI_Init_thread and MPI_Finalize run under
// a watchdog thread (comm_internal.h) that ends the process with the peer-lost code.
//
// MPI_COMM_WORLD uses MPI_ERRORS_RETURN: an MPI failure (in practice a broken connection to a
// peer) is logged with MPI's own message and treated like a lost peer.
#ifdef TESSERA_HAVE_MPI

#include "collectives/comm_internal.h"
#include "collectives/comm_sched.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/env.h"

#define COMM_MPI_TAGS 32768 // MPI guarantees tags up to at least 32767
// Across hosts, a ring request keeps about this many seconds of the link's measured rate in
// flight (comm_mpi_cut_of), at least 2 steps and at most COMM_MAX_WINDOW
#define COMM_MPI_FLIGHT_S 0.05
// a wait that receives less than this says little about the link's rate
#define COMM_MPI_RATE_MIN_BYTES ((uint64_t)256 << 10)
#ifndef COMM_MPI_SPIN_S
#define COMM_MPI_SPIN_S 20e-6 // wait() polls without yielding for this long after progress
#endif

// one step of a schedule whose messages are in flight
typedef struct {
    comm_step cs;
    MPI_Request mreq[2]; // [0] receive, [1] send (MPI_REQUEST_NULL when none)
} comm_mpi_flight;

// progress state of one request slot
typedef struct {
    comm_sched sched;
    unsigned char *base; // what the schedule's offsets point into (the request's buffer)
    int next_step;       // the next step to post
    int inflight;        // steps posted and not yet complete: flight[0 .. inflight)
    comm_mpi_flight flight[COMM_MAX_WINDOW]; // oldest first; at most sched.window
    unsigned char *scratch;                  // received partial sums before they are added in
    size_t scratch_cap;
    int tag;
    // ALL_GATHER_V: phase 0 all-gathers the lengths into vlen[0 .. size) (the schedule's base),
    // phase 1 the blocks into the request's buffer at offsets vlen[size .. 2 size)
    int phase;
    uint64_t *vlen; // 2 * size entries, allocated on first use and kept
} comm_mpi_prog;

typedef struct {
    comm_req slots[COMM_MAX_INFLIGHT];
    comm_mpi_prog prog[COMM_MAX_INFLIGHT];
    int window_auto;      // the ring's window follows the measured rate (comm_mpi_cut_of)
    double rate;          // bytes/s received while waiting, smoothed; 0 before the first
    uint64_t seq;         // collectives started so far
    int initialized_here; // we called MPI_Init_thread, so finalize calls MPI_Finalize
    int failed;           // a deadline passed or MPI failed: no more collectives, no finalize
} comm_mpi_impl;

static comm_mpi_impl *comm_mpi_of(comm *c) { return c->impl; }

// The cut for a collective starting now. Between hosts (window_auto), the window holds
// COMM_MPI_FLIGHT_S of the rate measured so far: enough to keep the link busy while a step
// travels and the peer wakes up to answer, not so much that TCP piles it up in the link's queue,
// where it delays the acknowledgements of the traffic coming the other way and overflows (on a
// 10 Mbit/s lab link, 8 steps in flight did worse than 2; on 100 Mbit/s, 2 did worse than 8:
// docs/benchmarks.md). Each rank keeps its own window; only the segment must agree.
static comm_ring_cut comm_mpi_cut_of(comm *c) {
    comm_mpi_impl *impl = comm_mpi_of(c);
    if (impl->window_auto && impl->rate > 0) {
        double w = impl->rate * COMM_MPI_FLIGHT_S / (double)c->ring_segment;
        c->ring_window = w < 2 ? 2 : w > COMM_MAX_WINDOW ? COMM_MAX_WINDOW : (int)(w + 0.5);
    }
    return (comm_ring_cut){c->ring_segment, c->ring_window};
}

// ---------------------------------------------------------------------------------------------
// failures

// The peer a stuck request waits for: in its oldest step still in flight, the source of the
// pending receive, else the destination of the pending send (the receiver has not taken it).
static int comm_mpi_pending_peer(const comm_mpi_prog *pr) {
    for (int f = 0; f < pr->inflight; f++)
        for (int k = 0; k < 2; k++) {
            MPI_Request r = pr->flight[f].mreq[k];
            int flag = 1;
            if (r != MPI_REQUEST_NULL) MPI_Request_get_status(r, &flag, MPI_STATUS_IGNORE);
            if (!flag) return k == 0 ? pr->flight[f].cs.recv.peer : pr->flight[f].cs.send.peer;
        }
    return -1;
}

static void comm_mpi_step_text(char *out, size_t len) {
    long step = status_file_step();
    if (step >= 0)
        snprintf(out, len, "at step %ld", step);
    else
        snprintf(out, len, "before the first step");
}

static ts_status comm_mpi_expire(comm *c, comm_req *q) {
    comm_mpi_impl *impl = comm_mpi_of(c);
    int peer = comm_mpi_pending_peer(q->backend);
    impl->failed = 1;
    char when[64];
    comm_mpi_step_text(when, sizeof when);
    const char *name = comm_op_name(q->op);
    if (peer >= 0)
        log_error("%s %s: waited %.1f s for rank %d, which did not answer: peer lost "
                  "(deadline comm.timeout_s = %g s)",
                  name, when, ts_now() - q->started, peer, c->timeout_s);
    else // nothing pending on the network: this process itself was stopped past the deadline
        log_error("%s %s: did not complete within %.1f s although no message was pending: "
                  "this process was stopped or starved past the deadline (comm.timeout_s = %g s)",
                  name, when, ts_now() - q->started, c->timeout_s);
    status_file_write("peer_lost", name, peer, TS_EXIT_PEER_LOST);
    return TS_ERR_PEER;
}

// an MPI call failed on a message to or from `peer` (-1: the request's pending peer)
static ts_status comm_mpi_fail(comm *c, comm_req *q, const char *call, int rc, int peer) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    if (peer < 0) peer = comm_mpi_pending_peer(q->backend);
    comm_mpi_of(c)->failed = 1;
    char when[64];
    comm_mpi_step_text(when, sizeof when);
    const char *name = comm_op_name(q->op);
    log_error("%s %s: %s failed with rank %d: %s: peer lost", name, when, call, peer, msg);
    status_file_write("peer_lost", name, peer, TS_EXIT_PEER_LOST);
    return TS_ERR_PEER;
}

static ts_status comm_mpi_refuse(comm *c) {
    log_debug("rank %d: collective refused: this communicator already lost a peer", c->rank);
    return TS_ERR_PEER;
}

// ---------------------------------------------------------------------------------------------
// the state machine

// post the Irecv and Isend of schedule step pr->next_step as flight[pr->inflight]
static ts_status comm_mpi_post(comm *c, comm_req *q, const comm_step *cs) {
    comm_mpi_prog *pr = q->backend;
    comm_mpi_flight *fl = &pr->flight[pr->inflight];
    fl->cs = *cs;
    fl->mreq[0] = fl->mreq[1] = MPI_REQUEST_NULL;
    pr->inflight++; // counted now, so a failure below reports this step's peer
    const comm_msg *msgs[2] = {&cs->recv, &cs->send};
    for (int k = 0; k < 2; k++) {
        const comm_msg *m = msgs[k];
        if (m->peer < 0) continue;
        TS_ASSERT(m->bytes <= INT_MAX);             // the schedules cut messages into segments
        unsigned char *ptr = m->bytes == 0   ? NULL // a barrier's message: no buffer
                             : m->to_scratch ? pr->scratch + m->scratch_off
                                             : pr->base + m->off;
        int rc = k == 0 ? MPI_Irecv(ptr, (int)m->bytes, MPI_BYTE, m->peer, pr->tag, MPI_COMM_WORLD,
                                    &fl->mreq[k])
                        : MPI_Isend(ptr, (int)m->bytes, MPI_BYTE, m->peer, pr->tag, MPI_COMM_WORLD,
                                    &fl->mreq[k]);
        if (rc != MPI_SUCCESS)
            return comm_mpi_fail(c, q, k == 0 ? "MPI_Irecv" : "MPI_Isend", rc, m->peer);
    }
    return TS_OK;
}

// post steps until the schedule's window is full. A step without messages on this rank (it has
// no reduction either) is skipped when nothing is in flight; otherwise it takes its place in the
// window as a step that completes at once: a ring's send forwards what the step `segments`
// before received, and only the window (completed in order) guarantees that step has landed.
// (Skipped there, an empty step let the next one post its send while the step it forwards was
// still receiving: all-gathers of blocks of unequal segment counts sent garbage.)
static ts_status comm_mpi_fill(comm *c, comm_req *q) {
    comm_mpi_prog *pr = q->backend;
    while (pr->inflight < pr->sched.window && pr->next_step < pr->sched.steps) {
        comm_step cs;
        comm_sched_step(&pr->sched, pr->next_step++, &cs);
        if (cs.recv.peer < 0 && cs.send.peer < 0 && pr->inflight == 0) continue;
        TS_CHECK(comm_mpi_post(c, q, &cs));
    }
    return TS_OK;
}

// ALL_GATHER_V, the lengths all-gathered: check the blocks fit, put this rank's in place and
// switch to the blocks' schedule. A misfit fails the request on every rank alike (they hold the
// same lengths and the same cap) and frees its slot: no message of it is left in flight.
static ts_status comm_mpi_blocks_phase(comm *c, comm_req *q) {
    comm_mpi_prog *pr = q->backend;
    int p = c->size;
    uint64_t *len = pr->vlen, *off = pr->vlen + p, at = 0;
    for (int r = 0; r < p; r++) {
        q->lens[r] = (size_t)len[r];
        off[r] = at;
        at += len[r];
    }
    ts_status st = comm_all_gather_v_place(q, c->rank, p);
    if (st != TS_OK) {
        q->state = COMM_REQ_FREE;
        return st;
    }
    comm_ring_cut cut = comm_mpi_cut_of(c);
    comm_sched_init_blocks(&pr->sched, p, c->rank, len, off, &cut);
    pr->base = q->buf;
    pr->next_step = 0;
    pr->phase = 1;
    return TS_OK;
}

// Advance one request as far as it goes without waiting: fill the window, complete the oldest
// step in flight, apply its reduction, repeat. *progressed is set when a step completed.
static ts_status comm_mpi_advance(comm *c, comm_req *q, int *progressed) {
    comm_mpi_prog *pr = q->backend;
    while (q->state == COMM_REQ_ACTIVE) {
        TS_CHECK(comm_mpi_fill(c, q));
        if (pr->inflight == 0 && q->op == COMM_ALL_GATHER_V && pr->phase == 0) {
            TS_CHECK(comm_mpi_blocks_phase(c, q));
            continue;
        }
        if (pr->inflight == 0) { // every step done
            q->state = COMM_REQ_DONE;
            c->stats.collectives++;
            *progressed = 1;
            break;
        }
        comm_mpi_flight *fl = &pr->flight[0];
        int flag = 0;
        int rc = MPI_Testall(2, fl->mreq, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return comm_mpi_fail(c, q, "MPI_Testall", rc, -1);
        if (!flag) return TS_OK;
        *progressed = 1;
        comm_step cs = fl->cs;
        if (cs.recv.peer >= 0) c->stats.bytes_recv += cs.recv.bytes;
        if (cs.send.peer >= 0) c->stats.bytes_sent += cs.send.bytes;
        pr->inflight--;
        memmove(pr->flight, pr->flight + 1, (size_t)pr->inflight * sizeof pr->flight[0]);
        // the steps after still move while this one is added in; the next step is posted only
        // after the add, since it may send what the add writes (when segments == window)
        if (cs.reduce)
            comm_step_reduce(&cs, pr->base, pr->scratch, q->esize, q->dt,
                             q->op == COMM_ALL_REDUCE_MAX, &q->combine);
    }
    return TS_OK;
}

static ts_status comm_mpi_advance_all(comm *c, int *progressed) {
    comm_mpi_impl *impl = comm_mpi_of(c);
    for (int i = 0; i < COMM_MAX_INFLIGHT; i++)
        if (impl->slots[i].state == COMM_REQ_ACTIVE)
            TS_CHECK(comm_mpi_advance(c, &impl->slots[i], progressed));
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// start / test / wait

// give the acquired request q its progress state and tag, schedule sched, and post its first steps
static ts_status comm_mpi_begin(comm *c, comm_req *q, const comm_sched *sched, unsigned char *base,
                                comm_req **req) {
    comm_mpi_impl *impl = comm_mpi_of(c);
    comm_mpi_prog *pr = &impl->prog[q - impl->slots];
    q->backend = pr;
    pr->tag = (int)(impl->seq % COMM_MPI_TAGS);
    impl->seq++;
    pr->sched = *sched;
    pr->base = base;
    pr->phase = 0;
    size_t need = comm_sched_scratch_bytes(&pr->sched);
    if (need > pr->scratch_cap) { // kept between requests: no page faults on every call
        free(pr->scratch);
        pr->scratch = ts_malloc(need, "collective scratch buffer");
        pr->scratch_cap = need;
    }
    pr->next_step = 0;
    pr->inflight = 0;
    *req = q;
    int progressed = 0;
    ts_status st = comm_mpi_advance(c, q, &progressed);        // post the first step now
    if (st != TS_OK && q->state == COMM_REQ_FREE) *req = NULL; // released on a caller's bug
    return st;
}

static ts_status comm_mpi_start(comm *c, comm_op op, void *buf, size_t n, comm_dtype dt, int root,
                                comm_req **req) {
    *req = NULL;
    comm_mpi_impl *impl = comm_mpi_of(c);
    if (impl->failed) return comm_mpi_refuse(c);
    TS_CHECK(comm_check_start(c, op, buf, n, dt, root));
    comm_req *q = comm_req_acquire(impl->slots, op, buf, n, dt, root, impl->seq, c->timeout_s);
    if (!q) return TS_ERR_INTERNAL;
    comm_sched sched;
    comm_ring_cut cut = comm_mpi_cut_of(c);
    comm_sched_init(&sched, op, n, comm_dtype_size(dt), c->size, c->rank, root, &cut);
    return comm_mpi_begin(c, q, &sched, q->buf, req);
}

static ts_status comm_mpi_start_combine(comm *c, comm_op op, void *buf, size_t n,
                                        const comm_combine *cb, comm_req **req) {
    *req = NULL;
    comm_mpi_impl *impl = comm_mpi_of(c);
    if (impl->failed) return comm_mpi_refuse(c);
    TS_CHECK(comm_check_combine(op, buf, n, cb));
    comm_req *q = comm_req_acquire_combine(impl->slots, op, buf, n, cb, impl->seq, c->timeout_s);
    if (!q) return TS_ERR_INTERNAL;
    comm_sched sched;
    comm_ring_cut cut = comm_mpi_cut_of(c);
    comm_sched_init(&sched, op, n, cb->esize, c->size, c->rank, 0, &cut);
    return comm_mpi_begin(c, q, &sched, q->buf, req);
}

static ts_status comm_mpi_start_all_gather_v(comm *c, const void *block, size_t bytes, void *out,
                                             size_t cap, size_t *lens, comm_req **req) {
    *req = NULL;
    comm_mpi_impl *impl = comm_mpi_of(c);
    if (impl->failed) return comm_mpi_refuse(c);
    TS_CHECK(comm_check_all_gather_v(block, bytes, out, cap, lens));
    comm_req *q = comm_req_acquire_all_gather_v(impl->slots, block, bytes, out, cap, lens,
                                                impl->seq, c->timeout_s);
    if (!q) return TS_ERR_INTERNAL;
    comm_mpi_prog *pr = &impl->prog[q - impl->slots];
    if (!pr->vlen) pr->vlen = ts_malloc(2 * (size_t)c->size * sizeof(uint64_t), "block lengths");
    memset(pr->vlen, 0, (size_t)c->size * sizeof(uint64_t));
    pr->vlen[c->rank] = bytes;
    // phase 0: the lengths, one 8-byte element per rank (rank r's chunk is element r)
    comm_sched sched;
    comm_ring_cut cut = comm_mpi_cut_of(c);
    comm_sched_init(&sched, COMM_ALL_GATHER, (size_t)c->size, sizeof(uint64_t), c->size, c->rank, 0,
                    &cut);
    return comm_mpi_begin(c, q, &sched, (unsigned char *)pr->vlen, req);
}

// one round of progress for every request; then report on req
static ts_status comm_mpi_poll(comm *c, comm_req *req, int *done, int *progressed) {
    *done = 0;
    comm_mpi_impl *impl = comm_mpi_of(c);
    if (impl->failed) return comm_mpi_refuse(c);
    TS_CHECK(comm_req_check(impl->slots, req));
    TS_CHECK(comm_mpi_advance_all(c, progressed));
    if (req->state == COMM_REQ_DONE) {
        req->state = COMM_REQ_FREE;
        *done = 1;
        return TS_OK;
    }
    if (ts_now() >= req->deadline) return comm_mpi_expire(c, req);
    return TS_OK;
}

static ts_status comm_mpi_test(comm *c, comm_req *req, int *done) {
    int progressed = 0;
    return comm_mpi_poll(c, req, done, &progressed);
}

// Poll until done. Spin while messages keep completing; when nothing moves, yield the core
// (ranks may outnumber cores), and after a while sleep, so a rank that waits minutes for a slow
// peer does not burn a core.
// A wait that moved enough data also measures the link: bytes received per second while this
// rank did nothing but poll (a lower bound of the link's rate, which the window then follows).
static ts_status comm_mpi_wait(comm *c, comm_req *req) {
    double t0 = ts_now(), last = t0;
    uint64_t recv0 = c->stats.bytes_recv;
    ts_status st;
    for (;;) {
        int done = 0, progressed = 0;
        st = comm_mpi_poll(c, req, &done, &progressed);
        if (st != TS_OK || done) break;
        if (progressed) {
            last = ts_now();
            continue;
        }
        double quiet = ts_now() - last;
        if (quiet < COMM_MPI_SPIN_S) continue;
        if (quiet < 0.01) {
            sched_yield();
        } else {
            struct timespec ts = {0, quiet < 1.0 ? 100000 : 1000000};
            nanosleep(&ts, NULL);
        }
    }
    double waited = ts_now() - t0;
    c->stats.wait_s += waited;
    uint64_t got = c->stats.bytes_recv - recv0;
    if (st == TS_OK && got >= COMM_MPI_RATE_MIN_BYTES && waited > 0) {
        comm_mpi_impl *impl = comm_mpi_of(c);
        double rate = (double)got / waited;
        impl->rate = impl->rate > 0 ? 0.5 * (impl->rate + rate) : rate;
    }
    return st;
}

// ---------------------------------------------------------------------------------------------
// lifetime

static void comm_mpi_finalize(comm *c) {
    comm_mpi_impl *impl = comm_mpi_of(c);
    int active = 0;
    for (int i = 0; i < COMM_MAX_INFLIGHT; i++)
        active += impl->slots[i].state != COMM_REQ_FREE;
    if (impl->failed) {
        log_debug("skipping MPI_Finalize on rank %d: a peer is lost", c->rank);
    } else if (impl->initialized_here) {
        if (active) log_warn("finalize with %d collective(s) still in flight", active);
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) {
            // MPI_Finalize waits for every rank: a lost peer would hold it forever
            comm_watchdog w;
            int guarded = comm_watchdog_start(&w, "MPI_Finalize", c->timeout_s) == TS_OK;
            MPI_Finalize();
            if (guarded) comm_watchdog_stop(&w);
        }
    }
    if (!impl->failed) // a failed request's buffers may still be written into by MPI
        for (int i = 0; i < COMM_MAX_INFLIGHT; i++) {
            free(impl->prog[i].scratch);
            free(impl->prog[i].vlen);
        }
    free(impl);
    free(c);
}

// The ring's cut (comm_sched.h). All on one host, ranks talk through shared memory, where large
// segments cost least: COMM_CUT_LOCAL. Across hosts they talk TCP, where Open MPI sends a
// message above its eager limit only once the receiver has answered the first fragment
// (rendezvous); that answer travels behind the data the receiver is sending the other way, so
// on a thin link, whose queues hold up to seconds of data, the two directions end up taking
// turns instead of both sending. COMM_CUT_NETWORK's segments go out without waiting for an
// answer. Open MPI tells each rank how many ranks share its host (OMPI_COMM_WORLD_LOCAL_SIZE):
// fewer than the world on one host means fewer on every host, so every rank picks the same cut;
// without that variable the world is taken to span hosts. TESSERA_COMM_SEGMENT and
// TESSERA_COMM_WINDOW override (the segment must be the same on every rank: it sets the
// messages' lengths).
//
// Read before MPI_Init, so that a wrong value stops the rank before it joins the world:
// *over holds the overrides (0: none), *local the ranks on this host (-1: not known).
static ts_status comm_mpi_cut_knobs(comm_ring_cut *over, long *local) {
    long segment, window;
    TS_CHECK(env_get_int("OMPI_COMM_WORLD_LOCAL_SIZE", -1, local));
    TS_CHECK(env_get_int("TESSERA_COMM_SEGMENT", 0, &segment));
    TS_CHECK(env_get_int("TESSERA_COMM_WINDOW", 0, &window));
    if (segment < 0 || segment > INT_MAX) {
        log_error("environment TESSERA_COMM_SEGMENT=%ld: expected bytes from 1 to %d (0: chosen "
                  "by the communicator)",
                  segment, INT_MAX);
        return TS_ERR_INPUT;
    }
    if (window < 0 || window > COMM_MAX_WINDOW) {
        log_error("environment TESSERA_COMM_WINDOW=%ld: expected steps from 1 to %d (0: chosen by "
                  "the communicator)",
                  window, COMM_MAX_WINDOW);
        return TS_ERR_INPUT;
    }
    *over = (comm_ring_cut){(size_t)segment, (int)window};
    return TS_OK;
}

// the cut a world starts with; *window_auto: its window is to follow the measured rate
static comm_ring_cut comm_mpi_cut(int size, long local, comm_ring_cut over, int *window_auto) {
    comm_ring_cut cut = local == size ? COMM_CUT_LOCAL : COMM_CUT_NETWORK;
    *window_auto = local != size && over.window == 0;
    if (over.segment) cut.segment = over.segment;
    if (over.window) cut.window = over.window;
    return cut;
}

ts_status comm_mpi_create(comm **out, int *argc, char ***argv, double init_timeout_s) {
    *out = NULL;
    comm_ring_cut over;
    long local;
    TS_CHECK(comm_mpi_cut_knobs(&over, &local));
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        // before MPI_Init the rank is known only from the launcher's environment
        long rank_hint;
        TS_CHECK(env_get_int("PMIX_RANK", -1, &rank_hint));
        status_file_set_rank((int)rank_hint);
        comm_watchdog w;
        TS_CHECK(comm_watchdog_start(&w, "MPI_Init_thread", init_timeout_s));
        // only the main thread calls MPI; OpenMP worker threads never do
        int provided = MPI_THREAD_SINGLE;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        comm_watchdog_stop(&w);
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
    status_file_set_rank(c->rank);
    comm_ring_cut cut = comm_mpi_cut(c->size, local, over, &impl->window_auto);
    c->ring_segment = cut.segment;
    c->ring_window = cut.window;
    log_debug("ring segments of %zu bytes, %d in flight", cut.segment, cut.window);
    c->name = "mpi";
    c->timeout_s = 300.0; // default deadline; the trainer sets it from the config
    c->start = comm_mpi_start;
    c->test = comm_mpi_test;
    c->wait = comm_mpi_wait;
    c->start_combine = comm_mpi_start_combine;
    c->start_all_gather_v = comm_mpi_start_all_gather_v;
    comm_set_blocking_ops(c);
    c->finalize = comm_mpi_finalize;
    c->impl = impl;
    *out = c;
    return TS_OK;
}

#endif // TESSERA_HAVE_MPI
