/* bitstackd against bad input and bad clients: malformed JSON, unknown ops, wrong types,
 * oversized lines, binary garbage, prompts over the context, the session and connection
 * limits, duplicate ids, clients that disconnect mid-stream, a half-closing one-shot
 * client, and a client that never reads. Each gets an error line or a clean close; the
 * daemon stays healthy throughout and exits 0 (under ASan: without leaks). */
#include "harness.h"
#include "tests/daemon/client.h"

#define BUDGET "40%"
#define MAX_CONNS 8
#define MAX_SESSIONS 20
#define MAX_OUTPUT 65536

static td_fixture F;
static td_daemon D;

/* The daemon still answers a status on a fresh connection (once connections closed
 * by clients have been noticed: until then a new one may be over the limit). */
static bool healthy(void)
{
    return td_wait_status(D.sock, "connections", 1) && td_status_int(D.sock, "stack_total") > 0;
}


/* Sends line and expects one error with code (and the id as JSON text, or NULL for null). */
static void expect_error(td_conn *c, const char *line, size_t len, bs_proto_code code, const char *id)
{
    REQUIRE(td_write(c, line, len) && td_write(c, "\n", 1));
    bs_response r;
    REQUIRE(td_recv(c, &r) == 1);
    CHECKF(r.kind == BS_RESP_ERROR && r.code == code, "line %.60s: got kind %d code %s", line, (int)r.kind,
           r.code_name);
    if (id)
        CHECKF(td_id_is(&r, id), "line %.60s: id %.*s, expected %s", line, (int)r.id.len, r.id.json, id);
    else
        CHECK(r.id.len == 0);
    CHECK(r.message && r.message[0]);
    bs_response_free(&r);
}

static void expect_status_ok(td_conn *c)
{
    bs_response r;
    REQUIRE(td_call(c, &r, "{\"id\":\"ok\",\"op\":\"status\"}") == 1);
    CHECK(r.kind == BS_RESP_RESULT && td_id_is(&r, "\"ok\""));
    bs_response_free(&r);
}

#define E(c, s, code, id) expect_error(c, s, strlen(s), code, id)

static void test_malformed(void)
{
    td_conn c;
    REQUIRE(td_open(&c, D.sock));
    E(&c, "{\"id\":1,\"op\":", BS_PERR_BAD_JSON, NULL);
    E(&c, "not json at all", BS_PERR_BAD_JSON, NULL);
    E(&c, "{\"id\":1,\"op\":\"status\"} trailing", BS_PERR_BAD_JSON, NULL);
    E(&c, "{\"id\":1,\"id\":2,\"op\":\"status\"}", BS_PERR_BAD_JSON, NULL);
    E(&c, "[1]", BS_PERR_BAD_REQUEST, NULL);
    E(&c, "42", BS_PERR_BAD_REQUEST, NULL);
    E(&c, "{\"op\":\"status\"}", BS_PERR_BAD_REQUEST, NULL);
    E(&c, "{\"id\":{},\"op\":\"status\"}", BS_PERR_BAD_REQUEST, NULL);
    E(&c, "{\"id\":1.5,\"op\":\"status\"}", BS_PERR_BAD_REQUEST, NULL);
    E(&c, "{\"id\":7}", BS_PERR_BAD_REQUEST, "7");
    E(&c, "{\"id\":3,\"op\":\"fly\"}", BS_PERR_UNKNOWN_OP, "3");
    E(&c, "{\"id\":3,\"op\":\"STATUS\"}", BS_PERR_UNKNOWN_OP, "3");
    E(&c, "{\"id\":3,\"op\":17}", BS_PERR_BAD_REQUEST, "3");
    /* wrong types and ranges of generate's fields */
    E(&c, "{\"id\":\"w\",\"op\":\"generate\"}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":5}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":\"many\"}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":0}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":100000}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"temperature\":-1}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"top_p\":1.5}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"stream\":\"yes\"}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"seed\":\"s\"}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"stop\":[1]}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"w\",\"op\":\"generate\",\"prompt\":\"x\",\"stop\":\"\"}", BS_PERR_BAD_REQUEST, "\"w\"");
    E(&c, "{\"id\":\"h\",\"op\":\"chat\",\"messages\":[]}", BS_PERR_BAD_REQUEST, "\"h\"");
    E(&c, "{\"id\":\"h\",\"op\":\"chat\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", BS_PERR_BAD_REQUEST, "\"h\"");
    E(&c, "{\"id\":\"h\",\"op\":\"chat\",\"messages\":\"hi\"}", BS_PERR_BAD_REQUEST, "\"h\"");
    E(&c, "{\"id\":\"k\",\"op\":\"cancel\"}", BS_PERR_BAD_REQUEST, "\"k\"");
    E(&c, "{\"id\":\"k\",\"op\":\"cancel\",\"target\":[]}", BS_PERR_BAD_REQUEST, "\"k\"");
    /* NUL bytes and ill-formed UTF-8 inside a line */
    expect_error(&c, "{\"id\":1,\0\"op\":\"status\"}", 23, BS_PERR_BAD_JSON, NULL);
    E(&c, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"\xff\xfe\"}", BS_PERR_BAD_JSON, NULL);
    /* unknown fields are ignored; CRLF works */
    bs_response r;
    REQUIRE(td_call(&c, &r, "{\"id\":9,\"op\":\"status\",\"extra\":[1,{\"a\":null}]}\r") == 1);
    CHECK(r.kind == BS_RESP_RESULT && td_id_is(&r, "9"));
    bs_response_free(&r);
    expect_status_ok(&c);
    td_close(&c);
}

