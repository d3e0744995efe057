/* bs_sha256: SHA-256 (FIPS 180-4), streaming, for content keys (model/cache.h: which
 * source file a cached store was built from) and tests that compare against published
 * digests. Portable C; hashes a few hundred MB/s, so callers hash big files off the
 * event loop. */
#ifndef BS_SHA256_H
#define BS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/err.h"

typedef struct {
    uint32_t h[8];
    uint64_t total;     /* bytes taken so far */
    uint8_t buf[64];
    size_t nbuf;
} bs_sha256;

void bs_sha256_init(bs_sha256 *c);
void bs_sha256_update(bs_sha256 *c, const void *data, size_t n);

/* Finishes: 32 bytes of digest, or 64 lowercase hex digits and a NUL. The context is
 * spent afterwards (init it again to reuse). */
void bs_sha256_final(bs_sha256 *c, uint8_t out[32]);
void bs_sha256_final_hex(bs_sha256 *c, char out[65]);

/* One buffer at once, as hex. */
void bs_sha256_hex(const void *data, size_t n, char out[65]);

/* A whole file, read in chunks; on_chunk (may be NULL) hears bytes done of the file's size
 * after each chunk (progress of a big file). */
int bs_sha256_file(const char *path, char out[65], void (*on_chunk)(void *ctx, uint64_t done, uint64_t size),
                   void *ctx, bs_err *e);

#endif
