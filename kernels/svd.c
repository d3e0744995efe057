#include "kernels/svd.h"
#include "kernels/rng.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran) entry points exported by OpenBLAS. The trailing size_t arguments are
 * the hidden lengths gfortran passes for CHARACTER arguments. */
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork,
             int *iwork, int *info, size_t jobz_len);
void sgeqrf_(const int *m, const int *n, float *a, const int *lda, float *tau, float *work,
             const int *lwork, int *info);
void sorgqr_(const int *m, const int *n, const int *k, float *a, const int *lda, const float *tau,
             float *work, const int *lwork, int *info);

/* Column-major conventions inside this file: a row-major m×n matrix is the column-major
 * n×m matrix of its transpose, so A enters every BLAS call as "Aᵀ, leading dimension n". */

static int all_finite(const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return 0;
    return 1;
}

/* Runs sgesdd (jobz 'S') on the column-major rows×cols matrix a (destroyed).
 * u is rows×r (ld rows), vt is r×cols (ld r), r = min(rows, cols). */
static int gesdd(float *a, int rows, int cols, float *s, float *u, float *vt, bs_err *e)
{
    int r = rows < cols ? rows : cols;
    int info = 0, lwork = -1;
    float wq = 0;
    int *iwork = malloc(sizeof(int) * 8 * (size_t)r);
    if (!iwork)
        return bs_err_set(e, "svd: out of memory (%d×%d)", rows, cols);
    sgesdd_("S", &rows, &cols, a, &rows, s, u, &rows, vt, &r, &wq, &lwork, iwork, &info, 1);
    if (info != 0) {
        free(iwork);
        return bs_err_set(e, "svd: sgesdd workspace query failed (info %d)", info);
    }
    lwork = (int)wq + 1;
    float *work = malloc(sizeof(float) * (size_t)lwork);
    if (!work) {
        free(iwork);
        return bs_err_set(e, "svd: out of memory (sgesdd workspace of %d floats)", lwork);
    }
    sgesdd_("S", &rows, &cols, a, &rows, s, u, &rows, vt, &r, work, &lwork, iwork, &info, 1);
    free(work);
    free(iwork);
    if (info < 0)
        return bs_err_set(e, "svd: sgesdd rejected argument %d", -info);
    if (info > 0)
        return bs_err_set(e, "svd: sgesdd did not converge on a %d×%d matrix (info %d)",
                          rows, cols, info);
    return 0;
}

int bs_svd_full(const float *A, int m, int n, float *U, float *S, float *Vt, bs_err *e)
{
    if (m <= 0 || n <= 0)
        return bs_err_set(e, "svd: bad shape %d×%d", m, n);
    size_t mn = (size_t)m * n;
    if (!all_finite(A, mn))
        return bs_err_set(e, "svd: the %d×%d matrix has a non-finite entry", m, n);
    float *a = malloc(sizeof(float) * mn);
    if (!a)
        return bs_err_set(e, "svd: out of memory (%d×%d)", m, n);
    memcpy(a, A, sizeof(float) * mn);
    /* a is Aᵀ (n×m, column-major). Aᵀ = u s vt gives A = vtᵀ s uᵀ, so LAPACK's
     * u (n×r, ld n) is our row-major Vt and its vt (r×m, ld r) is our row-major U. */
    int rc = gesdd(a, n, m, S, Vt, U, e);
    free(a);
    return rc;
}

/* Exact SVD cut to k triplets; triplets past min(m, n) are zero. */
static int svd_exact_prefix(const float *A, int m, int n, int k, float *U, float *S, float *Vt,
                            bs_err *e)
{
    int r = m < n ? m : n;
    int kk = k < r ? k : r;
    float *u = malloc(sizeof(float) * (size_t)m * r);
    float *s = malloc(sizeof(float) * (size_t)r);
    float *vt = malloc(sizeof(float) * (size_t)r * n);
    if (!u || !s || !vt) {
        free(u), free(s), free(vt);
        return bs_err_set(e, "svd: out of memory (%d×%d)", m, n);
    }
    int rc = bs_svd_full(A, m, n, u, s, vt, e);
    if (rc == 0) {
        for (int i = 0; i < m; i++) {
            memcpy(U + (size_t)i * k, u + (size_t)i * r, sizeof(float) * kk);
            memset(U + (size_t)i * k + kk, 0, sizeof(float) * (size_t)(k - kk));
        }
        memcpy(S, s, sizeof(float) * kk);
        memset(S + kk, 0, sizeof(float) * (size_t)(k - kk));
        memcpy(Vt, vt, sizeof(float) * (size_t)kk * n);
        memset(Vt + (size_t)kk * n, 0, sizeof(float) * (size_t)(k - kk) * n);
    }
    free(u), free(s), free(vt);
    return rc;
}

