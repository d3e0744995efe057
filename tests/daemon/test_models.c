/* Several models under one budget (issue 17): one real bitstackd serving two real stores,
 * stories260K ("s") and babyllama-d128 ("bl").
 *
 *  (a) both serve, each its own text (the same as the store run in-process), by name in
 *      JSON lines and in the OpenAI API; an unknown name is model_not_found; status and
 *      /v1/models list both
 *  (b) a total budget is split as bs_policy_alloc says over the stores' loss tables, at
 *      every total as it falls and rises (blocks leave and come back in that order)
 *  (c) a model with a generation in flight keeps serving through a shrink
 *  (d) an idle model yields its blocks to a busy one (the recent-use factor)
 *  (e) SIGHUP with a config that drops bl and adds s2: bl's generation in flight ends
 *      normally, new bl requests are model_not_found, bl closes and its memory is
 *      returned; s serves throughout; s2 comes up and serves
 *  (f) in a memory cgroup with a hog beside it: both models shrink to their floors, no
 *      OOM kill, both still answer; when the hog leaves, both grow back
 *  (g) bitstackd --model X.gguf: the daemon answers while it compresses the model into
 *      its cache (status shows the stages moving; requests get busy), then serves it; a
 *      second start finds the store in the cache and builds nothing
 * (f) is skipped (said so) when no memory cgroup can be made here. */
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "harness.h"
#include "tests/daemon/cgroup.h"
#include "tests/daemon/client.h"
#include "tests/daemon/ref.h"
#include "daemon/policy.h"

#define LIMIT (512ll << 20)
#define MARGIN (80ll << 20)

static td_fixture F;
static char bl_store[256];
static tc_cgroup CG;
static const char *hog_exe;
static pid_t hog = -1;

static void cleanup(void)
{
    tc_kill(&hog);
    td_kill_children();
    tc_remove(&CG);
}

/* ---- status of one model ---------------------------------------------------------------- */

static json_t *status(const char *sock)
{
    td_conn c;
    if (!td_open(&c, sock))
        return NULL;
    bs_response r;
    json_t *o = NULL;
    if (td_call(&c, &r, "{\"id\":\"st\",\"op\":\"status\"}") == 1 && r.kind == BS_RESP_RESULT)
        o = json_incref(r.result);
    bs_response_free(&r);
    td_close(&c);
    return o;
}

static const json_t *model_of(const json_t *st, const char *name)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(st, "models"), i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "name")), name))
            return m;
    }
    return NULL;
}

/* A model's integer field (-1: no such model or field). */
static long long model_int(const char *sock, const char *name, const char *key)
{
    json_t *st = status(sock);
    const json_t *m = st ? model_of(st, name) : NULL;
    json_t *v = m ? json_object_get(m, key) : NULL;
    long long x = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(st);
    return x;
}

static bool wait_model_n(const char *sock, const char *name, int want, int ms)
{
    double end = td_now_ms() + ms;
    while (td_now_ms() < end) {
        if (model_int(sock, name, "stack_n") == want)
            return true;
        td_sleep_ms(20);
    }
    return false;
}

static bool wait_gone(const char *sock, const char *name, int ms)
{
    double end = td_now_ms() + ms;
    while (td_now_ms() < end) {
        json_t *st = status(sock);
        bool gone = st && !model_of(st, name);
        json_decref(st);
        if (gone)
            return true;
        td_sleep_ms(50);
    }
    return false;
}

static bool send_budget(const char *sock, const char *text)
{
    td_conn c;
    if (!td_open(&c, sock))
        return false;
    bs_response r;
    char line[160];
    snprintf(line, sizeof line, "{\"id\":\"b\",\"op\":\"budget\",\"budget\":\"%s\"}", text);
    bool ok = td_call(&c, &r, line) == 1 && r.kind == BS_RESP_RESULT;
    bs_response_free(&r);
    td_close(&c);
    return ok;
}

/* A greedy generation on model (NULL: the default): its text (malloc'd) or NULL; *code
 * the error code when it failed. */
