#include "client/conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bs_conn_open(bs_conn *c, const char *option, bs_err *e)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->next_id = 1;
    if (bs_sockpath_resolve(option, c->path, &c->src, e))
        return bs_err_wrap(e, "cannot connect to bitstackd");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bs_err_set(e, "cannot connect to bitstackd: socket: %s", strerror(errno));
    int r;
    do
        r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int err = errno;
        close(fd);
        return bs_err_set(e, "cannot connect to bitstackd at %s (from %s): %s%s", c->path,
                          bs_sockpath_source_name(c->src), strerror(err),
                          err == ENOENT || err == ECONNREFUSED ? " (is bitstackd running?)" : "");
    }
    if (bs_linebuf_init(&c->lb, BS_CONN_MAX_LINE, e)) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

void bs_conn_close(bs_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    bs_linebuf_free(&c->lb);
}

void bs_conn_next_id(bs_conn *c, bs_proto_id *id)
{
    bs_proto_id_int(id, c->next_id++);
}

int bs_conn_send(bs_conn *c, const bs_request *r, bs_err *e)
{
    bs_proto_buf b = {0};
    if (bs_proto_encode_request(&b, r, e)) {
        bs_proto_buf_free(&b);
        return -1;
    }
    size_t off = 0;
    int rc = 0;
    while (off < b.len) {
        /* MSG_NOSIGNAL: a daemon that went away is an error to report, not SIGPIPE. */
        ssize_t n = send(c->fd, b.data + off, b.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = bs_err_set(e, "writing to bitstackd at %s: %s", c->path, strerror(errno));
            break;
        }
        off += (size_t)n;
    }
    bs_proto_buf_free(&b);
    return rc;
}

int bs_conn_read(bs_conn *c, bs_response *out, const char **raw, size_t *raw_len, bs_err *e)
{
    memset(out, 0, sizeof *out);
    for (;;) {
        bs_line ln = {0};
        if (c->rpos < c->rlen) {
            c->rpos += bs_linebuf_push(&c->lb, c->rbuf + c->rpos, c->rlen - c->rpos, &ln);
        } else if (c->eof) {
            return 0;
        } else {
            ssize_t n = read(c->fd, c->rbuf, sizeof c->rbuf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return bs_err_set(e, "reading from bitstackd at %s: %s", c->path, strerror(errno));
            c->rpos = 0;
            c->rlen = (size_t)n;
            if (n == 0) {
                c->eof = true;
                bs_linebuf_finish(&c->lb, &ln);
            }
        }
        if (ln.kind == BS_LINE_TOO_LONG)
            return bs_err_set(e, "bitstackd sent a line longer than %u bytes", BS_CONN_MAX_LINE);
        if (ln.kind != BS_LINE_OK)
            continue;
        size_t i = 0;
        while (i < ln.len && (ln.data[i] == ' ' || ln.data[i] == '\t'))
            i++;
        if (i == ln.len)
            continue;
        if (bs_proto_parse_response(ln.data, ln.len, out, e))
            return bs_err_wrap(e, "bitstackd at %s", c->path);
        if (raw) {
            *raw = ln.data;
            *raw_len = ln.len;
        }
        return 1;
    }
}

int bs_conn_wait(bs_conn *c, int other_fd, bs_err *e)
{
    if (c->rpos < c->rlen || c->eof)
        return 1;
    struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = other_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bs_err_set(e, "waiting for bitstackd at %s: %s", c->path, strerror(errno));
        if (p[0].revents)
            return 1;   /* POLLHUP or POLLERR too: bs_conn_read reports them */
        if (p[1].revents)
            return 2;
    }
}

int bs_conn_fail(int code, const bs_err *e)
{
    fprintf(stderr, "bitstackctl: %s\n", e->msg);
    return code;
}
