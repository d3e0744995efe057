/* Perplexity of a store at a prefix, running exactly the blocks that prefix holds:
 * they are read from disk (crc-checked), the model is built from them and scored
 * with the protocol of model/ppl.h. */
#ifndef BS_STORE_EVAL_H
#define BS_STORE_EVAL_H

#include "model/ppl.h"
#include "model/store.h"

int bs_store_ppl(const bs_store *s, int n, const int *ids, int nids, int ctx, int max_chunks, bs_ppl_result *r,
                 bs_err *e);

/* Reads blocks [0, n) and returns a dense model of that prefix (for evaluation and tests). */
int bs_store_dense(const bs_store *s, int n, bs_model *out, bs_err *e);

#endif
