#include "model/gguf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Sanity bounds: a real file never comes near these; a corrupt one often does. */
#define GGUF_MAX_KV       (1u << 20)
#define GGUF_MAX_TENSORS  (1u << 20)
#define GGUF_MAX_DIMS     4

typedef struct {
    const bs_gguf *g;
    uint64_t pos;
    bs_err *e;
} cursor;

static int need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->g->size || c->pos > c->g->size - n)
        return bs_err_set(c->e, "%s: truncated while reading %s at offset %llu (file is %zu bytes)",
                          c->g->path, what, (unsigned long long)c->pos, c->g->size);
    return 0;
}

static int rd(cursor *c, void *out, uint64_t n, const char *what)
{
    if (need(c, n, what))
        return -1;
    memcpy(out, c->g->map + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_str(cursor *c, bs_gguf_str *s, const char *what)
{
    uint64_t len;
    if (rd(c, &len, 8, what) || need(c, len, what))
        return -1;
    s->s = (const char *)c->g->map + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

static int scalar_size(int type)
{
    switch (type) {
    case BS_GGUF_U8: case BS_GGUF_I8: case BS_GGUF_BOOL: return 1;
    case BS_GGUF_U16: case BS_GGUF_I16: return 2;
    case BS_GGUF_U32: case BS_GGUF_I32: case BS_GGUF_F32: return 4;
    case BS_GGUF_U64: case BS_GGUF_I64: case BS_GGUF_F64: return 8;
    default: return 0;
    }
}

/* A float as an integer, saturated: out of range (or NaN) the cast would be undefined. */
static int64_t to_i64(double v)
{
    if (!(v > -9.2233720368547758e18))
        return v > 0 ? INT64_MAX : INT64_MIN;   /* NaN lands here too, as INT64_MIN */
    if (v >= 9.2233720368547758e18)
        return INT64_MAX;
    return (int64_t)v;
}

/* Decodes one little-endian scalar of `type` at p. */
static void scalar_at(const uint8_t *p, int type, uint64_t *u, int64_t *i, double *f)
{
    uint8_t b[8] = {0};
    memcpy(b, p, (size_t)scalar_size(type));
    uint64_t raw;
    memcpy(&raw, b, 8);
    *u = raw; *i = (int64_t)raw; *f = (double)raw;
    switch (type) {
    case BS_GGUF_I8:  *i = (int8_t)raw;  *f = (double)*i; break;
    case BS_GGUF_I16: *i = (int16_t)raw; *f = (double)*i; break;
    case BS_GGUF_I32: *i = (int32_t)raw; *f = (double)*i; break;
    case BS_GGUF_I64: *f = (double)*i; break;
    case BS_GGUF_F32: { float v; memcpy(&v, b, 4); *f = v; *i = to_i64(v); break; }
    case BS_GGUF_F64: { double v; memcpy(&v, b, 8); *f = v; *i = to_i64(v); break; }
    default: break;
    }
}

static int rd_value(cursor *c, bs_gguf_kv *kv)
{
    char what[96];
    snprintf(what, sizeof what, "value of key '%.*s'", (int)(kv->key.len > 60 ? 60 : kv->key.len), kv->key.s);
    if (kv->type == BS_GGUF_STRING)
        return rd_str(c, &kv->v.str, what);
    if (kv->type == BS_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (rd(c, &et, 4, what) || rd(c, &n, 8, what))
            return -1;
        kv->v.arr.type = (int)et;
        kv->v.arr.n = n;
        if (et == BS_GGUF_STRING) {
            /* each string needs at least its 8-byte length: bounds n before allocating */
            if (need(c, n > UINT64_MAX / 8 ? UINT64_MAX : n * 8, what))
                return -1;
            kv->v.arr.strs = calloc(n ? n : 1, sizeof *kv->v.arr.strs);
            if (!kv->v.arr.strs)
                return bs_err_set(c->e, "%s: out of memory for %s", c->g->path, what);
            for (uint64_t i = 0; i < n; i++)
                if (rd_str(c, &kv->v.arr.strs[i], what))
                    return -1;
            return 0;
        }
        int es = scalar_size((int)et);
        if (!es)
            return bs_err_set(c->e, "%s: %s: unsupported array element type %u", c->g->path, what, et);
        if (n > UINT64_MAX / (uint64_t)es || need(c, n * (uint64_t)es, what))
            return need(c, UINT64_MAX, what);
        kv->v.arr.data = c->g->map + c->pos;
        c->pos += n * (uint64_t)es;
        return 0;
    }
    int sz = scalar_size(kv->type);
    if (!sz)
        return bs_err_set(c->e, "%s: %s: unknown value type %d", c->g->path, what, kv->type);
    if (need(c, (uint64_t)sz, what))
        return -1;
    /* the value union shares memory: decode into locals, keep the one the type means */
    uint64_t u;
    int64_t i;
    double f;
    scalar_at(c->g->map + c->pos, kv->type, &u, &i, &f);
    if (kv->type == BS_GGUF_F32 || kv->type == BS_GGUF_F64)
        kv->v.f = f;
    else
        kv->v.i = i;
    c->pos += (uint64_t)sz;
    return 0;
}

/* Sizes a tensor of any ggml type; whether it can be dequantized is the loader's
 * question, so a file with one exotic tensor still opens (for its vocabulary, say). */
static int tensor_bytes(const bs_gguf *g, bs_gguf_tensor *t, bs_err *e)
{
    const bs_ggml_type_info *ti = bs_ggml_type(t->type);
    if (!ti)
        return bs_err_set(e, "%s: tensor '%.*s' has unknown ggml type %u",
                          g->path, (int)t->name.len, t->name.s, t->type);
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] == 0 || t->dims[d] > (1ull << 40) || n > (1ull << 40) / t->dims[d])
            return bs_err_set(e, "%s: tensor '%.*s' has an absurd shape", g->path, (int)t->name.len, t->name.s);
        n *= t->dims[d];
    }
    if (t->dims[0] % ti->block)
        return bs_err_set(e, "%s: tensor '%.*s' of type %s has rows of %llu values, not a multiple of its block of %u",
                          g->path, (int)t->name.len, t->name.s, ti->name,
                          (unsigned long long)t->dims[0], ti->block);
    t->nbytes = n / ti->block * ti->bytes;
    return 0;
}

