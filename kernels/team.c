#include "kernels/team.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct bs_team {
    int threads;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    unsigned long gen;       /* bumped for every run: workers wake on a new value */
    bool quit;
    /* the run in progress */
    bs_team_fn fn;
    void *ctx;
    int n_parts;
    atomic_int next;         /* the next part to hand out */
    int finished;            /* parts run, under mu */
};

/* Takes parts until none are left; returns how many this thread ran. */
static int take_parts(bs_team *t)
{
    int ran = 0;
    for (;;) {
        int p = atomic_fetch_add(&t->next, 1);
        if (p >= t->n_parts)
            return ran;
        t->fn(t->ctx, p, t->n_parts);
        ran++;
    }
}

static void *worker(void *arg)
{
    bs_team *t = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->quit && t->gen == seen)
            pthread_cond_wait(&t->work, &t->mu);
        if (t->quit)
            break;
        seen = t->gen;
        pthread_mutex_unlock(&t->mu);
        int ran = take_parts(t);
        pthread_mutex_lock(&t->mu);
        t->finished += ran;
        if (t->finished == t->n_parts)
            pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int bs_team_resolve(int n)
{
    if (n > 0)
        return n;
    cpu_set_t set;
    if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

bs_team *bs_team_new(int threads, bs_err *e)
{
    bs_team *t = calloc(1, sizeof *t);
    if (!t) {
        bs_err_set(e, "out of memory for a thread team");
        return NULL;
    }
    t->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->work, NULL);
    pthread_cond_init(&t->done, NULL);
    atomic_init(&t->next, 0);
    if (t->threads > 1) {
        t->tid = calloc((size_t)t->threads - 1, sizeof *t->tid);
        if (!t->tid) {
            bs_team_free(t);
            bs_err_set(e, "out of memory for a thread team");
            return NULL;
        }
        for (int i = 0; i < t->threads - 1; i++)
            if (pthread_create(&t->tid[i], NULL, worker, t)) {
                t->threads = i + 1;   /* the ones started are joined by bs_team_free */
                bs_team_free(t);
                bs_err_set(e, "cannot start a math thread");
                return NULL;
            }
    }
    return t;
}

int bs_team_threads(const bs_team *t)
{
    return t ? t->threads : 1;
}

void bs_team_run(bs_team *t, int n_parts, bs_team_fn fn, void *ctx)
{
    if (n_parts <= 0)
        return;
    if (!t || t->threads == 1 || n_parts == 1) {
        for (int p = 0; p < n_parts; p++)
            fn(ctx, p, n_parts);
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->ctx = ctx;
    t->n_parts = n_parts;
    t->finished = 0;
    atomic_store(&t->next, 0);
    t->gen++;
    pthread_cond_broadcast(&t->work);
    pthread_mutex_unlock(&t->mu);
    int ran = take_parts(t);
    pthread_mutex_lock(&t->mu);
    t->finished += ran;
    while (t->finished < t->n_parts)
        pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

void bs_team_free(bs_team *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->work);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; t->tid && i < t->threads - 1; i++)
        pthread_join(t->tid[i], NULL);
    free(t->tid);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->work);
    pthread_cond_destroy(&t->done);
    free(t);
}
