/* bs_proto and bs_chat: every request error path, id echo, budgets, the UTF-8 safety of
 * response lines, round trips through the client helpers, and the chat template.
 * Where possible a line is checked with jansson directly, not only with our own parser. */
#include "proto/proto.h"
#include "proto/chat.h"
#include "harness.h"

#include <stdint.h>

static bs_proto_limits L;

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

/* The error code a line gets (BS_PERR_NONE when it parses); checks the error is whole. */
static bs_proto_code code_of_n(const char *line, size_t len)
{
    bs_request r;
    bs_proto_error err;
    int rc = bs_proto_parse_request(line, len, &L, &r, &err);
    bs_request_free(&r);
    if (rc == 0) {
        CHECK(err.code == BS_PERR_NONE);
        return BS_PERR_NONE;
    }
    CHECK(rc == -1);
    CHECK(err.code != BS_PERR_NONE && err.message[0] != '\0');
    CHECK(r.prompt == NULL && r.messages == NULL && r.stop == NULL);
    return err.code;
}

static bs_proto_code code_of(const char *line)
{
    return code_of_n(line, strlen(line));
}

/* One complete line at b->data[start..]: ends in its only '\n', is JSON, is an object. */
static json_t *load_line(const bs_proto_buf *b, size_t start)
{
    const char *s = b->data + start;
    size_t n = b->len - start;
    REQUIRE(n > 0 && s[n - 1] == '\n');
    CHECK(memchr(s, '\n', n - 1) == NULL);
    json_error_t je;
    json_t *v = json_loadb(s, n - 1, JSON_ALLOW_NUL, &je);
    CHECKF(v != NULL, "line is not JSON: %s (%.*s)", v ? "" : je.text, (int)n, s);
    REQUIRE(v);
    CHECK(json_is_object(v));
    return v;
}

/* ---- requests ---------------------------------------------------------------------- */

