/* Live resize on the real kernel: bitstackd in a memory cgroup this test makes, a real
 * memory hog (bs-hog) beside it, a real store read with io_uring and with pread.
 *
 *  (a) the hog pushes into the limit while a client generates: the daemon shrinks, no
 *      process is OOM-killed, the generation completes
 *  (b) the hog exits: the daemon grows back to the full stack
 *  (c) a greedy generation across several resizes gives, token for token, what the model
 *      gives in-process at the N each token reports
 *  (d) (a)-(c) again with --io pread
 *  (e) a store with a corrupted block past the start: growth stops before it, status
 *      names it, serving goes on
 *  (f) 5 hog cycles with 4 clients generating: 0 OOM kills, 0 failed generations
 *  (g) budget 30% then auto on a store of a few MiB: VmRSS falls and comes back by the
 *      blocks' bytes while a generation streams, and the generation completes
 * Skipped (77) when no memory cgroup can be made here; it says why. */
#include <pthread.h>

#include "harness.h"
#include "tests/daemon/cgroup.h"
#include "tests/daemon/client.h"
#include "tests/daemon/ref.h"
#include "model/ppl.h"
#include "model/synth.h"

#define LIMIT (512ll << 20)
#define MARGIN (80ll << 20)   /* what the hog leaves below the limit: less than --reserve */

static td_fixture F;
static tc_cgroup CG;
static const char *hog_exe;
static pid_t hog = -1;
static ref_model M;

static void cleanup(void)
{
    tc_kill(&hog);
    td_kill_children();
    tc_remove(&CG);
}

static pid_t start_hog(const char *const *args, const char *log)
{
    return tc_start_hog(&CG, hog_exe, args, log);
}

static bool hog_exited(int ms, int *status)
{
    return tc_wait_exit(&hog, ms, status);
}

static long long metric(const char *sock, const char *key)
{
    td_conn c;
    long long v = -1;
    if (!td_open(&c, sock))
        return v;
    bs_response r;
    if (td_call(&c, &r, "{\"id\":1,\"op\":\"metrics\"}") == 1 && r.kind == BS_RESP_RESULT)
        v = td_result_int(&r, key);
    bs_response_free(&r);
    td_close(&c);
    return v;
}

static const char *status_str(const char *sock, const char *key, char *buf, size_t n)
{
    td_conn c;
    buf[0] = '\0';
    if (!td_open(&c, sock))
        return buf;
    bs_response r;
    if (td_call(&c, &r, "{\"id\":1,\"op\":\"status\"}") == 1 && r.kind == BS_RESP_RESULT) {
        json_t *v = json_object_get(r.result, key);
        if (json_is_string(v))
            snprintf(buf, n, "%s", json_string_value(v));
    }
    bs_response_free(&r);
    td_close(&c);
    return buf;
}

/* ---- a streamed greedy generation, read token by token ------------------------------ */

typedef struct {
    int n;                  /* token lines */
    char *piece[1024];
    int stack_n[1024];
    bs_response done;
    bool ok;
} stream_t;

static void stream_free(stream_t *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->piece[i]);
    bs_response_free(&s->done);
}

/* Reads lines of request `id` until its done line; after the k-th token calls
 * at_token(k, ctx). */
static void read_stream(td_conn *c, stream_t *s, void (*at_token)(int k, void *ctx), void *ctx)
{
    memset(s, 0, sizeof *s);
    for (;;) {
        bs_response r;
        if (td_recv(c, &r) != 1) {
            fprintf(stderr, "stream: no line\n");
            return;
        }
        if (r.kind == BS_RESP_TOKEN && s->n < 1024) {
            s->piece[s->n] = strndup(r.text, r.text_len);
            s->stack_n[s->n] = r.stack_n;
            s->n++;
            bs_response_free(&r);
            if (at_token)
                at_token(s->n, ctx);
            continue;
        }
        if (r.kind == BS_RESP_DONE) {
            s->done = r;
            s->ok = true;
            return;
        }
        fprintf(stderr, "stream: unexpected line kind %d (%s)\n", (int)r.kind, r.message ? r.message : "");
        bs_response_free(&r);
        return;
    }
}

