#include "kernels/bitplane.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bitplane_span.h"
#include "kernels/half.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define BS_BP_X86 1
#endif

/* ---- shapes and scratch layout ------------------------------------------------------ */

static size_t ngroups(int cols, int group)
{
    return ((size_t)cols + (size_t)group - 1) / (size_t)group;
}

static size_t row_bytes(int cols)
{
    return ((size_t)cols + 7) / 8;
}

static size_t up64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* The prepared scratch starts with this, so rows() can refuse a scratch prepared for
 * another path or shape instead of reading garbage. */
typedef struct {
    uint32_t magic;
    int isa, cols, group;
} prep_hdr;

#define PREP_MAGIC 0x42504c4eu /* "BPLN" */
#define AVD_MAGIC 0x42415644u  /* "BAVD" */

typedef struct {
    size_t xf, gsum, lut;               /* float paths */
    size_t xq, xs, sq, idx, base;       /* int8 paths */
    size_t nch;                         /* int8: chunks of chunk_cols inputs */
    size_t span;                        /* AVX-512: the span kernel's input (bitplane_span.h) */
    int chunk_cols, lanes;
    size_t total;
} layout;

/* The int8 paths cut a row into chunks (64 inputs for AVX-512, 32 for AVX2); one int32
 * lane covers 4 inputs, so a chunk has 16 (8) lanes. */
static layout plan(int cols, int group, bs_kernel_isa isa)
{
    layout L;
    memset(&L, 0, sizeof L);
    size_t G = ngroups(cols, group), off = up64(sizeof(prep_hdr));
    if (isa == BS_KERNEL_PORTABLE || isa == BS_KERNEL_LUT) {
        L.xf = off;
        off += up64((size_t)cols * sizeof(float));
        L.gsum = off;
        off += up64(G * sizeof(float));
        if (isa == BS_KERNEL_LUT) {
            L.lut = off;
            off += row_bytes(cols) * 256 * sizeof(float);
        }
    } else {
        L.chunk_cols = isa == BS_KERNEL_AVX512 ? 64 : 32;
        L.lanes = L.chunk_cols / 4;
        L.nch = ((size_t)cols + (size_t)L.chunk_cols - 1) / (size_t)L.chunk_cols;
        L.xq = off;
        off += up64(L.nch * (size_t)L.chunk_cols);
        /* +16: window loads of 16 groups may run past the last group (zeros there). */
        L.xs = off;
        off += up64((G + 16) * sizeof(float));
        L.sq = off;
        off += up64((G + 16) * sizeof(float));
        L.idx = off;
        off += up64(L.nch * (size_t)L.lanes * sizeof(int32_t));
        L.base = off;
        off += up64(L.nch * sizeof(int32_t));
        if (isa == BS_KERNEL_AVX512) {
            L.span = off;
            off += up64(bs_bp_span_bytes(cols));
        }
    }
    L.total = off;
    return L;
}

size_t bs_kernel_planes_scratch(int cols, int group)
{
    if (cols < 1 || group < 8)
        return 0;
    size_t m = 0;
    for (int i = 0; i < BS_KERNEL_NISA; i++) {
        size_t t = plan(cols, group, (bs_kernel_isa)i).total;
        if (t > m)
            m = t;
    }
    return m;
}

int bs_kernel_planes_check(const bs_kernel_planes *p)
{
    if (!p || p->rows < 1 || p->cols < 1 || p->group < 8 || p->group % 8 != 0 ||
        p->nplanes < 1 || p->nplanes > BS_KERNEL_MAX_PLANES || p->shift0 < 1 ||
        p->shift0 > 100 || !p->bits || !p->scales)
        return BS_KERNEL_EINVAL;
    for (int l = 0; l < p->nplanes; l++)
        if (!p->bits[l])
            return BS_KERNEL_EINVAL;
    return 0;
}

/* ---- dispatch ----------------------------------------------------------------------- */

int bs_kernel_isa_supported(bs_kernel_isa isa)
{
    switch (isa) {
    case BS_KERNEL_PORTABLE:
    case BS_KERNEL_LUT:
        return 1;
#ifdef BS_BP_X86
    case BS_KERNEL_AVX2: {
        /* F16C from CPUID itself: clang before 15 has no "f16c" for __builtin_cpu_supports */
        unsigned a, b, c, d;
        int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }
    case BS_KERNEL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    default:
        return 0;
    }
}

static const char *const isa_names[BS_KERNEL_NISA] = {"portable", "lut", "avx2", "avx512"};

const char *bs_kernel_isa_name(bs_kernel_isa isa)
{
    return (unsigned)isa < BS_KERNEL_NISA ? isa_names[isa] : "unknown";
}

int bs_kernel_isa_parse(const char *name)
{
    for (int i = 0; name && i < BS_KERNEL_NISA; i++)
        if (strcmp(name, isa_names[i]) == 0)
            return i;
    return -1;
}

bs_kernel_isa bs_kernel_isa_detect(void)
{
    int want = bs_kernel_isa_parse(getenv("BS_KERNEL"));
    if (want >= 0 && bs_kernel_isa_supported((bs_kernel_isa)want))
        return (bs_kernel_isa)want;
    /* Without SIMD the table path wins on every measured shape (bench_kernels). */
    for (int i = BS_KERNEL_AVX512; i >= BS_KERNEL_LUT; i--)
        if (bs_kernel_isa_supported((bs_kernel_isa)i))
            return (bs_kernel_isa)i;
    return BS_KERNEL_PORTABLE;
}

bs_kernel_isa bs_kernel_isa_default(void)
{
    /* The one-time choice: -1 until the first call. Two threads racing here both store
     * the same value, so a relaxed atomic is enough. */
    static int chosen = -1;
    int v = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (v < 0) {
        v = (int)bs_kernel_isa_detect();
        __atomic_store_n(&chosen, v, __ATOMIC_RELAXED);
    }
    return (bs_kernel_isa)v;
}

/* ---- bit helpers -------------------------------------------------------------------- */

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Bytes [off, off+n) of a row, n <= 8, as a little-endian word (zeros above). Used for
 * the last, short word of a row so no load reads past the row. */
