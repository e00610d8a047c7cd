// test_overfit.c — the float model with AdamW must memorise one small batch: loss < 0.05.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gpt2.h"
#include "runtime/optim.h"

int main(void) {
    gpt2_config mc = {2, 2, 64, 16, 64, 128};
    int B = 4, T = 16, steps = 300;
    model_shape shape;
    gpt2_shape(&shape, &mc);
    model m;
    if (model_create(&m, &shape, backend_cpu(), B) != TS_OK) return 1;
    model_init_weights(&m, 42);
    tessera_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.train.lr = 3e-3;
    cfg.train.beta1 = 0.9;
    cfg.train.beta2 = 0.95;
    cfg.train.eps = 1e-8;
    cfg.train.weight_decay = 0.0;
    cfg.train.grad_clip = 1.0;
    optim_state o;
    optim_create(&o, &m);
    int tok[64], tgt[64];
    srand(5);
    for (int i = 0; i < B * T; i++) {
        tok[i] = rand() % mc.vocab;
        tgt[i] = rand() % mc.vocab;
    }
    double loss = 0;
    for (int s = 0; s < steps; s++) {
        model_zero_grad(&m);
        loss = model_forward(&m, tok, tgt, B, T, 1.0f / (B * T)) / (B * T);
        model_backward(&m);
        optim_step(&o, &m, &cfg, cfg.train.lr, optim_grad_norm(&m));
        if (s % 50 == 0) printf("step %3d loss %.4f\n", s, loss);
    }
    loss = model_forward(&m, tok, tgt, B, T, 0) / (B * T);
    printf("final loss %.4f (must be < 0.05)\n", loss);
    optim_destroy(&o, &m);
    model_destroy(&m);
    return loss < 0.05 ? 0 : 1;
}
