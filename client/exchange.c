/* One generate/chat request: options, send, stream, cancel (client/exchange.h). */
#include "client/exchange.h"

#include "client/interrupt.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int bs_exchange_daemon_error(const char *what, const bs_response *r)
{
    fprintf(stderr, "bitstackctl: %s: bitstackd answered %s: %s\n", what, r->code_name,
            r->message ? r->message : "");
    return BS_EXIT_DAEMON;
}

int bs_exchange_take_stops(int *argc, char **argv, bs_request *r, const bs_proto_limits *lim)
{
    int w = 0;
    for (int i = 0; i < *argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--stop")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "option --stop needs a value\n");
                return -1;
            }
            v = argv[++i];
        } else if (!strncmp(argv[i], "--stop=", 7)) {
            v = argv[i] + 7;
        } else {
            argv[w++] = argv[i];
            continue;
        }
        size_t n = strlen(v);
        if (n == 0 || n > lim->max_stop_bytes) {
            fprintf(stderr, "--stop: a stop string is 1..%zu bytes (got %zu)\n", lim->max_stop_bytes, n);
            return -1;
        }
        if (r->n_stop >= lim->max_stop) {
            fprintf(stderr, "--stop: at most %d stop strings\n", lim->max_stop);
            return -1;
        }
        char **s = realloc(r->stop, (size_t)(r->n_stop + 1) * sizeof *s);
        if (!s || !(s[r->n_stop] = strdup(v))) {
            if (s)
                r->stop = s;
            fprintf(stderr, "out of memory\n");
            return -1;
        }
        r->stop = s;
        r->n_stop++;
    }
    *argc = w;
    return 0;
}

static int parse_seed(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    if (v[0] == '-') {
        long long x = strtoll(v, &end, 10);
        *out = (uint64_t)x;
    } else {
        *out = strtoull(v, &end, 10);
    }
    if (errno || end == v || *end) {
        fprintf(stderr, "--seed must be a 64-bit integer (got '%s')\n", v);
        return -1;
    }
    return 0;
}

int bs_exchange_sampling(const bs_opt *o, int no, const bs_proto_limits *lim, bs_request *r)
{
    long n;
    double t, p;
    if (bs_opt_int(o, no, "max-tokens", lim->default_max_tokens, 1, lim->max_tokens, &n) ||
        bs_opt_double(o, no, "temperature", BS_PROTO_DEFAULT_TEMPERATURE, 0, 1e6, &t) ||
        bs_opt_double(o, no, "top-p", BS_PROTO_DEFAULT_TOP_P, 0, 1, &p))
        return -1;
    if (p <= 0) {
        fprintf(stderr, "--top-p must be in (0, 1]\n");
        return -1;
    }
    r->max_tokens = (int)n;
    r->temperature = t;
    r->top_p = p;
    const char *seed = bs_opt_get(o, no, "seed");
    if (seed) {
        if (parse_seed(seed, &r->seed))
            return -1;
        r->has_seed = true;
    }
    r->stream = !bs_opt_get(o, no, "no-stream");
    return bs_exchange_model(o, no, r->op == BS_OP_CHAT ? "chat" : "generate", r);
}

int bs_exchange_model(const bs_opt *o, int no, const char *cmd, bs_request *r)
{
    const char *m = bs_opt_get(o, no, "model");
    if (!m)
        return 0;
    size_t n = strlen(m);
    if (!bs_proto_model_name_ok(m, n, NULL)) {
        fprintf(stderr, "bitstackctl: %s: --model '%s': a model name is 1..%d letters, digits or . _ - : + / "
                        "(bitstackctl status lists them)\n", cmd, m, BS_PROTO_MODEL_MAX);
        return -1;
    }
    memcpy(r->model, m, n + 1);
    return 0;
}

static void show(bs_exchange *x, const char *s, size_t n)
{
    if (x->trim_lead && !x->printed_any)
        while (n > 0 && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r'))
            s++, n--;
    if (n == 0)
        return;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    x->printed_any = true;
    x->last = s[n - 1];
}

/* The done line with stats.seed as the unsigned number --stats prints. The wire carries
 * it signed (docs/protocol.md: JSON readers often stop at 2^63), so a seed above 2^63
 * would otherwise show negative. jansson holds only signed integers: the seed goes in as
 * a marker string and the number replaces it in the text. NULL: print the line as is. */
static char *unsigned_seed_line(const char *raw, size_t len, uint64_t seed)
{
    static const char marker[] = "\"bs-seed-0b1d9\"";
    json_t *root = json_loadb(raw, len, 0, NULL);
    json_t *st = root ? json_object_get(root, "stats") : NULL;
    char *text = NULL, *out = NULL, *at;
    if (!st || !json_is_integer(json_object_get(st, "seed")) ||
        json_object_set_new(st, "seed", json_string("bs-seed-0b1d9")) ||
        !(text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)) || !(at = strstr(text, marker)))
        goto done;
    char num[24];
    int k = snprintf(num, sizeof num, "%" PRIu64, seed);
    size_t head = (size_t)(at - text), tail = strlen(at + sizeof marker - 1);
    out = malloc(head + (size_t)k + tail + 1);
    if (out) {
        memcpy(out, text, head);
        memcpy(out + head, num, (size_t)k);
        memcpy(out + head + (size_t)k, at + sizeof marker - 1, tail + 1);
    }
done:
    free(text);
    json_decref(root);
    return out;
}

