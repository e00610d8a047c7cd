// batch.h — which sequences of each step's global batch a rank trains on.
#ifndef TESSERA_BATCH_H
#define TESSERA_BATCH_H

// Rank r of `world` takes *share sequences starting at *offset within the step's global batch:
// the first (global_batch % world) ranks take one more. Every sequence is taken exactly once.
void batch_share(int global_batch, int world, int rank, int *share, int *offset);

#endif
