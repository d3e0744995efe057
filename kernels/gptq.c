#include "kernels/gptq.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran) entry points exported by OpenBLAS; the size_t is gfortran's hidden
 * length of the CHARACTER argument. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t len);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t len);

static int find_nonfinite_f(const float *a, int rows, int cols, int *r, int *c)
{
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        if (!isfinite(a[i])) {
            *r = (int)(i / cols);
            *c = (int)(i % cols);
            return 1;
        }
    return 0;
}

static int check_w(const float *W, int m, int n, bs_err *e)
{
    int r, c;
    if (find_nonfinite_f(W, m, n, &r, &c))
        return bs_err_set(e, "quant: W (%d×%d) has a non-finite entry at row %d, column %d "
                          "(%g)", m, n, r, c, W[(size_t)r * n + c]);
    return 0;
}

/* ---------------------------------------------------------------- GPTQ driver */

typedef struct {
    double d;
    int i;
} diag_ix;

/* Decreasing diag(H); equal values keep input order so the permutation is reproducible. */
static int cmp_diag_desc(const void *pa, const void *pb)
{
    const diag_ix *a = pa, *b = pb;
    if (a->d != b->d)
        return a->d > b->d ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Turns the damped Hessian h (n×n, symmetric, destroyed) into the upper Cholesky factor U
 * of its inverse (H⁻¹ = UᵀU), written row-major into hinv with zeros below the diagonal.
 * LAPACK sees h column-major, which for a symmetric matrix is the same array. */
static int hinv_chol(double *h, int n, float *hinv, bs_err *e)
{
    int info = 0;
    dpotrf_("U", &n, h, &n, &info, 1);
    if (info > 0)
        return bs_err_set(e, "gptq: the Hessian (%d×%d) is not positive definite after "
                          "damping (leading minor %d); raise the damping", n, n, info);
    if (info == 0)
        dpotri_("U", &n, h, &n, &info, 1);
    if (info > 0)
        return bs_err_set(e, "gptq: the Hessian (%d×%d) is singular (pivot %d)", n, n, info);
    if (info == 0)
        dpotrf_("U", &n, h, &n, &info, 1);
    if (info > 0)
        return bs_err_set(e, "gptq: the inverse Hessian (%d×%d) lost definiteness in "
                          "rounding (leading minor %d); raise the damping", n, n, info);
    if (info < 0)
        return bs_err_set(e, "gptq: LAPACK rejected argument %d", -info);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            hinv[(size_t)i * n + j] = j >= i ? (float)h[i + (size_t)j * n] : 0.0f;
    return 0;
}

int bs_gptq(const float *W, int m, int n, const void *H, bs_hess_type ht,
            const bs_gptq_opts *o, const bs_quantizer *qz, float *Q, bs_err *e)
{
    bs_gptq_opts opt = o ? *o : BS_GPTQ_OPTS_DEFAULT;
    if (m <= 0 || n <= 0)
        return bs_err_set(e, "gptq: bad shape %d×%d", m, n);
    if (!W || !H || !Q || !qz || !qz->fit || !qz->round || qz->group <= 0)
        return bs_err_set(e, "gptq: missing matrix, Hessian, output or quantiser");
    if (!(opt.damp >= 0) || !isfinite(opt.damp))
        return bs_err_set(e, "gptq: bad damping %g", opt.damp);
    if (check_w(W, m, n, e))
        return -1;
    size_t nn = (size_t)n * n;
    for (size_t i = 0; i < nn; i++) {
        double v = ht == BS_HESS_F64 ? ((const double *)H)[i] : ((const float *)H)[i];
        if (!isfinite(v))
            return bs_err_set(e, "gptq: the Hessian (%d×%d) has a non-finite entry at row "
                              "%zu, column %zu", n, n, i / n, i % n);
    }
    int group = qz->group;
    int block = opt.block > 0 ? opt.block : 128;
    block = (block + group - 1) / group * group;
    int statics = opt.static_groups || opt.act_order;

    double *hd = malloc(sizeof(double) * nn);
    float *wt = malloc(sizeof(float) * (size_t)n * m);  /* Wᵀ: input column j is wt + j·m */
    float *hinv = malloc(sizeof(float) * nn);
    float *err = malloc(sizeof(float) * (size_t)block * m);
    float *q = malloc(sizeof(float) * (size_t)m);
    int *perm = malloc(sizeof(int) * (size_t)n);
    diag_ix *dx = NULL;
    double *hp = NULL;
    float *wp = NULL;
    int rc = -1;
    if (!hd || !wt || !hinv || !err || !q || !perm) {
        bs_err_set(e, "gptq: out of memory (%d×%d)", m, n);
        goto out;
    }
    for (size_t i = 0; i < nn; i++)
        hd[i] = ht == BS_HESS_F64 ? ((const double *)H)[i] : ((const float *)H)[i];

    /* An input that never fired carries no information: its weights are dropped and its
     * Hessian row made harmless, as GPTQ does. */
    for (int j = 0; j < n; j++) {
        int dead = hd[(size_t)j * n + j] == 0;
        if (dead)
            hd[(size_t)j * n + j] = 1;
        for (int r = 0; r < m; r++)
            wt[(size_t)j * m + r] = dead ? 0.0f : W[(size_t)r * n + j];
    }
    if (statics)
        for (int j = 0; j < n; j += group) {
            int cols = n - j < group ? n - j : group;
            if (qz->fit(qz->ctx, j / group, wt + (size_t)j * m, cols, m, e))
                goto out;
        }

    for (int j = 0; j < n; j++)
        perm[j] = j;
    if (opt.act_order) {
        dx = malloc(sizeof(diag_ix) * (size_t)n);
        hp = malloc(sizeof(double) * nn);
        wp = malloc(sizeof(float) * (size_t)n * m);
        if (!dx || !hp || !wp) {
            bs_err_set(e, "gptq: out of memory (%d×%d)", m, n);
            goto out;
        }
        for (int j = 0; j < n; j++)
            dx[j] = (diag_ix){hd[(size_t)j * n + j], j};
        qsort(dx, (size_t)n, sizeof *dx, cmp_diag_desc);
        for (int a = 0; a < n; a++) {
            perm[a] = dx[a].i;
            memcpy(wp + (size_t)a * m, wt + (size_t)perm[a] * m, sizeof(float) * m);
        }
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                hp[(size_t)a * n + b] = hd[(size_t)perm[a] * n + perm[b]];
        double *t = hd;
        hd = hp;
        hp = t;
        float *tw = wt;
        wt = wp;
        wp = tw;
    }

    double mean = 0;
    for (int j = 0; j < n; j++)
        mean += hd[(size_t)j * n + j];
    mean /= n;
    for (int j = 0; j < n; j++)
        hd[(size_t)j * n + j] += opt.damp * mean;
    if (hinv_chol(hd, n, hinv, e))
        goto out;

    /* Column by column: round, then push the rounding error onto the later columns of the
     * block at once (rank-1) and onto the columns past the block in one sgemm per block. */
    for (int i1 = 0; i1 < n; i1 += block) {
        int i2 = i1 + block < n ? i1 + block : n;
        for (int j = i1; j < i2; j++) {
            float *w = wt + (size_t)j * m;
            if (!statics && j % group == 0) {
                int cols = n - j < group ? n - j : group;
                if (qz->fit(qz->ctx, j / group, w, cols, m, e))
                    goto out;
            }
            qz->round(qz->ctx, perm[j], w, q, m);
            float d = hinv[(size_t)j * n + j];
            float *ej = err + (size_t)(j - i1) * m;
            for (int r = 0; r < m; r++) {
                ej[r] = (w[r] - q[r]) / d;
                Q[(size_t)r * n + perm[j]] = q[r];
            }
            if (j + 1 < i2)
                cblas_sger(CblasRowMajor, i2 - j - 1, m, -1.0f, hinv + (size_t)j * n + j + 1, 1,
                           ej, 1, wt + (size_t)(j + 1) * m, m);
        }
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n - i2, m, i2 - i1, -1.0f,
                        hinv + (size_t)i1 * n + i2, n, err, m, 1.0f, wt + (size_t)i2 * m, m);
    }
    rc = 0;
out:
    free(hd), free(wt), free(hinv), free(err), free(q), free(perm), free(dx), free(hp), free(wp);
    return rc;
}

