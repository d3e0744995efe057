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
    atomic_ulong gen;        /* bumped for every run: workers start on a new value */
    atomic_bool quit;
    /* the run in progress: written before `next` is reset, read after taking from it */
    bs_team_fn fn;
    void *ctx;
    int n_parts;
    atomic_int next;         /* the next part to hand out */
    atomic_int finished;     /* parts run */
};

/* Before sleeping on a condition variable, a worker waiting for the next run and a caller
 * waiting for the last part poll for this many rounds (~30 us): a decode step runs about
 * ten products per layer back to back, and a futex wake-up per product costs several
 * microseconds each way. Bounded, so an idle team costs nothing. */
enum { SPIN_ROUNDS = 2000 };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

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

/* Counts this thread's parts; the one that completes the run wakes a caller that slept. */
static void add_finished(bs_team *t, int ran)
{
    if (ran && atomic_fetch_add(&t->finished, ran) + ran == t->n_parts) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_signal(&t->done);
        pthread_mutex_unlock(&t->mu);
    }
}

static void *worker(void *arg)
{
    bs_team *t = arg;
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&t->gen) == seen && !atomic_load(&t->quit); i++)
            cpu_relax();
        if (atomic_load(&t->gen) == seen && !atomic_load(&t->quit)) {
            pthread_mutex_lock(&t->mu);
            while (!atomic_load(&t->quit) && atomic_load(&t->gen) == seen)
                pthread_cond_wait(&t->work, &t->mu);
            pthread_mutex_unlock(&t->mu);
        }
        if (atomic_load(&t->quit))
            break;
        seen = atomic_load(&t->gen);
        add_finished(t, take_parts(t));
    }
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
    atomic_init(&t->gen, 0);
    atomic_init(&t->quit, false);
    atomic_init(&t->next, 0);
    atomic_init(&t->finished, 0);
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
    t->fn = fn;
    t->ctx = ctx;
    t->n_parts = n_parts;
    atomic_store(&t->finished, 0);
    atomic_store(&t->next, 0);
    /* under the lock: a worker about to sleep checks gen under it, so none misses this */
    pthread_mutex_lock(&t->mu);
    atomic_fetch_add(&t->gen, 1);
    pthread_cond_broadcast(&t->work);
    pthread_mutex_unlock(&t->mu);
    int ran = take_parts(t);
    atomic_fetch_add(&t->finished, ran);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&t->finished) < n_parts; i++)
        cpu_relax();
    if (atomic_load(&t->finished) < n_parts) {
        pthread_mutex_lock(&t->mu);
        while (atomic_load(&t->finished) < n_parts)
            pthread_cond_wait(&t->done, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
}

void bs_team_free(bs_team *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->quit, true);
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
