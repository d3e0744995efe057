/* Subcommands that talk to a running bitstackd: status, metrics, generate, budget (chat
 * is in cmd_chat.c).
 * Every one takes --socket PATH (else the rule of proto/sockpath.h: $BITSTACK_SOCKET,
 * $RUNTIME_DIRECTORY, the system or user runtime directory) and exits 0 ok, 1 when the
 * daemon answered with an error or went away, 2 on a usage error, 3 when it cannot
 * connect. */
#include "client/cmds.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/conn.h"
#include "client/exchange.h"
#include "client/render.h"

#define NOPTS(o) ((int)(sizeof(o) / sizeof((o)[0])))

static void human_bytes(double b, char *out, size_t n)
{
    bs_render_bytes(b, out, n);
}

static void human_duration(double s, char *out, size_t n)
{
    long long t = s > 0 ? (long long)s : 0;
    if (t >= 86400)
        snprintf(out, n, "%lldd %02lldh %02lldm", t / 86400, t / 3600 % 24, t / 60 % 60);
    else if (t >= 3600)
        snprintf(out, n, "%lldh %02lldm %02llds", t / 3600, t / 60 % 60, t % 60);
    else if (t >= 60)
        snprintf(out, n, "%lldm %02llds", t / 60, t % 60);
    else
        snprintf(out, n, "%.1fs", s > 0 ? s : 0);
}

/* Sends r and reads up to its final line, which is left in *out (the caller frees it).
 * For ops answered by one line (status, metrics, budget). */
static int simple_request(bs_conn *c, bs_request *r, bs_response *out, bs_err *e)
{
    bs_conn_next_id(c, &r->id);
    if (bs_conn_send(c, r, e))
        return -1;
    for (;;) {
        int k = bs_conn_read(c, out, NULL, NULL, e);
        if (k < 0)
            return -1;
        if (k == 0)
            return bs_err_set(e, "bitstackd at %s closed the connection before answering",
                              c->path);
        /* An error with a null id (too_many_connections, shutting_down) is for us too. */
        if (bs_proto_id_eq(&out->id, &r->id) || (out->kind == BS_RESP_ERROR && out->id.len == 0))
            return 0;
        bs_response_free(out);
    }
}

/* ---- status, metrics --------------------------------------------------------------- */


static void print_row(const char *key, const char *val)
{
    printf("%-10s %s\n", key, val);
}

/* The generation rate for the table, and how it was had. */
typedef struct {
    double tps;         /* NAN: unknown */
    const char *how;
} status_rate;

