#include "kernels/crc32c.h"
#include "kernels/rng.h"
#include "harness.h"

#include <stdint.h>

/* The definition, one bit at a time: the reference both fast paths must match. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
    uint32_t c = ~crc;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
    }
    return ~c;
}

int main(void)
{
    const char *check = "123456789";
    CHECK(bs_crc32c(0, check, 9) == 0xE3069283u);
    CHECK(bs_crc32c_sw(0, check, 9) == 0xE3069283u);
    CHECK(crc_bitwise(0, (const unsigned char *)check, 9) == 0xE3069283u);
    CHECK(bs_crc32c(0, check, 0) == 0);
    /* RFC 3720 (iSCSI) B.4 vectors: 32 zero bytes and 32 0xff bytes. */
    unsigned char z32[32], f32[32];
    memset(z32, 0, sizeof z32);
    memset(f32, 0xff, sizeof f32);
    CHECK(bs_crc32c(0, z32, 32) == 0x8A9136AAu);
    CHECK(bs_crc32c(0, f32, 32) == 0x62A8AB43u);
    CHECK(bs_crc32c_sw(0, z32, 32) == 0x8A9136AAu);

    int hw = bs_crc32c_hw_available();
    fprintf(stderr, "hardware crc32c: %s\n", hw ? "yes" : "no");
    if (hw)
        CHECK(bs_crc32c_hw(0, check, 9) == 0xE3069283u);

    /* Random buffers at every alignment and odd lengths; every table entry of every slice
     * gets exercised many times over. Split points check the incremental form. */
    enum { CAP = 4096 + 64 };
    unsigned char *buf = malloc(CAP);
    REQUIRE(buf);
    uint64_t s = 12345;
    for (size_t i = 0; i < CAP; i++)
        buf[i] = (unsigned char)bs_splitmix64(&s);
    int bad_sw = 0, bad_hw = 0, bad_split = 0;
    for (int trial = 0; trial < 3000; trial++) {
        size_t off = bs_splitmix64(&s) % 16;
        size_t len = trial < 200 ? (size_t)trial : bs_splitmix64(&s) % 4096;
        if (trial >= 200)
            len |= 1;
        uint32_t seed = trial % 3 == 0 ? 0 : (uint32_t)bs_splitmix64(&s);
        uint32_t ref = crc_bitwise(seed, buf + off, len);
        if (bs_crc32c_sw(seed, buf + off, len) != ref)
            bad_sw++;
        if (hw && bs_crc32c_hw(seed, buf + off, len) != ref)
            bad_hw++;
        size_t cut = len ? bs_splitmix64(&s) % (len + 1) : 0;
        uint32_t a = bs_crc32c(seed, buf + off, cut);
        if (bs_crc32c(a, buf + off + cut, len - cut) != ref)
            bad_split++;
    }
    CHECKF(bad_sw == 0, "%d software crcs differ from the bitwise definition", bad_sw);
    CHECKF(bad_hw == 0, "%d hardware crcs differ from the bitwise definition", bad_hw);
    CHECKF(bad_split == 0, "%d split crcs differ from the whole-buffer crc", bad_split);
    free(buf);
    TEST_MAIN_END();
}
