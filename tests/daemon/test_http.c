/* bitstackd's HTTP front end against bad clients, over raw sockets (TCP with --listen, and
 * the Unix socket): bad request lines, binary garbage, huge headers, bodies over the limit
 * (sized and chunked), wrong content types and methods, bad JSON, slowloris-style partial
 * requests and trickles under a short --idle-timeout, a client that never speaks. Each gets
 * a 4xx (505 for an unknown HTTP version) or a closed connection, the daemon keeps
 * answering, and it exits 0 at the end (under ASan: without leaks).
 *
 * Then who may connect: --listen on a non-loopback address without a key is refused; with
 * --api-key-file, TCP requests without or with a wrong Bearer get 401 and with the right
 * one 200, while the Unix socket needs none. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "harness.h"
#include "tests/daemon/client.h"

#define IDLE_S 2
#define KEY "test-key-0123456789abcdef"

static td_fixture F;

/* A loopback port nobody listens on now (bind to 0, read it, close). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    REQUIRE(fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &l));
    close(fd);
    return ntohs(a.sin_port);
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* port > 0: TCP to that port; else the Unix socket sock. */
static int open_to(int port, const char *sock)
{
    return port > 0 ? tcp_connect(port) : td_connect(sock);
}

/* Sends all it can (the daemon may close first: not an error here). */
static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

typedef struct {
    int status;          /* the response's status; 0 closed without one; -1 no answer in time */
    char body[4096];     /* the first bytes of the body */
} answer;

/* Reads one response: until the connection closes or the body (Content-Length) is whole. */
static answer read_answer(int fd, int ms)
{
    answer a = {.status = -1};
    static char buf[1 << 16];
    size_t len = 0;
    double end = td_now_ms() + ms;
    for (;;) {
        char *hend = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
        if (hend) {
            buf[len < sizeof buf ? len : sizeof buf - 1] = '\0';
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t want = cl && cl < hend ? strtoul(cl + 17, NULL, 10) : 0;
            size_t have = len - (size_t)(hend + 4 - buf);
            if ((cl && cl < hend && have >= want) || len >= sizeof buf - 1)
                break;
        }
        int left = (int)(end - td_now_ms());
        if (left <= 0)
            return a;   /* a hang */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;   /* closed (or reset) */
        len += (size_t)n;
    }
    buf[len < sizeof buf ? len : sizeof buf - 1] = 0;
    a.status = 0;
    if (len > 12 && !strncmp(buf, "HTTP/1.", 7))
        a.status = atoi(buf + 9);
    const char *b = strstr(buf, "\r\n\r\n");
    if (b)
        snprintf(a.body, sizeof a.body, "%s", b + 4);
    return a;
}

/* One request on a fresh connection; the answer. */
static answer exchange(int port, const char *sock, const char *req, size_t n)
{
    int fd = open_to(port, sock);
    REQUIRE(fd >= 0);
    send_all(fd, req, n);
    answer a = read_answer(fd, 30000);
    close(fd);
    return a;
}

#define X(port, sock, s) exchange(port, sock, s, strlen(s))

/* A malformed request: a 4xx, a 505, or a close; never silence, never a 2xx. */
static void expect_refused(int port, const char *sock, const char *what, const char *req, size_t n)
{
    answer a = exchange(port, sock, req, n);
    CHECKF(a.status == 0 || (a.status >= 400 && a.status < 500) || a.status == 505, "%s (%s): status %d", what,
           port > 0 ? "tcp" : "unix", a.status);
}