int bs_gguf_open(bs_gguf *g, const char *path, bs_err *e)
{
    memset(g, 0, sizeof *g);
    g->path = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bs_err_set(e, "%s: cannot open: %m", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 24) {
        close(fd);
        return bs_err_set(e, "%s: too short to be a GGUF file", path);
    }
    g->size = (size_t)st.st_size;
    void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return bs_err_set(e, "%s: cannot map: %m", path);
    g->map = map;

    cursor c = {g, 0, e};
    uint32_t magic = 0;
    if (rd(&c, &magic, 4, "magic"))
        goto fail;
    if (memcmp(&magic, "GGUF", 4) != 0) {
        bs_err_set(e, "%s: not a GGUF file (bad magic)", path);
        goto fail;
    }
    if (rd(&c, &g->version, 4, "version") || rd(&c, &g->n_tensors, 8, "tensor count") ||
        rd(&c, &g->n_kv, 8, "metadata count"))
        goto fail;
    if (g->version < 2 || g->version > 3) {
        bs_err_set(e, "%s: GGUF version %u is not supported (2 or 3)", path, g->version);
        goto fail;
    }
    if (g->n_kv > GGUF_MAX_KV || g->n_tensors > GGUF_MAX_TENSORS) {
        bs_err_set(e, "%s: absurd counts (%llu metadata keys, %llu tensors)", path,
                   (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
        goto fail;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        bs_err_set(e, "%s: out of memory", path);
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        bs_gguf_kv *kv = &g->kv[i];
        uint32_t type;
        if (rd_str(&c, &kv->key, "metadata key") || rd(&c, &type, 4, "metadata type"))
            goto fail;
        kv->type = (int)type;
        if (rd_value(&c, kv))
            goto fail;
    }
    g->alignment = 32;
    int64_t al;
    if (bs_gguf_get_int(g, "general.alignment", &al) == 0) {
        if (al <= 0 || al > 65536 || (al & (al - 1))) {
            bs_err_set(e, "%s: general.alignment %lld is not a power of two", path, (long long)al);
            goto fail;
        }
        g->alignment = (uint64_t)al;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        bs_gguf_tensor *t = &g->tensors[i];
        if (rd_str(&c, &t->name, "tensor name") || rd(&c, &t->n_dims, 4, "tensor dims"))
            goto fail;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
            bs_err_set(e, "%s: tensor '%.*s' has %u dimensions", path, (int)t->name.len, t->name.s, t->n_dims);
            goto fail;
        }
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (rd(&c, &t->dims[d], 8, "tensor shape"))
                goto fail;
        for (uint32_t d = t->n_dims; d < GGUF_MAX_DIMS; d++)
            t->dims[d] = 1;
        if (rd(&c, &t->type, 4, "tensor type") || rd(&c, &t->offset, 8, "tensor offset"))
            goto fail;
        if (tensor_bytes(g, t, e))
            goto fail;
    }
    g->data_off = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        bs_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment || t->offset > g->size || g->data_off > g->size - t->offset ||
            t->nbytes > g->size - g->data_off - t->offset) {
            bs_err_set(e, "%s: tensor '%.*s' (offset %llu, %llu bytes) lies past the end of the file",
                       path, (int)t->name.len, t->name.s, (unsigned long long)t->offset,
                       (unsigned long long)t->nbytes);
            goto fail;
        }
        t->data = g->map + g->data_off + t->offset;
    }
    return 0;
