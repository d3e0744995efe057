/* bitstackd under a real memory limit: a fresh memory cgroup (v1, else v2) limited to
 * 512 MiB holds the daemon and a hog that allocates and touches ~60% of the limit. The
 * daemon keeps answering generate, and `status` reports the cgroup, its limit and its
 * usage (which includes the hog's pages). Skipped (exit 77) when no memory cgroup can be
 * created here (not root, read-only /sys, no memory controller). The cgroup is removed
 * at the end. */
#include "harness.h"
#include "tests/daemon/client.h"

#define LIMIT (512ll << 20)
#define HOG (LIMIT * 6 / 10)

static td_fixture F;
static char cg[256];          /* the cgroup's directory */
static char cg_rel[128];      /* its path inside the hierarchy, as /proc/PID/cgroup shows it */
static int version;
static pid_t hog = -1;
static td_daemon d;

static bool write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text);
}

static bool file_has(const char *path, const char *word)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, word) != NULL;
}

/* Makes the cgroup and sets its limit; false (with why) when this machine cannot. */
static bool make_cgroup(char *why, size_t n)
{
    char limit[32];
    snprintf(limit, sizeof limit, "%lld", LIMIT);
    snprintf(cg_rel, sizeof cg_rel, "/bitstack-test-%d", (int)getpid());
    struct stat st;
    if (!stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st)) {
        snprintf(cg, sizeof cg, "/sys/fs/cgroup/memory%s", cg_rel);
        if (mkdir(cg, 0755)) {
            snprintf(why, n, "cannot create the cgroup v1 %s: %s", cg, strerror(errno));
            return false;
        }
        version = 1;
        if (!write_file(cg, "memory.limit_in_bytes", limit)) {
            snprintf(why, n, "cannot set %s/memory.limit_in_bytes: %s", cg, strerror(errno));
            return false;
        }
        return true;
    }
    if (file_has("/sys/fs/cgroup/cgroup.controllers", "memory")) {
        if (!file_has("/sys/fs/cgroup/cgroup.subtree_control", "memory") &&
            !write_file("/sys/fs/cgroup", "cgroup.subtree_control", "+memory")) {
            snprintf(why, n, "cannot enable the memory controller for children of /sys/fs/cgroup: %s",
                     strerror(errno));
            return false;
        }
        snprintf(cg, sizeof cg, "/sys/fs/cgroup%s", cg_rel);
        if (mkdir(cg, 0755)) {
            snprintf(why, n, "cannot create the cgroup v2 %s: %s", cg, strerror(errno));
            return false;
        }
        version = 2;
        if (!write_file(cg, "memory.max", limit)) {
            snprintf(why, n, "cannot set %s/memory.max: %s", cg, strerror(errno));
            return false;
        }
        return true;
    }
    snprintf(why, n, "no memory cgroup hierarchy at /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2)");
    return false;
}

static bool join(pid_t pid)
{
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    return write_file(cg, "cgroup.procs", text);
}

static void cleanup(void)
{
    if (d.pid > 0 && !td_daemon_exited(&d)) {
        kill(d.pid, SIGKILL);   /* a failed REQUIRE: do not leave it behind */
        td_daemon_wait(&d, TD_TIMEOUT_MS);
    }
    if (hog > 0) {
        kill(hog, SIGKILL);
        waitpid(hog, NULL, 0);
        hog = -1;
    }
    if (cg[0]) {
        /* rmdir fails while the last process is still being torn down: retry a little */
        for (int i = 0; i < 200 && rmdir(cg) && errno == EBUSY; i++)
            td_sleep_ms(10);
        cg[0] = '\0';
    }
}

