#include "daemon/residency.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define PAGE ((uint64_t)BS_STORE_PAGE)
#define DRAIN_CHECK_MS 5

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void setup_uring(bs_res *r, bs_io_mode mode)
{
    if (mode == BS_IO_PREAD) {
        snprintf(r->io_why, sizeof r->io_why, "pread chosen (--io=pread)");
        return;
    }
    int rc = io_uring_queue_init((unsigned)r->qd, &r->ring, 0);
    if (rc < 0) {
        snprintf(r->io_why, sizeof r->io_why, "io_uring unavailable (%s): pread on a worker thread", strerror(-rc));
        return;
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0 || io_uring_register_eventfd(&r->ring, r->efd) < 0 ||
        uv_poll_init(r->loop, &r->poll, r->efd) != 0) {
        snprintf(r->io_why, sizeof r->io_why, "io_uring eventfd could not be set up: pread on a worker thread");
        if (r->efd >= 0)
            close(r->efd);
        r->efd = -1;
        io_uring_queue_exit(&r->ring);
        return;
    }
    r->poll.data = r;
    r->uring = true;
}

int bs_res_init(bs_res *r, uv_loop_t *loop, bs_engine *eng, bs_io_mode mode, int qd, uint64_t chunk,
                bs_res_done_fn done, void *ctx, bs_err *e)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->eng = eng;
    r->efd = -1;
    r->qd = qd < 1 ? 1 : qd > BS_RES_MAX_QD ? BS_RES_MAX_QD : qd;
    r->chunk = chunk < PAGE ? PAGE : chunk / PAGE * PAGE;
    r->done = done;
    r->done_ctx = ctx;
    r->limit_n = eng->store.n_blocks;
    r->fd = bs_engine_open_blocks(eng, &r->direct, e);
    if (r->fd < 0)
        return -1;
    r->bounce = aligned_alloc(PAGE, PAGE);
    if (!r->bounce) {
        close(r->fd);
        return bs_err_set(e, "out of memory for a bounce page");
    }
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    setup_uring(r, mode);
    if (mode == BS_IO_URING && !r->uring) {
        bs_err_set(e, "--io=io_uring: %s", r->io_why);
        bs_res_close(r);
        return -1;
    }
    return 0;
}

bool bs_res_busy(const bs_res *r)
{
    return r->state != BS_RES_IDLE;
}

const char *bs_res_backend(const bs_res *r)
{
    return r->uring ? "io_uring" : "pread";
}

const bs_resize_event *bs_res_event(const bs_res *r, int i)
{
    if (i < 0 || i >= r->n_events || i >= BS_RES_EVENTS)
        return NULL;
    return &r->events[(r->n_events - 1 - i) % BS_RES_EVENTS];
}

/* Records the resize that just ended and tells the owner. */
static void finish(bs_res *r, bool failed)
{
    const bs_store *s = &r->eng->store;
    int to = r->eng->cur ? r->eng->cur->n : 0;
    bs_resize_event *ev = &r->events[r->n_events % BS_RES_EVENTS];
    r->n_events++;
    memset(ev, 0, sizeof *ev);
    ev->t = unix_now();
    ev->from_n = r->from_n;
    ev->to_n = to;
    ev->from_bytes = s->resident[r->from_n];
    ev->to_bytes = s->resident[to];
    snprintf(ev->reason, sizeof ev->reason, "%s", r->reason);
    ev->ms = (double)(uv_hrtime() - r->t0) / 1e6;
    ev->failed = failed;
    ev->mb_s = -1;
    if (to > r->from_n) {
        uint64_t bytes = bs_store_prefix_end(s, to) - bs_store_prefix_end(s, r->from_n);
        r->bytes_read += bytes;
        ev->mb_s = ev->ms > 0 ? (double)bytes / 1048576.0 / (ev->ms / 1e3) : 0;
        r->grows++;
    } else if (to < r->from_n) {
        r->shrinks++;
    }
    if (failed)
        r->failures++;
    r->state = BS_RES_IDLE;
    if (r->done && !r->closing)
        r->done(r, ev, r->done_ctx);
}

void bs_res_mark_bad(bs_res *r, int block, const char *msg)
{
    const bs_store *s = &r->eng->store;
    if (block < 0 || block >= s->n_blocks || (r->has_bad && block >= r->bad.block))
        return;
    r->has_bad = true;
    r->limit_n = block;
    r->bad.block = block;
    snprintf(r->bad.matrix, sizeof r->bad.matrix, "%s", s->mats[s->blocks[block].matrix].name);
    r->bad.level = s->blocks[block].level;
    snprintf(r->bad.error, sizeof r->bad.error, "%s", msg);
}

/* ---- shrink ----------------------------------------------------------------------- */

