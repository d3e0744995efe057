/* Forward-pass speed: prefill and decode tokens/s for stories260K and for a model of
 * TinyLlama-1.1B's shape with random weights, at 1 and 2 BLAS threads, and how far
 * decode sits from the memory roofline: the time to stream every weight a decode step
 * reads once from RAM, at a read bandwidth measured in the same run.
 * With --store: a stacked store at d planes per matrix (each d of --planes: the prefix
 * of the blocks of levels < d) through the bit-plane kernels, rows split over a team of
 * 1 and 2 threads (OpenBLAS, for the classifier, set to the same count), against the
 * fp32 model of the same shape (random weights) in the same run.
 *
 * Usage: bench_forward [--quick] [--reps N] [--decode N] [--model PATH]
 *                      [--store S.bstk [--planes 2,3,4,8]] [--prompt N]
 *   --quick   a small synthetic shape and a small bandwidth buffer (smoke test, seconds)
 *   --reps    timed repeats per model and thread count (min and median are printed)
 *   --decode  single-token steps after the prompt
 *   --model   the stories260K file (default $BS_SHARED/models/stories260K.bin)
 *   --store   a store (e.g. bs-synth-store --shape tinyllama-1.1b --levels 8): it and the
 *             fp32 model of its shape replace stories260K and the synthetic model
 *   --prompt  prompt tokens, one bs_forward call (default 128; 64 with --store)
 * Exits non-zero when a forward call fails or returns a non-finite logit. */
#include "bench/common.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/stacked.h"
#include "model/store.h"
#include "kernels/team.h"
#include "kernels/ops.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PROMPT = 512, MAX_REPS = 64, N_THREADS = 2, MAX_PLANES = 8 };

typedef struct {
    int quick;
    int reps;
    int decode;
    int prompt;
    const char *model_path;
    const char *store;
    int planes[MAX_PLANES], n_planes;
} bench_opts;

/* One model at one thread count. */
typedef struct {
    const char *name;
    int threads;
    double prefill_best, prefill_med;   /* seconds for the whole prompt */
    double decode_best, decode_med;     /* seconds per token */
    double weight_bytes;                /* read by one decode step */
    double prefill_flops;
    int prompt;
} bench_row;

/* Smallest and median of v[0..n); sorts v. */
static void min_median(double *v, int n, double *min, double *med)
{
    bench_sort(v, n);
    *min = v[0];
    *med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- machine ---- */

static void print_machine(void)
{
    char cpu[256], mem[128], date[64];
    bench_proc_field("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    bench_proc_field("/proc/meminfo", "MemTotal", mem, sizeof mem);
    /* what nproc counts: the CPUs this process may run on */
    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                            : (int)sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname u;
    if (uname(&u) != 0)
        snprintf(u.release, sizeof u.release, "unknown");
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
    printf("machine: %s | %d cores (nproc) | MemTotal %s (%.1f GiB) | kernel %s %s | %s\n", cpu, cores, mem,
           atof(mem) / (1024.0 * 1024.0), u.sysname, u.release, date);
    printf("openblas: %s (core %s)\n", openblas_get_config(), openblas_get_corename());
}

/* Other work on the machine skews every figure here; the load average makes that visible. */
static void print_load(const char *when)
{
    char buf[128] = "unknown";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(buf, sizeof buf, f))
            buf[strcspn(buf, "\n")] = '\0';
        fclose(f);
    }
    printf("load average %s: %s\n", when, buf);
}

/* ---- memory read bandwidth ---- */

typedef struct {
    const float *p;
    size_t n;
    float sum;
} bw_slice;

/* Sums with independent vector accumulators so the loop is bound by loads, not by
 * the latency of one chain of float adds. */
typedef float bw_vec __attribute__((vector_size(32)));

