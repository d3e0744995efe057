/* Live resize of bitstackd, measured on the real daemon and the real kernel, on synthetic
 * weights of TinyLlama-1.1B's shape (a store written by bs_synth_store_write into a temp
 * folder and deleted at the end):
 *
 *  1. grow throughput: --budget min, then a budget op to max; MiB/s from the daemon's resize
 *     event (bytes grown / ms, crc32c check included), beside `dd iflag=direct bs=1M` reading
 *     the same byte range of the store in the same run; for --io pread and for --io io_uring
 *     at several --io-depth / --io-chunk settings;
 *  2. shrink latency: from full, a budget ~100 MiB lower; time from sending the op until the
 *     daemon's VmRSS (polled every 1 ms) fell by >= 95 MiB;
 *  3. tracking: the daemon in a cgroup v1 memory limit in auto mode, bs-hog stepping its
 *     memory up and down beside it in the same cgroup; resident vs target every 100 ms;
 *  4. soak: bs-hog --cycles 20 while clients send generate requests (max_tokens 1, because
 *     a token of the 1.1B shape takes seconds with the reference kernels); OOM kills and
 *     failed generations.
 *
 * Usage: bench_resize [--quick] [--daemon PATH] [--hog PATH] [--reps N] [--keep]
 * Progress goes to stderr, results to stdout. The last line is the one-line summary.
 * Exits 1 when something breaks (the daemon does not start, a resize never ends, a request
 * gets no answer); targets that are missed are reported, not failed (DESIGN.md §4). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common.h"
#include "kernels/crc32c.h"
#include "model/store.h"
#include "model/synth.h"

#ifndef BS_DAEMON_DEFAULT
#define BS_DAEMON_DEFAULT "bitstackd"
#endif
#ifndef BS_HOG_DEFAULT
#define BS_HOG_DEFAULT "bs-hog"
#endif

#define MIB (1024.0 * 1024.0)
#define CALL_MS 300000          /* a generate of the 1.1B shape takes about a minute: a hang is far above */
#define WEIGHTS "synthetic weights of TinyLlama-1.1B's shape"
#define WEIGHTS_QUICK "synthetic weights of a small llama shape (dim 512, hidden 1376, 8 layers, stories260K's vocabulary)"

typedef struct {
    bool quick, keep;
    const char *daemon, *hog;
    int reps;
} opts_t;

static opts_t O;
static char tmpdir[64];
static char store_path[128];

/* ---- small things ------------------------------------------------------------------- */

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static double median(double *v, int n)
{
    if (n <= 0)
        return -1;
    bench_sort(v, n);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_resize: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}


/* A small pseudo-file with one read() (a 1 ms poll stays cheap), NUL-terminated; false
 * when it is missing or empty. */
static bool read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    return true;
}

/* VmRSS of pid in bytes; -1 when unreadable. */
static long long vmrss(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!read_small(path, buf, sizeof buf))
        return -1;
    const char *p = strstr(buf, "VmRSS:");
    return p ? atoll(p + 6) * 1024 : -1;
}

/* ---- processes: everything started is tracked, so an early exit leaves nothing behind -- */

static pid_t children[16];

static void track(pid_t pid, bool add)
{
    for (int i = 0; i < 16; i++)
        if (add ? children[i] == 0 : children[i] == pid) {
            children[i] = add ? pid : 0;
            return;
        }
}

static void kill_children(void)
{
    for (int i = 0; i < 16; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
}

/* Starts argv[0] with stdout and stderr to log (or /dev/null), stdin from in_fd (or
 * /dev/null), first joining the cgroup whose cgroup.procs is procs (when not NULL). */
static pid_t spawn(char *const argv[], const char *log, const char *procs, int in_fd)
{
    pid_t pid = fork();
    if (pid < 0) {
        progress("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (procs) {
            /* joined before exec, so every page the program touches is charged there */
            int fd = open(procs, O_WRONLY);
            char me[32];
            int len = snprintf(me, sizeof me, "%d", (int)getpid());
            if (fd < 0 || write(fd, me, (size_t)len) != len)
                _exit(126);
            close(fd);
        }
        int out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        if (in >= 0)
            dup2(in, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    track(pid, true);
    return pid;
}

/* Waits up to ms for pid; true with *st when it exited. */
static bool reap(pid_t pid, int ms, int *st)
{
    double end = bs_now() + ms / 1e3;
    for (;;) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r == pid) {
            track(pid, false);
            return true;
        }
        if (r < 0 || bs_now() > end)
            return false;
        msleep(5);
    }
}

/* SIGTERM, then SIGKILL after ms; true when it exited with status 0 after the SIGTERM. */
static bool stop_pid(pid_t pid, int ms)
{
    int st = 0;
    kill(pid, SIGTERM);
    if (reap(pid, ms, &st))
        return WIFEXITED(st) && WEXITSTATUS(st) == 0;
    kill(pid, SIGKILL);
    reap(pid, 10000, &st);
    return false;
}

/* ---- a blocking JSON-lines client --------------------------------------------------- */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} jconn;

static int jc_open(jconn *c, const char *path)
{
    memset(c, 0, sizeof *c);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path));
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void jc_close(jconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static int jc_send(jconn *c, const char *line)
{
    size_t len = strlen(line);
    char *l = malloc(len + 1);
    if (!l)
        return -1;
    memcpy(l, line, len);
    l[len] = '\n';
    size_t off = 0;
    while (off <= len) {
        ssize_t w = send(c->fd, l + off, len + 1 - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            free(l);
            return -1;
        }
        off += (size_t)w;
    }
    free(l);
    return 0;
}

/* One response line parsed; NULL on end of stream, timeout or bad JSON. */
static json_t *jc_read(jconn *c, int ms)
{
    double end = bs_now() + ms / 1e3;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            json_error_t je;
            json_t *j = json_loadb(c->buf, n, 0, &je);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return j;
        }
        int left = (int)((end - bs_now()) * 1e3);
        if (left <= 0)
            return NULL;
        struct pollfd p = {c->fd, POLLIN, 0};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? c->cap * 2 : 262144;
            char *b = realloc(c->buf, cap);
            if (!b)
                return NULL;
            c->buf = b;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        c->len += (size_t)n;
    }
}

