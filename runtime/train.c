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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../collectives/comm.h"
#ifdef TESSERA_HAVE_CUDA
#include "../kernels/cuda/backend_cuda.h"
#endif
#include "ckpt.h"
#include "config.h"
#include "data.h"
#include "optim.h"
#include "env.h"
#include "sample.h"

typedef struct {
    tessera_config cfg;
    comm *comm;
    const backend *be;
    int threads;
    gpt2 model;
    optim_state opt;
    dataset train, val;
    int share, offset; // this rank's sequences of each global batch, and where they start
    int micro;         // micro-batch size used on this rank
    int32_t *seq_buf;  // (micro, T+1) host tokens
    int *inputs, *targets;
    char run_dir[CFG_STR + 160];
    FILE *metrics;
    FILE *log_file; // rank 0: every log line of the run, also what only the terminal saw
    tokenizer tok;  // rank 0: decodes the end-of-run sample
    real *staging;  // host copy of the gradients when the backend's memory is a device's
} trainer;

// ---------------------------------------------------------------------------------------------
// configuration: rank 0 reads the file and broadcasts its text, so nodes need no shared disk and
// every rank reaches the same verdict on it; only rank 0 prints errors.

static void train_usage(FILE *out) {
    fprintf(out,
            "usage: tessera train CONFIG [--section.key=value ...]\n"
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
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) continue;
        if (path) {
            log_error("train: unexpected argument \"%s\" (one CONFIG file, then "
                      "--section.key=value overrides)",
                      argv[i]);
            return TS_ERR_INPUT;
        }
        path = argv[i];
    }
    if (!path) {
        log_error("train: missing CONFIG file (usage: tessera train CONFIG "
                  "[--section.key=value ...])");
        return TS_ERR_INPUT;
    }
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
    for (int i = 1; st == TS_OK && i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0) st = config_apply_override(&tr->cfg, argv[i]);
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
    if (f) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", tr->run_dir);
        tr->metrics = fopen(path, "w");
    }
    if (tr->metrics) {
        snprintf(path, sizeof path, "%s/train.log", tr->run_dir);
        tr->log_file = fopen(path, "w");
    }
    if (!tr->log_file) {
        log_error("%s: cannot write: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    log_set_file(tr->log_file);
    return TS_OK;
}

// one status for all ranks: the worst (design invariant 5: shared decisions are agreed)
static ts_status train_agree(comm *c, ts_status mine) {
    int v = (int)mine;
    ts_status st = c->all_reduce_max_i32(c, &v, 1);
    return st != TS_OK ? st : (ts_status)v;
}

// run a step every rank takes on its own input (its copy of the shards) with errors held
// back; if any rank failed, the lowest failing rank prints its error line, once for the job
#define TRAIN_AGREE_QUIET(c, call, res)                                                            \
    do {                                                                                           \
        log_set_quiet_errors(1);                                                                   \
        ts_status mine_ = (call);                                                                  \
        log_set_quiet_errors(0);                                                                   \
        int who_[2] = {mine_ != TS_OK ? -(c)->rank : -(c)->size, (int)mine_};                      \
        (res) = (c)->all_reduce_max_i32((c), who_, 2);                                             \
        if ((res) == TS_OK && who_[1] != TS_OK) {                                                  \
            if (-who_[0] == (c)->rank) log_replay_last_error();                                    \
            (res) = (ts_status)who_[1];                                                            \
        }                                                                                          \
    } while (0)

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

// Sum the gradients over ranks. The communicator works on host memory: a device backend's
// gradients go through a host copy allocated once at start-up.
static ts_status train_reduce_grads(trainer *tr) {
    comm *c = tr->comm;
    gpt2 *m = &tr->model;
    if (c->size == 1) return TS_OK;
    if (!tr->staging) return c->all_reduce_sum_f32(c, m->grads, m->n_params);
    m->be->to_host(tr->staging, m->grads, m->n_params * sizeof(real));
    TS_CHECK(c->all_reduce_sum_f32(c, tr->staging, m->n_params));
    m->be->to_device(m->grads, tr->staging, m->n_params * sizeof(real));
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
    log_info("run directory: %s", tr->run_dir);
    if (tr->be->act_dtype == TS_F32 && strcmp(tr->be->name, "cpu") == 0)
        log_info("backend: cpu, %d thread%s per rank, %d rank%s (%s communicator)", tr->threads,
                 tr->threads == 1 ? "" : "s", c->size, c->size == 1 ? "" : "s", c->name);
    else
        log_info("backend: %s (%s, %s), %d rank%s (%s communicator)", tr->be->name,
                 tr->be->device, ts_dtype_name(tr->be->act_dtype), c->size,
                 c->size == 1 ? "" : "s", c->name);

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

    gpt2_config mc = {cfg->model.layers, cfg->model.heads, cfg->model.width, cfg->model.seq_len,
                      cfg->model.vocab, gpt2_padded_vocab(cfg->model.vocab)};
    size_t n_params;
    gpt2_param_table(&mc, NULL, 0, &n_params);
    size_t optim_bytes = 2 * n_params * sizeof(real); // AdamW moments, counted in the fit check
    TS_CHECK(train_agree(c, gpt2_create_ex(&tr->model, &mc, tr->be, tr->micro, optim_bytes)));
    if (c->rank == 0) gpt2_init_weights(&tr->model, (uint64_t)cfg->run.seed);
    // rank 0's weights for everyone (the communicator works on host buffers)
    int device_memory = strcmp(tr->be->name, "cpu") != 0;
    if (device_memory && c->size > 1)
        tr->staging = ts_malloc(n_params * sizeof(real), "gradient staging buffer");
    if (c->size > 1) {
        real *w = tr->staging ? tr->staging : tr->model.master;
        if (tr->staging) tr->be->to_host(w, tr->model.master, n_params * sizeof(real));
        TS_CHECK(c->broadcast(c, w, n_params * sizeof(real), 0));
        if (tr->staging) tr->be->to_device(tr->model.master, w, n_params * sizeof(real));
        gpt2_sync_params(&tr->model);
    }
    optim_create(&tr->opt, &tr->model);
    log_info("model: GPT-2, %d layers, %d heads, width %d, context %d, vocabulary %d (padded "
             "%d): %zu parameters",
             mc.layers, mc.heads, mc.width, mc.seq_len, mc.vocab, tr->model.cfg.padded_vocab,
             tr->model.n_params);
    log_info("batch: %d sequences per step = %d on this rank (rank 0) in micro-batches of %d",
             cfg->train.global_batch, tr->share, tr->micro);

    tr->seq_buf = ts_malloc((size_t)tr->micro * (T + 1) * sizeof(int32_t), "token buffer");
    tr->inputs = ts_malloc((size_t)tr->micro * T * sizeof(int), "inputs");
    tr->targets = ts_malloc((size_t)tr->micro * T * sizeof(int), "targets");

    return TS_OK;
}

static void train_teardown(trainer *tr) {
    if (tr->metrics) fclose(tr->metrics);
    log_set_file(NULL);
    if (tr->log_file) fclose(tr->log_file);
    if (tr->model.be) optim_destroy(&tr->opt, &tr->model);
    gpt2_destroy(&tr->model);
    dataset_close(&tr->train);
    dataset_close(&tr->val);
    tokenizer_free(&tr->tok);
    free(tr->staging);
    free(tr->seq_buf);
    free(tr->inputs);
    free(tr->targets);
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
static double train_accumulate(trainer *tr, int step) {
    const tessera_config *cfg = &tr->cfg;
    int T = cfg->model.seq_len;
    real dloss = (real)(1.0 / ((double)cfg->train.global_batch * T));
    double loss_sum = 0;
    gpt2_zero_grad(&tr->model);
    for (int done = 0; done < tr->share; done += tr->micro) {
        int B = tr->share - done < tr->micro ? tr->share - done : tr->micro;
        for (int b = 0; b < B; b++) {
            uint64_t g = (uint64_t)step * cfg->train.global_batch + tr->offset + done + b;
            dataset_sample(&tr->train, (uint64_t)cfg->run.seed, g, tr->seq_buf + b * (T + 1));
        }
        split_batch(tr, B);
        loss_sum += gpt2_forward(&tr->model, tr->inputs, tr->targets, B, T, dloss);
        gpt2_backward(&tr->model);
    }
    return loss_sum;
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

static ts_status train_loop(trainer *tr) {
    const tessera_config *cfg = &tr->cfg;
    comm *c = tr->comm;
    int steps = cfg->train.steps;
    double tokens_per_step = (double)cfg->train.global_batch * cfg->model.seq_len;
    double t_start = ts_now(), t_window = t_start, loss_window = 0;
    int window_steps = 0, skipped = 0;
    double val_loss = NAN;

    for (int step = 0; step < steps; step++) {
        double lr = optim_lr_at(cfg, step);
        double loss_sum = train_accumulate(tr, step);
        TS_CHECK(train_reduce_grads(tr));
        TS_CHECK(c->all_reduce_sum_f64(c, &loss_sum, 1));
        double loss = loss_sum / tokens_per_step;
        // every rank holds the same summed gradients, so every rank takes the same decision
        double norm = optim_grad_norm(&tr->model);
        if (!isfinite(norm) || !isfinite(loss)) {
            skipped++;
            log_warn("step %d: non-finite loss or gradient (loss %g, norm %g): step skipped",
                     step + 1, loss, norm);
        } else {
            optim_step(&tr->opt, &tr->model, cfg, lr, norm);
        }
        loss_window += loss;
        window_steps++;

        int last = step + 1 == steps;
        int do_eval = last || (cfg->eval.every > 0 && (step + 1) % cfg->eval.every == 0);
        if (do_eval) TS_CHECK(train_validate(tr, &val_loss));
        if (last || (step + 1) % cfg->log.every == 0 || do_eval) {
            double now = ts_now(), dt = (now - t_window) / window_steps;
            double eta = (now - t_start) / (step + 1) * (steps - step - 1);
            char eta_s[32], val_s[48] = "";
            format_duration(eta, eta_s, sizeof eta_s);
            if (do_eval) snprintf(val_s, sizeof val_s, " | val %.4f", val_loss);
            log_info("step %*d/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | %.1f ms/step "
                     "| ETA %s",
                     (int)snprintf(NULL, 0, "%d", steps), step + 1, steps,
                     loss_window / window_steps, val_s, lr, norm, tokens_per_step / dt, dt * 1e3,
                     eta_s);
            if (tr->metrics) {
                fprintf(tr->metrics,
                        "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, "
                        "\"tokens_per_s\": %.1f, \"ms_per_step\": %.3f, \"elapsed_s\": %.3f",
                        step + 1, loss_window / window_steps, lr, norm, tokens_per_step / dt,
                        dt * 1e3, now - t_start);
                if (do_eval) fprintf(tr->metrics, ", \"val_loss\": %.6f", val_loss);
                fprintf(tr->metrics, "}\n");
                fflush(tr->metrics);
            }
            t_window = now;
            loss_window = 0;
            window_steps = 0;
        }
    }
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
        TS_CHECK(ckpt_write_weights(path, &tr->model, steps));
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

int cmd_train(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            train_usage(stdout);
            return TS_EXIT_OK;
        }
    trainer tr;
    memset(&tr, 0, sizeof tr);
    log_init(0, 1);
    ts_status st = comm_init(&tr.comm, &argc, &argv);
    if (st != TS_OK) return ts_exit_code(st);
    log_init(tr.comm->rank, tr.comm->size);

    log_set_quiet_errors(tr.comm->rank != 0); // every rank parses; one tells the user
    st = train_load_config(&tr, argc, argv);
    log_set_quiet_errors(0);
    if (st == TS_OK) st = train_setup(&tr);
    if (st == TS_OK) st = train_loop(&tr);
    if (st == TS_OK) train_sample(&tr);
    train_teardown(&tr);
    if (st == TS_ERR_PEER) return ts_exit_code(st); // a lost peer would hang MPI_Finalize
    tr.comm->finalize(tr.comm);
    return ts_exit_code(st);
}