static char *generate(const char *sock, const char *model, const char *prompt, int n, bs_proto_code *code)
{
    td_conn c;
    *code = BS_PERR_NONE;
    if (!td_open(&c, sock))
        return NULL;
    char line[512], mf[96] = "";
    if (model)
        snprintf(mf, sizeof mf, ",\"model\":\"%s\"", model);
    snprintf(line, sizeof line, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":%d,"
             "\"temperature\":0%s}", prompt, n, mf);
    bs_response r;
    char *text = NULL;
    if (td_call(&c, &r, line) == 1) {
        if (r.kind == BS_RESP_DONE)
            text = strndup(r.text, r.text_len);
        else if (r.kind == BS_RESP_ERROR)
            *code = r.code;
    }
    bs_response_free(&r);
    td_close(&c);
    return text;
}

static char *ref_text(const char *store, const char *prompt, int n)
{
    ref_model m;
    if (ref_open(&m, store, "max"))
        return NULL;
    ref_out o;
    char *t = NULL;
    if (ref_generate(&m, prompt, n, 0, 1, 0, NULL, 0, &o) == 0)
        t = o.text;
    ref_close(&m);
    return t;
}

/* An HTTP request on the Unix socket; the body of the answer (malloc'd) and its status. */
static char *http(const char *sock, const char *req, int *status_code)
{
    int fd = td_connect(sock);
    *status_code = -1;
    if (fd < 0)
        return NULL;
    size_t len = strlen(req), off = 0;
    while (off < len) {
        ssize_t w = write(fd, req + off, len - off);
        if (w <= 0) {
            close(fd);
            return NULL;
        }
        off += (size_t)w;
    }
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while (buf && got + 1 < cap && (k = read(fd, buf + got, cap - got - 1)) > 0)
        got += (size_t)k;
    close(fd);
    if (!buf)
        return NULL;
    buf[got] = '\0';
    sscanf(buf, "HTTP/1.1 %d", status_code);
    char *body = strstr(buf, "\r\n\r\n");
    char *out = body ? strdup(body + 4) : NULL;
    free(buf);
    return out;
}

/* ---- (a) --------------------------------------------------------------------------------- */

static void test_both_serve(const char *sock)
{
    json_t *st = status(sock);
    REQUIRE(st);
    CHECK(json_array_size(json_object_get(st, "models")) == 2);
    CHECK(!strcmp(json_string_value(json_object_get(st, "model")), "s"));   /* the first is the default */
    const json_t *ms = model_of(st, "s"), *mb = model_of(st, "bl");
    CHECK(ms && mb && !strcmp(json_string_value(json_object_get(mb, "state")), "ready"));
    CHECK(mb && json_integer_value(json_object_get(mb, "stack_n")) == json_integer_value(json_object_get(mb, "stack_total")));
    CHECK(mb && !json_is_true(json_object_get(mb, "loss_estimated")));   /* compress records the loss table */
    json_decref(st);

    const char *prompt = "Once upon a time";
    char *want_s = ref_text(F.store, prompt, 24), *want_b = ref_text(bl_store, prompt, 24);
    REQUIRE(want_s && want_b);
    CHECK(strcmp(want_s, want_b) != 0);   /* the two models say different things */
    bs_proto_code code;
    char *got_b = generate(sock, "bl", prompt, 24, &code), *got_s = generate(sock, "s", prompt, 24, &code);
    char *got_d = generate(sock, NULL, prompt, 24, &code);
    CHECKF(got_b && !strcmp(got_b, want_b), "bl: '%s' vs in-process '%s'", got_b ? got_b : "(none)", want_b);
    CHECKF(got_s && !strcmp(got_s, want_s), "s: '%s' vs in-process '%s'", got_s ? got_s : "(none)", want_s);
    CHECK(got_d && !strcmp(got_d, want_s));
    char *none = generate(sock, "nope", prompt, 4, &code);
    CHECK(!none && code == BS_PERR_MODEL_NOT_FOUND);
    free(got_b);
    free(got_s);
    free(got_d);

    /* the OpenAI API: /v1/models lists both, with their sizes; a request goes to the model
     * it names; with two models an unknown name is a 404 */
    int hs;
    char *body = http(sock, "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &hs);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    CHECK(hs == 200 && j && json_array_size(json_object_get(j, "data")) == 2);
    const json_t *d1 = json_array_get(json_object_get(j, "data"), 1);
    CHECK(d1 && !strcmp(json_string_value(json_object_get(d1, "id")), "bl") &&
          json_is_integer(json_object_get(json_object_get(d1, "bitstack"), "resident_bytes")));
    json_decref(j);
    free(body);
    char req[1024];
    const char *payload = "{\"model\":\"bl\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"temperature\":0}";
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(payload), payload);
    body = http(sock, req, &hs);
    j = body ? json_loads(body, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    CHECKF(hs == 200 && j && !strcmp(json_string_value(json_object_get(j, "model")), "bl") && text &&
           !strcmp(text, want_b), "OpenAI completion on bl: %d %s", hs, body ? body : "");
    json_decref(j);
    free(body);
    payload = "{\"model\":\"gpt-4o\",\"prompt\":\"Once\",\"max_tokens\":2}";
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(payload), payload);
    body = http(sock, req, &hs);
    CHECKF(hs == 404 && body && strstr(body, "model_not_found"), "unknown model: %d %s", hs, body ? body : "");
    free(body);
    free(want_s);
    free(want_b);
}

