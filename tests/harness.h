/* A tiny test harness: each test file is one executable run by `meson test`.
 * CHECK records a failure and goes on; REQUIRE stops the test. Exit 0 only if all held.
 * BS_SHARED points at ../shared (models/ and data/), set by meson. */
#ifndef BS_HARNESS_H
#define BS_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bs_t_failed;
static int bs_t_checks;

#define CHECK(cond) do { bs_t_checks++; if (!(cond)) { bs_t_failed++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { bs_t_checks++; if (!(cond)) { bs_t_failed++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define REQUIRE(cond) do { bs_t_checks++; if (!(cond)) { \
    fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECK_NEAR(a, b, tol) CHECKF(fabs((double)(a) - (double)(b)) <= (tol), \
    "%.9g vs %.9g (tol %.3g)", (double)(a), (double)(b), (double)(tol))

#define TEST_MAIN_END() do { \
    fprintf(stderr, "%d checks, %d failed\n", bs_t_checks, bs_t_failed); \
    return bs_t_failed ? 1 : 0; } while (0)

/* Path under the shared folder: bs_shared("models/tok512.bin"). Static buffer ring. */
static inline const char *bs_shared(const char *rel)
{
    static char buf[8][1024];
    static int k;
    const char *root = getenv("BS_SHARED");
    if (!root)
        root = BS_SHARED_DEFAULT;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

#endif
