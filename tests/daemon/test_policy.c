/* The resize policy on scripted series of facts: each step is (time, headroom, trigger,
 * PSI avg10) against a model whose resident size follows the decisions exactly. */
#include <math.h>

#include "harness.h"
#include "daemon/policy.h"

#define MIB (1024ull * 1024ull)

typedef struct {
    bs_policy p;
    bs_policy_config c;
    uint64_t resident, floor, ceil;
    uint64_t other;        /* what the rest of the cgroup uses */
    uint64_t limit;        /* 0: headroom unknown */
} sim;

static void sim_init(sim *s, uint64_t resident, uint64_t floor, uint64_t ceil, uint64_t limit)
{
    bs_policy_defaults(&s->c);
    s->c.reserve = 64 * MIB;
    s->c.hysteresis = 32 * MIB;
    s->c.grow_delay = 2.0;
    s->c.grow_rate = 256.0 * MIB;
    bs_policy_init(&s->p, &s->c);
    s->resident = resident;
    s->floor = floor;
    s->ceil = ceil;
    s->limit = limit;
    s->other = 0;
}

/* One decision at time t; the model then is the target (as the residency makes it). */
static bs_policy_decision step(sim *s, double t, bool trigger, double psi)
{
    int64_t head = -1;
    if (s->limit) {
        int64_t used = (int64_t)(s->other + s->resident);
        head = (int64_t)s->limit - used;
        if (head < 0)
            head = 0;
    }
    bs_policy_input in = {t, head, trigger, psi, s->resident, 0, s->floor, s->ceil};
    bs_policy_decision d;
    bs_policy_decide(&s->p, &s->c, &in, &d);
    s->resident = d.target;
    return d;
}

static void test_shrink_at_once(void)
{
    sim s;
    sim_init(&s, 1000 * MIB, 100 * MIB, 1000 * MIB, 2048 * MIB);
    s.other = 500 * MIB;
    bs_policy_decision d = step(&s, 0, false, 0);
    CHECK(d.why == BS_POLICY_HOLD && s.resident == 1000 * MIB);
    /* something takes 500 MiB more in a second: headroom 48 MiB < reserve -> shrink at
     * once, to what fits if the fall goes on for lookahead (0.25 s: 125 MiB more) */
    s.other = 1000 * MIB;
    d = step(&s, 1, false, 0);
    CHECK(d.why == BS_POLICY_SHRINK_HEADROOM);
    CHECKF(s.resident == 2048 * MIB - 1000 * MIB - 64 * MIB - 125 * MIB, "resident %llu MiB",
           (unsigned long long)(s.resident / MIB));
    /* the fall stopped: room again, but growth waits */
    d = step(&s, 2, false, 0);
    CHECK(d.why == BS_POLICY_WAIT);
    /* the model's own change of size is not a fall */
    for (int t = 3; t < 12; t++) {
        d = step(&s, t, false, 0);
        CHECK(d.why != BS_POLICY_SHRINK_FALLING && d.why != BS_POLICY_SHRINK_HEADROOM);
    }
    /* back up to the reserve, less the hysteresis */
    CHECKF(s.resident == 2048 * MIB - 1000 * MIB - 64 * MIB - 32 * MIB, "regrew to %llu MiB",
           (unsigned long long)(s.resident / MIB));
    /* never below the floor, even when nothing fits: each sample gives up what is over */
    s.other = 2040 * MIB;
    for (int t = 3; t < 40 && s.resident > 100 * MIB; t++) {
        d = step(&s, t, false, 0);
        CHECK(d.why == BS_POLICY_SHRINK_HEADROOM);
    }
    CHECK(s.resident == 100 * MIB);
}

static void test_falling(void)
{
    sim s;
    sim_init(&s, 1000 * MIB, 100 * MIB, 1000 * MIB, 4096 * MIB);
    s.other = 1000 * MIB;
    step(&s, 0, false, 0);
    /* a hog takes 600 MiB per second: still far from the reserve, but it will not be in a
     * second: shrink now, to where the projection leaves room */
    s.other = 1600 * MIB;
    bs_policy_decision d = step(&s, 1, false, 0);
    CHECK(d.why == BS_POLICY_HOLD);   /* avail 4096-2600+1000-64 = 2432; minus 150: still above */
    s.other = 2900 * MIB;
    d = step(&s, 2, false, 0);
    /* avail = 4096 - 3900 + 1000 - 64 = 1132 >= resident; minus 0.25 s of a 1300 MiB/s fall: 807 */
    CHECK(d.why == BS_POLICY_SHRINK_FALLING);
    CHECKF(s.resident == 807 * MIB, "resident %llu MiB", (unsigned long long)(s.resident / MIB));
}

