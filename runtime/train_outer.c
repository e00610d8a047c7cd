// train_outer.c — local SGD (DiLoCo mode, diloco.inner_steps > 0) and its streaming form.
//
// Every rank takes inner optimizer steps on its own share of each global batch, with its own
// inner optimizer state and no gradient traffic. The shared parameters (the anchor: what every
// rank held after the last sync) move only at syncs: each rank's pseudo-gradient, anchor minus
// its parameters now, weighted by its share of the global batch (share / global_batch: the
// weights sum to 1), goes through the gradient codec, whose sum over ranks is the averaged
// pseudo-gradient D; the outer optimizer, SGD with (Nesterov) momentum mu and learning rate
// lr_o, updates the anchor:
//
//     buf = mu * buf + D;   d = nesterov ? D + mu * buf : buf;   anchor -= lr_o * d
//
// and every rank continues from the new anchor. With lr_o = 1 and mu = 0 the new anchor is the
// samples-weighted mean of the ranks' parameters; with one inner step and inner SGD that is
// plain data parallelism (tests/mpi/diloco.sh checks it).
//
// Without streaming (diloco.fragments = 1) the whole parameter buffer is synced after every
// inner_steps-th step, the collective waited for at once. Streaming (fragments F > 1): the
// buffer is cut at tensor boundaries into F fragments of about equal size; fragment f is synced
// after the steps k with k = f * P (mod inner_steps), P = inner_steps / F the fragment period,
// and its collective runs while the next P inner steps compute (polled from the backward pass);
// its result is applied P steps later, when the local value of the fragment keeps the weight
// diloco.mix and the new anchor the rest. The run's last step (and a planned stop) syncs every
// fragment at once, so the run ends with every rank holding the anchor.
//
// Checkpoints (train_ckpt.c) hold the anchor as the weights and, per rank, what local SGD adds:
// the inner optimizer's moments and step count, the outer momentum (rank 0), and with streaming
// the rank's own parameters and the fragment in flight (completed first; applied on schedule
// after a resume). See docs/compression.md.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/train_internal.h"

// ---------------------------------------------------------------------------------------------
// set-up

// fragments: contiguous runs of whole tensors of about n / F values each
static void outer_fragments(train_outer *o, const model *m, int F) {
    o->n_frag = F;
    o->frag_first = ts_calloc((size_t)F, sizeof(size_t), "fragments");
    o->frag_count = ts_calloc((size_t)F, sizeof(size_t), "fragments");
    int t = 0;
    for (int f = 0; f < F; f++) {
        size_t first = t < m->n_tensors ? m->tensors[t].offset : m->n_params;
        size_t goal = (size_t)((double)m->n_params * (f + 1) / F);
        size_t end = first;
        // at least one tensor per fragment while tensors are left; the last takes the rest
        while (t < m->n_tensors && (end == first || f == F - 1 ||
                                    m->tensors[t].offset + m->tensors[t].numel / 2 < goal)) {
            end = m->tensors[t].offset + m->tensors[t].numel;
            t++;
        }
        o->frag_first[f] = first;
        o->frag_count[f] = end - first;
    }
}

// each fragment's buckets: runs of whole tensors of at most `per` values (a larger tensor is a
// bucket of its own), at most COMM_MAX_INFLIGHT per fragment
static void outer_buckets(train_outer *o, const model *m, size_t per) {
    o->bucket_lo = ts_calloc((size_t)o->n_frag + 1, sizeof(int), "sync buckets");
    size_t cap = (size_t)m->n_tensors + 1;
    o->buckets = ts_calloc(cap, sizeof(train_outer_bucket), "sync buckets");
    int nb = 0, t = 0;
    for (int f = 0; f < o->n_frag; f++) {
        o->bucket_lo[f] = nb;
        size_t end = o->frag_first[f] + o->frag_count[f];
        size_t room = per;
        if (o->frag_count[f] / room + 1 > COMM_MAX_INFLIGHT)
            room = o->frag_count[f] / COMM_MAX_INFLIGHT + 1;
        while (t < m->n_tensors && m->tensors[t].offset < end) {
            size_t first = m->tensors[t].offset, last = first + m->tensors[t].numel;
            t++;
            while (t < m->n_tensors && m->tensors[t].offset < end &&
                   m->tensors[t].offset + m->tensors[t].numel - first <= room) {
                last = m->tensors[t].offset + m->tensors[t].numel;
                t++;
            }
            o->buckets[nb].first = first;
            o->buckets[nb].count = last - first;
            nb++;
        }
    }
    o->bucket_lo[o->n_frag] = nb;
    o->n_buckets = nb;
}

