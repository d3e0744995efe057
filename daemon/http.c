/* The HTTP front end (docs/http.md): the OpenAI-compatible API, bitstack's own endpoints,
 * Prometheus metrics and the chat page, on the daemon's Unix socket (after the server saw
 * a first byte that is not `{`) and on the optional --listen TCP socket.
 *
 * HTTP itself is libmicrohttpd's: it runs without threads of its own, in its epoll mode,
 * driven from the libuv loop (its epoll fd in a uv_poll, its timeout in a uv_timer); the
 * server accepts sockets and hands them over with MHD_add_connection. A completion request
 * becomes a session of the server's registry whose sink is the request: the connection is
 * suspended while the session computes and resumed when the sink has something (the
 * whole answer, or stream events), so no thread ever waits.
 *
 * A client that goes away cancels its session: MHD reports the end of a request it could
 * not finish, and while a request waits suspended (MHD does not watch it then) a timer
 * polls its socket for a hang-up. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "daemon/chat_page.h"
#include "daemon/frontend.h"
#include "daemon/info.h"
#include "proto/openai.h"

#define HUP_CHECK_MS 200

typedef enum { R_NONE, R_CHAT, R_COMPLETION } route;

typedef struct hreq {
    struct bs_http *h;
    struct MHD_Connection *conn;
    struct hreq *prev, *next;       /* every request in progress */
    bs_peer peer;
    bs_owner own;
    route kind;
    bs_proto_buf body;
    bool too_big;
    bool answered;                  /* a response was queued */
    /* a completion */
    bs_session *s;                  /* NULL once it ended or was abandoned */
    bs_openai_req oreq;
    char model[BS_SERVED_NAME_MAX];    /* the model that answers */
    char id[48];
    int64_t created;
    bool stream, suspended, first, ended, failed;
    int status;                     /* the answer, for a request waiting to be resumed */
    json_t *answer;
    bs_proto_buf out;               /* stream bytes not yet taken by MHD */
    size_t out_off;
} hreq;

struct bs_http {
    bs_server *srv;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer, hup;
    bool open;
    int closing_handles;
    hreq *reqs;
    uint64_t next_id;
    char *api_key;                  /* required from TCP peers when set */
    bs_peer *pending_peer;          /* for the connection MHD is announcing */
};

/* ---- the loop ------------------------------------------------------------------------ */

static void run(bs_http *h);

static void on_timer(uv_timer_t *t)
{
    run(t->data);
}

static void on_epoll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run(p->data);
}

static void run(bs_http *h)
{
    if (!h->d)
        return;
    MHD_run(h->d);
    MHD_UNSIGNED_LONG_LONG to = 0;
    bool timed = MHD_get_timeout(h->d, &to) == MHD_YES;
    uint64_t ms = (uint64_t)to;
    if (timed)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
    bs_server_check_stopped(h->srv);
}

static void resume(hreq *q)
{
    if (!q->suspended)
        return;
    q->suspended = false;
    MHD_resume_connection(q->conn);
    /* MHD acts on it in its next run: make that soon, from the loop (never from inside a
     * callback MHD is running) */
    uv_timer_start(&q->h->timer, on_timer, 0, 0);
}

/* ---- answers --------------------------------------------------------------------------- */

static enum MHD_Result reply(hreq *q, int status, const char *type, const char *body, size_t n)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, q->kind != R_NONE ? "POST" : "GET");
    enum MHD_Result rc = MHD_queue_response(q->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    q->answered = true;
    return rc;
}

/* Takes o. */
static enum MHD_Result reply_json(hreq *q, int status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return reply(q, 500, "text/plain", "out of memory\n", 14);
    enum MHD_Result rc = reply(q, status, "application/json", s, strlen(s));
    free(s);
    return rc;
}