/* Round-to-nearest through the same quantiser interface: fit every group, round every
 * column, no error feedback. */
static int run_rtn(const float *W, int m, int n, const bs_quantizer *qz, float *Q, bs_err *e)
{
    if (check_w(W, m, n, e))
        return -1;
    float *wt = malloc(sizeof(float) * (size_t)n * m);
    float *q = malloc(sizeof(float) * (size_t)m);
    int rc = -1;
    if (!wt || !q) {
        bs_err_set(e, "quant: out of memory (%d×%d)", m, n);
        goto out;
    }
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++)
            wt[(size_t)j * m + r] = W[(size_t)r * n + j];
    for (int j = 0; j < n; j += qz->group) {
        int cols = n - j < qz->group ? n - j : qz->group;
        if (qz->fit(qz->ctx, j / qz->group, wt + (size_t)j * m, cols, m, e))
            goto out;
    }
    for (int j = 0; j < n; j++) {
        qz->round(qz->ctx, j, wt + (size_t)j * m, q, m);
        for (int r = 0; r < m; r++)
            Q[(size_t)r * n + j] = q[r];
    }
    rc = 0;
out:
    free(wt), free(q);
    return rc;
}

static int check_args(int m, int n, int group, const void *Q, const void *codes,
                      const void *scales, bs_err *e)
{
    if (m <= 0 || n <= 0 || group <= 0)
        return bs_err_set(e, "quant: bad shape %d×%d or group %d", m, n, group);
    if (!Q || !codes || !scales)
        return bs_err_set(e, "quant: missing output array");
    return 0;
}

