// balance.c — shares of the global batch that follow measured speed (runtime/balance.h).
#include "runtime/balance.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void balance_optimal(int world, int global_batch, const double *v, const double *f, int *share) {
    TS_ASSERT(world >= 1 && global_batch >= world);
    // one sequence at a time to the rank that would finish it first: for identical items this
    // greedy order gives the least makespan
    for (int r = 0; r < world; r++)
        share[r] = 1;
    for (int left = global_batch - world; left > 0; left--) {
        int best = 0;
        double best_t = INFINITY;
        for (int r = 0; r < world; r++) {
            double t = f[r] + (share[r] + 1) / v[r];
            if (t < best_t) best_t = t, best = r;
        }
        share[best]++;
    }
}

void balance_set_shares(balance *b, const int *share) {
    int at = 0;
    for (int r = 0; r < b->world; r++) {
        b->share[r] = share[r];
        b->offset[r] = at;
        at += share[r];
    }
    TS_ASSERT(at == b->global_batch);
}

// rank r's expected time for `share` sequences (speed known)
static double rank_time(const balance *b, int r, int share) {
    return b->fixed[r] + share / b->speed[r];
}

void balance_init(balance *b, const balance_params *p, int world, int global_batch,
                  uint64_t next_sample) {
    memset(b, 0, sizeof *b);
    b->p = *p;
    b->p.declared = NULL; // only used here
    b->world = world;
    b->global_batch = global_batch;
    b->speed = ts_calloc((size_t)world, sizeof(double), "balance speeds");
    b->fixed = ts_calloc((size_t)world, sizeof(double), "balance fixed costs");
    b->share = ts_calloc((size_t)world, sizeof(int), "balance shares");
    b->offset = ts_calloc((size_t)world, sizeof(int), "balance offsets");
    b->late = ts_calloc((size_t)world, sizeof(int), "balance lateness");
    b->queue = ts_calloc((size_t)global_batch, sizeof(uint64_t), "sample queue");
    b->list = ts_calloc((size_t)global_batch, sizeof(uint64_t), "step samples");
    b->cursor = next_sample;
    b->slow_rank = -1;
    int *share = ts_calloc((size_t)world, sizeof(int), "balance shares");
    if (p->declared) {
        balance_optimal(world, global_batch, p->declared, b->fixed, share); // fixed: zeros
    } else {
        // the first (global_batch % world) ranks take one sequence more
        int base = global_batch / world, extra = global_batch % world;
        for (int r = 0; r < world; r++)
            share[r] = base + (r < extra);
    }
    balance_set_shares(b, share);
    free(share);
}

void balance_free(balance *b) {
    free(b->speed);
    free(b->fixed);
    free(b->share);
    free(b->offset);
    free(b->late);
    free(b->queue);
    free(b->list);
    memset(b, 0, sizeof *b);
}

void balance_plan(balance *b) {
    int n = 0;
    for (int i = 0; i < b->n_queue; i++)
        b->list[n++] = b->queue[i];
    for (uint64_t g = b->cursor; n < b->global_batch; g++)
        b->list[n++] = g;
}

double balance_makespan_s(const balance *b, const int *share) {
    double m = 0;
    for (int r = 0; r < b->world; r++) {
        if (!(b->speed[r] > 0)) return 0;
        double t = rank_time(b, r, share[r]);
        if (t > m) m = t;
    }
    return m;
}

static const char *host_of(const char *hosts, int host_max, int r) {
    return hosts ? hosts + (size_t)r * host_max : "?";
}

// "a/b/c" of n ints (xi) or of n doubles (xd, %.3g) into buf, "/..." when it does not fit
static void join(char *buf, size_t cap, const int *xi, const double *xd, int n) {
    size_t at = 0;
    buf[0] = 0;
    for (int r = 0; r < n && at + 24 < cap; r++)
        at += xi ? (size_t)snprintf(buf + at, cap - at, "%s%d", r ? "/" : "", xi[r])
                 : (size_t)snprintf(buf + at, cap - at, "%s%.3g", r ? "/" : "", xd[r]);
    if (n > 0 && at + 24 >= cap) snprintf(buf + at, cap - at, "/...");
}

