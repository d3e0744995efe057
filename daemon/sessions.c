/* The server's sessions: one registry for every front end. A session is queued on the
 * scheduler, runs slice after slice, and its results go to its sink; the limits, the
 * lookup by id and the ends (done, error, cancel, abandon, shutdown) live here, so a front
 * end only turns sink calls into its own bytes.
 *
 * A sink callback may drop its own connection, which abandons the connection's sessions:
 * a session is never freed under a callback running for it (`busy`), and a session that
 * is finishing has left the registry before its last callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "daemon/frontend.h"

#define SESSION_OF(it) ((bs_session *)((char *)(it) - offsetof(bs_session, item)))

static void link_session(bs_server *srv, bs_session *s, bs_owner *owner)
{
    s->owner = owner;
    owner->n_sessions++;
    s->use = owner->use;
    if (s->use) {
        s->use->sessions++;
        s->item.served = &s->use->served;   /* the scheduler shares compute per user */
    }
    s->prev = NULL;
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->n_sessions++;
}

/* Out of the registry and away from its owner; the caller frees it. */
static void unlink_session(bs_server *srv, bs_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    if (s->owner)
        s->owner->n_sessions--;
    s->owner = NULL;
    if (s->use) {
        s->use->sessions--;
        bs_peers_release(&srv->peers, s->use);
        s->use = NULL;
        s->item.served = NULL;
    }
    if (s->served) {
        s->served->sessions--;
        s->served->last_used = uv_now(srv->loop);
    }
    srv->n_sessions--;
}

static void count_tokens(bs_server *srv, bs_session *s)
{
    srv->m.tokens_generated += (uint64_t)(s->generated - s->counted);
    s->counted = s->generated;
}

/* Frees a session that already left the registry. */
static void destroy(bs_server *srv, bs_session *s)
{
    count_tokens(srv, s);
    srv->m.prompt_tokens += (uint64_t)s->prompt_tokens;
    bs_session_free(s);
    /* a draining model may have lost its last session */
    bs_models_check(srv->models);
}

static void end_with_error(bs_server *srv, bs_session *s, bs_proto_code code, const char *msg)
{
    unlink_session(srv, s);
    if (code == BS_PERR_CANCELLED)
        srv->m.sessions_cancelled++;
    if (code == BS_PERR_INTERNAL)
        bs_log_err(srv->log, "request %.*s failed: %s", (int)s->id.len, s->id.json, msg);
    s->sink.error(s, code, msg, s->sink.ctx);
    destroy(srv, s);
}

static void end_done(bs_server *srv, bs_session *s)
{
    unlink_session(srv, s);
    if (s->finish == BS_FINISH_CANCELLED)
        srv->m.sessions_cancelled++;
    s->sink.done(s, s->sink.ctx);
    destroy(srv, s);
}

static uint64_t pick_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = uv_hrtime() * 0x9e3779b97f4a7c15ull;
    return seed;
}

