/* bs-fuzz-seeds DIR: writes the seed corpora of the file-format fuzz targets under
 * DIR/{store,gguf,llama2c,tokenizer}. Every seed is synthesized (random weights of a
 * tiny shape, the synthetic vocabulary), a few KiB each, so the corpora live in the
 * tree (tests/fuzz/) and no real model file is ever copied there. The same build
 * writes the same bytes: rerun it after a format change and commit the result. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/block.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/tokenizer.h"

/* A tiny llama: two layers so per-layer loops run more than once; grouped kv heads. */
static const bs_config tiny = {
    .dim = 16, .hidden_dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
    .vocab_size = 40, .seq_len = 16, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
};

static int fail(const char *what)
{
    fprintf(stderr, "bs-fuzz-seeds: %s: %s\n", what, strerror(errno));
    return -1;
}

static FILE *create(const char *dir, const char *sub, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    if (mkdir(p, 0755) && errno != EEXIST)
        return NULL;
    snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
    return fopen(p, "wb");
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5) * 0.5f;
}

static void put_floats(FILE *f, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        float v = scale == 0 ? 1.0f : rnd() * scale;
        fwrite(&v, 4, 1, f);
    }
}

/* llama2.c: header, then the tensors in its order; shared classifier when vocab > 0. */
static int llama2c_model(const char *dir, const char *name, int shared)
{
    FILE *f = create(dir, "llama2c", name);
    if (!f)
        return fail(name);
    bs_config c = tiny;
    bs_err e;
    bs_config_check(&c, "tiny", &e);
    int32_t h[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                    shared ? c.vocab_size : -c.vocab_size, c.seq_len};
    fwrite(h, sizeof h, 1, f);
    size_t L = (size_t)c.n_layers, d = (size_t)c.dim, kv = (size_t)c.kv_dim, hd = (size_t)c.hidden_dim;
    put_floats(f, (size_t)c.vocab_size * d, 1);     /* token embedding */
    put_floats(f, L * d, 0);                        /* rms_att */
    put_floats(f, L * d * d, 1);                    /* wq */
    put_floats(f, L * kv * d, 1);                   /* wk */
    put_floats(f, L * kv * d, 1);                   /* wv */
    put_floats(f, L * d * d, 1);                    /* wo */
    put_floats(f, L * d, 0);                        /* rms_ffn */
    put_floats(f, L * hd * d, 1);                   /* w1 */
    put_floats(f, L * d * hd, 1);                   /* w2 */
    put_floats(f, L * hd * d, 1);                   /* w3 */
    put_floats(f, d, 0);                            /* rms_final */
    put_floats(f, (size_t)c.seq_len * (size_t)c.head_dim, 1);   /* legacy RoPE tables */
    if (!shared)
        put_floats(f, (size_t)c.vocab_size * d, 1);
    return fclose(f) ? fail(name) : 0;
}

/* tokenizer.bin: max piece length, then score, length, bytes per piece. */
static int llama2c_tokenizer(const char *dir, const char *name, const bs_tokenizer *t)
{
    FILE *f = create(dir, "llama2c", name);
    if (!f)
        return fail(name);
    int32_t max_len = 0;
    for (int i = 0; i < bs_tok_vocab_size(t); i++) {
        size_t n;
        bs_tok_piece_raw(t, i, &n);
        if ((int32_t)n > max_len)
            max_len = (int32_t)n;
    }
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < bs_tok_vocab_size(t); i++) {
        size_t n;
        const char *p = bs_tok_piece_raw(t, i, &n);
        float s = bs_tok_score(t, i);
        int32_t len = (int32_t)n;
        fwrite(&s, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(p, 1, n, f);
    }
    return fclose(f) ? fail(name) : 0;
}

/* ---- GGUF v3 ---- */

static void g_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void g_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void g_str(FILE *f, const char *s, size_t n) { g_u64(f, n); fwrite(s, 1, n, f); }

static void g_key(FILE *f, const char *key, uint32_t type)
{
    g_str(f, key, strlen(key));
    g_u32(f, type);
}

typedef struct {
    char name[48];
    uint64_t rows, cols;
} g_tensor;

