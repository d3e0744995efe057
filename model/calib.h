/* Calibration statistics and activation-aware scaling (DESIGN §2.1).
 *
 * One pass of the float model over calibration text gathers, for every input site
 * of every layer, the per-channel activation scale s_c = mean over windows of
 * ||x_c||_2 over positions (+1e-3) and the Hessian H = X^T X (GPTQ's statistic).
 * bs_calib_fold then multiplies each linear's input columns by s and folds 1/s into
 * the operation before it, so the float model computes the same function. */
#ifndef BS_CALIB_H
#define BS_CALIB_H

#include "model/forward.h"
#include "model/progress.h"
#include "model/tokenizer.h"

typedef struct {
    int n_layers;
    int width[BS_NSITES];
    double *scale[BS_NSITES];   /* n_layers x width: sum over windows of ||x_c|| */
    double *hess[BS_NSITES];    /* n_layers x width x width: X^T X */
    float *act[BS_NSITES];      /* n_layers x width: the scales applied (1 when off) */
    long tokens;
    int windows;
} bs_calib;

/* Runs up to max_windows windows of ctx-1 tokens of text ([BOS]+window, as the
 * perplexity protocol) through m. Fails when the text is shorter than one window.
 * Reports stage "calibration", one item per window, to pg (may be NULL). */
int bs_calib_run(bs_calib *cb, const bs_model *m, const bs_tokenizer *t, const char *text, size_t len,
                 int ctx, int max_windows, const bs_progress *pg, bs_err *e);
void bs_calib_free(bs_calib *cb);

/* The site whose input linear `which` reads. */
int bs_calib_site(int which);

/* Scales m's linears by the activation scales and folds the inverse into the norms,
 * w3's rows (for w2) and wv's rows (for wo, with one scale per kv channel shared by the
 * query heads that read it). Transforms the Hessians to match (H' = S^-1 H S^-1).
 * alpha softens the scales to s^alpha (AWQ's exponent; 1 = the plain scales).
 * Records the applied scales in cb->act. */
int bs_calib_fold(bs_calib *cb, bs_model *m, float alpha, bs_err *e);

/* Hessian of linear `which` in layer l as float (n x n), divided by the token count. */
void bs_calib_hessian(const bs_calib *cb, int layer, int which, float *H);

#endif
