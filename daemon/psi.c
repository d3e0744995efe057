#include "daemon/psi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The kernel's bounds on a trigger's window (kernel/sched/psi.c). */
#define WINDOW_MIN_US 500000u
#define WINDOW_MAX_US 10000000u
/* Triggers set without CAP_SYS_RESOURCE need windows in whole multiples of this. */
#define UNPRIV_WINDOW_US 2000000u

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int bs_psi_base64_decode(const char *in, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = strlen(in);
    *n = 0;
    if (len % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        /* padding only in the last quantum, and only as its last one or two characters */
        int pad = 0;
        if (last && in[i + 3] == '=')
            pad = in[i + 2] == '=' ? 2 : 1;
        int v[4] = {0, 0, 0, 0};
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = b64_value(in[i + k])) < 0)
                return -1;
        uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* bits under the padding must be zero, so each text has one encoding */
        if ((pad == 1 && (q & 0xff)) || (pad == 2 && (q & 0xffff)))
            return -1;
        size_t bytes = (size_t)(3 - pad);
        if (cap - o < bytes)
            return -1;
        out[o++] = (uint8_t)(q >> 16);
        if (bytes > 1)
            out[o++] = (uint8_t)(q >> 8);
        if (bytes > 2)
            out[o++] = (uint8_t)q;
    }
    *n = o;
    return 0;
}

/* The avg10 of the line starting with kind; -1 when there is none. */
static double avg10_of(const char *text, const char *kind)
{
    size_t kl = strlen(kind);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, kind, kl) && p[kl] == ' ') {
            const char *a = strstr(p, "avg10=");
            const char *eol = strchr(p, '\n');
            if (!a || (eol && a > eol))
                return -1;
            char *end;
            double v = strtod(a + 6, &end);
            return end == a + 6 || v < 0 ? -1 : v;
        }
    }
    return -1;
}

ssize_t bs_psi_read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* pseudo-files are generated whole on the first read; loop for short reads anyway */
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

int bs_psi_read_avg10(const char *path, double *some, double *full)
{
    *some = *full = -1;
    /* two lines of about 70 bytes */
    char text[512];
    ssize_t n = bs_psi_read_file(path, text, sizeof text);
    if (n <= 0)
        return -1;
    *some = avg10_of(text, "some");
    *full = avg10_of(text, "full");
    return 0;
}

/* Appends "; <fmt...>" (or just the text when why is empty), truncating quietly. */
static void add_why(bs_psi *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_why(bs_psi *p, const char *fmt, ...)
{
    size_t used = strlen(p->why);
    if (used && used + 2 < sizeof p->why) {
        memcpy(p->why + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why + used, sizeof p->why - used, fmt, ap);
    va_end(ap);
}

/* Bytes to write as a trigger, and what to write instead when the kernel refuses them
 * with EINVAL (alt_n 0: nothing). */
typedef struct {
    const void *data;
    size_t n;
    const void *alt;
    size_t alt_n;
} payload;

/* One write, since the kernel parses a trigger from a single write; errno on failure. */
static int write_once(int fd, const void *data, size_t n)
{
    ssize_t w;
    do
        w = write(fd, data, n);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n)
        return 0;
    return w < 0 ? errno : EIO;
}

/* Opens path the way its type asks and writes the payload. Fills p on success; on
 * failure adds the reason to p->why and returns -1. */
static int arm(bs_psi *p, const char *path, payload pl)
{
    struct stat st;
    bool sock = !stat(path, &st) && S_ISSOCK(st.st_mode);
    bool fifo = !sock && !stat(path, &st) && S_ISFIFO(st.st_mode);
    int fd;
    if (sock) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path) {
            add_why(p, "%s: socket path too long", path);
            return -1;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            add_why(p, "%s: socket: %s", path, strerror(errno));
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
            add_why(p, "%s: connect: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    } else {
        /* read-write even for a FIFO: opening it so never blocks waiting for a writer */
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            add_why(p, "%s: %s", path, strerror(errno));
            return -1;
        }
    }
    const void *data = pl.data;
    size_t n = pl.n;
    int err = n ? write_once(fd, data, n) : 0;
    if (err == EINVAL && pl.alt_n) {
        /* a refused write sets no trigger, so the same file takes another */
        data = pl.alt, n = pl.alt_n;
        err = write_once(fd, data, n);
    }
    if (err) {
        add_why(p, "%s: writing the trigger: %s", path, strerror(err));
        close(fd);
        return -1;
    }
    p->fd = fd;
    p->events = sock || fifo ? POLLIN : POLLPRI;
    snprintf(p->path, sizeof p->path, "%s", path);
    size_t tl = n ? strnlen((const char *)data, n) : 0;
    if (tl >= sizeof p->trigger)
        tl = sizeof p->trigger - 1;
    if (tl)
        memcpy(p->trigger, data, tl);
    p->trigger[tl] = '\0';
    p->why[0] = '\0';
    return 0;
}

