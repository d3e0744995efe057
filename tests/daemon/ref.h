/* The reference the daemon's output is held to: the same store prefix run in this process
 * with bs_gen, and the stop-string rule of the protocol (the text ends where a stop string
 * first appears; the stop string is not part of it). */
#ifndef BS_TEST_DAEMON_REF_H
#define BS_TEST_DAEMON_REF_H

#include <stdlib.h>
#include <string.h>

#include "model/generate.h"
#include "model/engine.h"

typedef struct {
    bs_engine eng;
    const bs_store *s;
    bs_view *v;         /* held: the model at n */
    int n;
} ref_model;

/* Uses the prefix of n blocks (reading any the engine lacks). */
static inline int ref_set_n(ref_model *m, int n)
{
    bs_err e;
    int bad;
    bs_engine_release(&m->eng, m->v);
    m->v = NULL;
    if (bs_engine_read_blocks(&m->eng, n, &bad, &e) || bs_engine_publish(&m->eng, n, &e)) {
        fprintf(stderr, "ref: %s\n", e.msg);
        return -1;
    }
    m->v = bs_engine_acquire(&m->eng);
    m->n = n;
    return 0;
}

static inline int ref_open(ref_model *m, const char *path, const char *budget)
{
    bs_err e;
    int n;
    memset(m, 0, sizeof *m);
    if (bs_engine_open(&m->eng, path, &e) || bs_engine_budget_n(&m->eng.store, budget, &n, &e)) {
        fprintf(stderr, "ref: %s\n", e.msg);
        return -1;
    }
    m->s = &m->eng.store;
    return ref_set_n(m, n);
}

static inline void ref_close(ref_model *m)
{
    bs_engine_release(&m->eng, m->v);
    bs_engine_close(&m->eng);
}

typedef struct {
    char *text;             /* malloc'd */
    size_t len;
    int prompt_tokens, generated;
    const char *finish;     /* "length", "stop", "eos" */
} ref_out;

static inline int ref_generate(ref_model *m, const char *prompt, int max_tokens, float temperature, float top_p,
                        uint64_t seed, const char *const *stops, int n_stop, ref_out *o)
{
    bs_err e;
    memset(o, 0, sizeof *o);
    bs_gen g;
    bs_gen_params p = {temperature, top_p, seed, 0, NULL};
    if (bs_gen_init(&g, &m->v->sm.model, m->s->tok, &p, &e) || bs_gen_prompt(&g, prompt, strlen(prompt), &e)) {
        fprintf(stderr, "ref: %s\n", e.msg);
        return -1;
    }
    o->prompt_tokens = g.prompt_tokens;
    o->text = calloc(1, 1);
    o->finish = "length";
    while (o->generated < max_tokens) {
        int tok;
        int r = bs_gen_step(&g, &tok, &e);
        if (r < 0) {
            fprintf(stderr, "ref: %s\n", e.msg);
            bs_gen_free(&g);
            return -1;
        }
        if (r == 0) {
            o->finish = tok < 0 ? "length" : "eos";
            break;
        }
        o->generated++;
        o->text = realloc(o->text, o->len + g.piece_len + 1);
        memcpy(o->text + o->len, g.piece, g.piece_len);
        o->len += g.piece_len;
        o->text[o->len] = '\0';
        size_t cut = SIZE_MAX;
        for (int i = 0; i < n_stop; i++) {
            const char *hit = memmem(o->text, o->len, stops[i], strlen(stops[i]));
            if (hit && (size_t)(hit - o->text) < cut)
                cut = (size_t)(hit - o->text);
        }
        if (cut != SIZE_MAX) {
            o->len = cut;
            o->text[cut] = '\0';
            o->finish = "stop";
            break;
        }
    }
    bs_gen_free(&g);
    return 0;
}

#endif