static void test_long_lines(void)
{
    td_conn c;
    REQUIRE(td_open(&c, D.sock));
    /* a line just over the limit, then one far over it without a newline for a while */
    size_t n = 65537;
    char *big = malloc(1 << 20);
    memset(big, 'a', 1 << 20);
    big[0] = '{';
    expect_error(&c, big, n, BS_PERR_LINE_TOO_LONG, NULL);
    expect_status_ok(&c);
    /* 1 MiB in pieces: one error as soon as the limit passes, not one per 64 KiB */
    REQUIRE(td_write(&c, big, 1 << 20));
    bs_response r;
    REQUIRE(td_recv(&c, &r) == 1);
    CHECK(r.kind == BS_RESP_ERROR && r.code == BS_PERR_LINE_TOO_LONG && r.id.len == 0);
    bs_response_free(&r);
    REQUIRE(td_write(&c, big, 1 << 19));
    REQUIRE(td_write(&c, "\n", 1));
    expect_status_ok(&c);   /* the next line read is the status: no second error */
    /* a line of exactly the limit is not too long (it is just bad JSON) */
    expect_error(&c, big, 65536, BS_PERR_BAD_JSON, NULL);
    /* a prompt over the byte limit, in a line under the line limit */
    char *line = malloc(40000);
    int k = snprintf(line, 40000, "{\"id\":\"p\",\"op\":\"generate\",\"prompt\":\"");
    memset(line + k, 'x', 33000);
    snprintf(line + k + 33000, 40000 - (size_t)k - 33000, "\"}");
    E(&c, line, BS_PERR_PROMPT_TOO_LONG, "\"p\"");
    /* a prompt under the byte limit but over the context in tokens */
    k = snprintf(line, 40000, "{\"id\":\"t\",\"op\":\"generate\",\"prompt\":\"");
    for (int i = 0; i < 300; i++)
        k += snprintf(line + k, 40000 - (size_t)k, "Once upon a time ");
    snprintf(line + k, 40000 - (size_t)k, "\"}");
    E(&c, line, BS_PERR_PROMPT_TOO_LONG, "\"t\"");
    free(line);
    free(big);
    expect_status_ok(&c);
    td_close(&c);
}

/* Random bytes: every line with content gets exactly one error; a status still works.
 * (The connection opens with a request: a first byte other than `{` means HTTP.) */
static void test_garbage(void)
{
    td_conn c;
    REQUIRE(td_open(&c, D.sock));
    expect_status_ok(&c);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    enum { LINES = 200 };
    size_t cap = LINES * 300, n = 0;
    char *buf = malloc(cap);
    for (int l = 0; l < LINES; l++) {
        buf[n++] = (char)0xff;   /* never blank: each line must be answered */
        int len = (int)(x % 250);
        for (int i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            char b = (char)(x & 0xff);
            buf[n++] = b == '\n' ? 0 : b;
        }
        buf[n++] = '\n';
    }
    REQUIRE(td_write(&c, buf, n));
    REQUIRE(td_write(&c, "{\"id\":\"end\",\"op\":\"status\"}\n", 27));
    int errors = 0;
    for (;;) {
        bs_response r;
        REQUIRE(td_recv(&c, &r) == 1);
        bool end = td_id_is(&r, "\"end\"");
        if (!end)
            errors += r.kind == BS_RESP_ERROR && r.id.len == 0 && r.code == BS_PERR_BAD_JSON;
        bs_response_free(&r);
        if (end)
            break;
    }
    CHECKF(errors == LINES, "%d errors for %d garbage lines", errors, LINES);
    free(buf);
    td_close(&c);
    CHECK(healthy());
}

