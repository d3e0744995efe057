/* Dense float building blocks of the transformer. No I/O, no model knowledge:
 * plain arrays in, plain arrays out. Row-major throughout. */
#ifndef BS_OPS_H
#define BS_OPS_H

#include <stddef.h>

/* out[i] = x[i] / rms(x) * w[i], for n elements. out may alias x. */
void bs_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* In-place softmax over n elements (max-subtracted). */
void bs_softmax(float *x, int n);

/* Y[t][i] = sum_j W[i][j] * X[t][j]: ntok rows of X (ntok x n) times W^T (W is m x n).
 * Y is ntok x m. One sgemm for a batch, sgemv for one token. When accumulate is
 * non-zero the product is added to Y. */
void bs_matmul(float *y, const float *x, const float *w, int ntok, int m, int n, int accumulate);

/* The same into columns of a wider y: row t of the result lands at y + t * ldy. */
void bs_matmul_ld(float *y, int ldy, const float *x, const float *w, int ntok, int m, int n, int accumulate);

/* Rotary embedding on adjacent pairs (2i, 2i+1) of each head, in place.
 * vec holds n_heads heads of head_dim floats, at position pos. */
void bs_rope(float *vec, int n_heads, int head_dim, int pos, float theta);

/* a[i] = silu(a[i]) * b[i] (SwiGLU). */
void bs_swiglu(float *a, const float *b, int n);

/* Index of the largest element (first on ties). */
int bs_argmax(const float *x, int n);

/* log(sum(exp(x))), computed stably. */
double bs_logsumexp(const float *x, int n);

/* Sets the thread count of the BLAS library (0 keeps its default). */
void bs_blas_threads(int n);

#endif
