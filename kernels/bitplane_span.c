#include "kernels/bitplane_span.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define BS_SPAN_X86 1
#endif

enum { SPAN = 512, LANES = 16 };

static size_t nspans(int cols)
{
    return ((size_t)cols + SPAN - 1) / SPAN;
}

/* One token's input: qt (nspan x 512 int8, dealt), then per lane (nspan x 16): xs2 = 2 xs
 * of the lane's group, xsq = xs * sq of the group in the group's first lane only (0 in the
 * others, so the correction counts each group once), gidx = the lane's group relative to
 * the span's first group. Lanes past cols are 0. */
size_t bs_bp_span_bytes(int cols)
{
    size_t ns = nspans(cols);
    return ns * SPAN + 3 * ns * LANES * sizeof(float);
}

void bs_bp_span_prepare(const int8_t *xq, const float *xs, const float *sq, int cols, int group, uint8_t *out)
{
    size_t ns = nspans(cols);
    int8_t *qt = (int8_t *)out;
    float *xs2 = (float *)(out + ns * SPAN), *xsq = xs2 + ns * LANES;
    int32_t *gidx = (int32_t *)(xsq + ns * LANES);
    for (size_t s = 0; s < ns; s++) {
        size_t j0 = s * SPAN, gA = j0 / (size_t)group;
        for (int c = 0; c < 8; c++)
            for (int i = 0; i < LANES; i++)
                for (int b = 0; b < 4; b++) {
                    size_t j = j0 + 32 * (size_t)i + 4 * (size_t)c + (size_t)b;
                    qt[s * SPAN + (size_t)c * 64 + 4 * (size_t)i + (size_t)b] = j < (size_t)cols ? xq[j] : 0;
                }
        for (int i = 0; i < LANES; i++) {
            size_t j = j0 + 32 * (size_t)i, L = s * LANES + (size_t)i;
            if (j >= (size_t)cols) {
                xs2[L] = xsq[L] = 0.0f;
                gidx[L] = 0;
                continue;
            }
            size_t g = j / (size_t)group;
            xs2[L] = 2.0f * xs[g];
            xsq[L] = j % (size_t)group == 0 ? xs[g] * sq[g] : 0.0f;
            gidx[L] = (int32_t)(g - gA);
        }
    }
}

#ifdef BS_SPAN_X86

int bs_bp_span_cpu(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512bitalg");
}

#define BS_SPAN_T __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bitalg,avx512dq")))

/* Rows row0..row1 for nt <= BS_BP_SPAN_TOK tokens at d planes (a constant in every caller,
 * so the plane loops unroll). Planes 0..7 form the high slice of the code, planes 8.. the
 * low one (as in bitplane.c's chunk kernel); a lane's int32 sum over a span is at most
 * 32 * 255 * 127 < 2^20, so shifting the high slice by up to 8 stays inside int32. */
