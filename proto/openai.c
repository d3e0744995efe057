#include "proto/openai.h"

#include <stdio.h>
#include <string.h>

/* OpenAI clients send null for "not set" as often as they leave a field out. */
static json_t *given(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* A message's content: a string, or an array of parts of which only text is understood. */
static json_t *content_text(const json_t *c, size_t i, bs_proto_error *err)
{
    if (!c)
        return json_string("");
    if (json_is_string(c))
        return json_incref((json_t *)c);
    if (!json_is_array(c)) {
        bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages[%zu].content: expected a string or an array of text parts", i);
        return NULL;
    }
    size_t total = 0, j;
    json_t *part;
    json_array_foreach(c, j, part) {
        json_t *t = json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!type || strcmp(type, "text") || !json_is_string(t)) {
            bs_proto_fail(err, BS_PERR_BAD_REQUEST, "messages[%zu].content[%zu]: only {\"type\":\"text\",\"text\":...} parts are "
                 "supported", i, j);
            return NULL;
        }
        total += json_string_length(t);
    }
    char *buf = malloc(total + 1);
    if (!buf) {
        bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
        return NULL;
    }
    size_t off = 0;
    json_array_foreach(c, j, part) {
        json_t *t = json_object_get(part, "text");
        memcpy(buf + off, json_string_value(t), json_string_length(t));
        off += json_string_length(t);
    }
    json_t *s = json_stringn_nocheck(buf, off);   /* parts were valid UTF-8 strings */
    free(buf);
    if (!s)
        bs_proto_fail(err, BS_PERR_INTERNAL, "out of memory");
    return s;
}

static int map_messages(const json_t *body, json_t *q, bs_proto_error *err)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs))   /* absent or wrong: the validator words it */
        return msgs ? json_object_set(q, "messages", msgs) : 0;
    json_t *out = json_array();
    json_object_set_new(q, "messages", out);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            json_array_append(out, m);   /* refused by the validator, with its index */
            continue;
        }
        json_t *role = json_object_get(m, "role");
        /* OpenAI's newer name for the system role */
        if (json_is_string(role) && !strcmp(json_string_value(role), "developer"))
            role = json_string("system");
        else
            json_incref(role);
        json_t *text = content_text(given(m, "content"), i, err);
        if (!text) {
            json_decref(role);
            return -1;
        }
        json_t *nm = json_object();
        if (role)
            json_object_set_new(nm, "role", role);
        json_object_set_new(nm, "content", text);
        json_array_append_new(out, nm);
    }
    return 0;
}

static int map_prompt(const json_t *body, json_t *q, bs_proto_error *err)
{
    json_t *p = json_object_get(body, "prompt");
    if (json_is_array(p)) {
        json_t *one = json_array_get(p, 0);
        if (json_array_size(p) != 1 || !json_is_string(one))
            return bs_proto_fail(err, BS_PERR_BAD_REQUEST, "prompt: one string (or an array of exactly one string) is supported");
        p = one;
    }
    return p ? json_object_set(q, "prompt", p) : 0;
}

int bs_openai_parse(const char *body, size_t len, bool chat, const bs_proto_limits *lim, long long id,
                    bs_request *r, bs_openai_req *o, bs_proto_error *err)
{
    memset(o, 0, sizeof *o);
    memset(err, 0, sizeof *err);
    bs_request_init(r, lim);
    r->op = BS_OP_NONE;
    o->chat = chat;
    json_error_t je;
    json_t *b = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!b)
        return bs_proto_fail(err, BS_PERR_BAD_JSON, "invalid JSON at byte %d: %s", je.position, je.text);
    int rc = -1;
    json_t *q = json_object();
    if (!json_is_object(b)) {
        bs_proto_fail(err, BS_PERR_BAD_REQUEST, "the body is a JSON object");
        goto out;
    }
    json_t *v;
    if ((v = given(b, "model")) && json_is_string(v))
        snprintf(o->model, sizeof o->model, "%s", json_string_value(v));
    if ((v = given(b, "n")) && !(json_is_integer(v) && json_integer_value(v) == 1)) {
        bs_proto_fail(err, BS_PERR_BAD_REQUEST, "n: only 1 choice per request is supported");
        goto out;
    }
    if ((v = given(b, "stream_options"))) {
        json_t *u = given(v, "include_usage");
        if (!json_is_object(v) || (u && !json_is_boolean(u))) {
            bs_proto_fail(err, BS_PERR_BAD_REQUEST, "stream_options: expected {\"include_usage\": true|false}");
            goto out;
        }
        o->include_usage = json_is_true(u);
    }
    json_object_set_new(q, "id", json_integer(id));
    json_object_set_new(q, "op", json_string(chat ? "chat" : "generate"));
    if (chat ? map_messages(b, q, err) : map_prompt(b, q, err))
        goto out;
    v = given(b, "max_tokens");
    if (!v)
        v = given(b, "max_completion_tokens");
    if (v)
        json_object_set(q, "max_tokens", v);
    static const char *const same[] = {"temperature", "top_p", "seed", "stop", "stream"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if ((v = given(b, same[i])))
            json_object_set(q, same[i], v);
    rc = bs_proto_parse_object(q, lim, r, err);
out:
    json_decref(q);
    json_decref(b);
    if (rc) {
        bs_request_free(r);
        r->op = BS_OP_NONE;
    }
    return rc;
}

