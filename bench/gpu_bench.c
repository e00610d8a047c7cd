// gpu_bench.c — training-step throughput of GPT-2 on the CUDA backend (one GPU).
//
//   gpu_bench [--batch 16] [--steps 20] [--warmup 3] [--seq-len 1024] [--dtype bf16|f32]
//             [--layers 12 --heads 12 --width 768 --vocab 50257] [--profile]
//
// --profile: every backend op is synchronized and timed (bench/op_timer.h), and a table of the
// time per op and call site (matmuls by shape, with TFLOP/s) precedes the JSON line; the step
// figures of such a run are not the unprofiled speed.
//
// GPT-2 124M by default (L=12, NH=12, C=768, T=1024, V=50257 padded to 50304), bf16 activations
// and compute weights with fp32 master weights, gradients and AdamW moments, synthetic tokens
// (uniform random: the content does not change the speed). A step is what the trainer does:
// forward with the loss, backward, the global gradient norm (sum_squares), clipping at 1.0,
// AdamW per tensor (weight decay on matrices). After --warmup steps, --steps steps are timed one
// by one: the clock is read after the step's work has finished (forward reads the losses back,
// the norm is read back, and a synchronize closes the optimizer), so each time is wall time of
// whole steps. The split (forward / backward / optimizer) costs no extra waits: the points
// where it is read synchronize anyway.
//
// Figures: median ms/step, tokens/s = B*T / median step, and MFU = flops/token * tokens/s / peak
// with flops/token = 6N + 12*L*H*Q*T (N: parameters without the position table, the tied token
// table with its padded rows counted; H heads of Q = C/H; the PaLM appendix formula) against
// the H200's dense bf16 peak by datasheet (989 TFLOP/s) and as measured on random data
// (790 TFLOP/s). Progress lines go to stderr, one JSON object to stdout.
//
// Exit: 0, 2 on bad arguments or a model that does not fit, 1 on a non-finite loss, 77 when
// there is no CUDA device.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "bench/op_timer.h"
#include "kernels/cuda/backend_cuda.h"
#include "models/gpt2.h"

#define PEAK_DATASHEET 989e12
#define PEAK_MEASURED  790e12
#define N_BATCHES      4 // distinct synthetic batches, used in turn