static void *bw_sum(void *arg)
{
    bw_slice *s = arg;
    bw_vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v;
    size_t step = 4 * sizeof(bw_vec) / sizeof(float), i = 0;
    for (; i + step <= s->n; i += step) {
        memcpy(&v, s->p + i, sizeof v); a0 += v;
        memcpy(&v, s->p + i + 8, sizeof v); a1 += v;
        memcpy(&v, s->p + i + 16, sizeof v); a2 += v;
        memcpy(&v, s->p + i + 24, sizeof v); a3 += v;
    }
    bw_vec a = a0 + a1 + a2 + a3;
    float sum = 0.0f;
    for (int k = 0; k < 8; k++)
        sum += a[k];
    for (; i < s->n; i++)
        sum += s->p[i];
    s->sum = sum;
    return NULL;
}

/* One pass over buf with nt threads, each reading a contiguous slice; returns seconds,
 * or a negative number when a thread could not be started. */
static double bw_pass(const float *buf, size_t n, int nt, float *sink)
{
    pthread_t th[N_THREADS];
    bw_slice sl[N_THREADS];
    int started = 0;
    double t0 = bs_now();
    for (; started < nt; started++) {
        size_t lo = n / nt * started, hi = started == nt - 1 ? n : n / nt * (started + 1);
        sl[started] = (bw_slice){ buf + lo, hi - lo, 0.0f };
        if (pthread_create(&th[started], NULL, bw_sum, &sl[started]) != 0)
            break;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double dt = bs_now() - t0;
    for (int i = 0; i < started; i++)
        *sink += sl[i].sum;
    return started == nt ? dt : -1.0;
}

/* Best read bandwidth (bytes/s) at 1..N_THREADS threads; raises bw[1..] to it.
 * `when` names the measurement in the output. */
static int measure_bandwidth(const bench_opts *o, const char *when, double *bw)
{
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0)
        llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t bytes = (size_t)1 << 30;
    if (llc > 0 && (size_t)llc * 4 > bytes)
        bytes = (size_t)llc * 4;
    if (bytes > (size_t)8 << 30)
        bytes = (size_t)8 << 30;
    if (o->quick)
        bytes = (size_t)64 << 20;
    int passes = o->quick ? 2 : 5;
    size_t n = bytes / sizeof(float);
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "bench_forward: out of memory for a %zu MiB bandwidth buffer\n", bytes >> 20);
        return -1;
    }
    fprintf(stderr, "bandwidth: filling %zu MiB (LLC reported %ld KiB)...\n", bytes >> 20, llc / 1024);
    /* written, not just allocated: untouched pages all map the one zero page, which caches */
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7) * 0.125f;
    float sink = 0.0f;
    printf("memory read bandwidth %s: sum of a %zu MiB buffer (LLC reported %ld KiB), best of %d passes:",
           when, bytes >> 20, llc / 1024, passes);
    for (int nt = 1; nt <= N_THREADS; nt++) {
        double best = 1e30;
        for (int p = 0; p < passes; p++) {
            double dt = bw_pass(buf, n, nt, &sink);
            if (dt < 0) {
                fprintf(stderr, "bench_forward: cannot start %d reader threads\n", nt);
                free(buf);
                return -1;
            }
            if (dt < best)
                best = dt;
        }
        double got = (double)bytes / best;
        if (got > bw[nt])
            bw[nt] = got;
        printf(" %d thread%s %.2f GB/s%s", nt, nt > 1 ? "s" : "", got / 1e9, nt < N_THREADS ? "," : "");
    }
    printf("%s\n", o->quick ? " (quick: buffer fits in cache, not a RAM figure)" : "");
    free(buf);
    if (!isfinite(sink))
        fprintf(stderr, "bandwidth: sum not finite (%g)\n", sink);
    return 0;
}

/* ---- forward timing ---- */

/* Every fp32 weight one decode step reads: the linears, the classifier, the norms. */
static double decode_weight_bytes(const bs_model *m)
{
    const bs_config *c = &m->cfg;
    double floats = (double)bs_model_linear_params(c) + (double)c->vocab_size * c->dim +
                    (double)(2 * c->n_layers + 1) * c->dim;
    return floats * sizeof(float);
}

/* Multiply-adds of a prefill of n tokens: linears, causal attention, one classifier row. */
static double prefill_flops(const bs_config *c, int n)
{
    double lin = 2.0 * (double)bs_model_linear_params(c) * n;
    double att = 4.0 * c->n_layers * (double)c->dim * n * (n + 1) / 2.0;
    return lin + att + 2.0 * (double)c->vocab_size * c->dim;
}

