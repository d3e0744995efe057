#include "model/store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/crc32c.h"
#include "kernels/half.h"
#include "model/floor.h"

#define HEADER_BYTES 64
#define META_MAX (256u << 20)   /* a metadata object beyond this is corrupt, not large */

static const char *const kind_names[] = {"saq", "gq", "avd", "qasym", "lsq"};
#define N_KINDS 5

const char *bs_kind_name(int kind)
{
    return kind >= 0 && kind < N_KINDS ? kind_names[kind] : "?";
}

int bs_kind_parse(const char *s)
{
    for (int i = 0; i < N_KINDS; i++)
        if (!strcmp(s, kind_names[i]))
            return i;
    return -1;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* ---------------------------------------------------------------- writing */

uint64_t bs_store_floor_layout(const bs_store_matrix *mats, int n, uint64_t *at)
{
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (at)
            at[i] = off;
        off += bs_floor_bytes(&mats[i]);
    }
    return off;
}

static json_t *config_json(const bs_config *c, int shared)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}",
                     "dim", c->dim, "hidden_dim", c->hidden_dim, "n_layers", c->n_layers,
                     "n_heads", c->n_heads, "n_kv_heads", c->n_kv_heads, "vocab_size", c->vocab_size,
                     "seq_len", c->seq_len, "rope_theta", (double)c->rope_theta, "rms_eps", (double)c->rms_eps,
                     "shared_classifier", shared);
}

/* Pieces, scores, types and the special ids; a byte-level BPE vocabulary adds its kind,
 * spells its pieces as GGUF does and keeps its merges as [left, right] piece ids. */
static json_t *tokenizer_json(const bs_tokenizer *t, bs_err *e)
{
    int n = bs_tok_vocab_size(t), bpe = bs_tok_is_bpe(t);
    json_t *pieces = json_array(), *scores = json_array(), *types = json_array();
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = bpe ? bs_tok_piece_bpe_raw(t, i, &len) : bs_tok_piece_raw(t, i, &len);
        json_t *js = json_stringn(p, len);
        if (!js) {
            json_decref(pieces); json_decref(scores); json_decref(types);
            return bs_err_set(e, "tokenizer piece %d is not valid UTF-8", i), NULL;
        }
        json_array_append_new(pieces, js);
        json_array_append_new(scores, json_real(bs_tok_score(t, i)));
        json_array_append_new(types, json_integer(bs_tok_type(t, i)));
    }
    json_t *tj = json_pack("{s:i, s:i, s:i, s:b, s:o, s:o, s:o}", "bos", bs_tok_bos(t), "eos", bs_tok_eos(t),
                           "unk", bs_tok_unk(t), "add_space_prefix", bs_tok_add_space_prefix(t),
                           "pieces", pieces, "scores", scores, "types", types);
    if (!tj || !bpe)
        return tj ? tj : (bs_err_set(e, "out of memory for the tokenizer metadata"), NULL);
    int nm = 0;
    int *pairs = bs_tok_bpe_merges(t, &nm);
    json_t *merges = json_array();
    for (int i = 0; pairs && i < nm; i++)
        json_array_append_new(merges, json_pack("[i,i]", pairs[2 * i], pairs[2 * i + 1]));
    free(pairs);
    if (!pairs || json_array_size(merges) != (size_t)nm) {
        json_decref(merges);
        json_decref(tj);
        return bs_err_set(e, "out of memory for the tokenizer's merges"), NULL;
    }
    json_object_set_new(tj, "kind", json_string("bpe"));
    json_object_set_new(tj, "merges", merges);
    return tj;
}

typedef struct {
    const char *name;
    int fp16;
    const float *data;
    size_t n;
    int rows, cols;
} base_tensor;

/* The base tensors in file order; returns their count (at most 4 + 2 * n_layers). */
static int base_tensors(const bs_model *m, int shared, base_tensor *bt)
{
    const bs_config *c = &m->cfg;
    int n = 0;
    bt[n++] = (base_tensor){"tok_emb", 1, m->tok_emb, (size_t)c->vocab_size * c->dim, c->vocab_size, c->dim};
    if (!shared)
        bt[n++] = (base_tensor){"cls", 1, m->cls, (size_t)c->vocab_size * c->dim, c->vocab_size, c->dim};
    bt[n++] = (base_tensor){"final_norm", 0, m->final_norm, (size_t)c->dim, 1, c->dim};
    for (int l = 0; l < c->n_layers; l++) {
        bt[n++] = (base_tensor){"att_norm", 0, m->layers[l].att_norm, (size_t)c->dim, 1, c->dim};
        bt[n++] = (base_tensor){"ffn_norm", 0, m->layers[l].ffn_norm, (size_t)c->dim, 1, c->dim};
    }
    return n;
}

static int write_all(int fd, const void *buf, size_t n, const char *path, bs_err *e)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return bs_err_set(e, "%s: write failed: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_zeros(int fd, size_t n, const char *path, bs_err *e)
{
    static const uint8_t zeros[BS_STORE_PAGE];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (write_all(fd, zeros, k, path, e))
            return -1;
        n -= k;
    }
    return 0;
}

/* Serialises the base into one buffer and describes it in `desc`. */
static uint8_t *build_base(const bs_model *m, int shared, json_t *desc, uint64_t *len, bs_err *e)
{
    base_tensor bt[4 + 2 * 1024];
    int nt = base_tensors(m, shared, bt);
    uint64_t total = 0;
    for (int i = 0; i < nt; i++)
        total = align_up(total, BS_STORE_ALIGN) + bt[i].n * (bt[i].fp16 ? 2 : 4);
    uint8_t *buf = calloc(1, total ? total : 1);
    if (!buf)
        return bs_err_set(e, "out of memory for the base section"), NULL;
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        off = align_up(off, BS_STORE_ALIGN);
        uint64_t bytes = bt[i].n * (bt[i].fp16 ? 2 : 4);
        for (size_t j = 0; j < bt[i].n; j++) {
            if (!isfinite(bt[i].data[j])) {
                free(buf);
                return bs_err_set(e, "base tensor %s has a non-finite value at %zu", bt[i].name, j), NULL;
            }
        }
        if (bt[i].fp16) {
            uint16_t *h = (uint16_t *)(buf + off);
            bs_f32_to_fp16_n(h, bt[i].data, bt[i].n);
        } else {
            memcpy(buf + off, bt[i].data, bytes);
        }
        json_array_append_new(desc, json_pack("{s:s, s:s, s:[i,i], s:I, s:I}", "name", bt[i].name,
                                              "dtype", bt[i].fp16 ? "f16" : "f32", "shape", bt[i].rows,
                                              bt[i].cols, "offset", (json_int_t)off, "bytes", (json_int_t)bytes));
        off += bytes;
    }
    *len = total;
    return buf;
}

