/* GGUF files of the `llama` architecture onto bs_model. llama.cpp stores Q and K
 * already in the adjacent-pair RoPE order this forward pass uses, so no permutation. */
#include "kernels/dequant.h"
#include "model/gguf.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

static int get_dim(const bs_gguf *g, const char *key, int required, int64_t dflt, int *out, bs_err *e)
{
    int64_t v;
    if (bs_gguf_get_int(g, key, &v) != 0) {
        if (required)
            return bs_err_set(e, "%s: metadata key %s is missing", g->path, key);
        v = dflt;
    }
    if (v <= 0 || v > (1 << 24))
        return bs_err_set(e, "%s: metadata %s = %lld is out of range", g->path, key, (long long)v);
    *out = (int)v;
    return 0;
}

/* Copies tensor `name` (expected rows x cols) into dst as fp32. */
static int load_tensor(const bs_gguf *g, const char *name, int rows, int cols, float *dst, bs_err *e)
{
    const bs_gguf_tensor *t = bs_gguf_tensor_find(g, name);
    if (!t)
        return bs_err_set(e, "%s: tensor %s is missing", g->path, name);
    uint64_t r = t->n_dims > 1 ? t->dims[1] : 1;
    if (t->dims[0] != (uint64_t)cols || r != (uint64_t)rows || t->dims[2] != 1 || t->dims[3] != 1)
        return bs_err_set(e, "%s: tensor %s has shape [%llu, %llu], expected [%d, %d]", g->path, name,
                          (unsigned long long)t->dims[0], (unsigned long long)r, cols, rows);
    /* each tensor's own type counts: quantizers fall back per tensor, so
     * general.file_type does not say what a tensor holds */
    if (bs_dequant(t->type, t->data, dst, (size_t)rows * (size_t)cols))
        return bs_err_set(e, "%s: tensor %s has type %s (%u), which bitstack cannot dequantize",
                          g->path, name, bs_ggml_type_name(t->type), t->type);
    return 0;
}

static const char *const gguf_lin[BS_NLIN] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up",
};

static int load_weights(const bs_gguf *g, bs_model *m, bs_err *e)
{
    const bs_config *c = &m->cfg;
    char name[96];
    if (load_tensor(g, "token_embd.weight", c->vocab_size, c->dim, m->tok_emb, e) ||
        load_tensor(g, "output_norm.weight", 1, c->dim, m->final_norm, e))
        return -1;
    if (m->cls != m->tok_emb &&
        load_tensor(g, "output.weight", c->vocab_size, c->dim, m->cls, e))
        return -1;
    for (int l = 0; l < c->n_layers; l++) {
        bs_layer *L = &m->layers[l];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if (load_tensor(g, name, 1, c->dim, L->att_norm, e))
            return -1;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if (load_tensor(g, name, 1, c->dim, L->ffn_norm, e))
            return -1;
        for (int w = 0; w < BS_NLIN; w++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, gguf_lin[w]);
            if (load_tensor(g, name, L->lin[w].rows, L->lin[w].cols, L->lin[w].w, e))
                return -1;
        }
    }
    return 0;
}

int bs_model_load_gguf(bs_model *m, const char *path, bs_err *e)
{
    memset(m, 0, sizeof *m);
    bs_gguf g;
    if (bs_gguf_open(&g, path, e))
        return -1;
    bs_gguf_str arch;
    bs_config c = {0};
    int rc = -1;
    if (bs_gguf_get_str(&g, "general.architecture", &arch) || !bs_gguf_str_eq(arch, "llama")) {
        bs_err_set(e, "%s: general.architecture is not 'llama'", path);
        goto out;
    }
    if (get_dim(&g, "llama.embedding_length", 1, 0, &c.dim, e) ||
        get_dim(&g, "llama.feed_forward_length", 1, 0, &c.hidden_dim, e) ||
        get_dim(&g, "llama.block_count", 1, 0, &c.n_layers, e) ||
        get_dim(&g, "llama.attention.head_count", 1, 0, &c.n_heads, e) ||
        get_dim(&g, "llama.attention.head_count_kv", 0, c.n_heads, &c.n_kv_heads, e) ||
        get_dim(&g, "llama.context_length", 0, 2048, &c.seq_len, e))
        goto out;
    const bs_gguf_tensor *emb = bs_gguf_tensor_find(&g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->dims[1] > (1 << 22)) {
        bs_err_set(e, "%s: token_embd.weight is missing or not a matrix", path);
        goto out;
    }
    c.vocab_size = (int)emb->dims[1];
    double eps = 1e-5, theta = 10000.0;
    bs_gguf_get_float(&g, "llama.attention.layer_norm_rms_epsilon", &eps);
    bs_gguf_get_float(&g, "llama.rope.freq_base", &theta);
    c.rms_eps = (float)eps;
    c.rope_theta = (float)theta;
    if (bs_config_check(&c, path, e))
        goto out;
    int64_t rot;
    if (bs_gguf_get_int(&g, "llama.rope.dimension_count", &rot) == 0 && rot != c.head_dim) {
        bs_err_set(e, "%s: rope.dimension_count %lld differs from the head size %d (partial RoPE is not supported)",
                   path, (long long)rot, c.head_dim);
        goto out;
    }
    /* a classifier byte-identical to the embedding (converters often write both) is shared,
     * so it is neither held twice in memory nor stored twice in a store */
    const bs_gguf_tensor *out_w = bs_gguf_tensor_find(&g, "output.weight");
    int shared = !out_w || (out_w->type == emb->type && out_w->nbytes == emb->nbytes &&
                            memcmp(out_w->dims, emb->dims, sizeof emb->dims) == 0 &&
                            memcmp(out_w->data, emb->data, emb->nbytes) == 0);
    /* The shape comes from the metadata, the tensors are checked only after allocation:
     * a file too small to hold that shape even at the densest quantisation ggml has (under
     * 2 bits a weight: at least 4 weights a byte) is refused first, so a few KiB of bad
     * metadata cannot ask for gigabytes. */
    uint64_t weights = (uint64_t)bs_model_linear_params(&c) + (uint64_t)c.vocab_size * (uint64_t)c.dim +
                       (uint64_t)(2 * c.n_layers + 1) * (uint64_t)c.dim;
    if (weights / 4 > g.size) {
        bs_err_set(e, "%s: the metadata's shape (dim %d, hidden %d, %d layers, vocab %d) needs %llu weights; "
                   "the file has %zu bytes", path, c.dim, c.hidden_dim, c.n_layers, c.vocab_size,
                   (unsigned long long)weights, g.size);
        goto out;
    }
    if (bs_model_alloc(m, &c, shared, e))
        goto out;
    if (load_weights(&g, m, e)) {
        bs_model_free(m);
        goto out;
    }
    rc = 0;
out:
    bs_gguf_close(&g);
    return rc;
}
