#include "client/progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels/clock.h"

void bs_cli_bar_init(bs_cli_bar *b, const char *label, int steps, int lines)
{
    *b = (bs_cli_bar){.tty = isatty(STDERR_FILENO), .label = label, .steps = steps > 0 ? steps : 1, .t0 = bs_now()};
    b->lines = lines && !b->tty;
    if (label)
        snprintf(b->stage, sizeof b->stage, "%s", label);
}

void bs_cli_bar_clear(bs_cli_bar *b)
{
    if (b->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    b->drawn = 0;
}

/* A new stage restarts the clock and the quarters. */
static void enter(bs_cli_bar *b, const char *stage)
{
    if (!strcmp(b->stage, stage))
        return;
    bs_cli_bar_clear(b);
    snprintf(b->stage, sizeof b->stage, "%s", stage);
    b->t0 = bs_now();
    b->last = 0;
    b->quarter = 0;
}

/* One redraw: f is the fraction of the whole stage, counts what the stage counts. */
static void draw(bs_cli_bar *b, double f, const char *counts, const char *item, double el)
{
    int width = 30, fill = (int)(f * width + 0.5);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[K%s [%s] %3.0f%%  %s", b->stage, bar, 100 * f, counts);
    if (item && *item)
        fprintf(stderr, " %s", item);
    fprintf(stderr, "  %.0fs", el);
    if (f > 0.02 && f < 1)
        fprintf(stderr, ", ETA %.0fs", el * (1 - f) / f);
    fflush(stderr);
    b->drawn = 1;
}

void bs_cli_bar_stage(void *ctx, const char *stage, int64_t done, int64_t total, const char *item)
{
    bs_cli_bar *b = ctx;
    if (total <= 0) {   /* a note */
        bs_cli_bar_clear(b);
        fprintf(stderr, "note: %s\n", item ? item : "");
        return;
    }
    enter(b, stage);
    double now = bs_now(), el = now - b->t0, f = (double)done / (double)total;
    if (done >= total) {
        bs_cli_bar_clear(b);
        fprintf(stderr, "%s: %" PRId64 "/%" PRId64 " done in %.2fs\n", stage, done, total, el);
        b->stage[0] = 0;   /* the same stage again (a second write) is a new one */
        return;
    }
    if (b->tty) {
        /* redraws at most ten times a second: an item can take a millisecond */
        if (now - b->last < 0.1)
            return;
        b->last = now;
        char counts[48];
        snprintf(counts, sizeof counts, "%" PRId64 "/%" PRId64, done, total);
        draw(b, f, counts, item, el);
    } else if (b->lines && done > 0 && (int)(4 * f) > b->quarter && el >= 1.0) {
        /* a stage that takes under a second gets only its closing line */
        b->quarter = (int)(4 * f);
        fprintf(stderr, "%s: %" PRId64 "/%" PRId64 "%s%s (%.1fs elapsed, ETA %.1fs)\n", stage, done, total,
                item ? " " : "", item ? item : "", el, el * (1 - f) / f);
    }
}

void bs_cli_bar_update(void *ctx, int done, int total)
{
    bs_cli_bar *b = ctx;
    double now = bs_now();
    if (!b->tty || total <= 0 || (now - b->last < 0.1 && done < total))
        return;
    b->last = now;
    double f = (b->step + (double)done / total) / b->steps;
    char counts[64];
    if (b->steps > 1)
        snprintf(counts, sizeof counts, "budget %d/%d  window %d/%d", b->step + 1, b->steps, done, total);
    else
        snprintf(counts, sizeof counts, "window %d/%d", done, total);
    draw(b, f, counts, NULL, now - b->t0);
}
