/* Monotonic wall time in seconds, for timing reports (never for pass/fail). */
#ifndef BS_CLOCK_H
#define BS_CLOCK_H

#include <time.h>

static inline double bs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
