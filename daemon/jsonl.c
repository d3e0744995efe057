/* The JSON-lines front end (docs/protocol.md): one connection per client, a request per
 * line, answers and token lines back. Sessions are the server's (sessions.c); this file
 * turns their sink calls into lines.
 *
 * Output is bounded per connection: lines go out with uv_try_write when the socket
 * takes them, else they queue in libuv; a client whose queue passes max_output bytes is
 * not reading, and is dropped (its sessions abandoned) so that it cannot hold memory or
 * stall anyone else.
 *
 * Lifetime: adopted -> reading -> (EOF seen, or the server stopping) -> closed once its
 * sessions ended and its lines were written; or dropped at once (a write error, a client
 * not reading). uv_close is asynchronous: a closing conn stays allocated, inert, until
 * its close callback, so pointers to it stay valid within the current callback. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/frontend.h"
#include "daemon/info.h"
#include "proto/linebuf.h"

typedef struct bs_conn {
    bs_server *srv;
    uv_pipe_t pipe;
    bs_owner own;               /* its sessions (counted by the server), its peer */
    bs_peer peer;
    bs_linebuf lb;
    bool lb_ready;
    bs_proto_buf out;           /* lines not yet handed to the socket */
    bs_proto_buf wbuf;          /* lines in the uv_write in flight */
    uv_write_t wreq;
    struct bs_conn *prev, *next;
    int writes;                 /* uv_write requests in flight (0 or 1) */
    bool read_eof;              /* no more requests will come */
    bool closing;               /* uv_close was called */
    uint64_t num;               /* for logs */
    uint64_t t_adopt;           /* uv_now() when it came */
    uint64_t requests;          /* lines answered */
} bs_conn;

static void handle_line(bs_conn *c, const char *line, size_t len);

/* ---- writing --------------------------------------------------------------------- */

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
    bs_server_peer_closed(srv, &c->peer);
    if (c->lb_ready)
        bs_linebuf_free(&c->lb);
    bs_proto_buf_free(&c->out);
    bs_proto_buf_free(&c->wbuf);
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

static void conn_drop(bs_conn *c, const char *why)
{
    if (c->closing)
        return;
    bs_log_info(c->srv->log, "connection %llu (pid %d) dropped: %s", (unsigned long long)c->num, (int)c->own.pid, why);
    bs_server_abandon_owner(c->srv, &c->own);
    close_conn(c);
}

static void maybe_close(bs_conn *c)
{
    if (c->closing || !(c->read_eof || c->srv->stopping) || c->own.n_sessions || c->writes || c->out.len)
        return;
    close_conn(c);
}

/* Buffers past this size are given back once drained: a burst must not pin memory. */
#define KEEP_BUF (64 * 1024)

static void trim(bs_proto_buf *b)
{
    if (!b->len && b->cap > KEEP_BUF)
        bs_proto_buf_free(b);
}

static void flush(bs_conn *c);

static void on_written(uv_write_t *req, int status)
{
    bs_conn *c = req->data;
    c->writes--;
    c->srv->m.bytes_out += c->wbuf.len;
    c->wbuf.len = 0;
    trim(&c->wbuf);
    if (c->closing)
        return;
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", uv_strerror(status));
        conn_drop(c, why);
        return;
    }
    flush(c);
    maybe_close(c);
}

/* What a connection's output costs is its two buffers (lines being written, lines
 * waiting), with one uv_write at a time: no per-line allocation, so max_output bounds
 * the memory a client that does not read can hold. */
static void flush(bs_conn *c)
{
    if (c->closing) {
        c->out.len = 0;
        return;
    }
    if (!c->out.len)
        return;
    bs_server *srv = c->srv;
    if (c->writes) {   /* one in flight: the lines wait for it, within the bound */
        if (c->out.len + c->wbuf.len > srv->cfg.max_output)
            goto over;
        return;
    }
    uv_stream_t *st = (uv_stream_t *)&c->pipe;
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int r = uv_try_write(st, &b, 1);
    size_t off = 0;
    if (r >= 0) {
        off = (size_t)r;
    } else if (r != UV_EAGAIN) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", uv_strerror(r));
        conn_drop(c, why);
        return;
    }
    srv->m.bytes_out += off;
    size_t rest = c->out.len - off;
    if (!rest) {
        c->out.len = 0;
        trim(&c->out);
        return;
    }
    if (rest > srv->cfg.max_output)
        goto over;
    /* the rest goes out from wbuf (swapped in, not copied, when wbuf is empty) */
    memmove(c->out.data, c->out.data + off, rest);
    c->out.len = rest;
    bs_proto_buf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    r = uv_write(&c->wreq, st, &b, 1, on_written);
    if (r) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", uv_strerror(r));
        conn_drop(c, why);
        return;
    }
    c->writes = 1;
    return;
