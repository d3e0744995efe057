/* bitstackctl chat: a conversation with bitstackd. On a terminal, lines are edited with
 * libedit (history kept across sessions) and Ctrl-C stops the reply being written (the
 * protocol's cancel op), or quits when pressed again; from a pipe, each line is the next
 * message; with MESSAGE or --once, one message and its reply. */
#include "client/cmds.h"

#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/conn.h"
#include "client/exchange.h"
#include "client/interrupt.h"
#include "client/lineedit.h"

#define NOPTS(o) ((int)(sizeof(o) / sizeof((o)[0])))

/* A chat's messages, oldest first. */
typedef struct {
    bs_chat_msg *m;
    int n, cap;
    size_t bytes;   /* content bytes of all messages */
} conversation;

static int conv_push(conversation *h, bs_role role, const char *s, size_t n)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        bs_chat_msg *t = realloc(h->m, (size_t)cap * sizeof *t);
        if (!t)
            return -1;
        h->m = t;
        h->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c)
        return -1;
    memcpy(c, s, n);
    c[n] = 0;
    h->m[h->n++] = (bs_chat_msg){role, c, n};
    h->bytes += n;
    return 0;
}

static void conv_remove(conversation *h, int i)
{
    h->bytes -= h->m[i].len;
    free(h->m[i].content);
    memmove(&h->m[i], &h->m[i + 1], (size_t)(h->n - i - 1) * sizeof *h->m);
    h->n--;
}

/* Forgets the oldest exchange (a user message and the replies after it), keeping system
 * messages and the last message. Returns how many messages went (0: none could). */
static int conv_drop_oldest(conversation *h)
{
    int i = 0, n = 0;
    while (i < h->n - 1 && h->m[i].role == BS_ROLE_SYSTEM)
        i++;
    if (i >= h->n - 1)
        return 0;
    conv_remove(h, i);
    n++;
    while (i < h->n - 1 && h->m[i].role == BS_ROLE_ASSISTANT) {
        conv_remove(h, i);
        n++;
    }
    return n;
}

/* Back to the system messages only. */
static void conv_reset(conversation *h)
{
    for (int i = h->n - 1; i >= 0; i--)
        if (h->m[i].role != BS_ROLE_SYSTEM)
            conv_remove(h, i);
}

static void conv_free(conversation *h)
{
    for (int i = 0; i < h->n; i++)
        free(h->m[i].content);
    free(h->m);
    memset(h, 0, sizeof *h);
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t' || **s == '\n' || **s == '\r'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\n' ||
                  (*s)[*n - 1] == '\r'))
        (*n)--;
}


/* How a turn ended. */
enum {
    TURN_OK = 0,        /* the reply came whole and is in the conversation */
    TURN_ERROR = 1,     /* the daemon refused it (printed); the user's message is taken back */
    TURN_STOPPED = 2,   /* a Ctrl-C stopped it: what was written of the reply stays */
    TURN_QUIT = 3,      /* a second Ctrl-C: leave now */
};

/* Tells the user what one Ctrl-C did and what a second would do. */
static void say_stopped(bool cancelled)
{
    printf(cancelled ? "(reply stopped; Ctrl-C again or Ctrl-D quits)\n"
                     : "(Ctrl-C again or Ctrl-D quits)\n");
    fflush(stdout);
}

/* One user turn: sends the conversation (which ends with the user's message), prints the
 * reply and appends it. Older turns are forgotten when the conversation outgrows the
 * protocol's limits or the model's context. intr_fd: Ctrl-C (client/interrupt.h), or -1.
 * A reply stopped by Ctrl-C is kept as far as it was written, since that is what the user
 * saw and may answer to; one stopped before any of it was written takes the user's
 * message back too, so the conversation never holds two user turns in a row. Returns a
 * TURN_ code, or -1 on a connection problem (e filled). */
