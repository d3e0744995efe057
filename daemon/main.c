/* bitstackd: serves stacked stores over a Unix socket (docs/daemon.md).
 *
 * This file wires things together: options and the config file, the stores' first
 * prefixes (read before the loop starts, so no disk read ever happens on the loop;
 * stores a reload adds load on a worker), the listener, signals (SIGHUP reloads the
 * config) and sd_notify. The libuv signal handles are the daemon's only link to
 * process-wide state. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/conf.h"
#include "model/cache.h"
#include "daemon/log.h"
#include "daemon/models.h"
#include "daemon/notify.h"
#include "daemon/peers.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "kernels/ops.h"
#include "kernels/team.h"
#include "daemon/sizer.h"
#include "model/engine.h"
#include "proto/sockpath.h"

#define EXIT_USAGE 2

typedef struct {
    bs_served_spec stores[BS_MODELS_MAX];   /* --store, in order */
    int n_stores;
    const char *config;
    const char *cache_dir, *calib;
    double idle_after, idle_half_life;
    const char *socket;
    const char *budget, *budget_min, *budget_max;
    const char *io;
    int io_depth;
    uint64_t io_chunk;
    int sample_ms;
    bs_policy_config policy;
    int threads;
    bool verbose;
    bs_proto_limits lim;
    size_t max_output;
    int grace_ms;
    const char *proc_root, *sys_root;
    const char *listen, *api_key_file;
    int idle_timeout_s;
    int max_conns_user, max_sessions_user;   /* -1: half the daemon's limit */
    uid_t trusted[BS_PEERS_MAX_TRUSTED];
    int n_trusted;                           /* -1: root and our own uid */
} options;

typedef struct {
    bs_log log;
    uv_loop_t loop;
    uv_signal_t sig[3];
    const options *opt;
    bs_server srv;
    bs_models models;
    bs_sizer sizer;
    bool sizing;      /* sizer is initialised */
    bool serving;     /* srv is initialised and the loop runs it */
} daemon_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bitstackd (--store [NAME=]S.bstk | --model [NAME=]M.gguf)... [--config F] [--socket PATH]\n"
            "                 [--budget B | --budget-min B --budget-max B] [--threads N]\n"
            "                 [--idle-after S] [--idle-half-life S]\n"
            "                 [--io auto|io_uring|pread] [--io-depth N] [--io-chunk BYTES] [--sample-ms MS]\n"
            "                 [--reserve BYTES] [--grow-delay-ms MS] [--grow-rate BYTES]\n"
            "                 [--max-connections N] [--max-sessions N] [--max-sessions-per-conn N]\n"
            "                 [--max-output BYTES] [--grace-ms MS] [--proc-root DIR] [--sys-root DIR]\n"
            "                 [--max-connections-per-user N] [--max-sessions-per-user N] [--trusted-uids LIST]\n"
            "                 [--listen HOST:PORT] [--api-key-file F] [--idle-timeout S] [--verbose] [--version]\n"
            "\n"
            "  --store S     a stacked store to serve (bitstackctl compress makes one); repeat it to serve\n"
            "                several models under one budget. NAME=S names it (default: the file name\n"
            "                without .bstk); requests name a model, the first one is the default\n"
            "  --model M     a model file (GGUF, any of its quantized types) to serve: compressed once into\n"
            "                a store in the cache (its progress in status meanwhile), found there next time\n"
            "  --cache-dir D where --model's stores go (default: $CACHE_DIRECTORY, else\n"
            "                $XDG_CACHE_HOME/bitstack, else ~/.cache/bitstack)\n"
            "  --calib TEXT  calibration text for --model's compression (default: text the model samples)\n"
            "  --config F    bitstackd.conf: [model NAME] sections with store, weight, min, max; read\n"
            "                again on SIGHUP (models removed drain, models added load, the rest serve on)\n"
            "  --socket P    default: $BITSTACK_SOCKET, else $RUNTIME_DIRECTORY/bitstackd.sock, else\n"
            "                /run/bitstackd/bitstackd.sock as root, else $XDG_RUNTIME_DIR/bitstackd.sock;\n"
            "                ignored when systemd passes a socket (LISTEN_FDS)\n"
            "  --budget B    a fixed resident size: bytes (\"180K\", \"2.5M\": the total of all models),\n"
            "                or per model \"40%%\", \"4bpw\", \"min\", \"max\"; \"auto\" (the default): follow\n"
            "                free memory between --budget-min and --budget-max\n"
            "  --budget-min, --budget-max   the range auto mode keeps to (default min, max)\n"
            "  --io M        how blocks are read as the model grows: io_uring (O_DIRECT), pread (a worker\n"
            "                thread), auto (io_uring when the kernel allows it; the default)\n"
            "  --io-depth N, --io-chunk B   io_uring reads in flight (16) and bytes per read (1M)\n"
            "  --sample-ms   how often memory is sampled (1000); a PSI trigger wakes the daemon sooner\n"
            "  --reserve B   memory left free beside the model (64M); --grow-delay-ms (2000): how long\n"
            "                room must last before growing; --grow-rate B: bytes per second, at most (256M)\n"
            "  --threads N   generation threads (default, or 0: the CPUs this process may use)\n"
            "  --idle-after S, --idle-half-life S   a model unused for S seconds (300) counts for less\n"
            "                when memory is split, halving every S seconds (300): it yields blocks first\n"
            "  --max-output  bytes queued for one client before it is dropped (default 1048576)\n"
            "  --grace-ms    how long stopping waits for clients to read their last lines (10000)\n"
            "  --listen H:P  also serve HTTP (the OpenAI API, the chat page) on TCP; a loopback address\n"
            "                unless --api-key-file is given. The Unix socket always serves both protocols\n"
            "  --api-key-file F   a file holding the key TCP clients must send (Authorization: Bearer)\n"
            "  --idle-timeout S   seconds a connection may stay without a request, an HTTP one idle (30)\n"
            "  --max-connections-per-user N, --max-sessions-per-user N   what one client uid (SO_PEERCRED)\n"
            "                may hold (default: half the daemon's limits; 0: no limit); compute is shared\n"
            "                per user first, then per request\n"
            "  --trusted-uids LIST   comma-separated uids never limited per user (default: 0 and the\n"
            "                daemon's own uid; \"\" for none)\n"
            "  --proc-root, --sys-root   where /proc and /sys are (tests use fixture trees)\n"
            "See docs/daemon.md.\n");
}