over:
    srv->m.bytes_dropped += c->out.len + c->wbuf.len;
    srv->m.connections_dropped++;
    char why[160];
    snprintf(why, sizeof why, "not reading: %zu bytes waiting, over the bound of %zu", c->out.len + c->wbuf.len,
             srv->cfg.max_output);
    conn_drop(c, why);
}

static void send_error(bs_conn *c, const bs_proto_id *id, bs_proto_code code, const char *msg)
{
    bs_err e;
    c->srv->m.errors++;
    if (bs_proto_encode_error(&c->out, id, code, msg, &e)) {
        conn_drop(c, e.msg);
        return;
    }
    flush(c);
}

static void send_result(bs_conn *c, const bs_proto_id *id, const json_t *result)
{
    bs_err e;
    if (!result || bs_proto_encode_result(&c->out, id, result, &e)) {
        send_error(c, id, BS_PERR_INTERNAL, result ? e.msg : "out of memory for the answer");
        return;
    }
    flush(c);
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
                handle_line(c, ln.data, ln.len);
            } else if (ln.kind == BS_LINE_TOO_LONG) {
                char msg[96];
                snprintf(msg, sizeof msg, "a request line is at most %zu bytes", c->srv->cfg.lim.max_line);
                c->srv->m.requests++;
                send_error(c, NULL, BS_PERR_LINE_TOO_LONG, msg);
            }
        }
        return;
    }
    if (n == UV_EOF) {
        bs_line ln;
        bs_linebuf_finish(&c->lb, &ln);
        if (ln.kind == BS_LINE_OK)
            handle_line(c, ln.data, ln.len);
        if (c->closing)
            return;
        c->read_eof = true;
        uv_read_stop(st);
        if (peer_gone(c)) {
            if (c->own.n_sessions) {
                char why[96];
                snprintf(why, sizeof why, "the client went away with %d request(s) open", c->own.n_sessions);
                conn_drop(c, why);
            } else {
                close_conn(c);
            }
            return;
        }
        maybe_close(c);
        return;
    }
    if (n < 0) {
        char why[128];
        snprintf(why, sizeof why, "read: %s", uv_strerror((int)n));
        conn_drop(c, why);
    }
}


/* ---- the sessions' sink ---------------------------------------------------------- */

/* Token lines for what the last slice made sendable. */
static void on_tokens(bs_session *s, void *ctx)
{
    bs_conn *c = ctx;
    bs_err e;
    for (int i = 0; i < s->n_tok; i++) {
        size_t end = s->tok_end[i] < s->text.len ? s->tok_end[i] : s->text.len;
        if (end <= s->sent)
            continue;   /* held back: goes out with a later token */
        if (bs_proto_encode_token(&c->out, &s->id, s->text.data + s->sent, end - s->sent, s->tok_n[i], &e)) {
            bs_log_err(c->srv->log, "connection %llu: %s", (unsigned long long)c->num, e.msg);
            bs_server_cancel(c->srv, s);
            break;
        }
        s->sent = end;
    }
    flush(c);
}

