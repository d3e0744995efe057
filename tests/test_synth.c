/* Synthetic stores (model/synth.h): a stories260K-shaped store is a valid store (block
 * table, level-major order, crcs), runs to finite logits at its smallest and its full
 * size, is the same file for the same seed, and a truncated copy is refused. */
#include "tests/harness.h"

#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "model/forward.h"
#include "model/stacked.h"
#include "model/store.h"
#include "model/synth.h"

static char dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

typedef struct {
    int calls, last, total, monotone;
} prog;

static void on_progress(void *ctx, int done, int total)
{
    prog *p = ctx;
    p->monotone &= done == p->last + 1;
    p->calls++;
    p->last = done;
    p->total = total;
}

/* Prefill a few tokens, then decode a few: every logit finite. Returns the last row's
 * first logit so two sizes can be told apart. */
static float run_tokens(const bs_model *m, const int *ids, int n)
{
    bs_err e = {{0}};
    bs_state st;
    REQUIRE(n <= 32 && bs_state_init(&st, &m->cfg, 64, 32, &e) == 0);
    const float *lg = bs_forward(m, &st, ids, n, 0, 1, &e);
    CHECKF(lg != NULL, "%s", e.msg);
    /* finite, and of a trained model's magnitude: a wrong scale (fp16 overflow, a
     * missing 1/sqrt(cols)) shows as logits in the thousands long before a NaN */
    int finite = lg != NULL;
    for (int i = 0; lg && i < n * m->cfg.vocab_size; i++)
        finite &= isfinite(lg[i]) && fabsf(lg[i]) < 1000.0f;
    float first = 0.0f;
    for (int p = n; lg && p < n + 4; p++) {
        int next = (ids[p - n] + 7) % m->cfg.vocab_size;
        lg = bs_forward(m, &st, &next, 1, p, 0, &e);
        CHECKF(lg != NULL, "%s", e.msg);
        for (int i = 0; lg && i < m->cfg.vocab_size; i++)
            finite &= isfinite(lg[i]) && fabsf(lg[i]) < 1000.0f;
        if (lg)
            first = lg[0];
    }
    CHECK(finite);
    bs_state_free(&st);
    return first;
}

static void test_store(int kind)
{
    bs_err e = {{0}};
    bs_synth_opts o;
    REQUIRE(bs_synth_preset(&o, "stories260k", &e) == 0);
    o.kind = kind;
    o.seed = 42;
    const char *path = tmp_path(kind == BS_KIND_GQ ? "gq.bstk" : "saq.bstk");
    prog pg = {0, 0, 0, 1};
    REQUIRE(bs_synth_store_write(path, &o, on_progress, &pg, &e) == 0);
    int nm = 5 * BS_NLIN, nb = nm * 6;
    CHECK(pg.calls == nb && pg.last == nb && pg.total == nb && pg.monotone);
    CHECK(access(tmp_path(kind == BS_KIND_GQ ? "gq.bstk.tmp" : "saq.bstk.tmp"), F_OK) != 0);

    bs_store s;
    REQUIRE(bs_store_open(&s, path, &e) == 0);
    CHECK(s.cfg.dim == 64 && s.cfg.hidden_dim == 172 && s.cfg.n_layers == 5 && s.cfg.n_heads == 8 &&
          s.cfg.n_kv_heads == 4 && s.cfg.vocab_size == 512 && s.cfg.seq_len == 512);
    CHECK(s.n_matrices == nm && s.n_blocks == nb && s.min_blocks == nm);
    for (int i = 0; i < nm; i++)
        CHECK(s.mats[i].levels == 6 && s.mats[i].group == 32 && s.mats[i].kind == kind);
    int level_major = 1;
    for (int i = 0; i < nb; i++)
        level_major &= s.blocks[i].level == i / nm;
    CHECK(level_major);
    json_t *info = json_object_get(s.meta, "info");
    CHECK(json_is_true(json_object_get(info, "synthetic")));
    const char *shape = json_string_value(json_object_get(info, "shape"));
    CHECK(shape && !strcmp(shape, "stories260k"));
    CHECK(s.tok && bs_tok_vocab_size(s.tok) == 512 && bs_tok_has_bytes(s.tok));

    uint8_t *stack = malloc(bs_store_prefix_end(&s, s.n_blocks) + 1);
    REQUIRE(stack);
    CHECKF(bs_store_read_prefix(&s, s.n_blocks, stack, &e) == 0, "%s", e.msg);

    int *ids = NULL, n = 0;
    REQUIRE(bs_tok_encode(s.tok, "Once upon a time", 16, 1, 1, &ids, &n, &e) == 0 && n > 1);
    bs_stacked sm;
    REQUIRE(bs_stacked_init(&sm, &s, stack, s.min_blocks, &e) == 0);
    float at_min = run_tokens(&sm.model, ids, n);
    bs_stacked_set_prefix(&sm, s.n_blocks);
    float at_max = run_tokens(&sm.model, ids, n);
    CHECKF(at_min != at_max, "the same logit at %d and %d blocks", s.min_blocks, s.n_blocks);
    bs_stacked_free(&sm);
    free(ids);
    free(stack);
    bs_store_close(&s);
}

