/* bitstackd's life: the socket file (mode, default path, stale file replaced, live daemon
 * not replaced, removed at exit), SIGTERM and SIGINT (in-flight generations end with a
 * final line, exit 0), sd_notify READY/STATUS/STOPPING on a NOTIFY_SOCKET, socket
 * activation through LISTEN_FDS/LISTEN_PID, journal log prefixes, usage errors. */
#include "harness.h"
#include "tests/daemon/client.h"
#include "model/store.h"

#define BUDGET "40%"

static td_fixture F;

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", F.dir, name);
}

/* Spawns with args after --store; the socket path is the caller's business. */
static void spawn(td_daemon *d, const char *name, const char *const *args, td_child_fn child, void *arg)
{
    char log[256];
    path_in(log, sizeof log, name);
    strcat(log, ".log");
    const char *full[32];
    int n = 0;
    full[n++] = "--store";
    full[n++] = F.store;
    full[n++] = "--budget";
    full[n++] = BUDGET;
    for (int i = 0; args && args[i]; i++)
        full[n++] = args[i];
    full[n] = NULL;
    td_daemon_spawn(d, F.daemon, full, log, child, arg);
}

static bool status_ok(const char *sock)
{
    return td_status_int(sock, "stack_total") > 0;
}

static void test_socket_file(void)
{
    char sock[256];
    path_in(sock, sizeof sock, "a.sock");
    td_daemon d;
    const char *args[] = {"--socket", sock, NULL};
    spawn(&d, "a", args, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    struct stat st;
    REQUIRE(lstat(sock, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECKF((st.st_mode & 07777) == 0660, "mode %o", (unsigned)(st.st_mode & 07777));
    CHECK(status_ok(sock));

    /* a second daemon on the same path refuses, names the first, and changes nothing */
    td_daemon d2;
    spawn(&d2, "a2", args, NULL, NULL);
    CHECK(td_daemon_wait(&d2, TD_TIMEOUT_MS));
    CHECK(WIFEXITED(d2.status) && WEXITSTATUS(d2.status) == 1);
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "pid %d", (int)d.pid);
    CHECK(td_log_has(d2.log, "another daemon"));
    CHECKF(td_log_has(d2.log, pidtext), "the refusal should name %s", pidtext);
    CHECK(status_ok(sock));   /* the first one still serves on it */

    CHECK(td_daemon_stop(&d));
    CHECK(lstat(sock, &st) != 0 && errno == ENOENT);   /* removed at exit */

    /* a stale socket file (nobody listening) is replaced */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock, strlen(sock));
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);
    REQUIRE(lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode));
    spawn(&d, "a3", args, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(status_ok(sock));
    CHECK(td_log_has(d.log, "stale"));
    CHECK(td_daemon_stop(&d));

    /* a file that is not a socket is never removed */
    FILE *f = fopen(sock, "w");
    REQUIRE(f);
    fputs("precious", f);
    fclose(f);
    spawn(&d, "a4", args, NULL, NULL);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS));
    CHECK(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1);
    CHECK(td_log_has(d.log, "not a socket"));
    CHECK(lstat(sock, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 8);
    unlink(sock);
}

/* $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=, possibly a list) gives the default path. */
static void set_runtime_dir(void *arg)
{
    unsetenv("BITSTACK_SOCKET");
    setenv("RUNTIME_DIRECTORY", (const char *)arg, 1);
}

/* $BITSTACK_SOCKET comes first (bitstackctl looks there first too). */
static void set_both(void *arg)
{
    setenv("RUNTIME_DIRECTORY", "/nonexistent", 1);
    setenv("BITSTACK_SOCKET", (const char *)arg, 1);
}

