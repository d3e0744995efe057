#include "proto/proto.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ----------------------------------------------------------------------- */

static const char *const op_names[] = {
    [BS_OP_NONE] = "",
    [BS_OP_STATUS] = "status",
    [BS_OP_GENERATE] = "generate",
    [BS_OP_CHAT] = "chat",
    [BS_OP_CANCEL] = "cancel",
    [BS_OP_BUDGET] = "budget",
    [BS_OP_METRICS] = "metrics",
};
#define N_OPS (sizeof op_names / sizeof op_names[0])

static const char *const code_names[BS_PERR_COUNT] = {
    [BS_PERR_NONE] = "none",
    [BS_PERR_BAD_JSON] = "bad_json",
    [BS_PERR_BAD_REQUEST] = "bad_request",
    [BS_PERR_UNKNOWN_OP] = "unknown_op",
    [BS_PERR_LINE_TOO_LONG] = "line_too_long",
    [BS_PERR_PROMPT_TOO_LONG] = "prompt_too_long",
    [BS_PERR_TOO_MANY_SESSIONS] = "too_many_sessions",
    [BS_PERR_TOO_MANY_CONNECTIONS] = "too_many_connections",
    [BS_PERR_NOT_FOUND] = "not_found",
    [BS_PERR_BUSY] = "busy",
    [BS_PERR_INTERNAL] = "internal",
    [BS_PERR_CANCELLED] = "cancelled",
    [BS_PERR_SHUTTING_DOWN] = "shutting_down",
    [BS_PERR_INSUFFICIENT_MEMORY] = "insufficient_memory",
    [BS_PERR_MODEL_NOT_FOUND] = "model_not_found",
};

static const char *const finish_names[BS_FINISH_COUNT] = {
    [BS_FINISH_LENGTH] = "length",
    [BS_FINISH_STOP] = "stop",
    [BS_FINISH_EOS] = "eos",
    [BS_FINISH_CANCELLED] = "cancelled",
    [BS_FINISH_SHUTDOWN] = "shutdown",
};

const char *bs_proto_op_name(bs_op op)
{
    return (unsigned)op < N_OPS ? op_names[op] : "?";
}

const char *bs_proto_code_name(bs_proto_code c)
{
    return (unsigned)c < BS_PERR_COUNT ? code_names[c] : "internal";
}

bs_proto_code bs_proto_code_from_name(const char *s)
{
    for (int c = 1; c < BS_PERR_COUNT; c++)
        if (strcmp(s, code_names[c]) == 0)
            return (bs_proto_code)c;
    return BS_PERR_NONE;
}

const char *bs_proto_finish_name(bs_finish f)
{
    return (unsigned)f < BS_FINISH_COUNT ? finish_names[f] : "?";
}

void bs_proto_limits_default(bs_proto_limits *lim)
{
    lim->max_line = 65536;
    lim->max_prompt_bytes = 32768;
    lim->max_tokens = 4096;
    lim->default_max_tokens = 256;
    lim->max_stop = 4;
    lim->max_stop_bytes = 64;
    lim->max_messages = 64;
    lim->max_sessions = 64;
    lim->max_sessions_per_conn = 16;
    lim->max_connections = 64;
}

/* ---- UTF-8 and JSON strings ------------------------------------------------------- */

/* The well-formed sequence at s[0..n): its length (1..4). Otherwise -k, k >= 1 being the
 * bytes of its maximal ill-formed subpart (replaced by one U+FFFD), with *truncated set
 * when the subpart is only ill-formed because s ended. Ranges from RFC 3629 / Unicode
 * table 3-7, so overlong forms, surrogates and code points past U+10FFFF are ill-formed. */
static int utf8_scan(const unsigned char *s, size_t n, bool *truncated)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1;
    else if (c == 0xe0)
        need = 2, lo = 0xa0;
    else if (c == 0xed)
        need = 2, hi = 0x9f;
    else if (c >= 0xe1 && c <= 0xef)
        need = 2;
    else if (c == 0xf0)
        need = 3, lo = 0x90;
    else if (c == 0xf4)
        need = 3, hi = 0x8f;
    else if (c >= 0xf1 && c <= 0xf3)
        need = 3;
    else
        return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) {
            *truncated = true;
            return -i;
        }
        if (s[i] < lo || s[i] > hi)
            return -i;
        lo = 0x80, hi = 0xbf;
    }
    return need + 1;
}

size_t bs_proto_utf8_boundary(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        bool trunc = false;
        int k = utf8_scan(p + i, n - i, &trunc);
        if (k > 0) {
            i += (size_t)k;
        } else {
            if (trunc)
                return i;
            i += (size_t)-k;
        }
    }
    return n;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        bool trunc = false;
        int k = utf8_scan(p + i, n - i, &trunc);
        if (k < 0)
            return false;
        i += (size_t)k;
    }
    return true;
}

