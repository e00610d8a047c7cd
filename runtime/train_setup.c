// train_setup.c — the trainer's set-up and tear-down: the config (rank 0 reads the file and
// broadcasts its text, so nodes need no shared disk and every rank reaches the same verdict on it;
// only rank 0 prints errors), threads, backend, run directory, data, model, gradient codec,
// reducer, optimizer, checkpoints and resume.
#define _GNU_SOURCE // sched_getaffinity, open_memstream
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/env.h"
#include "base/fs.h"
#include "collectives/codec.h"
#include "collectives/comm.h"
#include "collectives/reducer.h"
#include "kernels/registry.h"
#include "runtime/ckpt.h"
#include "runtime/ckpt_identity.h"
#include "runtime/ckpt_writer.h"
#include "runtime/config.h"
#include "runtime/data.h"
#include "runtime/fault.h"
#include "runtime/model_config.h"
#include "runtime/optim.h"
#include "runtime/sample.h"
#include "runtime/train_internal.h"

void trainer_print_usage(FILE *out) {
    fprintf(out,
            "usage: tessera train CONFIG [--section.key=value ...] [--resume auto|PATH]\n"
            "       mpirun -np N tessera train CONFIG [...]\n"
            "\n"
            "Trains a model (model.arch: GPT-2 by default) as described by the config file;\n"
            "every key can be overridden on the command line. The run directory\n"
            "(run.out_dir/run.name) receives config.toml (the resolved config), metrics.jsonl,\n"
            "train.log and model.h5.\n\nkeys:\n");
    config_print_help(out);
}

static ts_status train_load_config(trainer *tr, int argc, char **argv) {
    comm *c = tr->comm;
    const char *path = NULL;
    TS_CHECK(config_find_path(argc, argv, "train", &path));
    char *text = NULL;
    size_t len = 0;
    int64_t wire_len = -1;
    if (c->rank == 0 && config_read_file(path, &text, &len) == TS_OK) wire_len = (int64_t)len;
    TS_CHECK(c->broadcast(c, &wire_len, sizeof wire_len, 0));
    if (wire_len < 0) return TS_ERR_INPUT; // rank 0 said why
    if (c->rank != 0) text = ts_calloc((size_t)wire_len + 1, 1, "config text");
    ts_status st = c->broadcast(c, text, (size_t)wire_len, 0);
    if (st == TS_OK) {
        config_defaults(&tr->cfg);
        st = config_parse_text(&tr->cfg, text, (size_t)wire_len, path);
    }
    free(text);
    if (st == TS_OK) st = config_apply_args(&tr->cfg, argc, argv, NULL);
    if (st == TS_OK) st = config_validate(&tr->cfg, c->size);
    return st;
}

// threads per rank: the config, or this host's cores divided among the ranks on this host
static int train_pick_threads(const tessera_config *cfg) {
    if (cfg->run.threads > 0) return cfg->run.threads;
    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    int total = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *local = env_get("OMPI_COMM_WORLD_LOCAL_SIZE");
    int local_ranks = local ? atoi(local) : 1;
    if (local_ranks > 1) cores = total / local_ranks; // mpirun may bind each rank to one core
    return cores > 0 ? cores : 1;
}

// ---------------------------------------------------------------------------------------------
// set-up

// The run directory: a start that fails must not wipe an earlier run. Set-up first checks
// everything it can (config, backend, data, tokenizer, model, what the run directory holds, the
// checkpoint to resume) and writes nothing but the empty directory and a status file; only then
// it takes the directory for this run (train_commit_run_dir). Rank 0's log lines until then are
// kept in memory and start train.log.

// rank 0: keep the lines logged from here on until the run directory is committed
static void train_log_buffer(trainer *tr) {
    if (tr->comm->rank != 0) return;
    tr->log_early = open_memstream(&tr->log_early_text, &tr->log_early_len);
    if (!tr->log_early) ts_panic(__FILE__, __LINE__, "open_memstream failed");
    log_set_file(tr->log_early);
}

