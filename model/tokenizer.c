/* SentencePiece-style BPE over a scored vocabulary (see tokenizer.h).
 *
 * Encoding keeps the text as a doubly linked list of symbols (byte ranges of one
 * buffer) and a max-heap of candidate merges. A merge only changes its two
 * neighbours' candidates, so stale heap entries are detected when popped (a symbol
 * that changed has a different length) instead of being removed: O(n log n).
 * The text is first cut where no vocabulary piece could ever span the cut (in Llama
 * vocabularies: before each space that follows a non-space), which gives the same ids
 * and keeps each heap tiny. A tokenizer is read-only after construction, so threads
 * may share one. */
#include "model/tokenizer.h"
#include "model/merge_queue.h"

#include "model/gguf.h"
#include "model/tokenizer_bpe.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bs_tokenizer {
    int n;
    char *arena;          /* every piece, spaces as ' ', each followed by a NUL */
    uint32_t *off, *len;
    float *score;
    int *type;
    int bos, eos, unk;
    int add_space_prefix; /* GGUF's tokenizer.ggml.add_space_prefix, else 1 */
    int byte_id[256];     /* id of <0xXX>, or -1 */
    int has_bytes;
    uint32_t max_len;     /* longest mergeable piece: longer candidates need no lookup */
    int *slot;            /* open addressing, piece id or -1; only mergeable pieces */
    uint32_t mask;
    /* bit a*256+b: some mergeable piece holds byte a followed by byte b. Where the text
     * has an unmarked pair no merge can ever cross, so the two sides are encoded apart
     * (in Llama vocabularies: before every space that follows a non-space). */
    uint64_t adjacent[256 * 256 / 64];
    int single[256];      /* lookup() of each one-byte text, the commonest characters */
    unsigned char bytes[256]; /* bytes[b] == b: what byte pieces decode to */
    bs_bpe *bpe;          /* set for a byte-level BPE vocabulary: it encodes and decodes */
};

/* SentencePiece's surface for <unk> when decoding (" ⁇ "). */
static const char unk_surface[] = " \xE2\x81\x87 ";

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;  /* FNV-1a: pieces are short, this is fast enough */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int lookup(const bs_tokenizer *t, const char *s, size_t n)
{
    if (n == 0 || n > t->max_len)
        return -1;
    for (uint32_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int id = t->slot[i];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0)
            return id;
    }
}

/* Pieces BPE may produce. Control, unknown, unused and byte pieces are only ever
 * emitted explicitly, so "<s>" typed in the text stays text. */
static int mergeable(int type)
{
    return type != BS_TOK_UNKNOWN && type != BS_TOK_CONTROL && type != BS_TOK_UNUSED &&
           type != BS_TOK_BYTE;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte a "<0xXX>" piece stands for, or -1. */
static int byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int is_text(const char *s, size_t n, const char *c)
{
    return strlen(c) == n && memcmp(s, c, n) == 0;
}

void bs_tok_free(bs_tokenizer *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->slot);
    bs_bpe_free(t->bpe);
    free(t);
}

