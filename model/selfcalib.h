/* bs_selfcalib: calibration text without a corpus, sampled from the float model itself.
 *
 * `bitstackd --model X.gguf` has a model and nothing else: the text the calibration pass
 * needs (activation statistics, Hessians) is taken from the model's own distribution,
 * as data-free quantisation does (LLM-QAT, arXiv 2305.17888, generates its training data
 * the same way). Each window starts from BOS with an empty prompt and samples at
 * temperature 1 (no nucleus cut, so the text covers what the model really produces)
 * until the window is full or the model ends it; windows are joined by a space, which
 * every vocabulary has. Deterministic for a seed. */
#ifndef BS_SELFCALIB_H
#define BS_SELFCALIB_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/err.h"
#include "model/model.h"
#include "model/progress.h"
#include "model/tokenizer.h"

/* The seed bitstackd --model and `compress --calib self` use: the same source, the same store. */
#define BS_SELFCALIB_SEED 0x5eedb175ull

/* windows windows of at most ctx tokens. *text (malloc'd, NUL-terminated) and *len.
 * pg (may be NULL): stage "self-calibration", one tick per window. */
int bs_selfcalib_text(const bs_model *m, const bs_tokenizer *tok, int windows, int ctx, uint64_t seed,
                      const bs_progress *pg, char **text, size_t *len, bs_err *e);

#endif
