/* bs_store: the stacked store (.bstk), docs/store-format.md.
 *
 *   header (64 bytes) | JSON metadata | base section | [floor section] | stack section
 *
 * The base holds what every size of the model needs (embeddings and classifier in
 * fp16, norms in fp32). The stack holds every residual block of every linear, in
 * stack order, contiguous, each starting on a 64-byte boundary; the stack section
 * starts on a 4096-byte boundary so page-aligned runs of it can be read with O_DIRECT.
 * A prefix of N blocks is a working model; its resident bytes are recorded.
 * The optional floor section (version 2) holds every matrix's LittleBit floor
 * (model/floor.h); it is always resident, like the base: prefix 0 is the floor alone, a
 * working model. Either the stack's blocks decompose W − W_floor (every prefix is the floor
 * plus its blocks), or the store switches (floor_switch > 0): its blocks decompose W itself,
 * prefixes shorter than floor_switch run the floor alone and longer ones the blocks alone. */
#ifndef BS_STORE_H
#define BS_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/block.h"
#include "model/model.h"
#include "model/tokenizer.h"

#define BS_STORE_VERSION 1         /* a store without a floor: readers of version 1 read it */
#define BS_STORE_VERSION_FLOOR 2   /* a store with a LittleBit floor section */
#define BS_STORE_VERSION_BPE 3     /* a store whose tokenizer is byte-level BPE (floor or not) */
#define BS_STORE_ALIGN 64        /* every block starts on this boundary */
#define BS_STORE_PAGE 4096       /* the stack section starts on this boundary */

typedef struct {
    int matrix, level;
    uint64_t offset;    /* from the start of the stack section; multiple of 64 */
    uint64_t bytes;
    uint32_t crc;       /* crc32c of the payload */
} bs_store_block;

typedef struct {
    char *path;
    bs_config cfg;
    int shared_cls;
    int n_matrices;
    bs_store_matrix *mats;
    int n_blocks;
    bs_store_block *blocks;
    uint64_t *resident;    /* n_blocks + 1 entries: resident bytes of each prefix */
    double *loss;          /* n_blocks + 1: the calibration output error left at each prefix
                            * (summed over matrices), or NULL when the store does not record it */
    uint64_t base_bytes;   /* embeddings, classifier, norms */
    uint8_t *floor;        /* the floor section (owned, read and checked at open), or NULL */
    uint64_t floor_bytes;  /* its length: counted in every resident[] entry */
    uint64_t *floor_at;    /* per matrix: its floor payload's offset in `floor` */
    int floor_switch;      /* > 0: prefixes shorter than this are the floor alone, the others the
                            * blocks alone (at least one of every matrix); 0: floor + blocks */
    int min_blocks;        /* the shortest working prefix: every matrix has a block, or 0 with a floor */
    uint64_t stack_off, stack_len, file_size;
    size_t linear_params;
    json_t *meta;          /* the whole metadata object (owned) */
    bs_tokenizer *tok;     /* owned */
    /* base tensors as fp32 (owned) */
    float *tok_emb, *cls, *final_norm, *att_norm, *ffn_norm;  /* norms: n_layers x dim */
} bs_store;

/* Opens a store: checks the header, the metadata, every table entry and the base
 * against the file; loads the base and the tokenizer. No block is read. */
int bs_store_open(bs_store *s, const char *path, bs_err *e);
void bs_store_close(bs_store *s);

/* The loss each prefix reaches, for splitting memory across models ([n_blocks + 1],
 * caller frees; NULL on OOM): the store's calibration error (info.errors) divided by that
 * of the empty model, so models of different widths compare. A store without it gets an
 * estimate (*estimated): each block halves its matrix's remaining error, matrices
 * weighted by their size. */
double *bs_store_loss_table(const bs_store *s, bool *estimated);

/* Bytes of the stack section that hold blocks [0, n): the end of block n-1. */
uint64_t bs_store_prefix_end(const bs_store *s, int n);

/* Reads blocks [0, n) into buf (at least bs_store_prefix_end(n) bytes, mirroring
 * stack offsets) and checks each block's crc32c; the error names the block. */
int bs_store_read_prefix(const bs_store *s, int n, uint8_t *buf, bs_err *e);

/* Reads blocks [a, b) into buf at their stack offsets and checks their crc32c. */
int bs_store_read_range(const bs_store *s, int a, int b, uint8_t *buf, bs_err *e);

/* Checks the crc32c of blocks [from, to) already in buf. */
int bs_store_verify(const bs_store *s, const uint8_t *buf, int from, int to, bs_err *e);

/* Reads every block from the file, a few MiB at a time, and checks its crc32c; the error
 * names the first bad block. */
int bs_store_verify_file(const bs_store *s, bs_err *e);

/* Bits per linear weight of a prefix: 8 * (resident - base) / linear weights. */
double bs_store_bpw(const bs_store *s, int n);

/* Produces block i's payload (`bytes` long, bs_block_bytes()) into buf, for a
 * writer whose stack does not fit in memory at once. Returns 0, or -1 with e set. */
typedef int (*bs_store_fill_fn)(void *ctx, int i, uint8_t *buf, uint64_t bytes, bs_err *e);

/* What a writer hands over: the dense parts come from model (its linears are ignored),
 * blocks come in stack order with their payloads: either all of them in memory
 * (payload) or one at a time from fill (payload NULL), called once per block in stack
 * order. Offsets and crcs are filled in. */
typedef struct {
    const bs_model *model;
    const bs_tokenizer *tok;
    int n_matrices;
    const bs_store_matrix *mats;
    int n_blocks;
    bs_store_block *blocks;         /* matrix, level set; offset, bytes, crc filled */
    const uint8_t *const *payload;  /* payload[i]: block i, bs_block_bytes() long; or NULL */
    json_t *info;                   /* extra metadata (compression settings, eval results); borrowed */
    bs_store_fill_fn fill;          /* used when payload is NULL */
    void *fill_ctx;
    const uint8_t *floor;           /* optional: every matrix's floor payload in matrix order,
                                     * bs_store_floor_bytes() long (mats give the ranks) */
    int floor_switch;               /* with a floor: bs_store.floor_switch */
} bs_store_out;

/* Bytes of the floor section of these matrices, and each one's offset in it (at may be
 * NULL): payloads in matrix order, back to back (each has even length). */
uint64_t bs_store_floor_layout(const bs_store_matrix *mats, int n, uint64_t *at);

/* Writes path.tmp, fsyncs, renames over path. The stack is written first (a block's
 * crc is known once its bytes are), then the metadata in the room reserved before it,
 * so the writer holds at most one block that the caller did not already hold. */
int bs_store_write(const char *path, const bs_store_out *o, bs_err *e);

#endif
