#include "model/store_eval.h"

/* The prefix of n blocks as a stacked model, reading any blocks the engine lacks. */
static int stacked_at(bs_engine *eng, int n, bs_stacked *sm, bs_err *e)
{
    int bad;
    if (n > eng->resident_n && bs_engine_read_blocks(eng, n, &bad, e))
        return -1;
    return bs_stacked_init(sm, &eng->store, eng->stack, n, e);
}

int bs_engine_dense(bs_engine *eng, int n, bs_model *out, bs_err *e)
{
    bs_stacked sm;
    if (stacked_at(eng, n, &sm, e))
        return -1;
    int rc = bs_stacked_to_dense(&sm, out, e);
    bs_stacked_free(&sm);
    return rc;
}

int bs_engine_ppl_p(bs_engine *eng, int n, const int *ids, int nids, int ctx, int max_chunks, int decode,
                    bs_team *team, const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e)
{
    int bos = bs_tok_bos(eng->store.tok), rc;
    if (decode) {
        bs_stacked sm;
        if (stacked_at(eng, n, &sm, e))
            return -1;
        rc = bs_ppl_ids_team(&sm.model, ids, nids, bos, ctx, max_chunks, 1, team, pg, r, e);
        bs_stacked_free(&sm);
    } else {
        bs_model m;
        if (bs_engine_dense(eng, n, &m, e))
            return -1;
        rc = bs_ppl_ids_p(&m, ids, nids, bos, ctx, max_chunks, 0, pg, r, e);
        bs_model_free(&m);
    }
    return rc;
}

int bs_engine_ppl(bs_engine *eng, int n, const int *ids, int nids, int ctx, int max_chunks, bs_ppl_result *r,
                  bs_err *e)
{
    return bs_engine_ppl_p(eng, n, ids, nids, ctx, max_chunks, 0, NULL, NULL, r, e);
}

int bs_engine_ppl_decode(bs_engine *eng, int n, const int *ids, int nids, int ctx, int max_chunks, bs_ppl_result *r,
                         bs_err *e)
{
    return bs_engine_ppl_p(eng, n, ids, nids, ctx, max_chunks, 1, NULL, NULL, r, e);
}
