// train.c — `tessera train`: configuration, set-up, the data-parallel training loop, output.
//
// One step: every rank runs forward/backward over its share of the global batch (in
// micro-batches), with the loss scaled by 1/(global_batch*T) so the summed gradient is the mean
// over the global batch's tokens (design invariant 2); gradients are summed over ranks; all
// ranks then hold identical gradients, so the finite-check, the clipping and the AdamW update
// are the same everywhere and parameters stay in sync without a broadcast.
#define _GNU_SOURCE // sched_getaffinity
#include "train.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../collectives/comm.h"
#include "../collectives/reducer.h"
#ifdef TESSERA_HAVE_CUDA
#include "../kernels/cuda/backend_cuda.h"
#endif
#include "ckpt.h"
#include "ckpt_state.h"
#include "ckpt_writer.h"
#include "config.h"
#include "data.h"
#include "env.h"
#include "fault.h"
#include "optim.h"
#include "sample.h"
#include "train_internal.h"

// ---------------------------------------------------------------------------------------------
// configuration: rank 0 reads the file and broadcasts its text, so nodes need no shared disk and
// every rank reaches the same verdict on it; only rank 0 prints errors.

static void train_usage(FILE *out) {
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

static ts_status mkdir_p(const char *path) {
    char buf[CFG_STR + 160];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) goto fail;
    return TS_OK;
fail:
    log_error("[run] out_dir: cannot create directory %s: %s", buf, strerror(errno));
    // a path the user gave that cannot exist is bad input; a full or failing disk is not
    return errno == ENOSPC || errno == EIO ? TS_ERR_SYSTEM : TS_ERR_INPUT;
}

// rank 0 creates the run directory and its files: the resolved config, metrics, the log. A
// model.h5 left by an earlier run of the same name is removed, so the directory never pairs new
// metrics with old weights.
static ts_status train_open_run_dir(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    snprintf(tr->run_dir, sizeof tr->run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
    if (tr->comm->rank != 0) return TS_OK;
    TS_CHECK(mkdir_p(tr->run_dir));
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
    TS_CHECK(train_agree(c, c->rank != 0 ? mkdir_p(tr->run_dir) : TS_OK));
    comm_status_set_dir(tr->run_dir);
    char host[TRAIN_HOST_MAX]; // named in the status file
    train_host_name(host);
    comm_status_set_host(host);
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
    TS_CHECK(reducer_create(&tr->red, c, tr->be, tr->model.grads, n_params, cfg->comm.bucket_mb,
                            cfg->comm.zero_stage == 1, cfg->comm.overlap));
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
    if (tr->trace) fclose(tr->trace);
    if (tr->samples) fclose(tr->samples);
    free(tr->seq_buf);
    free(tr->inputs);
    free(tr->targets);
    free(tr->hosts);
}

// ---------------------------------------------------------------------------------------------
// the loop

// split (B, T+1) sequences into inputs and targets
static void split_batch(trainer *tr, int B) {
    int T = tr->cfg.model.seq_len;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            tr->inputs[b * T + t] = tr->seq_buf[b * (T + 1) + t];
            tr->targets[b * T + t] = tr->seq_buf[b * (T + 1) + t + 1];
        }
}

// forward+backward over this rank's share of step `step`; returns the summed token loss
static int g_fault_step; // the step in progress, for the "inside the reduction" fault point

static ts_status train_grads_ready(void *ctx, size_t ready_from) {
    fault_point("inside", g_fault_step);
    return reducer_grads_ready((reducer *)ctx, ready_from);
}

