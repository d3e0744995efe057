#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/team.h"
#include "model/qmat.h"

/* The kernels' scratch: 64-byte aligned (their vector loads), zeroed. */
static float *scratch_alloc(size_t floats)
{
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

int bs_state_init(bs_state *s, const bs_config *c, int ctx, int max_batch, bs_err *e)
{
    memset(s, 0, sizeof *s);
    if (ctx <= 0)
        ctx = c->seq_len;
    if (max_batch <= 0)
        max_batch = 1;
    s->ctx = ctx;
    s->max_batch = max_batch;
    s->vocab = c->vocab_size;
    s->dim = c->dim;
    size_t B = (size_t)max_batch;
    s->n_layers = c->n_layers;
    s->kv_dim = c->kv_dim;
    s->x = calloc(B * c->dim, sizeof(float));
    s->xb = calloc(B * c->dim, sizeof(float));
    s->xb2 = calloc(B * c->dim, sizeof(float));
    s->q = calloc(B * c->dim, sizeof(float));
    s->k = calloc(B * c->kv_dim, sizeof(float));
    s->v = calloc(B * c->kv_dim, sizeof(float));
    s->hb = calloc(B * c->hidden_dim, sizeof(float));
    s->hb2 = calloc(B * c->hidden_dim, sizeof(float));
    s->att = calloc((size_t)ctx, sizeof(float));
    s->logits = calloc(B * c->vocab_size, sizeof(float));
    s->max_cols = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    s->qrun.scratch = scratch_alloc(bs_qmat_scratch_floats(s->max_cols, 1));
    s->qrun.isa = bs_kernel_isa_default();
    if (!s->qrun.scratch || !s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v ||
        !s->hb || !s->hb2 || !s->att || !s->logits) {
        bs_state_free(s);
        return bs_err_set(e, "out of memory for a context of %d tokens", ctx);
    }
    return 0;
}

void bs_state_free(bs_state *s)
{
    free(s->key_cache); free(s->value_cache);
    free(s->x); free(s->xb); free(s->xb2); free(s->q); free(s->k); free(s->v);
    free(s->hb); free(s->hb2); free(s->att); free(s->logits); free(s->qrun.scratch);
    memset(s, 0, sizeof *s);
}

/* Room in the KV cache for positions [0, need): grown in chunks, never past ctx. */
static int kv_reserve(bs_state *s, int need, bs_err *e)
{
    if (need <= s->kv_cap)
        return 0;
    int cap = (need + BS_KV_CHUNK - 1) / BS_KV_CHUNK * BS_KV_CHUNK;
    if (cap > s->ctx)
        cap = s->ctx;
    size_t n = (size_t)cap * s->n_layers * s->kv_dim;
    float *k = realloc(s->key_cache, n * sizeof(float));
    if (k)
        s->key_cache = k;
    float *v = k ? realloc(s->value_cache, n * sizeof(float)) : NULL;
    if (v)
        s->value_cache = v;
    if (!k || !v)
        return bs_err_set(e, "out of memory for a KV cache of %d positions", cap);
    s->kv_cap = cap;
    return 0;
}

size_t bs_state_bytes_for(const bs_config *c, int ctx, int max_batch, int tokens)
{
    size_t B = (size_t)(max_batch > 0 ? max_batch : 1);
    int cols = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    size_t floats = B * (4 * (size_t)c->dim + 2 * (size_t)c->kv_dim + 2 * (size_t)c->hidden_dim + (size_t)c->vocab_size) +
                    (size_t)ctx + bs_qmat_scratch_floats(cols, 1);
    size_t cap = ((size_t)tokens + BS_KV_CHUNK - 1) / BS_KV_CHUNK * BS_KV_CHUNK;
    return floats * sizeof(float) + 2 * cap * (size_t)c->n_layers * (size_t)c->kv_dim * sizeof(float);
}

size_t bs_state_kv_bytes(const bs_state *s)
{
    return 2 * (size_t)s->kv_cap * s->n_layers * s->kv_dim * sizeof(float);
}

/* Positions are outermost so that growing the cache only extends its tail. */
static size_t kv_at(const bs_state *s, int pos, int layer)
{
    return ((size_t)pos * s->n_layers + layer) * s->kv_dim;
}

int bs_forward_splits(const bs_config *c)
{
    return (size_t)c->dim * (size_t)c->hidden_dim >= ((size_t)1 << 20);
}

int bs_state_use_team(bs_state *s, bs_team *team, bs_err *e)
{
    float *sc = scratch_alloc(bs_qmat_scratch_floats(s->max_cols, bs_team_threads(team)));
    if (!sc)
        return bs_err_set(e, "out of memory for %d threads' scratch", bs_team_threads(team));
    free(s->qrun.scratch);
    s->qrun.scratch = sc;
    s->qrun.team = team;
    return 0;
}

/* A dense product split by rows over the state's team (OpenBLAS runs one thread per part:
 * whoever gives a state a team sets OpenBLAS to 1 thread, so the two never stack up). */
typedef struct {
    float *y;
    const float *x, *w;
    int ntok, m, n, accumulate;
} dense_job;

static void dense_part(void *arg, int p, int parts)
{
    dense_job *j = arg;
    int per = (j->m + parts - 1) / parts;
    per = (per + 15) / 16 * 16;
    int r0 = p * per < j->m ? p * per : j->m, r1 = (p + 1) * per < j->m ? (p + 1) * per : j->m;
    if (r0 < r1)
        bs_matmul_ld(j->y + r0, j->m, j->x, j->w + (size_t)r0 * (size_t)j->n, j->ntok, r1 - r0, j->n, j->accumulate);
}

static void dense_apply(const bs_qmat_run *run, float *y, const float *x, const float *w, int ntok, int m, int n,
                        int accumulate)
{
    int parts = bs_team_threads(run->team);
    /* a small product is not worth waking the team */
    if (parts < 2 || (size_t)m * (size_t)n * (size_t)ntok < ((size_t)1 << 18) || m < 32) {
        bs_matmul(y, x, w, ntok, m, n, accumulate);
        return;
    }
    dense_job j = {y, x, w, ntok, m, n, accumulate};
    bs_team_run(run->team, parts, dense_part, &j);
}

int bs_linear_apply(const bs_linear *lin, float *y, const float *x, int ntok, int accumulate, const bs_qmat_run *run,
                    bs_err *e)
{
    if (lin->q)
        return bs_qmat_apply(lin->q, y, x, ntok, accumulate, run, e);
    dense_apply(run, y, x, lin->w, ntok, lin->rows, lin->cols, accumulate);
    return 0;
}

/* Causal attention of n tokens at positions pos.. over kv's cache: their q/k/v rows are
 * q (dim apart), k and v (kv_dim apart); the output rows go to out (dim apart). */
static void attention(const bs_config *c, bs_state *kv, int layer, const float *qs, const float *ks,
                      const float *vs, float *outs, int n, int pos)
{
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < n; t++) {
        int p = pos + t;
        memcpy(kv->key_cache + kv_at(kv, p, layer), ks + (size_t)t * c->kv_dim, c->kv_dim * sizeof(float));
        memcpy(kv->value_cache + kv_at(kv, p, layer), vs + (size_t)t * c->kv_dim, c->kv_dim * sizeof(float));
    }
    for (int t = 0; t < n; t++) {
        int p = pos + t;
        for (int h = 0; h < c->n_heads; h++) {
            const float *q = qs + (size_t)t * c->dim + h * hd;
            size_t kvo = (size_t)(h / group) * hd;
            for (int j = 0; j <= p; j++) {
                const float *k = kv->key_cache + kv_at(kv, j, layer) + kvo;
                float dot = 0.0f;
                for (int i = 0; i < hd; i++)
                    dot += q[i] * k[i];
                kv->att[j] = dot * scale;
            }
            bs_softmax(kv->att, p + 1);
            float *out = outs + (size_t)t * c->dim + h * hd;
            memset(out, 0, hd * sizeof(float));
            for (int j = 0; j <= p; j++) {
                const float *v = kv->value_cache + kv_at(kv, j, layer) + kvo;
                float a = kv->att[j];
                for (int i = 0; i < hd; i++)
                    out[i] += a * v[i];
            }
        }
    }
}

