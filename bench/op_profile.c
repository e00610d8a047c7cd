// op_profile.c — where a CPU training step's time goes, op by op (a benchmark tool, run by hand).
//
// Builds tessera's GPT-2 on a copy of the CPU backend whose ops are wrapped in a timer, runs
// warm-up steps and then timed steps of exactly what `tessera train` does on one rank (forward
// with loss, backward, gradient norm, clipping, AdamW), and prints for every op and call site
// (matmuls are told apart by shape) the milliseconds per step, the share of the step and, for
// matmuls and attention, the GFLOP/s reached. Nothing in the kernels is changed; the wrappers
// only read the clock around each call.
//
//   bench/profile_ops.sh [layers heads width seq_len vocab batch threads [steps]]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "bench/op_timer.h"
#include "kernels/backend.h"
#include "models/gpt2.h"
#include "runtime/config.h"
#include "runtime/optim.h"

int main(int argc, char **argv) {
    int a[8] = {12, 12, 768, 256, 50257, 4, 1, 2}; // L NH C T V B threads steps
    if (argc > 1 && argc != 8 && argc != 9) {
        fprintf(stderr, "usage: %s [layers heads width seq_len vocab batch threads [steps]]\n",
                argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        a[i - 1] = atoi(argv[i]);
    const int L = a[0], NH = a[1], C = a[2], T = a[3], V = a[4], B = a[5], threads = a[6];
    const int steps = a[7] > 0 ? a[7] : 1, warmup = 1;
    log_init(0, 1);
    backend_cpu_set_threads(threads);

    const backend *timed = op_timer_wrap(backend_cpu(), 0);

    gpt2_config mc = {L, NH, C, T, V, gpt2_padded_vocab(V)};
    model_shape shape;
    gpt2_shape(&shape, &mc);
    model net;
    if (model_create(&net, &shape, timed, B) != TS_OK) return 2;
    model_init_weights(&net, 1337);
    optim_state opt;
    optim_create(&opt, &net);
    tessera_config cfg;
    config_defaults(&cfg);

    int *tokens = ts_malloc((size_t)B * T * sizeof(int), "tokens");
    int *targets = ts_malloc((size_t)B * T * sizeof(int), "targets");
    uint64_t s = 1;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int)((s >> 33) % (uint64_t)V);
        targets[i] = (int)((s >> 13) % (uint64_t)V);
    }

    double step_s = 0;
    for (int step = 0; step < warmup + steps; step++) {
        if (step == warmup) op_timer_reset(); // forget the warm-up
        double t0 = ts_now();
        model_zero_grad(&net);
        model_forward(&net, tokens, targets, B, T, (real)(1.0 / ((double)B * T)));
        model_backward(&net);
        double norm = optim_grad_norm(&net);
        optim_step(&opt, &net, &cfg, 1e-4, norm);
        if (step >= warmup) step_s += ts_now() - t0;
    }

    printf("GPT-2 L%d H%d C%d T%d V%d (padded %d), B=%d, %d thread%s, %zu parameters: "
           "%.1f ms/step (mean of %d step%s after %d warm-up)\n",
           L, NH, C, T, V, net.logits_stride, B, threads, threads == 1 ? "" : "s", net.n_params,
           step_s / steps * 1e3, steps, steps == 1 ? "" : "s", warmup);
    op_timer_print(stdout, step_s, steps);

    optim_destroy(&opt, &net);
    model_destroy(&net);
    free(tokens);
    free(targets);
    return 0;
}
