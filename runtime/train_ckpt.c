// train_ckpt.c — the trainer's checkpoints and resume (see the section comment below).
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/env.h"
#include "runtime/ckpt_dir.h"
#include "runtime/ckpt_state.h"
#include "runtime/train_internal.h"

// ---------------------------------------------------------------------------------------------
// checkpoints (design: "Checkpoints", invariants 3 and 5). Nodes share no disk: the checkpoint
// root of a rank is <run_dir>/ckpt/<host>/ on its own host, and the first ckpt.replicas ranks (in
// rank order) on distinct hosts each write a full copy there. The ZeRO-1 moments are gathered to
// every rank first: each rank fills its owned ranges of a zeroed full-size buffer and a sum over
// ranks assembles them (exact: the other ranks add zeros). A gradient codec with state (error
// feedback) has every rank's state all-gathered too, and stored per rank. On resume the ranks
// agree on the newest intact step of this run (its identity: ckpt_identity.h) any of them holds;
// the lowest rank holding it reads it and broadcasts it (each rank gets its own codec state back).
// The first rank on each host looks after that host's root: the check of a fresh start,
// run.overwrite, leftovers.

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
// root, whether this rank writes a replica and whether it is the first rank on its host
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
    tr->host_leader = 1;
    for (int q = 0; q < c->rank && tr->host_leader; q++)
        tr->host_leader = strcmp(host, tr->hosts + (size_t)q * TRAIN_HOST_MAX) != 0;

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

// 1 when some rank of the job runs on host (a name under <run_dir>/ckpt/)
static int train_host_in_job(const trainer *tr, const char *host) {
    for (int r = 0; r < tr->comm->size; r++)
        if (strcmp(train_host_of(tr, r), host) == 0) return 1;
    return 0;
}

