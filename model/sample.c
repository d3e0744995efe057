#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

int bs_sampler_init(bs_sampler *s, int vocab, float temperature, float top_p, uint64_t seed, bs_err *e)
{
    memset(s, 0, sizeof *s);
    if (!(temperature >= 0.0f) || !isfinite(temperature))
        return bs_err_set(e, "temperature must be a finite number >= 0 (got %g)", temperature);
    if (!(top_p > 0.0f && top_p <= 1.0f))
        return bs_err_set(e, "top_p must lie in (0, 1] (got %g)", top_p);
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng = seed ? seed : 0x2545f4914f6cdd1dull;
    s->probs = malloc((size_t)vocab * sizeof(float));
    s->idx = malloc((size_t)vocab * sizeof(int));
    if (!s->probs || !s->idx) {
        bs_sampler_free(s);
        return bs_err_set(e, "out of memory for a sampler over %d tokens", vocab);
    }
    return 0;
}

void bs_sampler_free(bs_sampler *s)
{
    free(s->probs);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

/* xorshift64*: uniform float in [0, 1) */
static float next_uniform(uint64_t *st)
{
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return (float)((*st * 0x2545f4914f6cdd1dull) >> 40) * (1.0f / 16777216.0f);
}

static int by_prob_desc(const void *a, const void *b, void *p)
{
    const float *pr = p;
    float x = pr[*(const int *)a], y = pr[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int *)a - *(const int *)b);
}

int bs_sample(bs_sampler *s, const float *logits)
{
    if (s->temperature == 0.0f)
        return bs_argmax(logits, s->vocab);
    for (int i = 0; i < s->vocab; i++)
        s->probs[i] = logits[i] / s->temperature;
    bs_softmax(s->probs, s->vocab);
    float r = next_uniform(&s->rng);
    int n = s->vocab;
    if (s->top_p < 1.0f) {
        /* keep only tokens that can matter: those above (1 - top_p) / (vocab - 1) */
        float cutoff = (1.0f - s->top_p) / (float)(s->vocab - 1);
        n = 0;
        for (int i = 0; i < s->vocab; i++)
            if (s->probs[i] >= cutoff)
                s->idx[n++] = i;
        qsort_r(s->idx, (size_t)n, sizeof(int), by_prob_desc, s->probs);
        float cum = 0.0f;
        int last = n - 1;
        for (int i = 0; i < n; i++) {
            cum += s->probs[s->idx[i]];
            if (cum > s->top_p) {
                last = i;
                break;
            }
        }
        n = last + 1;
        float mass = 0.0f;
        for (int i = 0; i < n; i++)
            mass += s->probs[s->idx[i]];
        r *= mass;
        float acc = 0.0f;
        for (int i = 0; i < n; i++) {
            acc += s->probs[s->idx[i]];
            if (r < acc)
                return s->idx[i];
        }
        return s->idx[n - 1];
    }
    float acc = 0.0f;
    for (int i = 0; i < n; i++) {
        acc += s->probs[i];
        if (r < acc)
            return i;
    }
    return bs_argmax(s->probs, s->vocab);
}
