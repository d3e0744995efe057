/* bs_engine: the one way to open a stacked model and run it at a size that may change.
 *
 * An engine owns the store, one anonymous mapping mirroring the store's stack section
 * (blocks at their file offsets, so any prefix is one run of bytes), and views.
 *
 *   resident  blocks [0, resident_n) are in the mapping and their crc32c checked
 *   view      a runnable model at some N <= resident_n, with an epoch; whoever runs a step
 *             holds one (bs_engine_acquire .. bs_engine_release), so the depth of every
 *             matrix is fixed for the whole step whatever is published meanwhile
 *   publish   makes a new view current; older views live on until their last holder lets go
 *
 * Growing: read blocks [resident_n, b) into the mapping (bs_engine_grow_plan says which
 * bytes, so that the caller may use io_uring or pread), check them, bs_engine_set_resident,
 * then publish. Bytes any view may read are never rewritten: the page holding the end
 * of the resident prefix is read through a bounce buffer.
 * Shrinking: publish the smaller N, wait until bs_engine_max_live_n() is at most that N,
 * then bs_engine_drop returns the whole pages past it to the kernel. Publishing a smaller
 * N revokes the larger views, so steps on them stop early instead of holding the memory.
 *
 * Threads: every function takes the engine's lock where it touches shared state, so
 * views may be acquired and released from any thread; the grow/shrink sequence itself is
 * driven by one owner at a time. */
#ifndef BS_ENGINE_H
#define BS_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/stacked.h"
#include "model/store.h"
#include "proto/budget.h"

typedef struct bs_view {
    int n;                      /* blocks in use */
    uint64_t epoch;             /* 1 for the first view, +1 per publish */
    uint64_t resident_bytes;    /* store->resident[n] */
    bs_stacked sm;              /* sm.model is what bs_forward runs */
    int refs;                   /* holders, plus one while current */
    atomic_int revoked;         /* set when a smaller N is published: a step running on this
                                 * view stops at its next product (model/forward.h, abort) */
    struct bs_view *next;       /* the engine's list of views */
} bs_view;

typedef struct {
    bs_store store;
    uint8_t *stack;             /* the mapping: map_len bytes, page aligned */
    size_t map_len;
    int resident_n;             /* blocks present and checked */
    bs_view *cur;               /* the published view (NULL before the first publish) */
    bs_view *views;             /* every view still alive, current included */
    uint64_t epoch;
    pthread_mutex_t mu;
} bs_engine;

/* Opens the store and maps (but does not fill) room for its whole stack. */
int bs_engine_open(bs_engine *eng, const char *path, bs_err *e);
void bs_engine_close(bs_engine *eng);

/* The engine at a fixed size, for commands: blocks [0, n) are read (pread, crc-checked)
 * and published. */
int bs_engine_open_at(bs_engine *eng, const char *path, const bs_budget *budget, bs_err *e);

/* ---- views -------------------------------------------------------------------- */

bs_view *bs_engine_acquire(bs_engine *eng);          /* the current view, held */
void bs_engine_release(bs_engine *eng, bs_view *v);  /* NULL is fine */
bs_view *bs_engine_hold(bs_engine *eng, bs_view *v); /* one more hold on a held view; v */

/* A new current view at n (n <= resident_n). */
int bs_engine_publish(bs_engine *eng, int n, bs_err *e);

/* The largest N of any view alive (current or held); 0 when none. */
int bs_engine_max_live_n(bs_engine *eng);

/* ---- residency ------------------------------------------------------------------ */

/* The reads that bring blocks [a, b) in, in stack-section offsets (= mapping offsets;
 * the file offset is store.stack_off + offset). Everything is page aligned for O_DIRECT.
 *   bounce:  when a is not at a page start, the page holding it is read into a bounce
 *            buffer, and bytes [copy_from, copy_from + copy_len) of the stack are copied
 *            from it (page offset copy_from - bounce_off)
 *   direct:  [direct_off, direct_off + direct_len) straight into the mapping (may end
 *            past the file end: a read there comes back short) */
typedef struct {
    bool bounce;
    uint64_t bounce_off, copy_from, copy_len;
    uint64_t direct_off, direct_len;
} bs_grow_plan;

void bs_engine_grow_plan(const bs_engine *eng, int a, int b, bs_grow_plan *p);

/* Opens the store for block reads: O_DIRECT when the file system takes it (*direct set),
 * else buffered; the fd, or -1 with e. */
int bs_engine_open_blocks(const bs_engine *eng, bool *direct, bs_err *e);

/* After buffered reads of fd: the page cache (charged to the cgroup too) need not keep a
 * second copy of the stack. */
void bs_engine_forget_cache(const bs_engine *eng, int fd);

/* Reads blocks [resident_n, b) with pread and the plan (O_DIRECT when the file system
 * takes it, else buffered reads followed by POSIX_FADV_DONTNEED so the page cache does
 * not keep a second copy), checks them and makes them resident. Blocking: for a worker
 * thread or a command. *bad is set to the first failing block (or -1). */
int bs_engine_read_blocks(bs_engine *eng, int b, int *bad, bs_err *e);

/* After the caller filled blocks [resident_n, b) itself: checks their crc32c, sets
 * resident_n = b on success; on a mismatch *bad names the block and blocks before it
 * become resident. */
int bs_engine_verify_grow(bs_engine *eng, int b, int *bad, bs_err *e);

/* Returns the whole pages past block n to the kernel (MADV_DONTNEED) and sets
 * resident_n = n. No live view may use blocks past n (bs_engine_max_live_n() <= n). */
int bs_engine_drop(bs_engine *eng, int n, bs_err *e);

/* Returns the whole pages past block n up to the end of block upto to the kernel, without
 * changing resident_n (a grow given up before it was checked). */
int bs_engine_discard(bs_engine *eng, int n, int upto, bs_err *e);

/* ---- budgets ------------------------------------------------------------------- */

/* A parsed budget (proto/budget.h) as resident bytes of this store. */
double bs_engine_budget_bytes(const bs_store *s, const bs_budget *b);

/* The longest prefix whose resident bytes are at most `bytes`; on a store that switches from
 * its floor to its stack (model/store.h), 0 in place of any prefix short of the switch (they
 * all run the floor alone). */
int bs_engine_n_for_bytes(const bs_store *s, double bytes);

/* A budget as a prefix length. strict (a user asked for exactly that size): below the
 * smallest working prefix or above the full stack is an error. Otherwise it is clamped
 * and *clamped (if given) says which way (-1 below, +1 above, 0 inside). */
int bs_engine_resolve(const bs_store *s, const bs_budget *b, bool strict, int *n, int *clamped, bs_err *e);

/* Budget text (the grammar of proto/budget.h) as a prefix length, strictly: for commands
 * where a user asked for exactly that size. */
int bs_engine_budget_n(const bs_store *s, const char *text, int *n, bs_err *e);

#endif
