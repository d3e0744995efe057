/* Sign-plane matvec kernels (kernels/bitplane.h) on TinyLlama-1.1B shapes, one thread:
 * time per matvec of every path this CPU runs, against
 *   (a) the reference algorithm model/qmat.c used before these kernels (copied below as
 *       ref_matvec_planes: per plane, row and group, a bit-at-a-time sum), and
 *   (b) a dense fp32 cblas_sgemv of the same shape,
 * with GB/s of plane bytes read (d * rows * ceil(cols/8)). Medians of repeated runs.
 * Then prefill by token count: per-token matvecs, building W blocks + sgemm (the old
 * path from BS_KERNEL_MATMUL_CROSSOVER on), bs_kernel_planes_matmul itself (int8 at any
 * count on the span kernel), and the dense fp32 sgemm of the same shape.
 * By default every timed run starts with the caches cleared of the matrix (a 96 MiB buffer is
 * read first: the L3 here is 32 MiB), as in decoding, where a layer's weights were last
 * touched a whole token ago; --warm leaves them cached (then most shapes run from L3).
 * Usage: bench_kernels [--quick] [--warm]   (--quick: one small shape, few runs) */
#include "bench/common.h"
#include "kernels/rng.h"
#include "kernels/bitplane.h"
#include "kernels/half.h"
#include "kernels/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- BASELINE: the reference algorithm of model/qmat.c (matvec_planes), on raw arrays.
 * Kept as it was (bit-at-a-time, float sums, fp16 scale converted per group) so the
 * ratios say what the kernels bought. Not used anywhere else. */
static inline int ref_bit_at(const uint8_t *row, int j)
{
    return (row[j >> 3] >> (j & 7)) & 1;
}

static void ref_matvec_planes(const bs_kernel_planes *p, float *y, const float *x, float *gsum)
{
    size_t G = ((size_t)p->cols + p->group - 1) / p->group, rb = ((size_t)p->cols + 7) / 8;
    for (size_t g = 0; g < G; g++) {
        float t = 0.0f;
        for (size_t j = g * p->group; j < (g + 1) * p->group && j < (size_t)p->cols; j++)
            t += x[j];
        gsum[g] = t;
    }
    for (int l = 0; l < p->nplanes; l++) {
        const uint8_t *bits = p->bits[l];
        float mul = ldexpf(1.0f, -(p->shift0 + l));
        for (int i = 0; i < p->rows; i++) {
            const uint8_t *row = bits + (size_t)i * rb;
            float acc = 0.0f;
            for (size_t g = 0; g < G; g++) {
                float s = 0.0f;
                for (size_t j = g * p->group; j < (g + 1) * p->group && j < (size_t)p->cols; j++)
                    if (ref_bit_at(row, (int)j))
                        s += x[j];
                acc += bs_fp16_to_f32(p->scales[(size_t)i * G + g]) * (2.0f * s - gsum[g]);
            }
            y[i] += acc * mul;
        }
    }
}
/* ---- end of baseline ---- */

static uint64_t rng_s = 99;

static int quick, warm;
static volatile float flush_sink;

/* Reads a buffer larger than the last-level cache, so the next run starts cold (reads
 * only: no dirty lines left to write back during the timed run). */
static void flush_caches(void)
{
    enum { FLUSH_BYTES = 96 << 20 };
    static float *buf;
    if (!buf) {
        buf = malloc(FLUSH_BYTES);
        if (!buf)
            return;
        for (size_t i = 0; i < FLUSH_BYTES / sizeof(float); i++)
            buf[i] = (float)i;
    }
    float s = 0.0f;
    for (size_t i = 0; i < FLUSH_BYTES / sizeof(float); i += 16)
        s += buf[i];
    flush_sink = s;
}

/* Median seconds of fn over repeated runs: at least 5, until ~0.4 s (0.02 s quick). */
typedef void (*bench_fn)(void *ctx);

static double median_time(bench_fn fn, void *ctx)
{
    enum { MAXR = 301 };
    double t[MAXR];
    int n = 0;
    double budget = quick ? 0.02 : 0.4, spent = 0.0;
    fn(ctx); /* page in */
    while (n < MAXR && (n < 5 || spent < budget)) {
        if (!warm)
            flush_caches();
        double t0 = bs_now();
        fn(ctx);
        t[n++] = bs_now() - t0;
        spent += t[n - 1];
    }
    bench_sort(t, n);
    return t[n / 2];
}

typedef struct {
    bs_kernel_planes p;
    bs_kernel_isa isa;
    const float *x;
    float *y, *gsum, *w;
    void *scr;
    int ntok;
    const float *xt;
    float *yt;
} ctx;

static void run_ref(void *c)
{
    ctx *k = c;
    memset(k->y, 0, sizeof(float) * k->p.rows);
    ref_matvec_planes(&k->p, k->y, k->x, k->gsum);
}

