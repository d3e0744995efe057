#include "kernels/gptq.h"
#include "kernels/rng.h"
#include "kernels/half.h"
#include "harness.h"

#include <stdint.h>

static double gauss(uint64_t *s)
{
    double u1 = ((bs_splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (bs_splitmix64(s) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* N samples of n correlated inputs: a few shared factors, a neighbour term and per-input
 * scales spread over two orders of magnitude (so act-order has something to sort). */
static float *make_x(int N, int n, uint64_t seed)
{
    uint64_t s = seed;
    enum { F = 8 };
    double *load = malloc(sizeof(double) * F * n), *scale = malloc(sizeof(double) * n);
    float *X = malloc(sizeof(float) * (size_t)N * n);
    REQUIRE(load && scale && X);
    for (int i = 0; i < F * n; i++)
        load[i] = 0.7 * gauss(&s);
    for (int j = 0; j < n; j++)
        scale[j] = exp(1.1 * gauss(&s));
    for (int t = 0; t < N; t++) {
        double f[F], prev = gauss(&s);
        for (int a = 0; a < F; a++)
            f[a] = gauss(&s);
        for (int j = 0; j < n; j++) {
            double z = gauss(&s), v = z + 0.6 * prev;
            prev = z;
            for (int a = 0; a < F; a++)
                v += load[a * n + j] * f[a];
            X[(size_t)t * n + j] = (float)(v * scale[j]);
        }
    }
    free(load), free(scale);
    return X;
}

static double *hessian(const float *X, int N, int n)
{
    double *H = calloc((size_t)n * n, sizeof(double));
    REQUIRE(H);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < n; i++) {
            double xi = X[(size_t)t * n + i];
            if (xi == 0)
                continue;
            for (int j = 0; j < n; j++)
                H[(size_t)i * n + j] += xi * X[(size_t)t * n + j];
        }
    return H;
}

/* ‖(W − Q) Xᵀ‖_F through H: sqrt(Σ_r d_rᵀ H d_r). */
static double out_err(const float *W, const float *Q, int m, int n, const double *H)
{
    double *d = malloc(sizeof(double) * n), tot = 0;
    REQUIRE(d);
    for (int r = 0; r < m; r++) {
        for (int j = 0; j < n; j++)
            d[j] = (double)W[(size_t)r * n + j] - Q[(size_t)r * n + j];
        for (int i = 0; i < n; i++) {
            double a = 0;
            for (int j = 0; j < n; j++)
                a += H[(size_t)i * n + j] * d[j];
            tot += d[i] * a;
        }
    }
    free(d);
    return sqrt(tot);
}

static double frob_diff(const float *A, const float *B, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += ((double)A[i] - B[i]) * ((double)A[i] - B[i]);
    return sqrt(s);
}

/* Unblocked GPTQ in double, straight from the paper: the check on the blocked, lazy,
 * float implementation. Asymmetric grid fitted at each group's first column. */
static void ref_gptq_asym(const float *W, int m, int n, const double *H, int bits, int group,
                          float *Q)
{
    double *A = malloc(sizeof(double) * n * n), *L = calloc((size_t)n * n, sizeof(double));
    double *Inv = calloc((size_t)n * n, sizeof(double)), *U = calloc((size_t)n * n, sizeof(double));
    double *w = malloc(sizeof(double) * (size_t)m * n);
    REQUIRE(A && L && Inv && U && w);
    memcpy(A, H, sizeof(double) * n * n);
    double mean = 0;
    for (int j = 0; j < n; j++) {
        int dead = A[j * n + j] == 0;
        if (dead)
            A[j * n + j] = 1;
        for (int r = 0; r < m; r++)
            w[(size_t)r * n + j] = dead ? 0 : W[(size_t)r * n + j];
    }
    for (int j = 0; j < n; j++)
        mean += A[j * n + j] / n;
    for (int j = 0; j < n; j++)
        A[j * n + j] += 0.01 * mean;
    /* A = L Lᵀ */
    for (int j = 0; j < n; j++)
        for (int i = j; i < n; i++) {
            double s = A[i * n + j];
            for (int k = 0; k < j; k++)
                s -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = i == j ? sqrt(s) : s / L[j * n + j];
        }
    /* Inv = A⁻¹ column by column from L y = e, Lᵀ x = y */
    double *y = malloc(sizeof(double) * n);
    REQUIRE(y);
    for (int c = 0; c < n; c++) {
        for (int i = 0; i < n; i++) {
            double s = i == c;
            for (int k = 0; k < i; k++)
                s -= L[i * n + k] * y[k];
            y[i] = s / L[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = y[i];
            for (int k = i + 1; k < n; k++)
                s -= L[k * n + i] * Inv[k * n + c];
            Inv[i * n + c] = s / L[i * n + i];
        }
    }
    /* Inv = Uᵀ U, U upper: U[j][i] for i ≥ j */
    for (int j = 0; j < n; j++)
        for (int i = j; i < n; i++) {
            double s = Inv[j * n + i];
            for (int k = 0; k < j; k++)
                s -= U[k * n + j] * U[k * n + i];
            U[j * n + i] = i == j ? sqrt(s) : s / U[j * n + j];
        }
    int maxq = (1 << bits) - 1;
    float *sc = malloc(sizeof(float) * m), *lo = malloc(sizeof(float) * m);
    REQUIRE(sc && lo);
    for (int j = 0; j < n; j++) {
        if (j % group == 0)
            for (int r = 0; r < m; r++) {
                float mn = (float)w[(size_t)r * n + j], mx = mn;
                for (int c = j; c < j + group && c < n; c++) {
                    float v = (float)w[(size_t)r * n + c];
                    mn = fminf(mn, v);
                    mx = fmaxf(mx, v);
                }
                sc[r] = bs_fp16_to_f32(bs_f32_to_fp16((mx - mn) / maxq));
                lo[r] = bs_fp16_to_f32(bs_f32_to_fp16(mn));
            }
        for (int r = 0; r < m; r++) {
            double v = w[(size_t)r * n + j];
            double c = sc[r] > 0 ? floor((v - lo[r]) / sc[r] + 0.5) : 0;
            c = c < 0 ? 0 : c > maxq ? maxq : c;
            double q = lo[r] + sc[r] * c;
            Q[(size_t)r * n + j] = (float)q;
            double err = (v - q) / U[j * n + j];
            for (int k = j + 1; k < n; k++)
                w[(size_t)r * n + k] -= err * U[j * n + k];
        }
    }
    free(A), free(L), free(Inv), free(U), free(w), free(y), free(sc), free(lo);
}

typedef struct {
    int m, n, ng;
    float *W, *Q, *Q2;
    uint8_t *codes;
    uint16_t *scales, *mins;
} bufs;

static bufs bufs_new(int m, int n, int group)
{
    bufs b = {m, n, (n + group - 1) / group, NULL, NULL, NULL, NULL, NULL, NULL};
    b.W = malloc(sizeof(float) * (size_t)m * n);
    b.Q = malloc(sizeof(float) * (size_t)m * n);
    b.Q2 = malloc(sizeof(float) * (size_t)m * n);
    b.codes = malloc((size_t)m * n);
    b.scales = malloc(sizeof(uint16_t) * (size_t)m * b.ng);
    b.mins = malloc(sizeof(uint16_t) * (size_t)m * b.ng);
    REQUIRE(b.W && b.Q && b.Q2 && b.codes && b.scales && b.mins);
    return b;
}

static void bufs_free(bufs *b)
{
    free(b->W), free(b->Q), free(b->Q2), free(b->codes), free(b->scales), free(b->mins);
}

/* Every value is exactly min + scale·code for its group, with the code in range. */
static int count_off_grid_asym(const bufs *b, int bits, int group)
{
    int bad = 0;
    for (int r = 0; r < b->m; r++)
        for (int j = 0; j < b->n; j++) {
            size_t k = (size_t)r * b->ng + j / group;
            int c = b->codes[(size_t)r * b->n + j];
            if (c >= (1 << bits) || b->Q[(size_t)r * b->n + j]
                                        != bs_asym_value(b->scales[k], b->mins[k], c))
                bad++;
        }
    return bad;
}

static void test_asym(void)
{
    const int m = 48, n = 300, N = 1024, group = 32; /* n: partial last group and block */
    float *X = make_x(N, n, 7);
    double *H = hessian(X, N, n);
    bufs b = bufs_new(m, n, group);
    uint64_t s = 99;
    for (size_t i = 0; i < (size_t)m * n; i++)
        b.W[i] = (float)(0.05 * gauss(&s));
    bs_err e = {0};
    for (int bits = 2; bits <= 4; bits++) {
        REQUIRE(bs_quant_rtn_asym(b.W, m, n, bits, group, b.Q, b.codes, b.scales, b.mins, &e)
                == 0);
        CHECKF(count_off_grid_asym(&b, bits, group) == 0, "rtn %d bits off the grid", bits);
        /* RTN: the nearest grid point, so within half a step of every weight */
        int far = 0;
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++) {
                float sc = bs_fp16_to_f32(b.scales[(size_t)r * b.ng + j / group]);
                size_t k = (size_t)r * n + j;
                if (fabsf(b.W[k] - b.Q[k]) > 0.5f * sc * 1.001f + 1e-6f)
                    far++;
            }
        CHECKF(far == 0, "rtn %d bits: %d weights farther than half a step", bits, far);
        double e_rtn = out_err(b.W, b.Q, m, n, H);

        bs_gptq_opts o = BS_GPTQ_OPTS_DEFAULT;
        REQUIRE(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, &o, bits, group, b.Q, b.codes,
                             b.scales, b.mins, &e) == 0);
        CHECKF(count_off_grid_asym(&b, bits, group) == 0, "gptq %d bits off the grid", bits);
        double e_gptq = out_err(b.W, b.Q, m, n, H);

        /* the blocked float implementation against the unblocked double reference */
        ref_gptq_asym(b.W, m, n, H, bits, group, b.Q2);
        double e_ref = out_err(b.W, b.Q2, m, n, H);
        int same = 0;
        for (size_t i = 0; i < (size_t)m * n; i++)
            same += b.Q[i] == b.Q2[i];
        double agree = (double)same / ((double)m * n);
        CHECKF(agree > 0.98, "%d bits: only %.4f of the weights agree with the reference", bits,
               agree);
        CHECKF(fabs(e_gptq - e_ref) < 0.01 * e_ref, "%d bits: error %g vs reference %g", bits,
               e_gptq, e_ref);

        /* the block size changes only the order of float operations */
        o.block = 32;
        REQUIRE(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, &o, bits, group, b.Q2, b.codes,
                             b.scales, b.mins, &e) == 0);
        double e_b32 = out_err(b.W, b.Q2, m, n, H);
        CHECKF(fabs(e_b32 - e_gptq) < 0.01 * e_gptq, "block 32: %g vs %g", e_b32, e_gptq);

        o = BS_GPTQ_OPTS_DEFAULT;
        o.static_groups = 1;
        REQUIRE(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, &o, bits, group, b.Q, b.codes,
                             b.scales, b.mins, &e) == 0);
        double e_static = out_err(b.W, b.Q, m, n, H);
        o.act_order = 1;
        REQUIRE(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, &o, bits, group, b.Q, b.codes,
                             b.scales, b.mins, &e) == 0);
        CHECKF(count_off_grid_asym(&b, bits, group) == 0, "act-order %d bits off the grid",
               bits);
        double e_act = out_err(b.W, b.Q, m, n, H);

        fprintf(stderr,
                "asym %d bits, g%d, %d×%d: ‖(W−Q)Xᵀ‖ RTN %.4g, GPTQ %.4g (ratio %.3f; "
                "reference %.4g, %.2f%% same), static groups %.4g (%.3f), act-order %.4g "
                "(%.3f), block 32 %.4g\n",
                bits, group, m, n, e_rtn, e_gptq, e_gptq / e_rtn, e_ref, 100 * agree, e_static,
                e_static / e_rtn, e_act, e_act / e_rtn, e_b32);
        CHECKF(e_gptq < e_rtn, "%d bits: GPTQ %g not below RTN %g", bits, e_gptq, e_rtn);
        CHECKF(e_act < e_rtn, "%d bits: act-order GPTQ %g not below RTN %g", bits, e_act, e_rtn);
    }

    /* float Hessian gives the same answer as double */
    float *Hf = malloc(sizeof(float) * n * n);
    REQUIRE(Hf);
    for (int i = 0; i < n * n; i++)
        Hf[i] = (float)H[i];
    REQUIRE(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, NULL, 3, group, b.Q, b.codes, b.scales,
                         b.mins, &e) == 0);
    REQUIRE(bs_gptq_asym(b.W, m, n, Hf, BS_HESS_F32, NULL, 3, group, b.Q2, b.codes, b.scales,
                         b.mins, &e) == 0);
    double e64 = out_err(b.W, b.Q, m, n, H), e32 = out_err(b.W, b.Q2, m, n, H);
    CHECKF(fabs(e64 - e32) < 0.01 * e64, "float Hessian %g vs double %g", e32, e64);

    /* Dead inputs: a zero column of X makes H's row and column zero. Their weights are
     * dropped (quantised from 0) and nothing turns non-finite. */
    int dead[3] = {5, 77, 299};
    for (int t = 0; t < N; t++)
        for (int d = 0; d < 3; d++)
            X[(size_t)t * n + dead[d]] = 0;
    double *Hd = hessian(X, N, n);
    CHECK(Hd[5 * n + 5] == 0 && Hd[5 * n + 6] == 0);
    for (int ao = 0; ao < 2; ao++) {
        bs_gptq_opts o = BS_GPTQ_OPTS_DEFAULT;
        o.act_order = ao;
        int rc = bs_gptq_asym(b.W, m, n, Hd, BS_HESS_F64, &o, 3, group, b.Q, b.codes, b.scales,
                              b.mins, &e);
        CHECKF(rc == 0, "dead inputs: %s", e.msg);
        int nonfinite = 0, notzero = 0;
        for (size_t i = 0; i < (size_t)m * n; i++)
            nonfinite += !isfinite(b.Q[i]);
        for (int r = 0; r < m; r++)
            for (int d = 0; d < 3; d++) {
                int j = dead[d];
                size_t k = (size_t)r * b.ng + j / group;
                float sc = bs_fp16_to_f32(b.scales[k]), lo = bs_fp16_to_f32(b.mins[k]);
                /* the grid point nearest 0 (the grid need not contain 0 exactly) */
                float want = lo + sc * fminf(fmaxf(floorf((0 - lo) / sc + 0.5f), 0), 7);
                notzero += b.Q[(size_t)r * n + j] != want;
            }
        CHECK(nonfinite == 0);
        CHECKF(notzero == 0, "act-order %d: %d dead weights not rounded from 0", ao, notzero);
        CHECK(count_off_grid_asym(&b, 3, group) == 0);
        double e_rtn, e_g;
        REQUIRE(bs_quant_rtn_asym(b.W, m, n, 3, group, b.Q2, b.codes, b.scales, b.mins, &e)
                == 0);
        e_rtn = out_err(b.W, b.Q2, m, n, Hd);
        e_g = out_err(b.W, b.Q, m, n, Hd);
        CHECKF(e_g < e_rtn, "dead inputs: GPTQ %g vs RTN %g", e_g, e_rtn);
    }

    /* Bad input is refused with a message naming the problem. */
    b.W[3 * n + 17] = NAN;
    e.msg[0] = 0;
    CHECK(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, NULL, 3, group, b.Q, b.codes, b.scales,
                       b.mins, &e) == -1);
    CHECKF(strstr(e.msg, "non-finite") && strstr(e.msg, "row 3, column 17"), "%s", e.msg);
    CHECK(bs_quant_rtn_asym(b.W, m, n, 3, group, b.Q, b.codes, b.scales, b.mins, &e) == -1);
    b.W[3 * n + 17] = 0.01f;
    H[2 * n + 9] = INFINITY;
    e.msg[0] = 0;
    CHECK(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, NULL, 3, group, b.Q, b.codes, b.scales,
                       b.mins, &e) == -1);
    CHECKF(strstr(e.msg, "Hessian") && strstr(e.msg, "non-finite"), "%s", e.msg);
    H[2 * n + 9] = H[9 * n + 2];
    double keep = H[4 * n + 4];
    H[4 * n + 4] = -1e6; /* indefinite */
    e.msg[0] = 0;
    bs_gptq_opts o = BS_GPTQ_OPTS_DEFAULT;
    o.damp = 0;
    CHECK(bs_gptq_asym(b.W, m, n, H, BS_HESS_F64, &o, 3, group, b.Q, b.codes, b.scales,
                       b.mins, &e) == -1);
    CHECKF(strstr(e.msg, "positive definite") != NULL, "%s", e.msg);
    H[4 * n + 4] = keep;
    CHECK(bs_quant_rtn_asym(b.W, m, n, 9, group, b.Q, b.codes, b.scales, b.mins, &e) == -1);
    b.W[0] = 1e6f; /* a group span beyond fp16 */
    CHECK(bs_quant_rtn_asym(b.W, m, n, 3, group, b.Q, b.codes, b.scales, b.mins, &e) == -1);
    CHECKF(strstr(e.msg, "fp16") != NULL, "%s", e.msg);

    bufs_free(&b);
    free(X), free(H), free(Hf), free(Hd);
}