// the run directory, created when missing (an empty directory replaces nothing): every rank may
// leave its status file there (<run_dir>/rank-N.status)
static ts_status train_make_run_dir(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    snprintf(tr->run_dir, sizeof tr->run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
    return fs_mkdir_p(tr->run_dir, "[run] out_dir");
}

// what an earlier run leaves in the run directory (rank 0's host) and a fresh start would replace
static const char *const train_results[] = {"model.h5", "metrics.jsonl", "train.log"};

// A fresh start (no run.resume) does not replace an earlier run's results unless run.overwrite
// says so: rank 0 looks at the run directory, the first rank of each host at its checkpoint root.
// Reads only.
static ts_status train_check_run_dir(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    if (cfg->run.resume[0]) return TS_OK;
    TS_CHECK(train_ckpt_check_fresh(tr));
    if (tr->comm->rank != 0 || cfg->run.overwrite) return TS_OK;
    for (size_t i = 0; i < sizeof train_results / sizeof *train_results; i++) {
        char path[sizeof tr->run_dir + 32];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", tr->run_dir, train_results[i]);
        if (lstat(path, &sb) != 0) continue;
        log_error("%s: holds the results of an earlier run (%s); a fresh start would replace "
                  "them: continue that run with --resume auto, start this one under another "
                  "run.name, or set run.overwrite = true to replace them",
                  tr->run_dir, train_results[i]);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

// the resolved config as config.toml, durably (temporary name, fsync, rename)
static ts_status train_write_config(trainer *tr) {
    char *text = NULL, path[sizeof tr->run_dir + 32];
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) ts_panic(__FILE__, __LINE__, "open_memstream failed");
    config_write(&tr->cfg, mem);
    fclose(mem);
    snprintf(path, sizeof path, "%s/config.toml", tr->run_dir);
    ts_status st = fs_atomic_write(path, NULL, text, len);
    free(text);
    return st;
}

// run.overwrite: the earlier run's sample audits on this host go with it
static void train_remove_sample_logs(trainer *tr) {
    char pattern[sizeof tr->run_dir + 32];
    snprintf(pattern, sizeof pattern, "%s/samples.rank-*.txt", tr->run_dir);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) return;
    for (size_t i = 0; i < g.gl_pathc; i++)
        if (unlink(g.gl_pathv[i]) != 0 && errno != ENOENT)
            log_warn("%s: cannot remove: %s", g.gl_pathv[i], strerror(errno));
    globfree(&g);
}

// Every check has passed: the run directory becomes this run's. The first rank of each host
// clears its checkpoint root (run.overwrite: the earlier run's checkpoints; always: leftovers of
// interrupted saves). Rank 0 removes model.h5 (an earlier run's, replaced under run.overwrite,
// or this run's before it resumed: the directory never pairs new metrics with old weights),
// writes config.toml, opens metrics.jsonl and train.log (a fresh start rewrites them, a resumed
// run appends) and moves the buffered log lines into train.log.
static ts_status train_commit_run_dir(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    int overwrite = !cfg->run.resume[0] && cfg->run.overwrite;
    TS_CHECK(train_ckpt_commit(tr, overwrite));
    if (overwrite && tr->host_leader) train_remove_sample_logs(tr);
    if (tr->comm->rank != 0) return TS_OK;
    char path[sizeof tr->run_dir + 32];
    snprintf(path, sizeof path, "%s/model.h5", tr->run_dir);
    if (unlink(path) != 0 && errno != ENOENT) {
        log_error("%s: cannot remove the weights of an earlier run: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    TS_CHECK(train_write_config(tr));
    const char *mode = cfg->run.resume[0] ? "a" : "w";
    snprintf(path, sizeof path, "%s/metrics.jsonl", tr->run_dir);
    tr->metrics = fopen(path, mode);
    if (tr->metrics) {
        snprintf(path, sizeof path, "%s/train.log", tr->run_dir);
        tr->log_file = fopen(path, mode);
    }
    if (!tr->log_file) {
        log_error("%s: cannot write: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    fflush(tr->log_early);
    fwrite(tr->log_early_text, 1, tr->log_early_len, tr->log_file);
    fflush(tr->log_file);
    log_set_file(tr->log_file);
    fclose(tr->log_early);
    free(tr->log_early_text);
    tr->log_early = NULL;
    tr->log_early_text = NULL;
    if (cfg->comm.trace) {
        snprintf(path, sizeof path, "%s/comm_trace.jsonl", tr->run_dir);
        tr->trace = fopen(path, "w");
    }
    return TS_OK;
}

// one status for all ranks: the worst (design invariant 5: shared decisions are agreed)
ts_status train_agree(comm *c, ts_status mine) {
    int v = (int)mine;
    ts_status st = c->all_reduce_max_i32(c, &v, 1);
    return st != TS_OK ? st : (ts_status)v;
}

// the backends one could ask for instead of `name`: "auto" and every built one usable here, as
// `"auto", "cpu" or "x"`
static void train_backend_alternatives(const char *name, char *buf, size_t len) {
    const char *alt[16];
    int n = 0;
    alt[n++] = "auto";
    for (int i = 0; i < backend_registry_count() && n < 16; i++) {
        const backend_entry *e = backend_registry_at(i);
        char why[256];
        if (strcmp(e->name, name) != 0 && !e->missing && e->probe(why, sizeof why) > 0)
            alt[n++] = e->name;
    }
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < len; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? " or " : ", ";
        used += (size_t)snprintf(buf + used, len - used, "%s\"%s\"", sep, alt[i]);
    }
}

// run.backend through the registry (kernels/registry.h): "auto" takes the usable backend it
// prefers (a GPU when the build has one and the host too, else the CPU); a named one must be
// built and usable here. Under mpirun the ranks of one host take its devices in turn.
static ts_status train_pick_backend(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    const char *name = cfg->run.backend;
    tr->threads = train_pick_threads(cfg);
    backend_cpu_set_threads(tr->threads); // the CPU also serves a device backend's host work
    const backend_entry *e;
    int devices = 0;
    char why[256] = "", alternatives[256];
    if (strcmp(name, "auto") == 0) {
        e = backend_registry_auto(&devices);
        if (!e) {
            log_error("[run] backend: \"auto\" finds no usable backend on this host");
            return TS_ERR_INPUT;
        }
    } else {
        e = backend_registry_find(name);
        train_backend_alternatives(name, alternatives, sizeof alternatives);
        if (!e) {
            log_error("[run] backend: \"%s\" is not a backend of tessera (expected %s)", name,
                      alternatives);
            return TS_ERR_INPUT;
        }
        if (e->missing) {
            log_error("[run] backend: \"%s\" requested but this build of tessera has no %s "
                      "backend (expected %s; %s)",
                      name, e->title, alternatives, e->missing);
            return TS_ERR_INPUT;
        }
        devices = e->probe(why, sizeof why);
        if (devices <= 0) {
            log_error("[run] backend: \"%s\" requested but %s (expected %s here)", name, why,
                      alternatives);
            return TS_ERR_INPUT;
        }
    }
    const char *lr = env_get("OMPI_COMM_WORLD_LOCAL_RANK");
    int device = (lr ? atoi(lr) : 0) % devices; // ranks on one host take its devices in turn
    ts_dtype dt = strcmp(cfg->run.precision, "fp32") == 0 ? TS_F32 : TS_BF16;
    return e->create(&tr->be, dt, device);
}

static ts_status train_setup(trainer *tr) {
    tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    c->timeout_s = cfg->comm.timeout_s;

    ts_status st;
    train_log_buffer(tr);
    TRAIN_AGREE_QUIET(c, train_pick_backend(tr), st);
    TS_CHECK(st);
    TS_CHECK(train_balance_setup(tr));
    TRAIN_AGREE_QUIET(c, train_make_run_dir(tr), st);
    TS_CHECK(st);
    status_file_set_dir(tr->run_dir);
    char host[TRAIN_HOST_MAX]; // named in the status file
    train_host_name(host);
    status_file_set_host(host);
    // the run id of the sample audit: rank 0's wall clock at start, the same on all ranks, so
    // that two runs resumed from the same step are told apart and ordered; and the lineage a
    // fresh start begins (a resume continues the checkpoint's: train_resume)
    uint64_t ids[2] = {0, 0};
    if (c->rank == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        ids[0] = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
        ids[1] = ckpt_identity_new_lineage(ids[0]);
    }
    TS_CHECK(c->broadcast(c, ids, sizeof ids, 0));
    tr->run_id = ids[0];
    ckpt_identity_of(cfg, ids[1], &tr->identity);
    log_info("run directory: %s", tr->run_dir);
    if (tr->be->host_memory) // the host's threads run the ops
        log_info("backend: %s, %d thread%s per rank, %d rank%s (%s communicator)", tr->be->name,
                 tr->threads, tr->threads == 1 ? "" : "s", c->size, c->size == 1 ? "" : "s",
                 c->name);
    else
        log_info("backend: %s (%s, %s), %d rank%s (%s communicator)", tr->be->name, tr->be->device,
                 ts_dtype_name(tr->be->act_dtype), c->size, c->size == 1 ? "" : "s", c->name);
    TS_CHECK(train_ckpt_setup(tr));

    // data: every rank checks its own copy of the shards; all agree before going on
    int T = cfg->model.seq_len;
    TRAIN_AGREE_QUIET(c, dataset_open(&tr->train, cfg->data.train, T, cfg->model.vocab), st);
    if (st == TS_OK)
        TRAIN_AGREE_QUIET(c, dataset_open(&tr->val, cfg->data.val, T, cfg->model.vocab), st);
    TS_CHECK(st);
    log_info("data: %llu training sequences in %d shard%s, %llu validation sequences of %d tokens",
             (unsigned long long)tr->train.n_seq, tr->train.n_shards,
             tr->train.n_shards == 1 ? "" : "s", (unsigned long long)tr->val.n_seq, T);

    // the tokenizer decodes the end-of-run sample: a bad one is bad input, found before training
    if (cfg->log.sample_tokens > 0 && c->rank == 0) {
        log_set_quiet_errors(0);
        st = tokenizer_load(&tr->tok, cfg->data.tokenizer, cfg->model.vocab);
    }
    TS_CHECK(train_agree(c, cfg->log.sample_tokens > 0 && c->rank == 0 ? st : TS_OK));

    model_shape shape;
    TS_CHECK(train_agree(c, model_config_shape(cfg, &shape)));
    size_t n_params;
    model_param_table(&shape, NULL, 0, &n_params);
    // AdamW moments (a 1/size share of them with ZeRO-1), counted in the fit check
    size_t owned = cfg->comm.zero_stage == 1 ? n_params / c->size + 64 : n_params;
    size_t optim_bytes = 2 * owned * sizeof(real);
    TS_CHECK(train_agree(c, model_create_ex(&tr->model, &shape, tr->be, tr->micro, optim_bytes)));
    if (c->rank == 0) model_init_weights(&tr->model, (uint64_t)cfg->run.seed);
    // rank 0's weights for everyone (the communicator works on host buffers: a device backend's
    // weights go through a host copy)
    if (c->size > 1) {
        int device_memory = !tr->be->host_memory;
        real *w = device_memory ? ts_malloc(n_params * sizeof(real), "weights") : tr->model.master;
        if (device_memory) tr->be->to_host(tr->be, w, tr->model.master, n_params * sizeof(real));
        st = c->broadcast(c, w, n_params * sizeof(real), 0);
        if (device_memory && st == TS_OK)
            tr->be->to_device(tr->be, tr->model.master, w, n_params * sizeof(real));
        if (device_memory) free(w);
        TS_CHECK(st);
        model_sync_params(&tr->model);
    }
    codec_params cp;
    codec_params_default(&cp);
    cp.dense_below = (size_t)cfg->comm.dense_below;
    cp.topk_fraction = cfg->comm.topk_fraction;
    cp.topk_value_bits = strcmp(cfg->comm.topk_values, "int2") == 0 ? 2 : 32;
    cp.powersgd_rank = cfg->comm.powersgd_rank;
    cp.zstd = cfg->comm.zstd;
    codec_tensor *ct = ts_calloc((size_t)tr->model.n_tensors, sizeof *ct, "codec tensor table");
    for (int i = 0; i < tr->model.n_tensors; i++) {
        const model_tensor *t = &tr->model.tensors[i];
        ct[i].offset = t->offset;
        ct[i].rows = (size_t)t->shape[0];
        ct[i].cols = t->ndim == 2 ? (size_t)t->shape[1] : 1;
    }
    cp.tensors = ct;
    cp.n_tensors = tr->model.n_tensors;
    st = codec_create_params(&tr->codec, cfg->comm.codec, c->rank, c->size, n_params, &cp);
    free(ct);
    TS_CHECK(st);
    TS_CHECK(reducer_create(&tr->red, c, tr->codec, tr->be, tr->model.grads, n_params,
                            cfg->comm.bucket_mb, cfg->comm.zero_stage == 1, cfg->comm.overlap));
    if (strcmp(tr->codec->ops->name, "none") != 0)
        log_info("gradient codec: %s (%s)", tr->codec->ops->name, tr->codec->ops->help);
    if (cfg->comm.zero_stage == 1) {
        size_t *first = ts_calloc((size_t)tr->red.n_buckets, sizeof(size_t), "shard ranges");
        size_t *count = ts_calloc((size_t)tr->red.n_buckets, sizeof(size_t), "shard ranges");
        int n = reducer_owned(&tr->red, first, count);
        optim_create_sharded(&tr->opt, &tr->model, first, count, n);
        free(first);
        free(count);
    } else {
        optim_create(&tr->opt, &tr->model);
    }
    size_t largest = 0; // comm.bucket_mb, or a whole tensor larger than that (powersgd)
    for (int b = 0; b < tr->red.n_buckets; b++)
        if (tr->red.buckets[b].count > largest) largest = tr->red.buckets[b].count;
    if (cfg->diloco.inner_steps > 0)
        log_info("optimizer: %s on each rank's own samples (local SGD), optimizer state %.2f MiB "
                 "on this rank",
                 strcmp(cfg->train.optimizer, "sgd") == 0 ? "SGD" : "AdamW",
                 (double)tr->opt.n_owned * 2 * sizeof(real) / 1048576.0);
    else
        log_info("optimizer: %s, %s, %d bucket%s of <= %.2f MiB%s; optimizer state %.2f MiB on "
                 "this rank",
                 strcmp(cfg->train.optimizer, "sgd") == 0 ? "SGD" : "AdamW",
                 cfg->comm.zero_stage == 1 ? "ZeRO-1 (state sharded over ranks)"
                                           : "state on every rank",
                 tr->red.n_buckets, tr->red.n_buckets == 1 ? "" : "s",
                 (double)largest * sizeof(real) / 1048576.0,
                 cfg->comm.overlap ? ", reduced during backward" : "",
                 (double)tr->opt.n_owned * 2 * sizeof(real) / 1048576.0);
    TS_CHECK(train_outer_create(tr));
    char described[256];
    shape.arch->describe(&shape, described, sizeof described);
    log_info("model: %s, %s: %zu parameters", shape.arch->title, described, tr->model.n_params);
    log_info("batch: %d sequences per step = %d on this rank (rank 0) in micro-batches of %d",
             cfg->train.global_batch, tr->share, tr->micro);

    // the inputs are good: what the run directory holds decides whether the run may start there
    TRAIN_AGREE_QUIET(c, train_check_run_dir(tr), st);
    TS_CHECK(st);
    TS_CHECK(train_resume(tr));
    TRAIN_AGREE_QUIET(c, train_commit_run_dir(tr), st);
    TS_CHECK(st);
    // the checkpoint snapshot, once (after the resume, which uses HDF5 itself): writers hold
    // weights and moments; with ZeRO-1 every rank joins the gather of the moments
    int sharded = cfg->comm.zero_stage == 1 && c->size > 1;
    if (tr->ckpt_writer || sharded) {
        ckpt_writer_create(&tr->writer, n_params, tr->ckpt_writer);
        tr->snapshot = 1;
    }

    tr->seq_buf = ts_malloc((size_t)tr->micro * (T + 1) * sizeof(int32_t), "token buffer");
    tr->inputs = ts_malloc((size_t)tr->micro * T * sizeof(int), "inputs");
    tr->targets = ts_malloc((size_t)tr->micro * T * sizeof(int), "targets");

    return TS_OK;
}

static void train_teardown(trainer *tr) {
    ckpt_writer_destroy(&tr->writer); // a pending save is committed before anything goes away
    if (tr->metrics) fclose(tr->metrics);
    log_set_file(NULL);
    if (tr->log_file) fclose(tr->log_file);
    if (tr->log_early) fclose(tr->log_early); // a start that failed: its lines were not kept
    free(tr->log_early_text);
    if (tr->model.be) optim_destroy(&tr->opt, &tr->model);
    model_destroy(&tr->model);
    dataset_close(&tr->train);
    dataset_close(&tr->val);
    tokenizer_free(&tr->tok);
    train_outer_destroy(tr);
    balance_free(&tr->bal);
    reducer_destroy(&tr->red);
    codec_destroy(tr->codec);
    if (tr->trace) fclose(tr->trace);
    if (tr->samples) fclose(tr->samples);
    free(tr->seq_buf);
    free(tr->inputs);
    free(tr->targets);
    free(tr->hosts);
    if (tr->be) tr->be->destroy(tr->be); // last: the model and optimizer memory is freed
    tr->be = NULL;
}

ts_status trainer_open(trainer **out, comm *c, int argc, char **argv) {
    trainer *tr = ts_calloc(1, sizeof *tr, "trainer");
    tr->comm = c;
    *out = tr;
    log_set_quiet_errors(c->rank != 0); // every rank parses; one tells the user
    ts_status st = train_load_config(tr, argc, argv);
    if (st == TS_OK) st = fault_init(c->rank); // the same knob everywhere: same verdict
    log_set_quiet_errors(0);
    if (st == TS_OK) st = train_setup(tr);
    return st;
}

void trainer_close(trainer *tr) {
    if (!tr) return;
    train_teardown(tr);
    free(tr);
}

double trainer_finalize_timeout(const trainer *tr) {
    return tr && tr->cfg.comm.init_timeout_s > 0 ? tr->cfg.comm.init_timeout_s : 600;
}

const char *trainer_exit_reason(const trainer *tr, ts_status st) {
    return st == TS_OK && tr && tr->stopped ? "stopped" : ts_status_reason(st);
}
