// train_ckpt.c — the trainer's checkpoints and resume (see the section comment below).
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/env.h"
#include "runtime/ckpt_state.h"
#include "runtime/train_internal.h"

// ---------------------------------------------------------------------------------------------
// checkpoints (design: "Checkpoints", invariants 3 and 5). Nodes share no disk: the checkpoint
// root of a rank is <run_dir>/ckpt/<host>/ on its own host, and the first ckpt.replicas ranks (in
// rank order) on distinct hosts each write a full copy there. The ZeRO-1 moments are gathered to
// every rank first: each rank fills its owned ranges of a zeroed full-size buffer and a sum over
// ranks assembles them (exact: the other ranks add zeros). A gradient codec with state (error
// feedback) has every rank's state all-gathered too, and stored per rank. On resume the ranks
// agree on the newest intact step any of them holds; the lowest rank holding it reads it and
// broadcasts it (each rank gets its own codec state back).

// this rank's host: TESSERA_HOST, else gethostname(); bytes other than [A-Za-z0-9._-] become
// '_' (the name is a directory name)
void train_host_name(char out[TRAIN_HOST_MAX]) {
    const char *env = env_get("TESSERA_HOST");
    if (env && env[0])
        snprintf(out, TRAIN_HOST_MAX, "%s", env);
    else if (gethostname(out, TRAIN_HOST_MAX) != 0 || !out[0])
        snprintf(out, TRAIN_HOST_MAX, "localhost");
    out[TRAIN_HOST_MAX - 1] = '\0';
    for (char *p = out; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 *p == '.' || *p == '_' || *p == '-';
        if (!ok) *p = '_';
    }
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0) out[0] = '_';
}

// every rank's host name (a size x TRAIN_HOST_MAX table: each rank writes its row of a zeroed
// table, one element per byte, and a max over ranks fills in the rest), this rank's checkpoint
// root, and whether this rank writes a replica
ts_status train_ckpt_setup(trainer *tr) {
    comm *c = tr->comm;
    char host[TRAIN_HOST_MAX];
    train_host_name(host);
    size_t n = (size_t)c->size * TRAIN_HOST_MAX;
    int *table = ts_calloc(n, sizeof(int), "host names");
    for (int i = 0; i < TRAIN_HOST_MAX; i++)
        table[(size_t)c->rank * TRAIN_HOST_MAX + i] = (unsigned char)host[i];
    ts_status st = c->all_reduce_max_i32(c, table, n);
    if (st != TS_OK) {
        free(table);
        return st;
    }
    tr->hosts = ts_calloc(n, 1, "host names");
    for (size_t i = 0; i < n; i++)
        tr->hosts[i] = (char)table[i];
    free(table);
    snprintf(tr->ckpt_root, sizeof tr->ckpt_root, "%s/ckpt/%s", tr->run_dir, host);

    char writers[256] = "";
    int n_writers = 0;
    for (int r = 0; r < c->size && n_writers < tr->cfg.ckpt.replicas; r++) {
        const char *h = tr->hosts + (size_t)r * TRAIN_HOST_MAX;
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = strcmp(h, tr->hosts + (size_t)q * TRAIN_HOST_MAX) == 0;
        if (seen) continue;
        if (r == c->rank) tr->ckpt_writer = 1;
        n_writers++;
        size_t len = strlen(writers);
        snprintf(writers + len, sizeof writers - len, "%s%d (%s)", len ? ", " : "", r, h);
    }
    log_info("checkpoints: %d cop%s (ckpt.replicas = %d), written by rank%s %s to "
             "%s/ckpt/<host>",
             n_writers, n_writers == 1 ? "y" : "ies", tr->cfg.ckpt.replicas,
             n_writers == 1 ? "" : "s", writers, tr->run_dir);
    return TS_OK;
}

static const char *train_host_of(const trainer *tr, int rank) {
    return tr->hosts + (size_t)rank * TRAIN_HOST_MAX;
}

// this rank's moments into whole zeroed host buffers m, v (n_params each), at their offsets
static void train_moments_to_host(trainer *tr, float *m, float *v) {
    const optim_state *o = &tr->opt;
    for (int i = 0; i < o->n_ranges; i++) {
        if (!o->count[i]) continue;
        tr->be->to_host(m + o->first[i], o->m + o->moment_at[i], o->count[i] * sizeof(real));
        tr->be->to_host(v + o->first[i], o->v + o->moment_at[i], o->count[i] * sizeof(real));
    }
}