// The checkpoint roots this rank looks after at the start: its host's (the first rank of each
// host), and on rank 0 also the roots under <run_dir>/ckpt/ of hosts outside the job that its
// disk shows (a shared file system, or one machine playing several hosts). Real directories
// only: a link there is not this run's to delete. visit returns non-OK to stop.
typedef ts_status (*train_root_fn)(trainer *tr, const char *root);
static ts_status train_ckpt_roots(trainer *tr, train_root_fn visit) {
    if (tr->host_leader) TS_CHECK(visit(tr, tr->ckpt_root));
    if (tr->comm->rank != 0) return TS_OK;
    char parent[sizeof tr->run_dir + 16];
    snprintf(parent, sizeof parent, "%s/ckpt", tr->run_dir);
    DIR *d = opendir(parent);
    if (!d) return TS_OK;
    ts_status st = TS_OK;
    struct dirent *e;
    while (st == TS_OK && (e = readdir(d)) != NULL) {
        struct stat sb;
        if (e->d_name[0] == '.' || train_host_in_job(tr, e->d_name) ||
            fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        char root[sizeof parent + 256];
        snprintf(root, sizeof root, "%s/%s", parent, e->d_name);
        st = visit(tr, root);
    }
    closedir(d);
    return st;
}

static ts_status train_check_root(trainer *tr, const char *root) {
    char name[CKPT_DIR_NAME_LEN];
    if (!ckpt_dir_find_any(root, name)) return TS_OK;
    log_error("%s: holds checkpoints of an earlier run (%s); a fresh start does not mix with "
              "them: continue that run with --resume auto, start this one under another "
              "run.name, remove %s/ckpt, or set run.overwrite = true to replace that run",
              root, name, tr->run_dir);
    return TS_ERR_INPUT;
}

ts_status train_ckpt_check_fresh(trainer *tr) {
    return tr->cfg.run.overwrite ? TS_OK : train_ckpt_roots(tr, train_check_root);
}

// run.overwrite: every step directory of root goes (links as links, never followed)
static ts_status train_overwrite_root(trainer *tr, const char *root) {
    (void)tr;
    int removed = 0;
    ts_status st = ckpt_dir_remove_all(root, &removed);
    if (removed)
        log_warn("run.overwrite: removed %d checkpoint%s of an earlier run from %s", removed,
                 removed == 1 ? "" : "s", root);
    if (st != TS_OK)
        log_error("run.overwrite: %s: the earlier run's checkpoints could not all be removed",
                  root);
    return st;
}

ts_status train_ckpt_commit(trainer *tr, int overwrite) {
    if (overwrite) TS_CHECK(train_ckpt_roots(tr, train_overwrite_root));
    if (tr->host_leader) ckpt_dir_clean_leftovers(tr->ckpt_root); // a killed process left them
    return TS_OK;
}

// this rank's moments into whole zeroed host buffers m, v (n_params each), at their offsets
static void train_moments_to_host(trainer *tr, float *m, float *v) {
    const optim_state *o = &tr->opt;
    for (int i = 0; i < o->n_ranges; i++) {
        if (!o->count[i]) continue;
        tr->be->to_host(tr->be, m + o->first[i], o->m + o->moment_at[i],
                        o->count[i] * sizeof(real));
        tr->be->to_host(tr->be, v + o->first[i], o->v + o->moment_at[i],
                        o->count[i] * sizeof(real));
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

// local SGD: every rank's state (train_outer_pack), gathered (all ranks take part); a writer
// keeps it in its snapshot
static ts_status train_outer_snapshot(trainer *tr) {
    comm *c = tr->comm;
    unsigned char *mine = NULL, *all = NULL;
    size_t len = 0;
    size_t *lens = ts_calloc((size_t)c->size, sizeof(size_t), "local SGD state lengths");
    ts_status st = train_outer_pack(tr, &mine, &len);
    if (st == TS_OK) st = codec_blob_gather(c, mine, len, &all, lens);
    free(mine);
    if (st == TS_OK && tr->ckpt_writer) {
        ckpt_codec_state *os = &tr->writer.outer; // the previous save is done
        ckpt_codec_state_free(os);
        snprintf(os->name, sizeof os->name, "%s", train_outer_state_name());
        os->world = c->size;
        os->all = all;
        os->lens = lens;
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
    uint64_t sent0 = c->stats.bytes_sent, recv0 = c->stats.bytes_recv;
    if (codec_has_state(tr->codec)) TS_CHECK(train_codec_snapshot(tr)); // the same on all ranks
    if (tr->outer.on) TS_CHECK(train_outer_snapshot(tr));
    tr->ckpt_sent += c->stats.bytes_sent - sent0;
    tr->ckpt_recv += c->stats.bytes_recv - recv0;
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
        uint64_t s0 = c->stats.bytes_sent, r0 = c->stats.bytes_recv;
        TS_CHECK(c->all_reduce_sum_f32(c, m, n));
        TS_CHECK(c->all_reduce_sum_f32(c, v, n));
        tr->ckpt_sent += c->stats.bytes_sent - s0;
        tr->ckpt_recv += c->stats.bytes_recv - r0;
    }
    if (!tr->ckpt_writer) return TS_OK;
    // the shared weights: in local SGD the anchor (the ranks' own are in the /outer state)
    if (tr->outer.on)
        memcpy(tr->writer.w, tr->outer.anchor, n * sizeof(float));
    else
        tr->be->to_host(tr->be, tr->writer.w, tr->model.master, n * sizeof(real));
    train_balance_snapshot(tr);
    ckpt_state_meta meta = {step,
                            c->size,
                            cfg->train.global_batch,
                            tr->opt.t,
                            cfg->run.seed,
                            tr->bal.cursor,
                            tr->writer.codec.name[0] ? &tr->writer.codec : NULL,
                            tr->writer.outer.name[0] ? &tr->writer.outer : NULL,
                            tr->writer.balance.name[0] ? &tr->writer.balance : NULL};
    *stall_ms = (ts_now() - t0) * 1e3;
    return ckpt_writer_start(&tr->writer, tr->ckpt_root, &tr->model, cfg, &meta, &tr->identity,
                             *stall_ms, waited * 1e3, step_ms);
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

// The config a checkpoint was written with, parsed (quietly: the caller says what went wrong);
// 0 when it cannot be read.
static int train_ckpt_config(const char *dir, tessera_config *out) {
    log_set_quiet_errors(1);
    char *text = ckpt_state_read_config(dir);
    config_defaults(out);
    int ok = text && config_parse_text(out, text, strlen(text), CKPT_STATE_FILE) == TS_OK;
    log_set_quiet_errors(0);
    free(text);
    return ok;
}

// "[section] key = A in the checkpoint, B here (and N more keys)", or "" when the identity keys
// of dir's config equal this run's (or it cannot be read)
static void train_ckpt_diff(trainer *tr, const char *dir, char *out, size_t len) {
    tessera_config theirs;
    out[0] = '\0';
    if (!train_ckpt_config(dir, &theirs)) return;
    char first[700];
    int n = ckpt_identity_diff(&theirs, &tr->cfg, first, sizeof first);
    if (n > 1)
        snprintf(out, len, "%s (and %d more key%s)", first, n - 1, n > 2 ? "s" : "");
    else if (n == 1)
        snprintf(out, len, "%s", first);
}

// The holder: read the chosen step directory into whole host buffers and check it fits the run.
// A checkpoint of another identity (a path the user gave; or one written before identities) is
// continued with this config, with a warning naming what changed.
static ts_status train_resume_read(trainer *tr, const char *dir, const ckpt_identity *found,
                                   ckpt_state_meta *meta, float *w, float *m, float *v) {
    TS_CHECK(ckpt_state_load(dir, &tr->model, &tr->cfg, meta, w, m, v));
    if (meta->step > tr->cfg.train.steps) {
        log_error("%s: checkpoint at step %d is past [train] steps = %d (expected steps >= %d "
                  "to resume it)",
                  dir, meta->step, tr->cfg.train.steps, meta->step);
        return TS_ERR_INPUT;
    }
    if (found->lineage != 0 && ckpt_identity_same_run(found, &tr->identity)) return TS_OK;
    char diff[800];
    train_ckpt_diff(tr, dir, diff, sizeof diff);
    if (diff[0])
        log_warn("%s: written with %s; the run continues with this config (a changed seed, "
                 "batch or data changes the data order)",
                 dir, diff);
    return TS_OK;
}

// No checkpoint of this run anywhere, but `dir` (on this rank) holds one of another run: the one
// error line of the refused resume
static void train_resume_refuse(trainer *tr, const char *dir) {
    char diff[800], how[CKPT_DIR_PATH_MAX + 100];
    train_ckpt_diff(tr, dir, diff, sizeof diff);
    if (strncmp(diff, "[model]", 7) == 0)
        snprintf(how, sizeof how, "a resume needs the same [model]");
    else
        snprintf(how, sizeof how,
                 "resume it by its path (--resume %s) to continue with this config", dir);
    log_error("%s: written by another run (%s); --resume auto continues only checkpoints of this "
              "run (the keys a resume may change are listed in docs/checkpoint-format.md): %s, or "
              "start a new run under another run.name",
              dir, diff[0] ? diff : "its seed or config differs", how);
}

// the lowest rank whose value equals the agreed maximum (-1 when none: the caller checks first)
static ts_status train_lowest_with(comm *c, int mine, int agreed, int *who) {
    int w = mine == agreed ? -c->rank : -c->size;
    TS_CHECK(c->all_reduce_max_i32(c, &w, 1));
    *who = -w;
    return TS_OK;
}

// Local SGD state from the holder's checkpoint (s: the holder's /outer state) to every rank.
// The holder decides: state of the same kind from a world of the same size gives every rank its
// own; another world size gives every rank rank 0's (inner moments; with streaming the ranks
// continue from the anchor); none (a checkpoint of plain data parallelism) leaves the outer
// momentum at zero and the inner moments those of the checkpoint.
static ts_status train_outer_restore(trainer *tr, int holder, const ckpt_codec_state *s,
                                     const char *what) {
    comm *c = tr->comm;
    int64_t head[3] = {0, 0, 0}; // usable, same world, bytes
    if (c->rank == holder) {
        head[0] = s->name[0] && strcmp(s->name, train_outer_state_name()) == 0;
        head[1] = head[0] && s->world == c->size;
        for (int r = 0; head[0] && r < s->world; r++)
            head[2] += (int64_t)s->lens[r];
        if (!head[0])
            log_warn("%s: holds no local SGD state: the outer momentum starts at zero, every "
                     "rank's inner optimizer from the checkpoint's moments",
                     what);
        else if (!head[1])
            log_warn("%s: local SGD state of %d ranks, this run has %d: every rank continues "
                     "from the anchor with rank 0's inner optimizer state%s",
                     what, s->world, c->size,
                     tr->outer.n_frag > 1 ? " (streaming: the inner steps since each fragment's "
                                            "last sync are dropped, their samples only partly "
                                            "in the weights)"
                                          : "");
    }
    TS_CHECK(c->broadcast(c, head, sizeof head, holder));
    if (!head[0]) return TS_OK;
    int world = 0;
    if (c->rank == holder) world = s->world;
    TS_CHECK(c->broadcast(c, &world, sizeof world, holder));
    uint64_t *len = ts_calloc((size_t)world, sizeof(uint64_t), "local SGD state lengths");
    unsigned char *buf = c->rank == holder ? NULL : ts_malloc(head[2] ? head[2] : 1, "state");
    if (c->rank == holder)
        for (int r = 0; r < world; r++)
            len[r] = s->lens[r];
    ts_status st = c->broadcast(c, len, (size_t)world * sizeof(uint64_t), holder);
    const unsigned char *all = c->rank == holder ? s->all : buf;
    if (st == TS_OK) st = c->broadcast(c, (void *)all, (size_t)head[2], holder);
    if (st == TS_OK) {
        int same = (int)head[1], me = same ? c->rank : 0;
        size_t at = 0;
        for (int r = 0; r < me; r++)
            at += (size_t)len[r];
        st = train_agree(
            c, train_outer_unpack(tr, all + at, (size_t)len[me], all, (size_t)len[0], same, what));
    }
    free(len);
    free(buf);
    return st;
}

// run.resume. "auto": every rank looks in its own checkpoint root for the newest intact step of
// this run (ckpt_dir_pick), the ranks agree on the newest step anyone holds, and the lowest rank
// holding it reads it; when no rank holds one but some hold another run's, the resume is refused
// (exit 2). A path: rank 0 reads it. The reader broadcasts weights and whole moments (whatever
// the world size that wrote them) and the lineage the run continues; each rank keeps the moments
// of the ranges it owns.
ts_status train_resume(trainer *tr) {
    const char *spec = tr->cfg.run.resume;
    if (!spec[0]) return TS_OK;
    comm *c = tr->comm;
    int by_path = strcmp(spec, "auto") != 0;
    char dir[CKPT_DIR_PATH_MAX] = "";
    ckpt_identity found = {0};
    ts_status mine = TS_OK;
    ckpt_dir_choice *choice = ts_calloc(1, sizeof *choice, "checkpoint choice");
    if (by_path && c->rank == 0) {
        mine = ckpt_dir_check_path(spec, &found);
        snprintf(dir, sizeof dir, "%s", spec);
    } else if (!by_path) {
        ckpt_dir_pick(tr->ckpt_root, &tr->identity, choice);
        snprintf(dir, sizeof dir, "%s", choice->dir);
        found = choice->id;
    }
    ts_status st = train_agree(c, mine); // only a path can fail (rank 0): it has said why

    int holder = 0;
    if (st == TS_OK && !by_path) {
        int newest = choice->step, other = choice->other_step;
        st = c->all_reduce_max_i32(c, &newest, 1);
        if (st == TS_OK && newest < 0) st = c->all_reduce_max_i32(c, &other, 1);
        if (st == TS_OK && newest < 0 && other >= 0) {
            // another run's checkpoints only: the lowest rank holding the newest says so
            int who = 0;
            st = train_lowest_with(c, choice->other_step, other, &who);
            if (st == TS_OK && who == c->rank) train_resume_refuse(tr, choice->other_dir);
            if (st == TS_OK) st = TS_ERR_INPUT;
        } else if (st == TS_OK && newest < 0) {
            log_warn("run.resume = \"auto\": no intact checkpoint of this run in %s/ckpt/<host> "
                     "of any rank; starting fresh",
                     tr->run_dir);
            free(choice);
            return TS_OK;
        }
        if (st == TS_OK) st = train_lowest_with(c, choice->step, newest, &holder);
    }
    free(choice);
    TS_CHECK(st);

    size_t n = tr->model.n_params;
    float *w = ts_calloc(n, sizeof(float), "resumed weights");
    float *m = ts_calloc(n, sizeof(float), "resumed moments");
    float *v = ts_calloc(n, sizeof(float), "resumed moments");
    ckpt_codec_state codec_state;   // the holder's: every rank's codec state in the checkpoint
    ckpt_codec_state outer_state;   // and every rank's local SGD state
    ckpt_codec_state balance_state; // and the balancing state
    ckpt_state_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.codec = &codec_state;
    meta.outer = &outer_state;
    meta.balance = &balance_state;
    mine = c->rank == holder ? train_resume_read(tr, dir, &found, &meta, w, m, v) : TS_OK;
    if (c->rank != holder || mine != TS_OK) {
        memset(&codec_state, 0, sizeof codec_state);
        memset(&outer_state, 0, sizeof outer_state);
        memset(&balance_state, 0, sizeof balance_state);
    }
    st = train_agree(c, mine); // only the holder can fail: it has said why
    int head[2] = {meta.step, meta.opt_t};
    uint64_t lineage = found.lineage;
    if (st == TS_OK) st = c->broadcast(c, head, sizeof head, holder);
    if (st == TS_OK) st = c->broadcast(c, &lineage, sizeof lineage, holder);
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
        tr->be->to_device(tr->be, tr->model.master, w, n * sizeof(real));
        if (tr->outer.on) memcpy(tr->outer.anchor, w, n * sizeof(float));
        model_sync_params(&tr->model);
        const optim_state *o = &tr->opt;
        for (int i = 0; i < o->n_ranges; i++) {
            if (!o->count[i]) continue;
            tr->be->to_device(tr->be, o->m + o->moment_at[i], m + o->first[i],
                              o->count[i] * sizeof(real));
            tr->be->to_device(tr->be, o->v + o->moment_at[i], v + o->first[i],
                              o->count[i] * sizeof(real));
        }
        tr->opt.t = head[1];
        tr->start_step = head[0];
    }
    // local SGD: each rank's inner optimizer state (its own, or rank 0's when the world size
    // changed) and the outer momentum; after the shared moments, which it replaces
    if (st == TS_OK && tr->outer.on) st = train_outer_restore(tr, holder, &outer_state, dir);
    ckpt_codec_state_free(&outer_state);
    // the samples given back and the cursor; the speeds and shares at the same world size
    if (st == TS_OK)
        st = train_balance_restore(tr, holder, &balance_state, meta.next_sample, meta.world, dir);
    ckpt_codec_state_free(&balance_state);
    if (st == TS_OK) {
        tr->identity.lineage = lineage; // the run continues the checkpoint's lineage
        if (by_path)
            log_info("resumed from step %d (%s, read by rank 0)", head[0], dir);
        else
            log_info("resumed from step %d (held by rank %d on host %s: %s)", head[0], holder,
                     train_host_of(tr, holder), dir);
        log_info("lineage %016" PRIx64 "%s", lineage,
                 lineage ? "" : " (continues checkpoints written before run identities)");
    }
    free(w);
    free(m);
    free(v);
    return st;
}
