#include "daemon/server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "daemon/frontend.h"

#define READ_BUF (64 * 1024)
#define BACKLOG 128
#define TICK_MS 200

/* ---- the listening socket ------------------------------------------------------ */

/* Is a daemon answering on path? 1 yes (*pid its pid when known), 0 no (nothing listens:
 * the file is stale), -1 on another error. */
static int probe_live(const char *path, pid_t *pid, bs_err *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bs_err_set(e, "socket: %s", strerror(errno));
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    *pid = 0;
    if (rc == 0) {
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl))
            *pid = cr.pid;
    }
    close(fd);
    if (rc == 0 || err == EAGAIN)   /* EAGAIN: a full backlog, so someone listens */
        return 1;
    if (err == ECONNREFUSED)
        return 0;
    return bs_err_set(e, "%s: cannot tell whether a daemon is listening: %s", path, strerror(err));
}

static int bind_path(bs_server *srv, const char *path, bs_err *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return bs_err_set(e, "socket path %s is longer than %zu bytes", path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path));

    struct stat st;
    if (!lstat(path, &st)) {
        if (!S_ISSOCK(st.st_mode))
            return bs_err_set(e, "%s exists and is not a socket; not replacing it", path);
        pid_t pid;
        int live = probe_live(path, &pid, e);
        if (live < 0)
            return -1;
        if (live) {
            if (pid > 0)
                return bs_err_set(e, "%s: another daemon (pid %d) is serving on this socket; stop it first "
                                     "or choose another --socket", path, (int)pid);
            return bs_err_set(e, "%s: another daemon is serving on this socket; stop it first or choose "
                                 "another --socket", path);
        }
        if (unlink(path) && errno != ENOENT)
            return bs_err_set(e, "cannot remove the stale socket %s: %s", path, strerror(errno));
        bs_log_notice(srv->log, "replaced the stale socket %s (no daemon answered on it)", path);
    } else if (errno != ENOENT) {
        return bs_err_set(e, "%s: %s", path, strerror(errno));
    } else {
        /* /run/bitstackd may not exist outside systemd: create the last level only */
        char dir[sizeof sa.sun_path];
        snprintf(dir, sizeof dir, "%s", path);
        const char *d = dirname(dir);
        if (mkdir(d, 0755) && errno != EEXIST)
            return bs_err_set(e, "cannot create the socket's directory %s: %s", d, strerror(errno));
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bs_err_set(e, "socket: %s", strerror(errno));
    /* the file is born 0660: no window in which others could connect */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    umask(old);
    if (rc) {
        close(fd);
        return bs_err_set(e, "cannot bind %s: %s", path, strerror(err));
    }
    if (chmod(path, 0660) || listen(fd, BACKLOG) || stat(path, &st)) {
        err = errno;
        close(fd);
        unlink(path);
        return bs_err_set(e, "cannot listen on %s: %s", path, strerror(err));
    }
    srv->own_file = true;
    srv->sock_dev = st.st_dev;
    srv->sock_ino = st.st_ino;
    return fd;
}

/* --listen HOST:PORT. Without an API key only a loopback address is allowed: anyone who
 * can reach the port could use the model otherwise. */