// every rank's gradient codec state, gathered (all ranks take part); a writer keeps it in its
// snapshot, the others drop it
static ts_status train_codec_snapshot(trainer *tr) {
    comm *c = tr->comm;
    unsigned char *all = NULL;
    size_t *lens = ts_calloc((size_t)c->size, sizeof(size_t), "codec state lengths");
    ts_status st = codec_state_gather(tr->codec, c, &all, lens);
    if (st == TS_OK && tr->ckpt_writer) {
        ckpt_codec_state *cs = &tr->writer.codec; // the previous save is done
        ckpt_codec_state_free(cs);
        snprintf(cs->name, sizeof cs->name, "%s", tr->codec->ops->name);
        cs->world = c->size;
        cs->all = all;
        cs->lens = lens;
        return TS_OK;
    }
    free(all);
    free(lens);
    return st;
}

// Save the state after `step` completed steps, asynchronously: wait for the previous save (its
// outcome decides whether the run goes on), copy weights and moments into the preallocated host
// snapshot, hand it to the background writer. *stall_ms: what this cost the loop (wait + copy).
// A failed write is logged by the writer and training goes on, that copy's previous checkpoint
// untouched; ckpt.max_failures consecutive failures on any writer end the run (agreed by all
// ranks, exit 1). A communication failure ends the run.
ts_status train_save_checkpoint(trainer *tr, int step, double step_ms, double *stall_ms) {
    comm *c = tr->comm;
    const tessera_config *cfg = &tr->cfg;
    size_t n = tr->model.n_params;
    double t0 = ts_now();
    *stall_ms = 0;
    double waited = tr->ckpt_writer ? ckpt_writer_wait(&tr->writer) : 0;
    ts_status mine = TS_OK;
    if (tr->ckpt_writer && tr->writer.failures >= cfg->ckpt.max_failures) {
        log_error("checkpoint: %d consecutive saves to %s failed (ckpt.max_failures = %d); "
                  "stopping the run (the newest intact checkpoint there is kept)",
                  tr->writer.failures, tr->ckpt_root, cfg->ckpt.max_failures);
        mine = TS_ERR_SYSTEM;
    }
    TS_CHECK(train_agree(c, mine));
    if (codec_has_state(tr->codec)) TS_CHECK(train_codec_snapshot(tr)); // the same on all ranks
    if (!tr->snapshot) return TS_OK;
    // decided by the config, the same on every rank (a rank's own share may happen to be all)
    int sharded = cfg->comm.zero_stage == 1 && c->size > 1;
    float *m = tr->writer.m, *v = tr->writer.v;
    if (sharded) {
        memset(m, 0, n * sizeof(float));
        memset(v, 0, n * sizeof(float));
    }
    train_moments_to_host(tr, m, v);
    if (sharded) {
        TS_CHECK(c->all_reduce_sum_f32(c, m, n));
        TS_CHECK(c->all_reduce_sum_f32(c, v, n));
    }
    if (!tr->ckpt_writer) return TS_OK;
    tr->be->to_host(tr->writer.w, tr->model.master, n * sizeof(real));
    char parent[sizeof tr->run_dir + 16];
    snprintf(parent, sizeof parent, "%s/ckpt", tr->run_dir);
    if (mkdir(parent, 0755) != 0 && errno != EEXIST)
        log_warn("%s: cannot create the checkpoint directory: %s", parent, strerror(errno));
    ckpt_state_meta meta = {step,
                            c->size,
                            cfg->train.global_batch,
                            tr->opt.t,
                            cfg->run.seed,
                            (uint64_t)step * (uint64_t)cfg->train.global_batch,
                            tr->writer.codec.name[0] ? &tr->writer.codec : NULL};
    *stall_ms = (ts_now() - t0) * 1e3;
    return ckpt_writer_start(&tr->writer, tr->ckpt_root, &tr->model, cfg, &meta, *stall_ms,
                             waited * 1e3, step_ms);
}

// the end of the run: the last save must be committed (and HDF5 free) before model.h5 is
// written; its failure counts like any other
ts_status train_ckpt_finish(trainer *tr) {
    ts_status mine = TS_OK;
    if (tr->ckpt_writer) {
        ckpt_writer_wait(&tr->writer);
        if (tr->writer.failures >= tr->cfg.ckpt.max_failures) {
            log_error("checkpoint: %d consecutive saves to %s failed (ckpt.max_failures = %d); "
                      "the run ends without its final checkpoint",
                      tr->writer.failures, tr->ckpt_root, tr->cfg.ckpt.max_failures);
            mine = TS_ERR_SYSTEM;
        }
    }
    return train_agree(tr->comm, mine);
}

// the holder: read the chosen step directory into whole host buffers and check it fits the run
static ts_status train_resume_read(trainer *tr, const char *dir, ckpt_state_meta *meta, float *w,
                                   float *m, float *v) {
    TS_CHECK(ckpt_state_load(dir, &tr->model, &tr->cfg, meta, w, m, v));
    if (meta->step > tr->cfg.train.steps) {
        log_error("%s: checkpoint at step %d is past [train] steps = %d (expected steps >= %d "
                  "to resume it)",
                  dir, meta->step, tr->cfg.train.steps, meta->step);
        return TS_ERR_INPUT;
    }
    if (meta->global_batch != tr->cfg.train.global_batch || meta->seed != tr->cfg.run.seed)
        log_warn("%s: saved with global_batch %d and seed %lld; continuing with %d and %lld "
                 "changes the data order",
                 dir, meta->global_batch, (long long)meta->seed, tr->cfg.train.global_batch,
                 (long long)tr->cfg.run.seed);
    return TS_OK;
}