static void test_grow_slowly(void)
{
    sim s;
    sim_init(&s, 100 * MIB, 100 * MIB, 1000 * MIB, 2048 * MIB);
    s.other = 500 * MIB;
    /* room appears: nothing happens for grow_delay, then steps of grow_rate per second */
    bs_policy_decision d = step(&s, 0, false, 0);
    CHECK(d.why == BS_POLICY_WAIT && s.resident == 100 * MIB);
    d = step(&s, 1, false, 0);
    CHECK(d.why == BS_POLICY_WAIT && s.resident == 100 * MIB);
    d = step(&s, 2, false, 0);
    CHECK(d.why == BS_POLICY_GROW && s.resident == 356 * MIB);
    d = step(&s, 3, false, 0);
    CHECK(d.why == BS_POLICY_GROW && s.resident == 612 * MIB);
    d = step(&s, 4, false, 0);
    CHECK(d.why == BS_POLICY_GROW && s.resident == 868 * MIB);
    d = step(&s, 5, false, 0);
    CHECK(s.resident == 1000 * MIB);   /* the ceiling */
    d = step(&s, 6, false, 0);
    CHECK(d.why == BS_POLICY_HOLD && s.resident == 1000 * MIB);
}

static void test_grow_stops_short_of_reserve(void)
{
    sim s;
    sim_init(&s, 100 * MIB, 100 * MIB, 4000 * MIB, 1024 * MIB);
    s.other = 200 * MIB;
    for (int t = 0; t < 20; t++)
        step(&s, t, false, 0);
    /* it grows only while avail stays above resident + hysteresis: it ends between
     * limit - other - reserve - hysteresis and limit - other - reserve */
    uint64_t hi = 1024 * MIB - 200 * MIB - 64 * MIB, lo = hi - 32 * MIB;
    CHECKF(s.resident >= lo && s.resident <= hi, "resident %llu MiB, expected %llu..%llu",
           (unsigned long long)(s.resident / MIB), (unsigned long long)(lo / MIB), (unsigned long long)(hi / MIB));
}

static void test_hysteresis_resets(void)
{
    sim s;
    sim_init(&s, 100 * MIB, 100 * MIB, 1000 * MIB, 2048 * MIB);
    s.other = 500 * MIB;
    step(&s, 0, false, 0);
    step(&s, 1.5, false, 0);
    /* the room goes away for one sample: the delay starts over */
    s.other = 1900 * MIB;
    step(&s, 1.8, false, 0);
    s.other = 500 * MIB;
    bs_policy_decision d = step(&s, 2.5, false, 0);
    CHECK(d.why == BS_POLICY_WAIT);
    d = step(&s, 4.4, false, 0);
    CHECK(d.why == BS_POLICY_WAIT);
    d = step(&s, 4.6, false, 0);
    CHECK(d.why == BS_POLICY_GROW);
}

static void test_trigger_and_backoff(void)
{
    sim s;
    sim_init(&s, 100 * MIB, 100 * MIB, 4000 * MIB, 8192 * MIB);
    for (int t = 0; t <= 3; t++)
        step(&s, t, false, 0);
    CHECK(s.resident > 100 * MIB);   /* grew at t = 2, 3 */
    uint64_t before = s.resident;
    /* pressure right after a grow: give up 10% at once and halve the rate */
    bs_policy_decision d = step(&s, 3.5, true, 20);
    CHECK(d.why == BS_POLICY_SHRINK_TRIGGER);
    CHECKF(s.resident == (uint64_t)((double)before * 0.9), "%llu vs %llu", (unsigned long long)s.resident,
           (unsigned long long)before);
    CHECK(s.p.rate == 128.0 * MIB && s.p.backoffs == 1 && s.p.delay_mult == 2);
    /* high PSI holds growth back even with room */
    for (double t = 4; t < 10; t += 1) {
        d = step(&s, t, false, 50);
        CHECK(d.why != BS_POLICY_GROW);
    }
    /* calm: growth resumes at the halved rate */
    int grows = 0;
    for (double t = 10; t < 14; t += 1) {
        uint64_t r0 = s.resident;
        d = step(&s, t, false, 0);
        grows += d.why == BS_POLICY_GROW;
        CHECKF(s.resident - r0 <= (uint64_t)(128.0 * MIB), "grew %llu MiB in a second", (unsigned long long)((s.resident - r0) / MIB));
    }
    CHECK(grows >= 3);
    /* a trigger far from any grow does not halve again */
    step(&s, 100, false, 0);
    double rate = s.p.rate;
    sim quiet = s;
    quiet.p.last_grow = 0;
    step(&quiet, 200, true, 5);
    CHECK(quiet.p.rate == rate);
}