bs_session *bs_server_submit(bs_server *srv, bs_request *r, bs_owner *owner, const bs_sink *sink,
                             bs_proto_code *code, char *msg, size_t msg_len)
{
    const bs_proto_limits *lim = &srv->cfg.lim;
    /* a client's mistake first, whatever the load */
    bs_served *m = bs_models_find(srv->models, r->model);
    if (!m && !r->model[0])
        m = bs_models_first(srv->models);   /* none ready: say why the first is not */
    if (!m || m->state != BS_SERVED_READY) {
        *code = m && m->state != BS_SERVED_FAILED ? BS_PERR_BUSY : BS_PERR_MODEL_NOT_FOUND;
        if (m && m->state == BS_SERVED_FAILED)
            snprintf(msg, msg_len, "model %s failed: %.300s", m->spec.name, m->error);
        else if (m)
            snprintf(msg, msg_len, "model %s is still %s (status shows how far)", m->spec.name,
                     m->state == BS_SERVED_BUILDING ? "being built" : "loading");
        else if (r->model[0])
            snprintf(msg, msg_len, "no model named \"%s\" is served (status lists them)", r->model);
        else
            snprintf(msg, msg_len, "no model is ready yet");
        return NULL;
    }
    if (bs_server_find(srv, owner, &r->id)) {
        *code = BS_PERR_BAD_REQUEST;
        snprintf(msg, msg_len, "request %.*s is still open on this connection; ids in flight must differ",
                 (int)r->id.len, r->id.json);
        return NULL;
    }
    *code = BS_PERR_TOO_MANY_SESSIONS;
    if (owner->n_sessions >= lim->max_sessions_per_conn) {
        snprintf(msg, msg_len, "this connection already has %d requests open", owner->n_sessions);
        return NULL;
    }
    if (owner->use && !bs_peers_may_start(&srv->peers, owner->use->uid)) {
        snprintf(msg, msg_len, "user %d already has %d requests open", (int)owner->use->uid,
                 owner->use->sessions);
        srv->m.sessions_refused_user++;
        return NULL;
    }
    if (srv->n_sessions >= lim->max_sessions) {
        snprintf(msg, msg_len, "the daemon already has %d requests open", srv->n_sessions);
        return NULL;
    }
    /* memory first: a session that could not fit even with the model at its floor is
     * refused now, not left to get the daemon OOM-killed later */
    const bs_config *cfg = &m->eng.store.cfg;
    size_t prompt = r->prompt_len;
    for (int i = 0; i < r->n_messages; i++)
        prompt += r->messages[i].len + 32;   /* the chat template's words around each */
    uint64_t tokens = (uint64_t)prompt + (uint64_t)r->max_tokens + 2;
    int ctx = cfg->seq_len;
    /* the batch rows a prefill touches are at most the prompt's tokens (at most a byte each) */
    int rows = prompt + 2 < 64 ? (int)prompt + 2 : 64;
    size_t need = bs_state_bytes_for(cfg, ctx, rows, tokens < (uint64_t)ctx ? (int)tokens : ctx);
    uint64_t promised = 0;
    for (bs_session *o = srv->sessions; o; o = o->next)
        promised += o->need > o->kv_bytes ? o->need - o->kv_bytes : 0;
    int64_t room;
    if (bs_sizer_admit(srv->sizer, need, promised, &room)) {
        *code = BS_PERR_INSUFFICIENT_MEMORY;
        snprintf(msg, msg_len, "this request may need %.1f MiB; there are %.1f MiB for it even with the model at "
                 "its floor (%d requests running)", (double)need / 1048576, (double)(room > 0 ? room : 0) / 1048576,
                 srv->n_sessions);
        srv->m.sessions_refused_memory++;
        return NULL;
    }
    bs_err e;
    bs_session *s = bs_session_new(&m->eng, r, r->has_seed ? r->seed : pick_seed(), &e);
    if (!s) {
        *code = BS_PERR_INTERNAL;
        snprintf(msg, msg_len, "%s", e.msg);
        return NULL;
    }
    s->served = m;
    m->sessions++;
    m->requests++;
    m->last_used = uv_now(srv->loop);
    s->t_recv = uv_hrtime();
    s->need = need;
    s->sink = *sink;
    link_session(srv, s, owner);
    srv->m.sessions_total++;
    bs_sched_push(&srv->sched, &s->item);
    return s;
}

bs_session *bs_server_find(bs_server *srv, const bs_owner *owner, const bs_proto_id *id)
{
    for (bs_session *s = srv->sessions; s; s = s->next)
        if (s->owner == owner && bs_proto_id_eq(&s->id, id))
            return s;
    return NULL;
}

/* Ends a session that is neither running nor inside a callback; why is CANCELLED or
 * SHUTDOWN. Nothing ran: an error, as the protocol says for a queued request. */
static void end_idle(bs_server *srv, bs_session *s, bs_finish why)
{
    bs_sched_remove(&srv->sched, &s->item);
    if (!s->started) {
        if (why == BS_FINISH_CANCELLED)
            end_with_error(srv, s, BS_PERR_CANCELLED, "cancelled before it started");
        else
            end_with_error(srv, s, BS_PERR_SHUTTING_DOWN, "the daemon is stopping");
        return;
    }
    bs_session_finish(s, why);
    end_done(srv, s);
}

/* A running slice (or a callback in progress) is asked to stop; the end follows when it
 * comes back. */
static bool end_later(bs_session *s, bs_finish why)
{
    if (s->item.where != BS_SCHED_RUNNING && !s->busy)
        return false;
    atomic_store(&s->stop_req, (int)why + 1);
    return true;
}

void bs_server_cancel(bs_server *srv, bs_session *s)
{
    if (!end_later(s, BS_FINISH_CANCELLED))
        end_idle(srv, s, BS_FINISH_CANCELLED);
}

