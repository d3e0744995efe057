#include "daemon/sizer.h"

#include <poll.h>
#include <string.h>

#include "model/forward.h"

/* ---- the range a budget mode allows ----------------------------------------------- */

static void range_n(const bs_sizer *sz, int *lo, int *hi)
{
    const bs_store *s = &sz->eng->store;
    int c;
    bs_engine_resolve(s, &sz->min, false, lo, &c, NULL);
    if (sz->fixed)
        *hi = *lo;
    else
        bs_engine_resolve(s, &sz->max, false, hi, &c, NULL);
    if (*hi < *lo)
        *hi = *lo;
    /* growth never passes a bad block */
    if (*hi > sz->res.limit_n)
        *hi = sz->res.limit_n > s->min_blocks ? sz->res.limit_n : s->min_blocks;
    if (*lo > *hi)
        *lo = *hi;
}

/* ---- decisions ----------------------------------------------------------------------- */

static void sample(bs_sizer *sz)
{
    bs_mem_read(sz->cfg.proc_root, sz->cfg.sys_root, &sz->facts);
    sz->headroom = bs_mem_headroom(&sz->facts, &sz->source);
    sz->kv_bytes = 0;
    sz->kv_sessions = 0;
    if (sz->kv_fn)
        sz->kv_fn(sz->kv_ctx, &sz->kv_bytes, &sz->kv_sessions);
}

static void apply(bs_sizer *sz)
{
    bs_engine *eng = sz->eng;
    int cur = eng->cur ? eng->cur->n : 0;
    if (sz->target_n == cur && eng->resident_n == cur)
        return;
    bs_err e;
    int rc = bs_res_request(&sz->res, sz->target_n, sz->reason, &e);
    if (rc < 0)
        bs_log_err(sz->log, "resize to %d blocks: %s", sz->target_n, e.msg);
    else if (rc == 0 && bs_res_busy(&sz->res))
        bs_log_debug(sz->log, "resize %d -> %d blocks (%s)", cur, sz->target_n, sz->reason);
    /* busy: the residency calls back when done, and the decision is taken again */
}