/* A hog in bursts: each time the model grows back into a gap, the next burst shrinks it;
 * the back-off makes the grows rarer until the gaps are not worth growing into. */
/* A hog in bursts: each time the model grows back into a gap, the next burst shrinks it;
 * the back-off makes the grows slower and later, so the model stops feeding the bursts. */
static void test_bursts(void)
{
    sim s;
    sim_init(&s, 1000 * MIB, 100 * MIB, 1000 * MIB, 2048 * MIB);
    s.c.grow_delay = 0.5;
    double early = 0, late = 0;   /* bytes grown in the first 10 s, and in the last 10 s */
    for (int i = 0; i < 400; i++) {
        double t = i * 0.1;
        /* 1.5 s of a 1 GiB hog, then 1 s without it */
        bool on = fmod(t, 2.5) < 1.5, onset = on && fmod(t, 2.5) < 0.1;
        s.other = on ? 1200 * MIB : 200 * MIB;
        uint64_t before = s.resident;
        step(&s, t, onset, 0);   /* each burst stalls someone: PSI fires at its onset */
        double grown = s.resident > before ? (double)(s.resident - before) : 0;
        if (t < 10)
            early += grown;
        else if (t >= 30)
            late += grown;
    }
    fprintf(stderr, "bursts: grown %.0f MiB in the first 10 s, %.0f MiB in the last 10 s; delay x%d, rate %.0f MiB/s\n",
            early / MIB, late / MIB, s.p.delay_mult, s.p.rate / MIB);
    CHECK(s.p.delay_mult == 4 && s.p.rate == s.c.min_grow_rate);
    CHECKF(late < early / 5, "still feeding the bursts: %.0f MiB late vs %.0f MiB early", late / MIB, early / MIB);
}

static void test_unknown_and_range(void)
{
    sim s;
    sim_init(&s, 300 * MIB, 200 * MIB, 800 * MIB, 0);
    bs_policy_decision d = step(&s, 0, false, -1);
    CHECK(d.why == BS_POLICY_UNKNOWN && s.resident == 800 * MIB);
    /* a trigger without any limit known still shrinks */
    d = step(&s, 1, true, -1);
    CHECK(d.why == BS_POLICY_SHRINK_TRIGGER && s.resident == 720 * MIB);
    /* a new range below the model: the clamp moves it and says so */
    s.limit = 16384 * MIB;
    s.ceil = 400 * MIB;
    d = step(&s, 2, false, 0);
    CHECK(d.why == BS_POLICY_CLAMP && s.resident == 400 * MIB);
}

/* Admission: the room counts the headroom, what the model gives back down to its floor,
 * less the reserve and what live sessions were promised. */
static void test_admit(void)
{
    int64_t room;
    bs_admit_input in = {.headroom = 100, .resident = 50, .floor = 20, .reserve = 10, .promised = 40, .need = 80};
    CHECK(bs_policy_admit(&in, &room) && room == 80);   /* 100 + 30 - 10 - 40 */
    in.need = 81;
    CHECK(!bs_policy_admit(&in, &room));
    in.promised = 200;   /* more promised than there is: the room is negative, nothing fits */
    in.need = 0;
    CHECK(!bs_policy_admit(&in, &room) && room < 0);
    in.headroom = -1;    /* unknown: admitted */
    in.need = 1ull << 40;
    CHECK(bs_policy_admit(&in, &room) && room == -1);
}