/* Block i's bytes: the caller's own buffer, or what its fill callback puts in scratch. */
static const uint8_t *block_payload(const bs_store_out *o, int i, uint8_t *scratch, bs_err *e)
{
    if (o->payload)
        return o->payload[i];
    return o->fill(o->fill_ctx, i, scratch, o->blocks[i].bytes, e) ? NULL : scratch;
}

int bs_store_write(const char *path, const bs_store_out *o, bs_err *e)
{
    const bs_model *m = o->model;
    int shared = m->cls == m->tok_emb;
    json_t *meta = NULL, *tok = NULL, *base_desc = json_array();
    uint8_t *base = NULL, *scratch = NULL;
    uint64_t base_len = 0;
    int fd = -1, rc = -1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    if (!o->payload && !o->fill) {
        bs_err_set(e, "%s: the writer was given neither payloads nor a fill callback", path);
        goto out;
    }
    if (!(tok = tokenizer_json(o->tok, e)) || !(base = build_base(m, shared, base_desc, &base_len, e)))
        goto out;

    /* stack layout: contiguous in stack order, each block on a 64-byte boundary. The crcs
     * are not known yet: their entries hold the widest crc until the blocks are written,
     * so the metadata written at the end is never longer than the room kept for it. */
    uint64_t off = 0, max_bytes = 0;
    json_t *stack = json_array(), *budget = json_array(), *mats = json_array();
    uint64_t floor_len = o->floor ? bs_store_floor_layout(o->mats, o->n_matrices, NULL) : 0;
    uint64_t resident = base_len + floor_len;
    json_array_append_new(budget, json_integer((json_int_t)resident));
    for (int i = 0; i < o->n_blocks; i++) {
        bs_store_block *b = &o->blocks[i];
        const bs_store_matrix *mt = &o->mats[b->matrix];
        off = align_up(off, BS_STORE_ALIGN);
        b->offset = off;
        b->bytes = bs_block_bytes(mt, b->level);
        b->crc = 0;
        max_bytes = b->bytes > max_bytes ? b->bytes : max_bytes;
        off += b->bytes;
        resident += b->bytes;
        json_array_append_new(stack, json_pack("[i,i,I,I,I]", b->matrix, b->level, (json_int_t)b->offset,
                                               (json_int_t)b->bytes, (json_int_t)UINT32_MAX));
        json_array_append_new(budget, json_integer((json_int_t)resident));
    }
    uint64_t stack_len = off;
    for (int i = 0; i < o->n_matrices; i++) {
        const bs_store_matrix *mt = &o->mats[i];
        json_array_append_new(mats, json_pack("{s:s, s:i, s:s, s:i, s:i, s:s, s:i, s:i, s:i, s:i, s:i}",
                                              "name", mt->name, "layer", mt->layer, "which", bs_lin_name(mt->which),
                                              "rows", mt->rows, "cols", mt->cols, "kind", bs_kind_name(mt->kind),
                                              "levels", mt->levels, "group", mt->group, "gq_levels", mt->gq_levels,
                                              "k", mt->k, "bits", mt->bits));
        json_object_set_new(json_array_get(mats, (size_t)i), "restart", json_integer(mt->restart));
        if (o->floor) {
            json_object_set_new(json_array_get(mats, (size_t)i), "floor_rank", json_integer(mt->floor_rank));
            json_object_set_new(json_array_get(mats, (size_t)i), "floor_paths", json_integer(mt->floor_paths));
        }
    }
    /* the lowest version that says what a reader must know */
    uint32_t version = bs_tok_is_bpe(o->tok) ? BS_STORE_VERSION_BPE
                       : o->floor ? BS_STORE_VERSION_FLOOR : BS_STORE_VERSION;
    meta = json_pack("{s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "format", "bitstack-store",
                     "version", (int)version, "config", config_json(&m->cfg, shared), "tokenizer", tok,
                     "base", base_desc, "matrices", mats, "stack", stack, "budget", budget,
                     "linear_params", (json_int_t)bs_model_linear_params(&m->cfg));
    tok = base_desc = NULL;
    if (!meta) {
        bs_err_set(e, "%s: cannot build the metadata", path);
        goto out;
    }
    if (o->info)
        json_object_set(meta, "info", o->info);
    char *js = json_dumps(meta, JSON_COMPACT);
    if (!js) {
        bs_err_set(e, "%s: cannot serialise the metadata", path);
        goto out;
    }
    uint64_t meta_room = strlen(js);
    free(js);
    uint64_t meta_off = HEADER_BYTES;
    /* the floor's entry is the same length before and after its crc is known: room for it
     * is measured with the widest values */
    uint64_t base_off, floor_off, stack_off;
    for (int pass = 0; pass < 2; pass++) {
        base_off = align_up(meta_off + meta_room, BS_STORE_PAGE);
        floor_off = align_up(base_off + base_len, BS_STORE_PAGE);
        stack_off = floor_len ? align_up(floor_off + floor_len, BS_STORE_PAGE) : floor_off;
        if (!o->floor)
            break;
        json_object_set_new(meta, "floor", json_pack("{s:I, s:I, s:I}", "offset", (json_int_t)UINT32_MAX * 4096,
                                                     "bytes", (json_int_t)floor_len, "crc32c", (json_int_t)UINT32_MAX));
        if (o->floor_switch > 0)
            json_object_set_new(json_object_get(meta, "floor"), "switch", json_integer(o->floor_switch));
        if (pass == 0) {
            if (!(js = json_dumps(meta, JSON_COMPACT))) {
                bs_err_set(e, "%s: cannot serialise the metadata", path);
                goto out;
            }
            meta_room = strlen(js);
            free(js);
        }
    }
    if (o->floor)
        json_object_set_new(meta, "floor", json_pack("{s:I, s:I, s:I}", "offset", (json_int_t)floor_off,
                                                     "bytes", (json_int_t)floor_len, "crc32c",
                                                     (json_int_t)bs_crc32c(0, o->floor, floor_len)));
    if (o->floor && o->floor_switch > 0)
        json_object_set_new(json_object_get(meta, "floor"), "switch", json_integer(o->floor_switch));

    if (!o->payload && !(scratch = malloc(max_bytes ? max_bytes : 1))) {
        bs_err_set(e, "%s: out of memory for a block of %llu bytes", path, (unsigned long long)max_bytes);
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        bs_err_set(e, "%s: cannot write (through %s.tmp): %s", path, path, strerror(errno));
        goto out;
    }
    /* the stack first, each block's crc taken from the bytes as they are written */
    int bad = lseek(fd, (off_t)stack_off, SEEK_SET) < 0
                  ? bs_err_set(e, "%s: seek failed: %s", path, strerror(errno)) : 0;
    uint64_t pos = 0;
    for (int i = 0; !bad && i < o->n_blocks; i++) {
        bs_store_block *b = &o->blocks[i];
        const uint8_t *p = block_payload(o, i, scratch, e);
        if (!p) {
            bad = bs_err_wrap(e, "%s: block %d", path, i);
            break;
        }
        b->crc = bs_crc32c(0, p, b->bytes);
        json_array_set_new(json_array_get(stack, (size_t)i), 4, json_integer((json_int_t)b->crc));
        bad = write_zeros(fd, b->offset - pos, path, e) || write_all(fd, p, b->bytes, path, e);
        pos = b->offset + b->bytes;
    }
    /* then the metadata with the real crcs (no longer than its room), the base, the gaps */
    if (!bad && !(js = json_dumps(meta, JSON_COMPACT)))
        bad = bs_err_set(e, "%s: cannot serialise the metadata", path);
    if (!bad) {
        uint64_t meta_len = strlen(js);
        uint8_t hdr[HEADER_BYTES] = {0};
        uint32_t meta_crc = bs_crc32c(0, js, meta_len),
                 base_crc = bs_crc32c(0, base, base_len);
        memcpy(hdr, "BSTK", 4);
        memcpy(hdr + 4, &version, 4);
        uint64_t fields[6] = {meta_off, meta_len, base_off, base_len, stack_off, stack_len};
        memcpy(hdr + 8, fields, sizeof fields);
        memcpy(hdr + 56, &meta_crc, 4);
        memcpy(hdr + 60, &base_crc, 4);
        bad = (lseek(fd, 0, SEEK_SET) < 0 ? bs_err_set(e, "%s: seek failed: %s", path, strerror(errno)) : 0) ||
              write_all(fd, hdr, sizeof hdr, path, e) || write_all(fd, js, meta_len, path, e) ||
              write_zeros(fd, base_off - meta_off - meta_len, path, e) || write_all(fd, base, base_len, path, e) ||
              write_zeros(fd, floor_off - base_off - base_len, path, e) ||
              (floor_len && (write_all(fd, o->floor, floor_len, path, e) ||
                             write_zeros(fd, stack_off - floor_off - floor_len, path, e)));
        free(js);
    }
    if (!bad && fsync(fd) != 0)
        bad = bs_err_set(e, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !bad)
        bad = bs_err_set(e, "%s: close failed: %s", path, strerror(errno));
    fd = -1;
    if (!bad && rename(tmp, path) != 0)
        bad = bs_err_set(e, "%s: cannot rename into place: %s", path, strerror(errno));
    if (bad)
        unlink(tmp);
    rc = bad ? -1 : 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    json_decref(meta);
    json_decref(tok);
    json_decref(base_desc);
    free(base);
    free(scratch);
    return rc;
}

