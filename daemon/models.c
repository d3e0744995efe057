#include "daemon/models.h"

#include "daemon/build.h"
#include "model/selfcalib.h"

#include <stdlib.h>
#include <string.h>

const char *bs_served_state_name(bs_served_state s)
{
    switch (s) {
    case BS_SERVED_BUILDING: return "building";
    case BS_SERVED_FAILED: return "failed";
    case BS_SERVED_LOADING: return "loading";
    case BS_SERVED_READY: return "ready";
    case BS_SERVED_DRAINING: return "draining";
    }
    return "?";
}

void bs_served_name(const bs_served_spec *spec, char *name, size_t n)
{
    if (spec->name[0]) {
        snprintf(name, n, "%s", spec->name);
        return;
    }
    const char *path = spec->source[0] ? spec->source : spec->path;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(name, n, "%.*s", (int)len, base);
}

/* ---- life -------------------------------------------------------------------------------- */

static void unload(bs_served *m);

static void reap(bs_models *set)
{
    for (int i = 0; i < set->n_closed; i++) {
        unload(set->closed[i]);
        free(set->closed[i]);
    }
    set->n_closed = 0;
}

static void on_reap(uv_timer_t *t)
{
    reap(t->data);
}

void bs_models_init(bs_models *set, uv_loop_t *loop, const bs_log *log, const bs_models_io *io,
                    bs_models_event_fn event, void *ctx)
{
    memset(set, 0, sizeof *set);
    set->loop = loop;
    set->log = log;
    set->io = *io;
    set->event = event;
    set->event_ctx = ctx;
    uv_timer_init(loop, &set->reap);
    set->reap.data = set;
}

static bs_served *model_new(bs_models *set, const bs_served_spec *spec)
{
    bs_served *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->spec = *spec;
    bs_served_name(spec, m->spec.name, sizeof m->spec.name);
    if (!(m->spec.weight > 0))
        m->spec.weight = 1;
    m->set = set;
    m->order = set->next_order++;
    m->last_used = uv_now(set->loop);
    return m;
}

static bool name_taken(const bs_models *set, const char *name)
{
    for (int i = 0; i < set->n; i++)
        if (set->m[i]->state != BS_SERVED_DRAINING && !strcmp(set->m[i]->spec.name, name))
            return true;
    return false;
}

static int check_room(const bs_models *set, const bs_served *m, bs_err *e)
{
    if (name_taken(set, m->spec.name))
        return bs_err_set(e, "%s: a model named \"%s\" is already served (give one a name: --store NAME=PATH)",
                          m->spec.path, m->spec.name);
    if (set->n == BS_MODELS_MAX)
        return bs_err_set(e, "%s: at most %d models at once", m->spec.path, BS_MODELS_MAX);
    return 0;
}

/* Opens the engine and reads its first n blocks (n < 0: the working minimum). Blocking. */
static int load(bs_served *m, int n, int *bad, bs_err *e)
{
    *bad = -1;
    if (bs_engine_open(&m->eng, m->spec.path, e))
        return -1;
    const bs_store *st = &m->eng.store;
    if (n < 0 || n < st->min_blocks)
        n = st->min_blocks;
    if (n > st->n_blocks)
        n = st->n_blocks;
    if (!(m->loss = bs_store_loss_table(st, &m->loss_estimated))) {
        bs_engine_close(&m->eng);
        return bs_err_set(e, "out of memory");
    }
    if (bs_engine_read_blocks(&m->eng, n, bad, e)) {
        /* a damaged block past a working prefix costs the blocks from it on, not the model */
        if (*bad < st->min_blocks) {
            free(m->loss);
            m->loss = NULL;
            bs_engine_close(&m->eng);
            return -1;
        }
        n = m->eng.resident_n;
    }
    if (bs_engine_publish(&m->eng, n, e)) {
        free(m->loss);
        m->loss = NULL;
        bs_engine_close(&m->eng);
        return -1;
    }
    m->target_n = n;
    m->loaded = true;
    return 0;
}