int bs_openai_status(bs_proto_code code)
{
    switch (code) {
    case BS_PERR_BAD_JSON:
    case BS_PERR_BAD_REQUEST:
    case BS_PERR_PROMPT_TOO_LONG:
        return 400;
    case BS_PERR_NOT_FOUND:
    case BS_PERR_UNKNOWN_OP:
    case BS_PERR_MODEL_NOT_FOUND:
        return 404;
    case BS_PERR_LINE_TOO_LONG:
        return 413;
    case BS_PERR_TOO_MANY_SESSIONS:
        return 429;
    case BS_PERR_INTERNAL:
        return 500;
    default:   /* too many connections, busy, shutting down, cancelled */
        return 503;
    }
}

const char *bs_openai_error_type(bs_proto_code code)
{
    int st = bs_openai_status(code);
    if (st == 429)
        return "rate_limit_error";
    return st < 500 ? "invalid_request_error" : "server_error";
}

json_t *bs_openai_error(bs_proto_code code, const char *code_name, const char *msg)
{
    json_t *e = json_object();
    json_object_set_new(e, "message", bs_proto_json_text(msg, strlen(msg)));
    json_object_set_new(e, "type", json_string(code_name && !strcmp(code_name, "invalid_api_key")
                                                   ? "authentication_error"
                                                   : bs_openai_error_type(code)));
    json_object_set_new(e, "code", json_string(code_name ? code_name : bs_proto_code_name(code)));
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    return o;
}

const char *bs_openai_finish(bs_finish f)
{
    if (f == BS_FINISH_EOS || f == BS_FINISH_STOP)
        return "stop";
    return bs_proto_finish_name(f);
}

static json_t *ext_json(const bs_openai_ext *x)
{
    return json_pack("{s:i, s:I, s:i}", "stack_n", x->n, "resident_bytes", (json_int_t)x->resident_bytes,
                     "stack_total", x->stack_total);
}

static json_t *head(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                    const char *object)
{
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(id));
    json_object_set_new(r, "object", json_string(object));
    json_object_set_new(r, "created", json_integer((json_int_t)created));
    json_object_set_new(r, "model", bs_proto_json_text(model, strlen(model)));
    (void)o;
    return r;
}

static json_t *usage(int prompt_tokens, int completion_tokens)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", prompt_tokens, "completion_tokens", completion_tokens,
                     "total_tokens", prompt_tokens + completion_tokens);
}

json_t *bs_openai_completion(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                             const char *text, size_t n, bs_finish finish, int prompt_tokens,
                             int completion_tokens, const bs_openai_ext *ext)
{
    json_t *r = head(o, id, created, model, o->chat ? "chat.completion" : "text_completion");
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(0));
    if (o->chat)
        json_object_set_new(c, "message",
                            json_pack("{s:s, s:o}", "role", "assistant", "content", bs_proto_json_text(text, n)));
    else
        json_object_set_new(c, "text", bs_proto_json_text(text, n));
    json_object_set_new(c, "logprobs", json_null());
    json_object_set_new(c, "finish_reason", json_string(bs_openai_finish(finish)));
    json_object_set_new(r, "choices", json_pack("[o]", c));
    json_object_set_new(r, "usage", usage(prompt_tokens, completion_tokens));
    json_object_set_new(r, "bitstack", ext_json(ext));
    return r;
}

json_t *bs_openai_chunk(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                        bool first, const char *text, size_t n, int finish, const bs_openai_ext *ext)
{
    json_t *r = head(o, id, created, model, o->chat ? "chat.completion.chunk" : "text_completion");
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(0));
    if (o->chat) {
        json_t *d = json_object();
        if (first)
            json_object_set_new(d, "role", json_string("assistant"));
        if (n || finish < 0)
            json_object_set_new(d, "content", bs_proto_json_text(text, n));
        json_object_set_new(c, "delta", d);
    } else {
        json_object_set_new(c, "text", bs_proto_json_text(text, n));
    }
    json_object_set_new(c, "logprobs", json_null());
    json_object_set_new(c, "finish_reason", finish < 0 ? json_null() : json_string(bs_openai_finish((bs_finish)finish)));
    json_object_set_new(r, "choices", json_pack("[o]", c));
    if (ext)
        json_object_set_new(r, "bitstack", ext_json(ext));
    return r;
}

json_t *bs_openai_usage_chunk(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                              int prompt_tokens, int completion_tokens)
{
    json_t *r = head(o, id, created, model, o->chat ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(r, "choices", json_array());
    json_object_set_new(r, "usage", usage(prompt_tokens, completion_tokens));
    return r;
}