/* ---------------------------------------------------------------- reading */

static int pread_all(int fd, void *buf, uint64_t n, uint64_t off, const char *path, bs_err *e)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return bs_err_set(e, "%s: read failed at offset %llu: %s", path, (unsigned long long)off, strerror(errno));
        if (r == 0)
            return bs_err_set(e, "%s: truncated: nothing at offset %llu", path, (unsigned long long)off);
        p += r;
        off += (uint64_t)r;
        n -= (uint64_t)r;
    }
    return 0;
}

/* Integer member of a JSON object within [lo, hi]. */
static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, const char *path,
                   const char *where, bs_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bs_err_set(e, "%s: metadata %s.%s is missing or out of range", path, where, key);
    *out = json_integer_value(v);
    return 0;
}

static int parse_config(bs_store *s, json_t *c, bs_err *e)
{
    long long v[7];
    static const char *const keys[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (get_int(c, keys[i], 1, 1 << 24, &v[i], s->path, "config", e))
            return -1;
    s->cfg = (bs_config){.dim = (int)v[0], .hidden_dim = (int)v[1], .n_layers = (int)v[2], .n_heads = (int)v[3],
                         .n_kv_heads = (int)v[4], .vocab_size = (int)v[5], .seq_len = (int)v[6],
                         .rope_theta = (float)json_number_value(json_object_get(c, "rope_theta")),
                         .rms_eps = (float)json_number_value(json_object_get(c, "rms_eps"))};
    s->shared_cls = json_is_true(json_object_get(c, "shared_classifier"));
    return bs_config_check(&s->cfg, s->path, e);
}

static int parse_tokenizer(bs_store *s, json_t *t, uint32_t version, bs_err *e)
{
    /* a BPE vocabulary read as SentencePiece would give other ids: only version 3 has one */
    json_t *kind = json_object_get(t, "kind"), *merges = json_object_get(t, "merges");
    int bpe = kind && json_is_string(kind) && !strcmp(json_string_value(kind), "bpe");
    if (kind && !bpe && !(json_is_string(kind) && !strcmp(json_string_value(kind), "sentencepiece")))
        return bs_err_set(e, "%s: the tokenizer's kind is not \"sentencepiece\" or \"bpe\"", s->path);
    if (bpe && version < BS_STORE_VERSION_BPE)
        return bs_err_set(e, "%s: a byte-level BPE tokenizer in a version %u store (it needs version %d)", s->path,
                          version, BS_STORE_VERSION_BPE);
    if (bpe && !json_is_array(merges))
        return bs_err_set(e, "%s: the byte-level BPE tokenizer has no merges", s->path);
    json_t *pieces = json_object_get(t, "pieces"), *scores = json_object_get(t, "scores"),
           *types = json_object_get(t, "types");
    size_t n = json_array_size(pieces);
    if (!json_is_array(pieces) || n != (size_t)s->cfg.vocab_size || json_array_size(scores) != n ||
        json_array_size(types) != n)
        return bs_err_set(e, "%s: the tokenizer in the metadata does not have %d pieces with scores and types",
                          s->path, s->cfg.vocab_size);
    const char **p = calloc(n, sizeof *p);
    size_t *lens = calloc(n, sizeof *lens);
    float *sc = calloc(n, sizeof *sc);
    int *ty = calloc(n, sizeof *ty), *pairs = NULL;
    int rc = -1;
    if (!p || !lens || !sc || !ty) {
        bs_err_set(e, "%s: out of memory for the tokenizer", s->path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *pi = json_array_get(pieces, i), *si = json_array_get(scores, i), *ti = json_array_get(types, i);
        if (!json_is_string(pi) || !json_is_number(si) || !json_is_integer(ti)) {
            bs_err_set(e, "%s: tokenizer piece %zu is malformed", s->path, i);
            goto out;
        }
        p[i] = json_string_value(pi);
        lens[i] = json_string_length(pi);
        sc[i] = (float)json_number_value(si);
        ty[i] = (int)json_integer_value(ti);
    }
    long long bos = 0, eos = 0, unk = 0;
    if (get_int(t, "bos", 0, (long long)n - 1, &bos, s->path, "tokenizer", e) ||
        get_int(t, "eos", 0, (long long)n - 1, &eos, s->path, "tokenizer", e) ||
        get_int(t, "unk", 0, (long long)n - 1, &unk, s->path, "tokenizer", e))
        goto out;
    if (bpe) {
        size_t nm = json_array_size(merges);
        if (nm > (1u << 24) || !(pairs = malloc(2 * sizeof(int) * (nm ? nm : 1)))) {
            bs_err_set(e, "%s: cannot hold %zu merges", s->path, nm);
            goto out;
        }
        for (size_t i = 0; i < nm; i++) {
            json_t *m = json_array_get(merges, i), *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            if (json_array_size(m) != 2 || !json_is_integer(l) || !json_is_integer(r) || json_integer_value(l) < 0 ||
                json_integer_value(l) >= (json_int_t)n || json_integer_value(r) < 0 ||
                json_integer_value(r) >= (json_int_t)n) {
                bs_err_set(e, "%s: tokenizer merge %zu is not two piece ids", s->path, i);
                goto out;
            }
            pairs[2 * i] = (int)json_integer_value(l);
            pairs[2 * i + 1] = (int)json_integer_value(r);
        }
        s->tok = bs_tok_new_bpe((int)n, p, lens, sc, ty, pairs, (int)nm, (int)bos, (int)eos, (int)unk, e);
    } else {
        s->tok = bs_tok_new((int)n, p, lens, sc, ty, (int)bos, (int)eos, (int)unk, e);
    }
    rc = s->tok ? 0 : bs_err_wrap(e, "%s: tokenizer", s->path);
    if (s->tok && json_is_false(json_object_get(t, "add_space_prefix")))
        bs_tok_set_add_space_prefix(s->tok, 0);   /* always written; readers before version 3 ignored it */
out:
    free(p); free(lens); free(sc); free(ty); free(pairs);
    return rc;
}

static int parse_matrices(bs_store *s, json_t *arr, bs_err *e)
{
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0 || n > (size_t)s->cfg.n_layers * BS_NLIN)
        return bs_err_set(e, "%s: metadata has no valid matrix table", s->path);
    s->n_matrices = (int)n;
    s->mats = calloc(n, sizeof *s->mats);
    if (!s->mats)
        return bs_err_set(e, "%s: out of memory", s->path);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        bs_store_matrix *m = &s->mats[i];
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *which = json_string_value(json_object_get(o, "which"));
        long long layer = 0, levels = 0, group = 0, gq = 0, k = 0, bits = 0, restart = 0;
        if (!name || !kind || !which || strlen(name) >= sizeof m->name)
            return bs_err_set(e, "%s: matrix %zu has no name, kind or which", s->path, i);
        snprintf(m->name, sizeof m->name, "%s", name);
        if (get_int(o, "layer", 0, s->cfg.n_layers - 1, &layer, s->path, m->name, e) ||
            get_int(o, "levels", 1, 4096, &levels, s->path, m->name, e) ||
            get_int(o, "group", 1, 1 << 20, &group, s->path, m->name, e) ||
            get_int(o, "gq_levels", 0, 64, &gq, s->path, m->name, e) ||
            get_int(o, "k", 0, 1 << 16, &k, s->path, m->name, e) ||
            get_int(o, "bits", 0, 16, &bits, s->path, m->name, e))
            return -1;
        restart = 0;  /* optional: absent means no restart */
        if (json_object_get(o, "restart") && get_int(o, "restart", 0, levels - 1, &restart, s->path, m->name, e))
            return -1;
        m->restart = (int)restart;
        long long frank = 0, fpaths = 0;   /* optional: absent means no floor */
        if (json_object_get(o, "floor_rank") &&
            (get_int(o, "floor_rank", 0, 1 << 20, &frank, s->path, m->name, e) ||
             get_int(o, "floor_paths", frank ? 1 : 0, BS_FLOOR_MAX_PATHS, &fpaths, s->path, m->name, e)))
            return -1;
        m->floor_rank = (int)frank;
        m->floor_paths = frank ? (int)fpaths : 0;
        m->layer = (int)layer; m->levels = (int)levels; m->group = (int)group;
        m->gq_levels = (int)gq; m->k = (int)k; m->bits = (int)bits;
        m->kind = bs_kind_parse(kind);
        m->which = -1;
        for (int w = 0; w < BS_NLIN; w++)
            if (!strcmp(which, bs_lin_name(w)))
                m->which = w;
        if (m->kind < 0 || m->which < 0)
            return bs_err_set(e, "%s: matrix %s has unknown kind '%s' or linear '%s'", s->path, m->name, kind, which);
        bs_lin_shape(&s->cfg, m->which, &m->rows, &m->cols);
        long long r = 0, c = 0;
        if (get_int(o, "rows", 1, 1 << 24, &r, s->path, m->name, e) || get_int(o, "cols", 1, 1 << 24, &c, s->path, m->name, e))
            return -1;
        if (r != m->rows || c != m->cols)
            return bs_err_set(e, "%s: matrix %s is %lldx%lld but the config makes it %dx%d", s->path, m->name, r, c,
                              m->rows, m->cols);
        if (m->floor_rank > m->rows || m->floor_rank > m->cols || (i > 0 && !m->floor_rank != !s->mats[0].floor_rank))
            return bs_err_set(e, "%s: matrix %s: a floor of rank %d (every matrix has a floor or none does, of rank "
                              "at most min(rows, cols))", s->path, m->name, m->floor_rank);
        if ((m->kind == BS_KIND_AVD && (m->k < 1 || m->k > m->rows || m->k > m->cols)) ||
            (m->kind == BS_KIND_QASYM && (m->bits < 1 || m->bits > 8 || m->levels != 1)) ||
            (m->kind == BS_KIND_GQ && m->gq_levels < 1) ||
            (m->restart && (m->kind != BS_KIND_GQ || m->restart < m->gq_levels)))
            return bs_err_set(e, "%s: matrix %s has inconsistent parameters for kind %s", s->path, m->name, kind);
        for (size_t j = 0; j < i; j++)
            if (s->mats[j].layer == m->layer && s->mats[j].which == m->which)
                return bs_err_set(e, "%s: matrix %s appears twice", s->path, m->name);
    }
    return 0;
}

