/* bs_psi: the base64 decoder, the avg10 parser, where bs_psi_open puts its trigger (over
 * fixture files standing in for pressure files, FIFOs and sockets), and then real
 * triggers on this machine's /proc/pressure/memory and on a fresh cgroup's
 * memory.pressure. A real part the machine cannot do is reported as skipped, not passed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/psi.h"
#include "harness.h"
#include "tests/daemon/client.h"

static char root[64];
static int skipped;

static void skip(const char *what, const char *why)
{
    skipped++;
    fprintf(stderr, "SKIP %s: %s\n", what, why);
}

/* root/<rel> */
static const char *at(const char *rel)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

static void put(const char *rel, const char *text)
{
    FILE *f = fopen(at(rel), "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

/* The whole of root/<rel> into buf; its length, or -1. */
static ssize_t slurp(const char *rel, char *buf, size_t cap)
{
    int fd = open(at(rel), O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n;
}

static bool decodes_to(const char *in, const void *want, size_t want_n)
{
    uint8_t out[64];
    size_t n = 99;
    return !bs_psi_base64_decode(in, out, sizeof out, &n) && n == want_n && !memcmp(out, want, n);
}

static bool rejected(const char *in)
{
    uint8_t out[64];
    size_t n = 99;
    return bs_psi_base64_decode(in, out, sizeof out, &n) == -1 && n == 0;
}

static void test_base64(void)
{
    /* RFC 4648 section 10 */
    CHECK(decodes_to("", "", 0));
    CHECK(decodes_to("Zg==", "f", 1));
    CHECK(decodes_to("Zm8=", "fo", 2));
    CHECK(decodes_to("Zm9v", "foo", 3));
    CHECK(decodes_to("Zm9vYg==", "foob", 4));
    CHECK(decodes_to("Zm9vYmE=", "fooba", 5));
    CHECK(decodes_to("Zm9vYmFy", "foobar", 6));
    CHECK(decodes_to("+/+/", "\xfb\xff\xbf", 3));
    /* what systemd sets: the trigger with its NUL */
    CHECK(decodes_to("c29tZSAyMDAwMDAgMjAwMDAwMAA=", "some 200000 2000000", 20));

    CHECK(rejected("Zg="));        /* not a multiple of 4 */
    CHECK(rejected("Zg"));
    CHECK(rejected("Z"));
    CHECK(rejected("===="));
    CHECK(rejected("Z==="));       /* three pads */
    CHECK(rejected("Zg==Zg=="));   /* padding before the end */
    CHECK(rejected("Zm9v===="));
    CHECK(rejected("Zm=v"));       /* a pad inside a quantum */
    CHECK(rejected("Zh=="));       /* pad bits not zero */
    CHECK(rejected("Zm9="));
    CHECK(rejected("Zm9v\n"));     /* whitespace is outside the alphabet */
    CHECK(rejected("Zm 9v"));
    CHECK(rejected("Zm-_"));       /* the URL-safe alphabet is another encoding */
    CHECK(rejected("Zm9\xc3\xa9"));

    uint8_t small[5];
    size_t n = 99;
    CHECK(bs_psi_base64_decode("Zm9vYmFy", small, sizeof small, &n) == -1);   /* too long */
    CHECK(bs_psi_base64_decode("Zm9vYmE=", small, sizeof small, &n) == 0 && n == 5);
}

static void test_avg10(void)
{
    double some = 0, full = 0;
    put("psi", "some avg10=1.50 avg60=0.80 avg300=0.10 total=12345\n"
               "full avg10=0.25 avg60=0.00 avg300=0.00 total=99\n");
    CHECK(bs_psi_read_avg10(at("psi"), &some, &full) == 0);
    CHECK_NEAR(some, 1.5, 1e-9);
    CHECK_NEAR(full, 0.25, 1e-9);
    /* old kernels' cpu file: no "full" line */
    put("psi", "some avg10=7.00 avg60=0.80 avg300=0.10 total=12345\n");
    CHECK(bs_psi_read_avg10(at("psi"), &some, &full) == 0);
    CHECK_NEAR(some, 7.0, 1e-9);
    CHECK(full == -1);
    put("psi", "some avg60=1.00\nfull avg10=x\n");
    CHECK(bs_psi_read_avg10(at("psi"), &some, &full) == 0 && some == -1 && full == -1);
    CHECK(bs_psi_read_avg10(at("no-such-file"), &some, &full) == -1 && some == -1 && full == -1);
}

static void test_bad_config(void)
{
    bs_psi p;
    bs_err e = {{0}};
    bs_psi_config c = {.proc_root = root};
    CHECK(bs_psi_open(NULL, &p, &e) == -1 && p.fd == -1 && e.msg[0]);
    CHECK(bs_psi_open(&c, NULL, &e) == -1);
    c.window_us = 100000;
    e.msg[0] = '\0';
    CHECK(bs_psi_open(&c, &p, &e) == -1 && p.fd == -1 && strstr(e.msg, "window"));
    c.window_us = 20000000;
    CHECK(bs_psi_open(&c, &p, &e) == -1);
    c.window_us = 1000000;
    c.stall_us = 2000000;
    CHECK(bs_psi_open(&c, &p, &e) == -1 && strstr(e.msg, "stall"));
}

/* $MEMORY_PRESSURE_WATCH / $MEMORY_PRESSURE_WRITE as given by the service manager */
static void test_watch(void)
{
    bs_psi p;
    bs_err e = {{0}};
    char buf[256];
    ssize_t n;

    char watch[512], missing[512], fifo[512], sock[100];
    snprintf(watch, sizeof watch, "%s", at("watch"));
    snprintf(missing, sizeof missing, "%s", at("missing"));
    snprintf(fifo, sizeof fifo, "%s", at("fifo"));
    snprintf(sock, sizeof sock, "%s/sock", root);   /* short: it must fit sun_path */

    bs_psi_config c = {.proc_root = root, .watch = "/dev/null", .write_b64 = "Zm9v"};
    CHECK(bs_psi_open(&c, &p, &e) == 0);
    CHECK(p.fd == -1 && !strcmp(p.why, "disabled by $MEMORY_PRESSURE_WATCH") && !p.path[0]);

    /* a regular file takes the decoded text as is */
    put("watch", "");
    c.watch = watch;
    c.write_b64 = "c29tZSAxMDAwIDEwMDAwMDA=";
    CHECK(bs_psi_open(&c, &p, &e) == 0);
    CHECKF(p.fd >= 0, "%s", p.why);
    CHECK(p.events == POLLPRI && !strcmp(p.path, watch) && !p.why[0]);
    CHECK(!strcmp(p.trigger, "some 1000 1000000"));
    bs_psi_close(&p);
    CHECK(p.fd == -1);
    bs_psi_close(&p);   /* twice is harmless */
    n = slurp("watch", buf, sizeof buf);
    CHECK(n == 17 && !memcmp(buf, "some 1000 1000000", 17));

    /* no $MEMORY_PRESSURE_WRITE: our own trigger, with the NUL the kernel wants */
    put("watch", "");
    c.write_b64 = NULL;
    c.stall_us = 200000;
    c.window_us = 2000000;
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0);
    CHECK(!strcmp(p.trigger, "some 200000 2000000"));
    bs_psi_close(&p);
    n = slurp("watch", buf, sizeof buf);
    CHECK(n == 20 && !memcmp(buf, "some 200000 2000000", 20));
    c.stall_us = c.window_us = 0;
    put("watch", "");
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && !strcmp(p.trigger, "some 150000 1000000"));
    bs_psi_close(&p);

    /* set but empty: write nothing */
    put("watch", "");
    c.write_b64 = "";
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && !p.trigger[0]);
    bs_psi_close(&p);
    CHECK(slurp("watch", buf, sizeof buf) == 0);

    /* not base64: no trigger, and said why */
    c.write_b64 = "c29tZSAx MDAw";
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd == -1 && strstr(p.why, "MEMORY_PRESSURE_WRITE"));

    /* a watch path that cannot be opened: no fallback to our own choice, which a
     * fixture proc root with a pressure file would otherwise offer */
    mkdir(at("pressure"), 0755);
    put("pressure/memory", "");
    c.watch = missing;
    c.write_b64 = NULL;
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd == -1 && strstr(p.why, missing) && !p.path[0]);

    /* a FIFO: polled for POLLIN, and nothing of ours written into it */
    CHECK(!mkfifo(fifo, 0600));
    c.watch = fifo;
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && p.events == POLLIN && !p.trigger[0]);
    struct pollfd pfd = {.fd = p.fd, .events = p.events};
    CHECK(poll(&pfd, 1, 0) == 0);
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    CHECK(w >= 0 && write(w, "x", 1) == 1);
    CHECK(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN));
    close(w);
    bs_psi_close(&p);

    /* an AF_UNIX socket: connected, sent the trigger, polled for POLLIN */
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    REQUIRE(ls >= 0 && !bind(ls, (struct sockaddr *)&sa, sizeof sa) && !listen(ls, 1));
    c.watch = sock;
    c.write_b64 = "c29tZSAyMDAwMDAgMjAwMDAwMAA=";
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && p.events == POLLIN);
    int as = accept(ls, NULL, NULL);
    CHECK(as >= 0);
    n = as >= 0 ? read(as, buf, sizeof buf) : -1;
    CHECK(n == 20 && !memcmp(buf, "some 200000 2000000", 20));
    if (as >= 0)
        close(as);
    close(ls);
    bs_psi_close(&p);
}

