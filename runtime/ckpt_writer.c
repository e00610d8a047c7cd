// ckpt_writer.c — the background checkpoint writer (see ckpt_writer.h): one thread per save,
// joined before the next one starts and before the process ends.
#include "runtime/ckpt_writer.h"

#include <stdlib.h>
#include <string.h>

void ckpt_writer_create(ckpt_writer *wr, size_t n, int with_weights) {
    memset(wr, 0, sizeof *wr);
    wr->n = n;
    if (with_weights) wr->w = ts_calloc(n, sizeof(float), "checkpoint snapshot");
    wr->m = ts_calloc(n, sizeof(float), "checkpoint snapshot");
    wr->v = ts_calloc(n, sizeof(float), "checkpoint snapshot");
}

// the content of the step directory: state.h5
static ts_status ckpt_writer_fill(const char *tmp_dir, void *ctx) {
    const ckpt_writer *wr = ctx;
    char path[CKPT_DIR_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, CKPT_STATE_FILE);
    return ckpt_state_write(path, wr->model, wr->cfg, &wr->meta, wr->w, wr->m, wr->v);
}

// the thread: write, then one line saying what the save cost the loop and took in the background
static void *ckpt_writer_main(void *arg) {
    ckpt_writer *wr = arg;
    double t0 = ts_now();
    wr->result =
        ckpt_dir_save(wr->dir, wr->meta.step, &wr->id, wr->cfg->ckpt.keep, ckpt_writer_fill, wr);
    wr->write_ms = (ts_now() - t0) * 1e3;
    __atomic_store_n(&wr->writing, 0, __ATOMIC_RELEASE);
    char waited[96] = "";
    if (wr->wait_ms >= 0.05)
        snprintf(waited, sizeof waited, ", %.1f ms of it waiting for the previous save",
                 wr->wait_ms);
    if (wr->result == TS_OK)
        log_all("checkpoint step %d: snapshot %.1f ms (%.1f%% of a step%s), written in the "
                "background in %.0f ms to %s/step-%08d",
                wr->meta.step, wr->stall_ms,
                wr->step_ms > 0 ? 100.0 * wr->stall_ms / wr->step_ms : 0.0, waited, wr->write_ms,
                wr->dir, wr->meta.step);
    else
        log_warn("checkpoint at step %d not written to %s; training goes on (the previous "
                 "checkpoint is untouched, the next interval retries)",
                 wr->meta.step, wr->dir);
    return NULL;
}

int ckpt_writer_busy(const ckpt_writer *wr) {
    return wr->running && __atomic_load_n(&wr->writing, __ATOMIC_ACQUIRE);
}

double ckpt_writer_wait(ckpt_writer *wr) {
    if (!wr->running) return 0;
    double t0 = ts_now();
    pthread_join(wr->thread, NULL);
    wr->running = 0;
    wr->failures = wr->result == TS_OK ? 0 : wr->failures + 1;
    return ts_now() - t0;
}

ts_status ckpt_writer_start(ckpt_writer *wr, const char *dir, const model *m,
                            const tessera_config *cfg, const ckpt_state_meta *meta,
                            const ckpt_identity *id, double stall_ms, double wait_ms,
                            double step_ms) {
    TS_ASSERT(!wr->running && wr->w && wr->m && wr->v);
    snprintf(wr->dir, sizeof wr->dir, "%s", dir);
    wr->model = m;
    wr->cfg = cfg;
    wr->meta = *meta;
    wr->id = *id;
    wr->stall_ms = stall_ms;
    wr->wait_ms = wait_ms;
    wr->step_ms = step_ms;
    __atomic_store_n(&wr->writing, 1, __ATOMIC_RELEASE);
    if (pthread_create(&wr->thread, NULL, ckpt_writer_main, wr) != 0) {
        __atomic_store_n(&wr->writing, 0, __ATOMIC_RELEASE);
        log_error("%s: cannot start the checkpoint writer thread", dir);
        return TS_ERR_SYSTEM;
    }
    wr->running = 1;
    return TS_OK;
}

void ckpt_writer_destroy(ckpt_writer *wr) {
    ckpt_writer_wait(wr);
    free(wr->w);
    free(wr->m);
    free(wr->v);
    ckpt_codec_state_free(&wr->codec);
    ckpt_codec_state_free(&wr->outer);
    ckpt_codec_state_free(&wr->balance);
    memset(wr, 0, sizeof *wr);
}