static void test_limits(void)
{
    /* all sent before anything is read, so no request can end meanwhile (batched decoding
     * runs these in a fraction of a second): 16 per connection, the 17th refused; over the
     * whole daemon (20) b gets 4 and its 5th is refused; an id in flight cannot be reused */
    td_conn a, b;
    REQUIRE(td_open(&a, D.sock) && td_open(&b, D.sock));
    for (int i = 0; i < 17; i++)
        REQUIRE(td_sendf(&a, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":4000}", i));
    for (int i = 0; i < 5; i++)
        REQUIRE(td_sendf(&b, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":4000}", i));
    REQUIRE(td_sendf(&b, "{\"id\":2,\"op\":\"generate\",\"prompt\":\"x\"}"));
    bs_response r;
    REQUIRE(td_until_final(&a, "16", &r, NULL, NULL) == 1);
    CHECK(r.kind == BS_RESP_ERROR && r.code == BS_PERR_TOO_MANY_SESSIONS);
    bs_response_free(&r);
    REQUIRE(td_until_final(&b, "4", &r, NULL, NULL) == 1);
    CHECK(r.kind == BS_RESP_ERROR && r.code == BS_PERR_TOO_MANY_SESSIONS);
    CHECK(r.message && strstr(r.message, "daemon"));
    bs_response_free(&r);
    REQUIRE(td_until_final(&b, "2", &r, NULL, NULL) == 1);   /* the duplicate's answer comes first */
    CHECK(r.kind == BS_RESP_ERROR && r.code == BS_PERR_BAD_REQUEST);
    bs_response_free(&r);
    /* a cancel: the request ends cancelled (or, on a fast machine, had already ended) */
    REQUIRE(td_sendf(&b, "{\"id\":\"k\",\"op\":\"cancel\",\"target\":0}"));
    REQUIRE(td_until_final(&b, "\"k\"", &r, NULL, NULL) == 1);
    bool found = r.kind == BS_RESP_RESULT;
    CHECK(found || (r.kind == BS_RESP_ERROR && r.code == BS_PERR_NOT_FOUND));
    bs_response_free(&r);
    if (found) {
        REQUIRE(td_until_final(&b, "0", &r, NULL, NULL) == 1);
        CHECK((r.kind == BS_RESP_DONE && r.stats.finish_reason == BS_FINISH_CANCELLED) ||
              (r.kind == BS_RESP_ERROR && r.code == BS_PERR_CANCELLED));
        bs_response_free(&r);
    }
    /* at most 19 open (fewer once some ran to the end of the context) */
    long long open_now = td_status_int(D.sock, "sessions");
    CHECKF(open_now >= 0 && open_now <= MAX_SESSIONS - 1, "%lld sessions open", open_now);
    long long cancelled = td_metric(D.sock, "sessions_cancelled");
    /* closing both connections (without reading) cancels and frees what is open */
    td_close(&a);
    td_close(&b);
    CHECK(td_wait_status(D.sock, "sessions", 0));
    CHECK(td_metric(D.sock, "sessions_cancelled") >= cancelled + open_now - 2);

    /* connections: MAX_CONNS at once; one more gets one error line and a close */
    td_conn cs[MAX_CONNS + 1];
    for (int i = 0; i < MAX_CONNS; i++) {
        REQUIRE(td_open(&cs[i], D.sock));
        expect_status_ok(&cs[i]);   /* surely accepted and counted */
    }
    REQUIRE(td_open(&cs[MAX_CONNS], D.sock));
    REQUIRE(td_recv(&cs[MAX_CONNS], &r) == 1);
    CHECK(r.kind == BS_RESP_ERROR && r.code == BS_PERR_TOO_MANY_CONNECTIONS && r.id.len == 0);
    bs_response_free(&r);
    size_t n;
    CHECK(td_readline(&cs[MAX_CONNS], TD_TIMEOUT_MS, &n) == 0);   /* then EOF */
    td_close(&cs[MAX_CONNS]);
    td_close(&cs[0]);
    td_close(&cs[1]);
    /* the freed places are usable again (wait until the daemon saw the closes) */
    CHECK(td_wait_status(D.sock, "connections", MAX_CONNS - 1));
    expect_status_ok(&cs[2]);
    for (int i = 2; i < MAX_CONNS; i++)
        td_close(&cs[i]);
    CHECK(td_metric(D.sock, "connections_rejected") >= 1);
}

