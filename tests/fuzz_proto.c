/* Fuzz target for the wire protocol: arbitrary bytes through line framing, request
 * parsing, re-encoding, error and token lines, response parsing and budget syntax.
 * Every step must succeed or fail cleanly; the invariants below abort() otherwise.
 *
 * With libFuzzer (clang only):
 *     CC=clang meson setup build-fuzz -Db_sanitize=address,undefined
 *     ninja -C build-fuzz proto/fuzz_proto && ./build-fuzz/proto/fuzz_proto -max_len=4096
 * or without meson, from the source root:
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -DBS_LIBFUZZER -I. \
 *         tests/fuzz_proto.c proto/proto.c proto/linebuf.c proto/chat.c kernels/err.c \
 *         -ljansson -lm -o fuzz_proto
 *
 * Built without BS_LIBFUZZER (any compiler) it is a deterministic test: it runs the
 * files named on its command line, or else a seed corpus and a fixed-seed mutation of it. */
#include "proto/chat.h"
#include "proto/linebuf.h"
#include "proto/proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MUST(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
    abort(); } } while (0)

static void check_error_line(bs_proto_buf *b, const bs_proto_error *err)
{
    b->len = 0;
    MUST(err->code > BS_PERR_NONE && err->code < BS_PERR_COUNT);
    MUST(err->message[0] != '\0');
    MUST(bs_proto_encode_error(b, &err->id, err->code, err->message, NULL) == 0);
    MUST(b->len > 0 && b->data[b->len - 1] == '\n');
    MUST(memchr(b->data, '\n', b->len - 1) == NULL);
    bs_response r;
    bs_err e;
    MUST(bs_proto_parse_response(b->data, b->len - 1, &r, &e) == 0);
    MUST(r.kind == BS_RESP_ERROR && r.code == err->code && bs_proto_id_eq(&r.id, &err->id));
    bs_response_free(&r);
}

static void check_request(bs_proto_buf *b, const bs_request *q)
{
    bs_err e;
    b->len = 0;
    MUST(bs_proto_encode_request(b, q, &e) == 0);
    bs_proto_limits big;
    bs_proto_limits_default(&big);
    big.max_line = b->len;   /* our re-encoding adds explicit defaults */
    bs_request r;
    bs_proto_error err;
    MUST(bs_proto_parse_request(b->data, b->len - 1, &big, &r, &err) == 0);
    MUST(r.op == q->op && bs_proto_id_eq(&r.id, &q->id));
    MUST(r.prompt_len == q->prompt_len && r.n_messages == q->n_messages && r.n_stop == q->n_stop);
    MUST(r.max_tokens == q->max_tokens && r.temperature == q->temperature && r.top_p == q->top_p);
    MUST(r.has_seed == q->has_seed && r.seed == q->seed && r.stream == q->stream);
    if (q->prompt)
        MUST(memcmp(r.prompt, q->prompt, q->prompt_len) == 0);
    bs_request_free(&r);
    if (q->op == BS_OP_CHAT) {
        size_t len, total = 0;
        for (int i = 0; i < q->n_messages; i++)
            total += q->messages[i].len;
        char *p = bs_chat_render(q->messages, q->n_messages, &len, &e);
        MUST(p && len <= total + bs_chat_overhead(q->n_messages));
        free(p);
    }
}

static void one_line(bs_proto_buf *b, const char *line, size_t len, const bs_proto_limits *lim)
{
    bs_request q;
    bs_proto_error err;
    if (bs_proto_parse_request(line, len, lim, &q, &err) == 0) {
        if (q.op != BS_OP_NONE)
            check_request(b, &q);
    } else {
        MUST(q.prompt == NULL && q.messages == NULL && q.stop == NULL);
        check_error_line(b, &err);
    }
    bs_request_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    bs_proto_limits lim;
    bs_proto_limits_default(&lim);
    lim.max_line = 512;   /* small, so inputs reach the too-long path */
    bs_proto_buf b = {0};

    /* framing, in chunks whose sizes the input's first byte picks */
    size_t chunk = size ? 1 + data[0] % 37 : 1;
    bs_linebuf lb;
    MUST(bs_linebuf_init(&lb, lim.max_line, NULL) == 0);
    for (size_t off = 0; off < size;) {
        size_t c = size - off < chunk ? size - off : chunk;
        const char *p = s + off;
        size_t left = c;
        while (left > 0) {
            bs_line ln;
            size_t used = bs_linebuf_push(&lb, p, left, &ln);
            MUST(used >= 1 && used <= left);
            p += used, left -= used;
            if (ln.kind == BS_LINE_OK) {
                MUST(ln.len <= lim.max_line && memchr(ln.data, '\n', ln.len) == NULL);
                one_line(&b, ln.data, ln.len, &lim);
            }
        }
        off += c;
    }
    bs_line ln;
    bs_linebuf_finish(&lb, &ln);
    if (ln.kind == BS_LINE_OK)
        one_line(&b, ln.data, ln.len, &lim);
    bs_linebuf_free(&lb);

    /* the whole input as one line, past any limit */
    one_line(&b, s, size, NULL);

    /* any bytes make a valid token line; valid UTF-8 comes back unchanged */
    b.len = 0;
    MUST(bs_proto_encode_token(&b, NULL, s, size, -1, NULL) == 0);
    MUST(memchr(b.data, '\n', b.len - 1) == NULL);
    bs_response r;
    MUST(bs_proto_parse_response(b.data, b.len - 1, &r, NULL) == 0);
    MUST(r.kind == BS_RESP_TOKEN);
    json_t *probe = json_stringn(s, size);
    if (probe)
        MUST(r.text_len == size && memcmp(r.text, s, size) == 0);
    json_decref(probe);
    bs_response_free(&r);

    size_t cut = bs_proto_utf8_boundary(s, size);
    MUST(cut <= size && size - cut <= 3);

    /* the input as a response line */
    bs_err e;
    if (bs_proto_parse_response(s, size, &r, &e) == 0)
        bs_response_free(&r);

    /* budget syntax on a NUL-terminated prefix */
    char text[48];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, s, n);
    text[n] = '\0';
    bs_budget bud;
    if (bs_proto_parse_budget(text, &bud, &e) == 0)
        MUST(strcmp(bud.text, text) == 0);

    bs_proto_buf_free(&b);
    return 0;
}

