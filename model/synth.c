#include "model/synth.h"
#include "kernels/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/half.h"
#include "model/store.h"

typedef struct {
    const char *name;
    bs_config cfg;
    int shared_cls;
} preset;

static const preset presets[] = {
    {"tinyllama-1.1b",
     {.dim = 2048, .hidden_dim = 5632, .n_layers = 22, .n_heads = 32, .n_kv_heads = 4, .vocab_size = 32000,
      .seq_len = 2048, .rope_theta = 10000.0f, .rms_eps = 1e-5f},
     0},
    {"stories260k",
     {.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4, .vocab_size = 512,
      .seq_len = 512, .rope_theta = 10000.0f, .rms_eps = 1e-5f},
     1},
};
enum { N_PRESETS = sizeof presets / sizeof presets[0] };

const char *bs_synth_preset_names(void)
{
    return "tinyllama-1.1b, stories260k";
}

int bs_synth_preset(bs_synth_opts *o, const char *shape, bs_err *e)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < N_PRESETS; i++) {
        if (strcmp(shape, presets[i].name) != 0)
            continue;
        snprintf(o->shape, sizeof o->shape, "%s", presets[i].name);
        o->cfg = presets[i].cfg;
        o->shared_cls = presets[i].shared_cls;
        o->kind = BS_KIND_GQ;
        o->levels = 6;
        o->gq_levels = 4;
        o->gq_restart = -1;
        o->group = 32;
        o->seed = 1;
        return 0;
    }
    return bs_err_set(e, "unknown shape '%s' (known: %s)", shape, bs_synth_preset_names());
}

/* uniform in [0, 1) from the top 24 bits */
static inline float unit(uint64_t *s)
{
    return (float)(bs_splitmix64(s) >> 40) * (1.0f / 16777216.0f);
}

/* An independent stream per (a, b): a block's bytes do not depend on which blocks
 * were made before it, so the order of writing is free to change. */
static uint64_t stream(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t s = seed ^ (a + 1) * 0xd1b54a32d192ed03ull ^ (b + 1) * 0xaef17502108ef2d9ull;
    bs_splitmix64(&s);
    return s;
}

/* ---------------------------------------------------------------- tokenizer */

/* Letters by English frequency, so short common-looking words come first. */
static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz";

/* Word k in bijective base 26 ("e", "t", ..., "z", "ee", "et", ...) into out; its length. */
static size_t word(uint64_t k, char *out)
{
    char rev[16];
    size_t n = 0;
    for (k++; k > 0 && n < sizeof rev; k = (k - 1) / 26)
        rev[n++] = letters[(k - 1) % 26];
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    return n;
}

enum { PIECE_MAX = 16 };

bs_tokenizer *bs_synth_tokenizer(int vocab_size, bs_err *e)
{
    if (vocab_size < 3 || vocab_size > (1 << 22)) {
        bs_err_set(e, "synthetic tokenizer: vocabulary size %d outside 3..%d", vocab_size, 1 << 22);
        return NULL;
    }
    size_t n = (size_t)vocab_size;
    char *arena = malloc(n * PIECE_MAX);
    const char **pieces = malloc(n * sizeof *pieces);
    size_t *lens = malloc(n * sizeof *lens);
    float *scores = malloc(n * sizeof *scores);
    int *types = malloc(n * sizeof *types);
    bs_tokenizer *t = NULL;
    if (!arena || !pieces || !lens || !scores || !types) {
        bs_err_set(e, "synthetic tokenizer: out of memory for %d pieces", vocab_size);
        goto out;
    }
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    static const int special_type[3] = {BS_TOK_UNKNOWN, BS_TOK_CONTROL, BS_TOK_CONTROL};
    size_t i = 0;
    for (; i < 3; i++) {
        char *p = arena + i * PIECE_MAX;
        lens[i] = (size_t)snprintf(p, PIECE_MAX, "%s", special[i]);
        types[i] = special_type[i];
        scores[i] = 0.0f;
    }
    /* byte pieces only as a whole set: a vocabulary with some of them would encode
     * the other bytes as <unk> and lose the round trip */
    if (n >= 3 + 256)
        for (int b = 0; b < 256; b++, i++) {
            lens[i] = (size_t)snprintf(arena + i * PIECE_MAX, PIECE_MAX, "<0x%02X>", b);
            types[i] = BS_TOK_BYTE;
            scores[i] = 0.0f;
        }
    size_t first = i;
    for (uint64_t k = 0; i < n; k++) {
        /* each word with a leading space (how most words appear mid-text), then bare */
        for (int bare = 0; bare < 2 && i < n; bare++, i++) {
            char *p = arena + i * PIECE_MAX;
            size_t len = 0;
            if (!bare)
                p[len++] = ' ';
            len += word(k, p + len);
            lens[i] = len;
            types[i] = BS_TOK_NORMAL;
            scores[i] = -(float)(i - first);
        }
    }
    for (i = 0; i < n; i++)
        pieces[i] = arena + i * PIECE_MAX;
    t = bs_tok_new(vocab_size, pieces, lens, scores, types, 1, 2, 0, e);
out:
    free(arena);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return t;
}

