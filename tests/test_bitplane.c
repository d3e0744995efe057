/* Sign-plane kernels against a double-precision reference built from the definition
 * W[r,j] = sum_l 2^-(shift0+l) S[r,g(j)] (2 b_l[r,j] - 1), on random and awkward shapes,
 * for every path this CPU runs (each called explicitly), plus the avd product.
 * Tolerances: float paths 1e-5 * sum_j Wmax[r,j] |x[j]| (Wmax the largest |W| the group's
 * scale and planes allow: plane-by-plane sums cancel, so the rounding scales with it); int8 paths the quantisation bound
 * sum_g max|x_g|/254 * sum_{j in g} |W[r,j]| (bitplane.h) plus that float slack. The int8
 * paths must also show a non-zero error somewhere, or the bound check proves nothing.
 * With BS_KERNEL set (meson runs it once with BS_KERNEL=portable) the default path must be
 * the one named. */
#include "kernels/bitplane.h"
#include "kernels/rng.h"
#include "kernels/half.h"
#include "harness.h"

#include <stdint.h>

static uint64_t rng_s = 0x1234567;

static double urand(void)
{
    return (double)(bs_splitmix64(&rng_s) >> 11) / 9007199254740992.0;
}

static int irand(int lo, int hi)
{
    return lo + (int)(bs_splitmix64(&rng_s) % (uint64_t)(hi - lo + 1));
}

typedef struct {
    bs_kernel_planes p;
    uint8_t *planes[BS_KERNEL_MAX_PLANES];
    uint16_t *scales;
    double *w; /* rows x cols reference */
} mat;

static int bit_at(const uint8_t *row, int j)
{
    return (row[j >> 3] >> (j & 7)) & 1;
}

static void mat_make(mat *m, int rows, int cols, int group, int d, int shift0, int dirty_pad)
{
    memset(m, 0, sizeof *m);
    size_t rb = ((size_t)cols + 7) / 8, G = ((size_t)cols + group - 1) / group;
    for (int l = 0; l < d; l++) {
        m->planes[l] = malloc(rows * rb);
        REQUIRE(m->planes[l]);
        for (size_t i = 0; i < rows * rb; i++)
            m->planes[l][i] = (uint8_t)bs_splitmix64(&rng_s);
        /* the store writes pad bits 0; half the time leave junk there, which the
         * kernels must ignore */
        if (!dirty_pad && cols % 8)
            for (int r = 0; r < rows; r++)
                m->planes[l][r * rb + rb - 1] &= (uint8_t)((1u << (cols % 8)) - 1);
    }
    m->scales = malloc(sizeof(uint16_t) * rows * G);
    REQUIRE(m->scales);
    for (size_t i = 0; i < rows * G; i++)
        m->scales[i] = bs_f32_to_fp16((float)(0.01 + 2.0 * urand()));
    m->p = (bs_kernel_planes){rows, cols, group, d, (const uint8_t *const *)m->planes, m->scales, shift0};
    m->w = malloc(sizeof(double) * rows * cols);
    REQUIRE(m->w);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            double s = bs_fp16_to_f32(m->scales[r * G + j / group]), v = 0;
            for (int l = 0; l < d; l++)
                v += ldexp(1.0, -(shift0 + l)) * s * (bit_at(m->planes[l] + r * rb, j) ? 1 : -1);
            m->w[(size_t)r * cols + j] = v;
        }
}

static void mat_free(mat *m)
{
    for (int l = 0; l < BS_KERNEL_MAX_PLANES; l++)
        free(m->planes[l]);
    free(m->scales);
    free(m->w);
}

static void rand_x(float *x, int n)
{
    for (int j = 0; j < n; j++) {
        double v = 2 * urand() - 1;
        if (bs_splitmix64(&rng_s) % 17 == 0)
            v *= 8; /* outliers, as activations have */
        x[j] = (float)v;
    }
    if (n > 40 && bs_splitmix64(&rng_s) % 3 == 0)
        memset(x + 8, 0, sizeof(float) * 16); /* an all-zero stretch: max |x| = 0 groups */
}