bs_tokenizer *bs_tok_new(int n, const char *const *pieces, const size_t *lens,
                         const float *scores, const int *types,
                         int bos, int eos, int unk, bs_err *e)
{
    if (n <= 0 || n > (1 << 24)) {
        bs_err_set(e, "tokenizer: vocabulary size %d out of range", n);
        return NULL;
    }
    bos = bos < 0 ? 1 : bos;
    eos = eos < 0 ? 2 : eos;
    unk = unk < 0 ? 0 : unk;
    if (bos >= n || eos >= n || unk >= n) {
        bs_err_set(e, "tokenizer: bos/eos/unk id %d/%d/%d outside a vocabulary of %d",
                   bos, eos, unk, n);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] > 65535) {
            bs_err_set(e, "tokenizer: piece %d is %zu bytes long", i, lens[i]);
            return NULL;
        }
        total += lens[i] + 1;
    }
    bs_tokenizer *t = calloc(1, sizeof *t);
    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)n)
        cap <<= 1;
    if (t) {
        t->arena = malloc(total);
        t->off = malloc((size_t)n * sizeof *t->off);
        t->len = malloc((size_t)n * sizeof *t->len);
        t->score = malloc((size_t)n * sizeof *t->score);
        t->type = malloc((size_t)n * sizeof *t->type);
        t->slot = malloc((size_t)cap * sizeof *t->slot);
    }
    if (!t || !t->arena || !t->off || !t->len || !t->score || !t->type || !t->slot) {
        bs_tok_free(t);
        bs_err_set(e, "tokenizer: out of memory for %d pieces", n);
        return NULL;
    }
    t->n = n;
    t->bos = bos;
    t->eos = eos;
    t->unk = unk;
    t->add_space_prefix = 1;
    t->mask = cap - 1;
    memset(t->slot, -1, (size_t)cap * sizeof *t->slot);
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        t->bytes[b] = (unsigned char)b;
    }

    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        /* U+2581 (e2 96 81) is SentencePiece's space; one spelling inside */
        const char *s = pieces[i];
        uint32_t start = (uint32_t)pos;
        for (size_t k = 0; k < lens[i]; k++) {
            if (k + 2 < lens[i] && (unsigned char)s[k] == 0xE2 &&
                (unsigned char)s[k + 1] == 0x96 && (unsigned char)s[k + 2] == 0x81) {
                t->arena[pos++] = ' ';
                k += 2;
            } else {
                t->arena[pos++] = s[k];
            }
        }
        t->arena[pos++] = '\0';
        t->off[i] = start;
        t->len[i] = (uint32_t)(pos - 1 - start);
        t->score[i] = scores ? scores[i] : 0.0f;

        const char *p = t->arena + start;
        size_t pl = t->len[i];
        int ty;
        if (types) {
            ty = types[i];
        } else if (i == unk || is_text(pieces[i], lens[i], "<unk>")) {
            ty = BS_TOK_UNKNOWN;
        } else if (i == bos || i == eos || i <= 2 || is_text(pieces[i], lens[i], "<s>") ||
                   is_text(pieces[i], lens[i], "</s>")) {
            ty = BS_TOK_CONTROL;
        } else if (byte_piece(p, pl) >= 0) {
            ty = BS_TOK_BYTE;
        } else {
            ty = BS_TOK_NORMAL;
        }
        t->type[i] = ty;

        if (ty == BS_TOK_BYTE) {
            int b = byte_piece(p, pl);
            if (b < 0) {
                bs_err_set(e, "tokenizer: byte piece %d is '%.*s', not <0xXX>", i,
                           (int)(pl > 32 ? 32 : pl), p);
                bs_tok_free(t);
                return NULL;
            }
            if (t->byte_id[b] < 0)
                t->byte_id[b] = i;
            t->has_bytes = 1;
        } else if (mergeable(ty) && pl > 0) {
            uint32_t h = hash_bytes(p, pl) & t->mask;
            int dup = 0;
            for (; t->slot[h] >= 0; h = (h + 1) & t->mask) {
                int o = t->slot[h];
                if (t->len[o] == pl && memcmp(t->arena + t->off[o], p, pl) == 0) {
                    dup = 1;   /* the first id of a repeated piece wins */
                    break;
                }
            }
            if (!dup) {
                t->slot[h] = i;
                if (pl > t->max_len)
                    t->max_len = (uint32_t)pl;
                for (size_t k = 1; k < pl; k++) {
                    unsigned bit = (unsigned char)p[k - 1] * 256u + (unsigned char)p[k];
                    t->adjacent[bit / 64] |= 1ull << (bit % 64);
                }
            }
        }
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->single[b] = lookup(t, &c, 1);
    }
    return t;
}