static void test_disconnects(void)
{
    /* mid-stream: the session is cancelled and freed, the daemon carries on */
    td_conn c;
    REQUIRE(td_open(&c, D.sock));
    REQUIRE(td_sendf(&c, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000,\"stream\":true}"));
    bs_response r;
    REQUIRE(td_recv(&c, &r) == 1);
    CHECK(r.kind == BS_RESP_TOKEN);
    bs_response_free(&r);
    long long cancelled = td_metric(D.sock, "sessions_cancelled");
    td_close(&c);
    CHECK(td_wait_status(D.sock, "sessions", 0));
    CHECK(td_metric(D.sock, "sessions_cancelled") == cancelled + 1);

    /* requests that have not written anything yet: also cancelled, not run to the end */
    REQUIRE(td_open(&c, D.sock));
    for (int i = 0; i < 3; i++)
        REQUIRE(td_sendf(&c, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000}", i));
    CHECK(td_wait_status(D.sock, "sessions", 3));
    td_close(&c);
    CHECK(td_wait_status(D.sock, "sessions", 0));
    CHECK(td_metric(D.sock, "sessions_cancelled") == cancelled + 4);

    /* half close (socat one-shot): the answer still comes, then the daemon closes; the
     * last line may lack its newline */
    REQUIRE(td_open(&c, D.sock));
    const char *last = "{\"id\":\"o\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4}";
    REQUIRE(td_write(&c, last, strlen(last)));
    shutdown(c.fd, SHUT_WR);
    REQUIRE(td_recv(&c, &r) == 1);
    CHECK(r.kind == BS_RESP_DONE && td_id_is(&r, "\"o\"") && r.stats.generated_tokens >= 1);
    bs_response_free(&r);
    size_t n;
    CHECK(td_readline(&c, TD_TIMEOUT_MS, &n) == 0);
    td_close(&c);

    /* connect and close at once, many times */
    for (int i = 0; i < 50; i++) {
        int fd = td_connect(D.sock);
        REQUIRE(fd >= 0);
        if (i % 2)
            send(fd, "{\"id\":1,\"op\":\"gen", 17, MSG_NOSIGNAL);
        close(fd);
    }
    CHECK(healthy());
}

/* A client that never reads is dropped once its output passes the bound; its sessions
 * are freed; a client beside it is served meanwhile. */
static void test_slow_reader(void)
{
    td_conn other, slow;
    REQUIRE(td_open(&other, D.sock));
    REQUIRE(td_open(&slow, D.sock));
    /* a small receive buffer on the slow side so the bound is reached sooner */
    int rcv = 4096;
    setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    long long dropped = td_metric(D.sock, "connections_dropped");
    for (int i = 0; i < 16; i++)
        REQUIRE(td_sendf(&slow, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":4000,\"stream\":true}", i));
    /* and a flood of requests whose answers it will not read either */
    char line[64];
    int len = snprintf(line, sizeof line, "{\"id\":\"s\",\"op\":\"status\"}\n");
    for (int i = 0; i < 4000; i++)
        if (send(slow.fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            break;   /* the daemon stopped reading: it dropped us */
    /* the other client is served while the slow one is stuck */
    bs_response r;
    REQUIRE(td_sendf(&other, "{\"id\":\"o\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":8,\"temperature\":0}"));
    REQUIRE(td_recv(&other, &r) == 1);
    CHECK(r.kind == BS_RESP_DONE && r.stats.generated_tokens == 8);
    bs_response_free(&r);
    /* dropped: counted, its sessions gone */
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (td_metric(D.sock, "connections_dropped") <= dropped && td_now_ms() < end)
        td_sleep_ms(20);
    CHECK(td_metric(D.sock, "connections_dropped") == dropped + 1);
    CHECK(td_metric(D.sock, "bytes_dropped") > 0);
    CHECK(td_wait_status(D.sock, "sessions", 0));
    /* what the slow client finds when it finally reads: lines, then the end */
    int lines = 0, rc;
    size_t n;
    while ((rc = td_readline(&slow, TD_TIMEOUT_MS, &n)) == 1)
        lines++;
    CHECK(rc == 0);
    CHECK(lines > 0);
    td_close(&slow);
    expect_status_ok(&other);
    td_close(&other);
}

int main(int argc, char **argv)
{
    td_fixture_init(&F, argc, argv, bs_shared(""));
    char conns[16], sessions[16], out[16];
    snprintf(conns, sizeof conns, "%d", MAX_CONNS);
    snprintf(sessions, sizeof sessions, "%d", MAX_SESSIONS);
    snprintf(out, sizeof out, "%d", MAX_OUTPUT);
    const char *args[] = {"--budget", BUDGET, "--threads", "2", "--max-connections", conns, "--max-sessions",
                          sessions, "--max-output", out, NULL};
    td_start(&F, &D, "bad", args);

    test_malformed();
    test_long_lines();
    test_garbage();
    test_limits();
    test_disconnects();
    test_slow_reader();

    CHECK(healthy());
    CHECK(td_daemon_stop(&D));
    if (bs_t_failed)
        td_dump_log(D.log);
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
