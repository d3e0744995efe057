/* The requests: what each op does, on the loop thread. Status and metrics are answered
 * at once; generate and chat become sessions; their slices come back here and become
 * token, done and error lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "daemon/conn.h"
#include "daemon/memory.h"

#define SESSION_OF(it) ((bs_session *)((char *)(it) - offsetof(bs_session, item)))

/* ---- sessions on a connection ------------------------------------------------------ */

static void link_session(bs_conn *c, bs_session *s)
{
    s->owner = c;
    s->prev = NULL;
    s->next = c->sessions;
    if (c->sessions)
        c->sessions->prev = s;
    c->sessions = s;
    c->n_sessions++;
}

static void unlink_session(bs_conn *c, bs_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->owner = NULL;
    c->n_sessions--;
}

static void count_tokens(bs_server *srv, bs_session *s)
{
    srv->m.tokens_generated += (uint64_t)(s->generated - s->counted);
    s->counted = s->generated;
}

/* Frees a session that has left its connection (or never had one). */
static void destroy_session(bs_server *srv, bs_session *s)
{
    count_tokens(srv, s);
    srv->m.prompt_tokens += (uint64_t)s->prompt_tokens;
    srv->n_sessions--;
    bs_session_free(s);
}

static void end_session(bs_conn *c, bs_session *s)
{
    bs_server *srv = c->srv;
    unlink_session(c, s);
    destroy_session(srv, s);
}

static bs_session *find_session(bs_conn *c, const bs_proto_id *id)
{
    for (bs_session *s = c->sessions; s; s = s->next)
        if (bs_proto_id_eq(&s->id, id))
            return s;
    return NULL;
}

/* Token lines for what the last slice made sendable. */
static int send_tokens(bs_conn *c, bs_session *s, bs_err *e)
{
    if (!s->stream)
        return 0;
    for (int i = 0; i < s->n_tok; i++) {
        size_t end = s->tok_end[i] < s->text.len ? s->tok_end[i] : s->text.len;
        if (end <= s->sent)
            continue;   /* held back: goes out with a later token */
        if (bs_proto_encode_token(&c->out, &s->id, s->text.data + s->sent, end - s->sent, s->tok_n[i], e))
            return -1;
        s->sent = end;
    }
    return 0;
}

/* The final line of a finished session; then it is freed. */
static void send_done(bs_conn *c, bs_session *s)
{
    bs_err e;
    bs_server *srv = c->srv;
    if (s->finish == BS_FINISH_CANCELLED)
        srv->m.sessions_cancelled++;
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
    bs_log_debug(srv->log, "connection %llu: request %.*s done: %s, %d+%d tokens, %.1f tok/s",
                 (unsigned long long)c->num, (int)s->id.len, s->id.json, bs_proto_finish_name(s->finish),
                 s->prompt_tokens, s->generated, st.tokens_per_s);
    end_session(c, s);
    if (rc)
        bs_conn_send_error(c, NULL, BS_PERR_INTERNAL, e.msg);
}

/* Ends a session that is not running (loop thread): why is CANCELLED or SHUTDOWN. */
static void end_idle(bs_conn *c, bs_session *s, bs_finish why)
{
    bs_server *srv = c->srv;
    bs_sched_remove(&srv->sched, &s->item);
    if (!s->started) {
        /* nothing ran: an error, as the protocol says for a queued request */
        if (why == BS_FINISH_CANCELLED)
            srv->m.sessions_cancelled++;
        bs_proto_id id = s->id;
        end_session(c, s);
        if (why == BS_FINISH_CANCELLED)
            bs_conn_send_error(c, &id, BS_PERR_CANCELLED, "cancelled before it started");
        else
            bs_conn_send_error(c, &id, BS_PERR_SHUTTING_DOWN, "the daemon is stopping");
        return;
    }
    bs_session_finish(s, why);
    send_done(c, s);
}

/* Ends s (cancel, shutdown): a running slice is asked to stop and the line follows
 * when it comes back; otherwise the line goes now. */
static void end_session_with(bs_conn *c, bs_session *s, bs_finish why)
{
    if (s->item.where == BS_SCHED_RUNNING) {
        atomic_store(&s->stop_req, (int)why + 1);
        return;
    }
    end_idle(c, s, why);
}

void bs_ops_stop_sessions(bs_conn *c)
{
    for (bs_session *s = c->sessions, *next; s; s = next) {
        next = s->next;
        end_session_with(c, s, BS_FINISH_SHUTDOWN);
    }
}

