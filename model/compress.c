#include "model/compress.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/clock.h"

#include "kernels/gptq.h"
#include "kernels/half.h"
#include "kernels/svd.h"
#include "model/calib.h"
#include "model/floor.h"
#include "model/ppl.h"
#include "model/progress.h"
#include "model/qmat.h"
#include "model/store.h"

void bs_compress_defaults(bs_compress_opts *o, int kind)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->levels = kind == BS_KIND_AVD ? 16 : 12;
    o->gq_levels = 4;
    o->gq_restart = -1;
    o->group = 32;
    o->sort = BS_SORT_LEVEL;
    o->ctx = 256;
    o->calib_windows = 64;
    o->ppl_windows = 4;
    /* measured (docs/results.md): folding activation scales into the weights hurts the
     * plane kinds, whose group scale is a max that the largest scaled column inflates;
     * GPTQ's Hessian already weights the error by activation. The paper's avd keeps it. */
    o->act_scale = kind == BS_KIND_AVD;
    o->act_alpha = 1.0f;
    o->clip_search = kind == BS_KIND_GQ;
    o->floor_paths = 1;
    o->floor_mode = BS_FLOOR_SWITCH;
    o->switch_windows = 16;
    bs_train_defaults(&o->qat);
    o->qat.minutes = 0;
}

int bs_compress_check_model(const bs_model *m, char *zero_name, size_t zlen, bs_err *e)
{
    if (zero_name && zlen)
        zero_name[0] = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < BS_NLIN; w++) {
            const bs_linear *lin = &m->layers[l].lin[w];
            size_t n = (size_t)lin->rows * lin->cols, nz = 0;
            for (size_t i = 0; i < n; i++) {
                if (!isfinite(lin->w[i]))
                    return bs_err_set(e, "layers.%d.%s has a non-finite weight at row %zu, column %zu: the model "
                                      "cannot be compressed", l, bs_lin_name(w), i / lin->cols, i % lin->cols);
                nz += lin->w[i] != 0.0f;
            }
            if (nz == 0 && zero_name && zlen && !zero_name[0])
                snprintf(zero_name, zlen, "layers.%d.%s", l, bs_lin_name(w));
        }
    return 0;
}

/* One matrix on its way into the stack. */
typedef struct {
    bs_store_matrix m;
    const float *w;     /* what the blocks encode: the (scaled) float weights, less the floor */
    const float *full;  /* the (scaled) float weights */
    float *res;         /* owned: W − W_floor when there is a floor */
    const uint8_t *floor;  /* the floor payload, or NULL */
    int over;           /* the blocks stand on the floor (BS_FLOOR_OVER); else they replace it */
    float *H;           /* cols x cols, mean over calibration tokens */
    uint8_t **payload;  /* levels blocks */
    double *err;        /* levels + 1: output-error proxy at each depth */
    int dead;           /* inputs never active in calibration */
} enc;

static void enc_free(enc *x)
{
    if (x->payload)
        for (int l = 0; l < x->m.levels; l++)
            free(x->payload[l]);
    free(x->payload);
    free(x->err);
    free(x->H);
    free(x->res);
}

static uint8_t *block_bits(enc *x, int level)
{
    return x->payload[level] + bs_block_scales_bytes(&x->m, level);
}

static void put_scales(enc *x, int level, const uint16_t *s)
{
    memcpy(x->payload[level], s, bs_block_scales_bytes(&x->m, level));
}

/* saq planes from level `from` on R (updated in place). Fresh scales are stored in
 * block `from`: max |R| per group, but never below floor[g] (may be NULL). */
static void encode_saq_from(enc *x, float *R, int from, const float *floor)
{
    const bs_store_matrix *m = &x->m;
    size_t G = bs_block_groups(m), ng = (size_t)m->rows * G;
    uint16_t *M16 = malloc(sizeof(uint16_t) * ng);
    float *M = malloc(sizeof(float) * ng);
    if (!floor) {
        bs_group_absmax(R, m->rows, m->cols, m->group, M16);
        bs_fp16_to_f32_n(M, M16, ng);
    } else {
        /* a restart: the first plane's step M/2 is the least-squares step for a sign
         * plane (mean |R| of the group), so the restart never adds error; never below
         * the grid's own step */
        for (size_t g = 0; g < ng; g++) {
            size_t r = g / G, j0 = (g % G) * (size_t)m->group;
            size_t j1 = j0 + (size_t)m->group < (size_t)m->cols ? j0 + (size_t)m->group : (size_t)m->cols;
            double sum = 0.0;
            for (size_t j = j0; j < j1; j++)
                sum += fabsf(R[r * (size_t)m->cols + j]);
            float v = (float)(2.0 * sum / (double)(j1 - j0));
            M16[g] = bs_f32_to_fp16(v > floor[g] ? v : floor[g]);
            M[g] = bs_fp16_to_f32(M16[g]);
        }
    }
    put_scales(x, from, M16);
    for (int l = from; l < m->levels; l++)
        bs_saq_plane(R, m->rows, m->cols, m->group, M, l - from, block_bits(x, l), R);
    free(M16);
    free(M);
}

