/* bs_linebuf: lines come out the same however the stream is chunked; too-long lines are
 * reported once and skipped; CRLF, empty lines, NUL bytes and end of stream. */
#include "proto/linebuf.h"
#include "harness.h"

#include <stdint.h>

/* Collected events of one run: kinds and line contents, in order. */
typedef struct {
    int n;
    int kind[4096];
    size_t len[4096];
    char *data[4096];
} events;

static void add(events *ev, const bs_line *ln)
{
    REQUIRE(ev->n < 4096);
    ev->kind[ev->n] = ln->kind;
    ev->len[ev->n] = ln->len;
    ev->data[ev->n] = malloc(ln->len + 1);
    REQUIRE(ev->data[ev->n]);
    if (ln->len)
        memcpy(ev->data[ev->n], ln->data, ln->len);
    ev->n++;
}

static void clear(events *ev)
{
    for (int i = 0; i < ev->n; i++)
        free(ev->data[i]);
    ev->n = 0;
}

/* Feeds s[0..n) in chunks whose sizes come from next_chunk, records every event. */
static void run(bs_linebuf *lb, const char *s, size_t n, uint64_t *rng, size_t max_chunk,
                events *ev)
{
    size_t off = 0;
    while (off < n) {
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        size_t c = 1 + (size_t)(*rng % max_chunk);
        if (c > n - off)
            c = n - off;
        /* a private copy, so a line handed out in place cannot outlive its chunk unseen */
        char *chunk = malloc(c);
        REQUIRE(chunk);
        memcpy(chunk, s + off, c);
        const char *p = chunk;
        size_t left = c;
        while (left > 0) {
            bs_line ln;
            size_t used = bs_linebuf_push(lb, p, left, &ln);
            CHECK(used >= 1 && used <= left);
            if (used == 0)
                break;
            p += used, left -= used;
            if (ln.kind != BS_LINE_NONE)
                add(ev, &ln);
            else
                CHECK(left == 0);
        }
        free(chunk);
        off += c;
    }
    bs_line ln;
    bs_linebuf_finish(lb, &ln);
    if (ln.kind != BS_LINE_NONE)
        add(ev, &ln);
}

/* The specification, written plainly: split at '\n', drop one '\r' before it, a line
 * over max bytes (counted with its '\r') is one TOO_LONG event; a last line without
 * '\n' counts when it is not empty and not too long. */
static void reference(const char *s, size_t n, size_t max, events *ev)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '\n')
            continue;
        size_t len = i - start;
        bs_line ln = {BS_LINE_OK, s + start, len};
        if (i == n && len == 0)
            break;
        if (len > max) {
            ln.kind = BS_LINE_TOO_LONG;
            ln.len = 0;
        } else if (len > 0 && s[start + len - 1] == '\r') {
            ln.len--;
        }
        add(ev, &ln);
        start = i + 1;
    }
}

static int same(const events *a, const events *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kind[i] != b->kind[i])
            return 0;
        if (a->kind[i] == BS_LINE_OK &&
            (a->len[i] != b->len[i] || memcmp(a->data[i], b->data[i], a->len[i]) != 0))
            return 0;
    }
    return 1;
}

static void test_basic(void)
{
    bs_linebuf lb;
    REQUIRE(bs_linebuf_init(&lb, 16, NULL) == 0);
    const char in[] = "ab\ncd\r\n\n\r\nxyz";
    bs_line ln;
    size_t used = bs_linebuf_push(&lb, in, sizeof in - 1, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 2 && memcmp(ln.data, "ab", 2) == 0);
    CHECK(used == 3);
    CHECK(ln.data == in);   /* a line whole in its chunk is not copied */
    size_t off = used;
    used = bs_linebuf_push(&lb, in + off, sizeof in - 1 - off, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 2 && memcmp(ln.data, "cd", 2) == 0); /* CRLF */
    off += used;
    used = bs_linebuf_push(&lb, in + off, sizeof in - 1 - off, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 0);   /* empty line */
    off += used;
    used = bs_linebuf_push(&lb, in + off, sizeof in - 1 - off, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 0);   /* "\r\n" alone */
    off += used;
    used = bs_linebuf_push(&lb, in + off, sizeof in - 1 - off, &ln);
    CHECK(ln.kind == BS_LINE_NONE && used == 3);
    CHECK(bs_linebuf_pending(&lb) == 3);
    /* the rest of "xyz" arrives in the next chunk */
    used = bs_linebuf_push(&lb, "w\n", 2, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 4 && memcmp(ln.data, "xyzw", 4) == 0);
    CHECK(used == 2);
    CHECK(bs_linebuf_pending(&lb) == 0);
    used = bs_linebuf_push(&lb, "", 0, &ln);
    CHECK(used == 0 && ln.kind == BS_LINE_NONE);

    /* NUL bytes pass through untouched */
    used = bs_linebuf_push(&lb, "a\0b\n", 4, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 3 && memcmp(ln.data, "a\0b", 3) == 0);

    /* "\r\r\n": only the last '\r' belongs to the line ending */
    bs_linebuf_push(&lb, "\r\r\n", 3, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 1 && ln.data[0] == '\r');

    /* a last line without '\n' comes out at finish, CR dropped, and only once */
    bs_linebuf_push(&lb, "tail\r", 5, &ln);
    CHECK(ln.kind == BS_LINE_NONE);
    bs_linebuf_finish(&lb, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 4 && memcmp(ln.data, "tail", 4) == 0);
    bs_linebuf_finish(&lb, &ln);
    CHECK(ln.kind == BS_LINE_NONE);
    bs_linebuf_free(&lb);
    bs_linebuf_free(&lb);   /* twice is harmless */

    bs_err e;
    CHECK(bs_linebuf_init(&lb, 0, &e) == -1);
}