// forward+backward over this rank's share of step `step` (summed token loss into *loss_sum);
// the last micro-step's backward hands each finished bucket to the reducer, which sums it over
// ranks while backward goes on (only the last micro-step communicates)
static ts_status train_accumulate(trainer *tr, int step, double *loss_sum) {
    const tessera_config *cfg = &tr->cfg;
    int T = cfg->model.seq_len;
    real dloss = (real)(1.0 / ((double)cfg->train.global_batch * T));
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
    gpt2_zero_grad(&tr->model);
    for (int done = 0; done < tr->share; done += tr->micro) {
        int B = tr->share - done < tr->micro ? tr->share - done : tr->micro;
        for (int b = 0; b < B; b++) {
            uint64_t g = (uint64_t)step * cfg->train.global_batch + tr->offset + done + b;
            dataset_sample(&tr->train, (uint64_t)cfg->run.seed, g, tr->seq_buf + b * (T + 1));
            if (tr->samples) fprintf(tr->samples, "%d %llu\n", step + 1, (unsigned long long)g);
        }
        split_batch(tr, B);
        *loss_sum += gpt2_forward(&tr->model, tr->inputs, tr->targets, B, T, dloss);
        int last = done + tr->micro >= tr->share;
        if (last) {
            reducer_begin(&tr->red);
            tr->model.grads_ready = train_grads_ready;
            tr->model.grads_ready_ctx = &tr->red;
        }
        ts_status st = gpt2_backward(&tr->model);
        tr->model.grads_ready = NULL;
        TS_CHECK(st);
    }
    if (tr->samples) fflush(tr->samples); // the audit must outlive a crash (killed ranks too)
    double t1 = ts_now();
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

// mean validation loss (nats/token) over eval.batches global batches of the validation set
static ts_status train_validate(trainer *tr, double *out) {
    const tessera_config *cfg = &tr->cfg;
    int T = cfg->model.seq_len, GB = cfg->train.global_batch;
    double acc[2] = {0, 0}; // loss sum, tokens
    for (int batch = 0; batch < cfg->eval.batches; batch++) {
        for (int done = 0; done < tr->share; done += tr->micro) {
            int B = tr->share - done < tr->micro ? tr->share - done : tr->micro;
            for (int b = 0; b < B; b++) {
                uint64_t i = ((uint64_t)batch * GB + tr->offset + done + b) % tr->val.n_seq;
                dataset_sequence(&tr->val, i, tr->seq_buf + b * (T + 1));
            }
            split_batch(tr, B);
            acc[0] += gpt2_forward(&tr->model, tr->inputs, tr->targets, B, T, 0);
            acc[1] += (double)B * T;
        }
    }
    TS_CHECK(tr->comm->all_reduce_sum_f64(tr->comm, acc, 2));
    *out = acc[0] / acc[1];
    return TS_OK;
}

static void format_duration(double s, char *buf, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

// Planned stops. mpirun forwards SIGUSR1 and SIGUSR2 to the ranks without escalating (SIGTERM to
// mpirun kills them within about two seconds), and a file <run_dir>/STOP is read by every rank
// each step. Either raises this rank's request; the step's loss sum spreads it to all ranks, which
// finish the step, checkpoint, and exit 0.
static volatile sig_atomic_t g_stop_signal;

static void train_on_stop_signal(int sig) {
    (void)sig;
    g_stop_signal = 1;
}

static int train_stop_requested(const trainer *tr) {
    if (g_stop_signal) return 1;
    char path[sizeof tr->run_dir + 16];
    snprintf(path, sizeof path, "%s/STOP", tr->run_dir);
    return access(path, F_OK) == 0;
}

static ts_status train_loop(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    int steps = cfg->train.steps, zero = cfg->comm.zero_stage == 1;
    double tokens_per_step = (double)cfg->train.global_batch * cfg->model.seq_len;
    double t_start = ts_now(), t_window = t_start, loss_window = 0;
    int window_steps = 0, skipped = 0;
    double val_loss = NAN;
    // accounting over the log window
    double w_comm = 0;
    uint64_t sent0 = c->stats.bytes_sent, recv0 = c->stats.bytes_recv;
    double wait0 = c->stats.wait_s;
    tr->t_compute = tr->t_wait = 0;

    int done_steps = tr->start_step; // the last completed step (a stop may end the loop early)
    for (int step = tr->start_step; step < steps; step++) {
        comm_status_set_step(step + 1);
        double t_step = ts_now();
        double lr = optim_lr_at(cfg, step);
        double loss_sum;
        fault_point("before", step + 1);
        g_fault_step = step + 1;
        TS_CHECK(train_accumulate(tr, step, &loss_sum));
        if (tr->red.n_buckets > 0 && tr->red.buckets[0].started) {
            double lo = tr->red.buckets[0].t_start, hi = tr->red.buckets[0].t_done;
            for (int b = 1; b < tr->red.n_buckets; b++) {
                if (tr->red.buckets[b].t_start < lo) lo = tr->red.buckets[b].t_start;
                if (tr->red.buckets[b].t_done > hi) hi = tr->red.buckets[b].t_done;
            }
            w_comm += hi - lo;
        }
        // the loss and, with ZeRO-1, the shards' squared gradient norms, in one small sum
        double t0 = ts_now();
        // ... and whether a rank was asked to stop: the request spreads with this collective
        double sums[3] = {loss_sum, zero ? optim_grad_sumsq(&tr->opt, &tr->model) : 0,
                          train_stop_requested(tr) ? 1.0 : 0.0};
        TS_CHECK(c->all_reduce_sum_f64(c, sums, 3));
        fault_point("after", step + 1);
        double loss = sums[0] / tokens_per_step;
        // every rank holds the same summed gradients (or the same summed norm): every rank
        // takes the same decision
        double norm = zero ? sqrt(sums[1]) : optim_grad_norm(&tr->model);
        double t1 = ts_now();
        tr->t_wait += t1 - t0;
        if (!isfinite(norm) || !isfinite(loss)) {
            skipped++;
            log_warn("step %d: non-finite loss or gradient (loss %g, norm %g): step skipped",
                     step + 1, loss, norm);
        } else {
            optim_step(&tr->opt, &tr->model, cfg, lr, norm);
            double t2 = ts_now();
            tr->t_compute += t2 - t1;
            if (zero) {
                TS_CHECK(reducer_gather_params(&tr->red, tr->model.master));
                gpt2_sync_params(&tr->model);
                tr->t_wait += ts_now() - t2;
            }
        }
        loss_window += loss;
        window_steps++;

        int stopping = sums[2] > 0 && step + 1 < steps;
        if (stopping) {
            log_info("stop requested (%s on %d rank%s): stopping after step %d with a checkpoint; "
                     "continue with --resume auto",
                     g_stop_signal ? "signal" : "stop file", (int)sums[2], sums[2] > 1 ? "s" : "",
                     step + 1);
            char path[sizeof tr->run_dir + 16];
            snprintf(path, sizeof path, "%s/STOP", tr->run_dir);
            unlink(path); // served: a resumed run must not stop again at once
            tr->stopped = 1;
        }
        int last = step + 1 == steps || stopping;
        done_steps = step + 1;
        int do_eval = last || (cfg->eval.every > 0 && (step + 1) % cfg->eval.every == 0);
        if (do_eval) TS_CHECK(train_validate(tr, &val_loss));
        // the save's stall is part of this step's time and goes into its metrics line
        int saved = last || (cfg->ckpt.every > 0 && (step + 1) % cfg->ckpt.every == 0);
        double stall_ms = 0;
        if (saved)
            TS_CHECK(train_save_checkpoint(tr, step + 1, (ts_now() - t_step) * 1e3, &stall_ms));
        if (last || (step + 1) % cfg->log.every == 0 || do_eval) {
            double now = ts_now(), dt = (now - t_window) / window_steps;
            double eta = (now - t_start) / (step + 1 - tr->start_step) * (steps - step - 1);
            double compute_ms = tr->t_compute * 1e3 / window_steps;
            double comm_ms = w_comm * 1e3 / window_steps;
            double wait_ms = (c->stats.wait_s - wait0) * 1e3 / window_steps;
            double sent = (double)(c->stats.bytes_sent - sent0) / window_steps;
            double recv = (double)(c->stats.bytes_recv - recv0) / window_steps;
            char eta_s[32], val_s[48] = "", comm_s[48] = "";
            format_duration(eta, eta_s, sizeof eta_s);
            if (do_eval) snprintf(val_s, sizeof val_s, " | val %.4f", val_loss);
            if (c->size > 1)
                snprintf(comm_s, sizeof comm_s, " | comm %.0f%% wait %.0f%%",
                         100.0 * comm_ms / (dt * 1e3), 100.0 * wait_ms / (dt * 1e3));
            log_info("step %*d/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | %.1f ms/step"
                     "%s | ETA %s",
                     (int)snprintf(NULL, 0, "%d", steps), step + 1, steps,
                     loss_window / window_steps, val_s, lr, norm, tokens_per_step / dt, dt * 1e3,
                     comm_s, eta_s);
            if (tr->metrics) {
                fprintf(tr->metrics,
                        "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, "
                        "\"tokens_per_s\": %.1f, \"ms_per_step\": %.3f, \"compute_ms\": %.3f, "
                        "\"comm_ms\": %.3f, \"wait_ms\": %.3f, \"bytes_sent\": %.0f, "
                        "\"bytes_recv\": %.0f, \"elapsed_s\": %.3f",
                        step + 1, loss_window / window_steps, lr, norm, tokens_per_step / dt,
                        dt * 1e3, compute_ms, comm_ms, wait_ms, sent, recv, now - t_start);
                if (do_eval) fprintf(tr->metrics, ", \"val_loss\": %.6f", val_loss);
                if (saved) fprintf(tr->metrics, ", \"ckpt_stall_ms\": %.3f", stall_ms);
                fprintf(tr->metrics, "}\n");
                fflush(tr->metrics);
            }
            t_window = now;
            loss_window = 0;
            window_steps = 0;
            w_comm = 0;
            tr->t_compute = tr->t_wait = 0;
            sent0 = c->stats.bytes_sent;
            recv0 = c->stats.bytes_recv;
            wait0 = c->stats.wait_s;
        }
        if (stopping) break;
    }
    // resumed at the last step: nothing left to train, the final report still needs its loss
    if (tr->start_step >= steps) TS_CHECK(train_validate(tr, &val_loss));
    TS_CHECK(train_ckpt_finish(tr));
    if (skipped) log_warn("%d of %d steps were skipped (non-finite gradients)", skipped, steps);

    // final report: validation loss beside the corpus' unigram entropy (same units)
    if (c->rank == 0) {
        double h = dataset_unigram_entropy(&tr->train, cfg->model.vocab);
        const char *unit = cfg->model.vocab == 256 ? "nats/byte" : "nats/token";
        log_info("final validation loss %.4f %s; unigram entropy of the training data %.4f %s "
                 "(loss = %.0f%% of it)",
                 val_loss, unit, h, unit, 100.0 * val_loss / h);
        char path[sizeof tr->run_dir + 32];
        snprintf(path, sizeof path, "%s/model.h5", tr->run_dir);
        TS_CHECK(ckpt_write_weights(path, &tr->model, done_steps));
        log_info("weights written to %s", path);
    }
    return TS_OK;
}

static void train_sample(trainer *tr) {
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

static const char *train_exit_reason(const trainer *tr, ts_status st) {
    switch (st) {
    case TS_OK: return tr->stopped ? "stopped" : "finished";
    case TS_ERR_INPUT: return "bad_input";
    case TS_ERR_PEER: return "peer_lost";
    case TS_ERR_SYSTEM: return "system";
    case TS_ERR_INTERNAL: break;
    }
    return "internal";
}

// The launcher reads why each rank ended from <run_dir>/rank-R.status (a lost peer's file was
// written where the deadline expired) and, while mpirun still runs, from this line.
static void train_leave_status(const trainer *tr, ts_status st) {
    int rank = tr->comm ? tr->comm->rank : -1;
    if (st != TS_OK)
        log_all("exit %d (%s) at step %ld", ts_exit_code(st), train_exit_reason(tr, st),
                comm_status_step());
    if (st == TS_ERR_PEER) return;
    comm_status_write(rank, train_exit_reason(tr, st), NULL, -1, ts_exit_code(st));
}

int cmd_train(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            train_usage(stdout);
            return TS_EXIT_OK;
        }
    // a file-size limit (ulimit -f) must fail a write with EFBIG, not kill the process: a
    // checkpoint that does not fit is then an ordinary failed save
    signal(SIGXFSZ, SIG_IGN);
    struct sigaction stop = {0};
    stop.sa_handler = train_on_stop_signal;
    sigemptyset(&stop.sa_mask);
    stop.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &stop, NULL);
    sigaction(SIGUSR2, &stop, NULL);
    trainer tr;
    memset(&tr, 0, sizeof tr);
    log_init(0, 1);
    // the config (with comm.init_timeout_s) is read only after MPI is up: start-up gets the
    // key's default deadline
    ts_status st = comm_init(&tr.comm, &argc, &argv, 600.0);
    if (st != TS_OK) return ts_exit_code(st);
    log_init(tr.comm->rank, tr.comm->size);

    log_set_quiet_errors(tr.comm->rank != 0); // every rank parses; one tells the user
    st = train_load_config(&tr, argc, argv);
    if (st == TS_OK) st = fault_init(tr.comm->rank); // the same knob everywhere: same verdict
    log_set_quiet_errors(0);
    if (st == TS_OK) st = train_setup(&tr);
    if (st == TS_OK) st = train_loop(&tr);
    if (st == TS_OK) train_sample(&tr);
    train_teardown(&tr);
    train_leave_status(&tr, st);
    if (st == TS_ERR_PEER) return ts_exit_code(st); // a lost peer would hang MPI_Finalize
    tr.comm->timeout_s = tr.cfg.comm.init_timeout_s > 0 ? tr.cfg.comm.init_timeout_s : 600;
    tr.comm->finalize(tr.comm); // under a watchdog with this deadline
    return ts_exit_code(st);
}
