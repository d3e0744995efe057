/* bs_dequant: ggml's quantized tensor formats back to fp32.
 *
 * Each format stores a row as fixed-size blocks (32 or 256 values). The functions
 * here are bit-exact with ggml's reference dequantization: a tensor dequantized
 * here hashes to the same bytes as llama.cpp's (tests/test_dequant.c checks this
 * against llama.cpp's own figures). Formats are documented in ggml's
 * ggml-common.h; the layouts below restate the facts the code relies on. */
#ifndef BS_DEQUANT_H
#define BS_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml tensor type ids, as GGUF stores them. */
enum {
    BS_GGML_F32 = 0, BS_GGML_F16 = 1, BS_GGML_Q4_0 = 2, BS_GGML_Q4_1 = 3,
    BS_GGML_Q5_0 = 6, BS_GGML_Q5_1 = 7, BS_GGML_Q8_0 = 8, BS_GGML_Q8_1 = 9,
    BS_GGML_Q2_K = 10, BS_GGML_Q3_K = 11, BS_GGML_Q4_K = 12, BS_GGML_Q5_K = 13,
    BS_GGML_Q6_K = 14, BS_GGML_Q8_K = 15, BS_GGML_IQ2_XXS = 16, BS_GGML_IQ2_XS = 17,
    BS_GGML_IQ3_XXS = 18, BS_GGML_IQ1_S = 19, BS_GGML_IQ4_NL = 20, BS_GGML_IQ3_S = 21,
    BS_GGML_IQ2_S = 22, BS_GGML_IQ4_XS = 23, BS_GGML_I8 = 24, BS_GGML_I16 = 25,
    BS_GGML_I32 = 26, BS_GGML_I64 = 27, BS_GGML_F64 = 28, BS_GGML_IQ1_M = 29,
    BS_GGML_BF16 = 30, BS_GGML_TQ1_0 = 34, BS_GGML_TQ2_0 = 35,
};

typedef struct {
    const char *name;   /* ggml's spelling: "Q4_K", "IQ3_XXS" */
    uint32_t block;     /* values per block; a row must hold whole blocks */
    uint32_t bytes;     /* bytes per block */
    int can_dequant;    /* 1 when bs_dequant reads this type */
} bs_ggml_type_info;

/* The layout of a ggml type id, or NULL when the id is not a ggml type at all. */
const bs_ggml_type_info *bs_ggml_type(uint32_t type);

/* Name for messages: "Q4_K", or "unknown" for an id bs_ggml_type does not know. */
const char *bs_ggml_type_name(uint32_t type);

/* Dequantizes n values (a multiple of the type's block) from src to dst.
 * Returns -1, touching nothing, when the type cannot be dequantized. */
int bs_dequant(uint32_t type, const void *src, float *dst, size_t n);

/* One function per format; nb = number of blocks. src needs no alignment. */
void bs_dequant_q4_0(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q4_1(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q5_0(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q5_1(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q8_0(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q2_k(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q3_k(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q4_k(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q5_k(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_q6_k(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_iq4_nl(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_iq4_xs(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_iq3_xxs(const uint8_t *src, float *dst, size_t nb);
void bs_dequant_iq3_s(const uint8_t *src, float *dst, size_t nb);

#endif
