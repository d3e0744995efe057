/* llama2.c .bin and GGUF loaders: real files agree; damaged files fail cleanly. */
#include "harness.h"
#include "model/forward.h"
#include "model/gguf.h"
#include "model/model.h"

#include <stdint.h>
#include <unistd.h>

static int same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static void check_identical(const bs_model *a, const bs_model *b)
{
    const bs_config *c = &a->cfg;
    CHECK(memcmp(&a->cfg, &b->cfg, sizeof(int) * 6) == 0);
    CHECK(same_floats(a->tok_emb, b->tok_emb, (size_t)c->vocab_size * c->dim));
    CHECK(same_floats(a->cls, b->cls, (size_t)c->vocab_size * c->dim));
    CHECK(same_floats(a->final_norm, b->final_norm, (size_t)c->dim));
    int diff = 0;
    for (int l = 0; l < c->n_layers; l++) {
        diff += !same_floats(a->layers[l].att_norm, b->layers[l].att_norm, (size_t)c->dim);
        diff += !same_floats(a->layers[l].ffn_norm, b->layers[l].ffn_norm, (size_t)c->dim);
        for (int w = 0; w < BS_NLIN; w++)
            diff += !same_floats(a->layers[l].lin[w].w, b->layers[l].lin[w].w,
                                 (size_t)a->layers[l].lin[w].rows * a->layers[l].lin[w].cols);
    }
    CHECKF(diff == 0, "%d tensors differ", diff);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    REQUIRE(fread(b, 1, *n, f) == *n);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(b, 1, n, f) == n);
    fclose(f);
}

/* Loads a damaged copy: it must fail with a message naming the file. */
static void expect_fail(const char *tmp, const uint8_t *b, size_t n, const char *what)
{
    spit(tmp, b, n);
    bs_model m;
    bs_err e = {{0}};
    int rc = bs_model_load(&m, tmp, &e);
    CHECKF(rc != 0, "%s: damaged file loaded", what);
    if (rc == 0)
        bs_model_free(&m);
    else
        CHECKF(strstr(e.msg, tmp) != NULL, "%s: message does not name the file: %s", what, e.msg);
}

/* Where a GGUF's last tensor ends: quantizers pad the file past it, and a cut in
 * that padding loses nothing. Other formats end with their last weight. */
static size_t data_end(const char *src, size_t n)
{
    bs_gguf g;
    bs_err e = {{0}};
    if (bs_gguf_open(&g, src, &e))
        return n;
    uint64_t end = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        uint64_t x = g.data_off + g.tensors[i].offset + g.tensors[i].nbytes;
        end = x > end ? x : end;
    }
    bs_gguf_close(&g);
    return (size_t)end;
}

static void damage_tests(const char *src, const char *tag)
{
    size_t n;
    uint8_t *b = slurp(src, &n);
    size_t end = data_end(src, n);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/bs_test_damaged_%d_%s", (int)getpid(), tag);
    /* truncated at many points, including inside the header and tensor table */
    size_t cuts[] = {0, 3, 4, 10, 27, 28, 100, 1000, 5000, n / 3, n / 2, end - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        expect_fail(tmp, b, cuts[i], "truncated");
    /* flips in the header bytes: each either still loads the same shape or fails cleanly */
    REQUIRE(n >= 256);
    uint8_t *c = malloc(n + 256);  /* slack keeps gcc's bounds analysis quiet */
    int loaded = 0;
    for (size_t pos = 0; pos < 256 && pos < n; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(c, b, n);
            c[pos] ^= (uint8_t)(1u << bit);
            spit(tmp, c, n);
            bs_model m;
            bs_err e = {{0}};
            if (bs_model_load(&m, tmp, &e) == 0) {
                loaded++;
                bs_model_free(&m);
            }
        }
    }
    fprintf(stderr, "%s: %d of the header flips still loaded (e.g. a float or a name byte)\n", tag, loaded);
    /* huge sizes */
    memcpy(c, b, n);
    if (memcmp(b, "GGUF", 4) == 0) {
        for (int i = 8; i < 16; i++)
            c[i] = 0xff;          /* tensor count */
        expect_fail(tmp, c, n, "absurd tensor count");
        memcpy(c, b, n);
        for (int i = 16; i < 24; i++)
            c[i] = 0x7f;          /* kv count */
        expect_fail(tmp, c, n, "absurd kv count");
        memcpy(c, b, n);
        c[0] = 'X';
        expect_fail(tmp, c, n, "bad magic");
    } else {
        int32_t big = 1 << 30;
        memcpy(c, &big, 4);
        expect_fail(tmp, c, n, "absurd dim");
        memcpy(c, b, n);
        int32_t neg = -5;
        memcpy(c + 8, &neg, 4);
        expect_fail(tmp, c, n, "negative layers");
    }
    unlink(tmp);
    free(c);
    free(b);
}