int bs_sizer_admit(bs_sizer *sz, uint64_t need, uint64_t promised, int64_t *room)
{
    sample(sz);   /* fresh: a burst of requests must not all pass on one stale reading */
    const bs_store *s = &sz->eng->store;
    int lo, hi;
    range_n(sz, &lo, &hi);
    int cur = sz->eng->cur ? sz->eng->cur->n : 0;
    bs_admit_input in = {
        .headroom = sz->headroom,
        .resident = s->resident[cur],
        .floor = s->resident[lo < cur ? lo : cur],
        /* the reserve is what the sizer keeps free by shrinking the model, not a wall:
         * a request may use it (the model then shrinks to restore it) */
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
    const bs_store *s = &sz->eng->store;
    int lo, hi;
    range_n(sz, &lo, &hi);
    int cur = sz->eng->cur ? sz->eng->cur->n : 0;
    if (sz->fixed) {
        sz->target_n = lo;
        sz->target = s->resident[lo];
        snprintf(sz->reason, sizeof sz->reason, "fixed budget %s", sz->min.text);
        sz->trigger = false;
    } else {
        /* a session's KV cache grows by one chunk at a time: keep room for the next one */
        const bs_config *c = &s->cfg;
        uint64_t chunk = 2ull * BS_KV_CHUNK * (uint64_t)c->n_layers * (uint64_t)c->kv_dim * sizeof(float);
        bs_policy_input in = {
            .now = (double)uv_now(sz->loop) / 1e3,
            .headroom = sz->headroom,
            .trigger = sz->trigger,
            .psi_some_avg10 = sz->facts.psi_some_avg10,
            .resident = s->resident[cur],
            .kv_next = chunk * (uint64_t)sz->kv_sessions,
            .floor = s->resident[lo],
            .ceil = s->resident[hi],
        };
        bs_policy_decision d;
        bs_policy_decide(&sz->pol, &sz->cfg.policy, &in, &d);
        sz->trigger = false;
        int n = bs_engine_n_for_bytes(s, (double)d.target);
        sz->target_n = n < lo ? lo : n > hi ? hi : n;
        sz->target = s->resident[sz->target_n];
        if (d.why == BS_POLICY_HOLD && sz->target_n != cur)
            snprintf(sz->reason, sizeof sz->reason, "%s", bs_policy_why_name(BS_POLICY_CLAMP));
        else
            snprintf(sz->reason, sizeof sz->reason, "%s", bs_policy_why_name(d.why));
    }
    apply(sz);
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

static void on_resized(bs_res *r, const bs_resize_event *ev, void *ctx)
{
    bs_sizer *sz = ctx;
    (void)r;
    if (ev->failed)
        bs_log_err(sz->log, "resize %d -> %d blocks stopped: %s", ev->from_n, ev->to_n,
                   sz->res.has_bad ? sz->res.bad.error : sz->res.io_err);
    else
        bs_log_info(sz->log, "resized %d -> %d blocks (%.1f -> %.1f MiB) in %.1f ms: %s", ev->from_n, ev->to_n,
                    ev->from_bytes / 1048576.0, ev->to_bytes / 1048576.0, ev->ms, ev->reason);
    /* the target may have moved meanwhile */
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

int bs_sizer_init(bs_sizer *sz, uv_loop_t *loop, const bs_log *log, bs_engine *eng, const bs_sizer_config *cfg,
                  bs_sizer_kv_fn kv_fn, void *kv_ctx, bs_err *e)
{
    memset(sz, 0, sizeof *sz);
    sz->loop = loop;
    sz->log = log;
    sz->eng = eng;
    sz->cfg = *cfg;
    sz->fixed = cfg->fixed;
    sz->min = cfg->min;
    sz->max = cfg->max;
    sz->kv_fn = kv_fn;
    sz->kv_ctx = kv_ctx;
    sz->psi.fd = -1;
    if (bs_res_init(&sz->res, loop, eng, cfg->io, cfg->qd, cfg->chunk, on_resized, sz, e))
        return -1;
    bs_policy_init(&sz->pol, &cfg->policy);
    bs_mem_read(cfg->proc_root, cfg->sys_root, &sz->facts);
    start_psi(sz);
    uv_timer_init(loop, &sz->sample);
    sz->sample.data = sz;
    uv_timer_start(&sz->sample, on_sample, (uint64_t)cfg->sample_ms, (uint64_t)cfg->sample_ms);
    bs_sizer_decide(sz);   /* a target and its reason from the start, not one sample later */
    return 0;
}

int bs_sizer_set_budget(bs_sizer *sz, bool fixed, const bs_budget *min, const bs_budget *max, bs_err *e)
{
    const bs_store *s = &sz->eng->store;
    if (!fixed && bs_engine_budget_bytes(s, min) > bs_engine_budget_bytes(s, max))
        return bs_err_set(e, "budget: min %s is above max %s for this store", min->text, max->text);
    sz->fixed = fixed;
    sz->min = *min;
    sz->max = fixed ? *min : *max;
    /* a new range is a fresh start for the grow logic */
    bs_policy_init(&sz->pol, &sz->cfg.policy);
    bs_sizer_decide(sz);
    return 0;
}

void bs_sizer_views_released(bs_sizer *sz)
{
    bs_res_views_released(&sz->res);
}

json_t *bs_sizer_budget_json(bs_sizer *sz)
{
    const bs_store *s = &sz->eng->store;
    int lo, hi;
    range_n(sz, &lo, &hi);
    return json_pack("{s:s, s:s, s:s, s:I, s:I}", "mode", sz->fixed ? "fixed" : "auto", "min", sz->min.text, "max",
                     sz->fixed ? sz->min.text : sz->max.text, "min_bytes", (json_int_t)s->resident[lo], "max_bytes",
                     (json_int_t)s->resident[hi]);
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

void bs_sizer_status(bs_sizer *sz, json_t *o)
{
    const bs_res *r = &sz->res;
    json_object_set_new(o, "target_bytes", json_integer((json_int_t)sz->target));
    json_object_set_new(o, "target_n", json_integer(sz->target_n));
    json_object_set_new(o, "target_reason", json_string(sz->reason));
    json_object_set_new(o, "budget", bs_sizer_budget_json(sz));
    json_object_set_new(o, "headroom_bytes", sz->headroom < 0 ? json_null() : json_integer((json_int_t)sz->headroom));
    json_object_set_new(o, "headroom_source", json_string(bs_mem_source_name(sz->source)));
    json_object_set_new(o, "psi", json_pack("{s:o, s:o, s:o, s:o, s:I}", "trigger",
                                            sz->psi_polling ? json_string(sz->psi.path) : json_null(), "why",
                                            sz->psi_polling ? json_null() : json_string(sz->psi.why),
                                            "some_avg10", num_or_null(sz->facts.psi_some_avg10), "full_avg10",
                                            num_or_null(sz->facts.psi_full_avg10), "triggers",
                                            (json_int_t)sz->triggers));
    json_object_set_new(o, "io_backend", json_string(bs_res_backend(r)));
    if (!r->uring)
        json_object_set_new(o, "io_why", json_string(r->io_why));
    json_t *bad = json_array();
    if (r->has_bad)
        json_array_append_new(bad, json_pack("{s:i, s:s, s:i, s:s}", "block", r->bad.block, "matrix", r->bad.matrix,
                                             "level", r->bad.level, "error", r->bad.error));
    json_object_set_new(o, "bad_blocks", bad);
    json_object_set_new(o, "kv_bytes", json_integer((json_int_t)sz->kv_bytes));
    json_object_set_new(o, "resizing", json_boolean(bs_res_busy(r)));
    json_object_set_new(o, "resizes", events_json(r));
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
    bs_res_close(&sz->res);
}
