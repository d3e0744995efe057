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

json_t *bs_info_status(bs_server *srv)
{
    const bs_engine *eng = srv->eng;
    const bs_store *st = &eng->store;
    int n = eng->cur ? eng->cur->n : 0;
    const bs_mem_facts mf = srv->sizer->facts;   /* the sizer's last sample, not a read per request */
    int running = srv->sched.running, ready = srv->sched.n_ready;
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(srv->cfg.model_name));
    json_object_set_new(o, "store", json_string(st->path));
    json_object_set_new(o, "context", json_integer(st->cfg.seq_len));
    json_object_set_new(o, "vocab_size", json_integer(st->cfg.vocab_size));
    json_object_set_new(o, "stack_n", json_integer(n));
    json_object_set_new(o, "stack_total", json_integer(st->n_blocks));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)st->resident[n]));
    json_object_set_new(o, "full_bytes", json_integer((json_int_t)st->resident[st->n_blocks]));
    json_object_set_new(o, "min_bytes", json_integer((json_int_t)st->resident[st->min_blocks]));
    json_object_set_new(o, "bpw", json_real(bs_store_bpw(st, n)));
    /* what one request at the full context may come to: admission counts with this */
    json_object_set_new(o, "session_bytes_max",
                        json_integer((json_int_t)bs_state_bytes_for(&st->cfg, st->cfg.seq_len, 64, st->cfg.seq_len)));
    bs_sizer_status(srv->sizer, o);
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
    json_t *o = json_object();
#define SET_U(name, v) json_object_set_new(o, name, json_integer((json_int_t)(v)))
    SET_U("requests", m->requests);
    SET_U("errors", m->errors);
    SET_U("tokens_generated", m->tokens_generated);
    SET_U("prompt_tokens", m->prompt_tokens);
    const bs_res *res = &srv->sizer->res;
    SET_U("resize_events", res->grows + res->shrinks);
    SET_U("resize_grows", res->grows);
    SET_U("resize_shrinks", res->shrinks);
    SET_U("resize_failures", res->failures);
    SET_U("bytes_read", m->store_bytes_read + res->bytes_read);
    SET_U("stack_n", srv->eng->cur ? srv->eng->cur->n : 0);
    SET_U("resident_bytes", srv->eng->store.resident[srv->eng->cur ? srv->eng->cur->n : 0]);
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
    return o;
}

json_t *bs_info_budget(bs_server *srv, const bs_request *r, const char *who, bs_err *e)
{
    bs_sizer *sz = srv->sizer;
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
        if (bs_sizer_set_budget(sz, fixed, &lo, &hi, e))
            return NULL;
        bs_log_info(srv->log, "%s: budget %s %s..%s", who, fixed ? "fixed" : "auto", lo.text,
                    fixed ? lo.text : hi.text);
    }
    const bs_engine *eng = srv->eng;
    int n = eng->cur ? eng->cur->n : 0;
    json_t *o = bs_sizer_budget_json(sz);
    if (!o) {
        bs_err_set(e, "out of memory for the answer");
        return NULL;
    }
    json_object_set_new(o, "target_bytes", json_integer((json_int_t)sz->target));
    json_object_set_new(o, "target_n", json_integer(sz->target_n));
    json_object_set_new(o, "stack_n", json_integer(n));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)eng->store.resident[n]));
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
    json_decref(m);
    return rc;
}