/* exact value and the two error allowances for row r */
static void reference(const mat *m, int r, const float *x, double *exact, double *fl, double *q8)
{
    int cols = m->p.cols, group = m->p.group;
    const double *w = m->w + (size_t)r * cols;
    double e = 0, a = 0, qb = 0;
    size_t G = ((size_t)cols + group - 1) / group;
    /* the largest |W| the planes can give in a group: S * (2^(1-shift0) - 2^(1-shift0-d)) */
    double span = ldexp(2.0, -m->p.shift0) - ldexp(2.0, -(m->p.shift0 + m->p.nplanes));
    for (int g0 = 0; g0 < cols; g0 += group) {
        int g1 = g0 + group < cols ? g0 + group : cols;
        double amax = 0, wabs = 0;
        double wmax = span * bs_fp16_to_f32(m->scales[(size_t)r * G + g0 / group]);
        for (int j = g0; j < g1; j++) {
            e += w[j] * x[j];
            a += wmax * fabs(x[j]);
            amax = fmax(amax, fabs(x[j]));
            wabs += fabs(w[j]);
        }
        qb += amax / 254.0 * wabs;
    }
    *exact = e;
    *fl = 1e-5 * a + 1e-30;
    *q8 = qb;
}

static int is_int8(bs_kernel_isa isa)
{
    return isa == BS_KERNEL_AVX2 || isa == BS_KERNEL_AVX512;
}

static double worst_ratio[BS_KERNEL_NISA]; /* max err / quantisation bound seen */
static long compared[BS_KERNEL_NISA];

/* y (from the kernel with y0 as the starting value when accumulating) against the
 * reference; returns the number of bad rows. */
static int compare(const mat *m, bs_kernel_isa isa, const float *x, const float *y,
                   const float *y0, int accumulate, int use_int8_bound, const char *what)
{
    int bad = 0;
    for (int r = 0; r < m->p.rows; r++) {
        double ex, fl, q8;
        reference(m, r, x, &ex, &fl, &q8);
        double base = accumulate ? y0[r] : 0.0;
        double err = fabs((double)y[r] - (base + ex));
        double tol = fl + 1e-6 * fabs(base) + (use_int8_bound ? q8 * (1 + 1e-5) : 0.0);
        if (use_int8_bound && q8 > 0 && err / q8 > worst_ratio[isa])
            worst_ratio[isa] = err / q8;
        compared[isa]++;
        if (!(err <= tol)) {
            if (bad++ < 3)
                fprintf(stderr, "%s %s %dx%d g%d d%d s%d row %d: got %.9g want %.9g (err %.3g tol %.3g)\n",
                        what, bs_kernel_isa_name(isa), m->p.rows, m->p.cols, m->p.group,
                        m->p.nplanes, m->p.shift0, r, y[r], base + ex, err, tol);
        }
    }
    return bad;
}

static void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    REQUIRE(p);
    return p;
}

static void check_planes(int rows, int cols, int group, int d, int shift0, int dirty)
{
    mat m;
    mat_make(&m, rows, cols, group, d, shift0, dirty);
    float *x = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * rows);
    float *y0 = malloc(sizeof(float) * rows), *yf = malloc(sizeof(float) * rows);
    REQUIRE(x && y && y0 && yf);
    void *scr = xalloc(bs_kernel_planes_scratch(cols, group));
    rand_x(x, cols);
    for (int r = 0; r < rows; r++)
        y0[r] = (float)(urand() - 0.5);
    for (int i = 0; i < BS_KERNEL_NISA; i++) {
        bs_kernel_isa isa = (bs_kernel_isa)i;
        if (!bs_kernel_isa_supported(isa))
            continue;
        int acc = (int)(bs_splitmix64(&rng_s) & 1);
        memcpy(y, y0, sizeof(float) * rows);
        CHECK(bs_kernel_planes_matvec_isa(isa, &m.p, x, y, acc, scr) == 0);
        CHECK(compare(&m, isa, x, y, y0, acc, is_int8(isa), "matvec") == 0);
        /* row ranges from one prepared scratch give the same bits as the whole */
        memcpy(yf, y, sizeof(float) * rows);
        memcpy(y, y0, sizeof(float) * rows);
        CHECK(bs_kernel_planes_prepare(isa, &m.p, x, scr) == 0);
        int a = rows / 3, b = rows - rows / 4;
        CHECK(bs_kernel_planes_rows(isa, &m.p, scr, b, rows, y, acc) == 0);
        CHECK(bs_kernel_planes_rows(isa, &m.p, scr, 0, a, y, acc) == 0);
        CHECK(bs_kernel_planes_rows(isa, &m.p, scr, a, b, y, acc) == 0);
        CHECK(memcmp(y, yf, sizeof(float) * rows) == 0);
        /* a scratch prepared for one path is refused by another */
        bs_kernel_isa other = isa == BS_KERNEL_PORTABLE ? BS_KERNEL_LUT : BS_KERNEL_PORTABLE;
        CHECK(bs_kernel_planes_rows(other, &m.p, scr, 0, rows, y, acc) == BS_KERNEL_EINVAL);
    }
    free(scr);
    free(x);
    free(y);
    free(y0);
    free(yf);
    mat_free(&m);
}

