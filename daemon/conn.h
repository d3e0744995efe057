/* bs_conn: one client connection. Internal to the daemon: server.c owns the socket side
 * (reading, writing, bounds, closing), ops.c the requests read from it.
 *
 * Lifetime: accepted -> reading -> (EOF seen, or the server stopping) -> closed once its
 * sessions ended and its lines were written; or dropped at once (a write error, a client
 * not reading). uv_close is asynchronous: a closing conn stays allocated, inert, until
 * its close callback, so pointers to it stay valid within the current callback. */
#ifndef BS_CONN_H
#define BS_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/server.h"
#include "daemon/session.h"
#include "proto/linebuf.h"
#include "proto/proto.h"

typedef struct bs_conn {
    bs_server *srv;
    uv_pipe_t pipe;
    bs_linebuf lb;
    bool lb_ready;
    bs_proto_buf out;           /* lines not yet handed to the socket or libuv */
    struct bs_conn *prev, *next;
    bs_session *sessions;       /* open generate/chat requests */
    int n_sessions;
    int writes;                 /* uv_write requests in flight */
    bool read_eof;              /* no more requests will come */
    bool closing;               /* uv_close was called */
    uint64_t num;               /* for logs */
    pid_t pid;                  /* SO_PEERCRED */
    uid_t uid;
} bs_conn;

/* server.c */
void bs_conn_flush(bs_conn *c);                  /* may drop c */
void bs_conn_maybe_close(bs_conn *c);            /* closes when nothing is left to do */
void bs_conn_drop(bs_conn *c, const char *why);
void bs_conn_send_error(bs_conn *c, const bs_proto_id *id, bs_proto_code code, const char *msg);
void bs_conn_send_result(bs_conn *c, const bs_proto_id *id, const json_t *result);
void bs_server_check_stopped(bs_server *srv);

/* ops.c */
void bs_ops_handle_line(bs_conn *c, const char *line, size_t len);
void bs_ops_slice_done(bs_sched_item *it, void *ctx);   /* bs_sched's `after` */
void bs_ops_slice_work(bs_sched_item *it);              /* bs_sched's `work` */
void bs_ops_slice_start(bs_sched_item *it, void *ctx);  /* bs_sched's `start` */
/* Ends every session of c for a stopping server (queued: shutting_down; between slices:
 * done "shutdown"; running: at the end of the slice). */
void bs_ops_stop_sessions(bs_conn *c);
/* Forgets every session of c without a word (c is being dropped). */
void bs_ops_abandon_sessions(bs_conn *c);

#endif
