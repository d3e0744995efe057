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
    for (bs_sched_item *m = it; m; m = m->batch_next) {
        m->done_next = NULL;
        if (s->done_tail)
            s->done_tail->done_next = m;
        else
            s->done_head = m;
        s->done_tail = m;
    }
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

/* Out of the ready FIFO. */
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

static int size_bucket(int n)
{
    int b = 0;
    while (b < 5 && n >= (2 << b))
        b++;
    return b;
}

/* A slice for it's group: the fair share's count. */
static void charge(bs_sched_item *it)
{
    (*served_of(it))++;
}

static void dispatch(bs_sched *s)
{
    while (s->open && !s->in_after && s->busy < s->max_running && s->ready_head) {
        /* the least served user's first ready session leads; sessions decoding on the same
         * view ride along in its pass (each charged a slice of its own user's share) */
        bs_sched_item *it = pick(s);
        /* a wide slice waits until it can hold every thread */
        bool wide = it->wide && s->team;
        if (wide && s->busy > 0)
            break;
        /* an even share of the ready items per free thread, so no thread idles while
         * another runs a big batch */
        int free = s->max_running - s->busy;
        int cap = wide ? s->max_batch : (s->n_ready + free - 1) / free;
        if (cap > s->max_batch)
            cap = s->max_batch;
        unlink_ready(s, it);
        uint64_t lead = s->vtime = *served_of(it);
        charge(it);
        it->batch = 1;
        it->batch_next = NULL;
        bs_sched_item **tail = &it->batch_next;
        for (bs_sched_item *c = s->ready_head, *next; c && it->batch_key && it->batch < cap; c = next) {
            next = c->next;
            /* the lead's own group rides along freely; another group only if it has not
             * been served more than the lead's (a ride is a slice of its share) */
            if (c->batch_key != it->batch_key || (served_of(c) != served_of(it) && *served_of(c) > lead))
                continue;
            unlink_ready(s, c);
            charge(c);
            c->batch = 0;
            c->batch_next = NULL;
            *tail = c;
            tail = &c->batch_next;
            it->batch++;
        }
        s->running++;
        s->busy += wide ? s->max_running : 1;
        s->slices++;
        s->batch_sizes[size_bucket(it->batch)]++;
        if (it->batch > 1)
            s->batched_slices++;
        it->job.fn = run_slice;
        for (bs_sched_item *m = it; m; m = m->batch_next) {
            m->where = BS_SCHED_RUNNING;
            m->width = wide ? s->max_running : 1;
            m->team = wide ? s->team : NULL;
        }
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
    /* One at a time: until the `after` of its last member ran, a slice still counts as
     * running, so the owner never sees "nothing running" with results not yet handed
     * over (a batch's members are consecutive in the list, lead first). No dispatch until
     * the whole list is back: items pushed again are regrouped by the one dispatch after
     * them instead of leaving one by one as they are pushed. */
    s->in_after = true;
    while (it) {
        bs_sched_item *next = it->done_next;
        it->done_next = NULL;
        it->where = BS_SCHED_IDLE;
        if (!it->batch_next) {
            s->running--;
            s->busy -= it->width;
        }
        it->batch = 0;
        it->batch_next = NULL;
        s->after(it, s->ctx);   /* may free it, push it again, or close the scheduler */
        it = next;
    }
    s->in_after = false;
    dispatch(s);
}

int bs_sched_init(bs_sched *s, uv_loop_t *loop, int threads, bs_sched_work_fn work,
                  bs_sched_after_fn after, void *ctx, bs_err *e)
{
    memset(s, 0, sizeof *s);
    s->pool = bs_pool_new(threads, e);
    if (!s->pool)
        return -1;
    if (threads > 1 && !(s->team = bs_team_new(threads, e))) {
        bs_pool_free(s->pool);
        return -1;
    }
    int rc = uv_async_init(loop, &s->async, on_async);
    if (rc) {
        bs_pool_free(s->pool);
        bs_team_free(s->team);
        return bs_err_set(e, "uv_async_init: %s", uv_strerror(rc));
    }
    s->async.data = s;
    pthread_mutex_init(&s->mu, NULL);
    s->max_running = threads;
    s->max_batch = BS_SCHED_MAX_BATCH;
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
    bs_team_free(s->team);
    s->team = NULL;
    uv_close((uv_handle_t *)&s->async, NULL);
    pthread_mutex_destroy(&s->mu);
}