/* ---------------------------------------------------------------- gq and saq */

/* Unpacks bit j of row r of a packed plane. */
static int plane_bit(const uint8_t *bits, int n, int r, int j)
{
    return (bits[(size_t)r * ((n + 7) / 8) + j / 8] >> (j % 8)) & 1;
}

/* The planes of codes, checked against their definition:
 * - plane l holds bit K−1−l of each code; pad bits are zero;
 * - the float sum of the first d planes (±M/2^(l+1)) is exactly the d-level value of the
 *   code truncated to d levels, and for d = K exactly Q. */
static void check_planes(const float *Q, const uint8_t *codes, const uint16_t *scales, int m,
                         int n, int group, int K, const char *what)
{
    int ng = (n + group - 1) / group, stride = (n + 7) / 8;
    uint8_t *pl = malloc((size_t)K * m * stride);
    float *acc = calloc((size_t)m * n, sizeof(float));
    REQUIRE(pl && acc);
    for (int l = 0; l < K; l++)
        bs_gq_plane(codes, m, n, K, l, pl + (size_t)l * m * stride);
    int bad_bit = 0, bad_pad = 0, bad_prefix = 0, bad_full = 0;
    for (int l = 0; l < K; l++) {
        const uint8_t *p = pl + (size_t)l * m * stride;
        for (int r = 0; r < m; r++) {
            if (n % 8 && p[(size_t)r * stride + stride - 1] >> (n % 8))
                bad_pad++;
            for (int j = 0; j < n; j++) {
                int c = codes[(size_t)r * n + j], b = plane_bit(p, n, r, j);
                bad_bit += b != ((c >> (K - 1 - l)) & 1);
                float M = bs_fp16_to_f32(scales[(size_t)r * ng + j / group]);
                float h = M / (float)(2 << l);
                float *a = &acc[(size_t)r * n + j];
                *a = b ? *a + h : *a - h;
                bad_prefix += *a != bs_gq_value(c >> (K - 1 - l), M, l + 1);
                if (l == K - 1)
                    bad_full += *a != Q[(size_t)r * n + j];
            }
        }
    }
    CHECKF(bad_bit == 0 && bad_pad == 0, "%s: %d plane bits wrong, %d pad bits set", what,
           bad_bit, bad_pad);
    CHECKF(bad_prefix == 0, "%s: %d plane prefixes differ from truncated codes", what,
           bad_prefix);
    CHECKF(bad_full == 0, "%s: %d plane sums differ from the dequantised weights", what,
           bad_full);
    free(pl), free(acc);
}

