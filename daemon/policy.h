/* bs_policy: how big the model should be, from facts about memory. Pure functions in the
 * style of systemd-oomd's pressure checks: no I/O, no clock, no globals; the caller
 * samples the facts (daemon/monitor) and applies the decision (daemon/residency), and
 * tests script series of facts.
 *
 *   avail  = headroom + resident - reserve - kv_next
 *            (headroom already excludes what sessions' KV caches hold; kv_next is the
 *            next chunk each live session may still take)
 *   target = clamp(avail, floor, ceil)
 *
 * Shrinking happens at once: on a PSI trigger (to at most (1 - trigger_shrink) of what
 * is resident, senpai-style) or when avail falls under what is resident. When headroom
 * is falling, the fall is assumed to go on for `lookahead` seconds (a couple of samples
 * and the time a shrink takes to return memory): the target is what avail will be then,
 * so a fast memory hog is met early instead of one sample late. Growing is
 * slow: only after avail stayed above resident + hysteresis for grow_delay, in steps
 * of at most grow_rate bytes per second. A PSI trigger within backoff_window of a grow
 * halves the rate (down to min_grow_rate) and doubles the grow delay (up to 4x): a hog
 * that comes back in bursts stops being fed. A calm period undoes one step at a time. */
#ifndef BS_POLICY_H
#define BS_POLICY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t reserve;          /* bytes the model leaves free */
    uint64_t hysteresis;       /* extra room needed before growing */
    double grow_delay;         /* seconds the room must last */
    double grow_rate;          /* bytes per second, at most (the starting rate) */
    double min_grow_rate;
    double backoff_window;     /* seconds after a grow in which a trigger halves the rate */
    double calm_period;        /* seconds without a trigger after which the rate doubles */
    double trigger_shrink;     /* fraction given up on a trigger */
    double psi_hold;           /* PSI some avg10 (percent) above which no grow starts */
    double lookahead;          /* seconds a falling headroom is projected forward */
} bs_policy_config;

void bs_policy_defaults(bs_policy_config *c);

typedef struct {
    double above_since;        /* when avail last rose above the grow line; < 0: it is not */
    double last_grow;          /* when the last grow decision was taken; < 0: never */
    double last_trigger;       /* < 0: never */
    double last_step;          /* time of the previous decision */
    double rate;               /* the grow rate now */
    double last_headroom;      /* headroom + resident at last_step; < 0 unknown */
    double fall;               /* bytes per second headroom fell at the last step (0: not falling) */
    double fall_t;             /* when last_headroom was taken; < 0 never */
    uint64_t backoffs;         /* times the rate was halved */
    int delay_mult;            /* the grow delay is grow_delay x this (1..4): doubled per back-off */
} bs_policy;

void bs_policy_init(bs_policy *p, const bs_policy_config *c);

typedef struct {
    double now;                /* seconds, any monotonic origin */
    int64_t headroom;          /* bytes before the tightest limit; < 0 unknown */
    bool trigger;              /* a PSI trigger fired since the last decision */
    double psi_some_avg10;     /* percent; < 0 unknown */
    uint64_t resident;         /* model bytes resident now */
    uint64_t kv_next;          /* bytes the live sessions' KV caches may take next */
    uint64_t floor, ceil;      /* the range the budget allows */
} bs_policy_input;

typedef enum {
    BS_POLICY_HOLD,            /* stay */
    BS_POLICY_SHRINK_TRIGGER,  /* a PSI trigger fired */
    BS_POLICY_SHRINK_HEADROOM, /* headroom fell under the reserve */
    BS_POLICY_SHRINK_FALLING,  /* headroom falls fast enough to be under it within lookahead */
    BS_POLICY_GROW,            /* room held long enough */
    BS_POLICY_WAIT,            /* room, but not yet long enough (or PSI still high) */
    BS_POLICY_UNKNOWN,         /* no headroom known: the budget's ceiling */
    BS_POLICY_CLAMP,           /* the budget's range moved the target */
} bs_policy_why;

const char *bs_policy_why_name(bs_policy_why w);

typedef struct {
    uint64_t target;           /* bytes, within [floor, ceil] */
    bs_policy_why why;
} bs_policy_decision;

void bs_policy_decide(bs_policy *p, const bs_policy_config *c, const bs_policy_input *in, bs_policy_decision *d);

/* Admission: may a new session start? It may come to need `need` bytes (its KV cache at
 * the most tokens it can reach, and its state); the sessions already running were
 * promised `promised` bytes more than they hold. The room is the headroom, plus what
 * the model would give back shrunk to its floor, less the reserve. Unknown headroom
 * (< 0) admits: nothing better is known. */
typedef struct {
    int64_t headroom;          /* bytes before the tightest limit; < 0 unknown */
    uint64_t resident, floor;  /* model bytes now, and at the budget's floor */
    uint64_t reserve;
    uint64_t promised;
    uint64_t need;
} bs_admit_input;

bool bs_policy_admit(const bs_admit_input *in, int64_t *room);

/* Several models, one budget: where do the blocks go? Each model's budget table gives,
 * per prefix n, its resident bytes and the calibration loss it reached. Every model first
 * gets its floor `lo` (even past the total: a model never goes below a working prefix);
 * then the rest of the total goes, step by step, to the step that lowers the weighted
 * loss the most per byte. Steps run along each model's lower convex hull of
 * (bytes, loss), so a block that buys little is taken together with a later one that
 * buys much; a step that does not fit whole is cut to the longest prefix that does, and
 * that model takes no more (and not past its last block that lowers the loss). Steps that
 * lower nothing are not taken. */
typedef struct {
    const uint64_t *bytes;     /* [n] for n in lo..hi: increasing */
    const double *loss;        /* [n] for n in lo..hi */
    int lo, hi;
    double weight;             /* > 0: its share of importance, times its recent use */
} bs_alloc_model;

#define BS_POLICY_MAX_MODELS 64

/* k <= BS_POLICY_MAX_MODELS. out_n[i]: the prefix for model i. Returns the bytes the split uses. scratch: room for
 * sum over models of (hi - lo + 1) ints (the hulls). */
uint64_t bs_policy_alloc(const bs_alloc_model *m, int k, uint64_t total, int *out_n, int *scratch);

/* Resizes toward a split are ordered so that the models never hold more than it: shrinks
 * may always start; grows only once no model holds bytes past its target any more (a shrink
 * publishes at once but returns its pages only when the steps reading them end). held[i]:
 * the bytes model i holds now; target[i]: its bytes in the split. */
bool bs_policy_grows_may_start(const uint64_t *held, const uint64_t *target, int k);

/* How much an idle model counts: 1 while used within the last `active_s` seconds, then
 * halving every `half_life_s`, never below `low` (so an idle model yields its blocks
 * first, down to its floor, but is not starved of the memory nobody else wants). */
double bs_policy_use_factor(double idle_s, double active_s, double half_life_s, double low);

#endif
