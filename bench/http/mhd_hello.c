/* The HTTP library comparison, libmicrohttpd side: served the way bitstackd serves it
 * (MHD in its epoll mode, no threads of its own, driven from a libuv loop through its
 * epoll fd and timeout; sockets accepted by libuv and handed over with
 * MHD_add_connection). GET /health answers a small JSON body. Usage: mhd_hello PORT */
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

static void run(void);
static void on_timer(uv_timer_t *t)
{
    (void)t;
    run();
}

static void run(void)
{
    MHD_run(d);
    MHD_UNSIGNED_LONG_LONG to = 0;
    if (MHD_get_timeout(d, &to) == MHD_YES)
        uv_timer_start(&timer, on_timer, (uint64_t)to, 0);
}

static void on_epoll(uv_poll_t *p, int status, int events)
{
    (void)p, (void)status, (void)events;
    run();
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *up, size_t *up_size, void **ctx)
{
    (void)cls, (void)method, (void)version, (void)up, (void)up_size;
    static const char ok[] = "{\"status\":\"ok\"}";
    static int seen;
    if (!*ctx) {   /* answered in the first call, MHD would close the connection after it */
        *ctx = &seen;
        return MHD_YES;
    }
    int found = !strcmp(url, "/health");
    struct MHD_Response *r = MHD_create_response_from_buffer(found ? sizeof ok - 1 : 0, (void *)ok,
                                                             MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(c, found ? 200 : 404, r);
    MHD_destroy_response(r);
    return rc;
}

static int listen_fd;

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    (void)p, (void)status, (void)events;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        MHD_add_connection(d, fd, (struct sockaddr *)&sa, sl);
    }
    run();
}

int main(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help")) {
        printf("usage: mhd_hello PORT\n");
        return argc == 2 ? 0 : 2;
    }
    uv_loop_t *loop = uv_default_loop();
    d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
                         on_request, NULL, MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
    if (!d)
        return fprintf(stderr, "MHD_start_daemon failed\n"), 1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_t poll;
    uv_poll_init(loop, &poll, di->epoll_fd);
    uv_poll_start(&poll, UV_READABLE, on_epoll);
    uv_timer_init(loop, &timer);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) || listen(listen_fd, 512))
        return fprintf(stderr, "cannot listen on %s\n", argv[1]), 1;
    uv_poll_t lp;
    uv_poll_init_socket(loop, &lp, listen_fd);
    uv_poll_start(&lp, UV_READABLE, on_acceptable);
    return uv_run(loop, UV_RUN_DEFAULT);
}
