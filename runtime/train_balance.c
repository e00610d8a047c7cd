// train_balance.c — the balancing state of a run (runtime/balance.h): set up from the config,
// saved in checkpoints (group /balance: the sample queue, the speeds and shares; the cursor is
// the attribute next_sample) and restored on resume — the queue always (no sample given back is
// lost), the speeds and shares at the same world size (another world size measures again).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/train_internal.h"

#define BALANCE_STATE_NAME "balance"

ts_status train_balance_setup(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    balance_params p = {
        .on = cfg->balance.on,
        .policy = strcmp(cfg->balance.policy, "drop") == 0 ? BALANCE_DROP : BALANCE_WAIT,
        .threshold = cfg->balance.threshold,
        .smoothing = cfg->balance.smoothing,
        .deadline = cfg->balance.deadline,
        .late_steps = cfg->balance.late_steps,
        .declared = NULL,
    };
    double *declared = ts_calloc((size_t)c->size, sizeof(double), "declared speeds");
    int n = 0, got = balance_parse_speeds(cfg->balance.speeds, c->size, declared, &n);
    if (got == 1)
        p.declared = declared;
    else if (got < 0 && c->rank == 0) // the config check has refused anything but a count
        log_warn("[balance] speeds: %d speeds for %d ranks: ignored (equal shares%s)", n, c->size,
                 cfg->balance.on ? " until the speeds are measured" : "");
    balance_init(&tr->bal, &p, c->size, cfg->train.global_batch, 0);
    free(declared);
    tr->share = tr->bal.share[c->rank];
    tr->offset = tr->bal.offset[c->rank];
    // the shares move: a rank may get any number of sequences, always in micro-batches of at
    // most train.micro_batch (what sets its memory)
    int most = cfg->balance.on ? cfg->train.global_batch - c->size + 1 : tr->share;
    if (!cfg->balance.on)
        for (int r = 0; r < c->size; r++)
            if (tr->bal.share[r] > most) most = tr->bal.share[r];
    tr->micro = most < cfg->train.micro_batch ? most : cfg->train.micro_batch;
    return TS_OK;
}

// the state as a blob of named arrays (collectives/codec.h's form)
static ts_status balance_pack(const balance *b, unsigned char **blob, size_t *len) {
    *blob = NULL;
    *len = 0;
    size_t W = (size_t)b->world;
    int32_t *share = ts_malloc(W * sizeof(int32_t), "balance state");
    for (size_t r = 0; r < W; r++)
        share[r] = b->share[r];
    ts_status st =
        codec_state_append(blob, len, "queue", b->queue, (size_t)b->n_queue * sizeof(uint64_t));
    if (st == TS_OK) st = codec_state_append(blob, len, "share", share, W * sizeof(int32_t));
    if (st == TS_OK) st = codec_state_append(blob, len, "speed", b->speed, W * sizeof(double));
    if (st == TS_OK) st = codec_state_append(blob, len, "fixed", b->fixed, W * sizeof(double));
    free(share);
    if (st != TS_OK) {
        free(*blob);
        *blob = NULL;
        *len = 0;
    }
    return st;
}

void train_balance_snapshot(trainer *tr) {
    ckpt_codec_state *s = &tr->writer.balance;
    ckpt_codec_state_free(s);
    unsigned char *blob;
    size_t len;
    if (balance_pack(&tr->bal, &blob, &len) != TS_OK) return; // logged; saved without
    snprintf(s->name, sizeof s->name, "%s", BALANCE_STATE_NAME);
    s->world = 1; // one blob: every rank holds the same state
    s->all = blob;
    s->lens = ts_malloc(sizeof(size_t), "balance state");
    s->lens[0] = len;
}