/* One token each of n sequences, attention split over the team by sequence. */
typedef struct {
    const bs_config *c;
    bs_state *s;
    bs_state *const *kv;
    const int *kvpos;
    int l, n;
} batch_att_job;

static void batch_att_part(void *arg, int p, int parts)
{
    batch_att_job *j = arg;
    const bs_config *c = j->c;
    bs_state *s = j->s;
    int per = (j->n + parts - 1) / parts;
    for (int t = p * per; t < (p + 1) * per && t < j->n; t++)
        attention(c, j->kv[t], j->l, s->q + (size_t)t * c->dim, s->k + (size_t)t * c->kv_dim,
                  s->v + (size_t)t * c->kv_dim, s->xb2 + (size_t)t * c->dim, 1, j->kvpos[t]);
}

/* The n rows in s's buffers are either n consecutive tokens of s itself at positions
 * pos.. (kv NULL), or one token each of n sequences: row t of kv[t] at kvpos[t]. */
static int layer_forward(const bs_model *m, bs_state *s, int l, int n, int pos, bs_state *const *kv,
                         const int *kvpos, bs_err *e)
{
    const bs_config *c = &m->cfg;
    const bs_layer *L = &m->layers[l];
    for (int t = 0; t < n; t++)
        bs_rmsnorm(s->xb + (size_t)t * c->dim, s->x + (size_t)t * c->dim, L->att_norm, c->dim, c->rms_eps);
    if (s->hook)
        s->hook(s->hook_ctx, l, BS_SITE_ATT_IN, s->xb, n, c->dim);
    const bs_qmat_run *sc = &s->qrun;
    /* a view of the weights being withdrawn (a shrink) stops the pass at the next product */
    if (s->abort && atomic_load_explicit(s->abort, memory_order_relaxed))
        return -2;
    if (bs_linear_apply(&L->lin[BS_WQ], s->q, s->xb, n, 0, sc, e) ||
        bs_linear_apply(&L->lin[BS_WK], s->k, s->xb, n, 0, sc, e) ||
        bs_linear_apply(&L->lin[BS_WV], s->v, s->xb, n, 0, sc, e))
        return -1;
    for (int t = 0; t < n; t++) {
        int p = kv ? kvpos[t] : pos + t;
        bs_rope(s->q + (size_t)t * c->dim, c->n_heads, c->head_dim, p, c->rope_theta);
        bs_rope(s->k + (size_t)t * c->kv_dim, c->n_kv_heads, c->head_dim, p, c->rope_theta);
    }
    if (!kv) {
        attention(c, s, l, s->q, s->k, s->v, s->xb2, n, pos);
    } else {
        /* sequences apart: each has its own cache and score buffer */
        batch_att_job j = {c, s, kv, kvpos, l, n};
        bs_team_run(n > 1 ? s->qrun.team : NULL, n < bs_team_threads(s->qrun.team) ? n : bs_team_threads(s->qrun.team),
                    batch_att_part, &j);
    }
    if (s->hook)
        s->hook(s->hook_ctx, l, BS_SITE_ATT_OUT, s->xb2, n, c->dim);
    if (bs_linear_apply(&L->lin[BS_WO], s->x, s->xb2, n, 1, sc, e))
        return -1;
    if (s->abort && atomic_load_explicit(s->abort, memory_order_relaxed))
        return -2;

    for (int t = 0; t < n; t++)
        bs_rmsnorm(s->xb + (size_t)t * c->dim, s->x + (size_t)t * c->dim, L->ffn_norm, c->dim, c->rms_eps);
    if (s->hook)
        s->hook(s->hook_ctx, l, BS_SITE_FFN_IN, s->xb, n, c->dim);
    if (bs_linear_apply(&L->lin[BS_W1], s->hb, s->xb, n, 0, sc, e) ||
        bs_linear_apply(&L->lin[BS_W3], s->hb2, s->xb, n, 0, sc, e))
        return -1;
    bs_swiglu(s->hb, s->hb2, n * c->hidden_dim);
    if (s->hook)
        s->hook(s->hook_ctx, l, BS_SITE_FFN_OUT, s->hb, n, c->hidden_dim);
    return bs_linear_apply(&L->lin[BS_W2], s->x, s->hb, n, 1, sc, e);
}

