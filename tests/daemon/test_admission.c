/* Memory-aware admission: bitstackd in a memory cgroup whose limit leaves room for about
 * twenty full-context sessions gets 64 at once. It refuses those that could not fit even
 * with the model at its floor (insufficient_memory), serves the rest to the end, and is
 * never OOM-killed (before admission, the 64 KV caches took the daemon past the limit).
 * Skipped (77) when no memory cgroup can be made here. */
#include "harness.h"
#include "tests/daemon/cgroup.h"
#include "tests/daemon/client.h"

#define SESSIONS 64

static td_fixture F;
static tc_cgroup CG;
static td_daemon d;

static void cleanup(void)
{
    if (d.pid > 0 && !td_daemon_exited(&d)) {
        kill(d.pid, SIGKILL);
        td_daemon_wait(&d, TD_TIMEOUT_MS);
    }
    tc_remove(&CG);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: %s BITSTACKD BITSTACKCTL\n", argv[0]), 2;
    char why[512];
    atexit(cleanup);
    if (!tc_make(&CG, "bitstack-admit", 1ll << 30, why, sizeof why)) {
        fprintf(stderr, "SKIP: %s\n", why);
        cleanup();
        return 77;
    }
    td_fixture_init(&F, argc, argv, bs_shared(""));
    /* ASan would hold freed KV chunks in its quarantine */
    tc_asan_quarantine(1, 0);
    const char *args[] = {"--threads", "2", "--reserve", "8M", "--max-sessions", "64",
                          "--max-sessions-per-conn", "64", NULL};
    td_start(&F, &d, "admit", args);
    REQUIRE(tc_join(&CG, d.pid));
    td_sleep_ms(300);
    long long need = td_status_int(d.sock, "session_bytes_max");
    const char *usage_file = CG.version == 1 ? "memory.usage_in_bytes" : "memory.current";
    long long used = tc_read_int(&CG, usage_file);
    REQUIRE(need > 0 && used >= 0);
    long long limit = used + (16ll << 20) + 20 * need;
    char lim[32];
    snprintf(lim, sizeof lim, "%lld", limit);
    REQUIRE(tc_write(CG.dir, CG.version == 1 ? "memory.limit_in_bytes" : "memory.max", lim));
    fprintf(stderr, "cgroup v%d, using %lld, limit %lld, a session may need %lld\n", CG.version, used, limit, need);

    td_conn c;
    REQUIRE(td_open(&c, d.sock));
    for (int i = 0; i < SESSIONS; i++)
        REQUIRE(td_sendf(&c, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once upon a time\",\"max_tokens\":4000,"
                             "\"temperature\":0.8,\"seed\":%d}", i, i));
    int done = 0, refused = 0, other = 0;
    for (int i = 0; i < SESSIONS; i++) {
        bs_response r;
        if (td_recv(&c, &r) != 1) {
            other += SESSIONS - i;
            break;
        }
        if (r.kind == BS_RESP_DONE && r.stats.generated_tokens >= 1)
            done++;
        else if (r.kind == BS_RESP_ERROR && r.code == BS_PERR_INSUFFICIENT_MEMORY)
            refused++;
        else
            other++;
        bs_response_free(&r);
    }
    td_close(&c);
    fprintf(stderr, "%d done, %d refused for memory, %d other; oom kills %lld\n", done, refused, other,
            tc_oom_kills(&CG));
    CHECKF(other == 0 && done >= 8 && refused >= 8, "%d done, %d refused, %d other", done, refused, other);
    CHECK(tc_oom_kills(&CG) == 0);
    CHECK(!td_daemon_exited(&d));
    CHECK(td_daemon_stop(&d));
    cleanup();
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
