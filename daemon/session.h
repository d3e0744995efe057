/* bs_session: one generate or chat request, from its arrival to its final line.
 *
 * A session owns its whole compute state — a bs_gen (its own KV cache, grown in chunks
 * with the context), the prompt's tokens, the text so far — and borrows the weights from
 * a bs_engine: for each slice the loop hands it a view (bs_session.view), so every step
 * of the slice runs one consistent prefix of N blocks whatever a resize publishes
 * meanwhile. Each token records the N whose forward pass gave the logits it was sampled
 * from; the done line lists where N changed. Compute happens in slices
 * (bs_session_slice, on a pool thread): first the prompt is tokenized and prefilled in
 * chunks, then tokens are decoded, at most BS_SESSION_SLICE_TOKENS or
 * BS_SESSION_SLICE_NS per slice, so that sessions take turns.
 *
 * The text is cut for the wire inside the slice: `safe` is how far the text may be sent,
 * holding back the tail that could still become a stop string (a stop string is never
 * sent) and an incomplete UTF-8 character; tok_end[] records `safe` after each token
 * of the last slice, so a streaming caller sends one line per token.
 *
 * Threads: while a slice runs, only the slice touches the session, except stop_req,
 * which the loop may set at any time (cancel, shutdown) and the slice polls between
 * steps. Between slices the loop thread owns everything. */
#ifndef BS_SESSION_H
#define BS_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/sched.h"
#include "model/generate.h"
#include "model/engine.h"
#include "proto/proto.h"

#define BS_SESSION_SLICE_TOKENS 16
#define BS_SESSION_SLICE_NS 2000000ull   /* 2 ms */

struct bs_session;

/* What a batch slice did: decode steps run for more than one session, and their rows
 * (session-tokens). */
typedef struct {
    uint64_t steps, rows;
} bs_session_batch_stats;

/* Who a session belongs to: a front end's grouping of sessions (a JSON-lines connection,
 * an HTTP connection), for the per-owner limits and for finding a session by id. */
typedef struct bs_owner {
    int n_sessions;                  /* the server keeps this count */
    struct bs_peer_use *use;         /* its user's counts (daemon/peers.h), or NULL */
    uid_t uid;                       /* SO_PEERCRED */
    pid_t pid;
} bs_owner;

/* Where a session's results go: the front end that made it. Called on the loop thread
 * by the server (sessions.c). tokens: text up to tok_end[] of the last slice became
 * sendable (stream sessions only). done: the session finished (s->finish, the stats);
 * error: it failed, or was cancelled or shut down before it started. After done or error
 * the server frees the session; a callback may drop its connection meanwhile (the server
 * notices: the session is freed, never touched again). */
typedef struct bs_sink {
    void (*tokens)(struct bs_session *s, void *ctx);
    void (*done)(struct bs_session *s, void *ctx);
    void (*error)(struct bs_session *s, bs_proto_code code, const char *msg, void *ctx);
    void *ctx;
} bs_sink;

typedef struct bs_session {
    bs_sched_item item;

    /* loop thread */
    bs_sink sink;
    bs_owner *owner;                 /* NULL once its front end went away */
    struct bs_peer_use *use;         /* its user: counts its sessions, and its compute */
    struct bs_session *prev, *next;  /* the server's list */
    bs_proto_id id;
    bool stream;
    bool started;                    /* a slice has run */
    bool busy;                       /* its sink's tokens callback is running */
    size_t sent;                     /* text bytes already sent in token lines */
    int counted;                     /* generated tokens already added to metrics */
    uint64_t t_recv;                 /* uv_hrtime() when the request arrived */

    /* the request */
    struct bs_served *served;        /* the model it runs on (daemon/models.h) */
    bs_engine *eng;                  /* its engine */
    bs_view *view;                   /* held by the loop for the running slice */
    char *prompt;
    size_t prompt_len;
    char **stop;
    int n_stop;
    size_t max_stop;                 /* bytes of the longest stop string */
    int max_tokens;
    bs_gen_params params;

    /* compute state: the running slice's, else the loop's */
    bs_gen gen;
    bool gen_ready;
    int *ids;                        /* prompt tokens, until prefilled */
    int n_ids, prefilled, prompt_tokens;
    bs_proto_buf text;               /* the text so far (text.data, text.len) */
    size_t safe;
    size_t tok_end[BS_SESSION_SLICE_TOKENS];
    int tok_n[BS_SESSION_SLICE_TOKENS];   /* the N behind each token of the last slice */
    int n_tok;                       /* tokens decoded by the last slice */
    int logits_n;                    /* the N whose forward pass gave gen.logits */
    bool pending;                    /* a token was sampled and sent, its forward pass not yet
                                        run (it was stopped by a shrink) */
    int last_n;                      /* the N of the last token (-1 before the first) */
    int n_min, n_max;
    int resize_events;               /* changes of N between tokens */
    int n_resizes;
    struct { int token, from, to; } resizes[BS_PROTO_MAX_RESIZES];
    size_t kv_bytes;                 /* what the KV cache holds after the last slice */
    size_t need;                     /* the most its state can come to (admission) */
    bs_session_batch_stats batch;    /* the slice this session led (counted by the loop) */
    int generated;
    bool finished;
    bs_finish finish;
    bs_proto_code error;             /* BS_PERR_NONE, or why the session failed */
    char errmsg[256];
    uint64_t t_prefilled, t_first, t_last;

    atomic_int stop_req;             /* 0, or 1 + the bs_finish to end with */
} bs_session;

/* Takes the strings of a GENERATE or CHAT request (req's pointers are cleared) and
 * renders a chat's messages with the template, adding its stop strings. seed: the one
 * to use (the request's, or one the caller picked). NULL with e filled on OOM. */
bs_session *bs_session_new(bs_engine *eng, bs_request *req, uint64_t seed, bs_err *e);
void bs_session_free(bs_session *s);

/* One slice of compute. On a pool thread (or anywhere the session is not shared). */
void bs_session_slice(bs_session *s);

/* One slice for n sessions decoding on the same view (the scheduler's batch, n <=
 * BS_SCHED_MAX_BATCH): each step samples a token for every one of them, then runs all
 * the tokens as one pass (bs_gen_advance_batch), so each matrix is read once for the n.
 * A session leaves the batch when it ends; a stop for a shrink ends the slice with every
 * token pending, as for one session. n == 1 is bs_session_slice. Sessions mark
 * themselves batchable (item.batch_key = their engine) at the end of each slice once
 * they have nothing left to prefill. */
void bs_session_slice_batch(bs_session *const *ss, int n, bs_session_batch_stats *st);

/* Ends the session now, with its text so far (loop thread, between slices). */
void bs_session_finish(bs_session *s, bs_finish why);

/* The stats of the done line, at time now (uv_hrtime). */
void bs_session_stats(const bs_session *s, uint64_t now, bs_proto_stats *st);

#endif
