#include "kernels/dequant.h"

#include "kernels/half.h"

#include <string.h>

/* Bit-exactness with ggml matters (tests compare hashes), so each expression keeps
 * ggml's order of float operations, e.g. (d * scale) * q rather than d * (scale * q).
 * The project builds as ISO C17, where gcc does not contract a*b+c into an FMA. */

static inline float f16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return bs_fp16_to_f32(h);
}

static inline uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q4_0, 18 bytes: fp16 d, 16 bytes of nibbles. Value j is the low nibble of byte j,
 * value j+16 its high nibble; both centred by -8. */
void bs_dequant_q4_0(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 18, dst += 32) {
        float d = f16_at(src);
        const uint8_t *qs = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((qs[j] & 0x0f) - 8) * d;
            dst[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

/* Q4_1, 20 bytes: fp16 d, fp16 m, nibbles as Q4_0 but unsigned: q*d + m. */
void bs_dequant_q4_1(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 20, dst += 32) {
        float d = f16_at(src), m = f16_at(src + 2);
        const uint8_t *qs = src + 4;
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(qs[j] & 0x0f) * d + m;
            dst[j + 16] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

/* Q5_0, 22 bytes: fp16 d, 32 high bits (bit j for value j), nibbles as Q4_0; -16. */
void bs_dequant_q5_0(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 22, dst += 32) {
        float d = f16_at(src);
        uint32_t qh = u32_at(src + 2);
        const uint8_t *qs = src + 6;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (float)(((qs[j] & 0x0f) | h0) - 16) * d;
            dst[j + 16] = (float)(((qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* Q5_1, 24 bytes: fp16 d, fp16 m, high bits, nibbles; q*d + m. */
void bs_dequant_q5_1(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 24, dst += 32) {
        float d = f16_at(src), m = f16_at(src + 2);
        uint32_t qh = u32_at(src + 4);
        const uint8_t *qs = src + 8;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (float)((qs[j] & 0x0f) | h0) * d + m;
            dst[j + 16] = (float)((qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* Q8_0, 34 bytes: fp16 d, 32 signed bytes. */
void bs_dequant_q8_0(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 34, dst += 32) {
        float d = f16_at(src);
        for (int j = 0; j < 32; j++)
            dst[j] = (float)(int8_t)src[2 + j] * d;
    }
}

/* Q2_K, 84 bytes: 16 scale bytes (low nibble scale, high nibble min, one per 16
 * values), 64 bytes of 2-bit values, fp16 d, fp16 dmin. Each 128-value half reads
 * 32 bytes four times at shifts 0, 2, 4, 6; each pass covers 2 x 16 values. */
void bs_dequant_q2_k(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 84) {
        const uint8_t *sc = src, *q = src + 16;
        float d = f16_at(src + 80), dmin = f16_at(src + 82);
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int k = 0; k < 2; k++, is++) {
                    float dl = d * (float)(sc[is] & 0x0f), ml = dmin * (float)(sc[is] >> 4);
                    for (int l = 0; l < 16; l++)
                        *dst++ = dl * (float)((q[16 * k + l] >> shift) & 3) - ml;
                }
    }
}

/* Q3_K, 110 bytes: 32 bytes of high bits (hmask), 64 bytes of 2-bit values, 12 bytes
 * packing sixteen 6-bit scales (low 4 bits in bytes 0..7, high 2 bits in 8..11), fp16 d.
 * A value is (2-bit q) - 4, plus 4 back when its hmask bit is set; scale minus 32. */
static void q3_k_scales(const uint8_t *p, int8_t out[16])
{
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? p[i] & 0x0f : p[i - 8] >> 4;
        int hi = (p[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        out[i] = (int8_t)((lo | hi << 4) - 32);
    }
}

void bs_dequant_q3_k(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 110) {
        const uint8_t *hm = src, *q = src + 32;
        int8_t sc[16];
        q3_k_scales(src + 96, sc);
        float d = f16_at(src + 108);
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < 2; half++, q += 32)
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1))
                for (int k = 0; k < 2; k++, is++) {
                    float dl = d * (float)sc[is];
                    for (int l = 0; l < 16; l++) {
                        int i = 16 * k + l;
                        int v = ((q[i] >> shift) & 3) - ((hm[i] & m) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
    }
}

/* Q4_K and Q5_K pack eight 6-bit (scale, min) pairs into 12 bytes: pairs 0..3 in the
 * low 6 bits of bytes 0..3 / 4..7, pairs 4..7 as nibbles of bytes 8..11 plus the top
 * 2 bits of bytes 0..3 / 4..7. */
static void k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K, 144 bytes: fp16 d, fp16 dmin, 12 scale bytes, 128 bytes of nibbles; each 64
 * values read 32 bytes, low nibbles then high nibbles, with their own (scale, min). */
void bs_dequant_q4_k(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 144) {
        float d = f16_at(src), dmin = f16_at(src + 2);
        const uint8_t *scales = src + 4, *q = src + 16;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t s, mn;
            k4_scale_min(is, scales, &s, &mn);
            float d1 = d * (float)s, m1 = dmin * (float)mn;
            k4_scale_min(is + 1, scales, &s, &mn);
            float d2 = d * (float)s, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K, 176 bytes: as Q4_K with 32 bytes of fifth bits (qh) before the nibbles;
 * the 64-value group g takes its bits from qh bit 2g (low nibbles) and 2g+1 (high). */
void bs_dequant_q5_k(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 176) {
        float d = f16_at(src), dmin = f16_at(src + 2);
        const uint8_t *scales = src + 4, *qh = src + 16, *ql = src + 48;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
            uint8_t s, mn;
            k4_scale_min(is, scales, &s, &mn);
            float d1 = d * (float)s, m1 = dmin * (float)mn;
            k4_scale_min(is + 1, scales, &s, &mn);
            float d2 = d * (float)s, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K, 210 bytes: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed
 * scales, fp16 d. Each 128-value half reads 64 low bytes and 32 high bytes: value
 * l + 32k takes nibble (k / 2) of ql[l + 32 (k % 2)] and bits 2k..2k+1 of qh[l]. */
void bs_dequant_q6_k(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 210) {
        const uint8_t *ql = src, *qh = src + 128;
        const int8_t *sc = (const int8_t *)(src + 192);
        float d = f16_at(src + 208);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128)
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                dst[l] = d * (float)sc[is] * (float)q1;
                dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
    }
}

/* IQ4_NL's 16 non-uniform levels (ggml's kvalues_iq4nl). */
static const int8_t iq4nl_levels[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* IQ4_NL, 18 bytes: fp16 d, nibbles laid out as Q4_0, each an index into the levels. */
void bs_dequant_iq4_nl(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 18, dst += 32) {
        float d = f16_at(src);
        const uint8_t *qs = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)iq4nl_levels[qs[j] & 0x0f];
            dst[j + 16] = d * (float)iq4nl_levels[qs[j] >> 4];
        }
    }
}

/* IQ4_XS, 136 bytes: fp16 d, u16 of high scale bits (2 per 32-value group), 4 bytes of
 * low scale nibbles, then eight IQ4_NL-style groups of 16 bytes; scale minus 32. */
void bs_dequant_iq4_xs(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 136) {
        float d = f16_at(src);
        unsigned sh = (unsigned)src[2] | (unsigned)src[3] << 8;
        const uint8_t *sl = src + 4, *qs = src + 8;
        for (int ib = 0; ib < 8; ib++, qs += 16, dst += 32) {
            int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (int)((sh >> (2 * ib)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * (float)iq4nl_levels[qs[j] & 0x0f];
                dst[j + 16] = dl * (float)iq4nl_levels[qs[j] >> 4];
            }
        }
    }
}

/* The IQ3 grids: each entry packs four magnitudes, byte 0 first (ggml's iq3xxs_grid
 * and iq3s_grid; data from ggml-common.h). */
static const uint32_t iq3xxs_grid[256] = {
    0x04040404, 0x04040414, 0x04040424, 0x04040c0c, 0x04040c1c, 0x04040c3e, 0x04041404, 0x04041414,
    0x04041c0c, 0x04042414, 0x04043e1c, 0x04043e2c, 0x040c040c, 0x040c041c, 0x040c0c04, 0x040c0c14,
    0x040c140c, 0x040c142c, 0x040c1c04, 0x040c1c14, 0x040c240c, 0x040c2c24, 0x040c3e04, 0x04140404,
    0x04140414, 0x04140424, 0x04140c0c, 0x04141404, 0x04141414, 0x04141c0c, 0x04141c1c, 0x04141c3e,
    0x04142c0c, 0x04142c3e, 0x04143e2c, 0x041c040c, 0x041c043e, 0x041c0c04, 0x041c0c14, 0x041c142c,
    0x041c3e04, 0x04240c1c, 0x04241c3e, 0x04242424, 0x04242c3e, 0x04243e1c, 0x04243e2c, 0x042c040c,
    0x042c043e, 0x042c1c14, 0x042c2c14, 0x04341c2c, 0x04343424, 0x043e0c04, 0x043e0c24, 0x043e0c34,
    0x043e241c, 0x043e340c, 0x0c04040c, 0x0c04041c, 0x0c040c04, 0x0c040c14, 0x0c04140c, 0x0c04141c,
    0x0c041c04, 0x0c041c14, 0x0c041c24, 0x0c04243e, 0x0c042c04, 0x0c0c0404, 0x0c0c0414, 0x0c0c0c0c,
    0x0c0c1404, 0x0c0c1414, 0x0c14040c, 0x0c14041c, 0x0c140c04, 0x0c140c14, 0x0c14140c, 0x0c141c04,
    0x0c143e14, 0x0c1c0404, 0x0c1c0414, 0x0c1c1404, 0x0c1c1c0c, 0x0c1c2434, 0x0c1c3434, 0x0c24040c,
    0x0c24042c, 0x0c242c04, 0x0c2c1404, 0x0c2c1424, 0x0c2c2434, 0x0c2c3e0c, 0x0c34042c, 0x0c3e1414,
    0x0c3e2404, 0x14040404, 0x14040414, 0x14040c0c, 0x14040c1c, 0x14041404, 0x14041414, 0x14041434,
    0x14041c0c, 0x14042414, 0x140c040c, 0x140c041c, 0x140c042c, 0x140c0c04, 0x140c0c14, 0x140c140c,
    0x140c1c04, 0x140c341c, 0x140c343e, 0x140c3e04, 0x14140404, 0x14140414, 0x14140c0c, 0x14140c3e,
    0x14141404, 0x14141414, 0x14141c3e, 0x14142404, 0x14142c2c, 0x141c040c, 0x141c0c04, 0x141c0c24,
    0x141c3e04, 0x141c3e24, 0x14241c2c, 0x14242c1c, 0x142c041c, 0x142c143e, 0x142c240c, 0x142c3e24,
    0x143e040c, 0x143e041c, 0x143e0c34, 0x143e242c, 0x1c04040c, 0x1c040c04, 0x1c040c14, 0x1c04140c,
    0x1c04141c, 0x1c042c04, 0x1c04342c, 0x1c043e14, 0x1c0c0404, 0x1c0c0414, 0x1c0c1404, 0x1c0c1c0c,
    0x1c0c2424, 0x1c0c2434, 0x1c14040c, 0x1c14041c, 0x1c140c04, 0x1c14142c, 0x1c142c14, 0x1c143e14,
    0x1c1c0c0c, 0x1c1c1c1c, 0x1c241c04, 0x1c24243e, 0x1c243e14, 0x1c2c0404, 0x1c2c0434, 0x1c2c1414,
    0x1c2c2c2c, 0x1c340c24, 0x1c341c34, 0x1c34341c, 0x1c3e1c1c, 0x1c3e3404, 0x24040424, 0x24040c3e,
    0x24041c2c, 0x24041c3e, 0x24042c1c, 0x24042c3e, 0x240c3e24, 0x24141404, 0x24141c3e, 0x24142404,
    0x24143404, 0x24143434, 0x241c043e, 0x241c242c, 0x24240424, 0x24242c0c, 0x24243424, 0x242c142c,
    0x242c241c, 0x242c3e04, 0x243e042c, 0x243e0c04, 0x243e0c14, 0x243e1c04, 0x2c040c14, 0x2c04240c,
    0x2c043e04, 0x2c0c0404, 0x2c0c0434, 0x2c0c1434, 0x2c0c2c2c, 0x2c140c24, 0x2c141c14, 0x2c143e14,
    0x2c1c0414, 0x2c1c2c1c, 0x2c240c04, 0x2c24141c, 0x2c24143e, 0x2c243e14, 0x2c2c0414, 0x2c2c1c0c,
    0x2c342c04, 0x2c3e1424, 0x2c3e2414, 0x34041424, 0x34042424, 0x34042434, 0x34043424, 0x340c140c,
    0x340c340c, 0x34140c3e, 0x34143424, 0x341c1c04, 0x341c1c34, 0x34242424, 0x342c042c, 0x342c2c14,
    0x34341c1c, 0x343e041c, 0x343e140c, 0x3e04041c, 0x3e04042c, 0x3e04043e, 0x3e040c04, 0x3e041c14,
    0x3e042c14, 0x3e0c1434, 0x3e0c2404, 0x3e140c14, 0x3e14242c, 0x3e142c14, 0x3e1c0404, 0x3e1c0c2c,
    0x3e1c1c1c, 0x3e1c3404, 0x3e24140c, 0x3e24240c, 0x3e2c0404, 0x3e2c0414, 0x3e2c1424, 0x3e341c04,
};

static const uint32_t iq3s_grid[512] = {
    0x01010101, 0x01010103, 0x01010105, 0x0101010b, 0x0101010f, 0x01010301, 0x01010303, 0x01010305,
    0x01010309, 0x0101030d, 0x01010501, 0x01010503, 0x0101050b, 0x01010707, 0x01010901, 0x01010905,
    0x0101090b, 0x0101090f, 0x01010b03, 0x01010b07, 0x01010d01, 0x01010d05, 0x01010f03, 0x01010f09,
    0x01010f0f, 0x01030101, 0x01030103, 0x01030105, 0x01030109, 0x01030301, 0x01030303, 0x0103030b,
    0x01030501, 0x01030507, 0x0103050f, 0x01030703, 0x0103070b, 0x01030909, 0x01030d03, 0x01030d0b,
    0x01030f05, 0x01050101, 0x01050103, 0x0105010b, 0x0105010f, 0x01050301, 0x01050307, 0x0105030d,
    0x01050503, 0x0105050b, 0x01050701, 0x01050709, 0x01050905, 0x0105090b, 0x0105090f, 0x01050b03,
    0x01050b07, 0x01050f01, 0x01050f07, 0x01070107, 0x01070303, 0x0107030b, 0x01070501, 0x01070505,
    0x01070703, 0x01070707, 0x0107070d, 0x01070909, 0x01070b01, 0x01070b05, 0x01070d0f, 0x01070f03,
    0x01070f0b, 0x01090101, 0x01090307, 0x0109030f, 0x01090503, 0x01090509, 0x01090705, 0x01090901,
    0x01090907, 0x01090b03, 0x01090f01, 0x010b0105, 0x010b0109, 0x010b0501, 0x010b0505, 0x010b050d,
    0x010b0707, 0x010b0903, 0x010b090b, 0x010b090f, 0x010b0d0d, 0x010b0f07, 0x010d010d, 0x010d0303,
    0x010d0307, 0x010d0703, 0x010d0b05, 0x010d0f03, 0x010f0101, 0x010f0105, 0x010f0109, 0x010f0501,
    0x010f0505, 0x010f050d, 0x010f0707, 0x010f0b01, 0x010f0b09, 0x03010101, 0x03010103, 0x03010105,
    0x03010109, 0x03010301, 0x03010303, 0x03010307, 0x0301030b, 0x0301030f, 0x03010501, 0x03010505,
    0x03010703, 0x03010709, 0x0301070d, 0x03010b09, 0x03010b0d, 0x03010d03, 0x03010f05, 0x03030101,
    0x03030103, 0x03030107, 0x0303010d, 0x03030301, 0x03030309, 0x03030503, 0x03030701, 0x03030707,
    0x03030903, 0x03030b01, 0x03030b05, 0x03030f01, 0x03030f0d, 0x03050101, 0x03050305, 0x0305030b,
    0x0305030f, 0x03050501, 0x03050509, 0x03050705, 0x03050901, 0x03050907, 0x03050b0b, 0x03050d01,
    0x03050f05, 0x03070103, 0x03070109, 0x0307010f, 0x03070301, 0x03070307, 0x03070503, 0x0307050f,
    0x03070701, 0x03070709, 0x03070903, 0x03070d05, 0x03070f01, 0x03090107, 0x0309010b, 0x03090305,
    0x03090309, 0x03090703, 0x03090707, 0x03090905, 0x0309090d, 0x03090b01, 0x03090b09, 0x030b0103,
    0x030b0301, 0x030b0307, 0x030b0503, 0x030b0701, 0x030b0705, 0x030b0b03, 0x030d0501, 0x030d0509,
    0x030d050f, 0x030d0909, 0x030d090d, 0x030f0103, 0x030f0107, 0x030f0301, 0x030f0305, 0x030f0503,
    0x030f070b, 0x030f0903, 0x030f0d05, 0x030f0f01, 0x05010101, 0x05010103, 0x05010107, 0x0501010b,
    0x0501010f, 0x05010301, 0x05010305, 0x05010309, 0x0501030d, 0x05010503, 0x05010507, 0x0501050f,
    0x05010701, 0x05010705, 0x05010903, 0x05010907, 0x0501090b, 0x05010b01, 0x05010b05, 0x05010d0f,
    0x05010f01, 0x05010f07, 0x05010f0b, 0x05030101, 0x05030105, 0x05030301, 0x05030307, 0x0503030f,
    0x05030505, 0x0503050b, 0x05030703, 0x05030709, 0x05030905, 0x05030b03, 0x05050103, 0x05050109,
    0x0505010f, 0x05050503, 0x05050507, 0x05050701, 0x0505070f, 0x05050903, 0x05050b07, 0x05050b0f,
    0x05050f03, 0x05050f09, 0x05070101, 0x05070105, 0x0507010b, 0x05070303, 0x05070505, 0x05070509,
    0x05070703, 0x05070707, 0x05070905, 0x05070b01, 0x05070d0d, 0x05090103, 0x0509010f, 0x05090501,
    0x05090507, 0x05090705, 0x0509070b, 0x05090903, 0x05090f05, 0x05090f0b, 0x050b0109, 0x050b0303,
    0x050b0505, 0x050b070f, 0x050b0901, 0x050b0b07, 0x050b0f01, 0x050d0101, 0x050d0105, 0x050d010f,
    0x050d0503, 0x050d0b0b, 0x050d0d03, 0x050f010b, 0x050f0303, 0x050f050d, 0x050f0701, 0x050f0907,
    0x050f0b01, 0x07010105, 0x07010303, 0x07010307, 0x0701030b, 0x0701030f, 0x07010505, 0x07010703,
    0x07010707, 0x0701070b, 0x07010905, 0x07010909, 0x0701090f, 0x07010b03, 0x07010d07, 0x07010f03,
    0x07030103, 0x07030107, 0x0703010b, 0x07030309, 0x07030503, 0x07030507, 0x07030901, 0x07030d01,
    0x07030f05, 0x07030f0d, 0x07050101, 0x07050305, 0x07050501, 0x07050705, 0x07050709, 0x07050b01,
    0x07070103, 0x07070301, 0x07070309, 0x07070503, 0x07070507, 0x0707050f, 0x07070701, 0x07070903,
    0x07070907, 0x0707090f, 0x07070b0b, 0x07070f07, 0x07090107, 0x07090303, 0x0709030d, 0x07090505,
    0x07090703, 0x07090b05, 0x07090d01, 0x07090d09, 0x070b0103, 0x070b0301, 0x070b0305, 0x070b050b,
    0x070b0705, 0x070b0909, 0x070b0b0d, 0x070b0f07, 0x070d030d, 0x070d0903, 0x070f0103, 0x070f0107,
    0x070f0501, 0x070f0505, 0x070f070b, 0x09010101, 0x09010109, 0x09010305, 0x09010501, 0x09010509,
    0x0901050f, 0x09010705, 0x09010903, 0x09010b01, 0x09010f01, 0x09030105, 0x0903010f, 0x09030303,
    0x09030307, 0x09030505, 0x09030701, 0x0903070b, 0x09030907, 0x09030b03, 0x09030b0b, 0x09050103,
    0x09050107, 0x09050301, 0x0905030b, 0x09050503, 0x09050707, 0x09050901, 0x09050b0f, 0x09050d05,
    0x09050f01, 0x09070109, 0x09070303, 0x09070307, 0x09070501, 0x09070505, 0x09070703, 0x0907070b,
    0x09090101, 0x09090105, 0x09090509, 0x0909070f, 0x09090901, 0x09090f03, 0x090b010b, 0x090b010f,
    0x090b0503, 0x090b0d05, 0x090d0307, 0x090d0709, 0x090d0d01, 0x090f0301, 0x090f030b, 0x090f0701,
    0x090f0907, 0x090f0b03, 0x0b010105, 0x0b010301, 0x0b010309, 0x0b010505, 0x0b010901, 0x0b010909,
    0x0b01090f, 0x0b010b05, 0x0b010d0d, 0x0b010f09, 0x0b030103, 0x0b030107, 0x0b03010b, 0x0b030305,
    0x0b030503, 0x0b030705, 0x0b030f05, 0x0b050101, 0x0b050303, 0x0b050507, 0x0b050701, 0x0b05070d,
    0x0b050b07, 0x0b070105, 0x0b07010f, 0x0b070301, 0x0b07050f, 0x0b070909, 0x0b070b03, 0x0b070d0b,
    0x0b070f07, 0x0b090103, 0x0b090109, 0x0b090501, 0x0b090705, 0x0b09090d, 0x0b0b0305, 0x0b0b050d,
    0x0b0b0b03, 0x0b0b0b07, 0x0b0d0905, 0x0b0f0105, 0x0b0f0109, 0x0b0f0505, 0x0d010303, 0x0d010307,
    0x0d01030b, 0x0d010703, 0x0d010707, 0x0d010d01, 0x0d030101, 0x0d030501, 0x0d03050f, 0x0d030d09,
    0x0d050305, 0x0d050709, 0x0d050905, 0x0d050b0b, 0x0d050d05, 0x0d050f01, 0x0d070101, 0x0d070309,
    0x0d070503, 0x0d070901, 0x0d09050b, 0x0d090907, 0x0d090d05, 0x0d0b0101, 0x0d0b0107, 0x0d0b0709,
    0x0d0b0d01, 0x0d0d010b, 0x0d0d0901, 0x0d0f0303, 0x0d0f0307, 0x0f010101, 0x0f010109, 0x0f01010f,
    0x0f010501, 0x0f010505, 0x0f01070d, 0x0f010901, 0x0f010b09, 0x0f010d05, 0x0f030105, 0x0f030303,
    0x0f030509, 0x0f030907, 0x0f03090b, 0x0f050103, 0x0f050109, 0x0f050301, 0x0f05030d, 0x0f050503,
    0x0f050701, 0x0f050b03, 0x0f070105, 0x0f070705, 0x0f07070b, 0x0f070b07, 0x0f090103, 0x0f09010b,
    0x0f090307, 0x0f090501, 0x0f090b01, 0x0f0b0505, 0x0f0b0905, 0x0f0d0105, 0x0f0d0703, 0x0f0f0101,
};

/* Sign bytes: 7 stored bits, the 8th makes the count of set bits even (ggml's
 * ksigns_iq2xs, computed rather than tabled). */
static inline uint8_t even_signs(unsigned i)
{
    return (uint8_t)(i | (unsigned)(__builtin_popcount(i) & 1) << 7);
}

static inline float signed_level(float db, uint8_t level, uint8_t signs, int bit)
{
    return db * (float)level * ((signs >> bit) & 1 ? -1.f : 1.f);
}

/* IQ3_XXS, 98 bytes: fp16 d, 64 grid indices, then per 32-value group one u32 whose
 * top 4 bits are the scale and whose low 28 bits are four 7-bit sign codes. */
void bs_dequant_iq3_xxs(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 98) {
        float d = f16_at(src);
        const uint8_t *qs = src + 2, *ss = src + 66;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            uint32_t aux = u32_at(ss + 4 * ib);
            float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, dst += 8) {
                uint8_t signs = even_signs((aux >> (7 * l)) & 127);
                uint32_t g1 = iq3xxs_grid[qs[2 * l]], g2 = iq3xxs_grid[qs[2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    dst[j] = signed_level(db, (uint8_t)(g1 >> (8 * j)), signs, j);
                    dst[j + 4] = signed_level(db, (uint8_t)(g2 >> (8 * j)), signs, j + 4);
                }
            }
        }
    }
}

/* IQ3_S, 110 bytes: fp16 d, 64 low index bytes, 8 bytes of ninth index bits (one
 * byte per 32 values), 32 sign bytes (one per 8 values), 4 bytes of scale nibbles
 * (one nibble per 32 values, scale 1 + 2s). */
void bs_dequant_iq3_s(const uint8_t *src, float *dst, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += 110) {
        float d = f16_at(src);
        const uint8_t *qs = src + 2, *qh = src + 66, *signs = src + 74, *scales = src + 106;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            int s = (scales[ib / 2] >> (4 * (ib % 2))) & 0x0f;
            float db = d * (float)(1 + 2 * s);
            for (int l = 0; l < 4; l++, dst += 8) {
                uint32_t g1 = iq3s_grid[qs[2 * l] | ((qh[ib] << (8 - 2 * l)) & 256)];
                uint32_t g2 = iq3s_grid[qs[2 * l + 1] | ((qh[ib] << (7 - 2 * l)) & 256)];
                for (int j = 0; j < 4; j++) {
                    dst[j] = signed_level(db, (uint8_t)(g1 >> (8 * j)), signs[l], j);
                    dst[j + 4] = signed_level(db, (uint8_t)(g2 >> (8 * j)), signs[l], j + 4);
                }
            }
        }
    }
}

typedef void (*dequant_fn)(const uint8_t *, float *, size_t);

typedef struct {
    bs_ggml_type_info info;
    dequant_fn fn;
} type_entry;

/* Every type ggml defines (ids 31..33 were retired), so a message can name it. */
static const type_entry types[] = {
    [BS_GGML_F32] = {{"F32", 1, 4, 1}, NULL},
    [BS_GGML_F16] = {{"F16", 1, 2, 1}, NULL},
    [BS_GGML_Q4_0] = {{"Q4_0", 32, 18, 1}, bs_dequant_q4_0},
    [BS_GGML_Q4_1] = {{"Q4_1", 32, 20, 1}, bs_dequant_q4_1},
    [BS_GGML_Q5_0] = {{"Q5_0", 32, 22, 1}, bs_dequant_q5_0},
    [BS_GGML_Q5_1] = {{"Q5_1", 32, 24, 1}, bs_dequant_q5_1},
    [BS_GGML_Q8_0] = {{"Q8_0", 32, 34, 1}, bs_dequant_q8_0},
    [BS_GGML_Q8_1] = {{"Q8_1", 32, 36, 0}, NULL},
    [BS_GGML_Q2_K] = {{"Q2_K", 256, 84, 1}, bs_dequant_q2_k},
    [BS_GGML_Q3_K] = {{"Q3_K", 256, 110, 1}, bs_dequant_q3_k},
    [BS_GGML_Q4_K] = {{"Q4_K", 256, 144, 1}, bs_dequant_q4_k},
    [BS_GGML_Q5_K] = {{"Q5_K", 256, 176, 1}, bs_dequant_q5_k},
    [BS_GGML_Q6_K] = {{"Q6_K", 256, 210, 1}, bs_dequant_q6_k},
    [BS_GGML_Q8_K] = {{"Q8_K", 256, 292, 0}, NULL},
    [BS_GGML_IQ2_XXS] = {{"IQ2_XXS", 256, 66, 0}, NULL},
    [BS_GGML_IQ2_XS] = {{"IQ2_XS", 256, 74, 0}, NULL},
    [BS_GGML_IQ3_XXS] = {{"IQ3_XXS", 256, 98, 1}, bs_dequant_iq3_xxs},
    [BS_GGML_IQ1_S] = {{"IQ1_S", 256, 50, 0}, NULL},
    [BS_GGML_IQ4_NL] = {{"IQ4_NL", 32, 18, 1}, bs_dequant_iq4_nl},
    [BS_GGML_IQ3_S] = {{"IQ3_S", 256, 110, 1}, bs_dequant_iq3_s},
    [BS_GGML_IQ2_S] = {{"IQ2_S", 256, 82, 0}, NULL},
    [BS_GGML_IQ4_XS] = {{"IQ4_XS", 256, 136, 1}, bs_dequant_iq4_xs},
    [BS_GGML_I8] = {{"I8", 1, 1, 0}, NULL},
    [BS_GGML_I16] = {{"I16", 1, 2, 0}, NULL},
    [BS_GGML_I32] = {{"I32", 1, 4, 0}, NULL},
    [BS_GGML_I64] = {{"I64", 1, 8, 0}, NULL},
    [BS_GGML_F64] = {{"F64", 1, 8, 0}, NULL},
    [BS_GGML_IQ1_M] = {{"IQ1_M", 256, 56, 0}, NULL},
    [BS_GGML_BF16] = {{"BF16", 1, 2, 1}, NULL},
    [BS_GGML_TQ1_0] = {{"TQ1_0", 256, 54, 0}, NULL},
    [BS_GGML_TQ2_0] = {{"TQ2_0", 256, 66, 0}, NULL},
};

const bs_ggml_type_info *bs_ggml_type(uint32_t type)
{
    if (type >= sizeof types / sizeof types[0] || !types[type].info.name)
        return NULL;
    return &types[type].info;
}

const char *bs_ggml_type_name(uint32_t type)
{
    const bs_ggml_type_info *t = bs_ggml_type(type);
    return t ? t->name : "unknown";
}

int bs_dequant(uint32_t type, const void *src, float *dst, size_t n)
{
    const bs_ggml_type_info *t = bs_ggml_type(type);
    if (!t || !t->can_dequant || n % t->block)
        return -1;
    const uint8_t *p = src;
    switch (type) {
    case BS_GGML_F32:
        memcpy(dst, p, n * sizeof(float));
        return 0;
    case BS_GGML_F16:
    case BS_GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = type == BS_GGML_F16 ? bs_fp16_to_f32(h) : bs_bf16_to_f32(h);
        }
        return 0;
    default:
        types[type].fn(p, dst, n / t->block);
        return 0;
    }
}