static enum MHD_Result reply_error(hreq *q, int status, bs_proto_code code, const char *code_name,
                                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result reply_error(hreq *q, int status, bs_proto_code code, const char *code_name,
                                   const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    q->h->srv->m.errors++;
    return reply_json(q, status ? status : bs_openai_status(code), bs_openai_error(code, code_name, msg));
}

/* ---- the session's sink ------------------------------------------------------------------ */

static bs_openai_ext ext_for(const bs_session *s, int n)
{
    const bs_store *st = &s->eng->store;
    return (bs_openai_ext){.n = n, .resident_bytes = (int64_t)st->resident[n], .stack_total = st->n_blocks};
}

/* Appends "data: <o>\n\n" (takes o); false on OOM. */
static bool event(hreq *q, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    bool ok = s && !bs_proto_buf_append(&q->out, "data: ", 6, NULL) &&
              !bs_proto_buf_append(&q->out, s, strlen(s), NULL) && !bs_proto_buf_append(&q->out, "\n\n", 2, NULL);
    free(s);
    return ok;
}

static bool chunk(hreq *q, const bs_session *s, const char *text, size_t n, int finish, int stack_n)
{
    bs_openai_ext x = ext_for(s, stack_n < 0 ? 0 : stack_n);
    bool ok = event(q, bs_openai_chunk(&q->oreq, q->id, q->created, q->model, q->first, text, n,
                                       finish, &x));
    q->first = false;
    return ok;
}

/* The stream stops being fed: the client does not read, or memory ran out. */
static void stream_fail(hreq *q, const char *why)
{
    bs_log_info(q->h->srv->log, "http request %s: %s; cancelled", q->id, why);
    q->failed = q->ended = true;
    if (q->s) {
        bs_server_abandon(q->h->srv, q->s);
        q->s = NULL;
    }
    resume(q);
}

static void check_bound(hreq *q)
{
    if (q->out.len - q->out_off > q->h->srv->cfg.max_output)
        stream_fail(q, "the client is not reading its stream");
}

static void on_tokens(bs_session *s, void *ctx)
{
    hreq *q = ctx;
    for (int i = 0; i < s->n_tok && !q->failed; i++) {
        size_t end = s->tok_end[i] < s->text.len ? s->tok_end[i] : s->text.len;
        if (end <= s->sent)
            continue;   /* held back: goes out with a later token */
        if (!chunk(q, s, s->text.data + s->sent, end - s->sent, -1, s->tok_n[i])) {
            stream_fail(q, "out of memory for its stream");
            return;
        }
        s->sent = end;
    }
    check_bound(q);
    resume(q);
}

static void on_done(bs_session *s, void *ctx)
{
    hreq *q = ctx;
    q->s = NULL;
    if (!q->stream) {
        bs_openai_ext x = ext_for(s, s->last_n < 0 ? (s->gen_ready ? s->logits_n : 0) : s->last_n);
        q->status = 200;
        q->answer = bs_openai_completion(&q->oreq, q->id, q->created, q->model,
                                         s->text.data ? s->text.data : "", s->text.len, s->finish, s->prompt_tokens,
                                         s->generated, &x);
        resume(q);
        return;
    }
    bool ok = true;
    if (s->text.len > s->sent)
        ok = chunk(q, s, s->text.data + s->sent, s->text.len - s->sent, -1, s->last_n);
    s->sent = s->text.len;
    ok = ok && chunk(q, s, "", 0, (int)s->finish, s->last_n);
    if (ok && q->oreq.include_usage)
        ok = event(q, bs_openai_usage_chunk(&q->oreq, q->id, q->created, q->model,
                                            s->prompt_tokens, s->generated));
    ok = ok && !bs_proto_buf_append(&q->out, "data: [DONE]\n\n", 14, NULL);
    if (!ok)
        q->failed = true;
    q->ended = true;
    resume(q);
}

static void on_error(bs_session *s, bs_proto_code code, const char *msg, void *ctx)
{
    (void)s;
    hreq *q = ctx;
    q->s = NULL;
    q->h->srv->m.errors++;
    if (q->stream && q->status == 200) {
        /* the stream has begun: the error goes as an event, as OpenAI's streams do */
        if (!event(q, bs_openai_error(code, NULL, msg)))
            q->failed = true;
        q->ended = true;
    } else {
        q->status = bs_openai_status(code);
        q->answer = bs_openai_error(code, NULL, msg);
    }
    resume(q);
}

/* MHD pulls stream bytes here; with none yet, the connection waits suspended. */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    hreq *q = cls;
    size_t have = q->out.len - q->out_off;
    if (have) {
        size_t n = have < max ? have : max;
        memcpy(buf, q->out.data + q->out_off, n);
        q->out_off += n;
        if (q->out_off == q->out.len)
            q->out.len = q->out_off = 0;
        return (ssize_t)n;
    }
    if (q->ended)
        return q->failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    q->suspended = true;
    MHD_suspend_connection(q->conn);
    return 0;
}

