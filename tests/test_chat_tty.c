/* `bitstackctl chat` on a real pseudo-terminal (forkpty) against the real bitstackd:
 *  - Ctrl-C during a long reply stops it: the prompt comes back, the daemon counts the
 *    session cancelled while chat's connection stays open (the cancel op, not a hang-up),
 *    and the next question is answered whole;
 *  - Up recalls the previous line (libedit), and the history is in
 *    $XDG_STATE_HOME/bitstack/chat_history for the next session, where Up Up recalls the
 *    line before;
 *  - Ctrl-C at an empty prompt warns, a second quits with exit 0; two Ctrl-Cs during a
 *    reply quit with exit 0; Ctrl-C with text typed (UTF-8 too) drops the line unsent;
 *    Ctrl-D at an empty prompt quits with exit 0;
 *  - from a pipe: no prompt and no terminal escapes on stdout, no history written.
 * The daemon runs the portable kernels on one thread so that a greedy reply to the end of
 * the context lasts a second or more: time enough to press Ctrl-C in the middle of it.
 *
 * Usage: test_chat_tty BITSTACKD BITSTACKCTL */
#include <pty.h>
#include <sys/ioctl.h>

#include "tests/daemon/client.h"
#include "tests/harness.h"

/* Greedy, this question's answer runs to the end of the context (about 480 tokens). */
#define LONG_QUESTION "What did the dog do?"
#define SHORT_QUESTION "Hello"

static td_fixture F;
static td_daemon D;

/* ---- one chat on a pseudo-terminal ------------------------------------------------- */

typedef struct {
    pid_t pid;
    int fd;             /* the terminal's master side */
    char *out;          /* everything chat wrote, NUL-terminated */
    size_t len, cap;
    size_t mark;        /* where the next expect starts looking */
    bool eof;
    int status;
    bool exited;
} tty_chat;

static void tty_start(tty_chat *t)
{
    memset(t, 0, sizeof *t);
    struct winsize ws = {.ws_row = 24, .ws_col = 100};
    t->pid = forkpty(&t->fd, NULL, NULL, &ws);
    REQUIRE(t->pid >= 0);
    if (t->pid == 0) {
        char state[128], home[128];
        snprintf(state, sizeof state, "%s/state", F.dir);
        snprintf(home, sizeof home, "%s/home", F.dir);
        setenv("TERM", "xterm", 1);
        setenv("XDG_STATE_HOME", state, 1);
        setenv("HOME", home, 1);   /* no ~/.editrc of the person running the tests */
        unsetenv("EDITRC");
        char *argv[] = {(char *)F.ctl, "--socket", D.sock, "chat", "-n", "4000", "--temperature", "0", NULL};
        execv(F.ctl, argv);
        _exit(127);
    }
    td_track(t->pid, true);
    t->cap = 1 << 16;
    t->out = malloc(t->cap);
    REQUIRE(t->out);
    t->out[0] = 0;
}

/* Reads what chat wrote for up to ms (less when it ends). */
static void tty_pump(tty_chat *t, int ms)
{
    double end = td_now_ms() + ms;
    while (!t->eof) {
        int left = (int)(end - td_now_ms());
        if (left < 0)
            return;
        struct pollfd p = {t->fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return;
        if (t->cap - t->len < 4096) {
            t->cap *= 2;
            t->out = realloc(t->out, t->cap);
            REQUIRE(t->out);
        }
        ssize_t n = read(t->fd, t->out + t->len, t->cap - t->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            t->eof = true;  /* EIO: chat exited and the terminal's last user with it */
            return;
        }
        t->len += (size_t)n;
        t->out[t->len] = 0;
    }
}

static void tty_dump(const tty_chat *t)
{
    fprintf(stderr, "---- the terminal so far (%zu bytes; expect looked from %zu) ----\n", t->len, t->mark);
    for (size_t i = 0; i < t->len; i++) {
        unsigned char ch = (unsigned char)t->out[i];
        if (ch == '\n' || (ch >= 32 && ch < 127))
            fputc(ch, stderr);
        else if (ch != '\r')
            fprintf(stderr, "\\x%02x", ch);
    }
    fprintf(stderr, "\n---- end ----\n");
}

/* Waits until s appears after the mark, and moves the mark past it. */
static bool tty_expect(tty_chat *t, const char *s)
{
    double end = td_now_ms() + TD_TIMEOUT_MS;
    for (;;) {
        char *at = strstr(t->out + t->mark, s);
        if (at) {
            t->mark = (size_t)(at - t->out) + strlen(s);
            return true;
        }
        if (t->eof || td_now_ms() > end) {
            fprintf(stderr, "chat never wrote \"%s\"\n", s);
            tty_dump(t);
            return false;
        }
        tty_pump(t, 50);
    }
}

static void tty_send(tty_chat *t, const char *s)
{
    size_t n = strlen(s);
    REQUIRE(write(t->fd, s, n) == (ssize_t)n);
}

static bool tty_alive(tty_chat *t)
{
    if (t->exited)
        return false;
    int st;
    if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
        t->exited = true;
        t->status = st;
        td_track(t->pid, false);
    }
    return !t->exited;
}