/* Standard normal samples by Box–Muller, two at a time. */
static void fill_gaussian(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((bs_splitmix64(&s) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
        double u2 = (bs_splitmix64(&s) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(r * cos(2.0 * M_PI * u2));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(2.0 * M_PI * u2));
    }
}

/* Replaces the columns of the column-major rows×cols matrix y (rows ≥ cols) by an
 * orthonormal basis of their span. Householder QR keeps the basis orthonormal even when
 * y is rank deficient (a zero matrix gives unit vectors). */
static int orthonormalize(float *y, int rows, int cols, float *tau, float **work, int *lwork,
                          bs_err *e)
{
    int info = 0, q = -1;
    float w1 = 0, w2 = 0;
    sgeqrf_(&rows, &cols, y, &rows, tau, &w1, &q, &info);
    if (info == 0)
        sorgqr_(&rows, &cols, &cols, y, &rows, tau, &w2, &q, &info);
    if (info != 0)
        return bs_err_set(e, "svd: QR workspace query failed (info %d)", info);
    int need = (int)(w1 > w2 ? w1 : w2) + 1;
    if (need > *lwork) {
        float *nw = realloc(*work, sizeof(float) * (size_t)need);
        if (!nw)
            return bs_err_set(e, "svd: out of memory (QR workspace of %d floats)", need);
        *work = nw;
        *lwork = need;
    }
    sgeqrf_(&rows, &cols, y, &rows, tau, *work, lwork, &info);
    if (info != 0)
        return bs_err_set(e, "svd: sgeqrf failed (info %d)", info);
    sorgqr_(&rows, &cols, &cols, y, &rows, tau, *work, lwork, &info);
    if (info != 0)
        return bs_err_set(e, "svd: sorgqr failed (info %d)", info);
    return 0;
}

int bs_svd_truncated(const float *A, int m, int n, int k, int oversample, int power_iters,
                     uint64_t seed, float *U, float *S, float *Vt, bs_err *e)
{
    if (m <= 0 || n <= 0 || k <= 0)
        return bs_err_set(e, "svd: bad shape %d×%d or rank %d", m, n, k);
    if (oversample < 0 || power_iters < 0)
        return bs_err_set(e, "svd: negative oversampling %d or power iterations %d",
                          oversample, power_iters);
    if (!all_finite(A, (size_t)m * n))
        return bs_err_set(e, "svd: the %d×%d matrix has a non-finite entry", m, n);
    int r = m < n ? m : n;
    if ((long)k + oversample >= r)
        return svd_exact_prefix(A, m, n, k, U, S, Vt, e);
    int l = k + oversample;

    float *om = malloc(sizeof(float) * (size_t)n * l);  /* Ω, later Z = AᵀQ: n×l */
    float *y = malloc(sizeof(float) * (size_t)m * l);   /* Y = AZ, then Q: m×l */
    float *tau = malloc(sizeof(float) * (size_t)l);
    float *s = malloc(sizeof(float) * (size_t)l);
    float *bu = malloc(sizeof(float) * (size_t)n * l);  /* left vectors of Bᵀ */
    float *bvt = malloc(sizeof(float) * (size_t)l * l); /* right vectors of Bᵀ */
    float *work = NULL;
    int lwork = 0, rc = -1;
    if (!om || !y || !tau || !s || !bu || !bvt) {
        bs_err_set(e, "svd: out of memory (%d×%d, %d columns)", m, n, l);
        goto out;
    }
    fill_gaussian(om, (size_t)n * l, seed);

    /* Y = A Ω */
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, l, n, 1.0f, A, n, om, n, 0.0f, y, m);
    if (orthonormalize(y, m, l, tau, &work, &lwork, e))
        goto out;
    for (int it = 0; it < power_iters; it++) {
        /* Z = Aᵀ Q, Q = orth(A Z) */
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, l, m, 1.0f, A, n, y, m,
                    0.0f, om, n);
        if (orthonormalize(om, n, l, tau, &work, &lwork, e))
            goto out;
        cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, l, n, 1.0f, A, n, om, n,
                    0.0f, y, m);
        if (orthonormalize(y, m, l, tau, &work, &lwork, e))
            goto out;
    }
    /* Bᵀ = Aᵀ Q (n×l). Bᵀ = W Σ Xᵀ gives A ≈ Q B = (Q X) Σ Wᵀ. */
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, l, m, 1.0f, A, n, y, m, 0.0f, om, n);
    if (gesdd(om, n, l, s, bu, bvt, e))
        goto out;
    memcpy(S, s, sizeof(float) * k);
    /* Row-major U (m×k) is column-major (Q X_k)ᵀ = X_kᵀ Qᵀ; X_kᵀ is the first k rows of bvt. */
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, k, m, l, 1.0f, bvt, l, y, m, 0.0f, U, k);
    /* Row-major Vt (k×n) is column-major W_k: the first k columns of bu. */
    memcpy(Vt, bu, sizeof(float) * (size_t)k * n);
    rc = 0;
out:
    free(om), free(y), free(tau), free(s), free(bu), free(bvt), free(work);
    return rc;
}
