/* A hello server on libmicrohttpd driven as bitstackd drives it: no thread of its own, its
 * epoll fd in a libuv uv_poll, its timeout in a uv_timer; the listening socket is ours
 * and accepted sockets are handed over with MHD_add_connection (docs/http.md, bench/http).
 * usage: mhd_hello PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static struct MHD_Daemon *d;
static uv_timer_t timer;
static struct MHD_Response *hello;

static void run(void);
static void on_timer(uv_timer_t *t) { (void)t; run(); }
static void on_epoll(uv_poll_t *p, int s, int e) { (void)p, (void)s, (void)e; run(); }

static void run(void)
{
    MHD_run(d);
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(d, &to) == MHD_YES)
        uv_timer_start(&timer, on_timer, to, 0);
    else
        uv_timer_stop(&timer);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *up, size_t *up_size, void **ctx)
{
    (void)cls, (void)url, (void)method, (void)version, (void)up, (void)up_size;
    static int seen;
    if (!*ctx) {   /* the headers: answer on the next call (as bitstackd does; else no keep-alive) */
        *ctx = &seen;
        return MHD_YES;
    }
    return MHD_queue_response(c, 200, hello);
}

static void on_accept(uv_poll_t *p, int s, int e)
{
    (void)s, (void)e;
    int lfd = *(int *)p->data;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        MHD_add_connection(d, fd, (struct sockaddr *)&sa, sl);
    }
    run();
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8081;
    hello = MHD_create_response_from_buffer(6, "hello\n", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(hello, "Content-Type", "text/plain");
    d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, NULL,
                         MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!d)
        return fprintf(stderr, "MHD_start_daemon failed\n"), 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 128))
        return perror("bind"), 1;
    uv_loop_t *loop = uv_default_loop();
    uv_poll_t ep, lp;
    uv_poll_init(loop, &ep, MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd);
    uv_poll_start(&ep, UV_READABLE, on_epoll);
    uv_poll_init_socket(loop, &lp, lfd);
    lp.data = &lfd;
    uv_poll_start(&lp, UV_READABLE, on_accept);
    uv_timer_init(loop, &timer);
    printf("mhd_hello on 127.0.0.1:%d (libmicrohttpd %s)\n", port, MHD_get_version());
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