/* Checks one row of logits; returns the greedy next token or -1 on a non-finite value. */
static int check_logits(const float *logits, int vocab, const char *what, bs_err *e)
{
    for (int i = 0; i < vocab; i++)
        if (!isfinite(logits[i]))
            return bs_err_set(e, "%s: logit %d is %g", what, i, (double)logits[i]);
    return bs_argmax(logits, vocab);
}

/* Prefill the prompt at position 0, then decode greedily; returns -1 with e set on failure.
 * *prefill is seconds for the prompt, *per_tok seconds per decode step. */
static int run_once(const bs_model *m, bs_state *s, const int *prompt, int nprompt, int ndecode,
                    double *prefill, double *per_tok, bs_err *e)
{
    int vocab = m->cfg.vocab_size;
    double t0 = bs_now();
    const float *lg = bs_forward(m, s, prompt, nprompt, 0, 0, e);
    double t1 = bs_now();
    if (!lg)
        return bs_err_wrap(e, "prefill of %d tokens", nprompt);
    int tok = check_logits(lg, vocab, "prefill", e);
    if (tok < 0)
        return -1;
    double t2 = bs_now();
    for (int i = 0; i < ndecode; i++) {
        lg = bs_forward(m, s, &tok, 1, nprompt + i, 0, e);
        if (!lg)
            return bs_err_wrap(e, "decode step %d", i);
        if ((tok = check_logits(lg, vocab, "decode", e)) < 0)
            return -1;
    }
    double t3 = bs_now();
    *prefill = t1 - t0;
    *per_tok = ndecode > 0 ? (t3 - t2) / ndecode : 0.0;
    return 0;
}

static int bench_model(const bs_model *m, const char *name, const bench_opts *o, int threads,
                       bs_team *team, bench_row *row, bs_err *e)
{
    const bs_config *c = &m->cfg;
    bs_state s;
    int P = o->prompt;
    if (bs_state_init(&s, c, P + o->decode, P, e))
        return -1;
    if (team && bs_state_use_team(&s, team, e)) {
        bs_state_free(&s);
        return -1;
    }
    int prompt[MAX_PROMPT];
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < P; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        prompt[i] = 1 + (int)((x >> 33) % (uint64_t)(c->vocab_size - 1));
    }
    bs_blas_threads(team ? 1 : threads);   /* the team splits the dense classifier too */
    double pf[MAX_REPS], dc[MAX_REPS], d0;
    /* warm-up: wakes the BLAS threads and touches the state buffers outside the clock */
    int rc = run_once(m, &s, prompt, 8, 2, &pf[0], &d0, e);
    for (int r = 0; rc == 0 && r < o->reps; r++) {
        fprintf(stderr, "%s, %d thread%s: repeat %d/%d\n", name, threads, threads > 1 ? "s" : "", r + 1, o->reps);
        rc = run_once(m, &s, prompt, P, o->decode, &pf[r], &dc[r], e);
    }
    bs_state_free(&s);
    if (rc)
        return bs_err_wrap(e, "%s at %d threads", name, threads);
    row->name = name;
    row->threads = threads;
    row->prompt = P;
    min_median(pf, o->reps, &row->prefill_best, &row->prefill_med);
    min_median(dc, o->reps, &row->decode_best, &row->decode_med);
    row->weight_bytes = decode_weight_bytes(m);
    row->prefill_flops = prefill_flops(c, P);
    return 0;
}

static void print_shape(const bs_model *m, const char *name, const char *origin)
{
    const bs_config *c = &m->cfg;
    size_t params = bs_model_linear_params(c) + (size_t)c->vocab_size * c->dim * (m->cls == m->tok_emb ? 1 : 2) +
                    (size_t)(2 * c->n_layers + 1) * c->dim;
    printf("model %s: %s\n", name, origin);
    printf("  dim %d, hidden %d, layers %d, heads %d, kv heads %d, head_dim %d, vocab %d, classifier %s; "
           "%.1f M params (%.1f MB fp32), %.1f MB read per decode step (linears + classifier + norms)\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
           m->cls == m->tok_emb ? "shared with embedding" : "separate", params / 1e6,
           params * 4.0 / 1e6, decode_weight_bytes(m) / 1e6);
}