static void test_valid_requests(void)
{
    bs_request r;
    bs_proto_error err;
    const char *full = "{\"id\":\"job-1\",\"op\":\"generate\",\"prompt\":\"Once upon\","
                       "\"max_tokens\":12,\"temperature\":0.5,\"top_p\":0.75,\"seed\":42,"
                       "\"stop\":[\"\\n\\n\",\"The end\"],\"stream\":true,"
                       "\"extra\":{\"ignored\":[1,2]}}";
    REQUIRE(bs_proto_parse_request(full, strlen(full), &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_GENERATE);
    CHECK(strcmp(r.id.json, "\"job-1\"") == 0 && r.id.len == 7);
    CHECK(r.prompt_len == 9 && strcmp(r.prompt, "Once upon") == 0);
    CHECK(r.max_tokens == 12);
    CHECK(r.temperature == 0.5 && r.top_p == 0.75);
    CHECK(r.has_seed && r.seed == 42);
    CHECK(r.stream);
    REQUIRE(r.n_stop == 2);
    CHECK(strcmp(r.stop[0], "\n\n") == 0 && strcmp(r.stop[1], "The end") == 0);
    bs_request_free(&r);
    bs_request_free(&r);   /* twice is harmless */

    /* defaults; nulls read as absent; one stop string may be given bare; CRLF line */
    const char *dflt = "{\"op\":\"generate\",\"id\":7,\"prompt\":\"\",\"max_tokens\":null,"
                       "\"seed\":null,\"stop\":\"x\"}\r";
    REQUIRE(bs_proto_parse_request(dflt, strlen(dflt), &L, &r, &err) == 0);
    CHECK(strcmp(r.id.json, "7") == 0);
    CHECK(r.prompt && r.prompt_len == 0);
    CHECK(r.max_tokens == L.default_max_tokens);
    CHECK(r.temperature == BS_PROTO_DEFAULT_TEMPERATURE && r.top_p == BS_PROTO_DEFAULT_TOP_P);
    CHECK(!r.has_seed && !r.stream);
    CHECK(r.n_stop == 1 && strcmp(r.stop[0], "x") == 0);
    bs_request_free(&r);

    /* seeds are any 64-bit integer; negative ones wrap */
    const char *neg = "{\"id\":1,\"op\":\"generate\",\"prompt\":\"a\",\"seed\":-1}";
    REQUIRE(bs_proto_parse_request(neg, strlen(neg), &L, &r, &err) == 0);
    CHECK(r.seed == UINT64_MAX);
    bs_request_free(&r);

    const char *chat = "{\"id\":3,\"op\":\"chat\",\"messages\":[{\"role\":\"system\",\"content\":"
                       "\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\",\"name\":\"x\"},"
                       "{\"role\":\"assistant\",\"content\":\"Hello.\"}],\"temperature\":0}";
    REQUIRE(bs_proto_parse_request(chat, strlen(chat), &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_CHAT && r.n_messages == 3);
    CHECK(r.messages[0].role == BS_ROLE_SYSTEM && strcmp(r.messages[0].content, "Be brief.") == 0);
    CHECK(r.messages[1].role == BS_ROLE_USER && r.messages[1].len == 2);
    CHECK(r.messages[2].role == BS_ROLE_ASSISTANT);
    CHECK(r.temperature == 0);
    bs_request_free(&r);

    const char *cancel = " {\"id\":\"c\",\"op\":\"cancel\",\"target\":\"job-1\"} ";
    REQUIRE(bs_proto_parse_request(cancel, strlen(cancel), &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_CANCEL && strcmp(r.target.json, "\"job-1\"") == 0);
    bs_request_free(&r);
    const char *cancel2 = "{\"id\":\"c\",\"op\":\"cancel\",\"target\":5}";
    REQUIRE(bs_proto_parse_request(cancel2, strlen(cancel2), &L, &r, &err) == 0);
    CHECK(strcmp(r.target.json, "5") == 0);
    bs_request_free(&r);

    const char *ops[] = {"status", "metrics", "budget"};
    bs_op want[] = {BS_OP_STATUS, BS_OP_METRICS, BS_OP_BUDGET};
    for (int i = 0; i < 3; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"%s\"}", i, ops[i]);
        REQUIRE(bs_proto_parse_request(line, strlen(line), &L, &r, &err) == 0);
        CHECK(r.op == want[i]);
        CHECK(strcmp(bs_proto_op_name(r.op), ops[i]) == 0);
        CHECK(!r.has_min && !r.has_max);
        bs_request_free(&r);
    }

    /* blank lines: nothing to answer */
    const char *blanks[] = {"", " ", "\r", "\t \r"};
    for (int i = 0; i < 4; i++) {
        REQUIRE(bs_proto_parse_request(blanks[i], strlen(blanks[i]), &L, &r, &err) == 0);
        CHECK(r.op == BS_OP_NONE);
        bs_request_free(&r);
    }
}

/* A generate/chat/cancel/budget request with one field replaced by a JSON value. */
typedef struct {
    const char *base;
    const char *field;
    const char *value;    /* JSON text; NULL removes the field */
    bs_proto_code want;
} field_case;

#define GEN "{\"id\":1,\"op\":\"generate\",\"prompt\":\"hi\"}"
#define CHAT "{\"id\":1,\"op\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
#define CANCEL "{\"id\":1,\"op\":\"cancel\",\"target\":2}"
#define BUDGET "{\"id\":1,\"op\":\"budget\"}"

static const field_case field_cases[] = {
    /* generate: wrong types */
    {GEN, "prompt", "5", BS_PERR_BAD_REQUEST},
    {GEN, "prompt", "true", BS_PERR_BAD_REQUEST},
    {GEN, "prompt", "[\"a\"]", BS_PERR_BAD_REQUEST},
    {GEN, "prompt", "{}", BS_PERR_BAD_REQUEST},
    {GEN, "prompt", "null", BS_PERR_BAD_REQUEST},
    {GEN, "prompt", NULL, BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "\"10\"", BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "10.0", BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "true", BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "[10]", BS_PERR_BAD_REQUEST},
    {GEN, "temperature", "\"hot\"", BS_PERR_BAD_REQUEST},
    {GEN, "temperature", "false", BS_PERR_BAD_REQUEST},
    {GEN, "temperature", "[0.5]", BS_PERR_BAD_REQUEST},
    {GEN, "top_p", "\"0.9\"", BS_PERR_BAD_REQUEST},
    {GEN, "top_p", "{}", BS_PERR_BAD_REQUEST},
    {GEN, "seed", "1.5", BS_PERR_BAD_REQUEST},
    {GEN, "seed", "\"42\"", BS_PERR_BAD_REQUEST},
    {GEN, "seed", "true", BS_PERR_BAD_REQUEST},
    {GEN, "stream", "1", BS_PERR_BAD_REQUEST},
    {GEN, "stream", "\"true\"", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "5", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "{}", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "[1]", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "[\"a\",null]", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "true", BS_PERR_BAD_REQUEST},
    /* generate: out of range */
    {GEN, "max_tokens", "0", BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "-3", BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "4097", BS_PERR_BAD_REQUEST},
    {GEN, "max_tokens", "99999999999999999", BS_PERR_BAD_REQUEST},
    {GEN, "temperature", "-0.001", BS_PERR_BAD_REQUEST},
    {GEN, "temperature", "-1", BS_PERR_BAD_REQUEST},
    {GEN, "top_p", "0", BS_PERR_BAD_REQUEST},
    {GEN, "top_p", "-0.5", BS_PERR_BAD_REQUEST},
    {GEN, "top_p", "1.0001", BS_PERR_BAD_REQUEST},
    {GEN, "top_p", "2", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "[\"\"]", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "\"\"", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "[\"a\",\"b\",\"c\",\"d\",\"e\"]", BS_PERR_BAD_REQUEST},
    {GEN, "stop", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
     BS_PERR_BAD_REQUEST}, /* 65 bytes */
    /* generate: the edges that are fine */
    {GEN, "max_tokens", "1", BS_PERR_NONE},
    {GEN, "max_tokens", "4096", BS_PERR_NONE},
    {GEN, "temperature", "0", BS_PERR_NONE},
    {GEN, "temperature", "2.5", BS_PERR_NONE},
    {GEN, "top_p", "1", BS_PERR_NONE},
    {GEN, "top_p", "1e-9", BS_PERR_NONE},
    {GEN, "seed", "0", BS_PERR_NONE},
    {GEN, "seed", "9223372036854775807", BS_PERR_NONE},
    {GEN, "stop", "[]", BS_PERR_NONE},
    {GEN, "stop", "[\"a\",\"b\",\"c\",\"d\"]", BS_PERR_NONE},
    {GEN, "stop", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
     BS_PERR_NONE}, /* 64 bytes */
    {GEN, "stream", "false", BS_PERR_NONE},
    {GEN, "messages", "5", BS_PERR_NONE},   /* not a generate field: ignored */
    /* chat */
    {CHAT, "messages", NULL, BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "\"hi\"", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "{}", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[5]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[[]]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"robot\",\"content\":\"x\"}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"User\",\"content\":\"x\"}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":5,\"content\":\"x\"}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"content\":\"x\"}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"user\"}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"user\",\"content\":5}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"user\",\"content\":null}]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"user\",\"content\":\"a\"},7]", BS_PERR_BAD_REQUEST},
    {CHAT, "max_tokens", "0", BS_PERR_BAD_REQUEST},
    {CHAT, "temperature", "-1", BS_PERR_BAD_REQUEST},
    {CHAT, "stop", "[5]", BS_PERR_BAD_REQUEST},
    {CHAT, "messages", "[{\"role\":\"system\",\"content\":\"\"}]", BS_PERR_NONE},
    {CHAT, "prompt", "5", BS_PERR_NONE},     /* not a chat field: ignored */
    /* cancel */
    {CANCEL, "target", NULL, BS_PERR_BAD_REQUEST},
    {CANCEL, "target", "1.5", BS_PERR_BAD_REQUEST},
    {CANCEL, "target", "[]", BS_PERR_BAD_REQUEST},
    {CANCEL, "target", "true", BS_PERR_BAD_REQUEST},
    {CANCEL, "target",
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", /* 65 */
     BS_PERR_BAD_REQUEST},
    {CANCEL, "target", "\"\"", BS_PERR_NONE},
    /* budget */
    {BUDGET, "budget", "\"abc\"", BS_PERR_BAD_REQUEST},
    {BUDGET, "budget", "\"\"", BS_PERR_BAD_REQUEST},
    {BUDGET, "budget", "1.5", BS_PERR_BAD_REQUEST},
    {BUDGET, "budget", "-1", BS_PERR_BAD_REQUEST},
    {BUDGET, "budget", "true", BS_PERR_BAD_REQUEST},
    {BUDGET, "budget", "[\"1K\"]", BS_PERR_BAD_REQUEST},
    {BUDGET, "min", "\"101%\"", BS_PERR_BAD_REQUEST},
    {BUDGET, "max", "\"0bpw\"", BS_PERR_BAD_REQUEST},
    {BUDGET, "budget", "\"40%\"", BS_PERR_NONE},
    {BUDGET, "budget", "1048576", BS_PERR_NONE},
    {BUDGET, "min", "\"min\"", BS_PERR_NONE},
    {BUDGET, "max", "\"2.5M\"", BS_PERR_NONE},
};

static void test_field_errors(void)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof field_cases / sizeof field_cases[0]; i++) {
        const field_case *c = &field_cases[i];
        json_t *root = json_loads(c->base, 0, NULL);
        REQUIRE(root);
        if (c->value) {
            json_t *v = json_loads(c->value, JSON_DECODE_ANY, NULL);
            REQUIRE(v);
            json_object_set_new(root, c->field, v);
        } else {
            json_object_del(root, c->field);
        }
        char *line = json_dumps(root, JSON_COMPACT);
        REQUIRE(line);
        bs_request r;
        bs_proto_error err;
        int rc = bs_proto_parse_request(line, strlen(line), &L, &r, &err);
        bs_proto_code got = rc == 0 ? BS_PERR_NONE : err.code;
        if (got != c->want) {
            bad++;
            fprintf(stderr, "case %zu: %s -> %s (%s), wanted %s\n", i, line,
                    bs_proto_code_name(got), err.message, bs_proto_code_name(c->want));
        }
        if (rc != 0) {
            /* the id was readable, so the error says which request it answers */
            CHECK(strcmp(err.id.json, "1") == 0);
            /* and the message names the field at fault */
            CHECKF(strstr(err.message, c->field) != NULL || strcmp(c->field, "budget") == 0,
                   "%s: %s", c->field, err.message);
        }
        bs_request_free(&r);
        free(line);
        json_decref(root);
    }
    CHECKF(bad == 0, "%d field cases gave the wrong code", bad);

    /* both a budget and min/max; min above max in one unit, or "max" below anything */
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"budget\":\"1K\",\"min\":\"1K\"}") ==
          BS_PERR_BAD_REQUEST);
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"min\":\"2M\",\"max\":\"1M\"}") ==
          BS_PERR_BAD_REQUEST);
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"min\":\"50%\",\"max\":\"40%\"}") ==
          BS_PERR_BAD_REQUEST);
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"min\":\"max\",\"max\":\"10K\"}") ==
          BS_PERR_BAD_REQUEST);
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"min\":\"1M\",\"max\":\"2M\"}") == BS_PERR_NONE);
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"min\":\"min\",\"max\":\"max\"}") == BS_PERR_NONE);
    /* different units are for the daemon to compare */
    CHECK(code_of("{\"id\":1,\"op\":\"budget\",\"min\":\"90%\",\"max\":\"1K\"}") == BS_PERR_NONE);

    /* 65 messages; a custom limit */
    json_t *msgs = json_array();
    for (int i = 0; i < 65; i++)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", "x"));
    json_t *root = json_pack("{s:i,s:s,s:o}", "id", 1, "op", "chat", "messages", msgs);
    char *line = json_dumps(root, JSON_COMPACT);
    CHECK(code_of(line) == BS_PERR_BAD_REQUEST);
    json_array_remove(msgs, 0);
    free(line);
    line = json_dumps(root, JSON_COMPACT);
    CHECK(code_of(line) == BS_PERR_NONE);
    bs_proto_limits small = L;
    small.max_messages = 3;
    bs_request r;
    bs_proto_error err;
    CHECK(bs_proto_parse_request(line, strlen(line), &small, &r, &err) == -1);
    CHECK(err.code == BS_PERR_BAD_REQUEST);
    bs_request_free(&r);
    free(line);
    json_decref(root);

    small = L;
    small.max_tokens = 10;
    const char *mt = "{\"id\":1,\"op\":\"generate\",\"prompt\":\"a\",\"max_tokens\":11}";
    CHECK(bs_proto_parse_request(mt, strlen(mt), &small, &r, &err) == -1);
    bs_request_free(&r);
    CHECK(code_of(mt) == BS_PERR_NONE);
}