static int bind_tcp(const char *spec, bool have_key, bs_err *e)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1] || (size_t)(colon - spec) >= sizeof host)
        return bs_err_set(e, "--listen %s: expected HOST:PORT (e.g. 127.0.0.1:8080)", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {   /* [::1]:8080 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc)
        return bs_err_set(e, "--listen %s: %s", spec, gai_strerror(rc));
    bool loopback = ai->ai_family == AF_INET
                        ? (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127
                        : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    if (!loopback && !have_key) {
        freeaddrinfo(ai);
        return bs_err_set(e, "--listen %s: not a loopback address; give --api-key-file to serve beyond this "
                             "machine", spec);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, BACKLOG)) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return bs_err_set(e, "--listen %s: %s", spec, strerror(err));
    }
    freeaddrinfo(ai);
    return fd;
}

/* Removes the socket file if it is still the one this server made (another daemon may
 * have replaced it after we stopped answering). */
static void remove_own_file(bs_server *srv)
{
    if (!srv->own_file)
        return;
    srv->own_file = false;
    struct stat st;
    if (!lstat(srv->cfg.socket_path, &st) && st.st_dev == srv->sock_dev && st.st_ino == srv->sock_ino)
        unlink(srv->cfg.socket_path);
}

/* ---- accepting ----------------------------------------------------------------------- */

/* An accepted socket whose first bytes have not come yet. */
typedef struct sniff {
    uv_poll_t poll;
    int fd;
    bs_peer peer;
    bs_server *srv;
    uint64_t t_accept;          /* uv_now() */
    struct sniff *prev, *next;
} sniff;

static void sniff_unlink(sniff *k)
{
    bs_server *srv = k->srv;
    if (k->prev)
        k->prev->next = k->next;
    else
        srv->sniffing = k->next;
    if (k->next)
        k->next->prev = k->prev;
    srv->n_sniffing--;
}

static void sniff_freed(uv_handle_t *h)
{
    sniff *k = h->data;
    bs_server *srv = k->srv;
    free(k);
    bs_server_check_stopped(srv);
}

/* Ends the wait; fd goes on to a front end (or is closed when hand is -1). */
static void sniff_end(sniff *k, int hand)
{
    bs_server *srv = k->srv;
    int fd = k->fd;
    bs_peer peer = k->peer;
    sniff_unlink(k);
    /* uv_poll_stop takes fd out of the loop's epoll now, so another handle may take it */
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, sniff_freed);
    if (hand < 0) {
        close(fd);
        bs_server_peer_closed(srv, &peer);
    }
    else if (hand == 0)
        bs_jsonl_adopt(srv, fd, &peer);
    else
        bs_http_adopt(srv, fd, &peer);
}

/* `{` (or blank space before it) starts a JSON-lines client; HTTP starts with a method. */
static void on_first_bytes(uv_poll_t *p, int status, int events)
{
    (void)events;
    sniff *k = p->data;
    char c;
    ssize_t n = status < 0 ? -1 : recv(k->fd, &c, 1, MSG_PEEK);
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        sniff_end(k, -1);   /* gone before saying anything */
        return;
    }
    bool json = c == '{' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
    sniff_end(k, json && !k->peer.tcp ? 0 : 1);
}

static void sniff_start(bs_server *srv, int fd, const bs_peer *peer)
{
    sniff *k = calloc(1, sizeof *k);
    if (!k) {
        bs_log_err(srv->log, "out of memory for a connection");
        close(fd);
        bs_server_peer_closed(srv, peer);
        return;
    }
    k->fd = fd;
    k->peer = *peer;
    k->srv = srv;
    k->t_accept = uv_now(srv->loop);
    int rc = uv_poll_init_socket(srv->loop, &k->poll, fd);
    if (rc) {
        bs_log_warn(srv->log, "connection %llu: %s", (unsigned long long)peer->num, uv_strerror(rc));
        close(fd);
        free(k);
        bs_server_peer_closed(srv, peer);
        return;
    }
    k->poll.data = k;
    k->next = srv->sniffing;
    if (srv->sniffing)
        srv->sniffing->prev = k;
    srv->sniffing = k;
    srv->n_sniffing++;
    uv_poll_start(&k->poll, UV_READABLE | UV_DISCONNECT, on_first_bytes);
}

void bs_server_peer_closed(bs_server *srv, const bs_peer *peer)
{
    if (!peer->use)
        return;
    peer->use->conns--;
    bs_peers_release(&srv->peers, peer->use);
}

void bs_server_note_refused(bs_server *srv, const bs_peer *peer, const char *why)
{
    srv->m.connections_rejected++;
    srv->refused_quiet++;
    uint64_t now = uv_now(srv->loop);
    if (srv->refused_logged && now - srv->refused_logged < 1000)
        return;   /* a client that reconnects in a loop must not fill the log */
    bs_log_warn(srv->log, "%llu connection(s) refused (%s); the last from pid %d uid %d",
                (unsigned long long)srv->refused_quiet, why, (int)peer->pid, (int)peer->uid);
    srv->refused_quiet = 0;
    srv->refused_logged = now;
}

/* Out of descriptors: the reserved one makes room to accept the connection and close it
 * at once with a word of why, so that the client is not left hanging in the backlog (and
 * the listener does not stay readable, spinning the loop). */