/* Copies the UTF-8 sequence at p (non-ASCII) to o, or U+FFFD for an ill-formed subpart;
 * advances both. */
static void copy_utf8(char **o, const unsigned char **p, const unsigned char *end)
{
    bool trunc = false;
    int k = utf8_scan(*p, (size_t)(end - *p), &trunc);
    if (k > 0) {
        memcpy(*o, *p, (size_t)k);
        *o += k;
        *p += k;
    } else {
        memcpy(*o, "\xef\xbf\xbd", 3);   /* U+FFFD */
        *o += 3;
        *p += -k;
    }
}

json_t *bs_proto_json_text(const char *s, size_t n)
{
    if (utf8_valid(s, n))
        return json_stringn_nocheck(s, n);
    /* at most 3 bytes (U+FFFD) for each byte of an ill-formed subpart */
    char *buf = malloc(3 * n + 1);
    if (!buf)
        return NULL;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    char *o = buf;
    while (p < end) {
        if (*p < 0x80)
            *o++ = (char)*p++;
        else
            copy_utf8(&o, &p, end);
    }
    json_t *v = json_stringn_nocheck(buf, (size_t)(o - buf));
    free(buf);
    return v;
}

/* The most bytes escape_into writes for n input bytes: "\u00XX" for a control byte. */
#define ESCAPED_MAX(n) (6 * (n) + 2)

/* Writes s[0..n) as a quoted JSON string at o, returns the end. Room: ESCAPED_MAX(n). */
static char *escape_into(char *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    *o++ = '"';
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u', *o++ = '0', *o++ = '0';
                *o++ = hex[c >> 4], *o++ = hex[c & 15];
            }
            p++;
            continue;
        }
        copy_utf8(&o, &p, end);
    }
    *o++ = '"';
    return o;
}

/* ---- output buffer ----------------------------------------------------------------- */

void bs_proto_buf_free(bs_proto_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Room for extra more bytes plus the NUL kept after every line. */
static int reserve(bs_proto_buf *b, size_t extra, bs_err *e)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return bs_err_set(e, "proto: a %zu-byte line is too long", extra);
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
        return bs_err_set(e, "proto: out of memory for a %zu-byte line", need);
    b->data = d;
    b->cap = cap;
    return 0;
}

/* Undoes a half-written line, so a failed encoder leaves the buffer as it was. */
static int rollback(bs_proto_buf *b, size_t start)
{
    b->len = start;
    if (b->data)
        b->data[start] = '\0';
    return -1;
}

static int put(bs_proto_buf *b, const char *s, size_t n, bs_err *e)
{
    if (reserve(b, n, e))
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int bs_proto_buf_append(bs_proto_buf *b, const char *s, size_t n, bs_err *e)
{
    return put(b, s, n, e);
}

static int puts_(bs_proto_buf *b, const char *s, bs_err *e)
{
    return put(b, s, strlen(s), e);
}

static int put_str(bs_proto_buf *b, const char *s, size_t n, bs_err *e)
{
    if (n > (SIZE_MAX / 2 - 2) / 6)
        return bs_err_set(e, "proto: a %zu-byte string is too long", n);
    if (reserve(b, ESCAPED_MAX(n), e))
        return -1;
    char *end = escape_into(b->data + b->len, s, n);
    b->len = (size_t)(end - b->data);
    b->data[b->len] = '\0';
    return 0;
}

static int put_i64(bs_proto_buf *b, long long v, bs_err *e)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    return put(b, tmp, (size_t)n, e);
}

/* Shortest of %.15g / %.17g that reads back as v, so numbers round-trip exactly.
 * JSON has no inf or nan: they go out as 0. */
static int put_double(bs_proto_buf *b, double v, bs_err *e)
{
    if (!isfinite(v))
        v = 0;
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof tmp, "%.17g", v);
    return put(b, tmp, (size_t)n, e);
}

/* Timings and rates to the microsecond / milli-token: readable, and precise enough. */
static int put_rounded(bs_proto_buf *b, double v, bs_err *e)
{
    if (isfinite(v) && fabs(v) < 1e12)
        v = round(v * 1000.0) / 1000.0;
    return put_double(b, v, e);
}

static int put_id(bs_proto_buf *b, const bs_proto_id *id, bs_err *e)
{
    if (!id || id->len == 0)
        return put(b, "null", 4, e);
    return put(b, id->json, id->len, e);
}

/* ---- ids --------------------------------------------------------------------------- */

void bs_proto_id_int(bs_proto_id *id, long long v)
{
    int n = snprintf(id->json, sizeof id->json, "%lld", v);
    id->len = (size_t)n;
}