static void run_kernel(void *c)
{
    ctx *k = c;
    bs_kernel_planes_matvec_isa(k->isa, &k->p, k->x, k->y, 0, k->scr);
}

static void run_sgemv(void *c)
{
    ctx *k = c;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, k->p.rows, k->p.cols, 1.0f, k->w, k->p.cols,
                k->x, 1, 0.0f, k->y, 1);
}

static void run_loop(void *c)
{
    ctx *k = c;
    for (int t = 0; t < k->ntok; t++)
        bs_kernel_planes_matvec_isa(k->isa, &k->p, k->xt + (size_t)t * k->p.cols,
                                    k->yt + (size_t)t * k->p.rows, 0, k->scr);
}

/* bs_kernel_planes_matmul itself: the int8 kernels (the span kernel at any count) or,
 * where it takes them, W blocks + sgemm */
static void run_matmul(void *c)
{
    ctx *k = c;
    bs_kernel_planes_matmul(k->isa, &k->p, 0, k->p.rows, k->xt, k->ntok, k->yt, 0, k->scr);
}

/* what bs_kernel_planes_matmul did from the crossover on before the span kernel, forced
 * at any token count */
static void run_blocked_sgemm(void *c)
{
    ctx *k = c;
    for (int r0 = 0; r0 < k->p.rows; r0 += BS_KERNEL_MATMUL_BLOCK) {
        int r1 = r0 + BS_KERNEL_MATMUL_BLOCK < k->p.rows ? r0 + BS_KERNEL_MATMUL_BLOCK : k->p.rows;
        bs_kernel_planes_materialize(k->isa, &k->p, r0, r1, k->w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k->ntok, r1 - r0, k->p.cols, 1.0f,
                    k->xt, k->p.cols, k->w, k->p.cols, 0.0f, k->yt + r0, k->p.rows);
    }
}

static void run_dense_sgemm(void *c)
{
    ctx *k = c;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k->ntok, k->p.rows, k->p.cols, 1.0f, k->xt, k->p.cols, k->w,
                k->p.cols, 0.0f, k->yt, k->p.rows);
}

typedef struct {
    uint8_t *planes[BS_KERNEL_MAX_PLANES];
    uint16_t *scales;
} owned;

static bs_kernel_planes make(int rows, int cols, int d, owned *o)
{
    size_t rb = ((size_t)cols + 7) / 8, G = ((size_t)cols + 31) / 32;
    for (int l = 0; l < d; l++) {
        o->planes[l] = aligned_alloc(64, (rows * rb + 63) & ~(size_t)63);
        for (size_t i = 0; i < rows * rb; i++)
            o->planes[l][i] = (uint8_t)bs_splitmix64(&rng_s);
    }
    o->scales = malloc(2 * rows * G);
    for (size_t i = 0; i < rows * G; i++)
        o->scales[i] = bs_f32_to_fp16(0.01f + (float)(bs_splitmix64(&rng_s) % 1000) * 1e-3f);
    return (bs_kernel_planes){rows, cols, 32, d, (const uint8_t *const *)o->planes, o->scales, 1};
}

static void unmake(owned *o, int d)
{
    for (int l = 0; l < d; l++)
        free(o->planes[l]);
    free(o->scales);
}