static void print_status(const json_t *st, const json_t *metrics, const status_rate *rate)
{
    char a[64], b[64], line[256];
    const char *s;

    if ((s = bs_render_jstr(st, "store")))
        print_row("store", s);
    double ctx = bs_render_jnum(st, "context"), vocab = bs_render_jnum(st, "vocab_size");
    s = bs_render_jstr(st, "model");
    if (isfinite(ctx) && isfinite(vocab))
        snprintf(line, sizeof line, "%s (context %.0f, vocab %.0f)", s ? s : "-", ctx, vocab);
    else
        snprintf(line, sizeof line, "%s", s ? s : "-");
    print_row("model", line);

    double n = bs_render_jnum(st, "stack_n"), total = bs_render_jnum(st, "stack_total");
    double res = bs_render_jnum(st, "resident_bytes"), full = bs_render_jnum(st, "full_bytes");
    int len = isfinite(n) && isfinite(total) ? snprintf(line, sizeof line, "%.0f/%.0f blocks", n, total)
                                             : snprintf(line, sizeof line, "-");
    double bpw = bs_render_jnum(st, "bpw");
    if (isfinite(bpw))
        len += snprintf(line + len, sizeof line - (size_t)len, " (%.2f bpw)", bpw);
    if (isfinite(res)) {
        human_bytes(res, a, sizeof a);
        len += snprintf(line + len, sizeof line - (size_t)len, ", %s resident", a);
        if (isfinite(full) && full > 0) {
            human_bytes(full, b, sizeof b);
            snprintf(line + len, sizeof line - (size_t)len, " of %s (%.1f%%)", b, 100.0 * res / full);
        }
    }
    print_row("stack", line);
    if (bs_render_show_models(st)) {
        char *rows = bs_render_models(st, 0);
        if (rows)
            fputs(rows, stdout);
        free(rows);
    }

    char *mem = bs_render_status_memory(st);
    if (mem)
        fputs(mem, stdout);
    free(mem);

    double sess = bs_render_jnum(st, "sessions"), conns = bs_render_jnum(st, "connections");
    double run = bs_render_jnum(st, "sessions_running"), wait = bs_render_jnum(st, "sessions_waiting");
    int k = snprintf(line, sizeof line, "-");
    if (isfinite(sess))
        k = snprintf(line, sizeof line, "%.0f open", sess);
    if (isfinite(sess) && isfinite(run) && isfinite(wait))
        k += snprintf(line + k, sizeof line - (size_t)k, " (%.0f running, %.0f waiting)", run, wait);
    if (isfinite(conns))
        snprintf(line + k, sizeof line - (size_t)k, ", %.0f connection%s", conns, conns == 1 ? "" : "s");
    print_row("sessions", line);

    if (isfinite(rate->tps))
        snprintf(line, sizeof line, "%.1f (%s)", rate->tps, rate->how);
    else
        snprintf(line, sizeof line, "-");
    double gen = metrics ? bs_render_jnum(metrics, "tokens_generated") : NAN;
    if (isfinite(gen))
        snprintf(line + strlen(line), sizeof line - strlen(line), "; %.0f tokens generated", gen);
    print_row("tokens/s", line);

    double up = bs_render_jnum(st, "uptime_s");
    if (isfinite(up))
        human_duration(up, line, sizeof line);
    else
        snprintf(line, sizeof line, "-");
    print_row("uptime", line);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The daemon counts generated tokens as they are made but reports no rate: when
 * something is generating, count them over half a second. Idle is 0 without waiting. */
static void measure_rate(bs_conn *c, bs_request *r, const json_t *st, const json_t *met1, status_rate *rate)
{
    double sessions = bs_render_jnum(st, "sessions"), g1 = bs_render_jnum(met1, "tokens_generated");
    if (!isfinite(g1))
        return;
    if (sessions == 0) {
        rate->tps = 0;
        rate->how = "idle";
        return;
    }
    double t1 = now_s();
    struct timespec half = {0, 500 * 1000 * 1000};
    while (nanosleep(&half, &half) < 0 && errno == EINTR)
        ;
    bs_response met2 = {0};
    bs_err e = {{0}};
    if (simple_request(c, r, &met2, &e) == 0 && met2.kind == BS_RESP_RESULT) {
        double g2 = bs_render_jnum(met2.result, "tokens_generated"), t2 = now_s();
        if (isfinite(g2) && t2 > t1) {
            rate->tps = (g2 - g1) / (t2 - t1);
            rate->how = "over the last 0.5 s";
        }
    }
    bs_response_free(&met2);
}

static void status_usage(FILE *f)
{
    fprintf(f, "usage: bitstackctl status [--json] [--watch [--interval SEC]] [--socket PATH]\n"
               "  --watch     refresh every --interval seconds (default 1): on a terminal a live\n"
               "              view (resident size against target and headroom, a sparkline of\n"
               "              the resident blocks N, the newest resize); into a pipe one line per\n"
               "              refresh (with --json: the raw status, one line each). Ctrl-C ends\n"
               "              it (exit 0); exit 1 when bitstackd goes away.\n");
}

/* Bars as wide as the terminal allows next to their labels; 40 when it is not one. */
static int bar_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0)
        return 40;
    int w = (int)ws.ws_col - 48;
    return w < 10 ? 10 : w > 60 ? 60 : w;
}

/* Polls status until SIGINT/SIGTERM (exit 0) or the daemon stops answering (exit 1).
 * The two signals are blocked and taken with sigtimedwait between refreshes, so a
 * Ctrl-C ends the view between frames, with the terminal left tidy, and no handler or
 * global flag is needed; a receive timeout bounds how long a hung daemon holds it. */
