#include "model/floor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/half.h"
#include "kernels/svd.h"

static uint64_t stride(int n)
{
    return ((uint64_t)n + 7) / 8;
}

uint64_t bs_floor_path_bytes(int rows, int cols, int rank)
{
    uint64_t b = 2 * ((uint64_t)rows + (uint64_t)rank + (uint64_t)cols) + (uint64_t)rows * stride(rank) +
                 (uint64_t)rank * stride(cols);
    return (b + 1) & ~(uint64_t)1;
}

uint64_t bs_floor_bytes(const bs_store_matrix *m)
{
    if (m->floor_rank <= 0)
        return 0;
    return (uint64_t)m->floor_paths * bs_floor_path_bytes(m->rows, m->cols, m->floor_rank);
}

double bs_floor_bits(int rows, int cols, int rank, int paths)
{
    return (double)paths * ((double)rank * (rows + cols + 16) + 16.0 * (rows + cols));
}

void bs_floor_view_of(const bs_store_matrix *m, const uint8_t *payload, bs_floor_view *v)
{
    memset(v, 0, sizeof *v);
    if (m->floor_rank <= 0 || !payload)
        return;
    v->paths = m->floor_paths;
    uint64_t pb = bs_floor_path_bytes(m->rows, m->cols, m->floor_rank);
    for (int p = 0; p < v->paths && p < BS_FLOOR_MAX_PATHS; p++) {
        const uint8_t *b = payload + (uint64_t)p * pb;
        bs_kernel_lb *k = &v->path[p];
        k->rows = m->rows;
        k->cols = m->cols;
        k->rank = m->floor_rank;
        /* the payload starts 2-byte aligned and every path has even length */
        k->h = (const uint16_t *)(const void *)b;
        k->l = k->h + m->rows;
        k->g = k->l + m->floor_rank;
        k->u = (const uint8_t *)(k->g + m->cols);
        k->vt = k->u + (uint64_t)m->rows * stride(m->floor_rank);
    }
}

void bs_floor_add_dense(const bs_floor_view *v, float *w)
{
    for (int p = 0; p < v->paths; p++)
        bs_kernel_lb_add_dense(&v->path[p], w);
}

int bs_floor_rank_for(double c, int rows, int cols)
{
    int mx = rows < cols ? rows : cols;
    long r = lround(c * (double)rows * cols / (rows + cols + 16.0));
    return r < 1 ? 1 : r > mx ? mx : (int)r;
}

static double total_bits(const int *rows, const int *cols, int n, double c, int paths, int *rank)
{
    double bits = 0.0;
    for (int i = 0; i < n; i++) {
        rank[i] = bs_floor_rank_for(c, rows[i], cols[i]);
        bits += bs_floor_bits(rows[i], cols[i], rank[i], paths);
    }
    return bits;
}

int bs_floor_solve_ranks(const int *rows, const int *cols, int n, double bpw, int paths, int *rank, double *c,
                         bs_err *e)
{
    if (n < 1 || paths < 1 || paths > BS_FLOOR_MAX_PATHS || !(bpw > 0.0))
        return bs_err_set(e, "floor: bad request (%d matrices, %d paths, %.3f bits per weight)", n, paths, bpw);
    double weights = 0.0;
    for (int i = 0; i < n; i++)
        weights += (double)rows[i] * cols[i];
    double target = bpw * weights;
    double least = total_bits(rows, cols, n, 0.0, paths, rank);
    if (least > target)
        return bs_err_set(e, "floor: %.3f bits per weight is below the smallest floor with %d path%s (rank 1 "
                          "everywhere: %.3f)", bpw, paths, paths > 1 ? "s" : "", least / weights);
    /* bits grow with c; r_i reaches min(m, n) by c = m + n + 16 at the latest */
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < n; i++)
        hi = fmax(hi, rows[i] + cols[i] + 16.0);
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi);
        if (total_bits(rows, cols, n, mid, paths, rank) <= target)
            lo = mid;
        else
            hi = mid;
    }
    total_bits(rows, cols, n, lo, paths, rank);
    if (c)
        *c = lo;
    return 0;
}

int bs_floor_f_alloc(bs_floor_f *f, int rows, int cols, int rank, bs_err *e)
{
    memset(f, 0, sizeof *f);
    f->rows = rows;
    f->cols = cols;
    f->rank = rank;
    f->U = calloc((size_t)rows * rank, sizeof(float));
    f->V = calloc((size_t)cols * rank, sizeof(float));
    f->h = calloc((size_t)rows, sizeof(float));
    f->l = calloc((size_t)rank, sizeof(float));
    f->g = calloc((size_t)cols, sizeof(float));
    if (!f->U || !f->V || !f->h || !f->l || !f->g) {
        bs_floor_f_free(f);
        return bs_err_set(e, "out of memory for a %dx%d floor of rank %d", rows, cols, rank);
    }
    return 0;
}

void bs_floor_f_free(bs_floor_f *f)
{
    free(f->U); free(f->V); free(f->h); free(f->l); free(f->g);
    memset(f, 0, sizeof *f);
}

