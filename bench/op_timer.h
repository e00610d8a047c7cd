// op_timer.h — where a training step's time goes, op by op: a backend that forwards every op to
// another backend and reads the clock around it (used by bench/op_profile.c on the CPU and by
// bench/gpu_bench.c --profile on the GPU). Nothing in the kernels changes.
//
// With sync, the wrapped backend's synchronize() runs before and after every op, so an
// asynchronous backend (CUDA) is charged each op's own device time; that removes any overlap
// between ops and adds a round trip per op (a few microseconds), so the step is slower than
// unprofiled and the shares, not the total, are the result. One wrapped backend per process.
#ifndef TESSERA_OP_TIMER_H
#define TESSERA_OP_TIMER_H

#include <stdio.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

const backend *op_timer_wrap(const backend *inner, int sync);
void op_timer_reset(void); // forget what was timed so far (after warm-up)
// the table: every site by time, ms per step, share of step_seconds (the wall time of `steps`
// steps), calls per step, GFLOP/s; then the time outside the ops
void op_timer_print(FILE *f, double step_seconds, int steps);

#ifdef __cplusplus
}
#endif

#endif
