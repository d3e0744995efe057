/* The one progress display of bitstackctl's local work (compress, quantize, eval, eval
 * --sweep), on standard error so standard output keeps only results:
 *  - a terminal gets a redrawn bar: stage, percent, item i/N, what was just done, ETA;
 *  - otherwise, when asked (`lines`), a few plain lines per stage (at each quarter and
 *    at the end), so logs show where time went; eval asks for none;
 *  - --quiet: the caller passes no callback at all.
 * Work reports through model/progress.h (stages) or model/ppl.h (windows of a run). */
#ifndef BS_CLI_PROGRESS_H
#define BS_CLI_PROGRESS_H

#include <stdint.h>

typedef struct {
    int tty;            /* draw the bar */
    int lines;          /* not a terminal: print plain lines */
    const char *label;  /* eval's stage name ("eval", "sweep") */
    int step, steps;    /* eval: this run of `steps` runs (budgets of a sweep; 1 otherwise) */
    char stage[64];     /* the stage being shown */
    double t0, last;    /* the stage's start, last redraw */
    int quarter;        /* lines: quarters of the stage already printed */
    int drawn;          /* a bar is on the line */
} bs_cli_bar;

void bs_cli_bar_init(bs_cli_bar *b, const char *label, int steps, int lines);

/* A bs_progress_fn (ctx is the bs_cli_bar): stages, each ending with one line that says
 * how long it took; notes as "note: ..." lines. */
void bs_cli_bar_stage(void *ctx, const char *stage, int64_t done, int64_t total, const char *item);

/* The bs_ppl_progress callback: windows of run `step` of the label's stage. */
void bs_cli_bar_update(void *ctx, int done, int total);

/* Clears the bar's line (before printing a result row, and at the end). */
void bs_cli_bar_clear(bs_cli_bar *b);

#endif
