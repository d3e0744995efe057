#include "kernels/littlebit.h"

#include <string.h>

#include "kernels/half.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define BS_LB_X86 1
#endif

static size_t stride(int n)
{
    return ((size_t)n + 7) / 8;
}

static float sign_row_portable(const uint8_t *row, int cols, const float *x)
{
    /* s·x = 2·(x over the set bits) − Σx: one branch-free pass */
    float set = 0.0f, all = 0.0f;
    for (int j = 0; j < cols; j++) {
        float b = (float)((row[j >> 3] >> (j & 7)) & 1);
        set += b * x[j];
        all += x[j];
    }
    return 2.0f * set - all;
}

#ifdef BS_LB_X86
__attribute__((target("avx2,fma"))) static float sign_row_avx2(const uint8_t *row, int cols, const float *x)
{
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int j = 0, b = 0;
    /* a clear bit is −1: flip the sign bit of those lanes, then add */
    for (; j + 16 <= cols; j += 16, b += 2) {
        __m256i m0 = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(row[b]), sel), _mm256_setzero_si256());
        __m256i m1 = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(row[b + 1]), sel), _mm256_setzero_si256());
        __m256 x0 = _mm256_xor_ps(_mm256_loadu_ps(x + j), _mm256_castsi256_ps(_mm256_slli_epi32(m0, 31)));
        __m256 x1 = _mm256_xor_ps(_mm256_loadu_ps(x + j + 8), _mm256_castsi256_ps(_mm256_slli_epi32(m1, 31)));
        acc0 = _mm256_add_ps(acc0, x0);
        acc1 = _mm256_add_ps(acc1, x1);
    }
    for (; j + 8 <= cols; j += 8, b++) {
        __m256i m0 = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(row[b]), sel), _mm256_setzero_si256());
        acc0 = _mm256_add_ps(acc0, _mm256_xor_ps(_mm256_loadu_ps(x + j), _mm256_castsi256_ps(_mm256_slli_epi32(m0, 31))));
    }
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    float r = _mm_cvtss_f32(s);
    for (; j < cols; j++)
        r += (row[j >> 3] >> (j & 7)) & 1 ? x[j] : -x[j];
    return r;
}
#endif

static int isa_ok(bs_kernel_isa isa)
{
    return (unsigned)isa < BS_KERNEL_NISA && bs_kernel_isa_supported(isa);
}

int bs_kernel_sign_matvec(bs_kernel_isa isa, int rows, int cols, const uint8_t *bits, const float *x, float *out)
{
    if (rows < 0 || cols < 0 || (rows && cols && (!bits || !x)) || (rows && !out))
        return BS_KERNEL_EINVAL;
    if (!isa_ok(isa))
        return BS_KERNEL_ENOTSUP;
    size_t sb = stride(cols);
#ifdef BS_LB_X86
    if (isa == BS_KERNEL_AVX2 || isa == BS_KERNEL_AVX512) {
        for (int r = 0; r < rows; r++)
            out[r] = sign_row_avx2(bits + (size_t)r * sb, cols, x);
        return 0;
    }
#endif
    for (int r = 0; r < rows; r++)
        out[r] = sign_row_portable(bits + (size_t)r * sb, cols, x);
    return 0;
}

size_t bs_kernel_lb_scratch(int cols, int rank)
{
    return ((size_t)(cols > 0 ? cols : 0) + (size_t)(rank > 0 ? rank : 0) * 2) * sizeof(float);
}

static int lb_check(const bs_kernel_lb *p)
{
    if (!p || p->rows < 1 || p->cols < 1 || p->rank < 1 || !p->u || !p->vt || !p->h || !p->l || !p->g)
        return BS_KERNEL_EINVAL;
    return 0;
}

int bs_kernel_lb_matvec(bs_kernel_isa isa, const bs_kernel_lb *p, const float *x, float *y, int accumulate,
                        void *scratch)
{
    if (lb_check(p) || !x || !y || !scratch)
        return BS_KERNEL_EINVAL;
    float *t = scratch, *z = t + p->cols, *zl = z + p->rank;
    for (int j = 0; j < p->cols; j++)
        t[j] = bs_fp16_to_f32(p->g[j]) * x[j];
    int rc = bs_kernel_sign_matvec(isa, p->rank, p->cols, p->vt, t, z);
    if (rc)
        return rc;
    for (int k = 0; k < p->rank; k++)
        zl[k] = bs_fp16_to_f32(p->l[k]) * z[k];
    size_t sb = stride(p->rank);
    for (int i = 0; i < p->rows; i++) {
        float s;
#ifdef BS_LB_X86
        if (isa == BS_KERNEL_AVX2 || isa == BS_KERNEL_AVX512)
            s = sign_row_avx2(p->u + (size_t)i * sb, p->rank, zl);
        else
#endif
            s = sign_row_portable(p->u + (size_t)i * sb, p->rank, zl);
        s *= bs_fp16_to_f32(p->h[i]);
        y[i] = accumulate ? y[i] + s : s;
    }
    return 0;
}

int bs_kernel_lb_add_dense(const bs_kernel_lb *p, float *w)
{
    if (lb_check(p) || !w)
        return BS_KERNEL_EINVAL;
    size_t su = stride(p->rank), sv = stride(p->cols);
    for (int i = 0; i < p->rows; i++) {
        float hi = bs_fp16_to_f32(p->h[i]);
        float *wr = w + (size_t)i * p->cols;
        for (int k = 0; k < p->rank; k++) {
            float a = hi * bs_fp16_to_f32(p->l[k]);
            if (!((p->u[(size_t)i * su + (size_t)(k >> 3)] >> (k & 7)) & 1))
                a = -a;
            const uint8_t *vr = p->vt + (size_t)k * sv;
            for (int j = 0; j < p->cols; j++) {
                float v = a * bs_fp16_to_f32(p->g[j]);
                wr[j] += ((vr[j >> 3] >> (j & 7)) & 1) ? v : -v;
            }
        }
    }
    return 0;
}