static void check_materialize_matmul(int rows, int cols, int group, int d, int shift0)
{
    mat m;
    mat_make(&m, rows, cols, group, d, shift0, 1);
    float *w = malloc(sizeof(float) * rows * cols);
    REQUIRE(w);
    for (int i = 0; i < BS_KERNEL_NISA; i++) {
        if (!bs_kernel_isa_supported((bs_kernel_isa)i))
            continue;
        CHECK(bs_kernel_planes_materialize((bs_kernel_isa)i, &m.p, 0, rows, w) == 0);
        int bad = 0;
        for (size_t k = 0; k < (size_t)rows * cols; k++)
            bad += !(fabs(w[k] - m.w[k]) <= 1e-6 * fabs(m.w[k]));
        CHECKF(bad == 0, "materialize %s: %d wrong", bs_kernel_isa_name((bs_kernel_isa)i), bad);
    }
    free(w);
    int toks[] = {1, 2, BS_KERNEL_MATMUL_CROSSOVER - 1, BS_KERNEL_MATMUL_CROSSOVER, BS_KERNEL_MATMUL_CROSSOVER + 3};
    for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
        int T = toks[ti];
        if (T < 1)
            continue;
        float *x = malloc(sizeof(float) * T * cols), *y = malloc(sizeof(float) * T * rows);
        float *y0 = malloc(sizeof(float) * T * rows);
        REQUIRE(x && y && y0);
        for (int t = 0; t < T; t++)
            rand_x(x + (size_t)t * cols, cols);
        for (int k = 0; k < T * rows; k++)
            y0[k] = (float)(urand() - 0.5);
        void *scr = xalloc(bs_kernel_planes_matmul_scratch(cols, group, T));
        for (int i = 0; i < BS_KERNEL_NISA; i++) {
            bs_kernel_isa isa = (bs_kernel_isa)i;
            if (!bs_kernel_isa_supported(isa))
                continue;
            int acc = (int)(bs_splitmix64(&rng_s) & 1);
            memcpy(y, y0, sizeof(float) * T * rows);
            /* two row ranges, as two threads would run them (each with its own scratch
             * in real use; here one after the other) */
            int mid = rows / 2;
            CHECK(bs_kernel_planes_matmul(isa, &m.p, 0, mid, x, T, y, acc, scr) == 0);
            CHECK(bs_kernel_planes_matmul(isa, &m.p, mid, rows, x, T, y, acc, scr) == 0);
            int q8 = bs_kernel_planes_matmul_int8(isa, &m.p, T);
            for (int t = 0; t < T; t++)
                CHECK(compare(&m, isa, x + (size_t)t * cols, y + (size_t)t * rows,
                              y0 + (size_t)t * rows, acc, q8, "matmul") == 0);
            /* below the crossover, every token's row is its own matvec's, bit for bit: a
             * session decoding in a batch gets the sums it would get alone */
            if (q8 || T < bs_kernel_matmul_crossover(isa)) {
                float *y1 = malloc(sizeof(float) * rows);
                REQUIRE(y1);
                int diff = 0;
                for (int t = 0; t < T; t++) {
                    memcpy(y1, y0 + (size_t)t * rows, sizeof(float) * rows);
                    CHECK(bs_kernel_planes_matvec_isa(isa, &m.p, x + (size_t)t * cols, y1, acc, scr) == 0);
                    diff += memcmp(y1, y + (size_t)t * rows, sizeof(float) * rows) != 0;
                }
                CHECKF(diff == 0, "matmul %s, %d tokens: %d rows differ from the matvec's",
                       bs_kernel_isa_name(isa), T, diff);
                free(y1);
            }
        }
        free(scr);
        free(x);
        free(y);
        free(y0);
    }
    mat_free(&m);
}

