/* Byte-level BPE (see tokenizer_bpe.h). Each pre-tokenized piece is merged on its own
 * with a min-heap of candidate pairs; a merge changes only its neighbours' pairs, so
 * stale heap entries are recognised when popped (a side's id changed) rather than
 * removed. A bs_bpe is read-only after construction: threads may share one. */
#include "model/tokenizer_bpe.h"
#include "model/merge_queue.h"

#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/unicode_classes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct bs_bpe {
    int n;
    char *arena;            /* pieces as stored, then their decoded bytes */
    uint32_t *off, *len;    /* piece i as stored */
    uint32_t *doff, *dlen;  /* piece i decoded to bytes */
    int *slot;              /* piece text -> id, open addressing, -1 empty */
    uint32_t mask;
    struct merge { uint64_t key; int rank, id; } *merges;  /* (left, right) -> rank, result */
    uint32_t mmask;
    int n_merges;           /* entries in merges */
    int byte_id[256];       /* the piece spelling each byte alone */
};

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int piece_id(const bs_bpe *b, const char *s, size_t n)
{
    for (uint32_t i = hash_bytes(s, n) & b->mask;; i = (i + 1) & b->mask) {
        int id = b->slot[i];
        if (id < 0)
            return -1;
        if (b->len[id] == n && memcmp(b->arena + b->off[id], s, n) == 0)
            return id;
    }
}

static uint32_t hash_key(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static const struct merge *find_merge(const bs_bpe *b, int l, int r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint32_t i = hash_key(key) & b->mmask;; i = (i + 1) & b->mmask) {
        const struct merge *m = &b->merges[i];
        if (m->rank < 0)
            return NULL;
        if (m->key == key)
            return m;
    }
}

/* GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other
 * 68 bytes (controls, space, DEL, NBSP, soft hyphen ...) for U+0100.. in byte order. */
static void byte_alphabet(uint32_t cp_of[256])
{
    uint32_t next = 256;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
        cp_of[c] = printable ? (uint32_t)c : next++;
    }
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one code point at p (n bytes left) into *cp and returns its length; a byte
 * that does not start well-formed UTF-8 is a length-1 "code point" above U+10FFFF,
 * which no class claims, so it pre-tokenizes as punctuation would. */
static uint32_t get_utf8(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char c = p[0];
    uint32_t len, v;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f;
        lo = c == 0xe0 ? 0xa0 : lo;
        hi = c == 0xed ? 0x9f : hi;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07;
        lo = c == 0xf0 ? 0x90 : lo;
        hi = c == 0xf4 ? 0x8f : hi;
    } else {
        *cp = 0x110000u + c;
        return 1;
    }
    if (n < len || p[1] < lo || p[1] > hi) {
        *cp = 0x110000u + c;
        return 1;
    }
    for (uint32_t k = 1; k < len; k++) {
        if (k > 1 && (p[k] & 0xc0) != 0x80) {
            *cp = 0x110000u + c;
            return 1;
        }
        v = v << 6 | (p[k] & 0x3f);
    }
    *cp = v;
    return len;
}

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

enum { C_SPACE, C_LETTER, C_NUMBER, C_OTHER };

/* Unicode's White_Space property, and the L and N general categories. */
static int cp_class(uint32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
        cp == 0x3000)
        return C_SPACE;
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return C_LETTER;
        return cp >= '0' && cp <= '9' ? C_NUMBER : C_OTHER;
    }
    if (in_ranges(bs_uni_letter, sizeof bs_uni_letter / sizeof bs_uni_letter[0], cp))
        return C_LETTER;
    if (in_ranges(bs_uni_number, sizeof bs_uni_number / sizeof bs_uni_number[0], cp))
        return C_NUMBER;
    return C_OTHER;
}

void bs_bpe_free(bs_bpe *b)
{
    if (!b)
        return;
    free(b->arena);
    free(b->off);
    free(b->len);
    free(b->doff);
    free(b->dlen);
    free(b->slot);
    free(b->merges);
    free(b);
}

static int by_rank(const void *x, const void *y)
{
    int a = *(const int *)x, c = *(const int *)y;
    return (a > c) - (a < c);
}

static bs_bpe *fail(bs_bpe *b, bs_err *e, const char *msg, const char *path)
{
    bs_err_set(e, "%s: %s", path, msg);
    bs_bpe_free(b);
    return NULL;
}