BS_SPAN_T static inline __attribute__((always_inline)) void
span_rows_d(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1, float *const *y,
            int accumulate, const int d)
{
    const int e_hi = d > 8 ? 8 : d, e_lo = d - e_hi;
    int cols = p->cols, group = p->group;
    size_t G = ((size_t)cols + (size_t)group - 1) / (size_t)group, rb = ((size_t)cols + 7) / 8, ns = nspans(cols);
    const int8_t *qt[BS_BP_SPAN_TOK];
    const float *xs2[BS_BP_SPAN_TOK], *xsq[BS_BP_SPAN_TOK];
    for (int t = 0; t < nt; t++) {
        qt[t] = (const int8_t *)in[t];
        xs2[t] = (const float *)(in[t] + ns * SPAN);
        xsq[t] = xs2[t] + ns * LANES;
    }
    const int32_t *gidx = (const int32_t *)(xsq[0] + ns * LANES);   /* the shape's: the same for every token */
    /* mask byte 4i+b of chunk c takes bit 32(i%2) + 4c + b of qword i/2 */
    __m512i sel[8];
    for (int c = 0; c < 8; c++)
        sel[c] = _mm512_add_epi8(_mm512_set1_epi64(0x2322212003020100LL), _mm512_set1_epi8((char)(4 * c)));
    __m512i wh[8], wl[8];
    for (int i = 0; i < e_hi; i++)
        wh[i] = _mm512_set1_epi8((char)(1 << (e_hi - 1 - i)));
    for (int i = 0; i < e_lo; i++)
        wl[i] = _mm512_set1_epi8((char)(1 << (e_lo - 1 - i)));
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    int g32 = group == 32;

    for (int r = row0; r < row1; r++) {
        const uint16_t *S = p->scales + (size_t)r * G;
        const uint8_t *prow[BS_KERNEL_MAX_PLANES];
        for (int l = 0; l < d; l++)
            prow[l] = p->bits[l] + (size_t)r * rb;
        __m512 acc[BS_BP_SPAN_TOK], corr[BS_BP_SPAN_TOK];
        for (int t = 0; t < nt; t++)
            acc[t] = corr[t] = _mm512_setzero_ps();
        for (size_t s = 0; s < ns; s++) {
            size_t off = s * 64, nb = rb - off < 64 ? rb - off : 64;
            __mmask64 bm = nb == 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
            __m512i pl[BS_KERNEL_MAX_PLANES];
            for (int l = 0; l < d; l++)
                pl[l] = _mm512_maskz_loadu_epi8(bm, prow[l] + off);
            __m512i uh[8], ul[8];
            for (int c = 0; c < 8; c++) {
                __m512i u = _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(pl[0], sel[c]), wh[0]);
                for (int i = 1; i < e_hi; i++)
                    u = _mm512_mask_add_epi8(u, _mm512_bitshuffle_epi64_mask(pl[i], sel[c]), u, wh[i]);
                uh[c] = u;
                if (e_lo) {
                    __m512i v = _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(pl[8], sel[c]), wl[0]);
                    for (int i = 1; i < e_lo; i++)
                        v = _mm512_mask_add_epi8(v, _mm512_bitshuffle_epi64_mask(pl[8 + i], sel[c]), v, wl[i]);
                    ul[c] = v;
                }
            }
            /* this span's group scales, one per lane */
            size_t gA = s * SPAN / (size_t)group, gB = (s * SPAN + SPAN - 1) / (size_t)group + 1;
            size_t n = (gB < G ? gB : G) - gA;
            __m512 sf = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1),
                                                                 S + gA));
            if (!g32)
                sf = _mm512_permutexvar_ps(_mm512_loadu_si512(gidx + s * LANES), sf);
            for (int t = 0; t < nt; t++) {
                const int8_t *q = qt[t] + s * SPAN;
                /* two chains: one would cost a VNNI latency per chunk */
                __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uh[0], _mm512_loadu_si512(q));
                __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uh[1], _mm512_loadu_si512(q + 64));
                for (int c = 2; c < 8; c += 2) {
                    d0 = _mm512_dpbusd_epi32(d0, uh[c], _mm512_loadu_si512(q + 64 * c));
                    d1 = _mm512_dpbusd_epi32(d1, uh[c + 1], _mm512_loadu_si512(q + 64 * c + 64));
                }
                __m512i dp = _mm512_add_epi32(d0, d1);
                if (e_lo) {
                    __m512i e0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ul[0], _mm512_loadu_si512(q));
                    __m512i e1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ul[1], _mm512_loadu_si512(q + 64));
                    for (int c = 2; c < 8; c += 2) {
                        e0 = _mm512_dpbusd_epi32(e0, ul[c], _mm512_loadu_si512(q + 64 * c));
                        e1 = _mm512_dpbusd_epi32(e1, ul[c + 1], _mm512_loadu_si512(q + 64 * c + 64));
                    }
                    dp = _mm512_add_epi32(_mm512_slli_epi32(dp, (unsigned)e_lo), _mm512_add_epi32(e0, e1));
                }
                /* sum_g S_g xs_g (2 u.q - cmax sq_g): the first part here, the second as corr */
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(sf, _mm512_loadu_ps(xs2[t] + s * LANES)),
                                         acc[t]);
                corr[t] = _mm512_fmadd_ps(sf, _mm512_loadu_ps(xsq[t] + s * LANES), corr[t]);
            }
        }
        for (int t = 0; t < nt; t++) {
            float v = (_mm512_reduce_add_ps(acc[t]) - cmax * _mm512_reduce_add_ps(corr[t])) * mul;
            y[t][r] = accumulate ? y[t][r] + v : v;
        }
    }
}

BS_SPAN_T static void span_rows(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1,
                                float *const *y, int accumulate)
{
    switch (p->nplanes) {
#define D(n) case n: span_rows_d(p, in, nt, row0, row1, y, accumulate, n); break;
        D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15) D(16)
#undef D
    }
}

void bs_bp_span_rows(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1,
                     float *const *y, int accumulate)
{
    for (int t0 = 0; t0 < nt; t0 += BS_BP_SPAN_TOK) {
        int n = nt - t0 < BS_BP_SPAN_TOK ? nt - t0 : BS_BP_SPAN_TOK;
        span_rows(p, in + t0, n, row0, row1, y + t0, accumulate);
    }
}

#else

int bs_bp_span_cpu(void)
{
    return 0;
}

void bs_bp_span_rows(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1,
                     float *const *y, int accumulate)
{
    (void)p, (void)in, (void)nt, (void)row0, (void)row1, (void)y, (void)accumulate;
}

#endif
