#include "daemon/info.h"

#include <string.h>
#include <unistd.h>

#include "daemon/frontend.h"
#include "daemon/memory.h"

static json_t *int_or_null(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

static json_t *num_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

static json_t *memory_json(const bs_mem_facts *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "mem_available", int_or_null(f->mem_available));
    json_object_set_new(o, "psi_some_avg10", num_or_null(f->psi_some_avg10));
    json_object_set_new(o, "psi_full_avg10", num_or_null(f->psi_full_avg10));
    json_object_set_new(o, "cgroup_version", json_integer(f->cgroup_version));
    json_object_set_new(o, "cgroup", f->cgroup_version ? json_string(f->cgroup) : json_null());
    json_object_set_new(o, "memory_current", int_or_null(f->memory_current));
    json_object_set_new(o, "memory_max", int_or_null(f->memory_max));
    json_object_set_new(o, "inactive_file", int_or_null(f->inactive_file));
    return o;
}

/* Keys of the default model's entry that status also gives at the top, as it did when a
 * daemon served one model. */
static const char *const default_keys[] = {
    "store", "context", "vocab_size", "stack_n", "stack_total", "resident_bytes", "full_bytes", "min_bytes", "bpw",
    "session_bytes_max", "target_n", "io_backend", "io_why", "bad_blocks", "resizing", "resizes",
};

json_t *bs_info_status(bs_server *srv)
{
    const bs_mem_facts mf = srv->sizer->facts;   /* the sizer's last sample, not a read per request */
    int running = srv->sched.running, ready = srv->sched.n_ready;
    json_t *o = json_object();
    bs_served *def = bs_models_default(srv->models);
    json_object_set_new(o, "model", def ? json_string(def->spec.name) : json_null());
    json_t *models = json_array();
    for (int i = 0; i < srv->models->n; i++) {
        bs_served *m = srv->models->m[i];
        json_t *mj = bs_sizer_model_json(srv->sizer, m);
        if (m == def)
            for (size_t k = 0; k < sizeof default_keys / sizeof *default_keys; k++) {
                json_t *v = json_object_get(mj, default_keys[k]);
                if (v)
                    json_object_set(o, default_keys[k], v);
            }
        json_array_append_new(models, mj);
    }
    bs_sizer_status(srv->sizer, o);
    json_object_set_new(o, "models", models);
    json_object_set_new(o, "models_resident_bytes", json_integer((json_int_t)bs_models_resident(srv->models)));
    json_object_set_new(o, "sessions", json_integer(srv->n_sessions));
    json_object_set_new(o, "sessions_running", json_integer(running));
    json_object_set_new(o, "sessions_waiting", json_integer(ready));
    json_object_set_new(o, "connections", json_integer(srv->n_conns));
    json_object_set_new(o, "threads", json_integer(srv->cfg.threads));
    json_object_set_new(o, "uptime_s", json_real((double)(uv_hrtime() - srv->t_start) / 1e9));
    json_object_set_new(o, "pid", json_integer(getpid()));
    json_object_set_new(o, "memory", memory_json(&mf));
    json_object_set_new(o, "limits", json_pack("{s:I, s:i, s:i, s:i, s:i, s:I}",
                                               "max_line", (json_int_t)srv->cfg.lim.max_line,
                                               "max_sessions", srv->cfg.lim.max_sessions,
                                               "max_sessions_per_connection", srv->cfg.lim.max_sessions_per_conn,
                                               "max_connections", srv->cfg.lim.max_connections,
                                               "max_tokens", srv->cfg.lim.max_tokens,
                                               "max_output", (json_int_t)srv->cfg.max_output));
    return o;
}

