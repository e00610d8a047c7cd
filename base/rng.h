// rng.h — splitmix64, the one small deterministic generator tessera uses (weight
// initialisation, the data order's permutation keys, test inputs): the same numbers on every
// machine for the same seed.
#ifndef TESSERA_RNG_H
#define TESSERA_RNG_H

#include <stdint.h>

// the finaliser: a 64-bit mix with full avalanche
static inline uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// the generator: advance the state by the golden-ratio increment, mix
static inline uint64_t rng_next(uint64_t *state) {
    return rng_mix64(*state += 0x9E3779B97F4A7C15ull);
}

// uniform in [0, 1), 53 random bits
static inline double rng_uniform01(uint64_t *state) {
    return (double)(rng_next(state) >> 11) * 0x1p-53;
}

#endif