static int chat_turn(bs_conn *c, const bs_request *tmpl, conversation *h, const bs_proto_limits *lim,
                     bool stats, int intr_fd, bs_err *e)
{
    int forgot = 0, k1;
    while ((h->n > lim->max_messages || h->bytes > lim->max_prompt_bytes) && (k1 = conv_drop_oldest(h)))
        forgot += k1;
    if (forgot)
        fprintf(stderr, "bitstackctl: chat: forgot the %d oldest messages (over the protocol's limits)\n", forgot);
    for (;;) {
        /* A shallow copy: the messages and stop strings stay owned by h and tmpl. */
        bs_request r = *tmpl;
        r.messages = h->m;
        r.n_messages = h->n;
        bs_exchange x = {.trim_lead = true, .intr_fd = intr_fd};
        int k = bs_exchange_run(c, &r, &x, e);
        if (k == BS_EXCHANGE_ERROR && x.err.code == BS_PERR_PROMPT_TOO_LONG && !x.interrupts &&
            (k1 = conv_drop_oldest(h))) {
            fprintf(stderr, "bitstackctl: chat: forgot the %d oldest messages (over the model's context)\n", k1);
            bs_exchange_free(&x);
            continue;
        }
        int rc;
        if (k < 0) {
            rc = -1;
        } else if (k == BS_EXCHANGE_QUIT) {
            fputc('\n', stdout);
            rc = TURN_QUIT;
        } else if (k == BS_EXCHANGE_ERROR && x.interrupts && x.err.code == BS_PERR_CANCELLED) {
            /* stopped while still queued: nothing was written */
            fputc('\n', stdout);
            conv_remove(h, h->n - 1);
            say_stopped(true);
            rc = TURN_STOPPED;
        } else if (k == BS_EXCHANGE_ERROR) {
            if (x.printed_any)
                fputc('\n', stdout);
            bs_exchange_daemon_error("chat", &x.err);
            conv_remove(h, h->n - 1);
            rc = TURN_ERROR;
        } else {
            bool cancelled = x.interrupts && x.stats.finish_reason == BS_FINISH_CANCELLED;
            if (!x.printed_any || x.last != '\n' || cancelled)
                fputc('\n', stdout);
            fflush(stdout);
            if (stats)
                bs_exchange_print_stats(&x.stats);
            const char *s = x.text.data ? x.text.data : "";
            size_t n = x.text.len;
            trim(&s, &n);
            rc = TURN_OK;
            if (cancelled && n == 0)
                conv_remove(h, h->n - 1);
            else if (conv_push(h, BS_ROLE_ASSISTANT, s, n))
                rc = bs_err_set(e, "out of memory");
            if (rc == TURN_OK && x.interrupts) {
                /* a Ctrl-C that came as the reply was ending still counts toward quitting */
                say_stopped(cancelled);
                rc = TURN_STOPPED;
            }
        }
        bs_exchange_free(&x);
        return rc;
    }
}

static void chat_usage(FILE *f)
{
    fprintf(f,
            "usage: bitstackctl chat [MESSAGE] [--once] [--system TEXT] [-n|--max-tokens N]\n"
            "         [--temperature T] [--top-p P] [--seed S] [--stop STR]... [--no-stream] [-m|--model NAME]\n"
            "         [--stats] [--socket PATH]\n"
            "  On a terminal: a conversation (\"> \" prompts, line editing, Up/Down for earlier\n"
            "  lines; Ctrl-C stops a reply, /reset forgets the conversation, /help lists the\n"
            "  commands, /quit, Ctrl-D or Ctrl-C twice ends).\n"
            "  From a pipe: every line is the user's next message; --once sends all of standard\n"
            "  input as one message. MESSAGE: send that one message and print the reply.\n");
}

/* Where the typed lines are kept: $XDG_STATE_HOME/bitstack/chat_history (an absolute
 * $XDG_STATE_HOME only, as the XDG spec asks), else ~/.local/state/bitstack/chat_history.
 * -1 when neither can be had. */
static int history_path(char *out, size_t n)
{
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    int k;
    if (state && state[0] == '/')
        k = snprintf(out, n, "%s/bitstack/chat_history", state);
    else if (home && home[0])
        k = snprintf(out, n, "%s/.local/state/bitstack/chat_history", home);
    else
        return -1;
    return k > 0 && (size_t)k < n ? 0 : -1;
}