/* Asks the daemon to stop r; its reply then ends with finish_reason "cancelled" (or a
 * "cancelled" error while still queued, or normally when it was already finishing). */
static int send_cancel(bs_conn *c, const bs_request *r, bs_err *e)
{
    bs_request cancel;
    bs_request_init(&cancel, NULL);
    cancel.op = BS_OP_CANCEL;
    cancel.target = r->id;
    bs_conn_next_id(c, &cancel.id);
    int rc = bs_conn_send(c, &cancel, e);
    bs_request_free(&cancel);
    return rc;
}

int bs_exchange_run(bs_conn *c, bs_request *r, bs_exchange *x, bs_err *e)
{
    bs_conn_next_id(c, &r->id);
    if (bs_conn_send(c, r, e))
        return -1;
    for (;;) {
        if (x->intr_fd >= 0) {
            int w = bs_conn_wait(c, x->intr_fd, e);
            if (w < 0)
                return -1;
            if (w == 2) {
                int n = bs_interrupt_take(x->intr_fd);
                x->interrupts += n;
                if (x->interrupts > 1)
                    return BS_EXCHANGE_QUIT;
                if (n && send_cancel(c, r, e))
                    return -1;
                continue;
            }
        }
        /* The cancel op's own answer has another id and is passed over below. */
        bs_response resp;
        const char *raw;
        size_t raw_len;
        int k = bs_conn_read(c, &resp, &raw, &raw_len, e);
        if (k < 0)
            return -1;
        if (k == 0)
            return bs_err_set(e, "bitstackd at %s closed the connection before request %s ended",
                              c->path, r->id.json);
        bool ours = bs_proto_id_eq(&resp.id, &r->id) || (resp.kind == BS_RESP_ERROR && resp.id.len == 0);
        if (!ours) {
            bs_response_free(&resp);
            continue;
        }
        if (x->json) {
            char *line = resp.kind == BS_RESP_DONE ? unsigned_seed_line(raw, raw_len, resp.stats.seed) : NULL;
            if (line)
                fputs(line, stdout);
            else
                fwrite(raw, 1, raw_len, stdout);
            free(line);
            fputc('\n', stdout);
            fflush(stdout);
        }
        int done = 0;
        switch (resp.kind) {
        case BS_RESP_TOKEN:
            if (x->interrupts)
                break;  /* already on its way when the cancel went out */
            if (bs_proto_buf_append(&x->text, resp.text, resp.text_len, NULL)) {
                bs_response_free(&resp);
                return bs_err_set(e, "out of memory");
            }
            if (!x->json)
                show(x, resp.text, resp.text_len);
            break;
        case BS_RESP_DONE:
            if (resp.text && !x->interrupts) {
                if (bs_proto_buf_append(&x->text, resp.text, resp.text_len, NULL)) {
                    bs_response_free(&resp);
                    return bs_err_set(e, "out of memory");
                }
                if (!x->json)
                    show(x, resp.text, resp.text_len);
            }
            x->stats = resp.stats;
            done = 1;
            break;
        case BS_RESP_ERROR:
            x->err = resp;
            return BS_EXCHANGE_ERROR;
        case BS_RESP_RESULT:
            break;
        }
        bs_response_free(&resp);
        if (done)
            return BS_EXCHANGE_DONE;
    }
}

void bs_exchange_free(bs_exchange *x)
{
    bs_proto_buf_free(&x->text);
    bs_response_free(&x->err);
}

void bs_exchange_print_stats(const bs_proto_stats *s)
{
    fflush(stdout);  /* the text first, then the stats, even when both go to one pipe */
    fprintf(stderr, "prompt %" PRId64 " tokens, generated %" PRId64 " tokens at %.1f tok/s; "
                    "first token %.1f ms, total %.1f ms; stack %" PRId64 "..%" PRId64 "/%" PRId64
                    " blocks, %" PRId64 " resize events; seed %" PRIu64 "; finish %s\n",
            s->prompt_tokens, s->generated_tokens, s->tokens_per_s, s->ttft_ms, s->total_ms,
            s->stack_n_min, s->stack_n_max, s->stack_total, s->resize_events, s->seed,
            bs_proto_finish_name(s->finish_reason));
}

char *bs_exchange_read_all(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n + 4096 > cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) {
                free(buf);
                return NULL;
            }
            buf = t;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