bs_tokenizer *bs_tok_load_llama2c(const char *path, int vocab_size, bs_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        bs_err_set(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || size > INT_MAX || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        bs_err_set(e, "%s: cannot size the file", path);
        return NULL;
    }
    buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(buf);
        bs_err_set(e, "%s: cannot read %ld bytes", path, size);
        return NULL;
    }
    fclose(f);

    /* First pass counts and checks the pieces, second points at them. vocab_size <= 0
     * means "every piece in the file": the format itself does not store the count. */
    bs_tokenizer *t = NULL;
    const char **pieces = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t max_len;
    if (size < 4) {
        bs_err_set(e, "%s: too short for a llama2.c tokenizer", path);
        goto out;
    }
    memcpy(&max_len, buf, 4);
    int n = 0;
    size_t p = 4;
    while (p < (size_t)size && (vocab_size <= 0 || n < vocab_size)) {
        int32_t len;
        if ((size_t)size - p < 8) {
            bs_err_set(e, "%s: piece %d: truncated header at byte %zu", path, n, p);
            goto out;
        }
        memcpy(&len, buf + p + 4, 4);
        if (len < 0 || len > max_len || (size_t)len > (size_t)size - p - 8) {
            bs_err_set(e, "%s: piece %d: bad length %d (max_token_length %d, %zu bytes left)",
                       path, n, (int)len, (int)max_len, (size_t)size - p - 8);
            goto out;
        }
        p += 8 + (size_t)len;
        n++;
    }
    if (vocab_size > 0 && n < vocab_size) {
        bs_err_set(e, "%s: holds %d pieces, the model needs %d", path, n, vocab_size);
        goto out;
    }
    if (n == 0) {
        bs_err_set(e, "%s: no pieces", path);
        goto out;
    }
    pieces = malloc((size_t)n * sizeof *pieces);
    lens = malloc((size_t)n * sizeof *lens);
    scores = malloc((size_t)n * sizeof *scores);
    if (!pieces || !lens || !scores) {
        bs_err_set(e, "%s: out of memory for %d pieces", path, n);
        goto out;
    }
    p = 4;
    for (int i = 0; i < n; i++) {
        int32_t len;
        memcpy(&scores[i], buf + p, 4);
        memcpy(&len, buf + p + 4, 4);
        pieces[i] = buf + p + 8;
        lens[i] = (size_t)len;
        p += 8 + (size_t)len;
    }
    t = bs_tok_new(n, pieces, lens, scores, NULL, -1, -1, -1, e);
    if (!t)
        bs_err_wrap(e, "%s", path);
out:
    free(pieces);
    free(lens);
    free(scores);
    free(buf);
    return t;
}