/* ---------------------------------------------------------------- store */

static int check_opts(const bs_synth_opts *o, bs_config *cfg, bs_err *e)
{
    *cfg = o->cfg;
    if (bs_config_check(cfg, "synthetic shape", e))
        return -1;
    if (cfg->vocab_size < 3)
        return bs_err_set(e, "synthetic shape: vocabulary of %d pieces; at least 3 (<unk>, <s>, </s>)",
                          cfg->vocab_size);
    if (o->kind != BS_KIND_GQ && o->kind != BS_KIND_SAQ)
        return bs_err_set(e, "synthetic store: kind %s; only gq and saq planes are made", bs_kind_name(o->kind));
    if (o->levels < 1 || o->levels > 64)
        return bs_err_set(e, "synthetic store: levels must lie in 1..64 (got %d)", o->levels);
    if (o->group < 1 || o->group > 65536)
        return bs_err_set(e, "synthetic store: group must lie in 1..65536 (got %d)", o->group);
    if (o->kind == BS_KIND_GQ && (o->gq_levels < 1 || o->gq_levels > 8))
        return bs_err_set(e, "synthetic store: gq levels must lie in 1..8 (got %d)", o->gq_levels);
    if (o->seed >> 63)
        return bs_err_set(e, "synthetic store: seed must be below 2^63 (it is recorded in JSON)");
    return 0;
}

/* The matrix table the options describe: compress.c's defaults for the kind. */
static void make_matrices(const bs_synth_opts *o, const bs_config *c, bs_store_matrix *mats)
{
    int K = o->gq_levels < o->levels ? o->gq_levels : o->levels;
    int restart = 0;
    if (o->kind == BS_KIND_GQ) {
        restart = o->gq_restart >= 0 ? o->gq_restart : K + 1;
        /* the reader wants a restart at or after K and inside the matrix; else none */
        if (restart < K || restart >= o->levels)
            restart = 0;
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < BS_NLIN; w++) {
            bs_store_matrix *m = &mats[l * BS_NLIN + w];
            *m = (bs_store_matrix){.layer = l, .which = w, .kind = o->kind, .levels = o->levels, .group = o->group,
                                   .gq_levels = o->kind == BS_KIND_GQ ? K : 0, .restart = restart};
            bs_lin_shape(c, w, &m->rows, &m->cols);
            snprintf(m->name, sizeof m->name, "layers.%d.%s", l, bs_lin_name(w));
        }
}

typedef struct {
    const bs_synth_opts *o;
    const bs_store_matrix *mats;
    const bs_store_block *blocks;
    int n_blocks;
    bs_synth_progress_fn cb;
    void *cb_ctx;
} filler;

/* Group scales of block `level`. Level 0: M_g = sqrt(3 / cols) jittered by +-25%, so a
 * full-depth weight (planes adding +-M/2, +-M/4, ...: nearly uniform on [-M, M]) has the
 * std 1/sqrt(cols) of a fresh init and every layer keeps unit-scale activations. A gq
 * restart starts a finer grid: M / 2^restart, the step the compressor would pick for
 * what random planes leave. */
static void fill_scales(const bs_store_matrix *m, int level, uint8_t *p, uint64_t *rng)
{
    size_t n = (size_t)m->rows * bs_block_groups(m);
    float base = ldexpf(sqrtf(3.0f / (float)m->cols), -level);
    for (size_t g = 0; g < n; g++) {
        uint16_t h = bs_f32_to_fp16(base * (0.75f + 0.5f * unit(rng)));
        memcpy(p + 2 * g, &h, 2);   /* the buffer may not be 2-aligned */
    }
}

/* A random sign plane; pad bits past cols are 0, as the format asks. */
static void fill_plane(const bs_store_matrix *m, uint8_t *p, uint64_t *rng)
{
    size_t rb = ((size_t)m->cols + 7) / 8, n = (size_t)m->rows * rb, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = bs_splitmix64(rng);
        memcpy(p + i, &r, 8);
    }
    if (i < n) {
        uint64_t r = bs_splitmix64(rng);
        memcpy(p + i, &r, n - i);
    }
    if (m->cols % 8) {
        uint8_t keep = (uint8_t)((1u << (m->cols % 8)) - 1);
        for (size_t r = 0; r < (size_t)m->rows; r++)
            p[r * rb + rb - 1] &= keep;
    }
}