/* stacked: split the rows over a team of each thread count (OpenBLAS, for the dense
 * classifier, gets the same count; the team sleeps on a condition variable between
 * products and OpenBLAS runs only between them, so the two never oversubscribe). */
static int bench_all_threads(const bs_model *m, const char *name, const bench_opts *o, int stacked,
                             bench_row *rows, int *nrows, bs_err *e)
{
    for (int t = 1; t <= N_THREADS; t++) {
        bs_team *team = NULL;
        if (stacked && t > 1 && !(team = bs_team_new(t, e)))
            return -1;
        int rc = bench_model(m, name, o, t, team, &rows[*nrows], e);
        bs_team_free(team);
        if (rc)
            return -1;
        (*nrows)++;
    }
    return 0;
}

/* Blocks [0, n) of s with every matrix at exactly d levels, or -1 (the stack is not
 * level by level, or has fewer levels). */
static int prefix_of_planes(const bs_store *s, int d)
{
    int n = 0;
    while (n < s->n_blocks && s->blocks[n].level < d)
        n++;
    int *depth = calloc((size_t)s->n_matrices, sizeof(int));
    if (!depth)
        return -1;
    for (int i = 0; i < n; i++)
        depth[s->blocks[i].matrix]++;
    int ok = 1;
    for (int i = 0; i < s->n_matrices; i++)
        ok &= depth[i] == d;
    free(depth);
    return ok ? n : -1;
}

/* Every byte one decode step of a stacked prefix reads: its blocks, the classifier and
 * the norms (fp32). */
static double stacked_weight_bytes(const bs_store *s, int n)
{
    const bs_config *c = &s->cfg;
    return (double)bs_store_prefix_end(s, n) +
           ((double)c->vocab_size * c->dim + (double)(2 * c->n_layers + 1) * c->dim) * sizeof(float);
}

/* The store at each --planes depth, then the fp32 model of its shape. */
static int bench_store(const bench_opts *o, bench_row *rows, int *nrows, char names[][32], bs_err *e)
{
    bs_store s;
    if (bs_store_open(&s, o->store, e))
        return -1;
    int nmax = 0;
    for (int i = 0; i < o->n_planes; i++) {
        int n = prefix_of_planes(&s, o->planes[i]);
        if (n < 0) {
            bs_store_close(&s);
            return bs_err_set(e, "%s: no prefix with every matrix at %d planes", o->store, o->planes[i]);
        }
        nmax = n > nmax ? n : nmax;
    }
    uint8_t *buf = malloc(bs_store_prefix_end(&s, nmax) + 64);
    bs_stacked sm;
    int rc = -1;
    fprintf(stderr, "reading %d blocks of %s...\n", nmax, o->store);
    if (!buf)
        bs_err_set(e, "out of memory for the store's blocks");
    else if (bs_store_read_prefix(&s, nmax, buf, e) == 0 && bs_stacked_init(&sm, &s, buf, nmax, e) == 0) {
        rc = 0;
        print_shape(&sm.model, "store", o->store);
        for (int i = 0; rc == 0 && i < o->n_planes; i++) {
            int n = prefix_of_planes(&s, o->planes[i]);
            bs_stacked_set_prefix(&sm, n);
            snprintf(names[i], 32, "stack %dp (%.2f bpw)", o->planes[i], bs_store_bpw(&s, n));
            printf("%s: %d blocks, %.1f MB read per decode step\n", names[i], n, stacked_weight_bytes(&s, n) / 1e6);
            int first = *nrows;
            rc = bench_all_threads(&sm.model, names[i], o, 1, rows, nrows, e);
            for (int r = first; r < *nrows; r++)
                rows[r].weight_bytes = stacked_weight_bytes(&s, n);
        }
        bs_stacked_free(&sm);
    }
    free(buf);
    bs_config c = s.cfg;
    bs_store_close(&s);
    if (rc)
        return -1;
    bs_model m;
    if (bs_model_alloc(&m, &c, 0, e))
        return -1;
    fprintf(stderr, "fp32: filling random weights of the store's shape...\n");
    bs_model_randomize(&m, 20240601);
    rc = bench_all_threads(&m, "fp32 (same shape)", o, 0, rows, nrows, e);
    bs_model_free(&m);
    return rc;
}

