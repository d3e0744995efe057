/* bs_models: the stores one daemon serves, each a named model with its own engine and
 * residency, all under one memory budget (the sizer splits it; daemon/sizer.h).
 *
 * A model is BUILDING (compressed from a source model into the cache, on its own thread:
 * daemon/build.h), LOADING (its store is being opened and its first prefix read on a
 * worker), READY (serving), DRAINING (taken out of the configuration: no new requests;
 * it is closed, and its memory returned, once its last session has ended and no resize
 * is in flight), or FAILED (its build or load failed: listed with the error, serving
 * nothing). Names are unique among models that are not draining; requests name one, and
 * a request without a name goes to the default model: the first READY one in the order
 * they were listed.
 *
 * Each model's budget table also carries a loss per prefix, what the split is made by
 * (bs_store_loss_table: relative calibration error, or an estimate flagged in status).
 *
 * Loop thread only, except that sessions' steps read the engines (model/engine.h). */
#ifndef BS_MODELS_H
#define BS_MODELS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/log.h"
#include "daemon/residency.h"
#include "model/engine.h"
#include "proto/budget.h"

#define BS_SERVED_NAME_MAX 64   /* BS_PROTO_MODEL_MAX + 1 */
#define BS_MODELS_MAX 16

/* How a model is listed: on the command line (--store [NAME=]PATH) or in the config file. */
typedef struct {
    char name[BS_SERVED_NAME_MAX];  /* "" : from the file name */
    char path[PATH_MAX];           /* the store; "" while a source is being built */
    char source[PATH_MAX];         /* a model to compress into the cache first (GGUF), or "" */
    double weight;                 /* > 0; 1 by default */
    bool has_min, has_max;         /* its own range; else the daemon's */
    bs_budget min, max;
    bool from_config;              /* SIGHUP may remove it */
} bs_served_spec;

typedef enum { BS_SERVED_BUILDING, BS_SERVED_LOADING, BS_SERVED_READY, BS_SERVED_DRAINING, BS_SERVED_FAILED } bs_served_state;

struct bs_build;

typedef struct bs_served {
    bs_served_spec spec;            /* spec.name is the model's name */
    bs_served_state state;
    bool loaded;                   /* eng is open and published (READY, or DRAINING after it) */
    bool remove_pending;           /* removed while building or loading: drains once ready */
    struct bs_build *build;        /* BUILDING: the cache build */
    bs_engine eng;
    bs_res res;
    bool res_open;
    double *loss;                  /* [n_blocks + 1]: bs_store_loss_table */
    bool loss_estimated;
    int sessions;                  /* open requests naming it */
    uint64_t last_used;            /* uv_now() of its last request or slice */
    int target_n;                  /* the sizer's last split */
    double use;                    /* the recent-use factor the split used */
    uint64_t requests;
    char error[512];               /* why loading failed */
    int order;                     /* the order it was listed in */
    /* loading */
    uv_work_t work;
    int start_n;
    int load_rc, load_bad;
    struct bs_models *set;
} bs_served;

struct bs_models;
/* A model became READY (or failed to load: m->error) or was closed. */
typedef void (*bs_models_event_fn)(struct bs_models *set, bs_served *m, void *ctx);
/* What a model's residency needs; the sizer's choice of backend applies to all. And
 * where models given as a source are built. */
typedef struct {
    bs_io_mode io;
    int qd;
    uint64_t chunk;
    const char *cache_dir;         /* for sources (NULL: none may be given) */
    const char *calib;             /* calibration text for their builds, or NULL: self-sampled */
    bs_res_done_fn resized;        /* every model's resize ends here */
    void *resized_ctx;
} bs_models_io;

typedef struct bs_models {
    uv_loop_t *loop;
    const bs_log *log;
    bs_served *m[BS_MODELS_MAX];
    int n;
    int next_order;
    bs_models_io io;
    bs_models_event_fn event;
    void *event_ctx;
    uv_timer_t reap;               /* frees closed models once their handles are gone */
    bs_served *closed[BS_MODELS_MAX];
    int n_closed;
    bool stopping;
    int abandoned;                 /* builds still running on their threads when it closed */
} bs_models;

void bs_models_init(bs_models *set, uv_loop_t *loop, const bs_log *log, const bs_models_io *io,
                    bs_models_event_fn event, void *ctx);

/* The name a spec gives its model: its own, else the file name without its extension. */
void bs_served_name(const bs_served_spec *spec, char *name, size_t n);

/* Opens the store and reads its first `n` blocks now (before the loop runs); n < 0: the
 * smallest working prefix. The model is READY when this returns 0. */
int bs_models_add_now(bs_models *set, const bs_served_spec *spec, int n, bs_served **out, bs_err *e);

/* Before the loop runs: reads m's blocks up to n (a bad block stops it there, marked so
 * that growth never passes it) and publishes what was read. */
int bs_models_grow_now(bs_served *m, int n, bs_err *e);

/* The same on a worker (while the loop runs): LOADING now, READY (or FAILED, m->error
 * set) later; a spec with a source is BUILDING first (daemon/build.h: compressed into the
 * cache, or found there). Fails at once on a name already served. */
int bs_models_add(bs_models *set, const bs_served_spec *spec, bs_err *e);

/* Takes m out of service: DRAINING; closed when its last session ends (bs_models_check). */
void bs_models_remove(bs_models *set, bs_served *m);

/* Closes DRAINING models that nothing holds any more. Call after a session ends or a
 * resize finishes. */
void bs_models_check(bs_models *set);

/* A model by name among those not draining (NULL: none); name NULL or "": the default. */
bs_served *bs_models_find(bs_models *set, const char *name);

/* Models not draining (READY or LOADING). */
int bs_models_serving(const bs_models *set);

/* The first model listed that is not draining, whatever its state, or NULL. */
bs_served *bs_models_first(bs_models *set);

/* The default model (the first READY one), or NULL. */
bs_served *bs_models_default(bs_models *set);

/* A FAILED model's entry goes (a reload that lists it again retries it). */
void bs_models_forget_failed(bs_models *set, const char *name);

/* Resident bytes of every model now (draining ones too). */
uint64_t bs_models_resident(const bs_models *set);

/* Closes everything (the loop must run on to finish closing handles). A build still
 * running goes on on its thread (counted in abandoned): compression has no cancel point,
 * so a process that stops then must end with _exit, not run exit handlers under it. */
void bs_models_close(bs_models *set);

/* Frees what is left once the loop has ended. */
void bs_models_free(bs_models *set);

const char *bs_served_state_name(bs_served_state s);

#endif
