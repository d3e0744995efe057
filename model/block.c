#include "model/block.h"

size_t bs_block_row_bytes(const bs_store_matrix *m)
{
    return ((size_t)m->cols + 7) / 8;
}

size_t bs_block_groups(const bs_store_matrix *m)
{
    return ((size_t)m->cols + (size_t)m->group - 1) / (size_t)m->group;
}

int bs_block_has_scales(const bs_store_matrix *m, int level)
{
    if (m->kind == BS_KIND_SAQ)
        return level == 0;
    if (m->kind == BS_KIND_LSQ)
        return 1;
    if (m->kind == BS_KIND_GQ)
        return level == 0 || (m->restart > 0 && level == m->restart);
    return 0;
}

size_t bs_block_scales_bytes(const bs_store_matrix *m, int level)
{
    return bs_block_has_scales(m, level) ? (size_t)m->rows * bs_block_groups(m) * 2 : 0;
}

uint64_t bs_block_bytes(const bs_store_matrix *m, int level)
{
    uint64_t rows = (uint64_t)m->rows, cols = (uint64_t)m->cols;
    uint64_t plane = rows * bs_block_row_bytes(m);
    switch (m->kind) {
    case BS_KIND_SAQ:
    case BS_KIND_GQ:
    case BS_KIND_LSQ:
        return plane + bs_block_scales_bytes(m, level);
    case BS_KIND_AVD:
        return plane + (rows + cols) * (uint64_t)m->k * 2;
    case BS_KIND_QASYM:
        return rows * bs_block_groups(m) * 4 + rows * ((cols * (uint64_t)m->bits + 7) / 8);
    default:
        return 0;
    }
}

int bs_block_scale_level(const bs_store_matrix *m, int level)
{
    if (m->kind == BS_KIND_LSQ)
        return level;
    return m->kind == BS_KIND_GQ && m->restart > 0 && level >= m->restart ? m->restart : 0;
}

int bs_block_plane_shift(const bs_store_matrix *m, int level)
{
    return level - bs_block_scale_level(m, level) + 1;
}

void bs_block_plane(const bs_store_matrix *m, const uint8_t *const *blk, int level, bs_plane_view *v)
{
    /* payloads start on 64-byte boundaries: the scales at their start are aligned */
    v->scales = (const uint16_t *)(const void *)blk[bs_block_scale_level(m, level)];
    v->bits = blk[level] + bs_block_scales_bytes(m, level);
    v->shift = bs_block_plane_shift(m, level);
}

void bs_block_avd(const bs_store_matrix *m, const uint8_t *payload, bs_avd_view *v)
{
    v->bits = payload;
    v->U = payload + (size_t)m->rows * bs_block_row_bytes(m);
    v->V = v->U + (size_t)m->rows * (size_t)m->k * 2;
}

void bs_block_qasym(const bs_store_matrix *m, const uint8_t *payload, bs_qasym_view *v)
{
    size_t ng = (size_t)m->rows * bs_block_groups(m);
    v->scale = payload;
    v->min = payload + ng * 2;
    v->codes = v->min + ng * 2;
    v->row_bytes = ((size_t)m->cols * (size_t)m->bits + 7) / 8;
}