/* TinyLlama-1.1B's shape, or a small one for --quick. */
static int make_synthetic(bs_model *m, int quick, bs_err *e)
{
    bs_config c = quick
        ? (bs_config){ .dim = 256, .hidden_dim = 768, .n_layers = 4, .n_heads = 8, .n_kv_heads = 4,
                       .vocab_size = 1000, .seq_len = 512, .rope_theta = 10000.0f, .rms_eps = 1e-5f }
        : (bs_config){ .dim = 2048, .hidden_dim = 5632, .n_layers = 22, .n_heads = 32, .n_kv_heads = 4,
                       .vocab_size = 32000, .seq_len = 2048, .rope_theta = 10000.0f, .rms_eps = 1e-5f };
    if (bs_config_check(&c, "synthetic model", e) || bs_model_alloc(m, &c, 0, e))
        return -1;
    fprintf(stderr, "synthetic: filling %.2f GB of random weights...\n",
            (bs_model_linear_params(&c) + 2.0 * c.vocab_size * c.dim) * 4.0 / 1e9);
    bs_model_randomize(m, 20240601);
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_forward [--quick] [--reps N (1..%d)] [--decode N] [--model PATH]\n"
                    "                     [--store S.bstk [--planes 2,3,4,8]] [--prompt N (1..%d)]\n",
            MAX_REPS, MAX_PROMPT);
}

static int parse_planes(const char *arg, bench_opts *o)
{
    o->n_planes = 0;
    for (const char *p = arg; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 16 || o->n_planes == MAX_PLANES || (*end && *end != ','))
            return -1;
        o->planes[o->n_planes++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return o->n_planes ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_opts o = { .quick = 0, .reps = -1, .decode = -1, .prompt = -1, .model_path = NULL,
                     .planes = {2, 3, 4, 8}, .n_planes = 4 };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o.quick = 1;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, MAX_REPS, &o.reps))
                return usage(), 2;
        } else if (strcmp(argv[i], "--decode") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 4096, &o.decode))
                return usage(), 2;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            o.model_path = argv[++i];
        } else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
            o.store = argv[++i];
        } else if (strcmp(argv[i], "--planes") == 0 && i + 1 < argc) {
            if (parse_planes(argv[++i], &o))
                return usage(), 2;
        } else if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, MAX_PROMPT, &o.prompt))
                return usage(), 2;
        } else {
            return usage(), 2;
        }
    }
    if (o.reps < 0)
        o.reps = o.quick ? 2 : 3;
    if (o.decode < 0)
        o.decode = o.quick ? 8 : 32;
    if (o.prompt < 0)
        o.prompt = o.store ? 64 : 128;
    char pathbuf[1024];
    if (!o.model_path) {
        const char *root = getenv("BS_SHARED");
        snprintf(pathbuf, sizeof pathbuf, "%s/models/stories260K.bin", root ? root : BS_SHARED_DEFAULT);
        o.model_path = pathbuf;
    }

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("bench_forward: fp32 forward pass, linears through OpenBLAS (sgemm for prefill, sgemv for decode)%s\n",
           o.quick ? " [--quick]" : "");
    print_machine();
    print_load("at start");
    /* measured before and after the models, best kept: a busy moment lowers one, not both */
    double bw[N_THREADS + 1] = {0};
    if (measure_bandwidth(&o, "before", bw))
        return 1;
    printf("prompt %d tokens in one bs_forward call (max_batch %d), then %d single-token decode steps "
           "(greedy); %d timed repeats after a warm-up\n", o.prompt, o.prompt, o.decode, o.reps);

    bs_err e = {{0}};
    bench_row rows[(MAX_PLANES + 2) * N_THREADS];
    int nrows = 0, rc = 0;
    bs_model m;
    char names[MAX_PLANES][32];
    if (o.store) {
        rc = bench_store(&o, rows, &nrows, names, &e);
        goto report;
    }

    fprintf(stderr, "loading %s...\n", o.model_path);
    if (bs_model_load(&m, o.model_path, &e)) {
        fprintf(stderr, "bench_forward: %s\n", e.msg);
        return 1;
    }
    print_shape(&m, "stories260K", o.model_path);
    rc = bench_all_threads(&m, "stories260K", &o, 0, rows, &nrows, &e);
    bs_model_free(&m);

    const char *syn = o.quick ? "synthetic-small" : "synthetic-tinyllama";
    if (rc == 0 && (rc = make_synthetic(&m, o.quick, &e)) == 0) {
        print_shape(&m, syn, o.quick ? "synthetic random weights, small shape (--quick)"
                                     : "synthetic random weights, TinyLlama-1.1B shape");
        rc = bench_all_threads(&m, syn, &o, 0, rows, &nrows, &e);
        bs_model_free(&m);
    }
