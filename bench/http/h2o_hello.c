/* A hello server on libh2o's libuv build (Debian libh2o-dev 2.2.5): libuv accepts, h2o
 * serves HTTP/1.1 on the uv stream (bench/http).
 * usage: h2o_hello PORT */
#define H2O_USE_LIBUV 1
#include <arpa/inet.h>
#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
    req->res.content_length = 6;
    h2o_start_response(req, &gen);
    h2o_iovec_t body = h2o_iovec_init(H2O_STRLIT("hello\n"));
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void on_accept(uv_stream_t *listener, int status)
{
    if (status)
        return;
    uv_tcp_t *conn = malloc(sizeof *conn);
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn)) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    h2o_accept(&accept_ctx, h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free));
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8082;
    h2o_config_init(&config);
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
    uv_loop_t *loop = uv_default_loop();
    h2o_context_init(&ctx, loop, &config);
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;
    uv_tcp_t listener;
    struct sockaddr_in a;
    uv_tcp_init(loop, &listener);
    uv_ip4_addr("127.0.0.1", port, &a);
    if (uv_tcp_bind(&listener, (struct sockaddr *)&a, 0) || uv_listen((uv_stream_t *)&listener, 128, on_accept))
        return fprintf(stderr, "cannot listen on %d\n", port), 1;
    printf("h2o_hello on 127.0.0.1:%d (libh2o %s)\n", port, H2O_VERSION);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
