/* bs_notify: the two halves of the systemd service protocol a daemon needs, written
 * directly (no libsystemd).
 *
 * - bs_notify: one sd_notify datagram ("READY=1", "STATUS=…", "STOPPING=1", lines joined
 *   by '\n') to $NOTIFY_SOCKET, a filesystem path or, with a leading '@', an abstract
 *   socket. Without $NOTIFY_SOCKET it does nothing. Never blocks.
 * - bs_listen_fd: socket activation. When $LISTEN_PID is this process and $LISTEN_FDS
 *   >= 1, fd 3 (SD_LISTEN_FDS_START) is taken as the listening socket; it must be a
 *   listening AF_UNIX SOCK_STREAM socket. Extra fds are closed. The LISTEN_* variables
 *   are removed either way so nothing started later inherits them. */
#ifndef BS_NOTIFY_H
#define BS_NOTIFY_H

#include "kernels/err.h"

#define BS_LISTEN_FDS_START 3

/* 1 sent, 0 no $NOTIFY_SOCKET, -1 with e filled when sending failed. */
int bs_notify(const char *state, bs_err *e);

/* 1 with *fd set (close-on-exec, non-blocking), 0 when not socket-activated,
 * -1 with e filled when the environment names fds that are not usable. */
int bs_listen_fd(int *fd, bs_err *e);

#endif