static void check_avd(int rows, int cols, int k, int dirty)
{
    size_t rb = ((size_t)cols + 7) / 8;
    uint8_t *bits = malloc(rows * rb);
    uint16_t *U = malloc(2 * (size_t)rows * k), *V = malloc(2 * (size_t)cols * k);
    float *x = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * rows);
    float *y0 = malloc(sizeof(float) * rows);
    REQUIRE(bits && U && V && x && y && y0);
    for (size_t i = 0; i < rows * rb; i++)
        bits[i] = (uint8_t)bs_splitmix64(&rng_s);
    if (!dirty && cols % 8)
        for (int r = 0; r < rows; r++)
            bits[r * rb + rb - 1] &= (uint8_t)((1u << (cols % 8)) - 1);
    for (size_t i = 0; i < (size_t)rows * k; i++)
        U[i] = bs_f32_to_fp16((float)(urand() * 0.5));
    for (size_t i = 0; i < (size_t)cols * k; i++)
        V[i] = bs_f32_to_fp16((float)(urand() * 0.5));
    rand_x(x, cols);
    for (int r = 0; r < rows; r++)
        y0[r] = (float)(urand() - 0.5);
    bs_kernel_avd a = {rows, cols, k, bits, U, V};
    void *scr = xalloc(bs_kernel_avd_scratch(cols, k));
    for (int i = 0; i < BS_KERNEL_NISA; i++) {
        bs_kernel_isa isa = (bs_kernel_isa)i;
        if (!bs_kernel_isa_supported(isa) || isa == BS_KERNEL_LUT || isa == BS_KERNEL_AVX2)
            continue; /* those run the portable code */
        int acc = (int)(bs_splitmix64(&rng_s) & 1);
        memcpy(y, y0, sizeof(float) * rows);
        CHECK(bs_kernel_avd_matvec(isa, &a, x, y, acc, scr) == 0);
        int bad = 0;
        for (int r = 0; r < rows; r++) {
            double e = 0, s = 0;
            for (int j = 0; j < cols; j++) {
                double mag = 0, amag = 0;
                for (int t = 0; t < k; t++) {
                    double p = (double)bs_fp16_to_f32(U[(size_t)r * k + t]) * bs_fp16_to_f32(V[(size_t)j * k + t]);
                    mag += p;
                    amag += fabs(p);
                }
                double sg = bit_at(bits + r * rb, j) ? 1 : -1;
                e += sg * mag * x[j];
                s += amag * fabs(x[j]);
            }
            double want = (acc ? y0[r] : 0.0) + e;
            double err = fabs(y[r] - want), tol = 1e-5 * s + 1e-6 * fabs(y0[r]) + 1e-30;
            if (!(err <= tol) && bad++ < 3)
                fprintf(stderr, "avd %s %dx%d k%d row %d: got %.9g want %.9g (err %.3g tol %.3g)\n",
                        bs_kernel_isa_name(isa), rows, cols, k, r, y[r], want, err, tol);
        }
        CHECK(bad == 0);
    }
    free(scr);
    free(bits);
    free(U);
    free(V);
    free(x);
    free(y);
    free(y0);
}

static void check_errors(void)
{
    mat m;
    mat_make(&m, 5, 40, 8, 3, 1, 0);
    float x[40] = {0}, y[5];
    void *scr = xalloc(bs_kernel_planes_scratch(40, 8));
    bs_kernel_planes p = m.p;
    CHECK(bs_kernel_planes_check(&p) == 0);
    p.group = 12;
    CHECK(bs_kernel_planes_matvec_isa(BS_KERNEL_PORTABLE, &p, x, y, 0, scr) == BS_KERNEL_EINVAL);
    p = m.p, p.nplanes = 0;
    CHECK(bs_kernel_planes_check(&p) == BS_KERNEL_EINVAL);
    p = m.p, p.nplanes = 17;
    CHECK(bs_kernel_planes_check(&p) == BS_KERNEL_EINVAL);
    p = m.p, p.shift0 = 0;
    CHECK(bs_kernel_planes_check(&p) == BS_KERNEL_EINVAL);
    p = m.p, p.cols = 0;
    CHECK(bs_kernel_planes_check(&p) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_planes_check(NULL) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_planes_prepare(BS_KERNEL_PORTABLE, &m.p, x, scr) == 0);
    CHECK(bs_kernel_planes_rows(BS_KERNEL_PORTABLE, &m.p, scr, 0, 6, y, 0) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_planes_rows(BS_KERNEL_PORTABLE, &m.p, scr, 3, 2, y, 0) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_planes_rows(BS_KERNEL_PORTABLE, &m.p, scr, 2, 2, y, 0) == 0);
    p = m.p, p.cols = 39; /* same scratch, other shape */
    CHECK(bs_kernel_planes_rows(BS_KERNEL_PORTABLE, &p, scr, 0, 5, y, 0) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_planes_prepare((bs_kernel_isa)7, &m.p, x, scr) == BS_KERNEL_EINVAL);
    for (int i = 0; i < BS_KERNEL_NISA; i++)
        if (!bs_kernel_isa_supported((bs_kernel_isa)i))
            CHECK(bs_kernel_planes_prepare((bs_kernel_isa)i, &m.p, x, scr) == BS_KERNEL_ENOTSUP);
    bs_kernel_avd a = {5, 40, 0, m.planes[0], m.scales, m.scales};
    CHECK(bs_kernel_avd_matvec(BS_KERNEL_PORTABLE, &a, x, y, 0, scr) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_isa_parse("avx512") == BS_KERNEL_AVX512);
    CHECK(bs_kernel_isa_parse("lut") == BS_KERNEL_LUT);
    CHECK(bs_kernel_isa_parse("sse") == -1);
    CHECK(bs_kernel_isa_parse(NULL) == -1);
    free(scr);
    mat_free(&m);
}

