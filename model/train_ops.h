/* The layers of quantisation-aware training, forward and backward side by side (llm.c's
 * train_gpt2.c style): plain row-major float arrays, N = tokens, shapes in the comments.
 * Every *_backward adds into the gradients it is given (so several uses of one input sum),
 * except where it says "writes". tests/test_train.c checks each against finite differences.
 * Matrix products go through OpenBLAS. Nothing here allocates except where a scratch is
 * passed in. */
#ifndef BS_TRAIN_OPS_H
#define BS_TRAIN_OPS_H

#include <stddef.h>

/* A LittleBit path as a trainable linear: Y = ((X ⊙ g) Sv ⊙ l) Suᵀ ⊙ h, where Su = sign(U),
 * Sv = sign(V) are float ±1 matrices refreshed from the latents (bs_tlin_signs). */
typedef struct {
    int m, n, r;                 /* out, in, rank */
    float *U, *V, *h, *l, *g;    /* parameters: U m×r, V n×r (latent), h m, l r, g n */
    float *dU, *dV, *dh, *dl, *dg;
    float *Su, *Sv;              /* m×r, n×r: sign(U), sign(V) */
    float *dSu, *dSv;            /* m×r, n×r: gradients w.r.t. the signs (straight through) */
} bs_tlin;

/* The slope of the smooth surrogate tanh(k·u) used in place of sign's zero derivative. */
#define BS_TRAIN_SURROGATE_K 2.0f

void bs_tlin_signs(bs_tlin *t);

/* Scratch floats a forward/backward needs for N tokens. */
size_t bs_tlin_scratch(const bs_tlin *t, int N);

/* Y (N×m) (+)= the product of X (N×n). */
void bs_tlin_forward(const bs_tlin *t, const float *X, float *Y, int N, int accumulate, float *scratch);

/* Given dY (N×m): dX (N×n) += , dh, dl, dg, dSu, dSv += (dSu, dSv as if Su, Sv were free
 * float matrices); forward intermediates are recomputed from X. dX may be NULL. */
void bs_tlin_backward(const bs_tlin *t, const float *X, const float *dY, float *dX, int N, float *scratch);

/* dU += dSu ⊙ k (1 − tanh²(k U)), likewise dV: the straight-through estimator. */
void bs_tlin_surrogate(bs_tlin *t);

/* RMSNorm: Y[t] = X[t] · rs[t] ⊙ w, rs[t] = 1/√(mean X[t]² + eps). rs (N) is saved. */
void bs_tnorm_forward(const float *X, const float *w, float *Y, float *rs, int N, int d, float eps);
/* dX += , dw += (dw may be NULL). */
void bs_tnorm_backward(const float *X, const float *w, const float *rs, const float *dY, float *dX, float *dw, int N,
                       int d);

/* Rotary embedding of every head of N rows (T positions per sequence, position = row % T),
 * in place; dir = -1 rotates back (the backward of dir = +1). width = heads · hd. */
void bs_trope(float *X, int N, int T, int heads, int hd, float theta, int dir);

/* Causal attention per sequence (N = B·T) with grouped keys/values:
 * q N×(H·hd), k v N×(KV·hd), out N×(H·hd); P (B·H·T·T) keeps the probabilities. */
void bs_tattn_forward(const float *q, const float *k, const float *v, float *P, float *out, int B, int T, int H,
                      int KV, int hd);
/* dq, dk, dv += ; scratch: bs_tattn_scratch(T) floats. */
size_t bs_tattn_scratch(int T);
void bs_tattn_backward(const float *q, const float *k, const float *v, const float *P, const float *dout, float *dq,
                       float *dk, float *dv, int B, int T, int H, int KV, int hd, float *scratch);

/* H = silu(A) ⊙ Bv (n elements). */
void bs_tswiglu_forward(const float *A, const float *Bv, float *H, int n);
/* dA, dB += . */
void bs_tswiglu_backward(const float *A, const float *Bv, const float *dH, float *dA, float *dB, int n);

/* KL(teacher ‖ student) averaged over N rows of V logits; writes dZs (N×V). */
double bs_tkl(const float *Zt, const float *Zs, float *dZs, int N, int V);

/* w · mean((Xs − Xt)²) over n elements; dXs += its gradient. */
double bs_tmse(const float *Xs, const float *Xt, float *dXs, int n, float w);

#endif