static void test_same_seed_same_file(void)
{
    bs_err e = {{0}};
    bs_synth_opts o;
    REQUIRE(bs_synth_preset(&o, "stories260k", &e) == 0);
    o.levels = 3;
    const char *a = tmp_path("a.bstk"), *b = tmp_path("b.bstk"), *c = tmp_path("c.bstk");
    REQUIRE(bs_synth_store_write(a, &o, NULL, NULL, &e) == 0);
    REQUIRE(bs_synth_store_write(b, &o, NULL, NULL, &e) == 0);
    o.seed = 2;
    REQUIRE(bs_synth_store_write(c, &o, NULL, NULL, &e) == 0);
    size_t la, lb, lc;
    uint8_t *x = slurp(a, &la), *y = slurp(b, &lb), *z = slurp(c, &lc);
    REQUIRE(x && y && z);
    CHECK(la == lb && !memcmp(x, y, la));
    CHECK(la != lc || memcmp(x, z, la) != 0);
    free(x);
    free(y);
    free(z);
    unlink(a);
    unlink(b);
    unlink(c);
}

static void test_damaged(void)
{
    bs_err e = {{0}};
    size_t len;
    uint8_t *b = slurp(tmp_path("gq.bstk"), &len);
    REQUIRE(b && len > 8192);
    /* a copy cut short (an interrupted download): refused at open, saying why */
    const char *cut = tmp_path("cut.bstk");
    REQUIRE(spit(cut, b, len - 100) == 0);
    bs_store s;
    CHECK(bs_store_open(&s, cut, &e) != 0);
    CHECKF(strstr(e.msg, "truncated") && strstr(e.msg, "cut.bstk"), "%s", e.msg);
    unlink(cut);
    /* one flipped bit in the last block: opens, but reading it names the block */
    const char *flip = tmp_path("flip.bstk");
    b[len - 1] ^= 0x10;
    REQUIRE(spit(flip, b, len) == 0);
    REQUIRE(bs_store_open(&s, flip, &e) == 0);
    uint8_t *stack = malloc(bs_store_prefix_end(&s, s.n_blocks));
    REQUIRE(stack);
    CHECK(bs_store_read_prefix(&s, s.n_blocks - 1, stack, &e) == 0);
    CHECK(bs_store_read_prefix(&s, s.n_blocks, stack, &e) != 0);
    CHECKF(strstr(e.msg, "crc32c") && strstr(e.msg, "level 5"), "%s", e.msg);
    free(stack);
    bs_store_close(&s);
    unlink(flip);
    free(b);
}

static void test_tokenizer_and_options(void)
{
    bs_err e = {{0}};
    bs_tokenizer *t = bs_synth_tokenizer(32000, &e);
    REQUIRE(t);
    CHECK(bs_tok_vocab_size(t) == 32000 && bs_tok_has_bytes(t) && bs_tok_bos(t) == 1 && bs_tok_eos(t) == 2);
    const char *text = "the cat sat on a mat, naïvely \xe2\x9c\x93";
    int *ids = NULL, n = 0;
    REQUIRE(bs_tok_encode(t, text, strlen(text), 1, 1, &ids, &n, &e) == 0);
    size_t len;
    char *back = bs_tok_decode(t, ids + 1, n - 1, &len);
    CHECKF(back && !strcmp(back, text), "'%s'", back ? back : "(null)");
    free(back);
    free(ids);
    bs_tok_free(t);
    /* a vocabulary too small for byte pieces still makes a working tokenizer */
    t = bs_synth_tokenizer(100, &e);
    CHECK(t && !bs_tok_has_bytes(t));
    if (t)
        bs_tok_free(t);

    bs_synth_opts o;
    CHECK(bs_synth_preset(&o, "gpt-5", &e) != 0 && strstr(e.msg, "tinyllama-1.1b"));
    REQUIRE(bs_synth_preset(&o, "tinyllama-1.1b", &e) == 0);
    CHECK(o.cfg.dim == 2048 && o.cfg.hidden_dim == 5632 && o.cfg.n_layers == 22 && o.cfg.n_heads == 32 &&
          o.cfg.n_kv_heads == 4 && o.cfg.vocab_size == 32000 && o.cfg.seq_len == 2048 && !o.shared_cls &&
          o.levels == 6 && o.group == 32);
    o.kind = BS_KIND_AVD;
    CHECK(bs_synth_store_write(tmp_path("avd.bstk"), &o, NULL, NULL, &e) != 0 && strstr(e.msg, "avd"));
    /* an override that makes no model is refused before anything is written */
    REQUIRE(bs_synth_preset(&o, "stories260k", &e) == 0);
    o.cfg.n_heads = 7;
    CHECK(bs_synth_store_write(tmp_path("bad.bstk"), &o, NULL, NULL, &e) != 0 && strstr(e.msg, "heads"));
    CHECK(access(tmp_path("bad.bstk"), F_OK) != 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/bs_test_synth_XXXXXX");
    REQUIRE(mkdtemp(dir));
    test_store(BS_KIND_GQ);
    test_store(BS_KIND_SAQ);
    test_same_seed_same_file();
    test_damaged();
    test_tokenizer_and_options();
    unlink(tmp_path("gq.bstk"));
    unlink(tmp_path("saq.bstk"));
    rmdir(dir);
    TEST_MAIN_END();
}