/* Gives the engine back (the loop thread, nothing holding it). */
static void unload(bs_served *m)
{
    if (m->loaded)
        bs_engine_close(&m->eng);
    m->loaded = false;
    free(m->loss);
    m->loss = NULL;
}

/* On the loop thread, once the first prefix is in: the residency, and READY. */
static int go_ready(bs_models *set, bs_served *m, int bad, const char *bad_msg, bs_err *e)
{
    if (bs_res_init(&m->res, set->loop, &m->eng, set->io.io, set->io.qd, set->io.chunk, set->io.resized,
                    set->io.resized_ctx, e))
        return -1;
    m->res_open = true;
    if (bad >= 0)
        bs_res_mark_bad(&m->res, bad, bad_msg);
    m->state = m->remove_pending ? BS_SERVED_DRAINING : BS_SERVED_READY;
    return 0;
}

int bs_models_add_now(bs_models *set, const bs_served_spec *spec, int n, bs_served **out, bs_err *e)
{
    bs_served *m = model_new(set, spec);
    if (!m)
        return bs_err_set(e, "out of memory");
    int bad;
    if (check_room(set, m, e) || load(m, n, &bad, e)) {
        free(m);
        return -1;
    }
    char bad_msg[sizeof e->msg];
    snprintf(bad_msg, sizeof bad_msg, "%s", bad >= 0 ? e->msg : "");
    if (bad >= 0)
        bs_log_err(set->log, "%s: serving the %d blocks before it", bad_msg, bad);
    if (go_ready(set, m, bad, bad_msg, e)) {
        unload(m);
        free(m);
        return -1;
    }
    set->m[set->n++] = m;
    if (out)
        *out = m;
    return 0;
}

int bs_models_grow_now(bs_served *m, int n, bs_err *e)
{
    int bad;
    if (n <= m->eng.resident_n)
        return 0;
    if (bs_engine_read_blocks(&m->eng, n, &bad, e)) {
        bs_log_err(m->set->log, "%s: serving the %d blocks before it", e->msg, m->eng.resident_n);
        bs_res_mark_bad(&m->res, bad, e->msg);
        n = m->eng.resident_n;
    }
    if (n == (m->eng.cur ? m->eng.cur->n : 0))
        return 0;
    return bs_engine_publish(&m->eng, n, e);
}

static void load_work(uv_work_t *w)
{
    bs_served *m = w->data;
    bs_err e = {0};
    m->load_rc = load(m, m->start_n, &m->load_bad, &e);
    if (m->load_rc || m->load_bad >= 0)
        snprintf(m->error, sizeof m->error, "%s", e.msg);
}

static void unlist(bs_models *set, bs_served *m)
{
    for (int i = 0; i < set->n; i++)
        if (set->m[i] == m) {
            memmove(&set->m[i], &set->m[i + 1], sizeof set->m[0] * (size_t)(set->n - i - 1));
            set->n--;
            return;
        }
}

/* Loading or building failed: the model stays listed, FAILED, with the reason. */
static void fail(bs_models *set, bs_served *m)
{
    bs_log_err(set->log, "model %s: %s", m->spec.name, m->error);
    unload(m);
    m->state = BS_SERVED_FAILED;
    if (m->remove_pending) {
        unlist(set, m);
        free(m);
        m = NULL;
    }
    if (set->event)
        set->event(set, m, set->event_ctx);
}

