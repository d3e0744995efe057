/* bs_conn: one client connection to bitstackd (docs/protocol.md): connect by the socket
 * path rule of proto/sockpath.h, send requests, read response lines one at a time.
 * Blocking I/O: a client waits for its daemon (chat waits on Ctrl-C too, bs_conn_wait,
 * and cancels with the protocol's cancel op); Ctrl-C in the other commands ends the
 * process, which closes the socket, and the daemon cancels what the connection had open. */
#ifndef BS_CONN_H
#define BS_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/err.h"
#include "proto/linebuf.h"
#include "proto/proto.h"
#include "proto/sockpath.h"

/* Exit codes of the daemon subcommands (BS_EXIT_USAGE, 2, is in client/opts.h). */
#define BS_EXIT_DAEMON 1    /* the daemon answered with an error, or went away mid-answer */
#define BS_EXIT_CONNECT 3   /* no daemon could be reached; the message names the path */

/* Response lines can be much longer than request lines: a non-streamed done line holds
 * every generated token, escaped. */
#define BS_CONN_MAX_LINE (8u << 20)

typedef struct {
    int fd;
    char path[BS_SOCKPATH_MAX];
    bs_sockpath_source src;
    bs_linebuf lb;
    char rbuf[16384];
    size_t rpos, rlen;      /* unread bytes rbuf[rpos..rlen) */
    bool eof;
    long long next_id;
} bs_conn;

/* Resolves the path (option: --socket or NULL) and connects. On failure the message
 * names the path tried and where it came from. */
int bs_conn_open(bs_conn *c, const char *option, bs_err *e);
void bs_conn_close(bs_conn *c);

/* A fresh integer id for the next request on this connection. */
void bs_conn_next_id(bs_conn *c, bs_proto_id *id);

/* Encodes r and writes the whole line. */
int bs_conn_send(bs_conn *c, const bs_request *r, bs_err *e);

/* Reads the next response line. Returns 1 with *out filled (free it with
 * bs_response_free) and, when raw is not NULL, *raw and *raw_len set to the line as
 * received (valid until the next call); 0 at end of stream; -1 with e filled on a read
 * error or a line that is not a response. */
int bs_conn_read(bs_conn *c, bs_response *out, const char **raw, size_t *raw_len, bs_err *e);

/* Waits until bs_conn_read has something to read (a byte from the daemon, an unread
 * buffered one, or the end of the stream) or other_fd is readable. Returns 1 for the
 * connection (which wins when both are ready), 2 for other_fd, -1 with e filled. A line
 * the daemon has only begun to send may still make bs_conn_read wait for its end. */
int bs_conn_wait(bs_conn *c, int other_fd, bs_err *e);

/* The usual way to end a failed daemon command: prints "bitstackctl: MSG" and returns
 * the exit code for it. */
int bs_conn_fail(int code, const bs_err *e);

#endif
