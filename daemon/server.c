#include "daemon/server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/conn.h"

#define READ_BUF (64 * 1024)
#define BACKLOG 128

/* ---- the listening socket ------------------------------------------------------ */

/* Is a daemon answering on path? 1 yes (*pid its pid when known), 0 no (nothing listens:
 * the file is stale), -1 on another error. */
static int probe_live(const char *path, pid_t *pid, bs_err *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bs_err_set(e, "socket: %s", strerror(errno));
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    *pid = 0;
    if (rc == 0) {
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl))
            *pid = cr.pid;
    }
    close(fd);
    if (rc == 0 || err == EAGAIN)   /* EAGAIN: a full backlog, so someone listens */
        return 1;
    if (err == ECONNREFUSED)
        return 0;
    return bs_err_set(e, "%s: cannot tell whether a daemon is listening: %s", path, strerror(err));
}

static int bind_path(bs_server *srv, const char *path, bs_err *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return bs_err_set(e, "socket path %s is longer than %zu bytes", path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path));

    struct stat st;
    if (!lstat(path, &st)) {
        if (!S_ISSOCK(st.st_mode))
            return bs_err_set(e, "%s exists and is not a socket; not replacing it", path);
        pid_t pid;
        int live = probe_live(path, &pid, e);
        if (live < 0)
            return -1;
        if (live) {
            if (pid > 0)
                return bs_err_set(e, "%s: another daemon (pid %d) is serving on this socket; stop it first "
                                     "or choose another --socket", path, (int)pid);
            return bs_err_set(e, "%s: another daemon is serving on this socket; stop it first or choose "
                                 "another --socket", path);
        }
        if (unlink(path) && errno != ENOENT)
            return bs_err_set(e, "cannot remove the stale socket %s: %s", path, strerror(errno));
        bs_log_notice(srv->log, "replaced the stale socket %s (no daemon answered on it)", path);
    } else if (errno != ENOENT) {
        return bs_err_set(e, "%s: %s", path, strerror(errno));
    } else {
        /* /run/bitstackd may not exist outside systemd: create the last level only */
        char dir[sizeof sa.sun_path];
        snprintf(dir, sizeof dir, "%s", path);
        const char *d = dirname(dir);
        if (mkdir(d, 0755) && errno != EEXIST)
            return bs_err_set(e, "cannot create the socket's directory %s: %s", d, strerror(errno));
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bs_err_set(e, "socket: %s", strerror(errno));
    /* the file is born 0660: no window in which others could connect */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    umask(old);
    if (rc) {
        close(fd);
        return bs_err_set(e, "cannot bind %s: %s", path, strerror(err));
    }
    if (chmod(path, 0660) || listen(fd, BACKLOG) || stat(path, &st)) {
        err = errno;
        close(fd);
        unlink(path);
        return bs_err_set(e, "cannot listen on %s: %s", path, strerror(err));
    }
    srv->own_file = true;
    srv->sock_dev = st.st_dev;
    srv->sock_ino = st.st_ino;
    return fd;
}

/* Removes the socket file if it is still the one this server made (another daemon may
 * have replaced it after we stopped answering). */
static void remove_own_file(bs_server *srv)
{
    if (!srv->own_file)
        return;
    srv->own_file = false;
    struct stat st;
    if (!lstat(srv->cfg.socket_path, &st) && st.st_dev == srv->sock_dev && st.st_ino == srv->sock_ino)
        unlink(srv->cfg.socket_path);
}

/* ---- writing --------------------------------------------------------------------- */

typedef struct {
    uv_write_t req;
    bs_conn *conn;
    char data[];
} out_req;

static void on_closed(uv_handle_t *h)
{
    bs_conn *c = h->data;
    bs_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    if (c->lb_ready)
        bs_linebuf_free(&c->lb);
    bs_proto_buf_free(&c->out);
    bs_log_debug(srv->log, "connection %llu closed", (unsigned long long)c->num);
    free(c);
    bs_server_check_stopped(srv);
}

