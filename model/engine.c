#include "model/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE ((uint64_t)BS_STORE_PAGE)

static uint64_t page_down(uint64_t x) { return x & ~(PAGE - 1); }
static uint64_t page_up(uint64_t x) { return (x + PAGE - 1) & ~(PAGE - 1); }

int bs_engine_open(bs_engine *eng, const char *path, bs_err *e)
{
    memset(eng, 0, sizeof *eng);
    if (bs_store_open(&eng->store, path, e))
        return -1;
    /* untouched pages of an anonymous mapping cost nothing: room for the whole stack */
    eng->map_len = (size_t)page_up(eng->store.stack_len ? eng->store.stack_len : 1);
    eng->stack = mmap(NULL, eng->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (eng->stack == MAP_FAILED) {
        bs_err_set(e, "cannot map %zu bytes for the stack of %s: %s", eng->map_len, path, strerror(errno));
        eng->stack = NULL;
        bs_store_close(&eng->store);
        return -1;
    }
    pthread_mutex_init(&eng->mu, NULL);
    return 0;
}

static void view_free(bs_view *v)
{
    bs_stacked_free(&v->sm);
    free(v);
}

void bs_engine_close(bs_engine *eng)
{
    if (!eng->stack)
        return;
    for (bs_view *v = eng->views, *next; v; v = next) {
        next = v->next;
        view_free(v);
    }
    munmap(eng->stack, eng->map_len);
    pthread_mutex_destroy(&eng->mu);
    bs_store_close(&eng->store);
    memset(eng, 0, sizeof *eng);
}

int bs_engine_open_at(bs_engine *eng, const char *path, const bs_budget *budget, bs_err *e)
{
    int n, bad;
    if (bs_engine_open(eng, path, e))
        return -1;
    if (bs_engine_resolve(&eng->store, budget, true, &n, NULL, e) || bs_engine_read_blocks(eng, n, &bad, e) ||
        bs_engine_publish(eng, n, e)) {
        bs_engine_close(eng);
        return -1;
    }
    return 0;
}

/* ---- views ----------------------------------------------------------------------- */

bs_view *bs_engine_acquire(bs_engine *eng)
{
    pthread_mutex_lock(&eng->mu);
    bs_view *v = eng->cur;
    if (v)
        v->refs++;
    pthread_mutex_unlock(&eng->mu);
    return v;
}

bs_view *bs_engine_hold(bs_engine *eng, bs_view *v)
{
    pthread_mutex_lock(&eng->mu);
    v->refs++;
    pthread_mutex_unlock(&eng->mu);
    return v;
}

/* Unlinks and frees v when nobody holds it (lock held). */
static void maybe_free(bs_engine *eng, bs_view *v)
{
    if (v->refs > 0)
        return;
    for (bs_view **p = &eng->views; *p; p = &(*p)->next)
        if (*p == v) {
            *p = v->next;
            break;
        }
    view_free(v);
}

void bs_engine_release(bs_engine *eng, bs_view *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&eng->mu);
    v->refs--;
    maybe_free(eng, v);
    pthread_mutex_unlock(&eng->mu);
}

int bs_engine_publish(bs_engine *eng, int n, bs_err *e)
{
    if (n < 0 || n > eng->resident_n)
        return bs_err_set(e, "cannot use %d blocks: %d are resident", n, eng->resident_n);
    bs_view *v = calloc(1, sizeof *v);
    if (!v)
        return bs_err_set(e, "out of memory for a view of the model");
    /* built outside the lock: it reads only the store and the resident mapping */
    if (bs_stacked_init(&v->sm, &eng->store, eng->stack, n, e)) {
        free(v);
        return -1;
    }
    v->n = n;
    v->resident_bytes = eng->store.resident[n];
    v->refs = 1;   /* the engine's own hold while current */
    atomic_init(&v->revoked, 0);
    pthread_mutex_lock(&eng->mu);
    v->epoch = ++eng->epoch;
    v->next = eng->views;
    eng->views = v;
    for (bs_view *o = v->next; o; o = o->next)
        if (o->n > n)
            atomic_store(&o->revoked, 1);
    bs_view *old = eng->cur;
    eng->cur = v;
    if (old) {
        old->refs--;
        maybe_free(eng, old);
    }
    pthread_mutex_unlock(&eng->mu);
    return 0;
}