typedef struct {
    int batch, steps, warmup, seq_len, layers, heads, width, vocab;
    ts_dtype dtype;
    int profile;
} options;

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){16, 20, 3, 1024, 12, 12, 768, 50257, TS_BF16, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *dst = !strcmp(a, "--batch")     ? &o->batch
                   : !strcmp(a, "--steps")   ? &o->steps
                   : !strcmp(a, "--warmup")  ? &o->warmup
                   : !strcmp(a, "--seq-len") ? &o->seq_len
                   : !strcmp(a, "--layers")  ? &o->layers
                   : !strcmp(a, "--heads")   ? &o->heads
                   : !strcmp(a, "--width")   ? &o->width
                   : !strcmp(a, "--vocab")   ? &o->vocab
                                             : NULL;
        if (dst) {
            if (bench_parse_int(a, v, !strcmp(a, "--warmup") ? 0 : 1, dst)) return -1;
            i++;
        } else if (!strcmp(a, "--profile")) {
            o->profile = 1;
        } else if (!strcmp(a, "--dtype") && v && (!strcmp(v, "bf16") || !strcmp(v, "f32"))) {
            o->dtype = !strcmp(v, "bf16") ? TS_BF16 : TS_F32;
            i++;
        } else {
            log_error("%s: unknown option or bad value (options: --batch --steps --warmup "
                      "--seq-len --dtype bf16|f32 --layers --heads --width --vocab --profile)",
                      a);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    log_init(0, 1);
    options o;
    if (parse_options(argc, argv, &o)) return TS_EXIT_INPUT;
    if (backend_cuda_device_count() == 0) {
        fprintf(stderr, "gpu_bench: no CUDA device: nothing measured\n");
        return 77;
    }
    const backend *be;
    if (backend_cuda_create(&be, o.dtype, 0) != TS_OK) return TS_EXIT_INPUT;
    if (o.profile) be = op_timer_wrap(be, 1); // every op synchronized and timed

    gpt2_config cfg = {.layers = o.layers,
                       .heads = o.heads,
                       .width = o.width,
                       .seq_len = o.seq_len,
                       .vocab = o.vocab,
                       .padded_vocab = gpt2_padded_vocab(o.vocab)};
    size_t n_params = 0;
    gpt2_param_table(&cfg, NULL, 0, &n_params);
    model_shape shape;
    gpt2_shape(&shape, &cfg);
    model m;
    size_t moments = 2 * n_params * sizeof(real);
    if (model_create_ex(&m, &shape, be, o.batch, moments) != TS_OK) return TS_EXIT_INPUT;
    model_init_weights(&m, 1337);
    real *adam_m = be->alloc(be, n_params * sizeof(real)),
         *adam_v = be->alloc(be, n_params * sizeof(real));
    const int B = o.batch, T = o.seq_len, BT = B * T;
    const size_t psz = ts_dtype_size(be->param_dtype);

    int *tokens = malloc((size_t)N_BATCHES * (BT + 1) * sizeof(int));
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < (size_t)N_BATCHES * (BT + 1); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int)((s >> 33) % (uint64_t)o.vocab);
    }

    const int total = o.warmup + o.steps;
    double *step_ms = calloc((size_t)total, sizeof(double)),
           *fwd_ms = calloc((size_t)total, sizeof(double)),
           *bwd_ms = calloc((size_t)total, sizeof(double)),
           *opt_ms = calloc((size_t)total, sizeof(double));
    double loss_first = 0, loss_last = 0;
    const real dloss = (real)(1.0 / BT);
    fprintf(stderr,
            "gpu_bench: %s on %s, L=%d NH=%d C=%d T=%d V=%d (Vp %d), %zu parameters, batch %d, "
            "%.2f GiB on the device, %d warm-up + %d timed steps\n",
            ts_dtype_name(o.dtype), be->device, cfg.layers, cfg.heads, cfg.width, T, cfg.vocab,
            cfg.padded_vocab, n_params, B, (double)(m.bytes + moments) / (1 << 30), o.warmup,
            o.steps);
    be->synchronize(be);
    for (int step = 0; step < total; step++) {
        const int *batch = tokens + (size_t)(step % N_BATCHES) * (BT + 1);
        if (o.profile && step == o.warmup) op_timer_reset();
        double t0 = ts_now();
        model_zero_grad(&m);
        // inputs are the first BT tokens, targets the same shifted by one
        double loss = model_forward(&m, batch, batch + 1, B, T, dloss) / BT;
        double t1 = ts_now();
        model_backward(&m);
        be->synchronize(be);
        double t2 = ts_now();
        double norm = sqrt(be->sum_squares(be, m.grads, n_params));
        if (norm > 1.0) be->scale(be, m.grads, (real)(1.0 / norm), n_params);
        for (int i = 0; i < m.n_tensors; i++) {
            const model_tensor *t = &m.tensors[i];
            be->adamw(be, m.master + t->offset, (char *)m.params + t->offset * psz,
                      m.grads + t->offset, adam_m + t->offset, adam_v + t->offset, t->numel, 6e-4f,
                      0.9f, 0.95f, 1e-8f, t->decay ? 0.1f : 0.0f, step + 1);
        }
        be->synchronize(be);
        double t3 = ts_now();
        step_ms[step] = (t3 - t0) * 1e3;
        fwd_ms[step] = (t1 - t0) * 1e3;
        bwd_ms[step] = (t2 - t1) * 1e3;
        opt_ms[step] = (t3 - t2) * 1e3;
        if (!isfinite(loss) || !isfinite(norm)) {
            log_error("gpu_bench: step %d: loss %g, gradient norm %g: not finite", step + 1, loss,
                      norm);
            return 1;
        }
        if (step == 0) loss_first = loss;
        loss_last = loss;
        fprintf(stderr,
                "  step %3d%s  loss %.4f  norm %.3f  %.1f ms (fwd %.1f, bwd %.1f, opt %.1f)\n",
                step + 1, step < o.warmup ? " (warm-up)" : "", loss, norm, step_ms[step],
                fwd_ms[step], bwd_ms[step], opt_ms[step]);
    }

    const int W = o.warmup, N = o.steps;
    double med = bench_median(step_ms + W, N), mn = step_ms[W], mean = 0;
    for (int i = W; i < total; i++) {
        mean += step_ms[i] / N;
        if (step_ms[i] < mn) mn = step_ms[i];
    }
    const double Q = (double)cfg.width / cfg.heads;
    const double n_flop_params = (double)n_params - (double)cfg.seq_len * cfg.width;
    const double flops_tok = 6 * n_flop_params + 12.0 * cfg.layers * cfg.heads * Q * T;
    const double tok_s = BT / (med * 1e-3);
    const double achieved = flops_tok * tok_s;
    fprintf(stderr,
            "gpu_bench: median %.2f ms/step (min %.2f, mean %.2f; fwd %.2f, bwd %.2f, opt %.2f), "
            "%.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% of 989 (datasheet), %.1f%% of 790 "
            "(measured)\n",
            med, mn, mean, bench_median(fwd_ms + W, N), bench_median(bwd_ms + W, N),
            bench_median(opt_ms + W, N), tok_s, achieved / 1e12, 100 * achieved / PEAK_DATASHEET,
            100 * achieved / PEAK_MEASURED);

    if (o.profile) {
        double timed_s = 0;
        for (int i = W; i < total; i++)
            timed_s += step_ms[i] / 1e3;
        printf("per-op time of %d steps, every op synchronized (shares are the result; the step "
               "is slower than unprofiled):\n",
               N);
        op_timer_print(stdout, timed_s, N);
    }
    printf("{\"impl\": \"tessera\", \"device\": \"%s\", \"dtype\": \"%s\", \"layers\": %d, "
           "\"heads\": %d, \"width\": %d, \"seq_len\": %d, \"vocab\": %d, \"padded_vocab\": %d, "
           "\"batch\": %d, \"params\": %zu, \"flops_per_token\": %.0f, \"warmup\": %d, "
           "\"steps\": %d, \"ms_per_step_median\": %.3f, \"ms_per_step_min\": %.3f, "
           "\"ms_per_step_mean\": %.3f, \"ms_forward_median\": %.3f, \"ms_backward_median\": %.3f, "
           "\"ms_optimizer_median\": %.3f, \"tokens_per_s\": %.1f, \"tflops\": %.2f, "
           "\"mfu_datasheet\": %.4f, \"mfu_measured\": %.4f, \"peak_datasheet\": %.0f, "
           "\"peak_measured\": %.0f, \"loss_first\": %.5f, \"loss_last\": %.5f, "
           "\"device_gib\": %.2f, \"step_ms\": [",
           be->device, ts_dtype_name(o.dtype), cfg.layers, cfg.heads, cfg.width, T, cfg.vocab,
           cfg.padded_vocab, B, n_params, flops_tok, W, N, med, mn, mean,
           bench_median(fwd_ms + W, N), bench_median(bwd_ms + W, N), bench_median(opt_ms + W, N),
           tok_s, achieved / 1e12, achieved / PEAK_DATASHEET, achieved / PEAK_MEASURED,
           PEAK_DATASHEET, PEAK_MEASURED, loss_first, loss_last,
           (double)(m.bytes + moments) / (1 << 30));
    for (int i = W; i < total; i++)
        printf("%s%.3f", i > W ? ", " : "", step_ms[i]);
    printf("]}\n");

    be->free(be, adam_m);
    be->free(be, adam_v);
    model_destroy(&m);
    be->destroy(be);
    free(tokens), free(step_ms), free(fwd_ms), free(bwd_ms), free(opt_ms);
    return 0;
}
