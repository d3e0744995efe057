/* bs_pool: a fixed set of threads that run jobs for the math (one generation step of a
 * session, a chunk of a matrix product).
 *
 * Jobs are intrusive, like uv_work_t: the caller embeds a bs_pool_job in its own struct
 * and gets it back in fn, so submitting never allocates and never fails while the pool
 * is open. Jobs start in submission order (FIFO); with one thread they also finish in
 * that order. A job must not block on another job of the same pool.
 *
 * Shutdown is clean: bs_pool_free runs every job already submitted (and those such jobs
 * submit while it waits), then joins the threads. No global state: any number of pools
 * may exist. */
#ifndef BS_POOL_H
#define BS_POOL_H

#include "kernels/err.h"

typedef struct bs_pool bs_pool;

typedef struct bs_pool_job {
    void (*fn)(struct bs_pool_job *job);   /* runs on a pool thread */
    struct bs_pool_job *next;              /* the pool's; do not touch while queued */
} bs_pool_job;

/* threads >= 1. NULL with e filled when a thread cannot be started. */
bs_pool *bs_pool_new(int threads, bs_err *e);

int bs_pool_threads(const bs_pool *p);

/* Queues job (job->fn set by the caller). The job may run before this returns. */
void bs_pool_submit(bs_pool *p, bs_pool_job *job);

/* Jobs queued and not yet started (a snapshot, for reports). */
int bs_pool_pending(bs_pool *p);

/* Runs the jobs still queued (and any they submit), joins every thread and frees the
 * pool. NULL is fine.
 * Must not be called from a pool thread. */
void bs_pool_free(bs_pool *p);

#endif