static int gguf_file(const char *dir, const char *name, const bs_tokenizer *t, int with_output)
{
    FILE *f = create(dir, "gguf", name);
    if (!f)
        return fail(name);
    bs_config c = tiny;
    bs_err e;
    bs_config_check(&c, "tiny", &e);
    g_tensor ts[64];
    int nt = 0;
    ts[nt++] = (g_tensor){"token_embd.weight", (uint64_t)c.vocab_size, (uint64_t)c.dim};
    ts[nt++] = (g_tensor){"output_norm.weight", 1, (uint64_t)c.dim};
    if (with_output)
        ts[nt++] = (g_tensor){"output.weight", (uint64_t)c.vocab_size, (uint64_t)c.dim};
    static const char *const lin[BS_NLIN] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                             "ffn_gate", "ffn_down", "ffn_up"};
    for (int l = 0; l < c.n_layers; l++) {
        snprintf(ts[nt].name, sizeof ts[nt].name, "blk.%d.attn_norm.weight", l);
        ts[nt].rows = 1, ts[nt++].cols = (uint64_t)c.dim;
        snprintf(ts[nt].name, sizeof ts[nt].name, "blk.%d.ffn_norm.weight", l);
        ts[nt].rows = 1, ts[nt++].cols = (uint64_t)c.dim;
        for (int w = 0; w < BS_NLIN; w++) {
            int r, k;
            bs_lin_shape(&c, w, &r, &k);
            snprintf(ts[nt].name, sizeof ts[nt].name, "blk.%d.%s.weight", l, lin[w]);
            ts[nt].rows = (uint64_t)r, ts[nt++].cols = (uint64_t)k;
        }
    }
    int nv = bs_tok_vocab_size(t);
    fwrite("GGUF", 1, 4, f);
    g_u32(f, 3);
    g_u64(f, (uint64_t)nt);
    g_u64(f, 13);   /* key-value pairs below */
    g_key(f, "general.architecture", 8), g_str(f, "llama", 5);
    g_key(f, "general.alignment", 4), g_u32(f, 32);
    g_key(f, "llama.embedding_length", 4), g_u32(f, (uint32_t)c.dim);
    g_key(f, "llama.feed_forward_length", 4), g_u32(f, (uint32_t)c.hidden_dim);
    g_key(f, "llama.block_count", 4), g_u32(f, (uint32_t)c.n_layers);
    g_key(f, "llama.attention.head_count", 4), g_u32(f, (uint32_t)c.n_heads);
    g_key(f, "llama.attention.head_count_kv", 4), g_u32(f, (uint32_t)c.n_kv_heads);
    g_key(f, "llama.context_length", 10), g_u64(f, (uint64_t)c.seq_len);
    g_key(f, "llama.attention.layer_norm_rms_epsilon", 6);
    float eps = c.rms_eps;
    fwrite(&eps, 4, 1, f);
    g_key(f, "tokenizer.ggml.model", 8), g_str(f, "llama", 5);
    g_key(f, "tokenizer.ggml.tokens", 9), g_u32(f, 8), g_u64(f, (uint64_t)nv);
    for (int i = 0; i < nv; i++) {
        size_t n;
        const char *p = bs_tok_piece_raw(t, i, &n);
        g_str(f, p, n);
    }
    g_key(f, "tokenizer.ggml.scores", 9), g_u32(f, 6), g_u64(f, (uint64_t)nv);
    for (int i = 0; i < nv; i++) {
        float s = bs_tok_score(t, i);
        fwrite(&s, 4, 1, f);
    }
    g_key(f, "tokenizer.ggml.token_type", 9), g_u32(f, 5), g_u64(f, (uint64_t)nv);
    for (int i = 0; i < nv; i++)
        g_u32(f, (uint32_t)bs_tok_type(t, i));
    /* tensor infos: F32 for the norms and embeddings, F16 for the linears (both paths) */
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        uint32_t type = strstr(ts[i].name, "blk.") && !strstr(ts[i].name, "norm") ? 1 : 0;
        g_str(f, ts[i].name, strlen(ts[i].name));
        g_u32(f, ts[i].rows > 1 ? 2 : 1);
        g_u64(f, ts[i].cols);
        if (ts[i].rows > 1)
            g_u64(f, ts[i].rows);
        g_u32(f, type);
        g_u64(f, off);
        off += (ts[i].rows * ts[i].cols * (type ? 2 : 4) + 31) / 32 * 32;
    }
    long pos = ftell(f);
    for (; pos % 32; pos++)
        fputc(0, f);
    for (int i = 0; i < nt; i++) {
        int half = strstr(ts[i].name, "blk.") && !strstr(ts[i].name, "norm");
        uint64_t n = ts[i].rows * ts[i].cols, bytes = n * (half ? 2 : 4);
        for (uint64_t k = 0; k < n; k++) {
            if (half) {
                uint16_t h = (uint16_t)(0x3000 + (rng & 0x3ff)), x = (uint16_t)(rng >> 20 & 0x8000);
                rnd();
                h |= x;
                fwrite(&h, 2, 1, f);
            } else {
                float v = strstr(ts[i].name, "norm") ? 1.0f : rnd();
                fwrite(&v, 4, 1, f);
            }
        }
        for (; bytes % 32; bytes++)
            fputc(0, f);
    }
    return fclose(f) ? fail(name) : 0;
}