static inline uint64_t load_partial(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Byte kb of a row with the bits past cols cleared (pad bits are 0 in stores, but the
 * kernels do not rely on it). */
static inline unsigned row_byte(const uint8_t *row, size_t kb, int cols)
{
    unsigned b = row[kb];
    if ((kb + 1) * 8 > (size_t)cols)
        b &= (1u << (cols & 7)) - 1;
    return b;
}

/* ---- float paths -------------------------------------------------------------------- */

static void prepare_float(const bs_kernel_planes *p, const layout *L, const float *x,
                          uint8_t *s, int lut)
{
    int cols = p->cols, group = p->group;
    size_t G = ngroups(cols, group);
    float *xf = (float *)(s + L->xf), *gsum = (float *)(s + L->gsum);
    memcpy(xf, x, sizeof(float) * (size_t)cols);
    for (size_t g = 0; g < G; g++) {
        size_t j1 = (g + 1) * (size_t)group < (size_t)cols ? (g + 1) * (size_t)group : (size_t)cols;
        double t = 0.0;
        for (size_t j = g * (size_t)group; j < j1; j++)
            t += x[j];
        gsum[g] = (float)t;
    }
    if (!lut)
        return;
    /* Table kb holds, for every byte value b, the sum of x over the inputs whose bit is set
     * in b: T[b] = T[b without its lowest bit] + x[lowest bit], one add per entry. Inputs
     * past cols count as 0, so pad bits cannot contribute. */
    float *T = (float *)(s + L->lut);
    size_t rb = row_bytes(cols);
    for (size_t kb = 0; kb < rb; kb++) {
        float xx[8], *t = T + kb * 256;
        for (int i = 0; i < 8; i++)
            xx[i] = kb * 8 + (size_t)i < (size_t)cols ? x[kb * 8 + (size_t)i] : 0.0f;
        t[0] = 0.0f;
        for (unsigned b = 1; b < 256; b++)
            t[b] = t[b & (b - 1)] + xx[__builtin_ctz(b)];
    }
}

/* Plane weights inside the code: plane l counts 2^(d-1-l). */
static void plane_weights(int d, float *wl)
{
    for (int l = 0; l < d; l++)
        wl[l] = (float)(1u << (d - 1 - l));
}

static void rows_portable(const bs_kernel_planes *p, const uint8_t *s, const layout *L,
                          int row0, int row1, float *y, int accumulate, int lut)
{
    int cols = p->cols, group = p->group, d = p->nplanes;
    size_t G = ngroups(cols, group), rb = row_bytes(cols), gb = (size_t)group / 8;
    const float *x = (const float *)(s + L->xf), *gsum = (const float *)(s + L->gsum);
    const float *T = lut ? (const float *)(s + L->lut) : NULL;
    float wl[BS_KERNEL_MAX_PLANES];
    plane_weights(d, wl);
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    for (int r = row0; r < row1; r++) {
        const uint16_t *S = p->scales + (size_t)r * G;
        double acc = 0.0;
        for (size_t g = 0; g < G; g++) {
            size_t kb0 = g * gb, kb1 = kb0 + gb < rb ? kb0 + gb : rb;
            /* P = sum_l 2^(d-1-l) * (sum of x over plane l's set bits) = u . x. The bit
             * path sums in double: 2P - (2^d-1) t cancels down to c . x, so float sums
             * would cost ~2^d ulps of sum|x| (the table path accepts that, see header). */
            double P = 0.0;
            for (int l = 0; l < d; l++) {
                const uint8_t *row = p->bits[l] + (size_t)r * rb;
                double pl = 0.0;
                if (T) {
                    for (size_t kb = kb0; kb < kb1; kb++)
                        pl += T[kb * 256 + row[kb]];
                } else {
                    for (size_t kb = kb0; kb < kb1; kb++) {
                        unsigned b = row_byte(row, kb, cols);
                        while (b) {
                            pl += x[kb * 8 + (size_t)__builtin_ctz(b)];
                            b &= b - 1;
                        }
                    }
                }
                P += wl[l] * pl;
            }
            /* c . x = 2 u . x - (2^d - 1) sum x */
            acc += bs_fp16_to_f32(S[g]) * (2.0 * P - (double)cmax * gsum[g]);
        }
        float v = (float)(acc * mul);
        y[r] = accumulate ? y[r] + v : v;
    }
}

/* ---- int8 paths: shared preparation ------------------------------------------------- */

/* Per group: xs = max|x| / 127, q = round(x / xs) in [-127, 127] (never -128, so the
 * u8 x s8 products stay in range), sq = sum q. Chunk tables: lane i of chunk c covers
 * inputs c*cw + 4i .. +3, all in one group (group % 8 == 0); base[c] is the first group
 * of the chunk and idx[c][i] the lane's group relative to it (< 16), so a permute of 16
 * group scales starting at base[c] gives every lane its scale. */
static void prepare_int8(const bs_kernel_planes *p, const layout *L, const float *x, uint8_t *s, int chunk_tables)
{
    int cols = p->cols, group = p->group;
    size_t G = ngroups(cols, group);
    int8_t *xq = (int8_t *)(s + L->xq);
    float *xs = (float *)(s + L->xs), *sq = (float *)(s + L->sq);
    int32_t *idx = (int32_t *)(s + L->idx), *base = (int32_t *)(s + L->base);
    for (size_t g = 0; g < G; g++) {
        size_t j0 = g * (size_t)group;
        size_t j1 = j0 + (size_t)group < (size_t)cols ? j0 + (size_t)group : (size_t)cols;
        float amax = 0.0f;
        for (size_t j = j0; j < j1; j++) {
            float a = x[j] < 0.0f ? -x[j] : x[j];   /* not fmaxf: a libm call per input */
            amax = a > amax ? a : amax;
        }
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (size_t j = j0; j < j1; j++) {
            float v = x[j] * inv;
            int q = (int)(v + (v >= 0.0f ? 0.5f : -0.5f));
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            xq[j] = (int8_t)q;
            sum += q;
        }
        xs[g] = amax / 127.0f;
        sq[g] = (float)sum;
    }
    for (size_t g = G; g < G + 16; g++)
        xs[g] = sq[g] = 0.0f;
    /* Inputs past cols are 0, so whatever the plane bits there say adds nothing. */
    memset(xq + cols, 0, L->nch * (size_t)L->chunk_cols - (size_t)cols);
    if (!chunk_tables)   /* the span kernel does without them */
        return;
    for (size_t c = 0; c < L->nch; c++) {
        size_t j0 = c * (size_t)L->chunk_cols;
        base[c] = (int32_t)(j0 / (size_t)group);
        for (int i = 0; i < L->lanes; i++)
            idx[c * (size_t)L->lanes + (size_t)i] =
                (int32_t)((j0 + 4 * (size_t)i) / (size_t)group - (size_t)base[c]);
    }
}

/* Rows are walked in windows of chunks so a row's scales (times xs) fit a stack buffer:
 * 4096 inputs span at most 4096/8 + 1 groups; +16 for the window loads past the end. */
enum { WIN_COLS = 4096, SF_CAP = WIN_COLS / 8 + 64 };

#ifdef BS_BP_X86

/* ---- AVX-512 (F, BW, VL, VNNI) ------------------------------------------------------ */

#define BS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")))

/* dp lanes (int32, 4 inputs each) of u . q for chunk c: u rebuilt from the plane words as
 * lane masks. Planes 0..7 form the high slice, planes 8.. the low one (weight 2^(d-8) on
 * the high one); inside a slice of e planes plane i counts 2^(e-1-i). d is a constant in
 * every caller, so the plane loops unroll. */
BS_AVX512 static inline __attribute__((always_inline)) __m512i
chunk_dp512(const uint8_t *const *prow, size_t c, int full, size_t tailb, const int8_t *xq,
            const int d)
{
    const int e_hi = d > 8 ? 8 : d, e_lo = d - e_hi;
    uint64_t wd[BS_KERNEL_MAX_PLANES];
    for (int l = 0; l < d; l++)
        wd[l] = full ? load_le64(prow[l] + c * 8) : load_partial(prow[l] + c * 8, tailb);
    __m512i u = _mm512_setzero_si512();
    for (int i = 0; i < e_hi; i++)
        u = _mm512_mask_add_epi8(u, _cvtu64_mask64(wd[i]), u,
                                 _mm512_set1_epi8((char)(1 << (e_hi - 1 - i))));
    __m512i q = _mm512_loadu_si512(xq + c * 64);
    __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, q);
    if (e_lo) {
        __m512i u2 = _mm512_setzero_si512();
        for (int i = 0; i < e_lo; i++)
            u2 = _mm512_mask_add_epi8(u2, _cvtu64_mask64(wd[8 + i]), u2,
                                      _mm512_set1_epi8((char)(1 << (e_lo - 1 - i))));
        /* |dp_hi| <= 4*255*127 per lane: << 8 stays far inside int32 */
        dp = _mm512_add_epi32(_mm512_slli_epi32(dp, (unsigned)e_lo),
                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), u2, q));
    }
    return dp;
}

