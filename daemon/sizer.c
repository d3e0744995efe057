#include "daemon/sizer.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/build.h"
#include "model/forward.h"

/* ---- the range a budget mode allows ----------------------------------------------- */

/* A model's range: its own bounds, else the daemon's where those are per model (every
 * form but bytes, which bound the total). */
static void range_of(bool fixed, const bs_budget *gmin, const bs_budget *gmax, const bs_served *m, int *lo, int *hi)
{
    const bs_store *s = &m->eng.store;
    bs_budget dmin, dmax;
    bs_proto_parse_budget("min", &dmin, NULL);
    bs_proto_parse_budget("max", &dmax, NULL);
    const bs_budget *bmin = m->spec.has_min ? &m->spec.min : gmin->kind != BS_BUDGET_BYTES ? gmin : &dmin;
    const bs_budget *bmax = m->spec.has_max ? &m->spec.max : gmax->kind != BS_BUDGET_BYTES ? gmax : &dmax;
    int c;
    bs_engine_resolve(s, bmin, false, lo, &c, NULL);
    bs_engine_resolve(s, bmax, false, hi, &c, NULL);
    if (fixed && gmin->kind != BS_BUDGET_BYTES && !(m->spec.has_min && m->spec.has_max)) {
        /* a fixed size per model, inside its own range */
        int n;
        bs_engine_resolve(s, gmin, false, &n, &c, NULL);
        int own_lo = m->spec.has_min ? *lo : s->min_blocks, own_hi = m->spec.has_max ? *hi : s->n_blocks;
        n = n < own_lo ? own_lo : n > own_hi ? own_hi : n;
        *lo = *hi = n;
    }
    if (*hi < *lo)
        *hi = *lo;
}

void bs_sizer_range(const bs_sizer *sz, const bs_served *m, int *lo, int *hi)
{
    range_of(sz->fixed, &sz->min, &sz->max, m, lo, hi);
    /* growth never passes a bad block */
    const bs_store *s = &m->eng.store;
    if (m->res_open && *hi > m->res.limit_n)
        *hi = m->res.limit_n > s->min_blocks ? m->res.limit_n : s->min_blocks;
    if (*lo > *hi)
        *lo = *hi;
}

static int cur_n(const bs_served *m)
{
    return m->eng.cur ? m->eng.cur->n : 0;
}

/* Models the split is made over: READY ones (a LOADING one has no table yet; a DRAINING
 * one keeps what it has until it closes). */
static bool in_split(const bs_served *m)
{
    return m->state == BS_SERVED_READY;
}

/* Splits `total` bytes over the models in k (lo/hi/weight given): bs_policy_alloc, or for a
 * lone model simply the longest prefix that fits. */
static void split(bs_served *const *ms, int k, const int *lo, const int *hi, const double *w, uint64_t total,
                  int *out_n)
{
    if (k == 1) {
        int n = bs_engine_n_for_bytes(&ms[0]->eng.store, (double)total);
        out_n[0] = n < lo[0] ? lo[0] : n > hi[0] ? hi[0] : n;
        return;
    }
    bs_alloc_model am[BS_MODELS_MAX];
    size_t cells = 0;
    for (int i = 0; i < k; i++) {
        am[i] = (bs_alloc_model){ms[i]->eng.store.resident, ms[i]->loss, lo[i], hi[i], w[i]};
        cells += (size_t)(hi[i] - lo[i] + 1);
    }
    int *scratch = malloc(sizeof *scratch * (cells ? cells : 1));
    if (!scratch) {
        for (int i = 0; i < k; i++)
            out_n[i] = lo[i];
        return;
    }
    bs_policy_alloc(am, k, total, out_n, scratch);
    free(scratch);
}

/* ---- decisions ----------------------------------------------------------------------- */

static void sample(bs_sizer *sz)
{
    bs_mem_read(sz->cfg.proc_root, sz->cfg.sys_root, &sz->facts);
    sz->headroom = bs_mem_headroom(&sz->facts, &sz->source);
    sz->kv_bytes = sz->kv_next = 0;
    sz->kv_sessions = 0;
    if (sz->kv_fn)
        sz->kv_fn(sz->kv_ctx, &sz->kv_bytes, &sz->kv_next, &sz->kv_sessions);
}

