// fault.h — fault injection for tests of node loss and of how a rank's end is reported: a chosen
// rank kills (SIGKILL) or stops (SIGSTOP) itself, or exits 70, at a chosen step and moment.
//
//   TESSERA_FAULT=RANK:STEP:MOMENT:ACTION
//     MOMENT  before  at the start of the step (before forward)
//             inside  inside the gradient reduction (the first bucket handed to it)
//             after   after the gradients were summed (before the optimizer)
//             ckpt    while writing the checkpoint of that step (state file written, manifest not)
//     ACTION  kill    SIGKILL (a lost node, the OOM killer)
//             stop    SIGSTOP (a hung process)
//             panic   an internal error through ts_fatal: the error line, the status file
//                     (reason internal), exit 70
//             exit70  _exit(70) and nothing else: an exit path that forgot to report
// Unset: every fault point is a no-op. A malformed value is a bad-input error at start-up.
#ifndef TESSERA_FAULT_H
#define TESSERA_FAULT_H

#include "base/common.h"

ts_status fault_init(int rank);
// the fault fires here if this rank, step (1-based) and moment match
void fault_point(const char *moment, int step);

#endif
