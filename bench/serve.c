/* Serving speed: 1, 4 and 16 concurrent clients of bitstackd, each with its own
 * connection, asking for the same greedy generation (64 tokens by default) over and
 * over; aggregate tokens/s and p50/p99 time to first token (measured by the client, from
 * sending the request to reading the first token line). Beside each row, the same
 * generations in this process (bs_gen over the same store prefix, one thread per client),
 * measured in the same run, so the row shows what the daemon costs on top of the model.
 *
 * Usage: bench_serve [--store S] [--socket PATH | --daemon PATH] [--threads N]
 *                    [--tokens 64] [--requests 64] [--clients 1,4,16] [--prompt TEXT]
 *   --store     the store to serve (default: stories260K compressed into a temp file)
 *   --socket    a running bitstackd to measure (it must serve --store); without it the
 *               bench starts --daemon (default: the bitstackd of this build) itself
 *   --threads   the daemon's compute threads (default: the cores this process may use)
 *   --requests  generations per row, spread evenly over the clients
 * Exits non-zero when a request fails or the daemon cannot be started or stopped. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common.h"
#include "client/conn.h"
#include "kernels/ops.h"
#include "model/compress.h"
#include "model/generate.h"
#include "model/load.h"
#include "model/ppl.h"
#include "model/engine.h"
#include "model/store.h"

#ifndef BS_SHARED_DEFAULT
#define BS_SHARED_DEFAULT "../shared"
#endif
#ifndef BS_DAEMON_DEFAULT
#define BS_DAEMON_DEFAULT "bitstackd"
#endif

enum { MAX_ROWS = 8, MAX_CLIENTS = 64 };

typedef struct {
    const char *store, *socket, *daemon, *prompt;
    int threads, tokens, requests;
    int clients[MAX_ROWS], n_rows;
} bench_opts;

/* The q-quantile of v[0..n) by the nearest-rank rule; sorts v. */
static double quantile(double *v, int n, double q)
{
    bench_sort(v, n);
    int k = (int)(q * n + 0.999999);
    if (k < 1)
        k = 1;
    return v[(k > n ? n : k) - 1];
}


/* ---- in-process reference --------------------------------------------------------- */

typedef struct {
    const bs_stacked *sm;
    const bench_opts *o;
    int reps;
    pthread_barrier_t *start;
    double t0;               /* round start, set by the first thread past the barrier */
    double *ttft;            /* reps entries */
    long tokens;
    char *text;              /* the first generation's text (for the agreement check) */
    size_t text_len;
    int failed;
    char err[sizeof(bs_err)];
} local_client;

/* One greedy generation; ttft: from its start to its first token. */
static int local_generate(const bs_stacked *sm, const bench_opts *o, double *ttft, long *tokens,
                          char **text, size_t *text_len, bs_err *e)
{
    bs_gen_params gp = {0.0f, 1.0f, 1, 0, NULL};
    bs_gen g;
    if (bs_gen_init(&g, &sm->model, sm->store->tok, &gp, e))
        return -1;
    double t0 = bs_now();
    int rc = bs_gen_prompt(&g, o->prompt, strlen(o->prompt), e);
    int tok, made = 0, r = 1;
    size_t cap = 0;
    while (rc == 0 && made < o->tokens && (r = bs_gen_step(&g, &tok, e)) == 1) {
        if (made == 0)
            *ttft = bs_now() - t0;
        if (text) {
            if (*text_len + g.piece_len + 1 > cap) {
                cap = 2 * (*text_len + g.piece_len + 64);
                char *t = realloc(*text, cap);
                if (!t) {
                    rc = bs_err_set(e, "out of memory");
                    break;
                }
                *text = t;
            }
            memcpy(*text + *text_len, g.piece, g.piece_len);
            *text_len += g.piece_len;
            (*text)[*text_len] = 0;
        }
        made++;
    }
    if (r < 0)
        rc = -1;
    *tokens += made;
    bs_gen_free(&g);
    return rc;
}

static void *local_client_run(void *arg)
{
    local_client *c = arg;
    pthread_barrier_wait(c->start);
    bs_err e = {{0}};
    for (int i = 0; i < c->reps; i++) {
        char **text = i == 0 ? &c->text : NULL;
        if (local_generate(c->sm, c->o, &c->ttft[i], &c->tokens, text, &c->text_len, &e)) {
            snprintf(c->err, sizeof c->err, "%s", e.msg);
            c->failed = 1;
            break;
        }
    }
    return NULL;
}

/* ---- daemon clients ---------------------------------------------------------------- */