static void test_plane_layout(void)
{
    /* Hand-made: 2 rows of 11 weights, K = 2. Plane 0 is the high code bit, LSB-first. */
    const uint8_t codes[22] = {3, 0, 0, 0, 0, 0, 0, 2, 2, 3, 0,
                               1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1};
    uint8_t bits[4];
    bs_gq_plane(codes, 2, 11, 2, 0, bits);
    CHECK(bits[0] == 0x81 && bits[1] == 0x03 && bits[2] == 0x00 && bits[3] == 0x00);
    bs_gq_plane(codes, 2, 11, 2, 1, bits);
    CHECK(bits[0] == 0x01 && bits[1] == 0x02 && bits[2] == 0xff && bits[3] == 0x04);

    /* saq by hand: M = 1, level 0 → h = 1/2; sign(0) = +1. */
    const float R[4] = {0.3f, -0.2f, 0.0f, -0.0f};
    const float M[1] = {1.0f};
    float up[4];
    bs_saq_plane(R, 1, 4, 32, M, 0, bits, up);
    CHECK(bits[0] == 0x0d);
    CHECK(up[0] == 0.3f - 0.5f && up[1] == -0.2f + 0.5f && up[2] == -0.5f && up[3] == -0.5f);
    /* level 2 → h = 1/8, in place */
    float R2[4] = {0.3f, -0.2f, 0.0f, 1.0f};
    bs_saq_plane(R2, 1, 4, 32, M, 2, bits, R2);
    CHECK(bits[0] == 0x0d && R2[0] == 0.3f - 0.125f && R2[1] == -0.2f + 0.125f);
}

