/* Sign-plane matrix kernels: y (+)= W x where W is never built.
 *
 * A stacked matrix (rows x cols) is a sum of d 1-bit planes with fp16 group scales:
 *   W[r, j] = sum_{l<d} 2^-(shift0 + l) * S[r, g(j)] * (2 b_l[r, j] - 1),  g(j) = j / group.
 * Equivalently W[r, j] = S[r, g] * 2^-(shift0 + d - 1) * c[r, j] with the odd integer code
 * c = 2u - (2^d - 1), u = sum_l 2^(d-1-l) b_l the d-bit number whose bits are the planes
 * (plane 0 most significant). The kernels rebuild u from the plane bits, so one sweep over
 * all d planes does the whole matrix.
 *
 * Layouts (docs/store-format.md "Blocks"): plane l is rows x ceil(cols/8) bytes, row
 * stride ceil(cols/8), weight (r, j) is bit j%8 of byte j/8 (LSB first), set bit = +1;
 * bits past cols are ignored. Scales are fp16, rows x ceil(cols/group), row-major; the last
 * group may be short. group must be a multiple of 8 so groups start on plane bytes.
 *
 * Paths (bs_kernel_isa):
 *   PORTABLE  plain C, float: per group and plane, the sum p of x over the set bits;
 *             the signed sum is 2p - t (t = sum of x over the group). No quantisation:
 *             |error| <~ 1e-6 * sum_j |W[r,j] x[j]|.
 *   LUT       plain C, float: per 8 inputs a table of the 256 subset sums of x, built once
 *             per call; a plane byte is then one look-up. Same accuracy as PORTABLE.
 *   AVX2      x quantised to int8 once per call, one scale per group (xs_g = max|x_g|/127,
 *             q = round(x/xs_g)); codes u rebuilt as bytes from the plane bits (shuffle +
 *             compare), _mm256_maddubs_epi16 (u8 x s8) + _mm256_madd_epi16, int32 per 4
 *             inputs, S * xs applied per lane in float.
 *   AVX512    same quantisation; each 64-bit plane word is a lane mask, u built with
 *             _mm512_mask_add_epi8, dotted with _mm512_dpbusd_epi32 (VNNI, u8 x s8).
 *             Groups of 32, 64, ... (over 128 inputs) with GFNI take the span kernel instead
 *             (kernels/bitplane_span.h: codes of 512 inputs by one bit transpose per 64,
 *             one float step per 512 inputs); same quantisation and bound.
 * The int8 paths use c . q = 2 (u . q) - (2^d - 1) sum(q), so the unsigned u feeds the
 * u8 operand and the correction is one dot over groups per row. When d > 8 (AVX512) or
 * d > 7 (AVX2: maddubs saturates at int16) the planes are taken in slices of 8 (7) and the
 * slice dot products are shifted together in int32 (exact).
 * Error bound of the int8 paths (weights are exact, only x is rounded, |x - xs q| <= xs/2):
 *   |y_r - exact| <= sum_g (max_{j in g} |x_j| / 254) * sum_{j in g} |W[r, j]|
 * plus float rounding (~1e-6 * sum_j |W[r,j] x[j]|).
 *
 * Dispatch: every entry point takes a bs_kernel_isa, except the bs_kernel_planes_matvec
 * convenience, which uses bs_kernel_isa_default(): bs_kernel_isa_detect() run once at first
 * use and kept in one static (the only global state here; racing first calls compute the
 * same value). BS_KERNEL=portable|lut|avx2|avx512 in the environment overrides the choice
 * (read by bs_kernel_isa_detect; a path the CPU lacks falls back to the best it has).
 *
 * Memory: nothing here allocates. Callers pass scratch of the size the *_scratch functions
 * give (64-byte alignment is best; any alignment works). For a thread pool: one
 * bs_kernel_planes_prepare per token, then bs_kernel_planes_rows on disjoint row ranges
 * from any number of threads (the prepared scratch is only read).
 *
 * Errors: functions return 0, BS_KERNEL_EINVAL (bad shape or arguments, scratch prepared
 * for another shape or path) or BS_KERNEL_ENOTSUP (path not available on this CPU). */