int bs_proto_id_str(bs_proto_id *id, const char *s, size_t n, bs_err *e)
{
    id->len = 0;
    id->json[0] = '\0';
    if (n > BS_PROTO_ID_MAX)
        return bs_err_set(e, "%zu bytes, the limit is %d", n, BS_PROTO_ID_MAX);
    if (!utf8_valid(s, n))
        return bs_err_set(e, "not valid UTF-8");
    char *end = escape_into(id->json, s, n);
    *end = '\0';
    id->len = (size_t)(end - id->json);
    return 0;
}

bool bs_proto_id_eq(const bs_proto_id *a, const bs_proto_id *b)
{
    return a->len == b->len && memcmp(a->json, b->json, a->len) == 0;
}

/* ---- requests ---------------------------------------------------------------------- */

void bs_request_init(bs_request *r, const bs_proto_limits *lim)
{
    bs_proto_limits dl;
    if (!lim) {
        bs_proto_limits_default(&dl);
        lim = &dl;
    }
    memset(r, 0, sizeof *r);
    r->op = BS_OP_NONE;
    r->max_tokens = lim->default_max_tokens;
    r->temperature = BS_PROTO_DEFAULT_TEMPERATURE;
    r->top_p = BS_PROTO_DEFAULT_TOP_P;
}

void bs_request_free(bs_request *r)
{
    free(r->prompt);
    r->prompt = NULL;
    r->prompt_len = 0;
    for (int i = 0; i < r->n_messages; i++)
        free(r->messages[i].content);
    free(r->messages);
    r->messages = NULL;
    r->n_messages = 0;
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    r->stop = NULL;
    r->n_stop = 0;
}

int bs_proto_fail(bs_proto_error *err, bs_proto_code code, const char *fmt, ...)
{
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A field of obj, with null read as absent. */
static json_t *field(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int read_id(const json_t *v, const char *what, bs_proto_id *id, bs_proto_error *err)
{
    if (json_is_integer(v)) {
        bs_proto_id_int(id, (long long)json_integer_value(v));
        return 0;
    }
    if (!json_is_string(v))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "%s: expected a string or an integer, got %s",
                    what, type_name(v));
    bs_err e;
    if (bs_proto_id_str(id, json_string_value(v), json_string_length(v), &e))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "%s: %s", what, e.msg);
    return 0;
}

static int read_sampling(const json_t *root, const bs_proto_limits *lim, bs_request *out,
                         bs_proto_error *err)
{
    json_t *v;
    if ((v = field(root, "max_tokens"))) {
        if (!json_is_integer(v))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "max_tokens: expected an integer, got %s",
                        type_name(v));
        json_int_t n = json_integer_value(v);
        if (n < 1 || n > lim->max_tokens)
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "max_tokens: %lld is out of range 1..%d",
                        (long long)n, lim->max_tokens);
        out->max_tokens = (int)n;
    }
    if ((v = field(root, "temperature"))) {
        if (!json_is_number(v))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "temperature: expected a number, got %s",
                        type_name(v));
        double t = json_number_value(v);
        /* sampling runs in float: what does not survive the conversion is refused here */
        if (!isfinite(t) || t < 0 || !isfinite((float)t))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "temperature: %g is not a finite number in 0..%g", t,
                        (double)FLT_MAX);
        out->temperature = t;
    }
    if ((v = field(root, "top_p"))) {
        if (!json_is_number(v))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "top_p: expected a number, got %s",
                        type_name(v));
        double p = json_number_value(v);
        if (!(p > 0 && p <= 1) || !((float)p > 0))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "top_p: %g is out of range (0, 1] (and at least %g)", p,
                        (double)FLT_MIN);
        out->top_p = p;
    }
    if ((v = field(root, "seed"))) {
        if (!json_is_integer(v))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "seed: expected an integer, got %s",
                        type_name(v));
        out->has_seed = true;
        out->seed = (uint64_t)(long long)json_integer_value(v);
    }
    if ((v = field(root, "stream"))) {
        if (!json_is_boolean(v))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "stream: expected true or false, got %s",
                        type_name(v));
        out->stream = json_is_true(v);
    }
    if ((v = field(root, "stop"))) {
        size_t n;
        if (json_is_string(v))
            n = 1;
        else if (json_is_array(v))
            n = json_array_size(v);
        else
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST,
                        "stop: expected a string or an array of strings, got %s", type_name(v));
        if (n > (size_t)lim->max_stop)
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "stop: %zu strings, the limit is %d", n,
                        lim->max_stop);
        if (n > 0 && !(out->stop = calloc(n, sizeof *out->stop)))
            return bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_is_string(v) ? v : json_array_get(v, i);
            if (!json_is_string(s))
                return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "stop[%zu]: expected a string, got %s", i,
                            type_name(s));
            size_t len = json_string_length(s);
            if (len == 0)
                return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "stop[%zu]: empty", i);
            if (len > lim->max_stop_bytes)
                return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "stop[%zu]: %zu bytes, the limit is %zu", i,
                            len, lim->max_stop_bytes);
            if (!(out->stop[i] = dup_bytes(json_string_value(s), len)))
                return bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
            out->n_stop = (int)i + 1;
        }
    }
    return 0;
}

