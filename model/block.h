/* bs_block: the one home of block layout arithmetic (docs/store-format.md, "Blocks").
 *
 * A matrix of the stack is described by a bs_store_matrix; its level-l block is a payload
 * whose parts this module locates. Kernels never see a store: they get the plain array
 * views below (sign planes, fp16 scales, rank vectors, codes). Nothing here allocates.
 * fp16 arrays that may sit at an odd offset inside a payload (avd's U and V, qasym's mins)
 * are byte pointers: read them with memcpy-based loads. */
#ifndef BS_BLOCK_H
#define BS_BLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Block kinds (docs/store-format.md gives each payload). */
enum {
    BS_KIND_SAQ = 0,   /* successive-approximation sign planes, group scales */
    BS_KIND_GQ = 1,    /* GPTQ-seeded sign planes, then saq planes */
    BS_KIND_AVD = 2,   /* sign(R) x rank-k |R| (BitStack paper) */
    BS_KIND_QASYM = 3, /* one block: b-bit asymmetric codes with fp16 scale and min (RTN/GPTQ baselines) */
    BS_KIND_LSQ = 4,   /* sign planes, each level with its own least-squares group scales (over a floor) */
};
const char *bs_kind_name(int kind);
int bs_kind_parse(const char *s);   /* -1 when unknown */

typedef struct {
    char name[32];      /* "layers.3.wq" */
    int layer, which;   /* BS_WQ.. */
    int rows, cols;
    int kind;
    int levels;         /* blocks of this matrix in the stack */
    int group;          /* inputs per scale group (32) */
    int gq_levels;      /* K: gq levels seeded by GPTQ; planes K.. continue on the same grid */
    int restart;        /* gq: level whose block carries fresh group scales for it and all deeper
                           levels (0: none) */
    int k;              /* avd rank */
    int bits;           /* qasym code bits */
    int floor_rank;     /* LittleBit floor rank (model/floor.h); 0: no floor */
    int floor_paths;    /* floor paths (1 or 2) */
} bs_store_matrix;


/* Sign-plane bytes per row: ceil(cols / 8). */
size_t bs_block_row_bytes(const bs_store_matrix *m);

/* Scale groups per row: ceil(cols / group). */
size_t bs_block_groups(const bs_store_matrix *m);

/* Does block `level` of m begin a new set of group scales (stored first in its payload)? */
int bs_block_has_scales(const bs_store_matrix *m, int level);

/* Bytes of group scales at the start of block `level` (0 when it carries none). */
size_t bs_block_scales_bytes(const bs_store_matrix *m, int level);

/* Bytes of block `level` of m (depends on kind, shape and level only). */
uint64_t bs_block_bytes(const bs_store_matrix *m, int level);

/* Plane kinds (saq, gq): the level whose block holds the scales level `level` uses, and
 * the exponent of its weight: the plane adds sign * scale * 2^-shift. */
int bs_block_scale_level(const bs_store_matrix *m, int level);
int bs_block_plane_shift(const bs_store_matrix *m, int level);

/* A plane block (saq, gq) as arrays: `bits` rows x row_bytes (LSB first, set = +1),
 * `scales` fp16 rows x groups (from the block bs_block_scale_level names), `shift`. */
typedef struct {
    const uint8_t *bits;
    const uint16_t *scales;
    int shift;
} bs_plane_view;

/* blk[l]: the payload of level l of m, for every l <= level (and the scale level). */
void bs_block_plane(const bs_store_matrix *m, const uint8_t *const *blk, int level, bs_plane_view *v);

/* An avd block: the sign plane, then U (fp16 rows x k) and V (fp16 cols x k). */
typedef struct {
    const uint8_t *bits;
    const uint8_t *U, *V;
} bs_avd_view;

void bs_block_avd(const bs_store_matrix *m, const uint8_t *payload, bs_avd_view *v);

/* A qasym block: fp16 scale and min (rows x groups each), then b-bit codes, LSB first,
 * row_bytes per row. */
typedef struct {
    const uint8_t *scale, *min, *codes;
    size_t row_bytes;
} bs_qasym_view;

void bs_block_qasym(const bs_store_matrix *m, const uint8_t *payload, bs_qasym_view *v);

#endif