static int text_seed(const char *dir, const char *name, uint8_t mode, const char *s, size_t n)
{
    FILE *f = create(dir, "tokenizer", name);
    if (!f)
        return fail(name);
    fputc(mode, f);
    fwrite(s, 1, n, f);
    return fclose(f) ? fail(name) : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bs-fuzz-seeds DIR   (writes DIR/store, DIR/gguf, DIR/llama2c, DIR/tokenizer)\n");
        return 2;
    }
    const char *dir = argv[1];
    bs_err e = {{0}};
    bs_tokenizer *t = bs_synth_tokenizer(tiny.vocab_size, &e);
    bs_tokenizer *tb = bs_synth_tokenizer(300, &e);
    if (!t || !tb) {
        fprintf(stderr, "bs-fuzz-seeds: %s\n", e.msg);
        return 1;
    }
    int rc = llama2c_model(dir, "shared_cls.bin", 1) || llama2c_model(dir, "own_cls.bin", 0) ||
             llama2c_tokenizer(dir, "tok40.bin", t) || llama2c_tokenizer(dir, "tok300_bytes.bin", tb) ||
             gguf_file(dir, "tiny.gguf", t, 0) || gguf_file(dir, "tiny_output.gguf", t, 1);
    static const char story[] = "Once upon a time, there was a little cat. She said \"hi!\"\n";
    static const char odd[] = "  two  spaces\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xff\xfe\x80 <s></s><0x41>\n";
    static const char vocab[] = "<unk>\n<s>\n</s>\n<0x41>\n\xe2\x96\x81the\n\xe2\x96\x81\nt\nh\ne\nth\n he\0the the theta";
    rc = rc || text_seed(dir, "story_bytes", 0, story, sizeof story - 1) ||
         text_seed(dir, "odd_bytes", 0, odd, sizeof odd - 1) ||
         text_seed(dir, "odd_nobos", 4 | 8, odd, sizeof odd - 1) ||
         text_seed(dir, "story_unk", 1, story, sizeof story - 1) ||
         text_seed(dir, "vocab", 2, vocab, sizeof vocab - 1);
    for (int shared = 0; shared < 2 && !rc; shared++) {
        bs_synth_opts o;
        if (bs_synth_preset(&o, "stories260k", &e)) {
            fprintf(stderr, "bs-fuzz-seeds: %s\n", e.msg);
            return 1;
        }
        snprintf(o.shape, sizeof o.shape, "fuzz-tiny");
        o.cfg = tiny;
        o.shared_cls = shared;
        o.levels = 2;
        o.group = 16;
        o.kind = shared ? BS_KIND_GQ : BS_KIND_SAQ;
        char p[4096];
        snprintf(p, sizeof p, "%s/store", dir);
        if (mkdir(p, 0755) && errno != EEXIST)
            return fail(p), 1;
        snprintf(p, sizeof p, "%s/store/tiny_%s.bstk", dir, shared ? "gq" : "saq");
        if (bs_synth_store_write(p, &o, NULL, NULL, &e)) {
            fprintf(stderr, "bs-fuzz-seeds: %s\n", e.msg);
            rc = 1;
        }
    }
    bs_tok_free(t);
    bs_tok_free(tb);
    return rc ? 1 : 0;
}