static void request(bs_sizer *sz, bs_served *m)
{
    bs_err e;
    int rc = bs_res_request(&m->res, m->target_n, sz->reason, &e);
    if (rc < 0)
        bs_log_err(sz->log, "model %s: resize to %d blocks: %s", m->spec.name, m->target_n, e.msg);
    else if (bs_res_busy(&m->res))
        bs_log_debug(sz->log, "model %s: resize %d -> %d blocks (%s)", m->spec.name, cur_n(m), m->target_n,
                     sz->reason);
    /* busy: the residency calls back when done, and the decision is taken again */
}

/* Shrinks first; grows once bs_policy_grows_may_start says the shrinks gave their pages back. */
static void apply(bs_sizer *sz)
{
    bs_models *set = sz->models;
    uint64_t held[BS_MODELS_MAX], target[BS_MODELS_MAX];
    int k = 0;
    for (int i = 0; i < set->n; i++) {
        bs_served *m = set->m[i];
        if (!m->res_open)
            continue;
        const bs_store *s = &m->eng.store;
        if (m->target_n < cur_n(m) || m->target_n < m->eng.resident_n)
            request(sz, m);
        /* what it holds: the resident pages, which a shrink returns only later */
        held[k] = s->resident[m->eng.resident_n > cur_n(m) ? m->eng.resident_n : cur_n(m)];
        target[k++] = s->resident[m->target_n];
    }
    if (!bs_policy_grows_may_start(held, target, k))
        return;
    for (int i = 0; i < set->n; i++) {
        bs_served *m = set->m[i];
        if (m->res_open && m->target_n > cur_n(m))
            request(sz, m);
    }
}

/* The bytes of every model at its floor and at its ceiling, and each one's range. */
static void ranges(bs_sizer *sz, int *lo, int *hi, uint64_t *floor, uint64_t *ceil, uint64_t *fixed_bytes)
{
    bs_models *set = sz->models;
    *floor = *ceil = *fixed_bytes = 0;
    for (int i = 0; i < set->n; i++) {
        bs_served *m = set->m[i];
        lo[i] = hi[i] = 0;
        if (!m->loaded)
            continue;
        const bs_store *s = &m->eng.store;
        if (in_split(m)) {
            bs_sizer_range(sz, m, &lo[i], &hi[i]);
        } else {
            lo[i] = hi[i] = cur_n(m);
            *fixed_bytes += s->resident[cur_n(m)];
        }
        *floor += s->resident[lo[i]];
        *ceil += s->resident[hi[i]];
    }
    /* a byte size in the daemon's own range bounds the total */
    if (sz->min.kind == BS_BUDGET_BYTES && sz->min.bytes > *floor)
        *floor = sz->min.bytes < *ceil ? sz->min.bytes : *ceil;
    if (!sz->fixed && sz->max.kind == BS_BUDGET_BYTES && sz->max.bytes < *ceil)
        *ceil = sz->max.bytes > *floor ? sz->max.bytes : *floor;
}

int bs_sizer_admit(bs_sizer *sz, uint64_t need, uint64_t promised, int64_t *room)
{
    sample(sz);   /* fresh: a burst of requests must not all pass on one stale reading */
    bs_models *set = sz->models;
    int lo[BS_MODELS_MAX], hi[BS_MODELS_MAX];
    uint64_t fl, ce, fx, resident = 0, floor = 0;
    ranges(sz, lo, hi, &fl, &ce, &fx);
    for (int i = 0; i < set->n; i++) {
        const bs_served *m = set->m[i];
        if (!m->loaded)
            continue;
        int cur = cur_n(m);
        resident += m->eng.store.resident[cur];
        floor += m->eng.store.resident[lo[i] < cur ? lo[i] : cur];
    }
    bs_admit_input in = {
        .headroom = sz->headroom,
        .resident = resident,
        .floor = floor,
        /* the reserve is what the sizer keeps free by shrinking the models, not a wall:
         * a request may use it (the models then shrink to restore it) */
        .reserve = 0,
        .promised = promised,
        .need = need,
    };
    return bs_policy_admit(&in, room) ? 0 : -1;
}