/* In-process replay: the prompt at the first token's N, then each token's forward pass at
 * the N of the token that follows it (its logits are what that token was sampled from). */
static void check_replay(const char *prompt, const stream_t *s)
{
    REQUIRE(s->n > 0);
    REQUIRE(ref_set_n(&M, s->stack_n[0]) == 0);
    bs_gen g;
    bs_err e;
    bs_gen_params p = {0, 1, 1, 0, NULL};
    REQUIRE(bs_gen_init(&g, &M.v->sm.model, M.s->tok, &p, &e) == 0);
    REQUIRE(bs_gen_prompt(&g, prompt, strlen(prompt), &e) == 0);
    int same = 0, first_diff = -1;
    for (int i = 0; i < s->n; i++) {
        int next = i + 1 < s->n ? s->stack_n[i + 1] : s->stack_n[i];
        REQUIRE(ref_set_n(&M, next) == 0);
        g.m = &M.v->sm.model;
        int tok;
        if (bs_gen_step(&g, &tok, &e) != 1)
            break;
        if (g.piece_len == strlen(s->piece[i]) && !memcmp(g.piece, s->piece[i], g.piece_len))
            same++;
        else if (first_diff < 0) {
            first_diff = i;
            fprintf(stderr, "replay: token %d: daemon '%s' at N %d (before %d, after %d), replay '%.*s'\n", i,
                    s->piece[i], s->stack_n[i], i ? s->stack_n[i - 1] : -1, next, (int)g.piece_len, g.piece);
        }
    }
    bs_gen_free(&g);
    CHECKF(same == s->n, "replay: %d of %d tokens equal, first difference at token %d", same, s->n, first_diff);
}

/* ---- (c): budget changes in the middle of a generation ------------------------------- */

typedef struct {
    td_conn *ctl;
    const char *const *budgets;   /* one every 4 tokens from token 2 (the SIMD kernels run this
                                     model at thousands of tokens a second, and a greedy story
                                     that saw other sizes may end early) */
    int next;
} drive_t;

static void drive(int k, void *ctx)
{
    drive_t *d = ctx;
    if (k % 4 != 2 || !d->budgets[d->next])
        return;
    char line[160];
    if (!strcmp(d->budgets[d->next], "auto"))
        snprintf(line, sizeof line, "{\"id\":\"b%d\",\"op\":\"budget\",\"auto\":true}", k);
    else
        snprintf(line, sizeof line, "{\"id\":\"b%d\",\"op\":\"budget\",\"budget\":\"%s\"}", k, d->budgets[d->next]);
    bs_response r;
    if (td_call(d->ctl, &r, line) == 1)
        CHECKF(r.kind == BS_RESP_RESULT, "budget %s refused", d->budgets[d->next]);
    bs_response_free(&r);
    d->next++;
}

static void test_resizes_in_flight(const char *sock)
{
    const char *prompt = "Once upon a time, there was a little";
    td_conn c, ctl;
    REQUIRE(td_open(&c, sock) && td_open(&ctl, sock));
    /* never the floor: a greedy story at the floor's quality may end within a few tokens */
    const char *budgets[] = {"30%", "70%", "40%", "max", "30%", "60%", "max", NULL};
    drive_t d = {&ctl, budgets, 0};
    char line[256];
    snprintf(line, sizeof line, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":200,"
                                "\"temperature\":0,\"stream\":true}", prompt);
    REQUIRE(td_write(&c, line, strlen(line)) && td_write(&c, "\n", 1));
    stream_t s;
    read_stream(&c, &s, drive, &d);
    CHECK(s.ok);
    int changes = 0;
    for (int i = 1; i < s.n; i++)
        changes += s.stack_n[i] != s.stack_n[i - 1];
    fprintf(stderr, "(c) %d tokens, %d changes of N, done line lists %d resizes\n", s.n, changes,
            (int)s.done.stats.resize_events);
    CHECKF(changes >= 3, "only %d changes of N inside the generation", changes);
    CHECK(s.done.stats.resize_events == changes);
    CHECK(s.done.stats.stack_n_min < s.done.stats.stack_n_max);
    check_replay(prompt, &s);
    stream_free(&s);
    /* whatever the stream left it at, back to following memory */
    bs_response r;
    REQUIRE(td_call(&ctl, &r, "{\"id\":\"auto\",\"op\":\"budget\",\"auto\":true}") == 1);
    CHECK(r.kind == BS_RESP_RESULT);
    bs_response_free(&r);
    td_close(&c);
    td_close(&ctl);
}

