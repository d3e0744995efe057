/* client/render.c on canned status JSON: bar lengths, sparkline levels of a known series,
 * the rows and frames with every new field, and with none of them (an older daemon). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/render.h"
#include "harness.h"

/* A status result from a daemon that resizes live: everything documented is present. */
static const char *full_status =
    "{\"model\":\"s\",\"stack_n\":180,\"stack_total\":240,\"resident_bytes\":524288,"
    "\"full_bytes\":1048576,\"bpw\":5.5,\"target_bytes\":786432,\"target_n\":200,"
    "\"target_reason\":\"headroom minus reserve\","
    "\"budget\":{\"mode\":\"auto\",\"min\":\"10%\",\"max\":\"max\",\"min_bytes\":104857,"
    "\"max_bytes\":1048576},"
    "\"headroom_bytes\":2097152,\"headroom_source\":\"cgroup v2 memory.max\","
    "\"psi\":{\"trigger\":\"/sys/fs/cgroup/x/memory.pressure\",\"why\":null,"
    "\"some_avg10\":0.25,\"full_avg10\":0.0},"
    "\"io_backend\":\"io_uring\","
    "\"bad_blocks\":[{\"block\":17,\"matrix\":\"layers.3.wq\",\"level\":2,\"error\":\"crc mismatch\"}],"
    "\"kv_bytes\":65536,"
    "\"resizes\":[{\"t\":0,\"from_n\":240,\"to_n\":160,\"from_bytes\":1048576,\"to_bytes\":400000,"
    "\"reason\":\"psi trigger\",\"ms\":3.25,\"mb_s\":null},"
    "{\"t\":3661,\"from_n\":160,\"to_n\":180,\"from_bytes\":400000,\"to_bytes\":524288,"
    "\"reason\":\"grow\",\"ms\":1.5,\"mb_s\":80.5}]}";

/* What the daemon of today sends. */
static const char *old_status =
    "{\"model\":\"s\",\"stack_n\":420,\"stack_total\":420,\"resident_bytes\":439193,"
    "\"full_bytes\":439193,\"budget\":{\"min\":\"max\",\"max\":\"max\",\"min_bytes\":439193,"
    "\"max_bytes\":439193},\"sessions\":0}";

static json_t *load(const char *s)
{
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!j)
        fprintf(stderr, "bad canned JSON: %s\n", je.text);
    REQUIRE(j != NULL);
    return j;
}

