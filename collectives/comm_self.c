// comm_self.c — the "self" communicator: a world of one rank.
//
// With one rank every collective is complete as soon as it starts: a sum or max over one
// contribution is the contribution itself, rank 0's chunk of a reduce-scatter or all-gather is
// the whole buffer, and a broadcast from rank 0 leaves the buffer as it is. Nothing moves and
// nothing can wait, so the deadline never applies; the requests exist only so that callers use
// one code path for every backend. A combine never runs (there is nothing to combine with); an
// all-gather of variable blocks copies this rank's block to the output.
#include "collectives/comm_internal.h"

#include <stdlib.h>

typedef struct {
    comm_req slots[COMM_MAX_INFLIGHT];
    uint64_t seq;
} comm_self_impl;

static ts_status comm_self_start(comm *c, comm_op op, void *buf, size_t n, comm_dtype dt, int root,
                                 comm_req **req) {
    *req = NULL;
    TS_CHECK(comm_check_start(c, op, buf, n, dt, root));
    comm_self_impl *impl = c->impl;
    comm_req *q = comm_req_acquire(impl->slots, op, buf, n, dt, root, impl->seq++, c->timeout_s);
    if (!q) return TS_ERR_INTERNAL;
    q->state = COMM_REQ_DONE;
    c->stats.collectives++;
    *req = q;
    return TS_OK;
}

static ts_status comm_self_start_combine(comm *c, comm_op op, void *buf, size_t n,
                                         const comm_combine *cb, comm_req **req) {
    *req = NULL;
    TS_CHECK(comm_check_combine(op, buf, n, cb));
    comm_self_impl *impl = c->impl;
    comm_req *q = comm_req_acquire_combine(impl->slots, op, buf, n, cb, impl->seq++, c->timeout_s);
    if (!q) return TS_ERR_INTERNAL;
    q->state = COMM_REQ_DONE;
    c->stats.collectives++;
    *req = q;
    return TS_OK;
}

static ts_status comm_self_start_all_gather_v(comm *c, const void *block, size_t bytes, void *out,
                                              size_t cap, size_t *lens, comm_req **req) {
    *req = NULL;
    TS_CHECK(comm_check_all_gather_v(block, bytes, out, cap, lens));
    comm_self_impl *impl = c->impl;
    comm_req *q = comm_req_acquire_all_gather_v(impl->slots, block, bytes, out, cap, lens,
                                                impl->seq++, c->timeout_s);
    if (!q) return TS_ERR_INTERNAL;
    lens[0] = bytes;
    ts_status st = comm_all_gather_v_place(q, 0, 1);
    if (st != TS_OK) {
        q->state = COMM_REQ_FREE;
        return st;
    }
    q->state = COMM_REQ_DONE;
    c->stats.collectives++;
    *req = q;
    return TS_OK;
}

static ts_status comm_self_test(comm *c, comm_req *req, int *done) {
    *done = 0;
    TS_CHECK(comm_req_check(((comm_self_impl *)c->impl)->slots, req));
    req->state = COMM_REQ_FREE;
    *done = 1;
    return TS_OK;
}

static ts_status comm_self_wait(comm *c, comm_req *req) {
    int done;
    return comm_self_test(c, req, &done);
}

static void comm_self_finalize(comm *c) {
    free(c->impl);
    free(c);
}

comm *comm_self_create(void) {
    comm *c = ts_calloc(1, sizeof *c, "self communicator");
    c->name = "self";
    c->rank = 0;
    status_file_set_rank(0);
    c->size = 1;
    c->timeout_s = 300.0; // default deadline; the trainer sets it from the config
    c->start = comm_self_start;
    c->test = comm_self_test;
    c->wait = comm_self_wait;
    c->start_combine = comm_self_start_combine;
    c->start_all_gather_v = comm_self_start_all_gather_v;
    comm_set_blocking_ops(c);
    c->finalize = comm_self_finalize;
    c->impl = ts_calloc(1, sizeof(comm_self_impl), "self communicator state");
    return c;
}