static int read_generate(const json_t *root, const bs_proto_limits *lim, bs_request *out,
                         bs_proto_error *err)
{
    json_t *v = field(root, "prompt");
    if (!v)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "prompt: required by op generate");
    if (!json_is_string(v))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "prompt: expected a string, got %s", type_name(v));
    size_t len = json_string_length(v);
    if (len > lim->max_prompt_bytes)
        return bs_proto_fail(err, BS_PERR_PROMPT_TOO_LONG, "prompt: %zu bytes, the limit is %zu", len,
                    lim->max_prompt_bytes);
    if (!(out->prompt = dup_bytes(json_string_value(v), len)))
        return bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
    out->prompt_len = len;
    return read_sampling(root, lim, out, err);
}

static int read_chat(const json_t *root, const bs_proto_limits *lim, bs_request *out,
                     bs_proto_error *err)
{
    json_t *v = field(root, "messages");
    if (!v)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages: required by op chat");
    if (!json_is_array(v))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST,
                    "messages: expected an array of {role, content} objects, got %s",
                    type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages: empty");
    if (n > (size_t)lim->max_messages)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages: %zu messages, the limit is %d", n,
                    lim->max_messages);
    if (!(out->messages = calloc(n, sizeof *out->messages)))
        return bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages[%zu]: expected an object, got %s", i,
                        type_name(m));
        json_t *role = field(m, "role");
        if (!role || !json_is_string(role))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST,
                        "messages[%zu].role: expected \"system\", \"user\" or \"assistant\"", i);
        int r = bs_chat_role_from_name(json_string_value(role));
        if (r < 0)
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages[%zu].role: unknown role \"%.32s\"", i,
                        json_string_value(role));
        json_t *content = field(m, "content");
        if (!content || !json_is_string(content))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages[%zu].content: expected a string, got %s",
                        i, content ? type_name(content) : "nothing");
        size_t len = json_string_length(content);
        total += len;
        if (total > lim->max_prompt_bytes)
            return bs_proto_fail(err, BS_PERR_PROMPT_TOO_LONG,
                        "messages: more than %zu bytes of content", lim->max_prompt_bytes);
        out->messages[i].role = (bs_role)r;
        out->messages[i].len = len;
        if (!(out->messages[i].content = dup_bytes(json_string_value(content), len)))
            return bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
        out->n_messages = (int)i + 1;
    }
    return read_sampling(root, lim, out, err);
}

static int read_budget_value(const json_t *v, const char *what, bs_budget *b,
                             bs_proto_error *err)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0)
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "%s: %lld bytes is negative", what, (long long)n);
        memset(b, 0, sizeof *b);
        b->kind = BS_BUDGET_BYTES;
        b->bytes = (uint64_t)n;
        snprintf(b->text, sizeof b->text, "%lld", (long long)n);
        return 0;
    }
    if (!json_is_string(v))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST,
                    "%s: expected a string (\"180K\", \"40%%\", \"4bpw\", \"min\") or an integer, got %s",
                    what, type_name(v));
    /* Request strings never hold a NUL (they are parsed without JSON_ALLOW_NUL). */
    bs_err e;
    if (bs_proto_parse_budget(json_string_value(v), b, &e))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "%s: %s", what, e.msg);
    return 0;
}

static int read_budget(const json_t *root, bs_request *out, bs_proto_error *err)
{
    json_t *both = field(root, "budget"), *min = field(root, "min"), *max = field(root, "max");
    json_t *aut = field(root, "auto");
    if (aut) {
        /* false would have to mean "back to fixed at ... what?": refused, so that "auto"
         * present always means one thing */
        if (!json_is_true(aut))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "auto: expected true, got %s", type_name(aut));
        if (both || min || max)
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "auto: not together with budget, min or max");
        out->has_auto = out->auto_ = true;
        return 0;
    }
    if (both && (min || max))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "budget: give either budget or min/max, not both");
    if (both) {
        if (read_budget_value(both, "budget", &out->min, err))
            return -1;
        out->max = out->min;
        out->has_min = out->has_max = true;
        return 0;
    }
    if (min && read_budget_value(min, "min", &out->min, err))
        return -1;
    if (max && read_budget_value(max, "max", &out->max, err))
        return -1;
    out->has_min = min != NULL;
    out->has_max = max != NULL;
    /* Budgets in different units compare only once the store resolves them (the daemon). */
    if (out->has_min && out->has_max) {
        const bs_budget *a = &out->min, *b = &out->max;
        bool inverted = (a->kind == BS_BUDGET_MAX && b->kind != BS_BUDGET_MAX) ||
                        (b->kind == BS_BUDGET_MIN && a->kind != BS_BUDGET_MIN) ||
                        (a->kind == b->kind && a->kind == BS_BUDGET_BYTES && a->bytes > b->bytes) ||
                        (a->kind == b->kind && a->kind != BS_BUDGET_BYTES && a->value > b->value);
        if (inverted)
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "budget: min %s is above max %s", a->text,
                        b->text);
    }
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static bool model_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == ':' || c == '+' || c == '/';
}

