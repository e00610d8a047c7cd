// train_step.c — one training step and the validation pass.
//
// One step: every rank runs forward/backward over its share of the global batch (in
// micro-batches), with the loss scaled by 1/(global_batch*T) so the summed gradient is the mean
// over the global batch's tokens (design invariant 2); gradients are summed over ranks; all
// ranks then hold identical gradients, so the finite-check, the clipping and the AdamW update
// are the same everywhere and parameters stay in sync without a broadcast.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fault.h"
#include "runtime/train_internal.h"

// split (B, T+1) sequences into inputs and targets
static void split_batch(trainer *tr, int B) {
    int T = tr->cfg.model.seq_len;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            tr->inputs[b * T + t] = tr->seq_buf[b * (T + 1) + t];
            tr->targets[b * T + t] = tr->seq_buf[b * (T + 1) + t + 1];
        }
}

static int g_fault_step; // the step in progress, for the "inside the reduction" fault point

static ts_status train_grads_ready(void *ctx, size_t ready_from) {
    trainer *tr = ctx;
    fault_point("inside", g_fault_step);
    double t0 = ts_now();
    ts_status st = reducer_grads_ready(&tr->red, ready_from);
    tr->hook_s += ts_now() - t0;
    return st;
}

// local SGD: no gradient leaves the rank; a parameter sync in flight advances during backward
static ts_status train_outer_ready(void *ctx, size_t ready_from) {
    (void)ready_from;
    trainer *tr = ctx;
    fault_point("inside", g_fault_step);
    double t0 = ts_now();
    ts_status st = train_outer_poll(tr);
    tr->hook_s += ts_now() - t0;
    return st;
}

// What a rank measured of its step, for the step's collective: one-hot slots of every rank's
// samples done, forward+backward seconds, other own work, and whether it was late.
typedef struct {
    int done;  // samples of its share it trained (all of them unless cut at the deadline)
    double fb; // forward+backward seconds (the hooks excluded)
    int late;  // passed the deadline
} train_measure;

