#include "daemon/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bs_notify(const char *state, bs_err *e)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    size_t n = strlen(path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (n >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@'))
        return bs_err_set(e, "NOTIFY_SOCKET '%s' is not a Unix socket path", path);
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';   /* abstract namespace: the name is not NUL-terminated */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bs_err_set(e, "sd_notify: socket: %s", strerror(errno));
    ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, len);
    int err = errno;
    close(fd);
    if (w < 0)
        return bs_err_set(e, "sd_notify to %s: %s", path, strerror(err));
    return 1;
}

static void unset_listen_env(void)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

static int parse_int(const char *s, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int bs_listen_fd(int *fd, bs_err *e)
{
    const char *spid = getenv("LISTEN_PID"), *sfds = getenv("LISTEN_FDS");
    long pid, nfds;
    if (!spid || !sfds) {
        unset_listen_env();
        return 0;
    }
    if (parse_int(spid, &pid) || parse_int(sfds, &nfds) || nfds < 0 || nfds > 1024) {
        unset_listen_env();
        return bs_err_set(e, "socket activation: bad LISTEN_PID '%s' or LISTEN_FDS '%s'", spid, sfds);
    }
    unset_listen_env();
    if (pid != (long)getpid() || nfds == 0)
        return 0;   /* meant for another process (our parent) */
    for (long i = 1; i < nfds; i++)
        close(BS_LISTEN_FDS_START + (int)i);
    int f = BS_LISTEN_FDS_START;
    int type = 0, listening = 0;
    struct sockaddr_un sa;
    socklen_t tl = sizeof type, al = sizeof listening, sl = sizeof sa;
    if (getsockopt(f, SOL_SOCKET, SO_TYPE, &type, &tl) || getsockopt(f, SOL_SOCKET, SO_ACCEPTCONN, &listening, &al) ||
        getsockname(f, (struct sockaddr *)&sa, &sl))
        return bs_err_set(e, "socket activation: fd %d is not a socket: %s", f, strerror(errno));
    if (sa.sun_family != AF_UNIX || type != SOCK_STREAM || !listening)
        return bs_err_set(e, "socket activation: fd %d must be a listening AF_UNIX SOCK_STREAM socket "
                             "(ListenStream= a path in the .socket unit)", f);
    int fl = fcntl(f, F_GETFD);
    if (fl < 0 || fcntl(f, F_SETFD, fl | FD_CLOEXEC) < 0)
        return bs_err_set(e, "socket activation: fd %d: %s", f, strerror(errno));
    fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl | O_NONBLOCK) < 0)
        return bs_err_set(e, "socket activation: fd %d: %s", f, strerror(errno));
    *fd = f;
    return 1;
}