/* lsq: every level the least-squares sign plane of what is left, per group: step
 * α = mean |R_g| (stored as M = 2α, the plane adds sign · M / 2), so no level ever adds
 * error to its matrix (over a floor, saq's and gq's first max-sized steps were measured to
 * make the model far worse than the floor alone). */
static void encode_lsq(enc *x, float *R)
{
    const bs_store_matrix *m = &x->m;
    size_t G = bs_block_groups(m), ng = (size_t)m->rows * G;
    uint16_t *M16 = malloc(sizeof(uint16_t) * ng);
    float *M = malloc(sizeof(float) * ng);
    for (int l = 0; l < m->levels && M16 && M; l++) {
        for (size_t g = 0; g < ng; g++) {
            size_t r = g / G, j0 = (g % G) * (size_t)m->group;
            size_t j1 = j0 + (size_t)m->group < (size_t)m->cols ? j0 + (size_t)m->group : (size_t)m->cols;
            double sum = 0.0;
            for (size_t j = j0; j < j1; j++)
                sum += fabsf(R[r * (size_t)m->cols + j]);
            M16[g] = bs_f32_to_fp16((float)(2.0 * sum / (double)(j1 - j0)));
            M[g] = bs_fp16_to_f32(M16[g]);
        }
        put_scales(x, l, M16);
        bs_saq_plane(R, m->rows, m->cols, m->group, M, 0, block_bits(x, l), R);
    }
    free(M16);
    free(M);
}

static int encode_gq(enc *x, float *R, const bs_compress_opts *o, bs_err *e)
{
    const bs_store_matrix *m = &x->m;
    size_t n = (size_t)m->rows * m->cols, G = bs_block_groups(m);
    int K = m->gq_levels;
    float *Q = malloc(sizeof(float) * n);
    uint8_t *codes = malloc(n);
    uint16_t *scales = malloc(sizeof(uint16_t) * (size_t)m->rows * G);
    bs_gptq_opts go = BS_GPTQ_OPTS_DEFAULT;
    go.act_order = o->act_order;
    int rc = -1;
    if (!Q || !codes || !scales) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    if (bs_gptq_gq(x->w, m->rows, m->cols, x->H, BS_HESS_F32, &go, K, m->group, o->clip_search, Q, codes, scales, e)) {
        bs_err_wrap(e, "%s: GPTQ", m->name);
        goto out;
    }
    put_scales(x, 0, scales);
    for (int l = 0; l < K && l < m->levels; l++)
        bs_gq_plane(codes, m->rows, m->cols, K, l, block_bits(x, l));
    for (size_t i = 0; i < n; i++)
        R[i] = x->w[i] - Q[i];
    /* Below the restart, planes continue the GPTQ grid (steps M/2^(l+1)): most of what
     * GPTQ left is below M/2^K. GPTQ's error feedback and the clip leave outliers that
     * steps this small never reach, so at the restart fresh scales take over: sized by the
     * group's mean |R| (the least-squares step of a sign plane, so the restart plane never
     * adds error, where a max-based scale was measured to), never below the grid's step. */
    size_t ng = (size_t)m->rows * G;
    float *M = malloc(sizeof(float) * ng);
    if (!M) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    bs_fp16_to_f32_n(M, scales, ng);
    int stop = m->restart > 0 ? m->restart : m->levels;
    for (int l = K; l < stop; l++)
        bs_saq_plane(R, m->rows, m->cols, m->group, M, l, block_bits(x, l), R);
    if (m->restart > 0) {
        for (size_t g = 0; g < ng; g++)
            M[g] = ldexpf(M[g], -m->restart);
        encode_saq_from(x, R, m->restart, M);
    }
    free(M);
    rc = 0;
out:
    free(Q);
    free(codes);
    free(scales);
    return rc;
}