/* ---------------------------------------------------------------- asymmetric grid */

typedef struct {
    int bits, group, n, ngroups;
    uint8_t *codes;
    uint16_t *scales, *mins;
    float *sf, *lf; /* the fp16 values as floats, m × ngroups */
} asym_q;

static int asym_fit(void *ctx, int g, const float *w, int ncols, int m, bs_err *e)
{
    asym_q *a = ctx;
    int maxq = (1 << a->bits) - 1;
    for (int r = 0; r < m; r++) {
        float lo = w[r], hi = w[r];
        for (int c = 1; c < ncols; c++) {
            float v = w[(size_t)c * m + r];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        uint16_t sh = bs_f32_to_fp16((hi - lo) / (float)maxq), lh = bs_f32_to_fp16(lo);
        float s = bs_fp16_to_f32(sh), l = bs_fp16_to_f32(lh);
        if (!isfinite(s) || !isfinite(l))
            return bs_err_set(e, "quant: group %d of row %d spans [%g, %g], beyond fp16", g, r,
                              lo, hi);
        size_t k = (size_t)r * a->ngroups + g;
        a->scales[k] = sh;
        a->mins[k] = lh;
        a->sf[k] = s;
        a->lf[k] = l;
    }
    return 0;
}

static void asym_round(void *ctx, int col, const float *w, float *q, int m)
{
    asym_q *a = ctx;
    int g = col / a->group, maxq = (1 << a->bits) - 1;
    for (int r = 0; r < m; r++) {
        size_t k = (size_t)r * a->ngroups + g;
        float s = a->sf[k], l = a->lf[k];
        int c = 0;
        if (s > 0) {
            float x = floorf((w[r] - l) / s + 0.5f);
            c = !(x >= 0) ? 0 : x > maxq ? maxq : (int)x; /* a NaN lands on 0, not in UB */
        }
        a->codes[(size_t)r * a->n + col] = (uint8_t)c;
        q[r] = l + s * (float)c; /* = bs_asym_value(scale, min, c) */
    }
}

static int asym_run(const float *W, int m, int n, const void *H, bs_hess_type ht,
                    const bs_gptq_opts *o, int bits, int group, float *Q, uint8_t *codes,
                    uint16_t *scales, uint16_t *mins, bs_err *e)
{
    if (check_args(m, n, group, Q, codes, scales, e))
        return -1;
    if (!mins)
        return bs_err_set(e, "quant: missing output array");
    if (bits < 1 || bits > 8)
        return bs_err_set(e, "quant: %d bits is outside 1..8", bits);
    int ng = (n + group - 1) / group;
    asym_q a = {bits, group, n, ng, codes, scales, mins, NULL, NULL};
    a.sf = malloc(sizeof(float) * (size_t)m * ng);
    a.lf = malloc(sizeof(float) * (size_t)m * ng);
    int rc;
    if (!a.sf || !a.lf) {
        rc = bs_err_set(e, "quant: out of memory (%d×%d)", m, n);
    } else {
        bs_quantizer qz = {group, &a, asym_fit, asym_round};
        rc = H ? bs_gptq(W, m, n, H, ht, o, &qz, Q, e) : run_rtn(W, m, n, &qz, Q, e);
    }
    free(a.sf), free(a.lf);
    return rc;
}

int bs_quant_rtn_asym(const float *W, int m, int n, int bits, int group, float *Q,
                      uint8_t *codes, uint16_t *scales, uint16_t *mins, bs_err *e)
{
    return asym_run(W, m, n, NULL, BS_HESS_F32, NULL, bits, group, Q, codes, scales, mins, e);
}

int bs_gptq_asym(const float *W, int m, int n, const void *H, bs_hess_type ht,
                 const bs_gptq_opts *o, int bits, int group, float *Q, uint8_t *codes,
                 uint16_t *scales, uint16_t *mins, bs_err *e)
{
    if (!H)
        return bs_err_set(e, "gptq: missing Hessian");
    return asym_run(W, m, n, H, ht, o, bits, group, Q, codes, scales, mins, e);
}

/* ---------------------------------------------------------------- saq / gq */

/* One successive-approximation step: the sign of r (sign(0) = +1) and r moved by h towards
 * zero. gq codes and saq planes both go through here, so they agree bit for bit. h is
 * M·2^-(level+1), an exact product. */
static inline int saq_step(float *r, float h)
{
    int b = *r >= 0;
    *r = b ? *r - h : *r + h;
    return b;
}

/* 2^-(level+1): the step of a level relative to M. */
static inline float level_pow(int level)
{
    return ldexpf(1.0f, -(level + 1));
}

static inline int gq_code(float w, float M, int K)
{
    static const float pw[8] = {0x1p-1f, 0x1p-2f, 0x1p-3f, 0x1p-4f,
                                0x1p-5f, 0x1p-6f, 0x1p-7f, 0x1p-8f}; /* level_pow(0..7) */
    float r = w;
    int c = 0;
    for (int l = 0; l < K; l++)
        c = c << 1 | saq_step(&r, M * pw[l]);
    return c;
}

typedef struct {
    int K, group, clip, n, ngroups;
    uint8_t *codes;
    uint16_t *scales;
    float *Mf; /* M as float, m × ngroups */
} gq_q;

static double gq_group_err(const float *w, int ncols, int m, int r, float M, int K)
{
    double s = 0;
    for (int c = 0; c < ncols; c++) {
        float v = w[(size_t)c * m + r];
        double d = v - bs_gq_value(gq_code(v, M, K), M, K);
        s += d * d;
    }
    return s;
}

static int gq_fit(void *ctx, int g, const float *w, int ncols, int m, bs_err *e)
{
    gq_q *a = ctx;
    for (int r = 0; r < m; r++) {
        float amax = 0;
        for (int c = 0; c < ncols; c++) {
            float v = fabsf(w[(size_t)c * m + r]);
            amax = v > amax ? v : amax;
        }
        uint16_t best = bs_f32_to_fp16(amax);
        if (!isfinite(bs_fp16_to_f32(best)))
            return bs_err_set(e, "quant: group %d of row %d has max |w| %g, beyond fp16", g, r,
                              amax);
        if (a->clip) {
            double best_err = gq_group_err(w, ncols, m, r, bs_fp16_to_f32(best), a->K);
            for (int t = 1; t < BS_GQ_CLIP_GRID; t++) {
                float alpha = 1.0f - 0.5f * (float)t / (float)(BS_GQ_CLIP_GRID - 1);
                uint16_t h = bs_f32_to_fp16(alpha * amax);
                double err = gq_group_err(w, ncols, m, r, bs_fp16_to_f32(h), a->K);
                if (err < best_err) {
                    best_err = err;
                    best = h;
                }
            }
        }
        size_t k = (size_t)r * a->ngroups + g;
        a->scales[k] = best;
        a->Mf[k] = bs_fp16_to_f32(best);
    }
    return 0;
}

static void gq_round(void *ctx, int col, const float *w, float *q, int m)
{
    gq_q *a = ctx;
    int g = col / a->group;
    for (int r = 0; r < m; r++) {
        float M = a->Mf[(size_t)r * a->ngroups + g];
        int c = gq_code(w[r], M, a->K);
        a->codes[(size_t)r * a->n + col] = (uint8_t)c;
        q[r] = bs_gq_value(c, M, a->K);
    }
}

static int gq_run(const float *W, int m, int n, const void *H, bs_hess_type ht,
                  const bs_gptq_opts *o, int K, int group, int clip_search, float *Q,
                  uint8_t *codes, uint16_t *scales, bs_err *e)
{
    if (check_args(m, n, group, Q, codes, scales, e))
        return -1;
    if (K < 1 || K > 8)
        return bs_err_set(e, "quant: %d levels is outside 1..8", K);
    int ng = (n + group - 1) / group;
    gq_q a = {K, group, clip_search, n, ng, codes, scales, NULL};
    a.Mf = malloc(sizeof(float) * (size_t)m * ng);
    if (!a.Mf)
        return bs_err_set(e, "quant: out of memory (%d×%d)", m, n);
    bs_quantizer qz = {group, &a, gq_fit, gq_round};
    int rc = H ? bs_gptq(W, m, n, H, ht, o, &qz, Q, e) : run_rtn(W, m, n, &qz, Q, e);
    free(a.Mf);
    return rc;
}

int bs_quant_rtn_gq(const float *W, int m, int n, int K, int group, int clip_search, float *Q,
                    uint8_t *codes, uint16_t *scales, bs_err *e)
{
    return gq_run(W, m, n, NULL, BS_HESS_F32, NULL, K, group, clip_search, Q, codes, scales, e);
}

int bs_gptq_gq(const float *W, int m, int n, const void *H, bs_hess_type ht,
               const bs_gptq_opts *o, int K, int group, int clip_search, float *Q,
               uint8_t *codes, uint16_t *scales, bs_err *e)
{
    if (!H)
        return bs_err_set(e, "gptq: missing Hessian");
    return gq_run(W, m, n, H, ht, o, K, group, clip_search, Q, codes, scales, e);
}

void bs_gq_plane(const uint8_t *codes, int m, int n, int K, int level, uint8_t *bits)
{
    size_t stride = ((size_t)n + 7) / 8;
    int shift = K - 1 - level;
    for (int r = 0; r < m; r++) {
        uint8_t *row = bits + (size_t)r * stride;
        memset(row, 0, stride);
        for (int j = 0; j < n; j++)
            row[j >> 3] |= (uint8_t)(((codes[(size_t)r * n + j] >> shift) & 1) << (j & 7));
    }
}

void bs_saq_plane(const float *R, int m, int n, int group, const float *M, int level,
                  uint8_t *bits, float *R_update)
{
    size_t stride = ((size_t)n + 7) / 8;
    int ng = (n + group - 1) / group;
    float p = level_pow(level);
    for (int r = 0; r < m; r++) {
        uint8_t *row = bits + (size_t)r * stride;
        memset(row, 0, stride);
        for (int j = 0; j < n; j++) {
            float v = R[(size_t)r * n + j];
            int b = saq_step(&v, M[(size_t)r * ng + j / group] * p);
            row[j >> 3] |= (uint8_t)(b << (j & 7));
            if (R_update)
                R_update[(size_t)r * n + j] = v;
        }
    }
}

void bs_group_absmax(const float *W, int m, int n, int group, uint16_t *M)
{
    int ng = (n + group - 1) / group;
    for (int r = 0; r < m; r++)
        for (int g = 0; g < ng; g++) {
            float amax = 0;
            int end = (g + 1) * group < n ? (g + 1) * group : n;
            for (int j = g * group; j < end; j++) {
                float v = fabsf(W[(size_t)r * n + j]);
                amax = v > amax ? v : amax;
            }
            M[(size_t)r * ng + g] = bs_f32_to_fp16(amax);
        }
}