int bs_engine_max_live_n(bs_engine *eng)
{
    int n = 0;
    pthread_mutex_lock(&eng->mu);
    for (bs_view *v = eng->views; v; v = v->next)
        if (v->n > n)
            n = v->n;
    pthread_mutex_unlock(&eng->mu);
    return n;
}

/* ---- residency ------------------------------------------------------------------- */

void bs_engine_grow_plan(const bs_engine *eng, int a, int b, bs_grow_plan *p)
{
    memset(p, 0, sizeof *p);
    uint64_t from = a > 0 ? bs_store_prefix_end(&eng->store, a) : 0;
    uint64_t to = bs_store_prefix_end(&eng->store, b);
    if (to <= from)
        return;
    uint64_t direct = page_up(from);
    if (from % PAGE) {
        /* the page holding `from` also holds resident blocks that a step may be reading */
        p->bounce = true;
        p->bounce_off = page_down(from);
        p->copy_from = from;
        p->copy_len = (to < direct ? to : direct) - from;
    }
    if (to > direct) {
        p->direct_off = direct;
        p->direct_len = page_up(to) - direct;
    }
}

#define READ_EINVAL (-2)   /* the file system refused the read's alignment (O_DIRECT) */

/* Reads up to len bytes at off; a short count only at the end of the file. -1, or
 * READ_EINVAL, on an error. */
static int read_run(int fd, uint8_t *buf, uint64_t len, uint64_t off, uint64_t need, const char *path, bs_err *e)
{
    uint64_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            bs_err_set(e, "%s: read failed at offset %llu: %s", path, (unsigned long long)(off + got), strerror(err));
            return err == EINVAL ? READ_EINVAL : -1;
        }
        if (r == 0)
            break;
        got += (uint64_t)r;
    }
    if (got < need)
        return bs_err_set(e, "%s: truncated: %llu bytes at offset %llu, %llu expected", path,
                          (unsigned long long)got, (unsigned long long)off, (unsigned long long)need);
    return 0;
}

static int read_plan(bs_engine *eng, int fd, const bs_grow_plan *p, uint64_t to, bs_err *e)
{
    const bs_store *s = &eng->store;
    uint64_t base = s->stack_off;
    if (p->bounce) {
        uint8_t *page = aligned_alloc(PAGE, PAGE);
        if (!page)
            return bs_err_set(e, "out of memory for a bounce page");
        uint64_t need = p->copy_from + p->copy_len - p->bounce_off;
        int rc = read_run(fd, page, PAGE, base + p->bounce_off, need, s->path, e);
        if (!rc)
            memcpy(eng->stack + p->copy_from, page + (p->copy_from - p->bounce_off), p->copy_len);
        free(page);
        if (rc)
            return rc;
    }
    if (p->direct_len)
        return read_run(fd, eng->stack + p->direct_off, p->direct_len, base + p->direct_off, to - p->direct_off,
                        s->path, e);
    return 0;
}

int bs_engine_read_blocks(bs_engine *eng, int b, int *bad, bs_err *e)
{
    const bs_store *s = &eng->store;
    *bad = -1;
    if (b < 0 || b > s->n_blocks)
        return bs_err_set(e, "%s: %d blocks asked, the stack has %d", s->path, b, s->n_blocks);
    if (b <= eng->resident_n)
        return 0;
    bs_grow_plan p;
    bs_engine_grow_plan(eng, eng->resident_n, b, &p);
    bool direct;
    int fd = bs_engine_open_blocks(eng, &direct, e);
    if (fd < 0)
        return -1;
    uint64_t to = bs_store_prefix_end(s, b);
    int rc = read_plan(eng, fd, &p, to, e);
    if (rc == READ_EINVAL && direct) {
        /* some file systems accept O_DIRECT at open and refuse it at read */
        close(fd);
        direct = false;
        fd = open(s->path, O_RDONLY | O_CLOEXEC);
        rc = fd < 0 ? bs_err_set(e, "%s: cannot open: %s", s->path, strerror(errno)) : read_plan(eng, fd, &p, to, e);
    }
    if (fd >= 0) {
        if (!direct)
            bs_engine_forget_cache(eng, fd);
        close(fd);
    }
    if (rc) {
        *bad = eng->resident_n;
        return -1;
    }
    return bs_engine_verify_grow(eng, b, bad, e);
}

