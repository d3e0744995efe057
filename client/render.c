#include "client/render.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A growing string. A failed allocation sets oom and the text is dropped at the end,
 * so callers chain appends without checking each one. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->s && b->len + (size_t)k < b->cap) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->len + (size_t)k)
            cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
}

static char *sb_done(sbuf *b)
{
    if (b->oom) {
        free(b->s);
        return NULL;
    }
    if (!b->s)
        return calloc(1, 1);
    return b->s;
}

/* ---- fields ------------------------------------------------------------------------ */

const char *bs_render_jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

double bs_render_jnum(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

void bs_render_bytes(double b, char *out, size_t n)
{
    if (!isfinite(b))
        snprintf(out, n, "-");
    else if (b >= 1024.0 * 1024 * 1024)
        snprintf(out, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(out, n, "%.2f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0)
        snprintf(out, n, "%.1f KiB", b / 1024.0);
    else
        snprintf(out, n, "%.0f B", b);
}

/* Local wall-clock time of a unix timestamp, "HH:MM:SS". */
static void clock_of(double t, char *out, size_t n)
{
    struct tm tm;
    time_t s = (time_t)t;
    if (!isfinite(t) || !localtime_r(&s, &tm) || !strftime(out, n, "%H:%M:%S", &tm))
        snprintf(out, n, "-");
}

/* ---- bars and sparklines ----------------------------------------------------------- */

void bs_watch_hist_push(bs_watch_hist *h, double v)
{
    h->v[h->head] = v;
    h->head = (h->head + 1) % BS_WATCH_HIST;
    if (h->n < BS_WATCH_HIST)
        h->n++;
}

int bs_render_bar_cells(double value, double full, int width)
{
    if (!isfinite(value) || !isfinite(full) || full <= 0 || width <= 0)
        return 0;
    double c = round(value / full * width);
    return c <= 0 ? 0 : c >= width ? width : (int)c;
}

char *bs_render_bar(double value, double mark, double full, int width)
{
    if (width < 1)
        width = 1;
    char *s = malloc((size_t)width + 3);
    if (!s)
        return NULL;
    int fill = bs_render_bar_cells(value, full, width);
    s[0] = '[';
    for (int i = 0; i < width; i++)
        s[1 + i] = i < fill ? '#' : '.';
    if (isfinite(mark) && isfinite(full) && full > 0) {
        /* the cell the mark falls in, so a target at 100% is the last cell, not past it */
        int m = (int)floor(mark / full * width);
        s[1 + (m < 0 ? 0 : m >= width ? width - 1 : m)] = '|';
    }
    s[width + 1] = ']';
    s[width + 2] = 0;
    return s;
}

char *bs_render_sparkline(const bs_watch_hist *h, double lo, double hi)
{
    static const char *const level[8] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    int first = (h->head - h->n + BS_WATCH_HIST) % BS_WATCH_HIST;
    if (!isfinite(lo) || !isfinite(hi)) {
        lo = INFINITY;
        hi = -INFINITY;
        for (int i = 0; i < h->n; i++) {
            double v = h->v[(first + i) % BS_WATCH_HIST];
            if (isfinite(v)) {
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
        }
    }
    sbuf b = {0};
    for (int i = 0; i < h->n; i++) {
        double v = h->v[(first + i) % BS_WATCH_HIST];
        if (!isfinite(v)) {
            sb_add(&b, " ");
            continue;
        }
        int k = 0;
        if (hi > lo) {
            double f = round((v - lo) / (hi - lo) * 7);
            k = f <= 0 ? 0 : f >= 7 ? 7 : (int)f;
        }
        sb_add(&b, "%s", level[k]);
    }
    return sb_done(&b);
}

/* ---- status rows ------------------------------------------------------------------- */

static void row(sbuf *b, const char *key, const char *val)
{
    sb_add(b, "%-10s %s\n", key, val);
}

/* "auto: 10% .. max (25.6 KiB .. 1.50 MiB)" from a budget object or a budget result. */
static void budget_text(const json_t *bud, char *out, size_t n)
{
    char lo[32], hi[32];
    const char *mode = bs_render_jstr(bud, "mode"), *mn = bs_render_jstr(bud, "min"), *mx = bs_render_jstr(bud, "max");
    bs_render_bytes(bs_render_jnum(bud, "min_bytes"), lo, sizeof lo);
    bs_render_bytes(bs_render_jnum(bud, "max_bytes"), hi, sizeof hi);
    if (mode && !strcmp(mode, "fixed") && mn && mx && !strcmp(mn, mx))
        snprintf(out, n, "fixed: %s (%s)", mn, lo);
    else
        snprintf(out, n, "%s%s%s .. %s (%s .. %s)", mode ? mode : "", mode ? ": " : "",
                 mn ? mn : "-", mx ? mx : "-", lo, hi);
}

/* Whether the resident prefix is on its way up or down, in words. */
static const char *direction(double resident, double target)
{
    if (!isfinite(resident) || !isfinite(target))
        return NULL;
    return resident < target ? "growing" : resident > target ? "shrinking" : "at target";
}

/* What all models hold: models_resident_bytes from a daemon that serves several (and
 * says so), else the one model's resident_bytes; full likewise. */
static double all_resident(const json_t *st)
{
    double v = bs_render_jnum(st, "models_resident_bytes");
    return isfinite(v) ? v : bs_render_jnum(st, "resident_bytes");
}

static double all_full(const json_t *st)
{
    const json_t *ms = json_object_get(st, "models");
    if (!json_is_array(ms) || json_array_size(ms) < 2)
        return bs_render_jnum(st, "full_bytes");
    double sum = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(ms, i, m) {
        double f = bs_render_jnum(m, "full_bytes");
        if (isfinite(f))
            sum += f;
    }
    return sum;
}

int bs_render_n_models(const json_t *st)
{
    const json_t *ms = json_object_get(st, "models");
    return json_is_array(ms) ? (int)json_array_size(ms) : 0;
}

bool bs_render_show_models(const json_t *st)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(st, "models"), i, m) {
        const char *state = bs_render_jstr(m, "state");
        if (i > 0 || (state && strcmp(state, "ready")))
            return true;
    }
    return false;
}

/* "building: encode 12/48, 3 s left" from a model's build object. */
static void build_text(const json_t *b, char *out, size_t n)
{
    const char *stage = bs_render_jstr(b, "stage");
    double done = bs_render_jnum(b, "done"), total = bs_render_jnum(b, "total"), eta = bs_render_jnum(b, "eta");
    int k = snprintf(out, n, "building: %s", stage ? stage : "starting");
    if (isfinite(done) && isfinite(total) && total > 0 && k >= 0 && (size_t)k < n)
        k += snprintf(out + k, n - (size_t)k, " %.0f%%", 100 * done / total);
    if (isfinite(eta) && k >= 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, ", %.0f s left in this stage", eta);
}

/* One row per model, side by side: its bar (resident against its target, of its whole
 * store), blocks, bpw, its share of what all hold, and how busy it is. */
static void model_rows(sbuf *b, const json_t *st, int width)
{
    const json_t *ms = json_object_get(st, "models");
    size_t i, wname = 4;
    const json_t *m;
    json_array_foreach(ms, i, m) {
        const char *name = bs_render_jstr(m, "name");
        if (name && strlen(name) > wname)
            wname = strlen(name) > 24 ? 24 : strlen(name);
    }
    json_array_foreach(ms, i, m) {
        const char *name = bs_render_jstr(m, "name"), *state = bs_render_jstr(m, "state");
        double res = bs_render_jnum(m, "resident_bytes"), tgt = bs_render_jnum(m, "target_bytes");
        double full = bs_render_jnum(m, "full_bytes"), n = bs_render_jnum(m, "stack_n");
        double total = bs_render_jnum(m, "stack_total"), bpw = bs_render_jnum(m, "bpw");
        double share = bs_render_jnum(m, "share"), sess = bs_render_jnum(m, "sessions");
        char r[32], t[32];
        bs_render_bytes(res, r, sizeof r);
        bs_render_bytes(tgt, t, sizeof t);
        sb_add(b, "%-10s %-*.*s ", i == 0 ? "models" : "", (int)wname, (int)wname, name ? name : "-");
        if (state && strcmp(state, "ready")) {
            const char *err = bs_render_jstr(m, "error");
            const json_t *bj = json_object_get(m, "build");
            char bt[160];
            if (json_is_object(bj) && !err) {
                build_text(bj, bt, sizeof bt);
                sb_add(b, "%s\n", bt);
            } else {
                sb_add(b, "%s%s%s\n", state, err ? ": " : "", err ? err : "");
            }
            if (!isfinite(res))
                continue;
        }
        char *bar = width > 0 ? bs_render_bar(res, tgt, full, width) : NULL;
        if (bar)
            sb_add(b, "%s ", bar);
        free(bar);
        sb_add(b, "%.0f/%.0f blocks", n, total);
        if (isfinite(bpw))
            sb_add(b, " %.2f bpw", bpw);
        sb_add(b, ", %s", r);
        if (isfinite(share))
            sb_add(b, " (%.0f%%)", 100 * share);
        if (isfinite(tgt) && tgt != res)
            sb_add(b, ", target %s", t);
        if (isfinite(sess))
            sb_add(b, ", %.0f session%s", sess, sess == 1 ? "" : "s");
        sb_add(b, "\n");
    }
}

char *bs_render_models(const json_t *st, int width)
{
    sbuf b = {0};
    model_rows(&b, st, width);
    return sb_done(&b);
}

static void target_row(sbuf *b, const json_t *st)
{
    double tb = bs_render_jnum(st, "target_bytes"), tn = bs_render_jnum(st, "target_n");
    const char *why = bs_render_jstr(st, "target_reason");
    if (!isfinite(tb) && !isfinite(tn) && !why)
        return;
    char t[32], line[384];
    bs_render_bytes(tb, t, sizeof t);
    int k = snprintf(line, sizeof line, "%s", t);
    if (isfinite(tn))
        k += snprintf(line + k, sizeof line - (size_t)k, ", %.0f blocks", tn);
    const char *dir = direction(all_resident(st), tb);
    if (dir)
        k += snprintf(line + k, sizeof line - (size_t)k, " (resident %s)", dir);
    if (why)
        snprintf(line + k, sizeof line - (size_t)k, ": %s", why);
    row(b, "target", line);
}

static void headroom_row(sbuf *b, const json_t *st)
{
    const json_t *h = json_object_get(st, "headroom_bytes");
    const char *src = bs_render_jstr(st, "headroom_source");
    if (!h && !src)
        return;
    char v[32], line[160];
    if (json_is_number(h))
        bs_render_bytes(json_number_value(h), v, sizeof v);
    else
        snprintf(v, sizeof v, "unknown");
    snprintf(line, sizeof line, "%s (%s)", v, src ? src : "source not given");
    row(b, "headroom", line);
}

static void psi_row(sbuf *b, const json_t *st)
{
    const json_t *p = json_object_get(st, "psi");
    if (!json_is_object(p))
        return;
    char line[640];
    int k = 0;
    double some = bs_render_jnum(p, "some_avg10"), full = bs_render_jnum(p, "full_avg10");
    if (isfinite(some) || isfinite(full)) {
        k += snprintf(line, sizeof line, "avg10 some ");
        k += isfinite(some) ? snprintf(line + k, sizeof line - (size_t)k, "%.2f", some)
                            : snprintf(line + k, sizeof line - (size_t)k, "-");
        k += isfinite(full) ? snprintf(line + k, sizeof line - (size_t)k, " full %.2f", full)
                            : snprintf(line + k, sizeof line - (size_t)k, " full -");
    } else {
        k += snprintf(line, sizeof line, "avg10 -");
    }
    const char *trig = bs_render_jstr(p, "trigger"), *why = bs_render_jstr(p, "why");
    if (trig)
        k += snprintf(line + k, sizeof line - (size_t)k, "; trigger on %s", trig);
    else
        k += snprintf(line + k, sizeof line - (size_t)k, "; no trigger");
    if (why)
        snprintf(line + k, sizeof line - (size_t)k, " (%s)", why);
    row(b, "psi", line);
}

static void bad_blocks_rows(sbuf *b, const json_t *st)
{
    const json_t *bad = json_object_get(st, "bad_blocks");
    if (!json_is_array(bad))
        return;
    char line[64];
    size_t n = json_array_size(bad);
    snprintf(line, sizeof line, "%zu", n);
    row(b, "bad blocks", line);
    size_t i;
    const json_t *e;
    json_array_foreach(bad, i, e) {
        double blk = bs_render_jnum(e, "block"), lvl = bs_render_jnum(e, "level");
        const char *m = bs_render_jstr(e, "matrix"), *err = bs_render_jstr(e, "error");
        sb_add(b, "  block ");
        if (isfinite(blk))
            sb_add(b, "%.0f", blk);
        else
            sb_add(b, "-");
        sb_add(b, " %s", m ? m : "-");
        if (isfinite(lvl))
            sb_add(b, " level %.0f", lvl);
        sb_add(b, ": %s\n", err ? err : "-");
    }
}

static void resize_rows(sbuf *b, const json_t *st)
{
    const json_t *rs = json_object_get(st, "resizes");
    if (!json_is_array(rs))
        return;
    size_t n = json_array_size(rs);
    if (n == 0) {
        row(b, "resizes", "none yet");
        return;
    }
    row(b, "resizes", "");
    /* the daemon keeps 20; a table taller than that says nothing more */
    size_t from = n > 20 ? n - 20 : 0;
    sb_add(b, "  %-8s %13s %23s %9s %8s  %s\n", "time", "blocks", "bytes", "ms", "MB/s", "reason");
    for (size_t i = from; i < n; i++) {
        const json_t *e = json_array_get(rs, i);
        char t[16], fb[32], tb[32], blocks[40], bytes[72], ms[24], mbs[24];
        clock_of(bs_render_jnum(e, "t"), t, sizeof t);
        double fn = bs_render_jnum(e, "from_n"), tn = bs_render_jnum(e, "to_n");
        if (isfinite(fn) && isfinite(tn))
            snprintf(blocks, sizeof blocks, "%.0f→%.0f", fn, tn);
        else
            snprintf(blocks, sizeof blocks, "-");
        bs_render_bytes(bs_render_jnum(e, "from_bytes"), fb, sizeof fb);
        bs_render_bytes(bs_render_jnum(e, "to_bytes"), tb, sizeof tb);
        snprintf(bytes, sizeof bytes, "%s→%s", fb, tb);
        double m = bs_render_jnum(e, "ms"), r = bs_render_jnum(e, "mb_s");
        if (isfinite(m))
            snprintf(ms, sizeof ms, "%.1f", m);
        else
            snprintf(ms, sizeof ms, "-");
        if (isfinite(r))
            snprintf(mbs, sizeof mbs, "%.1f", r);
        else
            snprintf(mbs, sizeof mbs, "-");
        const char *why = bs_render_jstr(e, "reason");
        /* "→" is 3 bytes and 1 column: widen the byte-counted fields by 2 to line up */
        sb_add(b, "  %-8s %15s %25s %9s %8s  %s\n", t, blocks, bytes, ms, mbs, why ? why : "-");
    }
}

char *bs_render_status_memory(const json_t *st)
{
    sbuf b = {0};
    char line[384], v[32];
    target_row(&b, st);
    const json_t *bud = json_object_get(st, "budget");
    if (json_is_object(bud)) {
        budget_text(bud, line, sizeof line);
        row(&b, "budget", line);
    }
    headroom_row(&b, st);
    psi_row(&b, st);
    const char *io = bs_render_jstr(st, "io_backend");
    if (io)
        row(&b, "io", io);
    double kv = bs_render_jnum(st, "kv_bytes");
    if (isfinite(kv)) {
        bs_render_bytes(kv, v, sizeof v);
        row(&b, "kv cache", v);
    }
    bad_blocks_rows(&b, st);
    resize_rows(&b, st);
    return sb_done(&b);
}

char *bs_render_budget(const json_t *res)
{
    sbuf b = {0};
    char line[384], a[32], t[32];
    budget_text(res, line, sizeof line);
    row(&b, "budget", line);
    double tb = bs_render_jnum(res, "target_bytes"), n = bs_render_jnum(res, "stack_n"), rb = bs_render_jnum(res, "resident_bytes");
    if (isfinite(tb)) {
        bs_render_bytes(tb, t, sizeof t);
        row(&b, "target", t);
    }
    if (isfinite(n) || isfinite(rb)) {
        bs_render_bytes(rb, a, sizeof a);
        if (isfinite(n))
            snprintf(line, sizeof line, "%.0f blocks, %s resident", n, a);
        else
            snprintf(line, sizeof line, "%s resident", a);
        row(&b, "stack", line);
    }
    return sb_done(&b);
}

/* ---- watch ------------------------------------------------------------------------- */

static const json_t *newest_resize(const json_t *st)
{
    const json_t *rs = json_object_get(st, "resizes");
    size_t n = json_is_array(rs) ? json_array_size(rs) : 0;
    return n ? json_array_get(rs, n - 1) : NULL;
}

/* "12:00:01 224→180 blocks (psi trigger, 3.1 ms)" */
static void resize_text(const json_t *e, char *out, size_t n)
{
    char t[16];
    clock_of(bs_render_jnum(e, "t"), t, sizeof t);
    double fn = bs_render_jnum(e, "from_n"), tn = bs_render_jnum(e, "to_n"), ms = bs_render_jnum(e, "ms");
    const char *why = bs_render_jstr(e, "reason");
    int k = snprintf(out, n, "%s ", t);
    if (isfinite(fn) && isfinite(tn))
        k += snprintf(out + k, n - (size_t)k, "%.0f→%.0f blocks", fn, tn);
    else
        k += snprintf(out + k, n - (size_t)k, "-");
    k += snprintf(out + k, n - (size_t)k, " (%s", why ? why : "-");
    if (isfinite(ms))
        k += snprintf(out + k, n - (size_t)k, ", %.1f ms", ms);
    snprintf(out + k, n - (size_t)k, ")");
}

static void blocks_text(const json_t *st, char *out, size_t n)
{
    double sn = bs_render_jnum(st, "stack_n"), tot = bs_render_jnum(st, "stack_total");
    if (isfinite(sn) && isfinite(tot))
        snprintf(out, n, "%.0f/%.0f blocks", sn, tot);
    else if (isfinite(sn))
        snprintf(out, n, "%.0f blocks", sn);
    else
        snprintf(out, n, "-/- blocks");
}

char *bs_render_watch(const json_t *st, const bs_watch_hist *h, int width)
{
    sbuf b = {0};
    char blocks[64], line[384], r[32], t[32], f[32], hr[32];
    if (width < 10)
        width = 10;
    blocks_text(st, blocks, sizeof blocks);
    const char *model = bs_render_jstr(st, "model");
    sb_add(&b, "bitstackd  %s  %s", model ? model : "-", blocks);
    const json_t *bud = json_object_get(st, "budget");
    if (json_is_object(bud)) {
        budget_text(bud, line, sizeof line);
        sb_add(&b, "  budget %s", line);
    }
    sb_add(&b, "\n");

    double res = all_resident(st), tgt = bs_render_jnum(st, "target_bytes");
    double full = all_full(st);
    bs_render_bytes(res, r, sizeof r);
    bs_render_bytes(tgt, t, sizeof t);
    bs_render_bytes(full, f, sizeof f);
    char *bar = bs_render_bar(res, tgt, full, width);
    const char *why = bs_render_jstr(st, "target_reason");
    sb_add(&b, "resident %s %s of %s", bar ? bar : "", r, f);
    if (isfinite(tgt))
        sb_add(&b, ", target %s", t);
    if (why)
        sb_add(&b, " (%s)", why);
    sb_add(&b, "\n");
    free(bar);

    const json_t *hj = json_object_get(st, "headroom_bytes");
    const char *src = bs_render_jstr(st, "headroom_source");
    if (json_is_number(hj)) {
        /* how much of the memory the policy may use the model takes now */
        double head = json_number_value(hj);
        bs_render_bytes(head, hr, sizeof hr);
        bar = bs_render_bar(res, NAN, head, width);
        sb_add(&b, "headroom %s %s (%s)\n", bar ? bar : "", hr, src ? src : "-");
        free(bar);
    } else if (hj || src) {
        sb_add(&b, "headroom unknown (%s)\n", src ? src : "-");
    }

    const json_t *p = json_object_get(st, "psi");
    if (json_is_object(p)) {
        double some = bs_render_jnum(p, "some_avg10"), fl = bs_render_jnum(p, "full_avg10");
        const char *trig = bs_render_jstr(p, "trigger");
        sb_add(&b, "psi      some ");
        if (isfinite(some))
            sb_add(&b, "%.2f", some);
        else
            sb_add(&b, "-");
        if (isfinite(fl))
            sb_add(&b, " full %.2f", fl);
        sb_add(&b, "%s%s\n", trig ? "  trigger " : "  no trigger", trig ? trig : "");
    }

    if (bs_render_show_models(st))
        model_rows(&b, st, width);
    char *sp = bs_render_sparkline(h, 0, bs_render_jnum(st, "stack_total"));
    sb_add(&b, "N        %s%s%s\n", sp ? sp : "", bs_render_n_models(st) > 1 ? "  " : "",
           bs_render_n_models(st) > 1 && model ? model : "");
    free(sp);

    const json_t *e = newest_resize(st);
    if (e) {
        resize_text(e, line, sizeof line);
        sb_add(&b, "resize   %s\n", line);
    } else {
        sb_add(&b, "resize   none yet\n");
    }
    return sb_done(&b);
}

char *bs_render_watch_line(const json_t *st, const bs_watch_hist *h)
{
    sbuf b = {0};
    char blocks[64], r[32], t[32], hr[32], line[384];
    blocks_text(st, blocks, sizeof blocks);
    double res = all_resident(st), tgt = bs_render_jnum(st, "target_bytes");
    bs_render_bytes(res, r, sizeof r);
    bs_render_bytes(tgt, t, sizeof t);
    char *bar = bs_render_bar(res, tgt, all_full(st), 10);
    sb_add(&b, "%s resident %s %s", blocks, bar ? bar : "", r);
    if (isfinite(tgt))
        sb_add(&b, " target %s", t);
    free(bar);
    const json_t *hj = json_object_get(st, "headroom_bytes");
    if (json_is_number(hj)) {
        bs_render_bytes(json_number_value(hj), hr, sizeof hr);
        sb_add(&b, " headroom %s", hr);
    }
    char *sp = bs_render_sparkline(h, 0, bs_render_jnum(st, "stack_total"));
    sb_add(&b, " N %s", sp ? sp : "");
    free(sp);
    const json_t *ms = json_object_get(st, "models");
    size_t i;
    const json_t *m;
    if (bs_render_n_models(st) > 1)
        json_array_foreach(ms, i, m) {
            sb_add(&b, " %s=%.0f/%.0f", bs_render_jstr(m, "name") ? bs_render_jstr(m, "name") : "-",
                   bs_render_jnum(m, "stack_n"), bs_render_jnum(m, "stack_total"));
        }
    const json_t *e = newest_resize(st);
    if (e) {
        resize_text(e, line, sizeof line);
        sb_add(&b, " last %s", line);
    }
    sb_add(&b, "\n");
    return sb_done(&b);
}
