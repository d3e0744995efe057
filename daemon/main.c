/* bitstackd: serves a stacked store over a Unix socket (docs/daemon.md).
 *
 * This file wires things together: options, the store load (before the loop starts, so
 * no disk read ever happens on the loop), the listener, signals and sd_notify. The
 * libuv signal handles are the daemon's only link to process-wide state. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "kernels/ops.h"
#include "model/stacked.h"
#include "model/store.h"
#include "proto/sockpath.h"

#define EXIT_USAGE 2

typedef struct {
    const char *store;
    const char *socket;
    const char *budget;
    int threads;
    bool verbose;
    bs_proto_limits lim;
    size_t max_output;
    int grace_ms;
    const char *proc_root, *sys_root;
} options;

typedef struct {
    bs_log log;
    uv_loop_t loop;
    uv_signal_t sig[2];
    bs_server srv;
    bool serving;     /* srv is initialised and the loop runs it */
} daemon_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bitstackd --store S.bstk [--socket PATH] [--budget B] [--threads N]\n"
            "                 [--max-connections N] [--max-sessions N] [--max-sessions-per-conn N]\n"
            "                 [--max-output BYTES] [--grace-ms MS] [--proc-root DIR] [--sys-root DIR]\n"
            "                 [--verbose] [--version]\n"
            "\n"
            "  --store S     the stacked store to serve (bitstackctl compress makes one)\n"
            "  --socket P    default: $BITSTACK_SOCKET, else $RUNTIME_DIRECTORY/bitstackd.sock, else\n"
            "                /run/bitstackd/bitstackd.sock as root, else $XDG_RUNTIME_DIR/bitstackd.sock;\n"
            "                ignored when systemd passes a socket (LISTEN_FDS)\n"
            "  --budget B    resident size: bytes (\"180K\", \"2.5M\"), \"40%%\", \"4bpw\", \"min\", \"max\" (default)\n"
            "  --threads N   generation threads (default, or 0: the CPUs this process may use)\n"
            "  --max-output  bytes queued for one client before it is dropped (default 1048576)\n"
            "  --grace-ms    how long stopping waits for clients to read their last lines (10000)\n"
            "  --proc-root, --sys-root   where /proc and /sys are (tests use fixture trees)\n"
            "See docs/daemon.md.\n");
}

