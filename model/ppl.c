#include "model/ppl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/clock.h"

#include "kernels/ops.h"
#include "model/forward.h"

/* The protocol, each window either as one batch or (step) one token at a time: the path a
 * served model decodes by. */
int bs_ppl_ids_p(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks, int step,
                 const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e)
{
    return bs_ppl_ids_team(m, ids, n, bos, ctx, max_chunks, step, NULL, pg, r, e);
}

int bs_ppl_ids_team(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks, int step,
                    bs_team *team, const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e)
{
    memset(r, 0, sizeof *r);
    if (ctx < 2 || ctx > m->cfg.seq_len)
        return bs_err_set(e, "context %d must lie in 2..%d (the model's seq_len)", ctx, m->cfg.seq_len);
    int win = ctx - 1;
    int windows = n / win;
    if (max_chunks > 0 && windows > max_chunks)
        windows = max_chunks;
    if (windows == 0)
        return bs_err_set(e, "the text has %d tokens, fewer than one window of %d", n, win);
    bs_state s;
    if (bs_state_init(&s, &m->cfg, ctx, step ? 1 : ctx, e))
        return -1;
    if (team && bs_state_use_team(&s, team, e)) {
        bs_state_free(&s);
        return -1;
    }
    int *in = malloc(sizeof(int) * (size_t)ctx);
    if (!in) {
        bs_state_free(&s);
        return bs_err_set(e, "out of memory");
    }
    double t0 = bs_now();
    for (int w = 0; w < windows; w++) {
        const int *win_ids = ids + (size_t)w * win;
        in[0] = bos;
        memcpy(in + 1, win_ids, sizeof(int) * (size_t)(win - 1));
        const float *lg = step ? NULL : bs_forward(m, &s, in, win, 0, 1, e);
        for (int j = 0; j < win; j++) {
            if (step)
                lg = bs_forward(m, &s, &in[j], 1, j, 0, e);
            if (!lg) {
                free(in);
                bs_state_free(&s);
                return -1;
            }
            const float *row = step ? lg : lg + (size_t)j * m->cfg.vocab_size;
            r->nll_sum += bs_logsumexp(row, m->cfg.vocab_size) - row[win_ids[j]];
        }
        r->tokens += win;
        if (pg && pg->fn)
            pg->fn(pg->ctx, w + 1, windows);
    }
    r->windows = windows;
    r->seconds = bs_now() - t0;
    r->ppl = exp(r->nll_sum / (double)r->tokens);
    free(in);
    bs_state_free(&s);
    return 0;
}

int bs_ppl_ids(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks,
               bs_ppl_result *r, bs_err *e)
{
    return bs_ppl_ids_p(m, ids, n, bos, ctx, max_chunks, 0, NULL, r, e);
}

int bs_ppl_ids_decode(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks,
                      bs_ppl_result *r, bs_err *e)
{
    return bs_ppl_ids_p(m, ids, n, bos, ctx, max_chunks, 1, NULL, r, e);
}

int bs_ppl_text(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len, int ctx,
                int max_chunks, bs_ppl_result *r, bs_err *e)
{
    return bs_ppl_text_p(m, t, text, len, ctx, max_chunks, NULL, r, e);
}

int bs_ppl_text_p(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len, int ctx,
                  int max_chunks, const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e)
{
    int *ids = NULL, n = 0;
    if (bs_tok_encode(t, text, len, 0, 1, &ids, &n, e))
        return -1;
    int rc = bs_ppl_ids_p(m, ids, n, bs_tok_bos(t), ctx, max_chunks, 0, pg, r, e);
    free(ids);
    return rc;
}

int bs_ppl_ids_llamacpp(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks,
                        bs_ppl_result *r, bs_err *e)
{
    memset(r, 0, sizeof *r);
    if (ctx < 4 || ctx > 1 << 20)
        return bs_err_set(e, "context %d must be at least 4", ctx);
    int windows = n / ctx;
    if (max_chunks > 0 && windows > max_chunks)
        windows = max_chunks;
    if (windows == 0)
        return bs_err_set(e, "the text has %d tokens, fewer than one window of %d", n, ctx);
    bs_state s;
    if (bs_state_init(&s, &m->cfg, ctx, ctx, e))
        return -1;
    int *in = malloc(sizeof(int) * (size_t)ctx);
    if (!in) {
        bs_state_free(&s);
        return bs_err_set(e, "out of memory");
    }
    int first = ctx / 2;
    double t0 = bs_now();
    for (int w = 0; w < windows; w++) {
        memcpy(in, ids + (size_t)w * ctx, sizeof(int) * (size_t)ctx);
        in[0] = bos;
        const float *lg = bs_forward(m, &s, in, ctx, 0, 1, e);
        if (!lg) {
            free(in);
            bs_state_free(&s);
            return -1;
        }
        for (int j = first; j < ctx - 1; j++) {
            const float *row = lg + (size_t)j * m->cfg.vocab_size;
            r->nll_sum += bs_logsumexp(row, m->cfg.vocab_size) - row[in[j + 1]];
        }
        r->tokens += ctx - 1 - first;
    }
    r->windows = windows;
    r->seconds = bs_now() - t0;
    r->ppl = exp(r->nll_sum / (double)r->tokens);
    free(in);
    bs_state_free(&s);
    return 0;
}

int bs_ppl_protocol_parse(const char *name)
{
    if (!strcmp(name, "bitstack"))
        return BS_PPL_BITSTACK;
    if (!strcmp(name, "llama.cpp"))
        return BS_PPL_LLAMACPP;
    return -1;
}

int bs_ppl_text_protocol(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len,
                         int protocol, int ctx, int max_chunks, bs_ppl_result *r, bs_err *e)
{
    if (protocol == BS_PPL_BITSTACK)
        return bs_ppl_text(m, t, text, len, ctx, max_chunks, r, e);
    int *ids = NULL, n = 0;
    if (bs_tok_encode(t, text, len, 1, bs_tok_add_space_prefix(t), &ids, &n, e))
        return -1;
    int rc = bs_ppl_ids_llamacpp(m, ids, n, bs_tok_bos(t), ctx, max_chunks, r, e);
    free(ids);
    return rc;
}

char *bs_read_file(const char *path, size_t *len, bs_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return bs_err_set(e, "%s: cannot open: %s", path, strerror(errno)), NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (cap ? cap * 2 : 1 << 20);
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return bs_err_set(e, "%s: out of memory", path), NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got < 65536)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return bs_err_set(e, "%s: read error", path), NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
