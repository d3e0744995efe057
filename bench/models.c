/* bench_models: several models under one byte budget (issue 17). For totals from the sum
 * of the models' floors to the sum of their full stacks, it takes the split the daemon's
 * sizer would choose (bs_policy_alloc over each store's loss table, weights 1, every model
 * between its smallest working prefix and its full stack) and an equal-bytes split (each
 * model an equal share, longest prefix that fits; a model whose floor is above its share
 * takes its floor, one whose full stack is below it passes the rest on), and measures
 * every model's perplexity at the prefix each split gives it (the store-eval path of
 * `bitstackctl eval --store`), against its float model's perplexity measured in the same run.
 *
 * The summary of a split is sum_i ln(ppl_i / float_i): the nats per token the split costs,
 * added over the models (each model's text weighs the same).
 *
 *   bench_models [--points N] [--ctx N] [--max-chunks N] [--threads N] [--text T]
 *                [--oracle STEP] [--curves STEP] [--proxy matrix|calib|hybrid [--calib T]
 *                [--calib-windows N]] STORE FLOAT STORE FLOAT [STORE FLOAT ...]
 *
 * --oracle STEP (two models only): also the best split measured on a grid, the first
 * model at every STEP-th prefix (and at the splits' prefixes), the second taking the
 * longest prefix that fits what is left: how far each split is from the best one.
 * --proxy matrix|calib|hybrid: also the greedy split over another loss table, to test a fix:
 *   matrix  each matrix's calibration error relative to its own at depth 0, averaged over
 *           the matrices (the store's table sums absolute errors, so the matrices with
 *           the largest outputs, wq and wk, drown the others);
 *   calib   the log-perplexity of --calib text (default tinystories_train_head.txt, the
 *           calibration text, --calib-windows windows, 8) measured at every n_matrices-th
 *           prefix (level boundaries in a sort=level store) and interpolated in bytes
 *           between them: what a compressor could record at little cost;
 *   hybrid  calib at those prefixes, and between them the shape of the matrix proxy
 *           (where it falls, the loss falls).
 * --curves STEP: first, every model's loss table against its measured perplexity at
 * every STEP-th prefix (how well the proxy the split runs on tracks what it stands for). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/common.h"
#include "daemon/policy.h"
#include "kernels/ops.h"
#include "model/engine.h"
#include "model/ppl.h"
#include "model/store_eval.h"

#ifndef BS_SHARED_DEFAULT
#define BS_SHARED_DEFAULT "../shared"
#endif

#ifndef BS_BUILDTYPE
#define BS_BUILDTYPE "unknown"
#endif

#define MAX_MODELS 8

typedef struct {
    const char *store_path, *float_path;
    char name[64];
    bs_engine eng;
    bool open;
    double *loss;         /* bs_store_loss_table: the sizer's proxy */
    bool estimated;
    double *alt;          /* --proxy: another loss table to split by, or NULL */
    int *ids, nids;
    double float_ppl;
    double *ppl;          /* [n_blocks + 1], measured on demand; 0: not yet */
    int lo, hi;           /* the range the daemon gives a model with no min/max */
    int evals;
} bench_model;

typedef struct {
    int ctx, chunks;
    double eval_seconds;
} bench_run;

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: bench_models [--points N] [--ctx N] [--max-chunks N] [--threads N] [--text T]\n"
               "                    [--oracle STEP] [--curves STEP] [--proxy matrix|calib|hybrid [--calib T] [--calib-windows N]]\n"
               "                    STORE FLOAT STORE FLOAT [STORE FLOAT ...]\n"
               "  STORE a .bstk, FLOAT the float model it was compressed from (its perplexity is the\n"
               "  reference); the text defaults to %s/data/tinystories_valid_head.txt\n",
            BS_SHARED_DEFAULT);
    return rc;
}