/* Waits for chat to exit; true when it did with code 0. */
static bool tty_exits_0(tty_chat *t)
{
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (tty_alive(t) && td_now_ms() < end)
        tty_pump(t, 20);
    if (!t->exited) {
        fprintf(stderr, "chat did not exit\n");
        tty_dump(t);
        return false;
    }
    bool ok = WIFEXITED(t->status) && WEXITSTATUS(t->status) == 0;
    if (!ok) {
        if (WIFSIGNALED(t->status))
            fprintf(stderr, "chat died of signal %d\n", WTERMSIG(t->status));
        else
            fprintf(stderr, "chat exited with code %d\n", WEXITSTATUS(t->status));
        tty_dump(t);
    }
    return ok;
}

static void tty_free(tty_chat *t)
{
    if (tty_alive(t)) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
        td_track(t->pid, false);
    }
    close(t->fd);
    free(t->out);
}

/* Waits until the daemon has a session running and chat has printed part of its reply
 * (more than just the echoed line), so that a Ctrl-C lands in the middle of it. */
static bool reply_under_way(tty_chat *t)
{
    if (!td_wait_status(D.sock, "sessions", 1))
        return false;
    size_t before = t->mark;
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (t->len == before && td_now_ms() < end && !t->eof)
        tty_pump(t, 5);
    return t->len > before && td_status_int(D.sock, "sessions") == 1;
}

/* ---- the checks ------------------------------------------------------------------- */

static bool has_letters(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))
            return true;
    return false;
}

/* Ctrl-C in the middle of a reply, the next question, Up, Ctrl-C twice at the prompt. */
static void test_cancel_and_history(void)
{
    tty_chat t;
    tty_start(&t);
    REQUIRE(tty_expect(&t, "> "));
    long long cancelled0 = td_metric(D.sock, "sessions_cancelled");
    REQUIRE(cancelled0 >= 0);

    tty_send(&t, LONG_QUESTION "\r");
    REQUIRE(tty_expect(&t, LONG_QUESTION "\r\n"));
    REQUIRE(reply_under_way(&t));
    size_t reply_at = t.mark;
    tty_send(&t, "\x03");
    CHECK(tty_expect(&t, "(reply stopped; Ctrl-C again or Ctrl-D quits)"));
    CHECK(tty_expect(&t, "> "));
    CHECKF(has_letters(t.out + reply_at, t.mark - reply_at), "no part of the reply was shown");
    /* the daemon cancelled the session while chat kept its connection: 2 connections,
     * chat's and the one asking */
    CHECK(td_wait_status(D.sock, "sessions", 0));
    CHECKF(td_metric(D.sock, "sessions_cancelled") == cancelled0 + 1, "sessions_cancelled %lld, was %lld",
           td_metric(D.sock, "sessions_cancelled"), cancelled0);
    CHECKF(td_status_int(D.sock, "connections") == 2, "connections %lld",
           td_status_int(D.sock, "connections"));
    CHECK(tty_alive(&t));

    /* the next question is answered, whole, on the same connection */
    long long total0 = td_metric(D.sock, "sessions_total");
    long long cancelled1 = td_metric(D.sock, "sessions_cancelled");
    tty_send(&t, SHORT_QUESTION "\r");
    REQUIRE(tty_expect(&t, SHORT_QUESTION "\r\n"));
    size_t answer_at = t.mark;
    REQUIRE(tty_expect(&t, "\n> "));
    CHECKF(has_letters(t.out + answer_at, t.mark - answer_at), "no answer to the next question");
    CHECK(!strstr(t.out + answer_at, "bitstackctl:"));
    CHECK(td_metric(D.sock, "sessions_total") == total0 + 1);
    CHECK(td_metric(D.sock, "sessions_cancelled") == cancelled1);

    /* Up recalls the line just sent (not the first one), and Enter sends it again (more
     * than one request when the conversation outgrew the context and was retried shorter) */
    long long total1 = td_metric(D.sock, "sessions_total");
    tty_send(&t, "\x1b[A");
    CHECK(tty_expect(&t, SHORT_QUESTION));
    CHECK(!strstr(t.out + t.mark, LONG_QUESTION));
    tty_send(&t, "\r");
    CHECK(tty_expect(&t, "\n> "));
    CHECKF(td_metric(D.sock, "sessions_total") > total1, "the recalled line was not sent");

    /* Ctrl-C at an empty prompt warns; a second one quits, exit 0 */
    tty_send(&t, "\x03");
    CHECK(tty_expect(&t, "(Ctrl-C again or Ctrl-D quits)"));
    CHECK(tty_expect(&t, "> "));
    CHECK(tty_alive(&t));
    tty_send(&t, "\x03");
    CHECK(tty_exits_0(&t));
    tty_free(&t);

    char path[256];
    snprintf(path, sizeof path, "%s/state/bitstack/chat_history", F.dir);
    CHECKF(td_log_has(path, "Hello") && td_log_has(path, "What\\040did\\040the\\040dog\\040do?"),
           "history file %s", path);
}

