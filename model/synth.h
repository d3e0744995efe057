/* bs_synth: a valid stacked store of a real model's shape filled with random weights.
 *
 * Benchmarks of speed, memory and resizing need a store of the size and shape of the
 * models people serve (TinyLlama-1.1B), not its quality: compressing the real model
 * takes a calibration pass and GPTQ on every matrix, and the float weights are several
 * GB. A synthetic store has the exact layout a compressed one has (same kinds, levels,
 * groups, level-major stack order, crcs), random sign planes, and group scales sized so
 * each weight has the spread of a fresh init (std 1/sqrt(inputs)): the forward pass
 * stays finite at every prefix. The metadata says so: info.synthetic = true and
 * info.shape names the shape, so nobody mistakes its perplexity for a result.
 *
 * Blocks are produced one at a time while the store is written (bs_store_out.fill), so
 * memory holds the base (embeddings) and one block, not the whole stack. */
#ifndef BS_SYNTH_H
#define BS_SYNTH_H

#include <stdint.h>

#include "model/model.h"
#include "model/tokenizer.h"

typedef struct {
    char shape[32];     /* recorded as info.shape */
    bs_config cfg;      /* head_dim and kv_dim are derived; the rest is the shape */
    int shared_cls;     /* the classifier is the embedding */
    int kind;           /* BS_KIND_GQ or BS_KIND_SAQ */
    int levels;         /* blocks per matrix */
    int gq_levels;      /* gq: K, the levels on level 0's grid (clipped to levels) */
    int gq_restart;     /* gq: level with fresh scales; -1 picks K + 1 when that is below levels */
    int group;          /* inputs per scale group */
    uint64_t seed;      /* below 2^63 (it is recorded in JSON) */
} bs_synth_opts;

/* The presets, comma-separated, for usage messages: "tinyllama-1.1b, stories260k". */
const char *bs_synth_preset_names(void);

/* Fills o with a preset's shape and the defaults (gq, 6 levels, K 4, group 32, seed 1).
 * Change any field afterwards to override. -1 for an unknown shape (the message lists
 * the presets). */
int bs_synth_preset(bs_synth_opts *o, const char *shape, bs_err *e);

/* Called after each block is written, with the blocks done and the total. */
typedef void (*bs_synth_progress_fn)(void *ctx, int done, int total);

/* Writes a synthetic store at path (through path.tmp, like every store). cb may be NULL.
 * The same options and seed give the same file. */
int bs_synth_store_write(const char *path, const bs_synth_opts *o, bs_synth_progress_fn cb, void *ctx,
                         bs_err *e);

/* A SentencePiece-like vocabulary of vocab_size pieces (at least 3): <unk>, <s>, </s>,
 * then the 256 byte pieces <0x00>..<0xFF> when they fit, then lowercase words with and
 * without a leading space, shorter and commoner letters first, scored so earlier pieces
 * merge first. Any text encodes (through byte pieces) and decodes back. */
bs_tokenizer *bs_synth_tokenizer(int vocab_size, bs_err *e);

#endif