static void test_structure_errors(void)
{
    /* not JSON at all, or broken JSON */
    const char *bad_json[] = {
        "{", "}", "{\"id\":1,\"op\":", "not json", "{\"id\":1,\"op\":\"status\"} x",
        "{\"id\":1,\"op\":\"status\"}{}", "{'id':1}", "{\"id\":1,}", "{\"id\":01,\"op\":\"status\"}",
        "{\"id\":1,\"op\":\"status\",\"id\":2}",           /* duplicate key */
        "{\"id\":\"a\\u0000b\",\"op\":\"status\"}",         /* NUL inside a string */
        "{\"id\":\"\xff\xfe\",\"op\":\"status\"}",          /* invalid UTF-8 */
        "{\"id\":\"\xed\xa0\x80\",\"op\":\"status\"}",      /* a UTF-16 surrogate */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"\x01\"}", /* raw control byte */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"a\nb\"}",
        "{\"id\":1e999,\"op\":\"status\"}",
        "\xef\xbb\xbf{\"id\":1,\"op\":\"status\"}",         /* a BOM is not whitespace */
        "NaN", "[1,2", "\"unterminated",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++)
        CHECKF(code_of(bad_json[i]) == BS_PERR_BAD_JSON, "%s", bad_json[i]);

    /* NUL bytes in the line itself */
    CHECK(code_of_n("\0", 1) == BS_PERR_BAD_JSON);
    CHECK(code_of_n("{\"id\":1,\"op\":\"status\"}\0", 24) == BS_PERR_BAD_JSON);
    CHECK(code_of_n("{\"id\":1,\0\"op\":\"status\"}", 24) == BS_PERR_BAD_JSON);

    /* nesting deep enough to exhaust a recursive parser's stack is refused, not followed */
    char *deep = malloc(60000);
    REQUIRE(deep);
    memset(deep, '[', 60000);
    CHECK(code_of_n(deep, 60000) == BS_PERR_BAD_JSON);
    memcpy(deep, "{\"id\":1,\"op\":\"status\",\"x\":", 26);
    CHECK(code_of_n(deep, 60000) == BS_PERR_BAD_JSON);
    free(deep);

    /* JSON, but not a request object */
    const char *not_obj[] = {"[1,2]", "[]", "\"str\"", "5", "null", "true", "-0.5"};
    for (size_t i = 0; i < sizeof not_obj / sizeof not_obj[0]; i++)
        CHECKF(code_of(not_obj[i]) == BS_PERR_BAD_REQUEST, "%s", not_obj[i]);

    /* id and op */
    const char *bad_req[] = {
        "{}", "{\"op\":\"status\"}", "{\"id\":null,\"op\":\"status\"}",
        "{\"id\":1.5,\"op\":\"status\"}", "{\"id\":true,\"op\":\"status\"}",
        "{\"id\":[1],\"op\":\"status\"}", "{\"id\":{},\"op\":\"status\"}",
        ("{\"id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
         "\"op\":\"status\"}"),
        "{\"id\":1}", "{\"id\":1,\"op\":null}", "{\"id\":1,\"op\":5}", "{\"id\":1,\"op\":[\"status\"]}",
    };
    for (size_t i = 0; i < sizeof bad_req / sizeof bad_req[0]; i++)
        CHECKF(code_of(bad_req[i]) == BS_PERR_BAD_REQUEST, "%s", bad_req[i]);

    const char *unknown[] = {
        "{\"id\":1,\"op\":\"frobnicate\"}", "{\"id\":1,\"op\":\"\"}", "{\"id\":1,\"op\":\"STATUS\"}",
        "{\"id\":1,\"op\":\"status \"}",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        CHECKF(code_of(unknown[i]) == BS_PERR_UNKNOWN_OP, "%s", unknown[i]);

    /* line length: the limit itself is fine, one more byte is not */
    char *line = malloc(L.max_line + 2);
    REQUIRE(line);
    const char *req = "{\"id\":1,\"op\":\"status\"}";
    memset(line, ' ', L.max_line + 1);
    memcpy(line, req, strlen(req));
    CHECK(code_of_n(line, L.max_line) == BS_PERR_NONE);
    CHECK(code_of_n(line, L.max_line + 1) == BS_PERR_LINE_TOO_LONG);
    free(line);

    /* prompt bytes: the limit itself is fine, one more is prompt_too_long */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = L.max_prompt_bytes + (size_t)extra;
        char *p = malloc(n + 1);
        REQUIRE(p);
        memset(p, 'a', n);
        p[n] = '\0';
        json_t *root = json_pack("{s:i,s:s,s:s}", "id", 1, "op", "generate", "prompt", p);
        char *s = json_dumps(root, JSON_COMPACT);
        CHECK(code_of(s) == (extra ? BS_PERR_PROMPT_TOO_LONG : BS_PERR_NONE));
        free(s);
        json_decref(root);
        /* chat counts the content of all messages together */
        root = json_pack("{s:i,s:s,s:[{s:s,s:s#},{s:s,s:s#}]}", "id", 1, "op", "chat",
                         "messages", "role", "system", "content", p, (int)(n / 2),
                         "role", "user", "content", p, (int)(n - n / 2));
        REQUIRE(root);
        s = json_dumps(root, JSON_COMPACT);
        CHECK(code_of(s) == (extra ? BS_PERR_PROMPT_TOO_LONG : BS_PERR_NONE));
        free(s);
        json_decref(root);
        free(p);
    }

    /* binary garbage: always an error (never a crash), and its message goes out as one
     * valid JSON line even when it quotes the garbage */
    int odd = 0;
    bs_proto_buf b = {0};
    for (int i = 0; i < 3000; i++) {
        char g[80];
        size_t n = 1 + rnd() % sizeof g;
        for (size_t k = 0; k < n; k++)
            g[k] = (char)(rnd() >> 32);
        if (i % 3 == 0)
            g[0] = '{';   /* get past the first byte sometimes */
        bs_request r;
        bs_proto_error err;
        int rc = bs_proto_parse_request(g, n, &L, &r, &err);
        bs_request_free(&r);
        if (rc == 0) {
            odd += r.op != BS_OP_NONE;
            continue;
        }
        odd += err.code != BS_PERR_BAD_JSON && err.code != BS_PERR_BAD_REQUEST;
        size_t start = b.len;
        REQUIRE(bs_proto_encode_error(&b, &err.id, err.code, err.message, NULL) == 0);
        json_decref(load_line(&b, start));
        b.len = 0;
    }
    CHECK(odd == 0);
    bs_proto_buf_free(&b);
}

