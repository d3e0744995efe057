/* Helpers for the daemon's integration tests: a temp folder, a store made by
 * `bitstackctl compress`, the real bitstackd started on a socket in that folder, and a
 * tiny blocking client that sends lines and reads response lines with a timeout.
 *
 * Timeouts here only catch hangs (they are far above any normal run, even under ASan);
 * no test passes or fails on how fast something is. */
#ifndef BS_TEST_DAEMON_CLIENT_H
#define BS_TEST_DAEMON_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/proto.h"

#define TD_TIMEOUT_MS 120000   /* a hang, not a slow run */

static inline double td_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline void td_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the temp folder --------------------------------------------------------------- */

static inline int td_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static inline void td_rmtree(const char *dir)
{
    nftw(dir, td_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdtemp under /tmp (short: socket paths must fit 107 bytes). */
static inline void td_mkdtemp(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/bsd-test-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
}

/* ---- processes --------------------------------------------------------------------- */

/* Runs argv to completion with stdout/stderr to log (appended); its exit status, or -1. */
static inline int td_run(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct {
    pid_t pid;
    char log[512];
    char sock[256];
    int status;                 /* after td_daemon_stop / wait */
    bool exited;
} td_daemon;

/* Daemons started and not yet reaped: killed at exit, so that a test stopped by a failed
 * REQUIRE leaves nothing running. */
static pid_t td_children[64];

static inline void td_kill_children(void)
{
    for (int i = 0; i < 64; i++)
        if (td_children[i] > 0) {
            kill(td_children[i], SIGKILL);
            waitpid(td_children[i], NULL, 0);
            td_children[i] = 0;
        }
}

static inline void td_track(pid_t pid, bool add)
{
    static bool registered;
    if (!registered) {
        atexit(td_kill_children);
        registered = true;
    }
    for (int i = 0; i < 64; i++)
        if (add ? td_children[i] == 0 : td_children[i] == pid) {
            td_children[i] = add ? pid : 0;
            return;
        }
}

/* Hook run in the child between fork and exec (set env, fds). */
typedef void (*td_child_fn)(void *arg);

/* Starts exe with args (NULL-terminated, without argv[0]); stderr to log (truncated). */
static inline void td_daemon_spawn(td_daemon *d, const char *exe, const char *const *args, const char *log,
                            td_child_fn child, void *arg)
{
    memset(d, 0, sizeof *d);
    snprintf(d->log, sizeof d->log, "%s", log);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)exe;
    for (int i = 0; args[i] && n < 62; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    d->pid = fork();
    if (d->pid < 0) {
        perror("fork");
        exit(1);
    }
    if (d->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (child)
            child(arg);
        execv(exe, argv);
        _exit(127);
    }
    td_track(d->pid, true);
}

/* Has the daemon exited? Collects its status without blocking. */
static inline bool td_daemon_exited(td_daemon *d)
{
    if (d->exited)
        return true;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid) {
        d->exited = true;
        d->status = st;
        td_track(d->pid, false);
    }
    return d->exited;
}

/* Waits for the daemon to exit (up to ms); true when it did. */
static inline bool td_daemon_wait(td_daemon *d, int ms)
{
    double end = td_now_ms() + ms;
    while (!td_daemon_exited(d)) {
        if (td_now_ms() > end)
            return false;
        td_sleep_ms(5);
    }
    return true;
}

static inline int td_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Waits until the socket accepts connections; false if the daemon exited first. */
static inline bool td_wait_socket(td_daemon *d, const char *path)
{
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (td_now_ms() < end) {
        int fd = td_connect(path);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        if (td_daemon_exited(d))
            return false;
        td_sleep_ms(10);
    }
    return false;
}

static inline void td_dump_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s ----\n", log);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fclose(f);
    fprintf(stderr, "---- end ----\n");
}

/* Does the log contain s? */
static inline bool td_log_has(const char *log, const char *s)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, s) != NULL;
}

/* SIGTERM, then waits; true when it exited with code 0. */
static inline bool td_daemon_stop(td_daemon *d)
{
    if (!td_daemon_exited(d))
        kill(d->pid, SIGTERM);
    if (!td_daemon_wait(d, TD_TIMEOUT_MS)) {
        fprintf(stderr, "daemon %d did not exit after SIGTERM; killing it\n", (int)d->pid);
        kill(d->pid, SIGKILL);
        td_daemon_wait(d, TD_TIMEOUT_MS);
        return false;
    }
    bool ok = WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0;
    if (!ok) {
        if (WIFEXITED(d->status))
            fprintf(stderr, "daemon exited with code %d\n", WEXITSTATUS(d->status));
        else
            fprintf(stderr, "daemon died of signal %d\n", WTERMSIG(d->status));
        td_dump_log(d->log);
    }
    return ok;
}