static enum MHD_Result start_stream(hreq *q)
{
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, read_stream, q, NULL);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result rc = MHD_queue_response(q->conn, 200, r);
    MHD_destroy_response(r);
    q->answered = true;
    return rc;
}

/* ---- endpoints ------------------------------------------------------------------------- */

static enum MHD_Result do_completion(hreq *q)
{
    bs_http *h = q->h;
    bs_server *srv = h->srv;
    srv->m.requests++;
    bs_request r;
    bs_proto_error pe;
    uint64_t num = ++h->next_id;
    if (bs_openai_parse(q->body.data ? q->body.data : "", q->body.len, q->kind == R_CHAT, &srv->cfg.lim,
                        (long long)num, &r, &q->oreq, &pe))
        return reply_error(q, 0, pe.code, NULL, "%s", pe.message);
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)uv_hrtime();
    snprintf(q->id, sizeof q->id, "%s-%08" PRIx32 "%" PRIu64, q->kind == R_CHAT ? "chatcmpl" : "cmpl", rnd, num);
    q->created = (int64_t)time(NULL);
    q->stream = r.stream;
    q->first = true;
    static const bs_sink sink_ops = {on_tokens, on_done, on_error, NULL};
    bs_sink sink = sink_ops;
    sink.ctx = q;
    bs_proto_code code;
    char msg[160];
    bs_log_debug(srv->log, "http request %s: %s", q->id, q->kind == R_CHAT ? "chat" : "completion");
    /* the model the client named; a daemon serving one model answers whatever the name,
     * as llama.cpp's server does (clients send names of their own) */
    bs_served *m = q->oreq.model[0] ? bs_models_find(srv->models, q->oreq.model) : NULL;
    if (m)
        snprintf(r.model, sizeof r.model, "%s", m->spec.name);
    else if (q->oreq.model[0] && bs_models_serving(srv->models) != 1) {
        bs_request_free(&r);
        return reply_error(q, 0, BS_PERR_MODEL_NOT_FOUND, NULL, "The model `%.100s` does not exist (GET /v1/models lists them)",
                           q->oreq.model);
    }
    q->s = bs_server_submit(srv, &r, &q->own, &sink, &code, msg, sizeof msg);
    bs_request_free(&r);
    if (!q->s)
        return reply_error(q, 0, code, NULL, "%s", msg);
    snprintf(q->model, sizeof q->model, "%s", q->s->served->spec.name);
    /* wait for the first thing the session has to say */
    q->suspended = true;
    MHD_suspend_connection(q->conn);
    return MHD_YES;
}

/* Called again once resumed: the answer, or the beginning of the stream. */
static enum MHD_Result answer_completion(hreq *q)
{
    if (q->answer) {
        json_t *a = q->answer;
        q->answer = NULL;
        return reply_json(q, q->status, a);
    }
    if (q->stream && (q->out.len || q->ended)) {
        q->status = 200;
        return start_stream(q);
    }
    /* resumed with nothing to say (a hang-up check): wait on */
    q->suspended = true;
    MHD_suspend_connection(q->conn);
    return MHD_YES;
}