static int encode_avd(enc *x, float *R, uint64_t seed, bs_err *e)
{
    const bs_store_matrix *m = &x->m;
    int rows = m->rows, cols = m->cols, k = m->k;
    size_t n = (size_t)rows * cols, rb = ((size_t)cols + 7) / 8;
    float *A = malloc(sizeof(float) * n), *U = malloc(sizeof(float) * (size_t)rows * k);
    float *S = malloc(sizeof(float) * (size_t)k), *Vt = malloc(sizeof(float) * (size_t)k * cols);
    float *u = malloc(sizeof(float) * (size_t)rows * k), *v = malloc(sizeof(float) * (size_t)cols * k);
    int rc = -1;
    if (!A || !U || !S || !Vt || !u || !v) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    for (int l = 0; l < m->levels; l++) {
        uint8_t *bits = x->payload[l];
        memset(bits, 0, (size_t)rows * rb);
        for (size_t i = 0; i < n; i++)
            A[i] = fabsf(R[i]);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                if (R[(size_t)i * cols + j] >= 0.0f)
                    bits[(size_t)i * rb + j / 8] |= (uint8_t)(1u << (j % 8));
        if (bs_svd_truncated(A, rows, cols, k, 8, 4, seed + (uint64_t)l, U, S, Vt, e)) {
            bs_err_wrap(e, "%s level %d: truncated SVD", m->name, l);
            goto out;
        }
        /* split sqrt(sigma) into both factors; store fp16 and use what is stored */
        uint16_t *Uh = (uint16_t *)(bits + (size_t)rows * rb), *Vh = Uh + (size_t)rows * k;
        for (int i = 0; i < rows; i++)
            for (int r = 0; r < k; r++)
                Uh[(size_t)i * k + r] = bs_f32_to_fp16(U[(size_t)i * k + r] * sqrtf(S[r]));
        for (int j = 0; j < cols; j++)
            for (int r = 0; r < k; r++)
                Vh[(size_t)j * k + r] = bs_f32_to_fp16(Vt[(size_t)r * cols + j] * sqrtf(S[r]));
        bs_fp16_to_f32_n(u, Uh, (size_t)rows * k);
        bs_fp16_to_f32_n(v, Vh, (size_t)cols * k);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) {
                float mag = 0.0f;
                for (int r = 0; r < k; r++)
                    mag += u[(size_t)i * k + r] * v[(size_t)j * k + r];
                float *rij = &R[(size_t)i * cols + j];
                *rij -= *rij >= 0.0f ? mag : -mag;
            }
    }
    rc = 0;
out:
    free(A); free(U); free(S); free(Vt); free(u); free(v);
    return rc;
}

/* Output-error proxy of W - W_d over calibration inputs: sum over rows of d H d^T. */
static double out_error(const float *D, const float *H, int rows, int cols, float *DH)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f, D, cols, H, cols, 0.0f, DH, cols);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        s += (double)DH[i] * D[i];
    return s;
}

/* err[d] for every depth d, from the stored bytes (so it measures what a reader gets). */
static int measure_errors(enc *x, bs_err *e)
{
    const bs_store_matrix *m = &x->m;
    size_t n = (size_t)m->rows * m->cols;
    float *W = malloc(sizeof(float) * n), *DH = malloc(sizeof(float) * n);
    x->err = malloc(sizeof(double) * (size_t)(m->levels + 1));
    if (!W || !DH || !x->err) {
        free(W);
        free(DH);
        return bs_err_set(e, "out of memory");
    }
    bs_qmat q = {m, 0, (const uint8_t **)x->payload, NULL};
    for (int d = 0; d <= m->levels; d++) {
        /* a switching store's depth 0 is the floor; deeper, the blocks alone */
        q.depth = d;
        q.floor = x->over || d == 0 ? x->floor : NULL;
        bs_qmat_materialize(&q, W);
        for (size_t i = 0; i < n; i++)
            W[i] = x->full[i] - W[i];
        x->err[d] = out_error(W, x->H, m->rows, m->cols, DH);
    }
    free(W);
    free(DH);
    return 0;
}

static int auto_rank(int rows, int cols)
{
    /* 16 k (m + n) / (m n) = 1/8 bit per weight */
    int k = (int)lround((double)rows * cols / (128.0 * (rows + cols)));
    return k < 1 ? 1 : k;
}

