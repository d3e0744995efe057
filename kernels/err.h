/* bs_err: the one way errors travel in bitstack.
 * A function that can fail takes a bs_err * last, fills it and returns -1 (or NULL).
 * The message names the thing that failed (a file, a tensor, a block) and the problem. */
#ifndef BS_ERR_H
#define BS_ERR_H

#include <stddef.h>

typedef struct {
    char msg[512];
} bs_err;

/* Formats the message into e (if e is not NULL) and returns -1, so callers can
 * `return bs_err_set(e, "...")`. */
int bs_err_set(bs_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message ("while X: <old message>"); returns -1. */
int bs_err_wrap(bs_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
