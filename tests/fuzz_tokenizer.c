/* Fuzz target for the tokenizer (model/tokenizer.c): encode and decode of any bytes,
 * and vocabularies built from any pieces. The input's first byte picks the case:
 *   0: text through a 512-piece vocabulary with byte pieces (bs_synth_tokenizer):
 *      decode(encode(text)) must give the text back, as tokenizer.h promises;
 *   1: text through a 40-piece vocabulary without byte pieces (the <unk> paths);
 *   2: a vocabulary from the input (pieces up to the first NUL, one per line, earlier
 *      pieces scored higher), then the rest as text through it.
 * Bit 2 of the first byte turns BOS off, bit 3 the dummy-prefix space.
 *
 * libFuzzer (clang): ninja -C build-fuzz fuzz_tokenizer && build-fuzz/fuzz_tokenizer tests/fuzz/tokenizer
 * (scripts/fuzz.sh runs every target). Seeds: tests/fuzz/tokenizer, made by bs-fuzz-seeds. */
#include "tests/fuzz.h"

#include "model/synth.h"
#include "model/tokenizer.h"

/* built once and kept for the process: a fuzz target's fixtures */
static bs_tokenizer *with_bytes, *without_bytes;

static void round_trip(const bs_tokenizer *t, const char *text, size_t len, int bos, int prefix, int exact)
{
    int *ids = NULL, n = 0;
    bs_err e = {{0}};
    if (bs_tok_encode(t, text, len, bos, prefix, &ids, &n, &e)) {
        MUST(e.msg[0] != '\0' && ids == NULL);
        return;
    }
    int vocab = bs_tok_vocab_size(t);
    MUST(n >= bos && (size_t)n <= len + 1 + (size_t)bos);
    for (int i = 0; i < n; i++)
        MUST(ids[i] >= 0 && ids[i] < vocab);
    if (bos)
        MUST(n >= 1 && ids[0] == bs_tok_bos(t));
    size_t out_len;
    char *out = bs_tok_decode(t, ids, n, &out_len);
    MUST(out != NULL && out[out_len] == '\0');
    if (exact && prefix) {
        if (out_len != len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "round trip: %zu bytes in, %zu out\n", len, out_len);
            abort();
        }
    }
    free(out);
    free(ids);
}

static bs_tokenizer *from_input(const uint8_t *data, size_t size, size_t *used)
{
    const uint8_t *end = memchr(data, 0, size);
    size_t vlen = end ? (size_t)(end - data) : size;
    *used = end ? vlen + 1 : size;
    const char *pieces[256];
    size_t lens[256];
    float scores[256];
    int n = 0;
    for (size_t a = 0; a <= vlen && n < 256;) {
        const uint8_t *nl = memchr(data + a, '\n', vlen - a);
        size_t b = nl ? (size_t)(nl - data) : vlen;
        pieces[n] = (const char *)data + a;
        lens[n] = b - a;
        scores[n] = -(float)n;
        n++;
        a = b + 1;
    }
    bs_err e = {{0}};
    bs_tokenizer *t = bs_tok_new(n, pieces, lens, scores, NULL, -1, -1, -1, &e);
    if (!t)
        MUST(e.msg[0] != '\0');
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bs_err e = {{0}};
    if (!with_bytes) {
        with_bytes = bs_synth_tokenizer(512, &e);
        without_bytes = bs_synth_tokenizer(40, &e);
        MUST(with_bytes && without_bytes && bs_tok_has_bytes(with_bytes) && !bs_tok_has_bytes(without_bytes));
    }
    if (size == 0)
        return 0;
    int mode = data[0] % 4, bos = !(data[0] & 4), prefix = !(data[0] & 8);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 0 || mode == 3) {
        round_trip(with_bytes, text, len, bos, prefix, 1);
    } else if (mode == 1) {
        round_trip(without_bytes, text, len, bos, prefix, 0);
    } else {
        size_t used;
        bs_tokenizer *t = from_input(data + 1, size - 1, &used);
        if (t) {
            round_trip(t, text + used, len - used, bos, prefix, 0);
            bs_tok_free(t);
        }
    }
    return 0;
}