/* ---- (a), (b): a hog pushes into the limit while a client generates ----------------- */

typedef struct {
    const char *log;
    bool started;
    long long mb;
} hog_at_t;

static void start_hog_at(int k, void *ctx)
{
    hog_at_t *h = ctx;
    if (k != 10 || h->started)
        return;
    char mb[32];
    snprintf(mb, sizeof mb, "%lld", h->mb);
    /* it holds until SIGTERM (its stdin is /dev/null, so the stdin rule would free at once) */
    const char *args[] = {"--mb", mb, "--step-mb", "32", "--step-ms", "20", "--hold-ms", "600000", NULL};
    hog = start_hog(args, h->log);
    h->started = hog > 0;
}

static void test_hog(const char *sock, int total)
{
    long long before = tc_oom_kills(&CG);
    long long cur = tc_read_int(&CG, CG.version == 1 ? "memory.usage_in_bytes" : "memory.current");
    REQUIRE(cur > 0);
    char log[256];
    snprintf(log, sizeof log, "%s/hog.log", F.dir);
    hog_at_t h = {log, false, (LIMIT - cur - MARGIN) >> 20};
    fprintf(stderr, "(a) cgroup usage %lld MiB before the hog; the hog takes %lld MiB of the %lld MiB limit\n",
            cur >> 20, h.mb, LIMIT >> 20);
    td_conn c;
    REQUIRE(td_open(&c, sock));
    const char *line = "{\"id\":\"a\",\"op\":\"generate\",\"prompt\":\"Once upon a time\",\"max_tokens\":300,"
                       "\"temperature\":0,\"stream\":true}";
    REQUIRE(td_write(&c, line, strlen(line)) && td_write(&c, "\n", 1));
    stream_t s;
    read_stream(&c, &s, start_hog_at, &h);
    CHECK(s.ok && s.done.stats.finish_reason != BS_FINISH_CANCELLED);
    REQUIRE(h.started);
    /* the shrink: to the floor, since the hog leaves less than the reserve */
    int lo = M.s->min_blocks;
    if (!td_wait_status(sock, "stack_n", lo)) {
        char out[1024];
        status_str(sock, "target_reason", out, sizeof out);
        CHECKF(0, "no shrink to %d blocks under the hog (cgroup usage %lld, reason %s, headroom %lld)", lo,
               tc_read_int(&CG, CG.version == 1 ? "memory.usage_in_bytes" : "memory.current"), out,
               td_status_int(sock, "headroom_bytes"));
    }
    char why[128];
    fprintf(stderr, "(a) shrunk to %lld blocks: %s; the generation saw N %lld..%lld\n",
            td_status_int(sock, "stack_n"), status_str(sock, "target_reason", why, sizeof why),
            (long long)s.done.stats.stack_n_min, (long long)s.done.stats.stack_n_max);
    stream_free(&s);
    /* a generation under the hog completes, at a small size (the policy may have begun to
     * grow into room the kernel found meanwhile, never to the full stack) */
    bs_response r;
    REQUIRE(td_call(&c, &r, "{\"id\":\"a2\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":16,"
                            "\"temperature\":0}") == 1);
    CHECKF(r.kind == BS_RESP_DONE && r.stats.stack_n_max < M.s->n_blocks, "under the hog: N up to %lld of %d",
           (long long)r.stats.stack_n_max, M.s->n_blocks);
    bs_response_free(&r);
    CHECK(tc_oom_kills(&CG) == before);
    /* (b) the hog leaves: back to the full stack */
    kill(hog, SIGTERM);
    int st;
    CHECK(hog_exited(TD_TIMEOUT_MS, &st) && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECKF(td_wait_status(sock, "stack_n", total), "no growth back to %d blocks", total);
    CHECK(tc_oom_kills(&CG) == before);
    td_close(&c);
}

/* ---- (f) ------------------------------------------------------------------------------ */

typedef struct {
    const char *sock;
    volatile int *stop;
    int done, failed;
} client_t;

static void *client_loop(void *arg)
{
    client_t *cl = arg;
    td_conn c;
    if (!td_open(&c, cl->sock)) {
        cl->failed++;
        return NULL;
    }
    for (int i = 0; !*cl->stop; i++) {
        char line[160];
        snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"generate\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
                                    "\"seed\":%d}", i, i);
        bs_response r;
        if (td_call(&c, &r, line) == 1 && r.kind == BS_RESP_DONE && r.stats.generated_tokens > 0)
            cl->done++;
        else
            cl->failed++;
        bs_response_free(&r);
    }
    td_close(&c);
    return NULL;
}