int bs_engine_open_blocks(const bs_engine *eng, bool *direct, bs_err *e)
{
    const bs_store *s = &eng->store;
    /* O_DIRECT keeps the bytes out of the page cache, which the daemon's cgroup would be
     * charged for a second time; file systems without it (tmpfs) get advice instead */
    *direct = true;
    int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0 && errno == EINVAL) {
        *direct = false;
        fd = open(s->path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return bs_err_set(e, "%s: cannot open: %s", s->path, strerror(errno));
    return fd;
}

void bs_engine_forget_cache(const bs_engine *eng, int fd)
{
    posix_fadvise(fd, (off_t)eng->store.stack_off, 0, POSIX_FADV_DONTNEED);
}

int bs_engine_verify_grow(bs_engine *eng, int b, int *bad, bs_err *e)
{
    const bs_store *s = &eng->store;
    *bad = -1;
    for (int i = eng->resident_n; i < b; i++)
        if (bs_store_verify(s, eng->stack, i, i + 1, e)) {
            *bad = i;
            eng->resident_n = i;
            return -1;
        }
    eng->resident_n = b;
    return 0;
}

int bs_engine_discard(bs_engine *eng, int n, int upto, bs_err *e)
{
    uint64_t keep = page_up(bs_store_prefix_end(&eng->store, n));
    uint64_t end = page_up(bs_store_prefix_end(&eng->store, upto));
    if (end > keep && madvise(eng->stack + keep, (size_t)(end - keep), MADV_DONTNEED))
        return bs_err_set(e, "madvise of %llu bytes failed: %s", (unsigned long long)(end - keep), strerror(errno));
    return 0;
}

int bs_engine_drop(bs_engine *eng, int n, bs_err *e)
{
    if (n < 0 || n > eng->resident_n)
        return bs_err_set(e, "cannot drop to %d blocks: %d are resident", n, eng->resident_n);
    if (bs_engine_discard(eng, n, eng->resident_n, e))
        return -1;
    eng->resident_n = n;
    return 0;
}

/* ---- budgets ----------------------------------------------------------------------- */

double bs_engine_budget_bytes(const bs_store *s, const bs_budget *b)
{
    switch (b->kind) {
    case BS_BUDGET_MIN: return (double)s->resident[s->min_blocks];
    case BS_BUDGET_MAX: return (double)s->resident[s->n_blocks];
    case BS_BUDGET_PERCENT: return b->value / 100.0 * (double)s->resident[s->n_blocks];
    case BS_BUDGET_BPW: return (double)s->base_bytes + b->value * (double)s->linear_params / 8.0;
    case BS_BUDGET_BYTES: break;
    }
    return (double)b->bytes;
}

int bs_engine_n_for_bytes(const bs_store *s, double bytes)
{
    /* resident[] increases with n */
    int lo = 0, hi = s->n_blocks;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((double)s->resident[mid] <= bytes)
            lo = mid;
        else
            hi = mid - 1;
    }
    /* a switching store's prefixes short of the switch all run the floor alone: the
     * shortest of them holds no block it does not use */
    return s->floor_switch > 0 && lo < s->floor_switch ? 0 : lo;
}

int bs_engine_resolve(const bs_store *s, const bs_budget *b, bool strict, int *n, int *clamped, bs_err *e)
{
    double bytes = bs_engine_budget_bytes(s, b);
    uint64_t lo = s->resident[s->min_blocks], hi = s->resident[s->n_blocks];
    int side = 0, k = bs_engine_n_for_bytes(s, bytes);
    if (k < s->min_blocks)
        side = -1, k = s->min_blocks;
    else if (bytes > (double)hi && b->kind != BS_BUDGET_PERCENT)
        side = 1;
    if (clamped)
        *clamped = side;
    if (strict && side < 0)
        return bs_err_set(e, "budget '%s' (%.0f bytes) is below the smallest working model: %llu bytes "
                          "(%d blocks, %.3f bits per weight)", b->text, bytes, (unsigned long long)lo, s->min_blocks,
                          bs_store_bpw(s, s->min_blocks));
    if (strict && side > 0)
        return bs_err_set(e, "budget '%s' (%.0f bytes) is above the full stack: %llu bytes (%d blocks, %.3f bits "
                          "per weight)", b->text, bytes, (unsigned long long)hi, s->n_blocks,
                          bs_store_bpw(s, s->n_blocks));
    *n = k;
    return 0;
}

int bs_engine_budget_n(const bs_store *s, const char *text, int *n, bs_err *e)
{
    bs_budget b;
    if (bs_proto_parse_budget(text, &b, e))
        return -1;
    return bs_engine_resolve(s, &b, true, n, NULL, e);
}