/* Reads the floor section (fd open) and checks it against the metadata and the file. */
static int parse_floor(bs_store *s, int fd, json_t *fl, uint32_t version, bs_err *e)
{
    int want = s->n_matrices > 0 && s->mats[0].floor_rank > 0;
    if (!fl && !want)
        return 0;
    if (!fl || !want || version < BS_STORE_VERSION_FLOOR)
        return bs_err_set(e, "%s: the floor section and the matrices' floor ranks disagree (or the version, %u, "
                          "is below %d)", s->path, version, BS_STORE_VERSION_FLOOR);
    s->floor_at = calloc((size_t)s->n_matrices, sizeof *s->floor_at);
    if (!s->floor_at)
        return bs_err_set(e, "%s: out of memory", s->path);
    uint64_t need = bs_store_floor_layout(s->mats, s->n_matrices, s->floor_at);
    long long off = 0, bytes = 0, crc = 0;
    if (get_int(fl, "offset", 0, (long long)s->file_size, &off, s->path, "floor", e) ||
        get_int(fl, "bytes", 0, (long long)s->file_size, &bytes, s->path, "floor", e) ||
        get_int(fl, "crc32c", 0, 0xffffffffLL, &crc, s->path, "floor", e))
        return -1;
    long long sw = 0;   /* optional: absent means the blocks stand on the floor */
    if (json_object_get(fl, "switch") && get_int(fl, "switch", 1, 1 << 24, &sw, s->path, "floor", e))
        return -1;
    s->floor_switch = (int)sw;
    if ((uint64_t)bytes != need || (uint64_t)(off + bytes) > s->stack_off)
        return bs_err_set(e, "%s: the floor section (%lld bytes at %lld) does not match its matrices (%llu bytes) or "
                          "overlaps the stack", s->path, bytes, off, (unsigned long long)need);
    s->floor_bytes = need;
    s->floor = aligned_alloc(64, (need + 63) / 64 * 64);
    if (!s->floor)
        return bs_err_set(e, "%s: out of memory for the floor (%llu bytes)", s->path, (unsigned long long)need);
    if (pread_all(fd, s->floor, need, (uint64_t)off, s->path, e))
        return -1;
    if (bs_crc32c(0, s->floor, need) != (uint32_t)crc)
        return bs_err_set(e, "%s: the floor section fails its crc32c check", s->path);
    return 0;
}