static void test_soak(const char *sock, int total)
{
    long long before = tc_oom_kills(&CG);
    long long cur = tc_read_int(&CG, CG.version == 1 ? "memory.usage_in_bytes" : "memory.current");
    char mb[32], log[256];
    snprintf(mb, sizeof mb, "%lld", (LIMIT - cur - MARGIN) >> 20);
    snprintf(log, sizeof log, "%s/soak.log", F.dir);
    volatile int stop = 0;
    client_t cl[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cl[i] = (client_t){sock, &stop, 0, 0};
        REQUIRE(pthread_create(&th[i], NULL, client_loop, &cl[i]) == 0);
    }
    const char *args[] = {"--mb", mb, "--step-mb", "32", "--step-ms", "20", "--hold-ms", "1500", "--cycles", "5", NULL};
    hog = start_hog(args, log);
    int st = 0;
    bool exited = hog_exited(TD_TIMEOUT_MS, &st);
    stop = 1;
    int done = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        done += cl[i].done;
        failed += cl[i].failed;
    }
    long long kills = tc_oom_kills(&CG) - before;
    fprintf(stderr, "(f) 5 hog cycles: %d generations done, %d failed, %lld OOM kills, %lld resizes\n", done, failed,
            kills, metric(sock, "resize_events"));
    CHECK(exited && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(kills == 0);
    CHECK(failed == 0 && done > 0);
    CHECKF(td_wait_status(sock, "stack_n", total), "no growth back to %d blocks after the soak", total);
}

/* ---- (e) ------------------------------------------------------------------------------ */

