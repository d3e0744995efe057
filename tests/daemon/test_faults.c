/* bitstackd against clients that misbehave in ways the parsers never see: a client that
 * half-closes and then vanishes, connections that never say a word, a client that
 * reconnects in a loop over the limit (the log must not flood), a daemon out of file
 * descriptors, a second cancel, and sampling values that do not survive float. Each
 * case failed before its fix. */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "tests/daemon/client.h"

static td_fixture F;


static int count_lines_with(const char *log, const char *s)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, s) != NULL;
    fclose(f);
    return n;
}

/* Four clients queue 16 requests each, half-close, and later close for good: their
 * requests are cancelled at once, not computed for nobody. */
static void test_vanished(void)
{
    td_daemon d;
    const char *args[] = {"--threads", "1", "--budget", "max", NULL};
    td_start(&F, &d, "vanish", args);
    long long before = td_metric(d.sock, "sessions_cancelled");
    td_conn c[4];
    for (int k = 0; k < 4; k++) {
        REQUIRE(td_open(&c[k], d.sock));
        for (int i = 0; i < 16; i++)
            REQUIRE(td_sendf(&c[k], "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000}", i));
        shutdown(c[k].fd, SHUT_WR);
    }
    CHECK(td_wait_status(d.sock, "sessions", 64));
    td_sleep_ms(300);   /* the daemon has seen the EOFs: the clients are half-closed, not gone */
    for (int k = 0; k < 4; k++)
        td_close(&c[k]);
    double t0 = td_now_ms();
    /* 64 requests take one thread several seconds; cancelled they end within a tick */
    long long sessions = -1;
    while (td_now_ms() - t0 < 2000 && (sessions = td_status_int(d.sock, "sessions")) != 0)
        td_sleep_ms(20);
    CHECKF(sessions == 0, "%lld sessions still open 2 s after their clients closed", sessions);
    long long cancelled = td_metric(d.sock, "sessions_cancelled") - before;
    CHECKF(cancelled >= 40, "only %lld of 64 requests were cancelled", cancelled);
    /* a fresh client gets its requests in */
    td_conn n;
    REQUIRE(td_open(&n, d.sock));
    bs_response r;
    REQUIRE(td_call(&n, &r, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":2}") == 1);
    CHECK(r.kind == BS_RESP_DONE);
    bs_response_free(&r);
    td_close(&n);
    CHECK(td_daemon_stop(&d));
}

/* Connections that never finish a request are closed after --idle-timeout, so that idle
 * sockets cannot hold every place; a client that is talking is not. */
static void test_idle(void)
{
    td_daemon d;
    const char *args[] = {"--idle-timeout", "1", "--max-connections", "6", NULL};
    td_start(&F, &d, "idle", args);
    td_conn silent[3], talker;
    for (int i = 0; i < 3; i++)
        REQUIRE(td_open(&silent[i], d.sock));
    REQUIRE(td_write(&silent[2], "{\"id\":1,", 8));   /* a request never finished */
    REQUIRE(td_open(&talker, d.sock));
    bs_response r;
    REQUIRE(td_call(&talker, &r, "{\"id\":\"s\",\"op\":\"status\"}") == 1);
    bs_response_free(&r);
    td_sleep_ms(1600);
    for (int i = 0; i < 3; i++) {
        size_t n;
        CHECKF(td_readline(&silent[i], 3000, &n) == 0, "silent connection %d was not closed", i);
        td_close(&silent[i]);
    }
    REQUIRE(td_call(&talker, &r, "{\"id\":\"s2\",\"op\":\"status\"}") == 1);
    CHECK(r.kind == BS_RESP_RESULT);
    bs_response_free(&r);
    td_close(&talker);
    CHECK(td_metric(d.sock, "connections_idle_closed") >= 3);
    CHECK(td_daemon_stop(&d));
}