static int parse_num(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int parse_options(int argc, char **argv, options *o)
{
    enum { O_MAXCONN = 1000, O_MAXSESS, O_MAXSESSCONN, O_MAXOUT, O_GRACE, O_PROC, O_SYS, O_VERSION };
    static const struct option longs[] = {
        {"store", required_argument, NULL, 's'},
        {"socket", required_argument, NULL, 'S'},
        {"budget", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"max-sessions", required_argument, NULL, O_MAXSESS},
        {"max-sessions-per-conn", required_argument, NULL, O_MAXSESSCONN},
        {"max-output", required_argument, NULL, O_MAXOUT},
        {"grace-ms", required_argument, NULL, O_GRACE},
        {"proc-root", required_argument, NULL, O_PROC},
        {"sys-root", required_argument, NULL, O_SYS},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->budget = "max";
    o->threads = cpu_count();
    bs_proto_limits_default(&o->lim);
    o->max_output = 1 << 20;
    o->grace_ms = 10000;
    o->proc_root = "/proc";
    o->sys_root = "/sys";
    int ch;
    long v;
    while ((ch = getopt_long(argc, argv, "s:S:b:t:vh", longs, NULL)) != -1) {
        switch (ch) {
        case 's': o->store = optarg; break;
        case 'S': o->socket = optarg; break;
        case 'b': o->budget = optarg; break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); exit(0);
        case O_VERSION: printf("bitstackd 0.1.0\n"); exit(0);
        case O_PROC: o->proc_root = optarg; break;
        case O_SYS: o->sys_root = optarg; break;
        case 't':
            if (parse_num(optarg, 0, 1024, &v))
                return fprintf(stderr, "bitstackd: --threads: expected 0..1024, got '%s'\n", optarg), -1;
            o->threads = v ? (int)v : cpu_count();
            break;
        case O_MAXCONN:
            if (parse_num(optarg, 1, 100000, &v))
                return fprintf(stderr, "bitstackd: --max-connections: expected 1..100000\n"), -1;
            o->lim.max_connections = (int)v;
            break;
        case O_MAXSESS:
            if (parse_num(optarg, 1, 100000, &v))
                return fprintf(stderr, "bitstackd: --max-sessions: expected 1..100000\n"), -1;
            o->lim.max_sessions = (int)v;
            break;
        case O_MAXSESSCONN:
            if (parse_num(optarg, 1, 100000, &v))
                return fprintf(stderr, "bitstackd: --max-sessions-per-conn: expected 1..100000\n"), -1;
            o->lim.max_sessions_per_conn = (int)v;
            break;
        case O_MAXOUT:
            if (parse_num(optarg, 4096, LONG_MAX, &v))
                return fprintf(stderr, "bitstackd: --max-output: expected at least 4096 bytes\n"), -1;
            o->max_output = (size_t)v;
            break;
        case O_GRACE:
            if (parse_num(optarg, 0, 3600000, &v))
                return fprintf(stderr, "bitstackd: --grace-ms: expected 0..3600000\n"), -1;
            o->grace_ms = (int)v;
            break;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc)
        return fprintf(stderr, "bitstackd: unexpected argument '%s'\n", argv[optind]), usage(stderr), -1;
    if (!o->store)
        return fprintf(stderr, "bitstackd: --store is required\n"), usage(stderr), -1;
    return 0;
}

/* "model.bstk" from "/path/to/model.bstk", without the extension. */
static void model_name(const char *path, char *buf, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(buf, n, "%.*s", (int)len, base);
}

static void notify(daemon_t *d, const char *state)
{
    bs_err e;
    if (bs_notify(state, &e) < 0)
        bs_log_warn(&d->log, "%s", e.msg);
}

static void on_stopped(bs_server *srv, void *ctx)
{
    (void)srv;
    daemon_t *d = ctx;
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&d->sig[i]))
            uv_close((uv_handle_t *)&d->sig[i], NULL);
    /* closing the handles restored the default action (death); a repeated SIGTERM in the
     * last moments must not turn a clean exit into a kill */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    bs_log_info(&d->log, "stopped");
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    if (!d->serving) {
        bs_log_notice(&d->log, "%s: exiting", strsignal(signum));
        return;
    }
    if (d->srv.stopping) {
        bs_log_notice(&d->log, "%s again: already stopping", strsignal(signum));
        return;
    }
    bs_log_notice(&d->log, "%s: stopping", strsignal(signum));
    notify(d, "STOPPING=1\nSTATUS=stopping");
    bs_server_stop(&d->srv, on_stopped, d);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Runs the loop until every handle has closed, then closes it. */
static void drain_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) == UV_EBUSY) {
        uv_walk(loop, close_any, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
    }
}

/* Loads the store, listens and runs the loop until the server has stopped. 0 after a
 * clean stop, 1 when it could not start. */