/* One weight matrix of a llama2.c checkpoint: layer l, linear t (0..6 = wq wk wv wo w1 w2 w3). */
static float *load_linear(const char *path, int layer, int t, int *rows, int *cols)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int32_t h[7];
    if (fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return NULL;
    }
    int dim = h[0], hid = h[1], L = h[2], kv = dim * h[4] / h[3];
    int vocab = h[5] < 0 ? -h[5] : h[5];
    size_t sz[7] = {(size_t)dim * dim, (size_t)kv * dim, (size_t)kv * dim, (size_t)dim * dim,
                    (size_t)hid * dim, (size_t)dim * hid, (size_t)hid * dim};
    int rr[7] = {dim, kv, kv, dim, hid, dim, hid}, cc[7] = {dim, dim, dim, dim, dim, hid, dim};
    size_t off = (size_t)vocab * dim + (size_t)L * dim;
    for (int k = 0; k < t; k++)
        off += L * sz[k] + (k == 3 ? (size_t)L * dim : 0); /* rms_ffn sits after wo */
    off += layer * sz[t];
    float *w = malloc(sizeof(float) * sz[t]);
    if (!w || fseek(f, (long)(sizeof h + off * sizeof(float)), SEEK_SET)
        || fread(w, sizeof(float), sz[t], f) != sz[t]) {
        free(w);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *rows = rr[t];
    *cols = cc[t];
    return w;
}