int bs_psi_open(const bs_psi_config *cfg, bs_psi *out, bs_err *e)
{
    if (!out)
        return bs_err_set(e, "bs_psi_open: no output");
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (!cfg)
        return bs_err_set(e, "bs_psi_open: no config");
    uint32_t stall = cfg->stall_us ? cfg->stall_us : BS_PSI_STALL_US_DEFAULT;
    uint32_t window = cfg->window_us ? cfg->window_us : BS_PSI_WINDOW_US_DEFAULT;
    if (window < WINDOW_MIN_US || window > WINDOW_MAX_US)
        return bs_err_set(e, "PSI window %u us is outside the kernel's %u..%u", window,
                          WINDOW_MIN_US, WINDOW_MAX_US);
    if (stall > window)
        return bs_err_set(e, "PSI stall %u us is longer than its window of %u us", stall, window);
    /* The kernel reads the trigger up to a NUL and overwrites the last byte written with
     * one, so the NUL goes along. Without CAP_SYS_RESOURCE (a service's user, or root in
     * a container) it refuses windows that are not whole multiples of 2 s: then the
     * window is rounded up and the stall scaled with it, keeping the same share of time. */
    char own[64], alt[64];
    int ol = snprintf(own, sizeof own, "some %u %u", stall, window);
    payload pl = {own, (size_t)ol + 1, NULL, 0};
    if (window % UNPRIV_WINDOW_US) {
        uint32_t w2 = (window / UNPRIV_WINDOW_US + 1) * UNPRIV_WINDOW_US;
        uint32_t s2 = (uint32_t)((uint64_t)stall * w2 / window);
        int al = snprintf(alt, sizeof alt, "some %u %u", s2, w2);
        pl.alt = alt, pl.alt_n = (size_t)al + 1;
    }

    if (cfg->watch) {
        if (!strcmp(cfg->watch, "/dev/null")) {
            snprintf(out->why, sizeof out->why, "disabled by $MEMORY_PRESSURE_WATCH");
            return 0;
        }
        if (!cfg->write_b64) {
            struct stat st;
            if (!stat(cfg->watch, &st) && S_ISFIFO(st.st_mode))
                pl.n = pl.alt_n = 0;
            arm(out, cfg->watch, pl);
            return 0;
        }
        uint8_t data[sizeof out->trigger];
        size_t n;
        if (bs_psi_base64_decode(cfg->write_b64, data, sizeof data, &n)) {
            add_why(out, "$MEMORY_PRESSURE_WRITE is not base64 of at most %zu bytes", sizeof data);
            return 0;
        }
        arm(out, cfg->watch, (payload){data, n, NULL, 0});
        return 0;
    }

    char path[PATH_MAX];
    if (cfg->v2_dir && cfg->v2_dir[0]) {
        int n = snprintf(path, sizeof path, "%s/memory.pressure", cfg->v2_dir);
        if (n < 0 || (size_t)n >= sizeof path)
            add_why(out, "%s/memory.pressure: path too long", cfg->v2_dir);
        else if (!arm(out, path, pl))
            return 0;
    }
    const char *proc = cfg->proc_root ? cfg->proc_root : "/proc";
    int n = snprintf(path, sizeof path, "%s/pressure/memory", proc);
    if (n < 0 || (size_t)n >= sizeof path)
        add_why(out, "%s/pressure/memory: path too long", proc);
    else
        arm(out, path, pl);
    return 0;
}

void bs_psi_close(bs_psi *p)
{
    if (p && p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
}