BS_AVX512 static inline __attribute__((always_inline)) void
rows_avx512_d(const bs_kernel_planes *p, const uint8_t *s, const layout *L, int row0, int row1,
              float *y, int accumulate, const int d)
{
    int cols = p->cols, group = p->group;
    size_t G = ngroups(cols, group), rb = row_bytes(cols), nch = L->nch;
    size_t nfull = rb / 8, tailb = rb - nfull * 8;   /* whole 8-byte words per row */
    const int8_t *xq = (const int8_t *)(s + L->xq);
    const float *xs = (const float *)(s + L->xs), *sq = (const float *)(s + L->sq);
    const int32_t *idx = (const int32_t *)(s + L->idx), *base = (const int32_t *)(s + L->base);
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    size_t win_ch = WIN_COLS / 64;
    float sf[SF_CAP] __attribute__((aligned(64)));

    for (int r = row0; r < row1; r++) {
        const uint16_t *S = p->scales + (size_t)r * G;
        const uint8_t *prow[BS_KERNEL_MAX_PLANES];
        for (int l = 0; l < d; l++)
            prow[l] = p->bits[l] + (size_t)r * rb;
        /* two accumulators: one fma chain would cost its latency per chunk */
        __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
        float corr = 0.0f;
        size_t gdone = 0;
        for (size_t c0 = 0; c0 < nch; c0 += win_ch) {
            size_t c1 = c0 + win_ch < nch ? c0 + win_ch : nch;
            size_t gA = (size_t)base[c0];
            size_t jend = c1 * 64 < (size_t)cols ? c1 * 64 : (size_t)cols;
            size_t gB = (jend - 1) / (size_t)group + 1, n = gB - gA;
            /* sf = S * xs for the window's groups (zeros past n), and the correction
             * sum_g sf_g * sq_g, counting a group shared with the last window once. */
            __m512 vc = _mm512_setzero_ps();
            for (size_t i = 0; i < n; i += 16) {
                size_t left = n - i;
                __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                __m512 f = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, S + gA + i));
                f = _mm512_mul_ps(f, _mm512_loadu_ps(xs + gA + i));
                _mm512_store_ps(sf + i, f);
                vc = _mm512_fmadd_ps(f, _mm512_loadu_ps(sq + gA + i), vc);
            }
            /* window loads read up to 15 groups past the last one: zeros there, never
             * stale stack values (0 * NaN would poison the row) */
            _mm512_store_ps(sf + ((n + 15) & ~(size_t)15), _mm512_setzero_ps());
            corr += _mm512_reduce_add_ps(vc);
            if (gdone > gA)
                corr -= sf[0] * sq[gA];
            gdone = gB;

            size_t c = c0;
            size_t cf = c1 < nfull ? c1 : nfull;   /* full chunks of this window */
            for (; c + 2 <= cf; c += 2) {
                __m512i dp0 = chunk_dp512(prow, c, 1, 0, xq, d);
                __m512i dp1 = chunk_dp512(prow, c + 1, 1, 0, xq, d);
                __m512 s0 = _mm512_permutexvar_ps(_mm512_loadu_si512(idx + c * 16),
                                                  _mm512_loadu_ps(sf + ((size_t)base[c] - gA)));
                __m512 s1 = _mm512_permutexvar_ps(_mm512_loadu_si512(idx + c * 16 + 16),
                                                  _mm512_loadu_ps(sf + ((size_t)base[c + 1] - gA)));
                f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp0), s0, f0);
                f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp1), s1, f1);
            }
            for (; c < c1; c++) {
                __m512i dp0 = chunk_dp512(prow, c, c < nfull, tailb, xq, d);
                __m512 s0 = _mm512_permutexvar_ps(_mm512_loadu_si512(idx + c * 16),
                                                  _mm512_loadu_ps(sf + ((size_t)base[c] - gA)));
                f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp0), s0, f0);
            }
        }
        float v = (2.0f * _mm512_reduce_add_ps(_mm512_add_ps(f0, f1)) - cmax * corr) * mul;
        y[r] = accumulate ? y[r] + v : v;
    }
}

BS_AVX512 static void rows_avx512(const bs_kernel_planes *p, const uint8_t *s, const layout *L,
                                  int row0, int row1, float *y, int accumulate)
{
    switch (p->nplanes) {
#define D(n) case n: rows_avx512_d(p, s, L, row0, row1, y, accumulate, n); break;
        D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15) D(16)
#undef D
    }
}

/* Several tokens at once (sessions decoding together): the codes u of a chunk are
 * rebuilt once and dotted with every token's int8 input, so the plane work (d mask adds per
 * 64 inputs) is shared. Every token's float operations are those of rows_avx512_d, in the
 * same order, so each row is bit for bit its own matvec's. */
enum { MULTI_TOK = 4 };

BS_AVX512 static inline __attribute__((always_inline)) void
chunk_u512(const uint8_t *const *prow, size_t c, int full, size_t tailb, const int d, __m512i *uh, __m512i *ul)
{
    const int e_hi = d > 8 ? 8 : d, e_lo = d - e_hi;
    uint64_t wd[BS_KERNEL_MAX_PLANES];
    for (int l = 0; l < d; l++)
        wd[l] = full ? load_le64(prow[l] + c * 8) : load_partial(prow[l] + c * 8, tailb);
    __m512i u = _mm512_setzero_si512();
    for (int i = 0; i < e_hi; i++)
        u = _mm512_mask_add_epi8(u, _cvtu64_mask64(wd[i]), u, _mm512_set1_epi8((char)(1 << (e_hi - 1 - i))));
    *uh = u;
    if (e_lo) {
        __m512i u2 = _mm512_setzero_si512();
        for (int i = 0; i < e_lo; i++)
            u2 = _mm512_mask_add_epi8(u2, _cvtu64_mask64(wd[8 + i]), u2,
                                      _mm512_set1_epi8((char)(1 << (e_lo - 1 - i))));
        *ul = u2;
    }
}