static void test_gq_synthetic(void)
{
    const int m = 40, n = 200, N = 1024, group = 32;
    float *X = make_x(N, n, 11);
    double *H = hessian(X, N, n);
    bufs b = bufs_new(m, n, group);
    uint64_t s = 5;
    for (size_t i = 0; i < (size_t)m * n; i++)
        b.W[i] = (float)(0.05 * gauss(&s) * (1 + (bs_splitmix64(&s) % 16 == 0) * 3));
    bs_err e = {0};
    uint16_t *M16 = malloc(sizeof(uint16_t) * m * b.ng);
    float *Mf = malloc(sizeof(float) * m * b.ng), *R = malloc(sizeof(float) * m * n);
    uint8_t *pl = malloc((size_t)m * ((n + 7) / 8)), *pq = malloc((size_t)m * ((n + 7) / 8));
    REQUIRE(M16 && Mf && R && pl && pq);
    bs_group_absmax(b.W, m, n, group, M16);
    for (int i = 0; i < m * b.ng; i++)
        Mf[i] = bs_fp16_to_f32(M16[i]);
    for (int K = 1; K <= 6; K++) {
        /* RTN onto the gq grid == K saq planes, bit for bit */
        REQUIRE(bs_quant_rtn_gq(b.W, m, n, K, group, 0, b.Q, b.codes, b.scales, &e) == 0);
        CHECK(memcmp(b.scales, M16, sizeof(uint16_t) * m * b.ng) == 0);
        check_planes(b.Q, b.codes, b.scales, m, n, group, K, "rtn gq");
        memcpy(R, b.W, sizeof(float) * m * n);
        int differ = 0;
        for (int l = 0; l < K; l++) {
            bs_saq_plane(R, m, n, group, Mf, l, pl, R);
            bs_gq_plane(b.codes, m, n, K, l, pq);
            differ += memcmp(pl, pq, (size_t)m * ((n + 7) / 8)) != 0;
        }
        CHECKF(differ == 0, "K=%d: %d saq planes differ from the rtn gq planes", K, differ);
        /* Embedded coding: after K levels every residual is within M/2^K, plus what M lost
         * to fp16 rounding when it rounded below max |w|. */
        int over = 0;
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++) {
                int g = j / group;
                float amax = 0;
                for (int c = g * group; c < n && c < (g + 1) * group; c++)
                    amax = fmaxf(amax, fabsf(b.W[(size_t)r * n + c]));
                float Mg = Mf[(size_t)r * b.ng + g];
                float bound = Mg / (float)(1 << K) + fmaxf(amax - Mg, 0);
                over += fabsf(R[(size_t)r * n + j]) > bound * 1.0001f;
            }
        CHECKF(over == 0, "K=%d: %d saq residuals above M/2^K", K, over);
        double e_rtn = out_err(b.W, b.Q, m, n, H);

        REQUIRE(bs_quant_rtn_gq(b.W, m, n, K, group, 1, b.Q2, b.codes, b.scales, &e) == 0);
        check_planes(b.Q2, b.codes, b.scales, m, n, group, K, "rtn gq clip");
        double f_plain = frob_diff(b.W, b.Q, (size_t)m * n);
        double f_clip = frob_diff(b.W, b.Q2, (size_t)m * n);
        CHECKF(f_clip <= f_plain, "K=%d: clip search raised the squared error %g > %g", K,
               f_clip, f_plain);
        double e_rtn_clip = out_err(b.W, b.Q2, m, n, H);

        REQUIRE(bs_gptq_gq(b.W, m, n, H, BS_HESS_F64, NULL, K, group, 0, b.Q, b.codes,
                           b.scales, &e) == 0);
        check_planes(b.Q, b.codes, b.scales, m, n, group, K, "gptq gq");
        double e_g = out_err(b.W, b.Q, m, n, H);
        REQUIRE(bs_gptq_gq(b.W, m, n, H, BS_HESS_F64, NULL, K, group, 1, b.Q, b.codes,
                           b.scales, &e) == 0);
        check_planes(b.Q, b.codes, b.scales, m, n, group, K, "gptq gq clip");
        double e_gc = out_err(b.W, b.Q, m, n, H);
        bs_gptq_opts o = BS_GPTQ_OPTS_DEFAULT;
        o.act_order = 1;
        REQUIRE(bs_gptq_gq(b.W, m, n, H, BS_HESS_F64, &o, K, group, 0, b.Q, b.codes, b.scales,
                           &e) == 0);
        check_planes(b.Q, b.codes, b.scales, m, n, group, K, "gptq gq act-order");
        double e_ga = out_err(b.W, b.Q, m, n, H);
        fprintf(stderr,
                "gq K=%d synthetic %d×%d: ‖(W−Q)Xᵀ‖ RTN %.4g (clip %.4g), GPTQ %.4g "
                "(ratio %.3f), GPTQ+clip %.4g (%.3f), act-order %.4g (%.3f)\n",
                K, m, n, e_rtn, e_rtn_clip, e_g, e_g / e_rtn, e_gc, e_gc / e_rtn, e_ga,
                e_ga / e_rtn);
        if (K >= 2)
            CHECKF(e_g < e_rtn, "K=%d: GPTQ gq %g not below RTN gq %g", K, e_g, e_rtn);
    }
    free(M16), free(Mf), free(R), free(pl), free(pq);
    bufs_free(&b);
    free(X), free(H);
}

