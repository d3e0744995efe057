#include "model/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "kernels/clock.h"

void bs_progress_start(bs_progress *p, const char *stage, int total, int quiet)
{
    p->stage = stage;
    p->total = total > 0 ? total : 1;
    p->tty = isatty(2);
    p->last_pct = -100;
    p->t0 = bs_now();
    p->quiet = quiet;
}

void bs_progress_tick(bs_progress *p, int done, const char *item)
{
    if (p->quiet)
        return;
    double el = bs_now() - p->t0;
    double eta = done > 0 ? el / done * (p->total - done) : 0.0;
    int pct = (int)(100.0 * done / p->total);
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s: %d/%d %s  %.1fs elapsed, ETA %.1fs", p->stage, done, p->total,
                item ? item : "", el, eta);
    } else if (pct >= p->last_pct + 5 || done == p->total) {
        fprintf(stderr, "%s: %d/%d %s (%.1fs elapsed, ETA %.1fs)\n", p->stage, done, p->total, item ? item : "",
                el, eta);
        p->last_pct = pct;
    }
}

void bs_progress_end(bs_progress *p)
{
    if (p->quiet)
        return;
    if (p->tty)
        fprintf(stderr, "\r\033[K");
    fprintf(stderr, "%s: done in %.2fs\n", p->stage, bs_now() - p->t0);
}