static void load_done(uv_work_t *w, int status)
{
    bs_served *m = w->data;
    bs_models *set = m->set;
    bs_err e;
    if (set->stopping) {
        /* bs_models_free takes it, engine and all */
        return;
    }
    if (status == 0 && m->load_rc == 0) {
        if (m->load_bad >= 0)
            bs_log_err(set->log, "%s: serving the %d blocks before it", m->error, m->load_bad);
        if (go_ready(set, m, m->load_bad, m->error, &e) == 0) {
            m->error[0] = '\0';
            bs_log_info(set->log, "model %s (%s): %d of %d blocks resident, %.2f bits per weight", m->spec.name,
                        m->spec.path, m->eng.cur->n, m->eng.store.n_blocks, bs_store_bpw(&m->eng.store, m->eng.cur->n));
            if (set->event)
                set->event(set, m, set->event_ctx);
            bs_models_check(set);
            return;
        }
        snprintf(m->error, sizeof m->error, "%s", e.msg);
    }
    if (status)
        snprintf(m->error, sizeof m->error, "%s", uv_strerror(status));
    fail(set, m);
}

static int start_load(bs_models *set, bs_served *m, bs_err *e)
{
    m->state = BS_SERVED_LOADING;
    m->start_n = -1;   /* the working minimum: the sizer grows it as memory allows */
    m->work.data = m;
    int rc = uv_queue_work(set->loop, &m->work, load_work, load_done);
    if (rc)
        return bs_err_set(e, "%s: cannot start loading: %s", m->spec.path, uv_strerror(rc));
    return 0;
}

/* The cache build of a source ended (loop thread): load its store, or fail. */
static void on_built(void *ctx, bs_build *b, const char *store, int reused, const char *error)
{
    bs_served *m = ctx;
    bs_models *set = m->set;
    bs_err e;
    if (store) {
        snprintf(m->spec.path, sizeof m->spec.path, "%s", store);
        bs_log_info(set->log, "model %s: %s %s", m->spec.name, reused ? "found in the cache:" : "built into", store);
    } else {
        snprintf(m->error, sizeof m->error, "building from %.200s: %.290s", m->spec.source, error ? error : "?");
    }
    bs_build_close(b);
    m->build = NULL;
    if (set->stopping)
        return;
    if (!store || start_load(set, m, &e)) {
        if (store)
            snprintf(m->error, sizeof m->error, "%s", e.msg);
        fail(set, m);
    }
}

int bs_models_add(bs_models *set, const bs_served_spec *spec, bs_err *e)
{
    if (set->stopping)
        return bs_err_set(e, "the daemon is stopping");
    bs_served *m = model_new(set, spec);
    if (!m)
        return bs_err_set(e, "out of memory");
    if (check_room(set, m, e)) {
        free(m);
        return -1;
    }
    int rc;
    if (spec->source[0]) {
        if (!set->io.cache_dir) {
            free(m);
            return bs_err_set(e, "%s: no cache directory to build it in", spec->source);
        }
        bs_cache_src src = {spec->source, NULL, set->io.calib, {0}, BS_SELFCALIB_SEED};
        bs_compress_defaults(&src.opts, BS_KIND_GQ);
        m->state = BS_SERVED_BUILDING;
        rc = bs_build_start(&m->build, set->loop, set->io.cache_dir, &src, on_built, m, e);
    } else {
        rc = start_load(set, m, e);
    }
    if (rc) {
        free(m);
        return -1;
    }
    set->m[set->n++] = m;
    return 0;
}

void bs_models_forget_failed(bs_models *set, const char *name)
{
    for (int i = 0; i < set->n; i++)
        if (set->m[i]->state == BS_SERVED_FAILED && !strcmp(set->m[i]->spec.name, name)) {
            bs_served *m = set->m[i];
            unlist(set, m);
            free(m);
            return;
        }
}

void bs_models_remove(bs_models *set, bs_served *m)
{
    if (m->state == BS_SERVED_DRAINING || m->remove_pending)
        return;
    if (m->state == BS_SERVED_FAILED) {
        unlist(set, m);
        free(m);
        return;
    }
    if (m->state == BS_SERVED_BUILDING || m->state == BS_SERVED_LOADING) {
        /* neither a build nor a read can be stopped midway: it drains once it is READY */
        m->remove_pending = true;
        bs_log_info(set->log, "model %s: removed; it closes once it has loaded", m->spec.name);
        return;
    }
    m->state = BS_SERVED_DRAINING;
    bs_log_info(set->log, "model %s: draining (%d requests open)", m->spec.name, m->sessions);
    bs_models_check(set);
}

