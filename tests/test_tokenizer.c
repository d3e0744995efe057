#include "model/gguf.h"
#include "model/tokenizer.h"
#include "harness.h"

#include <stdint.h>
#include <unistd.h>

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = (n + 65536) * 2;
            char *b = realloc(buf, cap + 1);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int enc(const bs_tokenizer *t, const char *s, size_t len, int bos, int prefix, int **ids)
{
    bs_err e = { { 0 } };
    int n = -1;
    if (bs_tok_encode(t, s, len, bos, prefix, ids, &n, &e)) {
        fprintf(stderr, "encode failed: %s\n", e.msg);
        exit(1);
    }
    return n;
}

static int ids_eq(const int *a, int na, const int *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int *ids, int n)
{
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n && i < 60; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 60 ? " ...\n" : "\n");
}

static void check_ids(const bs_tokenizer *t, const char *s, int bos, const int *want, int nwant)
{
    int *ids;
    int n = enc(t, s, strlen(s), bos, 1, &ids);
    CHECKF(ids_eq(ids, n, want, nwant), "'%s' encoded to %d ids", s, n);
    if (!ids_eq(ids, n, want, nwant))
        print_ids("got", ids, n);
    free(ids);
}

/* decode(encode(s)) == s, with and without BOS; returns 1 when it held. */
static int round_trip(const bs_tokenizer *t, const char *s, size_t len)
{
    int ok = 1;
    for (int bos = 0; bos < 2; bos++) {
        int *ids;
        int n = enc(t, s, len, bos, 1, &ids);
        size_t dl;
        char *d = bs_tok_decode(t, ids, n, &dl);
        REQUIRE(d);
        if (dl != len || memcmp(d, s, len) != 0)
            ok = 0;
        /* piece by piece, the way a streaming client decodes */
        size_t pos = 0;
        for (int i = 0; i < n; i++) {
            size_t pl;
            const char *p = bs_tok_piece(t, i ? ids[i - 1] : -1, ids[i], &pl);
            if (pos + pl > len || memcmp(s + pos, p, pl) != 0) {
                ok = 0;
                break;
            }
            pos += pl;
        }
        if (pos != len)
            ok = 0;
        for (int i = bos; i < n; i++)
            if (bs_tok_type(t, ids[i]) == BS_TOK_CONTROL)
                ok = 0;
        free(d);
        free(ids);
    }
    return ok;
}

/* The textbook algorithm, kept independent of the tokenizer's hash table and heap:
 * characters (byte pieces for unknown ones), then "find the best adjacent pair, merge
 * it, rescan" until nothing merges. Pieces are found by binary search in a sorted
 * copy of the vocabulary. Quadratic, so only for short texts. */
typedef struct {
    const bs_tokenizer *t;
    int *ids;      /* mergeable pieces sorted by their bytes */
    int n;
} sorted_vocab;

static const bs_tokenizer *sort_tok;

