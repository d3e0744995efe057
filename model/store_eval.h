/* Perplexity of a store at a prefix, running exactly the blocks that prefix holds: the
 * engine reads any it lacks from disk (crc-checked), the model is built from them and
 * scored with the protocol of model/ppl.h. */
#ifndef BS_STORE_EVAL_H
#define BS_STORE_EVAL_H

#include "model/engine.h"
#include "kernels/team.h"
#include "model/ppl.h"

int bs_engine_ppl(bs_engine *eng, int n, const int *ids, int nids, int ctx, int max_chunks, bs_ppl_result *r,
                  bs_err *e);

/* The same through the stacked model's decode path (kernels/bitplane.h), one token at a
 * time: what serving computes. */
int bs_engine_ppl_decode(bs_engine *eng, int n, const int *ids, int nids, int ctx, int max_chunks, bs_ppl_result *r,
                         bs_err *e);

/* bs_engine_ppl (decode 0) or bs_engine_ppl_decode (1), reporting windows to pg; the
 * decode path splits its products over team (borrowed; NULL: this thread; OpenBLAS at one
 * thread meanwhile), the batch path uses OpenBLAS's own threads. */
int bs_engine_ppl_p(bs_engine *eng, int n, const int *ids, int nids, int ctx, int max_chunks, int decode,
                    bs_team *team,
                    const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e);

/* A dense model of the prefix of n blocks (for evaluation and tests). */
int bs_engine_dense(bs_engine *eng, int n, bs_model *out, bs_err *e);

#endif
