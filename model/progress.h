/* Progress of long offline work (calibration, compression, quantization, floors):
 * model/ never prints, it reports here and the caller decides what to show (a bar on a
 * terminal, log lines, a daemon's status JSON, nothing).
 *
 * A stage ("calibration", "encode", ...) reports done = 0..total items, each call after
 * an item is finished; item names it (a matrix, or NULL). done == total ends the stage.
 * A note (something worth telling the user that is not an error, such as an all-zero
 * matrix) comes as stage "note" with done = total = 0 and the text in item.
 * Calls come from the thread doing the work, in order. */
#ifndef BS_PROGRESS_H
#define BS_PROGRESS_H

#include <stdint.h>

typedef void (*bs_progress_fn)(void *ctx, const char *stage, int64_t done, int64_t total, const char *item);

typedef struct {
    bs_progress_fn fn;   /* NULL: silent */
    void *ctx;
} bs_progress;

/* Calls p->fn when there is one; p may be NULL. */
void bs_progress_report(const bs_progress *p, const char *stage, int64_t done, int64_t total, const char *item);

/* A note, formatted (at most 255 bytes are kept). */
void bs_progress_note(const bs_progress *p, const char *fmt, ...) __attribute__((format(__printf__, 2, 3)));

#endif