static bool healthy(int port, const char *sock)
{
    answer a = X(port, sock, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return a.status == 200 && strstr(a.body, "\"ok\"");
}

static void test_malformed(int port, const char *sock)
{
    static const struct { const char *what, *req; } bad[] = {
        {"garbage line", "GARBAGE\r\n\r\n"},
        {"method only", "GET\r\n\r\n"},
        {"HTTP/9.9", "GET / HTTP/9.9\r\nHost: x\r\n\r\n"},
        {"control byte in method", "G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"header without colon", "GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"},
        {"bad content-length", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"},
        {"bad chunk size", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"},
        {"unknown path", "GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"traversal", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"wrong method", "DELETE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"GET on a POST endpoint", "GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"text/plain body", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 14\r\n\r\n{\"prompt\":\"x\"}"},
        {"form body", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"},
        {"bad JSON", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 7\r\n\r\n{\"pro\":"},
        {"JSON not an object", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 3\r\n\r\n[1]"},
        {"empty body", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 0\r\n\r\n"},
        {"budget nonsense", "POST /v1/bitstack/budget HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            "Content-Length: 19\r\n\r\n{\"budget\":\"lots!\"}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_refused(port, sock, bad[i].what, bad[i].req, strlen(bad[i].req));
    /* the statuses that say what was wrong */
    CHECK(X(port, sock, bad[9].req).status == 405);
    CHECK(X(port, sock, bad[11].req).status == 415);
    answer a = X(port, sock, bad[13].req);
    CHECKF(a.status == 400 && strstr(a.body, "\"error\":{\"message\""), "bad JSON: %d %s", a.status, a.body);
    CHECK(X(port, sock, bad[7].req).status == 404);

    /* binary garbage with NULs */
    char bin[512];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (char)(i * 37 + 11);
    bin[0] = '\0';
    expect_refused(port, sock, "binary", bin, sizeof bin);
    bin[0] = '\x80';
    expect_refused(port, sock, "binary 2", bin, sizeof bin);

    /* a URL of 100 KiB, headers of 200 KiB (one and many) */
    size_t big = 300 * 1024;
    char *r = malloc(big);
    REQUIRE(r);
    int n = snprintf(r, big, "GET /");
    memset(r + n, 'a', 100 * 1024);
    n += 100 * 1024;
    n += snprintf(r + n, big - (size_t)n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refused(port, sock, "huge URL", r, (size_t)n);
    n = snprintf(r, big, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(r + n, 'b', 200 * 1024);
    n += 200 * 1024;
    n += snprintf(r + n, big - (size_t)n, "\r\n\r\n");
    expect_refused(port, sock, "huge header", r, (size_t)n);
    n = snprintf(r, big, "GET /health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 4000; i++)
        n += snprintf(r + n, big - (size_t)n, "X-H%d: %040d\r\n", i, i);
    n += snprintf(r + n, big - (size_t)n, "\r\n");
    expect_refused(port, sock, "many headers", r, (size_t)n);

    /* bodies over the limit (64 KiB): announced, and chunked without a length */
    size_t body = 100 * 1024;
    n = snprintf(r, big, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n", body);
    memset(r + n, ' ', body);
    a = exchange(port, sock, r, (size_t)n + body);
    CHECKF(a.status == 413, "sized body over the limit: %d", a.status);
    n = snprintf(r, big, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 25; i++) {
        n += snprintf(r + n, big - (size_t)n, "1000\r\n");
        memset(r + n, ' ', 4096);
        n += 4096;
        n += snprintf(r + n, big - (size_t)n, "\r\n");
    }
    n += snprintf(r + n, big - (size_t)n, "0\r\n\r\n");
    a = exchange(port, sock, r, (size_t)n);
    CHECKF(a.status == 413 || a.status == 0, "chunked body over the limit: %d", a.status);
    free(r);

    /* a good request on the same kind of connection still works, keep-alive included */
    int fd = open_to(port, sock);
    REQUIRE(fd >= 0);
    const char *ok = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 32\r\n\r\n{\"prompt\":\"Once\",\"max_tokens\":3}";
    for (int i = 0; i < 2; i++) {
        send_all(fd, ok, strlen(ok));
        a = read_answer(fd, 30000);
        CHECKF(a.status == 200 && strstr(a.body, "\"text_completion\""), "good request %d: %d %s", i, a.status, a.body);
    }
    close(fd);
    CHECK(healthy(port, sock));
}

/* Partial requests that stall or trickle slower than the idle timeout are closed, and
 * meanwhile others are served. */
static void test_slowloris(int port, const char *sock)
{
    enum { N = 6 };
    int fd[N];
    for (int i = 0; i < N; i++) {
        fd[i] = open_to(i % 2 || i == 4 ? port : 0, sock);
        REQUIRE(fd[i] >= 0);
    }
    /* 0, 2 on the Unix socket, 1, 3, 4, 5 on TCP. 0, 1: stalled in the request line; 2, 3:
     * in the headers or body; 4: says nothing at all (TCP is HTTP only, so the idle timeout
     * applies; a silent Unix client may be a JSON-lines one and is left alone); 5: trickles
     * a header byte every 3 s, slower than the idle timeout */
    send_all(fd[0], "GET /hea", 8);
    send_all(fd[1], "POST /v1/completions HTTP/1.1\r\nHost", 35);
    send_all(fd[2], "GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1", 37);
    send_all(fd[3], "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                    "Content-Type: application/json\r\n\r\n{\"pro", 100);
    send_all(fd[5], "GET /health HTTP/1.1\r\nX", 23);
    CHECK(healthy(port, sock) && healthy(0, sock));
    bool closed[N] = {0};
    double start = td_now_ms(), end = start + 60000;
    int left = N;
    double next_trickle = td_now_ms() + 3000;
    while (left && td_now_ms() < end) {
        if (td_now_ms() >= next_trickle && !closed[5]) {
            send_all(fd[5], "-", 1);
            next_trickle += 3000;
        }
        for (int i = 0; i < N; i++) {
            if (closed[i])
                continue;
            struct pollfd p = {fd[i], POLLIN, 0};
            if (poll(&p, 1, 0) == 1) {
                char b[512];
                ssize_t n = recv(fd[i], b, sizeof b, MSG_DONTWAIT);
                if (n <= 0 || (n > 9 && !strncmp(b, "HTTP/1.1 4", 10))) {
                    /* closed, or told off with a 4xx (408) before the close */
                    closed[i] = true;
                    left--;
                    fprintf(stderr, "slow client %d closed after %.1f s\n", i, (td_now_ms() - start) / 1e3);
                }
            }
        }
        td_sleep_ms(50);
    }
    for (int i = 0; i < N; i++) {
        CHECKF(closed[i], "slow client %d still open after %.0f s (idle timeout %d s)", i, (td_now_ms() - start) / 1e3,
               IDLE_S);
        close(fd[i]);
    }
    CHECK(healthy(port, sock));
}

/* A daemon whose start must fail: its exit code is not 0 and the log says why. */
static void expect_refused_start(const char *name, const char *const *extra, const char *why)
{
    td_daemon d;
    char log[256], sock[256];
    snprintf(log, sizeof log, "%s/%s.log", F.dir, name);
    snprintf(sock, sizeof sock, "%s/%s.sock", F.dir, name);
    const char *args[16] = {"--store", F.store, "--socket", sock};
    int n = 4;
    for (int i = 0; extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    td_daemon_spawn(&d, F.daemon, args, log, NULL, NULL);
    bool exited = td_daemon_wait(&d, TD_TIMEOUT_MS);
    CHECKF(exited && WIFEXITED(d.status) && WEXITSTATUS(d.status) != 0, "%s: started anyway", name);
    CHECKF(td_log_has(log, why), "%s: no '%s' in its log", name, why);
    if (!exited) {
        kill(d.pid, SIGKILL);
        td_daemon_wait(&d, TD_TIMEOUT_MS);
    }
}

static void test_auth(void)
{
    char listen[64], keyfile[256], shortkey[256];
    /* no key: only loopback */
    snprintf(listen, sizeof listen, "0.0.0.0:%d", free_port());
    expect_refused_start("noloop", (const char *const[]){"--listen", listen, NULL}, "not a loopback address");
    expect_refused_start("noloop6", (const char *const[]){"--listen", "[::]:1", NULL}, "not a loopback address");
    snprintf(shortkey, sizeof shortkey, "%s/short.key", F.dir);
    FILE *f = fopen(shortkey, "w");
    REQUIRE(f);
    fputs("tooshort\n", f);
    fclose(f);
    expect_refused_start("shortkey", (const char *const[]){"--listen", listen, "--api-key-file", shortkey, NULL},
                         "at least 16 characters");

    /* with a key: on all addresses (reached here by loopback only) */
    snprintf(keyfile, sizeof keyfile, "%s/api.key", F.dir);
    f = fopen(keyfile, "w");
    REQUIRE(f);
    fputs("  " KEY "  \nsecond line ignored\n", f);
    fclose(f);
    td_daemon d;
    int port = free_port();
    snprintf(listen, sizeof listen, "0.0.0.0:%d", port);
    td_start(&F, &d, "auth", (const char *const[]){"--listen", listen, "--api-key-file", keyfile, NULL});
    static const char *const reqs[] = {
        "GET /v1/models HTTP/1.1\r\nHost: x\r\n%s\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n%s\r\n",
        "POST /v1/bitstack/budget HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
        "Content-Length: 16\r\n\r\n{\"budget\":\"50%%\"}",
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
        "Content-Length: 32\r\n\r\n{\"prompt\":\"Once\",\"max_tokens\":3}",
    };
    static const char *const auths[] = {"", "Authorization: Bearer wrong-key-0123456789abcdef\r\n",
                                        "Authorization: Bearer " KEY "x\r\n", "Authorization: Bearer test\r\n",
                                        "Authorization: Basic dGVzdDp0ZXN0\r\n", "Authorization: " KEY "\r\n"};
    char req[1024];
    for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
        for (size_t k = 0; k < sizeof auths / sizeof *auths; k++) {
            snprintf(req, sizeof req, reqs[i], auths[k]);
            answer a = X(port, NULL, req);
            CHECKF(a.status == 401 && strstr(a.body, "invalid_api_key"), "request %zu auth %zu over TCP: %d %s", i, k,
                   a.status, a.body);
        }
        snprintf(req, sizeof req, reqs[i], "Authorization: Bearer " KEY "\r\n");
        answer a = X(port, NULL, req);
        CHECKF(a.status == 200, "request %zu with the key over TCP: %d %s", i, a.status, a.body);
        snprintf(req, sizeof req, reqs[i], "");
        a = X(0, d.sock, req);
        CHECKF(a.status == 200, "request %zu on the Unix socket without a key: %d %s", i, a.status, a.body);
    }
    /* the page and /health need no key: they tell nothing and cost nothing */
    CHECK(X(port, NULL, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status == 200);
    CHECK(X(port, NULL, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 200);
    CHECK(td_daemon_stop(&d));
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    td_fixture_init(&F, argc, argv, bs_shared(""));
    td_daemon d;
    int port = free_port();
    char listen[64], idle[16];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(idle, sizeof idle, "%d", IDLE_S);
    td_start(&F, &d, "bad", (const char *const[]){"--listen", listen, "--idle-timeout", idle, NULL});
    /* the TCP port is up once the Unix socket is (both before the loop runs) */
    test_malformed(port, NULL);
    test_malformed(0, d.sock);
    test_slowloris(port, d.sock);
    CHECK(!td_daemon_exited(&d));
    CHECK(td_daemon_stop(&d));
    test_auth();
    td_fixture_free(&F, bs_t_failed != 0);
    TEST_MAIN_END();
}
