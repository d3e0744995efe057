/* One generate or chat request on a bitstackd connection, end to end: the sampling
 * options that fill it, sending it, printing the reply as it streams, keeping its text
 * and stats, and (for chat on a terminal) stopping it half-way with the protocol's
 * cancel op when the user presses Ctrl-C. Shared by `bitstackctl generate` and `chat`. */
#ifndef BS_CLI_EXCHANGE_H
#define BS_CLI_EXCHANGE_H

#include <stdbool.h>
#include <stdio.h>

#include "client/conn.h"
#include "client/opts.h"
#include "proto/proto.h"

/* The options both commands take; fill them with bs_exchange_sampling. */
#define BS_EXCHANGE_OPTS \
    {"socket", 0, 0, NULL}, {"max-tokens", 'n', 0, NULL}, {"temperature", 0, 0, NULL}, \
    {"top-p", 0, 0, NULL}, {"seed", 0, 0, NULL}, {"no-stream", 0, 1, NULL}, {"json", 0, 1, NULL}, \
    {"stats", 0, 1, NULL}, {"help", 'h', 1, NULL}, {"model", 'm', 0, NULL}

/* Takes every "--stop X" / "--stop=X" out of argv into r->stop, because opts.h keeps one
 * value per option and --stop may be given up to lim->max_stop times. -1 (printed) on a
 * bad one. */
int bs_exchange_take_stops(int *argc, char **argv, bs_request *r, const bs_proto_limits *lim);

/* Fills r's sampling fields (max_tokens, temperature, top_p, seed, stream) and the model
 * (--model) from the options. -1 (printed) on a bad value. */
int bs_exchange_sampling(const bs_opt *o, int no, const bs_proto_limits *lim, bs_request *r);

/* --model NAME into r->model ("" when not given). -1 (printed, cmd naming the command)
 * when the name is not one a daemon could have. */
int bs_exchange_model(const bs_opt *o, int no, const char *cmd, bs_request *r);

/* What one exchange printed and collected. Zero-initialise, set the first three (always
 * intr_fd), run, then bs_exchange_free. */
typedef struct {
    bool json;              /* print response lines as received instead of the text */
    bool trim_lead;         /* hold back whitespace before the first visible byte (chat) */
    int intr_fd;            /* bs_interrupt_open's fd, or -1 (set it): blocking reads,
                             * nothing interrupts */
    bool printed_any;       /* a visible byte went out */
    char last;              /* the last byte printed */
    int interrupts;         /* Ctrl-Cs seen during this exchange */
    bs_proto_buf text;      /* the whole reply (up to where it stopped) */
    bs_proto_stats stats;   /* from the done line */
    bs_response err;        /* the daemon's error line, kind BS_RESP_ERROR, when it sent one */
} bs_exchange;

/* What bs_exchange_run ended with. */
enum {
    BS_EXCHANGE_DONE = 0,   /* a done line (stats.finish_reason says why; "cancelled"
                             * after the first Ctrl-C) */
    BS_EXCHANGE_ERROR = 1,  /* the daemon answered with an error (x->err); "cancelled"
                             * when a Ctrl-C came while the request was still queued */
    BS_EXCHANGE_QUIT = 2,   /* a second Ctrl-C before the reply ended: the caller leaves
                             * (the rest of the reply is never read) */
};

/* Sends r with a fresh id and prints its answer as it comes. The first Ctrl-C read from
 * x->intr_fd sends a cancel op for r and reads on to the reply's end (the daemon's
 * session is gone then); text that arrives after that Ctrl-C is neither printed nor
 * kept, so the reply ends where the user stopped it. A second Ctrl-C returns
 * BS_EXCHANGE_QUIT at once. Returns one of the above, or -1 on a connection problem
 * (e filled). */
int bs_exchange_run(bs_conn *c, bs_request *r, bs_exchange *x, bs_err *e);

void bs_exchange_free(bs_exchange *x);

/* The stats line --stats prints, on standard error after the text. */
void bs_exchange_print_stats(const bs_proto_stats *s);

/* Prints the daemon's error line for command what; the exit code for it. */
int bs_exchange_daemon_error(const char *what, const bs_response *r);

/* All of f, NUL-terminated (*len without the NUL); NULL on a read error or no memory. */
char *bs_exchange_read_all(FILE *f, size_t *len);

#endif