void bs_floor_f_pack(const bs_floor_f *f, uint8_t *dst)
{
    uint64_t pb = bs_floor_path_bytes(f->rows, f->cols, f->rank);
    memset(dst, 0, pb);
    uint16_t *h = (uint16_t *)(void *)dst, *l = h + f->rows, *g = l + f->rank;
    bs_f32_to_fp16_n(h, f->h, (size_t)f->rows);
    bs_f32_to_fp16_n(l, f->l, (size_t)f->rank);
    bs_f32_to_fp16_n(g, f->g, (size_t)f->cols);
    uint8_t *u = (uint8_t *)(g + f->cols), *vt = u + (uint64_t)f->rows * stride(f->rank);
    uint64_t su = stride(f->rank), sv = stride(f->cols);
    for (int i = 0; i < f->rows; i++)
        for (int k = 0; k < f->rank; k++)
            if (f->U[(size_t)i * f->rank + k] >= 0.0f)
                u[i * su + (uint64_t)(k >> 3)] |= (uint8_t)(1u << (k & 7));
    for (int j = 0; j < f->cols; j++)
        for (int k = 0; k < f->rank; k++)
            if (f->V[(size_t)j * f->rank + k] >= 0.0f)
                vt[(uint64_t)k * sv + (uint64_t)(j >> 3)] |= (uint8_t)(1u << (j & 7));
}

static float r16(float x)
{
    return bs_fp16_to_f32(bs_f32_to_fp16(x));
}

void bs_floor_f_subtract(const bs_floor_f *f, float *A)
{
    int r = f->rank;
    for (int i = 0; i < f->rows; i++) {
        float hi = r16(f->h[i]);
        for (int k = 0; k < r; k++) {
            float a = hi * r16(f->l[k]) * (f->U[(size_t)i * r + k] >= 0.0f ? 1.0f : -1.0f);
            float *ar = A + (size_t)i * f->cols;
            for (int j = 0; j < f->cols; j++)
                ar[j] -= a * r16(f->g[j]) * (f->V[(size_t)j * r + k] >= 0.0f ? 1.0f : -1.0f);
        }
    }
}

/* |M| (n × r) ≈ a bᵀ with a, b ≥ 0: alternating least squares from b = 1, which is the
 * power iteration for the leading singular pair of a non-negative matrix. */
static void rank1_abs(const float *M, int n, int r, float *a, float *b)
{
    for (int k = 0; k < r; k++)
        b[k] = 1.0f;
    for (int it = 0; it < 30; it++) {
        double bb = 0.0;
        for (int k = 0; k < r; k++)
            bb += (double)b[k] * b[k];
        for (int i = 0; i < n; i++) {
            double s = 0.0;
            for (int k = 0; k < r; k++)
                s += fabsf(M[(size_t)i * r + k]) * (double)b[k];
            a[i] = (float)(s / (bb > 0 ? bb : 1.0));
        }
        double aa = 0.0;
        for (int i = 0; i < n; i++)
            aa += (double)a[i] * a[i];
        for (int k = 0; k < r; k++) {
            double s = 0.0;
            for (int i = 0; i < n; i++)
                s += fabsf(M[(size_t)i * r + k]) * (double)a[i];
            b[k] = (float)(s / (aa > 0 ? aa : 1.0));
        }
    }
}

int bs_floor_dual_svid(bs_floor_f *f, const float *A, uint64_t seed, bs_err *e)
{
    int m = f->rows, n = f->cols, r = f->rank;
    float *U = malloc(sizeof(float) * (size_t)m * r), *S = malloc(sizeof(float) * (size_t)r);
    float *Vt = malloc(sizeof(float) * (size_t)r * n), *lu = malloc(sizeof(float) * (size_t)r);
    float *lv = malloc(sizeof(float) * (size_t)r);
    int rc = -1;
    if (!U || !S || !Vt || !lu || !lv) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    /* reconstruction error is what matters here: the avd settings of kernels/svd.h */
    if (bs_svd_truncated(A, m, n, r, 10, 4, seed, U, S, Vt, e))
        goto out;
    for (int k = 0; k < r; k++) {
        float s = sqrtf(S[k] > 0.0f ? S[k] : 0.0f);
        for (int i = 0; i < m; i++)
            f->U[(size_t)i * r + k] = U[(size_t)i * r + k] * s;
        for (int j = 0; j < n; j++)
            f->V[(size_t)j * r + k] = Vt[(size_t)k * n + j] * s;
    }
    rank1_abs(f->U, m, r, f->h, lu);
    rank1_abs(f->V, n, r, f->g, lv);
    for (int k = 0; k < r; k++)
        f->l[k] = lu[k] * lv[k];
    /* latent = factor / its rank-1 magnitude: the signs, with magnitudes near 1 so a
     * smooth surrogate of sign has a useful slope at the start of training */
    for (int i = 0; i < m; i++)
        for (int k = 0; k < r; k++) {
            float d = f->h[i] * lu[k];
            f->U[(size_t)i * r + k] = d > 0.0f ? f->U[(size_t)i * r + k] / d : (f->U[(size_t)i * r + k] >= 0 ? 1e-3f : -1e-3f);
        }
    for (int j = 0; j < n; j++)
        for (int k = 0; k < r; k++) {
            float d = f->g[j] * lv[k];
            f->V[(size_t)j * r + k] = d > 0.0f ? f->V[(size_t)j * r + k] / d : (f->V[(size_t)j * r + k] >= 0 ? 1e-3f : -1e-3f);
        }
    rc = 0;
out:
    free(U); free(S); free(Vt); free(lu); free(lv);
    return rc;
}