/* The pieces and their decoded bytes, with room for nm merges (none added yet). */
static bs_bpe *vocab_new(int n, const char *const *pieces, const size_t *lens, const int *types, uint64_t nm,
                         const char *path, bs_err *e)
{
    bs_bpe *b = calloc(1, sizeof *b);
    if (!b)
        return fail(NULL, e, "out of memory for the BPE vocabulary", path);
    b->n = n;
    uint32_t cp_of[256];
    byte_alphabet(cp_of);
    int byte_of[0x144];     /* inverse of cp_of over the code points it uses */
    for (int i = 0; i < 0x144; i++)
        byte_of[i] = -1;
    for (int c = 0; c < 256; c++)
        byte_of[cp_of[c]] = c;

    /* decoded text is never longer than the piece: each character is >= 1 byte */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] > (1u << 20))
            return fail(b, e, "a vocabulary piece is longer than 1 MiB", path);
        total += 2 * lens[i];
    }
    b->arena = malloc(total ? total : 1);
    b->off = malloc((size_t)n * sizeof *b->off);
    b->len = malloc((size_t)n * sizeof *b->len);
    b->doff = malloc((size_t)n * sizeof *b->doff);
    b->dlen = malloc((size_t)n * sizeof *b->dlen);
    uint32_t cap = 2;
    while (cap < 2u * (uint32_t)n)
        cap <<= 1;
    b->mask = cap - 1;
    b->slot = malloc(cap * sizeof *b->slot);
    if (!b->arena || !b->off || !b->len || !b->doff || !b->dlen || !b->slot)
        return fail(b, e, "out of memory for the BPE vocabulary", path);
    memset(b->slot, 0xff, cap * sizeof *b->slot);
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        memcpy(b->arena + pos, pieces[i], lens[i]);
        b->off[i] = (uint32_t)pos;
        b->len[i] = (uint32_t)lens[i];
        pos += lens[i];
        if (piece_id(b, pieces[i], lens[i]) < 0) {   /* a duplicate keeps its first id */
            uint32_t h = hash_bytes(pieces[i], lens[i]) & b->mask;
            while (b->slot[h] >= 0)
                h = (h + 1) & b->mask;
            b->slot[h] = i;
        }
    }
    for (int i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)b->arena + b->off[i];
        size_t l = b->len[i], k = 0, o = pos;
        int control = types && (types[i] == BS_TOK_CONTROL || types[i] == BS_TOK_UNUSED);
        b->doff[i] = (uint32_t)pos;
        while (!control && k < l) {
            uint32_t cp, cl = get_utf8(p + k, l - k, &cp);
            if (cp < 0x144 && byte_of[cp] >= 0)
                b->arena[o++] = (char)byte_of[cp];
            else {
                /* not byte-level spelling (added or special text): the text itself */
                memcpy(b->arena + o, p + k, cl);
                o += cl;
            }
            k += cl;
        }
        b->dlen[i] = (uint32_t)(o - pos);
        pos = o;
    }
    for (int c = 0; c < 256; c++) {
        char u[4];
        b->byte_id[c] = piece_id(b, u, put_utf8(u, cp_of[c]));
    }

    if (nm > (1u << 24))
        return fail(b, e, "the merges list is absurdly long", path);
    uint32_t mcap = 2;
    while (mcap < 2 * nm + 2)
        mcap <<= 1;
    b->mmask = mcap - 1;
    b->merges = malloc(mcap * sizeof *b->merges);
    if (!b->merges)
        return fail(b, e, "out of memory for the merges", path);
    for (uint32_t i = 0; i < mcap; i++)
        b->merges[i].rank = -1;
    return b;
}

/* Merge (l, r) at this rank, when both sides and their concatenation are pieces (else it
 * can never apply). *joined (capacity *jcap) is scratch. 0, or -1 out of memory. */
static int add_merge(bs_bpe *b, int l, int r, int rank, char **joined, size_t *jcap)
{
    if (l < 0 || r < 0 || l >= b->n || r >= b->n)
        return 0;
    size_t ll = b->len[l], rl = b->len[r];
    if (ll + rl > *jcap) {
        size_t cap = 2 * (ll + rl);
        char *nj = realloc(*joined, cap);
        if (!nj)
            return -1;
        *joined = nj;
        *jcap = cap;
    }
    memcpy(*joined, b->arena + b->off[l], ll);
    memcpy(*joined + ll, b->arena + b->off[r], rl);
    int id = piece_id(b, *joined, ll + rl);
    if (id < 0)
        return 0;
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint32_t h = hash_key(key) & b->mmask;
    while (b->merges[h].rank >= 0 && b->merges[h].key != key)
        h = (h + 1) & b->mmask;
    if (b->merges[h].rank < 0) {   /* a repeated merge keeps its first (best) rank */
        b->merges[h] = (struct merge){ key, rank, id };
        b->n_merges++;
    }
    return 0;
}