static void test_default_path(void)
{
    char rt[256], list[600], sock[300];
    path_in(rt, sizeof rt, "rt");
    mkdir(rt, 0755);
    snprintf(list, sizeof list, "%s:/nonexistent/other", rt);
    snprintf(sock, sizeof sock, "%s/bitstackd.sock", rt);
    td_daemon d;
    spawn(&d, "rt", NULL, set_runtime_dir, list);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(status_ok(sock));
    CHECK(td_daemon_stop(&d));

    path_in(sock, sizeof sock, "env.sock");
    spawn(&d, "env", NULL, set_both, sock);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(status_ok(sock));
    CHECK(td_daemon_stop(&d));

    /* a path too long for a Unix socket is an error, not a truncated path */
    char longp[400];
    memset(longp, 'x', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    const char *args[] = {"--socket", longp, NULL};
    spawn(&d, "long", args, NULL, NULL);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS) && WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1);
    CHECK(td_log_has(d.log, "a Unix socket path holds"));
}

/* SIGTERM while generations run: each request gets its final line (a done line with
 * finish_reason "shutdown" if it had started, else a shutting_down error), then the
 * connection closes and the daemon exits 0. SIGINT does the same. */
static void test_signals(int sig)
{
    char sock[256];
    path_in(sock, sizeof sock, sig == SIGTERM ? "t.sock" : "i.sock");
    td_daemon d;
    /* one thread: of four requests, some run and some wait their turn */
    const char *args[] = {"--socket", sock, "--threads", "1", NULL};
    spawn(&d, sig == SIGTERM ? "t" : "i", args, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    td_conn c, idle;
    REQUIRE(td_open(&c, sock));
    REQUIRE(td_open(&idle, sock));
    for (int i = 0; i < 4; i++)
        REQUIRE(td_sendf(&c, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000,\"stream\":true}", i));
    bs_response r;
    REQUIRE(td_recv(&c, &r) == 1);
    CHECK(r.kind == BS_RESP_TOKEN);
    bs_response_free(&r);
    kill(d.pid, sig);
    int finals = 0, shutdown_done = 0, other = 0;
    for (;;) {
        int rc = td_recv(&c, &r);
        if (rc == 0)
            break;
        REQUIRE(rc == 1);
        if (r.kind == BS_RESP_DONE) {
            finals++;
            if (r.stats.finish_reason == BS_FINISH_SHUTDOWN)
                shutdown_done++;
            else
                other++;
        } else if (r.kind == BS_RESP_ERROR) {
            finals++;
            if (r.code != BS_PERR_SHUTTING_DOWN)
                other++;
        }
        bs_response_free(&r);
    }
    CHECKF(finals == 4, "%d final lines for 4 requests", finals);
    CHECK(shutdown_done >= 1);
    CHECK(other == 0);
    size_t n;
    CHECK(td_readline(&idle, TD_TIMEOUT_MS, &n) == 0);   /* the idle client is closed too */
    td_close(&c);
    td_close(&idle);
    CHECK(td_daemon_stop(&d));
    CHECK(td_log_has(d.log, "stopping"));
    CHECK(td_connect(sock) < 0);
}

/* Stopping does not wait forever for a client that does not read its last lines: after
 * --grace-ms it is closed and the daemon still exits 0. */
static void test_grace(void)
{
    char sock[256];
    path_in(sock, sizeof sock, "g.sock");
    td_daemon d;
    const char *args[] = {"--socket", sock, "--grace-ms", "300", "--max-output", "16777216", NULL};
    spawn(&d, "g", args, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    td_conn c;
    REQUIRE(td_open(&c, sock));
    /* about 1 MB of answers it will not read: more than the socket buffers hold */
    for (int i = 0; i < 1200; i++)
        REQUIRE(td_sendf(&c, "{\"id\":%d,\"op\":\"status\"}", i));
    CHECK(td_wait_status(sock, "connections", 2));   /* all read, the answers queued */
    kill(d.pid, SIGTERM);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS));
    CHECK(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 0);
    CHECK(td_log_has(d.log, "did not take their last lines"));
    td_close(&c);
}

/* ---- sd_notify --------------------------------------------------------------------- */

static int notify_socket(const char *name, bool abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        sa.sun_path[0] = '\0';
        memcpy(sa.sun_path + 1, name, strlen(name));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    } else {
        memcpy(sa.sun_path, name, strlen(name));
        len = sizeof sa;
    }
    if (bind(fd, (struct sockaddr *)&sa, len)) {
        perror("bind notify socket");
        close(fd);
        return -1;
    }
    return fd;
}