/* ---- (b) --------------------------------------------------------------------------------- */

typedef struct {
    bs_store st;
    double *loss;
    bool est;
} split_store;

/* What bs_policy_alloc gives for a total (weights 1). */
static void expected_split(split_store *x, uint64_t total, int *n)
{
    bs_alloc_model am[2];
    size_t cells = 0;
    for (int i = 0; i < 2; i++) {
        am[i] = (bs_alloc_model){x[i].st.resident, x[i].loss, x[i].st.min_blocks, x[i].st.n_blocks, 1.0};
        cells += (size_t)(x[i].st.n_blocks - x[i].st.min_blocks + 1);
    }
    int *scratch = malloc(sizeof *scratch * cells);
    bs_policy_alloc(am, 2, total, n, scratch);
    free(scratch);
}

static void test_split(const char *sock)
{
    split_store x[2];
    bs_err e;
    REQUIRE(bs_store_open(&x[0].st, F.store, &e) == 0);
    REQUIRE(bs_store_open(&x[1].st, bl_store, &e) == 0);
    for (int i = 0; i < 2; i++)
        REQUIRE((x[i].loss = bs_store_loss_table(&x[i].st, &x[i].est)) && !x[i].est);
    uint64_t lo = x[0].st.resident[x[0].st.min_blocks] + x[1].st.resident[x[1].st.min_blocks];
    uint64_t hi = x[0].st.resident[x[0].st.n_blocks] + x[1].st.resident[x[1].st.n_blocks];
    /* down from the whole to the floors, and back up */
    const double at[] = {1.0, 0.8, 0.6, 0.45, 0.3, 0.15, 0.0, 0.35, 0.7, 1.0};
    int prev[2] = {x[0].st.n_blocks, x[1].st.n_blocks};
    bool uneven = false;
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        uint64_t total = lo + (uint64_t)(at[k] * (double)(hi - lo));
        int n[2];
        expected_split(x, total, n);
        char b[32];
        snprintf(b, sizeof b, "%llu", (unsigned long long)total);
        REQUIRE(send_budget(sock, b));
        bool ok = wait_model_n(sock, "s", n[0], 20000) && wait_model_n(sock, "bl", n[1], 20000);
        CHECKF(ok, "total %llu: expected s %d, bl %d; got s %lld, bl %lld", (unsigned long long)total, n[0], n[1],
               model_int(sock, "s", "stack_n"), model_int(sock, "bl", "stack_n"));
        long long used = model_int(sock, "s", "resident_bytes") + model_int(sock, "bl", "resident_bytes");
        CHECKF(at[k] == 0 || used <= (long long)total, "total %llu: the models hold %lld", (unsigned long long)total,
               used);
        /* an even split of the bytes is not what the gains say, somewhere along the way */
        int even0 = bs_engine_n_for_bytes(&x[0].st, (double)total / 2);
        if (even0 >= x[0].st.min_blocks && even0 != n[0])
            uneven = true;
        fprintf(stderr, "(b) total %7.1f KiB: s %3d (%3d), bl %3d (%3d) blocks\n", (double)total / 1024, n[0], prev[0],
                n[1], prev[1]);
        prev[0] = n[0];
        prev[1] = n[1];
    }
    CHECK(uneven);
    for (int i = 0; i < 2; i++) {
        free(x[i].loss);
        bs_store_close(&x[i].st);
    }
}