ts_status train_outer_create(trainer *tr) {
    train_outer *o = &tr->outer;
    const tessera_config *cfg = &tr->cfg;
    memset(o, 0, sizeof *o);
    o->inflight = -1;
    if (cfg->diloco.inner_steps <= 0) return TS_OK;
    const model *m = &tr->model;
    o->on = 1;
    o->H = cfg->diloco.inner_steps;
    int F = cfg->diloco.fragments;
    if (F > m->n_tensors) F = m->n_tensors;
    o->period = o->H / F;
    o->n = m->n_params;
    o->weight = (float)((double)tr->share / cfg->train.global_batch);
    o->win_mine = ts_calloc((size_t)F, sizeof(double), "local SGD windows");
    o->win_all = ts_calloc((size_t)F, sizeof(double), "local SGD windows");
    o->anchor = ts_malloc(o->n * sizeof(float), "local SGD anchor");
    o->momentum = ts_calloc(o->n, sizeof(float), "outer momentum");
    o->delta = ts_calloc(o->n, sizeof(float), "pseudo-gradients");
    o->local = ts_malloc(o->n * sizeof(float), "local parameters");
    tr->be->to_host(tr->be, o->anchor, m->master, o->n * sizeof(float));
    outer_fragments(o, m, F);
    outer_buckets(o, m, (size_t)(cfg->comm.bucket_mb * 1048576.0 / sizeof(float)));
    log_info("local SGD: %d inner steps per sync, outer SGD lr %g, momentum %g%s; %s", o->H,
             cfg->diloco.outer_lr, cfg->diloco.outer_momentum,
             cfg->diloco.nesterov ? " (Nesterov)" : "",
             F > 1 ? "streaming" : "every parameter synced at once");
    if (F > 1)
        log_info("streaming: %d fragments, one synced every %d inner steps, applied %d steps "
                 "later (local value kept with weight %g)",
                 F, o->period, o->period, cfg->diloco.mix);
    return TS_OK;
}

void train_outer_destroy(trainer *tr) {
    train_outer *o = &tr->outer;
    for (int b = 0; o->buckets && b < o->n_buckets; b++)
        codec_bucket_free(&o->buckets[b].xfer);
    free(o->buckets);
    free(o->bucket_lo);
    free(o->frag_first);
    free(o->frag_count);
    free(o->win_mine);
    free(o->win_all);
    free(o->anchor);
    free(o->momentum);
    free(o->delta);
    free(o->local);
    memset(o, 0, sizeof *o);
}

// ---------------------------------------------------------------------------------------------
// a fragment's sync

// this rank's pseudo-gradient of fragment f into delta, its collectives started
static ts_status outer_start(trainer *tr, int f) {
    train_outer *o = &tr->outer;
    size_t first = o->frag_first[f], count = o->frag_count[f];
    tr->be->to_host(tr->be, o->local + first, tr->model.master + first, count * sizeof(float));
    // the rank's share of the samples trained since this fragment's last sync (shares follow
    // speed and late ranks give samples back: the weights still sum to 1 over ranks)
    const float wgt = o->win_all[f] > 0 ? (float)(o->win_mine[f] / o->win_all[f]) : o->weight;
    o->win_mine[f] = o->win_all[f] = 0;
    for (size_t i = first; i < first + count; i++) {
        float d = o->anchor[i] - o->local[i];
        o->delta[i] = d * wgt;
    }
    o->inflight = f;
    o->inflight_done = 0;
    o->t_start = ts_now();
    for (int b = o->bucket_lo[f]; b < o->bucket_lo[f + 1]; b++) {
        train_outer_bucket *k = &o->buckets[b];
        k->done = 0;
        TS_CHECK(codec_bucket_start(tr->codec, tr->comm, &k->xfer, k->first, o->delta + k->first,
                                    k->count, 0));
    }
    return TS_OK;
}

ts_status train_outer_poll(trainer *tr) {
    train_outer *o = &tr->outer;
    if (!o->on || o->inflight < 0 || o->inflight_done) return TS_OK;
    int all = 1;
    for (int b = o->bucket_lo[o->inflight]; b < o->bucket_lo[o->inflight + 1]; b++) {
        train_outer_bucket *k = &o->buckets[b];
        if (!k->done) TS_CHECK(codec_bucket_test(tr->codec, tr->comm, &k->xfer, &k->done));
        all &= k->done;
    }
    if (all) {
        o->inflight_done = 1;
        o->t_done = ts_now();
    }
    return TS_OK;
}

