/* bs_pool: every job runs exactly once, on the pool's threads, in FIFO order with one
 * thread; bs_pool_free runs what is still queued; jobs may submit more jobs. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <unistd.h>

#include "harness.h"
#include "kernels/pool.h"

typedef struct {
    bs_pool_job job;
    int index;
    atomic_int *runs;       /* per job */
    int *order;             /* one-thread FIFO check */
    atomic_int *next;
    pthread_t self;
} work;

static pthread_t main_thread;

static void run(bs_pool_job *j)
{
    work *w = (work *)((char *)j - offsetof(work, job));
    atomic_fetch_add(&w->runs[w->index], 1);
    if (w->order)
        w->order[atomic_fetch_add(w->next, 1)] = w->index;
    w->self = pthread_self();
}

/* A job that blocks until released, to hold the only thread while others queue. */
typedef struct {
    bs_pool_job job;
    atomic_int release, started;
} gate;

static void wait_gate(bs_pool_job *j)
{
    gate *g = (gate *)j;
    atomic_store(&g->started, 1);
    while (!atomic_load(&g->release))
        usleep(1000);
}

typedef struct {
    bs_pool_job job;
    bs_pool *pool;
    int depth;
    atomic_int *count;
} chain;

static chain chains[8];

static void run_chain(bs_pool_job *j)
{
    chain *c = (chain *)j;
    atomic_fetch_add(c->count, 1);
    if (c->depth + 1 < 8) {
        chain *n = &chains[c->depth + 1];
        n->job.fn = run_chain;
        n->pool = c->pool;
        n->depth = c->depth + 1;
        n->count = c->count;
        bs_pool_submit(c->pool, &n->job);
    }
}

int main(void)
{
    bs_err e;
    main_thread = pthread_self();
    CHECK(bs_pool_new(0, &e) == NULL && strstr(e.msg, "thread"));

    /* many jobs on 4 threads: each runs once, never on the submitting thread */
    enum { N = 2000 };
    static work ws[N];
    static atomic_int runs[N];
    bs_pool *p = bs_pool_new(4, &e);
    REQUIRE(p);
    CHECK(bs_pool_threads(p) == 4);
    for (int i = 0; i < N; i++) {
        ws[i] = (work){.index = i, .runs = runs};
        ws[i].job.fn = run;
        bs_pool_submit(p, &ws[i].job);
    }
    bs_pool_free(p);   /* drains: every job has run when it returns */
    int once = 0, off_main = 0;
    for (int i = 0; i < N; i++) {
        once += atomic_load(&runs[i]) == 1;
        off_main += !pthread_equal(ws[i].self, main_thread);
    }
    CHECK(once == N);
    CHECK(off_main == N);

    /* one thread: FIFO; jobs queued behind a blocked one wait, then all run at free */
    static int order[64];
    atomic_int next = 0;
    static atomic_int runs2[64];
    p = bs_pool_new(1, &e);
    REQUIRE(p);
    gate g = {0};
    g.job.fn = wait_gate;
    bs_pool_submit(p, &g.job);
    while (!atomic_load(&g.started))
        usleep(1000);
    static work w2[64];
    for (int i = 0; i < 64; i++) {
        w2[i] = (work){.index = i, .runs = runs2, .order = order, .next = &next};
        w2[i].job.fn = run;
        bs_pool_submit(p, &w2[i].job);
    }
    CHECK(bs_pool_pending(p) == 64);
    CHECK(atomic_load(&next) == 0);
    atomic_store(&g.release, 1);
    bs_pool_free(p);
    CHECK(atomic_load(&next) == 64);
    int fifo = 1;
    for (int i = 0; i < 64; i++)
        fifo &= order[i] == i;
    CHECK(fifo);

    /* a job may submit the next one; free waits for the whole chain */
    atomic_int count = 0;
    p = bs_pool_new(2, &e);
    REQUIRE(p);
    chains[0].job.fn = run_chain;
    chains[0].pool = p;
    chains[0].depth = 0;
    chains[0].count = &count;
    bs_pool_submit(p, &chains[0].job);
    bs_pool_free(p);   /* jobs submitted by jobs while closing run too */
    CHECK(atomic_load(&count) == 8);

    bs_pool_free(NULL);
    TEST_MAIN_END();
}
