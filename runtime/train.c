// train.c — the training loop: steps, evaluation, checkpoints and reports in their order, and
// the end-of-run sample. The pieces: train_setup.c (set-up, tear-down), train_step.c (one step,
// validation), train_report.c (progress lines, metrics, final report), train_stop.c (planned
// stops), train_ckpt.c (checkpoints and resume).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "runtime/train.h"
#include "runtime/train_internal.h"

// Every rank must end with the same shared weights (design invariant 5: every decision that
// changes them was agreed). A hash of each rank's copy (in pieces: no second copy of the model),
// compared in one small collective.
static ts_status train_check_same_weights(trainer *tr) {
    comm *c = tr->comm;
    if (c->size == 1) return TS_OK;
    size_t n = tr->model.n_params, piece = (size_t)1 << 18;
    XXH64_state_t *h = XXH64_createState();
    TS_ASSERT(h);
    XXH64_reset(h, 0);
    if (tr->outer.on) {
        XXH64_update(h, tr->outer.anchor, n * sizeof(float));
    } else {
        float *buf = ts_malloc((n < piece ? n : piece) * sizeof(float), "weights check");
        for (size_t at = 0; at < n; at += piece) {
            size_t k = n - at < piece ? n - at : piece;
            tr->be->to_host(tr->be, buf, tr->model.master + at, k * sizeof(float));
            XXH64_update(h, buf, k * sizeof(float));
        }
        free(buf);
    }
    uint64_t d = XXH64_digest(h);
    XXH64_freeState(h);
    // three 22-bit parts, each as its max and minus its min
    int32_t v[6];
    for (int i = 0; i < 3; i++) {
        v[i] = (int32_t)((d >> (22 * i)) & 0x3fffff);
        v[3 + i] = -v[i];
    }
    TS_CHECK(c->all_reduce_max_i32(c, v, 6));
    if (v[0] != -v[3] || v[1] != -v[4] || v[2] != -v[5]) {
        if (c->rank == 0)
            log_error("the ranks end with different weights: a shared decision was not agreed, "
                      "or the hosts' builds compute differently (build tessera the same way on "
                      "every host); otherwise a bug: please report it with train.log");
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

ts_status trainer_run(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    int steps = cfg->train.steps, skipped = 0;
    double val_loss = NAN;
    train_report report;
    train_report_begin(&report, tr);

    int done_steps = tr->start_step; // the last completed step (a stop may end the loop early)
    for (int step = tr->start_step; step < steps; step++) {
        status_file_set_step(step + 1);
        double t_step = ts_now();
        train_step_result res;
        TS_CHECK(train_step(tr, step, &res));
        skipped += res.skipped;
        train_report_step(&report, &res);

        int stopping = res.stop_votes > 0 && step + 1 < steps;
        if (stopping) train_stop_serve(tr, res.stop_votes, step + 1);
        int last = step + 1 == steps || stopping;
        done_steps = step + 1;
        int do_eval = last || (cfg->eval.every > 0 && (step + 1) % cfg->eval.every == 0);
        if (do_eval) TS_CHECK(train_validate(tr, &val_loss));
        // the save's stall is part of this step's time and goes into its metrics line
        int saved = last || (cfg->ckpt.every > 0 && (step + 1) % cfg->ckpt.every == 0);
        double stall_ms = 0;
        if (saved)
            TS_CHECK(train_save_checkpoint(tr, step + 1, (ts_now() - t_step) * 1e3, &stall_ms));
        if (last || (step + 1) % cfg->log.every == 0 || do_eval)
            train_report_window(&report, tr, step + 1, &res, do_eval ? &val_loss : NULL,
                                saved ? &stall_ms : NULL);
        if (stopping) break;
    }
    // resumed at the last step: nothing left to train, the final report still needs its loss
    if (tr->start_step >= steps) TS_CHECK(train_validate(tr, &val_loss));
    TS_CHECK(train_ckpt_finish(tr));
    TS_CHECK(train_check_same_weights(tr));
    if (skipped) log_warn("%d of %d steps were skipped (non-finite gradients)", skipped, steps);

    // final report: validation loss beside the corpus' unigram entropy (same units)
    TS_CHECK(train_report_final(tr, val_loss, done_steps));
    return TS_OK;
}

void trainer_sample(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    if (tr->comm->rank != 0 || cfg->log.sample_tokens <= 0) return;
    const tokenizer *tok = &tr->tok;
    int prompt = tok->byte_level ? '\n' : (tok->eot >= 0 ? tok->eot : 0);
    sample_options opt = {cfg->log.sample_tokens, 0.8f, 40, (uint64_t)cfg->run.seed};
    printf("---- sample (temperature 0.8, top-k 40) ----%s", tok->byte_level ? "" : "\n");
    fflush(stdout);
    sample_generate(&tr->model, tok, &prompt, 1, &opt, stdout);
    printf("--------------------------------------------\n");
}
