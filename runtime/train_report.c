// train_report.c — what the trainer tells people: the progress line and metrics.jsonl record of
// each log window, and the final report (validation loss beside the corpus' unigram entropy, the
// weights file).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/ckpt.h"
#include "runtime/train_internal.h"

static void format_duration(double s, char *buf, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

void train_report_begin(train_report *r, trainer *tr) {
    comm *c = tr->comm;
    r->t_start = r->t_window = ts_now();
    r->loss = 0;
    r->steps = 0;
    r->comm_s = 0;
    r->used = 0;
    r->late = 0;
    r->sent0 = c->stats.bytes_sent;
    r->recv0 = c->stats.bytes_recv;
    r->ckpt_sent0 = tr->ckpt_sent;
    r->ckpt_recv0 = tr->ckpt_recv;
    r->wait0 = c->stats.wait_s;
    tr->t_compute = tr->t_wait = 0;
}

void train_report_step(train_report *r, const train_step_result *res) {
    r->loss += res->loss;
    r->steps++;
    r->used += res->used;
    r->late += res->late;
    r->comm_s += res->comm_s;
}

void train_report_window(train_report *r, trainer *tr, int step, const train_step_result *res,
                         const double *val_loss, const double *stall_ms) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    int steps = cfg->train.steps, n = r->steps;
    // the tokens trained (fewer than the global batch's when late ranks gave samples back)
    double tokens_per_step = (double)r->used / n * cfg->model.seq_len;
    double now = ts_now(), dt = (now - r->t_window) / n;
    double eta = (now - r->t_start) / (step - tr->start_step) * (steps - step);
    double compute_ms = tr->t_compute * 1e3 / n;
    double comm_ms = r->comm_s * 1e3 / n;
    double wait_ms = (c->stats.wait_s - r->wait0) * 1e3 / n;
    // training traffic (gradients or parameter syncs, the loss, validation), per step; the
    // checkpoints' state gathers apart, in total over the window
    double ckpt_sent = (double)(tr->ckpt_sent - r->ckpt_sent0);
    double ckpt_recv = (double)(tr->ckpt_recv - r->ckpt_recv0);
    double sent = ((double)(c->stats.bytes_sent - r->sent0) - ckpt_sent) / n;
    double recv = ((double)(c->stats.bytes_recv - r->recv0) - ckpt_recv) / n;
    char eta_s[32], val_s[48] = "", comm_s[48] = "";
    format_duration(eta, eta_s, sizeof eta_s);
    if (val_loss) snprintf(val_s, sizeof val_s, " | val %.4f", *val_loss);
    if (c->size > 1)
        snprintf(comm_s, sizeof comm_s, " | comm %.0f%% wait %.0f%%", 100.0 * comm_ms / (dt * 1e3),
                 100.0 * wait_ms / (dt * 1e3));
    log_info("step %*d/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | %.1f ms/step"
             "%s | ETA %s",
             (int)snprintf(NULL, 0, "%d", steps), step, steps, r->loss / n, val_s, res->lr,
             res->norm, tokens_per_step / dt, dt * 1e3, comm_s, eta_s);
    if (tr->metrics) {
        fprintf(tr->metrics,
                "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, "
                "\"tokens_per_s\": %.1f, \"ms_per_step\": %.3f, \"compute_ms\": %.3f, "
                "\"comm_ms\": %.3f, \"wait_ms\": %.3f, \"bytes_sent\": %.0f, "
                "\"bytes_recv\": %.0f, \"elapsed_s\": %.3f",
                step, r->loss / n, res->lr, res->norm, tokens_per_step / dt, dt * 1e3, compute_ms,
                comm_ms, wait_ms, sent, recv, now - r->t_start);
        if (val_loss) fprintf(tr->metrics, ", \"val_loss\": %.6f", *val_loss);
        if (stall_ms) fprintf(tr->metrics, ", \"ckpt_stall_ms\": %.3f", *stall_ms);
        if (ckpt_sent > 0 || ckpt_recv > 0)
            fprintf(tr->metrics, ", \"ckpt_bytes_sent\": %.0f, \"ckpt_bytes_recv\": %.0f",
                    ckpt_sent, ckpt_recv);
        if (c->size > 1) {
            // balancing: the next step's shares, the speeds they follow (samples/s of forward
            // and backward), samples trained and late ranks in the window
            const balance *b = &tr->bal;
            fprintf(tr->metrics,
                    ", \"samples\": %lld, \"late\": %d, \"rebalances\": %llu, "
                    "\"shares\": [",
                    (long long)r->used, r->late, (unsigned long long)b->rebalances);
            for (int q = 0; q < b->world; q++)
                fprintf(tr->metrics, "%s%d", q ? ", " : "", b->share[q]);
            fprintf(tr->metrics, "], \"speeds\": [");
            for (int q = 0; q < b->world; q++)
                fprintf(tr->metrics, "%s%.2f", q ? ", " : "", b->speed[q]);
            fprintf(tr->metrics, "]");
            if (b->n_queue) fprintf(tr->metrics, ", \"queued\": %d", b->n_queue);
        }
        fprintf(tr->metrics, "}\n");
        fflush(tr->metrics);
    }
    double t_start = r->t_start;
    train_report_begin(r, tr);
    r->t_start = t_start;
    r->t_window = now;
}

