/* bs_qmat: one linear weight as the sum of its resident stack blocks.
 * W is never stored: decode runs each block straight from its bits (reference
 * kernels; the fast ones come with the kernels issue); a batch materialises W once
 * into scratch and calls sgemm. Block payloads are described in docs/store-format.md. */
#ifndef BS_QMAT_H
#define BS_QMAT_H

#include <stdint.h>

#include "model/store.h"

typedef struct bs_qmat {
    const bs_store_matrix *m;
    int depth;                 /* resident blocks used, 0..m->levels */
    const uint8_t **blk;       /* blk[l]: payload of level l (valid for l < depth) */
} bs_qmat;

/* W (rows x cols, row-major) = the sum of the first q->depth blocks. */
void bs_qmat_materialize(const bs_qmat *q, float *w);

/* y (ntok x rows) (+)= x (ntok x cols) W^T. */
void bs_qmat_apply(const bs_qmat *q, float *y, const float *x, int ntok, int accumulate);

/* Plane-block helpers shared with the encoder: the scale divisor exponent and the
 * payload holding the group scales used by level `level` of m. */
int bs_qmat_plane_shift(const bs_store_matrix *m, int level);
int bs_qmat_scale_level(const bs_store_matrix *m, int level);

#endif