/* The id is echoed as it came (its JSON form), in errors too; an unreadable id is null. */
static void test_id_echo(void)
{
    struct {
        const char *line;
        const char *want;   /* the id's canonical JSON text, NULL: no id */
        bs_proto_code code;
    } cases[] = {
        {"{\"id\":\"job-1\",\"op\":\"frobnicate\"}", "\"job-1\"", BS_PERR_UNKNOWN_OP},
        {"{\"id\":42,\"op\":\"generate\"}", "42", BS_PERR_BAD_REQUEST},
        {"{\"id\":-7,\"op\":\"generate\",\"prompt\":5}", "-7", BS_PERR_BAD_REQUEST},
        {"{\"id\":0,\"op\":\"status\",\"x\":1}", "0", BS_PERR_NONE},
        {"{\"op\":\"status\",\"id\":\"a\\\"b\\u00e9\\n\"}", "\"a\\\"b\xc3\xa9\\n\"", BS_PERR_NONE},
        {"{\"id\":\"\\u0041\",\"op\":\"nope\"}", "\"A\"", BS_PERR_UNKNOWN_OP},
        {"{\"id\":9223372036854775807,\"op\":\"status\"}", "9223372036854775807", BS_PERR_NONE},
        {"{\"id\":1.5,\"op\":\"status\"}", NULL, BS_PERR_BAD_REQUEST},
        {"{\"id\":", NULL, BS_PERR_BAD_JSON},
    };
    bs_proto_buf b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_request r;
        bs_proto_error err;
        int rc = bs_proto_parse_request(cases[i].line, strlen(cases[i].line), &L, &r, &err);
        CHECKF((rc == 0 ? BS_PERR_NONE : err.code) == cases[i].code, "%s", cases[i].line);
        const bs_proto_id *id = rc == 0 ? &r.id : &err.id;
        if (cases[i].want)
            CHECKF(strcmp(id->json, cases[i].want) == 0 && id->len == strlen(cases[i].want),
                   "%s: id %s", cases[i].line, id->json);
        else
            CHECK(id->len == 0);
        /* the answer's id, read by jansson, equals the request's id, read by jansson */
        b.len = 0;
        REQUIRE(bs_proto_encode_error(&b, id, err.code ? err.code : BS_PERR_BUSY, NULL, NULL) == 0);
        json_t *ans = load_line(&b, 0);
        json_t *req = json_loads(cases[i].line, 0, NULL);
        json_t *want_id = cases[i].want ? json_object_get(req, "id") : NULL;
        json_t *got_id = json_object_get(ans, "id");
        if (want_id)
            CHECKF(json_equal(want_id, got_id), "%s", b.data);
        else
            CHECK(json_is_null(got_id));
        json_decref(ans);
        json_decref(req);
        bs_request_free(&r);
    }
    bs_proto_buf_free(&b);

    bs_proto_id a, c;
    bs_err e;
    bs_proto_id_int(&a, 42);
    CHECK(bs_proto_id_str(&c, "42", 2, &e) == 0);
    CHECK(!bs_proto_id_eq(&a, &c));   /* 42 and "42" are different ids */
    bs_proto_id_int(&c, 42);
    CHECK(bs_proto_id_eq(&a, &c));
    char big[BS_PROTO_ID_MAX + 1];
    memset(big, 1, sizeof big);       /* control bytes: the longest escaped form */
    CHECK(bs_proto_id_str(&c, big, BS_PROTO_ID_MAX, &e) == 0);
    CHECK(c.len == 6 * BS_PROTO_ID_MAX + 2 && c.json[c.len] == '\0');
    CHECK(bs_proto_id_str(&c, big, BS_PROTO_ID_MAX + 1, &e) == -1);
    CHECK(bs_proto_id_str(&c, "\xc3", 1, &e) == -1);
}