/* ---- (c) --------------------------------------------------------------------------------- */

static void test_serve_through_shrink(const char *sock)
{
    REQUIRE(send_budget(sock, "max"));
    long long full = model_int(sock, "bl", "stack_total");
    REQUIRE(wait_model_n(sock, "bl", (int)full, 20000));
    td_conn c;
    REQUIRE(td_open(&c, sock));
    REQUIRE(td_sendf(&c, "{\"id\":\"long\",\"op\":\"generate\",\"model\":\"bl\",\"prompt\":\"Once upon a time\","
                         "\"max_tokens\":240,\"temperature\":0,\"stream\":true}\n"));
    int tokens = 0;
    bs_response r;
    while (tokens < 5 && td_recv(&c, &r) == 1) {
        tokens += r.kind == BS_RESP_TOKEN;
        bool end = r.kind != BS_RESP_TOKEN;
        bs_response_free(&r);
        if (end)
            break;
    }
    CHECK(tokens == 5);
    REQUIRE(send_budget(sock, "1K"));   /* below both floors: each at its smallest */
    bs_response fin;
    REQUIRE(td_until_final(&c, "\"long\"", &fin, NULL, NULL) == 1);
    /* it ends as it would have: the length, or the model's end of text */
    CHECKF(fin.kind == BS_RESP_DONE && (fin.stats.finish_reason == BS_FINISH_LENGTH || fin.stats.finish_reason == BS_FINISH_EOS) &&
           fin.stats.generated_tokens > 5, "the generation through the shrink: kind %d, finish %d, %lld tokens",
           (int)fin.kind, (int)fin.stats.finish_reason, (long long)fin.stats.generated_tokens);
    CHECKF(fin.stats.stack_n_min < fin.stats.stack_n_max, "no shrink seen inside it (N %lld..%lld)",
           (long long)fin.stats.stack_n_min, (long long)fin.stats.stack_n_max);
    bs_response_free(&fin);
    td_close(&c);
    REQUIRE(send_budget(sock, "max"));
}

/* ---- (d) --------------------------------------------------------------------------------- */

static void test_idle_yields(const char *sock)
{
    json_t *st = status(sock);
    REQUIRE(st);
    long long s_full = json_integer_value(json_object_get(model_of(st, "s"), "full_bytes"));
    long long b_full = json_integer_value(json_object_get(model_of(st, "bl"), "full_bytes"));
    long long b_min = json_integer_value(json_object_get(model_of(st, "bl"), "min_bytes"));
    json_decref(st);
    /* room for all of s and a little over bl's floor: both busy, bl is cut */
    char b[32];
    snprintf(b, sizeof b, "%lld", s_full + b_min + (b_full - b_min) / 2);
    REQUIRE(send_budget(sock, b));
    bs_proto_code code;
    free(generate(sock, "bl", "Once", 4, &code));
    td_sleep_ms(300);
    long long b0 = model_int(sock, "bl", "stack_n");
    /* s is used, bl is not: bl's weight halves every second after the first */
    double end = td_now_ms() + 6000;
    while (td_now_ms() < end)
        free(generate(sock, "s", "Once", 8, &code));
    long long b1 = model_int(sock, "bl", "stack_n");
    CHECKF(b1 < b0, "bl (idle) kept %lld blocks (before: %lld)", b1, b0);
    fprintf(stderr, "(d) bl idle: %lld -> %lld blocks\n", b0, b1);
    /* used again, it gets them back */
    end = td_now_ms() + 6000;
    while (td_now_ms() < end && model_int(sock, "bl", "stack_n") < b0)
        free(generate(sock, "bl", "Once", 8, &code));
    CHECK(model_int(sock, "bl", "stack_n") >= b0);
    REQUIRE(send_budget(sock, "max"));
}

/* ---- (e) --------------------------------------------------------------------------------- */

static void write_conf(const char *path, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
    REQUIRE(rename(tmp, path) == 0);
}