/* GET reports (one model's with ?model=NAME); only POST changes anything. */
static enum MHD_Result do_budget(hreq *q, bool post)
{
    bs_server *srv = q->h->srv;
    srv->m.requests++;
    json_t *root = NULL;
    if (!post && q->body.len)
        return reply_error(q, 0, BS_PERR_BAD_REQUEST, NULL, "GET reports the budget; POST changes it");
    if (post && q->body.len) {
        json_error_t je;
        root = json_loadb(q->body.data, q->body.len, JSON_REJECT_DUPLICATES, &je);
        if (!root)
            return reply_error(q, 0, BS_PERR_BAD_JSON, NULL, "invalid JSON at byte %d: %s", je.position, je.text);
        if (!json_is_object(root)) {
            json_decref(root);
            return reply_error(q, 0, BS_PERR_BAD_REQUEST, NULL, "the body is a JSON object");
        }
        if (json_object_get(root, "id") || json_object_get(root, "op")) {
            json_decref(root);
            return reply_error(q, 0, BS_PERR_BAD_REQUEST, NULL, "budget: give budget, min/max or auto only");
        }
    } else {
        root = json_object();
        const char *model = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "model");
        if (model)
            json_object_set_new(root, "model", json_string(model));
    }
    json_object_set_new(root, "id", json_integer(0));
    json_object_set_new(root, "op", json_string("budget"));
    bs_request r;
    bs_proto_error pe;
    int rc = bs_proto_parse_object(root, &srv->cfg.lim, &r, &pe);
    json_decref(root);
    if (rc)
        return reply_error(q, 0, pe.code, NULL, "%s", pe.message);
    char who[64];
    snprintf(who, sizeof who, "http (pid %d)", (int)q->peer.pid);
    bs_err e;
    bs_proto_code code;
    json_t *o = bs_info_budget(srv, &r, who, &code, &e);
    bs_request_free(&r);
    if (!o)
        return reply_error(q, 0, code, NULL, "%s", e.msg);
    return reply_json(q, 200, o);
}

/* Every model not draining, the default first, with its live size (a loading one has
 * none yet). */
