#include "model/selfcalib.h"

#include <stdlib.h>
#include <string.h>

#include "model/generate.h"

/* Appends n bytes to the growing text. */
static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n, bs_err *e)
{
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *b = realloc(*buf, c);
        if (!b)
            return bs_err_set(e, "out of memory");
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* One window: BOS, then samples until ctx tokens or the model's end. */
static int one_window(const bs_model *m, const bs_tokenizer *tok, int ctx, uint64_t seed, char **buf, size_t *len,
                      size_t *cap, bs_err *e)
{
    bs_gen g;
    bs_gen_params p = {1.0f, 1.0f, seed, ctx, NULL};
    if (bs_gen_init(&g, m, tok, &p, e))
        return -1;
    int rc = bs_gen_prompt(&g, "", 0, e);
    while (rc == 0 && g.pos < ctx) {
        int t;
        int k = bs_gen_step(&g, &t, e);
        if (k < 0)
            rc = -1;
        if (k <= 0)
            break;
        rc = append(buf, len, cap, g.piece, g.piece_len, e);
    }
    bs_gen_free(&g);
    return rc;
}

int bs_selfcalib_text(const bs_model *m, const bs_tokenizer *tok, int windows, int ctx, uint64_t seed,
                      const bs_progress *pg, char **text, size_t *len, bs_err *e)
{
    *text = NULL;
    *len = 0;
    if (windows < 1 || ctx < 2)
        return bs_err_set(e, "self-calibration: %d windows of %d tokens", windows, ctx);
    if (ctx > m->cfg.seq_len)
        ctx = m->cfg.seq_len;
    size_t cap = 0;
    char *buf = NULL;
    for (int w = 0; w < windows; w++) {
        /* a different stream per window, the same ones for a seed */
        if ((w && append(&buf, len, &cap, " ", 1, e)) ||
            one_window(m, tok, ctx, seed + 0x9e3779b97f4a7c15ull * (uint64_t)(w + 1), &buf, len, &cap, e)) {
            free(buf);
            *len = 0;
            return -1;
        }
        bs_progress_report(pg, "self-calibration", w + 1, windows, NULL);
    }
    if (!buf && append(&buf, len, &cap, "", 0, e))
        return -1;
    *text = buf;
    return 0;
}