static int count(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

static void test_bars(void)
{
    CHECK(bs_render_bar_cells(50, 100, 20) == 10);
    CHECK(bs_render_bar_cells(0, 100, 20) == 0);
    CHECK(bs_render_bar_cells(100, 100, 20) == 20);
    CHECK(bs_render_bar_cells(250, 100, 20) == 20);     /* over full: clamped */
    CHECK(bs_render_bar_cells(-5, 100, 20) == 0);
    CHECK(bs_render_bar_cells(1, 3, 10) == 3);          /* 3.33 rounds down */
    CHECK(bs_render_bar_cells(2, 3, 10) == 7);          /* 6.67 rounds up */
    CHECK(bs_render_bar_cells(NAN, 100, 20) == 0);
    CHECK(bs_render_bar_cells(50, NAN, 20) == 0);
    CHECK(bs_render_bar_cells(50, 0, 20) == 0);

    char *b = bs_render_bar(25, NAN, 100, 8);
    REQUIRE(b);
    CHECKF(strcmp(b, "[##......]") == 0, "%s", b);
    free(b);
    /* the target mark: in its cell, past the fill or inside it, and 100% in the last cell */
    b = bs_render_bar(25, 75, 100, 8);
    CHECKF(b && strcmp(b, "[##....|.]") == 0, "%s", b);
    free(b);
    b = bs_render_bar(75, 25, 100, 8);
    CHECKF(b && strcmp(b, "[##|###..]") == 0, "%s", b);
    free(b);
    b = bs_render_bar(0, 100, 100, 8);
    CHECKF(b && strcmp(b, "[.......|]") == 0, "%s", b);
    free(b);
}

static void test_sparkline(void)
{
    bs_watch_hist h = {0};
    char *s = bs_render_sparkline(&h, 0, 7);
    CHECK(s && s[0] == 0);   /* no samples, nothing drawn */
    free(s);
    for (int i = 0; i < 8; i++)
        bs_watch_hist_push(&h, i);
    s = bs_render_sparkline(&h, 0, 7);
    CHECKF(s && strcmp(s, "▁▂▃▄▅▆▇█") == 0, "%s", s);
    free(s);
    /* its own range when lo/hi are unknown; the same series shifted draws the same */
    bs_watch_hist g = {0};
    for (int i = 0; i < 8; i++)
        bs_watch_hist_push(&g, 100 + 10 * i);
    s = bs_render_sparkline(&g, NAN, NAN);
    CHECKF(s && strcmp(s, "▁▂▃▄▅▆▇█") == 0, "%s", s);
    free(s);
    /* a gap and a flat series */
    bs_watch_hist f = {0};
    bs_watch_hist_push(&f, 5);
    bs_watch_hist_push(&f, NAN);
    bs_watch_hist_push(&f, 5);
    s = bs_render_sparkline(&f, NAN, NAN);
    CHECKF(s && strcmp(s, "▁ ▁") == 0, "%s", s);
    free(s);
    /* the ring keeps the newest 60: after 70 pushes of 0..69, the first drawn is 10 */
    bs_watch_hist r = {0};
    for (int i = 0; i < 70; i++)
        bs_watch_hist_push(&r, i < 69 ? 0 : 7);
    CHECK(r.n == BS_WATCH_HIST);
    s = bs_render_sparkline(&r, 0, 7);
    REQUIRE(s);
    CHECK(count(s, "▁") == 59 && count(s, "█") == 1);
    CHECK(strcmp(s + strlen(s) - strlen("█"), "█") == 0);   /* the newest is last */
    free(s);
}

static void test_status_rows(void)
{
    json_t *st = load(full_status);
    char *s = bs_render_status_memory(st);
    REQUIRE(s);
    CHECKF(strstr(s, "target     768.0 KiB, 200 blocks (resident growing): headroom minus reserve\n"),
           "%s", s);
    CHECKF(strstr(s, "budget     auto: 10% .. max (102.4 KiB .. 1.00 MiB)\n"), "%s", s);
    CHECKF(strstr(s, "headroom   2.00 MiB (cgroup v2 memory.max)\n"), "%s", s);
    CHECKF(strstr(s, "psi        avg10 some 0.25 full 0.00; trigger on /sys/fs/cgroup/x/memory.pressure\n"),
           "%s", s);
    CHECK(strstr(s, "io         io_uring\n") != NULL);
    CHECK(strstr(s, "kv cache   64.0 KiB\n") != NULL);
    CHECKF(strstr(s, "bad blocks 1\n  block 17 layers.3.wq level 2: crc mismatch\n"), "%s", s);
    /* the resize table: oldest first, TZ=UTC (set in main) */
    const char *r1 = strstr(s, "00:00:00"), *r2 = strstr(s, "01:01:01");
    CHECKF(r1 && r2 && r1 < r2, "%s", s);
    CHECK(strstr(s, "240→160") && strstr(s, "1.00 MiB→390.6 KiB"));
    CHECK(r1 && strstr(r1, "3.2") && strstr(r1, "psi trigger"));
    /* mb_s null is "-", not 0 */
    const char *eol = r1 ? strchr(r1, '\n') : NULL;
    CHECK(eol && memmem(r1, (size_t)(eol - r1), " -  psi trigger", 15));
    CHECK(r2 && strstr(r2, "80.5") && strstr(r2, "grow"));
    free(s);
    json_decref(st);

    /* an older daemon: only the budget row, no mode, no made-up values */
    st = load(old_status);
    s = bs_render_status_memory(st);
    REQUIRE(s);
    CHECKF(strcmp(s, "budget     max .. max (428.9 KiB .. 428.9 KiB)\n") == 0, "%s", s);
    free(s);
    json_decref(st);

    /* nulls read as unknown */
    st = load("{\"headroom_bytes\":null,\"headroom_source\":\"none\",\"resizes\":[],"
              "\"psi\":{\"trigger\":null,\"why\":\"no PSI in this kernel\",\"some_avg10\":null,"
              "\"full_avg10\":null}}");
    s = bs_render_status_memory(st);
    REQUIRE(s);
    CHECKF(strstr(s, "headroom   unknown (none)\n"), "%s", s);
    CHECKF(strstr(s, "psi        avg10 -; no trigger (no PSI in this kernel)\n"), "%s", s);
    CHECK(strstr(s, "resizes    none yet\n") != NULL);
    CHECK(!strstr(s, "target") && !strstr(s, "kv cache") && !strstr(s, "bad blocks"));
    free(s);
    json_decref(st);
    /* an empty object: nothing at all */
    st = load("{}");
    s = bs_render_status_memory(st);
    CHECK(s && s[0] == 0);
    free(s);
    json_decref(st);
}

static void test_budget(void)
{
    json_t *b = load("{\"mode\":\"fixed\",\"min\":\"30%\",\"max\":\"30%\",\"min_bytes\":314572,"
                     "\"max_bytes\":314572,\"target_bytes\":314572,\"stack_n\":90,"
                     "\"resident_bytes\":300000}");
    char *s = bs_render_budget(b);
    REQUIRE(s);
    CHECKF(strcmp(s, "budget     fixed: 30% (307.2 KiB)\ntarget     307.2 KiB\n"
                     "stack      90 blocks, 293.0 KiB resident\n") == 0, "%s", s);
    free(s);
    json_decref(b);
    b = load("{\"min\":\"max\",\"max\":\"max\"}");
    s = bs_render_budget(b);
    CHECKF(s && strcmp(s, "budget     max .. max (- .. -)\n") == 0, "%s", s);
    free(s);
    json_decref(b);
}

static void test_watch(void)
{
    json_t *st = load(full_status);
    bs_watch_hist h = {0};
    bs_watch_hist_push(&h, 240);
    bs_watch_hist_push(&h, 160);
    bs_watch_hist_push(&h, 180);
    char *f = bs_render_watch(st, &h, 20);
    REQUIRE(f);
    /* resident 512K of 1M is 10 of 20 cells; target 768K marks cell 15 */
    CHECKF(strstr(f, "resident [##########.....|....] 512.0 KiB of 1.00 MiB, target 768.0 KiB "
                     "(headroom minus reserve)\n"), "%s", f);
    /* resident against headroom: a quarter */
    CHECKF(strstr(f, "headroom [#####...............] 2.00 MiB (cgroup v2 memory.max)\n"), "%s", f);
    /* N over 0..stack_total: 240 → █, 160 → round(4.67) = ▆, 180 → round(5.25) = ▆ */
    CHECKF(strstr(f, "N        █▆▆\n"), "%s", f);
    CHECKF(strstr(f, "resize   01:01:01 160→180 blocks (grow, 1.5 ms)\n"), "%s", f);
    CHECK(strstr(f, "180/240 blocks") && strstr(f, "budget auto: 10% .. max"));
    CHECK(count(f, "\n") == 6);
    free(f);

    char *l = bs_render_watch_line(st, &h);
    REQUIRE(l);
    CHECKF(strcmp(l, "180/240 blocks resident [#####..|..] 512.0 KiB target 768.0 KiB headroom "
                     "2.00 MiB N █▆▆ last 01:01:01 160→180 blocks (grow, 1.5 ms)\n") == 0, "%s", l);
    free(l);
    json_decref(st);

    /* an older daemon: no target, headroom, psi or resizes, and nothing invented */
    st = load(old_status);
    bs_watch_hist o = {0};
    bs_watch_hist_push(&o, 420);
    f = bs_render_watch(st, &o, 10);
    REQUIRE(f);
    CHECKF(strstr(f, "resident [##########] 428.9 KiB of 428.9 KiB\n"), "%s", f);
    CHECK(!strstr(f, "target") && !strstr(f, "headroom") && !strstr(f, "psi"));
    CHECK(strstr(f, "resize   none yet\n") != NULL);
    free(f);
    l = bs_render_watch_line(st, &o);
    CHECKF(l && strcmp(l, "420/420 blocks resident [##########] 428.9 KiB N █\n") == 0, "%s", l);
    free(l);
    json_decref(st);

    /* no stack fields at all: placeholders, empty bar, no crash */
    st = load("{}");
    bs_watch_hist e = {0};
    bs_watch_hist_push(&e, NAN);
    l = bs_render_watch_line(st, &e);
    CHECKF(l && strcmp(l, "-/- blocks resident [..........] - N  \n") == 0, "%s", l);
    free(l);
    json_decref(st);
}

int main(void)
{
    /* resize times are printed in local time: pin it */
    setenv("TZ", "UTC", 1);
    tzset();
    test_bars();
    test_sparkline();
    test_status_rows();
    test_budget();
    test_watch();
    TEST_MAIN_END();
}
