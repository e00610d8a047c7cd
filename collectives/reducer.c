// reducer.c — bucketed gradient reduction overlapped with backward, each bucket through the
// gradient codec (see reducer.h).
#include "collectives/reducer.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(real) == sizeof(float), "codecs encode fp32 gradients");

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

// Buckets of whole tensors (a codec with whole_tensors), from the end backwards: each as many
// tensors as fit in `per` values, or one tensor alone when it is larger. Writes the buckets'
// firsts (when `first` is not NULL) and returns their number.
static int buckets_of_tensors(const size_t *bound, int n_bound, size_t per, size_t *first) {
    int count = 0, at = n_bound - 1; // bound[at] == n: the end of the buffer
    while (at > 0) {
        size_t end = bound[at], lo = end > per ? end - per : 0;
        int k = at - 1; // the furthest boundary back within `per`, at least one tensor
        while (k > 0 && bound[k - 1] >= lo)
            k--;
        if (first) first[count] = bound[k];
        count++;
        at = k;
    }
    return count;
}

// the boundaries of the codec's tensors in [0, n], sorted, each once
static size_t *tensor_bounds(const codec *cx, size_t n, int *n_bound) {
    int nt = cx->params.n_tensors, m = 0;
    size_t *bound = ts_malloc((2 * (size_t)nt + 2) * sizeof *bound, "tensor boundaries");
    bound[m++] = 0;
    bound[m++] = n;
    for (int i = 0; i < nt; i++) {
        const codec_tensor *t = &cx->params.tensors[i];
        bound[m++] = t->offset;
        bound[m++] = t->offset + t->rows * t->cols;
    }
    qsort(bound, (size_t)m, sizeof *bound, cmp_size);
    int u = 0;
    for (int i = 0; i < m; i++)
        if (u == 0 || bound[i] != bound[u - 1]) bound[u++] = bound[i];
    *n_bound = u;
    return bound;
}

ts_status reducer_create(reducer *r, comm *c, codec *cx, const backend *be, real *grads, size_t n,
                         double bucket_mb, int zero, int overlap) {
    memset(r, 0, sizeof *r);
    if (!(bucket_mb > 0)) {
        log_error("[comm] bucket_mb: expected a bucket size > 0 MiB, got %g", bucket_mb);
        return TS_ERR_INPUT;
    }
    r->comm = c;
    r->codec = cx;
    r->be = be;
    r->grads = grads;
    r->n = n;
    r->zero = zero;
    r->overlap = overlap;
    size_t per = (size_t)(bucket_mb * 1048576.0 / sizeof(real));
    if (per < 1) per = 1;
    r->n_buckets = (int)((n + per - 1) / per);
    if (r->n_buckets < 1) r->n_buckets = 1;
    if (r->n_buckets > COMM_MAX_INFLIGHT) {
        // more buckets than requests in flight: grow the buckets instead
        per = (n + COMM_MAX_INFLIGHT - 1) / COMM_MAX_INFLIGHT;
        r->n_buckets = (int)((n + per - 1) / per);
    }
    size_t *firsts = NULL;
    if (cx && cx->ops->whole_tensors && cx->params.n_tensors > 0 && n > 0) {
        // cut at tensor boundaries, the buckets grown until they fit in the requests in flight
        int n_bound;
        size_t *bound = tensor_bounds(cx, n, &n_bound);
        per = (size_t)(bucket_mb * 1048576.0 / sizeof(real));
        if (per < 1) per = 1;
        while ((r->n_buckets = buckets_of_tensors(bound, n_bound, per, NULL)) > COMM_MAX_INFLIGHT)
            per *= 2;
        firsts = ts_malloc((size_t)r->n_buckets * sizeof *firsts, "bucket offsets");
        buckets_of_tensors(bound, n_bound, per, firsts);
        free(bound);
    }
    r->buckets = ts_calloc((size_t)r->n_buckets, sizeof(reducer_bucket), "reducer buckets");
    // from the end of the buffer backwards: bucket 0 is the last `per` elements (or tensors)
    size_t end = n;
    for (int b = 0; b < r->n_buckets; b++) {
        size_t first = firsts ? firsts[b] : end > per ? end - per : 0;
        r->buckets[b].first = first;
        r->buckets[b].count = end - first;
        end = first;
    }
    free(firsts);
    if (!be->host_memory && c->size > 1)
        r->staging = ts_malloc(n * sizeof(real), "gradient staging buffer");
    return TS_OK;
}

void reducer_destroy(reducer *r) {
    for (int b = 0; r->buckets && b < r->n_buckets; b++)
        codec_bucket_free(&r->buckets[b].xfer);
    free(r->buckets);
    free(r->staging);
    memset(r, 0, sizeof *r);
}

