/* bs_sizer: keeps the served model at the size memory allows.
 *
 * The monitor half samples memory facts on a timer (uv_timer, sample_ms) and wakes on a
 * PSI trigger (POLLPRI on the daemon's cgroup memory.pressure, or the machine's
 * /proc/pressure/memory, through a uv_poll); the policy (daemon/policy.h, pure) turns
 * the facts into a target size; the residency (daemon/residency.h) moves the engine's
 * prefix there. The budget mode bounds it all: fixed (one size) or auto within
 * [min, max].
 *
 * The sizer knows nothing of sessions: it asks its owner for the KV bytes they hold
 * through kv_fn, and tells its owner nothing (views are released by whoever holds
 * them; bs_sizer_views_released passes the hint on). Loop thread only. */
#ifndef BS_SIZER_H
#define BS_SIZER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <jansson.h>

#include "daemon/log.h"
#include "daemon/memory.h"
#include "daemon/policy.h"
#include "daemon/psi.h"
#include "daemon/residency.h"
#include "model/engine.h"
#include "proto/budget.h"

/* The owner's live sessions: bytes their KV caches hold, and how many there are. */
typedef void (*bs_sizer_kv_fn)(void *ctx, uint64_t *kv_bytes, int *sessions);

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
} bs_sizer_config;

typedef struct {
    uv_loop_t *loop;
    const bs_log *log;
    bs_engine *eng;
    bs_sizer_config cfg;
    bs_res res;
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
    uint64_t target;               /* bytes, from the last decision */
    int target_n;
    char reason[64];
    uint64_t kv_bytes;
    int kv_sessions;
    bs_sizer_kv_fn kv_fn;
    void *kv_ctx;
    bool closed;
} bs_sizer;

/* Starts the monitor; the model grows to its first target from the loop. */
int bs_sizer_init(bs_sizer *sz, uv_loop_t *loop, const bs_log *log, bs_engine *eng, const bs_sizer_config *cfg,
                  bs_sizer_kv_fn kv_fn, void *kv_ctx, bs_err *e);

/* May a new session that may come to need `need` bytes start, the live ones having been
 * promised `promised` more than they hold? 0 yes; -1 no, even with the model shrunk to
 * its floor. *room: the bytes there are for it (-1: unknown). Samples memory now. */
int bs_sizer_admit(bs_sizer *sz, uint64_t need, uint64_t promised, int64_t *room);

/* Changes the mode: fixed at min, or auto within [min, max]; decides at once. */
int bs_sizer_set_budget(bs_sizer *sz, bool fixed, const bs_budget *min, const bs_budget *max, bs_err *e);

/* Samples and decides now (also what the timer and the trigger do). */
void bs_sizer_decide(bs_sizer *sz);

/* A view was released: a waiting shrink may finish. */
void bs_sizer_views_released(bs_sizer *sz);

/* Adds the size fields of `status` to o. */
void bs_sizer_status(bs_sizer *sz, json_t *o);

/* The budget object of `status` and of the budget op. */
json_t *bs_sizer_budget_json(bs_sizer *sz);

void bs_sizer_close(bs_sizer *sz);

#endif