void bs_sizer_decide(bs_sizer *sz)
{
    if (sz->closed)
        return;
    sample(sz);
    bs_models *set = sz->models;
    int lo[BS_MODELS_MAX], hi[BS_MODELS_MAX];
    uint64_t fixed_bytes;
    ranges(sz, lo, hi, &sz->floor, &sz->ceil, &fixed_bytes);
    uint64_t total;
    if (sz->fixed) {
        total = sz->min.kind == BS_BUDGET_BYTES ? sz->min.bytes : sz->ceil;
        snprintf(sz->reason, sizeof sz->reason, "fixed budget %s", sz->min.text);
        sz->trigger = false;
    } else {
        bs_policy_input in = {
            .now = (double)uv_now(sz->loop) / 1e3,
            .headroom = sz->headroom,
            .trigger = sz->trigger,
            .psi_some_avg10 = sz->facts.psi_some_avg10,
            .resident = bs_models_resident(set),
            .kv_next = sz->kv_next,
            .floor = sz->floor,
            .ceil = sz->ceil,
        };
        bs_policy_decision d;
        bs_policy_decide(&sz->pol, &sz->cfg.policy, &in, &d);
        sz->trigger = false;
        total = d.target;
        snprintf(sz->reason, sizeof sz->reason, "%s", bs_policy_why_name(d.why));
    }
    /* the split, over the models that take part */
    bs_served *ms[BS_MODELS_MAX];
    int k = 0, klo[BS_MODELS_MAX], khi[BS_MODELS_MAX], kn[BS_MODELS_MAX];
    double w[BS_MODELS_MAX];
    double now = (double)uv_now(sz->loop) / 1e3;
    for (int i = 0; i < set->n; i++) {
        bs_served *m = set->m[i];
        if (!m->loaded)
            continue;
        if (!in_split(m)) {
            m->target_n = cur_n(m);
            continue;
        }
        double idle = m->sessions > 0 ? 0 : now - (double)m->last_used / 1e3;
        m->use = bs_policy_use_factor(idle, sz->cfg.idle_after, sz->cfg.idle_half_life, 1.0 / 64);
        ms[k] = m;
        klo[k] = lo[i];
        khi[k] = hi[i];
        w[k] = m->spec.weight * m->use;
        k++;
    }
    if (k) {
        split(ms, k, klo, khi, w, total > fixed_bytes ? total - fixed_bytes : 0, kn);
        for (int i = 0; i < k; i++)
            ms[i]->target_n = kn[i];
    }
    sz->target = 0;
    for (int i = 0; i < set->n; i++)
        if (set->m[i]->loaded)
            sz->target += set->m[i]->eng.store.resident[set->m[i]->target_n];
    apply(sz);
}

void bs_sizer_start_split(const bs_sizer_config *cfg, bs_models *set, int *out_n)
{
    bs_sizer tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.models = set;
    tmp.cfg = *cfg;
    tmp.fixed = cfg->fixed;
    tmp.min = cfg->min;
    tmp.max = cfg->max;
    int lo[BS_MODELS_MAX], hi[BS_MODELS_MAX];
    uint64_t floor, ceil, fixed_bytes;
    ranges(&tmp, lo, hi, &floor, &ceil, &fixed_bytes);
    uint64_t total = ceil;
    if (cfg->fixed) {
        total = cfg->min.kind == BS_BUDGET_BYTES ? cfg->min.bytes : ceil;
    } else {
        bs_mem_facts f;
        bs_mem_read(cfg->proc_root, cfg->sys_root, &f);
        int64_t head = bs_mem_headroom(&f, NULL);
        if (head >= 0) {
            /* what is resident already (every model's working minimum) counts as room */
            double fit = (double)head + (double)bs_models_resident(set) - (double)cfg->policy.reserve;
            total = fit < (double)floor ? floor : fit > (double)ceil ? ceil : (uint64_t)fit;
        }
    }
    bs_served *ms[BS_MODELS_MAX];
    double w[BS_MODELS_MAX];
    int k = 0, klo[BS_MODELS_MAX], khi[BS_MODELS_MAX], kn[BS_MODELS_MAX], at[BS_MODELS_MAX];
    for (int i = 0; i < set->n; i++) {
        out_n[i] = 0;
        if (!set->m[i]->loaded)
            continue;   /* still building or loading: the sizer takes it in later */
        ms[k] = set->m[i];
        w[k] = set->m[i]->spec.weight;
        klo[k] = lo[i];
        khi[k] = hi[i];
        at[k++] = i;
    }
    if (k)
        split(ms, k, klo, khi, w, total, kn);
    for (int j = 0; j < k; j++)
        out_n[at[j]] = kn[j];
}