/* chunk_dp512's dot products from codes already built */
BS_AVX512 static inline __attribute__((always_inline)) __m512i
dp_of_u512(__m512i uh, __m512i ul, const int8_t *xq, size_t c, const int d)
{
    const int e_lo = d > 8 ? d - 8 : 0;
    __m512i q = _mm512_loadu_si512(xq + c * 64);
    __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uh, q);
    if (e_lo)
        dp = _mm512_add_epi32(_mm512_slli_epi32(dp, (unsigned)e_lo),
                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), ul, q));
    return dp;
}

BS_AVX512 static inline __attribute__((always_inline)) void
rows_avx512_multi_d(const bs_kernel_planes *p, const uint8_t *const *sp, int nt, const layout *L, int row0,
                    int row1, float *const *y, int accumulate, const int d)
{
    int cols = p->cols, group = p->group;
    size_t G = ngroups(cols, group), rb = row_bytes(cols), nch = L->nch;
    size_t nfull = rb / 8, tailb = rb - nfull * 8;
    const int8_t *xq[MULTI_TOK];
    const float *xs[MULTI_TOK], *sq[MULTI_TOK];
    for (int t = 0; t < nt; t++) {
        xq[t] = (const int8_t *)(sp[t] + L->xq);
        xs[t] = (const float *)(sp[t] + L->xs);
        sq[t] = (const float *)(sp[t] + L->sq);
    }
    /* the chunk tables depend on the shape only: the same in every token's scratch */
    const int32_t *idx = (const int32_t *)(sp[0] + L->idx), *base = (const int32_t *)(sp[0] + L->base);
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    size_t win_ch = WIN_COLS / 64;
    float sf[MULTI_TOK][SF_CAP] __attribute__((aligned(64)));

    for (int r = row0; r < row1; r++) {
        const uint16_t *S = p->scales + (size_t)r * G;
        const uint8_t *prow[BS_KERNEL_MAX_PLANES];
        for (int l = 0; l < d; l++)
            prow[l] = p->bits[l] + (size_t)r * rb;
        __m512 f0[MULTI_TOK], f1[MULTI_TOK];
        float corr[MULTI_TOK];
        for (int t = 0; t < nt; t++) {
            f0[t] = f1[t] = _mm512_setzero_ps();
            corr[t] = 0.0f;
        }
        size_t gdone = 0;
        for (size_t c0 = 0; c0 < nch; c0 += win_ch) {
            size_t c1 = c0 + win_ch < nch ? c0 + win_ch : nch;
            size_t gA = (size_t)base[c0];
            size_t jend = c1 * 64 < (size_t)cols ? c1 * 64 : (size_t)cols;
            size_t gB = (jend - 1) / (size_t)group + 1, n = gB - gA;
            for (int t = 0; t < nt; t++) {
                __m512 vc = _mm512_setzero_ps();
                for (size_t i = 0; i < n; i += 16) {
                    size_t left = n - i;
                    __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                    __m512 f = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, S + gA + i));
                    f = _mm512_mul_ps(f, _mm512_loadu_ps(xs[t] + gA + i));
                    _mm512_store_ps(sf[t] + i, f);
                    vc = _mm512_fmadd_ps(f, _mm512_loadu_ps(sq[t] + gA + i), vc);
                }
                _mm512_store_ps(sf[t] + ((n + 15) & ~(size_t)15), _mm512_setzero_ps());
                corr[t] += _mm512_reduce_add_ps(vc);
                if (gdone > gA)
                    corr[t] -= sf[t][0] * sq[t][gA];
            }
            gdone = gB;

            size_t c = c0;
            size_t cf = c1 < nfull ? c1 : nfull;
            __m512i uh0, ul0 = _mm512_setzero_si512(), uh1, ul1 = _mm512_setzero_si512();
            for (; c + 2 <= cf; c += 2) {
                chunk_u512(prow, c, 1, 0, d, &uh0, &ul0);
                chunk_u512(prow, c + 1, 1, 0, d, &uh1, &ul1);
                __m512i i0 = _mm512_loadu_si512(idx + c * 16), i1 = _mm512_loadu_si512(idx + c * 16 + 16);
                size_t b0 = (size_t)base[c] - gA, b1 = (size_t)base[c + 1] - gA;
                for (int t = 0; t < nt; t++) {
                    __m512i dp0 = dp_of_u512(uh0, ul0, xq[t], c, d);
                    __m512i dp1 = dp_of_u512(uh1, ul1, xq[t], c + 1, d);
                    __m512 s0 = _mm512_permutexvar_ps(i0, _mm512_loadu_ps(sf[t] + b0));
                    __m512 s1 = _mm512_permutexvar_ps(i1, _mm512_loadu_ps(sf[t] + b1));
                    f0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp0), s0, f0[t]);
                    f1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp1), s1, f1[t]);
                }
            }
            for (; c < c1; c++) {
                chunk_u512(prow, c, c < nfull, tailb, d, &uh0, &ul0);
                __m512i i0 = _mm512_loadu_si512(idx + c * 16);
                size_t b0 = (size_t)base[c] - gA;
                for (int t = 0; t < nt; t++) {
                    __m512i dp0 = dp_of_u512(uh0, ul0, xq[t], c, d);
                    __m512 s0 = _mm512_permutexvar_ps(i0, _mm512_loadu_ps(sf[t] + b0));
                    f0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp0), s0, f0[t]);
                }
            }
        }
        for (int t = 0; t < nt; t++) {
            float v = (2.0f * _mm512_reduce_add_ps(_mm512_add_ps(f0[t], f1[t])) - cmax * corr[t]) * mul;
            y[t][r] = accumulate ? y[t][r] + v : v;
        }
    }
}