static int encode_matrix(enc *x, const bs_compress_opts *o, int idx, bs_err *e)
{
    bs_store_matrix *m = &x->m;
    size_t n = (size_t)m->rows * m->cols;
    x->payload = calloc((size_t)m->levels, sizeof *x->payload);
    float *R = malloc(sizeof(float) * n);
    if (!x->payload || !R) {
        free(R);
        return bs_err_set(e, "out of memory");
    }
    for (int l = 0; l < m->levels; l++) {
        x->payload[l] = calloc(1, bs_block_bytes(m, l));
        if (!x->payload[l]) {
            free(R);
            return bs_err_set(e, "out of memory");
        }
    }
    memcpy(R, x->w, sizeof(float) * n);
    int rc;
    if (m->kind == BS_KIND_GQ)
        rc = encode_gq(x, R, o, e);
    else if (m->kind == BS_KIND_AVD)
        rc = encode_avd(x, R, 0x5eed0000ull + (uint64_t)idx * 1000, e);
    else if (m->kind == BS_KIND_LSQ) {
        encode_lsq(x, R);
        rc = 0;
    }
    else {
        encode_saq_from(x, R, 0, NULL);
        rc = 0;
    }
    free(R);
    return rc ? -1 : measure_errors(x, e);
}

typedef struct {
    int mat;
    double score;   /* higher goes first */
} cand;

static int by_score(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->mat - y->mat;
}

/* Calibration perplexity of `work` (dense) on ids. */
static double calib_ppl(const bs_model *work, const int *ids, int n, int bos, int ctx, int windows)
{
    bs_ppl_result r;
    bs_err e;
    if (bs_ppl_ids(work, ids, n, bos, ctx, windows, &r, &e))
        return INFINITY;
    return r.ppl;
}

static void set_depth(bs_model *work, const enc *x, int depth)
{
    bs_qmat q = {&x->m, depth, (const uint8_t **)x->payload, x->over ? x->floor : NULL};
    bs_qmat_materialize(&q, work->layers[x->m.layer].lin[x->m.which].w);
}

/* Builds the stack order. sort=ppl scores each candidate by calibration perplexity. */
static int order_stack(enc *xs, int nm, const bs_compress_opts *o, const bs_model *scaled, const int *ids, int nids,
                       int bos, bs_store_block **out, int *nout, bs_err *e)
{
    int maxl = 0, total = 0;
    for (int i = 0; i < nm; i++) {
        maxl = xs[i].m.levels > maxl ? xs[i].m.levels : maxl;
        total += xs[i].m.levels;
    }
    bs_store_block *blocks = calloc((size_t)total, sizeof *blocks);
    cand *c = calloc((size_t)nm, sizeof *c);
    bs_model work = {0};
    if (!blocks || !c || (o->sort == BS_SORT_PPL && bs_model_copy(&work, scaled, e))) {
        free(blocks);
        free(c);
        return e->msg[0] ? -1 : bs_err_set(e, "out of memory");
    }
    if (o->sort == BS_SORT_PPL)
        for (int i = 0; i < nm; i++)
            set_depth(&work, &xs[i], 0);
    const char *stage = o->sort == BS_SORT_PPL ? "order (calibration perplexity)" : "order (level-major)";
    bs_progress_report(&o->progress, stage, 0, maxl, NULL);
    int at = 0;
    for (int l = 0; l < maxl; l++) {
        int nc = 0;
        for (int i = 0; i < nm; i++) {
            if (xs[i].m.levels <= l)
                continue;
            double bytes = (double)bs_block_bytes(&xs[i].m, l);
            double score;
            if (o->sort == BS_SORT_PPL) {
                set_depth(&work, &xs[i], l + 1);
                score = -calib_ppl(&work, ids, nids, bos, o->ctx, o->ppl_windows);
                set_depth(&work, &xs[i], l);
            } else {
                score = (xs[i].err[l] - xs[i].err[l + 1]) / bytes;
            }
            c[nc++] = (cand){i, score};
        }
        qsort(c, (size_t)nc, sizeof *c, by_score);
        for (int j = 0; j < nc; j++) {
            blocks[at++] = (bs_store_block){.matrix = c[j].mat, .level = l};
            if (o->sort == BS_SORT_PPL)
                set_depth(&work, &xs[c[j].mat], l + 1);
        }
        bs_progress_report(&o->progress, stage, l + 1, maxl, NULL);
    }
    if (o->sort == BS_SORT_PPL)
        bs_model_free(&work);
    free(c);
    *out = blocks;
    *nout = total;
    return 0;
}

/* work's linears at the blocks of prefix n (each matrix as deep as the prefix takes it),
 * over the floor only when the blocks stand on it. */
static void set_prefix(bs_model *work, const enc *xs, int nm, const bs_store_block *blocks, int n, int *depth)
{
    for (int i = 0; i < nm; i++)
        depth[i] = 0;
    for (int b = 0; b < n; b++)
        depth[blocks[b].matrix]++;
    for (int i = 0; i < nm; i++)
        set_depth(work, &xs[i], depth[i]);
}