static int parse_stack(bs_store *s, json_t *arr, bs_err *e)
{
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n > (1u << 24))
        return bs_err_set(e, "%s: metadata has no valid stack table", s->path);
    s->n_blocks = (int)n;
    s->blocks = calloc(n ? n : 1, sizeof *s->blocks);
    s->resident = calloc(n + 1, sizeof *s->resident);
    int *seen = calloc((size_t)s->n_matrices, sizeof *seen);
    if (!s->blocks || !s->resident || !seen) {
        free(seen);
        return bs_err_set(e, "%s: out of memory", s->path);
    }
    uint64_t end = 0;
    s->resident[0] = s->base_bytes + s->floor_bytes;
    s->min_blocks = -1;
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(arr, i);
        bs_store_block *bl = &s->blocks[i];
        if (!json_is_array(b) || json_array_size(b) != 5) {
            free(seen);
            return bs_err_set(e, "%s: stack entry %zu is malformed", s->path, i);
        }
        long long v[5];
        for (int j = 0; j < 5; j++) {
            json_t *x = json_array_get(b, (size_t)j);
            v[j] = json_is_integer(x) ? json_integer_value(x) : -1;
        }
        if (v[0] < 0 || v[0] >= s->n_matrices || v[1] < 0 || v[2] < 0 || v[3] <= 0 || v[4] < 0 || v[4] > 0xffffffffLL) {
            free(seen);
            return bs_err_set(e, "%s: stack entry %zu has out-of-range fields", s->path, i);
        }
        bl->matrix = (int)v[0]; bl->level = (int)v[1];
        bl->offset = (uint64_t)v[2]; bl->bytes = (uint64_t)v[3]; bl->crc = (uint32_t)v[4];
        const bs_store_matrix *m = &s->mats[bl->matrix];
        /* block (M, l) comes right after (M, l-1): a prefix is always a valid model */
        if (bl->level != seen[bl->matrix] || bl->level >= m->levels) {
            free(seen);
            return bs_err_set(e, "%s: stack entry %zu (%s level %d) is out of order", s->path, i, m->name, bl->level);
        }
        if (bl->bytes != bs_block_bytes(m, bl->level) || bl->offset % BS_STORE_ALIGN || bl->offset < end ||
            bl->offset + bl->bytes > s->stack_len) {
            free(seen);
            return bs_err_set(e, "%s: block %zu (%s level %d) has a bad size or offset, or lies past the stack "
                              "section", s->path, i, m->name, bl->level);
        }
        if (seen[bl->matrix]++ == 0 && ++have == s->n_matrices)
            s->min_blocks = (int)i + 1;
        end = bl->offset + bl->bytes;
        s->resident[i + 1] = s->resident[i] + bl->bytes;
    }
    for (int i = 0; i < s->n_matrices; i++)
        if (seen[i] != s->mats[i].levels) {
            int got = seen[i];
            free(seen);
            return bs_err_set(e, "%s: matrix %s has %d blocks in the stack, its table says %d", s->path,
                              s->mats[i].name, got, s->mats[i].levels);
        }
    free(seen);
    if (s->n_matrices != s->cfg.n_layers * BS_NLIN)
        return bs_err_set(e, "%s: %d matrices, the model has %d linears", s->path, s->n_matrices, s->cfg.n_layers * BS_NLIN);
    return 0;
}