report:
    if (rc) {
        fprintf(stderr, "bench_forward: %s\n", e.msg);
        return 1;
    }
    if (measure_bandwidth(&o, "after", bw))
        return 1;
    double bw_best = bw[1] > bw[2] ? bw[1] : bw[2];

    printf("\n%-20s %3s | %-19s %7s | %-19s %8s | %8s %6s %6s\n", "", "", "prefill tok/s", "GFLOP/s",
           "decode tok/s", "ms/tok", "ideal", "ratio", "ratio");
    printf("%-20s %3s | %9s %9s %7s | %9s %9s %8s | %8s %6s %6s\n", "model", "thr", "best", "median", "best",
           "best", "median", "best", "ms/tok", "bestbw", "bw@thr");
    for (int i = 0; i < nrows; i++) {
        const bench_row *r = &rows[i];
        double ideal = r->weight_bytes / bw_best, ideal_thr = r->weight_bytes / bw[r->threads];
        printf("%-20s %3d | %9.1f %9.1f %7.1f | %9.2f %9.2f %8.3f | %8.3f %6.2f %6.2f\n", r->name, r->threads,
               r->prompt / r->prefill_best, r->prompt / r->prefill_med, r->prefill_flops / r->prefill_best / 1e9,
               1.0 / r->decode_best, 1.0 / r->decode_med, r->decode_best * 1e3, ideal * 1e3,
               r->decode_best / ideal, r->decode_best / ideal_thr);
    }
    printf("ideal ms/tok = bytes read per decode step / best bandwidth measured (%.2f GB/s; bw@thr: %.2f and %.2f GB/s at 1 and 2 threads); ratio = best decode "
           "time per token / ideal (1.00 = at the memory roofline; below 1 means the weights were served "
           "from cache)\n", bw_best / 1e9, bw[1] / 1e9, bw[2] / 1e9);
    if (o.store) {
        /* each stacked row against the fp32 rows of the same thread count, same run */
        const bench_row *f[N_THREADS + 1] = {0};
        for (int i = 0; i < nrows; i++)
            if (!strncmp(rows[i].name, "fp32", 4))
                f[rows[i].threads] = &rows[i];
        printf("\n%-24s %3s | %9s %8s %9s %9s %8s | %9s\n", "vs fp32, same run", "thr", "decode", "MB/tok",
               "GB/s", "of bw", "x fp32", "prefill x");
        for (int i = 0; i < nrows; i++) {
            const bench_row *r = &rows[i], *d = f[r->threads];
            if (!d || r == d)
                continue;
            double gbs = r->weight_bytes / r->decode_best / 1e9;
            printf("%-24s %3d | %9.2f %8.1f %9.2f %9.2f %8.2f | %9.2f\n", r->name, r->threads, 1.0 / r->decode_best,
                   r->weight_bytes / 1e6, gbs, gbs / (bw_best / 1e9), d->decode_best / r->decode_best,
                   d->prefill_best / r->prefill_best);
        }
        printf("of bw = effective GB/s (bytes read per decode step / time) / the best read bandwidth measured "
               "in this run; x fp32 = fp32 time / stack time (decode: per token, prefill: %d-token prompt)\n",
               o.prompt);
    }
    print_load("at end");
    return 0;
}