// wait until the fragment in flight has arrived (delta holds the averaged pseudo-gradient)
static ts_status outer_wait(trainer *tr) {
    train_outer *o = &tr->outer;
    if (o->inflight < 0 || o->inflight_done) return TS_OK;
    for (int b = o->bucket_lo[o->inflight]; b < o->bucket_lo[o->inflight + 1]; b++) {
        train_outer_bucket *k = &o->buckets[b];
        if (!k->done) TS_CHECK(codec_bucket_wait(tr->codec, tr->comm, &k->xfer));
        k->done = 1;
    }
    o->inflight_done = 1;
    o->t_done = ts_now();
    return TS_OK;
}

// the outer step on the fragment in flight (arrived), and the rank's parameters of it moved to
// the new anchor (keeping `mix` of their value now)
static void outer_apply(trainer *tr, double mix) {
    train_outer *o = &tr->outer;
    const tessera_config *cfg = &tr->cfg;
    int f = o->inflight;
    size_t first = o->frag_first[f], count = o->frag_count[f], end = first + count;
    o->inflight = -1;
    o->syncs++;
    int finite = 1;
    for (size_t i = first; i < end && finite; i++)
        finite = isfinite(o->delta[i]);
    if (finite) {
        const float mu = (float)cfg->diloco.outer_momentum, lr = (float)cfg->diloco.outer_lr;
        const int nesterov = cfg->diloco.nesterov;
        for (size_t i = first; i < end; i++) {
            float d = o->delta[i];
            float buf = mu * o->momentum[i];
            buf = buf + d;
            o->momentum[i] = buf;
            float step = buf;
            if (nesterov) {
                step = mu * buf;
                step = d + step;
            }
            step = lr * step;
            o->anchor[i] = o->anchor[i] - step;
        }
    } else {
        o->skipped++;
        log_warn("local SGD: the averaged pseudo-gradient of fragment %d is not finite (a rank "
                 "diverged): outer step skipped, every rank back at the anchor",
                 f);
        mix = 0;
    }
    if (mix == 0) {
        memcpy(o->local + first, o->anchor + first, count * sizeof(float));
    } else {
        // the rank's value now (it has gone on training since the sync started)
        tr->be->to_host(tr->be, o->local + first, tr->model.master + first, count * sizeof(float));
        const float keep = (float)mix, take = (float)(1.0 - mix);
        for (size_t i = first; i < end; i++) {
            float a = keep * o->local[i], b = take * o->anchor[i];
            o->local[i] = a + b;
        }
    }
    tr->be->to_device(tr->be, tr->model.master + first, o->local + first, count * sizeof(float));
    size_t psz = ts_dtype_size(tr->be->param_dtype);
    tr->be->params_from_master(tr->be, (char *)tr->model.params + first * psz,
                               tr->model.master + first, count);
}

// every fragment synced at once, the collectives waited for: every rank holds the anchor
static ts_status outer_sync_all(trainer *tr) {
    train_outer *o = &tr->outer;
    for (int f = 0; f < o->n_frag; f++) {
        TS_CHECK(outer_start(tr, f));
        TS_CHECK(outer_wait(tr));
        outer_apply(tr, 0);
    }
    return TS_OK;
}

ts_status train_outer_after_step(trainer *tr, int k, int final, double *comm_s) {
    train_outer *o = &tr->outer;
    *comm_s = 0;
    if (!o->on) return TS_OK;
    double t0 = ts_now();
    if (o->n_frag == 1) {
        if (k % o->H == 0 || final) {
            TS_CHECK(outer_start(tr, 0));
            TS_CHECK(outer_wait(tr));
            outer_apply(tr, 0);
        }
    } else {
        // the fragment in flight lands one period after it left (or now, at the end)
        if (o->inflight >= 0 && (final || k - o->inflight_step >= o->period)) {
            TS_CHECK(outer_wait(tr));
            outer_apply(tr, final ? 0 : tr->cfg.diloco.mix);
        }
        if (final) {
            TS_CHECK(outer_sync_all(tr));
        } else if (k % o->period == 0) {
            TS_CHECK(outer_start(tr, (k % o->H) / o->period));
            o->inflight_step = k;
        }
    }
    double waited = ts_now() - t0;
    tr->t_wait += waited;
    *comm_s = waited;
    return TS_OK;
}

void train_outer_count(trainer *tr, int mine, int all) {
    train_outer *o = &tr->outer;
    if (!o->on) return;
    for (int f = 0; f < o->n_frag; f++) {
        o->win_mine[f] += mine;
        o->win_all[f] += all;
    }
}