// forward+backward over this rank's share of step `step` (summed token loss into *loss_sum);
// the last micro-step's backward hands each finished bucket to the reducer, which sums it over
// ranks while backward goes on (only the last micro-step communicates). Past the deadline
// (balance.deadline x the expected step time) the rank is late; with balance.policy = drop it
// stops before its next micro-batch (the first always runs) and the rest of its share goes back
// to the queue.
static ts_status train_accumulate(trainer *tr, int step, double *loss_sum, train_measure *ms) {
    const tessera_config *cfg = &tr->cfg;
    int T = cfg->model.seq_len;
    // local SGD: the rank's own mean; else a share of the global batch's mean, summed over ranks
    int local = tr->outer.on;
    real dloss = (real)(1.0 / ((double)(local ? tr->share : cfg->train.global_batch) * T));
    // no deadline: alone; on the first step of a process (it pays start-up costs the speeds do
    // not know); on the run's last step (nothing could take what it gave back); while this rank
    // writes a checkpoint in the background (its slowness is its own doing and passes)
    int busy = tr->ckpt_writer && ckpt_writer_busy(&tr->writer);
    double expected = balance_makespan_s(&tr->bal, tr->bal.share);
    double deadline = expected > 0 ? cfg->balance.deadline * expected : 0;
    if (deadline > 0 && deadline < expected + BALANCE_LATE_FLOOR_S)
        deadline = expected + BALANCE_LATE_FLOOR_S;
    if (tr->comm->size == 1 || step == tr->start_step || step + 1 == cfg->train.steps || busy)
        deadline = 0;
    int drop = tr->bal.p.policy == BALANCE_DROP;
    double t0 = ts_now();
    tr->hook_s = 0;
    memset(ms, 0, sizeof *ms);
    *loss_sum = 0;
    if (cfg->data.log_samples && !tr->samples) {
        // appended to by every run of this run directory (resumes included); each run starts
        // with "run <first step> <world size> <run id>" so the committed lineage can be told
        // apart (tests/ckpt/check_lineage.sh)
        char path[sizeof tr->run_dir + 48];
        snprintf(path, sizeof path, "%s/samples.rank-%d.txt", tr->run_dir, tr->comm->rank);
        tr->samples = fopen(path, "a");
        if (!tr->samples) {
            log_error("%s: cannot write: %s", path, strerror(errno));
            return TS_ERR_SYSTEM;
        }
        fprintf(tr->samples, "run %d %d %llu\n", tr->start_step, tr->comm->size,
                (unsigned long long)tr->run_id);
    }
    model_zero_grad(&tr->model);
    const uint64_t *mine = tr->bal.list + tr->offset;
    int done = 0, armed = 0;
    for (; done < tr->share; done += tr->micro) {
        if (done > 0 && deadline > 0 && ts_now() - t0 > deadline) {
            ms->late = 1;
            if (drop) break;
        }
        int B = tr->share - done < tr->micro ? tr->share - done : tr->micro;
        for (int b = 0; b < B; b++) {
            uint64_t g = mine[done + b];
            TS_CHECK(
                dataset_sample(&tr->train, (uint64_t)cfg->run.seed, g, tr->seq_buf + b * (T + 1)));
            if (tr->samples) fprintf(tr->samples, "%d %llu\n", step + 1, (unsigned long long)g);
        }
        split_batch(tr, B);
        *loss_sum += model_forward(&tr->model, tr->inputs, tr->targets, B, T, dloss);
        int last = done + tr->micro >= tr->share;
        if (local) {
            tr->model.grads_ready = train_outer_ready;
            tr->model.grads_ready_ctx = tr;
        } else if (last) {
            reducer_begin(&tr->red);
            armed = 1;
            tr->model.grads_ready = train_grads_ready;
            tr->model.grads_ready_ctx = tr;
        }
        ts_status st = model_backward(&tr->model);
        tr->model.grads_ready = NULL;
        TS_CHECK(st);
    }
    if (done > tr->share) done = tr->share;
    ms->done = done;
    if (!ms->late && deadline > 0 && ts_now() - t0 > deadline) ms->late = 1;
    if (tr->samples) {
        // the samples given back: trained by a later step (tests/ckpt/check_lineage.sh)
        for (int i = done; i < tr->share; i++)
            fprintf(tr->samples, "%d %llu dropped\n", step + 1, (unsigned long long)mine[i]);
        fflush(tr->samples); // the audit must outlive a crash (killed ranks too)
    }
    if (!local && !armed) {
        // cut short before the last micro-batch: the gradients so far go as they are
        reducer_begin(&tr->red);
        double th = ts_now();
        ts_status st = reducer_grads_ready(&tr->red, 0);
        tr->hook_s += ts_now() - th;
        TS_CHECK(st);
    }
    double t1 = ts_now();
    ms->fb = busy ? 0 : t1 - t0 - tr->hook_s; // 0: not a measurement of this rank's speed
    if (local) {
        tr->t_compute += t1 - t0;
        return TS_OK;
    }
    TS_CHECK(reducer_finish(&tr->red));
    double t2 = ts_now();
    tr->t_compute += t1 - t0;
    tr->t_wait += t2 - t1;
    if (tr->trace) {
        fprintf(tr->trace, "{\"step\": %d, \"backward_end\": %.6f, \"buckets\": [", step + 1,
                tr->red.t_backward_end - t0);
        for (int b = 0; b < tr->red.n_buckets; b++)
            fprintf(tr->trace, "%s[%.6f, %.6f]", b ? ", " : "", tr->red.buckets[b].t_start - t0,
                    tr->red.buckets[b].t_done - t0);
        fprintf(tr->trace, "]}\n");
    }
    return TS_OK;
}

