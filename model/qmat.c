#include "model/qmat.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/half.h"
#include "kernels/ops.h"
#include "kernels/bitplane.h"
#include "kernels/team.h"
#include "kernels/littlebit.h"
#include "model/floor.h"

static inline int bit_at(const uint8_t *row, int j)
{
    return (row[j >> 3] >> (j & 7)) & 1;
}

static inline float half_at(const uint8_t *p, size_t i)
{
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return bs_fp16_to_f32(h);
}

/* The kernels' scratch for the smallest group any store uses (8): the largest need. */
static size_t kernel_floats(int cols, int ntok)
{
    size_t a = bs_kernel_planes_matmul_scratch(cols, 8, ntok), b = bs_kernel_avd_scratch(cols, BS_KERNEL_AVD_MAX_K);
    /* in floats, a multiple of 16 so every part's scratch starts 64-byte aligned */
    return (((a > b ? a : b) + sizeof(float) - 1) / sizeof(float) + 15) / 16 * 16;
}

size_t bs_qmat_scratch_floats(int max_cols, int threads)
{
    /* one prepared input shared by every thread, then per thread: the kernels' batch
     * scratch, or a chunk of rows of W for the reference path */
    size_t per = kernel_floats(max_cols, BS_QMAT_MAX_BATCH);
    if (per < 3 * (size_t)max_cols)   /* the floor's scratch: cols + 2 rank floats */
        per = 3 * (size_t)max_cols;
    if (per < (size_t)BS_QMAT_ROW_CHUNK * (size_t)max_cols)
        per = (size_t)BS_QMAT_ROW_CHUNK * (size_t)max_cols;
    per = (per + 15) / 16 * 16;
    return kernel_floats(max_cols, 1) + (size_t)(threads < 1 ? 1 : threads) * per;
}

/* ---- rows [r0, r1) of one block added into w ((r1 - r0) x cols) -------------------- */

static void add_plane(const bs_qmat *q, int level, int r0, int r1, float *w)
{
    const bs_store_matrix *m = q->m;
    bs_plane_view v;
    bs_block_plane(m, q->blk, level, &v);
    float mul = ldexpf(1.0f, -v.shift);
    size_t G = bs_block_groups(m), rb = bs_block_row_bytes(m);
    for (int i = r0; i < r1; i++) {
        const uint8_t *row = v.bits + (size_t)i * rb;
        float *wr = w + (size_t)(i - r0) * m->cols;
        for (size_t g = 0; g < G; g++) {
            float s = bs_fp16_to_f32(v.scales[(size_t)i * G + g]) * mul;
            int j1 = (int)((g + 1) * (size_t)m->group < (size_t)m->cols ? (g + 1) * (size_t)m->group : (size_t)m->cols);
            for (int j = (int)(g * (size_t)m->group); j < j1; j++)
                wr[j] += bit_at(row, j) ? s : -s;
        }
    }
}

static void add_avd(const bs_qmat *q, int level, int r0, int r1, float *w)
{
    const bs_store_matrix *m = q->m;
    bs_avd_view v;
    bs_block_avd(m, q->blk[level], &v);
    size_t rb = bs_block_row_bytes(m), k = (size_t)m->k;
    for (int i = r0; i < r1; i++) {
        const uint8_t *row = v.bits + (size_t)i * rb;
        float *wr = w + (size_t)(i - r0) * m->cols;
        for (int j = 0; j < m->cols; j++) {
            float mag = 0.0f;
            for (size_t r = 0; r < k; r++)
                mag += half_at(v.U, (size_t)i * k + r) * half_at(v.V, (size_t)j * k + r);
            wr[j] += bit_at(row, j) ? mag : -mag;
        }
    }
}