bool bs_proto_model_name_ok(const char *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n && model_char(s[i]))
        i++;
    if (bad)
        *bad = i;
    return n > 0 && n <= BS_PROTO_MODEL_MAX && i == n;
}

/* Absent, null or "": the default model. */
static int read_model(const json_t *root, bs_request *out, bs_proto_error *err)
{
    json_t *v = field(root, "model");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "model: expected a string, got %s", type_name(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    size_t bad;
    if (n > BS_PROTO_MODEL_MAX)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "model: %zu bytes, the limit is %d", n, BS_PROTO_MODEL_MAX);
    if (n && !bs_proto_model_name_ok(s, n, &bad))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST,
                             "model: byte %zu is not a letter, digit or one of . _ - : + /", bad);
    memcpy(out->model, s, n);
    out->model[n] = '\0';
    return 0;
}

static int parse_object(const json_t *root, const bs_proto_limits *lim, bs_request *out,
                        bs_proto_error *err)
{
    if (!json_is_object(root))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "a request is a JSON object, got %s",
                    type_name(root));
    json_t *v = field(root, "id");
    if (!v)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "id: required");
    if (read_id(v, "id", &out->id, err))
        return -1;
    err->id = out->id;   /* from here on, errors can say which request they answer */

    v = field(root, "op");
    if (!v)
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "op: required");
    if (!json_is_string(v))
        return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "op: expected a string, got %s", type_name(v));
    const char *op = json_string_value(v);
    for (size_t i = 1; i < N_OPS; i++)
        if (strcmp(op, op_names[i]) == 0)
            out->op = (bs_op)i;
    switch (out->op) {
    case BS_OP_NONE:
        return bs_proto_fail(err, BS_PERR_UNKNOWN_OP,
                    "op \"%.32s\": expected status, generate, chat, cancel, budget or metrics", op);
    case BS_OP_STATUS:
    case BS_OP_METRICS:
        return 0;
    case BS_OP_GENERATE:
        return read_model(root, out, err) || read_generate(root, lim, out, err);
    case BS_OP_CHAT:
        return read_model(root, out, err) || read_chat(root, lim, out, err);
    case BS_OP_CANCEL:
        if (!(v = field(root, "target")))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "target: required by op cancel");
        return read_id(v, "target", &out->target, err);
    case BS_OP_BUDGET:
        return read_model(root, out, err) || read_budget(root, out, err);
    }
    return bs_proto_fail(err, BS_PERR_INTERNAL, "op %d not handled", (int)out->op);
}

int bs_proto_parse_object(const json_t *root, const bs_proto_limits *lim, bs_request *out,
                          bs_proto_error *err)
{
    bs_proto_limits dl;
    if (!lim) {
        bs_proto_limits_default(&dl);
        lim = &dl;
    }
    bs_request_init(out, lim);
    memset(err, 0, sizeof *err);
    if (parse_object(root, lim, out, err)) {
        bs_request_free(out);
        out->op = BS_OP_NONE;
        return -1;
    }
    return 0;
}

int bs_proto_parse_request(const char *line, size_t len, const bs_proto_limits *lim,
                           bs_request *out, bs_proto_error *err)
{
    bs_proto_limits dl;
    if (!lim) {
        bs_proto_limits_default(&dl);
        lim = &dl;
    }
    bs_request_init(out, lim);
    memset(err, 0, sizeof *err);
    if (len > lim->max_line)
        return bs_proto_fail(err, BS_PERR_LINE_TOO_LONG, "a %zu-byte line, the limit is %zu", len,
                    lim->max_line);
    if (blank(line, len))
        return 0;
    json_error_t je;
    /* Duplicate keys are refused: which of two "max_tokens" wins is nobody's guess. */
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root)
        return bs_proto_fail(err, BS_PERR_BAD_JSON, "invalid JSON at byte %d: %s", je.position, je.text);
    int rc = parse_object(root, lim, out, err);
    json_decref(root);
    if (rc) {
        bs_request_free(out);
        out->op = BS_OP_NONE;
        return -1;
    }
    return 0;
}

/* ---- response encoders ------------------------------------------------------------- */