/* Its handles close now; the engine goes on the next loop turn (the reap timer), after
 * libuv has run the close callbacks. */
static void close_model(bs_models *set, bs_served *m)
{
    unlist(set, m);
    if (m->res_open)
        bs_res_close(&m->res);
    m->res_open = false;
    set->closed[set->n_closed++] = m;
    uv_timer_start(&set->reap, on_reap, 0, 0);
}

void bs_models_check(bs_models *set)
{
    if (set->stopping)
        return;   /* bs_models_free takes what is left */
    for (int i = 0; i < set->n; i++) {
        bs_served *m = set->m[i];
        if (m->state != BS_SERVED_DRAINING || m->sessions > 0 || !m->res_open || bs_res_busy(&m->res))
            continue;
        uint64_t bytes = m->eng.store.resident[m->eng.cur ? m->eng.cur->n : 0];
        bs_log_info(set->log, "model %s closed: %.1f MiB returned", m->spec.name, (double)bytes / 1048576);
        close_model(set, m);
        if (set->event)
            set->event(set, m, set->event_ctx);
        i--;
    }
}

int bs_models_serving(const bs_models *set)
{
    int k = 0;
    for (int i = 0; i < set->n; i++)
        k += set->m[i]->state != BS_SERVED_DRAINING && set->m[i]->state != BS_SERVED_FAILED && !set->m[i]->remove_pending;
    return k;
}

/* The model listed first among those ready_only allows (READY, else any not going away). */
static bs_served *first(bs_models *set, bool ready_only)
{
    bs_served *best = NULL;
    for (int i = 0; i < set->n; i++) {
        const bs_served *m = set->m[i];
        bool ok = ready_only ? m->state == BS_SERVED_READY : m->state != BS_SERVED_DRAINING && !m->remove_pending;
        if (ok && (!best || m->order < best->order))
            best = set->m[i];
    }
    return best;
}

bs_served *bs_models_first(bs_models *set)
{
    return first(set, false);
}

bs_served *bs_models_default(bs_models *set)
{
    return first(set, true);
}

bs_served *bs_models_find(bs_models *set, const char *name)
{
    if (!name || !name[0])
        return bs_models_default(set);
    for (int i = 0; i < set->n; i++)
        if (set->m[i]->state != BS_SERVED_DRAINING && !set->m[i]->remove_pending &&
            !strcmp(set->m[i]->spec.name, name))
            return set->m[i];
    return NULL;
}

uint64_t bs_models_resident(const bs_models *set)
{
    uint64_t sum = 0;
    for (int i = 0; i < set->n; i++) {
        const bs_served *m = set->m[i];
        if (m->loaded)
            sum += m->eng.store.resident[m->eng.cur ? m->eng.cur->n : 0];
    }
    return sum;
}

void bs_models_close(bs_models *set)
{
    if (set->stopping || !set->loop)
        return;
    set->stopping = true;
    for (int i = 0; i < set->n; i++) {
        if (set->m[i]->res_open) {
            bs_res_close(&set->m[i]->res);
            set->m[i]->res_open = false;
        }
        if (set->m[i]->build) {
            bs_build_close(set->m[i]->build);   /* the build's thread ends on its own */
            set->m[i]->build = NULL;
            set->abandoned++;
        }
    }
    uv_close((uv_handle_t *)&set->reap, NULL);
}

void bs_models_free(bs_models *set)
{
    reap(set);
    for (int i = 0; i < set->n; i++) {
        unload(set->m[i]);
        free(set->m[i]);
    }
    set->n = 0;
}