typedef struct {
    const bench_opts *o;
    int reps;
    pthread_barrier_t *start;
    double *ttft, *server_ttft;
    long tokens;
    char *text;
    size_t text_len;
    int failed;
    char err[sizeof(bs_err)];
} remote_client;

/* One streamed generation on c; returns 0 or -1 with e filled. */
static int remote_generate(bs_conn *c, const bench_opts *o, double *ttft, double *server_ttft,
                           long *tokens, char **text, size_t *text_len, bs_err *e)
{
    bs_request r;
    bs_request_init(&r, NULL);
    r.op = BS_OP_GENERATE;
    r.prompt = (char *)o->prompt;   /* borrowed: r is not freed */
    r.prompt_len = strlen(o->prompt);
    r.max_tokens = o->tokens;
    r.temperature = 0;
    r.top_p = 1;
    r.has_seed = true;
    r.seed = 1;
    r.stream = true;
    bs_conn_next_id(c, &r.id);
    double t0 = bs_now();
    if (bs_conn_send(c, &r, e))
        return -1;
    size_t cap = 0;
    long made = 0;
    for (;;) {
        bs_response resp;
        int k = bs_conn_read(c, &resp, NULL, NULL, e);
        if (k <= 0)
            return k == 0 ? bs_err_set(e, "bitstackd closed the connection") : -1;
        if (resp.kind == BS_RESP_ERROR) {
            bs_err_set(e, "bitstackd answered %s: %s", resp.code_name, resp.message ? resp.message : "");
            bs_response_free(&resp);
            return -1;
        }
        if (resp.kind == BS_RESP_TOKEN) {
            if (made++ == 0)
                *ttft = bs_now() - t0;
            if (text) {
                if (*text_len + resp.text_len + 1 > cap) {
                    cap = 2 * (*text_len + resp.text_len + 64);
                    char *t = realloc(*text, cap);
                    if (!t) {
                        bs_response_free(&resp);
                        return bs_err_set(e, "out of memory");
                    }
                    *text = t;
                }
                memcpy(*text + *text_len, resp.text, resp.text_len);
                *text_len += resp.text_len;
                (*text)[*text_len] = 0;
            }
        }
        int done = resp.kind == BS_RESP_DONE;
        if (done)
            *server_ttft = resp.stats.ttft_ms / 1e3;
        bs_response_free(&resp);
        if (done)
            break;
    }
    *tokens += made;
    return 0;
}

static void *remote_client_run(void *arg)
{
    remote_client *c = arg;
    bs_conn conn;
    bs_err e = {{0}};
    int ok = bs_conn_open(&conn, c->o->socket, &e) == 0;
    pthread_barrier_wait(c->start);
    for (int i = 0; ok && i < c->reps; i++) {
        char **text = i == 0 ? &c->text : NULL;
        if (remote_generate(&conn, c->o, &c->ttft[i], &c->server_ttft[i], &c->tokens, text, &c->text_len, &e))
            ok = 0;
    }
    if (!ok) {
        snprintf(c->err, sizeof c->err, "%s", e.msg);
        c->failed = 1;
    }
    if (conn.fd >= 0)
        bs_conn_close(&conn);
    return NULL;
}

/* ---- one row ----------------------------------------------------------------------- */

typedef struct {
    double tok_s, p50, p99, server_p50;
    long tokens;
    int requests;
    int same_text;   /* every client's first text equals the reference */
} row_result;

/* Starts n client threads on fn(&clients[i]) (elements of `size` bytes), releases them
 * together through bar (the caller initialised it for n + 1), waits for all; returns the wall
 * time. */
static double run_clients(int n, void *(*fn)(void *), void *clients, size_t size, pthread_barrier_t *bar)
{
    pthread_t th[MAX_CLIENTS];
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, fn, (char *)clients + (size_t)i * size);
    pthread_barrier_wait(bar);
    double t0 = bs_now();
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    double wall = bs_now() - t0;
    pthread_barrier_destroy(bar);
    return wall;
}