int bs_proto_encode_token(bs_proto_buf *b, const bs_proto_id *id, const char *text, size_t n,
                          int stack_n, bs_err *e)
{
    size_t start = b->len;
    if (puts_(b, "{\"id\":", e) || put_id(b, id, e) || puts_(b, ",\"token\":", e) ||
        put_str(b, text, n, e) || (stack_n >= 0 && (puts_(b, ",\"n\":", e) || put_i64(b, stack_n, e))) ||
        put(b, "}\n", 2, e)) {
        return rollback(b, start);
    }
    return 0;
}

static int put_stat_i(bs_proto_buf *b, const char *key, long long v, bs_err *e)
{
    return puts_(b, key, e) || put_i64(b, v, e);
}

static int put_stat_d(bs_proto_buf *b, const char *key, double v, bs_err *e)
{
    return puts_(b, key, e) || put_rounded(b, v, e);
}

static int put_resizes(bs_proto_buf *b, const bs_proto_stats *st, bs_err *e)
{
    if (puts_(b, ",\"resizes\":[", e))
        return -1;
    for (int i = 0; i < st->n_resizes && i < BS_PROTO_MAX_RESIZES; i++)
        if ((i && puts_(b, ",", e)) || put_stat_i(b, "{\"token\":", st->resizes[i].token, e) ||
            put_stat_i(b, ",\"from\":", st->resizes[i].from_n, e) ||
            put_stat_i(b, ",\"to\":", st->resizes[i].to_n, e) || puts_(b, "}", e))
            return -1;
    return puts_(b, "]", e);
}

static int put_stats(bs_proto_buf *b, const bs_proto_stats *st, bs_err *e)
{
    bool failed = put_stat_i(b, "{\"prompt_tokens\":", st->prompt_tokens, e) ||
           put_stat_i(b, ",\"generated_tokens\":", st->generated_tokens, e) ||
           put_stat_d(b, ",\"tokens_per_s\":", st->tokens_per_s, e) ||
           put_stat_d(b, ",\"ttft_ms\":", st->ttft_ms, e) ||
           put_stat_d(b, ",\"total_ms\":", st->total_ms, e) ||
           put_stat_i(b, ",\"stack_n_min\":", st->stack_n_min, e) ||
           put_stat_i(b, ",\"stack_n_max\":", st->stack_n_max, e) ||
           put_stat_i(b, ",\"stack_total\":", st->stack_total, e) ||
           put_stat_i(b, ",\"resident_bytes_min\":", st->resident_bytes_min, e) ||
           put_stat_i(b, ",\"resident_bytes_max\":", st->resident_bytes_max, e) ||
           put_stat_i(b, ",\"resize_events\":", st->resize_events, e) ||
           put_resizes(b, st, e) ||
           /* as signed, the way seeds are read: JSON readers often stop at 2^63 */
           put_stat_i(b, ",\"seed\":", (long long)st->seed, e) ||
           puts_(b, ",\"finish_reason\":\"", e) ||
           puts_(b, bs_proto_finish_name(st->finish_reason), e) || puts_(b, "\"}", e);
    return failed ? -1 : 0;
}

int bs_proto_encode_done(bs_proto_buf *b, const bs_proto_id *id, const char *text, size_t n,
                         const bs_proto_stats *st, bs_err *e)
{
    size_t start = b->len;
    if (puts_(b, "{\"id\":", e) || put_id(b, id, e) || puts_(b, ",\"done\":true", e) ||
        (text && (puts_(b, ",\"text\":", e) || put_str(b, text, n, e))) ||
        puts_(b, ",\"stats\":", e) || put_stats(b, st, e) || put(b, "}\n", 2, e)) {
        return rollback(b, start);
    }
    return 0;
}

int bs_proto_encode_error(bs_proto_buf *b, const bs_proto_id *id, bs_proto_code code,
                          const char *message, bs_err *e)
{
    size_t start = b->len;
    const char *name = bs_proto_code_name(code);
    if (!message)
        message = name;
    if (puts_(b, "{\"id\":", e) || put_id(b, id, e) || puts_(b, ",\"error\":{\"code\":\"", e) ||
        puts_(b, name, e) || puts_(b, "\",\"message\":", e) ||
        put_str(b, message, strlen(message), e) || put(b, "}}\n", 3, e)) {
        return rollback(b, start);
    }
    return 0;
}

int bs_proto_encode_result(bs_proto_buf *b, const bs_proto_id *id, const json_t *result,
                           bs_err *e)
{
    if (!json_is_object(result))
        return bs_err_set(e, "proto: a result must be a JSON object");
    size_t start = b->len;
    /* Without JSON_INDENT jansson writes no newline, so the line stays one line. */
    size_t n = json_dumpb(result, NULL, 0, JSON_COMPACT);
    if (n == 0)
        return bs_err_set(e, "proto: result cannot be encoded (invalid UTF-8 in a string?)");
    if (puts_(b, "{\"id\":", e) || put_id(b, id, e) || puts_(b, ",\"result\":", e) ||
        reserve(b, n, e))
        goto fail;
    if (json_dumpb(result, b->data + b->len, n, JSON_COMPACT) != n) {
        bs_err_set(e, "proto: result changed while being encoded");
        goto fail;
    }
    b->len += n;
    if (put(b, "}\n", 2, e))
        goto fail;
    return 0;
fail:
    return rollback(b, start);
}

