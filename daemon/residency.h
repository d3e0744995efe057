/* bs_res: moves an engine's resident prefix from the loop, without ever blocking it.
 *
 * Grow (N -> N'): the page-aligned run of blocks N..N' is read with io_uring (O_DIRECT,
 * `qd` reads of `chunk` bytes in flight, completions through an eventfd watched by a
 * uv_poll) straight into the engine's mapping; the page shared with resident blocks goes
 * through a bounce buffer. Then each block's crc32c is checked on a libuv worker, and N'
 * is published. When io_uring cannot be set up (EPERM, ENOSYS, io_uring_disabled), or
 * with BS_IO_PREAD, the same reads are preads on a libuv worker.
 * Shrink (N -> N'): N' is published at once; the pages past it are returned to the
 * kernel as soon as no step holds a view that may read them (bs_res_views_released is
 * the owner's hint that one may have let go; a timer checks too).
 * A read error or a crc mismatch marks the block bad: growth stops before it for good,
 * and serving goes on at the size reached.
 *
 * One resize runs at a time; bs_res_request returns 1 while one does, and the owner asks
 * again from its `done` callback. A shrink asked for during an io_uring grow cancels the
 * grow (no more reads are submitted; what was read is dropped once the reads in flight
 * complete), so tight memory waits for at most qd reads, not for the whole grow. A pread
 * grow runs to its end. Loop thread only. */
#ifndef BS_RESIDENCY_H
#define BS_RESIDENCY_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "model/engine.h"

#define BS_RES_EVENTS 20
#define BS_RES_MAX_QD 64

typedef enum { BS_IO_AUTO, BS_IO_URING, BS_IO_PREAD } bs_io_mode;

typedef struct {
    double t;                   /* unix seconds at the end */
    int from_n, to_n;
    uint64_t from_bytes, to_bytes;
    char reason[64];
    double ms;                  /* from the request to the publish (grow) or the release (shrink) */
    double mb_s;                /* read speed of a grow; < 0 for a shrink */
    bool failed;                /* stopped at a bad block (to_n is where it stopped) */
} bs_resize_event;

typedef struct {
    int block;
    char matrix[32];
    int level;
    char error[512];
} bs_bad_block;

typedef struct bs_res bs_res;
/* After every resize (also a failed one): the event just recorded. */
typedef void (*bs_res_done_fn)(bs_res *r, const bs_resize_event *ev, void *ctx);

typedef struct {
    uint64_t off, len;          /* what this read still has to bring, in stack offsets */
    uint8_t *dst;
    bool bounce;
} bs_res_read;

struct bs_res {
    uv_loop_t *loop;
    bs_engine *eng;
    bool uring;                 /* the backend: io_uring, else pread */
    char io_why[160];           /* why pread, when it is */
    struct io_uring ring;
    int efd;
    uv_poll_t poll;
    int fd;                     /* the store, O_DIRECT when the file system takes it */
    bool direct;
    uint8_t *bounce;            /* one page */
    int qd;
    uint64_t chunk;
    uv_timer_t timer;           /* re-checks a waiting shrink */
    uv_work_t work;

    enum { BS_RES_IDLE, BS_RES_READING, BS_RES_VERIFYING, BS_RES_DRAINING } state;
    int from_n, to_n;
    uint64_t t0;
    char reason[64];
    bs_grow_plan plan;
    uint64_t next_off, end_off; /* the direct run still to submit */
    uint64_t need_end;          /* stack offset the read must reach */
    int inflight;
    bs_res_read reads[BS_RES_MAX_QD + 1];
    bool copy_pending;          /* the bounce page is still to be copied in */
    bool cancel;                /* a shrink came while growing (io_uring): give the grow up */
    char cancel_reason[64];
    bool io_failed;
    char io_err[512];
    int work_rc, work_bad;
    char work_err[512];

    int limit_n;                /* growth never passes this (the first bad block) */
    bs_bad_block bad;
    bool has_bad;

    bs_resize_event events[BS_RES_EVENTS];
    int n_events;               /* ring: the newest is events[(n_events - 1) % BS_RES_EVENTS] */
    uint64_t grows, shrinks, failures, bytes_read;

    bs_res_done_fn done;
    void *done_ctx;
    bool closing;
};

int bs_res_init(bs_res *r, uv_loop_t *loop, bs_engine *eng, bs_io_mode mode, int qd, uint64_t chunk,
                bs_res_done_fn done, void *ctx, bs_err *e);

/* Starts a resize to n blocks. 0 started (or nothing to do), 1 busy, -1 with e: n past
 * the limit. reason is copied. */
int bs_res_request(bs_res *r, int n, const char *reason, bs_err *e);

bool bs_res_busy(const bs_res *r);

/* A view was released: a waiting shrink may finish now. */
void bs_res_views_released(bs_res *r);

const char *bs_res_backend(const bs_res *r);

/* Block `block` cannot be read or fails its check (msg says how): growth stops before it. */
void bs_res_mark_bad(bs_res *r, int block, const char *msg);

/* The i-th newest event (0 = newest); NULL past the end. */
const bs_resize_event *bs_res_event(const bs_res *r, int i);

/* Closes the handles (the loop must run to finish); a read in flight is waited for. */
void bs_res_close(bs_res *r);

#endif