json_t *bs_info_metrics(bs_server *srv)
{
    const bs_server_metrics *m = &srv->m;
    const bs_mem_facts mf = srv->sizer->facts;
    uint64_t grows = 0, shrinks = 0, failures = 0, read = 0;
    for (int i = 0; i < srv->models->n; i++) {
        const bs_served *x = srv->models->m[i];
        if (!x->loaded)
            continue;
        grows += x->res.grows;
        shrinks += x->res.shrinks;
        failures += x->res.failures;
        read += x->res.bytes_read;
    }
    bs_served *def = bs_models_default(srv->models);
    json_t *o = json_object();
#define SET_U(name, v) json_object_set_new(o, name, json_integer((json_int_t)(v)))
    SET_U("requests", m->requests);
    SET_U("errors", m->errors);
    SET_U("tokens_generated", m->tokens_generated);
    SET_U("prompt_tokens", m->prompt_tokens);
    SET_U("resize_events", grows + shrinks);
    SET_U("resize_grows", grows);
    SET_U("resize_shrinks", shrinks);
    SET_U("resize_failures", failures);
    SET_U("bytes_read", m->store_bytes_read + read);
    SET_U("stack_n", def && def->eng.cur ? def->eng.cur->n : 0);
    SET_U("resident_bytes", bs_models_resident(srv->models));
    SET_U("target_bytes", srv->sizer->target);
    SET_U("kv_bytes", srv->sizer->kv_bytes);
    SET_U("psi_triggers", srv->sizer->triggers);
    SET_U("bytes_dropped", m->bytes_dropped);
    SET_U("output_bytes_held", bs_jsonl_held(srv));
    SET_U("bytes_in", m->bytes_in);
    SET_U("bytes_out", m->bytes_out);
    SET_U("sessions", srv->n_sessions);
    SET_U("sessions_total", m->sessions_total);
    SET_U("sessions_cancelled", m->sessions_cancelled);
    SET_U("sessions_refused_memory", m->sessions_refused_memory);
    SET_U("connections", srv->n_conns);
    SET_U("connections_total", m->connections_total);
    SET_U("connections_rejected", m->connections_rejected);
    SET_U("connections_dropped", m->connections_dropped);
    SET_U("connections_idle_closed", m->connections_idle_closed);
    SET_U("slices", srv->sched.slices);
    SET_U("batched_slices", srv->sched.batched_slices);
    SET_U("batched_steps", srv->sched.batched_steps);
    SET_U("batched_rows", srv->sched.batched_rows);
#undef SET_U
    /* slices by sessions in them: 1, 2-3, 4-7, 8-15, 16-31, 32 */
    json_t *hist = json_array();
    for (int i = 0; hist && i < 6; i++)
        json_array_append_new(hist, json_integer((json_int_t)srv->sched.batch_sizes[i]));
    json_object_set_new(o, "batch_sizes", hist ? hist : json_null());
    json_object_set_new(o, "psi_some_avg10", num_or_null(mf.psi_some_avg10));
    json_object_set_new(o, "memory_current", int_or_null(mf.memory_current));
    json_object_set_new(o, "memory_max", int_or_null(mf.memory_max));
    json_object_set_new(o, "mem_available", int_or_null(mf.mem_available));
    json_object_set_new(o, "headroom_bytes", int_or_null(srv->sizer->headroom));
    /* per model: {name: {stack_n, resident_bytes, target_bytes, sessions, requests}} */
    json_t *per = json_object();
    for (int i = 0; per && i < srv->models->n; i++) {
        const bs_served *x = srv->models->m[i];
        if (!x->loaded)
            continue;
        int n = x->eng.cur ? x->eng.cur->n : 0;
        json_object_set_new(per, x->spec.name,
                            json_pack("{s:i, s:I, s:I, s:i, s:I}", "stack_n", n, "resident_bytes",
                                      (json_int_t)x->eng.store.resident[n], "target_bytes",
                                      (json_int_t)x->eng.store.resident[x->target_n], "sessions", x->sessions,
                                      "requests", (json_int_t)x->requests));
    }
    json_object_set_new(o, "models", per ? per : json_null());
    return o;
}