/* Converts the base section (already read and checked) into fp32 arrays. */
static int parse_base(bs_store *s, json_t *desc, const uint8_t *base, uint64_t len, bs_err *e)
{
    const bs_config *c = &s->cfg;
    size_t emb = (size_t)c->vocab_size * c->dim, L = (size_t)c->n_layers;
    s->tok_emb = malloc(emb * sizeof(float));
    s->cls = s->shared_cls ? s->tok_emb : malloc(emb * sizeof(float));
    s->final_norm = malloc((size_t)c->dim * sizeof(float));
    s->att_norm = malloc(L * c->dim * sizeof(float));
    s->ffn_norm = malloc(L * c->dim * sizeof(float));
    if (!s->tok_emb || !s->cls || !s->final_norm || !s->att_norm || !s->ffn_norm)
        return bs_err_set(e, "%s: out of memory for the base", s->path);
    size_t n = json_array_size(desc);
    int att = 0, ffn = 0, got_emb = 0, got_cls = s->shared_cls, got_final = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(desc, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *dtype = json_string_value(json_object_get(t, "dtype"));
        long long off = 0, bytes = 0;
        if (!name || !dtype || get_int(t, "offset", 0, (long long)len, &off, s->path, "base", e) ||
            get_int(t, "bytes", 1, (long long)len, &bytes, s->path, "base", e) || (uint64_t)(off + bytes) > len)
            return bs_err_set(e, "%s: base tensor %zu is malformed or lies outside the base section", s->path, i);
        float *dst = NULL;
        size_t count = 0;
        if (!strcmp(name, "tok_emb")) { dst = s->tok_emb; count = emb; got_emb = 1; }
        else if (!strcmp(name, "cls") && !s->shared_cls) { dst = s->cls; count = emb; got_cls = 1; }
        else if (!strcmp(name, "final_norm")) { dst = s->final_norm; count = (size_t)c->dim; got_final = 1; }
        else if (!strcmp(name, "att_norm") && att < c->n_layers) { dst = s->att_norm + (size_t)att++ * c->dim; count = (size_t)c->dim; }
        else if (!strcmp(name, "ffn_norm") && ffn < c->n_layers) { dst = s->ffn_norm + (size_t)ffn++ * c->dim; count = (size_t)c->dim; }
        else
            return bs_err_set(e, "%s: unexpected base tensor '%s'", s->path, name);
        int f16 = !strcmp(dtype, "f16");
        if ((!f16 && strcmp(dtype, "f32")) || (uint64_t)bytes != count * (f16 ? 2 : 4))
            return bs_err_set(e, "%s: base tensor %s has dtype %s and %lld bytes, expected %zu values", s->path,
                              name, dtype, bytes, count);
        if (f16) {
            for (size_t j = 0; j < count; j++) {
                uint16_t h;
                memcpy(&h, base + off + 2 * j, 2);
                dst[j] = bs_fp16_to_f32(h);
            }
        } else {
            memcpy(dst, base + off, count * 4);
        }
    }
    if (!got_emb || !got_cls || !got_final || att != c->n_layers || ffn != c->n_layers)
        return bs_err_set(e, "%s: the base section lacks some tensors", s->path);
    return 0;
}

/* info.errors (optional): per matrix, the calibration output error left at each depth.
 * Summed over matrices along the stack it gives the loss each prefix reaches: what
 * several models under one budget are split by. */