bs_bpe *bs_bpe_new(int n, const char *const *pieces, const size_t *lens, const int *types,
                   const bs_gguf_kv *merges, const char *path, bs_err *e)
{
    if (!merges || merges->type != BS_GGUF_ARRAY || !merges->v.arr.strs)
        return fail(NULL, e, "tokenizer.ggml.merges (a string array) is missing for a 'gpt2' vocabulary", path);
    uint64_t nm = merges->v.arr.n;
    bs_bpe *b = vocab_new(n, pieces, lens, types, nm, path, e);
    if (!b)
        return NULL;
    char *joined = NULL;
    size_t jcap = 0;
    for (uint64_t r = 0; r < nm; r++) {
        bs_gguf_str s = merges->v.arr.strs[r];
        /* "left right": pieces never contain a plain space (it is spelled U+0120) */
        const char *sp = memchr(s.s, ' ', s.len);
        if (!sp)
            continue;
        size_t ll = (size_t)(sp - s.s), rl = s.len - ll - 1;
        if (add_merge(b, piece_id(b, s.s, ll), piece_id(b, sp + 1, rl), (int)r, &joined, &jcap)) {
            free(joined);
            return fail(b, e, "out of memory for the merges", path);
        }
    }
    free(joined);
    return b;
}

bs_bpe *bs_bpe_new_pairs(int n, const char *const *pieces, const size_t *lens, const int *types,
                         const int *pairs, int n_merges, const char *path, bs_err *e)
{
    if (n_merges < 0 || (n_merges > 0 && !pairs))
        return fail(NULL, e, "no merges for a byte-level BPE vocabulary", path);
    bs_bpe *b = vocab_new(n, pieces, lens, types, (uint64_t)n_merges, path, e);
    if (!b)
        return NULL;
    char *joined = NULL;
    size_t jcap = 0;
    for (int r = 0; r < n_merges; r++) {
        int l = pairs[2 * r], rr = pairs[2 * r + 1];
        if (l < 0 || rr < 0 || l >= n || rr >= n) {
            free(joined);
            bs_err_set(e, "%s: merge %d names piece %d, outside a vocabulary of %d", path, r, l < 0 || l >= n ? l : rr, n);
            bs_bpe_free(b);
            return NULL;
        }
        if (add_merge(b, l, rr, r, &joined, &jcap)) {
            free(joined);
            return fail(b, e, "out of memory for the merges", path);
        }
    }
    free(joined);
    return b;
}

int *bs_bpe_merges(const bs_bpe *b, int *n)
{
    /* ranks are unique and increasing along the source list: collect, then sort by rank */
    int *pairs = malloc(3 * sizeof(int) * (size_t)(b->n_merges ? b->n_merges : 1));
    if (!pairs)
        return NULL;
    int k = 0;
    for (uint32_t i = 0; i <= b->mmask; i++)
        if (b->merges[i].rank >= 0) {
            pairs[3 * k] = b->merges[i].rank;
            pairs[3 * k + 1] = (int)(b->merges[i].key >> 32);
            pairs[3 * k + 2] = (int)(uint32_t)b->merges[i].key;
            k++;
        }
    qsort(pairs, (size_t)k, 3 * sizeof(int), by_rank);
    for (int j = 0; j < k; j++) {
        pairs[2 * j] = pairs[3 * j + 1];
        pairs[2 * j + 1] = pairs[3 * j + 2];
    }
    *n = k;
    return pairs;
}

const char *bs_bpe_piece_raw(const bs_bpe *b, int id, size_t *len)
{
    *len = b->len[id];
    return b->arena + b->off[id];
}

/* ---- encoding ---- */

typedef struct { int id, prev, next; } sym;

static int push_pair(const bs_bpe *b, const sym *s, int l, bs_mq *h)
{
    if (l < 0 || s[l].next < 0)
        return 0;
    const struct merge *m = find_merge(b, s[l].id, s[s[l].next].id);
    return m ? bs_mq_push(h, (bs_mq_item){ m->rank, l, s[l].id, s[s[l].next].id }) : 0;
}