void bs_ops_abandon_sessions(bs_conn *c)
{
    bs_server *srv = c->srv;
    for (bs_session *s = c->sessions, *next; s; s = next) {
        next = s->next;
        srv->m.sessions_cancelled++;
        unlink_session(c, s);
        if (s->item.where == BS_SCHED_RUNNING) {
            /* the slice owns it until it comes back; then it is freed (owner NULL) */
            atomic_store(&s->stop_req, (int)BS_FINISH_CANCELLED + 1);
        } else {
            bs_sched_remove(&srv->sched, &s->item);
            destroy_session(srv, s);
        }
    }
}

void bs_ops_slice_work(bs_sched_item *it)
{
    bs_session_slice(SESSION_OF(it));
}

void bs_ops_slice_start(bs_sched_item *it, void *ctx)
{
    bs_server *srv = ctx;
    /* the slice runs one prefix from start to end, whatever is published meanwhile */
    SESSION_OF(it)->view = bs_engine_acquire(srv->eng);
}

void bs_ops_slice_done(bs_sched_item *it, void *ctx)
{
    bs_server *srv = ctx;
    bs_session *s = SESSION_OF(it);
    bs_engine_release(srv->eng, s->view);
    s->view = NULL;
    bs_sizer_views_released(srv->sizer);
    bs_conn *c = s->owner;
    if (!c) {
        destroy_session(srv, s);
        bs_server_check_stopped(srv);
        return;
    }
    s->started = true;
    count_tokens(srv, s);
    if (s->error != BS_PERR_NONE) {
        bs_proto_id id = s->id;
        bs_proto_code code = s->error;
        char msg[sizeof s->errmsg];
        memcpy(msg, s->errmsg, sizeof msg);
        if (code == BS_PERR_INTERNAL)
            bs_log_err(srv->log, "connection %llu: request %.*s failed: %s", (unsigned long long)c->num,
                       (int)id.len, id.json, msg);
        end_session(c, s);
        bs_conn_send_error(c, &id, code, msg);
        bs_conn_maybe_close(c);
        bs_server_check_stopped(srv);
        return;
    }
    bs_err e;
    if (send_tokens(c, s, &e)) {
        bs_log_err(srv->log, "connection %llu: %s", (unsigned long long)c->num, e.msg);
        bs_session_finish(s, BS_FINISH_CANCELLED);
    }
    int req = atomic_load(&s->stop_req);
    if (!s->finished && req)
        bs_session_finish(s, (bs_finish)(req - 1));
    if (s->finished)
        send_done(c, s);
    else
        bs_sched_push(&srv->sched, &s->item);
    bs_conn_flush(c);
    bs_conn_maybe_close(c);
    bs_server_check_stopped(srv);
}

/* ---- status, metrics, budget ----------------------------------------------------- */

static json_t *int_or_null(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

static json_t *num_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

static json_t *memory_json(const bs_mem_facts *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "mem_available", int_or_null(f->mem_available));
    json_object_set_new(o, "psi_some_avg10", num_or_null(f->psi_some_avg10));
    json_object_set_new(o, "psi_full_avg10", num_or_null(f->psi_full_avg10));
    json_object_set_new(o, "cgroup_version", json_integer(f->cgroup_version));
    json_object_set_new(o, "cgroup", f->cgroup_version ? json_string(f->cgroup) : json_null());
    json_object_set_new(o, "memory_current", int_or_null(f->memory_current));
    json_object_set_new(o, "memory_max", int_or_null(f->memory_max));
    json_object_set_new(o, "inactive_file", int_or_null(f->inactive_file));
    return o;
}