static int run_local(const bs_stacked *sm, const bench_opts *o, int n_clients, const char *ref,
                     size_t ref_len, row_result *res)
{
    int reps = (o->requests + n_clients - 1) / n_clients;
    local_client cl[MAX_CLIENTS];
    pthread_barrier_t bar;
    double *ttft = calloc((size_t)(n_clients * reps), sizeof *ttft);
    if (!ttft)
        return -1;
    pthread_barrier_init(&bar, NULL, (unsigned)n_clients + 1);
    memset(cl, 0, sizeof cl);
    for (int i = 0; i < n_clients; i++)
        cl[i] = (local_client){.sm = sm, .o = o, .reps = reps, .start = &bar, .ttft = ttft + i * reps};
    double wall = run_clients(n_clients, local_client_run, cl, sizeof cl[0], &bar);
    int rc = 0;
    memset(res, 0, sizeof *res);
    res->same_text = 1;
    for (int i = 0; i < n_clients; i++) {
        if (cl[i].failed) {
            fprintf(stderr, "bench_serve: in-process generation: %s\n", cl[i].err);
            rc = -1;
        }
        res->tokens += cl[i].tokens;
        if (ref && (cl[i].text_len != ref_len || memcmp(cl[i].text, ref, ref_len)))
            res->same_text = 0;
        free(cl[i].text);
    }
    res->requests = n_clients * reps;
    res->tok_s = (double)res->tokens / wall;
    res->p50 = quantile(ttft, res->requests, 0.50);
    res->p99 = quantile(ttft, res->requests, 0.99);
    free(ttft);
    return rc;
}

static int run_remote(const bench_opts *o, int n_clients, const char *ref, size_t ref_len, row_result *res)
{
    int reps = (o->requests + n_clients - 1) / n_clients;
    remote_client cl[MAX_CLIENTS];
    pthread_barrier_t bar;
    double *ttft = calloc((size_t)(2 * n_clients * reps), sizeof *ttft);
    if (!ttft)
        return -1;
    double *sttft = ttft + n_clients * reps;
    pthread_barrier_init(&bar, NULL, (unsigned)n_clients + 1);
    memset(cl, 0, sizeof cl);
    for (int i = 0; i < n_clients; i++)
        cl[i] = (remote_client){.o = o, .reps = reps, .start = &bar, .ttft = ttft + i * reps,
                                .server_ttft = sttft + i * reps};
    double wall = run_clients(n_clients, remote_client_run, cl, sizeof cl[0], &bar);
    int rc = 0;
    memset(res, 0, sizeof *res);
    res->same_text = 1;
    for (int i = 0; i < n_clients; i++) {
        if (cl[i].failed) {
            fprintf(stderr, "bench_serve: client %d: %s\n", i, cl[i].err);
            rc = -1;
        }
        res->tokens += cl[i].tokens;
        if (cl[i].text_len != ref_len || memcmp(cl[i].text, ref, ref_len))
            res->same_text = 0;
        free(cl[i].text);
    }
    res->requests = n_clients * reps;
    res->tok_s = (double)res->tokens / wall;
    if (rc == 0) {
        res->p50 = quantile(ttft, res->requests, 0.50);
        res->p99 = quantile(ttft, res->requests, 0.99);
        res->server_p50 = quantile(sttft, res->requests, 0.50);
    }
    free(ttft);
    return rc;
}

/* ---- the daemon -------------------------------------------------------------------- */

/* A status request on a fresh connection: 0 with *stack_n (and the model name) filled. */
static int daemon_status(const char *sock, int *stack_n, int *stack_total, int *threads, char *model, size_t mcap,
                         bs_err *e)
{
    bs_conn c;
    if (bs_conn_open(&c, sock, e))
        return -1;
    bs_request r;
    bs_request_init(&r, NULL);
    r.op = BS_OP_STATUS;
    bs_conn_next_id(&c, &r.id);
    bs_response resp = {0};
    int rc = bs_conn_send(&c, &r, e);
    if (rc == 0) {
        int k = bs_conn_read(&c, &resp, NULL, NULL, e);
        if (k <= 0)
            rc = k == 0 ? bs_err_set(e, "bitstackd closed the connection") : -1;
        else if (resp.kind != BS_RESP_RESULT)
            rc = bs_err_set(e, "status: %s: %s", resp.code_name, resp.message ? resp.message : "");
    }
    if (rc == 0) {
        json_t *n = json_object_get(resp.result, "stack_n"), *t = json_object_get(resp.result, "stack_total");
        json_t *m = json_object_get(resp.result, "model"), *th = json_object_get(resp.result, "threads");
        if (json_is_integer(th))
            *threads = (int)json_integer_value(th);
        *stack_n = json_is_integer(n) ? (int)json_integer_value(n) : -1;
        *stack_total = json_is_integer(t) ? (int)json_integer_value(t) : -1;
        snprintf(model, mcap, "%s", json_is_string(m) ? json_string_value(m) : "?");
    }
    bs_response_free(&resp);
    bs_conn_close(&c);
    return rc;
}