/* Datagrams until one contains want; all of them appended to seen. */
static bool notify_wait(int fd, const char *want, char *seen, size_t cap)
{
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (td_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        strncat(seen, buf, cap - strlen(seen) - 2);
        strcat(seen, "|");
        if (strstr(buf, want))
            return true;
    }
    return false;
}

static void set_notify(void *arg)
{
    setenv("NOTIFY_SOCKET", (const char *)arg, 1);
}

static void test_notify(bool abstract)
{
    char np[256], sock[256], env[300];
    if (abstract) {
        snprintf(np, sizeof np, "bitstack-test-notify-%d", (int)getpid());
        snprintf(env, sizeof env, "@%s", np);
    } else {
        path_in(np, sizeof np, "notify");
        snprintf(env, sizeof env, "%s", np);
    }
    int fd = notify_socket(np, abstract);
    REQUIRE(fd >= 0);
    path_in(sock, sizeof sock, "n.sock");
    const char *args[] = {"--socket", sock, NULL};
    td_daemon d;
    spawn(&d, abstract ? "na" : "n", args, set_notify, env);
    char seen[4096] = "";
    CHECKF(notify_wait(fd, "READY=1", seen, sizeof seen), "got: %s", seen);
    CHECK(strstr(seen, "STATUS=loading"));
    CHECK(strstr(seen, "STATUS=serving"));
    /* READY comes once the socket answers */
    CHECK(status_ok(sock));
    kill(d.pid, SIGTERM);
    CHECKF(notify_wait(fd, "STOPPING=1", seen, sizeof seen), "got: %s", seen);
    CHECK(td_daemon_stop(&d));
    close(fd);
    if (!abstract)
        unlink(np);
}

/* ---- socket activation ------------------------------------------------------------- */

typedef struct {
    int fd;          /* the listening socket to pass as fd 3, or a file */
    bool other_pid;  /* LISTEN_PID names another process */
} act_arg;

static void set_activation(void *p)
{
    act_arg *a = p;
    if (a->fd != 3) {
        dup2(a->fd, 3);
        close(a->fd);
    }
    char pid[32];
    snprintf(pid, sizeof pid, "%d", a->other_pid ? (int)getppid() : (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "bitstackd.socket", 1);
}

static void test_activation(void)
{
    char sock[256], other[256];
    path_in(sock, sizeof sock, "act.sock");
    path_in(other, sizeof other, "other.sock");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);   /* no CLOEXEC: the child inherits it */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock, strlen(sock));
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 16) == 0);
    /* --socket is ignored when a socket is passed */
    const char *args[] = {"--socket", other, NULL};
    act_arg a = {fd, false};
    td_daemon d;
    spawn(&d, "act", args, set_activation, &a);
    close(fd);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(status_ok(sock));
    struct stat st;
    CHECK(lstat(other, &st) != 0);
    /* a generation works through the passed socket too */
    td_conn c;
    REQUIRE(td_open(&c, sock));
    bs_response r;
    REQUIRE(td_call(&c, &r, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4}") == 1);
    CHECK(r.kind == BS_RESP_DONE);
    bs_response_free(&r);
    td_close(&c);
    CHECK(td_daemon_stop(&d));
    /* systemd owns the passed socket's file: the daemon leaves it */
    CHECK(lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode));
    unlink(sock);

    /* LISTEN_PID of another process: not for us; --socket is used */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 16) == 0);
    a = (act_arg){fd, true};
    spawn(&d, "act2", args, set_activation, &a);
    close(fd);
    REQUIRE(td_wait_socket(&d, other));
    CHECK(status_ok(other));
    CHECK(td_daemon_stop(&d));
    unlink(sock);

    /* fd 3 that is not a listening Unix socket: a clear error, exit 1 */
    char file[256];
    path_in(file, sizeof file, "notasocket");
    fd = open(file, O_RDWR | O_CREAT, 0600);
    REQUIRE(fd >= 0);
    a = (act_arg){fd, false};
    spawn(&d, "act3", args, set_activation, &a);
    close(fd);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS));
    CHECK(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1);
    CHECK(td_log_has(d.log, "socket activation"));
}

