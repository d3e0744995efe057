/* Weight quantisation for compression: GPTQ (Frantar et al. 2022) with a pluggable grid,
 * plain round-to-nearest, and the bit planes of DESIGN §2 (saq, gq).
 *
 * Shapes: W is m×n row-major, m = outputs (rows), n = inputs (columns). Groups run along
 * a row: group g of row r is W[r][g·group .. g·group+group−1] (the last one may be short);
 * per-group arrays (scales, mins, M) are m × ngroups row-major, ngroups = ceil(n / group).
 * Codes are one uint8 per weight, m×n row-major.
 *
 * Bit planes: row-major, each row padded to a whole byte (stride (n+7)/8 bytes); weight
 * (r, j) is bit (j % 8) of byte r·stride + j/8, least significant bit first. A set bit is
 * the sign +1, a clear bit −1. Pad bits are zero.
 *
 * Every fp16 number (scale, min, M) is rounded to fp16 BEFORE it is used, so the stored
 * value reproduces the dequantised weights exactly; the value helpers below are the one
 * definition of that arithmetic. */
#ifndef BS_GPTQ_H
#define BS_GPTQ_H

#include <stdint.h>

#include "kernels/err.h"
#include "kernels/half.h"

typedef enum { BS_HESS_F32, BS_HESS_F64 } bs_hess_type;

typedef struct {
    float damp;        /* fraction of mean(diag H) added to the diagonal (GPTQ's percdamp) */
    int block;         /* columns per lazy batch update; rounded up to a multiple of the group */
    int act_order;     /* process inputs in decreasing diag(H); implies static_groups */
    int static_groups; /* fit every group's grid from the original weights before the first
                          column, instead of from the error-updated weights when GPTQ
                          reaches the group's first column (the default, as GPTQ does) */
} bs_gptq_opts;

#define BS_GPTQ_OPTS_DEFAULT ((bs_gptq_opts){.damp = 0.01f, .block = 128})

/* A grid GPTQ rounds onto. The driver calls fit for group g once, before any column of
 * the group is rounded, with the group's current weights column-major: w[c·m + r] for
 * column c < ncols, row r < m. round then gets the current weights of input column col
 * (its index in W, whatever the processing order) and writes the grid values to q. */
typedef struct {
    int group;
    void *ctx;
    int (*fit)(void *ctx, int g, const float *w, int ncols, int m, bs_err *e);
    void (*round)(void *ctx, int col, const float *w, float *q, int m);
} bs_quantizer;

/* GPTQ on W with input Hessian H = XᵀX (n×n, float or double, symmetric). Dead inputs
 * (H_ii == 0) get H_ii = 1 and W[:, i] = 0 before quantising; the damping is added after;
 * the upper Cholesky factor of H⁻¹ is computed in double. Q (m×n) receives the quantised
 * weights in the original column order; Q may be W. Fails on non-finite W or H, on a
 * Hessian that is not positive definite after damping, or when the quantiser fails.
 * o == NULL means BS_GPTQ_OPTS_DEFAULT. */
int bs_gptq(const float *W, int m, int n, const void *H, bs_hess_type ht,
            const bs_gptq_opts *o, const bs_quantizer *qz, float *Q, bs_err *e);

/* ---- Asymmetric uniform grid (the RTN/GPTQ baseline) ----
 * Per (row, group): min = fp16(min w), scale = fp16((max w − min) / (2^bits − 1)); the value
 * of code c ∈ [0, 2^bits) is min + scale·c in float. bits ∈ [1, 8]. In GPTQ the grid of a
 * group comes from the error-updated weights at the group's first column (unless
 * static_groups), as the reference GPTQ does: the feedback moves weights, and a grid fitted
 * to the moved weights covers the values that are actually rounded instead of clipping
 * them. Measured on tests/test_gptq.c's synthetic problem neither wins everywhere (output
 * error / RTN at 2, 3, 4 bits: updated 0.461 0.423 0.437, original 0.435 0.435 0.427). */
static inline float bs_asym_value(uint16_t scale, uint16_t min, int code)
{
    float s = bs_fp16_to_f32(scale), lo = bs_fp16_to_f32(min);
    return lo + s * (float)code;
}

int bs_quant_rtn_asym(const float *W, int m, int n, int bits, int group, float *Q,
                      uint8_t *codes, uint16_t *scales, uint16_t *mins, bs_err *e);
int bs_gptq_asym(const float *W, int m, int n, const void *H, bs_hess_type ht,
                 const bs_gptq_opts *o, int bits, int group, float *Q, uint8_t *codes,
                 uint16_t *scales, uint16_t *mins, bs_err *e);

/* ---- gq: the K-level sign-magnitude grid ----
 * Per (row, group) a scale M = fp16(α · max |w|), α = 1 or, with clip_search, the α of
 * BS_GQ_CLIP_GRID values in [0.5, 1] with the least squared error on the group. The grid is
 * Σ_{l<K} b_l·M/2^(l+1), b_l ∈ {±1}: the 2^K odd multiples of M/2^K within [−M, M].
 * Code bit K−1−l is b_l (b_0 is the most significant bit), so code >> (K−d) is the code of
 * the first d levels and plane l is what bs_gq_plane extracts. A weight is coded by K saq
 * steps (below), so the codes equal K successive bs_saq_plane calls bit for bit, and the
 * value of a code is exact in float (M has 11 significant bits). K ∈ [1, 8].
 * The clip search minimises the plain squared error of the group, not the H-weighted one.
 * Measured (tests/test_gptq.c): it helps where levels are few — GPTQ output error −19%,
 * −7%, −2% at K = 1, 2, 3 on stories260K w1.0 with gaussian X, and at K = 1 it is what keeps
 * GPTQ below RTN on outlier-heavy weights — and does nothing from K = 5 on (α = 1 wins). */
#define BS_GQ_CLIP_GRID 11

/* Value of the d-level code c (0 ≤ c < 2^d) with scale M: M·(2c + 1 − 2^d)/2^d. */
static inline float bs_gq_value(int c, float M, int d)
{
    return M * (float)(2 * c + 1 - (1 << d)) / (float)(1 << d);
}

int bs_quant_rtn_gq(const float *W, int m, int n, int K, int group, int clip_search, float *Q,
                    uint8_t *codes, uint16_t *scales, bs_err *e);
int bs_gptq_gq(const float *W, int m, int n, const void *H, bs_hess_type ht,
               const bs_gptq_opts *o, int K, int group, int clip_search, float *Q,
               uint8_t *codes, uint16_t *scales, bs_err *e);

/* Plane `level` (0 = most significant) of K-level codes, as packed bits (layout above). */
void bs_gq_plane(const uint8_t *codes, int m, int n, int K, int level, uint8_t *bits);

/* ---- saq: one successive-approximation plane without GPTQ ----
 * bits = sign(R) (sign(0) = +1) and, if R_update is not NULL, R_update = R − sign(R)·h with
 * h = M_g / 2^(level+1) for the weight's group (M is m × ngroups, already fp16-rounded by
 * the caller). R_update may be R. */
void bs_saq_plane(const float *R, int m, int n, int group, const float *M, int level,
                  uint8_t *bits, float *R_update);

/* M_g = fp16(max |w| of the group) for every (row, group): the saq scales. */
void bs_group_absmax(const float *W, int m, int n, int group, uint16_t *M);

#endif
