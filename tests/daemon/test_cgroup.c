/* bitstackd under a real memory limit: a fresh memory cgroup (v1, else v2) limited to
 * 512 MiB holds the daemon and a hog that allocates and touches ~60% of the limit. The
 * daemon keeps answering generate, and `status` reports the cgroup, its limit and its
 * usage (which includes the hog's pages). Skipped (exit 77) when no memory cgroup can be
 * created here (not root, read-only /sys, no memory controller). The cgroup is removed
 * at the end. */
#include "harness.h"
#include "tests/daemon/cgroup.h"
#include "tests/daemon/client.h"

#define LIMIT (512ll << 20)
#define HOG (LIMIT * 6 / 10)

static td_fixture F;
static tc_cgroup CG;
static pid_t hog = -1;
static td_daemon d;

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
    tc_remove(&CG);
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
        if (!tc_join(&CG, getpid()))
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
    if (!tc_make(&CG, "bitstack-test", LIMIT, why, sizeof why)) {
        fprintf(stderr, "SKIP: %s\n", why);
        cleanup();
        return 77;
    }
    fprintf(stderr, "cgroup v%d at %s, limit %lld bytes\n", CG.version, CG.dir, LIMIT);
    td_fixture_init(&F, argc, argv, bs_shared(""));
    const char *args[] = {"--budget", "40%", "--threads", "2", NULL};
    td_start(&F, &d, "cg", args);
    REQUIRE(tc_join(&CG, d.pid));
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
        seen = max == LIMIT && cur >= HOG && path && !strcmp(path, CG.rel) &&
               json_integer_value(json_object_get(m, "cgroup_version")) == CG.version;
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
    char dir[sizeof CG.dir];
    memcpy(dir, CG.dir, sizeof dir);
    cleanup();
    struct stat st;
    CHECK(stat(dir, &st) != 0);   /* removed */
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