/* ---- a blocking line client -------------------------------------------------------- */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
    char *line;                 /* the last line read (owned) */
    bool eof;
} td_conn;

static inline bool td_open(td_conn *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->fd = td_connect(path);
    return c->fd >= 0;
}

static inline void td_close(td_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c->line);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Writes all of s (len bytes); false on error. */
static inline bool td_write(td_conn *c, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t w = send(c->fd, s, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        s += w;
        len -= (size_t)w;
    }
    return true;
}

/* Sends a formatted line; the '\n' is added. */
static inline bool td_sendf(td_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool td_sendf(td_conn *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof buf - 1)
        return false;
    buf[n++] = '\n';
    return td_write(c, buf, (size_t)n);
}

/* Reads one line (without '\n') into c->line. 1 a line, 0 end of stream, -1 error or
 * timeout (ms). */
static inline int td_readline(td_conn *c, int ms, size_t *len)
{
    double end = td_now_ms() + ms;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            free(c->line);
            c->line = malloc(n + 1);
            memcpy(c->line, c->buf, n);
            c->line[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            if (len)
                *len = n;
            return 1;
        }
        if (c->eof)
            return 0;
        int left = (int)(end - td_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd p = {c->fd, POLLIN, 0};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ECONNRESET)
            n = 0;
        if (n < 0)
            return -1;
        if (n == 0)
            c->eof = true;
        c->len += (size_t)n;
    }
}

/* Reads and parses one response line. 1 ok, 0 EOF, -1 error/timeout/unparsable. */
static inline int td_recv(td_conn *c, bs_response *r)
{
    memset(r, 0, sizeof *r);
    size_t n;
    int rc = td_readline(c, TD_TIMEOUT_MS, &n);
    if (rc <= 0)
        return rc;
    bs_err e;
    if (bs_proto_parse_response(c->line, n, r, &e)) {
        fprintf(stderr, "unparsable response line: %s (%s)\n", c->line, e.msg);
        return -1;
    }
    return 1;
}

/* Does id (as JSON text) match the response's id? */
static inline bool td_id_is(const bs_response *r, const char *json)
{
    return r->id.len == strlen(json) && !memcmp(r->id.json, json, r->id.len);
}

/* Sends one line and reads the one answer (for ops answered at once). */
static inline int td_call(td_conn *c, bs_response *r, const char *line)
{
    if (!td_write(c, line, strlen(line)) || !td_write(c, "\n", 1))
        return -1;
    return td_recv(c, r);
}

