/* Shared by the file-format fuzz targets (fuzz_store.c, fuzz_gguf.c, fuzz_llama2c.c,
 * fuzz_tokenizer.c); tests/fuzz_proto.c predates it and keeps its own main.
 *
 * The readers under test take a path, so each input is written to one memfd and
 * handed over as /proc/self/fd/N: no file system traffic, and mmap works on it.
 *
 * Built with -DBS_LIBFUZZER (clang, -fsanitize=fuzzer) libFuzzer supplies main.
 * Otherwise (any compiler, the meson test) main replays the files and directories
 * named on the command line, then a fixed-seed mutation of each (so the suite tests
 * more than the seeds without becoming flaky). Every failure aborts. */
#ifndef BS_TEST_FUZZ_H
#define BS_TEST_FUZZ_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MUST(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
    abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file: the same memfd every call, truncated and rewritten. */
static inline const char *fuzz_as_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("bs-fuzz", MFD_CLOEXEC);
        MUST(fd >= 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    MUST(ftruncate(fd, 0) == 0);
    for (size_t off = 0; off < size;) {
        ssize_t k = pwrite(fd, data + off, size - off, (off_t)off);
        MUST(k > 0);
        off += (size_t)k;
    }
    return path;
}

#ifndef BS_LIBFUZZER
#ifndef FUZZ_MUTATIONS
#define FUZZ_MUTATIONS 200   /* per seed file */
#endif

static int fuzz_runs;

static void fuzz_mutate_and_run(const uint8_t *seed, size_t n, uint64_t *x)
{
    uint8_t *buf = malloc(n + 64);
    MUST(buf);
    for (int it = 0; it < FUZZ_MUTATIONS; it++) {
        memcpy(buf, seed, n);
        size_t m = n;
        int edits = 1 + it % 8;
        for (int k = 0; k < edits && m > 0; k++) {
            *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
            size_t at = (size_t)(*x >> 16) % m;
            switch ((*x >> 8) % 5) {
            case 0: /* any byte */
                buf[at] = (uint8_t)(*x >> 40);
                break;
            case 1: /* a byte that makes sizes and counts extreme */
                buf[at] = (const uint8_t[]){0, 1, 0x7f, 0x80, 0xff, 0xfe}[(*x >> 40) % 6];
                break;
            case 2: /* flip one bit */
                buf[at] ^= (uint8_t)(1u << ((*x >> 40) % 8));
                break;
            case 3: /* truncate */
                m = at;
                break;
            case 4: /* a 32-bit field set to a boundary */
                if (at + 4 <= m) {
                    uint32_t v = (const uint32_t[]){0, 1, 0xffffffffu, 0x7fffffffu, 0x80000000u,
                                                    (uint32_t)m}[(*x >> 40) % 6];
                    memcpy(buf + at, &v, 4);
                }
                break;
            }
        }
        LLVMFuzzerTestOneInput(buf, m);
        fuzz_runs++;
    }
    free(buf);
}

static void fuzz_run_file(const char *path, uint64_t *x)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            buf = realloc(buf, cap);
            MUST(buf);
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        if (k == 0)
            break;
        n += k;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    fuzz_runs++;
    /* per file, so the mutations do not depend on the order readdir lists them in */
    *x = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    fuzz_mutate_and_run(buf, n, x);
    free(buf);
}

int main(int argc, char **argv)
{
    uint64_t x = 0;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            fuzz_run_file(argv[i], &x);
            files++;
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
            fuzz_run_file(p, &x);
            files++;
        }
        closedir(d);
    }
    if (files == 0) {
        fprintf(stderr, "usage: %s FILE|DIR...  (replays inputs, then %d mutations of each)\n", argv[0],
                FUZZ_MUTATIONS);
        return 2;
    }
    fprintf(stderr, "%s: %d files, %d inputs, no invariant failed\n", argv[0], files, fuzz_runs);
    return 0;
}
#endif

#endif