static void close_conn(bs_conn *c)
{
    c->closing = true;
    c->out.len = 0;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_close((uv_handle_t *)&c->pipe, on_closed);
}

void bs_conn_drop(bs_conn *c, const char *why)
{
    if (c->closing)
        return;
    bs_log_info(c->srv->log, "connection %llu (pid %d) dropped: %s", (unsigned long long)c->num, (int)c->pid, why);
    bs_ops_abandon_sessions(c);
    close_conn(c);
}

void bs_conn_maybe_close(bs_conn *c)
{
    if (c->closing || !(c->read_eof || c->srv->stopping) || c->n_sessions || c->writes || c->out.len)
        return;
    close_conn(c);
}

static void on_written(uv_write_t *req, int status)
{
    out_req *w = (out_req *)req;
    bs_conn *c = w->conn;
    free(w);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", uv_strerror(status));
        bs_conn_drop(c, why);
        return;
    }
    bs_conn_maybe_close(c);
}

void bs_conn_flush(bs_conn *c)
{
    if (c->closing) {
        c->out.len = 0;
        return;
    }
    if (!c->out.len)
        return;
    bs_server *srv = c->srv;
    uv_stream_t *st = (uv_stream_t *)&c->pipe;
    size_t off = 0, queued = uv_stream_get_write_queue_size(st);
    if (queued == 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int r = uv_try_write(st, &b, 1);
        if (r >= 0) {
            off = (size_t)r;
        } else if (r != UV_EAGAIN) {
            char why[128];
            snprintf(why, sizeof why, "write: %s", uv_strerror(r));
            bs_conn_drop(c, why);
            return;
        }
    }
    srv->m.bytes_out += off;
    size_t rest = c->out.len - off;
    if (rest) {
        if (queued + rest > srv->cfg.max_output) {
            srv->m.bytes_dropped += queued + rest;
            srv->m.connections_dropped++;
            char why[160];
            snprintf(why, sizeof why, "not reading: %zu bytes waiting, over the bound of %zu", queued + rest,
                     srv->cfg.max_output);
            bs_conn_drop(c, why);
            return;
        }
        out_req *w = malloc(sizeof *w + rest);
        if (!w) {
            bs_conn_drop(c, "out of memory for its output");
            return;
        }
        w->conn = c;
        memcpy(w->data, c->out.data + off, rest);
        uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
        int r = uv_write(&w->req, st, &b, 1, on_written);
        if (r) {
            free(w);
            char why[128];
            snprintf(why, sizeof why, "write: %s", uv_strerror(r));
            bs_conn_drop(c, why);
            return;
        }
        c->writes++;
        srv->m.bytes_out += rest;
    }
    c->out.len = 0;
}

void bs_conn_send_error(bs_conn *c, const bs_proto_id *id, bs_proto_code code, const char *msg)
{
    bs_err e;
    c->srv->m.errors++;
    if (bs_proto_encode_error(&c->out, id, code, msg, &e)) {
        bs_conn_drop(c, e.msg);
        return;
    }
    bs_conn_flush(c);
}

void bs_conn_send_result(bs_conn *c, const bs_proto_id *id, const json_t *result)
{
    bs_err e;
    if (!result || bs_proto_encode_result(&c->out, id, result, &e)) {
        bs_conn_send_error(c, id, BS_PERR_INTERNAL, result ? e.msg : "out of memory for the answer");
        return;
    }
    bs_conn_flush(c);
}

/* ---- reading --------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    bs_conn *c = h->data;
    *b = uv_buf_init(c->srv->rbuf, (unsigned)c->srv->rbuf_len);
}

/* EOF is either a half close (the client sent its last request and waits for the
 * answers, as `socat` does) or the client closing for good. A Unix socket tells them
 * apart: after a full close both directions are shut, which poll reports as POLLHUP.
 * A client that is gone gets its requests cancelled now rather than when a write fails. */
