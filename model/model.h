/* bs_model: a llama-family transformer held in memory, whatever file it came from.
 * Loaders (llama2.c .bin, GGUF, .bstk store) fill the same struct; the forward pass
 * reads only this struct. The model owns every array it points to. */
#ifndef BS_MODEL_H
#define BS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/err.h"

typedef struct {
    int dim;          /* model width */
    int hidden_dim;   /* FFN width */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int vocab_size;
    int seq_len;      /* the context the model was trained with */
    int head_dim;     /* dim / n_heads */
    int kv_dim;       /* n_kv_heads * head_dim */
    float rope_theta; /* 10000 for llama2.c checkpoints */
    float rms_eps;    /* 1e-5 for llama2.c checkpoints */
} bs_config;

/* The seven linears of a layer, in the order llama2.c stores them. */
enum { BS_WQ, BS_WK, BS_WV, BS_WO, BS_W1, BS_W2, BS_W3, BS_NLIN };

/* Short names ("wq", ..., "w3"), indexed by the enum above. */
const char *bs_lin_name(int which);

struct bs_qmat;   /* a matrix made of resident stack blocks (model/qmat.h) */

/* y = W x for one linear. Exactly one of w (dense, rows x cols, row-major) and q is set. */
typedef struct {
    int rows, cols;
    float *w;
    const struct bs_qmat *q;
} bs_linear;

typedef struct {
    float *att_norm;  /* dim */
    float *ffn_norm;  /* dim */
    bs_linear lin[BS_NLIN];
} bs_layer;

typedef struct {
    bs_config cfg;
    float *tok_emb;     /* vocab_size x dim */
    float *cls;         /* vocab_size x dim; equals tok_emb when shared */
    float *final_norm;  /* dim */
    bs_layer *layers;   /* n_layers */
} bs_model;

/* Shapes of linear `which` (rows = outputs, cols = inputs). */
void bs_lin_shape(const bs_config *c, int which, int *rows, int *cols);

/* Fills c->head_dim and c->kv_dim and checks the numbers make a model this code can run.
 * `what` names the file in the message. */
int bs_config_check(bs_config *c, const char *what, bs_err *e);

/* Allocates every array of a model with config c (dense linears), zero-filled.
 * shared_cls: the classifier is the embedding. */
int bs_model_alloc(bs_model *m, const bs_config *c, int shared_cls, bs_err *e);
void bs_model_free(bs_model *m);

/* A deep copy of a dense model. */
int bs_model_copy(bs_model *dst, const bs_model *src, bs_err *e);

/* Number of weights in the linears (the denominator of bits per weight). */
size_t bs_model_linear_params(const bs_config *c);

/* Loads a llama2.c .bin (legacy fp32 layout) or a GGUF file, chosen by the magic. */
int bs_model_load(bs_model *m, const char *path, bs_err *e);
int bs_model_load_llama2c(bs_model *m, const char *path, bs_err *e);
int bs_model_load_gguf(bs_model *m, const char *path, bs_err *e);

/* Fills every weight with deterministic pseudo-random values of a sensible scale
 * (benchmarks and the random-model baseline). */
void bs_model_randomize(bs_model *m, uint64_t seed);

#endif