// one array of the blob: its bytes and where (NULL: missing)
static const unsigned char *balance_get(const unsigned char *blob, size_t len, const char *name,
                                        size_t *bytes, const char *what, int *bad) {
    size_t pos = 0;
    char at[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data;
    int k;
    while ((k = codec_state_next(blob, len, &pos, at, &data, bytes, what)) == 1)
        if (strcmp(at, name) == 0) return data;
    if (k < 0) *bad = 1;
    return NULL;
}

ts_status train_balance_check(const ckpt_codec_state *s, uint64_t next_sample, int saved_world,
                              int world, int global_batch, uint64_t *queue, int *n_queue,
                              int *share, double *speed, double *fixed, int *same,
                              const char *what) {
    *n_queue = 0;
    *same = 0;
    if (!s->name[0]) return TS_OK; // written before balancing: nothing given back
    if (strcmp(s->name, BALANCE_STATE_NAME) != 0 || s->world != 1) {
        log_error("%s: /balance holds '%s' of %d ranks, expected the state '%s' of one", what,
                  s->name, s->world, BALANCE_STATE_NAME);
        return TS_ERR_INPUT;
    }
    const unsigned char *blob = s->all;
    size_t len = s->lens[0], bytes = 0;
    int bad = 0;
    const unsigned char *q = balance_get(blob, len, "queue", &bytes, what, &bad);
    if (!q || bytes % sizeof(uint64_t) || bytes / sizeof(uint64_t) > (size_t)global_batch) {
        if (!bad)
            log_error("%s: /balance: array 'queue' %s, expected at most %d sample indices", what,
                      q ? "has a bad size" : "is missing", global_batch);
        return TS_ERR_INPUT;
    }
    int nq = (int)(bytes / sizeof(uint64_t));
    memcpy(queue, q, bytes);
    for (int i = 0; i < nq; i++) {
        // samples given back were taken from the stream already, each once, in order
        if (queue[i] >= next_sample || (i > 0 && queue[i] <= queue[i - 1])) {
            log_error("%s: /balance: queue[%d] = %llu, expected increasing sample indices below "
                      "next_sample = %llu",
                      what, i, (unsigned long long)queue[i], (unsigned long long)next_sample);
            return TS_ERR_INPUT;
        }
    }
    *n_queue = nq;
    if (saved_world != world) return TS_OK;
    const unsigned char *sh = balance_get(blob, len, "share", &bytes, what, &bad);
    size_t sb = 0, fb = 0;
    const unsigned char *sp = balance_get(blob, len, "speed", &sb, what, &bad);
    const unsigned char *fx = balance_get(blob, len, "fixed", &fb, what, &bad);
    size_t W = (size_t)world;
    if (!sh || !sp || !fx || bytes != W * sizeof(int32_t) || sb != W * sizeof(double) ||
        fb != W * sizeof(double)) {
        if (!bad)
            log_error("%s: /balance: arrays 'share', 'speed' and 'fixed' of %d entries expected",
                      what, world);
        return TS_ERR_INPUT;
    }
    int64_t sum = 0;
    for (size_t r = 0; r < W; r++) {
        int32_t x;
        memcpy(&x, sh + r * sizeof x, sizeof x);
        memcpy(&speed[r], sp + r * sizeof(double), sizeof(double));
        memcpy(&fixed[r], fx + r * sizeof(double), sizeof(double));
        // a speed is 0 (not measured) or a plausible samples/s: a tiny one would make a share's
        // time overflow and send every sequence elsewhere
        if (x < 1 || x > global_batch ||
            !(speed[r] == 0 || (speed[r] >= 1e-6 && speed[r] < 1e12)) ||
            !(fixed[r] >= 0 && fixed[r] < 1e6)) {
            log_error("%s: /balance: rank %zu has share %d, speed %g, fixed %g; expected a share "
                      "of 1 to %d, a speed of 0 or 1e-6 to 1e12 samples/s and a fixed time of 0 "
                      "to 1e6 s",
                      what, r, x, speed[r], fixed[r], global_batch);
            return TS_ERR_INPUT;
        }
        share[r] = x;
        sum += x;
    }
    if (sum != global_batch) {
        log_error("%s: /balance: the shares sum to %lld, expected global_batch = %d", what,
                  (long long)sum, global_batch);
        return TS_ERR_INPUT;
    }
    *same = 1;
    return TS_OK;
}

ts_status train_balance_restore(trainer *tr, int holder, const ckpt_codec_state *s,
                                uint64_t next_sample, int saved_world, const char *what) {
    comm *c = tr->comm;
    balance *b = &tr->bal;
    int W = c->size, GB = b->global_batch;
    // head: status, queue length, same world, and the cursor
    int64_t head[4] = {TS_OK, 0, 0, (int64_t)next_sample};
    int *share = ts_calloc((size_t)W, sizeof(int), "balance state");
    double *tab = ts_calloc(2 * (size_t)W, sizeof(double), "balance state");
    if (c->rank == holder) {
        int nq = 0, same = 0;
        ts_status st = train_balance_check(s, next_sample, saved_world, W, GB, b->queue, &nq, share,
                                           tab, tab + W, &same, what);
        head[0] = st;
        head[1] = nq;
        head[2] = same;
    }
    ts_status st = c->broadcast(c, head, sizeof head, holder);
    if (st == TS_OK) st = train_agree(c, (ts_status)head[0]);
    if (st == TS_OK) st = c->broadcast(c, b->queue, (size_t)GB * sizeof(uint64_t), holder);
    if (st == TS_OK) st = c->broadcast(c, share, (size_t)W * sizeof(int), holder);
    if (st == TS_OK) st = c->broadcast(c, tab, 2 * (size_t)W * sizeof(double), holder);
    if (st == TS_OK) {
        b->cursor = (uint64_t)head[3];
        b->n_queue = (int)head[1];
        if (head[2] && b->p.on) {
            balance_set_shares(b, share);
            memcpy(b->speed, tab, (size_t)W * sizeof(double));
            memcpy(b->fixed, tab + W, (size_t)W * sizeof(double));
        }
        tr->share = b->share[c->rank];
        tr->offset = b->offset[c->rank];
        if (c->rank == 0 && b->p.on)
            log_info("balance: %s (%d samples given back wait in the queue)",
                     head[2] ? "speeds and shares of the checkpoint kept"
                             : "another world size: speeds measured again from equal shares",
                     b->n_queue);
    }
    free(share);
    free(tab);
    return st;
}
