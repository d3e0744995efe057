/* LittleBit factor kernels against a double-precision product built from the definition
 * W = diag(h) Su diag(l) Svᵀ diag(g), on random and awkward shapes (1 row, 1 column, rank 1,
 * lengths that are not multiples of 8 or 16), for every path this CPU runs. Tolerance:
 * 1e-5 · Σ |terms| (float summation of ±terms; nothing is quantised). */
#include "kernels/half.h"
#include "kernels/rng.h"
#include "kernels/littlebit.h"
#include "harness.h"

#include <stdint.h>

static uint64_t rng_s = 0xfeed;

static double urand(void)
{
    return (double)(bs_splitmix64(&rng_s) >> 11) / 9007199254740992.0;
}

static uint8_t *random_bits(int rows, int cols)
{
    size_t sb = ((size_t)cols + 7) / 8, n = (size_t)rows * sb;
    uint8_t *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)bs_splitmix64(&rng_s);   /* pad bits random too: they must be ignored */
    return b;
}

static int bit(const uint8_t *b, int cols, int r, int j)
{
    return (b[(size_t)r * ((cols + 7) / 8) + j / 8] >> (j % 8)) & 1;
}

static uint16_t *random_half(int n, double lo, double hi)
{
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++)
        h[i] = bs_f32_to_fp16((float)(lo + (hi - lo) * urand()));
    return h;
}

static void one_shape(int rows, int cols, int rank)
{
    bs_kernel_lb p = {rows, cols, rank, random_bits(rows, rank), random_bits(rank, cols), random_half(rows, 0.01, 1.0),
                      random_half(rank, 0.01, 2.0), random_half(cols, -1.0, 1.0)};
    float *x = malloc(sizeof(float) * (size_t)cols), *y = malloc(sizeof(float) * (size_t)rows);
    double *ref = calloc((size_t)rows, sizeof(double)), *mag = calloc((size_t)rows, sizeof(double));
    double *w = calloc((size_t)rows * cols, sizeof(double));
    for (int j = 0; j < cols; j++)
        x[j] = (float)(2.0 * urand() - 1.0);
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < rank; k++)
            for (int j = 0; j < cols; j++) {
                double t = bs_fp16_to_f32(p.h[i]) * (bit(p.u, rank, i, k) ? 1 : -1) * bs_fp16_to_f32(p.l[k]) *
                           (bit(p.vt, cols, k, j) ? 1 : -1) * bs_fp16_to_f32(p.g[j]);
                w[(size_t)i * cols + j] += t;
                ref[i] += t * x[j];
                mag[i] += fabs(t * x[j]);
            }
    void *scratch = malloc(bs_kernel_lb_scratch(cols, rank));
    for (int isa = 0; isa < BS_KERNEL_NISA; isa++) {
        if (!bs_kernel_isa_supported((bs_kernel_isa)isa))
            continue;
        for (int acc = 0; acc < 2; acc++) {
            for (int i = 0; i < rows; i++)
                y[i] = acc ? 0.5f : 99.0f;
            CHECK(bs_kernel_lb_matvec((bs_kernel_isa)isa, &p, x, y, acc, scratch) == 0);
            for (int i = 0; i < rows; i++)
                CHECKF(fabs(y[i] - (ref[i] + (acc ? 0.5 : 0.0))) <= 1e-5 * (mag[i] + 1.0),
                       "%s %dx%d r%d row %d: %g vs %g", bs_kernel_isa_name((bs_kernel_isa)isa), rows, cols, rank, i,
                       y[i], ref[i]);
        }
        /* the primitive on its own */
        float *o = malloc(sizeof(float) * (size_t)rank);
        CHECK(bs_kernel_sign_matvec((bs_kernel_isa)isa, rank, cols, p.vt, x, o) == 0);
        for (int k = 0; k < rank; k++) {
            double s = 0.0, a = 0.0;
            for (int j = 0; j < cols; j++) {
                s += (bit(p.vt, cols, k, j) ? 1 : -1) * (double)x[j];
                a += fabs(x[j]);
            }
            CHECK_NEAR(o[k], s, 1e-5 * (a + 1.0));
        }
        free(o);
    }
    float *wd = malloc(sizeof(float) * (size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        wd[i] = 1.0f;
    CHECK(bs_kernel_lb_add_dense(&p, wd) == 0);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        worst = fmax(worst, fabs(wd[i] - 1.0 - w[i]));
    CHECKF(worst < 1e-4 * rank, "add_dense %dx%d r%d: worst %g", rows, cols, rank, worst);
    free(wd);
    free(scratch);
    free(x); free(y); free(ref); free(mag); free(w);
    free((void *)p.u); free((void *)p.vt); free((void *)p.h); free((void *)p.l); free((void *)p.g);
}

int main(void)
{
    static const int shapes[][3] = {{1, 1, 1}, {1, 9, 3}, {7, 1, 2}, {5, 17, 1}, {33, 15, 9}, {64, 64, 8},
                                    {128, 352, 33}, {352, 128, 40}, {13, 100, 17}, {3, 257, 65}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        one_shape(shapes[i][0], shapes[i][1], shapes[i][2]);
    for (int t = 0; t < 20; t++)
        one_shape(1 + (int)(bs_splitmix64(&rng_s) % 70), 1 + (int)(bs_splitmix64(&rng_s) % 90), 1 + (int)(bs_splitmix64(&rng_s) % 40));
    /* bad arguments are refused */
    bs_kernel_lb bad = {0};
    float x = 0, y = 0;
    char sc[64];
    CHECK(bs_kernel_lb_matvec(BS_KERNEL_PORTABLE, &bad, &x, &y, 0, sc) == BS_KERNEL_EINVAL);
    CHECK(bs_kernel_sign_matvec((bs_kernel_isa)99, 1, 1, (const uint8_t *)sc, &x, &y) == BS_KERNEL_ENOTSUP);
    TEST_MAIN_END();
}
