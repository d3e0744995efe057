#include "model/qmat.h"

#include <math.h>
#include <stdlib.h>
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

int bs_qmat_scale_level(const bs_store_matrix *m, int level)
{
    return m->kind == BS_KIND_GQ && m->restart > 0 && level >= m->restart ? m->restart : 0;
}

int bs_qmat_plane_shift(const bs_store_matrix *m, int level)
{
    return level - bs_qmat_scale_level(m, level) + 1;
}

static size_t row_bytes(const bs_store_matrix *m)
{
    return ((size_t)m->cols + 7) / 8;
}

/* Sign bits of a plane or avd block: after the scales, if the block carries them. */
static const uint8_t *block_bits(const bs_qmat *q, int level)
{
    return q->blk[level] + bs_store_scales_bytes(q->m, level);
}

static void materialize_plane(const bs_qmat *q, int level, float *w)
{
    const bs_store_matrix *m = q->m;
    const uint8_t *scales = q->blk[bs_qmat_scale_level(m, level)];
    const uint8_t *bits = block_bits(q, level);
    float mul = ldexpf(1.0f, -bs_qmat_plane_shift(m, level));
    size_t G = bs_store_groups(m), rb = row_bytes(m);
    for (int i = 0; i < m->rows; i++) {
        const uint8_t *row = bits + (size_t)i * rb;
        float *wr = w + (size_t)i * m->cols;
        for (size_t g = 0; g < G; g++) {
            float s = half_at(scales, (size_t)i * G + g) * mul;
            int j1 = (int)((g + 1) * (size_t)m->group < (size_t)m->cols ? (g + 1) * (size_t)m->group : (size_t)m->cols);
            for (int j = (int)(g * (size_t)m->group); j < j1; j++)
                wr[j] += bit_at(row, j) ? s : -s;
        }
    }
}

static void materialize_avd(const bs_qmat *q, int level, float *w)
{
    const bs_store_matrix *m = q->m;
    const uint8_t *bits = q->blk[level];
    size_t rb = row_bytes(m);
    const uint8_t *U = bits + (size_t)m->rows * rb;           /* rows x k fp16 */
    const uint8_t *V = U + (size_t)m->rows * m->k * 2;        /* cols x k fp16 */
    float *v = malloc(sizeof(float) * (size_t)m->cols * m->k);
    float *u = malloc(sizeof(float) * (size_t)m->k);
    if (!v || !u) {
        free(v);
        free(u);
        return;
    }
    for (size_t i = 0; i < (size_t)m->cols * m->k; i++)
        v[i] = half_at(V, i);
    for (int i = 0; i < m->rows; i++) {
        const uint8_t *row = bits + (size_t)i * rb;
        for (int r = 0; r < m->k; r++)
            u[r] = half_at(U, (size_t)i * m->k + r);
        float *wr = w + (size_t)i * m->cols;
        for (int j = 0; j < m->cols; j++) {
            float mag = 0.0f;
            for (int r = 0; r < m->k; r++)
                mag += u[r] * v[(size_t)j * m->k + r];
            wr[j] += bit_at(row, j) ? mag : -mag;
        }
    }
    free(v);
    free(u);
}

static void materialize_qasym(const bs_qmat *q, float *w)
{
    const bs_store_matrix *m = q->m;
    size_t G = bs_store_groups(m);
    const uint8_t *scale = q->blk[0], *mins = scale + (size_t)m->rows * G * 2;
    const uint8_t *codes = mins + (size_t)m->rows * G * 2;
    size_t rb = ((size_t)m->cols * m->bits + 7) / 8;
    for (int i = 0; i < m->rows; i++) {
        const uint8_t *row = codes + (size_t)i * rb;
        for (int j = 0; j < m->cols; j++) {
            size_t g = (size_t)j / m->group, bit = (size_t)j * m->bits;
            unsigned c = 0;
            for (int b = 0; b < m->bits; b++, bit++)
                c |= (unsigned)((row[bit >> 3] >> (bit & 7)) & 1) << b;
            w[(size_t)i * m->cols + j] += half_at(scale, (size_t)i * G + g) * (float)c + half_at(mins, (size_t)i * G + g);
        }
    }
}

void bs_qmat_materialize(const bs_qmat *q, float *w)
{
    const bs_store_matrix *m = q->m;
    memset(w, 0, sizeof(float) * (size_t)m->rows * m->cols);
    for (int l = 0; l < q->depth; l++) {
        if (m->kind == BS_KIND_AVD)
            materialize_avd(q, l, w);
        else if (m->kind == BS_KIND_QASYM)
            materialize_qasym(q, w);
        else
            materialize_plane(q, l, w);
    }
}

/* One token through plane blocks without building W: per group, sum x over the set
 * bits (p) and over the group (t); the signed sum is 2p - t. */
static void matvec_planes(const bs_qmat *q, float *y, const float *x)
{
    const bs_store_matrix *m = q->m;
    size_t G = bs_store_groups(m), rb = row_bytes(m);
    float *gsum = malloc(sizeof(float) * G);
    if (!gsum)
        return;
    for (size_t g = 0; g < G; g++) {
        float t = 0.0f;
        for (size_t j = g * m->group; j < (g + 1) * m->group && j < (size_t)m->cols; j++)
            t += x[j];
        gsum[g] = t;
    }
    for (int l = 0; l < q->depth; l++) {
        const uint8_t *scales = q->blk[bs_qmat_scale_level(m, l)], *bits = block_bits(q, l);
        float mul = ldexpf(1.0f, -bs_qmat_plane_shift(m, l));
        for (int i = 0; i < m->rows; i++) {
            const uint8_t *row = bits + (size_t)i * rb;
            float acc = 0.0f;
            for (size_t g = 0; g < G; g++) {
                float p = 0.0f;
                for (size_t j = g * m->group; j < (g + 1) * m->group && j < (size_t)m->cols; j++)
                    if (bit_at(row, (int)j))
                        p += x[j];
                acc += half_at(scales, (size_t)i * G + g) * (2.0f * p - gsum[g]);
            }
            y[i] += acc * mul;
        }
    }
    free(gsum);
}

void bs_qmat_apply(const bs_qmat *q, float *y, const float *x, int ntok, int accumulate)
{
    const bs_store_matrix *m = q->m;
    if (ntok == 1 && (m->kind == BS_KIND_SAQ || m->kind == BS_KIND_GQ)) {
        if (!accumulate)
            memset(y, 0, sizeof(float) * (size_t)m->rows);
        matvec_planes(q, y, x);
        return;
    }
    float *w = malloc(sizeof(float) * (size_t)m->rows * m->cols);
    if (!w)
        return;
    bs_qmat_materialize(q, w);
    bs_matmul(y, x, w, ntok, m->rows, m->cols, accumulate);
    free(w);
}