static void test_reload(void)
{
    char conf[256], text[1024], log[256], sock[256];
    snprintf(conf, sizeof conf, "%s/bitstackd.conf", F.dir);
    snprintf(text, sizeof text, "# two models\n[model s]\nstore = s.bstk\n\n[model bl]\nstore = %s\nweight = 2\n",
             bl_store);
    write_conf(conf, text);
    snprintf(log, sizeof log, "%s/reload.log", F.dir);
    snprintf(sock, sizeof sock, "%s/reload.sock", F.dir);
    const char *args[] = {"--config", conf, "--socket", sock, NULL};
    td_daemon d;
    td_daemon_spawn(&d, F.daemon, args, log, NULL, NULL);
    REQUIRE(td_wait_socket(&d, sock));
    CHECK(model_int(sock, "bl", "stack_n") > 0 && model_int(sock, "s", "stack_n") > 0);

    td_conn cb, cs;
    REQUIRE(td_open(&cb, sock) && td_open(&cs, sock));
    REQUIRE(td_sendf(&cb, "{\"id\":1,\"op\":\"generate\",\"model\":\"bl\",\"prompt\":\"Once\",\"max_tokens\":200,"
                          "\"temperature\":0,\"stream\":true}\n"));
    REQUIRE(td_sendf(&cs, "{\"id\":2,\"op\":\"generate\",\"model\":\"s\",\"prompt\":\"Once\",\"max_tokens\":200,"
                          "\"temperature\":0,\"stream\":true}\n"));
    bs_response r;
    REQUIRE(td_recv(&cb, &r) == 1 && r.kind == BS_RESP_TOKEN);   /* it runs */
    bs_response_free(&r);

    snprintf(text, sizeof text, "[model s]\nstore = s.bstk\n[model s2]\nstore = %s\n", F.store);
    write_conf(conf, text);
    REQUIRE(kill(d.pid, SIGHUP) == 0);
    /* bl takes no new request at once; the one in flight goes on */
    bs_proto_code code = BS_PERR_NONE;
    double end = td_now_ms() + 10000;
    char *t = NULL;
    while (td_now_ms() < end && code != BS_PERR_MODEL_NOT_FOUND) {
        free(t);
        t = generate(sock, "bl", "Once", 2, &code);
    }
    free(t);
    CHECK(code == BS_PERR_MODEL_NOT_FOUND);
    bs_response fin;
    REQUIRE(td_until_final(&cb, "1", &fin, NULL, NULL) == 1);
    CHECKF(fin.kind == BS_RESP_DONE && (fin.stats.finish_reason == BS_FINISH_LENGTH || fin.stats.finish_reason == BS_FINISH_EOS),
           "bl's generation across the reload: kind %d", (int)fin.kind);
    bs_response_free(&fin);
    REQUIRE(td_until_final(&cs, "2", &fin, NULL, NULL) == 1);
    CHECK(fin.kind == BS_RESP_DONE && (fin.stats.finish_reason == BS_FINISH_LENGTH || fin.stats.finish_reason == BS_FINISH_EOS));
    bs_response_free(&fin);
    td_close(&cb);
    td_close(&cs);
    /* drained: closed, its memory returned */
    CHECK(wait_gone(sock, "bl", 20000));
    CHECK(td_log_has(log, "model bl closed"));
    char *s2 = NULL;
    end = td_now_ms() + 20000;
    while (td_now_ms() < end && !s2) {
        s2 = generate(sock, "s2", "Once", 4, &code);
        if (!s2)
            td_sleep_ms(50);
    }
    CHECK(s2 != NULL);
    free(s2);
    json_t *st = status(sock);
    CHECK(st && json_array_size(json_object_get(st, "models")) == 2 && model_of(st, "s2") && model_of(st, "s"));
    long long held = st ? (long long)json_integer_value(json_object_get(st, "models_resident_bytes")) : -1;
    long long sum = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(st ? json_object_get(st, "models") : NULL, i, m) {
        sum += json_integer_value(json_object_get(m, "resident_bytes"));
    }
    CHECK(held == sum);
    json_decref(st);
    /* a config that does not parse changes nothing */
    write_conf(conf, "[model s]\nstore = s.bstk\nbogus = 1\n");
    REQUIRE(kill(d.pid, SIGHUP) == 0);
    end = td_now_ms() + 10000;
    while (td_now_ms() < end && !td_log_has(log, "keeping the models served"))
        td_sleep_ms(50);
    CHECK(td_log_has(log, "line 3: unknown key 'bogus'"));
    CHECK(model_int(sock, "s2", "stack_n") > 0);
    CHECK(td_daemon_stop(&d));
    CHECK(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 0);
}

