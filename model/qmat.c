#include "model/qmat.h"

#include <math.h>
#include <string.h>

#include "kernels/half.h"
#include "kernels/ops.h"
#include "kernels/team.h"

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

size_t bs_qmat_scratch_floats(int max_cols, int threads)
{
    /* the group sums of one token, then a chunk of rows of W per thread for a batch */
    return (size_t)max_cols + (size_t)(threads < 1 ? 1 : threads) * BS_QMAT_ROW_CHUNK * (size_t)max_cols;
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

/* Rows [r0, r1) of W at the matrix's depth. */
static void materialize_rows(const bs_qmat *q, int r0, int r1, float *w)
{
    const bs_store_matrix *m = q->m;
    memset(w, 0, sizeof(float) * (size_t)(r1 - r0) * m->cols);
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
    materialize_rows(q, 0, q->m->rows, w);
}

/* ---- one token through plane blocks, W never built ---------------------------------- */

/* The sum of x over each group (the "all bits clear" value, t). */
static void group_sums(const bs_store_matrix *m, const float *x, float *gsum)
{
    size_t G = bs_block_groups(m);
    for (size_t g = 0; g < G; g++) {
        float t = 0.0f;
        for (size_t j = g * m->group; j < (g + 1) * m->group && j < (size_t)m->cols; j++)
            t += x[j];
        gsum[g] = t;
    }
}

/* Rows [r0, r1): per group, sum x over the set bits (p); the signed sum is 2p - t. */
static void matvec_planes(const bs_qmat *q, float *y, const float *x, const float *gsum, int r0, int r1)
{
    const bs_store_matrix *m = q->m;
    size_t G = bs_block_groups(m), rb = bs_block_row_bytes(m);
    for (int l = 0; l < q->depth; l++) {
        bs_plane_view v;
        bs_block_plane(m, q->blk, l, &v);
        float mul = ldexpf(1.0f, -v.shift);
        for (int i = r0; i < r1; i++) {
            const uint8_t *row = v.bits + (size_t)i * rb;
            float acc = 0.0f;
            for (size_t g = 0; g < G; g++) {
                float p = 0.0f;
                for (size_t j = g * m->group; j < (g + 1) * m->group && j < (size_t)m->cols; j++)
                    if (bit_at(row, (int)j))
                        p += x[j];
                acc += bs_fp16_to_f32(v.scales[(size_t)i * G + g]) * (2.0f * p - gsum[g]);
            }
            y[i] += acc * mul;
        }
    }
}

/* One part of a product: the rows of part p of n (contiguous ranges, 8-row aligned). */
typedef struct {
    const bs_qmat *q;
    float *y;
    const float *x;
    int ntok, accumulate;
    float *gsum, *chunks;   /* chunks: BS_QMAT_ROW_CHUNK x cols floats per part */
} apply_job;

static void part_rows(int rows, int p, int n, int *r0, int *r1)
{
    int per = (rows + n - 1) / n;
    per = (per + 7) / 8 * 8;
    *r0 = p * per < rows ? p * per : rows;
    *r1 = (p + 1) * per < rows ? (p + 1) * per : rows;
}

static void apply_part(void *arg, int p, int n)
{
    apply_job *j = arg;
    const bs_store_matrix *m = j->q->m;
    int r0, r1;
    part_rows(m->rows, p, n, &r0, &r1);
    if (j->ntok == 1 && (m->kind == BS_KIND_SAQ || m->kind == BS_KIND_GQ)) {
        if (!j->accumulate)
            memset(j->y + r0, 0, sizeof(float) * (size_t)(r1 - r0));
        matvec_planes(j->q, j->y, j->x, j->gsum, r0, r1);
        return;
    }
    /* a batch: a chunk of rows of W at a time, so the scratch stays small */
    float *w = j->chunks + (size_t)p * BS_QMAT_ROW_CHUNK * (size_t)m->cols;
    for (int a = r0; a < r1; a += BS_QMAT_ROW_CHUNK) {
        int b = a + BS_QMAT_ROW_CHUNK < r1 ? a + BS_QMAT_ROW_CHUNK : r1;
        materialize_rows(j->q, a, b, w);
        bs_matmul_ld(j->y + a, m->rows, j->x, w, j->ntok, b - a, m->cols, j->accumulate);
    }
}

int bs_qmat_apply(const bs_qmat *q, float *y, const float *x, int ntok, int accumulate, const bs_qmat_run *run,
                  bs_err *e)
{
    const bs_store_matrix *m = q->m;
    if (!run || !run->scratch)
        return bs_err_set(e, "%s: no scratch for the block kernels", m->name);
    apply_job j = {q, y, x, ntok, accumulate, run->scratch, run->scratch + m->cols};
    if (ntok == 1 && (m->kind == BS_KIND_SAQ || m->kind == BS_KIND_GQ))
        group_sums(m, x, j.gsum);
    /* rows split across the team; a small matrix is not worth waking it */
    int parts = bs_team_threads(run->team);
    if ((size_t)m->rows * (size_t)m->cols < 65536 || m->rows < 16)
        parts = 1;
    bs_team_run(parts > 1 ? run->team : NULL, parts, apply_part, &j);
    return 0;
}