/* An integer field of a result object; -1 when absent. */
static inline long long td_result_int(const bs_response *r, const char *key)
{
    if (r->kind != BS_RESP_RESULT)
        return -1;
    json_t *v = json_object_get(r->result, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* One status request on a fresh connection: the field's value, or -1. */
static inline long long td_status_int(const char *sock, const char *key)
{
    td_conn c;
    if (!td_open(&c, sock))
        return -1;
    bs_response r;
    long long v = -1;
    if (td_call(&c, &r, "{\"id\":\"st\",\"op\":\"status\"}") == 1)
        v = td_result_int(&r, key);
    bs_response_free(&r);
    td_close(&c);
    return v;
}

/* One metrics request on a fresh connection: the field's value, or -1. */
static inline long long td_metric(const char *sock, const char *key)
{
    td_conn c;
    if (!td_open(&c, sock))
        return -1;
    bs_response r;
    long long v = -1;
    if (td_call(&c, &r, "{\"id\":\"m\",\"op\":\"metrics\"}") == 1)
        v = td_result_int(&r, key);
    bs_response_free(&r);
    td_close(&c);
    return v;
}

/* Polls status until key == want (sessions draining, say); true when it did. */
static inline bool td_wait_status(const char *sock, const char *key, long long want)
{
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (td_now_ms() < end) {
        if (td_status_int(sock, key) == want)
            return true;
        td_sleep_ms(20);
    }
    return false;
}

/* Reads responses until the final line (done or error) of request id; token texts are
 * appended to *streamed (malloc'd, may be NULL on entry). The final response is left in
 * *fin (caller frees). 1 ok, else the failure of td_recv. Other ids' lines are skipped. */
static inline int td_until_final(td_conn *c, const char *id, bs_response *fin, char **streamed, size_t *slen)
{
    for (;;) {
        bs_response r;
        int rc = td_recv(c, &r);
        if (rc <= 0)
            return rc;
        if (!td_id_is(&r, id)) {
            bs_response_free(&r);
            continue;
        }
        if (r.kind == BS_RESP_TOKEN) {
            if (streamed) {
                *streamed = realloc(*streamed, *slen + r.text_len + 1);
                memcpy(*streamed + *slen, r.text, r.text_len);
                *slen += r.text_len;
                (*streamed)[*slen] = '\0';
            }
            bs_response_free(&r);
            continue;
        }
        *fin = r;
        return 1;
    }
}

/* Compresses ../shared/models/<model> (with its tokenizer <tok>) into dir/<name>.bstk, with
 * few calibration windows (a small store: a few seconds); its output in
 * dir/compress-<name>.log, dumped when it fails. */
static inline int td_compress(const char *ctl, const char *shared, const char *dir, const char *model_file,
                              const char *tok_file, const char *name, char *out, size_t n)
{
    char model[1024], tok[1024], calib[1024], log[512];
    snprintf(model, sizeof model, "%s/models/%s", shared, model_file);
    snprintf(tok, sizeof tok, "%s/models/%s", shared, tok_file);
    snprintf(calib, sizeof calib, "%s/data/tinystories_train_head.txt", shared);
    snprintf(out, n, "%s/%s.bstk", dir, name);
    snprintf(log, sizeof log, "%s/compress-%s.log", dir, name);
    char *argv[] = {(char *)ctl, "compress", "--model", model, "--tokenizer", tok, "--calib", calib,
                    "--out", out, "--calib-windows", "8", "--ctx", "64", "--quiet", NULL};
    int rc = td_run(argv, log);
    if (rc)
        td_dump_log(log);
    return rc;
}

/* Compresses stories260K into dir/s.bstk. */
static inline int td_make_store(const char *ctl, const char *shared, const char *dir, char *out, size_t n)
{
    return td_compress(ctl, shared, dir, "stories260K.bin", "tok512.bin", "s", out, n);
}

/* ---- a fixture: folder, store, daemons --------------------------------------------- */

typedef struct {
    const char *daemon, *ctl, *shared;
    char dir[64];
    char store[128];
} td_fixture;

/* argv[1] the bitstackd binary, argv[2] bitstackctl (meson passes both). */
static inline void td_fixture_init(td_fixture *f, int argc, char **argv, const char *shared)
{
    memset(f, 0, sizeof *f);
    if (argc < 3) {
        fprintf(stderr, "usage: %s BITSTACKD BITSTACKCTL\n", argv[0]);
        exit(2);
    }
    f->daemon = argv[1];
    f->ctl = argv[2];
    f->shared = shared;
    td_mkdtemp(f->dir, sizeof f->dir);
    if (td_make_store(f->ctl, shared, f->dir, f->store, sizeof f->store)) {
        fprintf(stderr, "bitstackctl compress failed\n");
        td_rmtree(f->dir);
        exit(1);
    }
}

/* Removes the folder, unless the test failed: then it stays for a look. */
static inline void td_fixture_free(td_fixture *f, bool failed)
{
    if (failed)
        fprintf(stderr, "test folder kept: %s\n", f->dir);
    else
        td_rmtree(f->dir);
}

/* Starts bitstackd --store <store> --socket <dir>/<name>.sock <extra...> with its log in
 * <dir>/<name>.log and waits for the socket; exits the test when it does not come up. */
static inline void td_start(td_fixture *f, td_daemon *d, const char *name, const char *const *extra)
{
    char log[256], sock[256];
    snprintf(log, sizeof log, "%s/%s.log", f->dir, name);
    snprintf(sock, sizeof sock, "%s/%s.sock", f->dir, name);
    const char *args[48];
    int n = 0;
    args[n++] = "--store";
    args[n++] = f->store;
    args[n++] = "--socket";
    args[n++] = sock;
    for (int i = 0; extra && extra[i] && n < 46; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    td_daemon_spawn(d, f->daemon, args, log, NULL, NULL);
    snprintf(d->sock, sizeof d->sock, "%s", sock);
    if (!td_wait_socket(d, sock)) {
        fprintf(stderr, "bitstackd did not come up on %s\n", sock);
        td_dump_log(log);
        if (!td_daemon_exited(d))
            kill(d->pid, SIGKILL);
        td_rmtree(f->dir);
        exit(1);
    }
}

#endif