/* ---- logs -------------------------------------------------------------------------- */

static void set_journal(void *arg)
{
    (void)arg;
    struct stat st;
    if (fstat(2, &st) == 0) {
        char v[64];
        snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", v, 1);
    }
}

static void set_wrong_journal(void *arg)
{
    (void)arg;
    setenv("JOURNAL_STREAM", "1:1", 1);
}

static void test_journal(void)
{
    char sock[256];
    path_in(sock, sizeof sock, "j.sock");
    const char *args[] = {"--socket", sock, NULL};
    td_daemon d;
    spawn(&d, "j", args, set_journal, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(td_daemon_stop(&d));
    /* every line carries an sd-daemon priority: info <6>, notice <5> */
    FILE *f = fopen(d.log, "r");
    REQUIRE(f);
    char line[4096];
    int lines = 0, prefixed = 0, notice = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        prefixed += line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>';
        notice += !strncmp(line, "<5>", 3);
    }
    fclose(f);
    CHECK(lines >= 3 && prefixed == lines);
    CHECK(notice >= 1);   /* the signal */

    /* JOURNAL_STREAM naming another file (inherited, stale): plain lines */
    spawn(&d, "j2", args, set_wrong_journal, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(td_daemon_stop(&d));
    CHECK(!td_log_has(d.log, "<6>"));
    CHECK(td_log_has(d.log, "info: "));
}

static void test_usage(void)
{
    td_daemon d;
    char log[256];
    path_in(log, sizeof log, "u.log");
    const char *none[] = {NULL};
    td_daemon_spawn(&d, F.daemon, none, log, NULL, NULL);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS) && WIFEXITED(d.status) && WEXITSTATUS(d.status) == 2);
    CHECK(td_log_has(log, "--store"));

    const char *bogus[] = {"--store", F.store, "--bogus", NULL};
    td_daemon_spawn(&d, F.daemon, bogus, log, NULL, NULL);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS) && WIFEXITED(d.status) && WEXITSTATUS(d.status) == 2);

    char sock[256];
    path_in(sock, sizeof sock, "u.sock");
    const char *missing[] = {"--store", "/nonexistent/x.bstk", "--socket", sock, NULL};
    td_daemon_spawn(&d, F.daemon, missing, log, NULL, NULL);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS) && WIFEXITED(d.status) && WEXITSTATUS(d.status) == 1);
    CHECK(td_log_has(log, "/nonexistent/x.bstk"));

    /* a malformed budget is a usage error, before anything is bound */
    const char *typo[] = {"--store", F.store, "--socket", sock, "--budget", "4.0bpx", NULL};
    td_daemon_spawn(&d, F.daemon, typo, log, NULL, NULL);
    CHECK(td_daemon_wait(&d, TD_TIMEOUT_MS) && WIFEXITED(d.status) && WEXITSTATUS(d.status) == 2);
    CHECK(td_log_has(log, "4.0bpx"));
    struct stat st;
    CHECK(lstat(sock, &st) != 0);   /* nothing was bound */

    /* a budget below the smallest working model is one a daemon follows as far as it can:
     * it serves the smallest prefix and says so */
    const char *budget[] = {"--store", F.store, "--socket", sock, "--budget", "1K", NULL};
    td_daemon_spawn(&d, F.daemon, budget, log, NULL, NULL);
    CHECK(td_wait_socket(&d, sock));
    CHECK(td_log_has(log, "budget 1K is below the smallest working prefix"));
    bs_store s;
    bs_err e;
    REQUIRE(bs_store_open(&s, F.store, &e) == 0);
    CHECK(td_status_int(sock, "stack_n") == s.min_blocks);
    bs_store_close(&s);
    CHECK(td_daemon_stop(&d));
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    td_fixture_init(&F, argc, argv, bs_shared(""));
    test_socket_file();
    test_default_path();
    test_signals(SIGTERM);
    test_signals(SIGINT);
    test_grace();
    test_notify(false);
    test_notify(true);
    test_activation();
    test_journal();
    test_usage();
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