/* The model's perplexity at prefix n, measured once. */
static int ppl_at(bench_model *m, bench_run *run, int n, double *out, bs_err *e)
{
    if (m->ppl[n] == 0) {
        bs_ppl_result r;
        double t0 = bs_now();
        if (bs_engine_ppl(&m->eng, n, m->ids, m->nids, run->ctx, run->chunks, &r, e))
            return -1;
        run->eval_seconds += bs_now() - t0;
        m->ppl[n] = r.ppl;
        m->evals++;
    }
    *out = m->ppl[n];
    return 0;
}

static int model_open(bench_model *m, const char *text, size_t len, const bench_run *run, bs_err *e)
{
    if (bs_engine_open(&m->eng, m->store_path, e))
        return -1;
    m->open = true;
    const bs_store *s = &m->eng.store;
    const char *base = strrchr(m->store_path, '/') ? strrchr(m->store_path, '/') + 1 : m->store_path;
    snprintf(m->name, sizeof m->name, "%s", base);
    char *dot = strrchr(m->name, '.');
    if (dot && dot != m->name)
        *dot = '\0';
    m->loss = bs_store_loss_table(s, &m->estimated);
    m->ppl = calloc((size_t)s->n_blocks + 1, sizeof *m->ppl);
    if (!m->loss || !m->ppl)
        return bs_err_set(e, "out of memory");
    m->lo = s->min_blocks;
    m->hi = s->n_blocks;
    if (bs_tok_encode(s->tok, text, len, 0, 1, &m->ids, &m->nids, e))
        return -1;
    bs_model fm;
    if (bs_model_load(&fm, m->float_path, e))
        return -1;
    bs_ppl_result r;
    int rc = bs_ppl_text(&fm, s->tok, text, len, run->ctx, run->chunks, &r, e);
    bs_model_free(&fm);
    if (rc)
        return -1;
    m->float_ppl = r.ppl;
    return 0;
}

/* --proxy matrix: the mean over matrices of err_m(depth) / err_m(0), from info.errors. */
static int proxy_matrix(bench_model *m, bs_err *e)
{
    const bs_store *s = &m->eng.store;
    const json_t *errs = json_object_get(json_object_get(s->meta, "info"), "errors");
    if (!json_is_object(errs))
        return bs_err_set(e, "%s: no info.errors: --proxy matrix needs them", m->store_path);
    int *depth = calloc((size_t)s->n_matrices, sizeof *depth);
    m->alt = malloc(sizeof *m->alt * ((size_t)s->n_blocks + 1));
    if (!depth || !m->alt) {
        free(depth);
        return bs_err_set(e, "out of memory");
    }
    double sum = s->n_matrices;   /* every matrix at depth 0: 1 each */
    m->alt[0] = 1;
    for (int b = 0; b < s->n_blocks; b++) {
        int mi = s->blocks[b].matrix, d = depth[mi]++;
        /* bs_store_open checked that every matrix has levels + 1 numbers */
        const json_t *a = json_object_get(errs, s->mats[mi].name);
        double e0 = json_number_value(json_array_get(a, 0));
        double step = json_number_value(json_array_get(a, (size_t)d)) - json_number_value(json_array_get(a, (size_t)d + 1));
        sum -= e0 > 0 ? step / e0 : 0;
        m->alt[b + 1] = sum / s->n_matrices;
    }
    free(depth);
    return 0;
}

/* --proxy calib: ln ppl of the calibration text at every n_matrices-th prefix (and the
 * last), linear in bytes between them, or (shape: the matrix proxy) following shape. */
