/* bs_gguf: a bounds-checked reader of GGUF v2/v3 files (llama.cpp's container).
 * The file is mapped read-only; every string, array and tensor is checked to lie
 * inside it before anything points at it. Knows nothing about transformers. */
#ifndef BS_GGUF_H
#define BS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/dequant.h"
#include "kernels/err.h"

enum {
    BS_GGUF_U8 = 0, BS_GGUF_I8 = 1, BS_GGUF_U16 = 2, BS_GGUF_I16 = 3,
    BS_GGUF_U32 = 4, BS_GGUF_I32 = 5, BS_GGUF_F32 = 6, BS_GGUF_BOOL = 7,
    BS_GGUF_STRING = 8, BS_GGUF_ARRAY = 9, BS_GGUF_U64 = 10, BS_GGUF_I64 = 11,
    BS_GGUF_F64 = 12,
};

typedef struct {
    const char *s;    /* points into the mapping: NOT NUL-terminated */
    uint64_t len;
} bs_gguf_str;

typedef struct {
    bs_gguf_str key;
    int type;                    /* BS_GGUF_* */
    union {
        uint64_t u;              /* unsigned ints and bool */
        int64_t i;               /* signed ints */
        double f;                /* F32, F64 */
        bs_gguf_str str;
        struct {
            int type;            /* element type */
            uint64_t n;
            const uint8_t *data; /* numeric elements, packed little-endian */
            bs_gguf_str *strs;   /* string elements (owned by bs_gguf), else NULL */
        } arr;
    } v;
} bs_gguf_kv;

typedef struct {
    bs_gguf_str name;
    uint32_t n_dims;
    uint64_t dims[4];            /* ne[0] is the fastest-moving (row length) */
    uint32_t type;               /* BS_GGML_* (any ggml type; see bs_ggml_type) */
    uint64_t offset;             /* from the data section */
    uint64_t nbytes;
    const void *data;            /* inside the mapping, checked */
} bs_gguf_tensor;

typedef struct bs_gguf {
    const char *path;
    const uint8_t *map;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    bs_gguf_kv *kv;
    bs_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_off;
} bs_gguf;

int bs_gguf_open(bs_gguf *g, const char *path, bs_err *e);
void bs_gguf_close(bs_gguf *g);

/* Lookups return NULL / -1 when the key is missing or has another type. */
const bs_gguf_kv *bs_gguf_find(const bs_gguf *g, const char *key);
int bs_gguf_get_int(const bs_gguf *g, const char *key, int64_t *out);    /* any integer type */
int bs_gguf_get_float(const bs_gguf *g, const char *key, double *out);   /* F32/F64 or integer */
int bs_gguf_get_str(const bs_gguf *g, const char *key, bs_gguf_str *out);
const bs_gguf_tensor *bs_gguf_tensor_find(const bs_gguf *g, const char *name);

/* 1 when s equals the C string c. */
int bs_gguf_str_eq(bs_gguf_str s, const char *c);

/* Element i of a numeric array as double / int64 (no range check on i beyond n). */
double bs_gguf_arr_f(const bs_gguf_kv *kv, uint64_t i);
int64_t bs_gguf_arr_i(const bs_gguf_kv *kv, uint64_t i);

#endif