static int parse_errors(bs_store *s, const json_t *errs, bs_err *e)
{
    if (!errs)
        return 0;
    if (!json_is_object(errs))
        return bs_err_set(e, "%s: info.errors is not an object", s->path);
    int *depth = calloc((size_t)s->n_matrices, sizeof *depth);
    s->loss = malloc(sizeof *s->loss * ((size_t)s->n_blocks + 1));
    if (!depth || !s->loss) {
        free(depth);
        return bs_err_set(e, "out of memory");
    }
    double total = 0;
    int rc = 0;
    for (int m = 0; m < s->n_matrices && !rc; m++) {
        const json_t *a = json_object_get(errs, s->mats[m].name);
        if (!json_is_array(a) || json_array_size(a) != (size_t)s->mats[m].levels + 1)
            rc = bs_err_set(e, "%s: info.errors.%s: expected %d numbers", s->path, s->mats[m].name,
                            s->mats[m].levels + 1);
        for (int d = 0; !rc && d <= s->mats[m].levels; d++)
            if (!json_is_number(json_array_get(a, (size_t)d)))
                rc = bs_err_set(e, "%s: info.errors.%s[%d] is not a number", s->path, s->mats[m].name, d);
        if (!rc)
            total += json_number_value(json_array_get(a, 0));
    }
    if (!rc) {
        s->loss[0] = total;
        for (int b = 0; b < s->n_blocks; b++) {
            const bs_store_block *k = &s->blocks[b];
            const json_t *a = json_object_get(errs, s->mats[k->matrix].name);
            int d = depth[k->matrix]++;
            total -= json_number_value(json_array_get(a, (size_t)d)) - json_number_value(json_array_get(a, (size_t)d + 1));
            s->loss[b + 1] = total;
        }
        /* a switching store: each matrix's depth 0 is its floor, which the prefixes before
         * the switch run; from the switch on every matrix is at depth ≥ 1, and the sums
         * above are exact there (the floor's terms cancel) */
        for (int n = 1; n < s->floor_switch && n <= s->n_blocks; n++)
            s->loss[n] = s->loss[0];
    }
    free(depth);
    if (rc) {
        free(s->loss);
        s->loss = NULL;
    }
    return rc;
}

double *bs_store_loss_table(const bs_store *s, bool *estimated)
{
    double *t = malloc(sizeof *t * ((size_t)s->n_blocks + 1));
    if (!t)
        return NULL;
    *estimated = !s->loss;
    if (s->loss) {
        double z = s->loss[0] > 0 ? s->loss[0] : 1;
        for (int n = 0; n <= s->n_blocks; n++)
            t[n] = s->loss[n] / z;
        return t;
    }
    /* ~1 bit a block: it halves its matrix's remaining error, a quarter of the squared one */
    double total = 0;
    for (int m = 0; m < s->n_matrices; m++)
        total += (double)s->mats[m].rows * s->mats[m].cols;
    double *left = malloc(sizeof *left * (size_t)(s->n_matrices > 0 ? s->n_matrices : 1));
    if (!left) {
        free(t);
        return NULL;
    }
    for (int m = 0; m < s->n_matrices; m++)
        left[m] = (double)s->mats[m].rows * s->mats[m].cols / (total > 0 ? total : 1);
    double sum = 1;
    t[0] = sum;
    for (int b = 0; b < s->n_blocks; b++) {
        int m = s->blocks[b].matrix;
        sum -= left[m] * 0.75;
        left[m] *= 0.25;
        t[b + 1] = sum;
    }
    free(left);
    return t;
}

int bs_store_open(bs_store *s, const char *path, bs_err *e)
{
    memset(s, 0, sizeof *s);
    s->path = strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        bs_err_set(e, "%s: cannot open: %s", path, strerror(errno));
        bs_store_close(s);
        return -1;
    }
    struct stat st;
    uint8_t hdr[HEADER_BYTES];
    char *js = NULL;
    uint8_t *base = NULL;
    int rc = -1;
    if (fstat(fd, &st) != 0 || st.st_size < HEADER_BYTES) {
        bs_err_set(e, "%s: too short to be a bitstack store", path);
        goto out;
    }
    s->file_size = (uint64_t)st.st_size;
    if (pread_all(fd, hdr, HEADER_BYTES, 0, path, e))
        goto out;
    uint32_t version, meta_crc, base_crc;
    uint64_t f[6];
    memcpy(&version, hdr + 4, 4);
    memcpy(f, hdr + 8, sizeof f);
    memcpy(&meta_crc, hdr + 56, 4);
    memcpy(&base_crc, hdr + 60, 4);
    if (memcmp(hdr, "BSTK", 4) != 0) {
        bs_err_set(e, "%s: not a bitstack store (bad magic)", path);
        goto out;
    }
    if (version < BS_STORE_VERSION || version > BS_STORE_VERSION_BPE) {
        bs_err_set(e, "%s: store version %u; this build reads versions %d to %d", path, version, BS_STORE_VERSION,
                   BS_STORE_VERSION_BPE);
        goto out;
    }
    uint64_t meta_off = f[0], meta_len = f[1], base_off = f[2], base_len = f[3];
    s->stack_off = f[4];
    s->stack_len = f[5];
    if (meta_len > META_MAX || meta_off < HEADER_BYTES || meta_off > s->file_size || meta_len > s->file_size - meta_off ||
        base_off > s->file_size || base_len > s->file_size - base_off || s->stack_off % BS_STORE_PAGE ||
        s->stack_off > s->file_size || s->stack_len > s->file_size - s->stack_off) {
        bs_err_set(e, "%s: truncated or corrupt: sections (metadata %llu+%llu, base %llu+%llu, stack %llu+%llu) "
                   "do not fit the file of %llu bytes", path, (unsigned long long)meta_off, (unsigned long long)meta_len,
                   (unsigned long long)base_off, (unsigned long long)base_len, (unsigned long long)s->stack_off,
                   (unsigned long long)s->stack_len, (unsigned long long)s->file_size);
        goto out;
    }
    js = malloc(meta_len + 1);
    base = malloc(base_len ? base_len : 1);
    if (!js || !base) {
        bs_err_set(e, "%s: out of memory", path);
        goto out;
    }
    if (pread_all(fd, js, meta_len, meta_off, path, e) || pread_all(fd, base, base_len, base_off, path, e))
        goto out;
    if (bs_crc32c(0, js, meta_len) != meta_crc || bs_crc32c(0, base, base_len) != base_crc) {
        bs_err_set(e, "%s: the %s section fails its crc32c check", path,
                   bs_crc32c(0, js, meta_len) != meta_crc ? "metadata" : "base");
        goto out;
    }
    js[meta_len] = 0;
    json_error_t jerr;
    s->meta = json_loadb(js, meta_len, 0, &jerr);
    if (!s->meta || !json_is_object(s->meta)) {
        bs_err_set(e, "%s: metadata is not a JSON object: %s", path, jerr.text);
        goto out;
    }
    s->base_bytes = base_len;
    if (parse_config(s, json_object_get(s->meta, "config"), e) ||
        parse_tokenizer(s, json_object_get(s->meta, "tokenizer"), version, e) ||
        parse_matrices(s, json_object_get(s->meta, "matrices"), e) ||
        parse_floor(s, fd, json_object_get(s->meta, "floor"), version, e) ||
        parse_stack(s, json_object_get(s->meta, "stack"), e) ||
        parse_base(s, json_object_get(s->meta, "base"), base, base_len, e))
        goto out;
    s->linear_params = bs_model_linear_params(&s->cfg);
    if (s->floor_switch > 0 && (s->min_blocks < 0 || s->floor_switch < s->min_blocks || s->floor_switch > s->n_blocks)) {
        bs_err_set(e, "%s: the floor switches to the stack at %d blocks, where some matrix has no block yet or past "
                   "the %d blocks of the stack", path, s->floor_switch, s->n_blocks);
        goto out;
    }
    if (s->floor)
        s->min_blocks = 0;   /* the floor alone is a working model */
    if (parse_errors(s, json_object_get(json_object_get(s->meta, "info"), "errors"), e))
        goto out;
    if (s->min_blocks < 0) {
        bs_err_set(e, "%s: some matrix has no block", path);
        goto out;
    }
    rc = 0;