/* Two models, one budget: blocks go where they lower the weighted loss most per byte. */
static void test_alloc(void)
{
    /* A: 10 bytes a block, loss falls fast then slowly; B: 20 bytes a block, steady */
    uint64_t ab[6] = {100, 110, 120, 130, 140, 150}, bb[6] = {200, 220, 240, 260, 280, 300};
    double al[6] = {10, 6, 4, 3.5, 3.2, 3.1}, bl[6] = {10, 9, 8, 7, 6, 5};
    bs_alloc_model m[2] = {{ab, al, 0, 5, 1.0}, {bb, bl, 0, 5, 1.0}};
    int n[2], scratch[12];
    /* floors only */
    CHECK(bs_policy_alloc(m, 2, 300, n, scratch) == 300 && n[0] == 0 && n[1] == 0);
    /* floors past the total: still the floors */
    CHECK(bs_policy_alloc(m, 2, 10, n, scratch) == 300 && n[0] == 0 && n[1] == 0);
    /* 30 spare bytes: A's first blocks (0.4 and 0.2 per byte) beat B's 0.05 */
    CHECK(bs_policy_alloc(m, 2, 330, n, scratch) == 330 && n[0] == 3 && n[1] == 0);
    /* 70 spare: A's 4th block (0.03 per byte) comes after B's first two (0.05) */
    bs_policy_alloc(m, 2, 370, n, scratch);
    CHECKF(n[0] == 3 && n[1] == 2, "370: %d %d", n[0], n[1]);
    /* everything */
    CHECK(bs_policy_alloc(m, 2, 1000, n, scratch) == 450 && n[0] == 5 && n[1] == 5);
    /* weight 10 on B: B first */
    m[1].weight = 10;
    bs_policy_alloc(m, 2, 340, n, scratch);
    CHECKF(n[0] == 0 && n[1] == 2, "weighted: %d %d", n[0], n[1]);
    m[1].weight = 1;
    /* a block that buys nothing before one that buys much: taken together (the hull) */
    double cl[4] = {10, 10, 2, 1.9};
    uint64_t cb[4] = {0, 10, 20, 30};
    bs_alloc_model c[2] = {{cb, cl, 0, 3, 1.0}, {bb, bl, 0, 5, 1.0}};
    bs_policy_alloc(c, 2, 200 + 20, n, scratch);
    CHECKF(n[0] == 2 && n[1] == 0, "hull: %d %d", n[0], n[1]);
    /* a step that does not fit whole is cut to the longest prefix that does, short of
     * blocks that lower nothing: here block 1 alone buys nothing, so none is held */
    bs_policy_alloc(c, 2, 200 + 15, n, scratch);
    CHECKF(n[0] == 0 && n[1] == 0, "cut: %d %d", n[0], n[1]);
    /* and where the cut lands on a block that helps, it is held */
    double dl[4] = {10, 6, 2, 1.9};
    bs_alloc_model dm[1] = {{cb, dl, 0, 3, 1.0}};
    bs_policy_alloc(dm, 1, 15, n, scratch);
    CHECKF(n[0] == 1, "cut on a helpful block: %d", n[0]);
    /* a flat run (a floor store before its switch) is not held when the step is cut */
    {
        const uint64_t fb[6] = {100, 110, 120, 130, 140, 300};
        const double fl[6] = {1.0, 1.0, 1.0, 1.0, 1.0, 0.1};
        bs_alloc_model fm[1] = {{fb, fl, 0, 5, 1.0}};
        int fn[1];
        CHECK(bs_policy_alloc(fm, 1, 135, fn, scratch) == 100 && fn[0] == 0);
        CHECK(bs_policy_alloc(fm, 1, 300, fn, scratch) == 300 && fn[0] == 5);
    }
    /* the recent-use factor */
    CHECK(bs_policy_use_factor(5, 60, 30, 0.1) == 1.0);
    CHECK(fabs(bs_policy_use_factor(90, 60, 30, 0.1) - 0.5) < 1e-12);
    CHECK(bs_policy_use_factor(1e6, 60, 30, 0.1) == 0.1);
    /* grows wait for every shrink to have given its pages back */
    uint64_t held[3] = {100, 50, 30}, target[3] = {80, 70, 30};
    CHECK(!bs_policy_grows_may_start(held, target, 3));
    held[0] = 80;
    CHECK(bs_policy_grows_may_start(held, target, 3));
    CHECK(bs_policy_grows_may_start(held, target, 0));
}

int main(void)
{
    test_admit();
    test_alloc();
    test_shrink_at_once();
    test_falling();
    test_grow_slowly();
    test_grow_stops_short_of_reserve();
    test_hysteresis_resets();
    test_trigger_and_backoff();
    test_bursts();
    test_unknown_and_range();
    TEST_MAIN_END();
}
