/* daemon/build: model-cache builds off the libuv loop, with real GGUF models
 * (stories260K.gguf, babyllama-d128-Q8_0.gguf):
 *  - a first build compresses, reporting progress (building, its stages, then ready) while
 *    the loop keeps turning; the store opens;
 *  - a second one finds the store (reused, no compression stage, the file untouched);
 *  - a changed setting is another entry, built anew;
 *  - two builds of one entry at once: one builds, the other waits on the lock and reuses;
 *  - a cache directory that cannot be made fails with an error naming it. */
#include "harness.h"
#include "daemon/build.h"
#include "model/store.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    uv_loop_t *loop;
    uv_timer_t timer;
    bs_build *b[2];
    int n, ended;
    char store[2][PATH_MAX], error[2][512];
    int reused[2];
    int ticks;              /* timer ticks while building: the loop was free */
    int saw_building, saw_ready;
    char stages[512];       /* stages seen, space separated */
} run;

static void on_done(void *ctx, bs_build *b, const char *store, int reused, const char *error)
{
    run *r = ctx;
    int i = b == r->b[0] ? 0 : 1;
    snprintf(r->store[i], sizeof r->store[i], "%s", store ? store : "");
    snprintf(r->error[i], sizeof r->error[i], "%s", error ? error : "");
    r->reused[i] = reused;
    if (++r->ended == r->n) {
        uv_timer_stop(&r->timer);
        uv_stop(r->loop);   /* a build's handle keeps the loop alive until it is closed */
    }
}

static void on_tick(uv_timer_t *t)
{
    run *r = t->data;
    r->ticks++;
    json_t *j = bs_build_status_json(r->b[0]);
    REQUIRE(j);
    const char *state = json_string_value(json_object_get(j, "state"));
    const char *stage = json_string_value(json_object_get(j, "stage"));
    r->saw_building |= !strcmp(state, "building");
    r->saw_ready |= !strcmp(state, "ready");
    if (stage) {
        char word[80];
        snprintf(word, sizeof word, " %s ", stage);
        if (!strstr(r->stages, word) && strlen(r->stages) + strlen(word) < sizeof r->stages)
            strcat(r->stages, word + (r->stages[0] ? 1 : 0));
    }
    /* the fields a status page shows are there and sane */
    CHECK(json_integer_value(json_object_get(j, "done")) <= json_integer_value(json_object_get(j, "total")));
    CHECK(json_real_value(json_object_get(j, "elapsed")) >= 0);
    json_decref(j);
}

/* Runs n builds of srcs in dir to their end. */
static void build_all(run *r, const char *dir, const bs_cache_src *srcs, int n)
{
    uv_loop_t *loop = uv_default_loop();
    *r = (run){.loop = loop, .n = n};
    REQUIRE(uv_timer_init(loop, &r->timer) == 0);
    r->timer.data = r;
    bs_err e = {{0}};
    for (int i = 0; i < n; i++) {
        int rc = bs_build_start(&r->b[i], loop, dir, &srcs[i], on_done, r, &e);
        CHECKF(rc == 0, "%s", e.msg);
        REQUIRE(rc == 0);
    }
    /* the first snapshot, before the loop runs: building */
    json_t *j = bs_build_status_json(r->b[0]);
    REQUIRE(j);
    const char *state = json_string_value(json_object_get(j, "state"));
    r->saw_building |= state && !strcmp(state, "building");
    json_decref(j);
    REQUIRE(uv_timer_start(&r->timer, on_tick, 0, 5) == 0);
    uv_run(loop, UV_RUN_DEFAULT);
    on_tick(&r->timer);   /* the final snapshot */
    uv_close((uv_handle_t *)&r->timer, NULL);
    for (int i = 0; i < n; i++)
        bs_build_close(r->b[i]);
    uv_run(loop, UV_RUN_DEFAULT);   /* the closes */
}

static double mtime_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9 : -1;
}

static int store_opens(const char *path)
{
    bs_store s;
    bs_err e;
    if (bs_store_open(&s, path, &e))
        return 0;
    bs_store_close(&s);
    return 1;
}

int main(void)
{
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/bs_test_build_%d/cache/bitstack", (int)getpid());
    const char *calib = bs_shared("data/tinystories_train_head.txt");
    bs_cache_src s = {.source = bs_shared("models/stories260K.gguf"), .calib = calib};
    bs_compress_defaults(&s.opts, BS_KIND_GQ);
    s.opts.calib_windows = 16;
    run r;

    /* 1: a first build */
    build_all(&r, dir, &s, 1);
    CHECKF(r.error[0][0] == 0, "%s", r.error[0]);
    CHECK(r.store[0][0] && !r.reused[0] && store_opens(r.store[0]));
    CHECKF(r.saw_building && r.saw_ready, "building %d ready %d", r.saw_building, r.saw_ready);
    CHECKF(strstr(r.stages, "hash") && strstr(r.stages, "encode") && strstr(r.stages, "write"), "stages: %s",
           r.stages);
    CHECKF(r.ticks >= 3, "the loop ticked only %d times during the build", r.ticks);
    fprintf(stderr, "first build: %s, stages [%s], %d loop ticks\n", r.store[0], r.stages, r.ticks);
    char first[PATH_MAX];
    snprintf(first, sizeof first, "%s", r.store[0]);
    double mt = mtime_of(first);

    /* 2: found again, not rebuilt */
    build_all(&r, dir, &s, 1);
    CHECKF(r.error[0][0] == 0, "%s", r.error[0]);
    CHECK(r.reused[0] && !strcmp(r.store[0], first));
    CHECKF(!strstr(r.stages, "encode") && !strstr(r.stages, "calibration"), "stages: %s", r.stages);
    CHECK(mtime_of(first) == mt);

    /* 3: another setting, another store */
    s.opts.levels = 8;
    build_all(&r, dir, &s, 1);
    CHECKF(r.error[0][0] == 0, "%s", r.error[0]);
    CHECK(!r.reused[0] && strcmp(r.store[0], first) && store_opens(r.store[0]));
    CHECK(mtime_of(first) == mt);

    /* 4: a quantized GGUF, two builders of one entry at once: one waits for the other */
    bs_cache_src q[2];
    q[0] = s;
    q[0].source = bs_shared("models/gguf-quant/babyllama-d128-Q8_0.gguf");
    q[0].opts.levels = 12;
    q[1] = q[0];
    build_all(&r, dir, q, 2);
    CHECKF(!r.error[0][0] && !r.error[1][0], "%s / %s", r.error[0], r.error[1]);
    CHECKF(r.reused[0] + r.reused[1] == 1, "reused %d and %d", r.reused[0], r.reused[1]);
    CHECK(!strcmp(r.store[0], r.store[1]) && store_opens(r.store[0]));

    /* 5: a cache directory under a regular file cannot be made */
    char file[256], bad[300];
    snprintf(file, sizeof file, "/tmp/bs_test_build_%d/file", (int)getpid());
    FILE *f = fopen(file, "w");
    REQUIRE(f && fclose(f) == 0);
    snprintf(bad, sizeof bad, "%s/bitstack", file);
    build_all(&r, bad, &s, 1);
    CHECKF(strstr(r.error[0], "cannot create the cache directory") && strstr(r.error[0], bad), "%s", r.error[0]);
    CHECK(!r.store[0][0]);
    fprintf(stderr, "unusable directory: %s\n", r.error[0]);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/bs_test_build_%d", (int)getpid());
    CHECK(system(cmd) == 0);
    uv_loop_close(uv_default_loop());
    TEST_MAIN_END();
}