static void terminal_help(const char *hist)
{
    printf("/reset  forget the conversation (a --system message stays)\n"
           "/quit   end (or Ctrl-D at an empty prompt, or Ctrl-C twice)\n"
           "/help   this list\n"
           "Ctrl-C  stop the reply being written: the part already written stays in the\n"
           "        conversation (none written: your message is taken back too)\n"
           "Up/Down earlier lines, kept in %s\n"
           "Anything else is sent as your next message.\n",
           hist ? hist : "this session only");
}

/* The conversation at a terminal. Returns the exit code. */
static int chat_terminal(bs_conn *c, const bs_request *tmpl, conversation *h, const bs_proto_limits *lim,
                         bool stats)
{
    bs_err e = {{0}};
    int intr = bs_interrupt_open(&e);
    if (intr < 0)
        return bs_conn_fail(BS_EXIT_DAEMON, &e);
    /* libedit decodes typed characters by the locale's encoding. The protocol carries
     * UTF-8 only, so a locale in any other encoding (or none: "C") gives way to C.UTF-8. */
    setlocale(LC_CTYPE, "");
    if (strcmp(nl_langinfo(CODESET), "UTF-8"))
        setlocale(LC_CTYPE, "C.UTF-8");
    char path[PATH_MAX];
    const char *hist = history_path(path, sizeof path) ? NULL : path;
    /* the prompt and the line being typed belong on the terminal, even when the replies
     * go to a file */
    bs_lineedit *le = bs_lineedit_open("> ", isatty(STDOUT_FILENO) ? stdout : stderr, intr, hist, &e);
    if (!le) {
        bs_interrupt_close(intr);
        return bs_conn_fail(BS_EXIT_DAEMON, &e);
    }
    int rc = 0;
    bool armed = false;     /* the last thing the user did was a Ctrl-C */
    for (;;) {
        const char *line;
        size_t n;
        bool had_text;
        bs_lineedit_event ev = bs_lineedit_read(le, &line, &n, &had_text);
        if (ev == BS_LINEEDIT_EOF) {
            fputc('\n', stdout);
            break;
        }
        if (ev == BS_LINEEDIT_INTERRUPT) {
            /* the terminal is in raw mode here: it did not echo the ^C itself */
            fputs("^C\n", stdout);
            if (had_text) {
                armed = false;  /* that Ctrl-C meant "drop this line", not "quit" */
                continue;
            }
            if (armed)
                break;
            say_stopped(false);
            armed = true;
            continue;
        }
        const char *s = line;
        trim(&s, &n);
        if (n == 0)
            continue;
        armed = false;
        bs_err he = {{0}};
        if (bs_lineedit_remember(le, line, &he))
            fprintf(stderr, "bitstackctl: chat: %s\n", he.msg);
        if (n == 5 && !memcmp(s, "/quit", 5))
            break;
        if (n == 6 && !memcmp(s, "/reset", 6)) {
            int had = h->n;
            conv_reset(h);
            printf("(conversation forgotten: %d message%s%s)\n", had - h->n, had - h->n == 1 ? "" : "s",
                   h->n ? "; the system message stays" : "");
            continue;
        }
        if (n == 5 && !memcmp(s, "/help", 5)) {
            terminal_help(hist);
            continue;
        }
        if (conv_push(h, BS_ROLE_USER, s, n)) {
            rc = bs_conn_fail(BS_EXIT_DAEMON, &(bs_err){{"out of memory"}});
            break;
        }
        int k = chat_turn(c, tmpl, h, lim, stats, intr, &e);
        if (k < 0) {
            rc = bs_conn_fail(BS_EXIT_DAEMON, &e);
            break;
        }
        if (k == TURN_QUIT)
            break;
        /* after an error the user can go on; after a Ctrl-C, one more quits */
        armed = k == TURN_STOPPED;
    }
    fflush(stdout);
    bs_lineedit_close(le);
    bs_interrupt_close(intr);
    return rc;
}