static void try_drain(bs_res *r)
{
    if (r->state != BS_RES_DRAINING || bs_engine_max_live_n(r->eng) > r->to_n)
        return;
    bs_err e;
    uv_timer_stop(&r->timer);
    bool failed = bs_engine_drop(r->eng, r->to_n, &e) != 0;
    if (failed)
        snprintf(r->io_err, sizeof r->io_err, "%s", e.msg);
    finish(r, failed);
}

static void on_timer(uv_timer_t *t)
{
    try_drain(t->data);
}

void bs_res_views_released(bs_res *r)
{
    try_drain(r);
}

/* ---- grow: verify and publish (both backends) -------------------------------------- */

/* On a libuv worker: the crc32c of every new block (and, for pread, the reads too). */
static void grow_work(uv_work_t *w)
{
    bs_res *r = w->data;
    bs_err e = {{0}};
    int upto = r->to_n;
    if (r->state == BS_RES_VERIFYING) {
        if (r->io_failed) {
            /* blocks wholly before the failed read may still be good */
            const bs_store *s = &r->eng->store;
            upto = r->eng->resident_n;
            while (upto < r->to_n && bs_store_prefix_end(s, upto + 1) <= r->need_end)
                upto++;
        }
        r->work_rc = bs_engine_verify_grow(r->eng, upto, &r->work_bad, &e);
    } else {
        r->work_rc = bs_engine_read_blocks(r->eng, r->to_n, &r->work_bad, &e);
    }
    snprintf(r->work_err, sizeof r->work_err, "%s", e.msg);
}

static void grow_after(uv_work_t *w, int status)
{
    bs_res *r = w->data;
    bs_err e;
    (void)status;
    bool failed = false;
    if (r->work_rc) {
        bs_res_mark_bad(r, r->work_bad, r->work_err);
        failed = true;
    } else if (r->io_failed) {
        /* the blocks before the failed read checked out; the next one is unreadable */
        bs_res_mark_bad(r, r->eng->resident_n, r->io_err);
        failed = true;
    }
    int n = r->eng->resident_n < r->to_n ? r->eng->resident_n : r->to_n;
    if (bs_engine_publish(r->eng, n, &e)) {
        snprintf(r->io_err, sizeof r->io_err, "%s", e.msg);
        failed = true;
    }
    finish(r, failed);
}

static void start_work(bs_res *r)
{
    r->work.data = r;
    uv_queue_work(r->loop, &r->work, grow_work, grow_after);
}

/* ---- grow: io_uring ----------------------------------------------------------------- */

static int free_slot(bs_res *r)
{
    for (int i = 0; i <= r->qd; i++)
        if (!r->reads[i].len)
            return i;
    return -1;
}

static bool queue_read(bs_res *r, int slot)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe)
        return false;
    bs_res_read *rd = &r->reads[slot];
    io_uring_prep_read(sqe, r->fd, rd->dst, (unsigned)rd->len, (off_t)(r->eng->store.stack_off + rd->off));
    io_uring_sqe_set_data64(sqe, (uint64_t)slot);
    r->inflight++;
    return true;
}

static void fill(bs_res *r)
{
    while (!r->io_failed && !r->cancel && r->inflight < r->qd && (r->plan.bounce || r->next_off < r->end_off)) {
        int slot = free_slot(r);
        if (slot < 0)
            break;
        bs_res_read *rd = &r->reads[slot];
        if (r->plan.bounce) {
            *rd = (bs_res_read){r->plan.bounce_off, PAGE, r->bounce, true};
            r->plan.bounce = false;   /* queued: plan.copy_* stay for the copy */
        } else {
            uint64_t len = r->end_off - r->next_off < r->chunk ? r->end_off - r->next_off : r->chunk;
            *rd = (bs_res_read){r->next_off, len, r->eng->stack + r->next_off, false};
            r->next_off += len;
        }
        if (!queue_read(r, slot)) {
            rd->len = 0;
            break;
        }
    }
    int rc = io_uring_submit(&r->ring);
    if (rc < 0 && !r->io_failed) {
        r->io_failed = true;
        snprintf(r->io_err, sizeof r->io_err, "%s: io_uring_submit: %s", r->eng->store.path, strerror(-rc));
    }
}

static void read_failed(bs_res *r, const bs_res_read *rd, const char *what)
{
    if (!r->io_failed || rd->off < r->need_end) {
        /* verification stops before the first byte that could not be read */
        r->need_end = rd->off;
        snprintf(r->io_err, sizeof r->io_err, "%s: read at offset %llu: %s", r->eng->store.path,
                 (unsigned long long)(r->eng->store.stack_off + rd->off), what);
    }
    r->io_failed = true;
}

/* A grow given up for a shrink: nothing it read is published; its pages go back. */
static void drop_cancelled(bs_res *r)
{
    bs_err e;
    if (bs_engine_discard(r->eng, r->eng->resident_n, r->to_n, &e))
        snprintf(r->io_err, sizeof r->io_err, "%s", e.msg);
    snprintf(r->reason, sizeof r->reason, "grow cancelled: %.40s", r->cancel_reason);
    r->to_n = r->from_n;
    r->cancel = false;
    finish(r, false);   /* the owner's done callback asks for the shrink again */
}

