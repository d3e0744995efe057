/* Truncated (randomised) SVD against LAPACK's full sgesdd, rank k = 16: on every linear of
 * stories260K and babyllama-d128 and their absolute values (what avd factors), and on a
 * random 2048×5632 matrix (TinyLlama's FFN shape). Prints the time ratio and how close the
 * truncated singular values are.
 * Usage: bench_svd [threads]   (0 or absent: OpenBLAS default; BS_SHARED overrides the
 * shared folder) */
#include "bench/common.h"
#include "kernels/rng.h"
#include "kernels/svd.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

enum { K = 16 };

static void machine(void)
{
    char model[256];
    bench_proc_field("/proc/cpuinfo", "model name", model, sizeof model);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("machine: %s, %d cpus; OpenBLAS %s, %d threads\n", model, (int)cpus,
           openblas_get_config(), openblas_get_num_threads());
}

/* A matrix and where it came from. */
typedef struct {
    char name[48];
    int rows, cols;
    float *w;
} mat;

/* Every linear (and the embedding) of a llama2.c .bin; copies, so the caller frees each. */
static int load_llama2c(const char *path, mat *mats, int cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int32_t h[7];
    if (fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return -1;
    }
    int dim = h[0], hid = h[1], L = h[2], kv = dim * h[4] / h[3];
    int vocab = h[5] < 0 ? -h[5] : h[5];
    const char *names[7] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};
    int rr[7] = {dim, kv, kv, dim, hid, dim, hid}, cc[7] = {dim, dim, dim, dim, dim, hid, dim};
    int n = 0;
    long off = (long)sizeof h;
    /* token embedding */
    mats[n] = (mat){"tok_emb", vocab, dim, malloc(sizeof(float) * (size_t)vocab * dim)};
    if (!mats[n].w || fread(mats[n].w, sizeof(float), (size_t)vocab * dim, f)
                          != (size_t)vocab * dim) {
        fclose(f);
        free(mats[n].w);
        return -1;
    }
    n++;
    off += (long)sizeof(float) * ((long)vocab * dim + (long)L * dim);
    for (int t = 0; t < 7; t++) {
        size_t sz = (size_t)rr[t] * cc[t];
        for (int l = 0; l < L && n < cap; l++) {
            mat *m = &mats[n];
            snprintf(m->name, sizeof m->name, "%s.%d", names[t], l);
            m->rows = rr[t];
            m->cols = cc[t];
            m->w = malloc(sizeof(float) * sz);
            if (!m->w || fseek(f, off + (long)(sizeof(float) * sz * l), SEEK_SET)
                || fread(m->w, sizeof(float), sz, f) != sz) {
                free(m->w);
                fclose(f);
                return n;
            }
            n++;
        }
        off += (long)(sizeof(float) * sz * L) + (t == 3 ? (long)sizeof(float) * L * dim : 0);
    }
    fclose(f);
    return n;
}

typedef struct {
    double t_full, t_trunc, t_fast; /* seconds */
    double worst_rel, worst_rel_fast;
    double worst_err, worst_err_fast; /* ‖A − USVᵀ‖ / optimal rank-k error */
} result;

/* For a Rayleigh–Ritz truncation (uᵢᵀAvᵢ = σ̃ᵢ, orthonormal U and V) the residual is
 * ‖A − USVᵀ‖² = ‖A‖² − Σσ̃ᵢ², and the optimum is ‖A‖² − Σσᵢ² over the exact values. */
static double err_ratio(double a2, const float *S, const float *s, int k)
{
    double t = a2, o = a2;
    for (int i = 0; i < k; i++) {
        t -= (double)S[i] * S[i];
        o -= (double)s[i] * s[i];
    }
    return o > 0 ? sqrt(fmax(t, 0) / o) : 1;
}

/* Times full sgesdd, the truncated SVD with the default (accurate) settings and with the
 * cheap ones (p = 10, q = 4), each at least `reps` times. */
static int run(const float *A, int m, int n, int reps, result *res)
{
    int r = m < n ? m : n;
    float *u = malloc(sizeof(float) * (size_t)m * r), *s = malloc(sizeof(float) * r);
    float *vt = malloc(sizeof(float) * (size_t)r * n);
    float *U = malloc(sizeof(float) * (size_t)m * K), S[K], *Vt = malloc(sizeof(float) * K * n);
    bs_err e;
    int rc = -1;
    if (!u || !s || !vt || !U || !Vt)
        goto out;
    double t0 = bs_now();
    for (int i = 0; i < reps; i++)
        if (bs_svd_full(A, m, n, u, s, vt, &e))
            goto fail;
    double t1 = bs_now();
    for (int i = 0; i < reps; i++)
        if (bs_svd_truncated(A, m, n, K, BS_SVD_OVERSAMPLE, BS_SVD_POWER_ITERS, 1, U, S, Vt, &e))
            goto fail;
    double t2 = bs_now();
    double worst = 0, worst_fast = 0, a2 = 0;
    for (size_t i = 0; i < (size_t)m * n; i++)
        a2 += (double)A[i] * A[i];
    int kk = K < r ? K : r;
    for (int i = 0; i < kk; i++)
        worst = fmax(worst, fabs(S[i] - s[i]) / s[i]);
    res->worst_err = fmax(res->worst_err, err_ratio(a2, S, s, kk));
    for (int i = 0; i < reps; i++)
        if (bs_svd_truncated(A, m, n, K, 10, 4, 1, U, S, Vt, &e))
            goto fail;
    double t3 = bs_now();
    for (int i = 0; i < kk; i++)
        worst_fast = fmax(worst_fast, fabs(S[i] - s[i]) / s[i]);
    res->worst_err_fast = fmax(res->worst_err_fast, err_ratio(a2, S, s, kk));
    res->t_full += (t1 - t0) / reps;
    res->t_trunc += (t2 - t1) / reps;
    res->t_fast += (t3 - t2) / reps;
    res->worst_rel = fmax(res->worst_rel, worst);
    res->worst_rel_fast = fmax(res->worst_rel_fast, worst_fast);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "bench_svd: %s\n", e.msg);
