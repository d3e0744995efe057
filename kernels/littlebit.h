/* LittleBit factor kernels (arXiv 2506.13771): y (+)= W x for
 *
 *     W = diag(h) · Su · diag(l) · Svᵀ · diag(g),   Su ∈ {±1}^{rows×rank}, Sv ∈ {±1}^{cols×rank}
 *
 * without ever building W: scale x by g, one binary product with Svᵀ (rank outputs), scale by
 * l, one binary product with Su (rows outputs), scale by h. The cost is rank·(rows + cols)
 * sign-adds instead of rows·cols multiply-adds.
 *
 * Layouts (docs/store-format.md, "Floor"): both sign matrices are stored as sign planes with
 * the rank along the short side of the product that reads them:
 *   u   rows × ceil(rank/8) bytes: Su[i, k] is bit k%8 of byte i·stride + k/8
 *   vt  rank × ceil(cols/8) bytes: Sv[j, k] is bit j%8 of byte k·stride + j/8
 * LSB first, a set bit is +1, pad bits ignored. h, l, g are fp16 (rows, rank, cols).
 *
 * The primitive underneath is the binary matvec out[r] = Σ_j s[r, j] x[j] of a sign plane,
 * computed as 2 · (sum of x over the set bits) − (sum of x): PORTABLE is plain C; AVX2 (also
 * taken for AVX512, which this product gains nothing from) flips the sign bit of 8 floats
 * at a time from one plane byte. Both are float-exact up to summation order.
 *
 * Nothing here allocates; the scratch is bs_kernel_lb_scratch bytes (any alignment).
 * Errors: 0, BS_KERNEL_EINVAL, BS_KERNEL_ENOTSUP (kernels/bitplane.h). */
#ifndef BS_LITTLEBIT_H
#define BS_LITTLEBIT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/bitplane.h"

typedef struct {
    int rows, cols, rank;
    const uint8_t *u;     /* rows × ceil(rank/8) */
    const uint8_t *vt;    /* rank × ceil(cols/8) */
    const uint16_t *h;    /* rows */
    const uint16_t *l;    /* rank */
    const uint16_t *g;    /* cols */
} bs_kernel_lb;

/* out[r] = Σ_j s[r, j] x[j] for r < rows, s the sign plane `bits` (rows × ceil(cols/8)). */
int bs_kernel_sign_matvec(bs_kernel_isa isa, int rows, int cols, const uint8_t *bits, const float *x, float *out);

size_t bs_kernel_lb_scratch(int cols, int rank);

/* y (rows) (+)= W x (x: cols). */
int bs_kernel_lb_matvec(bs_kernel_isa isa, const bs_kernel_lb *p, const float *x, float *y, int accumulate,
                        void *scratch);

/* w (rows × cols, row-major) += W. */
int bs_kernel_lb_add_dense(const bs_kernel_lb *p, float *w);

#endif