static void on_sample(uv_timer_t *t)
{
    bs_sizer_decide(t->data);
}

static void on_psi(uv_poll_t *h, int status, int events)
{
    bs_sizer *sz = h->data;
    if (status < 0 || (events & UV_DISCONNECT)) {
        bs_log_warn(sz->log, "PSI trigger on %s stopped (%s): sampling only", sz->psi.path,
                    status < 0 ? uv_strerror(status) : "the file went away");
        uv_poll_stop(h);
        sz->psi_polling = false;
        return;
    }
    sz->triggers++;
    sz->trigger = true;
    bs_log_info(sz->log, "memory pressure: PSI trigger on %s", sz->psi.path);
    bs_sizer_decide(sz);
}

void bs_sizer_resized(bs_res *r, const bs_resize_event *ev, void *ctx)
{
    bs_sizer *sz = ctx;
    const char *name = "?";
    for (int i = 0; i < sz->models->n; i++)
        if (&sz->models->m[i]->res == r)
            name = sz->models->m[i]->spec.name;
    if (ev->failed)
        bs_log_err(sz->log, "model %s: resize %d -> %d blocks stopped: %s", name, ev->from_n, ev->to_n,
                   r->has_bad ? r->bad.error : r->io_err);
    else
        bs_log_info(sz->log, "model %s: resized %d -> %d blocks (%.1f -> %.1f MiB) in %.1f ms: %s", name, ev->from_n,
                    ev->to_n, ev->from_bytes / 1048576.0, ev->to_bytes / 1048576.0, ev->ms, ev->reason);
    bs_models_check(sz->models);
    /* the target may have moved meanwhile, and grows may wait for this shrink */
    if (!sz->closed && !ev->failed)
        bs_sizer_decide(sz);
}

/* ---- life ------------------------------------------------------------------------------ */

static void start_psi(bs_sizer *sz)
{
    bs_err e;
    bs_psi_config pc = {
        .proc_root = sz->cfg.proc_root,
        .v2_dir = sz->facts.v2_dir,
        .watch = sz->cfg.psi_watch,
        .write_b64 = sz->cfg.psi_write,
    };
    if (bs_psi_open(&pc, &sz->psi, &e)) {
        bs_log_warn(sz->log, "PSI trigger: %s", e.msg);
        sz->psi.fd = -1;
        return;
    }
    if (sz->psi.fd < 0) {
        bs_log_notice(sz->log, "no PSI trigger (%s): sampling every %d ms only", sz->psi.why, sz->cfg.sample_ms);
        return;
    }
    if (uv_poll_init(sz->loop, &sz->psi_poll, sz->psi.fd)) {
        bs_psi_close(&sz->psi);
        return;
    }
    sz->psi_handle = true;
    sz->psi_poll.data = sz;
    int ev = (sz->psi.events & POLLPRI) ? UV_PRIORITIZED : UV_READABLE;
    uv_poll_start(&sz->psi_poll, ev, on_psi);
    sz->psi_polling = true;
    bs_log_info(sz->log, "PSI trigger \"%s\" on %s", sz->psi.trigger, sz->psi.path);
}

int bs_sizer_init(bs_sizer *sz, uv_loop_t *loop, const bs_log *log, bs_models *models, const bs_sizer_config *cfg,
                  bs_sizer_kv_fn kv_fn, void *kv_ctx, bs_err *e)
{
    (void)e;
    memset(sz, 0, sizeof *sz);
    sz->loop = loop;
    sz->log = log;
    sz->models = models;
    sz->cfg = *cfg;
    sz->fixed = cfg->fixed;
    sz->min = cfg->min;
    sz->max = cfg->max;
    sz->kv_fn = kv_fn;
    sz->kv_ctx = kv_ctx;
    sz->psi.fd = -1;
    bs_policy_init(&sz->pol, &cfg->policy);
    bs_mem_read(cfg->proc_root, cfg->sys_root, &sz->facts);
    start_psi(sz);
    uv_timer_init(loop, &sz->sample);
    sz->sample.data = sz;
    uv_timer_start(&sz->sample, on_sample, (uint64_t)cfg->sample_ms, (uint64_t)cfg->sample_ms);
    bs_sizer_decide(sz);   /* a target and its reason from the start, not one sample later */
    return 0;
}