/* BPE over the bytes of one pre-token; appends the ids to out. */
static int merge_piece(const bs_bpe *b, const unsigned char *p, size_t n, sym *s, bs_mq *h,
                       int *out, int *m, bs_err *e)
{
    for (size_t i = 0; i < n; i++) {
        s[i] = (sym){ b->byte_id[p[i]], (int)i - 1, i + 1 < n ? (int)i + 1 : -1 };
        if (s[i].id < 0)
            return bs_err_set(e, "tokenizer: the vocabulary has no piece for byte 0x%02x", p[i]);
    }
    h->n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (push_pair(b, s, (int)i, h))
            return bs_err_set(e, "tokenizer: out of memory");
    while (h->n) {
        bs_mq_item c = bs_mq_pop(h);
        int l = c.left, r = s[l].next;
        if (s[l].id != c.a || r < 0 || s[r].id != c.b)
            continue;   /* stale: a side was merged since */
        s[l].id = find_merge(b, c.a, c.b)->id;
        s[l].next = s[r].next;
        if (s[r].next >= 0)
            s[s[r].next].prev = l;
        s[r].id = -1;
        if (push_pair(b, s, s[l].prev, h) || push_pair(b, s, l, h))
            return bs_err_set(e, "tokenizer: out of memory");
    }
    for (int i = 0; i >= 0; i = s[i].next)
        out[(*m)++] = s[i].id;
    return 0;
}

/* Length in bytes of the pre-token starting at byte i (GPT-2's pattern; see the header). */
static size_t pretoken(const unsigned char *t, size_t len, size_t i)
{
    uint32_t c, c2 = 0;
    size_t l1 = get_utf8(t + i, len - i, &c);
    if (c == '\'' && i + 1 < len) {
        unsigned char a = t[i + 1], b2 = i + 2 < len ? t[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return 2;
        if ((a == 'r' && b2 == 'e') || (a == 'v' && b2 == 'e') || (a == 'l' && b2 == 'l'))
            return 3;
    }
    size_t j = i, l2 = 0;
    int cls = cp_class(c);
    if (c == ' ' && i + 1 < len) {
        l2 = get_utf8(t + i + 1, len - i - 1, &c2);
        int cls2 = cp_class(c2);
        if (cls2 != C_SPACE) {
            cls = cls2;
            j = i + 1;
            l1 = l2;
        }
    }
    if (cls != C_SPACE) {
        /* a run of one class: letters, numbers, or neither-nor-space */
        j += l1;
        while (j < len) {
            uint32_t d;
            size_t l = get_utf8(t + j, len - j, &d);
            if (cp_class(d) != cls)
                break;
            j += l;
        }
        return j - i;
    }
    /* whitespace: all of it at the end of the text, else all but the last character
     * (which then leads the next pre-token), unless it is a single character */
    size_t last = i;
    int count = 0;
    while (j < len) {
        uint32_t d;
        size_t l = get_utf8(t + j, len - j, &d);
        if (cp_class(d) != C_SPACE)
            break;
        last = j;
        j += l;
        count++;
    }
    if (j < len && count > 1)
        return last - i;
    return j - i;
}

int bs_bpe_encode(const bs_bpe *b, const char *text, size_t len, int bos, int **ids, int *n, bs_err *e)
{
    *ids = NULL;
    *n = 0;
    if (len > (size_t)INT32_MAX / 2)
        return bs_err_set(e, "tokenizer: text of %zu bytes is too long", len);
    int *out = malloc((len + 1) * sizeof *out);   /* at most one id per byte, and BOS */
    sym *s = malloc((len ? len : 1) * sizeof *s);
    bs_mq h = { 0 };
    if (!out || !s) {
        free(out);
        free(s);
        return bs_err_set(e, "tokenizer: out of memory for %zu bytes", len);
    }
    int m = 0;
    if (bos >= 0)
        out[m++] = bos;
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t k = pretoken(t, len, i);
        if (merge_piece(b, t + i, k, s, &h, out, &m, e)) {
            free(out);
            free(s);
            bs_mq_free(&h);
            return -1;
        }
        i += k;
    }
    free(s);
    bs_mq_free(&h);
    *ids = out;
    *n = m;
    return 0;
}

const char *bs_bpe_piece(const bs_bpe *b, int id, size_t *len)
{
    if (id < 0 || id >= b->n) {
        *len = 0;
        return "";
    }
    *len = b->dlen[id];
    return b->arena + b->doff[id];
}