/* Every line of standard input is the next message; no prompts, no commands. */
static int chat_pipe(bs_conn *c, const bs_request *tmpl, conversation *h, const bs_proto_limits *lim,
                     bool stats)
{
    bs_err e = {{0}};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0)
            break;
        const char *s = line;
        size_t n = (size_t)got;
        trim(&s, &n);
        if (n == 0)
            continue;
        if (conv_push(h, BS_ROLE_USER, s, n)) {
            rc = bs_conn_fail(BS_EXIT_DAEMON, &(bs_err){{"out of memory"}});
            break;
        }
        int k = chat_turn(c, tmpl, h, lim, stats, -1, &e);
        if (k < 0) {
            rc = bs_conn_fail(BS_EXIT_DAEMON, &e);
            break;
        }
        /* a script should stop at the first error */
        if (k == TURN_ERROR) {
            rc = BS_EXIT_DAEMON;
            break;
        }
    }
    free(line);
    return rc;
}

int bs_cmd_chat(int argc, char **argv)
{
    bs_proto_limits lim;
    bs_proto_limits_default(&lim);
    bs_request tmpl;
    bs_request_init(&tmpl, &lim);
    tmpl.op = BS_OP_CHAT;
    bs_opt o[] = {BS_EXCHANGE_OPTS, {"once", 0, 1, NULL}, {"system", 0, 0, NULL}};
    int no = NOPTS(o);
    const char *pos[2];
    int np;
    np = bs_exchange_take_stops(&argc, argv, &tmpl, &lim) ? -1 : bs_opts_parse(argc, argv, o, no, pos, 1);
    if (np >= 0 && bs_opt_get(o, no, "help")) {
        chat_usage(stdout);
        bs_request_free(&tmpl);
        return 0;
    }
    if (np < 0 ||
        bs_exchange_sampling(o, no, &lim, &tmpl) || bs_opt_get(o, no, "json") ||
        (np == 1 && bs_opt_get(o, no, "once"))) {
        if (bs_opt_get(o, no, "json"))
            fprintf(stderr, "bitstackctl: chat: --json is for generate; use --no-stream for whole replies\n");
        chat_usage(stderr);
        bs_request_free(&tmpl);
        return BS_EXIT_USAGE;
    }
    bool stats = bs_opt_get(o, no, "stats") != NULL;
    conversation h = {0};
    const char *sys = bs_opt_get(o, no, "system");
    if (sys && conv_push(&h, BS_ROLE_SYSTEM, sys, strlen(sys))) {
        bs_request_free(&tmpl);
        return BS_EXIT_DAEMON;
    }

    bs_conn c;
    bs_err e = {{0}};
    if (bs_conn_open(&c, bs_opt_get(o, no, "socket"), &e)) {
        conv_free(&h);
        bs_request_free(&tmpl);
        return bs_conn_fail(BS_EXIT_CONNECT, &e);
    }

    int rc = 0;
    if (np == 1 || bs_opt_get(o, no, "once")) {
        size_t n = 0;
        char *msg = np == 1 ? strdup(pos[0]) : bs_exchange_read_all(stdin, &n);
        if (np == 1 && msg)
            n = strlen(msg);
        const char *s = msg;
        if (s)
            trim(&s, &n);
        if (!msg || conv_push(&h, BS_ROLE_USER, s, n)) {
            fprintf(stderr, "bitstackctl: chat: cannot read the message\n");
            rc = BS_EXIT_DAEMON;
        } else {
            int k = chat_turn(&c, &tmpl, &h, &lim, stats, -1, &e);
            rc = k < 0 ? bs_conn_fail(BS_EXIT_DAEMON, &e) : k == TURN_ERROR ? BS_EXIT_DAEMON : 0;
        }
        free(msg);
    } else if (isatty(STDIN_FILENO)) {
        rc = chat_terminal(&c, &tmpl, &h, &lim, stats);
    } else {
        rc = chat_pipe(&c, &tmpl, &h, &lim, stats);
    }
    conv_free(&h);
    bs_request_free(&tmpl);
    bs_conn_close(&c);
    return rc;
}