static void refuse_no_fds(bs_server *srv, bs_listener *l)
{
    if (srv->spare_fd < 0)
        return;
    close(srv->spare_fd);
    srv->spare_fd = -1;
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        static const char json[] = "{\"id\":null,\"error\":{\"code\":\"too_many_connections\",\"message\":\"the daemon "
                                   "has no file descriptors left\"}}\n";
        static const char http[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        ssize_t w = l->tcp ? send(fd, http, sizeof http - 1, MSG_NOSIGNAL) : send(fd, json, sizeof json - 1, MSG_NOSIGNAL);
        (void)w;   /* best effort: the close says the rest */
        close(fd);
        bs_peer none = {.pid = -1, .uid = (uid_t)-1};
        bs_server_note_refused(srv, &none, "no file descriptors left");
    }
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    (void)events;
    bs_listener *l = p->data;
    bs_server *srv = l->srv;
    if (status < 0) {
        bs_log_warn(srv->log, "accept: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < 64; i++) {   /* a burst at a time, then let the loop breathe */
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            refuse_no_fds(srv, l);
            continue;
        }
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                bs_log_warn(srv->log, "accept: %s", strerror(errno));
            return;
        }
        srv->m.connections_total++;
        bs_peer peer = {.num = ++srv->next_conn, .pid = -1, .uid = (uid_t)-1, .tcp = l->tcp};
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (!l->tcp && !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl)) {
            peer.pid = cr.pid;
            peer.uid = cr.uid;
        }
        bs_log_debug(srv->log, "connection %llu from pid %d uid %d", (unsigned long long)peer.num, (int)peer.pid,
                     (int)peer.uid);
        peer.refuse_user = !bs_peers_may_connect(&srv->peers, peer.uid);
        if (!peer.refuse_user && !(peer.use = bs_peers_get(&srv->peers, peer.uid))) {
            close(fd);
            continue;
        }
        if (bs_server_connections(srv) >= srv->cfg.lim.max_connections || peer.refuse_user) {
            peer.use = NULL;
            /* refused before it spoke: the Unix socket's clients are told in a JSON line
             * (as they always were); HTTP clients in a plain status line */
            peer.refuse = true;
            if (l->tcp) {
                static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                           "Content-Length: 0\r\n\r\n";
                bs_server_note_refused(srv, &peer, "too many connections");
                ssize_t w = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
                (void)w;   /* best effort: the close says the rest */
                close(fd);
            } else {
                bs_jsonl_adopt(srv, fd, &peer);
            }
            continue;
        }
        peer.use->conns++;
        /* TCP is HTTP only: straight to MHD, whose idle timeout then closes a client that
         * never speaks */
        if (l->tcp)
            bs_http_adopt(srv, fd, &peer);
        else
            sniff_start(srv, fd, &peer);
    }
}

static int listener_start(bs_server *srv, bs_listener *l, int fd, bool tcp, bs_err *e)
{
    l->srv = srv;
    l->fd = fd;
    l->tcp = tcp;
    int rc = uv_poll_init_socket(srv->loop, &l->poll, fd);
    if (rc) {
        close(fd);
        return bs_err_set(e, "cannot listen: %s", uv_strerror(rc));
    }
    l->poll.data = l;
    l->open = true;
    rc = uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
    if (rc)
        return bs_err_set(e, "cannot listen: %s", uv_strerror(rc));
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    bs_listener *l = h->data;
    close(l->fd);
}

static void listener_stop(bs_listener *l)
{
    if (!l->open)
        return;
    l->open = false;
    uv_close((uv_handle_t *)&l->poll, listener_closed);
}

/* The server's housekeeping: connections that never said a word are closed after the
 * idle timeout (they would hold places others need), and vanished JSON-lines clients
 * are noticed. */
static void on_tick(uv_timer_t *t)
{
    bs_server *srv = t->data;
    uint64_t now = uv_now(srv->loop), idle = (uint64_t)srv->cfg.idle_timeout_s * 1000;
    for (sniff *k = srv->sniffing, *next; k; k = next) {
        next = k->next;
        if (now - k->t_accept >= idle) {
            bs_log_debug(srv->log, "connection %llu: nothing sent in %d s; closed", (unsigned long long)k->peer.num,
                         srv->cfg.idle_timeout_s);
            srv->m.connections_idle_closed++;
            sniff_end(k, -1);
        }
    }
    bs_jsonl_tick(srv);
}

int bs_server_connections(const bs_server *srv)
{
    return srv->n_conns + srv->n_sniffing + srv->n_http;
}

/* ---- life -------------------------------------------------------------------------- */

