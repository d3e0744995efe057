/* bs_chat: turns a conversation into one prompt for a base (non-chat) model.
 *
 * Base models were never taught a chat format, so the template is the plain transcript
 * they have seen in ordinary text, and generation is stopped where the model would start
 * writing the user's next line:
 *
 *     <system content>\n\n          every system message, in order, each followed by a blank line
 *     User: <content>\n             every user message
 *     Assistant: <content>\n        every assistant message
 *     Assistant:                    the open turn the model completes (no trailing space: the
 *                                   tokenizer's own leading space of the next word follows)
 *
 * Messages are rendered in the order given (system messages included, wherever they are).
 * When the last message is from the assistant, its turn is left open instead
 * ("Assistant: <content>" with no newline) so the model continues that text; an empty
 * one gives the plain open turn "Assistant:".
 * Content is copied verbatim; a content containing "\nUser:" will look like a turn to the
 * model and to the stop strings, which is the caller's business.
 *
 * The stop strings that go with the template: "\nUser:" and "\nAssistant:".
 * The daemon adds them to the request's own stop strings for every chat request. */
#ifndef BS_CHAT_H
#define BS_CHAT_H

#include <stddef.h>

#include "kernels/err.h"

typedef enum {
    BS_ROLE_SYSTEM,
    BS_ROLE_USER,
    BS_ROLE_ASSISTANT,
} bs_role;

typedef struct {
    bs_role role;
    char *content;    /* UTF-8, NUL-terminated; len excludes the NUL */
    size_t len;
} bs_chat_msg;

/* "system", "user", "assistant". */
const char *bs_chat_role_name(bs_role role);

/* The role named s (exact, lower case), or -1. */
int bs_chat_role_from_name(const char *s);

/* Renders n >= 1 messages into a malloc'd NUL-terminated prompt (caller frees);
 * *len gets its length without the NUL. Returns NULL and fills e on a bad role or
 * when out of memory. */
char *bs_chat_render(const bs_chat_msg *msgs, int n, size_t *len, bs_err *e);

/* Bytes bs_chat_render adds around the contents of n messages, at most. Lets a caller
 * bound a rendered prompt before rendering it. */
size_t bs_chat_overhead(int n);

/* The template's stop strings (static, NUL-terminated); *n gets their count. */
const char *const *bs_chat_stops(int *n);

#endif
