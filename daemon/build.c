#include "daemon/build.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/clock.h"

struct bs_build {
    uv_loop_t *loop;
    uv_async_t async;          /* the worker's "ended" reaches the loop through this */
    pthread_mutex_t mu;        /* guards everything below the inputs */
    /* inputs, owned copies */
    char *dir, *source, *tokenizer, *calib, *checkpoint;
    bs_compress_opts opts;
    uint64_t self_seed;
    bs_build_done_fn done;
    void *ctx;
    /* the snapshot */
    int state;
    char stage[64], item[128], note[256];
    int64_t n_done, n_total;
    double t0, stage_t0, t_end;
    char store[PATH_MAX];
    int reused;
    bs_err err;
    /* lifetime: freed by whichever of the worker's end and the handle's close comes last */
    int worker_ended, closing, handle_closed, done_called;
};

static void build_free(bs_build *b)
{
    pthread_mutex_destroy(&b->mu);
    free(b->dir);
    free(b->source);
    free(b->tokenizer);
    free(b->calib);
    free(b->checkpoint);
    free(b);
}

/* bs_progress_fn, on the worker thread. */
static void on_progress(void *ctx, const char *stage, int64_t done, int64_t total, const char *item)
{
    bs_build *b = ctx;
    pthread_mutex_lock(&b->mu);
    if (total <= 0) {
        snprintf(b->note, sizeof b->note, "%s", item ? item : "");
    } else {
        if (strcmp(b->stage, stage)) {
            snprintf(b->stage, sizeof b->stage, "%s", stage);
            b->stage_t0 = bs_now();
        }
        b->n_done = done;
        b->n_total = total;
        snprintf(b->item, sizeof b->item, "%s", item ? item : "");
    }
    pthread_mutex_unlock(&b->mu);
}

/* A floor's training reports time, not items: seconds done of seconds expected. */
static void on_qat(void *ctx, const bs_train_status *st)
{
    int64_t done = (int64_t)st->elapsed, total = (int64_t)(st->elapsed + (st->eta > 0 ? st->eta : 0));
    on_progress(ctx, "qat", done, total > done ? total : done + 1, NULL);
}

