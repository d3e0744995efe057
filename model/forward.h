/* The transformer forward pass over a bs_model: RMSNorm, RoPE on adjacent pairs,
 * grouped-query attention with a KV cache, SwiGLU FFN, tied or separate classifier.
 * A batch of tokens (prefill) runs as matrix-matrix products; one token (decode) as
 * matrix-vector products. Each bs_state is one sequence: its own KV cache. */
#ifndef BS_FORWARD_H
#define BS_FORWARD_H

#include <stdatomic.h>

#include "kernels/team.h"
#include "model/model.h"
#include "model/qmat.h"

/* Where a linear's input can be observed (calibration): the input shared by wq/wk/wv,
 * the input of wo, the input shared by w1/w3, the input of w2. */
enum { BS_SITE_ATT_IN, BS_SITE_ATT_OUT, BS_SITE_FFN_IN, BS_SITE_FFN_OUT, BS_NSITES };

/* Called with the ntok x width input rows of a site, before the linears read them. */
typedef void (*bs_site_hook)(void *ctx, int layer, int site, const float *x, int ntok, int width);

typedef struct {
    int ctx;          /* positions the KV cache holds */
    int max_batch;    /* tokens per internal chunk */
    int vocab, dim;
    int n_layers, kv_dim;
    int kv_cap;         /* positions the caches have room for: grows with use, up to ctx */
    float *key_cache;   /* kv_cap x n_layers x kv_dim */
    float *value_cache;
    float *x, *xb, *xb2, *q, *k, *v, *hb, *hb2;   /* max_batch rows each */
    float *att;         /* ctx scores for one head */
    float *logits;      /* max_batch x vocab */
    int max_cols;
    bs_qmat_run qrun;   /* scratch and threads for the stacked linears (model/qmat.h) */
    const atomic_int *abort;   /* optional: when it reads non-zero, bs_forward stops between
                                * two matrix products and reports `aborted` */
    int aborted;        /* the last bs_forward stopped for abort; running it again redoes it */
    bs_site_hook hook;  /* optional observer of linear inputs */
    void *hook_ctx;
} bs_state;

/* The KV cache grows in chunks of this many positions as a sequence gets longer, so a
 * short conversation does not hold the memory of a full context. */
#define BS_KV_CHUNK 64

/* ctx <= 0 takes the model's seq_len. */
int bs_state_init(bs_state *s, const bs_config *c, int ctx, int max_batch, bs_err *e);
void bs_state_free(bs_state *s);

/* Splits the rows of the linears (stacked, and dense ones large enough) over a team of
 * threads (borrowed; NULL: none). The caller sets OpenBLAS to one thread while the state
 * has a team (each part calls it). */
int bs_state_use_team(bs_state *s, bs_team *team, bs_err *e);

/* 1 when a forward pass of this shape gains from splitting its products over a team (its
 * matrices are large: dim x hidden_dim >= 2^20); a smaller model's pass costs less than
 * waking the team for each product. */
int bs_forward_splits(const bs_config *c);

/* Bytes the KV cache holds now. */
size_t bs_state_kv_bytes(const bs_state *s);

/* What a state for c at this context and batch would hold at most, its KV cache filled
 * to `tokens` positions (rounded up to the cache's chunks): for admission decisions. */
size_t bs_state_bytes_for(const bs_config *c, int ctx, int max_batch, int tokens);

/* Runs tokens[0..ntok) at positions pos..pos+ntok-1, appending to the KV cache.
 * Returns the logits: ntok rows of vocab when all_logits is set (for scoring text),
 * else one row, the last token's. The rows stay valid until the next call. Returns
 * NULL (with e set) when the positions run past ctx, a token id is out of range or the
 * KV cache cannot grow; NULL with s->aborted set when s->abort asked it to stop (the KV
 * entries it wrote are rewritten when the same call runs again). */
const float *bs_forward(const bs_model *m, bs_state *s, const int *tokens, int ntok, int pos,
                        int all_logits, bs_err *e);

/* One token each for n independent sequences (sessions decoding together): tokens[t] at
 * position pos[t] of st[t] (its own KV cache). The linears run once on an n-row matrix
 * in st[0]'s buffers and with st[0]'s threads, so each matrix's bytes are read once for
 * all n; attention runs per sequence. n <= st[0]->max_batch. Returns the logits, n rows
 * of vocab (row t also copied into st[t]->logits, where bs_forward leaves one token's);
 * NULL with e set on an error, or with every st[t]->aborted set when st[0]->abort asked
 * it to stop (run it again to redo it).
 * Exactness: plane blocks (gq, saq) give every row the sums its own one-token pass gives,
 * bit for bit (bs_kernel_planes_matmul_int8: below the crossover, n < 48, or at any n on the
 * AVX-512 span kernel); dense products (the
 * classifier) and avd/qasym blocks run as one sgemm instead of n matrix-vector products,
 * which may round differently (~1e-7 relative), so a sampled token can differ from a lone
 * run's only at a near-tie. */
const float *bs_forward_batch(const bs_model *m, bs_state *const *st, const int *tokens, const int *pos, int n,
                              bs_err *e);

/* y (ntok x rows) = x (ntok x cols) W^T for one linear, dense or stacked;
 * adds into y when accumulate is set. run: the state's qrun. */
int bs_linear_apply(const bs_linear *lin, float *y, const float *x, int ntok, int accumulate, const bs_qmat_run *run,
                    bs_err *e);

#endif
