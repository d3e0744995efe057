#include "client/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "kernels/clock.h"

void bs_cli_bar_init(bs_cli_bar *b, const char *label, int steps)
{
    *b = (bs_cli_bar){.tty = isatty(STDERR_FILENO), .label = label, .steps = steps > 0 ? steps : 1,
                      .t0 = bs_now()};
}

void bs_cli_bar_update(void *ctx, int done, int total)
{
    bs_cli_bar *b = ctx;
    double now = bs_now();
    /* redraws at most ten times a second: a window can take a millisecond */
    if (!b->tty || total <= 0 || (now - b->last < 0.1 && done < total))
        return;
    b->last = now;
    double f = (b->step + (double)done / total) / b->steps, el = now - b->t0;
    int width = 30, fill = (int)(f * width + 0.5);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[K%s [%s] %3.0f%%", b->label, bar, 100 * f);
    if (b->steps > 1)
        fprintf(stderr, "  budget %d/%d", b->step + 1, b->steps);
    fprintf(stderr, "  window %d/%d  %.0fs", done, total, el);
    if (f > 0.02)
        fprintf(stderr, ", ETA %.0fs", el * (1 - f) / f);
    fflush(stderr);
    b->drawn = 1;
}

void bs_cli_bar_clear(bs_cli_bar *b)
{
    if (b->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    b->drawn = 0;
}
