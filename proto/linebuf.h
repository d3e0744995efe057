/* bs_linebuf: cuts a byte stream (a socket's reads, in chunks of any size) into lines.
 *
 * A line is the bytes before a '\n'; one '\r' right before the '\n' is dropped too, so
 * CRLF clients work. A line longer than max_line bytes (counted before the '\n', '\r'
 * included) is reported once, as soon as it is known to be too long, and its remaining
 * bytes are then discarded up to and including its '\n'; the stream goes on after it, so
 * the owner may answer with an error and keep the connection, or close it.
 *
 * Memory: one buffer of max_line bytes, allocated by bs_linebuf_init and never grown.
 * Lines that arrive whole inside one chunk are handed out in place, without a copy;
 * only a line split across chunks is gathered in the buffer. Bytes are not interpreted:
 * NUL and invalid UTF-8 pass through (the parser rejects them).
 *
 * Use, once per chunk read:
 *
 *     while (n > 0) {
 *         bs_line ln;
 *         size_t used = bs_linebuf_push(&lb, p, n, &ln);
 *         p += used, n -= used;
 *         if (ln.kind == BS_LINE_OK)            handle(ln.data, ln.len);
 *         else if (ln.kind == BS_LINE_TOO_LONG) answer "line_too_long";
 *     }
 */
#ifndef BS_LINEBUF_H
#define BS_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/err.h"

typedef struct {
    char *buf;        /* max_line bytes: the start of a line that is still incomplete */
    size_t len;       /* bytes of it held */
    size_t max_line;
    bool skipping;    /* inside a too-long line, dropping bytes up to its '\n' */
} bs_linebuf;

typedef enum {
    BS_LINE_NONE,     /* every byte given was taken; no line is complete yet */
    BS_LINE_OK,       /* data/len: one complete line, without its "\n" or "\r\n" */
    BS_LINE_TOO_LONG, /* the current line passed max_line; reported once per such line */
} bs_line_kind;

typedef struct {
    bs_line_kind kind;
    const char *data; /* valid until the next call on the linebuf or the chunk is freed */
    size_t len;
} bs_line;

/* max_line >= 1. */
int bs_linebuf_init(bs_linebuf *lb, size_t max_line, bs_err *e);
void bs_linebuf_free(bs_linebuf *lb);

/* Takes bytes from data[0..n) up to the end of the first complete line or event, fills
 * *out and returns how many bytes it took (all n when out->kind is BS_LINE_NONE; with
 * n > 0 it always takes at least one byte, so the loop above ends). */
size_t bs_linebuf_push(bs_linebuf *lb, const char *data, size_t n, bs_line *out);

/* At end of stream: the last line when it had no '\n' (kind BS_LINE_OK, "\r" at its
 * end dropped as usual), else BS_LINE_NONE (nothing pending, or the stream ended inside
 * a too-long line that was already reported). Resets the linebuf for reuse; out->data
 * stays valid until the next call. */
void bs_linebuf_finish(bs_linebuf *lb, bs_line *out);

/* Bytes of an incomplete line held (0 while skipping). */
size_t bs_linebuf_pending(const bs_linebuf *lb);

#endif
