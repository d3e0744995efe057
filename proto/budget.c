#include "proto/budget.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

int bs_proto_parse_budget(const char *s, bs_budget *out, bs_err *e)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(s);
    if (n == 0)
        return bs_err_set(e, "budget: empty");
    if (n >= sizeof out->text)
        return bs_err_set(e, "budget: %zu bytes, the limit is %zu", n, sizeof out->text - 1);
    memcpy(out->text, s, n + 1);
    if (strcmp(s, "min") == 0) {
        out->kind = BS_BUDGET_MIN;
        return 0;
    }
    if (strcmp(s, "max") == 0) {
        out->kind = BS_BUDGET_MAX;
        return 0;
    }
    /* Digits by hand rather than strtod: no locale, no sign, no exponent, no "inf". */
    const char *p = s;
    if (*p < '0' || *p > '9')
        return bs_err_set(e, "budget '%s': expected min, max, bytes, a percentage or bpw", s);
    double v = 0;
    uint64_t whole = 0;
    bool whole_fits = true;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10)
            whole_fits = false;
        else
            whole = whole * 10 + d;
        v = v * 10 + d;
    }
    bool fraction = false;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return bs_err_set(e, "budget '%s': expected digits after '.'", s);
        double scale = 0.1;
        for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
            v += (*p - '0') * scale;
        fraction = true;
    }
    if (*p == '\0') {
        if (fraction)
            return bs_err_set(e, "budget '%s': a byte count must be a whole number", s);
        if (!whole_fits || whole > (uint64_t)INT64_MAX)
            return bs_err_set(e, "budget '%s': too large", s);
        out->kind = BS_BUDGET_BYTES;
        out->bytes = whole;
        return 0;
    }
    if (strcmp(p, "%") == 0) {
        if (v > 100)
            return bs_err_set(e, "budget '%s': a percentage must be 0..100", s);
        out->kind = BS_BUDGET_PERCENT;
        out->value = v;
        return 0;
    }
    if (strcasecmp(p, "bpw") == 0) {
        if (v <= 0 || v > 32)
            return bs_err_set(e, "budget '%s': bits per weight must be in (0, 32]", s);
        out->kind = BS_BUDGET_BPW;
        out->value = v;
        return 0;
    }
    double mult = 0;
    if (strcasecmp(p, "k") == 0)
        mult = 1024.0;
    else if (strcasecmp(p, "m") == 0)
        mult = 1024.0 * 1024.0;
    else if (strcasecmp(p, "g") == 0)
        mult = 1024.0 * 1024.0 * 1024.0;
    if (mult == 0)
        return bs_err_set(e, "budget '%s': unknown unit '%s' (K, M, G, %%, bpw)", s, p);
    double bytes = floor(v * mult);
    if (bytes >= 9.2e18)
        return bs_err_set(e, "budget '%s': too large", s);
    out->kind = BS_BUDGET_BYTES;
    out->bytes = (uint64_t)bytes;
    return 0;
}

