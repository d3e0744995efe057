/* bs_sched: fair scheduling of generation work onto the math pool.
 *
 * Work comes in slices: one call of the owner's `work` function on a pool thread (a
 * session's prefill chunk, or a few decode steps; the owner keeps each slice short).
 * Ready items wait in one FIFO; the next to run is the first of the group (a user) that has
 * been served the fewest slices, so a user with sixteen sessions gets one user's share,
 * and within a group items take turns in FIFO order. At most `threads` slices run at once, so the pool never
 * holds a backlog and a newly ready item waits for at most one round. When a slice ends,
 * the item comes back to the loop thread through a uv_async and the owner's `after`
 * function decides: push it again (it goes to the tail: round robin) or drop it.
 *
 * Threads: bs_sched_push/remove/close and `after` are loop-thread only; `work` runs on
 * a pool thread and must touch only its item's compute state. */
#ifndef BS_SCHED_H
#define BS_SCHED_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "kernels/pool.h"

typedef enum {
    BS_SCHED_IDLE,      /* in no queue: the owner holds it */
    BS_SCHED_READY,     /* waiting for a thread */
    BS_SCHED_RUNNING,   /* a slice is on a pool thread (or on its way back) */
} bs_sched_where;

typedef struct bs_sched_item {
    bs_pool_job job;
    struct bs_sched_item *prev, *next;   /* the ready FIFO */
    struct bs_sched_item *done_next;     /* slices ended, under the mutex */
    bs_sched_where where;
    struct bs_sched *sched;
    uint64_t *served;                    /* its group's slice count (shared by the group's
                                          * items), or NULL: a group of its own */
    uint64_t own_served;
} bs_sched_item;

typedef void (*bs_sched_work_fn)(bs_sched_item *it);
typedef void (*bs_sched_start_fn)(bs_sched_item *it, void *ctx);
typedef void (*bs_sched_after_fn)(bs_sched_item *it, void *ctx);

typedef struct bs_sched {
    bs_pool *pool;
    uv_async_t async;
    pthread_mutex_t mu;
    bs_sched_item *done_head, *done_tail;
    bs_sched_item *ready_head, *ready_tail;
    int n_ready, running, max_running;
    uint64_t slices;                     /* slices run since start */
    uint64_t vtime;                      /* the served count of the last group to run */
    bs_sched_work_fn work;
    bs_sched_after_fn after;
    bs_sched_start_fn start;             /* optional: on the loop thread, as a slice is handed
                                          * to a pool thread (e.g. to pin what it will read) */
    void *ctx;
    bool open;
} bs_sched;

int bs_sched_init(bs_sched *s, uv_loop_t *loop, int threads, bs_sched_work_fn work,
                  bs_sched_after_fn after, void *ctx, bs_err *e);

/* To the tail of the ready FIFO (it must be IDLE); starts slices while threads are free. */
void bs_sched_push(bs_sched *s, bs_sched_item *it);

/* Takes a READY item out of the FIFO (it becomes IDLE). RUNNING items cannot be taken
 * back: their owner waits for `after`. */
void bs_sched_remove(bs_sched *s, bs_sched_item *it);

/* Closes the uv_async (the loop must run once more to finish closing it) and frees the
 * pool. Nothing may be RUNNING. */
void bs_sched_close(bs_sched *s);

#endif