static int proxy_calib(bench_model *m, const char *text, size_t len, int ctx, int windows, const double *shape,
                       bs_err *e)
{
    const bs_store *s = &m->eng.store;
    int *ids = NULL, nids = 0;
    if (bs_tok_encode(s->tok, text, len, 0, 1, &ids, &nids, e))
        return -1;
    m->alt = malloc(sizeof *m->alt * ((size_t)s->n_blocks + 1));
    if (!m->alt) {
        free(ids);
        return bs_err_set(e, "out of memory");
    }
    int step = s->n_matrices > 0 ? s->n_matrices : 1, prev = -1;
    for (int n = m->lo; n <= m->hi; n = n == m->hi ? n + 1 : n + step > m->hi ? m->hi : n + step) {
        bs_ppl_result r;
        if (bs_engine_ppl(&m->eng, n, ids, nids, ctx, windows, &r, e)) {
            free(ids);
            return -1;
        }
        m->alt[n] = log(r.ppl);
        for (int j = prev + 1; prev >= 0 && j < n; j++) {
            double t = (double)(s->resident[j] - s->resident[prev]) / (double)(s->resident[n] - s->resident[prev]);
            if (shape && shape[prev] > shape[n])
                t = (shape[prev] - shape[j]) / (shape[prev] - shape[n]);
            m->alt[j] = m->alt[prev] + t * (m->alt[n] - m->alt[prev]);
        }
        prev = n;
    }
    for (int j = 0; j < m->lo; j++)   /* never split over: below the floor */
        m->alt[j] = m->alt[m->lo];
    free(ids);
    return 0;
}

static void model_close(bench_model *m)
{
    if (m->open)
        bs_engine_close(&m->eng);
    free(m->loss);
    free(m->alt);
    free(m->ppl);
    free(m->ids);
}

static uint64_t bytes_of(const bench_model *m, int n)
{
    return m->eng.store.resident[n];
}

/* The daemon's split: bs_policy_alloc over the loss tables (alt: the --proxy ones), weights 1. */
static int split_greedy(bench_model *ms, int k, uint64_t total, bool alt, int *n)
{
    bs_alloc_model am[MAX_MODELS];
    size_t cells = 0;
    for (int i = 0; i < k; i++) {
        am[i] = (bs_alloc_model){ms[i].eng.store.resident, alt ? ms[i].alt : ms[i].loss, ms[i].lo, ms[i].hi, 1.0};
        cells += (size_t)(ms[i].hi - ms[i].lo + 1);
    }
    int *scratch = malloc(sizeof *scratch * cells);
    if (!scratch)
        return -1;
    bs_policy_alloc(am, k, total, n, scratch);
    free(scratch);
    return 0;
}

/* Equal bytes: every model the same share of what is left; one whose floor is above the
 * share takes its floor, one whose full stack is below it takes that, and the share of
 * the others is worked out again without them. */
static void split_equal(const bench_model *ms, int k, uint64_t total, int *n)
{
    bool settled[MAX_MODELS] = {false};
    uint64_t left = total;
    int open = k;
    for (bool changed = true; changed && open > 0;) {
        changed = false;
        uint64_t share = left / (uint64_t)open;
        for (int i = 0; i < k; i++) {
            if (settled[i])
                continue;
            int pin = bytes_of(&ms[i], ms[i].lo) >= share ? ms[i].lo : bytes_of(&ms[i], ms[i].hi) <= share ? ms[i].hi : -1;
            if (pin < 0)
                continue;
            n[i] = pin;
            settled[i] = true;
            left = left > bytes_of(&ms[i], pin) ? left - bytes_of(&ms[i], pin) : 0;
            open--;
            changed = true;
            break;   /* the share changes: look again */
        }
    }
    uint64_t share = open > 0 ? left / (uint64_t)open : 0;
    for (int i = 0; i < k; i++)
        if (!settled[i]) {
            int x = bs_engine_n_for_bytes(&ms[i].eng.store, (double)share);
            n[i] = x < ms[i].lo ? ms[i].lo : x > ms[i].hi ? ms[i].hi : x;
        }
}

/* sum_i ln(ppl_i / float_i) and the mean of ppl_i / float_i - 1 at prefixes n. */
static int score(bench_model *ms, int k, bench_run *run, const int *n, double *ppl, double *nats, double *rel,
                 bs_err *e)
{
    *nats = *rel = 0;
    for (int i = 0; i < k; i++) {
        if (ppl_at(&ms[i], run, n[i], &ppl[i], e))
            return -1;
        *nats += log(ppl[i] / ms[i].float_ppl);
        *rel += (ppl[i] / ms[i].float_ppl - 1) / k;
    }
    return 0;
}

