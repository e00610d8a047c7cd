// train_step.c — one training step and the validation pass.
//
// One step: every rank runs forward/backward over its share of the global batch (in
// micro-batches), with the loss scaled by 1/(global_batch*T) so the summed gradient is the mean
// over the global batch's tokens (design invariant 2); gradients are summed over ranks; all
// ranks then hold identical gradients, so the finite-check, the clipping and the AdamW update
// are the same everywhere and parameters stay in sync without a broadcast.
#include <errno.h>
#include <math.h>
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
    fault_point("inside", g_fault_step);
    return reducer_grads_ready((reducer *)ctx, ready_from);
}

// local SGD: no gradient leaves the rank; a parameter sync in flight advances during backward
static ts_status train_outer_ready(void *ctx, size_t ready_from) {
    (void)ready_from;
    fault_point("inside", g_fault_step);
    return train_outer_poll((trainer *)ctx);
}

// forward+backward over this rank's share of step `step` (summed token loss into *loss_sum);
// the last micro-step's backward hands each finished bucket to the reducer, which sums it over
// ranks while backward goes on (only the last micro-step communicates)
static ts_status train_accumulate(trainer *tr, int step, double *loss_sum) {
    const tessera_config *cfg = &tr->cfg;
    int T = cfg->model.seq_len;
    // local SGD: the rank's own mean; else a share of the global batch's mean, summed over ranks
    int local = tr->outer.on;
    real dloss = (real)(1.0 / ((double)(local ? tr->share : cfg->train.global_batch) * T));
    double t0 = ts_now();
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
    for (int done = 0; done < tr->share; done += tr->micro) {
        int B = tr->share - done < tr->micro ? tr->share - done : tr->micro;
        for (int b = 0; b < B; b++) {
            uint64_t g = (uint64_t)step * cfg->train.global_batch + tr->offset + done + b;
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
            tr->model.grads_ready = train_grads_ready;
            tr->model.grads_ready_ctx = &tr->red;
        }
        ts_status st = model_backward(&tr->model);
        tr->model.grads_ready = NULL;
        TS_CHECK(st);
    }
    if (tr->samples) fflush(tr->samples); // the audit must outlive a crash (killed ranks too)
    double t1 = ts_now();
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

// local SGD: an inner step on the rank's own share, then the syncs due after it
static ts_status train_step_local(trainer *tr, int step, train_step_result *res) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    double tokens_per_step = (double)cfg->train.global_batch * cfg->model.seq_len;
    double loss_sum;
    TS_CHECK(train_accumulate(tr, step, &loss_sum));
    double t0 = ts_now();
    // the reported loss (over the global batch) and the stop votes, in one small sum
    double sums[2] = {loss_sum, train_stop_requested(tr) ? 1.0 : 0.0};
    TS_CHECK(c->all_reduce_sum_f64(c, sums, 2));
    fault_point("after", step + 1);
    res->loss = sums[0] / tokens_per_step;
    res->stop_votes = (int)sums[1];
    double t1 = ts_now();
    tr->t_wait += t1 - t0;
    // the rank's own gradient: its own decision
    double mine = loss_sum / ((double)tr->share * cfg->model.seq_len);
    res->norm = optim_grad_norm(&tr->model);
    if (!isfinite(res->norm) || !isfinite(mine)) {
        res->skipped = 1;
        log_warn("step %d: rank %d: non-finite loss or gradient (loss %g, norm %g): inner step "
                 "skipped",
                 step + 1, c->rank, mine, res->norm);
    } else {
        optim_step(&tr->opt, &tr->model, cfg, res->lr, res->norm);
    }
    tr->t_compute += ts_now() - t1;
    int final = step + 1 == cfg->train.steps || res->stop_votes > 0;
    return train_outer_after_step(tr, step + 1, final, &res->comm_s);
}

ts_status train_step(trainer *tr, int step, train_step_result *res) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    int zero = cfg->comm.zero_stage == 1;
    double tokens_per_step = (double)cfg->train.global_batch * cfg->model.seq_len;
    memset(res, 0, sizeof *res);
    res->lr = optim_lr_at(cfg, step);
    double loss_sum;
    fault_point("before", step + 1);
    g_fault_step = step + 1;
    if (tr->outer.on) return train_step_local(tr, step, res);
    TS_CHECK(train_accumulate(tr, step, &loss_sum));
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
    double t0 = ts_now();
    // ... and whether a rank was asked to stop: the request spreads with this collective
    double sums[3] = {loss_sum, zero ? optim_grad_sumsq(&tr->opt, &tr->model) : 0,
                      train_stop_requested(tr) ? 1.0 : 0.0};
    TS_CHECK(c->all_reduce_sum_f64(c, sums, 3));
    fault_point("after", step + 1);
    res->loss = sums[0] / tokens_per_step;
    res->stop_votes = (int)sums[2];
    // every rank holds the same summed gradients (or the same summed norm): every rank
    // takes the same decision
    res->norm = zero ? sqrt(sums[1]) : optim_grad_norm(&tr->model);
    double t1 = ts_now();
    tr->t_wait += t1 - t0;
    if (!isfinite(res->norm) || !isfinite(res->loss)) {
        res->skipped = 1;
        log_warn("step %d: non-finite loss or gradient (loss %g, norm %g): step skipped", step + 1,
                 res->loss, res->norm);
        return TS_OK;
    }
    optim_step(&tr->opt, &tr->model, cfg, res->lr, res->norm);
    double t2 = ts_now();
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