/* our own choice: the cgroup's memory.pressure, then <proc>/pressure/memory */
static void test_fallback(void)
{
    bs_psi p;
    bs_err e = {{0}};
    char buf[64];
    mkdir(at("cg"), 0755);
    mkdir(at("proc"), 0755);
    mkdir(at("proc/pressure"), 0755);
    put("cg/memory.pressure", "");
    put("proc/pressure/memory", "");

    char proc[512], cg[512];
    snprintf(proc, sizeof proc, "%s", at("proc"));
    snprintf(cg, sizeof cg, "%s", at("cg"));
    bs_psi_config c = {.proc_root = proc, .v2_dir = cg};
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && p.events == POLLPRI);
    CHECK(!strcmp(p.path, at("cg/memory.pressure")) && !p.why[0]);
    bs_psi_close(&p);
    CHECK(slurp("cg/memory.pressure", buf, sizeof buf) == 20);
    CHECK(slurp("proc/pressure/memory", buf, sizeof buf) == 0);

    /* no cgroup directory: the machine's file */
    c.v2_dir = "";
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && !strcmp(p.path, at("proc/pressure/memory")));
    bs_psi_close(&p);
    c.v2_dir = NULL;
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && !strcmp(p.path, at("proc/pressure/memory")));
    bs_psi_close(&p);

    /* a cgroup without the file: the machine's, and the first failure is not kept */
    c.v2_dir = proc;
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd >= 0 && !strcmp(p.path, at("proc/pressure/memory")));
    CHECK(!p.why[0]);
    bs_psi_close(&p);

    /* neither: no trigger, and both reasons */
    unlink(at("proc/pressure/memory"));
    CHECK(bs_psi_open(&c, &p, &e) == 0 && p.fd == -1 && !p.path[0]);
    CHECKF(strstr(p.why, "proc/memory.pressure") && strstr(p.why, "proc/pressure/memory"), "%s", p.why);
}