BS_AVX512 static void rows_avx512_multi(const bs_kernel_planes *p, const uint8_t *const *sp, int nt,
                                        const layout *L, int row0, int row1, float *const *y, int accumulate)
{
    switch (p->nplanes) {
#define D(n) case n: rows_avx512_multi_d(p, sp, nt, L, row0, row1, y, accumulate, n); break;
        D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15) D(16)
#undef D
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static void materialize_avx512(const bs_kernel_planes *p, int row0, int row1, float *w)
{
    int cols = p->cols, d = p->nplanes, group = p->group;
    size_t rb = row_bytes(cols), n16 = (size_t)cols / 16, rem = (size_t)cols % 16;
    size_t G = ngroups(cols, group);
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    __m512 w2[BS_KERNEL_MAX_PLANES];
    for (int l = 0; l < d; l++)
        w2[l] = _mm512_set1_ps((float)(2u << (d - 1 - l)));
    for (int r = row0; r < row1; r++) {
        float *wr = w + (size_t)(r - row0) * (size_t)cols;
        const uint16_t *S = p->scales + (size_t)r * G;
        /* code = 2u - (2^d - 1): start at -(2^d - 1), add 2^(d-l) where plane l is set;
         * then times the scale of each half (group % 8 == 0: at most two groups per 16) */
        for (size_t c = 0; c <= n16; c++) {
            if (c == n16 && rem == 0)
                break;
            __m512 acc = _mm512_set1_ps(-cmax);
            for (int l = 0; l < d; l++) {
                const uint8_t *row = p->bits[l] + (size_t)r * rb + c * 2;
                unsigned bits = c < n16 ? (unsigned)row[0] | (unsigned)row[1] << 8
                                        : (unsigned)load_partial(row, rb - c * 2);
                acc = _mm512_mask_add_ps(acc, (__mmask16)bits, acc, w2[l]);
            }
            size_t g0 = c * 16 / (size_t)group, g1 = (c * 16 + 8) / (size_t)group;
            if (g1 >= G)
                g1 = G - 1;
            __m512 sc = _mm512_mask_blend_ps((__mmask16)0xff00, _mm512_set1_ps(_cvtsh_ss(S[g0]) * mul),
                                             _mm512_set1_ps(_cvtsh_ss(S[g1]) * mul));
            acc = _mm512_mul_ps(acc, sc);
            if (c < n16)
                _mm512_storeu_ps(wr + c * 16, acc);
            else
                _mm512_mask_storeu_ps(wr + c * 16, (__mmask16)((1u << rem) - 1), acc);
        }
    }
}

/* ---- AVX2 (+FMA, F16C) -------------------------------------------------------------- */

#define BS_AVX2 __attribute__((target("avx2,fma,f16c")))

BS_AVX2 static inline __attribute__((always_inline)) void
rows_avx2_d(const bs_kernel_planes *p, const uint8_t *s, const layout *L, int row0, int row1,
            float *y, int accumulate, const int d)
{
    int cols = p->cols, group = p->group;
    size_t G = ngroups(cols, group), rb = row_bytes(cols), nch = L->nch;
    size_t nfull = rb / 4, tailb = rb - nfull * 4;
    const int8_t *xq = (const int8_t *)(s + L->xq);
    const float *xs = (const float *)(s + L->xs), *sq = (const float *)(s + L->sq);
    const int32_t *idx = (const int32_t *)(s + L->idx), *base = (const int32_t *)(s + L->base);
    /* maddubs adds two u8*s8 products into int16 with saturation: u <= 127 keeps
     * 2*127*127 < 32767, so slices of at most 7 planes; slice k covers planes
     * 7k..7k+e-1 and is shifted by the planes after it. */
    int nsl = (d + 6) / 7;
    int sl_first[3], sl_e[3];
    for (int k = 0; k < nsl; k++) {
        sl_first[k] = 7 * k;
        sl_e[k] = d - 7 * k < 7 ? d - 7 * k : 7;
    }
    /* byte i of a chunk reads plane byte i/8 and tests bit i%8 (shuffle works per
     * 128-bit half; the broadcast word is in both halves) */
    const __m256i bytesel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bitsel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i ones16 = _mm256_set1_epi16(1);
    float cmax = (float)((1u << d) - 1);
    float mul = ldexpf(1.0f, -(p->shift0 + d - 1));
    size_t win_ch = WIN_COLS / 32;
    float sf[SF_CAP] __attribute__((aligned(32)));

    for (int r = row0; r < row1; r++) {
        const uint16_t *S = p->scales + (size_t)r * G;
        const uint8_t *prow[BS_KERNEL_MAX_PLANES];
        for (int l = 0; l < d; l++)
            prow[l] = p->bits[l] + (size_t)r * rb;
        __m256 facc = _mm256_setzero_ps(), facc1 = _mm256_setzero_ps();
        float corr = 0.0f;
        size_t gdone = 0;
        for (size_t c0 = 0; c0 < nch; c0 += win_ch) {
            size_t c1 = c0 + win_ch < nch ? c0 + win_ch : nch;
            size_t gA = (size_t)base[c0];
            size_t jend = c1 * 32 < (size_t)cols ? c1 * 32 : (size_t)cols;
            size_t gB = (jend - 1) / (size_t)group + 1, n = gB - gA;
            __m256 vc = _mm256_setzero_ps();
            for (size_t i = 0; i < n; i += 8) {
                __m128i h;
                if (n - i >= 8) {
                    h = _mm_loadu_si128((const __m128i *)(S + gA + i));
                } else {
                    uint16_t tmp[8] = {0};
                    memcpy(tmp, S + gA + i, (n - i) * 2);
                    h = _mm_loadu_si128((const __m128i *)tmp);
                }
                __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xs + gA + i));
                _mm256_store_ps(sf + i, f);
                vc = _mm256_fmadd_ps(f, _mm256_loadu_ps(sq + gA + i), vc);
            }
            /* the last partial vector may leave stale values past n+8; window loads read
             * at most 8 past the last used group, so clear one more vector */
            _mm256_store_ps(sf + ((n + 7) & ~(size_t)7), _mm256_setzero_ps());
            __m128 c4 = _mm_add_ps(_mm256_castps256_ps128(vc), _mm256_extractf128_ps(vc, 1));
            c4 = _mm_add_ps(c4, _mm_movehl_ps(c4, c4));
            c4 = _mm_add_ss(c4, _mm_movehdup_ps(c4));
            corr += _mm_cvtss_f32(c4);
            if (gdone > gA)
                corr -= sf[0] * sq[gA];
            gdone = gB;

            for (size_t c = c0; c < c1; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(xq + c * 32));
                __m256i dp = _mm256_setzero_si256();
                for (int k = 0; k < nsl; k++) {
                    __m256i u = _mm256_setzero_si256();
                    for (int i = 0; i < sl_e[k]; i++) {
                        int l = sl_first[k] + i;
                        uint32_t wd;
                        if (c < nfull)
                            memcpy(&wd, prow[l] + c * 4, 4);
                        else
                            wd = (uint32_t)load_partial(prow[l] + c * 4, tailb);
                        /* Horner: u = 2u + bit (cmpeq gives -1 where the bit is set) */
                        __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)wd), bytesel);
                        b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bitsel), bitsel);
                        u = _mm256_sub_epi8(_mm256_add_epi8(u, u), b);
                    }
                    __m256i d32 = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), ones16);
                    /* Horner over slices: u = sum_k 2^(planes after slice k) u_k */
                    dp = k == 0 ? d32 : _mm256_add_epi32(_mm256_slli_epi32(dp, sl_e[k]), d32);
                }
                __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sf + ((size_t)base[c] - gA)),
                                                     _mm256_loadu_si256((const __m256i *)(idx + c * 8)));
                /* two accumulators: one fma chain would cost its latency per chunk */
                if (c & 1)
                    facc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), sv, facc1);
                else
                    facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), sv, facc);
            }
        }
        facc = _mm256_add_ps(facc, facc1);
        __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(facc), _mm256_extractf128_ps(facc, 1));
        a4 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4));
        a4 = _mm_add_ss(a4, _mm_movehdup_ps(a4));
        float v = (2.0f * _mm_cvtss_f32(a4) - cmax * corr) * mul;
        y[r] = accumulate ? y[r] + v : v;
    }
}