/* A real matrix: error falls with every level, with and without GPTQ. */
static void test_gq_real(const char *file, int layer, int t, const char *name)
{
    int m, n;
    float *W = load_linear(bs_shared(file), layer, t, &m, &n);
    CHECKF(W != NULL, "cannot read %s", bs_shared(file));
    if (!W)
        return;
    const int N = 512, group = 32;
    uint64_t s = 3;
    float *X = malloc(sizeof(float) * (size_t)N * n);
    REQUIRE(X);
    for (size_t i = 0; i < (size_t)N * n; i++)
        X[i] = (float)gauss(&s);
    double *H = hessian(X, N, n);
    bufs b = bufs_new(m, n, group);
    bs_err e = {0};
    double prev_g = INFINITY, prev_r = INFINITY;
    fprintf(stderr, "%s %s.%d (%d×%d), gaussian X:", file, name, layer, m, n);
    for (int K = 1; K <= 6; K++) {
        REQUIRE(bs_quant_rtn_gq(W, m, n, K, group, 0, b.Q, b.codes, b.scales, &e) == 0);
        double er = out_err(W, b.Q, m, n, H);
        REQUIRE(bs_gptq_gq(W, m, n, H, BS_HESS_F64, NULL, K, group, 0, b.Q, b.codes, b.scales,
                           &e) == 0);
        check_planes(b.Q, b.codes, b.scales, m, n, group, K, "real gptq gq");
        double eg = out_err(W, b.Q, m, n, H);
        REQUIRE(bs_gptq_gq(W, m, n, H, BS_HESS_F64, NULL, K, group, 1, b.Q, b.codes, b.scales,
                           &e) == 0);
        double egc = out_err(W, b.Q, m, n, H);
        fprintf(stderr, " K=%d rtn %.4g gptq %.4g (%.3f) +clip %.4g;", K, er, eg, eg / er, egc);
        CHECKF(eg < prev_g, "K=%d: GPTQ error %g did not fall from %g", K, eg, prev_g);
        CHECKF(er < prev_r, "K=%d: RTN error %g did not fall from %g", K, er, prev_r);
        CHECKF(eg < er, "K=%d: GPTQ %g not below RTN %g", K, eg, er);
        prev_g = eg;
        prev_r = er;
    }
    fputc('\n', stderr);
    fprintf(stderr, "  asym g%d:", group);
    for (int bits = 2; bits <= 4; bits++) {
        REQUIRE(bs_quant_rtn_asym(W, m, n, bits, group, b.Q, b.codes, b.scales, b.mins, &e)
                == 0);
        double er = out_err(W, b.Q, m, n, H);
        REQUIRE(bs_gptq_asym(W, m, n, H, BS_HESS_F64, NULL, bits, group, b.Q, b.codes, b.scales,
                             b.mins, &e) == 0);
        CHECK(count_off_grid_asym(&b, bits, group) == 0);
        double eg = out_err(W, b.Q, m, n, H);
        fprintf(stderr, " %d bits rtn %.4g gptq %.4g (%.3f);", bits, er, eg, eg / er);
        CHECKF(eg < er, "%d bits: GPTQ %g not below RTN %g", bits, eg, er);
    }
    fputc('\n', stderr);
    bufs_free(&b);
    free(W), free(X), free(H);
}

int main(void)
{
    test_plane_layout();
    test_asym();
    test_gq_synthetic();
    test_gq_real("models/stories260K.bin", 0, 4, "w1");
    test_gq_real("models/stories260K.bin", 2, 5, "w2");
    test_gq_real("models/babyllama-d128.bin", 1, 0, "wq");
    TEST_MAIN_END();
}