/* Where a switching store leaves its floor: the shortest prefix, with a block of every
 * matrix, whose blocks alone score no worse on calibration text than the floor alone
 * (bisection: the stack's curve falls with its length). A trained floor learnt this text,
 * so it scores better here than on held-out text: the switch errs late, where the stack
 * has already passed the floor. *sw = nblocks when no prefix does. */
static int choose_switch(const enc *xs, int nm, const bs_store_block *blocks, int nblocks, const bs_model *scaled,
                         const int *ids, int nids, int bos, const bs_compress_opts *o, int *sw, json_t *info, bs_err *e)
{
    bs_model work = {0};
    int *depth = malloc(sizeof(int) * (size_t)nm);
    if (!depth || bs_model_copy(&work, scaled, e)) {
        free(depth);
        return e->msg[0] ? -1 : bs_err_set(e, "out of memory");
    }
    for (int i = 0; i < nm; i++) {
        bs_qmat q = {&xs[i].m, 0, (const uint8_t **)xs[i].payload, xs[i].floor};
        bs_qmat_materialize(&q, work.layers[xs[i].m.layer].lin[xs[i].m.which].w);
    }
    double pf = calib_ppl(&work, ids, nids, bos, o->ctx, o->switch_windows);
    int lo = 0, have = 0;
    for (int i = 0; i < nm; i++)
        depth[i] = 0;
    while (have < nm && lo < nblocks)
        have += depth[blocks[lo++].matrix]++ == 0;
    /* lo: the stack's shortest working prefix; find the first n in [lo, nblocks] that
     * scores <= pf, or nblocks */
    int hi = nblocks, evals = 0;
    double ps = INFINITY;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        set_prefix(&work, xs, nm, blocks, mid, depth);
        double p = calib_ppl(&work, ids, nids, bos, o->ctx, o->switch_windows);
        evals++;
        if (p <= pf) {
            hi = mid;
            ps = p;
        } else {
            lo = mid + 1;
        }
    }
    if (!isfinite(ps)) {
        set_prefix(&work, xs, nm, blocks, lo, depth);
        ps = calib_ppl(&work, ids, nids, bos, o->ctx, o->switch_windows);
    }
    *sw = lo;
    json_object_set_new(info, "switch", json_pack("{s:i, s:f, s:f, s:i, s:i}", "blocks", lo, "calib_ppl_floor", pf,
                                                  "calib_ppl_stack", ps, "windows", o->switch_windows, "evals",
                                                  evals));
    bs_model_free(&work);
    free(depth);
    return 0;
}

static int check_opts(const bs_compress_opts *o, bs_err *e)
{
    if (o->kind != BS_KIND_SAQ && o->kind != BS_KIND_GQ && o->kind != BS_KIND_AVD && o->kind != BS_KIND_LSQ)
        return bs_err_set(e, "unknown block kind %d", o->kind);
    if (o->levels < 1 || o->levels > 64)
        return bs_err_set(e, "levels must lie in 1..64 (got %d)", o->levels);
    if (o->kind == BS_KIND_GQ && (o->gq_levels < 1 || o->gq_levels > 8))
        return bs_err_set(e, "gq levels must lie in 1..8 (got %d)", o->gq_levels);
    if (o->kind == BS_KIND_GQ && o->gq_restart > 0 && (o->gq_restart < o->gq_levels || o->gq_restart >= o->levels))
        return bs_err_set(e, "gq restart level %d must lie in %d..%d", o->gq_restart, o->gq_levels, o->levels - 1);
    if (o->floor_bpw < 0 || o->floor_bpw > 16 || o->floor_paths < 1 || o->floor_paths > BS_FLOOR_MAX_PATHS ||
        (o->floor_mode != BS_FLOOR_SWITCH && o->floor_mode != BS_FLOOR_OVER) || o->switch_windows < 1)
        return bs_err_set(e, "bad floor options (%.3f bits per weight, %d paths, mode %d, %d windows)", o->floor_bpw,
                          o->floor_paths, o->floor_mode, o->switch_windows);
    if (o->group < 1 || o->ctx < 2 || o->calib_windows < 1 || o->k < 0)
        return bs_err_set(e, "bad compression options (group %d, ctx %d, windows %d, k %d)", o->group, o->ctx,
                          o->calib_windows, o->k);
    return 0;
}

/* The floor of every matrix of `work`: ranks for floor_bpw, Dual-SVID with residual
 * compensation for a second path, trained when asked (on ids), packed in store order.
 * mats get their floor ranks. */