static void reads_done(bs_res *r)
{
    uv_poll_stop(&r->poll);
    if (!r->direct)
        bs_engine_forget_cache(r->eng, r->fd);
    if (r->cancel) {
        drop_cancelled(r);
        return;
    }
    if (r->copy_pending && !r->io_failed)
        memcpy(r->eng->stack + r->plan.copy_from, r->bounce + (r->plan.copy_from - r->plan.bounce_off),
               r->plan.copy_len);
    r->state = BS_RES_VERIFYING;
    start_work(r);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    bs_res *r = h->data;
    (void)status;
    (void)events;
    uint64_t count;
    while (read(r->efd, &count, sizeof count) > 0) {
    }
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        int slot = (int)io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        r->inflight--;
        bs_res_read *rd = &r->reads[slot];
        if (res < 0) {
            read_failed(r, rd, strerror(-res));
            rd->len = 0;
        } else if (res == 0 || (uint64_t)res >= rd->len) {
            /* whole, or at the end of the file: enough when it reached what was needed */
            uint64_t reached = rd->off + (uint64_t)res;
            if (res == 0 && rd->off < r->need_end && !rd->bounce)
                read_failed(r, rd, "truncated file");
            else if (rd->bounce && reached < r->plan.copy_from + r->plan.copy_len)
                read_failed(r, rd, "truncated file");
            rd->len = 0;
        } else {
            /* short: ask for the rest */
            rd->off += (uint64_t)res;
            rd->dst += res;
            rd->len -= (uint64_t)res;
            if (rd->off >= r->need_end && !rd->bounce)
                rd->len = 0;
            else if (!r->io_failed && !queue_read(r, slot))
                read_failed(r, rd, "no submission slot");
        }
    }
    fill(r);
    if (r->inflight == 0)
        reads_done(r);
}

static void start_uring(bs_res *r)
{
    r->copy_pending = r->plan.bounce;
    r->next_off = r->plan.direct_off;
    r->end_off = r->plan.direct_off + r->plan.direct_len;
    uv_poll_start(&r->poll, UV_READABLE, on_poll);
    fill(r);
    if (r->inflight == 0)
        reads_done(r);
}

/* ---- requests ------------------------------------------------------------------------ */

int bs_res_request(bs_res *r, int n, const char *reason, bs_err *e)
{
    if (r->state == BS_RES_READING && r->uring && n < r->to_n && !r->closing) {
        /* memory got tight while growing: stop submitting, give the reads back when the
         * ones in flight are done, and let the owner ask for the shrink then */
        if (!r->cancel) {
            r->cancel = true;
            snprintf(r->cancel_reason, sizeof r->cancel_reason, "%s", reason);
        }
        return 1;
    }
    if (r->state != BS_RES_IDLE || r->closing)
        return 1;
    bs_engine *eng = r->eng;
    int cur = eng->cur ? eng->cur->n : 0;
    if (n > r->limit_n)
        n = r->limit_n;
    if (n < 0)
        return bs_err_set(e, "cannot resize to %d blocks", n);
    if (n == cur && n == eng->resident_n)
        return 0;
    r->from_n = cur;
    r->to_n = n;
    r->t0 = uv_hrtime();
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    r->io_failed = false;
    r->io_err[0] = '\0';
    if (n <= eng->resident_n) {
        /* shrink (or back up within what is resident): publish now, free once unused */
        if (n != cur && bs_engine_publish(eng, n, e))
            return -1;
        r->state = BS_RES_DRAINING;
        try_drain(r);
        if (r->state == BS_RES_DRAINING)
            uv_timer_start(&r->timer, on_timer, DRAIN_CHECK_MS, DRAIN_CHECK_MS);
        return 0;
    }
    bs_engine_grow_plan(eng, eng->resident_n, n, &r->plan);
    r->need_end = bs_store_prefix_end(&eng->store, n);
    if (r->uring) {
        r->state = BS_RES_READING;
        start_uring(r);
    } else {
        r->state = BS_RES_READING;
        start_work(r);
    }
    return 0;
}

void bs_res_close(bs_res *r)
{
    if (r->closing || !r->bounce)
        return;
    r->closing = true;
    if (r->uring) {
        /* reads target the engine's mapping: wait for them before it can go away */
        while (r->inflight > 0) {
            struct io_uring_cqe *cqe;
            if (io_uring_wait_cqe(&r->ring, &cqe) < 0)
                break;
            io_uring_cqe_seen(&r->ring, cqe);
            r->inflight--;
        }
        uv_close((uv_handle_t *)&r->poll, NULL);
        io_uring_queue_exit(&r->ring);
        close(r->efd);
    }
    uv_close((uv_handle_t *)&r->timer, NULL);
    close(r->fd);
    free(r->bounce);
}