static int serve(daemon_t *d, const options *o)
{
    bs_err e;
    int rc = 1, listen_fd = -1;
    char sock[BS_SOCKPATH_MAX > PATH_MAX ? BS_SOCKPATH_MAX : PATH_MAX] = "", name[128];
    bs_store store;
    bool store_open = false, model_ready = false;
    bs_stacked sm;
    uint8_t *stack = MAP_FAILED;
    size_t stack_map = 0;

    int act = bs_listen_fd(&listen_fd, &e);
    if (act < 0) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    if (act == 0) {
        bs_sockpath_source src;
        if (bs_sockpath_resolve(o->socket, sock, &src, &e)) {
            bs_log_err(&d->log, "%s", e.msg);
            goto out;
        }
    } else if (o->socket) {
        bs_log_notice(&d->log, "socket activation: serving on the socket systemd passed, not %s", o->socket);
    }

    /* the whole store load happens here, before the loop, so that it never waits on disk */
    notify(d, "STATUS=loading the store");
    uint64_t t0 = uv_hrtime();
    if (bs_store_open(&store, o->store, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    store_open = true;
    int n;
    if (bs_store_budget(&store, o->budget, &n, &e)) {
        bs_log_err(&d->log, "--budget %s: %s", o->budget, e.msg);
        goto out;
    }
    /* one anonymous mapping mirroring the stack section: later, growing reads into it
     * and shrinking returns its tail; untouched pages cost nothing */
    stack_map = store.stack_len ? (size_t)store.stack_len : 1;
    stack = mmap(NULL, stack_map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) {
        bs_log_err(&d->log, "cannot map %zu bytes for the stack: %s", stack_map, strerror(errno));
        goto out;
    }
    if (bs_store_read_prefix(&store, n, stack, &e) || bs_stacked_init(&sm, &store, stack, n, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    model_ready = true;
    bs_engine eng = {&store, &sm.model, n, store.resident[n]};
    model_name(o->store, name, sizeof name);
    bs_log_info(&d->log, "store %s: %d of %d blocks resident, %llu bytes (%.2f bits per weight), "
                "context %d, in %.2f s", o->store, n, store.n_blocks, (unsigned long long)eng.resident_bytes,
                bs_store_bpw(&store, n), store.cfg.seq_len, (double)(uv_hrtime() - t0) / 1e9);

    /* parallelism comes from running sessions side by side, one thread each */
    bs_blas_threads(1);

    bs_server_config cfg = {
        .socket_path = sock,
        .listen_fd = listen_fd,
        .threads = o->threads,
        .lim = o->lim,
        .max_output = o->max_output,
        .grace_ms = o->grace_ms,
        .proc_root = o->proc_root,
        .sys_root = o->sys_root,
        .model_name = name,
        .budget = o->budget,
    };
    /* from here the server owns an inherited socket */
    bool fd_passed = listen_fd >= 0;
    listen_fd = -1;
    if (bs_server_init(&d->srv, &d->loop, &d->log, &cfg, &eng, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    d->serving = true;
    d->srv.m.store_bytes_read = bs_store_prefix_end(&store, n);

    char status[512];
    snprintf(status, sizeof status, "READY=1\nSTATUS=serving %s: %d/%d blocks, %llu bytes, %d threads", name, n,
             store.n_blocks, (unsigned long long)eng.resident_bytes, o->threads);
    notify(d, status);
    bs_log_info(&d->log, "listening on %s, %d threads", fd_passed ? "the socket systemd passed" : sock, o->threads);

    uv_run(&d->loop, UV_RUN_DEFAULT);   /* until the server stopped and the signals closed */
    d->serving = false;
    rc = 0;

out:
    if (model_ready)
        bs_stacked_free(&sm);
    if (stack != MAP_FAILED)
        munmap(stack, stack_map);
    if (store_open)
        bs_store_close(&store);
    if (listen_fd >= 0)
        close(listen_fd);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o))
        return EXIT_USAGE;

    daemon_t *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "bitstackd: out of memory\n");
        return 1;
    }
    bs_log_init(&d->log, o.verbose);
    /* a client that hangs up must not kill the daemon: writes report EPIPE instead */
    signal(SIGPIPE, SIG_IGN);

    /* signals are caught from the start, so that one arriving while the store loads or
     * right after the socket appears stops the daemon cleanly once the loop runs */
    uv_loop_init(&d->loop);
    const int sigs[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&d->loop, &d->sig[i]);
        d->sig[i].data = d;
        uv_signal_start(&d->sig[i], on_signal, sigs[i]);
    }

    int rc = serve(d, &o);

    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&d->sig[i]))
            uv_close((uv_handle_t *)&d->sig[i], NULL);
    drain_loop(&d->loop);
    bs_server_free(&d->srv);
    free(d);
    return rc;
}