void bs_server_abandon(bs_server *srv, bs_session *s)
{
    if (!s->owner)
        return;
    srv->m.sessions_cancelled++;
    if (s->item.where == BS_SCHED_RUNNING || s->busy) {
        /* the slice (or the callback) holds it; freed when it comes back, owner NULL */
        atomic_store(&s->stop_req, (int)BS_FINISH_CANCELLED + 1);
        s->owner->n_sessions--;
        s->owner = NULL;
        return;
    }
    bs_sched_remove(&srv->sched, &s->item);
    unlink_session(srv, s);
    destroy(srv, s);
}

void bs_server_abandon_owner(bs_server *srv, bs_owner *owner)
{
    for (bs_session *s = srv->sessions, *next; s; s = next) {
        next = s->next;
        if (s->owner == owner)
            bs_server_abandon(srv, s);
    }
}

void bs_server_stop_sessions(bs_server *srv)
{
    /* a callback may drop a connection and so free other sessions: start over after each */
    for (;;) {
        bs_session *s = srv->sessions;
        while (s && (!s->owner || end_later(s, BS_FINISH_SHUTDOWN)))
            s = s->next;
        if (!s)
            break;
        end_idle(srv, s, BS_FINISH_SHUTDOWN);
    }
}

void bs_server_kv(void *ctx, uint64_t *kv_bytes, uint64_t *kv_next, int *sessions)
{
    bs_server *srv = ctx;
    uint64_t kv = 0, next = 0;
    for (bs_session *s = srv->sessions; s; s = s->next) {
        kv += s->kv_bytes;
        /* a KV cache grows by one chunk at a time: room for the next one */
        const bs_config *c = &s->eng->store.cfg;
        next += 2ull * BS_KV_CHUNK * (uint64_t)c->n_layers * (uint64_t)c->kv_dim * sizeof(float);
    }
    *kv_bytes = kv;
    *kv_next = next;
    *sessions = srv->n_sessions;
}

/* ---- the scheduler's hooks ------------------------------------------------------------ */

void bs_server_slice_work(bs_sched_item *it)
{
    bs_session *ss[BS_SCHED_MAX_BATCH];
    int n = 0;
    for (bs_sched_item *m = it; m && n < BS_SCHED_MAX_BATCH; m = m->batch_next)
        ss[n++] = SESSION_OF(m);
    bs_session_slice_batch(ss, n, &ss[0]->batch);
}

void bs_server_slice_start(bs_sched_item *it, void *ctx)
{
    (void)ctx;
    /* the slice runs one prefix from start to end, whatever is published meanwhile; a
     * batch (sessions of one engine) runs one for all its sessions (each holds it) */
    bs_engine *eng = SESSION_OF(it)->eng;
    bs_view *v = bs_engine_acquire(eng);
    SESSION_OF(it)->view = v;
    for (bs_sched_item *m = it->batch_next; m; m = m->batch_next)
        SESSION_OF(m)->view = v ? bs_engine_hold(eng, v) : NULL;
}

/* A session whose owner went away (abandoned) leaves the registry here. */
static bool gone(bs_server *srv, bs_session *s)
{
    if (s->owner)
        return false;
    unlink_session(srv, s);
    destroy(srv, s);
    return true;
}

void bs_server_slice_done(bs_sched_item *it, void *ctx)
{
    bs_server *srv = ctx;
    bs_session *s = SESSION_OF(it);
    bs_engine_release(s->eng, s->view);
    s->view = NULL;
    if (s->served)
        s->served->last_used = uv_now(srv->loop);
    srv->sched.batched_steps += s->batch.steps;
    srv->sched.batched_rows += s->batch.rows;
    s->batch.steps = s->batch.rows = 0;
    bs_sizer_views_released(srv->sizer);
    if (gone(srv, s))
        goto out;
    s->started = true;
    count_tokens(srv, s);
    if (s->error != BS_PERR_NONE) {
        end_with_error(srv, s, s->error, s->errmsg);
        goto out;
    }
    if (s->stream && s->n_tok) {
        s->busy = true;
        s->sink.tokens(s, s->sink.ctx);
        s->busy = false;
        if (gone(srv, s))
            goto out;
    }
    int req = atomic_load(&s->stop_req);
    if (!s->finished && req)
        bs_session_finish(s, (bs_finish)(req - 1));
    if (s->finished)
        end_done(srv, s);
    else
        bs_sched_push(&srv->sched, &s->item);
out:
    bs_server_check_stopped(srv);
}
