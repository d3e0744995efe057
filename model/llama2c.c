/* llama2.c checkpoints ("legacy" fp32 export): seven int32 header fields, then every
 * tensor in a fixed order. A negative vocab_size means the classifier is stored
 * separately, after the two legacy RoPE tables (seq_len x head_dim/2 floats each). */
#include "model/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int read_floats(FILE *f, float *dst, size_t n, const char *path, const char *what, bs_err *e)
{
    if (fread(dst, sizeof(float), n, f) != n)
        return bs_err_set(e, "%s: truncated while reading %s", path, what);
    return 0;
}

/* Reads one tensor per layer, each n floats, into the array picked by `pick`. */
static int read_layers(FILE *f, bs_model *m, int which_norm, int lin, const char *path, bs_err *e)
{
    const bs_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        bs_layer *L = &m->layers[l];
        float *dst;
        size_t n;
        const char *what;
        if (lin >= 0) {
            dst = L->lin[lin].w;
            n = (size_t)L->lin[lin].rows * L->lin[lin].cols;
            what = bs_lin_name(lin);
        } else {
            dst = which_norm == 0 ? L->att_norm : L->ffn_norm;
            n = (size_t)c->dim;
            what = which_norm == 0 ? "rms_att" : "rms_ffn";
        }
        if (read_floats(f, dst, n, path, what, e))
            return -1;
    }
    return 0;
}

int bs_model_load_llama2c(bs_model *m, const char *path, bs_err *e)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f)
        return bs_err_set(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int32_t h[7];
    if (fstat(fileno(f), &st) != 0 || fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return bs_err_set(e, "%s: too short for a llama2.c header", path);
    }
    bs_config c = {
        .dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
        .vocab_size = h[5] == INT32_MIN ? 0 : h[5] < 0 ? -h[5] : h[5], .seq_len = h[6],   /* -INT32_MIN overflows */
        .rope_theta = 10000.0f, .rms_eps = 1e-5f,
    };
    int shared = h[5] > 0;
    if (h[5] == INT32_MIN || bs_config_check(&c, path, e)) {
        fclose(f);
        return h[5] == INT32_MIN ? bs_err_set(e, "%s: absurd vocab_size", path) : -1;
    }
    /* The file length must match the header exactly: anything else is not this format. */
    uint64_t dim = (uint64_t)c.dim, L = (uint64_t)c.n_layers;
    uint64_t floats = (uint64_t)c.vocab_size * dim + 2 * L * dim + dim + bs_model_linear_params(&c) +
                      (uint64_t)c.seq_len * (uint64_t)c.head_dim;
    if (!shared)
        floats += (uint64_t)c.vocab_size * dim;
    uint64_t expect = sizeof h + floats * 4;
    if ((uint64_t)st.st_size != expect) {
        fclose(f);
        return bs_err_set(e, "%s: header (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq_len %d) "
                          "implies %llu bytes but the file has %llu", path, c.dim, c.hidden_dim, c.n_layers,
                          c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len, (unsigned long long)expect,
                          (unsigned long long)st.st_size);
    }
    if (bs_model_alloc(m, &c, shared, e)) {
        fclose(f);
        return bs_err_wrap(e, "%s", path);
    }
    int rc = read_floats(f, m->tok_emb, (size_t)c.vocab_size * c.dim, path, "token_embedding", e) ||
             read_layers(f, m, 0, -1, path, e) ||
             read_layers(f, m, 0, BS_WQ, path, e) || read_layers(f, m, 0, BS_WK, path, e) ||
             read_layers(f, m, 0, BS_WV, path, e) || read_layers(f, m, 0, BS_WO, path, e) ||
             read_layers(f, m, 1, -1, path, e) ||
             read_layers(f, m, 0, BS_W1, path, e) || read_layers(f, m, 0, BS_W2, path, e) ||
             read_layers(f, m, 0, BS_W3, path, e) ||
             read_floats(f, m->final_norm, (size_t)c.dim, path, "rms_final", e);
    if (!rc && !shared) {
        /* skip the legacy freq_cis_real / freq_cis_imag tables */
        long skip = (long)((size_t)c.seq_len * (size_t)c.head_dim * sizeof(float));
        rc = fseek(f, skip, SEEK_CUR) != 0 ? bs_err_set(e, "%s: cannot skip RoPE tables", path)
             : read_floats(f, m->cls, (size_t)c.vocab_size * c.dim, path, "classifier", e);
    }
    fclose(f);
    if (rc) {
        bs_model_free(m);
        return -1;
    }
    return 0;
}