static void add_qasym(const bs_qmat *q, int r0, int r1, float *w)
{
    const bs_store_matrix *m = q->m;
    bs_qasym_view v;
    bs_block_qasym(m, q->blk[0], &v);
    size_t G = bs_block_groups(m);
    for (int i = r0; i < r1; i++) {
        const uint8_t *row = v.codes + (size_t)i * v.row_bytes;
        for (int j = 0; j < m->cols; j++) {
            size_t g = (size_t)j / m->group, bit = (size_t)j * m->bits;
            unsigned c = 0;
            for (int b = 0; b < m->bits; b++, bit++)
                c |= (unsigned)((row[bit >> 3] >> (bit & 7)) & 1) << b;
            w[(size_t)(i - r0) * m->cols + j] +=
                half_at(v.scale, (size_t)i * G + g) * (float)c + half_at(v.min, (size_t)i * G + g);
        }
    }
}

/* Rows [r0, r1) of the floor added into w: the view of those rows is a floor itself. */
static void add_floor(const bs_qmat *q, int r0, int r1, float *w)
{
    bs_floor_view v;
    bs_floor_view_of(q->m, q->floor, &v);
    for (int p = 0; p < v.paths; p++) {
        bs_kernel_lb k = v.path[p];
        k.rows = r1 - r0;
        k.h += r0;
        k.u += (size_t)r0 * (((size_t)k.rank + 7) / 8);
        bs_kernel_lb_add_dense(&k, w);
    }
}

/* Rows [r0, r1) of the blocks at the matrix's depth, with the floor or without it (the
 * product path runs the floor on its own). */
static void materialize_rows(const bs_qmat *q, int r0, int r1, float *w, bool with_floor)
{
    const bs_store_matrix *m = q->m;
    memset(w, 0, sizeof(float) * (size_t)(r1 - r0) * m->cols);
    if (q->floor && with_floor)
        add_floor(q, r0, r1, w);
    for (int l = 0; l < q->depth; l++) {
        if (m->kind == BS_KIND_AVD)
            add_avd(q, l, r0, r1, w);
        else if (m->kind == BS_KIND_QASYM)
            add_qasym(q, r0, r1, w);
        else
            add_plane(q, l, r0, r1, w);
    }
}

void bs_qmat_materialize(const bs_qmat *q, float *w)
{
    materialize_rows(q, 0, q->m->rows, w, true);
}

/* The plane blocks of a matrix at its depth as kernel descriptors: runs of consecutive
 * levels that share one set of scales, at most BS_KERNEL_MAX_PLANES each. */
typedef struct {
    bs_kernel_planes k;
    const uint8_t *bits[BS_KERNEL_MAX_PLANES];
} plane_set;

#define MAX_SETS 64   /* lsq: every level is a set of its own */

/* The sets for q's depth, or -1 when it has more planes than MAX_SETS sets hold. */
static int plane_sets(const bs_qmat *q, plane_set *sets)
{
    const bs_store_matrix *m = q->m;
    int n = 0, l = 0;
    while (l < q->depth && n < MAX_SETS) {
        plane_set *ps = &sets[n++];
        bs_plane_view v;
        bs_block_plane(m, q->blk, l, &v);
        int sl = bs_block_scale_level(m, l);
        ps->k = (bs_kernel_planes){m->rows, m->cols, m->group, 0, ps->bits, v.scales, v.shift};
        for (; l < q->depth && bs_block_scale_level(m, l) == sl && ps->k.nplanes < BS_KERNEL_MAX_PLANES; l++) {
            bs_block_plane(m, q->blk, l, &v);
            ps->bits[ps->k.nplanes++] = v.bits;
        }
    }
    return l < q->depth ? -1 : n;
}

/* One part of a product: the rows of part p of n (contiguous ranges, 8-row aligned). */
typedef struct {
    const bs_qmat *q;
    float *y;
    const float *x;
    int ntok, accumulate;
    bs_kernel_isa isa;
    const plane_set *set;     /* the kernels' paths: the set being applied */
    const void *prepared;     /* decode: the input prepared for `set` */
    float *chunks;            /* per part: scratch of `per` floats */
    size_t per;
    int rc;
} apply_job;

