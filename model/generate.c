#include "model/generate.h"

#include <stdlib.h>
#include <string.h>

int bs_gen_init(bs_gen *g, const bs_model *m, const bs_tokenizer *tok, const bs_gen_params *p, bs_err *e)
{
    memset(g, 0, sizeof *g);
    g->m = m;
    g->tok = tok;
    g->prev = -1;
    int ctx = p->ctx > 0 && p->ctx < m->cfg.seq_len ? p->ctx : m->cfg.seq_len;
    if (bs_state_init(&g->st, &m->cfg, ctx, 64, e))
        return -1;
    if (p->team && bs_state_use_team(&g->st, p->team, e)) {
        bs_state_free(&g->st);
        return -1;
    }
    if (bs_sampler_init(&g->smp, m->cfg.vocab_size, p->temperature, p->top_p, p->seed, e)) {
        bs_state_free(&g->st);
        return -1;
    }
    return 0;
}

void bs_gen_free(bs_gen *g)
{
    bs_state_free(&g->st);
    bs_sampler_free(&g->smp);
    memset(g, 0, sizeof *g);
}

int bs_gen_prompt(bs_gen *g, const char *prompt, size_t len, bs_err *e)
{
    int *ids = NULL, n = 0;
    if (bs_tok_encode(g->tok, prompt, len, 1, 1, &ids, &n, e))
        return -1;
    if (n >= g->st.ctx) {
        free(ids);
        return bs_err_set(e, "the prompt is %d tokens; the context holds %d", n, g->st.ctx);
    }
    g->logits = bs_forward(g->m, &g->st, ids, n, 0, 0, e);
    g->pos = n;
    g->prev = ids[n - 1];
    g->prompt_tokens = n;
    free(ids);
    return g->logits ? 0 : -1;
}

int bs_gen_sample(bs_gen *g, int *token)
{
    if (g->pos >= g->st.ctx || !g->logits) {
        *token = -1;
        return 0;
    }
    int next = bs_sample(&g->smp, g->logits);
    *token = next;
    if (next == bs_tok_eos(g->tok) || next == bs_tok_bos(g->tok))
        return 0;
    g->piece = bs_tok_piece(g->tok, g->prev, next, &g->piece_len);
    g->prev = next;
    return 1;
}

int bs_gen_advance(bs_gen *g, bs_err *e)
{
    int tok = g->prev;
    g->logits = bs_forward(g->m, &g->st, &tok, 1, g->pos, 0, e);
    if (!g->logits)
        return -1;
    g->pos++;
    return 0;
}

int bs_gen_advance_batch(bs_gen *const *g, int n, bs_err *e)
{
    if (n == 1)
        return bs_gen_advance(g[0], e);
    bs_state *st[BS_QMAT_MAX_BATCH];
    int tok[BS_QMAT_MAX_BATCH], pos[BS_QMAT_MAX_BATCH];
    if (n < 1 || n > BS_QMAT_MAX_BATCH)
        return bs_err_set(e, "a batch of %d generations, at most %d", n, BS_QMAT_MAX_BATCH);
    for (int i = 0; i < n; i++) {
        st[i] = &g[i]->st;
        tok[i] = g[i]->prev;
        pos[i] = g[i]->pos;
    }
    if (!bs_forward_batch(g[0]->m, st, tok, pos, n, e))
        return -1;
    for (int i = 0; i < n; i++) {
        g[i]->logits = g[i]->st.logits;
        g[i]->pos++;
    }
    return 0;
}

int bs_gen_step(bs_gen *g, int *token, bs_err *e)
{
    if (g->pos < g->st.ctx && !g->logits)
        return bs_err_set(e, "no prompt was run");
    int r = bs_gen_sample(g, token);
    if (r != 1)
        return r;
    return bs_gen_advance(g, e) ? -1 : 1;
}
