/* fp16 (IEEE binary16) and bf16 conversions. Round to nearest even; inf/nan kept. */
#ifndef BS_HALF_H
#define BS_HALF_H

#include <stddef.h>
#include <stdint.h>

float bs_fp16_to_f32(uint16_t h);
uint16_t bs_f32_to_fp16(float f);
float bs_bf16_to_f32(uint16_t h);
uint16_t bs_f32_to_bf16(float f);

void bs_fp16_to_f32_n(float *dst, const uint16_t *src, size_t n);
void bs_f32_to_fp16_n(uint16_t *dst, const float *src, size_t n);
void bs_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