static bool peer_gone(bs_conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd))
        return false;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    bs_conn *c = st->data;
    if (c->closing)
        return;
    if (n > 0) {
        c->srv->m.bytes_in += (uint64_t)n;
        const char *p = b->base;
        size_t left = (size_t)n;
        while (left > 0 && !c->closing && !c->read_eof) {
            bs_line ln;
            size_t used = bs_linebuf_push(&c->lb, p, left, &ln);
            p += used;
            left -= used;
            if (ln.kind == BS_LINE_OK) {
                bs_ops_handle_line(c, ln.data, ln.len);
            } else if (ln.kind == BS_LINE_TOO_LONG) {
                char msg[96];
                snprintf(msg, sizeof msg, "a request line is at most %zu bytes", c->srv->cfg.lim.max_line);
                c->srv->m.requests++;
                bs_conn_send_error(c, NULL, BS_PERR_LINE_TOO_LONG, msg);
            }
        }
        return;
    }
    if (n == UV_EOF) {
        bs_line ln;
        bs_linebuf_finish(&c->lb, &ln);
        if (ln.kind == BS_LINE_OK)
            bs_ops_handle_line(c, ln.data, ln.len);
        if (c->closing)
            return;
        c->read_eof = true;
        uv_read_stop(st);
        if (peer_gone(c)) {
            if (c->n_sessions) {
                char why[96];
                snprintf(why, sizeof why, "the client went away with %d request(s) open", c->n_sessions);
                bs_conn_drop(c, why);
            } else {
                close_conn(c);
            }
            return;
        }
        bs_conn_maybe_close(c);
        return;
    }
    if (n < 0) {
        char why[128];
        snprintf(why, sizeof why, "read: %s", uv_strerror((int)n));
        bs_conn_drop(c, why);
    }
}

/* ---- accepting --------------------------------------------------------------------- */

static void on_connection(uv_stream_t *l, int status)
{
    bs_server *srv = l->data;
    if (status < 0) {
        bs_log_warn(srv->log, "accept: %s", uv_strerror(status));
        return;
    }
    bs_conn *c = calloc(1, sizeof *c);
    if (!c) {
        bs_log_err(srv->log, "out of memory for a connection");
        return;
    }
    c->srv = srv;
    c->num = ++srv->next_conn;
    c->pid = -1;
    uv_pipe_init(srv->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    int rc = uv_accept(l, (uv_stream_t *)&c->pipe);
    if (rc) {
        bs_log_warn(srv->log, "accept: %s", uv_strerror(rc));
        close_conn(c);
        return;
    }
    srv->m.connections_total++;
    uv_os_fd_t fd;
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (!uv_fileno((uv_handle_t *)&c->pipe, &fd) && !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl)) {
        c->pid = cr.pid;
        c->uid = cr.uid;
    }
    if (srv->stopping || srv->n_conns > srv->cfg.lim.max_connections) {
        /* one line, then close: the client learns why instead of seeing a bare EOF */
        srv->m.connections_rejected++;
        c->read_eof = true;
        if (srv->stopping)
            bs_conn_send_error(c, NULL, BS_PERR_SHUTTING_DOWN, "the daemon is stopping");
        else {
            char msg[96];
            snprintf(msg, sizeof msg, "the daemon already has %d connections", srv->cfg.lim.max_connections);
            bs_log_warn(srv->log, "connection %llu (pid %d) refused: %d connections already",
                        (unsigned long long)c->num, (int)c->pid, srv->cfg.lim.max_connections);
            bs_conn_send_error(c, NULL, BS_PERR_TOO_MANY_CONNECTIONS, msg);
        }
        bs_conn_maybe_close(c);
        return;
    }
    bs_err e;
    if (bs_linebuf_init(&c->lb, srv->cfg.lim.max_line, &e)) {
        bs_log_err(srv->log, "connection %llu: %s", (unsigned long long)c->num, e.msg);
        close_conn(c);
        return;
    }
    c->lb_ready = true;
    bs_log_debug(srv->log, "connection %llu from pid %d uid %d", (unsigned long long)c->num, (int)c->pid, (int)c->uid);
    rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    if (rc) {
        char why[128];
        snprintf(why, sizeof why, "read: %s", uv_strerror(rc));
        bs_conn_drop(c, why);
    }
}