void reducer_begin(reducer *r) {
    r->active = 1;
    for (int b = 0; b < r->n_buckets; b++) {
        reducer_bucket *k = &r->buckets[b];
        k->xfer.req = NULL;
        k->started = k->done = 0;
        k->t_start = k->t_done = 0;
    }
}

static ts_status bucket_start(reducer *r, reducer_bucket *k) {
    real *buf = r->grads + k->first;
    if (r->staging) {
        r->be->to_host(r->be, r->staging + k->first, buf, k->count * sizeof(real));
        buf = r->staging + k->first;
    }
    k->started = 1;
    k->t_start = ts_now();
    return codec_bucket_start(r->codec, r->comm, &k->xfer, k->first, buf, k->count, r->zero);
}

static void bucket_done(reducer *r, reducer_bucket *k) {
    k->done = 1;
    k->t_done = ts_now();
    if (!r->staging) return;
    size_t first = k->first, count = k->count;
    if (r->zero) { // only this rank's chunk holds the sum
        size_t cf, cc;
        comm_chunk(k->count, r->comm->size, r->comm->rank, &cf, &cc);
        first += cf;
        count = cc;
    }
    r->be->to_device(r->be, r->grads + first, r->staging + first, count * sizeof(real));
}

// advance what is in flight without blocking
static ts_status reducer_poll(reducer *r) {
    for (int b = 0; b < r->n_buckets; b++) {
        reducer_bucket *k = &r->buckets[b];
        if (!k->started || k->done) continue;
        int done = 0;
        TS_CHECK(codec_bucket_test(r->codec, r->comm, &k->xfer, &done));
        if (done) bucket_done(r, k);
    }
    return TS_OK;
}

ts_status reducer_grads_ready(reducer *r, size_t ready_from) {
    if (!r->active || r->comm->size == 1 || !r->overlap) return TS_OK;
    for (int b = 0; b < r->n_buckets; b++) {
        reducer_bucket *k = &r->buckets[b];
        if (k->first < ready_from) break; // buckets further on are not complete yet
        if (!k->started) TS_CHECK(bucket_start(r, k));
    }
    return reducer_poll(r);
}

ts_status reducer_finish(reducer *r) {
    r->t_backward_end = ts_now();
    if (!r->active) return TS_OK;
    r->active = 0;
    if (r->comm->size == 1) return TS_OK;
    for (int b = 0; b < r->n_buckets; b++)
        if (!r->buckets[b].started) TS_CHECK(bucket_start(r, &r->buckets[b]));
    // in passes over the buckets, each one step further (a codec with rounds starts the next
    // round of every bucket before it waits for any bucket's last)
    for (int left = 1; left;) {
        left = 0;
        for (int b = 0; b < r->n_buckets; b++) {
            reducer_bucket *k = &r->buckets[b];
            if (k->done) continue;
            int done = 0;
            TS_CHECK(codec_bucket_advance(r->codec, r->comm, &k->xfer, &done));
            if (done)
                bucket_done(r, k);
            else
                left = 1;
        }
    }
    return TS_OK;
}

int reducer_owned(const reducer *r, size_t *first, size_t *count) {
    for (int b = 0; b < r->n_buckets; b++) {
        size_t cf, cc;
        comm_chunk(r->buckets[b].count, r->comm->size, r->comm->rank, &cf, &cc);
        first[b] = r->buckets[b].first + cf;
        count[b] = cc;
    }
    return r->n_buckets;
}

ts_status reducer_gather_params(reducer *r, real *master) {
    if (r->comm->size == 1) return TS_OK;
    // start every bucket's all-gather, then wait for them in order
    comm_req *reqs[COMM_MAX_INFLIGHT];
    real *host = r->staging ? r->staging : master;
    for (int b = 0; b < r->n_buckets; b++) {
        reducer_bucket *k = &r->buckets[b];
        if (r->staging) { // this rank's updated chunk goes down to the host copy
            size_t cf, cc;
            comm_chunk(k->count, r->comm->size, r->comm->rank, &cf, &cc);
            r->be->to_host(r->be, host + k->first + cf, master + k->first + cf, cc * sizeof(real));
        }
        TS_CHECK(r->comm->start(r->comm, COMM_ALL_GATHER, host + k->first, k->count, COMM_F32, 0,
                                &reqs[b]));
    }
    for (int b = 0; b < r->n_buckets; b++) {
        TS_CHECK(r->comm->wait(r->comm, reqs[b]));
        if (r->staging)
            r->be->to_device(r->be, master + r->buckets[b].first, host + r->buckets[b].first,
                             r->buckets[b].count * sizeof(real));
    }
    return TS_OK;
}