/* Sends line and returns the "result" object of the answer (a new reference); NULL and a
 * message when the answer is an error or does not come. */
static json_t *jc_result(jconn *c, const char *line)
{
    if (jc_send(c, line)) {
        progress("send %s: %s", line, strerror(errno));
        return NULL;
    }
    json_t *j = jc_read(c, CALL_MS);
    json_t *res = j ? json_object_get(j, "result") : NULL;
    if (!res) {
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        progress("%s: %s", line, s ? s : "no answer");
        free(s);
        json_decref(j);
        return NULL;
    }
    json_incref(res);
    json_decref(j);
    return res;
}

static long long jint(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static double jnum(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* A budget op; 0 when accepted. */
static int set_budget(jconn *c, const char *budget)
{
    char line[160];
    snprintf(line, sizeof line, "{\"id\":\"b\",\"op\":\"budget\",\"budget\":\"%s\"}", budget);
    json_t *r = jc_result(c, line);
    json_decref(r);
    return r ? 0 : -1;
}

static json_t *status(jconn *c)
{
    return jc_result(c, "{\"id\":\"s\",\"op\":\"status\"}");
}

/* Polls status until stack_n is want and no resize runs; the status (new reference) or
 * NULL after timeout_s. */
static json_t *wait_size(jconn *c, int want, double timeout_s)
{
    double end = bs_now() + timeout_s;
    while (bs_now() < end) {
        json_t *s = status(c);
        if (!s)
            return NULL;
        if (jint(s, "stack_n") == want && !json_is_true(json_object_get(s, "resizing")))
            return s;
        json_decref(s);
        msleep(5);
    }
    progress("no resize to %d blocks within %.0f s", want, timeout_s);
    return NULL;
}

/* The newest resize event of a status (borrowed), or NULL. */
static json_t *newest_event(json_t *st)
{
    json_t *a = json_object_get(st, "resizes");
    size_t n = json_array_size(a);
    return n ? json_array_get(a, n - 1) : NULL;
}

/* ---- the daemon ---------------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    char sock[128], log[128];
    jconn c;
} daemon_t;

static void dump_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* bitstackd --store <store> --socket <tmp>/<name>.sock extra..., in the cgroup when
 * procs is set; connected when it returns 0. */
static int daemon_start(daemon_t *d, const char *name, const char *procs, const char *const *extra)
{
    memset(d, 0, sizeof *d);
    d->c.fd = -1;
    snprintf(d->sock, sizeof d->sock, "%s/%s.sock", tmpdir, name);
    snprintf(d->log, sizeof d->log, "%s/%s.log", tmpdir, name);
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)O.daemon;
    argv[n++] = "--store";
    argv[n++] = store_path;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    for (int i = 0; extra[i] && n < 38; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    d->pid = spawn(argv, d->log, procs, -1);
    if (d->pid < 0)
        return -1;
    double end = bs_now() + 120;
    while (bs_now() < end) {
        if (jc_open(&d->c, d->sock) == 0)
            return 0;
        int st;
        if (reap(d->pid, 0, &st)) {
            progress("%s exited at start (status %d)", O.daemon, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
            dump_log(d->log);
            d->pid = -1;
            return -1;
        }
        msleep(20);
    }
    progress("%s does not listen on %s after 120 s", O.daemon, d->sock);
    dump_log(d->log);
    return -1;
}

static int daemon_stop(daemon_t *d)
{
    jc_close(&d->c);
    if (d->pid <= 0)
        return 0;
    bool ok = stop_pid(d->pid, 120000);
    d->pid = -1;
    if (!ok) {
        progress("bitstackd did not exit cleanly after SIGTERM");
        dump_log(d->log);
    }
    return ok ? 0 : -1;
}

/* ---- the store --------------------------------------------------------------------- */

typedef struct {
    int total, min_n;
    uint64_t stack_off, full_bytes, min_bytes, base_bytes;
    uint64_t *resident;          /* total + 1 */
    uint64_t *prefix_end;        /* total + 1: bs_store_prefix_end */
    uint64_t max_block;
    long long file_bytes;
} store_info;

static int make_store(store_info *si)
{
    bs_err e = {{0}};
    bs_synth_opts so;
    const char *shape = O.quick ? "stories260k" : "tinyllama-1.1b";
    if (bs_synth_preset(&so, shape, &e)) {
        progress("%s", e.msg);
        return -1;
    }
    if (O.quick) {
        /* a few MiB of stack: large enough that a shrink shows in VmRSS above its noise */
        so.cfg.dim = 512;
        so.cfg.hidden_dim = 1376;
        so.cfg.n_layers = 8;
    }
    snprintf(store_path, sizeof store_path, "%s/%s.bstk", tmpdir, shape);
    progress("writing %s (%s)", store_path, O.quick ? WEIGHTS_QUICK : WEIGHTS);
    double t0 = bs_now();
    if (bs_synth_store_write(store_path, &so, NULL, NULL, &e)) {
        progress("%s", e.msg);
        return -1;
    }
    double secs = bs_now() - t0;
    bs_store s;
    if (bs_store_open(&s, store_path, &e)) {
        progress("%s", e.msg);
        return -1;
    }
    memset(si, 0, sizeof *si);
    si->total = s.n_blocks;
    si->min_n = s.min_blocks;
    si->stack_off = s.stack_off;
    si->base_bytes = s.base_bytes;
    si->file_bytes = (long long)s.file_size;
    si->resident = calloc((size_t)s.n_blocks + 1, sizeof *si->resident);
    si->prefix_end = calloc((size_t)s.n_blocks + 1, sizeof *si->prefix_end);
    if (!si->resident || !si->prefix_end) {
        bs_store_close(&s);
        return -1;
    }
    for (int i = 0; i <= s.n_blocks; i++) {
        si->resident[i] = s.resident[i];
        si->prefix_end[i] = bs_store_prefix_end(&s, i);
        if (i < s.n_blocks && s.blocks[i].bytes > si->max_block)
            si->max_block = s.blocks[i].bytes;
    }
    si->full_bytes = s.resident[s.n_blocks];
    si->min_bytes = s.resident[s.min_blocks];
    /* the bench holds nothing of the store while the daemon runs: fp32 embeddings are big */
    bs_store_close(&s);
    printf("store: %s, %d blocks, %.1f MiB file, written in %.1f s; resident %.1f MiB at min (%d blocks) .. "
           "%.1f MiB full (base %.1f MiB)\n",
           O.quick ? WEIGHTS_QUICK : WEIGHTS, si->total, si->file_bytes / MIB, secs, si->min_bytes / MIB, si->min_n,
           si->full_bytes / MIB, si->base_bytes / MIB);
    return 0;
}

/* ---- 1. grow throughput --------------------------------------------------------------- */

typedef struct {
    const char *io;
    int depth;
    const char *chunk;
} io_cfg;

/* dd reading [off, off + len) of the store with O_DIRECT; MiB/s, or -1. */
static double dd_mib_s(uint64_t off, uint64_t len)
{
    char iff[160], skip[64], count[64];
    snprintf(iff, sizeof iff, "if=%s", store_path);
    snprintf(skip, sizeof skip, "skip=%llu", (unsigned long long)off);
    snprintf(count, sizeof count, "count=%llu", (unsigned long long)len);
    char *argv[] = {"/usr/bin/dd", iff, "of=/dev/null", "iflag=direct,skip_bytes,count_bytes", "bs=1M", skip, count,
                    NULL};
    if (access(argv[0], X_OK))
        argv[0] = "/bin/dd";
    double t0 = bs_now();
    pid_t pid = spawn(argv, NULL, NULL, -1);
    int st;
    if (pid < 0 || !reap(pid, 600000, &st) || !WIFEXITED(st) || WEXITSTATUS(st)) {
        progress("dd failed");
        return -1;
    }
    return (double)len / MIB / (bs_now() - t0);
}

/* Where a grow's time goes, measured here over the same range: O_DIRECT preads of 1 MiB
 * into fresh anonymous pages (what the daemon's mapping is after a shrink gave its pages
 * back: each is faulted in and zeroed on first touch), the same into pages already there,
 * and crc32c over the bytes (the daemon checks every block after the reads). MiB/s each. */
static int grow_parts(uint64_t off, uint64_t len, double *fresh, double *warm, double *crc)
{
    int fd = open(store_path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        progress("%s: O_DIRECT open: %s", store_path, strerror(errno));
        return -1;
    }
    uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        close(fd);
        return -1;
    }
    double *out[2] = {fresh, warm};
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        double t0 = bs_now();
        for (uint64_t at = 0; at < len;) {
            size_t n = len - at < (1u << 20) ? (size_t)(len - at) : (1u << 20);
            ssize_t r = pread(fd, buf + at, n, (off_t)(off + at));
            if (r == 0)
                break;   /* the range ends on a page boundary, the file may end before it */
            if (r < 0) {
                progress("pread at %llu: %s", (unsigned long long)(off + at), strerror(errno));
                rc = -1;
                break;
            }
            at += (uint64_t)r;
        }
        *out[pass] = (double)len / MIB / (bs_now() - t0);
    }
    double t0 = bs_now();
    volatile uint32_t sum = bs_crc32c(0, buf, len);
    (void)sum;
    *crc = (double)len / MIB / (bs_now() - t0);
    munmap(buf, len);
    close(fd);
    return rc;
}

typedef struct {
    double mib_s, ms, dd, ratio;
} grow_row;

static int grow_one(const store_info *si, const io_cfg *cfg, grow_row *row, char *backend, size_t bcap)
{
    char depth[16];
    snprintf(depth, sizeof depth, "%d", cfg->depth);
    const char *extra[12] = {"--budget", "min", "--io", cfg->io};
    int n = 4;
    if (cfg->depth) {
        extra[n++] = "--io-depth";
        extra[n++] = depth;
        extra[n++] = "--io-chunk";
        extra[n++] = cfg->chunk;
    }
    extra[n] = NULL;
    daemon_t d;
    if (daemon_start(&d, "grow", NULL, extra))
        return -1;
    /* the byte range a grow from min to full reads: whole pages, as the daemon reads them */
    uint64_t a = si->prefix_end[si->min_n] / BS_STORE_PAGE * BS_STORE_PAGE;
    uint64_t b = (si->prefix_end[si->total] + BS_STORE_PAGE - 1) / BS_STORE_PAGE * BS_STORE_PAGE;
    double mib[16], ms[16], dd[16];
    int rc = -1, reps = O.reps;
    for (int r = 0; r < reps; r++) {
        /* dd first and the daemon right after, so a drift of the disk's speed hits both */
        if ((dd[r] = dd_mib_s(si->stack_off + a, b - a)) < 0)
            goto out;
        if (set_budget(&d.c, "max"))
            goto out;
        json_t *st = wait_size(&d.c, si->total, 600);
        json_t *ev = st ? newest_event(st) : NULL;
        if (!ev || jint(ev, "from_n") != si->min_n || jint(ev, "to_n") != si->total) {
            progress("no grow event %d -> %d in status", si->min_n, si->total);
            json_decref(st);
            goto out;
        }
        mib[r] = jnum(ev, "mb_s");
        ms[r] = jnum(ev, "ms");
        const char *be = json_string_value(json_object_get(st, "io_backend"));
        snprintf(backend, bcap, "%s", be ? be : "?");
        json_decref(st);
        if (set_budget(&d.c, "min"))
            goto out;
        json_decref(st = wait_size(&d.c, si->min_n, 60));
        if (!st)
            goto out;
        progress("grow %s depth %d chunk %s: %.0f MiB/s (dd %.0f MiB/s)", cfg->io, cfg->depth,
                 cfg->depth ? cfg->chunk : "-", mib[r], dd[r]);
    }
    row->mib_s = median(mib, reps);
    row->ms = median(ms, reps);
    row->dd = median(dd, reps);
    row->ratio = row->mib_s / row->dd;
    rc = 0;
out:
    if (daemon_stop(&d))
        rc = -1;
    return rc;
}

static int bench_grow(const store_info *si, double *ratio_default)
{
    static const io_cfg full[] = {
        {"pread", 0, NULL},        {"io_uring", 4, "256K"}, {"io_uring", 4, "1M"},  {"io_uring", 4, "4M"},
        {"io_uring", 16, "256K"},  {"io_uring", 16, "1M"},  {"io_uring", 16, "4M"}, {"io_uring", 32, "256K"},
        {"io_uring", 32, "1M"},    {"io_uring", 32, "4M"},
    };
    static const io_cfg quick[] = {{"pread", 0, NULL}, {"io_uring", 16, "1M"}};
    const io_cfg *cfgs = O.quick ? quick : full;
    int n = O.quick ? 2 : (int)(sizeof full / sizeof full[0]);
    uint64_t bytes = si->prefix_end[si->total] - si->prefix_end[si->min_n];
    printf("\n1. grow throughput: budget min -> max, %d -> %d blocks, %.1f MiB read; median of %d\n", si->min_n,
           si->total, bytes / MIB, O.reps);
    printf("   daemon MiB/s = bytes grown / the resize event's ms (request to publish: reads and crc32c check);\n"
           "   dd = dd if=STORE of=/dev/null iflag=direct,skip_bytes,count_bytes bs=1M over the same page-aligned "
           "range,\n   timed as a whole process, run just before each grow\n");
    printf("%-9s %6s %6s | %9s %9s | %9s | %6s\n", "io", "depth", "chunk", "MiB/s", "ms", "dd MiB/s", "of dd");
    *ratio_default = -1;
    double best = -1, dd_sum = 0;
    int best_i = -1;
    for (int i = 0; i < n; i++) {
        grow_row row;
        char backend[32] = "?";
        if (grow_one(si, &cfgs[i], &row, backend, sizeof backend))
            return -1;
        if (strcmp(backend, cfgs[i].io)) {
            progress("asked for --io %s, the daemon used %s", cfgs[i].io, backend);
            return -1;
        }
        bool def = cfgs[i].depth == 16 && !strcmp(cfgs[i].chunk, "1M");
        char dstr[16] = "-";
        if (cfgs[i].depth)
            snprintf(dstr, sizeof dstr, "%d", cfgs[i].depth);
        printf("%-9s %6s %6s | %9.0f %9.1f | %9.0f | %6.2f%s\n", cfgs[i].io, dstr, cfgs[i].depth ? cfgs[i].chunk : "-",
               row.mib_s, row.ms, row.dd, row.ratio, def ? "  (the defaults)" : "");
        fflush(stdout);
        if (def)
            *ratio_default = row.ratio;
        dd_sum += row.dd;
        if (row.ratio > best)
            best = row.ratio, best_i = i;
    }
    double dd_all = dd_sum / n;   /* the mean of the rows' dd medians */
    uint64_t a = si->prefix_end[si->min_n] / BS_STORE_PAGE * BS_STORE_PAGE;
    uint64_t b = (si->prefix_end[si->total] + BS_STORE_PAGE - 1) / BS_STORE_PAGE * BS_STORE_PAGE;
    double fr[16], wm[16], cr[16];
    for (int r = 0; r < O.reps; r++)
        if (grow_parts(si->stack_off + a, b - a, &fr[r], &wm[r], &cr[r]))
            return -1;
    double f = median(fr, O.reps), w = median(wm, O.reps), c = median(cr, O.reps);
    printf("the parts, in this process over the same range (median of %d): O_DIRECT pread 1 MiB into fresh "
           "anonymous pages %.0f MiB/s,\n  into pages already faulted in %.0f MiB/s; crc32c (%s) %.0f MiB/s; fresh "
           "reads then crc32c in series %.0f MiB/s (%.2f of dd)\n",
           O.reps, f, w, bs_crc32c_hw_available() ? "hardware" : "software", c, 1 / (1 / f + 1 / c),
           1 / (1 / f + 1 / c) / dd_all);
    if (best_i >= 0) {
        if (cfgs[best_i].depth)
            printf("best: --io io_uring --io-depth %d --io-chunk %s at %.2f of dd\n", cfgs[best_i].depth,
                   cfgs[best_i].chunk, best);
        else
            printf("best: --io %s at %.2f of dd\n", cfgs[best_i].io, best);
    }
    return 0;
}

/* ---- 2. shrink latency ----------------------------------------------------------------- */

static uint64_t page_up(uint64_t x)
{
    return (x + BS_STORE_PAGE - 1) / BS_STORE_PAGE * BS_STORE_PAGE;
}

static int bench_shrink(const store_info *si, double *med_ms, double *drop_mib)
{
    const char *extra[] = {"--budget", "max", NULL};
    daemon_t d;
    if (daemon_start(&d, "shrink", NULL, extra))
        return -1;
    int rc = -1;
    json_t *st = wait_size(&d.c, si->total, 600);
    if (!st)
        goto out;
    json_decref(st);
    /* the size ~100 MiB below full (quick: half the stack above min) */
    double drop = O.quick ? (double)(si->full_bytes - si->min_bytes) / 2 : 100 * MIB;
    int n = si->total;
    while (n > si->min_n && (double)(si->full_bytes - si->resident[n]) < drop)
        n--;
    /* what MADV_DONTNEED gives back: the whole pages past the new end */
    uint64_t freed = page_up(si->prefix_end[si->total]) - page_up(si->prefix_end[n]);
    double thresh = O.quick ? (double)freed * 0.9 : 95 * MIB;
    *drop_mib = freed / MIB;
    char budget[32];
    snprintf(budget, sizeof budget, "%llu", (unsigned long long)si->resident[n]);
    int reps = O.quick ? 2 : 5;
    printf("\n2. shrink latency: budget max -> %s bytes, %d -> %d blocks, %.1f MiB of the mapping given back; "
           "median of %d\n", budget, si->total, n, freed / MIB, reps);
    printf("   ms = from sending the budget op until the daemon's VmRSS (polled every 1 ms) fell by %.1f MiB;\n"
           "   event = the resize event's own ms (publish to madvise done)\n", thresh / MIB);
    printf("%4s | %9s %9s | %10s %10s\n", "rep", "ms", "event ms", "RSS before", "RSS after");
    double ms[8];
    for (int r = 0; r < reps; r++) {
        long long rss0 = vmrss(d.pid), rss = rss0;
        char line[128];
        snprintf(line, sizeof line, "{\"id\":\"b\",\"op\":\"budget\",\"budget\":\"%s\"}", budget);
        double t0 = bs_now(), t = -1;
        if (rss0 < 0 || jc_send(&d.c, line))
            goto out;
        /* the answer is read after: the daemon may well free the pages before it answers */
        while (bs_now() - t0 < 5) {
            rss = vmrss(d.pid);
            if (rss >= 0 && (double)(rss0 - rss) >= thresh) {
                t = bs_now() - t0;
                break;
            }
            msleep(1);
        }
        json_t *ans = jc_read(&d.c, CALL_MS);
        bool ok = ans && json_object_get(ans, "result");
        json_decref(ans);
        if (!ok) {
            progress("budget %s refused", budget);
            goto out;
        }
        if (t < 0) {
            progress("VmRSS fell by only %.1f MiB within 5 s of a budget %s (from %d blocks to %d)",
                     (rss0 - rss) / MIB, budget, si->total, n);
            goto out;
        }
        ms[r] = t * 1e3;
        st = wait_size(&d.c, n, 60);
        json_t *ev = st ? newest_event(st) : NULL;
        double ev_ms = ev ? jnum(ev, "ms") : -1;
        json_decref(st);
        printf("%4d | %9.2f %9.2f | %6.1f MiB %6.1f MiB\n", r + 1, ms[r], ev_ms, rss0 / MIB, vmrss(d.pid) / MIB);
        fflush(stdout);
        if (set_budget(&d.c, "max") || !(st = wait_size(&d.c, si->total, 600)))
            goto out;
        json_decref(st);
        msleep(200);
    }
    *med_ms = median(ms, reps);
    printf("median: %.2f ms\n", *med_ms);
    rc = 0;
out:
    if (daemon_stop(&d))
        rc = -1;
    return rc;
}

/* ---- a cgroup v1 memory group ------------------------------------------------------------ */

typedef struct {
    char dir[160], procs[200];
} cgroup_t;

static int cg_write(const cgroup_t *cg, const char *file, long long v)
{
    char path[256], text[32];
    snprintf(path, sizeof path, "%s/%s", cg->dir, file);
    int len = snprintf(text, sizeof text, "%lld", v);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, text, (size_t)len);
    close(fd);
    return w == len ? 0 : -1;
}

