/* crc32c (Castagnoli, reflected polynomial 0x82F63B78): the checksum of every store block.
 * Incremental: start with crc = 0 and feed the bytes in any number of pieces;
 * bs_crc32c(bs_crc32c(0, a, n), b, k) equals the crc of a followed by b.
 * The SSE4.2 crc32 instruction is used when the CPU has it (checked at run time),
 * otherwise a slice-by-8 table; both give the same value. */
#ifndef BS_CRC32C_H
#define BS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t bs_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, for tests and benchmarks. bs_crc32c_hw may only be called
 * when bs_crc32c_hw_available() is non-zero. */
uint32_t bs_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t bs_crc32c_hw(uint32_t crc, const void *buf, size_t len);
int bs_crc32c_hw_available(void);

#endif
