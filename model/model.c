#include "model/model.h"
#include "kernels/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const lin_names[BS_NLIN] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};

const char *bs_lin_name(int which)
{
    return which >= 0 && which < BS_NLIN ? lin_names[which] : "?";
}

void bs_lin_shape(const bs_config *c, int which, int *rows, int *cols)
{
    switch (which) {
    case BS_WQ: *rows = c->dim; *cols = c->dim; break;
    case BS_WK: case BS_WV: *rows = c->kv_dim; *cols = c->dim; break;
    case BS_WO: *rows = c->dim; *cols = c->dim; break;
    case BS_W1: case BS_W3: *rows = c->hidden_dim; *cols = c->dim; break;
    case BS_W2: *rows = c->dim; *cols = c->hidden_dim; break;
    default: *rows = *cols = 0; break;
    }
}

int bs_config_check(bs_config *c, const char *what, bs_err *e)
{
    /* Bounds far beyond any model this runs, tight enough that products stay in size_t. */
    if (c->dim <= 0 || c->dim > 65536 || c->hidden_dim <= 0 || c->hidden_dim > 262144 ||
        c->n_layers <= 0 || c->n_layers > 1024 || c->n_heads <= 0 || c->n_heads > c->dim ||
        c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->vocab_size <= 0 ||
        c->vocab_size > 1 << 22 || c->seq_len <= 0 || c->seq_len > 1 << 22)
        return bs_err_set(e, "%s: absurd model dimensions (dim %d, hidden %d, layers %d, heads %d/%d, "
                          "vocab %d, seq_len %d)", what, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                          c->n_kv_heads, c->vocab_size, c->seq_len);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2)
        return bs_err_set(e, "%s: dim %d does not split into %d heads of even size sharing %d kv heads",
                          what, c->dim, c->n_heads, c->n_kv_heads);
    if (!(c->rms_eps > 0 && c->rms_eps < 1) || !(c->rope_theta > 1))
        return bs_err_set(e, "%s: bad rms_eps %g or rope base %g", what, c->rms_eps, c->rope_theta);
    c->head_dim = c->dim / c->n_heads;
    c->kv_dim = c->n_kv_heads * c->head_dim;
    return 0;
}

size_t bs_model_linear_params(const bs_config *c)
{
    size_t n = 0;
    for (int w = 0; w < BS_NLIN; w++) {
        int r, k;
        bs_lin_shape(c, w, &r, &k);
        n += (size_t)r * (size_t)k;
    }
    return n * (size_t)c->n_layers;
}

static float *zalloc(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

int bs_model_alloc(bs_model *m, const bs_config *c, int shared_cls, bs_err *e)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    size_t emb = (size_t)c->vocab_size * (size_t)c->dim;
    m->tok_emb = zalloc(emb);
    m->cls = shared_cls ? m->tok_emb : zalloc(emb);
    m->final_norm = zalloc((size_t)c->dim);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    int ok = m->tok_emb && m->cls && m->final_norm && m->layers;
    for (int l = 0; ok && l < c->n_layers; l++) {
        bs_layer *L = &m->layers[l];
        L->att_norm = zalloc((size_t)c->dim);
        L->ffn_norm = zalloc((size_t)c->dim);
        ok = L->att_norm && L->ffn_norm;
        for (int w = 0; ok && w < BS_NLIN; w++) {
            bs_lin_shape(c, w, &L->lin[w].rows, &L->lin[w].cols);
            L->lin[w].w = zalloc((size_t)L->lin[w].rows * (size_t)L->lin[w].cols);
            ok = L->lin[w].w != NULL;
        }
    }
    if (!ok) {
        bs_model_free(m);
        return bs_err_set(e, "out of memory for a model of %zu linear weights", bs_model_linear_params(c));
    }
    return 0;
}

void bs_model_free(bs_model *m)
{
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            free(m->layers[l].att_norm);
            free(m->layers[l].ffn_norm);
            for (int w = 0; w < BS_NLIN; w++)
                free(m->layers[l].lin[w].w);
        }
    }
    if (m->cls != m->tok_emb)
        free(m->cls);
    free(m->tok_emb);
    free(m->final_norm);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

static void fill_uniform(float *x, size_t n, float scale, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (2.0f * (float)((bs_splitmix64(s) >> 40) * (1.0 / 16777216.0)) - 1.0f);
}

void bs_model_randomize(bs_model *m, uint64_t seed)
{
    const bs_config *c = &m->cfg;
    uint64_t s = seed;
    /* uniform(-a, a) with a = sqrt(3/fan_in) gives unit-variance outputs, like a fresh init */
    fill_uniform(m->tok_emb, (size_t)c->vocab_size * c->dim, 1.0f, &s);
    if (m->cls != m->tok_emb)
        fill_uniform(m->cls, (size_t)c->vocab_size * c->dim, sqrtf(3.0f / c->dim), &s);
    for (int i = 0; i < c->dim; i++)
        m->final_norm[i] = 1.0f;
    for (int l = 0; l < c->n_layers; l++) {
        bs_layer *L = &m->layers[l];
        for (int i = 0; i < c->dim; i++)
            L->att_norm[i] = L->ffn_norm[i] = 1.0f;
        for (int w = 0; w < BS_NLIN; w++) {
            bs_linear *lin = &L->lin[w];
            if (lin->w)
                fill_uniform(lin->w, (size_t)lin->rows * lin->cols, sqrtf(3.0f / lin->cols), &s);
        }
    }
}

int bs_model_copy(bs_model *dst, const bs_model *src, bs_err *e)
{
    const bs_config *c = &src->cfg;
    if (bs_model_alloc(dst, c, src->cls == src->tok_emb, e))
        return -1;
    size_t emb = (size_t)c->vocab_size * c->dim, d = (size_t)c->dim * sizeof(float);
    memcpy(dst->tok_emb, src->tok_emb, emb * sizeof(float));
    if (dst->cls != dst->tok_emb)
        memcpy(dst->cls, src->cls, emb * sizeof(float));
    memcpy(dst->final_norm, src->final_norm, d);
    for (int l = 0; l < c->n_layers; l++) {
        memcpy(dst->layers[l].att_norm, src->layers[l].att_norm, d);
        memcpy(dst->layers[l].ffn_norm, src->layers[l].ffn_norm, d);
        for (int w = 0; w < BS_NLIN; w++) {
            const bs_linear *a = &src->layers[l].lin[w];
            memcpy(dst->layers[l].lin[w].w, a->w, (size_t)a->rows * a->cols * sizeof(float));
        }
    }
    return 0;
}
