#include "kernels/half.h"
#include "harness.h"

#include <stdint.h>

int main(void)
{
    /* Every fp16 value converts to f32 and back unchanged (nan keeps being nan). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bs_fp16_to_f32((uint16_t)h);
        uint16_t back = bs_f32_to_fp16(f);
        if (isnan(f) ? !isnan(bs_fp16_to_f32(back)) : back != h)
            bad++;
    }
    CHECKF(bad == 0, "%d fp16 values did not round-trip", bad);
    CHECK(bs_f32_to_fp16(1.0f) == 0x3c00);
    CHECK(bs_f32_to_fp16(65504.0f) == 0x7bff);
    CHECK(bs_f32_to_fp16(70000.0f) == 0x7c00);
    CHECK(bs_f32_to_fp16(-2.0f) == 0xc000);
    /* halfway between 1 and the next fp16 rounds to even (1.0) */
    CHECK(bs_f32_to_fp16(1.0f + 1.0f / 2048.0f) == 0x3c00);
    CHECK(bs_f32_to_fp16(5.9604645e-08f) == 0x0001); /* smallest subnormal */
    CHECK_NEAR(bs_bf16_to_f32(bs_f32_to_bf16(3.140625f)), 3.140625, 0);
    CHECK(bs_f32_to_bf16(1.0f) == 0x3f80);
    TEST_MAIN_END();
}
