/* Text for the daemon's memory state: the rows `bitstackctl status` and `budget` print,
 * and the frames of `status --watch`. Pure functions of the parsed result object (the
 * JSON "result" of a status or budget op), so tests feed them canned JSON.
 *
 * Every field is optional: a daemon from before live resizing sends none of the new
 * ones, and what is missing is left out (or shown as "-"), never guessed. Functions that
 * return char * return a malloc'd NUL-terminated string (the caller frees it), or NULL
 * when memory runs out. */
#ifndef BS_RENDER_H
#define BS_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Samples of the resident block count N kept for the sparkline: a minute at the
 * default one-second interval. */
#define BS_WATCH_HIST 60

/* The last BS_WATCH_HIST values of N, oldest first once unrolled. Zero-initialise. */
typedef struct {
    double v[BS_WATCH_HIST];
    int n;      /* samples held, up to BS_WATCH_HIST */
    int head;   /* where the next sample goes */
} bs_watch_hist;

/* NAN (N unknown) is kept as a gap. */
void bs_watch_hist_push(bs_watch_hist *h, double v);

/* Filled cells of a width-cell bar for value out of full: rounded to the nearest cell,
 * clamped to 0..width; 0 when either is unknown (NAN) or full <= 0. */
int bs_render_bar_cells(double value, double full, int width);

/* "[#####.....]": width cells between brackets; when mark is finite, a '|' in the cell
 * where mark/full falls (the target on the resident bar). */
char *bs_render_bar(double value, double mark, double full, int width);

/* One of ▁▂▃▄▅▆▇█ per sample, oldest first: (v - lo) / (hi - lo) in eighths. With lo or
 * hi NAN the series' own range is used; a flat series is all ▁; a gap is a space. */
char *bs_render_sparkline(const bs_watch_hist *h, double lo, double hi);

/* The rows of `bitstackctl status` about memory, after its stack row: target, budget,
 * headroom, psi, io, kv, bad blocks, and the resize events as a table. */
char *bs_render_status_memory(const json_t *st);

/* The models a status lists (0 from a daemon that does not list them). */
int bs_render_n_models(const json_t *st);

/* Are the models worth a row each: several, or one not ready (building, loading, failed)? */
bool bs_render_show_models(const json_t *st);

/* `status` of several models: a row each, side by side (bars width cells wide; 0: none). */
char *bs_render_models(const json_t *st, int width);

/* A string field, or NULL; a number field, or NAN when absent, null or not a number. */
const char *bs_render_jstr(const json_t *o, const char *key);
double bs_render_jnum(const json_t *o, const char *key);

/* The answer to a budget op: mode, min/max (text and bytes), target, resident. */
char *bs_render_budget(const json_t *res);

/* `status --watch` on a terminal: a few lines, bars width cells wide. */
char *bs_render_watch(const json_t *st, const bs_watch_hist *h, int width);

/* `status --watch` into a pipe: one line (with its '\n') per refresh. */
char *bs_render_watch_line(const json_t *st, const bs_watch_hist *h);

/* "1.50 MiB", "512 B", ...: what the client prints for a byte count. */
void bs_render_bytes(double b, char *out, size_t n);

#endif
