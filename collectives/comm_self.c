// comm_self.c — the "self" communicator: a world of one rank.
//
// With one rank every collective is already complete: a sum or max over one contribution is the
// contribution itself, and a broadcast from rank 0 leaves the buffer as it is. Nothing here can
// wait, so the deadline never applies.
#include "comm.h"

#include <stdlib.h>

static ts_status comm_self_all_reduce_sum_f32(comm *c, float *buf, size_t n) {
    (void)c, (void)buf, (void)n;
    return TS_OK;
}

static ts_status comm_self_all_reduce_sum_f64(comm *c, double *buf, size_t n) {
    (void)c, (void)buf, (void)n;
    return TS_OK;
}

static ts_status comm_self_all_reduce_max_i32(comm *c, int *buf, size_t n) {
    (void)c, (void)buf, (void)n;
    return TS_OK;
}

static ts_status comm_self_broadcast(comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes;
    if (root != 0) {
        // the only rank is 0: any other root is a caller bug, not a user error
        log_error("broadcast from root %d in a world of 1 (only rank 0 exists)", root);
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

static ts_status comm_self_barrier(comm *c) {
    (void)c;
    return TS_OK;
}

static void comm_self_finalize(comm *c) { free(c); }

comm *comm_self_create(void) {
    comm *c = ts_calloc(1, sizeof *c, "self communicator");
    c->name = "self";
    c->rank = 0;
    c->size = 1;
    c->timeout_s = 300.0; // default deadline; the trainer sets it from the config
    c->all_reduce_sum_f32 = comm_self_all_reduce_sum_f32;
    c->all_reduce_sum_f64 = comm_self_all_reduce_sum_f64;
    c->all_reduce_max_i32 = comm_self_all_reduce_max_i32;
    c->broadcast = comm_self_broadcast;
    c->barrier = comm_self_barrier;
    c->finalize = comm_self_finalize;
    c->impl = NULL;
    return c;
}
