/* Shared by the benchmarks: reading a "key: value" line of /proc files (cpuinfo,
 * meminfo) and sorting timings. Header-only: each bench is one executable. */
#ifndef BS_BENCH_COMMON_H
#define BS_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/clock.h"

/* The value of the first line starting with key in a /proc-style file; "unknown" if none. */
static inline void bench_proc_field(const char *path, const char *key, char *out, size_t cap)
{
    char line[512];
    size_t klen = strlen(key);
    snprintf(out, cap, "unknown");
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        const char *p = strchr(line, ':');
        if (strncmp(line, key, klen) != 0 || !p)
            continue;
        for (p++; *p == ' ' || *p == '\t'; p++)
            ;
        snprintf(out, cap, "%s", p);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline void bench_sort(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
}

#endif
