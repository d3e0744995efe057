/* bs_sched: fair scheduling of generation work onto the math pool.
 *
 * Work comes in slices: one call of the owner's `work` function on a pool thread (a
 * session's prefill chunk, or a few decode steps; the owner keeps each slice short).
 * Ready items wait in one FIFO; the next to run is the first of the group (a user) that has
 * been served the fewest slices, so a user with sixteen sessions gets one user's share,
 * and within a group items take turns in FIFO order. At most `threads` slices run at
 * once, so the pool never holds a backlog and a newly ready item waits for at most one round. When a slice ends,
 * the item comes back to the loop thread through a uv_async and the owner's `after`
 * function decides: push it again (it goes to the tail: round robin) or drop it.
 *
 * Batches: items whose owner set the same non-NULL batch_key (sessions decoding on one
 * engine) may run as one slice: the item picked as above leads and takes the
 * other ready items with its key, wherever they wait, up to max_batch and to an even
 * share of the free threads (so two threads run two batches rather than one). The lead's
 * job runs `work` once for all of them (members linked by batch_next, in FIFO order);
 * `start` once, with the lead, `after` for every member, and the batch holds one thread. An
 * item taken early loses nothing and delays nobody: the batch costs about one slice, and
 * each member is charged a slice of its own group's share.
 *
 * Wide items (a model large enough to split each product's rows) run one slice at a time,
 * holding every thread: the pool thread runs it with the scheduler's team, and the batch
 * takes every ready item with its key (up to max_batch). Never more threads compute than
 * `threads`.
 *
 * Threads: bs_sched_push/remove/close and `after` are loop-thread only; `work` runs on
 * a pool thread and must touch only its items' compute state. */
#ifndef BS_SCHED_H
#define BS_SCHED_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "kernels/pool.h"
#include "kernels/team.h"

typedef enum {
    BS_SCHED_IDLE,      /* in no queue: the owner holds it */
    BS_SCHED_READY,     /* waiting for a thread */
    BS_SCHED_RUNNING,   /* a slice is on a pool thread (or on its way back) */
} bs_sched_where;

typedef struct bs_sched_item {
    bs_pool_job job;
    struct bs_sched_item *prev, *next;   /* the ready FIFO */
    struct bs_sched_item *done_next;     /* slices ended, under the mutex */
    struct bs_sched_item *batch_next;    /* the rest of the batch this item leads (or is in) */
    const void *batch_key;               /* owner's: items with the same non-NULL key may batch */
    int batch;                           /* the lead: items in its slice (1: alone); members 0 */
    bs_sched_where where;
    bool wide;                           /* owner's: its slices split their products over the
                                          * scheduler's team, so they run alone */
    int width;                           /* threads its slice holds (set at dispatch) */
    struct bs_team *team;                /* set at dispatch: the team a wide slice uses, else NULL */
    struct bs_sched *sched;
    uint64_t *served;                    /* its group's slice count (shared by the group's
                                          * items), or NULL: a group of its own */
    uint64_t own_served;
} bs_sched_item;

/* Slices of this many items at most. Below the int8 kernels' matmul crossover (48 rows)
 * each member's linears are its lone pass's, bit for bit (model/forward.h). */
#define BS_SCHED_MAX_BATCH 32

typedef void (*bs_sched_work_fn)(bs_sched_item *it);
typedef void (*bs_sched_start_fn)(bs_sched_item *it, void *ctx);
typedef void (*bs_sched_after_fn)(bs_sched_item *it, void *ctx);

typedef struct bs_sched {
    bs_pool *pool;
    struct bs_team *team;                /* threads > 1: `threads` threads (the pool thread running a
                                          * wide slice and threads - 1 of its own) */
    uv_async_t async;
    pthread_mutex_t mu;
    bs_sched_item *done_head, *done_tail;
    bs_sched_item *ready_head, *ready_tail;
    int n_ready, running, max_running;
    int busy;                            /* threads the running slices hold (a wide one: all) */
    uint64_t slices;                     /* slices run since start */
    uint64_t vtime;                      /* the served count of the last group to lead */
    uint64_t batched_slices;             /* of them, slices of more than one item */
    uint64_t batch_sizes[6];             /* slices by items: 1, 2-3, 4-7, 8-15, 16-31, 32+ */
    uint64_t batched_steps, batched_rows;    /* the owner's count: steps run for several
                                              * items at once, and their rows */
    int max_batch;                       /* BS_SCHED_MAX_BATCH; 1 turns batching off */
    bool in_after;                       /* on_async is handing slices back: no dispatch yet */
    bs_sched_work_fn work;
    bs_sched_after_fn after;
    bs_sched_start_fn start;             /* optional: on the loop thread, as a slice is handed
                                          * to a pool thread (e.g. to pin what it will read);
                                          * with the lead of a batch (members: batch_next) */
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
