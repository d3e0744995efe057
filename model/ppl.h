/* Perplexity, with one protocol everywhere (docs/perplexity.md):
 * tokenize the whole text as one stream (dummy-prefix space, no BOS); cut the ids
 * into consecutive windows of ctx-1 tokens; run each as [BOS] + window; score every
 * window token given the ones before it; perplexity = exp(mean NLL). Only full windows
 * count; max_chunks > 0 takes that many windows from the start. */
#ifndef BS_PPL_H
#define BS_PPL_H

#include "model/model.h"
#include "model/tokenizer.h"

struct bs_team;

typedef struct {
    double ppl;
    double nll_sum;
    long tokens;     /* scored tokens */
    int windows;
    double seconds;
} bs_ppl_result;

/* Progress of a perplexity run: fn(ctx, windows done, windows in all) after each window.
 * model/ never prints; a caller that wants a bar draws it here. */
typedef struct {
    void (*fn)(void *ctx, int done, int total);
    void *ctx;
} bs_ppl_progress;

/* Runs the protocol over ids (already tokenized). */
int bs_ppl_ids(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks,
               bs_ppl_result *r, bs_err *e);

/* The same protocol, one token at a time through the decode path (a stacked model then
 * runs its single-token kernels, int8 activations included). */
int bs_ppl_ids_decode(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks,
                      bs_ppl_result *r, bs_err *e);

/* Tokenizes text and runs the protocol. */
int bs_ppl_text(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len, int ctx,
                int max_chunks, bs_ppl_result *r, bs_err *e);

/* llama.cpp's llama-perplexity protocol, for comparing figures with it:
 * ids = BOS + the whole text (dummy-prefix space); consecutive windows of ctx ids
 * (no overlap), the first id of each replaced by BOS; each window runs from position
 * 0 and only its second half is scored: logits at positions ctx/2 .. ctx-2 against
 * the ids after them (ctx - 1 - ctx/2 per window). ctx may exceed the model's
 * seq_len, as llama.cpp allows. max_chunks > 0 takes that many windows. */
int bs_ppl_ids_llamacpp(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks,
                        bs_ppl_result *r, bs_err *e);

enum { BS_PPL_BITSTACK = 0, BS_PPL_LLAMACPP = 1 };

/* "bitstack" or "llama.cpp" to BS_PPL_*; -1 for anything else. */
int bs_ppl_protocol_parse(const char *name);

/* Tokenizes text as the protocol wants it and runs that protocol. */
int bs_ppl_text_protocol(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len,
                         int protocol, int ctx, int max_chunks, bs_ppl_result *r, bs_err *e);

/* bs_ppl_ids and bs_ppl_text, reporting to pg (NULL: silent). */
int bs_ppl_ids_p(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks, int step,
                 const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e);
int bs_ppl_text_p(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len, int ctx,
                  int max_chunks, const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e);
/* bs_ppl_ids_p with each product's rows split over team (borrowed; NULL: this thread). The
 * caller keeps OpenBLAS at one thread meanwhile (model/forward.h). */
int bs_ppl_ids_team(const bs_model *m, const int *ids, int n, int bos, int ctx, int max_chunks, int step,
                    struct bs_team *team, const bs_ppl_progress *pg, bs_ppl_result *r, bs_err *e);

/* Reads a whole file into a malloc'd buffer (NUL-terminated). */
char *bs_read_file(const char *path, size_t *len, bs_err *e);

#endif
