/* bs_proto: the wire protocol between bitstackd and its clients (docs/protocol.md).
 *
 * Newline-delimited JSON: every request is one line {"id":…,"op":…,…}; every response
 * line echoes the id. This module validates requests completely (a request that parses
 * is safe to act on: every field has its type and range), encodes every kind of response
 * line, and gives clients the reverse: request encoding and response parsing.
 *
 * Promises:
 * - No global mutable state; every function is reentrant.
 * - Encoders append one '\n'-terminated line to a bs_proto_buf and write valid UTF-8 JSON
 *   whatever bytes they are given: ill-formed UTF-8 becomes U+FFFD (one per maximal
 *   ill-formed subpart, as Unicode recommends), control bytes are escaped, so a line never
 *   contains a raw '\n' before its end. Token lines allocate nothing once the buffer has
 *   grown to the size of the largest line (the daemon's hot path).
 * - A parsed bs_request / bs_response owns everything it points to; free it with
 *   bs_request_free / bs_response_free (also safe after a failed parse, and twice).
 */
#ifndef BS_PROTO_H
#define BS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kernels/err.h"
#include "proto/budget.h"
#include "proto/chat.h"

/* ---- limits ---------------------------------------------------------------------- */

typedef struct {
    size_t max_line;            /* bytes in one request line before its '\n' (65536) */
    size_t max_prompt_bytes;    /* generate: prompt bytes; chat: content bytes of all
                                 * messages together (32768). The token limit (the
                                 * model's context) is checked by the daemon. */
    int max_tokens;             /* largest max_tokens a request may ask for (4096) */
    int default_max_tokens;     /* max_tokens when a request gives none (256) */
    int max_stop;               /* stop strings per request (4) */
    size_t max_stop_bytes;      /* bytes in one stop string (64) */
    int max_messages;           /* chat messages per request (64) */
    int max_sessions;           /* generate/chat requests open (queued or running) in the
                                 * whole daemon (64); enforced by the daemon */
    int max_sessions_per_conn;  /* ... and on one connection (16); enforced by the daemon */
    int max_connections;        /* client connections at once (64); enforced by the daemon */
} bs_proto_limits;

void bs_proto_limits_default(bs_proto_limits *lim);

/* ---- ids ------------------------------------------------------------------------- */

#define BS_PROTO_ID_MAX 64                          /* bytes of a string id */
#define BS_PROTO_ID_JSON_MAX (6 * BS_PROTO_ID_MAX + 2)

/* A request id as canonical JSON text: an integer (42, -7) or a string ("job-1"),
 * written the way this module writes strings, so two ids are the same id exactly when
 * their texts are equal (42 and "42" are different ids). len 0: no id (sent as null). */
typedef struct {
    size_t len;
    char json[BS_PROTO_ID_JSON_MAX + 1];
} bs_proto_id;

void bs_proto_id_int(bs_proto_id *id, long long v);
/* Fails on more than BS_PROTO_ID_MAX bytes or on ill-formed UTF-8. */
int bs_proto_id_str(bs_proto_id *id, const char *s, size_t n, bs_err *e);
bool bs_proto_id_eq(const bs_proto_id *a, const bs_proto_id *b);

/* ---- requests -------------------------------------------------------------------- */

typedef enum {
    BS_OP_NONE,         /* a blank line: send nothing */
    BS_OP_STATUS,
    BS_OP_GENERATE,
    BS_OP_CHAT,
    BS_OP_CANCEL,
    BS_OP_BUDGET,
    BS_OP_METRICS,
} bs_op;

const char *bs_proto_op_name(bs_op op);   /* "status", ...; "" for BS_OP_NONE */

/* Is s (n bytes) a model name: 1..BS_PROTO_MODEL_MAX letters, digits or . _ - : + / (what
 * file names and OpenAI model ids use, safe in logs and metric labels)? *bad (may be
 * NULL): the first byte that is not one of them, or n. */
bool bs_proto_model_name_ok(const char *s, size_t n, size_t *bad);

#define BS_PROTO_DEFAULT_TEMPERATURE 1.0
#define BS_PROTO_DEFAULT_TOP_P 0.9

#define BS_PROTO_MODEL_MAX 63   /* bytes of a model name */

