// batch.c — the split of the global batch over ranks (design invariant 2: the global batch is
// fixed whatever the number of ranks; shares differ by at most one sequence, so a restart on
// fewer ranks trains the same sequences).
#include "runtime/batch.h"

#include "base/common.h"

void batch_share(int global_batch, int world, int rank, int *share, int *offset) {
    TS_ASSERT(world >= 1 && rank >= 0 && rank < world && global_batch >= 0);
    // the first (global_batch % world) ranks take one sequence more
    int base = global_batch / world, extra = global_batch % world;
    *share = base + (rank < extra);
    *offset = rank * base + (rank < extra ? rank : extra);
}