out:
    free(u), free(s), free(vt), free(U), free(Vt);
    return rc;
}

static void report(const char *what, const result *r)
{
    printf("  %-4s full sgesdd %9.3f ms | truncated p=%d q=%d %8.3f ms (%5.1f× faster; worst σ "
           "rel err %.1e, error/optimal %.5f) | p=10 q=4 %8.3f ms (%5.1f×; %.1e, %.5f)\n",
           what, 1e3 * r->t_full, BS_SVD_OVERSAMPLE, BS_SVD_POWER_ITERS, 1e3 * r->t_trunc,
           r->t_full / r->t_trunc, r->worst_rel, r->worst_err, 1e3 * r->t_fast,
           r->t_full / r->t_fast, r->worst_rel_fast, r->worst_err_fast);
}

static void bench_model(const char *rel)
{
    char path[1024];
    const char *root = getenv("BS_SHARED");
    snprintf(path, sizeof path, "%s/%s", root ? root : BS_SHARED_DEFAULT, rel);
    mat mats[64];
    int n = load_llama2c(path, mats, 64);
    if (n <= 0) {
        printf("%s: cannot read\n", path);
        return;
    }
    printf("%s: %d matrices (", rel, n);
    for (int i = 0; i < n; i++)
        if (i == 0 || mats[i].rows != mats[i - 1].rows || mats[i].cols != mats[i - 1].cols)
            printf("%s%d×%d", i ? " " : "", mats[i].rows, mats[i].cols);
    printf("), k = %d, summed over all matrices\n", K);
    result plain = {0}, absval = {0};
    for (int i = 0; i < n; i++) {
        size_t sz = (size_t)mats[i].rows * mats[i].cols;
        run(mats[i].w, mats[i].rows, mats[i].cols, 20, &plain);
        for (size_t j = 0; j < sz; j++)
            mats[i].w[j] = fabsf(mats[i].w[j]);
        run(mats[i].w, mats[i].rows, mats[i].cols, 20, &absval);
        free(mats[i].w);
    }
    report("W", &plain);
    report("|W|", &absval);
}

static void bench_random(int m, int n)
{
    float *a = malloc(sizeof(float) * (size_t)m * n);
    if (!a)
        return;
    /* Gaussian entries (std 0.02, like initialised weights) plus a rank-32 part with
     * decaying strength, so the spectrum has structure above a Marchenko–Pastur bulk. */
    uint64_t s = 2024;
    for (size_t i = 0; i < (size_t)m * n; i += 2) {
        double u1 = ((bs_splitmix64(&s) >> 11) + 1.0) * 0x1.0p-53, u2 = (bs_splitmix64(&s) >> 11) * 0x1.0p-53;
        double rr = 0.02 * sqrt(-2 * log(u1));
        a[i] = (float)(rr * cos(2 * M_PI * u2));
        if (i + 1 < (size_t)m * n)
            a[i + 1] = (float)(rr * sin(2 * M_PI * u2));
    }
    float *x = malloc(sizeof(float) * m), *y = malloc(sizeof(float) * n);
    for (int t = 0; x && y && t < 32; t++) {
        for (int i = 0; i < m; i++)
            x[i] = (float)((bs_splitmix64(&s) >> 40) * 0x1.0p-24 - 0.5);
        for (int j = 0; j < n; j++)
            y[j] = (float)(((bs_splitmix64(&s) >> 40) * 0x1.0p-24 - 0.5) * 0.05 / (1 + t));
        cblas_sger(CblasRowMajor, m, n, 1.0f, x, 1, y, 1, a, n);
    }
    free(x), free(y);
    printf("random %d×%d (gaussian + decaying rank-32 part), k = %d, one run each\n", m, n, K);
    result plain = {0}, absval = {0};
    run(a, m, n, 1, &plain);
    report("W", &plain);
    for (size_t j = 0; j < (size_t)m * n; j++)
        a[j] = fabsf(a[j]);
    run(a, m, n, 1, &absval);
    report("|W|", &absval);
    free(a);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (threads > 0)
        openblas_set_num_threads(threads);
    machine();
    bench_model("models/stories260K.bin");
    bench_model("models/babyllama-d128.bin");
    bench_random(2048, 5632);
    return 0;
}
