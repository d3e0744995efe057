/* Perplexity protocol on the real models: the figures the README records, within a
 * tight band, and far below a randomly initialised model of the same shape. */
#include "harness.h"
#include "model/load.h"
#include "model/ppl.h"

static double ppl_of(const bs_model *m, const bs_tokenizer *t, const char *text, size_t len, int chunks)
{
    bs_ppl_result r;
    bs_err e = {{0}};
    if (bs_ppl_text(m, t, text, len, 256, chunks, &r, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    CHECK(r.windows == chunks && r.tokens == 255L * chunks);
    return r.ppl;
}

static void one(const char *model, const char *tok, double want, const char *text, size_t len)
{
    bs_model m;
    bs_err e = {{0}};
    REQUIRE(bs_model_load(&m, bs_shared(model), &e) == 0);
    bs_tokenizer *t = bs_tok_load_for(bs_shared(model), bs_shared(tok), m.cfg.vocab_size, &e);
    REQUIRE(t);
    double p = ppl_of(&m, t, text, len, 40);
    fprintf(stderr, "%s: ppl %.4f (recorded %.4f)\n", model, p, want);
    CHECK_NEAR(p, want, want * 0.001);
    bs_model_randomize(&m, 1234);
    double pr = ppl_of(&m, t, text, len, 4);
    fprintf(stderr, "%s randomised: ppl %.1f\n", model, pr);
    CHECKF(pr > 10 * want, "random model ppl %.2f is not far above %.2f", pr, want);
    bs_tok_free(t);
    bs_model_free(&m);
}

/* llama.cpp's protocol against llama-perplexity's own running figure after `chunks`
 * windows (-c 256, KV cache in F32; gguf-quant/logs/ppl-<model>-kvf32.log). A prefix
 * of the text is enough for those windows and keeps the test quick. */
static void llamacpp_one(const char *model, const char *text_rel, int chunks, double want)
{
    bs_model m;
    bs_err e = {{0}};
    REQUIRE(bs_model_load(&m, bs_shared(model), &e) == 0);
    bs_tokenizer *t = bs_tok_load_for(bs_shared(model), NULL, m.cfg.vocab_size, &e);
    REQUIRE(t);
    size_t len;
    char *text = bs_read_file(bs_shared(text_rel), &len, &e);
    REQUIRE(text);
    if (len > 65536)
        len = 65536;
    bs_ppl_result r;
    int rc = bs_ppl_text_protocol(&m, t, text, len, BS_PPL_LLAMACPP, 256, chunks, &r, &e);
    CHECKF(rc == 0, "%s", e.msg);
    CHECK(r.windows == chunks && r.tokens == 127L * chunks);
    fprintf(stderr, "%s, llama.cpp protocol, %d windows: ppl %.4f (llama-perplexity %.4f)\n", model, chunks, r.ppl,
            want);
    CHECK_NEAR(r.ppl, want, want * 0.01);
    free(text);
    bs_tok_free(t);
    bs_model_free(&m);
}

int main(void)
{
    bs_err e = {{0}};
    size_t len;
    char *text = bs_read_file(bs_shared("data/tinystories_valid_head.txt"), &len, &e);
    REQUIRE(text);
    one("models/stories260K.bin", "models/tok512.bin", 4.6057, text, len);
    one("models/babyllama-d128.bin", "models/babyllama-tok105.bin", 2.2777, text, len);

    llamacpp_one("models/gguf-quant/stories260K-Q3_K_S.gguf", "data/tinystories_valid_head.txt", 8, 3.7841);
    llamacpp_one("models/gguf-quant/babyllama-d128-Q4_1.gguf",
                 "models/gguf-quant/tinystories_valid_head.babyllama105.txt", 8, 2.5127);

    /* too short a text for one window is an error that says so */
    bs_model m;
    REQUIRE(bs_model_load(&m, bs_shared("models/stories260K.bin"), &e) == 0);
    bs_tokenizer *t = bs_tok_load_for(NULL, bs_shared("models/tok512.bin"), m.cfg.vocab_size, &e);
    REQUIRE(t);
    bs_ppl_result r;
    CHECK(bs_ppl_text(&m, t, "Once upon a time", 16, 256, 0, &r, &e) != 0);
    CHECKF(strstr(e.msg, "fewer than one window") != NULL, "%s", e.msg);
    CHECK(bs_ppl_text(&m, t, text, len, 100000, 0, &r, &e) != 0);
    bs_tok_free(t);
    bs_model_free(&m);
    free(text);
    TEST_MAIN_END();
}