ts_status train_report_final(trainer *tr, double val_loss, int done_steps) {
    const tessera_config *cfg = &tr->cfg;
    if (tr->comm->rank != 0) return TS_OK;
    double h;
    TS_CHECK(dataset_unigram_entropy(&tr->train, cfg->model.vocab, &h));
    const char *unit = cfg->model.vocab == 256 ? "nats/byte" : "nats/token";
    log_info("final validation loss %.4f %s; unigram entropy of the training data %.4f %s "
             "(loss = %.0f%% of it)",
             val_loss, unit, h, unit, 100.0 * val_loss / h);
    const balance *b = &tr->bal;
    if (b->world > 1 && (b->rebalances || b->drops)) {
        char sh[256] = "";
        size_t at = 0;
        for (int q = 0; q < b->world && at + 16 < sizeof sh; q++)
            at += (size_t)snprintf(sh + at, sizeof sh - at, "%s%d", q ? "/" : "", b->share[q]);
        log_info("balance: %llu re-balance%s, shares at the end %s; %llu late rank-steps cut "
                 "short, %llu times a sequence was given back to the next step",
                 (unsigned long long)b->rebalances, b->rebalances == 1 ? "" : "s", sh,
                 (unsigned long long)b->drops, (unsigned long long)b->dropped);
    }
    // what the gradient codec made of this rank's buckets (none: the fp32 buckets themselves)
    const codec_stats *cs = &tr->codec->stats;
    if (cs->buckets && cs->raw_bytes && strcmp(tr->codec->ops->name, "none") != 0) {
        char zstd[128] = "";
        if (cs->encoded_bytes && cs->zstd_s > 0) // zstd tried
            snprintf(zstd, sizeof zstd, ", zstd: %.1f%% of the encoded bytes in %.0f ms",
                     100.0 * (double)cs->payload_bytes / (double)cs->encoded_bytes,
                     cs->zstd_s * 1e3);
        log_info("gradient codec %s: %.2f MiB of fp32 gradients sent as %.2f MiB (%.1f%%)%s",
                 tr->codec->ops->name, (double)cs->raw_bytes / 1048576.0,
                 (double)cs->payload_bytes / 1048576.0,
                 100.0 * (double)cs->payload_bytes / (double)cs->raw_bytes, zstd);
    }
    char path[sizeof tr->run_dir + 32];
    snprintf(path, sizeof path, "%s/model.h5", tr->run_dir);
    TS_CHECK(ckpt_write_weights(path, &tr->model, done_steps));
    log_info("weights written to %s", path);
    return TS_OK;
}