// ---------------------------------------------------------------------------------------------
// validation on the anchor

void train_outer_enter_anchor(trainer *tr) {
    train_outer *o = &tr->outer;
    if (!o->on) return;
    if (!o->saved) o->saved = ts_malloc(o->n * sizeof(float), "local parameters");
    tr->be->to_host(tr->be, o->saved, tr->model.master, o->n * sizeof(float));
    tr->be->to_device(tr->be, tr->model.master, o->anchor, o->n * sizeof(float));
    model_sync_params(&tr->model);
}

void train_outer_leave_anchor(trainer *tr) {
    train_outer *o = &tr->outer;
    if (!o->on) return;
    tr->be->to_device(tr->be, tr->model.master, o->saved, o->n * sizeof(float));
    model_sync_params(&tr->model);
}

// ---------------------------------------------------------------------------------------------
// checkpoint state: per rank, a blob of named arrays (collectives/codec.h's form)

#define OUTER_STATE_NAME "diloco"

ts_status train_outer_pack(trainer *tr, unsigned char **blob, size_t *len) {
    train_outer *o = &tr->outer;
    *blob = NULL;
    *len = 0;
    TS_CHECK(outer_wait(tr)); // the fragment in flight is part of the state: completed first
    size_t n = o->n;
    float *buf = ts_malloc(n * sizeof(float), "local SGD state");
    const optim_state *opt = &tr->opt;
    int32_t t = opt->t;
    ts_status st = codec_state_append(blob, len, "t", &t, sizeof t);
    tr->be->to_host(tr->be, buf, opt->m, n * sizeof(float));
    if (st == TS_OK) st = codec_state_append(blob, len, "m", buf, n * sizeof(float));
    tr->be->to_host(tr->be, buf, opt->v, n * sizeof(float));
    if (st == TS_OK) st = codec_state_append(blob, len, "v", buf, n * sizeof(float));
    if (st == TS_OK && tr->comm->rank == 0) {
        int32_t frags = o->n_frag;
        st = codec_state_append(blob, len, "momentum", o->momentum, n * sizeof(float));
        if (st == TS_OK) st = codec_state_append(blob, len, "fragments", &frags, sizeof frags);
    }
    if (st == TS_OK && o->n_frag > 1) {
        tr->be->to_host(tr->be, buf, tr->model.master, n * sizeof(float));
        st = codec_state_append(blob, len, "local", buf, n * sizeof(float));
        // samples since each fragment's sync: this rank's, then everyone's
        double *win = ts_malloc(2 * (size_t)o->n_frag * sizeof(double), "local SGD windows");
        memcpy(win, o->win_mine, (size_t)o->n_frag * sizeof(double));
        memcpy(win + o->n_frag, o->win_all, (size_t)o->n_frag * sizeof(double));
        if (st == TS_OK)
            st = codec_state_append(blob, len, "window", win,
                                    2 * (size_t)o->n_frag * sizeof(double));
        free(win);
        if (st == TS_OK && tr->comm->rank == 0) {
            int32_t flight[2] = {o->inflight, o->inflight_step};
            st = codec_state_append(blob, len, "inflight", flight, sizeof flight);
            if (st == TS_OK && o->inflight >= 0)
                st = codec_state_append(blob, len, "pending", o->delta + o->frag_first[o->inflight],
                                        o->frag_count[o->inflight] * sizeof(float));
        }
    }
    free(buf);
    if (st != TS_OK) {
        free(*blob);
        *blob = NULL;
        *len = 0;
    }
    return st;
}

const char *train_outer_state_name(void) { return OUTER_STATE_NAME; }