// step number of a ".../step-NNNNNNNN" directory, or -1
static int train_step_of_dir(const char *dir) {
    const char *base = strrchr(dir, '/');
    int step = -1;
    if (sscanf(base ? base + 1 : dir, "step-%d", &step) != 1) step = -1;
    return step;
}

// run.resume. "auto": every rank looks in its own checkpoint root for the newest intact step,
// the ranks agree on the newest step anyone holds, and the lowest rank holding it reads it. A
// path: rank 0 reads it. The reader broadcasts weights and whole moments (whatever the world
// size that wrote them), each rank keeps the moments of the ranges it owns.
ts_status train_resume(trainer *tr) {
    const char *spec = tr->cfg.run.resume;
    if (!spec[0]) return TS_OK;
    comm *c = tr->comm;
    int by_path = strcmp(spec, "auto") != 0;
    char dir[CFG_STR + 200] = "";
    ts_status mine = TS_OK;
    if (!by_path || c->rank == 0) mine = ckpt_state_pick(tr->ckpt_root, spec, dir, sizeof dir);
    TS_CHECK(train_agree(c, mine)); // only a path can fail (rank 0): it has said why

    int holder = 0;
    if (!by_path) {
        int newest = dir[0] ? train_step_of_dir(dir) : -1;
        int mine_step = newest;
        TS_CHECK(c->all_reduce_max_i32(c, &newest, 1));
        if (newest < 0) {
            log_warn("run.resume = \"auto\": no intact checkpoint in %s/ckpt/<host> of any rank; "
                     "starting fresh",
                     tr->run_dir);
            return TS_OK;
        }
        int who = mine_step == newest ? -c->rank : -c->size;
        TS_CHECK(c->all_reduce_max_i32(c, &who, 1));
        holder = -who;
    }

    size_t n = tr->model.n_params;
    float *w = ts_calloc(n, sizeof(float), "resumed weights");
    float *m = ts_calloc(n, sizeof(float), "resumed moments");
    float *v = ts_calloc(n, sizeof(float), "resumed moments");
    ckpt_codec_state codec_state; // the holder's: every rank's codec state in the checkpoint
    ckpt_state_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.codec = &codec_state;
    mine = c->rank == holder ? train_resume_read(tr, dir, &meta, w, m, v) : TS_OK;
    if (c->rank != holder || mine != TS_OK) memset(&codec_state, 0, sizeof codec_state);
    ts_status st = train_agree(c, mine); // only the holder can fail: it has said why
    int head[2] = {meta.step, meta.opt_t};
    if (st == TS_OK) st = c->broadcast(c, head, sizeof head, holder);
    if (st == TS_OK) st = c->broadcast(c, dir, sizeof dir, holder);
    if (st == TS_OK) st = c->broadcast(c, w, n * sizeof(float), holder);
    if (st == TS_OK) st = c->broadcast(c, m, n * sizeof(float), holder);
    if (st == TS_OK) st = c->broadcast(c, v, n * sizeof(float), holder);
    // each rank its own codec state back (when the codec and the world size are the same); a
    // codec without state moves nothing (the holder only warns about state it ignores)
    if (st == TS_OK) {
        ts_status restored =
            codec_state_restore(tr->codec, c, holder, codec_state.name, codec_state.world,
                                codec_state.all, codec_state.lens, dir);
        st = codec_has_state(tr->codec) ? train_agree(c, restored) : restored;
    }
    ckpt_codec_state_free(&codec_state);
    if (st == TS_OK) {
        tr->be->to_device(tr->model.master, w, n * sizeof(real));
        gpt2_sync_params(&tr->model);
        const optim_state *o = &tr->opt;
        for (int i = 0; i < o->n_ranges; i++) {
            if (!o->count[i]) continue;
            tr->be->to_device(o->m + o->moment_at[i], m + o->first[i], o->count[i] * sizeof(real));
            tr->be->to_device(o->v + o->moment_at[i], v + o->first[i], o->count[i] * sizeof(real));
        }
        tr->opt.t = head[1];
        tr->start_step = head[0];
        if (by_path)
            log_info("resumed from step %d (%s, read by rank 0)", head[0], dir);
        else
            log_info("resumed from step %d (held by rank %d on host %s: %s)", head[0], holder,
                     train_host_of(tr, holder), dir);
    }
    free(w);
    free(m);
    free(v);
    return st;
}