/* ---- (f) --------------------------------------------------------------------------------- */

static void test_cgroup_hog(void)
{
    char why[512];
    if (!tc_make(&CG, "bitstack-models", LIMIT, why, sizeof why)) {
        fprintf(stderr, "SKIP (f): %s\n", why);
        return;
    }
    char store_arg[300];
    snprintf(store_arg, sizeof store_arg, "bl=%s", bl_store);
    const char *extra[] = {"--store", store_arg, "--reserve", "128M", "--sample-ms", "100", "--grow-delay-ms", "300",
                           NULL};
    td_daemon d;
    td_start(&F, &d, "hog", extra);
    REQUIRE(tc_join(&CG, d.pid));
    int full_s = (int)model_int(d.sock, "s", "stack_total"), full_b = (int)model_int(d.sock, "bl", "stack_total");
    CHECK(wait_model_n(d.sock, "s", full_s, 30000) && wait_model_n(d.sock, "bl", full_b, 30000));
    long long cur = tc_read_int(&CG, CG.version == 1 ? "memory.usage_in_bytes" : "memory.current");
    char mib[32], log[256];
    snprintf(mib, sizeof mib, "%lld", (LIMIT - cur - MARGIN) >> 20);
    snprintf(log, sizeof log, "%s/hog-models.log", F.dir);
    /* it holds until SIGTERM (its stdin is /dev/null, so the stdin rule would free at once) */
    const char *args[] = {"--mb", mib, "--step-mb", "32", "--step-ms", "20", "--hold-ms", "600000", NULL};
    hog = tc_start_hog(&CG, hog_exe, args, log);
    REQUIRE(hog > 0);
    json_t *st;
    /* both at their floors: what the smallest working prefix is, status says as min_bytes */
    double end = td_now_ms() + 30000;
    bool floors = false;
    while (td_now_ms() < end && !floors) {
        st = status(d.sock);
        const json_t *a = st ? model_of(st, "s") : NULL, *b = st ? model_of(st, "bl") : NULL;
        floors = a && b &&
                 json_integer_value(json_object_get(a, "resident_bytes")) ==
                     json_integer_value(json_object_get(a, "min_bytes")) &&
                 json_integer_value(json_object_get(b, "resident_bytes")) ==
                     json_integer_value(json_object_get(b, "min_bytes"));
        json_decref(st);
        if (!floors)
            td_sleep_ms(50);
    }
    CHECK(floors);
    bs_proto_code code;
    char *a = generate(d.sock, "s", "Once", 16, &code), *b = generate(d.sock, "bl", "Once", 16, &code);
    CHECK(a && b);
    free(a);
    free(b);
    CHECK(tc_oom_kills(&CG) == 0);
    kill(hog, SIGTERM);
    int hs;
    CHECK(tc_wait_exit(&hog, TD_TIMEOUT_MS, &hs));
    CHECK(wait_model_n(d.sock, "s", full_s, 60000) && wait_model_n(d.sock, "bl", full_b, 60000));
    CHECK(tc_oom_kills(&CG) == 0);
    CHECK(!td_daemon_exited(&d));
    CHECK(td_daemon_stop(&d));
}

/* ---- (g) --------------------------------------------------------------------------------- */

