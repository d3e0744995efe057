#include "daemon/policy.h"

#include <math.h>

#define MIB (1024.0 * 1024.0)

void bs_policy_defaults(bs_policy_config *c)
{
    c->reserve = 64ull << 20;
    c->hysteresis = 32ull << 20;
    c->grow_delay = 2.0;
    c->grow_rate = 256.0 * MIB;
    c->min_grow_rate = 8.0 * MIB;
    c->backoff_window = 10.0;
    c->calm_period = 10.0;
    c->trigger_shrink = 0.10;
    c->psi_hold = 10.0;
    c->lookahead = 0.25;
}

void bs_policy_init(bs_policy *p, const bs_policy_config *c)
{
    p->above_since = -1;
    p->last_grow = -1;
    p->last_trigger = -1;
    p->last_step = -1;
    p->rate = c->grow_rate;
    p->backoffs = 0;
    p->last_headroom = -1;
    p->fall = 0;
    p->fall_t = -1;
    p->delay_mult = 1;
}

const char *bs_policy_why_name(bs_policy_why w)
{
    switch (w) {
    case BS_POLICY_HOLD: return "steady";
    case BS_POLICY_SHRINK_TRIGGER: return "PSI trigger";
    case BS_POLICY_SHRINK_HEADROOM: return "headroom under reserve";
    case BS_POLICY_SHRINK_FALLING: return "headroom falling fast";
    case BS_POLICY_GROW: return "headroom held: growing";
    case BS_POLICY_WAIT: return "headroom: waiting before growing";
    case BS_POLICY_UNKNOWN: return "no memory limit known";
    case BS_POLICY_CLAMP: return "budget range";
    }
    return "?";
}

static uint64_t clamp(double v, uint64_t lo, uint64_t hi)
{
    if (v <= (double)lo)
        return lo;
    if (v >= (double)hi)
        return hi;
    return (uint64_t)v;
}

/* The rate: halved by a trigger that follows a grow, doubled back after a calm period. */
/* Senpai-style back-off: a PSI trigger soon after a grow means the grow found memory that
 * was not really free (a hog between two bursts): halve the rate and double the delay. A
 * calm period undoes one step at a time. Shrinks on headroom alone do not back off: that
 * was measured to keep the model small long after stepwise changes (bench/resize). */
static void adapt_rate(bs_policy *p, const bs_policy_config *c, const bs_policy_input *in, bs_policy_why why)
{
    if (why == BS_POLICY_SHRINK_TRIGGER) {
        if (p->last_grow >= 0 && in->now - p->last_grow <= c->backoff_window) {
            p->rate /= 2;
            if (p->rate < c->min_grow_rate)
                p->rate = c->min_grow_rate;
            if (p->delay_mult < 4)
                p->delay_mult *= 2;
            p->backoffs++;
            p->last_grow = -1;   /* one back-off per grow */
        }
        p->last_trigger = in->now;
    } else if ((p->rate < c->grow_rate || p->delay_mult > 1) &&
               in->now - (p->last_trigger > p->last_grow ? p->last_trigger : p->last_grow) >= c->calm_period) {
        p->rate *= 2;
        if (p->rate > c->grow_rate)
            p->rate = c->grow_rate;
        if (p->delay_mult > 1)
            p->delay_mult /= 2;
        p->last_trigger = in->now;   /* one step per calm period */
    }
}

static bs_policy_why decide(bs_policy *p, const bs_policy_config *c, const bs_policy_input *in, double *target)
{
    double res = (double)in->resident;
    *target = res;
    if (in->trigger) {
        p->above_since = -1;
        double avail = in->headroom < 0 ? res : (double)in->headroom + res - (double)c->reserve - (double)in->kv_next;
        double cut = res * (1.0 - c->trigger_shrink);
        *target = avail < cut ? avail : cut;
        return BS_POLICY_SHRINK_TRIGGER;
    }
    if (in->headroom < 0) {
        p->above_since = -1;
        *target = (double)in->ceil;
        return BS_POLICY_UNKNOWN;
    }
    double avail = (double)in->headroom + res - (double)c->reserve - (double)in->kv_next;
    double ahead = avail - p->fall * c->lookahead;   /* avail once the fall went on a while */
    if (avail < res) {
        p->above_since = -1;
        *target = ahead;
        return BS_POLICY_SHRINK_HEADROOM;
    }
    if (ahead < res) {
        p->above_since = -1;
        *target = ahead;
        return BS_POLICY_SHRINK_FALLING;
    }
    if (avail < res + (double)c->hysteresis || res >= (double)in->ceil) {
        p->above_since = -1;
        return BS_POLICY_HOLD;
    }
    if (p->above_since < 0)
        p->above_since = in->now;
    if (in->now - p->above_since < c->grow_delay * p->delay_mult || (in->psi_some_avg10 >= 0 && in->psi_some_avg10 > c->psi_hold))
        return BS_POLICY_WAIT;
    double dt = p->last_step >= 0 ? in->now - p->last_step : 1.0;
    if (dt > 1.0 || dt <= 0)
        dt = 1.0;
    double step = p->rate * dt, room = avail - (double)c->hysteresis;
    *target = res + step < room ? res + step : room;
    if (*target < res)
        *target = res;
    p->last_grow = in->now;
    return BS_POLICY_GROW;
}