/* A number from file (plain) or, with key, from a "key value" line of it; -1 if absent. */
static long long cg_read(const cgroup_t *cg, const char *file, const char *key)
{
    char path[256], buf[8192];
    snprintf(path, sizeof path, "%s/%s", cg->dir, file);
    if (!read_small(path, buf, sizeof buf))
        return -1;
    if (!key)
        return atoll(buf);
    size_t kl = strlen(key);
    for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, key, kl) && p[kl] == ' ')
            return atoll(p + kl + 1);
    return -1;
}

static int cg_make(cgroup_t *cg, long long limit, char *why, size_t wn)
{
    memset(cg, 0, sizeof *cg);
    struct stat sb;
    if (stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &sb)) {
        snprintf(why, wn, "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory");
        return -1;
    }
    snprintf(cg->dir, sizeof cg->dir, "/sys/fs/cgroup/memory/bench-resize-%d", (int)getpid());
    if (mkdir(cg->dir, 0755)) {
        snprintf(why, wn, "cannot create %s: %s", cg->dir, strerror(errno));
        cg->dir[0] = 0;
        return -1;
    }
    snprintf(cg->procs, sizeof cg->procs, "%s/cgroup.procs", cg->dir);
    if (cg_write(cg, "memory.limit_in_bytes", limit)) {
        snprintf(why, wn, "cannot set %s/memory.limit_in_bytes: %s", cg->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static void cg_remove(cgroup_t *cg)
{
    if (!cg->dir[0])
        return;
    /* the kernel takes a moment to tear down the last member's charges */
    for (int i = 0; i < 300 && rmdir(cg->dir) && errno == EBUSY; i++)
        msleep(10);
    cg->dir[0] = 0;
}

/* ---- bs-hog ------------------------------------------------------------------------------- */

static pid_t hog_start(const cgroup_t *cg, long mb, const char *hold_ms, const char *cycles, const char *log)
{
    char smb[32];
    snprintf(smb, sizeof smb, "%ld", mb);
    /* 64 MiB every 50 ms: a step of a few hundred MiB lands within half a second */
    char *argv[] = {(char *)O.hog, "--mb", smb, "--step-mb", "64", "--step-ms", "50", "--hold-ms", (char *)hold_ms,
                    "--cycles", (char *)cycles, NULL};
    return spawn(argv, log, cg->procs, -1);
}

/* ---- 3. tracking ----------------------------------------------------------------------------- */

typedef struct {
    cgroup_t cg;
    daemon_t d;
    long long limit;
    long hog_max;                /* MiB the hog may take with the model at its smallest */
    bool up;
} cg_env;

#define RESERVE (128ll << 20)
#define TOL_FIXED (8.0 * MIB)    /* beside 2%: a few blocks, since N moves block by block */
#define HYSTERESIS (32.0 * MIB)  /* the policy's default: room it wants before it grows */

static int settle(jconn *c, double timeout_s, json_t **out)
{
    double end = bs_now() + timeout_s, since = bs_now();
    long long last = -1;
    while (bs_now() < end) {
        json_t *s = status(c);
        if (!s)
            return -1;
        long long n = jint(s, "stack_n");
        bool busy = json_is_true(json_object_get(s, "resizing"));
        if (n != last || busy)
            last = n, since = bs_now();
        if (bs_now() - since >= 1.5) {
            *out = s;
            return 0;
        }
        json_decref(s);
        msleep(100);
    }
    progress("the daemon's size did not settle within %.0f s", timeout_s);
    return -1;
}

/* Starts the cgroup and the auto-mode daemon in it; -2 when no cgroup can be had here. */
static int env_start(cg_env *env, const store_info *si, char *why, size_t wn)
{
    memset(env, 0, sizeof *env);
    env->d.pid = -1;
    env->limit = 2ll << 30;
    if (cg_make(&env->cg, env->limit, why, wn))
        return -2;
    const char *extra[] = {"--budget", "auto", "--sample-ms", "100", "--grow-delay-ms", "500", "--reserve", "128M",
                           NULL};
    if (daemon_start(&env->d, "auto", env->cg.procs, extra))
        return -1;
    env->up = true;
    json_t *s;
    if (settle(&env->d.c, 120, &s))
        return -1;
    long long usage = cg_read(&env->cg, "memory.usage_in_bytes", NULL);
    long long res = jint(s, "resident_bytes");
    json_decref(s);
    if (O.quick) {
        /* a tiny model: a tight limit, so the hog stays small and the run short */
        env->limit = usage + (448ll << 20);
        if (cg_write(&env->cg, "memory.limit_in_bytes", env->limit)) {
            progress("cannot lower the limit: %s", strerror(errno));
            return -1;
        }
    }
    /* what the cgroup would hold with the model at its floor */
    long long at_min = usage - (res - (long long)si->min_bytes);
    env->hog_max = (long)((env->limit - at_min - RESERVE - (96ll << 20)) >> 20);
    printf("cgroup: %s, memory.limit_in_bytes %.0f MiB; the daemon settled at %.1f MiB resident, cgroup usage "
           "%.1f MiB (%.1f MiB with the model at min); the hog may take up to %ld MiB\n",
           env->cg.dir, env->limit / MIB, res / MIB, usage / MIB, at_min / MIB, env->hog_max);
    printf("daemon: %s --budget auto --sample-ms 100 --grow-delay-ms 500 --reserve 128M\n", O.daemon);
    if (env->hog_max < 32) {
        progress("no room for a hog under the limit");
        return -1;
    }
    return 0;
}

static void env_stop(cg_env *env, int *rc)
{
    if (env->up && daemon_stop(&env->d))
        *rc = -1;
    env->up = false;
    cg_remove(&env->cg);
}

typedef struct {
    pid_t pid;
    long mb;
} hog_t;

static int bench_tracking(cg_env *env, const store_info *si, double *pct_out)
{
    static const double full_pattern[] = {0.55, 0, 1.0, 0.3, 0.8, 0};
    static const double quick_pattern[] = {0.6, 0};
    const double *pat = O.quick ? quick_pattern : full_pattern;
    int phases = O.quick ? 2 : (int)(sizeof full_pattern / sizeof full_pattern[0]);
    double hold = O.quick ? 2.0 : 5.0, settle_s = O.quick ? 1.0 : 1.5;
    long long oom0 = cg_read(&env->cg, "memory.oom_control", "oom_kill");
    long long fail0 = cg_read(&env->cg, "memory.failcnt", NULL);
    cg_write(&env->cg, "memory.max_usage_in_bytes", 0);   /* v1: resets the watermark */
    printf("\n3. tracking: bs-hog in the same cgroup steps to a fraction of %ld MiB, %.0f s per step; sampled "
           "every 100 ms;\n   samples in the first %.1f s after each step are not counted. in-target: |resident - "
           "target_bytes| <= 2%% of target + %.0f MiB\n   (N moves block by block). in-goal: resident within 2%% + "
           "%.0f MiB of goal = clamp(limit - (usage - inactive_file) + resident - reserve,\n   min, full), "
           "and at most %.0f MiB (the policy's hysteresis) further below it.\n",
           env->hog_max, hold, settle_s, TOL_FIXED / MIB, TOL_FIXED / MIB, HYSTERESIS / MIB);
    printf("%5s %8s | %8s | %12s %12s %12s | %12s %12s\n", "step", "hog MiB", "samples", "resident MiB",
           "target MiB", "goal MiB", "in-target", "in-goal");
    hog_t hogs[8];
    int n_hogs = 0, rc = -1;
    long total = 0;
    int all = 0, in_t = 0, in_g = 0;
    long long max_usage = 0;
    char log[160];
    for (int p = 0; p < phases; p++) {
        long want = (long)(pat[p] * env->hog_max);
        /* down: end hogs, newest first; up: one more hog for the difference */
        while (total > want && n_hogs > 0) {
            hog_t *h = &hogs[--n_hogs];
            if (!stop_pid(h->pid, 10000))
                progress("a hog of %ld MiB did not exit cleanly", h->mb);
            total -= h->mb;
        }
        if (total < want && n_hogs < 8) {
            snprintf(log, sizeof log, "%s/hog%d.log", tmpdir, p);
            pid_t pid = hog_start(&env->cg, want - total, "86400000", "1", log);
            if (pid < 0)
                goto out;
            hogs[n_hogs++] = (hog_t){pid, want - total};
            total = want;
        }
        double t0 = bs_now();
        int ph_all = 0, ph_t = 0, ph_g = 0;
        long long res = 0, tgt = 0, goal = 0;
        while (bs_now() - t0 < hold) {
            double ts = bs_now();
            json_t *s = status(&env->d.c);
            if (!s)
                goto out;
            res = jint(s, "resident_bytes");
            tgt = jint(s, "target_bytes");
            json_decref(s);
            long long usage = cg_read(&env->cg, "memory.usage_in_bytes", NULL);
            long long inact = cg_read(&env->cg, "memory.stat", "total_inactive_file");
            if (usage > max_usage)
                max_usage = usage;
            double g = (double)env->limit - (double)(usage - (inact > 0 ? inact : 0)) + (double)res - (double)RESERVE;
            g = g < (double)si->min_bytes ? (double)si->min_bytes : g > (double)si->full_bytes ? (double)si->full_bytes : g;
            goal = (long long)g;
            if (ts - t0 >= settle_s) {
                double tol_t = 0.02 * (double)tgt + TOL_FIXED, tol_g = 0.02 * g + TOL_FIXED;
                ph_all++;
                ph_t += fabs((double)(res - tgt)) <= tol_t;
                ph_g += (double)res <= g + tol_g && (double)res >= g - tol_g - HYSTERESIS;
            }
            double left = 0.1 - (bs_now() - ts);
            if (left > 0)
                msleep((int)(left * 1e3));
        }
        for (int h = 0; h < n_hogs; h++) {
            int st;
            if (reap(hogs[h].pid, 0, &st)) {
                progress("a hog ended early (status %d): the cgroup's OOM killer?", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
                hogs[h].pid = -1;
            }
        }
        all += ph_all, in_t += ph_t, in_g += ph_g;
        printf("%5d %8ld | %8d | %12.1f %12.1f %12.1f | %11.0f%% %11.0f%%\n", p + 1, total, ph_all, res / MIB,
               tgt / MIB, goal / MIB, ph_all ? 100.0 * ph_t / ph_all : 0, ph_all ? 100.0 * ph_g / ph_all : 0);
        fflush(stdout);
    }
    rc = 0;
out:
    while (n_hogs > 0) {
        hog_t *h = &hogs[--n_hogs];
        if (h->pid > 0)
            stop_pid(h->pid, 10000);
    }
    long long kills = cg_read(&env->cg, "memory.oom_control", "oom_kill") - oom0;
    long long fails = cg_read(&env->cg, "memory.failcnt", NULL) - fail0;
    long long peak = cg_read(&env->cg, "memory.max_usage_in_bytes", NULL);
    *pct_out = all ? 100.0 * in_t / all : -1;
    printf("all steps: %d samples, %.1f%% in-target, %.1f%% in-goal\n", all, all ? 100.0 * in_t / all : 0,
           all ? 100.0 * in_g / all : 0);
    printf("usage: peak %.1f MiB of the %.0f MiB limit (sampled max %.1f MiB), overshoot %s; failcnt +%lld "
           "(times a charge hit the limit and the kernel had to reclaim); OOM kills %lld\n",
           peak / MIB, env->limit / MIB, max_usage / MIB, peak > env->limit ? "YES" : "none", fails, kills);
    return rc;
}

/* ---- 4. soak ---------------------------------------------------------------------------- */

typedef struct {
    const char *sock;
    volatile int *stop;
    int done, failed;
    double secs;
} client_t;

static void *client_run(void *arg)
{
    client_t *cl = arg;
    jconn c;
    if (jc_open(&c, cl->sock)) {
        cl->failed++;
        return NULL;
    }
    for (int i = 0; !*cl->stop; i++) {
        char line[200];
        snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":%d,\"seed\":%d}",
                 i, O.quick ? "Once upon a time" : "a", O.quick ? 8 : 1, i);
        double t0 = bs_now();
        json_t *j = jc_send(&c, line) ? NULL : jc_read(&c, CALL_MS);
        json_t *stats = j ? json_object_get(j, "stats") : NULL;
        if (j && json_is_true(json_object_get(j, "done")) && jint(stats, "generated_tokens") > 0) {
            cl->done++;
            cl->secs += bs_now() - t0;
        } else {
            char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
            progress("generate failed: %s", s ? s : "no answer");
            free(s);
            cl->failed++;
        }
        json_decref(j);
        if (!j)
            break;   /* the connection is in an unknown state */
    }
    jc_close(&c);
    return NULL;
}

static int bench_soak(cg_env *env, long long *kills_out, int *failed_out)
{
    enum { CLIENTS = 2 };
    const char *cycles = O.quick ? "2" : "20", *hold = O.quick ? "500" : "1500";
    long long oom0 = cg_read(&env->cg, "memory.oom_control", "oom_kill");
    cg_write(&env->cg, "memory.max_usage_in_bytes", 0);
    printf("\n4. soak: bs-hog --mb %ld --step-mb 64 --step-ms 50 --hold-ms %s --cycles %s in the cgroup, while %d "
           "clients\n   loop on generate (prompt \"%s\", max_tokens %d: %s)\n",
           env->hog_max, hold, cycles, CLIENTS, O.quick ? "Once upon a time" : "a", O.quick ? 8 : 1,
           O.quick ? "the small shape" : "short requests, many of them, across the cycles");
    volatile int stop = 0;
    client_t cl[CLIENTS];
    pthread_t th[CLIENTS];
    int started = 0, rc = -1;
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client_t){env->d.sock, &stop, 0, 0, 0};
        if (pthread_create(&th[i], NULL, client_run, &cl[i]))
            break;
        started++;
    }
    char log[160];
    snprintf(log, sizeof log, "%s/soak-hog.log", tmpdir);
    double t0 = bs_now();
    pid_t hog = hog_start(&env->cg, env->hog_max, hold, cycles, log);
    int st = 0;
    long long min_n = -1, max_usage = 0;
    bool hog_ok = false;
    if (hog > 0) {
        /* the daemon is watched meanwhile: its smallest size shows the cycles did bite */
        while (!reap(hog, 0, &st) && bs_now() - t0 < 1800) {
            json_t *s = status(&env->d.c);
            long long n = s ? jint(s, "stack_n") : -1;
            json_decref(s);
            if (n >= 0 && (min_n < 0 || n < min_n))
                min_n = n;
            long long u = cg_read(&env->cg, "memory.usage_in_bytes", NULL);
            if (u > max_usage)
                max_usage = u;
            msleep(100);
        }
        hog_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!hog_ok)
            progress("bs-hog ended with %s %d", WIFEXITED(st) ? "status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
    double hog_s = bs_now() - t0;
    progress("soak: the hog is done after %.1f s; waiting for the requests in flight", hog_s);
    stop = 1;
    int done = 0, failed = 0;
    double secs = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        done += cl[i].done;
        failed += cl[i].failed;
        secs += cl[i].secs;
    }
    json_t *m = failed ? NULL : jc_result(&env->d.c, "{\"id\":\"m\",\"op\":\"metrics\"}");
    long long resizes = m ? jint(m, "resize_events") : -1;
    json_decref(m);
    long long kills = cg_read(&env->cg, "memory.oom_control", "oom_kill") - oom0;
    long long peak = cg_read(&env->cg, "memory.max_usage_in_bytes", NULL);
    int dst;
    /* a process the OOM killer took closes its sockets a moment before it can be reaped */
    bool daemon_alive = !reap(env->d.pid, failed ? 2000 : 0, &dst);
    printf("hog (--cycles %s): ended after %.1f s, %s | smallest N seen %lld | resizes in the daemon so far %lld\n",
           cycles, hog_s, hog_ok ? "exit 0" : "KILLED or failed (cycles cut short)", min_n, resizes);
    printf("generations: %d done (mean %.1f s each), %d failed | OOM kills %lld | usage peak %.1f MiB of %.0f MiB | "
           "daemon %s\n",
           done, done ? secs / done : 0, failed, kills, peak / MIB, env->limit / MIB,
           daemon_alive ? "alive" : "DEAD");
    if (!daemon_alive) {
        progress("bitstackd died during the soak (status %d); its log:", WIFEXITED(dst) ? WEXITSTATUS(dst) : -WTERMSIG(dst));
        dump_log(env->d.log);
        jc_close(&env->d.c);
        env->up = false;
        env->d.pid = -1;
    }
    *kills_out = kills;
    *failed_out = failed;
    rc = hog > 0 ? 0 : -1;
    return rc;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_resize [--quick] [--daemon PATH] [--hog PATH] [--reps N] [--keep]\n"
            "  Measures bitstackd's live resize on " WEIGHTS " (a store written to a temp\n"
            "  folder): grow MiB/s against dd, shrink latency, tracking of a memory limit under bs-hog, and a\n"
            "  soak of 20 hog cycles with clients generating. Needs root for the cgroup v1 parts (skipped\n"
            "  otherwise). About 6 minutes.\n"
            "  --quick    " WEIGHTS_QUICK ", one repeat, short phases (under 20 s)\n"
            "  --daemon   the bitstackd to run (default: this build's, %s)\n"
            "  --hog      the bs-hog to run (default: this build's, %s)\n"
            "  --reps N   repeats of each grow measurement (default 3; 1 with --quick)\n"
            "  --keep     keep the temp folder (store, logs) and say where it is\n",
            BS_DAEMON_DEFAULT, BS_HOG_DEFAULT);
}