fail:
    bs_gguf_close(g);
    return -1;
}

void bs_gguf_close(bs_gguf *g)
{
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            if (g->kv[i].type == BS_GGUF_ARRAY)
                free(g->kv[i].v.arr.strs);
    free(g->kv);
    free(g->tensors);
    if (g->map)
        munmap((void *)g->map, g->size);
    memset(g, 0, sizeof *g);
}

int bs_gguf_str_eq(bs_gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.s, c, n) == 0;
}

const bs_gguf_kv *bs_gguf_find(const bs_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (bs_gguf_str_eq(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

static int is_int_type(int t)
{
    return t == BS_GGUF_U8 || t == BS_GGUF_I8 || t == BS_GGUF_U16 || t == BS_GGUF_I16 ||
           t == BS_GGUF_U32 || t == BS_GGUF_I32 || t == BS_GGUF_U64 || t == BS_GGUF_I64 ||
           t == BS_GGUF_BOOL;
}

int bs_gguf_get_int(const bs_gguf *g, const char *key, int64_t *out)
{
    const bs_gguf_kv *kv = bs_gguf_find(g, key);
    if (!kv || !is_int_type(kv->type))
        return -1;
    *out = kv->v.i;
    return 0;
}

int bs_gguf_get_float(const bs_gguf *g, const char *key, double *out)
{
    const bs_gguf_kv *kv = bs_gguf_find(g, key);
    if (!kv)
        return -1;
    if (kv->type == BS_GGUF_F32 || kv->type == BS_GGUF_F64)
        *out = kv->v.f;
    else if (is_int_type(kv->type))
        *out = (double)kv->v.i;
    else
        return -1;
    return 0;
}

int bs_gguf_get_str(const bs_gguf *g, const char *key, bs_gguf_str *out)
{
    const bs_gguf_kv *kv = bs_gguf_find(g, key);
    if (!kv || kv->type != BS_GGUF_STRING)
        return -1;
    *out = kv->v.str;
    return 0;
}

const bs_gguf_tensor *bs_gguf_tensor_find(const bs_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (bs_gguf_str_eq(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

double bs_gguf_arr_f(const bs_gguf_kv *kv, uint64_t i)
{
    uint64_t u; int64_t s; double f;
    int es = scalar_size(kv->v.arr.type);
    scalar_at(kv->v.arr.data + i * (uint64_t)es, kv->v.arr.type, &u, &s, &f);
    return f;
}

int64_t bs_gguf_arr_i(const bs_gguf_kv *kv, uint64_t i)
{
    uint64_t u; int64_t s; double f;
    int es = scalar_size(kv->v.arr.type);
    scalar_at(kv->v.arr.data + i * (uint64_t)es, kv->v.arr.type, &u, &s, &f);
    return s;
}