/* How fast the memory the model could have (headroom + resident: the model's own grows
 * and shrinks do not move it) fell since the last step; 0 when it rose or is unknown. */
static void track_fall(bs_policy *p, const bs_policy_input *in)
{
    double dt = p->fall_t >= 0 ? in->now - p->fall_t : 0;
    double room = in->headroom >= 0 ? (double)in->headroom + (double)in->resident : -1;
    /* decisions also come between samples (a trigger, a resize done): a rate over a few
     * milliseconds is noise, so the estimate moves only over 50 ms or more */
    if (room >= 0 && p->last_headroom >= 0 && dt > 0 && dt < 0.05)
        return;
    p->fall = 0;
    if (room >= 0 && p->last_headroom >= 0 && dt > 0 && room < p->last_headroom)
        p->fall = (p->last_headroom - room) / dt;
    p->last_headroom = room;
    p->fall_t = in->now;
}

void bs_policy_decide(bs_policy *p, const bs_policy_config *c, const bs_policy_input *in, bs_policy_decision *d)
{
    track_fall(p, in);
    double t;
    d->why = decide(p, c, in, &t);
    adapt_rate(p, c, in, d->why);
    d->target = clamp(t, in->floor, in->ceil);
    /* a budget range that moves a steady model is worth naming */
    if ((d->why == BS_POLICY_HOLD || d->why == BS_POLICY_WAIT) && d->target != in->resident)
        d->why = BS_POLICY_CLAMP;
    p->last_step = in->now;
}

bool bs_policy_admit(const bs_admit_input *in, int64_t *room)
{
    if (in->headroom < 0) {
        *room = -1;
        return true;
    }
    double r = (double)in->headroom + (double)in->resident - (double)in->floor - (double)in->reserve -
               (double)in->promised;
    *room = (int64_t)r;
    return (double)in->need <= r;
}

/* The vertices of the lower convex hull of (bytes[n], loss[n]), n = lo..hi, into h;
 * returns how many. */
static int lower_hull(const bs_alloc_model *m, int *h)
{
    int nh = 0;
    for (int n = m->lo; n <= m->hi; n++) {
        while (nh >= 2) {
            int a = h[nh - 2], b = h[nh - 1];
            /* b is above the line from a to n: not on the hull */
            double cross = (double)(m->bytes[b] - m->bytes[a]) * (m->loss[n] - m->loss[a]) -
                           (m->loss[b] - m->loss[a]) * (double)(m->bytes[n] - m->bytes[a]);
            if (cross > 0)
                break;
            nh--;
        }
        h[nh++] = n;
    }
    return nh;
}

uint64_t bs_policy_alloc(const bs_alloc_model *m, int k, uint64_t total, int *out_n, int *scratch)
{
    uint64_t used = 0;
    int *hull[BS_POLICY_MAX_MODELS], nh[BS_POLICY_MAX_MODELS], at[BS_POLICY_MAX_MODELS];
    bool open[BS_POLICY_MAX_MODELS];
    int *h = scratch;
    for (int i = 0; i < k; i++) {
        out_n[i] = m[i].lo;
        used += m[i].bytes[m[i].lo];
        hull[i] = h;
        nh[i] = lower_hull(&m[i], h);
        h += nh[i];
        at[i] = 0;
        open[i] = true;
    }
    for (;;) {
        int best = -1;
        double best_gain = 0;
        for (int i = 0; i < k; i++) {
            if (!open[i] || at[i] + 1 >= nh[i])
                continue;
            int a = hull[i][at[i]], b = hull[i][at[i] + 1];
            double gain = m[i].weight * (m[i].loss[a] - m[i].loss[b]) / (double)(m[i].bytes[b] - m[i].bytes[a]);
            if (gain > best_gain) {
                best_gain = gain;
                best = i;
            }
        }
        if (best < 0)
            return used;
        const bs_alloc_model *x = &m[best];
        int a = hull[best][at[best]], b = hull[best][at[best] + 1];
        uint64_t room = total > used ? total - used : 0;
        if (x->bytes[b] - x->bytes[a] <= room) {
            used += x->bytes[b] - x->bytes[a];
            out_n[best] = b;
            at[best]++;
            continue;
        }
        int n = a;
        while (n + 1 < b && x->bytes[n + 1] - x->bytes[a] <= room)
            n++;
        /* blocks that lower nothing are not held (a floor store's prefixes before its switch) */
        while (n > a && x->loss[n - 1] <= x->loss[n])
            n--;
        used += x->bytes[n] - x->bytes[a];
        out_n[best] = n;
        open[best] = false;
    }
}

bool bs_policy_grows_may_start(const uint64_t *held, const uint64_t *target, int k)
{
    for (int i = 0; i < k; i++)
        if (held[i] > target[i])
            return false;
    return true;
}

double bs_policy_use_factor(double idle_s, double active_s, double half_life_s, double low)
{
    if (idle_s <= active_s)
        return 1.0;
    double f = pow(0.5, (idle_s - active_s) / half_life_s);
    return f < low ? low : f;
}
