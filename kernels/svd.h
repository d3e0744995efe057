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
 * values tests/test_svd.c checks on the real matrices of stories260K and babyllama and on
 * their absolute values, for k = 1, 4, 8, 16: every top-k singular value within 1e-3
 * relative (worst seen 5e-5) and the rank-k error within 1% of the optimum (worst 1.000003×).
 * The flat tails of babyllama's |W| are the hard case: p = 16, q = 6 misses by 10×.
 * When only the reconstruction error matters (avd), p = 10, q = 4 is already within 0.4%
 * of the optimal rank-k error on the same matrices (0.35% worst), at about a third of the cost. */
#ifndef BS_SVD_H
#define BS_SVD_H

#include <stdint.h>

#include "kernels/err.h"

#define BS_SVD_OVERSAMPLE 24
#define BS_SVD_POWER_ITERS 12

/* A (m×n) ≈ U diag(S) Vt with U m×k (orthonormal columns), S k, Vt k×n (orthonormal rows).
 * When k + oversample reaches min(m, n) a sketch saves nothing and the exact SVD is used;
 * when k > min(m, n) the triplets past min(m, n) are zero (S = 0, zero columns/rows).
 * Fails (bs_err) on non-finite input, bad sizes or out of memory. A is not modified. */
int bs_svd_truncated(const float *A, int m, int n, int k, int oversample, int power_iters,
                     uint64_t seed, float *U, float *S, float *Vt, bs_err *e);

/* Thin exact SVD by LAPACK sgesdd: with r = min(m, n), U is m×r, S r, Vt r×n. */
int bs_svd_full(const float *A, int m, int n, float *U, float *S, float *Vt, bs_err *e);

#endif