static int cmp_piece(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int cmp_ids(const void *x, const void *y)
{
    size_t la, lb;
    const char *a = bs_tok_piece_raw(sort_tok, *(const int *)x, &la);
    const char *b = bs_tok_piece_raw(sort_tok, *(const int *)y, &lb);
    int c = cmp_piece(a, la, b, lb);
    return c ? c : *(const int *)x - *(const int *)y;
}

static sorted_vocab sort_vocab(const bs_tokenizer *t)
{
    sorted_vocab v = { t, malloc((size_t)bs_tok_vocab_size(t) * sizeof(int)), 0 };
    REQUIRE(v.ids);
    for (int i = 0; i < bs_tok_vocab_size(t); i++) {
        int ty = bs_tok_type(t, i);
        if (ty == BS_TOK_NORMAL || ty == BS_TOK_USER)
            v.ids[v.n++] = i;
    }
    sort_tok = t;
    qsort(v.ids, (size_t)v.n, sizeof(int), cmp_ids);
    return v;
}

static int find_piece(const sorted_vocab *v, const char *s, size_t n)
{
    int lo = 0, hi = v->n;   /* first piece >= s */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        size_t pl;
        const char *p = bs_tok_piece_raw(v->t, v->ids[mid], &pl);
        if (cmp_piece(p, pl, s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t pl;
    if (lo < v->n) {
        const char *p = bs_tok_piece_raw(v->t, v->ids[lo], &pl);
        if (pl == n && memcmp(p, s, n) == 0)
            return v->ids[lo];
    }
    return -1;
}

static int naive_encode(const sorted_vocab *v, const char *text, size_t len, int *out)
{
    const bs_tokenizer *t = v->t;
    size_t blen = len + (len > 0);
    char *buf = malloc(blen + 1);
    size_t *st = malloc((blen + 1) * sizeof *st), *ln = malloc((blen + 1) * sizeof *ln);
    int *id = malloc((blen + 1) * sizeof *id);
    REQUIRE(buf && st && ln && id);
    if (len) {
        buf[0] = ' ';
        memcpy(buf + 1, text, len);
    }
    int n = 0;
    for (size_t p = 0; p < blen;) {
        unsigned char c = (unsigned char)buf[p];
        size_t cl = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (p + cl > blen)   /* the texts given here are valid UTF-8 */
            cl = 1;
        st[n] = p;
        ln[n] = cl;
        id[n] = find_piece(v, buf + p, cl);
        n++;
        p += cl;
    }
    for (;;) {
        int best = -1, bid = -1;
        for (int i = 0; i + 1 < n; i++) {
            int c = find_piece(v, buf + st[i], ln[i] + ln[i + 1]);
            if (c >= 0 && (best < 0 || bs_tok_score(t, c) > bs_tok_score(t, bid))) {
                best = i;
                bid = c;
            }
        }
        if (best < 0)
            break;
        ln[best] += ln[best + 1];
        id[best] = bid;
        memmove(st + best + 1, st + best + 2, (size_t)(n - best - 2) * sizeof *st);
        memmove(ln + best + 1, ln + best + 2, (size_t)(n - best - 2) * sizeof *ln);
        memmove(id + best + 1, id + best + 2, (size_t)(n - best - 2) * sizeof *id);
        n--;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (id[i] >= 0) {
            out[m++] = id[i];
            continue;
        }
        for (size_t k = 0; k < ln[i]; k++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", (unsigned char)buf[st[i] + k]);
            int b = -1;
            for (int j = 0; j < bs_tok_vocab_size(t) && b < 0; j++) {
                size_t pl;
                const char *p = bs_tok_piece_raw(t, j, &pl);
                if (pl == 6 && memcmp(p, name, 6) == 0)
                    b = j;
            }
            out[m++] = b;
        }
    }
    free(buf);
    free(st);
    free(ln);
    free(id);
    return m;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static bs_tokenizer *load_bin(const char *rel, int vocab)
{
    bs_err e = { { 0 } };
    bs_tokenizer *t = bs_tok_load_llama2c(bs_shared(rel), vocab, &e);
    if (!t)
        fprintf(stderr, "%s\n", e.msg);
    REQUIRE(t);
    return t;
}

static bs_tokenizer *load_gguf(const char *rel)
{
    bs_err e = { { 0 } };
    bs_gguf g;
    if (bs_gguf_open(&g, bs_shared(rel), &e)) {
        fprintf(stderr, "%s\n", e.msg);
        REQUIRE(0);
    }
    bs_tokenizer *t = bs_tok_from_gguf(&g, &e);
    if (!t)
        fprintf(stderr, "%s\n", e.msg);
    bs_gguf_close(&g);   /* the tokenizer copied what it needs */
    REQUIRE(t);
    return t;
}

/* Both tokenizers give the same ids on the first `max` bytes of a file. */
static void check_same_ids(const bs_tokenizer *a, const bs_tokenizer *b, const char *rel,
                           size_t max)
{
    size_t len;
    char *text = read_file(bs_shared(rel), &len);
    REQUIRE(text);
    if (len > max)
        len = max;
    int *ia, *ib;
    int na = enc(a, text, len, 1, 1, &ia);
    int nb = enc(b, text, len, 1, 1, &ib);
    CHECKF(ids_eq(ia, na, ib, nb), "%s: %d vs %d ids", rel, na, nb);
    CHECKF(na > (int)(len / 8), "%s: only %d ids for %zu bytes", rel, na, len);
    CHECKF(round_trip(a, text, len), "%s does not round-trip", rel);
    free(ia);
    free(ib);
    free(text);
}

/* llama.cpp's own vectors: strings separated by "\n__ggml_vocab_test__\n" (each string,
 * the last included, is followed by one), one line of expected ids per string. */
static void check_vocab_tests(const bs_tokenizer *t, const char *vocab)
{
    size_t il, ol;
    char rel[256];
    snprintf(rel, sizeof rel, "models/vocab-tests/ggml-vocab-%s.gguf.inp", vocab);
    char *inp = read_file(bs_shared(rel), &il);
    snprintf(rel, sizeof rel, "models/vocab-tests/ggml-vocab-%s.gguf.out", vocab);
    char *out = read_file(bs_shared(rel), &ol);
    REQUIRE(inp && out);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep);
    int total = 0, pass = 0;
    char *s = inp, *line = out;
    int *want = malloc(4096 * sizeof *want);
    REQUIRE(want);
    for (;;) {
        char *end = memmem(s, il - (size_t)(s - inp), sep, sl);
        if (!end)
            break;
        char *eol = strchr(line, '\n');
        REQUIRE(eol);
        *eol = '\0';
        int nw = 0;
        for (char *p = line, *q; nw < 4096; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            want[nw++] = (int)v;
        }
        int *ids;
        int n = enc(t, s, (size_t)(end - s), 0, bs_tok_add_space_prefix(t), &ids);
        total++;
        if (ids_eq(ids, n, want, nw)) {
            pass++;
        } else {
            fprintf(stderr, "vocab test %d ('%.*s') differs\n", total, (int)(end - s), s);
            print_ids("want", want, nw);
            print_ids("got ", ids, n);
        }
        CHECK(round_trip(t, s, (size_t)(end - s)));
        free(ids);
        s = end + sl;
        line = eol + 1;
    }
    fprintf(stderr, "llama.cpp %s vocab tests: %d of %d pass\n", vocab, pass, total);
    CHECKF(total == 46, "%d vectors read", total);
    CHECK(pass == total);
    CHECKF(line == out + ol, "%zu bytes of .out left over", ol - (size_t)(line - out));
    free(want);
    free(inp);
    free(out);
}

static void check_round_trips(const bs_tokenizer *t, const char *name)
{
    static const char *samples[] = {
        "Once upon a time",
        "  leading spaces, trailing spaces   ",
        "tabs\tand\nnewlines\r\n\n",
        "emoji: \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
        "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB",
        "CJK: \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87\xE7\xAB\xA0 "
        "\xE4\xB8\xAD\xE6\x96\x87",
        "combining: e\xCC\x81 a\xCC\x8A\xCC\x81 Z\xCD\x91\xCD\x97\xCC\xB3",
        "invalid: \xFF\xFE \xC3( \xE2\x82 \xF0\x9F\x98 \xC0\xAF \xED\xA0\x80 \x80\x80",
        "literal sentencepiece space \xE2\x96\x81 and <s> </s> <unk> <0x41>",
        "\n<s>\n",
        " ",
        "     ",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        if (!round_trip(t, samples[i], strlen(samples[i]))) {
            fprintf(stderr, "%s: '%s' does not round-trip\n", name, samples[i]);
            bad++;
        }
    }
    CHECKF(bad == 0, "%s: %d samples fail to round-trip", name, bad);

    /* NUL bytes are text like any other */
    static const char nul[] = "a\0b\0\0 c\0";
    CHECKF(round_trip(t, nul, sizeof nul - 1), "%s: NUL bytes", name);

    /* random bytes, and random strings of code points, from a fixed seed */
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    char buf[512];
    int rbad = 0;
    for (int it = 0; it < 300; it++) {
        size_t n = rng_next(&seed) % sizeof buf;
        if (it % 2 == 0) {
            for (size_t k = 0; k < n; k++)
                buf[k] = (char)rng_next(&seed);
        } else {
            size_t k = 0;
            while (k + 4 <= n) {
                uint32_t cp = (uint32_t)(rng_next(&seed) % 0x10FFFF);
                if (rng_next(&seed) % 2)
                    cp %= 0x80;     /* plenty of ASCII so that merges happen */
                if (cp >= 0xD800 && cp < 0xE000)
                    cp = 0x20;
                if (cp < 0x80) {
                    buf[k++] = (char)cp;
                } else if (cp < 0x800) {
                    buf[k++] = (char)(0xC0 | (cp >> 6));
                    buf[k++] = (char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    buf[k++] = (char)(0xE0 | (cp >> 12));
                    buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    buf[k++] = (char)(0x80 | (cp & 0x3F));
                } else {
                    buf[k++] = (char)(0xF0 | (cp >> 18));
                    buf[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    buf[k++] = (char)(0x80 | (cp & 0x3F));
                }
            }
            n = k;
        }
        if (!round_trip(t, buf, n))
            rbad++;
    }
    CHECKF(rbad == 0, "%s: %d of 300 random strings fail to round-trip", name, rbad);
}

/* The heap-based encoder against the rescanning one on pieces of real text. */
static void check_against_naive(const bs_tokenizer *t, const char *rel, const char *name)
{
    size_t len;
    char *text = read_file(bs_shared(rel), &len);
    REQUIRE(text && len > 4096);
    uint64_t seed = 12345;
    int bad = 0;
    int *want = malloc(1024 * sizeof *want);
    REQUIRE(want);
    sorted_vocab sv = sort_vocab(t);
    for (int it = 0; it < 40; it++) {
        size_t off = rng_next(&seed) % (len - 400);
        size_t n = 1 + rng_next(&seed) % 200;
        /* start and end on character boundaries */
        while (off > 0 && ((unsigned char)text[off] & 0xC0) == 0x80)
            off++;
        while (((unsigned char)text[off + n] & 0xC0) == 0x80)
            n++;
        int nw = naive_encode(&sv, text + off, n, want);
        int *ids;
        int m = enc(t, text + off, n, 0, 1, &ids);
        if (!ids_eq(ids, m, want, nw)) {
            bad++;
            fprintf(stderr, "%s: '%.*s' differs from the naive encoder\n", name, (int)n,
                    text + off);
            print_ids("naive", want, nw);
            print_ids("heap ", ids, m);
        }
        free(ids);
    }
    CHECKF(bad == 0, "%s: %d of 40 snippets differ from the naive encoder", name, bad);
    free(sv.ids);
    free(want);
    free(text);
}

static void check_edges(const bs_tokenizer *t, const char *name)
{
    int *ids;
    int n = enc(t, "", 0, 0, 1, &ids);
    CHECKF(n == 0, "%s: empty text gave %d ids", name, n);
    free(ids);
    n = enc(t, "", 0, 1, 1, &ids);
    CHECKF(n == 1 && ids[0] == bs_tok_bos(t), "%s: empty text with BOS", name);
    free(ids);

    /* spaces only: every id is a piece of spaces, and it decodes back */
    n = enc(t, "      ", 6, 1, 1, &ids);
    int allspace = n >= 2;
    for (int i = 1; i < n; i++) {
        size_t pl;
        const char *p = bs_tok_piece_raw(t, ids[i], &pl);
        for (size_t k = 0; k < pl; k++)
            if (p[k] != ' ' && strcmp(p, "<0x20>") != 0)
                allspace = 0;
    }
    CHECKF(allspace, "%s: spaces-only text", name);
    free(ids);

    /* a very long word: 300k letters, no spaces */
    size_t L = 300000;
    char *w = malloc(L);
    REQUIRE(w);
    for (size_t k = 0; k < L; k++)
        w[k] = "abcab"[k % 5];
    CHECKF(round_trip(t, w, L), "%s: long word", name);
    memset(w, 'a', L);
    CHECKF(round_trip(t, w, L), "%s: long run of one letter", name);
    free(w);

    /* pieces that look like control or byte pieces are text, not tokens */
    static const char fake[] = "<s></s><unk>\n<s>\n<0x41>";
    n = enc(t, fake, sizeof fake - 1, 0, 1, &ids);
    int special = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] == bs_tok_bos(t) || ids[i] == bs_tok_eos(t) ||
            (bs_tok_has_bytes(t) && ids[i] == bs_tok_unk(t)))
            special++;
    CHECKF(special == 0, "%s: '<s>' in the text produced %d control ids", name, special);
    free(ids);

    /* decode strips only the dummy prefix */
    n = enc(t, "Hello", 5, 1, 1, &ids);
    REQUIRE(n >= 2);
    size_t pl;
    const char *p = bs_tok_piece(t, ids[0], ids[1], &pl);
    CHECKF(pl <= 5 && memcmp(p, "Hello", pl) == 0, "%s: first piece after BOS", name);
    p = bs_tok_piece(t, ids[1], ids[1], &pl);
    CHECKF(pl > 0 && p[0] == ' ', "%s: the same piece later keeps its space", name);
    free(ids);
}

/* A hand-made vocabulary whose answers can be worked out on paper. */
static void check_synthetic(void)
{
    static const char *const pieces[] = {
        "<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc",
        "<", "s", ">", "<s", "\xE2\x96\x81\x61" /* ▁a */, "<0x0A>", "<ctl>", "<c", "<ct", "<ctl",
        "l", "t",
    };
    enum { N = sizeof pieces / sizeof *pieces };
    size_t lens[N];
    float scores[N];
    int types[N];
    for (int i = 0; i < N; i++) {
        lens[i] = strlen(pieces[i]);
        scores[i] = -(float)i;
        types[i] = BS_TOK_NORMAL;
    }
    types[0] = BS_TOK_UNKNOWN;
    types[1] = types[2] = types[15] = BS_TOK_CONTROL;
    types[14] = BS_TOK_BYTE;
    bs_err e = { { 0 } };

    /* ab (-7) and bc (-8): the better score wins wherever it is */
    bs_tokenizer *t = bs_tok_new(N, pieces, lens, scores, types, -1, -1, -1, &e);
    REQUIRE(t);
    CHECK(bs_tok_has_bytes(t) && bs_tok_bos(t) == 1 && bs_tok_eos(t) == 2);
    size_t pl;
    const char *p = bs_tok_piece_raw(t, 13, &pl);
    CHECK(pl == 2 && memcmp(p, " a", 2) == 0);
    int *ids;
    int n = enc(t, "abc", 3, 0, 0, &ids);
    CHECK(ids_eq(ids, n, (const int[]){ 7, 6 }, 2));
    free(ids);
    /* ab (-7) beats " a" (-13), so the prefix space stays alone */
    n = enc(t, "ab", 2, 1, 1, &ids);
    CHECK(ids_eq(ids, n, (const int[]){ 1, 3, 7 }, 3));
    free(ids);
    /* control pieces are never the result of a merge, even when the parts are pieces */
    n = enc(t, "<s><ctl>", 8, 0, 0, &ids);
    CHECK(ids_eq(ids, n, (const int[]){ 12, 11, 18, 11 }, 4));
    free(ids);
    /* a newline has a byte piece; 'z' has none, so it is <unk> */
    n = enc(t, "a\nz", 3, 0, 0, &ids);
    CHECK(ids_eq(ids, n, (const int[]){ 4, 14, 0 }, 3));
    free(ids);
    bs_tok_free(t);

    /* equal scores: the leftmost pair merges first */
    scores[8] = scores[7];
    t = bs_tok_new(N, pieces, lens, scores, types, -1, -1, -1, &e);
    REQUIRE(t);
    n = enc(t, "abc", 3, 0, 0, &ids);
    CHECK(ids_eq(ids, n, (const int[]){ 7, 6 }, 2));
    free(ids);
    /* ... and the better one wins even when it is on the right */
    bs_tok_free(t);
    scores[8] = 1.0f;
    t = bs_tok_new(N, pieces, lens, scores, types, -1, -1, -1, &e);
    REQUIRE(t);
    n = enc(t, "abc", 3, 0, 0, &ids);
    CHECK(ids_eq(ids, n, (const int[]){ 4, 8 }, 2));
    free(ids);
    bs_tok_free(t);

    /* without types, ids 0..2 are special and <0xXX> pieces are bytes */
    t = bs_tok_new(N, pieces, lens, scores, NULL, -1, -1, -1, &e);
    REQUIRE(t);
    CHECK(bs_tok_type(t, 0) == BS_TOK_UNKNOWN && bs_tok_type(t, 1) == BS_TOK_CONTROL);
    CHECK(bs_tok_type(t, 14) == BS_TOK_BYTE && bs_tok_type(t, 15) == BS_TOK_NORMAL);
    bs_tok_free(t);

    /* bad input is an error, not a crash */
    CHECK(bs_tok_new(N, pieces, lens, scores, types, N, -1, -1, &e) == NULL && e.msg[0]);
    types[4] = BS_TOK_BYTE;   /* "a" is no <0xXX> */
    e.msg[0] = '\0';
    CHECK(bs_tok_new(N, pieces, lens, scores, types, -1, -1, -1, &e) == NULL && e.msg[0]);
}

/* Byte-level BPE, chosen by tokenizer.ggml.model = "gpt2": llama.cpp's vectors, round
 * trips of any bytes, and the pre-tokenizer's edges checked against GPT-2's ids. */
static void check_gpt2(void)
{
    bs_tokenizer *g = load_gguf("models/vocab-tests/ggml-vocab-gpt-2.gguf");
    CHECK(bs_tok_vocab_size(g) == 50257 && bs_tok_bos(g) == 50256 && bs_tok_eos(g) == 50256);
    CHECK(bs_tok_add_space_prefix(g) == 0);
    check_vocab_tests(g, "gpt-2");
    /* "Hello world" and BOS; add_prefix means nothing to byte-level BPE */
    check_ids(g, "Hello world", 1, (const int[]){ 50256, 15496, 995 }, 3);
    check_round_trips(g, "gpt-2 gguf");
    static const char bad[] = "\xff\xfe caf\xc3\xa9 \xe2\x82 x\x00y  \t\n";
    CHECK(round_trip(g, bad, sizeof bad - 1));
    size_t len;
    char *text = read_file(bs_shared("data/wiki.test.raw"), &len);
    REQUIRE(text);
    if (len > 200000)
        len = 200000;
    CHECK(round_trip(g, text, len));
    int *ids;
    int n = enc(g, text, len, 0, 0, &ids);
    CHECKF(n > (int)(len / 8) && n < (int)(len / 2), "wiki.test.raw: %d ids for %zu bytes", n, len);
    free(ids);
    free(text);
    /* decoding: a piece spelled with U+0120 decodes to a space */
    size_t pl;
    const char *p = bs_tok_piece(g, -1, 995, &pl);
    CHECKF(pl == 6 && memcmp(p, " world", 6) == 0, "piece 995 is '%.*s'", (int)pl, p);
    p = bs_tok_piece(g, -1, 50256, &pl);
    CHECK(pl == 0);
    bs_tok_free(g);
}

int main(void)
{
    bs_tokenizer *t512 = load_bin("models/tok512.bin", 512);
    bs_tokenizer *t32k = load_bin("models/tokenizer.bin", 32000);
    bs_tokenizer *baby = load_bin("models/babyllama-tok105.bin", 105);
    bs_tokenizer *g260 = load_gguf("models/stories260K.gguf");
    bs_tokenizer *gspm = load_gguf("models/ggml-vocab-llama-spm.gguf");

    CHECK(bs_tok_vocab_size(t512) == 512 && bs_tok_vocab_size(g260) == 512);
    CHECK(bs_tok_vocab_size(t32k) == 32000 && bs_tok_vocab_size(gspm) == 32000);
    CHECK(bs_tok_has_bytes(t512) && bs_tok_has_bytes(t32k) && bs_tok_has_bytes(gspm));
    CHECK(!bs_tok_has_bytes(baby));
    CHECK(bs_tok_bos(gspm) == 1 && bs_tok_eos(gspm) == 2 && bs_tok_unk(gspm) == 0);
    CHECK(bs_tok_type(t32k, 1) == BS_TOK_CONTROL && bs_tok_type(t32k, 0) == BS_TOK_UNKNOWN);
    CHECK(bs_tok_type(t32k, 3 + 0x41) == BS_TOK_BYTE);
    for (int id = 0; id < 32000; id++) {
        /* the same vocabulary from two files: same pieces, scores and types */
        size_t la, lb;
        const char *a = bs_tok_piece_raw(t32k, id, &la), *b = bs_tok_piece_raw(gspm, id, &lb);
        if (id > 2 && (la != lb || memcmp(a, b, la) != 0 ||
                       bs_tok_score(t32k, id) != bs_tok_score(gspm, id) ||
                       bs_tok_type(t32k, id) != bs_tok_type(gspm, id))) {
            CHECKF(0, "piece %d differs between tokenizer.bin and the GGUF", id);
            break;
        }
    }

    check_synthetic();

    check_ids(t512, "Once upon a time", 1, (const int[]){ 1, 403, 407, 261, 378 }, 5);
    check_ids(g260, "Once upon a time", 1, (const int[]){ 1, 403, 407, 261, 378 }, 5);
    check_ids(t32k, "Once upon a time", 1, (const int[]){ 1, 9038, 2501, 263, 931 }, 5);
    check_ids(gspm, "Once upon a time", 1, (const int[]){ 1, 9038, 2501, 263, 931 }, 5);
    check_ids(t32k, "Once upon a time", 0, (const int[]){ 9038, 2501, 263, 931 }, 4);

    check_same_ids(t32k, gspm, "data/wiki.test.raw", 50000);
    check_same_ids(t32k, gspm, "data/tinystories_valid_head.txt", 50000);
    check_same_ids(t512, g260, "data/wiki.test.raw", 50000);
    check_same_ids(t512, g260, "data/tinystories_valid_head.txt", 50000);

    check_vocab_tests(gspm, "llama-spm");
    check_gpt2();

    check_against_naive(t512, "data/tinystories_valid_head.txt", "tok512");
    check_against_naive(t32k, "data/wiki.test.raw", "tokenizer.bin");

    check_round_trips(t512, "tok512.bin");
    check_round_trips(t32k, "tokenizer.bin");
    check_round_trips(gspm, "llama-spm gguf");
    check_round_trips(g260, "stories260K gguf");
    check_edges(t512, "tok512.bin");
    check_edges(t32k, "tokenizer.bin");

    /* babyllama: characters only, no byte pieces, so what it lacks becomes <unk> */
    {
        CHECK(round_trip(baby, "Once upon a time", 16));
        int *ids;
        int n = enc(baby, "a\nb", 3, 0, 0, &ids);
        CHECKF(n == 3 && ids[1] == 0 && ids[0] > 3 && ids[2] > 3, "newline: %d ids", n);
        free(ids);
        /* '@' and CJK are not among its 101 characters: one <unk> per character */
        n = enc(baby, "x@\xE6\x97\xA5y", 6, 1, 1, &ids);
        CHECKF(n == 6 && ids[0] == 1 && ids[1] == 3 && ids[3] == 0 && ids[4] == 0,
               "unknown characters: %d ids", n);
        if (n == 6) {
            size_t dl;
            char *d = bs_tok_decode(baby, ids, n, &dl);
            CHECK(d && strcmp(d, "x \xE2\x81\x87  \xE2\x81\x87 y") == 0);
            free(d);
        }
        free(ids);
        n = enc(baby, "Once upon a time", 16, 1, 1, &ids);
        CHECKF(n == 18 && ids[1] == 3, "babyllama: %d ids for 16 characters + BOS + prefix", n);
        free(ids);
        check_edges(baby, "babyllama");
    }

    /* errors are reported, not crashed on */
    {
        bs_err e = { { 0 } };
        CHECK(bs_tok_load_llama2c("/nonexistent/tok.bin", 512, &e) == NULL && e.msg[0]);
        e.msg[0] = '\0';
        CHECK(bs_tok_load_llama2c(bs_shared("models/tok512.bin"), 513, &e) == NULL && e.msg[0]);
        e.msg[0] = '\0';
        CHECK(bs_tok_load_llama2c(bs_shared("models/stories260K.bin"), 0, &e) == NULL && e.msg[0]);
        /* vocab_size 0: every piece in the file */
        bs_tokenizer *all = bs_tok_load_llama2c(bs_shared("models/tok512.bin"), 0, &e);
        CHECK(all && bs_tok_vocab_size(all) == 512);
        bs_tok_free(all);
        /* a vocabulary model other than llama/gpt2, and gpt2 without its merges: edited copies */
        bs_gguf g;
        REQUIRE(bs_gguf_open(&g, bs_shared("models/vocab-tests/ggml-vocab-gpt-2.gguf"), &e) == 0);
        const bs_gguf_kv *model = bs_gguf_find(&g, "tokenizer.ggml.model");
        const bs_gguf_kv *merges = bs_gguf_find(&g, "tokenizer.ggml.merges");
        const bs_gguf_kv *pre = bs_gguf_find(&g, "tokenizer.ggml.pre");
        REQUIRE(model && merges && pre && pre->v.str.len == 5);
        size_t model_at = (size_t)((const uint8_t *)model->v.str.s - g.map);
        size_t pre_at = (size_t)((const uint8_t *)pre->v.str.s - g.map);
        size_t merges_key_at = (size_t)((const uint8_t *)merges->key.s - g.map);
        size_t size = g.size;
        char *copy = malloc(size);
        REQUIRE(copy);
        memcpy(copy, g.map, size);
        bs_gguf_close(&g);
        char tmp[128];
        snprintf(tmp, sizeof tmp, "/tmp/bs_test_tok_%d.gguf", (int)getpid());
        static const char *const want[3] = {"'bert'", "'qwen2'", "tokenizer.ggml.merges"};
        for (int k = 0; k < 3; k++) {
            if (k == 0)
                memcpy(copy + model_at, "bert", 4);
            else if (k == 1) {
                memcpy(copy + model_at, "gpt2", 4);
                memcpy(copy + pre_at, "qwen2", 5);   /* another BPE pre-tokenizer */
            } else {
                memcpy(copy + pre_at, "gpt-2", 5);
                copy[merges_key_at + strlen("tokenizer.ggml.merges") - 1] = 'z';
            }
            FILE *f = fopen(tmp, "wb");
            REQUIRE(f && fwrite(copy, 1, size, f) == size);
            fclose(f);
            REQUIRE(bs_gguf_open(&g, tmp, &e) == 0);
            e.msg[0] = '\0';
            CHECK(bs_tok_from_gguf(&g, &e) == NULL);
            CHECKF(strstr(e.msg, want[k]), "message: %s", e.msg);
            bs_gguf_close(&g);
        }
        unlink(tmp);
        free(copy);
    }

    bs_tok_free(t512);
    bs_tok_free(t32k);
    bs_tok_free(baby);
    bs_tok_free(g260);
    bs_tok_free(gspm);
    TEST_MAIN_END();
}