BS_AVX2 static void rows_avx2(const bs_kernel_planes *p, const uint8_t *s, const layout *L,
                              int row0, int row1, float *y, int accumulate)
{
    switch (p->nplanes) {
#define D(n) case n: rows_avx2_d(p, s, L, row0, row1, y, accumulate, n); break;
        D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15) D(16)
#undef D
    }
}

#endif /* BS_BP_X86 */

/* ---- entry points ------------------------------------------------------------------- */

static int isa_ok(bs_kernel_isa isa)
{
    if ((unsigned)isa >= BS_KERNEL_NISA)
        return BS_KERNEL_EINVAL;
    return bs_kernel_isa_supported(isa) ? 0 : BS_KERNEL_ENOTSUP;
}

/* The AVX-512 path takes the span kernel (bitplane_span.h) for groups of 32, 64, ... and
 * more than 128 inputs when the CPU has GFNI; the chunk kernel otherwise. */
static int use_span(bs_kernel_isa isa, const bs_kernel_planes *p)
{
    /* a span is 512 inputs: at 128 or fewer the chunk kernel does less (64 x 64 at 12
     * planes, one thread, warm: 1.4 us against 1.9; 64 x 172: 3.4 against 2.1) */
    return isa == BS_KERNEL_AVX512 && p->group % 32 == 0 && (p->cols > 128 || bs_bp_span_packed(p->cols, p->group)) &&
           bs_bp_span_cpu();
}

int bs_kernel_planes_prepare(bs_kernel_isa isa, const bs_kernel_planes *p, const float *x,
                             void *scratch)
{
    int rc = isa_ok(isa);
    if (rc)
        return rc;
    if (bs_kernel_planes_check(p) || !x || !scratch)
        return BS_KERNEL_EINVAL;
    uint8_t *s = scratch;
    layout L = plan(p->cols, p->group, isa);
    if (isa == BS_KERNEL_PORTABLE || isa == BS_KERNEL_LUT)
        prepare_float(p, &L, x, s, isa == BS_KERNEL_LUT);
    else
        prepare_int8(p, &L, x, s, !use_span(isa, p));
    if (use_span(isa, p))
        bs_bp_span_prepare((const int8_t *)(s + L.xq), (const float *)(s + L.xs), (const float *)(s + L.sq), p->cols,
                           p->group, s + L.span);
    prep_hdr h = {PREP_MAGIC, (int)isa, p->cols, p->group};
    memcpy(s, &h, sizeof h);
    return 0;
}

int bs_kernel_planes_rows(bs_kernel_isa isa, const bs_kernel_planes *p, const void *scratch,
                          int row0, int row1, float *y, int accumulate)
{
    int rc = isa_ok(isa);
    if (rc)
        return rc;
    if (bs_kernel_planes_check(p) || !scratch || !y || row0 < 0 || row1 > p->rows || row0 > row1)
        return BS_KERNEL_EINVAL;
    const uint8_t *s = scratch;
    prep_hdr h;
    memcpy(&h, s, sizeof h);
    if (h.magic != PREP_MAGIC || h.isa != (int)isa || h.cols != p->cols || h.group != p->group)
        return BS_KERNEL_EINVAL;
    layout L = plan(p->cols, p->group, isa);
    switch (isa) {
    case BS_KERNEL_PORTABLE:
        rows_portable(p, s, &L, row0, row1, y, accumulate, 0);
        break;
    case BS_KERNEL_LUT:
        rows_portable(p, s, &L, row0, row1, y, accumulate, 1);
        break;
#ifdef BS_BP_X86
    case BS_KERNEL_AVX2:
        rows_avx2(p, s, &L, row0, row1, y, accumulate);
        break;
    case BS_KERNEL_AVX512:
        if (use_span(isa, p)) {
            const uint8_t *in = s + L.span;
            bs_bp_span_rows(p, &in, 1, row0, row1, &y, accumulate);
        } else {
            rows_avx512(p, s, &L, row0, row1, y, accumulate);
        }
        break;
#endif
    default:
        return BS_KERNEL_ENOTSUP;
    }
    return 0;
}

int bs_kernel_planes_matvec_isa(bs_kernel_isa isa, const bs_kernel_planes *p, const float *x,
                                float *y, int accumulate, void *scratch)
{
    int rc = bs_kernel_planes_prepare(isa, p, x, scratch);
    if (rc)
        return rc;
    return bs_kernel_planes_rows(isa, p, scratch, 0, p->rows, y, accumulate);
}

int bs_kernel_planes_matvec(const bs_kernel_planes *p, const float *x, float *y,
                            int accumulate, void *scratch)
{
    return bs_kernel_planes_matvec_isa(bs_kernel_isa_default(), p, x, y, accumulate, scratch);
}

static void materialize_portable(const bs_kernel_planes *p, int row0, int row1, float *w)
{
    int cols = p->cols, d = p->nplanes;
    size_t rb = row_bytes(cols);
    float cmax = (float)((1u << d) - 1);
    for (int r = row0; r < row1; r++) {
        float *wr = w + (size_t)(r - row0) * (size_t)cols;
        for (int j = 0; j < cols; j++)
            wr[j] = -cmax;
        for (int l = 0; l < d; l++) {
            const uint8_t *row = p->bits[l] + (size_t)r * rb;
            float w2 = (float)(2u << (d - 1 - l));
            for (int j = 0; j < cols; j++)
                wr[j] += w2 * (float)((row[j >> 3] >> (j & 7)) & 1);
        }
    }
}

int bs_kernel_planes_materialize(bs_kernel_isa isa, const bs_kernel_planes *p, int row0,
                                 int row1, float *w)
{
    int rc = isa_ok(isa);
    if (rc)
        return rc;
    if (bs_kernel_planes_check(p) || !w || row0 < 0 || row1 > p->rows || row0 > row1)
        return BS_KERNEL_EINVAL;
#ifdef BS_BP_X86
    if (isa == BS_KERNEL_AVX512) {
        materialize_avx512(p, row0, row1, w);
        return 0;
    }
#endif
    materialize_portable(p, row0, row1, w);
    /* codes (exact small integers) times S * 2^-(shift0 + d - 1), one rounding */
    int cols = p->cols, group = p->group;
    size_t G = ngroups(cols, group);
    float mul = ldexpf(1.0f, -(p->shift0 + p->nplanes - 1));
    for (int r = row0; r < row1; r++) {
        float *wr = w + (size_t)(r - row0) * (size_t)cols;
        for (size_t g = 0; g < G; g++) {
            float sc = bs_fp16_to_f32(p->scales[(size_t)r * G + g]) * mul;
            size_t j1 = (g + 1) * (size_t)group < (size_t)cols ? (g + 1) * (size_t)group : (size_t)cols;
            for (size_t j = g * (size_t)group; j < j1; j++)
                wr[j] *= sc;
        }
    }
    return 0;
}

int bs_kernel_matmul_crossover(bs_kernel_isa isa)
{
    return isa == BS_KERNEL_AVX2 || isa == BS_KERNEL_AVX512 ? BS_KERNEL_MATMUL_CROSSOVER
                                                            : BS_KERNEL_MATMUL_CROSSOVER_C;
}