/* ---- life -------------------------------------------------------------------------- */

int bs_server_init(bs_server *srv, uv_loop_t *loop, const bs_log *log, const bs_server_config *cfg,
                   bs_engine *eng, bs_sizer *sizer, bs_err *e)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->log = log;
    srv->cfg = *cfg;
    srv->eng = eng;
    srv->sizer = sizer;
    srv->t_start = uv_hrtime();
    srv->rbuf_len = READ_BUF;
    srv->rbuf = malloc(srv->rbuf_len);
    if (!srv->rbuf)
        return bs_err_set(e, "out of memory");

    int fd = cfg->listen_fd;
    if (fd < 0) {
        fd = bind_path(srv, cfg->socket_path, e);
        if (fd < 0)
            goto fail;
    }
    uv_pipe_init(loop, &srv->listener, 0);
    srv->listener.data = srv;
    srv->listening = true;
    int rc = uv_pipe_open(&srv->listener, fd);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&srv->listener, BACKLOG, on_connection);
    if (rc) {
        bs_err_set(e, "cannot listen: %s", uv_strerror(rc));
        goto fail_listener;
    }
    if (bs_sched_init(&srv->sched, loop, cfg->threads, bs_ops_slice_work, bs_ops_slice_done, srv, e))
        goto fail_listener;
    srv->sched.start = bs_ops_slice_start;
    uv_timer_init(loop, &srv->grace);
    srv->grace.data = srv;
    return 0;

fail_listener:
    /* the loop must run to finish closing the handle: the caller's cleanup does that */
    uv_close((uv_handle_t *)&srv->listener, NULL);
    srv->listening = false;
    remove_own_file(srv);
    srv->stopped = true;
    return -1;
fail:
    free(srv->rbuf);
    srv->rbuf = NULL;
    srv->stopped = true;
    return -1;
}

static void on_grace(uv_timer_t *t)
{
    bs_server *srv = t->data;
    bs_log_warn(srv->log, "stopping: %d connection(s) did not take their last lines in %d ms; closing them",
                srv->n_conns, srv->cfg.grace_ms);
    for (bs_conn *c = srv->conns; c; c = c->next)
        bs_conn_drop(c, "the daemon is stopping");
}

void bs_server_kv(void *ctx, uint64_t *kv_bytes, int *sessions)
{
    bs_server *srv = ctx;
    uint64_t kv = 0;
    for (bs_conn *c = srv->conns; c; c = c->next)
        for (bs_session *s = c->sessions; s; s = s->next)
            kv += s->kv_bytes;
    *kv_bytes = kv;
    *sessions = srv->n_sessions;
}

void bs_server_check_stopped(bs_server *srv)
{
    if (!srv->stopping || srv->stopped || srv->n_conns || srv->sched.running)
        return;
    srv->stopped = true;
    uv_timer_stop(&srv->grace);
    uv_close((uv_handle_t *)&srv->grace, NULL);
    bs_sched_close(&srv->sched);
    if (srv->done)
        srv->done(srv, srv->done_ctx);
}

void bs_server_stop(bs_server *srv, bs_server_done_fn done, void *ctx)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    srv->done = done;
    srv->done_ctx = ctx;
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = false;
    }
    remove_own_file(srv);
    bs_log_info(srv->log, "stopping: %d connection(s), %d session(s) open", srv->n_conns, srv->n_sessions);
    for (bs_conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        bs_ops_stop_sessions(c);
        bs_conn_flush(c);
        bs_conn_maybe_close(c);
    }
    if (srv->cfg.grace_ms > 0)
        uv_timer_start(&srv->grace, on_grace, (uint64_t)srv->cfg.grace_ms, 0);
    bs_server_check_stopped(srv);
}

void bs_server_free(bs_server *srv)
{
    free(srv->rbuf);
    srv->rbuf = NULL;
}
