/* bs_sampler: picks the next token from logits. Greedy at temperature 0, else
 * softmax(logits / T) restricted to the smallest set of tokens whose probability
 * reaches top_p (nucleus). Seeded: the same seed gives the same sequence. */
#ifndef BS_SAMPLE_H
#define BS_SAMPLE_H

#include <stdint.h>

#include "kernels/err.h"

typedef struct {
    int vocab;
    float temperature;
    float top_p;
    uint64_t rng;
    float *probs;   /* vocab */
    int *idx;       /* vocab */
} bs_sampler;

int bs_sampler_init(bs_sampler *s, int vocab, float temperature, float top_p, uint64_t seed, bs_err *e);
void bs_sampler_free(bs_sampler *s);

/* Returns the chosen id; logits are only read. */
int bs_sample(bs_sampler *s, const float *logits);

#endif
