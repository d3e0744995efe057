/* A progress bar with ETA for long local work (eval, eval --sweep), drawn on standard
 * error when it is a terminal and never otherwise, so pipes and logs stay clean. The
 * work reports through model/ppl.h's callback; a sweep is several runs, one per step. */
#ifndef BS_CLI_PROGRESS_H
#define BS_CLI_PROGRESS_H

typedef struct {
    int tty;            /* draw at all */
    const char *label;
    int step, steps;    /* this run of steps runs (budgets of a sweep; 1 otherwise) */
    double t0, last;    /* start, last redraw */
    int drawn;          /* a bar is on the line */
} bs_cli_bar;

void bs_cli_bar_init(bs_cli_bar *b, const char *label, int steps);

/* The bs_ppl_progress callback: ctx is the bs_cli_bar. */
void bs_cli_bar_update(void *ctx, int done, int total);

/* Clears the bar's line (before printing a result row, and at the end). */
void bs_cli_bar_clear(bs_cli_bar *b);

#endif