static void test_budget(void)
{
    struct {
        const char *s;
        bs_budget_kind kind;
        uint64_t bytes;
        double value;
    } ok[] = {
        {"180K", BS_BUDGET_BYTES, 180 * 1024, 0},
        {"180k", BS_BUDGET_BYTES, 180 * 1024, 0},
        {"2.5M", BS_BUDGET_BYTES, 2621440, 0},
        {"1G", BS_BUDGET_BYTES, 1073741824, 0},
        {"0.5K", BS_BUDGET_BYTES, 512, 0},
        {"1048576", BS_BUDGET_BYTES, 1048576, 0},
        {"0", BS_BUDGET_BYTES, 0, 0},
        {"40%", BS_BUDGET_PERCENT, 0, 40},
        {"12.5%", BS_BUDGET_PERCENT, 0, 12.5},
        {"100%", BS_BUDGET_PERCENT, 0, 100},
        {"4.0bpw", BS_BUDGET_BPW, 0, 4},
        {"0.25BPW", BS_BUDGET_BPW, 0, 0.25},
        {"32bpw", BS_BUDGET_BPW, 0, 32},
        {"min", BS_BUDGET_MIN, 0, 0},
        {"max", BS_BUDGET_MAX, 0, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bs_budget b;
        bs_err e;
        int rc = bs_proto_parse_budget(ok[i].s, &b, &e);
        CHECKF(rc == 0, "%s: %s", ok[i].s, rc ? e.msg : "");
        CHECKF(b.kind == ok[i].kind && b.bytes == ok[i].bytes, "%s", ok[i].s);
        CHECK_NEAR(b.value, ok[i].value, 1e-12);
        CHECK(strcmp(b.text, ok[i].s) == 0);
    }
    const char *bad[] = {
        "", "abc", "-5", "+5", "1.5", "1.", ".5", "101%", "0bpw", "33bpw", "5X", "5KB", "1e3",
        " 5", "5 ", "nan", "inf", "MIN", "max ", "1..5K", "99999999999999999999",
        "9000000000G", "40 %", "4 bpw", "%", "K", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bs_budget b;
        bs_err e = {{0}};
        CHECKF(bs_proto_parse_budget(bad[i], &b, &e) == -1, "'%s' accepted", bad[i]);
        CHECK(e.msg[0] != '\0');
    }

    /* in a request: budget pins both ends; an integer is bytes */
    bs_request r;
    bs_proto_error err;
    const char *pin = "{\"id\":1,\"op\":\"budget\",\"budget\":\"4bpw\"}";
    REQUIRE(bs_proto_parse_request(pin, strlen(pin), &L, &r, &err) == 0);
    CHECK(r.has_min && r.has_max && r.min.kind == BS_BUDGET_BPW && r.max.kind == BS_BUDGET_BPW);
    CHECK(strcmp(r.max.text, "4bpw") == 0);
    bs_request_free(&r);
    const char *both = "{\"id\":1,\"op\":\"budget\",\"min\":200000,\"max\":\"max\"}";
    REQUIRE(bs_proto_parse_request(both, strlen(both), &L, &r, &err) == 0);
    CHECK(r.has_min && r.min.kind == BS_BUDGET_BYTES && r.min.bytes == 200000);
    CHECK(strcmp(r.min.text, "200000") == 0);
    CHECK(r.has_max && r.max.kind == BS_BUDGET_MAX);
    bs_request_free(&r);
    const char *one = "{\"id\":1,\"op\":\"budget\",\"max\":\"50%\",\"min\":null}";
    REQUIRE(bs_proto_parse_request(one, strlen(one), &L, &r, &err) == 0);
    CHECK(!r.has_min && r.has_max && r.max.value == 50);
    bs_request_free(&r);

    CHECK(!r.has_auto && !r.auto_);

    /* auto: only a JSON true, and alone; null is absent */
    const char *aut = "{\"id\":1,\"op\":\"budget\",\"auto\":true}";
    REQUIRE(bs_proto_parse_request(aut, strlen(aut), &L, &r, &err) == 0);
    CHECK(r.has_auto && r.auto_ && !r.has_min && !r.has_max);
    bs_request_free(&r);
    const char *anull = "{\"id\":1,\"op\":\"budget\",\"auto\":null}";
    REQUIRE(bs_proto_parse_request(anull, strlen(anull), &L, &r, &err) == 0);
    CHECK(!r.has_auto && !r.has_min && !r.has_max);
    bs_request_free(&r);
    const char *abad[] = {
        "{\"id\":1,\"op\":\"budget\",\"auto\":false}",
        "{\"id\":1,\"op\":\"budget\",\"auto\":1}",
        "{\"id\":1,\"op\":\"budget\",\"auto\":\"true\"}",
        "{\"id\":1,\"op\":\"budget\",\"auto\":true,\"budget\":\"30%\"}",
        "{\"id\":1,\"op\":\"budget\",\"auto\":true,\"min\":\"1M\"}",
        "{\"id\":1,\"op\":\"budget\",\"auto\":true,\"max\":\"max\"}",
        "{\"id\":1,\"op\":\"budget\",\"auto\":false,\"min\":\"1M\"}",
    };
    for (size_t i = 0; i < sizeof abad / sizeof abad[0]; i++) {
        CHECKF(bs_proto_parse_request(abad[i], strlen(abad[i]), &L, &r, &err) == -1 &&
                   err.code == BS_PERR_BAD_REQUEST && strstr(err.message, "auto") != NULL,
               "%s: %s", abad[i], err.message);
        CHECK(!r.has_auto && !r.has_min && !r.has_max);
        bs_request_free(&r);
    }
    /* auto is a budget field: other ops ignore it */
    const char *st = "{\"id\":1,\"op\":\"status\",\"auto\":false}";
    REQUIRE(bs_proto_parse_request(st, strlen(st), &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_STATUS && !r.has_auto);
    bs_request_free(&r);
}

/* ---- responses --------------------------------------------------------------------- */

/* Encodes text as a token line and returns what a JSON reader sees in "token". */
static char *token_roundtrip(const char *text, size_t n, size_t *out_len)
{
    bs_proto_buf b = {0};
    bs_proto_id id;
    bs_proto_id_int(&id, 5);
    REQUIRE(bs_proto_encode_token(&b, &id, text, n, NULL) == 0);
    json_t *v = load_line(&b, 0);
    CHECK(json_integer_value(json_object_get(v, "id")) == 5);
    json_t *t = json_object_get(v, "token");
    REQUIRE(json_is_string(t));
    *out_len = json_string_length(t);
    char *s = malloc(*out_len + 1);
    memcpy(s, json_string_value(t), *out_len + 1);
    json_decref(v);
    bs_proto_buf_free(&b);
    return s;
}

static void test_token_utf8(void)
{
    struct {
        const char *in;
        size_t n;
        const char *want;
        size_t wn;
    } cases[] = {
#define S(x) x, sizeof x - 1
        {S("hello"), S("hello")},
        {S("quote\" back\\ nl\n cr\r tab\t"), S("quote\" back\\ nl\n cr\r tab\t")},
        {S("nul\0bel\x07 del\x7f"), S("nul\0bel\x07 del\x7f")},
        {S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")},
        {S("a\xff" "b"), S("a\xef\xbf\xbd" "b")},
        {S("\xe2\x82"), S("\xef\xbf\xbd")},                 /* a cut 3-byte character */
        {S("\xc0\xaf"), S("\xef\xbf\xbd\xef\xbf\xbd")},    /* overlong '/' */
        {S("\xed\xa0\x80"), S("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd")}, /* surrogate */
        {S("\xf4\x90\x80\x80"), S("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd")},
        /* Unicode 15, table 3-8: U+FFFD for each maximal subpart */
        {S("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64"),
         S("a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d")},
#undef S
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        char *got = token_roundtrip(cases[i].in, cases[i].n, &n);
        CHECKF(n == cases[i].wn && memcmp(got, cases[i].want, n) == 0, "case %zu", i);
        free(got);
    }

    /* random bytes: the line is always valid JSON; whenever jansson itself accepts the
     * bytes as UTF-8, they come back unchanged */
    int valid_inputs = 0, changed = 0;
    for (int i = 0; i < 4000; i++) {
        char in[24];
        size_t n = rnd() % sizeof in;
        for (size_t k = 0; k < n; k++) {
            uint64_t x = rnd();
            /* mostly UTF-8-looking bytes, so valid multi-byte sequences occur too */
            in[k] = (char)(i % 2 ? (x >> 32) : (x % 3 ? 0x80 + (x >> 40) % 64 : 0xc2 + (x >> 40) % 50));
        }
        size_t m;
        char *got = token_roundtrip(in, n, &m);
        json_t *probe = json_stringn(in, n);
        if (probe) {
            valid_inputs++;
            changed += m != n || memcmp(got, in, n) != 0;
        }
        json_decref(probe);
        free(got);
    }
    CHECK(valid_inputs > 100);
    CHECK(changed == 0);

    /* boundary: hold back only an incomplete but so-far valid tail */
    CHECK(bs_proto_utf8_boundary("abc\xe2\x82", 5) == 3);
    CHECK(bs_proto_utf8_boundary("abc\xe2", 4) == 3);
    CHECK(bs_proto_utf8_boundary("\xe2\x82\xac", 3) == 3);
    CHECK(bs_proto_utf8_boundary("a\xf0\x9f", 3) == 1);
    CHECK(bs_proto_utf8_boundary("a\xf0\x9f\x98", 4) == 1);
    CHECK(bs_proto_utf8_boundary("\xff", 1) == 1);
    CHECK(bs_proto_utf8_boundary("a\xe2\x28", 3) == 3);
    CHECK(bs_proto_utf8_boundary("\xe0\x80", 2) == 2);   /* can never be valid */
    CHECK(bs_proto_utf8_boundary("", 0) == 0);

    /* a text streamed a byte at a time, tail carried over as the daemon should, arrives
     * whole through token lines */
    const char text[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e z\xe4\xb8\xad";
    char carry[8];
    size_t nc = 0;
    bs_proto_buf b = {0};
    char out[64];
    size_t no = 0;
    for (size_t i = 0; i < sizeof text - 1; i++) {
        char piece[16];
        memcpy(piece, carry, nc);
        piece[nc] = text[i];
        size_t pn = nc + 1;
        size_t cut = bs_proto_utf8_boundary(piece, pn);
        REQUIRE(pn - cut < sizeof carry);
        nc = pn - cut;
        memcpy(carry, piece + cut, nc);
        b.len = 0;
        REQUIRE(bs_proto_encode_token(&b, NULL, piece, cut, NULL) == 0);
        bs_response resp;
        REQUIRE(bs_proto_parse_response(b.data, b.len - 1, &resp, NULL) == 0);
        CHECK(resp.kind == BS_RESP_TOKEN && resp.id.len == 0);
        REQUIRE(no + resp.text_len < sizeof out);
        memcpy(out + no, resp.text, resp.text_len);
        no += resp.text_len;
        bs_response_free(&resp);
    }
    CHECK(nc == 0);
    CHECK(no == sizeof text - 1 && memcmp(out, text, no) == 0);

    /* the hot path: same-size token lines reuse the buffer without growing it */
    b.len = 0;
    bs_proto_id id;
    bs_proto_id_str(&id, "stream-7", 8, NULL);
    REQUIRE(bs_proto_encode_token(&b, &id, " word", 5, NULL) == 0);
    char *data = b.data;
    size_t cap = b.cap;
    for (int i = 0; i < 1000; i++) {
        b.len = 0;
        REQUIRE(bs_proto_encode_token(&b, &id, " word", 5, NULL) == 0);
    }
    CHECK(b.data == data && b.cap == cap);
    CHECK(strcmp(b.data, "{\"id\":\"stream-7\",\"token\":\" word\"}\n") == 0);
    bs_proto_buf_free(&b);
}

static void test_done_error_result(void)
{
    bs_proto_buf b = {0};
    bs_proto_id id;
    bs_proto_id_str(&id, "g1", 2, NULL);
    bs_proto_stats st = {
        .prompt_tokens = 12, .generated_tokens = 40, .tokens_per_s = 31.25, .ttft_ms = 85.5,
        .total_ms = 1365.123456, .stack_n_min = 100, .stack_n_max = 180, .stack_total = 224,
        .resident_bytes_min = 1 << 20, .resident_bytes_max = 3LL << 30, .resize_events = 2,
        .seed = UINT64_MAX - 5, .finish_reason = BS_FINISH_STOP,
    };
    /* two lines into one buffer: a streamed done (no text), then a whole one */
    REQUIRE(bs_proto_encode_done(&b, &id, NULL, 0, &st, NULL) == 0);
    size_t second = b.len;
    REQUIRE(bs_proto_encode_done(&b, &id, "Once upon a time", 16, &st, NULL) == 0);
    CHECK(b.data[b.len] == '\0');

    json_t *v = load_line(&(bs_proto_buf){b.data, second, 0}, 0);
    CHECK(json_is_true(json_object_get(v, "done")));
    CHECK(json_object_get(v, "text") == NULL);
    json_t *s = json_object_get(v, "stats");
    const char *ikeys[] = {"prompt_tokens", "generated_tokens", "stack_n_min", "stack_n_max",
                           "stack_total", "resident_bytes_min", "resident_bytes_max",
                           "resize_events", "seed"};
    for (size_t i = 0; i < sizeof ikeys / sizeof ikeys[0]; i++)
        CHECKF(json_is_integer(json_object_get(s, ikeys[i])), "%s", ikeys[i]);
    CHECK(json_integer_value(json_object_get(s, "resident_bytes_max")) == 3LL << 30);
    CHECK(json_number_value(json_object_get(s, "tokens_per_s")) == 31.25);
    CHECK(json_number_value(json_object_get(s, "total_ms")) == 1365.123);  /* to the us */
    CHECK(strcmp(json_string_value(json_object_get(s, "finish_reason")), "stop") == 0);
    json_decref(v);
    v = load_line(&b, second);
    CHECK(strcmp(json_string_value(json_object_get(v, "text")), "Once upon a time") == 0);
    json_decref(v);

    /* the client helper reads back what was written */
    bs_response r;
    bs_err e;
    REQUIRE(bs_proto_parse_response(b.data + second, b.len - second - 1, &r, &e) == 0);
    CHECK(r.kind == BS_RESP_DONE && bs_proto_id_eq(&r.id, &id));
    CHECK(r.text_len == 16 && strcmp(r.text, "Once upon a time") == 0);
    CHECK(r.stats.prompt_tokens == 12 && r.stats.generated_tokens == 40);
    CHECK(r.stats.tokens_per_s == 31.25 && r.stats.ttft_ms == 85.5);
    CHECK(r.stats.stack_n_min == 100 && r.stats.stack_n_max == 180 && r.stats.stack_total == 224);
    CHECK(r.stats.resident_bytes_min == 1 << 20 && r.stats.resident_bytes_max == 3LL << 30);
    CHECK(r.stats.resize_events == 2 && r.stats.seed == UINT64_MAX - 5);
    CHECK(r.stats.finish_reason == BS_FINISH_STOP);
    bs_response_free(&r);
    REQUIRE(bs_proto_parse_response(b.data, second - 1, &r, &e) == 0);
    CHECK(r.kind == BS_RESP_DONE && r.text == NULL);
    bs_response_free(&r);

    /* every finish reason survives; a non-finite rate goes out as 0 */
    for (int f = 0; f < BS_FINISH_COUNT; f++) {
        b.len = 0;
        st.finish_reason = (bs_finish)f;
        st.tokens_per_s = f % 2 ? INFINITY : NAN;
        REQUIRE(bs_proto_encode_done(&b, NULL, NULL, 0, &st, NULL) == 0);
        REQUIRE(bs_proto_parse_response(b.data, b.len - 1, &r, &e) == 0);
        CHECK(r.stats.finish_reason == (bs_finish)f && r.stats.tokens_per_s == 0);
        CHECK(r.id.len == 0);
        bs_response_free(&r);
    }

    /* every error code, with awkward messages */
    for (int c = 1; c < BS_PERR_COUNT; c++) {
        b.len = 0;
        const char *msg = c % 2 ? "line\none \"two\" \xff" : NULL;
        REQUIRE(bs_proto_encode_error(&b, &id, (bs_proto_code)c, msg, NULL) == 0);
        v = load_line(&b, 0);
        json_t *err = json_object_get(v, "error");
        CHECK(strcmp(json_string_value(json_object_get(err, "code")),
                     bs_proto_code_name((bs_proto_code)c)) == 0);
        json_decref(v);
        REQUIRE(bs_proto_parse_response(b.data, b.len - 1, &r, &e) == 0);
        CHECK(r.kind == BS_RESP_ERROR && r.code == (bs_proto_code)c);
        CHECK(bs_proto_code_from_name(r.code_name) == (bs_proto_code)c);
        CHECK(strcmp(r.message, msg ? "line\none \"two\" \xef\xbf\xbd" :
                                      bs_proto_code_name((bs_proto_code)c)) == 0);
        bs_response_free(&r);
    }
    CHECK(bs_proto_code_from_name("teapot") == BS_PERR_NONE);

    /* result lines carry the daemon's object as it is */
    json_t *res = json_pack("{s:i,s:s,s:{s:[i,i]},s:f}", "stack_n", 180, "model",
                            "st\xc3\xb6ries\n", "budget", "range", 1, 2, "psi", 0.25);
    b.len = 0;
    REQUIRE(bs_proto_encode_result(&b, &id, res, NULL) == 0);
    v = load_line(&b, 0);
    CHECK(json_equal(json_object_get(v, "result"), res));
    json_decref(v);
    REQUIRE(bs_proto_parse_response(b.data, b.len - 1, &r, &e) == 0);
    CHECK(r.kind == BS_RESP_RESULT && json_equal(r.result, res));
    bs_response_free(&r);
    json_decref(res);
    /* not an object: refused, buffer untouched */
    size_t len = b.len;
    json_t *arr = json_array();
    CHECK(bs_proto_encode_result(&b, &id, arr, &e) == -1);
    CHECK(b.len == len);
    json_decref(arr);
    bs_proto_buf_free(&b);

    /* lines that are not responses */
    const char *bad[] = {
        "", "x", "[1]", "5", "{\"id\":1}", "{\"id\":1.5,\"token\":\"x\"}", "{\"id\":[],\"token\":\"x\"}",
        "{\"id\":1,\"token\":5}", "{\"id\":1,\"done\":false,\"stats\":{\"finish_reason\":\"eos\"}}",
        "{\"id\":1,\"done\":true}", "{\"id\":1,\"done\":true,\"stats\":{\"finish_reason\":\"bored\"}}",
        "{\"id\":1,\"done\":true,\"stats\":[]}", "{\"id\":1,\"error\":{\"message\":\"m\"}}",
        "{\"id\":1,\"error\":{\"code\":\"busy\"}}",
        ("{\"id\":1,\"done\":true,\"text\":5,\"stats\":{\"finish_reason\":\"eos\"}}"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(bs_proto_parse_response(bad[i], strlen(bad[i]), &r, &e) == -1, "%s", bad[i]);
        CHECK(r.text == NULL && r.message == NULL && r.result == NULL);
    }
    /* a code this build does not know still reads */
    const char *teapot = "{\"id\":\"x\",\"error\":{\"code\":\"teapot\",\"message\":\"short\"}}";
    REQUIRE(bs_proto_parse_response(teapot, strlen(teapot), &r, &e) == 0);
    CHECK(r.code == BS_PERR_NONE && strcmp(r.code_name, "teapot") == 0);
    CHECK(strcmp(r.message, "short") == 0);
    bs_response_free(&r);
}

/* Client-built request lines parse back to the same request. */
static void test_request_roundtrip(void)
{
    bs_proto_buf b = {0};
    bs_request q, r;
    bs_proto_error err;
    bs_err e;

    bs_request_init(&q, &L);
    q.op = BS_OP_GENERATE;
    bs_proto_id_str(&q.id, "gen \"1\"", 7, NULL);
    q.prompt = strdup("Tell me\na story \xe2\x80\x94 please");
    q.prompt_len = strlen(q.prompt);
    q.max_tokens = 77;
    q.temperature = 0.7;
    q.top_p = 0.95;
    q.has_seed = true;
    q.seed = 0xfedcba9876543210ull;   /* above 2^63: goes out negative, comes back */
    q.stream = true;
    q.n_stop = 2;
    q.stop = calloc(2, sizeof *q.stop);
    q.stop[0] = strdup("\nUser:");
    q.stop[1] = strdup("END");
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    json_decref(load_line(&b, 0));
    REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_GENERATE && bs_proto_id_eq(&r.id, &q.id));
    CHECK(r.prompt_len == q.prompt_len && strcmp(r.prompt, q.prompt) == 0);
    CHECK(r.max_tokens == 77 && r.temperature == 0.7 && r.top_p == 0.95);
    CHECK(r.has_seed && r.seed == q.seed && r.stream);
    CHECK(r.n_stop == 2 && strcmp(r.stop[0], "\nUser:") == 0 && strcmp(r.stop[1], "END") == 0);
    bs_request_free(&r);
    bs_request_free(&q);

    /* chat */
    bs_request_init(&q, NULL);
    q.op = BS_OP_CHAT;
    bs_proto_id_int(&q.id, -3);
    q.n_messages = 2;
    q.messages = calloc(2, sizeof *q.messages);
    q.messages[0] = (bs_chat_msg){BS_ROLE_SYSTEM, strdup("You are terse."), 14};
    q.messages[1] = (bs_chat_msg){BS_ROLE_USER, strdup("Hi?"), 3};
    q.temperature = 0;
    b.len = 0;
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_CHAT && strcmp(r.id.json, "-3") == 0 && r.n_messages == 2);
    CHECK(r.messages[0].role == BS_ROLE_SYSTEM && strcmp(r.messages[0].content, "You are terse.") == 0);
    CHECK(r.messages[1].role == BS_ROLE_USER && strcmp(r.messages[1].content, "Hi?") == 0);
    CHECK(r.temperature == 0 && !r.has_seed && !r.stream && r.n_stop == 0);
    CHECK(r.max_tokens == q.max_tokens);
    bs_request_free(&r);
    bs_request_free(&q);

    /* cancel, budget, status, metrics */
    bs_request_init(&q, NULL);
    q.op = BS_OP_CANCEL;
    bs_proto_id_int(&q.id, 9);
    bs_proto_id_str(&q.target, "gen \"1\"", 7, NULL);
    b.len = 0;
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_CANCEL && bs_proto_id_eq(&r.target, &q.target));
    bs_request_free(&r);

    q.op = BS_OP_BUDGET;
    q.has_min = true;
    REQUIRE(bs_proto_parse_budget("180K", &q.min, NULL) == 0);
    b.len = 0;
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_BUDGET && r.has_min && !r.has_max);
    CHECK(r.min.kind == BS_BUDGET_BYTES && r.min.bytes == 184320);
    bs_request_free(&r);

    /* the same budget at both ends goes out as "budget" (fixed); different ones as min/max */
    q.has_max = true;
    q.max = q.min;
    b.len = 0;
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    CHECK(strstr(b.data, "\"budget\":\"180K\"") && !strstr(b.data, "\"min\""));
    REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
    CHECK(r.has_min && r.has_max && r.min.bytes == 184320 && r.max.bytes == 184320 && !r.has_auto);
    bs_request_free(&r);
    REQUIRE(bs_proto_parse_budget("max", &q.max, NULL) == 0);
    b.len = 0;
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    CHECK(strstr(b.data, "\"min\":\"180K\",\"max\":\"max\"") && !strstr(b.data, "budget\":"));

    /* auto: alone, as true */
    q.has_min = q.has_max = false;
    q.has_auto = q.auto_ = true;
    b.len = 0;
    REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
    CHECK(strstr(b.data, "\"auto\":true") != NULL);
    REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
    CHECK(r.op == BS_OP_BUDGET && r.has_auto && r.auto_ && !r.has_min && !r.has_max);
    bs_request_free(&r);
    q.has_min = true;   /* auto with a bound is no request of this protocol */
    b.len = 0;
    CHECK(bs_proto_encode_request(&b, &q, &e) == -1 && b.len == 0);
    q.has_min = q.has_auto = q.auto_ = false;

    bs_op plain[] = {BS_OP_STATUS, BS_OP_METRICS};
    for (int i = 0; i < 2; i++) {
        q.op = plain[i];
        b.len = 0;
        REQUIRE(bs_proto_encode_request(&b, &q, &e) == 0);
        REQUIRE(bs_proto_parse_request(b.data, b.len - 1, &L, &r, &err) == 0);
        CHECK(r.op == plain[i]);
        bs_request_free(&r);
    }

    /* no id or no op: refused, nothing written */
    q.op = BS_OP_NONE;
    b.len = 0;
    CHECK(bs_proto_encode_request(&b, &q, &e) == -1 && b.len == 0);
    q.op = BS_OP_STATUS;
    q.id.len = 0;
    CHECK(bs_proto_encode_request(&b, &q, &e) == -1 && b.len == 0);
    bs_proto_buf_free(&b);
}

static void test_chat(void)
{
    bs_chat_msg m[] = {
        {BS_ROLE_SYSTEM, "You are a helpful assistant.", 28},
        {BS_ROLE_USER, "Hi!", 3},
        {BS_ROLE_ASSISTANT, "Hello. How can I help?", 22},
        {BS_ROLE_USER, "Tell me a story.", 16},
    };
    size_t len;
    bs_err e;
    char *p = bs_chat_render(m, 4, &len, &e);
    REQUIRE(p);
    const char *want = "You are a helpful assistant.\n\n"
                       "User: Hi!\n"
                       "Assistant: Hello. How can I help?\n"
                       "User: Tell me a story.\n"
                       "Assistant:";
    CHECKF(strcmp(p, want) == 0, "rendered:\n%s", p);
    CHECK(len == strlen(want));
    CHECK(len <= 28 + 3 + 22 + 16 + bs_chat_overhead(4));
    free(p);

    /* one user message: the shortest conversation */
    p = bs_chat_render(&m[1], 1, &len, &e);
    REQUIRE(p);
    CHECK(strcmp(p, "User: Hi!\nAssistant:") == 0);
    free(p);

    /* ending with the assistant: its turn stays open for the model to continue */
    p = bs_chat_render(m, 3, &len, &e);
    REQUIRE(p);
    CHECK(strcmp(p, "You are a helpful assistant.\n\nUser: Hi!\nAssistant: Hello. How can I help?") == 0);
    free(p);
    bs_chat_msg empty_open[] = {{BS_ROLE_USER, "Q", 1}, {BS_ROLE_ASSISTANT, "", 0}};
    p = bs_chat_render(empty_open, 2, &len, &e);
    REQUIRE(p);
    CHECK(strcmp(p, "User: Q\nAssistant:") == 0);
    free(p);

    /* content is verbatim, NUL-free length honoured */
    bs_chat_msg nl[] = {{BS_ROLE_USER, "two\nlines", 9}};
    p = bs_chat_render(nl, 1, &len, &e);
    REQUIRE(p);
    CHECK(strcmp(p, "User: two\nlines\nAssistant:") == 0);
    free(p);

    CHECK(bs_chat_render(m, 0, &len, &e) == NULL);
    bs_chat_msg badrole[] = {{(bs_role)7, "x", 1}};
    CHECK(bs_chat_render(badrole, 1, &len, &e) == NULL);

    int ns;
    const char *const *stops = bs_chat_stops(&ns);
    REQUIRE(ns >= 1);
    int has_user = 0;
    for (int i = 0; i < ns; i++)
        has_user |= strcmp(stops[i], "\nUser:") == 0;
    CHECK(has_user);
    /* the stop strings stop a model that starts the user's next turn */
    const char *continuation = " Once upon a time.\nUser: more";
    int stopped = 0;
    for (int i = 0; i < ns; i++)
        stopped |= strstr(continuation, stops[i]) != NULL;
    CHECK(stopped);

    for (int r = 0; r < 3; r++)
        CHECK(bs_chat_role_from_name(bs_chat_role_name((bs_role)r)) == r);
    CHECK(bs_chat_role_from_name("bot") == -1);

    /* a parsed chat request renders */
    const char *line = "{\"id\":1,\"op\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    bs_request r;
    bs_proto_error err;
    REQUIRE(bs_proto_parse_request(line, strlen(line), &L, &r, &err) == 0);
    p = bs_chat_render(r.messages, r.n_messages, &len, &e);
    REQUIRE(p);
    CHECK(strcmp(p, "User: Hi\nAssistant:") == 0);
    free(p);
    bs_request_free(&r);
}

int main(void)
{
    bs_proto_limits_default(&L);
    CHECK(L.max_line == 65536 && L.max_stop == 4 && L.max_stop_bytes == 64);
    CHECK(L.max_messages == 64 && L.max_tokens >= L.default_max_tokens);
    test_valid_requests();
    test_field_errors();
    test_structure_errors();
    test_id_echo();
    test_budget();
    test_token_utf8();
    test_done_error_result();
    test_request_roundtrip();
    test_chat();
    TEST_MAIN_END();
}