json_t *bs_info_budget(bs_server *srv, const bs_request *r, const char *who, bs_proto_code *code, bs_err *e)
{
    bs_sizer *sz = srv->sizer;
    *code = BS_PERR_BAD_REQUEST;
    bs_served *m = NULL;
    if (r->model[0]) {
        m = bs_models_find(srv->models, r->model);
        if (!m) {
            *code = BS_PERR_MODEL_NOT_FOUND;
            bs_err_set(e, "no model named \"%s\" is served", r->model);
            return NULL;
        }
        if (m->state != BS_SERVED_READY) {
            *code = BS_PERR_BUSY;
            bs_err_set(e, "model %s is still loading", m->spec.name);
            return NULL;
        }
    }
    if (r->has_auto || r->has_min || r->has_max) {
        bs_budget lo, hi;
        bs_proto_parse_budget("min", &lo, NULL);
        bs_proto_parse_budget("max", &hi, NULL);
        if (r->has_min)
            lo = r->min;
        if (r->has_max)
            hi = r->max;
        /* "budget": X comes as min = max = X: a fixed size */
        bool fixed = r->has_min && r->has_max && !strcmp(r->min.text, r->max.text);
        if (bs_sizer_set_budget(sz, m, fixed, &lo, &hi, e))
            return NULL;
        bs_log_info(srv->log, "%s: budget%s%s %s %s..%s", who, m ? " of model " : "", m ? m->spec.name : "",
                    fixed ? "fixed" : "auto", lo.text, fixed ? lo.text : hi.text);
    }
    json_t *o = bs_sizer_budget_json(sz, m);
    if (!o) {
        bs_err_set(e, "out of memory for the answer");
        *code = BS_PERR_INTERNAL;
        return NULL;
    }
    bs_served *one = m ? m : bs_models_default(srv->models);
    int n = one && one->eng.cur ? one->eng.cur->n : 0;
    json_object_set_new(o, "target_bytes",
                        json_integer((json_int_t)(m ? m->eng.store.resident[m->target_n] : sz->target)));
    json_object_set_new(o, "target_n", json_integer(one ? one->target_n : 0));
    json_object_set_new(o, "stack_n", json_integer(n));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)(m ? m->eng.store.resident[n]
                                                                          : bs_models_resident(srv->models))));
    return o;
}

/* Which of the metrics only ever grow. */
static bool is_counter(const char *k)
{
    static const char *const gauges[] = {"stack_n", "resident_bytes", "target_bytes", "kv_bytes", "sessions",
                                         "connections", "psi_some_avg10", "memory_current", "memory_max",
                                         "mem_available", "headroom_bytes", "output_bytes_held"};
    for (size_t i = 0; i < sizeof gauges / sizeof *gauges; i++)
        if (!strcmp(k, gauges[i]))
            return false;
    return true;
}

int bs_info_prometheus(bs_server *srv, bs_proto_buf *b)
{
    json_t *m = bs_info_metrics(srv);
    if (!m)
        return -1;
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_number(v))
            continue;   /* null: not known on this machine */
        bool counter = is_counter(k);
        size_t kl = strlen(k);
        /* a counter's name ends in _total once (sessions_total is already so named) */
        const char *suffix = counter && !(kl >= 6 && !strcmp(k + kl - 6, "_total")) ? "_total" : "";
        char line[256];
        int n = snprintf(line, sizeof line, "# TYPE bitstack_%s%s %s\nbitstack_%s%s %.17g\n", k, suffix,
                         counter ? "counter" : "gauge", k, suffix, json_number_value(v));
        if (n < 0 || (size_t)n >= sizeof line || bs_proto_buf_append(b, line, (size_t)n, NULL)) {
            rc = -1;
            break;
        }
    }
    /* per model, labelled */
    static const char *const keys[] = {"stack_n", "resident_bytes", "target_bytes", "sessions", "requests"};
    json_t *per = json_object_get(m, "models");
    for (size_t k = 0; !rc && per && k < sizeof keys / sizeof *keys; k++) {
        bool counter = !strcmp(keys[k], "requests");
        char line[320];
        int n = snprintf(line, sizeof line, "# TYPE bitstack_model_%s%s %s\n", keys[k], counter ? "_total" : "",
                         counter ? "counter" : "gauge");
        rc = n < 0 || (size_t)n >= sizeof line || bs_proto_buf_append(b, line, (size_t)n, NULL);
        const char *name;
        json_t *x;
        json_object_foreach(per, name, x) {
            if (rc)
                break;
            /* model names are [A-Za-z0-9._:+-]: nothing to escape in a label */
            n = snprintf(line, sizeof line, "bitstack_model_%s%s{model=\"%s\"} %.17g\n", keys[k],
                         counter ? "_total" : "", name, json_number_value(json_object_get(x, keys[k])));
            rc = n < 0 || (size_t)n >= sizeof line || bs_proto_buf_append(b, line, (size_t)n, NULL);
        }
    }
    json_decref(m);
    return rc ? -1 : 0;
}
