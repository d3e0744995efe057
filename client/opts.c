#include "client/opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bs_opt *find(bs_opt *opts, int n, const char *name, size_t len, char shrt)
{
    for (int i = 0; i < n; i++) {
        if (shrt ? opts[i].shrt == shrt : (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len)))
            return &opts[i];
    }
    return NULL;
}

int bs_opts_parse(int argc, char **argv, bs_opt *opts, int nopts, const char **pos, int max_pos)
{
    int np = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == 0 || (a[1] == '-' && a[2] == 0) || (a[1] >= '0' && a[1] <= '9')) {
            if (np >= max_pos) {
                fprintf(stderr, "unexpected argument '%s'\n", a);
                return -1;
            }
            pos[np++] = a;
            continue;
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        const char *eq = a[1] == '-' ? strchr(name, '=') : NULL;
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        bs_opt *o = a[1] == '-' ? find(opts, nopts, name, len, 0)
                                : (name[1] == 0 ? find(opts, nopts, NULL, 0, name[0]) : NULL);
        if (!o) {
            fprintf(stderr, "unknown option '%s'\n", a);
            return -1;
        }
        if (o->flag) {
            if (eq) {
                fprintf(stderr, "option --%s takes no value\n", o->name);
                return -1;
            }
            o->value = "1";
        } else if (eq) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            fprintf(stderr, "option --%s needs a value\n", o->name);
            return -1;
        }
    }
    return np;
}

const char *bs_opt_get(const bs_opt *opts, int nopts, const char *name)
{
    for (int i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name))
            return opts[i].value;
    return NULL;
}

int bs_opt_int(const bs_opt *opts, int nopts, const char *name, long dflt, long lo, long hi, long *out)
{
    const char *v = bs_opt_get(opts, nopts, name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "--%s must be a whole number in %ld..%ld (got '%s')\n", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int bs_opt_double(const bs_opt *opts, int nopts, const char *name, double dflt, double lo, double hi, double *out)
{
    const char *v = bs_opt_get(opts, nopts, name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "--%s must be a number in %g..%g (got '%s')\n", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}