#ifndef BS_LIBFUZZER
static const char *const seeds[] = {
    "{\"id\":1,\"op\":\"status\"}\n",
    "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":8,\"temperature\":0.5,"
    "\"top_p\":0.9,\"seed\":3,\"stop\":[\"\\n\",\"x\"],\"stream\":true}\r\n",
    "{\"id\":2,\"op\":\"chat\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
    "{\"role\":\"user\",\"content\":\"\\u00e9\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
    "{\"id\":3,\"op\":\"cancel\",\"target\":\"g\"}\n{\"id\":4,\"op\":\"metrics\"}\n",
    "{\"id\":5,\"op\":\"budget\",\"min\":\"180K\",\"max\":\"40%\"}\n{\"id\":6,\"op\":\"budget\","
    "\"budget\":\"4.0bpw\"}\n",
    "{\"id\":7,\"token\":\"\\u0000x\"}\n",
    "{\"id\":8,\"done\":true,\"text\":\"t\",\"stats\":{\"finish_reason\":\"eos\",\"seed\":-1}}",
    "{\"id\":9,\"error\":{\"code\":\"busy\",\"message\":\"m\"}}",
    "{\"id\":10,\"result\":{\"stack_n\":5}}",
    "2.5M",
    "\xe2\x82\xac\xf0\x9f\x98\x80\xed\xa0\x80\xff\n\n\n",
};

/* Replays file arguments, or runs the seeds and 40000 fixed-seed mutations of them. */
int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                perror(argv[i]);
                return 1;
            }
            static uint8_t buf[1 << 20];
            size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            LLVMFuzzerTestOneInput(buf, n);
        }
        return 0;
    }
    const int n_seeds = (int)(sizeof seeds / sizeof seeds[0]);
    uint64_t x = 0x853c49e6748fea9bull;
    uint8_t buf[2048];
    int runs = 0;
    for (int i = 0; i < n_seeds; i++, runs++)
        LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], strlen(seeds[i]));
    for (int it = 0; it < 40000; it++, runs++) {
        const char *seed = seeds[it % n_seeds];
        size_t n = strlen(seed);
        memcpy(buf, seed, n);
        int edits = 1 + it % 4;
        for (int k = 0; k < edits; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = n ? (size_t)(x >> 16) % n : 0;
            switch ((x >> 8) % 6) {
            case 0: /* flip a byte to anything */
                if (n)
                    buf[at] = (uint8_t)(x >> 40);
                break;
            case 1: /* an interesting byte */
                if (n)
                    buf[at] = (const uint8_t[]){0, '\n', '\r', '"', '\\', '{', '}', '[', ']',
                                                 ',', ':', 0x80, 0xff, 0xc3, '9', '-'}[(x >> 40) % 16];
                break;
            case 2: /* truncate */
                n = at;
                break;
            case 3: /* duplicate a slice (makes long lines and repeated keys) */
                if (n && n < sizeof buf / 2) {
                    size_t len = 1 + (size_t)(x >> 24) % (n - at);
                    memmove(buf + at + len, buf + at, n - at);
                    n += len;
                }
                break;
            case 4: /* delete a byte */
                if (n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
                break;
            case 5: /* splice in another seed */
                if (n < sizeof buf / 2) {
                    const char *o = seeds[(x >> 32) % (uint64_t)n_seeds];
                    size_t on = strlen(o);
                    memmove(buf + at + on, buf + at, n - at);
                    memcpy(buf + at, o, on);
                    n += on;
                }
                break;
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    fprintf(stderr, "fuzz_proto: %d inputs, no invariant failed\n", runs);
    return 0;
}
#endif