static void part_rows(int rows, int p, int n, int *r0, int *r1)
{
    int per = (rows + n - 1) / n;
    per = (per + 7) / 8 * 8;
    *r0 = p * per < rows ? p * per : rows;
    *r1 = (p + 1) * per < rows ? (p + 1) * per : rows;
}

/* The reference path (qasym; avd batches): a chunk of rows of W at a time, then sgemm. */
static void reference_part(apply_job *j, int r0, int r1, float *w)
{
    const bs_store_matrix *m = j->q->m;
    for (int a = r0; a < r1; a += BS_QMAT_ROW_CHUNK) {
        int b = a + BS_QMAT_ROW_CHUNK < r1 ? a + BS_QMAT_ROW_CHUNK : r1;
        materialize_rows(j->q, a, b, w, false);
        bs_matmul_ld(j->y + a, m->rows, j->x, w, j->ntok, b - a, m->cols, j->accumulate);
    }
}

static void apply_part(void *arg, int p, int n)
{
    apply_job *j = arg;
    const bs_store_matrix *m = j->q->m;
    int r0, r1;
    part_rows(m->rows, p, n, &r0, &r1);
    if (r0 >= r1)
        return;
    float *w = j->chunks + (size_t)p * j->per;
    int rc = 0;
    if (j->set && j->ntok == 1)
        rc = bs_kernel_planes_rows(j->isa, &j->set->k, j->prepared, r0, r1, j->y, j->accumulate);
    else if (j->set)
        rc = bs_kernel_planes_matmul(j->isa, &j->set->k, r0, r1, j->x, j->ntok, j->y, j->accumulate, w);
    else
        reference_part(j, r0, r1, w);
    if (rc)
        j->rc = rc;
}

/* avd blocks, one token: each level is its own rank-k product. */
typedef struct {
    const bs_kernel_avd *a;
    const void *prepared;
    float *y;
    int accumulate;
    bs_kernel_isa isa;
    int rc;
} avd_job;

static void avd_part(void *arg, int p, int n)
{
    avd_job *j = arg;
    int r0, r1;
    part_rows(j->a->rows, p, n, &r0, &r1);
    if (r0 >= r1)
        return;
    int rc = bs_kernel_avd_rows(j->isa, j->a, j->prepared, r0, r1, j->y, j->accumulate);
    if (rc)
        j->rc = rc;
}

/* U and V follow the plane directly: fp16 loads need them 2-byte aligned, which they are
 * unless rows * ceil(cols / 8) is odd (the reference path takes those). */
static bool avd_aligned(const bs_qmat *q)
{
    if (q->m->k > BS_KERNEL_AVD_MAX_K)
        return false;
    for (int l = 0; l < q->depth; l++) {
        bs_avd_view v;
        bs_block_avd(q->m, q->blk[l], &v);
        if (((uintptr_t)v.U | (uintptr_t)v.V) & 1)
            return false;
    }
    return true;
}

static int kernel_error(const bs_store_matrix *m, int rc, bs_err *e);

static int avd_apply(const bs_qmat *q, float *y, const float *x, int accumulate, const bs_qmat_run *run,
                     bs_team *team, int parts, float *prep, bs_err *e)
{
    const bs_store_matrix *m = q->m;
    for (int l = 0; l < q->depth; l++) {
        bs_avd_view v;
        bs_block_avd(m, q->blk[l], &v);
        bs_kernel_avd a = {m->rows, m->cols, m->k, v.bits, (const uint16_t *)(const void *)v.U,
                           (const uint16_t *)(const void *)v.V};
        int rc = bs_kernel_avd_prepare(run->isa, &a, x, prep);
        if (rc)
            return kernel_error(m, rc, e);
        avd_job j = {&a, prep, y, accumulate || l > 0, run->isa, 0};
        bs_team_run(team, parts, avd_part, &j);
        if (j.rc)
            return kernel_error(m, j.rc, e);
    }
    return 0;
}