/* GGUF with an unknown tensor type and offsets past the end, by editing the tensor table. */
static void gguf_table_tests(void)
{
    const char *src = bs_shared("models/stories260K.gguf");
    bs_gguf g;
    bs_err e = {{0}};
    REQUIRE(bs_gguf_open(&g, src, &e) == 0);
    CHECK(g.version == 3);
    CHECK(g.n_tensors == 48);
    const bs_gguf_tensor *t = bs_gguf_tensor_find(&g, "blk.0.attn_q.weight");
    REQUIRE(t);
    /* locate the tensor's table entry: name bytes followed by n_dims, dims, type, offset */
    size_t name_off = (size_t)((const uint8_t *)t->name.s - g.map);
    size_t after = name_off + t->name.len + 4 + 8 * t->n_dims;
    bs_gguf_close(&g);

    size_t n;
    uint8_t *b = slurp(src, &n);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/bs_test_table_%d.gguf", (int)getpid());
    uint32_t bad_type = 12;  /* Q4_K */
    memcpy(b + after, &bad_type, 4);
    spit(tmp, b, n);
    bs_model m;
    CHECK(bs_model_load(&m, tmp, &e) != 0);
    CHECKF(strstr(e.msg, "type") && strstr(e.msg, "attn_q"), "unknown type message: %s", e.msg);
    free(b);
    b = slurp(src, &n);
    uint64_t far = (uint64_t)n * 4;
    memcpy(b + after + 4, &far, 8);
    spit(tmp, b, n);
    CHECK(bs_model_load(&m, tmp, &e) != 0);
    CHECKF(strstr(e.msg, "past the end"), "offset message: %s", e.msg);
    unlink(tmp);
    free(b);
}

int main(void)
{
    bs_model a, b;
    bs_err e = {{0}};
    REQUIRE(bs_model_load(&a, bs_shared("models/stories260K.bin"), &e) == 0);
    if (bs_model_load(&b, bs_shared("models/stories260K.gguf"), &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        REQUIRE(0);
    }
    CHECK(a.cfg.dim == 64 && a.cfg.n_layers == 5 && a.cfg.n_heads == 8 && a.cfg.n_kv_heads == 4);
    CHECK(a.cfg.vocab_size == 512 && a.cfg.hidden_dim == 172 && a.cfg.seq_len == 512);
    CHECK(a.cls == a.tok_emb);
    CHECK(b.cfg.seq_len == 2048);  /* the converter's default, recorded in the file */
    CHECK(b.cls == b.tok_emb);     /* its output.weight equals token_embd.weight: shared */
    CHECK_NEAR(b.cfg.rms_eps, 1e-5, 1e-9);
    check_identical(&a, &b);

    /* Greedy decode from BOS reproduces the independent reference ids (SOURCES.md). */
    static const int ref[40] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295,
                                433, 426, 385, 328, 432, 358, 394, 261, 370, 432};
    for (int which = 0; which < 2; which++) {
        const bs_model *m = which ? &b : &a;
        bs_state s;
        REQUIRE(bs_state_init(&s, &m->cfg, 64, 8, &e) == 0);
        int tok = 1, match = 1;
        for (int pos = 0; pos < 39; pos++) {
            const float *lg = bs_forward(m, &s, &tok, 1, pos, 0, &e);
            REQUIRE(lg);
            int best = 0;
            for (int i = 1; i < m->cfg.vocab_size; i++)
                if (lg[i] > lg[best])
                    best = i;
            if (best != ref[pos + 1]) {
                match = 0;
                fprintf(stderr, "pos %d: got %d want %d\n", pos, best, ref[pos + 1]);
                break;
            }
            tok = best;
        }
        CHECKF(match, "greedy ids differ from the reference (%s)", which ? "gguf" : "bin");
        /* the batched prefill gives the same last logits as token-by-token decode */
        bs_state s2;
        REQUIRE(bs_state_init(&s2, &m->cfg, 64, 16, &e) == 0);
        const float *lb = bs_forward(m, &s2, ref, 12, 0, 1, &e);
        REQUIRE(lb);
        float *batch = malloc(sizeof(float) * 12 * m->cfg.vocab_size);
        memcpy(batch, lb, sizeof(float) * 12 * m->cfg.vocab_size);
        bs_state s3;
        REQUIRE(bs_state_init(&s3, &m->cfg, 64, 1, &e) == 0);
        double maxd = 0;
        for (int p = 0; p < 12; p++) {
            const float *l1 = bs_forward(m, &s3, &ref[p], 1, p, 0, &e);
            for (int i = 0; i < m->cfg.vocab_size; i++) {
                double d = fabs(l1[i] - batch[(size_t)p * m->cfg.vocab_size + i]);
                if (d > maxd)
                    maxd = d;
            }
        }
        CHECKF(maxd < 1e-3, "prefill vs decode logits differ by %g", maxd);
        /* errors: positions past the context, bad token ids */
        int badtok = 9999;
        CHECK(bs_forward(m, &s3, &badtok, 1, 12, 0, &e) == NULL);
        CHECK(bs_forward(m, &s3, ref, 1, 64, 0, &e) == NULL);
        free(batch);
        bs_state_free(&s);
        bs_state_free(&s2);
        bs_state_free(&s3);
    }
    bs_model_free(&a);
    bs_model_free(&b);

    REQUIRE(bs_model_load(&a, bs_shared("models/babyllama-d128.bin"), &e) == 0);
    CHECK(a.cfg.dim == 128 && a.cfg.hidden_dim == 352 && a.cfg.vocab_size == 105 && a.cfg.seq_len == 256);
    CHECK(bs_model_linear_params(&a.cfg) == 921600);
    bs_model_free(&a);

    CHECK(bs_model_load(&a, "/nonexistent/model.bin", &e) != 0 && strstr(e.msg, "/nonexistent/model.bin"));
    damage_tests(bs_shared("models/stories260K.bin"), "bin");
    damage_tests(bs_shared("models/stories260K.gguf"), "gguf");
    /* quantized tensors (IQ4_NL, Q8_0) are sized from their blocks: the same cuts fail */
    damage_tests(bs_shared("models/gguf-quant/stories260K-Q3_K_S.gguf"), "gguf_iq4nl");
    gguf_table_tests();
    TEST_MAIN_END();
}