/* ---- client side: requests --------------------------------------------------------- */

static int put_sampling(bs_proto_buf *b, const bs_request *r, bs_err *e)
{
    if (puts_(b, ",\"max_tokens\":", e) || put_i64(b, r->max_tokens, e) ||
        puts_(b, ",\"temperature\":", e) || put_double(b, r->temperature, e) ||
        puts_(b, ",\"top_p\":", e) || put_double(b, r->top_p, e))
        return -1;
    if (r->has_seed && (puts_(b, ",\"seed\":", e) || put_i64(b, (long long)r->seed, e)))
        return -1;
    if (r->n_stop > 0) {
        if (puts_(b, ",\"stop\":[", e))
            return -1;
        for (int i = 0; i < r->n_stop; i++)
            if ((i && put(b, ",", 1, e)) || put_str(b, r->stop[i], strlen(r->stop[i]), e))
                return -1;
        if (put(b, "]", 1, e))
            return -1;
    }
    return puts_(b, r->stream ? ",\"stream\":true" : ",\"stream\":false", e);
}

static int put_request(bs_proto_buf *b, const bs_request *r, bs_err *e)
{
    if (r->id.len == 0)
        return bs_err_set(e, "request: no id");
    if (r->op == BS_OP_NONE || (unsigned)r->op >= N_OPS)
        return bs_err_set(e, "request: no op");
    if (puts_(b, "{\"id\":", e) || put_id(b, &r->id, e) || puts_(b, ",\"op\":\"", e) ||
        puts_(b, op_names[r->op], e) || put(b, "\"", 1, e))
        return -1;
    if (r->model[0] && (r->op == BS_OP_GENERATE || r->op == BS_OP_CHAT || r->op == BS_OP_BUDGET) &&
        (puts_(b, ",\"model\":", e) || put_str(b, r->model, strlen(r->model), e)))
        return -1;
    switch (r->op) {
    case BS_OP_NONE:
    case BS_OP_STATUS:
    case BS_OP_METRICS:
        break;
    case BS_OP_GENERATE:
        if (puts_(b, ",\"prompt\":", e) ||
            put_str(b, r->prompt ? r->prompt : "", r->prompt ? r->prompt_len : 0, e) ||
            put_sampling(b, r, e))
            return -1;
        break;
    case BS_OP_CHAT:
        if (puts_(b, ",\"messages\":[", e))
            return -1;
        for (int i = 0; i < r->n_messages; i++) {
            const bs_chat_msg *m = &r->messages[i];
            if ((i && put(b, ",", 1, e)) || puts_(b, "{\"role\":\"", e) ||
                puts_(b, bs_chat_role_name(m->role), e) || puts_(b, "\",\"content\":", e) ||
                put_str(b, m->content ? m->content : "", m->content ? m->len : 0, e) ||
                put(b, "}", 1, e))
                return -1;
        }
        if (put(b, "]", 1, e) || put_sampling(b, r, e))
            return -1;
        break;
    case BS_OP_CANCEL:
        if (puts_(b, ",\"target\":", e) || put_id(b, &r->target, e))
            return -1;
        break;
    case BS_OP_BUDGET:
        if (r->has_auto) {
            if (!r->auto_ || r->has_min || r->has_max)
                return bs_err_set(e, "request: auto is true and alone, or absent");
            if (puts_(b, ",\"auto\":true", e))
                return -1;
            break;
        }
        if (r->has_min && r->has_max && r->min.kind == r->max.kind &&
            !strcmp(r->min.text, r->max.text)) {
            if (puts_(b, ",\"budget\":", e) || put_str(b, r->min.text, strlen(r->min.text), e))
                return -1;
            break;
        }
        if (r->has_min && (puts_(b, ",\"min\":", e) ||
                           put_str(b, r->min.text, strlen(r->min.text), e)))
            return -1;
        if (r->has_max && (puts_(b, ",\"max\":", e) ||
                           put_str(b, r->max.text, strlen(r->max.text), e)))
            return -1;
        break;
    }
    return put(b, "}\n", 2, e);
}

int bs_proto_encode_request(bs_proto_buf *b, const bs_request *r, bs_err *e)
{
    size_t start = b->len;
    if (put_request(b, r, e))
        return rollback(b, start);
    return 0;
}

/* ---- client side: responses -------------------------------------------------------- */

void bs_response_free(bs_response *r)
{
    free(r->text);
    free(r->message);
    json_decref(r->result);
    r->text = r->message = NULL;
    r->result = NULL;
    r->text_len = 0;
}

