#include "proto/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[] = {
    [BS_ROLE_SYSTEM] = "system",
    [BS_ROLE_USER] = "user",
    [BS_ROLE_ASSISTANT] = "assistant",
};

static const char *const stops[] = {"\nUser:", "\nAssistant:"};

#define PREFIX_USER "User: "
#define PREFIX_ASSISTANT "Assistant: "
#define OPEN_TURN "Assistant:"

const char *bs_chat_role_name(bs_role role)
{
    if ((unsigned)role >= sizeof role_names / sizeof role_names[0])
        return "?";
    return role_names[role];
}

int bs_chat_role_from_name(const char *s)
{
    for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++)
        if (strcmp(s, role_names[i]) == 0)
            return (int)i;
    return -1;
}

size_t bs_chat_overhead(int n)
{
    /* The longest per-message decoration is "Assistant: " + "\n"; the open turn adds
     * "Assistant:" once. */
    return (size_t)(n > 0 ? n : 0) * (sizeof PREFIX_ASSISTANT - 1 + 2) + sizeof OPEN_TURN;
}

const char *const *bs_chat_stops(int *n)
{
    *n = (int)(sizeof stops / sizeof stops[0]);
    return stops;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

char *bs_chat_render(const bs_chat_msg *msgs, int n, size_t *len, bs_err *e)
{
    if (n < 1) {
        bs_err_set(e, "chat: no messages");
        return NULL;
    }
    size_t cap = bs_chat_overhead(n) + 1;
    for (int i = 0; i < n; i++) {
        if ((unsigned)msgs[i].role > BS_ROLE_ASSISTANT) {
            bs_err_set(e, "chat: message %d has an unknown role %d", i, (int)msgs[i].role);
            return NULL;
        }
        if (msgs[i].len > SIZE_MAX / 2 - cap) {
            bs_err_set(e, "chat: messages too large");
            return NULL;
        }
        cap += msgs[i].len;
    }
    char *out = malloc(cap);
    if (!out) {
        bs_err_set(e, "chat: out of memory for a %zu-byte prompt", cap);
        return NULL;
    }
    char *p = out;
    /* A trailing assistant message is the start of the answer: leave it open. */
    int open_last = msgs[n - 1].role == BS_ROLE_ASSISTANT;
    for (int i = 0; i < n; i++) {
        const bs_chat_msg *m = &msgs[i];
        switch (m->role) {
        case BS_ROLE_SYSTEM:
            p = put(p, m->content, m->len);
            p = put(p, "\n\n", 2);
            break;
        case BS_ROLE_USER:
            p = put(p, PREFIX_USER, sizeof PREFIX_USER - 1);
            p = put(p, m->content, m->len);
            *p++ = '\n';
            break;
        case BS_ROLE_ASSISTANT:
            if (open_last && i == n - 1 && m->len == 0) {
                /* nothing to continue: the plain open turn, without a dangling space */
                p = put(p, OPEN_TURN, sizeof OPEN_TURN - 1);
                break;
            }
            p = put(p, PREFIX_ASSISTANT, sizeof PREFIX_ASSISTANT - 1);
            p = put(p, m->content, m->len);
            if (!(open_last && i == n - 1))
                *p++ = '\n';
            break;
        }
    }
    if (!open_last)
        p = put(p, OPEN_TURN, sizeof OPEN_TURN - 1);
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}
