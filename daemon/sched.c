#include "daemon/sched.h"

#include <stddef.h>
#include <string.h>

#define ITEM_OF(j) ((bs_sched_item *)((char *)(j) - offsetof(bs_sched_item, job)))

static void run_slice(bs_pool_job *job)
{
    bs_sched_item *it = ITEM_OF(job);
    bs_sched *s = it->sched;
    s->work(it);
    pthread_mutex_lock(&s->mu);
    it->done_next = NULL;
    if (s->done_tail)
        s->done_tail->done_next = it;
    else
        s->done_head = it;
    s->done_tail = it;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
}

static uint64_t *served_of(bs_sched_item *it)
{
    return it->served ? it->served : &it->own_served;
}

/* The first ready item of the least served group. */
static bs_sched_item *pick(bs_sched *s)
{
    bs_sched_item *best = s->ready_head;
    for (bs_sched_item *it = best ? best->next : NULL; it; it = it->next)
        if (*served_of(it) < *served_of(best))
            best = it;
    return best;
}

static void unlink_ready(bs_sched *s, bs_sched_item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        s->ready_head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        s->ready_tail = it->prev;
    it->next = it->prev = NULL;
    s->n_ready--;
}

static void dispatch(bs_sched *s)
{
    while (s->open && s->running < s->max_running && s->ready_head) {
        bs_sched_item *it = pick(s);
        unlink_ready(s, it);
        uint64_t *sv = served_of(it);
        s->vtime = *sv;
        (*sv)++;
        it->where = BS_SCHED_RUNNING;
        s->running++;
        s->slices++;
        it->job.fn = run_slice;
        if (s->start)
            s->start(it, s->ctx);
        bs_pool_submit(s->pool, &it->job);
    }
}

static void on_async(uv_async_t *a)
{
    bs_sched *s = a->data;
    pthread_mutex_lock(&s->mu);
    bs_sched_item *it = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    /* one at a time: until its `after` ran, an item still counts as running, so the
     * owner never sees "nothing running" with results not yet handed over */
    while (it) {
        bs_sched_item *next = it->done_next;
        it->done_next = NULL;
        it->where = BS_SCHED_IDLE;
        s->running--;
        s->after(it, s->ctx);   /* may free it, push it again, or close the scheduler */
        it = next;
    }
    dispatch(s);
}

int bs_sched_init(bs_sched *s, uv_loop_t *loop, int threads, bs_sched_work_fn work,
                  bs_sched_after_fn after, void *ctx, bs_err *e)
{
    memset(s, 0, sizeof *s);
    s->pool = bs_pool_new(threads, e);
    if (!s->pool)
        return -1;
    int rc = uv_async_init(loop, &s->async, on_async);
    if (rc) {
        bs_pool_free(s->pool);
        return bs_err_set(e, "uv_async_init: %s", uv_strerror(rc));
    }
    s->async.data = s;
    pthread_mutex_init(&s->mu, NULL);
    s->max_running = threads;
    s->work = work;
    s->after = after;
    s->ctx = ctx;
    s->open = true;
    return 0;
}

void bs_sched_push(bs_sched *s, bs_sched_item *it)
{
    /* a group that was idle starts level with the others, not with a backlog of credit */
    uint64_t *sv = served_of(it);
    if (*sv < s->vtime)
        *sv = s->vtime;
    it->sched = s;
    it->where = BS_SCHED_READY;
    it->next = NULL;
    it->prev = s->ready_tail;
    if (s->ready_tail)
        s->ready_tail->next = it;
    else
        s->ready_head = it;
    s->ready_tail = it;
    s->n_ready++;
    dispatch(s);
}

void bs_sched_remove(bs_sched *s, bs_sched_item *it)
{
    if (it->where != BS_SCHED_READY)
        return;
    unlink_ready(s, it);
    it->where = BS_SCHED_IDLE;
}

void bs_sched_close(bs_sched *s)
{
    if (!s->open)
        return;
    s->open = false;
    /* join first: a worker that finished its slice may still be inside uv_async_send */
    bs_pool_free(s->pool);
    s->pool = NULL;
    uv_close((uv_handle_t *)&s->async, NULL);
    pthread_mutex_destroy(&s->mu);
}