bs_tokenizer *bs_tok_from_gguf(const struct bs_gguf *g, bs_err *e)
{
    bs_gguf_str model;
    int bpe = 0;
    if (bs_gguf_get_str(g, "tokenizer.ggml.model", &model) == 0) {
        bpe = bs_gguf_str_eq(model, "gpt2");
        if (!bpe && !bs_gguf_str_eq(model, "llama")) {
            bs_err_set(e, "%s: tokenizer.ggml.model is '%.*s'; bitstack reads 'llama' (SentencePiece) "
                       "and 'gpt2' (byte-level BPE)",
                       g->path, (int)(model.len > 32 ? 32 : model.len), model.s);
            return NULL;
        }
    }
    /* BPE vocabularies differ in their pre-tokenizer pattern (Llama 3, Qwen ...); only
     * GPT-2's is implemented, and a wrong one would silently give other ids */
    bs_gguf_str pre;
    if (bpe && bs_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == 0 && !bs_gguf_str_eq(pre, "gpt-2")) {
        bs_err_set(e, "%s: tokenizer.ggml.pre is '%.*s'; bitstack's byte-level BPE implements GPT-2's "
                   "pre-tokenizer ('gpt-2') only",
                   g->path, (int)(pre.len > 32 ? 32 : pre.len), pre.s);
        return NULL;
    }
    const bs_gguf_kv *tok = bs_gguf_find(g, "tokenizer.ggml.tokens");
    if (!tok || tok->type != BS_GGUF_ARRAY || tok->v.arr.type != BS_GGUF_STRING) {
        bs_err_set(e, "%s: no string array tokenizer.ggml.tokens", g->path);
        return NULL;
    }
    uint64_t n = tok->v.arr.n;
    if (n == 0 || n > (1 << 24)) {
        bs_err_set(e, "%s: tokenizer.ggml.tokens has %llu entries", g->path, (unsigned long long)n);
        return NULL;
    }
    const bs_gguf_kv *sc = bs_gguf_find(g, "tokenizer.ggml.scores");
    const bs_gguf_kv *ty = bs_gguf_find(g, "tokenizer.ggml.token_type");
    if (sc && (sc->type != BS_GGUF_ARRAY || sc->v.arr.n != n ||
               (sc->v.arr.type != BS_GGUF_F32 && sc->v.arr.type != BS_GGUF_F64))) {
        bs_err_set(e, "%s: tokenizer.ggml.scores is not %llu floats", g->path,
                   (unsigned long long)n);
        return NULL;
    }
    if (ty && (ty->type != BS_GGUF_ARRAY || ty->v.arr.n != n || ty->v.arr.strs ||
               ty->v.arr.type == BS_GGUF_F32 || ty->v.arr.type == BS_GGUF_F64 ||
               ty->v.arr.type == BS_GGUF_BOOL)) {
        bs_err_set(e, "%s: tokenizer.ggml.token_type is not %llu integers", g->path,
                   (unsigned long long)n);
        return NULL;
    }

    bs_tokenizer *t = NULL;
    const char **pieces = malloc(n * sizeof *pieces);
    size_t *lens = malloc(n * sizeof *lens);
    float *scores = sc ? malloc(n * sizeof *scores) : NULL;
    int *types = ty ? malloc(n * sizeof *types) : NULL;
    if (!pieces || !lens || (sc && !scores) || (ty && !types)) {
        bs_err_set(e, "%s: out of memory for %llu pieces", g->path, (unsigned long long)n);
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        pieces[i] = tok->v.arr.strs[i].s;
        lens[i] = (size_t)tok->v.arr.strs[i].len;
        if (sc)
            scores[i] = (float)bs_gguf_arr_f(sc, i);
        if (ty)
            types[i] = (int)bs_gguf_arr_i(ty, i);
    }
    int64_t bos = -1, eos = -1, unk = -1, prefix = 1;
    bs_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos);
    bs_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos);
    bs_gguf_get_int(g, "tokenizer.ggml.unknown_token_id", &unk);
    bs_gguf_get_int(g, "tokenizer.ggml.add_space_prefix", &prefix);
    if (bos >= (int64_t)n || eos >= (int64_t)n || unk >= (int64_t)n) {
        bs_err_set(e, "%s: bos/eos/unk id %lld/%lld/%lld outside a vocabulary of %llu", g->path,
                   (long long)bos, (long long)eos, (long long)unk, (unsigned long long)n);
        goto out;
    }
    t = bs_tok_new((int)n, pieces, lens, scores, types, (int)bos, (int)eos, (int)unk, e);
    if (!t) {
        bs_err_wrap(e, "%s", g->path);
        goto out;
    }
    t->add_space_prefix = prefix != 0;
    if (bpe) {
        /* byte-level BPE spells spaces itself: there is no dummy prefix */
        t->add_space_prefix = 0;
        t->bpe = bs_bpe_new(t->n, pieces, lens, t->type, bs_gguf_find(g, "tokenizer.ggml.merges"), g->path, e);
        if (!t->bpe) {
            bs_tok_free(t);
            t = NULL;
        }
    }
out:
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return t;
}

bs_tokenizer *bs_tok_new_bpe(int n, const char *const *pieces, const size_t *lens, const float *scores,
                             const int *types, const int *pairs, int n_merges, int bos, int eos, int unk,
                             bs_err *e)
{
    bs_tokenizer *t = bs_tok_new(n, pieces, lens, scores, types, bos, eos, unk, e);
    if (!t)
        return NULL;
    t->add_space_prefix = 0;
    t->bpe = bs_bpe_new_pairs(t->n, pieces, lens, t->type, pairs, n_merges, "tokenizer", e);
    if (!t->bpe) {
        bs_tok_free(t);
        return NULL;
    }
    return t;
}

const char *bs_tok_piece_bpe_raw(const bs_tokenizer *t, int id, size_t *len)
{
    if (!t->bpe || id < 0 || id >= t->n) {
        *len = 0;
        return "";
    }
    return bs_bpe_piece_raw(t->bpe, id, len);
}