typedef struct {
    bs_proto_id id;
    bs_op op;
    /* generate, chat, budget: the model it is for ("": the daemon's default) */
    char model[BS_PROTO_MODEL_MAX + 1];

    /* generate */
    char *prompt;               /* NUL-terminated; never contains a NUL itself */
    size_t prompt_len;

    /* chat */
    bs_chat_msg *messages;
    int n_messages;

    /* generate and chat */
    int max_tokens;             /* 1..limits.max_tokens */
    double temperature;         /* >= 0, finite; 0 = greedy */
    double top_p;               /* (0, 1]; 1 = no nucleus cut */
    bool has_seed;              /* false: the daemon picks a seed (and reports it) */
    uint64_t seed;              /* a negative JSON seed is taken modulo 2^64 */
    char **stop;                /* n_stop NUL-terminated strings, each 1..max_stop_bytes */
    int n_stop;
    bool stream;                /* token lines before the done line (default false) */

    /* cancel */
    bs_proto_id target;         /* the id of the request to cancel */

    /* budget: either, both or neither (neither: only report the budget). "budget":X
     * arrives as min = max = X (fixed mode), and the encoder sends min and max that are
     * the same budget as "budget":X, so a zero-width range and a fixed size are one thing. */
    bool has_min, has_max;
    bs_budget min, max;
    /* budget: "auto":true, automatic over the whole range. has_auto says the field was
     * given; auto_ is its value, which the parser only accepts as true. Never together
     * with budget/min/max. */
    bool has_auto, auto_;
} bs_request;

typedef enum {
    BS_PERR_NONE = 0,
    BS_PERR_BAD_JSON,             /* "bad_json" */
    BS_PERR_BAD_REQUEST,          /* "bad_request" */
    BS_PERR_UNKNOWN_OP,           /* "unknown_op" */
    BS_PERR_LINE_TOO_LONG,        /* "line_too_long" */
    BS_PERR_PROMPT_TOO_LONG,      /* "prompt_too_long" */
    BS_PERR_TOO_MANY_SESSIONS,    /* "too_many_sessions" */
    BS_PERR_TOO_MANY_CONNECTIONS, /* "too_many_connections" */
    BS_PERR_NOT_FOUND,            /* "not_found" */
    BS_PERR_BUSY,                 /* "busy" */
    BS_PERR_INTERNAL,             /* "internal" */
    BS_PERR_CANCELLED,            /* "cancelled" */
    BS_PERR_SHUTTING_DOWN,        /* "shutting_down" */
    BS_PERR_INSUFFICIENT_MEMORY,  /* "insufficient_memory" */
    BS_PERR_MODEL_NOT_FOUND,      /* "model_not_found" */
    BS_PERR_COUNT
} bs_proto_code;

const char *bs_proto_code_name(bs_proto_code c);
bs_proto_code bs_proto_code_from_name(const char *s);   /* BS_PERR_NONE if unknown */

typedef struct {
    bs_proto_code code;
    bs_proto_id id;             /* the request's id when it could be read, else len 0 */
    char message[256];          /* for people; may quote (escaped) input */
} bs_proto_error;

/* Sets every field to its default (max_tokens from lim, or the default limits when lim
 * is NULL) and every pointer to NULL. */
void bs_request_init(bs_request *r, const bs_proto_limits *lim);

/* Parses and validates one request line (without its '\n'; a trailing '\r' and JSON
 * whitespace are fine). lim NULL: the default limits. Returns 0 with *out filled
 * (out->op BS_OP_NONE for a blank line), or -1 with *err filled and *out left freed.
 * Fields the op does not use, and unknown fields, are ignored; a field set to null is
 * the same as a missing one. */
