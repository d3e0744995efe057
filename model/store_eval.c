#include "model/store_eval.h"

#include <stdlib.h>

#include "model/stacked.h"

int bs_store_dense(const bs_store *s, int n, bs_model *out, bs_err *e)
{
    uint64_t len = bs_store_prefix_end(s, n);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return bs_err_set(e, "out of memory for %llu bytes of blocks", (unsigned long long)len);
    bs_stacked sm;
    int rc = -1;
    if (bs_store_read_prefix(s, n, buf, e) == 0 && bs_stacked_init(&sm, s, buf, n, e) == 0) {
        rc = bs_stacked_to_dense(&sm, out, e);
        bs_stacked_free(&sm);
    }
    free(buf);
    return rc;
}

int bs_store_ppl(const bs_store *s, int n, const int *ids, int nids, int ctx, int max_chunks, bs_ppl_result *r,
                 bs_err *e)
{
    bs_model m;
    if (bs_store_dense(s, n, &m, e))
        return -1;
    int rc = bs_ppl_ids(&m, ids, nids, bs_tok_bos(s->tok), ctx, max_chunks, r, e);
    bs_model_free(&m);
    return rc;
}
