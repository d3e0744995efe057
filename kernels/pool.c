#include "kernels/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct bs_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* a job was queued, or the pool is closing */
    bs_pool_job *head, *tail;
    int pending;
    bool closing;
    int n;                      /* threads started */
    pthread_t *threads;
};

static void *worker(void *arg)
{
    bs_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->closing)
            pthread_cond_wait(&p->cv, &p->mu);
        bs_pool_job *job = p->head;
        if (!job)
            break;              /* closing and drained */
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->pending--;
        pthread_mutex_unlock(&p->mu);
        job->next = NULL;
        job->fn(job);           /* may free the struct holding job: do not touch it after */
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

bs_pool *bs_pool_new(int threads, bs_err *e)
{
    if (threads < 1) {
        bs_err_set(e, "a pool needs at least one thread, got %d", threads);
        return NULL;
    }
    bs_pool *p = calloc(1, sizeof *p);
    if (p)
        p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p || !p->threads) {
        free(p);
        bs_err_set(e, "out of memory for a pool of %d threads", threads);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, worker, p);
        if (rc) {
            bs_err_set(e, "cannot start pool thread %d of %d: %s", i + 1, threads, strerror(rc));
            bs_pool_free(p);
            return NULL;
        }
        p->n++;
    }
    return p;
}

int bs_pool_threads(const bs_pool *p)
{
    return p->n;
}

void bs_pool_submit(bs_pool *p, bs_pool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->pending++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int bs_pool_pending(bs_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->pending;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void bs_pool_free(bs_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}