/* A new session finds the history; two Ctrl-Cs during a reply quit. */
static void test_history_file_and_double_ctrl_c(void)
{
    tty_chat t;
    tty_start(&t);
    REQUIRE(tty_expect(&t, "> "));
    long long cancelled0 = td_metric(D.sock, "sessions_cancelled");
    tty_send(&t, "\x1b[A");
    CHECK(tty_expect(&t, SHORT_QUESTION));
    tty_send(&t, "\x1b[A");
    CHECK(tty_expect(&t, LONG_QUESTION));
    tty_send(&t, "\r");
    REQUIRE(tty_expect(&t, "\r\n"));
    REQUIRE(reply_under_way(&t));
    tty_send(&t, "\x03");
    td_sleep_ms(30);
    tty_send(&t, "\x03");
    CHECK(tty_exits_0(&t));
    CHECK(td_wait_status(D.sock, "sessions", 0));
    CHECK(td_metric(D.sock, "sessions_cancelled") == cancelled0 + 1);
    tty_free(&t);
}

/* Ctrl-C drops a half-typed line without sending it; Ctrl-D at an empty prompt quits. */
static void test_drop_line_and_ctrl_d(void)
{
    tty_chat t;
    tty_start(&t);
    REQUIRE(tty_expect(&t, "> "));
    long long total0 = td_metric(D.sock, "sessions_total");
    /* "é" typed as UTF-8 is a character to libedit (echoed back whole), whatever LANG is */
    tty_send(&t, "a line never sent, caf\xc3\xa9");
    CHECK(tty_expect(&t, "a line never sent, caf\xc3\xa9"));
    tty_send(&t, "\x03");
    CHECK(tty_expect(&t, "^C"));
    CHECK(tty_expect(&t, "> "));
    tty_pump(&t, 200);
    CHECK(!strstr(t.out + t.mark, "Ctrl-C again"));  /* dropping text is no step to quitting */
    CHECK(tty_alive(&t));
    tty_send(&t, "\x04");
    CHECK(tty_exits_0(&t));
    CHECK(td_metric(D.sock, "sessions_total") == total0);
    tty_free(&t);
}

/* From a pipe: plain lines, no prompt or escapes on stdout, no history. */
static void test_pipe(void)
{
    char cmd[1024], out[256], hist[256];
    snprintf(out, sizeof out, "%s/pipe.out", F.dir);
    snprintf(hist, sizeof hist, "%s/pipe-state/bitstack/chat_history", F.dir);
    snprintf(cmd, sizeof cmd,
             "printf '" SHORT_QUESTION "\\n/help\\n' | XDG_STATE_HOME='%s/pipe-state' '%s' --socket '%s' chat"
             " -n 8 --temperature 0 > '%s'",
             F.dir, F.ctl, D.sock, out);
    CHECK(system(cmd) == 0);
    FILE *f = fopen(out, "r");
    REQUIRE(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    CHECKF(n > 0 && strncmp(buf, "> ", 2) && !strstr(buf, "\n> ") && !strchr(buf, '\x1b'),
           "pipe output: '%s'", buf);
    CHECK(access(hist, F_OK) != 0);
}

int main(int argc, char **argv)
{
    td_fixture_init(&F, argc, argv, bs_shared(""));
    /* slow enough to be interrupted half-way (see the top) */
    setenv("BS_KERNEL", "portable", 1);
    const char *args[] = {"--threads", "1", NULL};
    td_start(&F, &D, "chat", args);

    test_cancel_and_history();
    test_history_file_and_double_ctrl_c();
    test_drop_line_and_ctrl_d();
    test_pipe();

    CHECK(td_daemon_stop(&D));
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
