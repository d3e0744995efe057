/* bs_sizer: keeps the served models at the size memory allows.
 *
 * The monitor half samples memory facts on a timer (uv_timer, sample_ms) and wakes on a
 * PSI trigger (POLLPRI on the daemon's cgroup memory.pressure, or the machine's
 * /proc/pressure/memory, through a uv_poll); the policy (daemon/policy.h, pure) turns
 * the facts into a target for all models together; bs_policy_alloc splits it block by
 * block across them, to where a block lowers the (weighted, recently used) calibration
 * loss the most per byte; each model's residency (daemon/residency.h) moves its prefix
 * there. Shrinks go first: no model grows while another still holds pages past its
 * target, so the total never overshoots.
 *
 * The budget: the daemon's mode is fixed (one size) or auto within [min, max]. A byte size
 * there is a total for all models; the other forms (min, max, 40%, 4bpw) apply to each
 * model. A model may have its own range (config file, or the budget op naming it),
 * in its own terms, which bounds its share.
 *
 * The sizer knows nothing of sessions: it asks its owner for the KV bytes they hold
 * through kv_fn. Loop thread only. */
#ifndef BS_SIZER_H
#define BS_SIZER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <jansson.h>

#include "daemon/log.h"
#include "daemon/memory.h"
#include "daemon/models.h"
#include "daemon/policy.h"
#include "daemon/psi.h"
#include "daemon/residency.h"
#include "model/engine.h"
#include "proto/budget.h"

/* The owner's live sessions: bytes their KV caches hold, the bytes they may take next
 * (a chunk each), and how many there are. */
typedef void (*bs_sizer_kv_fn)(void *ctx, uint64_t *kv_bytes, uint64_t *kv_next, int *sessions);

typedef struct {
    const char *proc_root, *sys_root;
    int sample_ms;                 /* periodic sample; the PSI trigger comes on top */
    bs_io_mode io;
    int qd;                        /* io_uring reads in flight */
    uint64_t chunk;                /* bytes per read */
    bs_policy_config policy;
    bool fixed;                    /* the starting mode */
    bs_budget min, max;            /* fixed: min is the size */
    const char *psi_watch, *psi_write;   /* $MEMORY_PRESSURE_WATCH / _WRITE, or NULL */
    double idle_after;             /* seconds unused before a model's weight starts to fall */
    double idle_half_life;         /* ... halving every this many seconds */
} bs_sizer_config;

typedef struct {
    uv_loop_t *loop;
    const bs_log *log;
    bs_models *models;
    bs_sizer_config cfg;
    bs_policy pol;
    uv_timer_t sample;
    bs_psi psi;
    uv_poll_t psi_poll;
    bool psi_polling;
    bool psi_handle;               /* psi_poll was initialised */
    bool trigger;                  /* fired since the last decision */
    uint64_t triggers;
    bs_mem_facts facts;
    int64_t headroom;
    bs_mem_source source;
    bool fixed;
    bs_budget min, max;
    uint64_t target;               /* bytes for all models, from the last decision */
    uint64_t floor, ceil;          /* the range it was taken in */
    char reason[64];
    uint64_t kv_bytes, kv_next;
    int kv_sessions;
    bs_sizer_kv_fn kv_fn;
    void *kv_ctx;
    bool closed;
} bs_sizer;

/* Starts the monitor; the models grow to their first targets from the loop. Every
 * model's resize must end in bs_sizer_resized (bs_models_io.resized). */
int bs_sizer_init(bs_sizer *sz, uv_loop_t *loop, const bs_log *log, bs_models *models, const bs_sizer_config *cfg,
                  bs_sizer_kv_fn kv_fn, void *kv_ctx, bs_err *e);

/* bs_res_done_fn for every model (ctx: the sizer). */
void bs_sizer_resized(bs_res *r, const bs_resize_event *ev, void *ctx);

/* Each model's range as prefix lengths, under the budget now. */
void bs_sizer_range(const bs_sizer *sz, const bs_served *m, int *lo, int *hi);

/* The prefix each model of the set should start at, before the loop runs: the budget's
 * size, else the split of what memory is free now (out_n[i] for set->m[i]). */
void bs_sizer_start_split(const bs_sizer_config *cfg, bs_models *set, int *out_n);

/* May a new session that may come to need `need` bytes start, the live ones having been
 * promised `promised` more than they hold? 0 yes; -1 no, even with the model shrunk to
 * its floor. *room: the bytes there are for it (-1: unknown). Samples memory now. */
int bs_sizer_admit(bs_sizer *sz, uint64_t need, uint64_t promised, int64_t *room);

/* Changes the mode: fixed at min, or auto within [min, max]; decides at once. With m,
 * that model's own range instead (fixed: min = max). */
int bs_sizer_set_budget(bs_sizer *sz, bs_served *m, bool fixed, const bs_budget *min, const bs_budget *max,
                        bs_err *e);

/* Samples and decides now (also what the timer and the trigger do). */
void bs_sizer_decide(bs_sizer *sz);

/* A view was released: a waiting shrink may finish. */
void bs_sizer_views_released(bs_sizer *sz);

/* Adds the size fields of `status` to o. */
void bs_sizer_status(bs_sizer *sz, json_t *o);

/* One model's entry of `status` (and of /v1/models). */
json_t *bs_sizer_model_json(bs_sizer *sz, bs_served *m);

/* The budget object of `status` and of the budget op (m: that model's range). */
json_t *bs_sizer_budget_json(bs_sizer *sz, bs_served *m);

void bs_sizer_close(bs_sizer *sz);

#endif