int bs_sizer_set_budget(bs_sizer *sz, bs_served *m, bool fixed, const bs_budget *min, const bs_budget *max,
                        bs_err *e)
{
    if (m) {
        const bs_store *s = &m->eng.store;
        if (!fixed && bs_engine_budget_bytes(s, min) > bs_engine_budget_bytes(s, max))
            return bs_err_set(e, "budget: min %s is above max %s for model %s", min->text, max->text, m->spec.name);
        m->spec.has_min = m->spec.has_max = true;
        m->spec.min = *min;
        m->spec.max = fixed ? *min : *max;
    } else {
        /* byte sizes are totals, the other forms per model: compare what they come to */
        double lo = 0, hi = 0;
        for (int i = 0; i < sz->models->n && !fixed; i++) {
            const bs_served *x = sz->models->m[i];
            if (!x->loaded)
                continue;
            lo += bs_engine_budget_bytes(&x->eng.store, min);
            hi += bs_engine_budget_bytes(&x->eng.store, max);
        }
        if (min->kind == BS_BUDGET_BYTES)
            lo = (double)min->bytes;
        if (max->kind == BS_BUDGET_BYTES)
            hi = (double)max->bytes;
        if (!fixed && lo > hi)
            return bs_err_set(e, "budget: min %s is above max %s for the models served", min->text, max->text);
        sz->fixed = fixed;
        sz->min = *min;
        sz->max = fixed ? *min : *max;
    }
    /* a new range is a fresh start for the grow logic */
    bs_policy_init(&sz->pol, &sz->cfg.policy);
    bs_sizer_decide(sz);
    return 0;
}

void bs_sizer_views_released(bs_sizer *sz)
{
    for (int i = 0; i < sz->models->n; i++)
        if (sz->models->m[i]->res_open)
            bs_res_views_released(&sz->models->m[i]->res);
}

json_t *bs_sizer_budget_json(bs_sizer *sz, bs_served *m)
{
    if (m) {
        int lo = 0, hi = 0;
        if (m->loaded)
            bs_sizer_range(sz, m, &lo, &hi);
        const bs_store *s = &m->eng.store;
        bool own_fixed = m->spec.has_min && m->spec.has_max && !strcmp(m->spec.min.text, m->spec.max.text);
        return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "model", m->spec.name, "mode",
                         own_fixed ? "fixed" : sz->fixed ? "fixed" : "auto", "min",
                         m->spec.has_min ? m->spec.min.text : sz->min.text, "max",
                         m->spec.has_max ? m->spec.max.text : sz->fixed ? sz->min.text : sz->max.text, "min_bytes",
                         (json_int_t)(!m->loaded ? 0 : s->resident[lo]), "max_bytes",
                         (json_int_t)(!m->loaded ? 0 : s->resident[hi]));
    }
    int lo[BS_MODELS_MAX], hi[BS_MODELS_MAX];
    uint64_t floor, ceil, fixed_bytes;
    ranges(sz, lo, hi, &floor, &ceil, &fixed_bytes);
    return json_pack("{s:s, s:s, s:s, s:I, s:I}", "mode", sz->fixed ? "fixed" : "auto", "min", sz->min.text, "max",
                     sz->fixed ? sz->min.text : sz->max.text, "min_bytes", (json_int_t)floor, "max_bytes",
                     (json_int_t)ceil);
}

static json_t *num_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

static json_t *events_json(const bs_res *r)
{
    json_t *a = json_array();
    for (int i = BS_RES_EVENTS - 1; i >= 0; i--) {
        const bs_resize_event *ev = bs_res_event(r, i);
        if (!ev)
            continue;
        json_array_append_new(a, json_pack("{s:f, s:i, s:i, s:I, s:I, s:s, s:f, s:o, s:b}", "t", ev->t, "from_n",
                                           ev->from_n, "to_n", ev->to_n, "from_bytes", (json_int_t)ev->from_bytes,
                                           "to_bytes", (json_int_t)ev->to_bytes, "reason", ev->reason, "ms", ev->ms,
                                           "mb_s", num_or_null(ev->mb_s), "failed", ev->failed));
    }
    return a;
}

