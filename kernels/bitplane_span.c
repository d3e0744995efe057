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

int bs_bp_span_packed(int cols, int group)
{
    size_t rb = ((size_t)cols + 7) / 8;
    return group == 32 && (rb == 8 || rb == 16 || rb == 32);
}

/* One token's input: qt (nspan x 512 int8, dealt), then per lane (nspan x 16): xs2 = 2 xs
 * of the lane's group, xsq = xs * sq of the group in the group's first lane only (0 in the
 * others, so the correction counts each group once), gidx = the lane's group relative to
 * the span's first group. Lanes past cols are 0. Then per span: its first group and how
 * many groups it touches (divisions the kernel would otherwise do per row and span). */
size_t bs_bp_span_bytes(int cols)
{
    size_t ns = nspans(cols);
    return ns * SPAN + 3 * ns * LANES * sizeof(float) + 2 * ns * sizeof(int32_t);
}

/* Packed rows (bs_bp_span_packed): 64 plane bytes hold 64 / rb whole rows, so plane byte b
 * is byte b % rb of its row; lane L (block of 32 inputs) is row L / G, group L % G. */
static void prepare_packed(const int8_t *xq, const float *xs, const float *sq, int cols, uint8_t *out)
{
    size_t rb = ((size_t)cols + 7) / 8, G = rb / 4;
    int8_t *qt = (int8_t *)out;
    float *xs2 = (float *)(out + SPAN), *xsq = xs2 + LANES;
    int32_t *gidx = (int32_t *)(xsq + LANES), *sg0 = gidx + LANES, *sgn = sg0 + 1;
    /* xq is zero from cols to a multiple of 64 inputs (bitplane.c), so whole plane bytes'
     * worth of inputs (8) are copied */
    for (int v = 0; v < 8; v++)
        for (int l = 0; l < 4; l++)
            for (int h = 0; h < 2; h++) {
                size_t b = 16 * (size_t)l + 2 * (size_t)v + (size_t)h;
                memcpy(qt + (size_t)v * 64 + 16 * (size_t)l + 8 * (size_t)h, xq + 8 * (b % rb), 8);
            }
    for (size_t L = 0; L < LANES; L++) {
        size_t g = L % G;
        xs2[L] = 2.0f * xs[g];
        xsq[L] = xs[g] * sq[g];
        gidx[L] = 0;
    }
    *sg0 = 0;
    *sgn = LANES;
}

