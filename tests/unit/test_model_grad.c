// test_model_grad.c — finite-difference check of the whole GPT-2 backward pass, in double.
//
// The model and the CPU kernels are built in double for this test (TESSERA_F64), so central
// differences are accurate to ~1e-10 and a wrong gradient cannot hide behind float rounding.
// For every parameter tensor, up to PROBES elements are perturbed; the relative error over them,
// ||g_fd - g|| / ||g_fd||, must be <= TOL.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/gpt2.h"

#define TOL    1e-6
#define PROBES 6
#define EPS    1e-5

static double loss_at(model_f64 *m, const int *tok, const int *tgt, int B, int T) {
    return model_forward_f64(m, tok, tgt, B, T, 0) / (B * T);
}

int main(void) {
    gpt2_config cfg = {2, 2, 8, 6, 11, 128}; // L NH C maxT V Vp
    int B = 2, T = 5;
    const backend_f64 *be = backend_cpu_f64();
    model_shape_f64 shape;
    gpt2_shape_f64(&shape, &cfg);
    model_f64 m;
    if (model_create_f64(&m, &shape, be, B) != TS_OK) return 1;
    model_init_weights_f64(&m, 7);
    // make LayerNorm weights and all biases non-trivial so their gradients are exercised
    srand(3);
    for (int i = 0; i < m.n_tensors; i++)
        if (m.tensors[i].ndim == 1)
            for (size_t j = 0; j < m.tensors[i].numel; j++)
                m.master[m.tensors[i].offset + j] += 0.1 * ((double)rand() / RAND_MAX - 0.5);
    // larger weights than at initialisation so attention is not uniform
    for (size_t j = 0; j < m.n_params; j++)
        m.master[j] *= 3.0;
    int tok[10], tgt[10];
    for (int i = 0; i < B * T; i++) {
        tok[i] = rand() % cfg.vocab;
        tgt[i] = rand() % cfg.vocab;
    }
    model_zero_grad_f64(&m);
    model_forward_f64(&m, tok, tgt, B, T, 1.0 / (B * T));
    model_backward_f64(&m);

    int failures = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const model_tensor *t = &m.tensors[i];
        // wte rows >= V never receive gradient; probe only real rows
        size_t numel = i == 0 ? (size_t)cfg.vocab * cfg.width : t->numel;
        double num = 0, den = 0;
        for (int p = 0; p < PROBES && p < (int)numel; p++) {
            size_t j = t->offset + (size_t)(((unsigned)rand()) % numel);
            double orig = m.master[j];
            m.master[j] = orig + EPS;
            double lp = loss_at(&m, tok, tgt, B, T);
            m.master[j] = orig - EPS;
            double lm = loss_at(&m, tok, tgt, B, T);
            m.master[j] = orig;
            double fd = (lp - lm) / (2 * EPS);
            num += (fd - m.grads[j]) * (fd - m.grads[j]);
            den += fd * fd;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        int ok = rel <= TOL;
        failures += !ok;
        printf("%-18s rel err %.2e %s\n", t->name, rel, ok ? "ok" : "FAIL");
    }
    model_destroy_f64(&m);
    printf("%s: %d tensor(s) above tolerance %.0e\n", failures ? "FAIL" : "PASS", failures, TOL);
    return failures ? 1 : 0;
}