int bs_server_init(bs_server *srv, uv_loop_t *loop, const bs_log *log, const bs_server_config *cfg,
                   bs_models *models, bs_sizer *sizer, bs_err *e)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->log = log;
    srv->cfg = *cfg;
    if (srv->cfg.idle_timeout_s <= 0)
        srv->cfg.idle_timeout_s = 30;
    srv->models = models;
    srv->sizer = sizer;
    srv->t_start = uv_hrtime();
    srv->t_wall = (int64_t)time(NULL);
    bs_peers_init(&srv->peers, cfg->max_conns_per_user, cfg->max_sessions_per_user);
    for (int i = 0; i < cfg->n_trusted; i++)
        if (bs_peers_trust(&srv->peers, cfg->trusted[i], e))
            return -1;
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    srv->rbuf_len = READ_BUF;
    srv->rbuf = malloc(srv->rbuf_len);
    if (!srv->rbuf)
        return bs_err_set(e, "out of memory");

    int fd = cfg->listen_fd;
    if (fd < 0) {
        fd = bind_path(srv, cfg->socket_path, e);
        if (fd < 0)
            goto fail;
    } else {
        /* an inherited socket may be blocking; accept4 below must not block the loop */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK)) {
            bs_err_set(e, "socket %d: %s", fd, strerror(errno));
            goto fail;
        }
    }
    if (listener_start(srv, &srv->unix_l, fd, false, e))
        goto fail_listener;
    if (cfg->listen) {
        int tfd = bind_tcp(cfg->listen, cfg->api_key != NULL, e);
        if (tfd < 0 || listener_start(srv, &srv->tcp_l, tfd, true, e))
            goto fail_listener;
    }
    if (bs_http_init(srv, cfg->api_key, srv->cfg.idle_timeout_s, e))
        goto fail_listener;
    if (bs_sched_init(&srv->sched, loop, cfg->threads, bs_server_slice_work, bs_server_slice_done, srv, e))
        goto fail_listener;
    srv->sched.start = bs_server_slice_start;
    uv_timer_init(loop, &srv->grace);
    srv->grace.data = srv;
    uv_timer_init(loop, &srv->tick);
    srv->tick.data = srv;
    uv_timer_start(&srv->tick, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&srv->tick);
    return 0;

fail_listener:
    /* the loop must run to finish closing the handle: the caller's cleanup does that */
    listener_stop(&srv->unix_l);
    listener_stop(&srv->tcp_l);
    bs_http_close(srv);
    remove_own_file(srv);
    srv->stopped = true;
    return -1;
fail:
    free(srv->rbuf);
    srv->rbuf = NULL;
    srv->stopped = true;
    return -1;
}

static void on_grace(uv_timer_t *t)
{
    bs_server *srv = t->data;
    bs_log_warn(srv->log, "stopping: %d connection(s) did not take their last lines in %d ms; closing them",
                srv->n_conns, srv->cfg.grace_ms);
    bs_jsonl_drop_all(srv, "the daemon is stopping");
    bs_http_close(srv);
}

void bs_server_check_stopped(bs_server *srv)
{
    if (!srv->stopping || srv->stopped || srv->n_conns || srv->n_sniffing || srv->sched.running ||
        bs_http_busy(srv))
        return;
    srv->stopped = true;
    bs_http_close(srv);
    uv_timer_stop(&srv->grace);
    uv_close((uv_handle_t *)&srv->grace, NULL);
    uv_close((uv_handle_t *)&srv->tick, NULL);
    bs_sched_close(&srv->sched);
    if (srv->done)
        srv->done(srv, srv->done_ctx);
}

void bs_server_stop(bs_server *srv, bs_server_done_fn done, void *ctx)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    srv->done = done;
    srv->done_ctx = ctx;
    listener_stop(&srv->unix_l);
    listener_stop(&srv->tcp_l);
    remove_own_file(srv);
    bs_log_info(srv->log, "stopping: %d connection(s), %d session(s) open", srv->n_conns, srv->n_sessions);
    while (srv->sniffing)
        sniff_end(srv->sniffing, -1);
    bs_server_stop_sessions(srv);
    bs_jsonl_stop(srv);
    if (srv->cfg.grace_ms > 0)
        uv_timer_start(&srv->grace, on_grace, (uint64_t)srv->cfg.grace_ms, 0);
    bs_server_check_stopped(srv);
}

void bs_server_free(bs_server *srv)
{
    bs_peers_free(&srv->peers);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    srv->spare_fd = -1;
    free(srv->rbuf);
    srv->rbuf = NULL;
}
