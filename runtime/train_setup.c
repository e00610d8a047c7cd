// train_setup.c — the trainer's set-up and tear-down: the config (rank 0 reads the file and
// broadcasts its text, so nodes need no shared disk and every rank reaches the same verdict on it;
// only rank 0 prints errors), threads, backend, run directory, data, model, gradient codec,
// reducer, optimizer, checkpoints and resume.
#define _GNU_SOURCE // sched_getaffinity
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collectives/codec.h"
#include "collectives/comm.h"
#include "collectives/reducer.h"
#ifdef TESSERA_HAVE_CUDA
#include "kernels/cuda/backend_cuda.h"
#endif
#include "base/env.h"
#include "base/fs.h"
#include "runtime/ckpt.h"
#include "runtime/ckpt_state.h"
#include "runtime/ckpt_writer.h"
#include "runtime/config.h"
#include "runtime/data.h"
#include "runtime/fault.h"
#include "runtime/optim.h"
#include "runtime/sample.h"
#include "runtime/train_internal.h"

void trainer_print_usage(FILE *out) {
    fprintf(out,
            "usage: tessera train CONFIG [--section.key=value ...] [--resume auto|PATH]\n"
            "       mpirun -np N tessera train CONFIG [...]\n"
            "\n"
            "Trains a GPT-2 model as described by the config file; every key can be overridden on\n"
            "the command line. The run directory (run.out_dir/run.name) receives config.toml (the\n"
            "resolved config), metrics.jsonl, train.log and model.h5.\n\nkeys:\n");
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

// rank 0 creates the run directory and its files: the resolved config, metrics, the log. A
// model.h5 left by an earlier run of the same name is removed, so the directory never pairs new
// metrics with old weights.
static ts_status train_open_run_dir(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    snprintf(tr->run_dir, sizeof tr->run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
    if (tr->comm->rank != 0) return TS_OK;
    TS_CHECK(fs_mkdir_p(tr->run_dir, "[run] out_dir"));
    char path[sizeof tr->run_dir + 32];
    snprintf(path, sizeof path, "%s/model.h5", tr->run_dir);
    if (unlink(path) != 0 && errno != ENOENT) {
        log_error("%s: cannot remove the weights of an earlier run: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    snprintf(path, sizeof path, "%s/config.toml", tr->run_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        config_write(cfg, f);
        if (fclose(f) != 0) f = NULL;
    }
    // a resumed run appends: the metrics and log of the steps before its checkpoint stay
    const char *mode = cfg->run.resume[0] ? "a" : "w";
    if (f) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", tr->run_dir);
        tr->metrics = fopen(path, mode);
    }
    if (tr->metrics) {
        snprintf(path, sizeof path, "%s/train.log", tr->run_dir);
        tr->log_file = fopen(path, mode);
    }
    if (!tr->log_file) {
        log_error("%s: cannot write: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    log_set_file(tr->log_file);
    return TS_OK;
}

// one status for all ranks: the worst (design invariant 5: shared decisions are agreed)
ts_status train_agree(comm *c, ts_status mine) {
    int v = (int)mine;
    ts_status st = c->all_reduce_max_i32(c, &v, 1);
    return st != TS_OK ? st : (ts_status)v;
}

// "auto": CUDA when tessera was built with it and this host has a GPU, else the CPU
static ts_status train_pick_backend(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    int want_cuda = strcmp(cfg->run.backend, "cuda") == 0;
    tr->threads = train_pick_threads(cfg);
    backend_cpu_set_threads(tr->threads); // the CPU also serves the CUDA backend's host work
#ifdef TESSERA_HAVE_CUDA
    int gpus = backend_cuda_device_count();
    if (want_cuda || (strcmp(cfg->run.backend, "auto") == 0 && gpus > 0)) {
        if (gpus == 0) {
            log_error("[run] backend: \"cuda\" requested but no CUDA device is usable on this "
                      "host (expected \"auto\" or \"cpu\" here)");
            return TS_ERR_INPUT;
        }
        const char *lr = env_get("OMPI_COMM_WORLD_LOCAL_RANK");
        int device = (lr ? atoi(lr) : 0) % gpus; // ranks on one host take its GPUs in turn
        ts_dtype dt = strcmp(cfg->run.precision, "fp32") == 0 ? TS_F32 : TS_BF16;
        return backend_cuda_create(&tr->be, dt, device);
    }
#else
    if (want_cuda) {
        log_error("[run] backend: \"cuda\" requested but this build of tessera has no CUDA "
                  "backend (expected \"auto\" or \"cpu\"; build where the CUDA toolkit is "
                  "installed)");
        return TS_ERR_INPUT;
    }
#endif
    tr->be = backend_cpu();
    return TS_OK;
}

static ts_status train_setup(trainer *tr) {
    tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    c->timeout_s = cfg->comm.timeout_s;

    ts_status st;
    TRAIN_AGREE_QUIET(c, train_pick_backend(tr), st);
    TS_CHECK(st);
    config_batch_share(cfg->train.global_batch, c->size, c->rank, &tr->share, &tr->offset);
    tr->micro = tr->share < cfg->train.micro_batch ? tr->share : cfg->train.micro_batch;
    TRAIN_AGREE_QUIET(c, train_open_run_dir(tr), st);
    TS_CHECK(st);
    // every rank may leave a status file there (<run_dir>/rank-N.status) when it gives up
    TS_CHECK(train_agree(c, c->rank != 0 ? fs_mkdir_p(tr->run_dir, "[run] out_dir") : TS_OK));
    status_file_set_dir(tr->run_dir);
    char host[TRAIN_HOST_MAX]; // named in the status file
    train_host_name(host);
    status_file_set_host(host);
    // this run's identity in the sample audit: rank 0's wall clock at start, the same on all
    // ranks, so that two runs resumed from the same step are told apart and ordered
    if (c->rank == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        tr->run_id = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    }
    TS_CHECK(c->broadcast(c, &tr->run_id, sizeof tr->run_id, 0));
    if (cfg->comm.trace && c->rank == 0) {
        char path[sizeof tr->run_dir + 32];
        snprintf(path, sizeof path, "%s/comm_trace.jsonl", tr->run_dir);
        tr->trace = fopen(path, "w");
    }
    log_info("run directory: %s", tr->run_dir);
    if (tr->be->act_dtype == TS_F32 && strcmp(tr->be->name, "cpu") == 0)
        log_info("backend: cpu, %d thread%s per rank, %d rank%s (%s communicator)", tr->threads,
                 tr->threads == 1 ? "" : "s", c->size, c->size == 1 ? "" : "s", c->name);
    else
        log_info("backend: %s (%s, %s), %d rank%s (%s communicator)", tr->be->name, tr->be->device,
                 ts_dtype_name(tr->be->act_dtype), c->size, c->size == 1 ? "" : "s", c->name);

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

    gpt2_config mc = {cfg->model.layers,  cfg->model.heads, cfg->model.width,
                      cfg->model.seq_len, cfg->model.vocab, gpt2_padded_vocab(cfg->model.vocab)};
    size_t n_params;
    gpt2_param_table(&mc, NULL, 0, &n_params);
    // AdamW moments (a 1/size share of them with ZeRO-1), counted in the fit check
    size_t owned = cfg->comm.zero_stage == 1 ? n_params / c->size + 64 : n_params;
    size_t optim_bytes = 2 * owned * sizeof(real);
    TS_CHECK(train_agree(c, gpt2_create_ex(&tr->model, &mc, tr->be, tr->micro, optim_bytes)));
    if (c->rank == 0) gpt2_init_weights(&tr->model, (uint64_t)cfg->run.seed);
    // rank 0's weights for everyone (the communicator works on host buffers: a device backend's
    // weights go through a host copy)
    if (c->size > 1) {
        int device_memory = strcmp(tr->be->name, "cpu") != 0;
        real *w = device_memory ? ts_malloc(n_params * sizeof(real), "weights") : tr->model.master;
        if (device_memory) tr->be->to_host(w, tr->model.master, n_params * sizeof(real));
        st = c->broadcast(c, w, n_params * sizeof(real), 0);
        if (device_memory && st == TS_OK)
            tr->be->to_device(tr->model.master, w, n_params * sizeof(real));
        if (device_memory) free(w);
        TS_CHECK(st);
        gpt2_sync_params(&tr->model);
    }
    TS_CHECK(codec_create(&tr->codec, cfg->comm.codec, c->rank, c->size, n_params));
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
    log_info("optimizer: AdamW, %s, %d bucket%s of <= %.2f MiB%s; optimizer state %.2f MiB on "
             "this rank",
             cfg->comm.zero_stage == 1 ? "ZeRO-1 (state sharded over ranks)"
                                       : "state on every rank",
             tr->red.n_buckets, tr->red.n_buckets == 1 ? "" : "s", cfg->comm.bucket_mb,
             cfg->comm.overlap ? ", reduced during backward" : "",
             (double)tr->opt.n_owned * 2 * sizeof(real) / 1048576.0);
    log_info("model: GPT-2, %d layers, %d heads, width %d, context %d, vocabulary %d (padded "
             "%d): %zu parameters",
             mc.layers, mc.heads, mc.width, mc.seq_len, mc.vocab, tr->model.cfg.padded_vocab,
             tr->model.n_params);
    log_info("batch: %d sequences per step = %d on this rank (rank 0) in micro-batches of %d",
             cfg->train.global_batch, tr->share, tr->micro);

    TS_CHECK(train_ckpt_setup(tr));
    TS_CHECK(train_resume(tr));
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
    if (tr->model.be) optim_destroy(&tr->opt, &tr->model);
    gpt2_destroy(&tr->model);
    dataset_close(&tr->train);
    dataset_close(&tr->val);
    tokenizer_free(&tr->tok);
    reducer_destroy(&tr->red);
    codec_destroy(tr->codec);
    if (tr->trace) fclose(tr->trace);
    if (tr->samples) fclose(tr->samples);
    free(tr->seq_buf);
    free(tr->inputs);
    free(tr->targets);
    free(tr->hosts);
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