#ifndef BS_BITPLANE_H
#define BS_BITPLANE_H

#include <stddef.h>
#include <stdint.h>

enum { BS_KERNEL_EINVAL = -1, BS_KERNEL_ENOTSUP = -2 };

typedef enum {
    BS_KERNEL_PORTABLE = 0,
    BS_KERNEL_LUT = 1,
    BS_KERNEL_AVX2 = 2,
    BS_KERNEL_AVX512 = 3,
    BS_KERNEL_NISA = 4,
} bs_kernel_isa;

enum {
    BS_KERNEL_MAX_PLANES = 16,
    BS_KERNEL_AVD_MAX_K = 256,
};

/* Tokens from which bs_kernel_planes_matmul builds blocks of W (BS_KERNEL_MATMUL_BLOCK rows
 * at a time, in scratch) and calls cblas_sgemm instead of one matvec per token. Measured by
 * bench_kernels (bench/README.md), TinyLlama shapes, d = 4, one thread, AMD EPYC (Zen 4):
 * the AVX-512 matvec costs the same per token at any count (~175 us for 2048x2048), blocks +
 * sgemm cost ~1.1 ms at 4 tokens, break even at ~48 and win from 64 (146 us/token). The
 * plain-C paths take ~2 ms per matvec, so for them sgemm wins from 2 tokens. */
#define BS_KERNEL_MATMUL_CROSSOVER 48
#define BS_KERNEL_MATMUL_CROSSOVER_C 2
/* 64 rows, not more: the block lives in every session's scratch (5632 inputs: 1.4 MiB),
 * and sgemm on 64-row blocks loses little to 256-row ones. */
#define BS_KERNEL_MATMUL_BLOCK 64
/* Between 2 tokens and the crossover (int8 paths) the matvecs of all tokens walk W
 * together, this many rows at a time: at 4 planes and 5632 inputs a block's bits are
 * 45 KiB, in L2 while every token reads them. */
#define BS_KERNEL_ROW_BLOCK 16

typedef struct {
    int rows, cols;
    int group;                     /* inputs per scale group, a multiple of 8 */
    int nplanes;                   /* d, 1..16 */
    const uint8_t *const *bits;    /* nplanes pointers, plane 0 = largest step */
    const uint16_t *scales;        /* fp16, rows x ceil(cols / group) */
    int shift0;                    /* plane l has step 2^-(shift0 + l); shift0 >= 1 */
} bs_kernel_planes;

/* The best path this CPU runs, or the BS_KERNEL override. */
bs_kernel_isa bs_kernel_isa_detect(void);
/* bs_kernel_isa_detect() computed once and remembered. */
bs_kernel_isa bs_kernel_isa_default(void);
int bs_kernel_isa_supported(bs_kernel_isa isa);
const char *bs_kernel_isa_name(bs_kernel_isa isa);
/* "portable", "lut", "avx2", "avx512" -> the isa; -1 for anything else. */
int bs_kernel_isa_parse(const char *name);

/* 0 if p describes a valid matrix, BS_KERNEL_EINVAL otherwise. */
int bs_kernel_planes_check(const bs_kernel_planes *p);

/* Scratch bytes for prepare/rows/matvec with any path (the largest need of all of them). */
size_t bs_kernel_planes_scratch(int cols, int group);

/* Readies x (cols floats) for the path: copies or quantises it, group sums, tables. */
int bs_kernel_planes_prepare(bs_kernel_isa isa, const bs_kernel_planes *p, const float *x,
                             void *scratch);
/* y[r] (+)= (W x)[r] for row0 <= r < row1, from a scratch prepared for the same path and
 * shape. y is the whole output vector (rows floats); only the range is touched. */