static void test_too_long(void)
{
    bs_linebuf lb;
    REQUIRE(bs_linebuf_init(&lb, 8, NULL) == 0);
    bs_line ln;
    /* exactly max bytes is fine, in one chunk and split */
    bs_linebuf_push(&lb, "12345678\n", 9, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 8);
    bs_linebuf_push(&lb, "1234", 4, &ln);
    CHECK(ln.kind == BS_LINE_NONE);
    bs_linebuf_push(&lb, "5678\n", 5, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 8 && memcmp(ln.data, "12345678", 8) == 0);

    /* max + 1 without a newline is reported at once, not when the newline comes */
    size_t used = bs_linebuf_push(&lb, "123456789", 9, &ln);
    CHECK(ln.kind == BS_LINE_TOO_LONG && used == 9);
    CHECK(bs_linebuf_pending(&lb) == 0);
    /* ... and only once, however much more of the line arrives */
    int reports = 0;
    for (int i = 0; i < 1000; i++) {
        bs_linebuf_push(&lb, "xxxxxxxxxx", 10, &ln);
        reports += ln.kind == BS_LINE_TOO_LONG;
        CHECK(ln.kind != BS_LINE_OK);
    }
    CHECK(reports == 0);
    /* the line after it is intact, even when it shares the chunk with the old tail */
    const char tail[] = "xx\nok\n";
    used = bs_linebuf_push(&lb, tail, sizeof tail - 1, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 2 && memcmp(ln.data, "ok", 2) == 0);
    CHECK(used == sizeof tail - 1);

    /* a too-long line whose newline is in the same chunk: reported, newline consumed */
    const char both[] = "0123456789abc\nnext\n";
    used = bs_linebuf_push(&lb, both, sizeof both - 1, &ln);
    CHECK(ln.kind == BS_LINE_TOO_LONG && used == 14);
    used = bs_linebuf_push(&lb, both + 14, sizeof both - 1 - 14, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 4 && memcmp(ln.data, "next", 4) == 0);

    /* a CR counts toward the limit (8 bytes + '\r' is 9) */
    bs_linebuf_push(&lb, "12345678\r\n", 10, &ln);
    CHECK(ln.kind == BS_LINE_TOO_LONG);

    /* stream ends inside a too-long line: nothing more to report */
    bs_linebuf_push(&lb, "123456789012", 12, &ln);
    CHECK(ln.kind == BS_LINE_TOO_LONG);
    bs_linebuf_finish(&lb, &ln);
    CHECK(ln.kind == BS_LINE_NONE);
    /* finish reset it: the next line is fine */
    bs_linebuf_push(&lb, "ok\n", 3, &ln);
    CHECK(ln.kind == BS_LINE_OK && ln.len == 2);
    bs_linebuf_free(&lb);
}

/* Random streams of short, long, CRLF, empty and binary lines, chunked at random:
 * the events equal the plain reference splitter's, for every chunking. */
static void test_random(void)
{
    static events got, want;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    const size_t max = 40;
    int mismatches = 0, streams = 0, too_long_seen = 0;
    for (int round = 0; round < 300; round++) {
        char s[4000];
        size_t n = 0;
        while (n < sizeof s - 200) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int kind = (int)(rng % 8);
            size_t len = kind == 0 ? 0 : kind == 1 ? max + (rng >> 8) % 100 :
                         kind == 2 ? max : (rng >> 8) % max;
            for (size_t i = 0; i < len; i++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                char c = (char)(rng >> 24);
                s[n++] = (kind == 3 || c == '\n') ? (char)('a' + (rng >> 40) % 26) : c;
            }
            if (kind == 4)
                s[n++] = '\r';
            s[n++] = '\n';
        }
        if (round % 2) /* half the streams end without a final newline */
            for (int i = 0; i < 5; i++)
                s[n++] = 'z';
        clear(&want);
        reference(s, n, max, &want);
        for (int i = 0; i < want.n; i++)
            too_long_seen += want.kind[i] == BS_LINE_TOO_LONG;
        size_t chunks[] = {1, 3, 17, 64, 4096};
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            bs_linebuf lb;
            REQUIRE(bs_linebuf_init(&lb, max, NULL) == 0);
            clear(&got);
            run(&lb, s, n, &rng, chunks[c], &got);
            mismatches += !same(&got, &want);
            streams++;
            bs_linebuf_free(&lb);
        }
    }
    CHECKF(mismatches == 0, "%d of %d chunked streams differ from the reference", mismatches,
           streams);
    CHECK(too_long_seen > 100);   /* the streams did exercise the limit */
    clear(&got);
    clear(&want);
}

int main(void)
{
    test_basic();
    test_too_long();
    test_random();
    TEST_MAIN_END();
}