// one array of a blob, of exactly `bytes` bytes (0: missing or of another length, said)
static int outer_get(const unsigned char *blob, size_t len, const char *name, void *out,
                     size_t bytes, const char *what) {
    size_t pos = 0, got;
    char at[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data;
    int k;
    while ((k = codec_state_next(blob, len, &pos, at, &data, &got, what)) == 1) {
        if (strcmp(at, name) != 0) continue;
        if (got != bytes) {
            log_error("%s: local SGD state array '%s' holds %zu bytes, expected %zu", what, name,
                      got, bytes);
            return 0;
        }
        memcpy(out, data, bytes);
        return 1;
    }
    if (k == 0) log_error("%s: local SGD state array '%s' is missing", what, name);
    return 0;
}

// whether a blob holds an array of that name
static int outer_has(const unsigned char *blob, size_t len, const char *name) {
    size_t pos = 0, got;
    char at[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data;
    while (codec_state_next(blob, len, &pos, at, &data, &got, "local SGD state") == 1)
        if (strcmp(at, name) == 0) return 1;
    return 0;
}

ts_status train_outer_unpack(trainer *tr, const unsigned char *mine, size_t mine_len,
                             const unsigned char *first, size_t first_len, int same_world,
                             const char *what) {
    train_outer *o = &tr->outer;
    size_t n = o->n;
    float *buf = ts_malloc(n * sizeof(float), "local SGD state");
    int32_t t = 0, flight[2] = {-1, 0};
    int ok = outer_get(mine, mine_len, "t", &t, sizeof t, what) && t >= 0;
    if (ok) ok = outer_get(mine, mine_len, "m", buf, n * sizeof(float), what);
    if (ok) tr->be->to_device(tr->be, tr->opt.m, buf, n * sizeof(float));
    if (ok) ok = outer_get(mine, mine_len, "v", buf, n * sizeof(float), what);
    if (ok) tr->be->to_device(tr->be, tr->opt.v, buf, n * sizeof(float));
    if (ok) ok = outer_get(first, first_len, "momentum", o->momentum, n * sizeof(float), what);
    // the fragments it was written with (1 when not recorded): another cut of the parameters
    // makes its fragment in flight and the ranks' own parameters meaningless here
    int32_t frags = 1;
    if (ok && outer_has(first, first_len, "fragments"))
        ok = outer_get(first, first_len, "fragments", &frags, sizeof frags, what);
    if (ok && frags != o->n_frag && o->n_frag > 1 && tr->comm->rank == 0)
        log_warn("%s: local SGD state of %d fragment%s, this run cuts %d: every rank continues "
                 "from the anchor (the inner steps since the last syncs are dropped)",
                 what, frags, frags == 1 ? "" : "s", o->n_frag);
    else if (ok && frags != o->n_frag && frags > 1 && tr->comm->rank == 0)
        log_warn("%s: local SGD state of %d fragments, this run syncs everything at once: "
                 "every rank continues from the anchor (the inner steps since the last syncs "
                 "are dropped)",
                 what, frags);
    if (ok && o->n_frag > 1 && frags == o->n_frag) {
        ok = outer_get(first, first_len, "inflight", flight, sizeof flight, what);
        if (ok && (flight[0] < -1 || flight[0] >= o->n_frag)) {
            log_error("%s: local SGD state: fragment %d in flight, expected -1 to %d", what,
                      flight[0], o->n_frag - 1);
            ok = 0;
        }
        if (ok && flight[0] >= 0 &&
            (flight[1] > tr->start_step || flight[1] < tr->start_step - o->period)) {
            log_error("%s: local SGD state: a fragment in flight since step %d, expected a step "
                      "from %d to %d",
                      what, flight[1], tr->start_step - o->period, tr->start_step);
            ok = 0;
        }
        if (ok && flight[0] >= 0)
            ok = outer_get(first, first_len, "pending", o->delta + o->frag_first[flight[0]],
                           o->frag_count[flight[0]] * sizeof(float), what);
        if (ok && same_world) {
            ok = outer_get(mine, mine_len, "local", buf, n * sizeof(float), what);
            if (ok) {
                tr->be->to_device(tr->be, tr->model.master, buf, n * sizeof(float));
                model_sync_params(&tr->model);
            }
            // checkpoints from before balancing have none: the weights then count the samples
            // trained since the resume
            size_t wb = 2 * (size_t)o->n_frag * sizeof(double);
            double *win = ts_malloc(wb, "local SGD windows");
            if (ok && outer_has(mine, mine_len, "window")) {
                ok = outer_get(mine, mine_len, "window", win, wb, what);
                for (int f = 0; ok && f < 2 * o->n_frag; f++)
                    if (!(win[f] >= 0 && win[f] <= 1e18) ||
                        (f < o->n_frag && win[f] > win[f + o->n_frag])) {
                        log_error("%s: local SGD state array 'window' holds %g at %d, expected "
                                  "sample counts (this rank's at most everyone's)",
                                  what, win[f], f);
                        ok = 0;
                    }
                if (ok) {
                    memcpy(o->win_mine, win, (size_t)o->n_frag * sizeof(double));
                    memcpy(o->win_all, win + o->n_frag, (size_t)o->n_frag * sizeof(double));
                }
            }
            free(win);
        }
    }
    free(buf);
    if (!ok) return TS_ERR_INPUT;
    tr->opt.t = t;
    o->inflight = flight[0];
    o->inflight_step = flight[1];
    o->inflight_done = flight[0] >= 0;
    return TS_OK;
}
