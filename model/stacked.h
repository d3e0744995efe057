/* bs_stacked: a store's prefix of N blocks as a runnable bs_model.
 * The dense parts (embeddings, norms) are borrowed from the bs_store; each linear is
 * a bs_qmat over the block bytes in `stack` (a buffer mirroring the stack section,
 * holding at least blocks [0, N)). Changing N only changes each matrix's depth. */
#ifndef BS_STACKED_H
#define BS_STACKED_H

#include "model/qmat.h"
#include "model/store.h"

typedef struct {
    const bs_store *store;
    bs_model model;       /* borrows from store; never pass to bs_model_free */
    bs_qmat *q;           /* one per store matrix */
    const uint8_t **ptrs; /* backing for every qmat's blk[] */
    int n;                /* blocks in use */
} bs_stacked;

int bs_stacked_init(bs_stacked *sm, const bs_store *s, const uint8_t *stack, int n, bs_err *e);
void bs_stacked_free(bs_stacked *sm);

/* Uses blocks [0, n) (they must be in the buffer). */
void bs_stacked_set_prefix(bs_stacked *sm, int n);

/* A standalone dense copy of the model at the current prefix (for evaluation). */
int bs_stacked_to_dense(const bs_stacked *sm, bs_model *out, bs_err *e);

#endif