int *bs_tok_bpe_merges(const bs_tokenizer *t, int *n)
{
    *n = 0;
    return t->bpe ? bs_bpe_merges(t->bpe, n) : NULL;
}

int bs_tok_vocab_size(const bs_tokenizer *t) { return t->n; }
int bs_tok_bos(const bs_tokenizer *t) { return t->bos; }
int bs_tok_eos(const bs_tokenizer *t) { return t->eos; }
int bs_tok_unk(const bs_tokenizer *t) { return t->unk; }
int bs_tok_has_bytes(const bs_tokenizer *t) { return t->has_bytes; }
int bs_tok_add_space_prefix(const bs_tokenizer *t) { return t->add_space_prefix; }
int bs_tok_is_bpe(const bs_tokenizer *t) { return t->bpe != NULL; }
void bs_tok_set_add_space_prefix(bs_tokenizer *t, int on) { t->add_space_prefix = t->bpe ? 0 : on != 0; }

/* ---- encoding ---- */

typedef struct {
    uint32_t start, len;  /* len 0: merged into its left neighbour */
    int prev, next;
    int id;               /* the piece this symbol is, or -1 (a character not in the vocabulary) */
} sym;

/* Queues the merge of symbol l with its right neighbour if that makes a piece. */
static int try_pair(const bs_tokenizer *t, const char *buf, const sym *s, int l, bs_mq *h)
{
    if (l < 0 || s[l].next < 0)
        return 0;
    uint32_t n = s[l].len + s[s[l].next].len;
    int id = lookup(t, buf + s[l].start, n);
    if (id < 0)
        return 0;
    /* a: the pair's length when queued, to spot entries gone stale */
    return bs_mq_push(h, (bs_mq_item){ .prio = -(double)t->score[id], .left = l, .a = (int)n, .b = id });
}

/* Length of the UTF-8 character at p (at most n bytes), or 1 for a byte that does not
 * start a well-formed one: such bytes are their own symbol and fall back to <0xXX>. */
