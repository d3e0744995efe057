/* proto/openai: OpenAI request bodies become the requests a JSON-lines client would send
 * (or are refused with the validator's words and the right HTTP status), and responses
 * and stream chunks have OpenAI's shapes plus the bitstack field. */
#include <string.h>

#include "harness.h"
#include "proto/openai.h"

static bs_proto_limits L;

static int parse(const char *body, bool chat, bs_request *r, bs_openai_req *o, bs_proto_error *pe)
{
    return bs_openai_parse(body, strlen(body), chat, &L, 7, r, o, pe);
}

static void test_chat(void)
{
    bs_request r;
    bs_openai_req o;
    bs_proto_error pe;
    CHECK(parse("{\"model\":\"m1\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Once \"},{\"type\":\"text\",\"text\":\"upon\"}]},"
                "{\"role\":\"assistant\",\"content\":null}],"
                "\"max_completion_tokens\":12,\"temperature\":0.5,\"top_p\":0.8,\"seed\":3,\"stop\":\"x\","
                "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"presence_penalty\":0,\"user\":\"u\"}",
                true, &r, &o, &pe) == 0);
    CHECK(r.op == BS_OP_CHAT && r.n_messages == 3);
    CHECK(r.messages[0].role == BS_ROLE_SYSTEM && !strcmp(r.messages[0].content, "be brief"));
    CHECK(r.messages[1].role == BS_ROLE_USER && !strcmp(r.messages[1].content, "Once upon"));
    CHECK(r.messages[2].role == BS_ROLE_ASSISTANT && r.messages[2].len == 0);
    CHECK(r.max_tokens == 12 && r.temperature == 0.5 && r.top_p == 0.8 && r.has_seed && r.seed == 3);
    CHECK(r.n_stop == 1 && !strcmp(r.stop[0], "x") && r.stream);
    CHECK(o.chat && o.include_usage && !strcmp(o.model, "m1"));
    CHECK(!strcmp(r.id.json, "7"));
    bs_request_free(&r);

    /* nulls mean "not set" */
    CHECK(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":null,\"temperature\":null,"
                "\"stop\":null,\"seed\":null}", true, &r, &o, &pe) == 0);
    CHECK(r.max_tokens == L.default_max_tokens && !r.has_seed && r.n_stop == 0 && !r.stream);
    bs_request_free(&r);
}

static void expect_refused(const char *body, bool chat, bs_proto_code code, int status, const char *words)
{
    bs_request r;
    bs_openai_req o;
    bs_proto_error pe;
    CHECKF(parse(body, chat, &r, &o, &pe) == -1, "accepted: %s", body);
    CHECKF(pe.code == code && bs_openai_status(pe.code) == status, "%s: %s (%d)", body,
           bs_proto_code_name(pe.code), bs_openai_status(pe.code));
    CHECKF(strstr(pe.message, words) != NULL, "%s: message '%s' lacks '%s'", body, pe.message, words);
    CHECK(r.op == BS_OP_NONE && !r.messages && !r.prompt);
    bs_request_free(&r);
}

static void test_refused(void)
{
    expect_refused("{", true, BS_PERR_BAD_JSON, 400, "invalid JSON");
    expect_refused("[1]", true, BS_PERR_BAD_REQUEST, 400, "object");
    expect_refused("{\"messages\":[]}", true, BS_PERR_BAD_REQUEST, 400, "messages");
    expect_refused("{}", true, BS_PERR_BAD_REQUEST, 400, "messages");
    expect_refused("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", true, BS_PERR_BAD_REQUEST, 400, "role");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", true,
                   BS_PERR_BAD_REQUEST, 400, "text");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", true, BS_PERR_BAD_REQUEST, 400,
                   "n:");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", true,
                   BS_PERR_BAD_REQUEST, 400, "max_tokens");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":3}", true,
                   BS_PERR_BAD_REQUEST, 400, "stream_options");
    expect_refused("{\"prompt\":[\"a\",\"b\"]}", false, BS_PERR_BAD_REQUEST, 400, "prompt");
    expect_refused("{\"prompt\":[1,2]}", false, BS_PERR_BAD_REQUEST, 400, "prompt");
    expect_refused("{\"prompt\":\"x\",\"temperature\":1e300}", false, BS_PERR_BAD_REQUEST, 400, "temperature");
    CHECK(bs_openai_status(BS_PERR_TOO_MANY_SESSIONS) == 429);
    CHECK(bs_openai_status(BS_PERR_INSUFFICIENT_MEMORY) == 503);
    CHECK(bs_openai_status(BS_PERR_INTERNAL) == 500);
    CHECK(!strcmp(bs_openai_error_type(BS_PERR_BAD_REQUEST), "invalid_request_error"));
}

