/* A quantized GGUF as the source model (issue 18 item 3): babyllama-d128-Q8_0.gguf,
 * dequantized by the loader and compressed as usual, gives a store whose full stack
 * scores within 0.5% of the Q8_0 model's own perplexity (same protocol, same ids). */
#include "harness.h"
#include "model/compress.h"
#include "model/load.h"
#include "model/ppl.h"
#include "model/store_eval.h"

#include <unistd.h>

int main(void)
{
    const char *src = bs_shared("models/gguf-quant/babyllama-d128-Q8_0.gguf");
    bs_err e = {{0}};
    bs_model m;
    REQUIRE(bs_model_load(&m, src, &e) == 0);
    bs_tokenizer *t = bs_tok_load_for(src, NULL, m.cfg.vocab_size, &e);
    REQUIRE(t);
    size_t calib_len, valid_len;
    char *calib = bs_read_file(bs_shared("data/tinystories_train_head.txt"), &calib_len, &e);
    /* the vocabulary has no newline piece; this copy of the text spells it as a space */
    char *valid = bs_read_file(bs_shared("models/gguf-quant/tinystories_valid_head.babyllama105.txt"), &valid_len, &e);
    REQUIRE(calib && valid);
    if (valid_len > 65536)
        valid_len = 65536;
    int *ids, nids;
    REQUIRE(bs_tok_encode(t, valid, valid_len, 0, 1, &ids, &nids, &e) == 0);

    bs_compress_opts o;
    bs_compress_defaults(&o, BS_KIND_GQ);
    o.calib_windows = 16;
    char path[256];
    snprintf(path, sizeof path, "/tmp/bs_test_compress_gguf_%d.bstk", (int)getpid());
    if (bs_compress(&m, t, calib, calib_len, &o, path, NULL, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        REQUIRE(0);
    }
    /* the GGUF says context_length 128 (its converter's constant), so windows of 128 */
    int ctx = m.cfg.seq_len < 256 ? m.cfg.seq_len : 256, windows = 16;
    bs_ppl_result rf, rs;
    REQUIRE(bs_ppl_ids(&m, ids, nids, bs_tok_bos(t), ctx, windows, &rf, &e) == 0);
    bs_engine eng;
    REQUIRE(bs_engine_open(&eng, path, &e) == 0);
    int rc = bs_engine_ppl(&eng, eng.store.n_blocks, ids, nids, ctx, windows, &rs, &e);
    CHECKF(rc == 0, "%s", e.msg);
    fprintf(stderr, "babyllama-d128-Q8_0.gguf: own ppl %.4f, full stack %.4f (%d windows of %d)\n", rf.ppl, rs.ppl,
            windows, ctx - 1);
    CHECK_NEAR(rs.ppl, rf.ppl, rf.ppl * 0.005);
    bs_engine_close(&eng);
    unlink(path);
    free(ids);
    free(calib);
    free(valid);
    bs_tok_free(t);
    bs_model_free(&m);
    TEST_MAIN_END();
}