json_t *bs_sizer_model_json(bs_sizer *sz, bs_served *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(m->spec.name));
    json_object_set_new(o, "state", json_string(bs_served_state_name(m->state)));
    json_object_set_new(o, "store", json_string(m->spec.path));
    json_object_set_new(o, "weight", json_real(m->spec.weight));
    json_object_set_new(o, "sessions", json_integer(m->sessions));
    json_object_set_new(o, "requests", json_integer((json_int_t)m->requests));
    if (!m->loaded) {
        if (m->error[0])
            json_object_set_new(o, "error", json_string(m->error));
        if (m->build)
            json_object_set_new(o, "build", bs_build_status_json(m->build));
        return o;
    }
    const bs_store *st = &m->eng.store;
    int n = cur_n(m);
    uint64_t all = bs_models_resident(sz->models);
    json_object_set_new(o, "context", json_integer(st->cfg.seq_len));
    json_object_set_new(o, "vocab_size", json_integer(st->cfg.vocab_size));
    json_object_set_new(o, "stack_n", json_integer(n));
    json_object_set_new(o, "stack_total", json_integer(st->n_blocks));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)st->resident[n]));
    json_object_set_new(o, "full_bytes", json_integer((json_int_t)st->resident[st->n_blocks]));
    json_object_set_new(o, "min_bytes", json_integer((json_int_t)st->resident[st->min_blocks]));
    json_object_set_new(o, "bpw", json_real(bs_store_bpw(st, n)));
    json_object_set_new(o, "share", json_real(all ? (double)st->resident[n] / (double)all : 0));
    /* what one request at the full context may come to: admission counts with this */
    json_object_set_new(o, "session_bytes_max",
                        json_integer((json_int_t)bs_state_bytes_for(&st->cfg, st->cfg.seq_len, 64, st->cfg.seq_len)));
    json_object_set_new(o, "target_n", json_integer(m->target_n));
    json_object_set_new(o, "target_bytes", json_integer((json_int_t)st->resident[m->target_n]));
    json_object_set_new(o, "use", json_real(m->use));
    json_object_set_new(o, "loss", json_real(m->loss ? m->loss[n] : 0));
    json_object_set_new(o, "loss_estimated", json_boolean(m->loss_estimated));
    json_object_set_new(o, "budget", bs_sizer_budget_json(sz, m));
    if (!m->res_open)
        return o;
    const bs_res *r = &m->res;
    json_object_set_new(o, "io_backend", json_string(bs_res_backend(r)));
    if (!r->uring)
        json_object_set_new(o, "io_why", json_string(r->io_why));
    json_t *bad = json_array();
    if (r->has_bad)
        json_array_append_new(bad, json_pack("{s:i, s:s, s:i, s:s}", "block", r->bad.block, "matrix", r->bad.matrix,
                                             "level", r->bad.level, "error", r->bad.error));
    json_object_set_new(o, "bad_blocks", bad);
    json_object_set_new(o, "resizing", json_boolean(bs_res_busy(r)));
    json_object_set_new(o, "resizes", events_json(r));
    return o;
}

void bs_sizer_status(bs_sizer *sz, json_t *o)
{
    json_object_set_new(o, "target_bytes", json_integer((json_int_t)sz->target));
    json_object_set_new(o, "target_reason", json_string(sz->reason));
    json_object_set_new(o, "budget", bs_sizer_budget_json(sz, NULL));
    json_object_set_new(o, "headroom_bytes", sz->headroom < 0 ? json_null() : json_integer((json_int_t)sz->headroom));
    json_object_set_new(o, "headroom_source", json_string(bs_mem_source_name(sz->source)));
    json_object_set_new(o, "psi", json_pack("{s:o, s:o, s:o, s:o, s:I}", "trigger",
                                            sz->psi_polling ? json_string(sz->psi.path) : json_null(), "why",
                                            sz->psi_polling ? json_null() : json_string(sz->psi.why),
                                            "some_avg10", num_or_null(sz->facts.psi_some_avg10), "full_avg10",
                                            num_or_null(sz->facts.psi_full_avg10), "triggers",
                                            (json_int_t)sz->triggers));
    json_object_set_new(o, "kv_bytes", json_integer((json_int_t)sz->kv_bytes));
}

void bs_sizer_close(bs_sizer *sz)
{
    if (sz->closed)
        return;
    sz->closed = true;
    uv_timer_stop(&sz->sample);
    uv_close((uv_handle_t *)&sz->sample, NULL);
    if (sz->psi_handle)
        uv_close((uv_handle_t *)&sz->psi_poll, NULL);
    bs_psi_close(&sz->psi);
}