static enum MHD_Result do_models(hreq *q)
{
    bs_server *srv = q->h->srv;
    json_t *data = json_array();
    bs_served *def = bs_models_default(srv->models);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < srv->models->n; i++) {
            bs_served *x = srv->models->m[i];
            if (x->state == BS_SERVED_DRAINING || (pass == 0) != (x == def))
                continue;
            json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", x->spec.name, "object", "model", "created",
                                  (json_int_t)srv->t_wall, "owned_by", "bitstack");
            if (m)
                json_object_set_new(m, "bitstack", bs_sizer_model_json(srv->sizer, x));
            json_array_append_new(data, m);
        }
    return reply_json(q, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static enum MHD_Result do_metrics(hreq *q)
{
    bs_proto_buf b = {0};
    if (bs_info_prometheus(q->h->srv, &b)) {
        bs_proto_buf_free(&b);
        return reply(q, 500, "text/plain", "out of memory\n", 14);
    }
    enum MHD_Result rc = reply(q, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    bs_proto_buf_free(&b);
    return rc;
}

/* ---- requests ---------------------------------------------------------------------------- */

static bool same_time(const char *a, const char *b)
{
    /* constant time in the secret's length, whatever the guess */
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = (unsigned char)(na != nb);
    for (size_t i = 0; i < nb; i++)
        d |= (unsigned char)(b[i] ^ (i < na ? a[i] : 0));
    return d == 0;
}

static bool authorized(hreq *q, const char *url)
{
    bs_http *h = q->h;
    if (!q->peer.tcp || !h->api_key || !strcmp(url, "/") || !strcmp(url, "/health"))
        return true;
    const char *a = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return a && !strncmp(a, "Bearer ", 7) && same_time(a + 7, h->api_key);
}

static bool json_body(hreq *q)
{
    const char *t = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!t)
        return true;
    size_t n = strlen("application/json");
    return !strncasecmp(t, "application/json", n) && (t[n] == '\0' || t[n] == ';' || t[n] == ' ');
}

static enum MHD_Result route_request(hreq *q, const char *url, const char *method)
{
    bs_server *srv = q->h->srv;
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions")) {
        q->kind = url[4] == 'c' && url[5] == 'h' ? R_CHAT : R_COMPLETION;
        if (!post)
            return reply_error(q, 405, BS_PERR_BAD_REQUEST, "method_not_allowed", "%s takes POST", url);
        if (!json_body(q))
            return reply_error(q, 415, BS_PERR_BAD_REQUEST, "unsupported_media_type",
                               "the body must be application/json");
        if (srv->stopping)
            return reply_error(q, 0, BS_PERR_SHUTTING_DOWN, NULL, "the daemon is stopping");
        return do_completion(q);
    }
    if (!strcmp(url, "/v1/bitstack/budget")) {
        if (!post && !get)
            return reply_error(q, 405, BS_PERR_BAD_REQUEST, "method_not_allowed", "%s takes GET or POST", url);
        if (post && !json_body(q))
            return reply_error(q, 415, BS_PERR_BAD_REQUEST, "unsupported_media_type",
                               "the body must be application/json");
        return do_budget(q, post);
    }
    if (!get) {
        static const char *const gets[] = {"/", "/health", "/metrics", "/v1/models", "/v1/bitstack/status"};
        for (size_t i = 0; i < sizeof gets / sizeof *gets; i++)
            if (!strcmp(url, gets[i]))
                return reply_error(q, 405, BS_PERR_BAD_REQUEST, "method_not_allowed", "%s takes GET", url);
        return reply_error(q, 404, BS_PERR_NOT_FOUND, NULL, "no endpoint %s %.200s", method, url);
    }
    if (!strcmp(url, "/"))
        return reply(q, 200, "text/html; charset=utf-8", (const char *)bs_chat_page, bs_chat_page_len);
    if (!strcmp(url, "/health")) {
        if (srv->stopping)
            return reply_json(q, 503, json_pack("{s:s}", "status", "stopping"));
        return reply_json(q, 200, json_pack("{s:s}", "status", "ok"));
    }
    if (!strcmp(url, "/metrics"))
        return do_metrics(q);
    if (!strcmp(url, "/v1/models"))
        return do_models(q);
    if (!strcmp(url, "/v1/bitstack/status"))
        return reply_json(q, 200, bs_info_status(srv));
    return reply_error(q, 404, BS_PERR_NOT_FOUND, NULL, "no endpoint GET %.200s", url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    bs_http *h = cls;
    hreq *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q)
            return MHD_NO;
        q->h = h;
        q->conn = conn;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context)
            q->peer = *(const bs_peer *)ci->socket_context;
        q->own.pid = q->peer.pid;
        q->own.use = q->peer.use;
        q->own.uid = q->peer.uid;
        q->next = h->reqs;
        if (h->reqs)
            h->reqs->prev = q;
        h->reqs = q;
        *con_cls = q;
        if (!authorized(q, url))
            return reply_error(q, 401, BS_PERR_BAD_REQUEST, "invalid_api_key",
                               "this endpoint needs Authorization: Bearer <the daemon's API key>");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->srv->cfg.lim.max_line)
            return reply_error(q, 413, BS_PERR_LINE_TOO_LONG, NULL, "a request body is at most %zu bytes",
                               h->srv->cfg.lim.max_line);
        return MHD_YES;
    }
    if (q->answered)
        return MHD_YES;   /* the rest of a refused body */
    if (*upload_size) {
        if (!q->too_big && q->body.len + *upload_size > h->srv->cfg.lim.max_line)
            q->too_big = true;
        if (!q->too_big && bs_proto_buf_append(&q->body, upload, *upload_size, NULL))
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->too_big)
        return reply_error(q, 413, BS_PERR_LINE_TOO_LONG, NULL, "a request body is at most %zu bytes",
                           h->srv->cfg.lim.max_line);
    if (q->id[0])
        return answer_completion(q);
    return route_request(q, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    bs_http *h = cls;
    hreq *q = *con_cls;
    if (!q)
        return;
    *con_cls = NULL;
    if (q->s) {
        /* the client went away before its answer was complete */
        bs_log_debug(h->srv->log, "http request %s: the client went away (%d); cancelled", q->id, (int)toe);
        bs_server_abandon(h->srv, q->s);
    }
    if (q->prev)
        q->prev->next = q->next;
    else
        h->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    json_decref(q->answer);
    bs_proto_buf_free(&q->body);
    bs_proto_buf_free(&q->out);
    free(q);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    bs_http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = h->pending_peer;
        h->pending_peer = NULL;
        h->srv->n_http++;
    } else {
        h->srv->n_http--;
        if (*socket_context)
            bs_server_peer_closed(h->srv, *socket_context);
        free(*socket_context);
        *socket_context = NULL;
    }
}