out:
    close(fd);
    free(js);
    free(base);
    if (rc)
        bs_store_close(s);
    return rc;
}

void bs_store_close(bs_store *s)
{
    free(s->path);
    free(s->mats);
    free(s->blocks);
    free(s->resident);
    free(s->loss);
    free(s->floor);
    free(s->floor_at);
    json_decref(s->meta);
    if (s->tok)
        bs_tok_free(s->tok);
    if (s->cls != s->tok_emb)
        free(s->cls);
    free(s->tok_emb);
    free(s->final_norm);
    free(s->att_norm);
    free(s->ffn_norm);
    memset(s, 0, sizeof *s);
}

uint64_t bs_store_prefix_end(const bs_store *s, int n)
{
    if (n <= 0)
        return 0;
    const bs_store_block *b = &s->blocks[n - 1];
    return b->offset + b->bytes;
}

int bs_store_verify(const bs_store *s, const uint8_t *buf, int from, int to, bs_err *e)
{
    for (int i = from; i < to; i++) {
        const bs_store_block *b = &s->blocks[i];
        if (bs_crc32c(0, buf + b->offset, b->bytes) != b->crc)
            return bs_err_set(e, "%s: block %d (%s level %d) fails its crc32c check", s->path, i,
                              s->mats[b->matrix].name, b->level);
    }
    return 0;
}

int bs_store_read_range(const bs_store *s, int a, int b, uint8_t *buf, bs_err *e)
{
    if (a < 0 || b < a || b > s->n_blocks)
        return bs_err_set(e, "%s: blocks [%d, %d) asked, the stack has %d", s->path, a, b, s->n_blocks);
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bs_err_set(e, "%s: cannot open: %s", s->path, strerror(errno));
    uint64_t from = bs_store_prefix_end(s, a), to = bs_store_prefix_end(s, b);
    int rc = pread_all(fd, buf + from, to - from, s->stack_off + from, s->path, e);
    close(fd);
    return rc ? -1 : bs_store_verify(s, buf, a, b, e);
}

int bs_store_read_prefix(const bs_store *s, int n, uint8_t *buf, bs_err *e)
{
    return bs_store_read_range(s, 0, n, buf, e);
}

double bs_store_bpw(const bs_store *s, int n)
{
    return 8.0 * (double)(s->resident[n] - s->base_bytes) / (double)s->linear_params;
}

int bs_store_verify_file(const bs_store *s, bs_err *e)
{
    const uint64_t window = 8u << 20;
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bs_err_set(e, "%s: cannot open: %s", s->path, strerror(errno));
    uint8_t *buf = NULL;
    uint64_t cap = 0;
    int rc = 0;
    for (int a = 0; a < s->n_blocks && !rc;) {
        uint64_t from = bs_store_prefix_end(s, a);
        int b = a + 1;
        while (b < s->n_blocks && bs_store_prefix_end(s, b + 1) - from <= window)
            b++;
        uint64_t n = bs_store_prefix_end(s, b) - from;
        if (n > cap) {
            free(buf);
            cap = n;
            if (!(buf = malloc(cap))) {
                rc = bs_err_set(e, "out of memory for %llu bytes", (unsigned long long)cap);
                break;
            }
        }
        rc = pread_all(fd, buf, n, s->stack_off + from, s->path, e);
        for (int i = a; i < b && !rc; i++) {
            const bs_store_block *k = &s->blocks[i];
            if (bs_crc32c(0, buf + (k->offset - from), k->bytes) != k->crc)
                rc = bs_err_set(e, "%s: block %d (%s level %d) fails its crc32c check", s->path, i,
                                s->mats[k->matrix].name, k->level);
        }
        a = b;
    }
    free(buf);
    close(fd);
    return rc;
}
