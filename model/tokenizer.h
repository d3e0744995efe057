/* bs_tokenizer: SentencePiece-style (Llama) BPE over a scored vocabulary.
 *
 * Encode: optional BOS, a dummy-prefix space, spaces as the vocabulary spells them,
 * each UTF-8 character looked up whole, else as byte pieces <0xXX> (when the
 * vocabulary has them) else <unk>; then repeatedly merge the adjacent pair whose
 * merged piece has the best score (ties: leftmost). Runs in O(n log n).
 * Decode: byte pieces become raw bytes; the dummy-prefix space is stripped.
 *
 * Vocabularies come from llama2.c tokenizer.bin files or from a GGUF file's
 * tokenizer.ggml.* metadata; both yield the same ids for the same pieces.
 *
 * A GGUF whose tokenizer.ggml.model is "gpt2" gets byte-level BPE instead
 * (model/tokenizer_bpe.h: GPT-2's pre-tokenizer, then tokenizer.ggml.merges by rank)
 * behind the same functions: add_prefix is then ignored (bs_tok_add_space_prefix
 * says 0), every byte is encodable, and decoding gives back the exact bytes. */
#ifndef BS_TOKENIZER_H
#define BS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/err.h"

/* Piece types, as GGUF's tokenizer.ggml.token_type numbers them. */
enum {
    BS_TOK_NORMAL = 1, BS_TOK_UNKNOWN = 2, BS_TOK_CONTROL = 3,
    BS_TOK_USER = 4, BS_TOK_UNUSED = 5, BS_TOK_BYTE = 6,
};

typedef struct bs_tokenizer bs_tokenizer;

/* Builds a tokenizer from n pieces (UTF-8, each of length lens[i]; either ' ' or
 * U+2581 for a space), their scores and types (types may be NULL: then <unk>,
 * <s>, </s> and the ids 0..2 are special and <0xXX> pieces are bytes).
 * bos/eos/unk < 0 pick the defaults 1/2/0. Copies everything it is given. */
bs_tokenizer *bs_tok_new(int n, const char *const *pieces, const size_t *lens,
                         const float *scores, const int *types,
                         int bos, int eos, int unk, bs_err *e);

/* A byte-level BPE tokenizer from what a store keeps: pieces as GGUF spells them (byte-
 * level characters), scores (may be NULL), types, and n_merges merges as pairs of piece
 * ids (left, right) in rank order, as bs_tok_bpe_merges gives them. */
bs_tokenizer *bs_tok_new_bpe(int n, const char *const *pieces, const size_t *lens, const float *scores,
                             const int *types, const int *pairs, int n_merges, int bos, int eos, int unk,
                             bs_err *e);

/* llama2.c's tokenizer.bin: int max_len, then per piece: float score, int len, bytes. */
bs_tokenizer *bs_tok_load_llama2c(const char *path, int vocab_size, bs_err *e);

struct bs_gguf;
/* tokenizer.ggml.tokens / scores / token_type / bos_token_id / eos_token_id ... of a GGUF;
 * tokenizer.ggml.model picks the algorithm ("llama": SentencePiece, "gpt2": byte-level BPE
 * with tokenizer.ggml.merges); any other model is an error naming it, and so is a BPE
 * pre-tokenizer (tokenizer.ggml.pre) other than GPT-2's ("gpt-2", or no key). */
bs_tokenizer *bs_tok_from_gguf(const struct bs_gguf *g, bs_err *e);

void bs_tok_free(bs_tokenizer *t);

int bs_tok_vocab_size(const bs_tokenizer *t);
int bs_tok_bos(const bs_tokenizer *t);
int bs_tok_eos(const bs_tokenizer *t);
int bs_tok_has_bytes(const bs_tokenizer *t);   /* 1 when <0xXX> pieces exist */
int bs_tok_unk(const bs_tokenizer *t);
/* 1 for a byte-level BPE vocabulary (GGUF tokenizer.ggml.model "gpt2"), 0 for SentencePiece. */
int bs_tok_is_bpe(const bs_tokenizer *t);
/* 0 when a GGUF says tokenizer.ggml.add_space_prefix = false: pass it as add_prefix. */
int bs_tok_add_space_prefix(const bs_tokenizer *t);
/* Sets it while a tokenizer is being built (a store's reader; BPE ignores it). */
void bs_tok_set_add_space_prefix(bs_tokenizer *t, int on);

/* Encodes len bytes of text. *ids is malloc'd (caller frees); *n gets the count.
 * add_bos: prepend BOS. add_prefix: the dummy-prefix space (SentencePiece default). */
int bs_tok_encode(const bs_tokenizer *t, const char *text, size_t len,
                  int add_bos, int add_prefix, int **ids, int *n, bs_err *e);

/* The bytes token `id` stands for when it follows token `prev` (prev < 0: first token
 * of a text encoded without BOS, so its prefix space is stripped too).
 * Byte pieces give their byte; control pieces give nothing; <unk> gives " \u2047 " as
 * SentencePiece does. *len gets the length. */
const char *bs_tok_piece(const bs_tokenizer *t, int prev, int id, size_t *len);

/* Decodes a whole sequence into a malloc'd NUL-terminated string (*len without the NUL).
 * decode(encode(s, prefix)) == s whenever every character of s is in the vocabulary
 * or the vocabulary has byte pieces. */
char *bs_tok_decode(const bs_tokenizer *t, const int *ids, int n, size_t *len);

/* The piece text as stored (spaces as ' '), for display and serialisation. */
const char *bs_tok_piece_raw(const bs_tokenizer *t, int id, size_t *len);
float bs_tok_score(const bs_tokenizer *t, int id);

/* For serialising a byte-level BPE vocabulary: piece id as GGUF spells it, and the merges
 * as 2 * *n piece ids (left, right) in rank order (malloc'd; NULL when t is not BPE or
 * out of memory). */
const char *bs_tok_piece_bpe_raw(const bs_tokenizer *t, int id, size_t *len);
int *bs_tok_bpe_merges(const bs_tokenizer *t, int *n);
int bs_tok_type(const bs_tokenizer *t, int id);

#endif