static int watch_status(bs_conn *c, double interval, bool json)
{
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);
    double wait_s = interval * 5 > 10 ? interval * 5 : 10;
    struct timeval rcv = {(time_t)wait_s, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);

    bool tty = isatty(STDOUT_FILENO) && !json;
    bs_watch_hist h = {0};
    bs_request r;
    bs_request_init(&r, NULL);
    r.op = BS_OP_STATUS;
    int rc = 0;
    for (;;) {
        bs_response st = {0};
        bs_err e = {{0}};
        if (simple_request(c, &r, &st, &e)) {
            fprintf(stderr, "bitstackctl: status --watch: bitstackd went away: %s\n", e.msg);
            rc = BS_EXIT_DAEMON;
            break;
        }
        if (st.kind != BS_RESP_RESULT) {
            rc = st.kind == BS_RESP_ERROR ? bs_exchange_daemon_error("status --watch", &st) : BS_EXIT_DAEMON;
            bs_response_free(&st);
            break;
        }
        bs_watch_hist_push(&h, bs_render_jnum(st.result, "stack_n"));
        char *text = json ? json_dumps(st.result, JSON_COMPACT)
                          : tty ? bs_render_watch(st.result, &h, bar_width())
                                : bs_render_watch_line(st.result, &h);
        bs_response_free(&st);
        if (!text) {
            fprintf(stderr, "bitstackctl: status --watch: out of memory\n");
            rc = BS_EXIT_DAEMON;
            break;
        }
        if (tty)
            fputs("\033[H\033[2J", stdout);   /* home, clear: the frame redraws in place */
        fputs(text, stdout);
        if (json)
            fputc('\n', stdout);
        free(text);
        if (fflush(stdout) == EOF) {
            /* the reader of the pipe left (head -n 3): nothing more to show */
            break;
        }
        struct timespec ts = {(time_t)interval, (long)((interval - floor(interval)) * 1e9)};
        int sig = sigtimedwait(&stop, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            break;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int bs_cmd_status(int argc, char **argv)
{
    bs_opt o[] = {{"socket", 0, 0, NULL}, {"json", 0, 1, NULL}, {"watch", 'w', 1, NULL},
                  {"interval", 0, 0, NULL}, {"help", 'h', 1, NULL}};
    const char *pos[1];
    double interval = 1;
    if (bs_opts_parse(argc, argv, o, NOPTS(o), pos, 0) < 0 ||
        bs_opt_double(o, NOPTS(o), "interval", 1, 0.05, 86400, &interval) ||
        (bs_opt_get(o, NOPTS(o), "interval") && !bs_opt_get(o, NOPTS(o), "watch"))) {
        if (bs_opt_get(o, NOPTS(o), "interval") && !bs_opt_get(o, NOPTS(o), "watch"))
            fprintf(stderr, "bitstackctl: status: --interval goes with --watch\n");
        status_usage(stderr);
        return BS_EXIT_USAGE;
    }
    if (bs_opt_get(o, NOPTS(o), "help")) {
        status_usage(stdout);
        return 0;
    }
    bs_conn c;
    bs_err e = {{0}};
    if (bs_conn_open(&c, bs_opt_get(o, NOPTS(o), "socket"), &e))
        return bs_conn_fail(BS_EXIT_CONNECT, &e);
    if (bs_opt_get(o, NOPTS(o), "watch")) {
        int rc = watch_status(&c, interval, bs_opt_get(o, NOPTS(o), "json") != NULL);
        bs_conn_close(&c);
        return rc;
    }
    int rc = BS_EXIT_DAEMON;
    bs_request r;
    bs_request_init(&r, NULL);
    r.op = BS_OP_STATUS;
    bs_response st = {0}, met = {0};
    if (simple_request(&c, &r, &st, &e)) {
        bs_conn_fail(BS_EXIT_DAEMON, &e);
        goto out;
    }
    if (st.kind != BS_RESP_RESULT) {
        rc = st.kind == BS_RESP_ERROR ? bs_exchange_daemon_error("status", &st) : BS_EXIT_DAEMON;
        goto out;
    }
    if (bs_opt_get(o, NOPTS(o), "json")) {
        char *s = json_dumps(st.result, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
        rc = s ? 0 : BS_EXIT_DAEMON;
        goto out;
    }
    /* metrics only adds the rate and token count; an older daemon may lack it */
    r.op = BS_OP_METRICS;
    bs_err me = {{0}};
    int have_met = simple_request(&c, &r, &met, &me) == 0 && met.kind == BS_RESP_RESULT;
    status_rate rate = {NAN, "reported by bitstackd"};
    rate.tps = bs_render_jnum(st.result, "tokens_per_s");
    if (!isfinite(rate.tps) && have_met)
        rate.tps = bs_render_jnum(met.result, "tokens_per_s");
    if (!isfinite(rate.tps) && have_met)
        measure_rate(&c, &r, st.result, met.result, &rate);
    print_status(st.result, have_met ? met.result : NULL, &rate);
    rc = 0;
out:
    bs_response_free(&st);
    bs_response_free(&met);
    bs_conn_close(&c);
    return rc;
}

int bs_cmd_metrics(int argc, char **argv)
{
    bs_opt o[] = {{"socket", 0, 0, NULL}, {"json", 0, 1, NULL}, {"help", 'h', 1, NULL}};
    const char *pos[1];
    int np = bs_opts_parse(argc, argv, o, NOPTS(o), pos, 0);
    if (np < 0 || bs_opt_get(o, NOPTS(o), "help")) {
        fprintf(np < 0 ? stderr : stdout, "usage: bitstackctl metrics [--json] [--socket PATH]\n");
        return np < 0 ? BS_EXIT_USAGE : 0;
    }
    bs_conn c;
    bs_err e = {{0}};
    if (bs_conn_open(&c, bs_opt_get(o, NOPTS(o), "socket"), &e))
        return bs_conn_fail(BS_EXIT_CONNECT, &e);
    bs_request r;
    bs_request_init(&r, NULL);
    r.op = BS_OP_METRICS;
    bs_response m = {0};
    int rc = BS_EXIT_DAEMON;
    if (simple_request(&c, &r, &m, &e)) {
        bs_conn_fail(BS_EXIT_DAEMON, &e);
    } else if (m.kind == BS_RESP_ERROR) {
        rc = bs_exchange_daemon_error("metrics", &m);
    } else if (m.kind == BS_RESP_RESULT) {
        int json = bs_opt_get(o, NOPTS(o), "json") != NULL;
        char *s = json ? json_dumps(m.result, JSON_COMPACT) : NULL;
        if (json && s) {
            puts(s);
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(m.result, k, v) {
                char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%-22s %s\n", k, t ? t : "?");
                free(t);
            }
        }
        free(s);
        rc = 0;
    }
    bs_response_free(&m);
    bs_conn_close(&c);
    return rc;
}

/* ---- generate ---------------------------------------------------------------------- */

static void generate_usage(FILE *f)
{
    fprintf(f,
            "usage: bitstackctl generate PROMPT|- [-n|--max-tokens N] [--temperature T] [--top-p P]\n"
            "         [--seed S] [--stop STR]... [--no-stream] [--no-echo] [--json] [--stats]\n"
            "         [-m|--model NAME] [--socket PATH]\n"
            "  PROMPT '-' reads the prompt from standard input.\n"
            "  --model NAME  which of the daemon's models answers (default: its first)\n");
}

int bs_cmd_generate(int argc, char **argv)
{
    bs_proto_limits lim;
    bs_proto_limits_default(&lim);
    bs_request r;
    bs_request_init(&r, &lim);
    r.op = BS_OP_GENERATE;
    bs_opt o[] = {BS_EXCHANGE_OPTS, {"no-echo", 0, 1, NULL}};
    int no = NOPTS(o);
    const char *pos[2];
    int np;
    np = bs_exchange_take_stops(&argc, argv, &r, &lim) ? -1 : bs_opts_parse(argc, argv, o, no, pos, 1);
    if (np >= 0 && bs_opt_get(o, no, "help")) {
        generate_usage(stdout);
        bs_request_free(&r);
        return 0;
    }
    if (np < 0 || np != 1 ||
        bs_exchange_sampling(o, no, &lim, &r)) {
        generate_usage(stderr);
        bs_request_free(&r);
        return BS_EXIT_USAGE;
    }
    if (!strcmp(pos[0], "-")) {
        r.prompt = bs_exchange_read_all(stdin, &r.prompt_len);
        if (!r.prompt) {
            fprintf(stderr, "bitstackctl: generate: cannot read the prompt from standard input\n");
            bs_request_free(&r);
            return BS_EXIT_USAGE;
        }
    } else {
        r.prompt = strdup(pos[0]);
        r.prompt_len = strlen(pos[0]);
    }
    if (!r.prompt || memchr(r.prompt, 0, r.prompt_len)) {
        fprintf(stderr, "bitstackctl: generate: the prompt contains a NUL byte\n");
        bs_request_free(&r);
        return BS_EXIT_USAGE;
    }

    bs_conn c;
    bs_err e = {{0}};
    if (bs_conn_open(&c, bs_opt_get(o, no, "socket"), &e)) {
        bs_request_free(&r);
        return bs_conn_fail(BS_EXIT_CONNECT, &e);
    }
    bs_exchange x = {.intr_fd = -1, .json = bs_opt_get(o, no, "json") != NULL};
    bool echo = !x.json && !bs_opt_get(o, no, "no-echo");
    if (echo && r.prompt_len) {
        /* the completion reads on from the prompt, as `bitstackctl run` shows it */
        fwrite(r.prompt, 1, r.prompt_len, stdout);
        fflush(stdout);
        x.printed_any = true;
        x.last = r.prompt[r.prompt_len - 1];
    }
    int k = bs_exchange_run(&c, &r, &x, &e);
    int rc;
    if (k < 0) {
        if (x.printed_any && !x.json)
            fputc('\n', stdout);
        rc = bs_conn_fail(BS_EXIT_DAEMON, &e);
    } else if (k == BS_EXCHANGE_ERROR) {
        if (x.printed_any && !x.json)
            fputc('\n', stdout);
        rc = bs_exchange_daemon_error("generate", &x.err);
    } else {
        if (!x.json && x.printed_any && x.last != '\n')
            fputc('\n', stdout);
        if (bs_opt_get(o, no, "stats"))
            bs_exchange_print_stats(&x.stats);
        rc = 0;
    }
    fflush(stdout);
    bs_exchange_free(&x);
    bs_request_free(&r);
    bs_conn_close(&c);
    return rc;
}

/* ---- budget ------------------------------------------------------------------------ */

static void budget_usage(FILE *f)
{
    fprintf(f, "usage: bitstackctl budget [B | --fixed B | --min B --max B | --auto] [--json]\n"
               "         [-m|--model NAME] [--socket PATH]\n"
               "  Without --model: the daemon's budget, for all its models together (a byte size is\n"
               "  their total; the other forms apply to each). --model NAME: that model's own range.\n"
               "  B: bytes (\"180K\", \"2.5M\", \"1G\"), \"40%%\", \"4.0bpw\", \"min\" or \"max\".\n"
               "  --fixed B (or B alone)  pin the resident size at B (mode fixed)\n"
               "  --min B, --max B        resize automatically with free memory within [min, max];\n"
               "                          either may be left out (the store's smallest / whole\n"
               "                          size); the same B for both is the same as --fixed B\n"
               "  --auto                  resize automatically over the whole range\n"
               "  nothing                 print the budget in force\n"
               "  --json                  print bitstackd's answer as it came\n");
}

/* Parses one budget option into b; prints the problem and returns -1 when bad. */
static int budget_opt(const char *opt, const char *v, bs_budget *b)
{
    bs_err e = {{0}};
    if (bs_proto_parse_budget(v, b, &e)) {
        fprintf(stderr, "bitstackctl: budget: %s: %s\n", opt, e.msg);
        return -1;
    }
    return 0;
}

/* Fills r from the options. Everything the protocol would refuse is refused here, before
 * connecting: the request is encoded and parsed back as the daemon will parse it.
 * Returns -1 (printed) on a usage error. */
static int budget_request(const bs_opt *o, int no, const char *const *pos, int np, bs_request *r)
{
    const char *fixed = bs_opt_get(o, no, "fixed"), *mn = bs_opt_get(o, no, "min");
    const char *mx = bs_opt_get(o, no, "max");
    bool aut = bs_opt_get(o, no, "auto") != NULL;
    if (np == 1 && fixed) {
        fprintf(stderr, "bitstackctl: budget: B and --fixed B are the same; give one\n");
        return -1;
    }
    if (np == 1)
        fixed = pos[0];
    if (aut && (fixed || mn || mx)) {
        fprintf(stderr, "bitstackctl: budget: --auto takes the whole range; for a narrower one "
                        "give --min/--max without --auto\n");
        return -1;
    }
    if (fixed && (mn || mx)) {
        fprintf(stderr, "bitstackctl: budget: --fixed pins one size; --min/--max give a range: "
                        "not both\n");
        return -1;
    }
    bs_request_init(r, NULL);
    r->op = BS_OP_BUDGET;
    bs_proto_id_int(&r->id, 1);
    if (fixed) {
        if (budget_opt(np == 1 ? "B" : "--fixed", fixed, &r->min))
            return -1;
        r->max = r->min;
        r->has_min = r->has_max = true;
    }
    if ((mn && budget_opt("--min", mn, &r->min)) || (mx && budget_opt("--max", mx, &r->max)))
        return -1;
    if (mn)
        r->has_min = true;
    if (mx)
        r->has_max = true;
    r->has_auto = r->auto_ = aut;
    if (bs_exchange_model(o, no, "budget", r))
        return -1;

    bs_proto_buf b = {0};
    bs_err e = {{0}};
    bs_request back;
    bs_proto_error pe;
    int rc = bs_proto_encode_request(&b, r, &e);
    if (rc)
        fprintf(stderr, "bitstackctl: budget: %s\n", e.msg);
    else if ((rc = bs_proto_parse_request(b.data, b.len - 1, NULL, &back, &pe)))
        fprintf(stderr, "bitstackctl: budget: %s\n", pe.message);
    else
        bs_request_free(&back);
    bs_proto_buf_free(&b);
    return rc ? -1 : 0;
}

int bs_cmd_budget(int argc, char **argv)
{
    bs_opt o[] = {{"socket", 0, 0, NULL}, {"min", 0, 0, NULL}, {"max", 0, 0, NULL},
                  {"fixed", 0, 0, NULL}, {"auto", 0, 1, NULL}, {"json", 0, 1, NULL},
                  {"help", 'h', 1, NULL}, {"model", 'm', 0, NULL}};
    int no = NOPTS(o);
    const char *pos[2];
    int np = bs_opts_parse(argc, argv, o, no, pos, 1);
    if (np >= 0 && bs_opt_get(o, no, "help")) {
        budget_usage(stdout);
        return 0;
    }
    bs_request r;
    if (np < 0 || budget_request(o, no, pos, np, &r)) {
        budget_usage(stderr);
        return BS_EXIT_USAGE;
    }

    bs_conn c;
    bs_err e = {{0}};
    if (bs_conn_open(&c, bs_opt_get(o, no, "socket"), &e))
        return bs_conn_fail(BS_EXIT_CONNECT, &e);
    bs_response b = {0};
    int rc = BS_EXIT_DAEMON;
    if (simple_request(&c, &r, &b, &e)) {
        bs_conn_fail(BS_EXIT_DAEMON, &e);
    } else if (b.kind == BS_RESP_ERROR && b.code == BS_PERR_UNKNOWN_OP) {
        fprintf(stderr, "bitstackctl: budget: not supported by this daemon\n");
    } else if (b.kind == BS_RESP_ERROR) {
        rc = bs_exchange_daemon_error("budget", &b);
    } else if (b.kind == BS_RESP_RESULT) {
        char *s = bs_opt_get(o, no, "json") ? json_dumps(b.result, JSON_COMPACT)
                                            : bs_render_budget(b.result);
        if (s)
            fputs(s, stdout);
        if (s && bs_opt_get(o, no, "json"))
            fputc('\n', stdout);
        free(s);
        rc = s ? 0 : BS_EXIT_DAEMON;
        /* A daemon from before budget modes ignores "auto" and only reports: say so
         * rather than let it look as if the change took. */
        if (rc == 0 && r.has_auto && !json_object_get(b.result, "mode")) {
            fprintf(stderr, "bitstackctl: budget: this bitstackd has no automatic mode; "
                            "nothing changed\n");
            rc = BS_EXIT_DAEMON;
        }
    }
    bs_response_free(&b);
    bs_request_free(&r);
    bs_conn_close(&c);
    return rc;
}
