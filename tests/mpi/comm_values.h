// comm_values.h — the values the collective tests sum: a deterministic float from (rank, index),
// with a random sign, all 24 bits of mantissa and a magnitude between 2^-8 and 2^8, so that sums
// round and their order shows in the bits; every rank (and the simulated network) can rebuild
// every other rank's contribution to compute the expected result itself.
#ifndef TESSERA_TEST_COMM_VALUES_H
#define TESSERA_TEST_COMM_VALUES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/rng.h"

static inline float comm_test_value(int rank, size_t i) {
    uint64_t z = ((uint64_t)rank << 40) ^ (uint64_t)i;
    z = rng_mix64(z + 0x9e3779b97f4a7c15ull);
    uint32_t sign = (uint32_t)(z >> 40) & 1, exponent = 127 - 8 + (uint32_t)((z >> 23) % 17);
    uint32_t bits = sign << 31 | exponent << 23 | (uint32_t)(z & 0x7fffff);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#endif