int bs_kernel_planes_rows(bs_kernel_isa isa, const bs_kernel_planes *p, const void *scratch,
                          int row0, int row1, float *y, int accumulate);
/* prepare + rows over all rows. */
int bs_kernel_planes_matvec_isa(bs_kernel_isa isa, const bs_kernel_planes *p, const float *x,
                                float *y, int accumulate, void *scratch);
int bs_kernel_planes_matvec(const bs_kernel_planes *p, const float *x, float *y,
                            int accumulate, void *scratch);

/* Rows row0..row1 of W as floats (row-major, cols per row) into w; exact (fp32 of the
 * fp16 scale times a power of two times a small integer). */
int bs_kernel_planes_materialize(bs_kernel_isa isa, const bs_kernel_planes *p, int row0,
                                 int row1, float *w);

/* Prefill: Y[t][r] (+)= (W X[t])[r], X ntok x cols, Y ntok x rows (row-major), for
 * row0 <= r < row1. Below bs_kernel_matmul_crossover(isa) tokens one matvec per token
 * (bit for bit bs_kernel_planes_rows' sums; on the int8 paths the tokens walk W together,
 * BS_KERNEL_ROW_BLOCK rows at a time, so W is read from memory once, and on AVX-512 the
 * codes of each chunk are rebuilt once for 4 tokens: measured 256x2048, per token, 1 vs 8
 * tokens: 0.023 -> 0.017 ms at 4 planes, 0.054 -> 0.028 ms at 12); from it, W is
 * built BS_KERNEL_MATMUL_BLOCK rows at a time and multiplied by sgemm (then the result is
 * float-exact whatever the path: no int8 rounding). The AVX-512 span kernel (see
 * bs_kernel_planes_matmul_int8) stays int8 at any count: its per-token cost is below
 * sgemm's from 2 tokens on (bench_kernels, prefill table). */
int bs_kernel_matmul_crossover(bs_kernel_isa isa);
/* 1 when bs_kernel_planes_matmul runs ntok tokens of p through the int8 kernels (every
 * token's row bit for bit its matvec's): below the crossover, or at any count on the
 * AVX-512 span kernel (groups of 32, 64, ..., over 128 inputs, with GFNI:
 * kernels/bitplane_span.h). */
int bs_kernel_planes_matmul_int8(bs_kernel_isa isa, const bs_kernel_planes *p, int ntok);
size_t bs_kernel_planes_matmul_scratch(int cols, int group, int ntok);
int bs_kernel_planes_matmul(bs_kernel_isa isa, const bs_kernel_planes *p, int row0, int row1,
                            const float *x, int ntok, float *y, int accumulate, void *scratch);

/* avd block: W = S ⊙ (U Vᵀ), S a sign plane (layout above), U fp16 rows x k, V fp16
 * cols x k (row-major). y (+)= W x = sum_i u_i ⊙ (S (v_i ⊙ x)), k rank vectors at once:
 * z[j] = V[j,:] x[j] once per call, then per row a = 2 sum_{set j} z[j] - sum_j z[j],
 * y[r] += U[r,:] . a. Float throughout (PORTABLE; AVX512 vectorises over k; other
 * paths run PORTABLE). k <= BS_KERNEL_AVD_MAX_K. */
typedef struct {
    int rows, cols, k;
    const uint8_t *bits;
    const uint16_t *u;
    const uint16_t *v;
} bs_kernel_avd;

size_t bs_kernel_avd_scratch(int cols, int k);
int bs_kernel_avd_prepare(bs_kernel_isa isa, const bs_kernel_avd *a, const float *x,
                          void *scratch);
int bs_kernel_avd_rows(bs_kernel_isa isa, const bs_kernel_avd *a, const void *scratch,
                       int row0, int row1, float *y, int accumulate);
int bs_kernel_avd_matvec(bs_kernel_isa isa, const bs_kernel_avd *a, const float *x, float *y,
                         int accumulate, void *scratch);

#endif