static void print_row(const bench_model *ms, int k, uint64_t total, const char *split, const int *n, const double *ppl,
                      double nats, double rel)
{
    printf("| %llu | %s |", (unsigned long long)total, split);
    uint64_t used = 0;
    for (int i = 0; i < k; i++) {
        const bs_store *s = &ms[i].eng.store;
        used += s->resident[n[i]];
        printf(" %d | %llu | %.2f | %.3g | %.4f |", n[i], (unsigned long long)s->resident[n[i]], bs_store_bpw(s, n[i]),
               ms[i].loss[n[i]], ppl[i]);
    }
    printf(" %llu | %.4f | %.2f%% |\n", (unsigned long long)used, nats, 100 * rel);
}

/* The best split on a grid (two models): the first at lo, lo+step, ... and at the prefixes
 * in `also`, the second at the longest prefix that fits the rest. */
static int oracle(bench_model *ms, bench_run *run, uint64_t total, int step, const int *also, int n_also, int *best,
                  bs_err *e)
{
    double best_nats = INFINITY;
    bench_model *a = &ms[0], *b = &ms[1];
    int cand[4096], nc = 0;
    for (int x = a->lo; x <= a->hi && nc < 4000; x += step)
        cand[nc++] = x;
    cand[nc++] = a->hi;
    for (int j = 0; j < n_also; j++)
        cand[nc++] = also[j];
    for (int j = 0; j < nc; j++) {
        int na = cand[j];
        if (bytes_of(a, na) + bytes_of(b, b->lo) > total && na != a->lo)
            continue;
        double rest = (double)total - (double)bytes_of(a, na);
        int nb = bs_engine_n_for_bytes(&b->eng.store, rest);
        nb = nb < b->lo ? b->lo : nb > b->hi ? b->hi : nb;
        int n[2] = {na, nb};
        double ppl[2], nats, rel;
        if (score(ms, 2, run, n, ppl, &nats, &rel, e))
            return -1;
        if (nats < best_nats) {
            best_nats = nats;
            best[0] = na;
            best[1] = nb;
        }
    }
    return 0;
}

/* Every model's loss table beside its measured excess nats at every step-th prefix (and
 * the last): the split trades err across models as if equal err were equal harm. */