static void rm_tree(const char *dir)
{
    char path[256];
    static const char *const names[] = {"tinyllama-1.1b.bstk", "stories260k.bstk", "grow.log", "shrink.log",
                                        "auto.log", "soak-hog.log", "hog0.log", "hog1.log", "hog2.log", "hog3.log",
                                        "hog4.log", "hog5.log", "grow.sock", "shrink.sock", "auto.sock", NULL};
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (rmdir(dir))
        progress("could not remove %s: %s", dir, strerror(errno));
}

int main(int argc, char **argv)
{
    O = (opts_t){.daemon = BS_DAEMON_DEFAULT, .hog = BS_HOG_DEFAULT, .reps = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick"))
            O.quick = true;
        else if (!strcmp(a, "--keep"))
            O.keep = true;
        else if (i + 1 < argc && !strcmp(a, "--daemon"))
            O.daemon = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--hog"))
            O.hog = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--reps")) {
            O.reps = atoi(argv[++i]);
            if (O.reps < 1 || O.reps > 16) {
                fprintf(stderr, "bench_resize: --reps takes 1..16\n");
                return 2;
            }
        } else {
            fprintf(stderr, "bench_resize: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!O.reps)
        O.reps = O.quick ? 1 : 3;
    if (access(O.daemon, X_OK) || access(O.hog, X_OK)) {
        fprintf(stderr, "bench_resize: %s or %s is not an executable (build them, or give --daemon/--hog)\n",
                O.daemon, O.hog);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_children);
    snprintf(tmpdir, sizeof tmpdir, "/var/tmp/bench-resize.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("bench_resize: mkdtemp");
        return 1;
    }
    bench_print_machine();
    printf("daemon: %s | hog: %s | mode: %s\n", O.daemon, O.hog, O.quick ? "--quick" : "full");
    store_info si = {0};
    int rc = 1;
    double grow = -1, shrink = -1, drop = 0, track_pct = -1;
    long long kills = -1;
    int failed = -1;
    cg_env env = {0};
    env.d.pid = -1;
    if (make_store(&si))
        goto out;
    if (bench_grow(&si, &grow) || bench_shrink(&si, &shrink, &drop))
        goto out;
    char why[256];
    int k = env_start(&env, &si, why, sizeof why);
    if (k == -2) {
        printf("\n3., 4. skipped: %s\n", why);
    } else {
        if (k || bench_tracking(&env, &si, &track_pct) || bench_soak(&env, &kills, &failed)) {
            env_stop(&env, &rc);
            goto out;
        }
        int erc = 0;
        env_stop(&env, &erc);
        if (erc)
            goto out;
    }
    char load[128];
    bench_load(load, sizeof load);
    printf("\nload average at the end: %s%s\n", load,
           atof(load) > bench_cores() ? " (above the core count: other work skewed these figures)" : "");
    printf("targets: grow >= 0.9 of dd, shrink < 50 ms, tracking near 100%%, soak 0 kills 0 failed\n");
    char tr[32] = "n/a", sk[64] = "n/a";
    if (track_pct >= 0)
        snprintf(tr, sizeof tr, "%.0f%%", track_pct);
    if (kills >= 0)
        snprintf(sk, sizeof sk, "%lld kills %d failed", kills, failed);
    char dropped[32];
    /* --quick's stack is a fraction of a MiB: its size is said as it is, not as 100 */
    snprintf(dropped, sizeof dropped, O.quick ? "%.2f" : "%.0f", O.quick ? drop : 100.0);
    printf("resize: grow %.2f of dd, shrink-%sMB %.1f ms, tracking %s, soak %s\n", grow, dropped, shrink, tr, sk);
    /* timings never fail a bench; a process killed or a request lost does */
    rc = kills > 0 || failed > 0 ? 1 : 0;
out:
    kill_children();
    cg_remove(&env.cg);
    if (O.keep)
        progress("kept %s", tmpdir);
    else
        rm_tree(tmpdir);
    free(si.resident);
    free(si.prefix_end);
    return rc;
}