static void test_bad_block(void)
{
    /* a copy of the store with one byte flipped in a block past the smallest prefix */
    bs_store s;
    bs_err e;
    REQUIRE(bs_store_open(&s, F.store, &e) == 0);
    int k = s.min_blocks + (s.n_blocks - s.min_blocks) / 2;
    uint64_t at = s.stack_off + s.blocks[k].offset + s.blocks[k].bytes / 2;
    char name[32];
    snprintf(name, sizeof name, "%s", s.mats[s.blocks[k].matrix].name);
    bs_store_close(&s);
    size_t len;
    char *bytes = bs_read_file(F.store, &len, &e);
    REQUIRE(bytes && at < len);
    bytes[at] ^= 0x20;
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad.bstk", F.dir);
    FILE *fp = fopen(bad, "wb");
    REQUIRE(fp && fwrite(bytes, 1, len, fp) == len);
    fclose(fp);
    free(bytes);

    char log[256], sock[256];
    snprintf(log, sizeof log, "%s/bad.log", F.dir);
    snprintf(sock, sizeof sock, "%s/bad.sock", F.dir);
    const char *args[] = {"--store", bad, "--socket", sock, "--budget", "min", "--sample-ms", "100", NULL};
    td_daemon d;
    td_daemon_spawn(&d, F.daemon, args, log, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    td_conn c;
    REQUIRE(td_open(&c, sock));
    bs_response r;
    REQUIRE(td_call(&c, &r, "{\"id\":1,\"op\":\"budget\",\"auto\":true}") == 1);
    CHECK(r.kind == BS_RESP_RESULT);
    bs_response_free(&r);
    CHECKF(td_wait_status(sock, "stack_n", k), "growth did not stop at block %d", k);
    REQUIRE(td_call(&c, &r, "{\"id\":2,\"op\":\"status\"}") == 1);
    json_t *b = json_array_get(json_object_get(r.result, "bad_blocks"), 0);
    CHECKF(b && json_integer_value(json_object_get(b, "block")) == k, "status does not name block %d", k);
    const char *m = json_string_value(json_object_get(b, "matrix"));
    CHECK(m && !strcmp(m, name));
    bs_response_free(&r);
    REQUIRE(td_call(&c, &r, "{\"id\":3,\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":16,\"temperature\":0}") == 1);
    CHECK(r.kind == BS_RESP_DONE && r.stats.stack_n_max == k);
    bs_response_free(&r);
    td_close(&c);
    CHECK(td_log_has(log, "crc32c"));
    CHECK(td_daemon_stop(&d));

    /* the same store read whole at the start: the daemon serves the blocks before it */
    const char *whole[] = {"--store", bad, "--socket", sock, "--budget", "max", NULL};
    td_daemon_spawn(&d, F.daemon, whole, log, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(td_status_int(sock, "stack_n") == k);
    REQUIRE(td_open(&c, sock));
    REQUIRE(td_call(&c, &r, "{\"id\":4,\"op\":\"status\"}") == 1);
    b = json_array_get(json_object_get(r.result, "bad_blocks"), 0);
    CHECKF(b && json_integer_value(json_object_get(b, "block")) == k, "status does not name block %d", k);
    bs_response_free(&r);
    td_close(&c);
    CHECK(td_daemon_stop(&d));
}

/* ---- the "done when": budget 30% then auto, RSS follows, a generation completes -- */

static long long vm_rss(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atoll(line + 6);
    if (f)
        fclose(f);
    return kb * 1024;
}

/* (g)'s daemon runs the machine's best kernels: the portable ones would take minutes here. */
static void best_kernels(void *arg)
{
    (void)arg;
    unsetenv("BS_KERNEL");
}

/* VmRSS once it has moved at least `by` bytes away from `from` (sign: direction), or the
 * last reading after 5 s. */
static long long rss_after_move(pid_t pid, long long from, long long by)
{
    long long v = vm_rss(pid);
    for (int i = 0; i < 500 && (by > 0 ? v - from < by : from - v < -by); i++) {
        td_sleep_ms(10);
        v = vm_rss(pid);
    }
    return v;
}

static void test_rss(void)
{
    /* a store of a few MiB of planes (synthetic weights), so the change shows in VmRSS */
    bs_synth_opts so;
    bs_err e;
    REQUIRE(bs_synth_preset(&so, "stories260k", &e) == 0);
    so.cfg.dim = 512;
    so.cfg.hidden_dim = 1376;
    so.cfg.n_layers = 8;
    char path[256], log[256], sock[256];
    snprintf(path, sizeof path, "%s/synth.bstk", F.dir);
    snprintf(log, sizeof log, "%s/rss.log", F.dir);
    snprintf(sock, sizeof sock, "%s/rss.sock", F.dir);
    REQUIRE(bs_synth_store_write(path, &so, NULL, NULL, &e) == 0);
    bs_store st;
    REQUIRE(bs_store_open(&st, path, &e) == 0);
    int n30;
    REQUIRE(bs_engine_budget_n(&st, "30%", &n30, &e) == 0);
    long long freed = (long long)(st.resident[st.n_blocks] - st.resident[n30]);
    int total = st.n_blocks;
    bs_store_close(&st);

    const char *args[] = {"--store", path, "--socket", sock, "--grow-delay-ms", "200", "--sample-ms", "100", NULL};
    td_daemon d;
    td_daemon_spawn(&d, F.daemon, args, log, best_kernels, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    REQUIRE(td_wait_status(sock, "stack_n", total));
    td_conn g, ctl;
    REQUIRE(td_open(&g, sock) && td_open(&ctl, sock));
    const char *gen = "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"a\",\"max_tokens\":400,\"temperature\":0,"
                      "\"stream\":true}";
    REQUIRE(td_write(&g, gen, strlen(gen)) && td_write(&g, "\n", 1));
    bs_response r;
    REQUIRE(td_recv(&g, &r) == 1 && r.kind == BS_RESP_TOKEN);   /* it runs */
    bs_response_free(&r);
    long long full_rss = vm_rss(d.pid);
    REQUIRE(td_call(&ctl, &r, "{\"id\":1,\"op\":\"budget\",\"budget\":\"30%\"}") == 1 && r.kind == BS_RESP_RESULT);
    bs_response_free(&r);
    CHECK(td_wait_status(sock, "stack_n", n30));
    /* published at once; the pages go once the step running on the old view has let go */
    long long small_rss = rss_after_move(d.pid, full_rss, -(freed * 8 / 10));
    REQUIRE(td_call(&ctl, &r, "{\"id\":2,\"op\":\"budget\",\"auto\":true}") == 1 && r.kind == BS_RESP_RESULT);
    bs_response_free(&r);
    CHECK(td_wait_status(sock, "stack_n", total));
    long long back_rss = rss_after_move(d.pid, small_rss, freed * 8 / 10);
    fprintf(stderr, "(g) VmRSS %.1f MiB at full, %.1f MiB at 30%% (%.1f MiB of blocks dropped), %.1f MiB back at auto\n",
            full_rss / 1048576.0, small_rss / 1048576.0, freed / 1048576.0, back_rss / 1048576.0);
    CHECKF(full_rss - small_rss >= freed * 8 / 10, "RSS fell by %lld bytes, %lld bytes of blocks were dropped",
           full_rss - small_rss, freed);
    CHECKF(back_rss - small_rss >= freed * 8 / 10, "RSS rose by %lld bytes at auto", back_rss - small_rss);
    /* the generation in flight went on through both and completes */
    stream_t s;
    read_stream(&g, &s, NULL, NULL);
    CHECK(s.ok && s.done.stats.generated_tokens > 1);
    /* it ran through the shrink: tokens at full size and at 30% */
    CHECKF(s.done.stats.stack_n_max == total && s.done.stats.stack_n_min == n30, "the generation saw N %lld..%lld",
           (long long)s.done.stats.stack_n_min, (long long)s.done.stats.stack_n_max);
    stream_free(&s);
    td_close(&g);
    td_close(&ctl);
    CHECK(td_daemon_stop(&d));
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return fprintf(stderr, "usage: %s BITSTACKD BITSTACKCTL BS-HOG\n", argv[0]), 2;
    hog_exe = argv[3];
    atexit(cleanup);
    /* The daemon and the in-process replay both run the portable kernels: the same
     * arithmetic for (c), and a generation slow enough (hundreds of tokens a second rather
     * than thousands) that budget changes sent while it streams land inside it. */
    setenv("BS_KERNEL", "portable", 1);
    tc_asan_quarantine(8, 256);
    td_fixture_init(&F, argc, argv, bs_shared(""));
    REQUIRE(ref_open(&M, F.store, "max") == 0);
    int total = M.s->n_blocks;

    test_bad_block();   /* (e): no cgroup needed */
    test_rss();         /* (g) */

    char why[512];
    if (!tc_make(&CG, "bitstack-resize", LIMIT, why, sizeof why)) {
        fprintf(stderr, "SKIP (a)-(d), (f): %s\n", why);
        tc_remove(&CG);
        ref_close(&M);
        td_fixture_free(&F, bs_t_failed > 0);
        return bs_t_failed ? 1 : 77;
    }
    fprintf(stderr, "cgroup v%d at %s, limit %lld MiB\n", CG.version, CG.dir, LIMIT >> 20);
    const char *modes[] = {"auto", "pread"};
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "--- --io %s\n", modes[i]);
        td_daemon d;
        const char *args[] = {"--io", modes[i], "--reserve", "128M", "--sample-ms", "100", "--grow-delay-ms", "300",
                              "--threads", "2", NULL};
        td_start(&F, &d, modes[i], args);
        REQUIRE(tc_join(&CG, d.pid));
        char io[32];
        status_str(d.sock, "io_backend", io, sizeof io);
        fprintf(stderr, "io backend: %s\n", io);
        if (i == 1)
            CHECK(!strcmp(io, "pread"));
        CHECKF(td_wait_status(d.sock, "stack_n", total), "not at the full stack at the start");
        test_hog(d.sock, total);             /* (a), (b) */
        test_resizes_in_flight(d.sock);      /* (c) */
        if (i == 0)
            test_soak(d.sock, total);        /* (f) */
        CHECK(!td_daemon_exited(&d));
        CHECK(td_daemon_stop(&d));
    }
    ref_close(&M);
    cleanup();
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