const float *bs_forward(const bs_model *m, bs_state *s, const int *tokens, int ntok, int pos,
                        int all_logits, bs_err *e)
{
    const bs_config *c = &m->cfg;
    if (ntok <= 0 || pos < 0 || pos > s->ctx - ntok)
        return bs_err_set(e, "positions %d..%d do not fit the context of %d tokens", pos, pos + ntok - 1,
                          s->ctx), NULL;
    if (all_logits && ntok > s->max_batch)
        return bs_err_set(e, "all logits of %d tokens asked, but the state holds %d rows", ntok,
                          s->max_batch), NULL;
    for (int i = 0; i < ntok; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return bs_err_set(e, "token id %d is outside the vocabulary of %d", tokens[i], c->vocab_size), NULL;
    if (kv_reserve(s, pos + ntok, e))
        return NULL;
    s->aborted = 0;

    for (int done = 0; done < ntok;) {
        int n = ntok - done < s->max_batch ? ntok - done : s->max_batch;
        for (int t = 0; t < n; t++)
            memcpy(s->x + (size_t)t * c->dim, m->tok_emb + (size_t)tokens[done + t] * c->dim, c->dim * sizeof(float));
        for (int l = 0; l < c->n_layers; l++) {
            int rc = layer_forward(m, s, l, n, pos + done, NULL, NULL, e);
            if (rc == -2) {
                s->aborted = 1;
                return bs_err_set(e, "stopped: the weights it ran on are being withdrawn"), NULL;
            }
            if (rc)
                return NULL;
        }
        done += n;
        if (done < ntok)
            continue;
        /* the classifier only for the rows asked for: it is the largest matrix of a small model */
        int first = all_logits ? 0 : n - 1;
        for (int t = first; t < n; t++)
            bs_rmsnorm(s->xb + (size_t)t * c->dim, s->x + (size_t)t * c->dim, m->final_norm, c->dim, c->rms_eps);
        dense_apply(&s->qrun, s->logits, s->xb + (size_t)first * c->dim, m->cls, n - first, c->vocab_size, c->dim, 0);
    }
    return s->logits;
}

const float *bs_forward_batch(const bs_model *m, bs_state *const *st, const int *tokens, const int *pos, int n,
                              bs_err *e)
{
    const bs_config *c = &m->cfg;
    bs_state *s = st[0];
    if (n < 1 || n > s->max_batch || n > BS_QMAT_MAX_BATCH)
        return bs_err_set(e, "a batch of %d sequences; the first state holds %d rows", n, s->max_batch), NULL;
    for (int t = 0; t < n; t++) {
        if (pos[t] < 0 || pos[t] >= st[t]->ctx)
            return bs_err_set(e, "position %d does not fit the context of %d tokens", pos[t], st[t]->ctx), NULL;
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return bs_err_set(e, "token id %d is outside the vocabulary of %d", tokens[t], c->vocab_size), NULL;
        if (kv_reserve(st[t], pos[t] + 1, e))
            return NULL;
        st[t]->aborted = 0;
    }
    for (int t = 0; t < n; t++)
        memcpy(s->x + (size_t)t * c->dim, m->tok_emb + (size_t)tokens[t] * c->dim, c->dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        int rc = layer_forward(m, s, l, n, 0, st, pos, e);
        if (rc == -2) {
            for (int t = 0; t < n; t++)
                st[t]->aborted = 1;
            return bs_err_set(e, "stopped: the weights it ran on are being withdrawn"), NULL;
        }
        if (rc)
            return NULL;
    }
    for (int t = 0; t < n; t++)
        bs_rmsnorm(s->xb + (size_t)t * c->dim, s->x + (size_t)t * c->dim, m->final_norm, c->dim, c->rms_eps);
    dense_apply(&s->qrun, s->logits, s->xb, m->cls, n, c->vocab_size, c->dim, 0);
    /* each sequence's logits in its own state, where its next sample looks */
    for (int t = 1; t < n; t++)
        memcpy(st[t]->logits, s->logits + (size_t)t * c->vocab_size, c->vocab_size * sizeof(float));
    return s->logits;
}
