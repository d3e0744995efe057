/* bs_team: every part of every run runs exactly once, whatever the thread count, and runs
 * follow each other without a part leaking into the next. */
#include <stdatomic.h>
#include <string.h>

#include "harness.h"
#include "kernels/team.h"

typedef struct {
    atomic_int hits[97];
    int run;
    atomic_int wrong_run;
    int *seen_run;
} ctx_t;

static void part(void *arg, int p, int n)
{
    ctx_t *c = arg;
    (void)n;
    atomic_fetch_add(&c->hits[p], 1);
    if (c->seen_run[p] != c->run - 1)
        atomic_fetch_add(&c->wrong_run, 1);
    c->seen_run[p] = c->run;
}

int main(void)
{
    bs_err e;
    for (int threads = 1; threads <= 4; threads++) {
        bs_team *t = bs_team_new(threads, &e);
        REQUIRE(t && bs_team_threads(t) == threads);
        int sizes[] = {1, 2, 3, 7, 64, 97};
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int n = sizes[si];
            ctx_t c;
            memset(&c, 0, sizeof c);
            int seen[97];
            memset(seen, 0xff, sizeof seen);   /* -1: before run 0 */
            c.seen_run = seen;
            int runs = 500;
            for (c.run = 0; c.run < runs; c.run++)
                bs_team_run(t, n, part, &c);
            int bad = 0;
            for (int p = 0; p < n; p++)
                bad += atomic_load(&c.hits[p]) != runs;
            CHECKF(bad == 0 && atomic_load(&c.wrong_run) == 0, "threads %d, %d parts: %d parts miscounted, %d out of order",
                   threads, n, bad, atomic_load(&c.wrong_run));
        }
        bs_team_free(t);
    }
    /* a NULL team runs on the caller */
    ctx_t c;
    memset(&c, 0, sizeof c);
    int seen[97];
    memset(seen, 0xff, sizeof seen);
    c.seen_run = seen;
    bs_team_run(NULL, 5, part, &c);
    CHECK(atomic_load(&c.hits[4]) == 1 && bs_team_threads(NULL) == 1);
    TEST_MAIN_END();
}