int balance_commit(balance *b, const double *done, const double *fb, const double *fixed,
                   const double *late, int measure, int step, int verbose, const char *hosts,
                   int host_max) {
    int W = b->world, used = 0, nq = 0;
    // the fresh samples of this step are consumed whatever happened to them
    b->cursor += (uint64_t)(b->global_batch - b->n_queue);
    // what a rank left undone goes back to the queue, in list order
    uint64_t *q = b->queue; // the old queue's samples are all in list already
    for (int r = 0; r < W; r++) {
        int d = (int)done[r];
        TS_ASSERT(d >= 0 && d <= b->share[r]);
        used += d;
        for (int i = b->offset[r] + d; i < b->offset[r] + b->share[r]; i++)
            q[nq++] = b->list[i];
        if (d < b->share[r]) {
            b->drops++;
            b->dropped += (uint64_t)(b->share[r] - d);
        }
    }
    b->n_queue = nq;
    int force = 0;
    for (int r = 0; r < W; r++) {
        b->late[r] = late[r] > 0 ? b->late[r] + 1 : 0;
        if (b->late[r] >= b->p.late_steps) force = 1;
    }
    if (measure) {
        double s = b->p.smoothing;
        for (int r = 0; r < W; r++) {
            if (!(done[r] > 0 && fb[r] > 0)) continue;
            double v = done[r] / fb[r], f = fixed[r] > 0 ? fixed[r] : 0;
            // a late rank's speed is taken as measured: it has changed
            if (b->speed[r] > 0 && !(late[r] > 0)) {
                v = s * b->speed[r] + (1 - s) * v;
                f = s * b->fixed[r] + (1 - s) * f;
            }
            b->speed[r] = v;
            b->fixed[r] = f;
        }
        b->measured++;
    }
    if (!b->p.on) return used;
    for (int r = 0; r < W; r++)
        if (!(b->speed[r] > 0)) return used; // not every rank measured yet
    int *opt = ts_malloc((size_t)W * sizeof(int), "balance shares");
    balance_optimal(W, b->global_batch, b->speed, b->fixed, opt);
    double now = balance_makespan_s(b, b->share), best = balance_makespan_s(b, opt);
    int differ = memcmp(opt, b->share, (size_t)W * sizeof(int)) != 0;
    if (differ && (force || now > best * (1 + b->p.threshold))) {
        // the first re-balance and the forced ones are logged; the others show in the metrics
        if (verbose && (b->rebalances == 0 || force)) {
            char sh[256], was[256], sp[256];
            join(sh, sizeof sh, opt, NULL, W);
            join(was, sizeof was, b->share, NULL, W);
            join(sp, sizeof sp, NULL, b->speed, W);
            log_info("balance: step %d: shares %s (were %s) for speeds %s samples/s: expected "
                     "step %.0f ms (%.0f ms with the old shares)%s",
                     step, sh, was, sp, best * 1e3, now * 1e3,
                     force ? "; a rank was late repeatedly" : "");
        }
        balance_set_shares(b, opt);
        b->rebalances++;
        if (force) memset(b->late, 0, (size_t)W * sizeof(int));
    }
    // a rank that sets the pace with the one sequence every rank keeps is too slow to help
    int slow = -1;
    double worst = 0;
    for (int r = 0; r < W; r++) {
        double t = rank_time(b, r, b->share[r]);
        if (t > worst) worst = t, slow = r;
    }
    if (slow >= 0 && b->share[slow] > 1) slow = -1;
    if (slow >= 0 && W > 1 && b->measured >= 3) {
        // the others' time with the slow rank's sequence shared among them
        double others = 0;
        for (int r = 0; r < W; r++)
            if (r != slow && rank_time(b, r, b->share[r]) > others)
                others = rank_time(b, r, b->share[r]);
        if (!(worst > others * 1.1)) slow = -1;
        // said once, when it has held for three steps in a row
        if (slow >= 0 && slow == b->slow_rank && ++b->slow_steps == 3 && verbose)
            log_warn("balance: rank %d (host %s) is too slow to help: its one sequence per step "
                     "takes %.0f ms, the other ranks' whole shares %.0f ms; every step waits for "
                     "it (remove the host, or use diloco.inner_steps and balance.policy = drop)",
                     slow, host_of(hosts, host_max, slow), worst * 1e3, others * 1e3);
    }
    if (slow != b->slow_rank) b->slow_steps = slow >= 0; // the first step of a streak
    b->slow_rank = slow;
    free(opt);
    return used;
}

uint64_t balance_digest(const balance *b) {
    XXH64_state_t *h = XXH64_createState();
    TS_ASSERT(h);
    XXH64_reset(h, 0);
    XXH64_update(h, b->share, (size_t)b->world * sizeof(int));
    XXH64_update(h, &b->cursor, sizeof b->cursor);
    XXH64_update(h, &b->n_queue, sizeof b->n_queue);
    XXH64_update(h, b->queue, (size_t)b->n_queue * sizeof(uint64_t));
    uint64_t d = XXH64_digest(h);
    XXH64_freeState(h);
    return d;
}

int balance_parse_speeds(const char *text, int world, double *out, int *n_out) {
    *n_out = 0;
    const char *p = text;
    while (*p == ' ')
        p++;
    if (!*p) return 0;
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v > 0) || !isfinite(v)) {
            *n_out = -1;
            return -1;
        }
        if (n < world) out[n] = v;
        n++;
        p = end;
        while (*p == ' ')
            p++;
        if (!*p) break;
        if (*p != ',') {
            *n_out = -1;
            return -1;
        }
        p++;
    }
    *n_out = n;
    return n == world ? 1 : -1;
}