int main(void)
{
    const char *forced = getenv("BS_KERNEL");
    for (int i = 0; i < BS_KERNEL_NISA; i++)
        fprintf(stderr, "%s: %s\n", bs_kernel_isa_name((bs_kernel_isa)i),
                bs_kernel_isa_supported((bs_kernel_isa)i) ? "supported" : "not on this CPU");
    bs_kernel_isa def = bs_kernel_isa_default();
    fprintf(stderr, "default path: %s (BS_KERNEL=%s)\n", bs_kernel_isa_name(def), forced ? forced : "");
    if (forced)
        CHECK(def == (bs_kernel_isa)bs_kernel_isa_parse(forced));

    check_errors();

    /* awkward shapes: short last groups, rows/cols not multiples of 8/32/64, the 4096-input
     * window edge with groups straddling it (24, 40), every plane count */
    static const int fixed[][3] = {
        {1, 1, 8},   {3, 7, 8},    {5, 9, 16},   {17, 63, 32}, {9, 65, 32},  {33, 127, 24},
        {7, 129, 40}, {64, 64, 64}, {2, 4100, 24}, {3, 8200, 40}, {4, 4096, 32}, {2, 4097, 128},
        {6, 300, 256}, {1, 33, 8},
        /* the span kernel (512 inputs): partial last spans, groups across spans, > 8 planes */
        {3, 1100, 96}, {2, 2600, 1024}, {5, 512, 32}, {4, 1536, 64},
        /* packs of short rows (8, 16, 32 plane bytes), with a partial last pack */
        {13, 64, 32}, {10, 128, 32}, {5, 250, 32}, {3, 60, 32}, {9, 121, 32},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int d = 1; d <= 16; d += (fixed[i][1] > 1000 ? 5 : 1))
            check_planes(fixed[i][0], fixed[i][1], fixed[i][2], d, 1 + d % 4, (int)(i & 1));
    static const int groups[] = {8, 16, 24, 32, 32, 32, 40, 64, 128};
    for (int t = 0; t < 150; t++) {
        int group = groups[bs_splitmix64(&rng_s) % (sizeof groups / sizeof groups[0])];
        check_planes(irand(1, 70), irand(1, 700), group, irand(1, 16), irand(1, 4), t & 1);
    }
    /* the int8 paths must actually round something, or the bound check is vacuous */
    for (int i = 0; i < BS_KERNEL_NISA; i++) {
        if (!bs_kernel_isa_supported((bs_kernel_isa)i) || !is_int8((bs_kernel_isa)i))
            continue;
        fprintf(stderr, "%s: worst error / int8 bound = %.3f over %ld rows\n",
                bs_kernel_isa_name((bs_kernel_isa)i), worst_ratio[i], compared[i]);
        CHECK(worst_ratio[i] > 1e-3);
        CHECK(worst_ratio[i] <= 1.0 + 1e-3);
    }

    for (int t = 0; t < 6; t++)
        check_materialize_matmul(irand(1, 300), irand(1, 300), 8 * irand(1, 8), irand(1, 16), irand(1, 4));
    check_materialize_matmul(BS_KERNEL_MATMUL_BLOCK + 13, 77, 32, 4, 1);
    check_materialize_matmul(37, 1100, 32, 12, 2);
    check_materialize_matmul(21, 600, 64, 3, 1);
    check_materialize_matmul(37, 64, 32, 12, 1);
    check_materialize_matmul(19, 256, 32, 4, 2);

    for (int k = 1; k <= 32; k++)
        check_avd(irand(1, 40), irand(1, 300), k, k & 1);
    check_avd(5, 4100, 17, 1);
    check_avd(7, 129, 40, 0);   /* k > 32: two passes over the bits */
    check_avd(3, 70, 256, 1);
    TEST_MAIN_END();
}