/* A client reconnecting in a loop over the limit: a few log lines, not one per try. */
static void test_refusal_log(void)
{
    td_daemon d;
    const char *args[] = {"--max-connections", "2", NULL};
    td_start(&F, &d, "refuse", args);
    td_sleep_ms(200);   /* td_start's probe connection has been seen closing */
    td_conn a, b;
    REQUIRE(td_open(&a, d.sock));
    REQUIRE(td_open(&b, d.sock));
    bs_response r;
    REQUIRE(td_call(&a, &r, "{\"id\":1,\"op\":\"status\"}") == 1);
    bs_response_free(&r);
    REQUIRE(td_call(&b, &r, "{\"id\":1,\"op\":\"status\"}") == 1);
    bs_response_free(&r);
    double t0 = td_now_ms();
    int tries = 0;
    while (td_now_ms() - t0 < 1500) {
        int fd = td_connect(d.sock);
        if (fd >= 0)
            close(fd);
        tries++;
    }
    td_close(&a);
    td_close(&b);
    td_sleep_ms(200);
    long long refused = td_metric(d.sock, "connections_rejected");
    CHECK(td_daemon_stop(&d));
    int lines = count_lines_with(d.log, "refused");
    CHECKF(refused >= 100 && lines >= 1 && lines <= 4, "%d tries, %lld refused, %d log lines", tries, refused,
           lines);
}

