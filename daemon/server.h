/* bs_server: the listening sockets, the sessions, and the front ends that speak to clients.
 *
 * Everything here runs on the loop thread and only moves bytes. The server accepts each
 * connection itself and looks at its first byte: `{` is a JSON-lines client (jsonl.c,
 * docs/protocol.md), anything else an HTTP client (http.c: the OpenAI-compatible API and
 * the chat page). Both make generate/chat sessions through one registry (sessions.c) that
 * owns the limits and the lookup by id; bs_sched runs the sessions on the pool, and each
 * slice that comes back goes to its session's sink, which the front end turns into lines
 * or events.
 *
 * Stopping (bs_server_stop): the listeners close at once (the socket file is removed when
 * this server made it); queued requests get `shutting_down`, running ones end with a done
 * line (finish_reason "shutdown") at the end of their current slice; connections close
 * once their last line is written, or after grace_ms regardless. Then the pool is joined
 * and `done` is called; the loop has nothing left to run. */
#ifndef BS_SERVER_H
#define BS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/log.h"
#include "daemon/peers.h"
#include "daemon/sched.h"
#include "daemon/session.h"
#include "daemon/sizer.h"
#include "proto/proto.h"

typedef struct {
    const char *socket_path;    /* where to listen (ignored with listen_fd) */
    int listen_fd;              /* an inherited listening socket (socket activation), or -1 */
    int threads;                /* pool threads: sessions computing at once */
    bs_proto_limits lim;
    size_t max_output;          /* bytes queued for one client before it is dropped */
    int grace_ms;               /* how long stopping waits for clients to take their lines */
    const char *listen;         /* "HOST:PORT" for HTTP over TCP, or NULL */
    const char *api_key;        /* required (Bearer) from TCP clients when set */
    int idle_timeout_s;         /* an HTTP connection with nothing going on is closed */
    int max_conns_per_user;     /* connections of one uid (0: no limit; trusted uids: none) */
    int max_sessions_per_user;  /* open requests of one uid */
    const uid_t *trusted;       /* uids never limited per user (root, the daemon's own) */
    int n_trusted;
} bs_server_config;

typedef struct {
    uint64_t requests, errors;
    uint64_t tokens_generated, prompt_tokens;
    uint64_t sessions_total, sessions_cancelled, sessions_refused_memory;
    uint64_t sessions_refused_user;
    uint64_t connections_total, connections_rejected, connections_dropped, connections_idle_closed;
    uint64_t bytes_in, bytes_out, bytes_dropped;
    uint64_t store_bytes_read;
} bs_server_metrics;

struct bs_conn;
struct sniff;
struct bs_http;
typedef struct bs_server bs_server;

/* A listening socket, watched for connections to accept. */
typedef struct {
    uv_poll_t poll;
    int fd;
    bool tcp;
    bool open;
    bs_server *srv;
} bs_listener;
typedef void (*bs_server_done_fn)(bs_server *srv, void *ctx);

struct bs_server {
    uv_loop_t *loop;
    const bs_log *log;
    bs_server_config cfg;
    bs_models *models;          /* what is served */
    bs_sizer *sizer;            /* keeps the models at the size memory allows */
    bs_sched sched;
    bs_listener unix_l;
    bs_listener tcp_l;          /* --listen */
    struct bs_http *http;       /* the HTTP front end (http.c) */
    int64_t t_wall;             /* time(NULL) at start */
    struct sniff *sniffing;     /* accepted, first bytes not seen yet */
    int n_sniffing;
    int n_http;                 /* HTTP connections (http.c) */
    bool own_file;              /* we bound socket_path: remove it when stopping */
    dev_t sock_dev;
    ino_t sock_ino;
    uv_timer_t grace;
    uv_timer_t tick;
    int spare_fd;               /* given up to accept (and refuse) a client when out of fds */
    uint64_t refused_logged;    /* uv_now() of the last "refused" log line */
    uint64_t refused_quiet;     /* refusals since */            /* housekeeping: idle and vanished connections */
    struct bs_conn *conns;      /* JSON-lines connections (jsonl.c) */
    int n_conns;
    bs_session *sessions;       /* every open generate/chat request (sessions.c) */
    bs_peers peers;             /* what each client user holds */
    int n_sessions;
    bool stopping, stopped;
    bs_server_done_fn done;
    void *done_ctx;
    uint64_t t_start;
    uint64_t next_conn;
    char *rbuf;                 /* one read buffer: reads are handled before the next one */
    size_t rbuf_len;
    bs_server_metrics m;
};

/* Listens (binding cfg->socket_path, or adopting cfg->listen_fd) and starts the pool.
 * A socket file left by a dead daemon is replaced; one a live daemon answers on is not
 * (the error says so). Before the loop runs. */
int bs_server_init(bs_server *srv, uv_loop_t *loop, const bs_log *log, const bs_server_config *cfg,
                   bs_models *models, bs_sizer *sizer, bs_err *e);

/* Bytes the live sessions' KV caches hold, what they may take next, and how many
 * sessions there are (the sizer's kv_fn). */
void bs_server_kv(void *srv, uint64_t *kv_bytes, uint64_t *kv_next, int *sessions);

/* ---- sessions (sessions.c): the one registry, whichever front end made them ---------- */

/* Makes a session of a GENERATE or CHAT request (its strings are taken) for owner, with
 * results going to sink, and queues it, on the model the request names (r->model; "":
 * the default). NULL when refused: no such model (or it is still loading), the limits
 * (the daemon's, the owner's), an id already open for this owner, no memory; *code and
 * msg say why. */
bs_session *bs_server_submit(bs_server *srv, bs_request *r, bs_owner *owner, const bs_sink *sink,
                             bs_proto_code *code, char *msg, size_t msg_len);

/* The owner's open session with this id, or NULL. */
bs_session *bs_server_find(bs_server *srv, const bs_owner *owner, const bs_proto_id *id);

/* Ends s as cancelled: its sink hears `error` (it had not started) or `done` (finish
 * reason "cancelled"), now or at the end of its running slice. */
void bs_server_cancel(bs_server *srv, bs_session *s);

/* Forgets s without a word to its sink (its client went away); counted as cancelled. */
void bs_server_abandon(bs_server *srv, bs_session *s);

/* bs_server_abandon for every session of owner. */
void bs_server_abandon_owner(bs_server *srv, bs_owner *owner);

/* Starts stopping (idempotent); done(srv, ctx) is called once everything has ended. */
void bs_server_stop(bs_server *srv, bs_server_done_fn done, void *ctx);

/* Frees what is left, after done was called and the loop ran out. */
void bs_server_free(bs_server *srv);

#endif