static int fill_block(void *ctx, int i, uint8_t *buf, uint64_t bytes, bs_err *e)
{
    const filler *f = ctx;
    const bs_store_block *b = &f->blocks[i];
    const bs_store_matrix *m = &f->mats[b->matrix];
    uint64_t rng = stream(f->o->seed, (uint64_t)b->matrix, (uint64_t)b->level);
    size_t sb = bs_block_scales_bytes(m, b->level);
    if (sb + (uint64_t)m->rows * (((uint64_t)m->cols + 7) / 8) != bytes)
        return bs_err_set(e, "%s level %d: %llu bytes asked, the layout makes %llu", m->name, b->level,
                          (unsigned long long)bytes,
                          (unsigned long long)(sb + (uint64_t)m->rows * (((uint64_t)m->cols + 7) / 8)));
    if (sb)
        fill_scales(m, b->level, buf, &rng);
    fill_plane(m, buf + sb, &rng);
    if (f->cb)
        f->cb(f->cb_ctx, i + 1, f->n_blocks);
    return 0;
}

/* uniform on [-a, a] */
static void fill_uniform(float *x, size_t n, float a, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = a * (2.0f * unit(rng) - 1.0f);
}

/* The dense parts the writer stores (its linears stay empty: the writer ignores them).
 * Embeddings as bs_model_randomize makes them; every norm 1. */
static int make_base(bs_model *m, const bs_config *c, int shared, uint64_t seed, bs_err *e)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    size_t emb = (size_t)c->vocab_size * (size_t)c->dim, d = (size_t)c->dim;
    m->tok_emb = malloc(emb * sizeof(float));
    m->cls = shared ? m->tok_emb : malloc(emb * sizeof(float));
    m->final_norm = malloc(d * sizeof(float));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    float *norms = malloc(2 * (size_t)c->n_layers * d * sizeof(float));
    if (!m->tok_emb || !m->cls || !m->final_norm || !m->layers || !norms) {
        free(norms);
        return bs_err_set(e, "out of memory for the embeddings (%zu values)", emb);
    }
    uint64_t rng = stream(seed, UINT64_MAX, 0);
    fill_uniform(m->tok_emb, emb, 1.0f, &rng);
    if (!shared)
        fill_uniform(m->cls, emb, sqrtf(3.0f / (float)c->dim), &rng);
    for (size_t j = 0; j < d; j++)
        m->final_norm[j] = 1.0f;
    for (size_t j = 0; j < 2 * (size_t)c->n_layers * d; j++)
        norms[j] = 1.0f;
    /* one allocation for all norms: layer 0's att_norm owns it */
    for (int l = 0; l < c->n_layers; l++) {
        m->layers[l].att_norm = norms + (size_t)(2 * l) * d;
        m->layers[l].ffn_norm = norms + (size_t)(2 * l + 1) * d;
    }
    return 0;
}

static void free_base(bs_model *m)
{
    if (m->layers)
        free(m->layers[0].att_norm);
    if (m->cls != m->tok_emb)
        free(m->cls);
    free(m->tok_emb);
    free(m->final_norm);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int bs_synth_store_write(const char *path, const bs_synth_opts *o, bs_synth_progress_fn cb, void *ctx,
                         bs_err *e)
{
    bs_config c;
    if (check_opts(o, &c, e))
        return -1;
    int nm = c.n_layers * BS_NLIN, nb = nm * o->levels, rc = -1;
    bs_store_matrix *mats = calloc((size_t)nm, sizeof *mats);
    bs_store_block *blocks = calloc((size_t)nb, sizeof *blocks);
    bs_tokenizer *tok = NULL;
    json_t *info = NULL;
    bs_model base;
    memset(&base, 0, sizeof base);
    if (!mats || !blocks) {
        bs_err_set(e, "out of memory for %d blocks", nb);
        goto out;
    }
    make_matrices(o, &c, mats);
    /* level-major: every matrix's level l before any matrix's level l + 1 */
    for (int l = 0, i = 0; l < o->levels; l++)
        for (int k = 0; k < nm; k++, i++)
            blocks[i] = (bs_store_block){.matrix = k, .level = l};
    if (!(tok = bs_synth_tokenizer(c.vocab_size, e)) || make_base(&base, &c, o->shared_cls, o->seed, e))
        goto out;
    info = json_pack("{s:b, s:s, s:s, s:i, s:i, s:i, s:i, s:I, s:s}", "synthetic", 1, "shape", o->shape,
                     "kind", bs_kind_name(o->kind), "levels", o->levels, "gq_levels", mats[0].gq_levels,
                     "gq_restart", mats[0].restart, "group", o->group, "seed", (json_int_t)o->seed, "sort",
                     "level");
    if (!info) {
        bs_err_set(e, "cannot build the synthetic store's info");
        goto out;
    }
    filler f = {o, mats, blocks, nb, cb, ctx};
    bs_store_out so = {.model = &base, .tok = tok, .n_matrices = nm, .mats = mats, .n_blocks = nb,
                       .blocks = blocks, .info = info, .fill = fill_block, .fill_ctx = &f};
    rc = bs_store_write(path, &so, e);
out:
    json_decref(info);
    free_base(&base);
    if (tok)
        bs_tok_free(tok);
    free(mats);
    free(blocks);
    return rc;
}