static void *big(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--warm") == 0)
            warm = 1;
        else {
            int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr, "usage: bench_kernels [--quick] [--warm]\n");
            if (help)
                return 0;
            return 2;
        }
    }
    bs_blas_threads(1);
    char model[256];
    bench_proc_field("/proc/cpuinfo", "model name", model, sizeof model);
    printf("machine: %s, %ld cpus online; OpenBLAS %s; threads: 1 (kernels and BLAS)\n", model,
           sysconf(_SC_NPROCESSORS_ONLN), openblas_get_config());
    printf("paths:");
    for (int i = 0; i < BS_KERNEL_NISA; i++)
        if (bs_kernel_isa_supported((bs_kernel_isa)i))
            printf(" %s", bs_kernel_isa_name((bs_kernel_isa)i));
    printf("; default %s; group 32, shift0 1; medians, %s caches\n\n",
           bs_kernel_isa_name(bs_kernel_isa_default()), warm ? "warm" : "cold (flushed before each run)");

    static const int shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}};
    static const int depths[] = {2, 4, 6};
    int nshapes = quick ? 1 : 4, ndepth = quick ? 1 : 3;
    printf("%-11s %2s %-9s %10s %8s %9s %9s\n", "shape", "d", "path", "us/matvec", "GB/s",
           "x ref", "x sgemv");
    for (int si = 0; si < nshapes; si++) {
        int rows = shapes[quick ? 1 : si][0], cols = shapes[quick ? 1 : si][1];
        float *x = big(sizeof(float) * cols), *y = big(sizeof(float) * rows);
        float *w = big(sizeof(float) * (size_t)rows * cols), *gsum = big(sizeof(float) * cols);
        void *scr = big(bs_kernel_planes_scratch(cols, 32));
        for (int j = 0; j < cols; j++)
            x[j] = (float)((double)(bs_splitmix64(&rng_s) % 2001) / 1000.0 - 1.0);
        for (size_t i = 0; i < (size_t)rows * cols; i++)
            w[i] = (float)((double)(bs_splitmix64(&rng_s) % 2001) / 1000.0 - 1.0);
        ctx c = {.x = x, .y = y, .w = w, .gsum = gsum, .scr = scr};
        c.p.rows = rows, c.p.cols = cols;
        double t_gemv = median_time(run_sgemv, &c);
        for (int di = 0; di < ndepth; di++) {
            int d = depths[quick ? 1 : di];
            owned o;
            c.p = make(rows, cols, d, &o);
            double bytes = (double)d * rows * (((size_t)cols + 7) / 8);
            double t_ref = median_time(run_ref, &c);
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%d", rows, cols);
            printf("%-11s %2d %-9s %10.1f %8.2f %9.2f %9.2f\n", shape, d, "reference", t_ref * 1e6,
                   bytes / t_ref * 1e-9, 1.0, t_gemv / t_ref);
            for (int i = 0; i < BS_KERNEL_NISA; i++) {
                c.isa = (bs_kernel_isa)i;
                if (!bs_kernel_isa_supported(c.isa))
                    continue;
                double t = median_time(run_kernel, &c);
                printf("%-11s %2d %-9s %10.1f %8.2f %9.2f %9.2f\n", shape, d, bs_kernel_isa_name(c.isa),
                       t * 1e6, bytes / t * 1e-9, t_ref / t, t_gemv / t);
            }
            if (di == 0)
                printf("%-11s %2s %-9s %10.1f %8.2f %9s %9.2f   (fp32 bytes)\n", shape, "-", "sgemv",
                       t_gemv * 1e6, 4.0 * rows * cols / t_gemv * 1e-9, "", 1.0);
            unmake(&o, d);
        }
        free(x);
        free(y);
        free(w);
        free(gsum);
        free(scr);
    }

    /* prefill: per-token matvec (default path) vs W blocks + sgemm, us per token */
    printf("\nprefill, d = 4, %s path: us per token\n", bs_kernel_isa_name(bs_kernel_isa_default()));
    printf("%-11s %5s %12s %12s %12s %12s\n", "shape", "T", "matvec loop", "blocks+sgemm", "matmul", "dense sgemm");
    static const int toks[] = {1, 4, 16, 32, 48, 64, 128};
    int nsh2 = quick ? 1 : 2, ntoks = quick ? 3 : 7;
    for (int si = 0; si < nsh2; si++) {
        int rows = shapes[si == 0 ? (quick ? 1 : 0) : 2][0], cols = shapes[si == 0 ? (quick ? 1 : 0) : 2][1];
        owned o;
        ctx c;
        memset(&c, 0, sizeof c);
        c.p = make(rows, cols, 4, &o);
        c.isa = bs_kernel_isa_default();
        int T = toks[ntoks - 1];
        float *xt = big(sizeof(float) * (size_t)T * cols), *yt = big(sizeof(float) * (size_t)T * rows);
        for (size_t i = 0; i < (size_t)T * cols; i++)
            xt[i] = (float)((double)(bs_splitmix64(&rng_s) % 2001) / 1000.0 - 1.0);
        c.xt = xt, c.yt = yt;
        c.scr = big(bs_kernel_planes_matmul_scratch(cols, 32, T));
        c.w = big(sizeof(float) * BS_KERNEL_MATMUL_BLOCK * (size_t)cols);
        /* the dense fp32 matrix of the same shape, for sgemm (values do not matter) */
        float *wd = big(sizeof(float) * (size_t)rows * cols);
        for (size_t i = 0; i < (size_t)rows * cols; i++)
            wd[i] = (float)(i % 13) * 0.01f;
        for (int ti = 0; ti < ntoks; ti++) {
            c.ntok = toks[ti];
            double a = median_time(run_loop, &c), b = median_time(run_blocked_sgemm, &c);
            double m = median_time(run_matmul, &c);
            float *wb = c.w;
            c.w = wd;
            double g = median_time(run_dense_sgemm, &c);
            c.w = wb;
            printf("%5dx%-5d %5d %12.1f %12.1f %12.1f %12.1f%s\n", rows, cols, c.ntok, a * 1e6 / c.ntok,
                   b * 1e6 / c.ntok, m * 1e6 / c.ntok, g * 1e6 / c.ntok,
                   bs_kernel_planes_matmul_int8(c.isa, &c.p, c.ntok) ? "   (matmul: int8)" : "   (matmul: sgemm)");
        }
        free(xt);
        free(yt);
        free(c.scr);
        free(c.w);
        free(wd);
        unmake(&o, 4);
    }
    return 0;
}