static int print_curves(bench_model *ms, int k, bench_run *run, int step, bs_err *e)
{
    for (int i = 0; i < k; i++) {
        bench_model *m = &ms[i];
        printf("\ncurve %s: n, bytes, bpw, err, ppl, ln(ppl / float)%s\n", m->name, m->alt ? ", proxy" : "");
        for (int n = m->lo; n <= m->hi; n = n == m->hi ? n + 1 : n + step > m->hi ? m->hi : n + step) {
            double p;
            if (ppl_at(m, run, n, &p, e))
                return -1;
            printf("%d %llu %.3f %.6g %.4f %.5f", n, (unsigned long long)bytes_of(m, n), bs_store_bpw(&m->eng.store, n),
                   m->loss[n], p, log(p / m->float_ppl));
            if (m->alt)
                printf(" %.6g", m->alt[n]);
            printf("\n");
        }
    }
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    long points = 8, ctx = 256, chunks = 40, threads = 1, step = 0, curves = 0, calib_windows = 8;
    const char *text_path = NULL, *proxy = NULL, *calib_path = NULL;
    const char *pos[2 * MAX_MODELS];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long *num = !strcmp(a, "--points") ? &points : !strcmp(a, "--ctx") ? &ctx : !strcmp(a, "--max-chunks") ? &chunks
                    : !strcmp(a, "--threads") ? &threads : !strcmp(a, "--oracle") ? &step
                    : !strcmp(a, "--curves") ? &curves : !strcmp(a, "--calib-windows") ? &calib_windows : NULL;
        const char **str = !strcmp(a, "--text") ? &text_path : !strcmp(a, "--proxy") ? &proxy
                           : !strcmp(a, "--calib") ? &calib_path : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout, 0);
        if (num || str) {
            if (i + 1 >= argc) {
                fprintf(stderr, "bench_models: %s needs a value\n", a);
                return usage(stderr, 2);
            }
            if (!num) {
                *str = argv[++i];
                continue;
            }
            char *end;
            *num = strtol(argv[++i], &end, 10);
            if (*end || *num < 0 || *num > 1 << 20) {
                fprintf(stderr, "bench_models: %s: not a count: '%s'\n", a, argv[i]);
                return usage(stderr, 2);
            }
            continue;
        }
        if (a[0] == '-') {
            fprintf(stderr, "bench_models: unknown option '%s'\n", a);
            return usage(stderr, 2);
        }
        if (npos == 2 * MAX_MODELS) {
            fprintf(stderr, "bench_models: at most %d models\n", MAX_MODELS);
            return usage(stderr, 2);
        }
        pos[npos++] = a;
    }
    if (proxy && strcmp(proxy, "matrix") && strcmp(proxy, "calib") && strcmp(proxy, "hybrid")) {
        fprintf(stderr, "bench_models: --proxy: matrix, calib or hybrid, not '%s'\n", proxy);
        return usage(stderr, 2);
    }
    if (npos < 4 || npos % 2 || points < 2 || ctx < 2 || (step > 0 && npos != 4)) {
        fprintf(stderr, "bench_models: give STORE FLOAT pairs for two models or more, --points 2 or more%s\n",
                step > 0 ? ", and --oracle only with two models" : "");
        return usage(stderr, 2);
    }
    int k = npos / 2;
    char deftext[4096];
    if (!text_path) {
        snprintf(deftext, sizeof deftext, "%s/data/tinystories_valid_head.txt", BS_SHARED_DEFAULT);
        text_path = deftext;
    }
    char defcalib[4096];
    if (!calib_path) {
        snprintf(defcalib, sizeof defcalib, "%s/data/tinystories_train_head.txt", BS_SHARED_DEFAULT);
        calib_path = defcalib;
    }
    size_t calib_len = 0;
    char *calib = NULL;
    bs_blas_threads((int)threads);

    double t0 = bs_now();
    bs_err e = {{0}};
    bench_run run = {(int)ctx, (int)chunks, 0};
    bench_model ms[MAX_MODELS];
    memset(ms, 0, sizeof ms);
    size_t len;
    char *text = bs_read_file(text_path, &len, &e);
    int rc = 1;
    if (!text)
        goto out;
    bench_print_machine();
    printf("build: %s%s, BLAS threads %ld; perplexity: ctx %ld, %ld windows of %s (docs/perplexity.md)\n",
           BS_BUILDTYPE,
#ifdef NDEBUG
           " (NDEBUG)",
#else
           "",
#endif
           threads, ctx, chunks, text_path);
    for (int i = 0; i < k; i++) {
        ms[i].store_path = pos[2 * i];
        ms[i].float_path = pos[2 * i + 1];
        if (model_open(&ms[i], text, len, &run, &e))
            goto out;
        if (proxy && strcmp(proxy, "calib") && proxy_matrix(&ms[i], &e))
            goto out;
        if (proxy && strcmp(proxy, "matrix")) {
            double *shape = ms[i].alt;   /* hybrid: the matrix proxy's shape */
            ms[i].alt = NULL;
            int bad = (!calib && !(calib = bs_read_file(calib_path, &calib_len, &e))) ||
                      proxy_calib(&ms[i], calib, calib_len, (int)ctx, (int)calib_windows, shape, &e);
            free(shape);
            if (bad)
                goto out;
        }
        const bs_store *s = &ms[i].eng.store;
        printf("model %s: %s, %d blocks, dim %d, %zu linear weights; floor (prefix %d) %llu bytes %.2f bpw, "
               "full %llu bytes %.2f bpw; loss table %s; float ppl %.4f (%s)\n",
               ms[i].name, ms[i].store_path, s->n_blocks, s->cfg.dim, s->linear_params, ms[i].lo,
               (unsigned long long)s->resident[ms[i].lo], bs_store_bpw(s, ms[i].lo),
               (unsigned long long)s->resident[ms[i].hi], bs_store_bpw(s, ms[i].hi),
               ms[i].estimated ? "ESTIMATED (the store records no calibration error)" : "recorded (info.errors)",
               ms[i].float_ppl, ms[i].float_path);
    }
    if (curves > 0 && print_curves(ms, k, &run, (int)curves, &e))
        goto out;
    uint64_t lo = 0, hi = 0;
    for (int i = 0; i < k; i++) {
        lo += bytes_of(&ms[i], ms[i].lo);
        hi += bytes_of(&ms[i], ms[i].hi);
    }
    printf("\ntotals: %ld points from the sum of the floors (%llu) to the sum of the full stacks (%llu)\n"
           "per model: prefix n, resident bytes, bpw, err (loss table: calibration error / the empty model's), ppl;\n"
           "nats = sum over models of ln(ppl / float ppl); rel = mean of ppl / float ppl - 1\n\n",
           points, (unsigned long long)lo, (unsigned long long)hi);
    printf("| total | split |");
    for (int i = 0; i < k; i++)
        printf(" %s n | bytes | bpw | err | ppl |", ms[i].name);
    printf(" used | nats | rel |\n|---|---|");
    for (int i = 0; i < k; i++)
        printf("---|---|---|---|---|");
    printf("---|---|---|\n");
    int wins = 0, losses = 0, proxy_wins = 0, proxy_losses = 0;
    for (long p = 0; p < points; p++) {
        uint64_t total = lo + (uint64_t)((double)(hi - lo) * (double)p / (double)(points - 1));
        int ng[MAX_MODELS], ne[MAX_MODELS], no[MAX_MODELS], na[MAX_MODELS];
        double pg[MAX_MODELS], pe[MAX_MODELS], po[MAX_MODELS], pa[MAX_MODELS];
        double nats_g, nats_e, nats_o, nats_a, rel_g, rel_e, rel_o, rel_a;
        if (split_greedy(ms, k, total, false, ng) || (proxy && split_greedy(ms, k, total, true, na))) {
            bs_err_set(&e, "out of memory");
            goto out;
        }
        split_equal(ms, k, total, ne);
        if (score(ms, k, &run, ng, pg, &nats_g, &rel_g, &e) || score(ms, k, &run, ne, pe, &nats_e, &rel_e, &e))
            goto out;
        print_row(ms, k, total, "greedy", ng, pg, nats_g, rel_g);
        print_row(ms, k, total, "equal", ne, pe, nats_e, rel_e);
        if (proxy) {
            char label[64];
            snprintf(label, sizeof label, "greedy, %s proxy", proxy);
            if (score(ms, k, &run, na, pa, &nats_a, &rel_a, &e))
                goto out;
            print_row(ms, k, total, label, na, pa, nats_a, rel_a);
            proxy_wins += nats_a < nats_g - 1e-9;
            proxy_losses += nats_a > nats_g + 1e-9;
        }
        if (step > 0) {
            int also[3] = {ng[0], ne[0], proxy ? na[0] : ng[0]};
            if (oracle(ms, &run, total, (int)step, also, 3, no, &e) || score(ms, k, &run, no, po, &nats_o, &rel_o, &e))
                goto out;
            print_row(ms, k, total, "best on grid", no, po, nats_o, rel_o);
        }
        wins += nats_g < nats_e - 1e-9;
        losses += nats_g > nats_e + 1e-9;
        fflush(stdout);
    }
    int evals = 0;
    for (int i = 0; i < k; i++)
        evals += ms[i].evals;
    printf("\ngreedy lower (better) nats than equal at %d of %ld totals, higher at %d; %d perplexity runs, "
           "%.1f s of evaluation, %.1f s in all\n",
           wins, points, losses, evals, run.eval_seconds, bs_now() - t0);
    if (proxy)
        printf("greedy over the %s proxy lower nats than over the store's table at %d of %ld totals, higher at %d\n",
               proxy, proxy_wins, points, proxy_losses);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "bench_models: %s\n", e.msg);
    for (int i = 0; i < k; i++)
        model_close(&ms[i]);
    free(text);
    free(calib);
    return rc;
}
