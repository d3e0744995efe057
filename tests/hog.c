/* bs-hog: takes memory in steps, so tests can push a cgroup towards its limit and watch
 * bitstackd shrink (and grow back when the hog lets go). Not a test itself.
 *
 * Every page is written with data that differs from page to page, so the kernel can
 * neither back it with the shared zero page nor merge it: what is reported is resident. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bs-hog --mb N [--step-mb S] [--step-ms MS] [--hold-ms MS] [--cycles C]\n"
            "              [--ready-file PATH]\n"
            "  Grows by S MiB (default 16) every MS ms (default 100) up to N MiB, writing every\n"
            "  page, and prints \"hog: <MiB> MiB\" after each step. Then holds:\n"
            "    --hold-ms omitted  until SIGINT/SIGTERM or end of standard input\n"
            "    --hold-ms 0        not at all\n"
            "    --hold-ms MS       MS ms (SIGINT/SIGTERM end it early)\n"
            "  then frees everything and prints \"hog: 0 MiB\". --cycles C (default 1) does it\n"
            "  C times. --ready-file PATH is created when N MiB is reached and removed when it\n"
            "  is freed. SIGINT/SIGTERM at any time free everything and end it. Exit 0; 2 on a\n"
            "  usage error; 1 when memory cannot be had.\n");
}

typedef struct {
    long mb, step_mb, step_ms, hold_ms, cycles;  /* hold_ms -1: until a signal or EOF */
    const char *ready;
} hog_opts;

/* "--name V" or "--name=V" at argv[*i]; NULL when argv[*i] is not that option. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n))
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "bs-hog: %s needs a value\n", name);
        exit(2);
    }
    return argv[++*i];
}

static long number(const char *name, const char *v, long lo, long hi)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bs-hog: %s must be a whole number in %ld..%ld (got '%s')\n", name, lo, hi, v);
        return LONG_MIN;
    }
    return x;
}

/* Fills o; returns 0, 1 for --help, or 2 on a usage error (printed). */
static int parse(int argc, char **argv, hog_opts *o)
{
    *o = (hog_opts){.mb = -1, .step_mb = 16, .step_ms = 100, .hold_ms = -1, .cycles = 1};
    static const struct { const char *name; long lo, hi; size_t off; } nums[] = {
        {"--mb", 1, 1L << 24, offsetof(hog_opts, mb)},
        {"--step-mb", 1, 1L << 24, offsetof(hog_opts, step_mb)},
        {"--step-ms", 0, 3600000, offsetof(hog_opts, step_ms)},
        {"--hold-ms", 0, 86400000, offsetof(hog_opts, hold_ms)},
        {"--cycles", 1, 1000000, offsetof(hog_opts, cycles)},
    };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
        const char *v;
        bool known = false;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !known; k++) {
            if ((v = opt_value(argc, argv, &i, nums[k].name))) {
                long x = number(nums[k].name, v, nums[k].lo, nums[k].hi);
                if (x == LONG_MIN)
                    return 2;
                *(long *)((char *)o + nums[k].off) = x;
                known = true;
            }
        }
        if (!known && (v = opt_value(argc, argv, &i, "--ready-file"))) {
            if (!*v) {
                fprintf(stderr, "bs-hog: --ready-file needs a path\n");
                return 2;
            }
            o->ready = v;
            known = true;
        }
        if (!known) {
            fprintf(stderr, "bs-hog: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (o->mb < 0) {
        fprintf(stderr, "bs-hog: --mb is required\n");
        return 2;
    }
    return 0;
}

enum { WAIT_TIMEOUT, WAIT_SIGNAL, WAIT_EOF };

/* Waits up to ms (-1: for ever) for SIGINT/SIGTERM on sfd or, when watch_stdin, the end
 * of standard input (what it reads is thrown away). */
static int wait_for(int sfd, bool watch_stdin, long ms)
{
    for (;;) {
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        int k = poll(p, watch_stdin ? 2 : 1, ms < 0 ? -1 : (int)ms);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return WAIT_TIMEOUT;
        if (p[0].revents)
            return WAIT_SIGNAL;
        char buf[4096];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0 && !(n < 0 && errno == EINTR))
            return WAIT_EOF;
        /* input that is not the end: keep holding (the rest of ms is not tracked; a
         * talkative stdin only lengthens an indefinite hold anyway) */
        if (ms >= 0)
            return WAIT_TIMEOUT;
    }
}

static void say(long mb)
{
    printf("hog: %ld MiB\n", mb);
    fflush(stdout);
}

/* The ready file appears whole: written under another name, then renamed. */
static int mark_ready(const char *path, long mb)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%ld\n", mb);
    if (fclose(f) || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

typedef struct {
    void **p;
    size_t *len;
    int n;
} regions;

static void free_all(regions *r)
{
    for (int i = 0; i < r->n; i++)
        munmap(r->p[i], r->len[i]);
    r->n = 0;
}

/* One step: maps len bytes and writes every page. */
static int grow(regions *r, size_t len, uint64_t *seq)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page) {
        unsigned char *pg = (unsigned char *)p + off;
        memset(pg, 0xa5, page);
        /* a counter per page so no two pages are the same (KSM, dedup) */
        uint64_t v = ++*seq * 0x9e3779b97f4a7c15ull;
        memcpy(pg, &v, sizeof v);
    }
    r->p[r->n] = p;
    r->len[r->n] = len;
    r->n++;
    return 0;
}

int main(int argc, char **argv)
{
    hog_opts o;
    int k = parse(argc, argv, &o);
    if (k == 1) {
        usage(stdout);
        return 0;
    }
    if (k) {
        usage(stderr);
        return 2;
    }
    /* Signals arrive on a descriptor, so waiting for a step, a hold or a signal is one
     * poll and nothing is done in a handler. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("bs-hog: signalfd");
        return 1;
    }
    long steps = (o.mb + o.step_mb - 1) / o.step_mb;
    regions r = {calloc((size_t)steps, sizeof(void *)), calloc((size_t)steps, sizeof(size_t)), 0};
    if (!r.p || !r.len) {
        fprintf(stderr, "bs-hog: out of memory\n");
        return 1;
    }
    uint64_t seq = 0;
    int rc = 0;
    bool stop = false;
    for (long c = 0; c < o.cycles && !stop; c++) {
        long have = 0;
        while (have < o.mb && !stop) {
            if (have > 0 && wait_for(sfd, false, o.step_ms) == WAIT_SIGNAL) {
                stop = true;
                break;
            }
            long step = o.mb - have < o.step_mb ? o.mb - have : o.step_mb;
            if (grow(&r, (size_t)step * MIB, &seq)) {
                fprintf(stderr, "bs-hog: cannot map %ld MiB more after %ld MiB: %s\n", step, have,
                        strerror(errno));
                rc = 1;
                stop = true;
                break;
            }
            have += step;
            say(have);
        }
        if (!stop) {
            if (o.ready && mark_ready(o.ready, have))
                fprintf(stderr, "bs-hog: cannot write %s: %s\n", o.ready, strerror(errno));
            if (o.hold_ms != 0) {
                int w = wait_for(sfd, o.hold_ms < 0, o.hold_ms);
                stop = w == WAIT_SIGNAL;
            }
        }
        free_all(&r);
        if (o.ready)
            unlink(o.ready);
        say(0);
        /* a pause between cycles lets the watcher see the freed state */
        if (!stop && c + 1 < o.cycles && wait_for(sfd, false, o.step_ms) == WAIT_SIGNAL)
            stop = true;
    }
    free(r.p);
    free(r.len);
    close(sfd);
    return rc;
}
