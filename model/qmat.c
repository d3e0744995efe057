#include "model/qmat.h"

#include <math.h>
#include <string.h>

#include "kernels/half.h"
#include "kernels/ops.h"

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

size_t bs_qmat_scratch_floats(int max_cols)
{
    /* a chunk of rows of W for a batch, or the group sums of one token */
    return (size_t)BS_QMAT_ROW_CHUNK * (size_t)max_cols;
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

/* Per group, sum x over the set bits (p) and over the group (t): the signed sum is 2p - t.
 * gsum: groups floats of scratch. */
static void matvec_planes(const bs_qmat *q, float *y, const float *x, float *gsum)
{
    const bs_store_matrix *m = q->m;
    size_t G = bs_block_groups(m), rb = bs_block_row_bytes(m);
    for (size_t g = 0; g < G; g++) {
        float t = 0.0f;
        for (size_t j = g * m->group; j < (g + 1) * m->group && j < (size_t)m->cols; j++)
            t += x[j];
        gsum[g] = t;
    }
    for (int l = 0; l < q->depth; l++) {
        bs_plane_view v;
        bs_block_plane(m, q->blk, l, &v);
        float mul = ldexpf(1.0f, -v.shift);
        for (int i = 0; i < m->rows; i++) {
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

int bs_qmat_apply(const bs_qmat *q, float *y, const float *x, int ntok, int accumulate, float *scratch, bs_err *e)
{
    const bs_store_matrix *m = q->m;
    if (!scratch)
        return bs_err_set(e, "%s: no scratch for the block kernels", m->name);
    if (ntok == 1 && (m->kind == BS_KIND_SAQ || m->kind == BS_KIND_GQ)) {
        if (!accumulate)
            memset(y, 0, sizeof(float) * (size_t)m->rows);
        matvec_planes(q, y, x, scratch);
        return 0;
    }
    /* a batch: a chunk of rows of W at a time, so the scratch stays small */
    for (int r0 = 0; r0 < m->rows; r0 += BS_QMAT_ROW_CHUNK) {
        int r1 = r0 + BS_QMAT_ROW_CHUNK < m->rows ? r0 + BS_QMAT_ROW_CHUNK : m->rows;
        materialize_rows(q, r0, r1, scratch);
        bs_matmul_ld(y + r0, m->rows, x, scratch, ntok, r1 - r0, m->cols, accumulate);
    }
    return 0;
}