static void *worker(void *p)
{
    bs_build *b = p;
    bs_cache_src src = {b->source, b->tokenizer, b->calib, b->opts, b->self_seed};
    bs_progress pg = {on_progress, b};
    bs_cache_entry ce;
    bs_err e = {{0}};
    int reused = 0;
    int rc = bs_cache_get(b->dir, &src, &pg, &ce, &reused, &e);
    pthread_mutex_lock(&b->mu);
    b->state = rc ? BS_BUILD_FAILED : BS_BUILD_READY;
    b->err = e;
    b->reused = reused;
    b->t_end = bs_now();
    if (!rc)
        snprintf(b->store, sizeof b->store, "%s", ce.path);
    b->worker_ended = 1;
    if (b->handle_closed) {
        pthread_mutex_unlock(&b->mu);
        build_free(b);
        return NULL;
    }
    if (!b->closing)
        uv_async_send(&b->async);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static void on_async(uv_async_t *a)
{
    bs_build *b = a->data;
    pthread_mutex_lock(&b->mu);
    int call = b->worker_ended && !b->done_called && !b->closing;
    b->done_called |= call;
    pthread_mutex_unlock(&b->mu);
    /* after the worker's end nothing writes the snapshot: its strings are stable */
    if (call && b->done)
        b->done(b->ctx, b, b->state == BS_BUILD_READY ? b->store : NULL, b->reused,
                b->state == BS_BUILD_READY ? NULL : b->err.msg);
}

static void on_closed(uv_handle_t *h)
{
    bs_build *b = h->data;
    pthread_mutex_lock(&b->mu);
    b->handle_closed = 1;
    int ended = b->worker_ended;
    pthread_mutex_unlock(&b->mu);
    if (ended)
        build_free(b);
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d = s ? strdup(s) : NULL;
    *oom |= s && !d;
    return d;
}

int bs_build_start(bs_build **out, uv_loop_t *loop, const char *cache_dir, const bs_cache_src *src,
                   bs_build_done_fn done, void *ctx, bs_err *e)
{
    *out = NULL;
    if (!cache_dir || !src->source)
        return bs_err_set(e, "a model build needs a cache directory and a source model");
    bs_build *b = calloc(1, sizeof *b);
    if (!b)
        return bs_err_set(e, "out of memory");
    int oom = 0;
    b->dir = dup_or_null(cache_dir, &oom);
    b->source = dup_or_null(src->source, &oom);
    b->tokenizer = dup_or_null(src->tokenizer, &oom);
    b->calib = dup_or_null(src->calib, &oom);
    b->checkpoint = dup_or_null(src->opts.qat.checkpoint, &oom);
    b->opts = src->opts;
    b->self_seed = src->self_seed;
    b->opts.qat.checkpoint = b->checkpoint;
    b->opts.qat.progress = on_qat;
    b->opts.qat.progress_ctx = b;
    b->loop = loop;
    b->done = done;
    b->ctx = ctx;
    b->state = BS_BUILD_BUILDING;
    b->t0 = b->stage_t0 = bs_now();
    if (oom || pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b->dir); free(b->source); free(b->tokenizer); free(b->calib); free(b->checkpoint);
        free(b);
        return bs_err_set(e, "out of memory");
    }
    int rc = uv_async_init(loop, &b->async, on_async);
    if (rc) {
        build_free(b);
        return bs_err_set(e, "uv_async_init: %s", uv_strerror(rc));
    }
    b->async.data = b;
    /* detached: nothing waits for the worker; its end is the async message */
    pthread_attr_t attr;
    pthread_t th;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&th, &attr, worker, b);
    pthread_attr_destroy(&attr);
    if (rc) {
        b->worker_ended = 1;   /* so the close frees it */
        bs_build_close(b);
        return bs_err_set(e, "cannot start the build thread: %s", strerror(rc));
    }
    *out = b;
    return 0;
}

int bs_build_state(const bs_build *b)
{
    bs_build *m = (bs_build *)b;   /* the mutex, not the snapshot, changes */
    pthread_mutex_lock(&m->mu);
    int s = b->state;
    pthread_mutex_unlock(&m->mu);
    return s;
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

json_t *bs_build_status_json(const bs_build *b)
{
    static const char *const names[] = {"building", "ready", "failed"};
    bs_build *m = (bs_build *)b;
    pthread_mutex_lock(&m->mu);
    double now = b->state == BS_BUILD_BUILDING ? bs_now() : b->t_end, st_el = now - b->stage_t0;
    json_t *eta = b->state == BS_BUILD_BUILDING && b->n_done > 0 && b->n_done < b->n_total
                      ? json_real(st_el * (double)(b->n_total - b->n_done) / (double)b->n_done)
                      : b->state == BS_BUILD_BUILDING ? json_null() : json_real(0);
    json_t *j = json_pack("{s:s, s:s, s:o, s:I, s:I, s:o, s:f, s:f, s:o, s:o, s:b, s:o, s:o}",
                          "state", names[b->state], "source", b->source, "stage", str_or_null(b->stage),
                          "done", (json_int_t)b->n_done, "total", (json_int_t)b->n_total,
                          "item", str_or_null(b->item), "elapsed", now - b->t0, "stage_elapsed", st_el,
                          "eta", eta, "store", str_or_null(b->state == BS_BUILD_READY ? b->store : NULL),
                          "reused", b->reused, "error", str_or_null(b->state == BS_BUILD_FAILED ? b->err.msg : NULL),
                          "note", str_or_null(b->note));
    pthread_mutex_unlock(&m->mu);
    return j;
}

void bs_build_close(bs_build *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->closing = 1;
    pthread_mutex_unlock(&b->mu);
    uv_close((uv_handle_t *)&b->async, on_closed);
}
