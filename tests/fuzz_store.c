/* Fuzz target for the store reader (model/store.c): any bytes through bs_store_open,
 * then every block read and checked. Opening must succeed or fail with a message;
 * an opened store must hold together (prefix sizes grow, blocks lie in the stack).
 *
 * The header carries crc32c of the metadata and base sections, which a mutating fuzzer
 * never gets right, so each input is tried twice: as given, and with those two crcs
 * recomputed, which lets mutations of the JSON metadata and the base reach the parsers.
 *
 * libFuzzer (clang): ninja -C build-fuzz fuzz_store && build-fuzz/fuzz_store tests/fuzz/store
 * (scripts/fuzz.sh runs every target). Seeds: tests/fuzz/store, made by bs-fuzz-seeds. */
#include "tests/fuzz.h"

#include "kernels/crc32c.h"
#include "model/store.h"

static void open_one(const uint8_t *data, size_t size)
{
    bs_store s;
    bs_err e = {{0}};
    if (bs_store_open(&s, fuzz_as_file(data, size), &e)) {
        MUST(e.msg[0] != '\0');
        return;
    }
    MUST(s.n_blocks >= 1 && s.min_blocks >= 1 && s.min_blocks <= s.n_blocks);
    MUST(s.tok && bs_tok_vocab_size(s.tok) == s.cfg.vocab_size);
    for (int i = 0; i < s.n_blocks; i++) {
        const bs_store_block *b = &s.blocks[i];
        MUST(b->matrix >= 0 && b->matrix < s.n_matrices);
        MUST(b->offset % BS_STORE_ALIGN == 0 && b->offset + b->bytes <= s.stack_len);
        MUST(s.resident[i + 1] >= s.resident[i]);
    }
    uint64_t end = bs_store_prefix_end(&s, s.n_blocks);
    MUST(end <= s.stack_len);
    uint8_t *buf = malloc(end ? end : 1);
    MUST(buf);
    if (bs_store_read_prefix(&s, s.n_blocks, buf, &e))
        MUST(e.msg[0] != '\0');
    else
        MUST(bs_store_verify(&s, buf, 0, s.n_blocks, &e) == 0);
    free(buf);
    double bpw = bs_store_bpw(&s, s.n_blocks);
    (void)bpw;
    bs_store_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_one(data, size);
    if (size < 64 || size > (64u << 20))
        return 0;
    /* the same bytes with the header's crcs made to match */
    uint64_t f[4];
    memcpy(f, data + 8, sizeof f);
    if (f[0] > size || f[1] > size - f[0] || f[2] > size || f[3] > size - f[2])
        return 0;
    uint8_t *fixed = malloc(size);
    MUST(fixed);
    memcpy(fixed, data, size);
    uint32_t meta_crc = bs_crc32c(0, data + f[0], f[1]), base_crc = bs_crc32c(0, data + f[2], f[3]);
    memcpy(fixed + 56, &meta_crc, 4);
    memcpy(fixed + 60, &base_crc, 4);
    if (memcmp(fixed, data, size) != 0)
        open_one(fixed, size);
    free(fixed);
    return 0;
}