/* The final line of a finished session: its last text (streamed) or all of it. */
static void on_done(bs_session *s, void *ctx)
{
    bs_conn *c = ctx;
    bs_err e;
    bs_proto_stats st;
    bs_session_stats(s, uv_hrtime(), &st);
    int rc = 0;
    if (s->stream && s->text.len > s->sent) {
        rc = bs_proto_encode_token(&c->out, &s->id, s->text.data + s->sent, s->text.len - s->sent, s->last_n, &e);
        s->sent = s->text.len;
    }
    if (!rc)
        rc = bs_proto_encode_done(&c->out, &s->id, s->stream ? NULL : (s->text.data ? s->text.data : ""),
                                  s->stream ? 0 : s->text.len, &st, &e);
    bs_log_debug(c->srv->log, "connection %llu: request %.*s done: %s, %d+%d tokens, %.1f tok/s",
                 (unsigned long long)c->num, (int)s->id.len, s->id.json, bs_proto_finish_name(s->finish),
                 s->prompt_tokens, s->generated, st.tokens_per_s);
    if (rc) {
        send_error(c, NULL, BS_PERR_INTERNAL, e.msg);
        return;
    }
    flush(c);
    maybe_close(c);
}

static void on_error(bs_session *s, bs_proto_code code, const char *msg, void *ctx)
{
    bs_conn *c = ctx;
    send_error(c, &s->id, code, msg);
    maybe_close(c);
}

/* ---- requests ------------------------------------------------------------------------ */

static void do_budget(bs_conn *c, const bs_request *r)
{
    char who[48];
    snprintf(who, sizeof who, "connection %llu", (unsigned long long)c->num);
    bs_err e;
    bs_proto_code code;
    json_t *o = bs_info_budget(c->srv, r, who, &code, &e);
    if (!o) {
        send_error(c, &r->id, code, e.msg);
        return;
    }
    send_result(c, &r->id, o);
    json_decref(o);
}

static void do_cancel(bs_conn *c, const bs_request *r)
{
    bs_session *s = bs_server_find(c->srv, &c->own, &r->target);
    if (s && atomic_load(&s->stop_req)) {
        char msg[BS_PROTO_ID_JSON_MAX + 64];
        snprintf(msg, sizeof msg, "request %.*s is already ending", (int)r->target.len, r->target.json);
        send_error(c, &r->id, BS_PERR_NOT_FOUND, msg);
        return;
    }
    if (!s) {
        char msg[BS_PROTO_ID_JSON_MAX + 64];
        snprintf(msg, sizeof msg, "no request %.*s on this connection", (int)r->target.len, r->target.json);
        send_error(c, &r->id, BS_PERR_NOT_FOUND, msg);
        return;
    }
    json_t *target = json_loadb(r->target.json, r->target.len, JSON_DECODE_ANY, NULL);
    json_t *o = json_object();
    json_object_set_new(o, "cancelled", target ? target : json_null());
    send_result(c, &r->id, o);
    json_decref(o);
    if (!c->closing)
        bs_server_cancel(c->srv, s);
}

static void start_session(bs_conn *c, bs_request *r)
{
    static const bs_sink sink_ops = {on_tokens, on_done, on_error, NULL};
    bs_sink sink = sink_ops;
    sink.ctx = c;
    bs_proto_code code;
    char msg[160];
    if (!bs_server_submit(c->srv, r, &c->own, &sink, &code, msg, sizeof msg))
        send_error(c, &r->id, code, msg);
}

static void handle_line(bs_conn *c, const char *line, size_t len)
{
    bs_server *srv = c->srv;
    c->requests++;
    bs_request r;
    bs_proto_error pe;
    if (bs_proto_parse_request(line, len, &srv->cfg.lim, &r, &pe)) {
        srv->m.requests++;
        send_error(c, &pe.id, pe.code, pe.message);
        return;
    }
    if (r.op == BS_OP_NONE) {
        bs_request_free(&r);
        return;
    }
    srv->m.requests++;
    bs_log_debug(srv->log, "connection %llu: %s %.*s", (unsigned long long)c->num, bs_proto_op_name(r.op),
                 (int)r.id.len, r.id.json);
    if (srv->stopping) {
        send_error(c, &r.id, BS_PERR_SHUTTING_DOWN, "the daemon is stopping");
        bs_request_free(&r);
        maybe_close(c);
        return;
    }
    json_t *o;
    switch (r.op) {
    case BS_OP_STATUS:
    case BS_OP_METRICS:
        o = r.op == BS_OP_STATUS ? bs_info_status(srv) : bs_info_metrics(srv);
        send_result(c, &r.id, o);
        json_decref(o);
        break;
    case BS_OP_BUDGET:
        do_budget(c, &r);
        break;
    case BS_OP_CANCEL:
        do_cancel(c, &r);
        break;
    case BS_OP_GENERATE:
    case BS_OP_CHAT:
        start_session(c, &r);
        break;
    default:
        send_error(c, &r.id, BS_PERR_UNKNOWN_OP, "unknown op");
        break;
    }
    bs_request_free(&r);
}

