/* bs_splitmix64: the project's one small seedable generator (splitmix64: fast, good
 * enough for random weights, sketches and tests), with its state kept by the caller so
 * that nothing is shared between threads or modules. */
#ifndef BS_RNG_H
#define BS_RNG_H

#include <stdint.h>

static inline uint64_t bs_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