static void test_completion(void)
{
    bs_request r;
    bs_openai_req o;
    bs_proto_error pe;
    CHECK(parse("{\"prompt\":[\"Once\"],\"max_tokens\":5}", false, &r, &o, &pe) == 0);
    CHECK(r.op == BS_OP_GENERATE && !strcmp(r.prompt, "Once") && r.max_tokens == 5 && !o.chat);
    bs_request_free(&r);
}

static void test_responses(void)
{
    bs_openai_req chat = {.chat = true}, text = {.chat = false};
    bs_openai_ext x = {.n = 5, .resident_bytes = 1000, .stack_total = 9};
    /* ill-formed UTF-8 in the text becomes U+FFFD, never a failed encode */
    json_t *c = bs_openai_completion(&chat, "id1", 1, "m", "a\xff" "b", 3, BS_FINISH_EOS, 4, 2, &x);
    REQUIRE(c);
    json_t *msg = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message");
    CHECK(!strcmp(json_string_value(json_object_get(msg, "content")), "a\xef\xbf\xbd" "b"));
    CHECK(!strcmp(json_string_value(json_object_get(c, "object")), "chat.completion"));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(c, "choices"), 0),
                                                    "finish_reason")), "stop"));
    CHECK(json_integer_value(json_object_get(json_object_get(c, "usage"), "total_tokens")) == 6);
    CHECK(json_integer_value(json_object_get(json_object_get(c, "bitstack"), "stack_n")) == 5);
    json_decref(c);

    c = bs_openai_chunk(&chat, "id1", 1, "m", true, "hi", 2, -1, &x);
    json_t *d = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "delta");
    CHECK(!strcmp(json_string_value(json_object_get(d, "role")), "assistant"));
    CHECK(!strcmp(json_string_value(json_object_get(d, "content")), "hi"));
    CHECK(json_is_null(json_object_get(json_array_get(json_object_get(c, "choices"), 0), "finish_reason")));
    json_decref(c);
    c = bs_openai_chunk(&chat, "id1", 1, "m", false, "", 0, BS_FINISH_LENGTH, &x);
    d = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "delta");
    CHECK(!json_object_get(d, "role") && !json_object_get(d, "content"));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(c, "choices"), 0),
                                                    "finish_reason")), "length"));
    json_decref(c);
    c = bs_openai_chunk(&text, "id2", 1, "m", true, "x", 1, -1, NULL);
    CHECK(!strcmp(json_string_value(json_object_get(c, "object")), "text_completion"));
    CHECK(!json_object_get(c, "bitstack"));
    json_decref(c);
    c = bs_openai_usage_chunk(&chat, "id1", 1, "m", 3, 4);
    CHECK(json_array_size(json_object_get(c, "choices")) == 0);
    CHECK(json_integer_value(json_object_get(json_object_get(c, "usage"), "completion_tokens")) == 4);
    json_decref(c);
    c = bs_openai_error(BS_PERR_BAD_REQUEST, NULL, "bad \xff");
    json_t *e = json_object_get(c, "error");
    CHECK(!strcmp(json_string_value(json_object_get(e, "code")), "bad_request"));
    CHECK(!strcmp(json_string_value(json_object_get(e, "type")), "invalid_request_error"));
    json_decref(c);
    c = bs_openai_error(BS_PERR_BAD_REQUEST, "invalid_api_key", "no");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c, "error"), "type")), "authentication_error"));
    json_decref(c);
}

int main(void)
{
    bs_proto_limits_default(&L);
    test_chat();
    test_refused();
    test_completion();
    test_responses();
    TEST_MAIN_END();
}