/* Fills err (code and a printf-style message) and returns -1: for parsers of requests. */
int bs_proto_fail(bs_proto_error *err, bs_proto_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same, for a request already parsed as JSON (the HTTP front end builds one from an
 * OpenAI request): every check but the line's length and its JSON syntax. */
int bs_proto_parse_object(const json_t *root, const bs_proto_limits *lim, bs_request *out,
                          bs_proto_error *err);

int bs_proto_parse_request(const char *line, size_t len, const bs_proto_limits *lim,
                           bs_request *out, bs_proto_error *err);

void bs_request_free(bs_request *r);

/* ---- response lines -------------------------------------------------------------- */

/* A growable output buffer; zero-initialise it. Encoders append to data[len..). */
typedef struct {
    char *data;
    size_t len, cap;
} bs_proto_buf;

void bs_proto_buf_free(bs_proto_buf *b);

/* Appends n bytes, keeping a NUL after them; -1 (with e) when memory runs out. */
int bs_proto_buf_append(bs_proto_buf *b, const char *s, size_t n, bs_err *e);

typedef enum {
    BS_FINISH_LENGTH,      /* "length": max_tokens or the context ran out */
    BS_FINISH_STOP,        /* "stop": a stop string appeared */
    BS_FINISH_EOS,         /* "eos": the model ended the text */
    BS_FINISH_CANCELLED,   /* "cancelled": a cancel op, or the client went away */
    BS_FINISH_SHUTDOWN,    /* "shutdown": the daemon is stopping */
    BS_FINISH_COUNT
} bs_finish;

const char *bs_proto_finish_name(bs_finish f);

#define BS_PROTO_MAX_RESIZES 16

typedef struct {
    int64_t prompt_tokens;
    int64_t generated_tokens;
    double tokens_per_s;           /* generated tokens / decode time */
    double ttft_ms;                /* request received to first token sampled */
    double total_ms;               /* request received to done */
    int64_t stack_n_min, stack_n_max;               /* resident blocks N during the run */
    int64_t stack_total;                            /* blocks in the whole stack */
    int64_t resident_bytes_min, resident_bytes_max; /* resident bytes during the run */
    int64_t resize_events;         /* resident-prefix changes while it ran */
    int n_resizes;                 /* the first BS_PROTO_MAX_RESIZES of them: */
    struct {
        int64_t token;             /* index of the first generated token at the new N */
        int64_t from_n, to_n;
    } resizes[BS_PROTO_MAX_RESIZES];
    uint64_t seed;                 /* the seed used */
    bs_finish finish_reason;
} bs_proto_stats;

/* {"id":…,"token":"…","n":N}\n. text may hold any bytes (see the promises above; a caller
 * streaming pieces of multi-byte characters should cut with bs_proto_utf8_boundary).
 * stack_n: the number of blocks that computed the token (omitted when negative). */
int bs_proto_encode_token(bs_proto_buf *b, const bs_proto_id *id,
                          const char *text, size_t n, int stack_n, bs_err *e);

/* {"id":…,"done":true[,"text":"…"],"stats":{…}}\n; text NULL: no "text" field (a
 * streamed request's text went out in its token lines). Non-finite doubles go out as 0. */
int bs_proto_encode_done(bs_proto_buf *b, const bs_proto_id *id, const char *text,
                         size_t n, const bs_proto_stats *st, bs_err *e);

/* {"id":…,"error":{"code":"…","message":"…"}}\n. message NULL: the code's name. */
int bs_proto_encode_error(bs_proto_buf *b, const bs_proto_id *id, bs_proto_code code,
                          const char *message, bs_err *e);

/* {"id":…,"result":{…}}\n for status, metrics, budget and cancel. result must be an
 * object; it is borrowed (the caller keeps its reference). Its strings must be valid
 * UTF-8 (as jansson's constructors ensure). */
int bs_proto_encode_result(bs_proto_buf *b, const bs_proto_id *id, const json_t *result,
                           bs_err *e);

/* The length of the longest prefix of s[0..n) that does not end inside an incomplete
 * but so-far well-formed UTF-8 sequence (a character cut between two tokens): the rest,
 * at most 3 bytes, should be held back and put before the next token's bytes. Ill-formed
 * bytes are not held back (they cannot become well formed). */
size_t bs_proto_utf8_boundary(const char *s, size_t n);

/* s[0..n) as a JSON string value, ill-formed UTF-8 replaced as the encoders do (NUL bytes
 * are kept; jansson escapes them). NULL on OOM. */
json_t *bs_proto_json_text(const char *s, size_t n);

/* ---- client side ----------------------------------------------------------------- */

/* Appends r as one request line: the fields of its op, all of them explicit (so the
 * daemon's defaults do not matter). Strings are escaped like responses'. */
int bs_proto_encode_request(bs_proto_buf *b, const bs_request *r, bs_err *e);

typedef enum {
    BS_RESP_TOKEN,
    BS_RESP_DONE,
    BS_RESP_ERROR,
    BS_RESP_RESULT,
} bs_resp_kind;

typedef struct {
    bs_resp_kind kind;
    bs_proto_id id;             /* len 0 when the response's id was null */
    char *text;                 /* token: its text; done: the whole text or NULL */
    int stack_n;                /* token: the N that computed it; -1 when not sent */
    size_t text_len;            /* text may contain NUL bytes (sent as \u0000) */
    bs_proto_stats stats;       /* done; missing fields read as 0 */
    bs_proto_code code;         /* error; BS_PERR_NONE for a code this build lacks */
    char code_name[32];         /* error: the code as sent */
    char *message;              /* error */
    json_t *result;             /* result: a reference the response owns */
} bs_response;

/* Parses one response line (without its '\n'). Returns 0, or -1 with e filled when the
 * line is not a response of this protocol. */
int bs_proto_parse_response(const char *line, size_t len, bs_response *out, bs_err *e);

void bs_response_free(bs_response *r);

#endif