static void low_fd_limit(void *arg)
{
    (void)arg;
    struct rlimit rl = {40, 40};
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Out of descriptors (ulimit -n 40, --max-connections 100): 60 clients each get an answer
 * or a refusal and a close; none hangs. */
static void test_emfile(void)
{
    td_daemon d;
    char log[256], sock[256];
    snprintf(log, sizeof log, "%s/emfile.log", F.dir);
    snprintf(sock, sizeof sock, "%s/emfile.sock", F.dir);
    const char *args[] = {"--store", F.store, "--socket", sock, "--max-connections", "100", "--threads", "1", NULL};
    td_daemon_spawn(&d, F.daemon, args, log, low_fd_limit, NULL);
    snprintf(d.sock, sizeof d.sock, "%s", sock);
    REQUIRE(td_wait_socket(&d, sock));
    enum { N = 60 };
    td_conn c[N];
    int opened = 0;
    for (int i = 0; i < N; i++)
        opened += td_open(&c[i], sock);
    CHECK(opened == N);   /* the backlog takes them all */
    int answered = 0, refused = 0, hung = 0;
    for (int i = 0; i < opened; i++) {
        if (!td_sendf(&c[i], "{\"id\":%d,\"op\":\"status\"}", i)) {
            refused++;   /* closed by the daemon before we wrote */
            continue;
        }
        size_t n;
        int got = td_readline(&c[i], 5000, &n);
        if (got > 0)
            *(strstr(c[i].line, "too_many_connections") ? &refused : &answered) += 1;
        else if (got == 0)
            refused++;
        else
            hung++;
    }
    for (int i = 0; i < opened; i++)
        td_close(&c[i]);
    CHECKF(hung == 0 && answered > 0 && answered + refused == opened, "%d answered, %d refused, %d hung",
           answered, refused, hung);
    CHECK(td_status_int(sock, "stack_total") > 0);
    CHECK(td_daemon_stop(&d));
}

/* The small ones: a second cancel of the same request; values that pass as doubles but
 * not as the sampler's floats; the id limit's message. */
static void test_small(void)
{
    td_daemon d;
    const char *args[] = {"--threads", "1", NULL};
    td_start(&F, &d, "small", args);
    td_conn c;
    REQUIRE(td_open(&c, d.sock));
    bs_response r;
    REQUIRE(td_call(&c, &r, "{\"id\":\"t\",\"op\":\"generate\",\"prompt\":\"x\",\"temperature\":1e300}") == 1);
    CHECKF(r.kind == BS_RESP_ERROR && r.code == BS_PERR_BAD_REQUEST, "temperature 1e300: %s", r.code_name);
    bs_response_free(&r);
    REQUIRE(td_call(&c, &r, "{\"id\":\"p\",\"op\":\"generate\",\"prompt\":\"x\",\"top_p\":5e-324}") == 1);
    CHECKF(r.kind == BS_RESP_ERROR && r.code == BS_PERR_BAD_REQUEST, "top_p 5e-324: %s", r.code_name);
    bs_response_free(&r);
    char line[256];
    snprintf(line, sizeof line, "{\"id\":\"%065d\",\"op\":\"status\"}", 0);
    REQUIRE(td_call(&c, &r, line) == 1);
    CHECK(r.kind == BS_RESP_ERROR && r.message && !strstr(r.message, "id: id:"));
    bs_response_free(&r);

    /* one long streamed request, cancelled twice: one cancelled answer, then not_found */
    REQUIRE(td_sendf(&c, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000,\"stream\":true}"));
    REQUIRE(td_recv(&c, &r) == 1);   /* its first token: it runs */
    bs_response_free(&r);
    REQUIRE(td_sendf(&c, "{\"id\":\"c1\",\"op\":\"cancel\",\"target\":\"g\"}"));
    REQUIRE(td_sendf(&c, "{\"id\":\"c2\",\"op\":\"cancel\",\"target\":\"g\"}"));
    int ok = 0, not_found = 0;
    bool done = false;
    while (!(done && ok + not_found == 2)) {
        REQUIRE(td_recv(&c, &r) == 1);
        if (td_id_is(&r, "\"c1\"") || td_id_is(&r, "\"c2\"")) {
            ok += r.kind == BS_RESP_RESULT;
            not_found += r.kind == BS_RESP_ERROR && r.code == BS_PERR_NOT_FOUND;
        }
        done |= td_id_is(&r, "\"g\"") && (r.kind == BS_RESP_DONE || r.kind == BS_RESP_ERROR);
        bs_response_free(&r);
    }
    CHECKF(ok == 1 && not_found == 1, "%d cancelled answers, %d not_found", ok, not_found);
    td_close(&c);
    CHECK(td_daemon_stop(&d));
}

/* One generation as uid 65534 (nobody), in a child: its total_ms through a pipe. */
static pid_t other_user(const char *sock, int max_tokens, int *out_fd)
{
    int p[2];
    if (pipe(p))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        if (setgid(65534) || setuid(65534))
            _exit(3);
        td_conn c;
        if (!td_open(&c, sock))
            _exit(4);
        char line[160];
        snprintf(line, sizeof line, "{\"id\":\"n\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":%d,"
                                    "\"temperature\":0}", max_tokens);
        bs_response r;
        if (td_call(&c, &r, line) != 1 || r.kind != BS_RESP_DONE)
            _exit(5);
        double ms = r.stats.total_ms;
        if (write(p[1], &ms, sizeof ms) != (ssize_t)sizeof ms)
            _exit(6);
        _exit(0);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* Limits per user (SO_PEERCRED uid) and compute shared per user: root made untrusted
 * holds at most 3 connections and 4 requests; its 4 requests and one request of another
 * user share one thread half and half, not four fifths to one fifth. */
static void test_users(void)
{
    td_daemon d;
    const char *args[] = {"--trusted-uids", "", "--max-connections-per-user", "3", "--max-sessions-per-user", "4",
                          "--threads", "1", NULL};
    td_start(&F, &d, "users", args);
    td_sleep_ms(200);
    td_conn c[4];
    bs_response r;
    for (int i = 0; i < 3; i++) {
        REQUIRE(td_open(&c[i], d.sock));
        REQUIRE(td_call(&c[i], &r, "{\"id\":1,\"op\":\"status\"}") == 1);
        bs_response_free(&r);
    }
    REQUIRE(td_open(&c[3], d.sock));
    REQUIRE(td_recv(&c[3], &r) == 1);
    CHECKF(r.kind == BS_RESP_ERROR && r.code == BS_PERR_TOO_MANY_CONNECTIONS && strstr(r.message, "user 0"),
           "4th connection of one user: %s", r.code_name);
    bs_response_free(&r);
    td_close(&c[3]);
    td_close(&c[2]);
    td_close(&c[1]);

    /* the socket is 0660 root: let the other user in; its request alone first */
    REQUIRE(chmod(d.sock, 0666) == 0 && chmod(F.dir, 0711) == 0);
    int fd = -1;
    double alone_ms = -1;
    pid_t pid = other_user(d.sock, 400, &fd);
    REQUIRE(pid > 0);
    REQUIRE(read(fd, &alone_ms, sizeof alone_ms) == (ssize_t)sizeof alone_ms);
    close(fd);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 4; i++)
        REQUIRE(td_sendf(&c[0], "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":400,"
                                "\"temperature\":0}", i));
    REQUIRE(td_sendf(&c[0], "{\"id\":9,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4}"));
    REQUIRE(td_recv(&c[0], &r) == 1);   /* the fifth of one user is refused at once */
    CHECKF(td_id_is(&r, "9") && r.kind == BS_RESP_ERROR && r.code == BS_PERR_TOO_MANY_SESSIONS, "5th request: %s",
           r.code_name);
    bs_response_free(&r);
    pid = other_user(d.sock, 400, &fd);
    REQUIRE(pid > 0);
    double root_max = 0;
    for (int i = 0; i < 4; i++) {
        REQUIRE(td_recv(&c[0], &r) == 1);
        CHECK(r.kind == BS_RESP_DONE);
        if (r.stats.total_ms > root_max)
            root_max = r.stats.total_ms;
        bs_response_free(&r);
    }
    double other_ms = -1;
    ssize_t got = read(fd, &other_ms, sizeof other_ms);
    close(fd);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECKF(got == (ssize_t)sizeof other_ms && WIFEXITED(st) && WEXITSTATUS(st) == 0, "other user: exit %d",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    fprintf(stderr, "users: other alone %.0f ms, beside root's four %.0f ms (root's longest %.0f ms)\n", alone_ms,
            other_ms, root_max);
    /* the exact share is test_sched's (deterministic); here, on a real daemon whose
     * timing the machine's load moves, only that the other user is not starved */
    CHECKF(other_ms > 0 && other_ms < 10.0 * alone_ms, "other user's request %.0f ms beside root's, %.0f ms alone",
           other_ms, alone_ms);
    td_close(&c[0]);
    CHECK(td_daemon_stop(&d));
}

/* Clients that do not read: what their output holds in the daemon is counted (buffers,
 * not only lines), stays within twice --max-output per connection, and is given back
 * when they leave. */
static void test_output_held(void)
{
    td_daemon d;
    const char *args[] = {"--max-output", "1048576", "--max-sessions", "64", "--max-sessions-per-conn", "8", NULL};
    td_start(&F, &d, "held", args);
    enum { CONNS = 6, EACH = 8 };
    td_conn c[CONNS];
    for (int i = 0; i < CONNS; i++) {
        REQUIRE(td_open(&c[i], d.sock));
        for (int j = 0; j < EACH; j++)
            REQUIRE(td_sendf(&c[i], "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000,"
                                    "\"stream\":true}", j));
    }
    /* until every session ended (or its connection was dropped): nobody reads */
    double end = td_now_ms() + 60000;
    long long held_max = 0;
    while (td_now_ms() < end) {
        long long held = td_metric(d.sock, "output_bytes_held");
        if (held > held_max)
            held_max = held;
        if (td_status_int(d.sock, "sessions") == 0)
            break;
        td_sleep_ms(50);
    }
    long long dropped = td_metric(d.sock, "connections_dropped");
    fprintf(stderr, "output held: at most %lld bytes over %d connections; %lld dropped\n", held_max, CONNS, dropped);
    CHECKF(held_max > 0 && held_max <= (long long)CONNS * 2 * (1 << 20), "held %lld", held_max);
    for (int i = 0; i < CONNS; i++)
        td_close(&c[i]);
    CHECK(td_wait_status(d.sock, "connections", 1));   /* the asking one */
    CHECK(td_metric(d.sock, "output_bytes_held") == 0);
    CHECK(td_daemon_stop(&d));
}

int main(int argc, char **argv)
{
    td_fixture_init(&F, argc, argv, bs_shared(""));
    test_small();
    test_vanished();
    test_idle();
    test_refusal_log();
    test_emfile();
    test_users();
    test_output_held();
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