static json_t *status_json(bs_server *srv)
{
    const bs_engine *eng = srv->eng;
    const bs_store *st = &eng->store;
    int n = eng->cur ? eng->cur->n : 0;
    const bs_mem_facts mf = srv->sizer->facts;   /* the sizer's last sample, not a read per request */
    int running = srv->sched.running, ready = srv->sched.n_ready;
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(srv->cfg.model_name));
    json_object_set_new(o, "store", json_string(st->path));
    json_object_set_new(o, "context", json_integer(st->cfg.seq_len));
    json_object_set_new(o, "vocab_size", json_integer(st->cfg.vocab_size));
    json_object_set_new(o, "stack_n", json_integer(n));
    json_object_set_new(o, "stack_total", json_integer(st->n_blocks));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)st->resident[n]));
    json_object_set_new(o, "full_bytes", json_integer((json_int_t)st->resident[st->n_blocks]));
    json_object_set_new(o, "min_bytes", json_integer((json_int_t)st->resident[st->min_blocks]));
    json_object_set_new(o, "bpw", json_real(bs_store_bpw(st, n)));
    bs_sizer_status(srv->sizer, o);
    json_object_set_new(o, "sessions", json_integer(srv->n_sessions));
    json_object_set_new(o, "sessions_running", json_integer(running));
    json_object_set_new(o, "sessions_waiting", json_integer(ready));
    json_object_set_new(o, "connections", json_integer(srv->n_conns));
    json_object_set_new(o, "threads", json_integer(srv->cfg.threads));
    json_object_set_new(o, "uptime_s", json_real((double)(uv_hrtime() - srv->t_start) / 1e9));
    json_object_set_new(o, "pid", json_integer(getpid()));
    json_object_set_new(o, "memory", memory_json(&mf));
    json_object_set_new(o, "limits", json_pack("{s:I, s:i, s:i, s:i, s:i, s:I}",
                                               "max_line", (json_int_t)srv->cfg.lim.max_line,
                                               "max_sessions", srv->cfg.lim.max_sessions,
                                               "max_sessions_per_connection", srv->cfg.lim.max_sessions_per_conn,
                                               "max_connections", srv->cfg.lim.max_connections,
                                               "max_tokens", srv->cfg.lim.max_tokens,
                                               "max_output", (json_int_t)srv->cfg.max_output));
    return o;
}

static json_t *metrics_json(bs_server *srv)
{
    const bs_server_metrics *m = &srv->m;
    const bs_mem_facts mf = srv->sizer->facts;
    json_t *o = json_object();
#define SET_U(name, v) json_object_set_new(o, name, json_integer((json_int_t)(v)))
    SET_U("requests", m->requests);
    SET_U("errors", m->errors);
    SET_U("tokens_generated", m->tokens_generated);
    SET_U("prompt_tokens", m->prompt_tokens);
    const bs_res *res = &srv->sizer->res;
    SET_U("resize_events", res->grows + res->shrinks);
    SET_U("resize_grows", res->grows);
    SET_U("resize_shrinks", res->shrinks);
    SET_U("resize_failures", res->failures);
    SET_U("bytes_read", m->store_bytes_read + res->bytes_read);
    SET_U("stack_n", srv->eng->cur ? srv->eng->cur->n : 0);
    SET_U("resident_bytes", srv->eng->store.resident[srv->eng->cur ? srv->eng->cur->n : 0]);
    SET_U("target_bytes", srv->sizer->target);
    SET_U("kv_bytes", srv->sizer->kv_bytes);
    SET_U("psi_triggers", srv->sizer->triggers);
    SET_U("bytes_dropped", m->bytes_dropped);
    SET_U("bytes_in", m->bytes_in);
    SET_U("bytes_out", m->bytes_out);
    SET_U("sessions", srv->n_sessions);
    SET_U("sessions_total", m->sessions_total);
    SET_U("sessions_cancelled", m->sessions_cancelled);
    SET_U("connections", srv->n_conns);
    SET_U("connections_total", m->connections_total);
    SET_U("connections_rejected", m->connections_rejected);
    SET_U("connections_dropped", m->connections_dropped);
    SET_U("slices", srv->sched.slices);
#undef SET_U
    json_object_set_new(o, "psi_some_avg10", num_or_null(mf.psi_some_avg10));
    json_object_set_new(o, "memory_current", int_or_null(mf.memory_current));
    json_object_set_new(o, "memory_max", int_or_null(mf.memory_max));
    json_object_set_new(o, "mem_available", int_or_null(mf.mem_available));
    json_object_set_new(o, "headroom_bytes", int_or_null(srv->sizer->headroom));
    return o;
}

