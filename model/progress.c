#include "model/progress.h"

#include <stdarg.h>
#include <stdio.h>

void bs_progress_report(const bs_progress *p, const char *stage, int64_t done, int64_t total, const char *item)
{
    if (p && p->fn)
        p->fn(p->ctx, stage, done, total, item);
}

void bs_progress_note(const bs_progress *p, const char *fmt, ...)
{
    if (!p || !p->fn)
        return;
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    p->fn(p->ctx, "note", 0, 0, text);
}
