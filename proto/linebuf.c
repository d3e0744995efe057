#include "proto/linebuf.h"

#include <stdlib.h>
#include <string.h>

int bs_linebuf_init(bs_linebuf *lb, size_t max_line, bs_err *e)
{
    memset(lb, 0, sizeof *lb);
    if (max_line < 1)
        return bs_err_set(e, "linebuf: max_line must be at least 1");
    lb->buf = malloc(max_line);
    if (!lb->buf)
        return bs_err_set(e, "linebuf: out of memory for a %zu-byte line buffer", max_line);
    lb->max_line = max_line;
    return 0;
}

void bs_linebuf_free(bs_linebuf *lb)
{
    free(lb->buf);
    memset(lb, 0, sizeof *lb);
}

static void emit(bs_line *out, const char *data, size_t len)
{
    if (len > 0 && data[len - 1] == '\r')
        len--;
    out->kind = BS_LINE_OK;
    out->data = data;
    out->len = len;
}

size_t bs_linebuf_push(bs_linebuf *lb, const char *data, size_t n, bs_line *out)
{
    out->kind = BS_LINE_NONE;
    out->data = NULL;
    out->len = 0;
    if (n == 0)
        return 0;
    size_t i = 0;
    if (lb->skipping) {
        const char *nl = memchr(data, '\n', n);
        if (!nl)
            return n;
        i = (size_t)(nl - data) + 1;
        lb->skipping = false;
    }
    const char *rest = data + i;
    size_t m = n - i;
    const char *nl = memchr(rest, '\n', m);
    if (!nl) {
        if (lb->len + m > lb->max_line) {
            /* Tell the owner now rather than at the '\n', which may never come. */
            out->kind = BS_LINE_TOO_LONG;
            lb->len = 0;
            lb->skipping = true;
            return n;
        }
        memcpy(lb->buf + lb->len, rest, m);
        lb->len += m;
        return n;
    }
    size_t k = (size_t)(nl - rest);
    size_t used = i + k + 1;
    if (lb->len + k > lb->max_line) {
        out->kind = BS_LINE_TOO_LONG;
        lb->len = 0;
        return used;
    }
    if (lb->len == 0) {
        emit(out, rest, k);   /* whole in this chunk: no copy */
        return used;
    }
    memcpy(lb->buf + lb->len, rest, k);
    emit(out, lb->buf, lb->len + k);
    lb->len = 0;
    return used;
}

void bs_linebuf_finish(bs_linebuf *lb, bs_line *out)
{
    out->kind = BS_LINE_NONE;
    out->data = NULL;
    out->len = 0;
    if (!lb->skipping && lb->len > 0)
        emit(out, lb->buf, lb->len);
    lb->len = 0;
    lb->skipping = false;
}

size_t bs_linebuf_pending(const bs_linebuf *lb)
{
    return lb->skipping ? 0 : lb->len;
}