static pid_t start_daemon(const bench_opts *o, const char *log, bs_err *e)
{
    char threads[16];
    snprintf(threads, sizeof threads, "%d", o->threads);
    pid_t pid = fork();
    if (pid < 0) {
        bs_err_set(e, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execl(o->daemon, "bitstackd", "--store", o->store, "--socket", o->socket, "--threads", threads,
              (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", o->daemon, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* SIGTERM and wait; 0 when it exited with status 0. */
static int stop_daemon(pid_t pid, bs_err *e)
{
    kill(pid, SIGTERM);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return bs_err_set(e, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    return bs_err_set(e, "bitstackd ended with %s %d after SIGTERM", WIFEXITED(st) ? "status" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* Copies the daemon's log to stderr (after a failure); 1 when there was one. */
static int started_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    fprintf(stderr, "bench_serve: bitstackd's log:\n");
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
    return 1;
}

/* stories260K compressed with the default settings into path. */
static int make_store(const char *path, bs_err *e)
{
    char mp[1024], tp[1024], cp[1024];
    const char *root = getenv("BS_SHARED");
    if (!root)
        root = BS_SHARED_DEFAULT;
    snprintf(mp, sizeof mp, "%s/models/stories260K.bin", root);
    snprintf(tp, sizeof tp, "%s/models/tok512.bin", root);
    snprintf(cp, sizeof cp, "%s/data/tinystories_train_head.txt", root);
    bs_model m;
    if (bs_model_load(&m, mp, e))
        return -1;
    bs_tokenizer *t = bs_tok_load_for(mp, tp, m.cfg.vocab_size, e);
    size_t len = 0;
    char *text = t ? bs_read_file(cp, &len, e) : NULL;
    int rc = -1;
    if (text) {
        bs_compress_opts co;
        bs_compress_defaults(&co, BS_KIND_GQ);
        rc = bs_compress(&m, t, text, len, &co, path, NULL, e);
    }
    free(text);
    bs_tok_free(t);
    bs_model_free(&m);
    return rc;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.daemon = BS_DAEMON_DEFAULT, .prompt = "Once upon a time", .threads = bench_cores(),
                      .tokens = 64, .requests = 64, .clients = {1, 4, 16}, .n_rows = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            goto usage;
        i++;
        if (!strcmp(a, "--store"))
            o->store = v;
        else if (!strcmp(a, "--socket"))
            o->socket = v;
        else if (!strcmp(a, "--daemon"))
            o->daemon = v;
        else if (!strcmp(a, "--prompt"))
            o->prompt = v;
        else if (!strcmp(a, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(a, "--tokens"))
            o->tokens = atoi(v);
        else if (!strcmp(a, "--requests"))
            o->requests = atoi(v);
        else if (!strcmp(a, "--clients")) {
            o->n_rows = 0;
            for (const char *p = v; *p && o->n_rows < MAX_ROWS; p += strcspn(p, ","), p += *p == ',') {
                int c = atoi(p);
                if (c < 1 || c > MAX_CLIENTS)
                    goto usage;
                o->clients[o->n_rows++] = c;
            }
        } else
            goto usage;
    }
    if (o->threads < 1 || o->tokens < 1 || o->tokens > 4096 || o->requests < 1 || o->n_rows < 1)
        goto usage;
    if (o->socket && !o->store) {
        fprintf(stderr, "bench_serve: --socket needs --store (the store that daemon serves)\n");
        return -1;
    }
    return 0;
usage:
    fprintf(stderr, "usage: bench_serve [--store S] [--socket PATH | --daemon PATH] [--threads N] [--tokens 64]\n"
                    "                   [--requests 64] [--clients 1,4,16 (each 1..%d)] [--prompt TEXT]\n",
            MAX_CLIENTS);
    return -1;
}

int main(int argc, char **argv)
{
    bench_opts o;
    if (parse_opts(argc, argv, &o))
        return 2;
    char tmpdir[] = "/tmp/bench-serve.XXXXXX";
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char store_path[256], sock_path[256], log_path[256];
    snprintf(store_path, sizeof store_path, "%s/stories260K.bstk", tmpdir);
    snprintf(sock_path, sizeof sock_path, "%s/bitstackd.sock", tmpdir);
    snprintf(log_path, sizeof log_path, "%s/bitstackd.log", tmpdir);
    bs_err e = {{0}};
    int rc = 1;
    pid_t pid = -1;
    bs_engine eng;
    memset(&eng, 0, sizeof eng);
    const bs_store *s = &eng.store;
    bs_view *view = NULL;
    char *ref = NULL;
    size_t ref_len = 0;

    bench_print_machine();
    if (!o.store) {
        fprintf(stderr, "bench_serve: compressing stories260K into %s\n", store_path);
        if (make_store(store_path, &e))
            goto fail;
        o.store = store_path;
    }
    if (bs_engine_open(&eng, o.store, &e))
        goto fail;
    int started = !o.socket;
    if (started) {
        o.socket = sock_path;
        if ((pid = start_daemon(&o, log_path, &e)) < 0)
            goto fail;
    }
    int stack_n = -1, stack_total = -1;
    char model[128] = "?";
    for (int i = 0; i < 300; i++) {   /* 30 s for the daemon to load and listen */
        if (daemon_status(o.socket, &stack_n, &stack_total, &o.threads, model, sizeof model, &e) == 0)
            break;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid) {
            pid = -1;
            bs_err_set(&e, "bitstackd exited at start (log: %s)", log_path);
            goto fail;
        }
        usleep(100000);
    }
    if (stack_n < 1) {
        bs_err_wrap(&e, "bitstackd at %s does not answer status", o.socket);
        goto fail;
    }
    if (stack_total != s->n_blocks) {
        bs_err_set(&e, "the daemon serves a stack of %d blocks, %s has %d: not the same store", stack_total,
                   o.store, s->n_blocks);
        goto fail;
    }
    printf("store: %s | model %s | stack %d/%d blocks, %.1f KiB resident\n", o.store, model, stack_n,
           s->n_blocks, s->resident[stack_n] / 1024.0);
    printf("daemon: %s | %s | --threads %d\n", started ? o.daemon : "running", o.socket, o.threads);
    printf("request: generate \"%s\", %d tokens, greedy, streamed; %d requests per row, spread over the clients\n",
           o.prompt, o.tokens, o.requests);
    printf("in-process: bs_gen over the same prefix (%d blocks), one thread per client, BLAS 1 thread\n", stack_n);

    int bad;
    if (bs_engine_read_blocks(&eng, stack_n, &bad, &e) || bs_engine_publish(&eng, stack_n, &e))
        goto fail;
    view = bs_engine_acquire(&eng);
    const bs_stacked *sm = &view->sm;
    bs_blas_threads(1);
    double warm_ttft;
    long warm_tokens = 0;
    if (local_generate(sm, &o, &warm_ttft, &warm_tokens, &ref, &ref_len, &e))
        goto fail;

    printf("\n%7s %8s %7s | %-36s | %-28s | %s\n", "clients", "requests", "tokens", "bitstackd", "in-process",
           "daemon/in-process");
    printf("%7s %8s %7s | %9s %8s %8s %8s | %9s %8s %8s | %9s %s\n", "", "", "", "tok/s", "ttft p50", "ttft p99",
           "srv p50", "tok/s", "ttft p50", "ttft p99", "tok/s", "same text");
    int ok = 1;
    for (int i = 0; i < o.n_rows; i++) {
        row_result loc, rem;
        if (run_local(sm, &o, o.clients[i], ref, ref_len, &loc) ||
            run_remote(&o, o.clients[i], ref, ref_len, &rem)) {
            ok = 0;
            bs_err_set(&e, "a row failed (above)");
            break;
        }
        printf("%7d %8d %7ld | %9.1f %6.2fms %6.2fms %6.2fms | %9.1f %6.2fms %6.2fms | %9.2f %s\n", o.clients[i],
               rem.requests, rem.tokens, rem.tok_s, rem.p50 * 1e3, rem.p99 * 1e3, rem.server_p50 * 1e3, loc.tok_s,
               loc.p50 * 1e3, loc.p99 * 1e3, rem.tok_s / loc.tok_s,
               rem.same_text && loc.same_text ? "yes" : "NO");
        fflush(stdout);
    }
    printf("(ttft: request sent -> first token line read; srv: the daemon's own ttft_ms; in-process ttft:\n"
           " bs_gen start -> first token; p99 of %d samples is their maximum or close to it)\n", o.requests);
    char load[128];
    bench_load(load, sizeof load);
    printf("load average at the end: %s%s\n", load,
           atof(load) > bench_cores() ? " (above the core count: other work skewed these figures)" : "");
    if (!ok)
        goto fail;
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "bench_serve: %s\n", e.msg);
    if (rc)
        started_log(log_path);
    if (pid > 0) {
        bs_err se = {{0}};
        if (stop_daemon(pid, &se)) {
            fprintf(stderr, "bench_serve: %s\n", se.msg);
            rc = 1;
        }
    }
    bs_engine_release(&eng, view);
    free(ref);
    bs_engine_close(&eng);
    unlink(store_path);
    unlink(sock_path);
    unlink(log_path);
    rmdir(tmpdir);
    return rc;
}