/* A child that joins the cgroup, touches HOG bytes, says so, and waits to be killed. */
static pid_t start_hog(void)
{
    int p[2];
    if (pipe(p))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        if (!join(getpid()))
            _exit(3);
        size_t n = (size_t)HOG;
        char *m = malloc(n);
        if (!m)
            _exit(4);
        for (size_t i = 0; i < n; i += 4096)
            m[i] = (char)i;
        char ok = 1;
        if (write(p[1], &ok, 1) != 1)
            _exit(5);
        for (;;)
            pause();
    }
    close(p[1]);
    char ok = 0;
    ssize_t r = read(p[0], &ok, 1);
    close(p[0]);
    if (r != 1 || ok != 1) {
        int st;
        waitpid(pid, &st, 0);
        return -1;
    }
    return pid;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: %s BITSTACKD BITSTACKCTL\n", argv[0]), 2;
    char why[512];
    atexit(cleanup);
    if (!make_cgroup(why, sizeof why)) {
        fprintf(stderr, "SKIP: %s\n", why);
        cleanup();
        return 77;
    }
    fprintf(stderr, "cgroup v%d at %s, limit %lld bytes\n", version, cg, LIMIT);
    td_fixture_init(&F, argc, argv, bs_shared(""));
    const char *args[] = {"--budget", "40%", "--threads", "2", NULL};
    td_start(&F, &d, "cg", args);
    REQUIRE(join(d.pid));
    hog = start_hog();
    REQUIRE(hog > 0);

    /* status names the cgroup and its limit, and counts the hog's pages in its usage */
    bool seen = false;
    long long cur = -1, max = -1;
    double end = td_now_ms() + TD_TIMEOUT_MS;
    while (!seen && td_now_ms() < end) {
        td_conn c;
        REQUIRE(td_open(&c, d.sock));
        bs_response r;
        REQUIRE(td_call(&c, &r, "{\"id\":1,\"op\":\"status\"}") == 1);
        json_t *m = json_object_get(r.result, "memory");
        cur = json_integer_value(json_object_get(m, "memory_current"));
        max = json_integer_value(json_object_get(m, "memory_max"));
        const char *path = json_string_value(json_object_get(m, "cgroup"));
        seen = max == LIMIT && cur >= HOG && path && !strcmp(path, cg_rel) &&
               json_integer_value(json_object_get(m, "cgroup_version")) == version;
        bs_response_free(&r);
        td_close(&c);
        if (!seen)
            td_sleep_ms(50);
    }
    CHECKF(seen, "status: memory_current %lld (hog %lld), memory_max %lld (limit %lld)", cur, HOG, max, LIMIT);
    CHECKF(cur <= LIMIT, "usage %lld over the limit", cur);

    /* generations keep working beside the hog */
    td_conn c;
    REQUIRE(td_open(&c, d.sock));
    for (int i = 0; i < 4; i++) {
        bs_response r;
        char line[160];
        snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once upon a time\",\"max_tokens\":16,"
                                    "\"seed\":%d,\"stream\":%s}", i, i, i % 2 ? "true" : "false");
        REQUIRE(td_write(&c, line, strlen(line)) && td_write(&c, "\n", 1));
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        char *text = NULL;
        size_t tl = 0;
        REQUIRE(td_until_final(&c, id, &r, &text, &tl) == 1);
        CHECK(r.kind == BS_RESP_DONE && r.stats.generated_tokens >= 1);
        free(text);
        bs_response_free(&r);
    }
    bs_response r;
    REQUIRE(td_call(&c, &r, "{\"id\":\"m\",\"op\":\"metrics\"}") == 1);
    CHECK(td_result_int(&r, "memory_max") == LIMIT);
    CHECK(td_result_int(&r, "memory_current") >= HOG);
    bs_response_free(&r);
    td_close(&c);

    /* the daemon was never killed by the limit */
    CHECK(!td_daemon_exited(&d));
    CHECK(td_daemon_stop(&d));
    char dir[sizeof cg];
    memcpy(dir, cg, sizeof dir);
    cleanup();
    struct stat st;
    CHECK(stat(dir, &st) != 0);   /* removed */
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