static void test_model_cache(void)
{
    char cache[256], src[1024], log[256], sock[256];
    snprintf(cache, sizeof cache, "%s/cache", F.dir);
    snprintf(src, sizeof src, "%s/models/stories260K.gguf", F.shared);
    snprintf(sock, sizeof sock, "%s/cache.sock", F.dir);
    /* stopped while it builds: a clean exit (the build cannot be cut short; it is left) */
    {
        char other[300];
        snprintf(other, sizeof other, "%s/cache-stopped", F.dir);
        snprintf(log, sizeof log, "%s/cache-stop.log", F.dir);
        const char *args[] = {"--model", src, "--cache-dir", other, "--socket", sock, NULL};
        td_daemon d;
        td_daemon_spawn(&d, F.daemon, args, log, NULL, NULL);
        REQUIRE(td_wait_socket(&d, sock));
        CHECK(model_int(sock, "stories260K", "requests") == 0);   /* listed while it builds */
        CHECK(td_daemon_stop(&d));
        CHECKF(WIFEXITED(d.status) && WEXITSTATUS(d.status) == 0, "stopped mid-build: status %d", d.status);
    }
    for (int run = 0; run < 2; run++) {
        snprintf(log, sizeof log, "%s/cache%d.log", F.dir, run);
        const char *args[] = {"--model", src, "--cache-dir", cache, "--socket", sock, NULL};
        td_daemon d;
        td_daemon_spawn(&d, F.daemon, args, log, NULL, NULL);
        REQUIRE(td_wait_socket(&d, sock));
        /* it answers status at once; the model is building (first run) or comes up soon */
        int stages = 0, busy = 0;
        char last_stage[64] = "";
        double end = td_now_ms() + 300000;
        bool ready = false;
        while (td_now_ms() < end && !ready) {
            json_t *st = status(sock);
            const json_t *m = st ? model_of(st, "stories260K") : NULL;
            const char *state = m ? json_string_value(json_object_get(m, "state")) : NULL;
            ready = state && !strcmp(state, "ready");
            const char *stage = m ? json_string_value(json_object_get(json_object_get(m, "build"), "stage")) : NULL;
            if (stage && strcmp(stage, last_stage)) {
                snprintf(last_stage, sizeof last_stage, "%s", stage);
                stages++;
            }
            if (state && !strcmp(state, "building") && busy == 0) {
                bs_proto_code code;
                char *t = generate(sock, NULL, "Once", 2, &code);
                busy += !t && code == BS_PERR_BUSY;
                free(t);
            }
            json_decref(st);
            if (!ready)
                td_sleep_ms(50);
        }
        CHECKF(ready, "run %d: the model never came up", run);
        if (run == 0) {
            CHECKF(stages >= 3, "run 0: status showed %d build stages", stages);
            CHECK(busy == 1);   /* a request while building: busy, not a hang */
            CHECK(td_log_has(log, "built into"));
        } else {
            CHECK(td_log_has(log, "found in the cache"));
            CHECK(!td_log_has(log, "built into"));
        }
        bs_proto_code code;
        char *t = generate(sock, NULL, "Once upon a time", 16, &code);
        CHECKF(t && strlen(t) > 0, "run %d: no answer from the built model (code %d)", run, (int)code);
        free(t);
        CHECK(td_daemon_stop(&d));
    }
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return fprintf(stderr, "usage: %s BITSTACKD BITSTACKCTL BS-HOG\n", argv[0]), 2;
    hog_exe = argv[3];
    atexit(cleanup);
    /* slow enough (portable kernels) that changes sent while a generation streams land in it */
    setenv("BS_KERNEL", "portable", 1);
    tc_asan_quarantine(8, 256);
    td_fixture_init(&F, argc, argv, bs_shared(""));
    REQUIRE(td_compress(F.ctl, F.shared, F.dir, "babyllama-d128.bin", "babyllama-tok105.bin", "bl", bl_store,
                        sizeof bl_store) == 0);

    char bl_arg[300];
    snprintf(bl_arg, sizeof bl_arg, "bl=%s", bl_store);
    const char *extra[] = {"--store", bl_arg, "--budget", "max", NULL};
    td_daemon d;
    td_start(&F, &d, "two", extra);
    test_both_serve(d.sock);
    test_split(d.sock);   /* both used within --idle-after (300 s): weights 1 */
    test_serve_through_shrink(d.sock);
    CHECK(!td_daemon_exited(&d));
    CHECK(td_daemon_stop(&d));

    const char *idle[] = {"--store", bl_arg, "--budget", "max", "--idle-after", "1", "--idle-half-life", "1", NULL};
    td_start(&F, &d, "idle", idle);
    test_idle_yields(d.sock);
    CHECK(!td_daemon_exited(&d));
    CHECK(td_daemon_stop(&d));

    test_reload();
    test_model_cache();
    test_cgroup_hog();
    cleanup();
    td_fixture_free(&F, bs_t_failed > 0);
    TEST_MAIN_END();
}