/* Bytes of one token's prepared input on the int8 paths, rounded for the next one. */
static size_t int8_prep_bytes(int cols, int group)
{
    size_t a = plan(cols, group, BS_KERNEL_AVX2).total, b = plan(cols, group, BS_KERNEL_AVX512).total;
    return up64(a > b ? a : b);
}

size_t bs_kernel_planes_matmul_scratch(int cols, int group, int ntok)
{
    size_t a = bs_kernel_planes_scratch(cols, group);
    /* any path: the smallest crossover decides whether the W block may be needed */
    if (ntok < BS_KERNEL_MATMUL_CROSSOVER_C || a == 0)
        return a;
    size_t b = (size_t)BS_KERNEL_MATMUL_BLOCK * (size_t)cols * sizeof(float);
    /* int8 paths: every token's input prepared at once (the span kernel at any count) */
    int pre = ntok < BS_KERNEL_MATMUL_CROSSOVER || bs_bp_span_cpu() ? ntok : BS_KERNEL_MATMUL_CROSSOVER - 1;
    size_t c = (size_t)pre * int8_prep_bytes(cols, group);
    if (b < c)
        b = c;
    return a > b ? a : b;
}

/* Tokens per pass of the span kernel over a block of rows (pointer arrays on the stack). */
enum { SPAN_CALL_TOK = 64 };

int bs_kernel_planes_matmul_int8(bs_kernel_isa isa, const bs_kernel_planes *p, int ntok)
{
    if (isa != BS_KERNEL_AVX2 && isa != BS_KERNEL_AVX512)
        return 0;
    return use_span(isa, p) || ntok < BS_KERNEL_MATMUL_CROSSOVER;
}