static int build_floor(const bs_model *work, const bs_compress_opts *o, bs_store_matrix *mats, int nm,
                       const int *ids, int nids, int bos, uint8_t **out, json_t *info, bs_err *e)
{
    int *rows = malloc(sizeof(int) * (size_t)nm), *cols = malloc(sizeof(int) * (size_t)nm);
    int *rank = malloc(sizeof(int) * (size_t)nm);
    uint64_t *at = malloc(sizeof(uint64_t) * (size_t)nm);
    bs_floor_f *f = calloc((size_t)nm * (size_t)o->floor_paths, sizeof *f);
    float *A = NULL;
    uint8_t *buf = NULL;
    int rc = -1;
    if (!rows || !cols || !rank || !at || !f) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    for (int i = 0; i < nm; i++) {
        rows[i] = mats[i].rows;
        cols[i] = mats[i].cols;
    }
    if (bs_floor_solve_ranks(rows, cols, nm, o->floor_bpw, o->floor_paths, rank, NULL, e))
        goto out;
    double bits = 0.0, weights = 0.0;
    for (int i = 0; i < nm; i++) {
        mats[i].floor_rank = rank[i];
        mats[i].floor_paths = o->floor_paths;
        bits += bs_floor_bits(rows[i], cols[i], rank[i], o->floor_paths);
        weights += (double)rows[i] * cols[i];
    }
    uint64_t len = bs_store_floor_layout(mats, nm, at);
    if (!(buf = calloc(1, len ? len : 1))) {
        bs_err_set(e, "out of memory for a floor of %llu bytes", (unsigned long long)len);
        goto out;
    }
    bs_progress_report(&o->progress, "floor", 0, nm, NULL);
    for (int i = 0; i < nm; i++) {
        const float *w = work->layers[mats[i].layer].lin[mats[i].which].w;
        size_t n = (size_t)rows[i] * cols[i];
        free(A);
        if (!(A = malloc(sizeof(float) * n))) {
            bs_err_set(e, "out of memory");
            goto out;
        }
        memcpy(A, w, sizeof(float) * n);
        for (int p = 0; p < o->floor_paths; p++) {
            bs_floor_f *fp = &f[(size_t)i * o->floor_paths + p];
            if (bs_floor_f_alloc(fp, rows[i], cols[i], rank[i], e) ||
                bs_floor_dual_svid(fp, A, 0xf1000ull + (uint64_t)i * 16 + (uint64_t)p, e)) {
                bs_err_wrap(e, "%s: floor", mats[i].name);
                goto out;
            }
            bs_floor_f_subtract(fp, A);   /* a second path fits what this one misses */
        }
        bs_progress_report(&o->progress, "floor", i + 1, nm, mats[i].name);
    }
    json_t *qat = NULL;
    if (o->qat.minutes > 0 || o->qat.max_steps > 0) {
        qat = json_object();
        if (bs_train_floor(work, ids, nids, bos, f, o->floor_paths, &o->qat, qat, e)) {
            json_decref(qat);
            bs_err_wrap(e, "floor training");
            goto out;
        }
    }
    for (int i = 0; i < nm; i++)
        for (int p = 0; p < o->floor_paths; p++)
            bs_floor_f_pack(&f[(size_t)i * o->floor_paths + p],
                            buf + at[i] + (uint64_t)p * bs_floor_path_bytes(rows[i], cols[i], rank[i]));
    json_t *fi = json_pack("{s:f, s:i, s:f, s:I, s:s}", "bpw_asked", o->floor_bpw, "paths", o->floor_paths,
                           "bpw_counted", bits / weights, "bytes", (json_int_t)len, "stack",
                           o->floor_mode == BS_FLOOR_OVER ? "over" : "switch");
    if (qat)
        json_object_set_new(fi, "qat", qat);
    json_object_set_new(info, "floor", fi);
    *out = buf;
    buf = NULL;
    rc = 0;
out:
    if (f)
        for (int i = 0; i < nm * o->floor_paths; i++)
            bs_floor_f_free(&f[i]);
    free(f); free(rows); free(cols); free(rank); free(at); free(A); free(buf);
    return rc;
}