static void do_budget(bs_conn *c, const bs_request *r)
{
    bs_server *srv = c->srv;
    bs_sizer *sz = srv->sizer;
    bs_err e;
    if (r->has_auto || r->has_min || r->has_max) {
        bs_budget lo, hi;
        bs_proto_parse_budget("min", &lo, NULL);
        bs_proto_parse_budget("max", &hi, NULL);
        if (r->has_min)
            lo = r->min;
        if (r->has_max)
            hi = r->max;
        /* "budget": X comes as min = max = X: a fixed size */
        bool fixed = r->has_min && r->has_max && !strcmp(r->min.text, r->max.text);
        if (bs_sizer_set_budget(sz, fixed, &lo, &hi, &e)) {
            bs_conn_send_error(c, &r->id, BS_PERR_BAD_REQUEST, e.msg);
            return;
        }
        bs_log_info(srv->log, "connection %llu: budget %s %s..%s", (unsigned long long)c->num,
                    fixed ? "fixed" : "auto", lo.text, fixed ? lo.text : hi.text);
    }
    const bs_engine *eng = srv->eng;
    int n = eng->cur ? eng->cur->n : 0;
    json_t *o = bs_sizer_budget_json(sz);
    json_object_set_new(o, "target_bytes", json_integer((json_int_t)sz->target));
    json_object_set_new(o, "target_n", json_integer(sz->target_n));
    json_object_set_new(o, "stack_n", json_integer(n));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)eng->store.resident[n]));
    bs_conn_send_result(c, &r->id, o);
    json_decref(o);
}

static void do_cancel(bs_conn *c, const bs_request *r)
{
    bs_session *s = find_session(c, &r->target);
    if (!s) {
        char msg[BS_PROTO_ID_JSON_MAX + 64];
        snprintf(msg, sizeof msg, "no request %.*s on this connection", (int)r->target.len, r->target.json);
        bs_conn_send_error(c, &r->id, BS_PERR_NOT_FOUND, msg);
        return;
    }
    json_t *target = json_loadb(r->target.json, r->target.len, JSON_DECODE_ANY, NULL);
    json_t *o = json_object();
    json_object_set_new(o, "cancelled", target ? target : json_null());
    bs_conn_send_result(c, &r->id, o);
    json_decref(o);
    if (!c->closing)
        end_session_with(c, s, BS_FINISH_CANCELLED);
}

static uint64_t pick_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = uv_hrtime() * 0x9e3779b97f4a7c15ull;
    return seed;
}

static void start_session(bs_conn *c, bs_request *r)
{
    bs_server *srv = c->srv;
    const bs_proto_limits *lim = &srv->cfg.lim;
    char msg[160];
    if (c->n_sessions >= lim->max_sessions_per_conn || srv->n_sessions >= lim->max_sessions) {
        if (c->n_sessions >= lim->max_sessions_per_conn)
            snprintf(msg, sizeof msg, "this connection already has %d requests open", c->n_sessions);
        else
            snprintf(msg, sizeof msg, "the daemon already has %d requests open", srv->n_sessions);
        bs_conn_send_error(c, &r->id, BS_PERR_TOO_MANY_SESSIONS, msg);
        return;
    }
    if (find_session(c, &r->id)) {
        snprintf(msg, sizeof msg, "request %.*s is still open on this connection; ids in flight must differ",
                 (int)r->id.len, r->id.json);
        bs_conn_send_error(c, &r->id, BS_PERR_BAD_REQUEST, msg);
        return;
    }
    bs_err e;
    bs_session *s = bs_session_new(srv->eng, r, r->has_seed ? r->seed : pick_seed(), &e);
    if (!s) {
        bs_conn_send_error(c, &r->id, BS_PERR_INTERNAL, e.msg);
        return;
    }
    s->t_recv = uv_hrtime();
    link_session(c, s);
    srv->n_sessions++;
    srv->m.sessions_total++;
    bs_sched_push(&srv->sched, &s->item);
}

void bs_ops_handle_line(bs_conn *c, const char *line, size_t len)
{
    bs_server *srv = c->srv;
    bs_request r;
    bs_proto_error pe;
    if (bs_proto_parse_request(line, len, &srv->cfg.lim, &r, &pe)) {
        srv->m.requests++;
        bs_conn_send_error(c, &pe.id, pe.code, pe.message);
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
        bs_conn_send_error(c, &r.id, BS_PERR_SHUTTING_DOWN, "the daemon is stopping");
        bs_request_free(&r);
        bs_conn_maybe_close(c);
        return;
    }
    json_t *o;
    switch (r.op) {
    case BS_OP_STATUS:
        o = status_json(srv);
        bs_conn_send_result(c, &r.id, o);
        json_decref(o);
        break;
    case BS_OP_METRICS:
        o = metrics_json(srv);
        bs_conn_send_result(c, &r.id, o);
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
        bs_conn_send_error(c, &r.id, BS_PERR_UNKNOWN_OP, "unknown op");
        break;
    }
    bs_request_free(&r);
}
