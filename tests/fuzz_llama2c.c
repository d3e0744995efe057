/* Fuzz target for the llama2.c loaders: any bytes as a checkpoint (model/llama2c.c)
 * and as a tokenizer.bin (model/tokenizer.c), the latter both with every piece the
 * file holds and with the count a model would ask for. Loading must succeed or fail
 * with a message; a loaded model's header must describe exactly the file.
 *
 * libFuzzer (clang): ninja -C build-fuzz fuzz_llama2c && build-fuzz/fuzz_llama2c tests/fuzz/llama2c
 * (scripts/fuzz.sh runs every target). Seeds: tests/fuzz/llama2c, made by bs-fuzz-seeds. */
#include "tests/fuzz.h"

#include "model/model.h"
#include "model/tokenizer.h"

static void tokenizer(const char *path, int vocab)
{
    bs_err e = {{0}};
    bs_tokenizer *t = bs_tok_load_llama2c(path, vocab, &e);
    if (!t) {
        MUST(e.msg[0] != '\0');
        return;
    }
    int n = bs_tok_vocab_size(t);
    MUST(n > 0 && (vocab <= 0 || n == vocab));
    int *ids = NULL, k = 0;
    if (bs_tok_encode(t, "Hello, world \xc3\xa9!", 16, 1, 1, &ids, &k, &e) == 0) {
        for (int i = 0; i < k; i++)
            MUST(ids[i] >= 0 && ids[i] < n);
        size_t len;
        free(bs_tok_decode(t, ids, k, &len));
    }
    free(ids);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = bs_tok_piece(t, i > 0 ? i - 1 : -1, i, &len);
        MUST(p != NULL);
        volatile char last = len ? p[len - 1] : 0;   /* ASan checks the piece's bounds */
        (void)last;
    }
    bs_tok_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_as_file(data, size);
    bs_model m;
    bs_err e = {{0}};
    if (bs_model_load_llama2c(&m, path, &e) == 0) {
        MUST(m.cfg.dim > 0 && m.cfg.n_layers > 0 && m.cfg.vocab_size > 0);
        MUST((size_t)m.cfg.vocab_size * (size_t)m.cfg.dim <= size / 4);
        bs_model_free(&m);
    } else {
        MUST(e.msg[0] != '\0');
    }
    tokenizer(path, 0);
    tokenizer(path, 32);
    return 0;
}
