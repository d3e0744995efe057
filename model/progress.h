/* A progress display for long offline work: a redrawn line with stage, item i/N and
 * ETA on a terminal; plain log lines (one per ~5% and at the end) otherwise. */
#ifndef BS_PROGRESS_H
#define BS_PROGRESS_H

typedef struct {
    const char *stage;
    int total;
    int tty;
    int last_pct;
    double t0;
    int quiet;
} bs_progress;

void bs_progress_start(bs_progress *p, const char *stage, int total, int quiet);
void bs_progress_tick(bs_progress *p, int done, const char *item);
void bs_progress_end(bs_progress *p);

#endif
