/* bs_bpe: byte-level BPE (GPT-2 style), the encoder behind bs_tokenizer when a GGUF's
 * tokenizer.ggml.model is "gpt2". Callers use the bs_tok_* interface; this header is
 * for model/tokenizer.c.
 *
 * Encode: split the text with GPT-2's pre-tokenizer pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * then, within each piece, spell every byte as its byte-level character (printable
 * bytes as themselves, the rest as U+0100 + k) and apply the merges by rank
 * (tokenizer.ggml.merges, lowest rank first; ties: leftmost).
 * Decode: each piece's characters back to the bytes they spell. */
#ifndef BS_TOKENIZER_BPE_H
#define BS_TOKENIZER_BPE_H

#include <stddef.h>

#include "kernels/err.h"
#include "model/gguf.h"

typedef struct bs_bpe bs_bpe;

/* n pieces as GGUF spells them (byte-level characters), their types, and the merges
 * array ("left right" strings). A merge whose sides or result is not a piece can never
 * apply to pieces and is skipped. Copies what it keeps. */
bs_bpe *bs_bpe_new(int n, const char *const *pieces, const size_t *lens, const int *types,
                   const bs_gguf_kv *merges, const char *path, bs_err *e);
void bs_bpe_free(bs_bpe *b);

/* The same from merges given as pairs of piece ids (left, right), n_merges of them in
 * rank order (a store's tokenizer section): an id outside the vocabulary is an error. */
bs_bpe *bs_bpe_new_pairs(int n, const char *const *pieces, const size_t *lens, const int *types,
                         const int *pairs, int n_merges, const char *path, bs_err *e);

/* The merges that can apply, as 2 * *n piece ids (left, right) in rank order: what
 * bs_bpe_new_pairs takes back to build the same encoder. malloc'd; NULL: out of memory. */
int *bs_bpe_merges(const bs_bpe *b, int *n);

/* Piece id as the vocabulary spells it (byte-level characters). */
const char *bs_bpe_piece_raw(const bs_bpe *b, int id, size_t *len);

/* Appends the ids of text to a malloc'd array (caller frees). */
int bs_bpe_encode(const bs_bpe *b, const char *text, size_t len, int bos, int **ids, int *n, bs_err *e);

/* The bytes piece `id` decodes to (control pieces: none). */
const char *bs_bpe_piece(const bs_bpe *b, int id, size_t *len);

#endif