int bs_compress(const bs_model *src, const bs_tokenizer *tok, const char *calib, size_t calib_len,
                const bs_compress_opts *o, const char *out_path, json_t *report, bs_err *e)
{
    if (check_opts(o, e))
        return -1;
    char zero[64];
    if (bs_compress_check_model(src, zero, sizeof zero, e))
        return -1;
    if (zero[0])
        bs_progress_note(&o->progress, "%s is all zeros; it is stored exactly (zero scales)", zero);
    double t0 = bs_now();
    const bs_config *c = &src->cfg;
    int nm = c->n_layers * BS_NLIN, rc = -1, nids = 0, nblocks = 0;
    int *ids = NULL;
    bs_store_block *blocks = NULL;
    const uint8_t **payload = NULL;
    bs_store_matrix *mats = NULL;
    enc *xs = calloc((size_t)nm, sizeof *xs);
    bs_model work = {0};
    bs_calib cb = {0};
    uint8_t *floor = NULL;
    uint64_t *floor_at = NULL;
    json_t *floor_info = json_object();
    if (!xs)
        return bs_err_set(e, "out of memory");

    if (bs_calib_run(&cb, src, tok, calib, calib_len, o->ctx, o->calib_windows, &o->progress, e) ||
        bs_model_copy(&work, src, e))
        goto out;
    if (o->act_scale && bs_calib_fold(&cb, &work, o->act_alpha, e))
        goto out;
    double t_calib = bs_now() - t0;
    if (o->floor_bpw > 0) {
        bs_store_matrix *fm = calloc((size_t)nm, sizeof *fm);
        floor_at = malloc(sizeof(uint64_t) * (size_t)nm);
        if (!fm || !floor_at) {
            free(fm);
            bs_err_set(e, "out of memory");
            goto out;
        }
        for (int i = 0; i < nm; i++) {
            fm[i].layer = i / BS_NLIN;
            fm[i].which = i % BS_NLIN;
            bs_lin_shape(c, fm[i].which, &fm[i].rows, &fm[i].cols);
            snprintf(fm[i].name, sizeof fm[i].name, "layers.%d.%s", fm[i].layer, bs_lin_name(fm[i].which));
        }
        int frc = 0;
        if ((o->qat.minutes > 0 || o->qat.max_steps > 0) && !ids)
            frc = bs_tok_encode(tok, calib, calib_len, 0, 1, &ids, &nids, e);
        frc = frc ? frc : build_floor(&work, o, fm, nm, ids, nids, bs_tok_bos(tok), &floor, floor_info, e);
        for (int i = 0; i < nm && !frc; i++) {
            xs[i].m.floor_rank = fm[i].floor_rank;
            xs[i].m.floor_paths = fm[i].floor_paths;
        }
        if (!frc)
            bs_store_floor_layout(fm, nm, floor_at);
        free(fm);
        if (frc)
            goto out;
    }

    int dead_total = 0;
    bs_progress_report(&o->progress, "encode", 0, nm, NULL);
    for (int i = 0; i < nm; i++) {
        enc *x = &xs[i];
        int l = i / BS_NLIN, w = i % BS_NLIN;
        bs_linear *lin = &work.layers[l].lin[w];
        int frank = x->m.floor_rank, fpaths = x->m.floor_paths;
        x->m = (bs_store_matrix){.layer = l, .which = w, .rows = lin->rows, .cols = lin->cols, .kind = o->kind,
                                 .floor_rank = frank, .floor_paths = fpaths,
                                 .levels = o->levels, .group = o->group,
                                 .gq_levels = o->kind == BS_KIND_GQ ? o->gq_levels : 0,
                                 .restart = o->kind != BS_KIND_GQ ? 0
                                            : o->gq_restart >= 0 ? o->gq_restart
                                            : (o->levels > o->gq_levels + 1 ? o->gq_levels + 1 : 0),
                                 .k = o->kind == BS_KIND_AVD ? (o->k ? o->k : auto_rank(lin->rows, lin->cols)) : 0};
        if (x->m.k > lin->rows || x->m.k > lin->cols)
            x->m.k = lin->rows < lin->cols ? lin->rows : lin->cols;
        snprintf(x->m.name, sizeof x->m.name, "layers.%d.%s", l, bs_lin_name(w));
        x->w = x->full = lin->w;
        if (floor)
            x->floor = floor + floor_at[i];
        if (floor && o->floor_mode == BS_FLOOR_OVER) {
            /* the blocks encode what the floor, as stored, leaves */
            size_t n = (size_t)lin->rows * lin->cols;
            x->over = 1;
            if (!(x->res = calloc(n, sizeof(float)))) {
                bs_err_set(e, "out of memory");
                goto out;
            }
            bs_floor_view fv;
            bs_floor_view_of(&x->m, x->floor, &fv);
            bs_floor_add_dense(&fv, x->res);
            for (size_t k = 0; k < n; k++)
                x->res[k] = lin->w[k] - x->res[k];
            x->w = x->res;
        }
        x->H = malloc(sizeof(float) * (size_t)lin->cols * lin->cols);
        if (!x->H) {
            bs_err_set(e, "out of memory");
            goto out;
        }
        bs_calib_hessian(&cb, l, w, x->H);
        for (int j = 0; j < lin->cols; j++)
            x->dead += x->H[(size_t)j * lin->cols + j] == 0.0f;
        dead_total += x->dead;
        if (x->dead && (w == BS_WQ || w == BS_WO || w == BS_W1 || w == BS_W2))
            bs_progress_note(&o->progress, "%s: %d of %d inputs were never active in calibration (singular "
                             "Hessian); GPTQ treats them as dead", x->m.name, x->dead, lin->cols);
        if (encode_matrix(x, o, i, e))
            goto out;
        bs_progress_report(&o->progress, "encode", i + 1, nm, x->m.name);
    }

    int switching = floor && o->floor_mode == BS_FLOOR_SWITCH, sw = 0;
    if ((o->sort == BS_SORT_PPL || switching) && !ids && bs_tok_encode(tok, calib, calib_len, 0, 1, &ids, &nids, e))
        goto out;
    if (order_stack(xs, nm, o, &work, ids, nids, bs_tok_bos(tok), &blocks, &nblocks, e))
        goto out;
    if (switching) {
        bs_progress_report(&o->progress, "switch (calibration perplexity)", 0, 1, NULL);
        if (choose_switch(xs, nm, blocks, nblocks, &work, ids, nids, bs_tok_bos(tok), o, &sw,
                          json_object_get(floor_info, "floor"), e))
            goto out;
        bs_progress_report(&o->progress, "switch (calibration perplexity)", 1, 1, NULL);
    }
    payload = malloc(sizeof *payload * (size_t)nblocks);
    mats = malloc(sizeof *mats * (size_t)nm);
    if (!payload || !mats) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    for (int i = 0; i < nm; i++)
        mats[i] = xs[i].m;
    for (int b = 0; b < nblocks; b++)
        payload[b] = xs[blocks[b].matrix].payload[blocks[b].level];
    double t_total = bs_now() - t0;
    json_t *info = json_pack("{s:s, s:i, s:i, s:i, s:s, s:b, s:b, s:b, s:{s:i, s:i, s:I}, s:f, s:f, s:i}",
                             "kind", bs_kind_name(o->kind), "levels", o->levels, "gq_levels", o->gq_levels,
                             "group", o->group, "sort", o->sort == BS_SORT_PPL ? "ppl" : "level",
                             "act_scale", o->act_scale, "act_order", o->act_order, "clip_search", o->clip_search,
                             "calibration", "windows", cb.windows, "ctx", o->ctx, "tokens", (json_int_t)cb.tokens,
                             "calib_seconds", t_calib, "seconds", t_total, "dead_inputs", dead_total);
    json_object_set_new(info, "act_alpha", json_real(o->act_alpha));
    json_object_set_new(info, "gq_restart", json_integer(xs[0].m.restart));
    json_object_update(info, floor_info);
    /* the error each matrix keeps at each depth: a reader sums them along the stack into
     * the loss every prefix reaches (bs_store.loss) */
    json_t *errs = json_object();
    for (int i = 0; i < nm; i++) {
        json_t *a = json_array();
        for (int d = 0; d <= xs[i].m.levels; d++)
            json_array_append_new(a, json_real(xs[i].err[d]));
        json_object_set_new(errs, xs[i].m.name, a);
    }
    json_object_set_new(info, "errors", errs);
    bs_store_out so = {.model = &work, .tok = tok, .n_matrices = nm, .mats = mats, .n_blocks = nblocks,
                       .blocks = blocks, .payload = payload, .info = info, .floor = floor, .floor_switch = sw};
    bs_progress_report(&o->progress, "write", 0, 1, out_path);
    rc = bs_store_write(out_path, &so, e);
    if (!rc)
        bs_progress_report(&o->progress, "write", 1, 1, out_path);
    json_object_del(info, "errors");   /* the store's; too long for a report */
    if (!rc && report)
        json_object_update(report, info);
    json_decref(info);
out:
    for (int i = 0; i < nm; i++)
        enc_free(&xs[i]);
    free(xs);
    free(ids);
    free(blocks);
    free(payload);
    free(mats);
    bs_model_free(&work);
    bs_calib_free(&cb);
    free(floor);
    free(floor_at);
    json_decref(floor_info);
    return rc;
}