static int64_t get_i64(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static double get_double(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static int read_stats(const json_t *st, bs_proto_stats *out, bs_err *e)
{
    if (!json_is_object(st))
        return bs_err_set(e, "response: stats is not an object");
    out->prompt_tokens = get_i64(st, "prompt_tokens");
    out->generated_tokens = get_i64(st, "generated_tokens");
    out->tokens_per_s = get_double(st, "tokens_per_s");
    out->ttft_ms = get_double(st, "ttft_ms");
    out->total_ms = get_double(st, "total_ms");
    out->stack_n_min = get_i64(st, "stack_n_min");
    out->stack_n_max = get_i64(st, "stack_n_max");
    out->stack_total = get_i64(st, "stack_total");
    out->resident_bytes_min = get_i64(st, "resident_bytes_min");
    out->resident_bytes_max = get_i64(st, "resident_bytes_max");
    out->resize_events = get_i64(st, "resize_events");
    json_t *rz = json_object_get(st, "resizes");
    for (size_t i = 0; json_is_array(rz) && i < json_array_size(rz) && i < BS_PROTO_MAX_RESIZES; i++) {
        json_t *o = json_array_get(rz, i);
        out->resizes[i].token = get_i64(o, "token");
        out->resizes[i].from_n = get_i64(o, "from");
        out->resizes[i].to_n = get_i64(o, "to");
        out->n_resizes = (int)i + 1;
    }
    out->seed = (uint64_t)get_i64(st, "seed");
    json_t *f = json_object_get(st, "finish_reason");
    if (!json_is_string(f))
        return bs_err_set(e, "response: stats has no finish_reason");
    for (int i = 0; i < BS_FINISH_COUNT; i++)
        if (strcmp(json_string_value(f), finish_names[i]) == 0) {
            out->finish_reason = (bs_finish)i;
            return 0;
        }
    return bs_err_set(e, "response: unknown finish_reason \"%.32s\"", json_string_value(f));
}

static int take_string(const json_t *v, char **s, size_t *len, const char *what, bs_err *e)
{
    if (!json_is_string(v))
        return bs_err_set(e, "response: %s is not a string", what);
    size_t n = json_string_length(v);
    if (!(*s = dup_bytes(json_string_value(v), n)))
        return bs_err_set(e, "response: out of memory");
    if (len)
        *len = n;
    return 0;
}

static int read_response(const json_t *root, bs_response *out, bs_err *e)
{
    if (!json_is_object(root))
        return bs_err_set(e, "response: not a JSON object");
    json_t *v = json_object_get(root, "id");
    if (json_is_integer(v)) {
        bs_proto_id_int(&out->id, (long long)json_integer_value(v));
    } else if (json_is_string(v)) {
        if (bs_proto_id_str(&out->id, json_string_value(v), json_string_length(v), e))
            return bs_err_wrap(e, "response");
    } else if (v && !json_is_null(v)) {
        return bs_err_set(e, "response: id is %s", type_name(v));
    }
    if ((v = json_object_get(root, "error"))) {
        out->kind = BS_RESP_ERROR;
        json_t *code = json_object_get(v, "code");
        if (!json_is_string(code))
            return bs_err_set(e, "response: error without a code");
        snprintf(out->code_name, sizeof out->code_name, "%s", json_string_value(code));
        out->code = bs_proto_code_from_name(json_string_value(code));
        return take_string(json_object_get(v, "message"), &out->message, NULL, "error message", e);
    }
    if ((v = json_object_get(root, "token"))) {
        out->kind = BS_RESP_TOKEN;
        json_t *nv = json_object_get(root, "n");
        out->stack_n = json_is_integer(nv) ? (int)json_integer_value(nv) : -1;
        return take_string(v, &out->text, &out->text_len, "token", e);
    }
    if ((v = json_object_get(root, "done"))) {
        out->kind = BS_RESP_DONE;
        if (!json_is_true(v))
            return bs_err_set(e, "response: done is not true");
        json_t *t = json_object_get(root, "text");
        if (t && take_string(t, &out->text, &out->text_len, "text", e))
            return -1;
        return read_stats(json_object_get(root, "stats"), &out->stats, e);
    }
    if ((v = json_object_get(root, "result"))) {
        out->kind = BS_RESP_RESULT;
        out->result = json_incref(v);
        return 0;
    }
    return bs_err_set(e, "response: none of token, done, error, result");
}

int bs_proto_parse_response(const char *line, size_t len, bs_response *out, bs_err *e)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    /* Token text may hold NUL bytes (a byte piece <0x00>), sent as \u0000. */
    json_t *root = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root)
        return bs_err_set(e, "response: invalid JSON at byte %d: %s", je.position, je.text);
    int rc = read_response(root, out, e);
    json_decref(root);
    if (rc)
        bs_response_free(out);
    return rc;
}
