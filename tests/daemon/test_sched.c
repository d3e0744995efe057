/* bs_sched's fairness, deterministically (one thread, a real libuv loop and pool): users
 * share compute per user, then per item; a batch's riders from other users are charged
 * and only ride when their user is not ahead; an idle user comes back level, not with
 * credit. Wide items run alone on every thread, with the team. */
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "daemon/sched.h"
#include "harness.h"

typedef struct {
    bs_sched_item item;
    int user;
    int rows;          /* rows this item got (a batch gives every member one) */
    int left;          /* slices it still wants */
} job;

typedef struct {
    bs_sched s;
    int slices[2];     /* slices led, per user */
    int rows[2];       /* rows run, per user */
} world;

#define JOB_OF(it) ((job *)((char *)(it) - offsetof(job, item)))

static void work(bs_sched_item *it)
{
    for (bs_sched_item *m = it; m; m = m->batch_next)
        JOB_OF(m)->rows++;
}

static void after(bs_sched_item *it, void *ctx)
{
    world *w = ctx;
    job *j = JOB_OF(it);
    w->rows[j->user]++;
    if (--j->left > 0)
        bs_sched_push(&w->s, it);
}

static void start(bs_sched_item *it, void *ctx)
{
    world *w = ctx;
    w->slices[JOB_OF(it)->user]++;
}

/* User 0 has four items, user 1 one; all want `want` slices; one thread. */
static void run(bool batching, int rows_out[2], int *one_done_at)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    world w;
    memset(&w, 0, sizeof w);
    bs_err e;
    REQUIRE(bs_sched_init(&w.s, &loop, 1, work, after, &w, &e) == 0);
    w.s.start = start;
    if (!batching)
        w.s.max_batch = 1;
    uint64_t served[2] = {0, 0};
    static int key;
    job jobs[5];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 5; i++) {
        jobs[i].user = i < 4 ? 0 : 1;
        jobs[i].left = 40;
        jobs[i].item.served = &served[jobs[i].user];
        jobs[i].item.batch_key = &key;
    }
    for (int i = 0; i < 5; i++)
        bs_sched_push(&w.s, &jobs[i].item);
    *one_done_at = -1;
    while (uv_run(&loop, UV_RUN_ONCE)) {
        if (*one_done_at < 0 && jobs[4].left == 0)
            *one_done_at = w.rows[0];
        if (w.s.running == 0 && w.s.n_ready == 0)
            break;
    }
    rows_out[0] = w.rows[0];
    rows_out[1] = w.rows[1];
    bs_sched_close(&w.s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

/* Wide items (a large model's sessions): two threads, three wide items of one key and two
 * narrow ones. A wide slice must run alone, hold both threads, get the scheduler's team
 * (and be able to split work over it), and take every ready wide item in its batch; at no
 * moment do slices hold more than the two threads. */
static atomic_int in_use, worst_in_use, wide_bad, wide_slices, wide_batched, team_parts;

static void count_part(void *ctx, int part, int n)
{
    (void)ctx, (void)part, (void)n;
    atomic_fetch_add(&team_parts, 1);
}

static void wide_work(bs_sched_item *it)
{
    int now = atomic_fetch_add(&in_use, it->width) + it->width;
    int w = atomic_load(&worst_in_use);
    while (now > w && !atomic_compare_exchange_weak(&worst_in_use, &w, now))
        ;
    if (it->wide) {
        atomic_fetch_add(&wide_slices, 1);
        if (!it->team || it->team != it->sched->team || it->width != 2)
            atomic_fetch_add(&wide_bad, 1);
        if (it->batch > 1)
            atomic_fetch_add(&wide_batched, 1);
        bs_team_run(it->team, 2, count_part, NULL);
    } else if (it->team || it->width != 1) {
        atomic_fetch_add(&wide_bad, 1);
    }
    for (bs_sched_item *m = it; m; m = m->batch_next)
        JOB_OF(m)->rows++;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&in_use, it->width);
}

static void run_wide(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    world w;
    memset(&w, 0, sizeof w);
    bs_err e;
    REQUIRE(bs_sched_init(&w.s, &loop, 2, wide_work, after, &w, &e) == 0);
    REQUIRE(w.s.team && bs_team_threads(w.s.team) == 2);
    static int wide_key, narrow_key;
    job jobs[5];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 5; i++) {
        jobs[i].user = i & 1;
        jobs[i].left = 10;
        jobs[i].item.wide = i < 3;
        jobs[i].item.batch_key = i < 3 ? (const void *)&wide_key : (const void *)&narrow_key;
    }
    for (int i = 4; i >= 0; i--)
        bs_sched_push(&w.s, &jobs[i].item);
    while (uv_run(&loop, UV_RUN_ONCE))
        if (w.s.running == 0 && w.s.n_ready == 0)
            break;
    for (int i = 0; i < 5; i++)
        CHECKF(jobs[i].rows == 10, "item %d ran %d rows", i, jobs[i].rows);
    CHECKF(atomic_load(&worst_in_use) <= 2, "slices held %d threads at once", atomic_load(&worst_in_use));
    CHECK(atomic_load(&wide_bad) == 0);
    CHECK(atomic_load(&wide_slices) > 0 && atomic_load(&wide_batched) > 0);
    CHECK(atomic_load(&team_parts) == 2 * atomic_load(&wide_slices));
    CHECK(w.s.busy == 0);
    bs_sched_close(&w.s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

int main(void)
{
    run_wide();
    int rows[2], at;
    /* no batching: user 1's item gets every other slice, so it is done when user 0 has
     * had about as many (40), not 4 x 40 (the share per item would give 160) */
    run(false, rows, &at);
    CHECK(rows[0] == 160 && rows[1] == 40);
    CHECKF(at >= 36 && at <= 44, "user 1 done after %d of user 0's slices", at);
    /* batching: user 0's four ride together, each row charged to user 0, and user 1 rides
     * in them only when not ahead: the users still get rows one for one, so user 1 is
     * done when user 0 has had about 40 rows (per item, or riding free, it would be 160) */
    run(true, rows, &at);
    CHECK(rows[0] == 160 && rows[1] == 40);
    CHECKF(at >= 32 && at <= 56, "user 1 done after %d of user 0's rows", at);
    TEST_MAIN_END();
}
