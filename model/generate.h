/* bs_gen: one generation — a prompt, a KV cache, a sampler, and a position.
 * Used alike by `bitstackctl run` and by the daemon's sessions: prefill the prompt
 * as one batch, then one token per bs_gen_step. */
#ifndef BS_GENERATE_H
#define BS_GENERATE_H

#include "model/forward.h"
#include "model/sample.h"
#include "model/tokenizer.h"

typedef struct {
    float temperature;  /* 0 = greedy */
    float top_p;        /* 1 = off */
    uint64_t seed;
    int ctx;            /* KV cache positions; <= 0 takes the model's seq_len */
    bs_team *team;      /* threads to split each product over (borrowed); NULL: this one */
} bs_gen_params;

typedef struct {
    const bs_model *m;
    const bs_tokenizer *tok;
    bs_state st;
    bs_sampler smp;
    const float *logits;  /* of the last token run, for the next sample */
    int pos;              /* tokens in the KV cache */
    int prev;             /* the last token, for decoding the next piece */
    int prompt_tokens;
    const char *piece;    /* text of the token the last bs_gen_step produced */
    size_t piece_len;
} bs_gen;

int bs_gen_init(bs_gen *g, const bs_model *m, const bs_tokenizer *tok, const bs_gen_params *p, bs_err *e);
void bs_gen_free(bs_gen *g);

/* Encodes prompt (BOS + dummy prefix) and runs it as one batch. */
int bs_gen_prompt(bs_gen *g, const char *prompt, size_t len, bs_err *e);

/* Samples the next token and runs it through the model for the one after.
 * Returns 1 with *token set and g->piece/piece_len its text (byte pieces as bytes),
 * 0 when the sequence ends (*token is the EOS/BOS id sampled, or -1 when the context
 * is full), -1 on error. */
int bs_gen_step(bs_gen *g, int *token, bs_err *e);

/* bs_gen_step in its two halves, for a caller whose forward pass may be stopped and run
 * again (model/forward.h, abort): sample the next token (1, or 0 at the end as above),
 * then run it (0, or -1: g->st.aborted tells a stop, to be retried, from an error). */
int bs_gen_sample(bs_gen *g, int *token);
int bs_gen_advance(bs_gen *g, bs_err *e);

/* bs_gen_advance for n generations at once (bs_forward_batch; same model, g[0]'s threads
 * and buffers). 0, or -1: g[0]->st.aborted tells a stop (all of them are to be retried). */
int bs_gen_advance_batch(bs_gen *const *g, int n, bs_err *e);

#endif
