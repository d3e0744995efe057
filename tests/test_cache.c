/* kernels/sha256 against FIPS 180-4's examples; model/cache's directory choice, keys
 * and its error for a directory it cannot use. (Builds and reuse: tests/daemon/test_build.c.) */
#include "harness.h"
#include "kernels/sha256.h"
#include "model/cache.h"

#include <string.h>
#include <unistd.h>

static void sha_vectors(void)
{
    char h[65];
    bs_sha256_hex("abc", 3, h);
    CHECKF(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "%s", h);
    bs_sha256_hex("", 0, h);
    CHECKF(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "%s", h);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";   /* 56 bytes: padding spills */
    bs_sha256_hex(two, strlen(two), h);
    CHECKF(!strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "%s", h);
    /* a million 'a', fed in uneven pieces */
    bs_sha256 c;
    bs_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 997 + 1) {
        size_t n = k < left ? k : left;
        bs_sha256_update(&c, a, n);
        left -= n;
    }
    bs_sha256_final_hex(&c, h);
    CHECKF(!strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "%s", h);
}

int main(void)
{
    sha_vectors();
    bs_err e = {{0}};
    char dir[4096];
    REQUIRE(bs_cache_dir("/run/explicit", dir, sizeof dir, &e) == 0);
    CHECK(!strcmp(dir, "/run/explicit"));
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    setenv("HOME", "/home/u", 1);
    REQUIRE(bs_cache_dir(NULL, dir, sizeof dir, &e) == 0);
    CHECKF(!strcmp(dir, "/x/cache/bitstack"), "%s", dir);
    setenv("XDG_CACHE_HOME", "relative", 1);   /* the spec says: ignore it */
    REQUIRE(bs_cache_dir(NULL, dir, sizeof dir, &e) == 0);
    CHECKF(!strcmp(dir, "/home/u/.cache/bitstack"), "%s", dir);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    CHECK(bs_cache_dir(NULL, dir, sizeof dir, &e) != 0 && strstr(e.msg, "HOME"));

    /* keys: the same inputs give the same entry; a setting that changes the store, or
     * other calibration text, another; a setting of another block kind does not */
    const char *model = bs_shared("models/stories260K.gguf"), *calib = bs_shared("data/tinystories_train_head.txt");
    bs_cache_src s = {.source = model, .calib = calib};
    bs_compress_defaults(&s.opts, BS_KIND_GQ);
    bs_cache_entry a, b;
    REQUIRE(bs_cache_key(&a, "/tmp/c", &s, NULL, &e) == 0);
    REQUIRE(bs_cache_key(&b, "/tmp/c", &s, NULL, &e) == 0);
    CHECK(!strcmp(a.path, b.path) && strlen(a.source_sha) == 64);
    CHECKF(!strncmp(a.path, "/tmp/c/", 7) && strlen(a.path) == 7 + 16 + 1 + 16 + 5, "%s", a.path);
    s.opts.k = 7;   /* avd's rank: not a gq setting */
    REQUIRE(bs_cache_key(&b, "/tmp/c", &s, NULL, &e) == 0);
    CHECK(!strcmp(a.path, b.path));
    s.opts.levels = 8;
    REQUIRE(bs_cache_key(&b, "/tmp/c", &s, NULL, &e) == 0);
    CHECKF(strcmp(a.path, b.path) && !strncmp(a.path, b.path, 7 + 16), "%s vs %s", a.path, b.path);
    s.opts.levels = 12;
    s.calib = bs_shared("data/tinystories_valid_head.txt");
    REQUIRE(bs_cache_key(&b, "/tmp/c", &s, NULL, &e) == 0);
    CHECK(strcmp(a.path, b.path));
    s.calib = calib;

    /* a directory that cannot be made: under a regular file, and inside /proc */
    char file[64];
    snprintf(file, sizeof file, "/tmp/bs_test_cache_%d", (int)getpid());
    FILE *f = fopen(file, "w");
    REQUIRE(f && fclose(f) == 0);
    snprintf(dir, sizeof dir, "%s/cache", file);
    bs_cache_entry ce;
    int reused = -1;
    e.msg[0] = 0;
    CHECK(bs_cache_get(dir, &s, NULL, &ce, &reused, &e) != 0);
    CHECKF(strstr(e.msg, "cannot create the cache directory") && strstr(e.msg, dir), "%s", e.msg);
    e.msg[0] = 0;
    CHECK(bs_cache_get("/proc/bitstack-cache", &s, NULL, &ce, &reused, &e) != 0);
    CHECKF(strstr(e.msg, "/proc/bitstack-cache"), "%s", e.msg);
    fprintf(stderr, "unwritable: %s\n", e.msg);
    unlink(file);
    TEST_MAIN_END();
}