// The step's small sum: the caller's head values (loss, ...) and, in one-hot slots, what every
// rank measured (design invariant 5: every rank then takes the same balancing decisions without
// another round trip); the balance state moves on (the queue, the estimates, the next shares).
static ts_status train_step_agree(trainer *tr, double *head, int n_head, const train_measure *ms,
                                  int step, train_step_result *res) {
    comm *c = tr->comm;
    int W = c->size, r = c->rank;
    size_t n = (size_t)n_head + 5 * (size_t)W;
    double *v = ts_calloc(n, sizeof(double), "step sums");
    memcpy(v, head, (size_t)n_head * sizeof(double));
    double *slot = v + n_head;
    slot[r] = ms->done;
    slot[W + r] = ms->fb;
    slot[2 * W + r] = tr->hook_s + tr->post_s;
    slot[3 * W + r] = ms->late;
    // and what this rank believes the step was (shares, queue, cursor): the same everywhere,
    // or a shared decision went two ways (hosts that compute differently): stop, never guess
    slot[4 * W + r] = (double)(balance_digest(&tr->bal) >> 12); // 52 bits: exact in a double
    double t0 = ts_now();
    ts_status st = c->all_reduce_sum_f64(c, v, n);
    tr->t_wait += ts_now() - t0;
    if (st != TS_OK) {
        free(v);
        return st;
    }
    fault_point("after", step + 1);
    memcpy(head, v, (size_t)n_head * sizeof(double));
    for (int q = 1; q < W; q++)
        if (slot[4 * W + q] != slot[4 * W]) {
            if (r == 0)
                log_error("step %d: rank %d's balancing state (shares, sample queue) differs from "
                          "rank 0's: a shared decision went two ways (hosts whose builds compute "
                          "differently? build tessera the same way on every host)",
                          step + 1, q);
            free(v);
            return TS_ERR_INTERNAL;
        }
    const balance *b = &tr->bal;
    res->late = 0;
    for (int q = 0; q < W; q++) {
        if (!(slot[3 * W + q] > 0)) continue;
        res->late++;
        if (r == 0 && b->late[q] == 0) { // the first step of a streak is said
            int back = b->share[q] - (int)slot[q];
            double expected = balance_makespan_s(b, b->share);
            char gave[96] = "";
            if (back > 0)
                snprintf(gave, sizeof gave, ": %d of its %d sequences go to the next step", back,
                         b->share[q]);
            log_warn("step %d: rank %d (host %s) late: %.0f ms of forward and backward, the "
                     "step was expected to take %.0f ms%s",
                     step + 1, q, tr->hosts ? tr->hosts + (size_t)q * TRAIN_HOST_MAX : "?",
                     slot[W + q] * 1e3, expected * 1e3, gave);
        }
    }
    // the first step of a process pays start-up costs (first touches, caches): not a speed
    int measure = step > tr->start_step;
    res->used = balance_commit(&tr->bal, slot, slot + W, slot + 2 * W, slot + 3 * W, measure,
                               step + 1, r == 0, tr->hosts, TRAIN_HOST_MAX);
    free(v);
    return TS_OK;
}

// the step's samples and this rank's share of them
static void train_step_plan(trainer *tr) {
    balance_plan(&tr->bal);
    tr->share = tr->bal.share[tr->comm->rank];
    tr->offset = tr->bal.offset[tr->comm->rank];
}

// local SGD: an inner step on the rank's own share, then the syncs due after it
static ts_status train_step_local(trainer *tr, int step, train_step_result *res) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    int T = cfg->model.seq_len;
    double loss_sum;
    train_measure ms;
    train_step_plan(tr);
    int share = tr->share;
    TS_CHECK(train_accumulate(tr, step, &loss_sum, &ms));
    // the reported loss (over the samples trained) and the stop votes, in one small sum
    double sums[2] = {loss_sum, train_stop_requested(tr) ? 1.0 : 0.0};
    TS_CHECK(train_step_agree(tr, sums, 2, &ms, step, res));
    res->loss = sums[0] / ((double)res->used * T);
    res->stop_votes = (int)sums[1];
    double t1 = ts_now();
    // the rank's own gradient: its own decision (the mean over the samples it trained)
    if (ms.done < share)
        tr->be->scale(tr->be, tr->model.grads, (real)((double)share / ms.done), tr->model.n_params);
    double mine = loss_sum / ((double)ms.done * T);
    res->norm = optim_grad_norm(&tr->model);
    if (!isfinite(res->norm) || !isfinite(mine)) {
        res->skipped = 1;
        log_warn("step %d: rank %d: non-finite loss or gradient (loss %g, norm %g): inner step "
                 "skipped",
                 step + 1, c->rank, mine, res->norm);
    } else {
        optim_step(&tr->opt, &tr->model, cfg, res->lr, res->norm);
    }
    train_outer_count(tr, ms.done, res->used);
    tr->post_s = ts_now() - t1;
    tr->t_compute += tr->post_s;
    int final = step + 1 == cfg->train.steps || res->stop_votes > 0;
    return train_outer_after_step(tr, step + 1, final, &res->comm_s);
}