static int kernel_error(const bs_store_matrix *m, int rc, bs_err *e)
{
    return bs_err_set(e, "%s: block kernel failed (%s)", m->name,
                      rc == BS_KERNEL_ENOTSUP ? "path not supported on this CPU" : "bad shape or scratch");
}

int bs_qmat_apply(const bs_qmat *q, float *y, const float *x, int ntok, int accumulate, const bs_qmat_run *run,
                  bs_err *e)
{
    const bs_store_matrix *m = q->m;
    if (!run || !run->scratch)
        return bs_err_set(e, "%s: no scratch for the block kernels", m->name);
    if (ntok > BS_QMAT_MAX_BATCH)
        return bs_err_set(e, "%s: %d tokens at once, at most %d", m->name, ntok, BS_QMAT_MAX_BATCH);
    /* rows split across the team; a small matrix is not worth waking it */
    int parts = bs_team_threads(run->team);
    if ((size_t)m->rows * (size_t)m->cols * (size_t)ntok < 65536 || m->rows < 16)
        parts = 1;
    bs_team *team = parts > 1 ? run->team : NULL;
    float *prep = run->scratch, *chunks = run->scratch + kernel_floats(m->cols, 1);
    apply_job j = {q, y, x, ntok, accumulate, run->isa, NULL, NULL, chunks, 0, 0};
    j.per = kernel_floats(m->cols, BS_QMAT_MAX_BATCH);
    if (j.per < (size_t)BS_QMAT_ROW_CHUNK * (size_t)m->cols)
        j.per = (size_t)BS_QMAT_ROW_CHUNK * (size_t)m->cols;
    j.per = (j.per + 15) / 16 * 16;
    if (q->floor) {
        /* the floor first, on the caller (rank (m + n) per token: small next to the blocks),
         * in the first part's scratch, which nothing else uses until the blocks run */
        bs_floor_view v;
        bs_floor_view_of(m, q->floor, &v);
        for (int t = 0; t < ntok; t++)
            for (int p = 0; p < v.paths; p++) {
                int rc = bs_kernel_lb_matvec(run->isa, &v.path[p], x + (size_t)t * m->cols, y + (size_t)t * m->rows,
                                             accumulate || p > 0, chunks);
                if (rc)
                    return kernel_error(m, rc, e);
            }
        accumulate = 1;
        j.accumulate = 1;
    }
    if (q->depth == 0) {
        if (!accumulate)
            memset(y, 0, sizeof(float) * (size_t)ntok * (size_t)m->rows);
        return 0;
    }
    if (m->kind == BS_KIND_SAQ || m->kind == BS_KIND_GQ || m->kind == BS_KIND_LSQ) {
        plane_set sets[MAX_SETS];
        int ns = plane_sets(q, sets);
        if (ns < 0)
            return bs_err_set(e, "%s: %d planes, more than the kernels take (%d sets of %d)", m->name, q->depth,
                              MAX_SETS, BS_KERNEL_MAX_PLANES);
        for (int i = 0; i < ns; i++) {
            j.set = &sets[i];
            j.accumulate = accumulate || i > 0;
            /* the prepared input depends on x and the shape only: one for every set */
            if (ntok == 1 && i == 0) {
                int rc = bs_kernel_planes_prepare(run->isa, &sets[i].k, x, prep);
                if (rc)
                    return kernel_error(m, rc, e);
                j.prepared = prep;
            }
            bs_team_run(team, parts, apply_part, &j);
            if (j.rc)
                return kernel_error(m, j.rc, e);
        }
        return 0;
    }
    if (m->kind == BS_KIND_AVD && ntok == 1 && avd_aligned(q))
        return avd_apply(q, y, x, accumulate, run, team, parts, prep, e);
    j.set = NULL;
    j.prepared = NULL;
    j.accumulate = accumulate;
    bs_team_run(team, parts, apply_part, &j);
    return 0;
}