/* The key is the file's first line, without surrounding blanks. */
static int read_api_key(const char *path, char *key, size_t cap, bs_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return bs_err_set(e, "--api-key-file %s: %s", path, strerror(errno));
    char *line = fgets(key, (int)cap, f);
    fclose(f);
    size_t n = line ? strcspn(key, "\r\n") : 0;
    key[n] = '\0';
    while (n && (key[n - 1] == ' ' || key[n - 1] == '\t'))
        key[--n] = '\0';
    size_t lead = strspn(key, " \t");
    memmove(key, key + lead, n - lead + 1);
    if (strlen(key) < 16)
        return bs_err_set(e, "--api-key-file %s: the key must be at least 16 characters on the first line", path);
    return 0;
}

static int parse_num(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* --store [NAME=]PATH (or --model [NAME=]X.gguf, a source to build into the cache): a
 * name is what comes before '=' when that is a valid name. */
static int add_store(options *o, const char *arg, bool source)
{
    if (o->n_stores == BS_MODELS_MAX)
        return fprintf(stderr, "bitstackd: --store: at most %d models\n", BS_MODELS_MAX), -1;
    bs_served_spec *sp = &o->stores[o->n_stores];
    memset(sp, 0, sizeof *sp);
    sp->weight = 1;
    const char *eq = strchr(arg, '=');
    if (eq && !memchr(arg, '/', (size_t)(eq - arg))) {
        snprintf(sp->name, sizeof sp->name, "%.*s", (int)(eq - arg), arg);
        if (!bs_conf_name_ok(sp->name) || (size_t)(eq - arg) >= sizeof sp->name)
            return fprintf(stderr, "bitstackd: --store %s: a name is 1..%d letters, digits or . _ - : + /\n", arg,
                           BS_PROTO_MODEL_MAX), -1;
        arg = eq + 1;
    }
    if (!*arg || strlen(arg) >= sizeof sp->path)
        return fprintf(stderr, "bitstackd: --%s: expected [NAME=]PATH\n", source ? "model" : "store"), -1;
    snprintf(source ? sp->source : sp->path, sizeof sp->path, "%s", arg);
    char name[BS_SERVED_NAME_MAX];
    bs_served_name(sp, name, sizeof name);
    if (!bs_conf_name_ok(name))
        return fprintf(stderr, "bitstackd: --store %s: the file name does not make a model name (letters, digits, "
                       ". _ - : +): give one, NAME=PATH\n", arg), -1;
    o->n_stores++;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    enum { O_MAXCONN = 1000, O_MAXSESS, O_MAXSESSCONN, O_MAXOUT, O_GRACE, O_PROC, O_SYS, O_VERSION, O_BMIN, O_BMAX,
           O_IO, O_IODEPTH, O_IOCHUNK, O_SAMPLE, O_RESERVE, O_GROWDELAY, O_GROWRATE, O_LISTEN, O_APIKEY,
           O_IDLE, O_CONNUSER, O_SESSUSER, O_TRUSTED, O_CONFIG, O_IDLEAFTER, O_IDLEHALF, O_MODEL, O_CACHEDIR,
           O_CALIB };
    static const struct option longs[] = {
        {"store", required_argument, NULL, 's'},
        {"socket", required_argument, NULL, 'S'},
        {"budget", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"max-sessions", required_argument, NULL, O_MAXSESS},
        {"max-sessions-per-conn", required_argument, NULL, O_MAXSESSCONN},
        {"max-output", required_argument, NULL, O_MAXOUT},
        {"grace-ms", required_argument, NULL, O_GRACE},
        {"proc-root", required_argument, NULL, O_PROC},
        {"sys-root", required_argument, NULL, O_SYS},
        {"version", no_argument, NULL, O_VERSION},
        {"budget-min", required_argument, NULL, O_BMIN},
        {"budget-max", required_argument, NULL, O_BMAX},
        {"io", required_argument, NULL, O_IO},
        {"io-depth", required_argument, NULL, O_IODEPTH},
        {"io-chunk", required_argument, NULL, O_IOCHUNK},
        {"sample-ms", required_argument, NULL, O_SAMPLE},
        {"reserve", required_argument, NULL, O_RESERVE},
        {"grow-delay-ms", required_argument, NULL, O_GROWDELAY},
        {"grow-rate", required_argument, NULL, O_GROWRATE},
        {"listen", required_argument, NULL, O_LISTEN},
        {"api-key-file", required_argument, NULL, O_APIKEY},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"max-connections-per-user", required_argument, NULL, O_CONNUSER},
        {"max-sessions-per-user", required_argument, NULL, O_SESSUSER},
        {"trusted-uids", required_argument, NULL, O_TRUSTED},
        {"config", required_argument, NULL, O_CONFIG},
        {"model", required_argument, NULL, O_MODEL},
        {"cache-dir", required_argument, NULL, O_CACHEDIR},
        {"calib", required_argument, NULL, O_CALIB},
        {"idle-after", required_argument, NULL, O_IDLEAFTER},
        {"idle-half-life", required_argument, NULL, O_IDLEHALF},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->budget = "auto";
    o->io = "auto";
    o->io_depth = 16;
    o->io_chunk = 1 << 20;
    o->sample_ms = 1000;
    bs_policy_defaults(&o->policy);
    o->threads = bs_team_resolve(0);
    bs_proto_limits_default(&o->lim);
    o->max_output = 1 << 20;
    o->grace_ms = 10000;
    o->idle_timeout_s = 30;
    o->max_conns_user = o->max_sessions_user = -1;
    o->n_trusted = -1;
    o->proc_root = "/proc";
    o->sys_root = "/sys";
    o->idle_after = o->idle_half_life = 300;
    int ch;
    long v;
    while ((ch = getopt_long(argc, argv, "s:S:b:t:vh", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
        case O_MODEL:
            if (add_store(o, optarg, ch == O_MODEL))
                return -1;
            break;
        case O_CACHEDIR: o->cache_dir = optarg; break;
        case O_CALIB: o->calib = optarg; break;
        case O_CONFIG: o->config = optarg; break;
        case O_IDLEAFTER:
        case O_IDLEHALF:
            if (parse_num(optarg, 1, 86400 * 7, &v))
                return fprintf(stderr, "bitstackd: --%s: expected 1..604800 seconds\n",
                               ch == O_IDLEAFTER ? "idle-after" : "idle-half-life"), -1;
            *(ch == O_IDLEAFTER ? &o->idle_after : &o->idle_half_life) = (double)v;
            break;
        case 'S': o->socket = optarg; break;
        case 'b': o->budget = optarg; break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); exit(0);
        case O_VERSION: printf("bitstackd 0.1.0\n"); exit(0);
        case O_PROC: o->proc_root = optarg; break;
        case O_BMIN: o->budget_min = optarg; break;
        case O_BMAX: o->budget_max = optarg; break;
        case O_IO:
            if (strcmp(optarg, "auto") && strcmp(optarg, "io_uring") && strcmp(optarg, "pread"))
                return fprintf(stderr, "bitstackd: --io: expected auto, io_uring or pread, got '%s'\n", optarg), -1;
            o->io = optarg;
            break;
        case O_IODEPTH:
            if (parse_num(optarg, 1, BS_RES_MAX_QD, &v))
                return fprintf(stderr, "bitstackd: --io-depth: expected 1..%d\n", BS_RES_MAX_QD), -1;
            o->io_depth = (int)v;
            break;
        case O_SAMPLE:
            if (parse_num(optarg, 10, 600000, &v))
                return fprintf(stderr, "bitstackd: --sample-ms: expected 10..600000\n"), -1;
            o->sample_ms = (int)v;
            break;
        case O_GROWDELAY:
            if (parse_num(optarg, 0, 3600000, &v))
                return fprintf(stderr, "bitstackd: --grow-delay-ms: expected 0..3600000\n"), -1;
            o->policy.grow_delay = (double)v / 1e3;
            break;
        case O_IOCHUNK:
        case O_RESERVE:
        case O_GROWRATE: {
            bs_budget b;
            bs_err be;
            if (bs_proto_parse_budget(optarg, &b, &be) || b.kind != BS_BUDGET_BYTES)
                return fprintf(stderr, "bitstackd: --%s: expected bytes (\"64M\", \"4096\"), got '%s'\n",
                               ch == O_IOCHUNK ? "io-chunk" : ch == O_RESERVE ? "reserve" : "grow-rate", optarg), -1;
            if (ch == O_IOCHUNK)
                o->io_chunk = b.bytes < 4096 ? 4096 : b.bytes;
            else if (ch == O_RESERVE)
                o->policy.reserve = b.bytes;
            else
                o->policy.grow_rate = b.bytes ? (double)b.bytes : 1.0;
            break;
        }
        case O_SYS: o->sys_root = optarg; break;
        case 't':
            if (parse_num(optarg, 0, 1024, &v))
                return fprintf(stderr, "bitstackd: --threads: expected 0..1024, got '%s'\n", optarg), -1;
            o->threads = v ? (int)v : bs_team_resolve(0);
            break;
        case O_MAXCONN:
            if (parse_num(optarg, 1, 100000, &v))
                return fprintf(stderr, "bitstackd: --max-connections: expected 1..100000\n"), -1;
            o->lim.max_connections = (int)v;
            break;
        case O_MAXSESS:
            if (parse_num(optarg, 1, 100000, &v))
                return fprintf(stderr, "bitstackd: --max-sessions: expected 1..100000\n"), -1;
            o->lim.max_sessions = (int)v;
            break;
        case O_MAXSESSCONN:
            if (parse_num(optarg, 1, 100000, &v))
                return fprintf(stderr, "bitstackd: --max-sessions-per-conn: expected 1..100000\n"), -1;
            o->lim.max_sessions_per_conn = (int)v;
            break;
        case O_MAXOUT:
            if (parse_num(optarg, 4096, LONG_MAX, &v))
                return fprintf(stderr, "bitstackd: --max-output: expected at least 4096 bytes\n"), -1;
            o->max_output = (size_t)v;
            break;
        case O_GRACE:
            if (parse_num(optarg, 0, 3600000, &v))
                return fprintf(stderr, "bitstackd: --grace-ms: expected 0..3600000\n"), -1;
            o->grace_ms = (int)v;
            break;
        case O_LISTEN: o->listen = optarg; break;
        case O_APIKEY: o->api_key_file = optarg; break;
        case O_IDLE:
            if (parse_num(optarg, 1, 86400, &v))
                return fprintf(stderr, "bitstackd: --idle-timeout: expected 1..86400 seconds\n"), -1;
            o->idle_timeout_s = (int)v;
            break;
        case O_CONNUSER:
        case O_SESSUSER:
            if (parse_num(optarg, 0, 100000, &v))
                return fprintf(stderr, "bitstackd: --%s: expected 0..100000\n",
                               ch == O_CONNUSER ? "max-connections-per-user" : "max-sessions-per-user"), -1;
            *(ch == O_CONNUSER ? &o->max_conns_user : &o->max_sessions_user) = (int)v;
            break;
        case O_TRUSTED: {
            o->n_trusted = 0;
            char *list = optarg, *tok, *save = NULL;
            while ((tok = strtok_r(list, ",", &save))) {
                list = NULL;
                if (parse_num(tok, 0, 0x7fffffff, &v) || o->n_trusted == BS_PEERS_MAX_TRUSTED)
                    return fprintf(stderr, "bitstackd: --trusted-uids: expected up to %d uids, got '%s'\n",
                                   BS_PEERS_MAX_TRUSTED, tok), -1;
                o->trusted[o->n_trusted++] = (uid_t)v;
            }
            break;
        }
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc)
        return fprintf(stderr, "bitstackd: unexpected argument '%s'\n", argv[optind]), usage(stderr), -1;
    if (!o->n_stores && !o->config)
        return fprintf(stderr, "bitstackd: --store, --model or --config is required\n"), usage(stderr), -1;
    if (strcmp(o->budget, "auto") && (o->budget_min || o->budget_max))
        return fprintf(stderr, "bitstackd: --budget %s is a fixed size; --budget-min/--budget-max go with auto\n",
                       o->budget), -1;
    /* the grammar is checked now, so that a typo is a usage error, not a start failure */
    const char *bs[3] = {strcmp(o->budget, "auto") ? o->budget : NULL, o->budget_min, o->budget_max};
    for (int i = 0; i < 3; i++) {
        bs_budget b;
        bs_err be;
        if (bs[i] && bs_proto_parse_budget(bs[i], &b, &be))
            return fprintf(stderr, "bitstackd: %s\n", be.msg), -1;
    }
    return 0;
}

static void notify(daemon_t *d, const char *state)
{
    bs_err e;
    if (bs_notify(state, &e) < 0)
        bs_log_warn(&d->log, "%s", e.msg);
}

static void on_stopped(bs_server *srv, void *ctx)
{
    (void)srv;
    daemon_t *d = ctx;
    for (int i = 0; i < 3; i++)
        if (!uv_is_closing((uv_handle_t *)&d->sig[i]))
            uv_close((uv_handle_t *)&d->sig[i], NULL);
    /* closing the handles restored the default action (death); a repeated SIGTERM in the
     * last moments must not turn a clean exit into a kill */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (d->sizing)
        bs_sizer_close(&d->sizer);
    bs_models_close(&d->models);
    bs_log_info(&d->log, "stopped");
}

/* Do two specs name the same model: the same source, else the same store? */
static bool same_origin(const bs_served_spec *a, const bs_served_spec *b)
{
    if (a->source[0] || b->source[0])
        return !strcmp(a->source, b->source);
    return !strcmp(a->path, b->path);
}

/* SIGHUP: the config file again. Models it no longer lists drain; new ones load; the
 * rest keep serving (with the weight and range it gives them now). A file that does not
 * parse changes nothing. */
static void reload(daemon_t *d)
{
    const options *o = d->opt;
    if (!o->config) {
        bs_log_notice(&d->log, "SIGHUP: no --config to read again");
        return;
    }
    bs_served_spec specs[BS_MODELS_MAX];
    int n;
    bs_err e;
    if (bs_conf_load(o->config, specs, BS_MODELS_MAX, &n, &e)) {
        bs_log_err(&d->log, "reload: %s: keeping the models served", e.msg);
        return;
    }
    bs_models *set = &d->models;
    for (int i = 0; i < set->n; i++) {
        bs_served *m = set->m[i];
        if (!m->spec.from_config || m->state == BS_SERVED_DRAINING)
            continue;
        const bs_served_spec *now = NULL;
        for (int j = 0; j < n; j++)
            if (!strcmp(specs[j].name, m->spec.name))
                now = &specs[j];
        if (!now || !same_origin(now, &m->spec)) {
            bs_models_remove(set, m);
            i = -1;   /* the set may have changed under us (a model closed at once) */
            continue;
        }
        m->spec.weight = now->weight;
        m->spec.has_min = now->has_min;
        m->spec.has_max = now->has_max;
        m->spec.min = now->min;
        m->spec.max = now->max;
    }
    for (int j = 0; j < n; j++) {
        bs_served *m = bs_models_find(set, specs[j].name);
        if (m && m->state == BS_SERVED_FAILED) {
            bs_models_forget_failed(set, specs[j].name);   /* listed again: another try */
            m = NULL;
        }
        if (m && same_origin(&m->spec, &specs[j]))
            continue;
        if (bs_models_add(set, &specs[j], &e))
            bs_log_err(&d->log, "reload: %s", e.msg);
        else
            bs_log_info(&d->log, "reload: loading model %s from %s", specs[j].name, specs[j].path);
    }
    bs_sizer_decide(&d->sizer);
}

/* A model came in (or failed to) or closed: the split is made again. */
static void on_model_event(bs_models *set, bs_served *m, void *ctx)
{
    (void)set;
    (void)m;
    daemon_t *d = ctx;
    if (d->sizing)
        bs_sizer_decide(&d->sizer);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    if (signum == SIGHUP) {
        if (d->serving && !d->srv.stopping) {
            bs_log_notice(&d->log, "SIGHUP: reloading %s", d->opt->config ? d->opt->config : "(no config)");
            reload(d);
        }
        return;
    }
    if (!d->serving) {
        bs_log_notice(&d->log, "%s: exiting", strsignal(signum));
        return;
    }
    if (d->srv.stopping) {
        bs_log_notice(&d->log, "%s again: already stopping", strsignal(signum));
        return;
    }
    bs_log_notice(&d->log, "%s: stopping", strsignal(signum));
    notify(d, "STOPPING=1\nSTATUS=stopping");
    bs_server_stop(&d->srv, on_stopped, d);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Runs the loop until every handle has closed, then closes it. */
static void drain_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) == UV_EBUSY) {
        uv_walk(loop, close_any, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
    }
}

static void sizer_config(const options *o, bs_sizer_config *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->proc_root = o->proc_root;
    sc->sys_root = o->sys_root;
    sc->sample_ms = o->sample_ms;
    sc->io = !strcmp(o->io, "pread") ? BS_IO_PREAD : !strcmp(o->io, "io_uring") ? BS_IO_URING : BS_IO_AUTO;
    sc->qd = o->io_depth;
    sc->chunk = o->io_chunk;
    sc->policy = o->policy;
    sc->fixed = strcmp(o->budget, "auto") != 0;
    bs_proto_parse_budget(sc->fixed ? o->budget : o->budget_min ? o->budget_min : "min", &sc->min, NULL);
    bs_proto_parse_budget(sc->fixed ? o->budget : o->budget_max ? o->budget_max : "max", &sc->max, NULL);
    /* systemd (254+) names the pressure file and trigger it wants us to use */
    sc->psi_watch = getenv("MEMORY_PRESSURE_WATCH");
    sc->psi_write = getenv("MEMORY_PRESSURE_WRITE");
    sc->idle_after = o->idle_after;
    sc->idle_half_life = o->idle_half_life;
}

/* Every model's working minimum first, then the split of what the budget (or free
 * memory) allows, all read before the loop runs. */
static int load_models(daemon_t *d, const options *o, const bs_sizer_config *sc, bs_err *e)
{
    bs_served_spec conf[BS_MODELS_MAX];
    int n_conf = 0;
    if (o->config && bs_conf_load(o->config, conf, BS_MODELS_MAX, &n_conf, e))
        return -1;
    for (int i = 0; i < o->n_stores + n_conf; i++) {
        const bs_served_spec *sp = i < o->n_stores ? &o->stores[i] : &conf[i - o->n_stores];
        /* a source is built (or found in the cache) off the loop, which serves meanwhile */
        if (sp->source[0] ? bs_models_add(&d->models, sp, e) : bs_models_add_now(&d->models, sp, -1, NULL, e))
            return -1;
    }
    if (d->models.n == 0)
        return bs_err_set(e, "%s lists no model", o->config);
    /* a budget out of what the stores can do is followed as far as it goes, and said so */
    uint64_t floor = 0, full = 0;
    for (int i = 0; i < d->models.n; i++) {
        if (!d->models.m[i]->loaded)
            continue;
        const bs_store *st = &d->models.m[i]->eng.store;
        floor += st->resident[st->min_blocks];
        full += st->resident[st->n_blocks];
        int c, n;
        const bs_budget *b[2] = {&sc->min, &sc->max};
        for (int k = 0; k < (sc->fixed ? 1 : 2); k++) {
            if (b[k]->kind == BS_BUDGET_BYTES)
                continue;
            bs_engine_resolve(st, b[k], false, &n, &c, NULL);
            if ((c < 0 && k == 0) || (c > 0 && k == 1))
                bs_log_warn(&d->log, "budget %s is %s of model %s: using %d blocks", b[k]->text,
                            c < 0 ? "below the smallest working prefix" : "above the whole", d->models.m[i]->spec.name,
                            n);
        }
    }
    if (sc->min.kind == BS_BUDGET_BYTES && sc->min.bytes < floor)
        bs_log_warn(&d->log, "budget %s is below the smallest working prefix of %s (%llu bytes): serving that",
                    sc->min.text, d->models.n == 1 ? "the store" : "the stores together", (unsigned long long)floor);
    if (sc->fixed && sc->min.kind == BS_BUDGET_BYTES && sc->min.bytes > full)
        bs_log_warn(&d->log, "budget %s is above the whole of %s (%llu bytes)", sc->min.text,
                    d->models.n == 1 ? "the store" : "the stores together", (unsigned long long)full);
    int ns[BS_MODELS_MAX];
    bs_sizer_start_split(sc, &d->models, ns);
    for (int i = 0; i < d->models.n; i++) {
        bs_served *m = d->models.m[i];
        if (!m->loaded)
            continue;
        if (bs_models_grow_now(m, ns[i], e))
            return -1;
        const bs_store *st = &m->eng.store;
        int n = m->eng.cur->n;
        bs_log_info(&d->log, "model %s (%s): %d of %d blocks resident, %llu bytes (%.2f bits per weight), context %d",
                    m->spec.name, m->spec.path, n, st->n_blocks, (unsigned long long)st->resident[n],
                    bs_store_bpw(st, n), st->cfg.seq_len);
        d->srv.m.store_bytes_read += bs_store_prefix_end(st, n);
    }
    return 0;
}

/* Loads the store, listens and runs the loop until the server has stopped. 0 after a
 * clean stop, 1 when it could not start. */
static int serve(daemon_t *d, const options *o)
{
    bs_err e;
    int rc = 1, listen_fd = -1;
    char sock[BS_SOCKPATH_MAX > PATH_MAX ? BS_SOCKPATH_MAX : PATH_MAX] = "";

    int act = bs_listen_fd(&listen_fd, &e);
    if (act < 0) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    if (act == 0) {
        bs_sockpath_source src;
        if (bs_sockpath_resolve(o->socket, sock, &src, &e)) {
            bs_log_err(&d->log, "%s", e.msg);
            goto out;
        }
    } else if (o->socket) {
        bs_log_notice(&d->log, "socket activation: serving on the socket systemd passed, not %s", o->socket);
    }

    /* the starting prefixes are read here, before the loop; later sizes come through the sizer */
    notify(d, "STATUS=loading the stores");
    uint64_t t0 = uv_hrtime();
    bs_sizer_config sc;
    sizer_config(o, &sc);
    char cache_dir[PATH_MAX];
    bool need_cache = o->config != NULL;
    for (int i = 0; i < o->n_stores; i++)
        need_cache |= o->stores[i].source[0] != 0;
    if (need_cache && bs_cache_dir(o->cache_dir ? o->cache_dir : getenv("CACHE_DIRECTORY"), cache_dir,
                                   sizeof cache_dir, &e)) {
        if (o->config) {
            cache_dir[0] = '\0';   /* only a [model] with a source will need it */
        } else {
            bs_log_err(&d->log, "%s", e.msg);
            goto out;
        }
    }
    bs_models_io io = {
        .io = sc.io, .qd = sc.qd, .chunk = sc.chunk, .resized = bs_sizer_resized, .resized_ctx = &d->sizer,
        .cache_dir = need_cache && cache_dir[0] ? cache_dir : NULL, .calib = o->calib,
    };
    bs_models_init(&d->models, &d->loop, &d->log, &io, on_model_event, d);
    uint64_t bytes_read = 0;
    if (load_models(d, o, &sc, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    bytes_read = d->srv.m.store_bytes_read;
    int loaded = 0;
    for (int i = 0; i < d->models.n; i++)
        loaded += d->models.m[i]->loaded;
    bs_log_info(&d->log, "%d model%s loaded in %.2f s%s", loaded, loaded == 1 ? "" : "s",
                (double)(uv_hrtime() - t0) / 1e9, loaded < d->models.n ? "; the others are being built" : "");

    /* parallelism comes from running sessions side by side, one thread each */
    bs_blas_threads(1);

    char api_key[256] = "";
    if (o->api_key_file && read_api_key(o->api_key_file, api_key, sizeof api_key, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    bs_server_config cfg = {
        .socket_path = sock,
        .listen_fd = listen_fd,
        .threads = o->threads,
        .lim = o->lim,
        .max_output = o->max_output,
        .grace_ms = o->grace_ms,
        .listen = o->listen,
        .api_key = api_key[0] ? api_key : NULL,
        .idle_timeout_s = o->idle_timeout_s,
        .max_conns_per_user = o->max_conns_user >= 0 ? o->max_conns_user : (o->lim.max_connections + 1) / 2,
        .max_sessions_per_user = o->max_sessions_user >= 0 ? o->max_sessions_user : (o->lim.max_sessions + 1) / 2,
        .trusted = o->trusted,
        .n_trusted = o->n_trusted,
    };
    uid_t defaults[2] = {0, getuid()};
    if (o->n_trusted < 0) {
        cfg.trusted = defaults;
        cfg.n_trusted = 2;
    }
    if (bs_sizer_init(&d->sizer, &d->loop, &d->log, &d->models, &sc, bs_server_kv, &d->srv, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    d->sizing = true;
    const bs_served *m0 = bs_models_default(&d->models);
    if (m0)
        bs_log_info(&d->log, "budget %s; blocks are read with %s%s%s", sc.fixed ? sc.min.text : "auto",
                    bs_res_backend(&m0->res), m0->res.uring ? "" : ": ", m0->res.uring ? "" : m0->res.io_why);
    /* from here the server owns an inherited socket */
    bool fd_passed = listen_fd >= 0;
    listen_fd = -1;
    if (bs_server_init(&d->srv, &d->loop, &d->log, &cfg, &d->models, &d->sizer, &e)) {
        bs_log_err(&d->log, "%s", e.msg);
        goto out;
    }
    d->serving = true;
    d->srv.m.store_bytes_read = bytes_read;

    char status[512];
    snprintf(status, sizeof status, "READY=1\nSTATUS=serving %s%s: %llu bytes, %d threads", d->models.m[0]->spec.name,
             d->models.n > 1 ? " and more" : "", (unsigned long long)bs_models_resident(&d->models), o->threads);
    notify(d, status);
    bs_log_info(&d->log, "listening on %s, %d threads", fd_passed ? "the socket systemd passed" : sock, o->threads);

    uv_run(&d->loop, UV_RUN_DEFAULT);   /* until the server stopped and the signals closed */
    d->serving = false;
    rc = 0;

out:
    if (d->sizing)
        bs_sizer_close(&d->sizer);
    bs_models_close(&d->models);
    if (listen_fd >= 0)
        close(listen_fd);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o))
        return EXIT_USAGE;

    daemon_t *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "bitstackd: out of memory\n");
        return 1;
    }
    bs_log_init(&d->log, o.verbose);
    /* a client that hangs up must not kill the daemon: writes report EPIPE instead */
    signal(SIGPIPE, SIG_IGN);

    /* signals are caught from the start, so that one arriving while the store loads or
     * right after the socket appears stops the daemon cleanly once the loop runs */
    uv_loop_init(&d->loop);
    d->opt = &o;
    const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&d->loop, &d->sig[i]);
        d->sig[i].data = d;
        uv_signal_start(&d->sig[i], on_signal, sigs[i]);
    }

    int rc = serve(d, &o);

    for (int i = 0; i < 3; i++)
        if (!uv_is_closing((uv_handle_t *)&d->sig[i]))
            uv_close((uv_handle_t *)&d->sig[i], NULL);
    drain_loop(&d->loop);
    bs_server_free(&d->srv);
    /* only now: a read still in flight at the stop targeted the engines' mappings */
    bs_models_free(&d->models);
    bool abandoned = d->models.abandoned > 0;
    free(d);
    if (abandoned) {
        /* a model build still computes on its thread: exit handlers (OpenBLAS's among them)
         * must not run under it. Its lock goes with the process; its .tmp is rewritten by
         * the next build. */
        fflush(stderr);
        _exit(rc);
    }
    return rc;
}
