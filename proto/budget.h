/* The budget grammar: what a user may write for a model's resident size, parsed in one
 * place for the daemon, the client and every command. What a budget means in bytes
 * depends on a store (model/engine.h resolves it). */
#ifndef BS_BUDGET_H
#define BS_BUDGET_H

#include <stdint.h>

#include "kernels/err.h"

typedef enum {
    BS_BUDGET_BYTES,    /* "1048576", 1048576, "180K", "2.5M", "1G" (K/M/G = 1024^1..3) */
    BS_BUDGET_PERCENT,  /* "40%": of the full store's resident bytes, 0..100 */
    BS_BUDGET_BPW,      /* "4.0bpw": bits per linear weight, (0, 32] */
    BS_BUDGET_MIN,      /* "min": the shortest prefix in which every matrix has a block */
    BS_BUDGET_MAX,      /* "max": the whole stack */
} bs_budget_kind;

typedef struct {
    bs_budget_kind kind;
    uint64_t bytes;     /* BS_BUDGET_BYTES */
    double value;       /* BS_BUDGET_PERCENT, BS_BUDGET_BPW */
    char text[32];      /* as given; an integer is written in decimal */
} bs_budget;

/* Checks the syntax only: what a budget means depends on the store (bs_engine_resolve).
 * Numbers are decimal digits with an optional fraction ("2.5"); no sign, exponent or
 * spaces; a suffix letter may be upper or lower case. */
int bs_proto_parse_budget(const char *s, bs_budget *out, bs_err *e);

#endif
