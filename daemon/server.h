/* bs_server: the listening socket, the client connections, and the requests on them.
 *
 * Everything here runs on the loop thread and only moves bytes: requests are parsed
 * (proto/), generate/chat become sessions that bs_sched runs on the pool, and each slice
 * that comes back is turned into response lines.
 *
 * Output is bounded per connection: lines go out with uv_try_write when the socket
 * takes them, else they queue in libuv; a client whose queue passes max_output bytes is
 * not reading, and is dropped (its sessions cancelled and freed) so that it cannot hold
 * memory or stall anyone else.
 *
 * Stopping (bs_server_stop): the listener closes at once (its socket file is removed when
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
    const char *model_name;
} bs_server_config;

typedef struct {
    uint64_t requests, errors;
    uint64_t tokens_generated, prompt_tokens;
    uint64_t sessions_total, sessions_cancelled;
    uint64_t connections_total, connections_rejected, connections_dropped;
    uint64_t bytes_in, bytes_out, bytes_dropped;
    uint64_t store_bytes_read;
} bs_server_metrics;

struct bs_conn;
typedef struct bs_server bs_server;
typedef void (*bs_server_done_fn)(bs_server *srv, void *ctx);

struct bs_server {
    uv_loop_t *loop;
    const bs_log *log;
    bs_server_config cfg;
    bs_engine *eng;
    bs_sizer *sizer;            /* keeps the engine at the size memory allows */
    bs_sched sched;
    uv_pipe_t listener;
    bool listening;
    bool own_file;              /* we bound socket_path: remove it when stopping */
    dev_t sock_dev;
    ino_t sock_ino;
    uv_timer_t grace;
    struct bs_conn *conns;
    int n_conns, n_sessions;
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
                   bs_engine *eng, bs_sizer *sizer, bs_err *e);

/* Bytes the live sessions' KV caches hold, and how many sessions there are (the
 * sizer's kv_fn). */
void bs_server_kv(void *srv, uint64_t *kv_bytes, int *sessions);

/* Starts stopping (idempotent); done(srv, ctx) is called once everything has ended. */
void bs_server_stop(bs_server *srv, bs_server_done_fn done, void *ctx);

/* Frees what is left, after done was called and the loop ran out. */
void bs_server_free(bs_server *srv);

#endif
