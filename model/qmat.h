/* bs_qmat: one linear weight as the sum of its floor (if any) and its resident stack blocks.
 * The floor runs through kernels/littlebit.h one token at a time (its cost is rank·(m+n)).
 * W is never stored whole: plane blocks (saq, gq) and one token of avd blocks run through
 * the kernels of kernels/bitplane.h (the planes of a matrix as one bit-sliced code, int8
 * activations on AVX2/AVX-512); a batch of plane blocks uses the kernels' matmul; the
 * rest (qasym, avd batches) materialises BS_QMAT_ROW_CHUNK rows of W at a time into the
 * caller's scratch and calls sgemm on them. Nothing here allocates: the decode path costs no malloc. Block
 * payloads are located by model/block.h. */
#ifndef BS_QMAT_H
#define BS_QMAT_H

#include <stdint.h>

#include "kernels/bitplane.h"
#include "kernels/err.h"
#include "model/block.h"

#define BS_QMAT_ROW_CHUNK 64
#define BS_QMAT_MAX_BATCH 64   /* tokens per product (the forward pass's chunk) */

typedef struct bs_qmat {
    const bs_store_matrix *m;
    int depth;                 /* resident blocks used, 0..m->levels */
    const uint8_t **blk;       /* blk[l]: payload of level l (valid for l < depth) */
    const uint8_t *floor;      /* the matrix's LittleBit floor payload (model/floor.h), or NULL:
                                * W = W_floor + the blocks */
} bs_qmat;

struct bs_team;

/* What a product may use: scratch (bs_qmat_scratch_floats(max_cols, threads) floats) and
 * a team of threads to split the rows over (NULL: the caller alone). */
typedef struct {
    float *scratch;
    struct bs_team *team;
    bs_kernel_isa isa;        /* which kernel path (kernels/bitplane.h) */
} bs_qmat_run;

/* Floats of scratch for matrices of at most max_cols inputs, split over `threads`. */
size_t bs_qmat_scratch_floats(int max_cols, int threads);

/* W (rows x cols, row-major) = the sum of the first q->depth blocks. */
void bs_qmat_materialize(const bs_qmat *q, float *w);

/* y (ntok x rows) (+)= x (ntok x cols) W^T. The team's thread count must not exceed the
 * one the scratch was sized for. */
int bs_qmat_apply(const bs_qmat *q, float *y, const float *x, int ntok, int accumulate, const bs_qmat_run *run,
                  bs_err *e);

#endif
