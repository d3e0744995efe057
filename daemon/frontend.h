/* What the server's parts promise each other (internal to the daemon).
 *
 * server.c accepts connections and looks at their first bytes; a JSON-lines client goes
 * to jsonl.c, anything else to http.c. Both front ends make sessions through the server's
 * registry (sessions.c) and answer about the daemon through info.c. */
#ifndef BS_FRONTEND_H
#define BS_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/peers.h"
#include "daemon/server.h"

/* Who is on the other end of an accepted socket. */
typedef struct {
    uint64_t num;   /* for logs */
    pid_t pid;      /* SO_PEERCRED on the Unix socket, else -1 */
    uid_t uid;
    bool tcp;       /* came in through --listen */
    bool refuse;    /* over the connection limit: answer why, then close */
    bool refuse_user;   /* ... the limit of connections per user */
    bs_peer_use *use;   /* its user's counts (NULL for a refused connection) */
} bs_peer;

/* server.c */
void bs_server_check_stopped(bs_server *srv);
/* A connection of peer closed: its user holds one fewer. */
void bs_server_peer_closed(bs_server *srv, const bs_peer *peer);
/* Counts a refused connection; logs at most a line a second, with how many. */
void bs_server_note_refused(bs_server *srv, const bs_peer *peer, const char *why);
/* Connections open, whatever their protocol (the limit counts them all). */
int bs_server_connections(const bs_server *srv);

/* sessions.c */
/* Ends every session for a stopping server (queued: shutting_down; between slices: done
 * "shutdown"; running: at the end of the slice). */
void bs_server_stop_sessions(bs_server *srv);
void bs_server_slice_work(bs_sched_item *it);               /* bs_sched's `work` */
void bs_server_slice_start(bs_sched_item *it, void *ctx);   /* bs_sched's `start` */
void bs_server_slice_done(bs_sched_item *it, void *ctx);    /* bs_sched's `after` */

/* jsonl.c */
/* Takes fd (accepted, non-blocking) as a JSON-lines connection; closes it on failure. */
void bs_jsonl_adopt(bs_server *srv, int fd, const bs_peer *peer);
/* The server's timer: drops connections whose clients hung up after a half close, and
 * closes those that sent no request within the idle timeout. */
void bs_jsonl_tick(bs_server *srv);
/* Bytes the connections' output buffers hold (allocated, not only filled). */
uint64_t bs_jsonl_held(const bs_server *srv);
/* Closes each connection once its last lines are out (the server is stopping). */
void bs_jsonl_stop(bs_server *srv);
void bs_jsonl_drop_all(bs_server *srv, const char *why);

/* http.c */
typedef struct bs_http bs_http;
int bs_http_init(bs_server *srv, const char *api_key, int idle_timeout_s, bs_err *e);
/* Takes fd (accepted, non-blocking) as an HTTP connection; closes it on failure. */
void bs_http_adopt(bs_server *srv, int fd, const bs_peer *peer);
/* Requests are in progress (a stopping server waits for them). */
bool bs_http_busy(const bs_server *srv);
/* Closes every HTTP connection and the front end (the loop finishes closing it). */
void bs_http_close(bs_server *srv);

#endif
