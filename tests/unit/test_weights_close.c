// test_weights_close.c — compare two weight files tensor by tensor:
//   test_weights_close A.h5 B.h5 TOL    passes when ||a-b||/||a|| <= TOL for every tensor
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/ckpt.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_weights_close A.h5 B.h5 TOL\n");
        return 2;
    }
    double tol = atof(argv[3]);
    model_shape ca, cb;
    if (ckpt_read_shape(argv[1], &ca, NULL) != TS_OK ||
        ckpt_read_shape(argv[2], &cb, NULL) != TS_OK)
        return 2;
    model a, b;
    if (model_create(&a, &ca, backend_cpu(), 1) != TS_OK ||
        model_create(&b, &cb, backend_cpu(), 1) != TS_OK)
        return 2;
    if (a.n_params != b.n_params) {
        fprintf(stderr, "different models: %zu vs %zu parameters\n", a.n_params, b.n_params);
        return 1;
    }
    if (ckpt_read_weights(argv[1], &a) != TS_OK || ckpt_read_weights(argv[2], &b) != TS_OK)
        return 2;
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < a.n_tensors; i++) {
        const model_tensor *t = &a.tensors[i];
        double num = 0, den = 0;
        for (size_t j = t->offset; j < t->offset + t->numel; j++) {
            double d = (double)a.master[j] - b.master[j];
            num += d * d;
            den += (double)a.master[j] * a.master[j];
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (rel > worst) worst = rel;
        if (!(rel <= tol)) {
            printf("%-20s rel diff %.3e > %.1e\n", t->name, rel, tol);
            bad++;
        }
    }
    printf("%s: %d tensors, largest relative difference %.3e (tolerance %.1e)\n",
           bad ? "FAIL" : "PASS", a.n_tensors, worst, tol);
    model_destroy(&a);
    model_destroy(&b);
    return bad ? 1 : 0;
}