/* While a request waits suspended MHD does not see its client go: look for a hang-up. */
static void on_hup_check(uv_timer_t *t)
{
    bs_http *h = t->data;
    bool any = false;
    for (hreq *q = h->reqs; q; q = q->next) {
        if (!q->suspended || !q->s)
            continue;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            continue;
        struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            bs_log_debug(h->srv->log, "http request %s: the client hung up while waiting; cancelled", q->id);
            bs_server_abandon(h->srv, q->s);
            q->s = NULL;
            q->failed = q->ended = true;
            if (!q->answer && !(q->stream && q->status == 200)) {
                q->status = 499;
                q->answer = bs_openai_error(BS_PERR_CANCELLED, NULL, "the client went away");
            }
            resume(q);
            any = true;
        }
    }
    if (any)
        run(h);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    bs_http *h = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    bs_log_debug(h->srv->log, "http: %s", msg);
}

/* ---- life ------------------------------------------------------------------------------- */

int bs_http_init(bs_server *srv, const char *api_key, int idle_timeout_s, bs_err *e)
{
    bs_http *h = calloc(1, sizeof *h);
    if (!h)
        return bs_err_set(e, "out of memory");
    h->srv = srv;
    if (api_key && !(h->api_key = strdup(api_key))) {
        free(h);
        return bs_err_set(e, "out of memory");
    }
    h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->cfg.lim.max_connections,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)idle_timeout_s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_END);
    if (!h->d) {
        free(h->api_key);
        free(h);
        return bs_err_set(e, "cannot start the HTTP front end (libmicrohttpd)");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = di ? uv_poll_init(srv->loop, &h->poll, di->epoll_fd) : UV_EINVAL;
    if (rc) {
        MHD_stop_daemon(h->d);
        free(h->api_key);
        free(h);
        return bs_err_set(e, "HTTP front end: %s", uv_strerror(rc));
    }
    h->poll.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_epoll);
    uv_timer_init(srv->loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(srv->loop, &h->hup);
    h->hup.data = h;
    uv_timer_start(&h->hup, on_hup_check, HUP_CHECK_MS, HUP_CHECK_MS);
    uv_unref((uv_handle_t *)&h->hup);
    h->open = true;
    srv->http = h;
    return 0;
}

void bs_http_adopt(bs_server *srv, int fd, const bs_peer *peer)
{
    bs_http *h = srv->http;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    bs_peer *ctx = malloc(sizeof *ctx);
    if (!h || !h->open || !ctx || getpeername(fd, (struct sockaddr *)&sa, &sl)) {
        free(ctx);
        close(fd);
        bs_server_peer_closed(srv, peer);
        return;
    }
    if (sa.ss_family == AF_UNIX)   /* MHD wants an address; an unnamed client has none */
        sl = sizeof(sa_family_t);
    *ctx = *peer;
    /* MHD announces the connection (on_connection) inside MHD_add_connection: the peer
     * waits here for it. MHD closes fd itself when it cannot take it. */
    h->pending_peer = ctx;
    if (MHD_add_connection(h->d, fd, (struct sockaddr *)&sa, sl) != MHD_YES)
        bs_log_warn(srv->log, "connection %llu: HTTP: cannot take it: %s", (unsigned long long)peer->num,
                    strerror(errno));
    if (h->pending_peer)   /* not taken: the connection never started */
        bs_server_peer_closed(srv, h->pending_peer);
    free(h->pending_peer);
    h->pending_peer = NULL;
    run(h);
}

/* Stopping: requests still computing end through their sessions (the server stops
 * those); idle keep-alive connections are closed when MHD stops, in bs_http_close. */
bool bs_http_busy(const bs_server *srv)
{
    const bs_http *h = srv->http;
    return h && h->d && h->reqs;
}

static void handle_closed(uv_handle_t *hd)
{
    bs_http *h = hd->data;
    if (--h->closing_handles == 0) {
        free(h->api_key);
        free(h);
    }
}

void bs_http_close(bs_server *srv)
{
    bs_http *h = srv->http;
    if (!h || !h->d)
        return;
    h->open = false;
    for (hreq *q = h->reqs; q; q = q->next)
        resume(q);   /* MHD must not stop with a connection suspended */
    MHD_stop_daemon(h->d);
    h->d = NULL;
    srv->http = NULL;
    h->closing_handles = 3;
    uv_close((uv_handle_t *)&h->poll, handle_closed);
    uv_close((uv_handle_t *)&h->timer, handle_closed);
    uv_close((uv_handle_t *)&h->hup, handle_closed);
}