static uint32_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char b = p[0];
    uint32_t len;
    unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (b < 0x80)
        return 1;
    else if (b >= 0xC2 && b <= 0xDF)
        len = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0)
            lo = 0xA0;         /* overlong */
        else if (b == 0xED)
            hi = 0x9F;         /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;         /* past U+10FFFF */
    } else {
        return 1;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 1;
    for (uint32_t k = 2; k < len; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 1;
    return len;
}

int bs_tok_encode(const bs_tokenizer *t, const char *text, size_t len,
                  int add_bos, int add_prefix, int **ids, int *n, bs_err *e)
{
    if (t->bpe)
        return bs_bpe_encode(t->bpe, text, len, add_bos ? t->bos : -1, ids, n, e);
    *ids = NULL;
    *n = 0;
    /* SentencePiece adds no dummy prefix to an empty text: "" encodes to nothing. */
    int prefix = add_prefix && len > 0;
    if (len > (size_t)INT_MAX / 8)
        return bs_err_set(e, "tokenizer: text of %zu bytes is too long", len);
    size_t blen = len + (size_t)prefix;
    char *buf = malloc(blen + 1);
    sym *s = malloc((blen + 1) * sizeof *s);
    /* every symbol becomes at most 4 byte pieces, but never more pieces than bytes */
    int *out = malloc((blen + 2) * sizeof *out);
    bs_mq h = { 0 };
    int rc = -1;
    if (!buf || !s || !out)
        goto oom;
    if (prefix)
        buf[0] = ' ';
    if (len)
        memcpy(buf + prefix, text, len);

    int ns = 0;
    for (size_t p = 0; p < blen;) {
        uint32_t cl = utf8_len((const unsigned char *)buf + p, blen - p);
        int id = cl == 1 ? t->single[(unsigned char)buf[p]] : lookup(t, buf + p, cl);
        s[ns] = (sym){ .start = (uint32_t)p, .len = cl, .prev = ns - 1, .next = ns + 1, .id = id };
        ns++;
        p += cl;
    }

    int m = 0;
    if (add_bos)
        out[m++] = t->bos;
    /* Segments that no merge can join are encoded one after the other: the same result
     * as one pass over the whole text, with a heap that stays small and in cache. */
    for (int a = 0, b; a < ns; a = b) {
        for (b = a + 1; b < ns; b++) {
            unsigned bit = (unsigned char)buf[s[b].start - 1] * 256u +
                           (unsigned char)buf[s[b].start];
            if (!(t->adjacent[bit / 64] >> (bit % 64) & 1))
                break;
        }
        s[a].prev = -1;
        s[b - 1].next = -1;
        h.n = 0;
        for (int i = a; i + 1 < b; i++)
            if (try_pair(t, buf, s, i, &h))
                goto oom;
        while (h.n) {
            bs_mq_item c = bs_mq_pop(&h);
            sym *l = &s[c.left];
            if (l->len == 0 || l->next < 0 || l->len + s[l->next].len != (uint32_t)c.a)
                continue;
            sym *r = &s[l->next];
            l->len += r->len;
            l->id = c.b;
            l->next = r->next;
            if (r->next >= 0)
                s[r->next].prev = c.left;
            r->len = 0;
            if (try_pair(t, buf, s, l->prev, &h) || try_pair(t, buf, s, c.left, &h))
                goto oom;
        }
        for (int i = a; i >= 0; i = s[i].next) {
            if (s[i].id >= 0) {
                out[m++] = s[i].id;
            } else if (t->has_bytes) {
                for (uint32_t k = 0; k < s[i].len; k++) {
                    int id = t->byte_id[(unsigned char)buf[s[i].start + k]];
                    out[m++] = id >= 0 ? id : t->unk;
                }
            } else {
                out[m++] = t->unk;   /* one <unk> per unknown character, as SentencePiece does */
            }
        }
    }
    *ids = out;
    *n = m;
    out = NULL;
    rc = 0;
    goto done;
oom:
    bs_err_set(e, "tokenizer: out of memory encoding %zu bytes", len);
done:
    free(out);
    free(buf);
    free(s);
    bs_mq_free(&h);
    return rc;
}

/* ---- decoding ---- */

const char *bs_tok_piece(const bs_tokenizer *t, int prev, int id, size_t *len)
{
    const char *p;
    size_t n;
    if (t->bpe)
        return bs_bpe_piece(t->bpe, id, len);
    if (id < 0 || id >= t->n || t->type[id] == BS_TOK_CONTROL) {
        *len = 0;
        return "";
    }
    int ty = t->type[id];
    if (ty == BS_TOK_BYTE) {
        p = (const char *)&t->bytes[byte_piece(t->arena + t->off[id], t->len[id])];
        n = 1;
    } else if (ty == BS_TOK_UNKNOWN) {
        p = unk_surface;
        n = sizeof unk_surface - 1;
    } else {
        p = t->arena + t->off[id];
        n = t->len[id];
    }
    /* the dummy prefix: a text's first piece starts with the space the encoder added */
    if ((prev < 0 || prev == t->bos) && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    *len = n;
    return p;
}

char *bs_tok_decode(const bs_tokenizer *t, const int *ids, int n, size_t *len)
{
    size_t total = 1;
    for (int i = 0; i < n; i++) {
        size_t l;
        bs_tok_piece(t, i ? ids[i - 1] : -1, ids[i], &l);
        total += l;
    }
    char *s = malloc(total);
    if (!s)
        return NULL;
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        size_t l;
        const char *p = bs_tok_piece(t, i ? ids[i - 1] : -1, ids[i], &l);
        memcpy(s + pos, p, l);
        pos += l;
    }
    s[pos] = '\0';
    if (len)
        *len = pos;
    return s;
}

const char *bs_tok_piece_raw(const bs_tokenizer *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n) {
        *len = 0;
        return "";
    }
    *len = t->len[id];
    return t->arena + t->off[id];
}

float bs_tok_score(const bs_tokenizer *t, int id)
{
    return id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

int bs_tok_type(const bs_tokenizer *t, int id)
{
    return id >= 0 && id < t->n ? t->type[id] : 0;
}
