/* Singular value decompositions on OpenBLAS/LAPACK. Row-major float matrices throughout.
 *
 * bs_svd_truncated is the randomised range finder of Halko, Martinsson & Tropp (2011):
 * sketch Y = A Ω with a gaussian Ω of k + oversample columns, power iterations
 * (A Aᵀ)^q with a Householder QR between every product so small singular directions
 * survive in float, then an exact SVD of the small matrix QᵀA. It returns the k leading
 * singular triplets, singular values in decreasing order. For a given seed, thread count
 * and OpenBLAS build the result is the same on every run.
 *
 * Accuracy: the leading values converge like (σ_{k+p+1}/σ_k)^(2q+1), so flat spectra need
 * more power iterations than decaying ones. BS_SVD_OVERSAMPLE / BS_SVD_POWER_ITERS are the
 * values tests/test_svd.c checks on the real matrices of stories260K and babyllama
 * (and their absolute values): top-16 singular values within 1e-3 relative. */
#ifndef BS_SVD_H
#define BS_SVD_H

#include <stdint.h>

#include "kernels/err.h"

#define BS_SVD_OVERSAMPLE 16
#define BS_SVD_POWER_ITERS 6

/* A (m×n) ≈ U diag(S) Vt with U m×k (orthonormal columns), S k, Vt k×n (orthonormal rows).
 * When k + oversample reaches min(m, n) a sketch saves nothing and the exact SVD is used;
 * when k > min(m, n) the triplets past min(m, n) are zero (S = 0, zero columns/rows).
 * Fails (bs_err) on non-finite input, bad sizes or out of memory. A is not modified. */
int bs_svd_truncated(const float *A, int m, int n, int k, int oversample, int power_iters,
                     uint64_t seed, float *U, float *S, float *Vt, bs_err *e);

/* Thin exact SVD by LAPACK sgesdd: with r = min(m, n), U is m×r, S r, Vt r×n. */
int bs_svd_full(const float *A, int m, int n, float *U, float *S, float *Vt, bs_err *e);

#endif