/* ---- life ----------------------------------------------------------------------------- */

void bs_jsonl_adopt(bs_server *srv, int fd, const bs_peer *peer)
{
    bs_conn *c = calloc(1, sizeof *c);
    if (!c) {
        bs_log_err(srv->log, "out of memory for a connection");
        close(fd);
        bs_server_peer_closed(srv, peer);
        return;
    }
    c->srv = srv;
    c->peer = *peer;
    c->own.use = peer->use;
    c->num = peer->num;
    c->t_adopt = uv_now(srv->loop);
    c->own.pid = peer->pid;
    c->own.uid = peer->uid;
    uv_pipe_init(srv->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    int rc = uv_pipe_open(&c->pipe, fd);
    if (rc) {
        bs_log_warn(srv->log, "connection %llu: %s", (unsigned long long)c->num, uv_strerror(rc));
        close(fd);
        close_conn(c);
        return;
    }
    if (srv->stopping || peer->refuse) {
        /* one line, then close: the client learns why instead of seeing a bare EOF */
        c->read_eof = true;
        if (srv->stopping) {
            srv->m.connections_rejected++;
            send_error(c, NULL, BS_PERR_SHUTTING_DOWN, "the daemon is stopping");
        } else {
            char msg[96];
            if (peer->refuse_user)
                snprintf(msg, sizeof msg, "user %d already has %d connections", (int)peer->uid,
                         srv->cfg.max_conns_per_user);
            else
                snprintf(msg, sizeof msg, "the daemon already has %d connections", srv->cfg.lim.max_connections);
            bs_server_note_refused(srv, peer, peer->refuse_user ? "too many connections of one user"
                                                                : "too many connections");
            send_error(c, NULL, BS_PERR_TOO_MANY_CONNECTIONS, msg);
        }
        maybe_close(c);
        return;
    }
    bs_err e;
    if (bs_linebuf_init(&c->lb, srv->cfg.lim.max_line, &e)) {
        bs_log_err(srv->log, "connection %llu: %s", (unsigned long long)c->num, e.msg);
        close_conn(c);
        return;
    }
    c->lb_ready = true;
    rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    if (rc) {
        char why[128];
        snprintf(why, sizeof why, "read: %s", uv_strerror(rc));
        conn_drop(c, why);
    }
}

/* A half-closed client (its requests sent, waiting for the answers) that then closes
 * for good is seen by no read: look for the hang-up, and cancel its requests at once
 * rather than compute them for nobody. */
void bs_jsonl_tick(bs_server *srv)
{
    uint64_t now = uv_now(srv->loop), idle = (uint64_t)srv->cfg.idle_timeout_s * 1000;
    for (bs_conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (!c->requests && now - c->t_adopt >= idle) {
            /* connected and never finished a request: it holds a place others need */
            srv->m.connections_idle_closed++;
            bs_log_debug(srv->log, "connection %llu: no request in %d s; closed", (unsigned long long)c->num,
                         srv->cfg.idle_timeout_s);
            close_conn(c);
            continue;
        }
        if (!c->read_eof || !c->own.n_sessions || !peer_gone(c))
            continue;
        char why[96];
        snprintf(why, sizeof why, "the client went away with %d request(s) open", c->own.n_sessions);
        conn_drop(c, why);
    }
}

uint64_t bs_jsonl_held(const bs_server *srv)
{
    uint64_t held = 0;
    for (const bs_conn *c = srv->conns; c; c = c->next)
        held += c->out.cap + c->wbuf.cap;
    return held;
}

void bs_jsonl_stop(bs_server *srv)
{
    for (bs_conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        flush(c);
        maybe_close(c);
    }
}

void bs_jsonl_drop_all(bs_server *srv, const char *why)
{
    for (bs_conn *c = srv->conns; c; c = c->next)
        conn_drop(c, why);
}