/* Opens a trigger, checks it is what was asked for, and polls it briefly. */
static void poll_real(const char *what, const bs_psi_config *c, const char *want_path)
{
    bs_psi p;
    bs_err e = {{0}};
    CHECK(bs_psi_open(c, &p, &e) == 0);
    if (p.fd < 0) {
        skip(what, p.why);
        return;
    }
    fprintf(stderr, "%s: trigger \"%s\" on %s\n", what, p.trigger, p.path);
    CHECKF(!strcmp(p.path, want_path), "%s instead of %s", p.path, want_path);
    CHECK(p.events == POLLPRI);
    /* as asked, or its 2 s form when the process lacks CAP_SYS_RESOURCE */
    CHECKF(!strcmp(p.trigger, "some 150000 1000000") || !strcmp(p.trigger, "some 300000 2000000"),
           "%s", p.trigger);
    struct pollfd pfd = {.fd = p.fd, .events = p.events};
    int r = poll(&pfd, 1, 10);
    CHECKF(r >= 0, "poll: %s", strerror(errno));
    CHECKF(!(pfd.revents & (POLLERR | POLLNVAL | POLLHUP)), "revents 0x%x", pfd.revents);
    bs_psi_close(&p);
}

static void test_real(void)
{
    struct stat st;
    if (stat("/proc/pressure/memory", &st)) {
        skip("real /proc/pressure/memory", strerror(errno));
    } else {
        bs_psi_config c = {.proc_root = "/proc"};
        poll_real("real /proc/pressure/memory", &c, "/proc/pressure/memory");
    }

    const char *unified = "/sys/fs/cgroup/unified";
    char dir[256], want[300];
    snprintf(dir, sizeof dir, "%s/bitstack-psi-test-%ld", unified, (long)getpid());
    if (mkdir(dir, 0755)) {
        char why[300];
        snprintf(why, sizeof why, "mkdir %s: %s", dir, strerror(errno));
        skip("real cgroup memory.pressure", why);
        return;
    }
    snprintf(want, sizeof want, "%s/memory.pressure", dir);
    if (stat(want, &st)) {
        skip("real cgroup memory.pressure", "the new cgroup has no memory.pressure");
    } else {
        bs_psi_config c = {.proc_root = "/proc", .v2_dir = dir};
        poll_real("real cgroup memory.pressure", &c, want);
    }
    CHECKF(!rmdir(dir), "rmdir %s: %s", dir, strerror(errno));
}

int main(void)
{
    td_mkdtemp(root, sizeof root);
    test_base64();
    test_avg10();
    test_bad_config();
    test_watch();
    test_fallback();
    test_real();
    td_rmtree(root);
    if (skipped)
        fprintf(stderr, "%d real-machine part(s) skipped: not checked\n", skipped);
    TEST_MAIN_END();
}