ts_status train_step(trainer *tr, int step, train_step_result *res) {
    const tessera_config *cfg = &tr->cfg;
    int zero = cfg->comm.zero_stage == 1;
    int T = cfg->model.seq_len, GB = cfg->train.global_batch;
    memset(res, 0, sizeof *res);
    res->lr = optim_lr_at(cfg, step);
    double loss_sum;
    fault_point("before", step + 1);
    g_fault_step = step + 1;
    if (tr->outer.on) return train_step_local(tr, step, res);
    train_measure ms;
    train_step_plan(tr);
    TS_CHECK(train_accumulate(tr, step, &loss_sum, &ms));
    // the reduction's span: first bucket started to last bucket done
    if (tr->red.n_buckets > 0 && tr->red.buckets[0].started) {
        double lo = tr->red.buckets[0].t_start, hi = tr->red.buckets[0].t_done;
        for (int b = 1; b < tr->red.n_buckets; b++) {
            if (tr->red.buckets[b].t_start < lo) lo = tr->red.buckets[b].t_start;
            if (tr->red.buckets[b].t_done > hi) hi = tr->red.buckets[b].t_done;
        }
        res->comm_s = hi - lo;
    }
    // the loss and, with ZeRO-1, the shards' squared gradient norms, in one small sum
    // ... and whether a rank was asked to stop: the request spreads with this collective
    double sums[3] = {loss_sum, zero ? optim_grad_sumsq(&tr->opt, &tr->model) : 0,
                      train_stop_requested(tr) ? 1.0 : 0.0};
    TS_CHECK(train_step_agree(tr, sums, 3, &ms, step, res));
    double t1 = ts_now();
    res->loss = sums[0] / ((double)res->used * T);
    res->stop_votes = (int)sums[2];
    // samples given back: the sum over the samples trained, divided by their number (design
    // invariant 2 over the samples the step actually has)
    double renorm = res->used < GB ? (double)GB / res->used : 1;
    if (renorm != 1) optim_scale_grads(&tr->opt, &tr->model, renorm);
    // every rank holds the same summed gradients (or the same summed norm): every rank
    // takes the same decision
    res->norm = zero ? sqrt(sums[1]) * renorm : optim_grad_norm(&tr->model);
    if (!isfinite(res->norm) || !isfinite(res->loss)) {
        res->skipped = 1;
        log_warn("step %d: non-finite loss or gradient (loss %g, norm %g): step skipped", step + 1,
                 res->loss, res->norm);
        tr->post_s = 0;
        return TS_OK;
    }
    optim_step(&tr->opt, &tr->model, cfg, res->lr, res->norm);
    double t2 = ts_now();
    tr->post_s = t2 - t1;
    tr->t_compute += t2 - t1;
    if (zero) {
        TS_CHECK(reducer_gather_params(&tr->red, tr->model.master));
        model_sync_params(&tr->model);
        tr->t_wait += ts_now() - t2;
    }
    return TS_OK;
}

static ts_status train_validate_model(trainer *tr, double *out);

// mean validation loss (nats/token) over eval.batches global batches of the validation set, of
// the shared parameters (in local SGD: the anchor, not the ranks' own)
ts_status train_validate(trainer *tr, double *out) {
    train_outer_enter_anchor(tr);
    ts_status st = train_validate_model(tr, out);
    train_outer_leave_anchor(tr);
    return st;
}

static ts_status train_validate_model(trainer *tr, double *out) {
    const tessera_config *cfg = &tr->cfg;
    int T = cfg->model.seq_len, GB = cfg->train.global_batch;
    double acc[2] = {0, 0}; // loss sum, tokens
    for (int batch = 0; batch < cfg->eval.batches; batch++) {
        for (int done = 0; done < tr->share; done += tr->micro) {
            int B = tr->share - done < tr->micro ? tr->share - done : tr->micro;
            for (int b = 0; b < B; b++) {
                uint64_t i = ((uint64_t)batch * GB + tr->offset + done + b) % tr->val.n_seq;
                TS_CHECK(dataset_sequence(&tr->val, i, tr->seq_buf + b * (T + 1)));
            }
            split_batch(tr, B);
            acc[0] += model_forward(&tr->model, tr->inputs, tr->targets, B, T, 0);
            acc[1] += (double)B * T;
        }
    }
    TS_CHECK(tr->comm->all_reduce_sum_f64(tr->comm, acc, 2));
    *out = acc[0] / acc[1];
    return TS_OK;
}
