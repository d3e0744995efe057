/* bs_openai: the JSON of the OpenAI-compatible HTTP API (docs/http.md), both ways.
 *
 * Requests: a /v1/chat/completions or /v1/completions body becomes the same bs_request a
 * JSON-lines chat or generate would, so one validator (proto.c) decides what is allowed
 * and both front ends refuse the same things with the same words. OpenAI's spellings are
 * mapped first: content given as an array of text parts, max_completion_tokens, a prompt
 * given as a one-string array, n (only 1), stream_options.include_usage. Fields this
 * server does not use (presence_penalty, user, logit_bias, ...) are ignored, as
 * llama-server and ollama do, so existing clients work unchanged.
 *
 * Responses: completion objects, stream chunks, the usage chunk and error bodies, each
 * a jansson object the caller serialises. Every chunk may carry a `bitstack` object (the
 * N and resident bytes behind its tokens) that OpenAI clients ignore.
 *
 * Pure: no I/O, no global state. */
#ifndef BS_OPENAI_H
#define BS_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "proto/proto.h"

typedef struct {
    bool chat;                  /* /v1/chat/completions (else /v1/completions) */
    bool include_usage;         /* stream_options.include_usage */
    char model[128];            /* the model the client named ("" if none) */
} bs_openai_req;

/* Parses a request body (JSON text). id: the request id the session will carry. On
 * failure: -1, with err's code and message saying why (the HTTP status follows from the
 * code: bs_openai_status). */
int bs_openai_parse(const char *body, size_t len, bool chat, const bs_proto_limits *lim, long long id,
                    bs_request *r, bs_openai_req *o, bs_proto_error *err);

/* The HTTP status and OpenAI error type for a failure. */
int bs_openai_status(bs_proto_code code);
const char *bs_openai_error_type(bs_proto_code code);

/* {"error":{"message","type","code"}}; code is our error name ("bad_request"), or the
 * given code string when not NULL (e.g. "invalid_api_key"). */
json_t *bs_openai_error(bs_proto_code code, const char *code_name, const char *msg);

/* OpenAI's finish_reason for ours: "stop" (eos, stop string), "length"; cancelled and
 * shutdown keep our names. */
const char *bs_openai_finish(bs_finish f);

/* What the bitstack extension field says about some tokens. */
typedef struct {
    int n;                      /* the stack prefix behind them */
    int64_t resident_bytes;
    int stack_total;
} bs_openai_ext;

/* The whole answer of a non-streamed request. */
json_t *bs_openai_completion(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                             const char *text, size_t n, bs_finish finish, int prompt_tokens,
                             int completion_tokens, const bs_openai_ext *ext);

/* One stream chunk: text (may be empty) and, on the last one, the finish reason
 * (finish < 0: none yet). A chat stream's first chunk carries the assistant role. */
json_t *bs_openai_chunk(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                        bool first, const char *text, size_t n, int finish, const bs_openai_ext *ext);

/* The usage chunk that stream_options.include_usage asks for (empty choices). */
json_t *bs_openai_usage_chunk(const bs_openai_req *o, const char *id, int64_t created, const char *model,
                              int prompt_tokens, int completion_tokens);

#endif
