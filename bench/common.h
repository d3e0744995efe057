/* Shared by the benchmarks: reading a "key: value" line of /proc files (cpuinfo,
 * meminfo), the machine line every bench prints, and sorting timings. Header-only: each bench is one executable. */
#ifndef BS_BENCH_COMMON_H
#define BS_BENCH_COMMON_H

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

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

/* CPUs this process may use. */
static inline int bench_cores(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
}

/* /proc/loadavg as one line ("unknown" when unreadable). */
static inline void bench_load(char *load, size_t n)
{
    snprintf(load, n, "unknown");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(load, (int)n, f))
            load[strcspn(load, "\n")] = 0;
        fclose(f);
    }
}

/* "machine: CPU | N cores (nproc) | MemTotal M | kernel K | load average L", printed. */
static inline void bench_print_machine(void)
{
    char cpu[256], load[128], mem[64];
    bench_proc_field("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    bench_proc_field("/proc/meminfo", "MemTotal", mem, sizeof mem);
    bench_load(load, sizeof load);
    struct utsname u;
    if (uname(&u) != 0)
        snprintf(u.release, sizeof u.release, "unknown");
    printf("machine: %s | %d cores (nproc) | MemTotal %s | kernel %s | load average %s\n", cpu, bench_cores(), mem,
           u.release, load);
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