int bs_kernel_planes_matmul(bs_kernel_isa isa, const bs_kernel_planes *p, int row0, int row1,
                            const float *x, int ntok, float *y, int accumulate, void *scratch)
{
    int rc = isa_ok(isa);
    if (rc)
        return rc;
    if (bs_kernel_planes_check(p) || !x || !y || !scratch || ntok < 0 || row0 < 0 ||
        row1 > p->rows || row0 > row1)
        return BS_KERNEL_EINVAL;
    size_t cols = (size_t)p->cols, rows = (size_t)p->rows;
    if (ntok <= 1) {
        for (int t = 0; t < ntok; t++) {
            rc = bs_kernel_planes_prepare(isa, p, x + (size_t)t * cols, scratch);
            if (!rc)
                rc = bs_kernel_planes_rows(isa, p, scratch, row0, row1, y + (size_t)t * rows, accumulate);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (bs_kernel_planes_matmul_int8(isa, p, ntok)) {
        /* A few tokens (sessions decoding together): every input prepared first, then
         * BS_KERNEL_ROW_BLOCK rows at a time for all of them, so the block's plane bytes
         * come from memory once and from cache for the other tokens. Each token's sums
         * are those of its own matvec, bit for bit. */
        size_t pb = int8_prep_bytes(p->cols, p->group);
        uint8_t *sp = scratch;
        for (int t = 0; t < ntok; t++)
            if ((rc = bs_kernel_planes_prepare(isa, p, x + (size_t)t * cols, sp + (size_t)t * pb)))
                return rc;
        if (use_span(isa, p)) {
            /* a block of rows at a time for all tokens: its plane bytes stay in cache */
            layout L = plan(p->cols, p->group, isa);
            const uint8_t *in[SPAN_CALL_TOK];
            float *ty[SPAN_CALL_TOK];
            for (int t0 = 0; t0 < ntok; t0 += SPAN_CALL_TOK) {
                int nt = ntok - t0 < SPAN_CALL_TOK ? ntok - t0 : SPAN_CALL_TOK;
                for (int t = 0; t < nt; t++) {
                    in[t] = sp + (size_t)(t0 + t) * pb + L.span;
                    ty[t] = y + (size_t)(t0 + t) * rows;
                }
                for (int r0 = row0; r0 < row1; r0 += BS_KERNEL_ROW_BLOCK) {
                    int r1 = r0 + BS_KERNEL_ROW_BLOCK < row1 ? r0 + BS_KERNEL_ROW_BLOCK : row1;
                    bs_bp_span_rows(p, in, nt, r0, r1, ty, accumulate);
                }
            }
            return 0;
        }
#ifdef BS_BP_X86
        if (isa == BS_KERNEL_AVX512) {
            /* the codes of a chunk built once for MULTI_TOK tokens */
            layout L = plan(p->cols, p->group, isa);
            for (int r0 = row0; r0 < row1; r0 += BS_KERNEL_ROW_BLOCK) {
                int r1 = r0 + BS_KERNEL_ROW_BLOCK < row1 ? r0 + BS_KERNEL_ROW_BLOCK : row1;
                for (int t0 = 0; t0 < ntok; t0 += MULTI_TOK) {
                    int nt = ntok - t0 < MULTI_TOK ? ntok - t0 : MULTI_TOK;
                    const uint8_t *tsp[MULTI_TOK];
                    float *ty[MULTI_TOK];
                    for (int t = 0; t < nt; t++) {
                        tsp[t] = sp + (size_t)(t0 + t) * pb;
                        ty[t] = y + (size_t)(t0 + t) * rows;
                    }
                    rows_avx512_multi(p, tsp, nt, &L, r0, r1, ty, accumulate);
                }
            }
            return 0;
        }
#endif
        for (int r0 = row0; r0 < row1; r0 += BS_KERNEL_ROW_BLOCK) {
            int r1 = r0 + BS_KERNEL_ROW_BLOCK < row1 ? r0 + BS_KERNEL_ROW_BLOCK : row1;
            for (int t = 0; t < ntok; t++)
                if ((rc = bs_kernel_planes_rows(isa, p, sp + (size_t)t * pb, r0, r1, y + (size_t)t * rows,
                                                accumulate)))
                    return rc;
        }
        return 0;
    }
    /* Many tokens: sgemm's blocking beats per-token sweeps once W's rows are floats; a
     * block of rows at a time keeps the scratch small and the block in cache. */
    float *wb = scratch;
    for (int r0 = row0; r0 < row1; r0 += BS_KERNEL_MATMUL_BLOCK) {
        int r1 = r0 + BS_KERNEL_MATMUL_BLOCK < row1 ? r0 + BS_KERNEL_MATMUL_BLOCK : row1;
        rc = bs_kernel_planes_materialize(isa, p, r0, r1, wb);
        if (rc)
            return rc;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ntok, r1 - r0, p->cols, 1.0f,
                    x, p->cols, wb, p->cols, accumulate ? 1.0f : 0.0f, y + r0, p->rows);
    }
    return 0;
}

/* ---- avd ---------------------------------------------------------------------------- */

static size_t avd_kp(int k)
{
    return ((size_t)k + 15) & ~(size_t)15;
}

/* hdr | z: cols x kp floats (z[j][i] = V[j][i] x[j], zero past k) | tz: kp floats */
size_t bs_kernel_avd_scratch(int cols, int k)
{
    if (cols < 1 || k < 1)
        return 0;
    size_t kp = avd_kp(k);
    return up64(sizeof(prep_hdr)) + up64((size_t)cols * kp * sizeof(float)) + up64(kp * sizeof(float));
}

static int avd_check(const bs_kernel_avd *a)
{
    if (!a || a->rows < 1 || a->cols < 1 || a->k < 1 || a->k > BS_KERNEL_AVD_MAX_K ||
        !a->bits || !a->u || !a->v)
        return BS_KERNEL_EINVAL;
    return 0;
}

int bs_kernel_avd_prepare(bs_kernel_isa isa, const bs_kernel_avd *a, const float *x,
                          void *scratch)
{
    int rc = isa_ok(isa);
    if (rc)
        return rc;
    if (avd_check(a) || !x || !scratch)
        return BS_KERNEL_EINVAL;
    uint8_t *s = scratch;
    size_t kp = avd_kp(a->k), k = (size_t)a->k;
    float *z = (float *)(s + up64(sizeof(prep_hdr)));
    float *tz = z + up64((size_t)a->cols * kp * sizeof(float)) / sizeof(float);
    /* tz in double: 2a - tz cancels, so its own rounding should not add to that */
    double t[BS_KERNEL_AVD_MAX_K + 16] = {0};
    for (size_t j = 0; j < (size_t)a->cols; j++) {
        float *zj = z + j * kp;
        for (size_t i = 0; i < k; i++) {
            zj[i] = bs_fp16_to_f32(a->v[j * k + i]) * x[j];
            t[i] += zj[i];
        }
        for (size_t i = k; i < kp; i++)
            zj[i] = 0.0f;
    }
    for (size_t i = 0; i < kp; i++)
        tz[i] = (float)t[i];
    prep_hdr h = {AVD_MAGIC, (int)isa, a->cols, a->k};
    memcpy(s, &h, sizeof h);
    return 0;
}

static void avd_rows_portable(const bs_kernel_avd *a, const float *z, const float *tz,
                              int row0, int row1, float *y, int accumulate)
{
    size_t kp = avd_kp(a->k), k = (size_t)a->k, rb = row_bytes(a->cols);
    float acc[BS_KERNEL_AVD_MAX_K];
    for (int r = row0; r < row1; r++) {
        const uint8_t *row = a->bits + (size_t)r * rb;
        memset(acc, 0, sizeof(float) * kp);
        for (size_t kb = 0; kb < rb; kb++) {
            unsigned b = row_byte(row, kb, a->cols);
            while (b) {
                const float *zj = z + (kb * 8 + (size_t)__builtin_ctz(b)) * kp;
                for (size_t i = 0; i < kp; i++)
                    acc[i] += zj[i];
                b &= b - 1;
            }
        }
        float v = 0.0f;
        for (size_t i = 0; i < k; i++)
            v += bs_fp16_to_f32(a->u[(size_t)r * k + i]) * (2.0f * acc[i] - tz[i]);
        y[r] = accumulate ? y[r] + v : v;
    }
}

#ifdef BS_BP_X86
/* One pass over the row's set bits per 32 rank components (two zmm accumulators). */
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void avd_rows_avx512(const bs_kernel_avd *a, const float *z, const float *tz,
                            int row0, int row1, float *y, int accumulate)
{
    size_t kp = avd_kp(a->k), k = (size_t)a->k, rb = row_bytes(a->cols);
    size_t nw = rb / 8, tailb = rb - nw * 8;
    int cols = a->cols;
    for (int r = row0; r < row1; r++) {
        const uint8_t *row = a->bits + (size_t)r * rb;
        const uint16_t *U = a->u + (size_t)r * k;
        __m512 tot = _mm512_setzero_ps();
        for (size_t i0 = 0; i0 < kp; i0 += 32) {
            int two = kp - i0 > 16;
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            for (size_t wi = 0; wi <= nw; wi++) {
                uint64_t w;
                if (wi < nw) {
                    w = load_le64(row + wi * 8);
                } else {
                    if (!tailb)
                        break;
                    w = load_partial(row + wi * 8, tailb);
                }
                size_t left = (size_t)cols - wi * 64;
                if (left < 64)
                    w &= ((uint64_t)1 << left) - 1;
                const float *zb = z + wi * 64 * kp + i0;
                if (two) {
                    while (w) {
                        const float *zj = zb + (size_t)__builtin_ctzll(w) * kp;
                        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(zj));
                        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(zj + 16));
                        w &= w - 1;
                    }
                } else {
                    while (w) {
                        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(zb + (size_t)__builtin_ctzll(w) * kp));
                        w &= w - 1;
                    }
                }
            }
            /* U . (2a - tz), U read with a mask so no fp16 past the row is touched */
            size_t left = k > i0 ? k - i0 : 0;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __m512 u0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m0, U + i0));
            a0 = _mm512_fmsub_ps(_mm512_set1_ps(2.0f), a0, _mm512_loadu_ps(tz + i0));
            tot = _mm512_fmadd_ps(u0, a0, tot);
            if (two) {
                size_t left1 = left > 16 ? left - 16 : 0;
                __mmask16 m1 = left1 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left1) - 1);
                __m512 u1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m1, U + i0 + 16));
                a1 = _mm512_fmsub_ps(_mm512_set1_ps(2.0f), a1, _mm512_loadu_ps(tz + i0 + 16));
                tot = _mm512_fmadd_ps(u1, a1, tot);
            }
        }
        float v = _mm512_reduce_add_ps(tot);
        y[r] = accumulate ? y[r] + v : v;
    }
}
#endif

int bs_kernel_avd_rows(bs_kernel_isa isa, const bs_kernel_avd *a, const void *scratch,
                       int row0, int row1, float *y, int accumulate)
{
    int rc = isa_ok(isa);
    if (rc)
        return rc;
    if (avd_check(a) || !scratch || !y || row0 < 0 || row1 > a->rows || row0 > row1)
        return BS_KERNEL_EINVAL;
    const uint8_t *s = scratch;
    prep_hdr h;
    memcpy(&h, s, sizeof h);
    if (h.magic != AVD_MAGIC || h.isa != (int)isa || h.cols != a->cols || h.group != a->k)
        return BS_KERNEL_EINVAL;
    size_t kp = avd_kp(a->k);
    const float *z = (const float *)(s + up64(sizeof(prep_hdr)));
    const float *tz = z + up64((size_t)a->cols * kp * sizeof(float)) / sizeof(float);
#ifdef BS_BP_X86
    if (isa == BS_KERNEL_AVX512) {
        avd_rows_avx512(a, z, tz, row0, row1, y, accumulate);
        return 0;
    }
#endif
    avd_rows_portable(a, z, tz, row0, row1, y, accumulate);
    return 0;
}

int bs_kernel_avd_matvec(bs_kernel_isa isa, const bs_kernel_avd *a, const float *x, float *y,
                         int accumulate, void *scratch)
{
    int rc = bs_kernel_avd_prepare(isa, a, x, scratch);
    if (rc)
        return rc;
    return bs_kernel_avd_rows(isa, a, scratch, 0, a->rows, y, accumulate);
}