void bs_bp_span_prepare(const int8_t *xq, const float *xs, const float *sq, int cols, int group, uint8_t *out)
{
    if (bs_bp_span_packed(cols, group)) {
        prepare_packed(xq, xs, sq, cols, out);
        return;
    }
    size_t ns = nspans(cols);
    int8_t *qt = (int8_t *)out;
    float *xs2 = (float *)(out + ns * SPAN), *xsq = xs2 + ns * LANES;
    int32_t *gidx = (int32_t *)(xsq + ns * LANES), *sg0 = gidx + ns * LANES, *sgn = sg0 + ns;
    size_t G = ((size_t)cols + (size_t)group - 1) / (size_t)group;
    size_t pad = ((size_t)cols + 63) / 64 * 64;   /* xq is zero from cols to here */
    for (size_t s = 0; s < ns; s++) {
        size_t j0 = s * SPAN, gA = j0 / (size_t)group, gB = (j0 + SPAN - 1) / (size_t)group + 1;
        sg0[s] = (int32_t)gA;
        sgn[s] = (int32_t)((gB < G ? gB : G) - gA);
        /* code vector v, bytes 16 l .. 16 l + 15 (l = 0..3, a 128-bit lane): inputs
         * 128 l + 16 v .. + 15 of the span (the order the unpacks leave them in) */
        for (int v = 0; v < 8; v++)
            for (int l = 0; l < 4; l++) {
                size_t j = j0 + 128 * (size_t)l + 16 * (size_t)v;
                int8_t *o = qt + s * SPAN + (size_t)v * 64 + 16 * (size_t)l;
                if (j + 16 <= pad)
                    memcpy(o, xq + j, 16);
                else
                    memset(o, 0, 16);
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
           __builtin_cpu_supports("gfni");
}

#define BS_SPAN_T __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx512dq")))

/* The codes of a span's 512 inputs from e <= 8 plane vectors (64 bytes each: byte b holds
 * inputs 8b..8b+7): the plane bytes of the same 8 inputs are gathered into one qword
 * (plane i at byte 8 - e + i, zeros below) by three levels of unpacks, then GF2P8AFFINEQB
 * with the qword as its bit matrix transposes it: byte j of the result has bit e-1-i =
 * bit j of plane i, i.e. the code u of input 8b + j. The unpacks work inside 128-bit lanes:
 * code vector v, lane l, qword h holds plane byte b = 16 l + 2 v + h (the inputs' order the
 * activations are dealt in). e is a constant in every caller: the all-zero rows fold away. */
BS_SPAN_T static inline __attribute__((always_inline)) void
span_codes(const __m512i *pl, const int e, __m512i *u)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i R[8], W[8], X[2][4];
    for (int r = 0; r < 8; r++)
        R[r] = r < 8 - e ? zero : pl[r - (8 - e)];
    for (int p = 0; p < 4; p++) {
        if (2 * p + 1 < 8 - e) {
            W[2 * p] = W[2 * p + 1] = zero;
            continue;
        }
        W[2 * p] = _mm512_unpacklo_epi8(R[2 * p], R[2 * p + 1]);
        W[2 * p + 1] = _mm512_unpackhi_epi8(R[2 * p], R[2 * p + 1]);
    }
    for (int q = 0; q < 2; q++) {
        if (4 * q + 3 < 8 - e) {
            X[q][0] = X[q][1] = X[q][2] = X[q][3] = zero;
            continue;
        }
        int a = 4 * q, b = 4 * q + 2;
        X[q][0] = _mm512_unpacklo_epi16(W[a], W[b]);
        X[q][1] = _mm512_unpackhi_epi16(W[a], W[b]);
        X[q][2] = _mm512_unpacklo_epi16(W[a + 1], W[b + 1]);
        X[q][3] = _mm512_unpackhi_epi16(W[a + 1], W[b + 1]);
    }
    /* byte j of every qword selects bit j of each matrix row */
    const __m512i sel = _mm512_set1_epi64((long long)0x8040201008040201ull);
    for (int k = 0; k < 4; k++) {
        u[2 * k] = _mm512_gf2p8affine_epi64_epi8(sel, _mm512_unpacklo_epi32(X[0][k], X[1][k]), 0);
        u[2 * k + 1] = _mm512_gf2p8affine_epi64_epi8(sel, _mm512_unpackhi_epi32(X[0][k], X[1][k]), 0);
    }
}

/* The dot products of a token's dealt activations q (8 x 64 bytes) with the codes u, as 16
 * int32 sums in the order of the span's 16 blocks of 32 inputs. Code vectors 2k and 2k+1
 * hold, in lane l, inputs of block 4 l + k only: they add up in one accumulator, whose four
 * int32 of lane l the transposing adds below fold into dword 4 l + k. */
BS_SPAN_T static inline __attribute__((always_inline)) __m512i
span_dot(const __m512i *u, const int8_t *q)
{
    __m512i a[4];
    for (int k = 0; k < 4; k++)
        a[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u[2 * k], _mm512_loadu_si512(q + 128 * k)),
                                   u[2 * k + 1], _mm512_loadu_si512(q + 128 * k + 64));
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]), _mm512_unpackhi_epi32(a[0], a[1]));
    __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]), _mm512_unpackhi_epi32(a[2], a[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

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
    /* the shape's tables: the same for every token */
    const int32_t *gidx = (const int32_t *)(xsq[0] + ns * LANES), *sg0 = gidx + ns * LANES, *sgn = sg0 + ns;
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
            span_codes(pl, e_hi, uh);
            if (e_lo)
                span_codes(pl + 8, e_lo, ul);
            /* this span's group scales, one per lane */
            size_t gA = (size_t)sg0[s], n = (size_t)sgn[s];
            __m512 sf = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1),
                                                                 S + gA));
            if (!g32)
                sf = _mm512_permutexvar_ps(_mm512_loadu_si512(gidx + s * LANES), sf);
            for (int t = 0; t < nt; t++) {
                const int8_t *q = qt[t] + s * SPAN;
                __m512i dp = span_dot(uh, q);
                if (e_lo)
                    dp = _mm512_add_epi32(_mm512_slli_epi32(dp, (unsigned)e_lo), span_dot(ul, q));
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

/* Packed rows: one 64-byte load per plane covers R = 64 / rb rows, so a "span" is R rows
 * of the matrix; lane L of the dot products is row L / G, group L % G, and a row's result
 * is the sum of its G lanes. Same quantisation, same float steps per lane as span_rows_d. */
BS_SPAN_T static inline __attribute__((always_inline)) void
packed_rows_d(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1, float *const *y,
              int accumulate, const int d)
{
    const int e_hi = d > 8 ? 8 : d, e_lo = d - e_hi;
    size_t rb = ((size_t)p->cols + 7) / 8, G = rb / 4, R = 64 / rb;
    const int8_t *qt[BS_BP_SPAN_TOK];
    const float *xs2[BS_BP_SPAN_TOK], *xsq[BS_BP_SPAN_TOK];
    for (int t = 0; t < nt; t++) {
        qt[t] = (const int8_t *)in[t];
        xs2[t] = (const float *)(in[t] + SPAN);
        xsq[t] = xs2[t] + LANES;
    }
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    for (int r = row0; r < row1; r += (int)R) {
        size_t nr = (size_t)(row1 - r) < R ? (size_t)(row1 - r) : R;
        __mmask64 bm = nr == R ? ~(__mmask64)0 : (((__mmask64)1 << (nr * rb)) - 1);
        __m512i pl[BS_KERNEL_MAX_PLANES];
        for (int l = 0; l < d; l++)
            pl[l] = _mm512_maskz_loadu_epi8(bm, p->bits[l] + (size_t)r * rb);
        __m512i uh[8], ul[8];
        span_codes(pl, e_hi, uh);
        if (e_lo)
            span_codes(pl + 8, e_lo, ul);
        __m512 sf = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << (nr * G)) - 1), p->scales + (size_t)r * G));
        for (int t = 0; t < nt; t++) {
            __m512i dp = span_dot(uh, qt[t]);
            if (e_lo)
                dp = _mm512_add_epi32(_mm512_slli_epi32(dp, (unsigned)e_lo), span_dot(ul, qt[t]));
            __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(sf, _mm512_loadu_ps(xs2[t])));
            __m512 c = _mm512_mul_ps(sf, _mm512_loadu_ps(xsq[t]));
            float la[LANES], lc[LANES];
            _mm512_storeu_ps(la, a);
            _mm512_storeu_ps(lc, c);
            for (size_t i = 0; i < nr; i++) {
                float sa = 0.0f, sc = 0.0f;
                for (size_t g = 0; g < G; g++) {
                    sa += la[i * G + g];
                    sc += lc[i * G + g];
                }
                float v = (sa - cmax * sc) * mul;
                y[t][r + (int)i] = accumulate ? y[t][r + (int)i] + v : v;
            }
        }
    }
}

BS_SPAN_T static void span_rows(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1,
                                float *const *y, int accumulate)
{
    if (bs_bp_span_packed(p->cols, p->group)) {
        switch (p->nplanes) {
#define D(n) case n: packed_rows_d(p, in, nt, row0, row1, y, accumulate, n); break;
            D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15) D(16)
#undef D
        }
        return;
    }
    switch (p->nplanes) {
/* one token (decoding) with nt a constant too: its sums stay in registers */
#define D(n)                                                         \
    case n:                                                          \
        if (nt == 1)                                                 \
            span_rows_d(p, in, 1, row0, row1, y, accumulate, n);     \
        else                                                         \
            span_rows_d(p, in, nt, row0, row1, y, accumulate, n);    \
        break;
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
