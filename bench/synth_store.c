/* bs-synth-store: writes a synthetic stacked store (random planes, a real model's shape)
 * for benchmarks of speed, memory and resizing at sizes no test model has.
 *
 * Usage: bs-synth-store --shape NAME [--levels L] [--kind gq|saq] [--seed S] --out F.bstk
 * Progress goes to stderr on a terminal; the one result line goes to stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/clock.h"
#include "model/store.h"
#include "model/synth.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bs-synth-store --shape NAME [--levels L] [--kind gq|saq] [--seed S] --out F.bstk\n"
            "  Writes a valid .bstk store of NAME's shape with random sign planes and group scales\n"
            "  (weights of a fresh init's spread; the metadata says \"synthetic\": true).\n"
            "  --shape   %s\n"
            "  --levels  blocks per matrix (default 6)\n"
            "  --kind    gq (default) or saq planes\n"
            "  --seed    random seed, below 2^63 (default 1)\n"
            "  --out     the store to write\n",
            bs_synth_preset_names());
}

/* A redrawn line on a terminal, nothing otherwise (the result line is what scripts read). */
static void progress(void *ctx, int done, int total)
{
    const double *t0 = ctx;
    if (done == total || done % 16 == 0)
        fprintf(stderr, "\r\033[Kblocks %d/%d  %.1fs", done, total, bs_now() - *t0);
}

static int parse_long(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *shape = NULL, *out = NULL, *kind = NULL;
    long long levels = -1, seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bs-synth-store: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--shape"))
            shape = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--kind"))
            kind = v;
        else if (!strcmp(a, "--levels")) {
            if (parse_long(v, 1, 64, &levels)) {
                fprintf(stderr, "bs-synth-store: --levels takes 1..64, not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            if (parse_long(v, 0, INT64_MAX, &seed)) {
                fprintf(stderr, "bs-synth-store: --seed takes 0..2^63-1, not '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "bs-synth-store: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!shape || !out) {
        fprintf(stderr, "bs-synth-store: --shape and --out are required\n");
        usage(stderr);
        return 2;
    }
    bs_err e = {{0}};
    bs_synth_opts o;
    if (bs_synth_preset(&o, shape, &e)) {
        fprintf(stderr, "bs-synth-store: %s\n", e.msg);
        return 2;
    }
    if (levels > 0)
        o.levels = (int)levels;
    if (seed >= 0)
        o.seed = (uint64_t)seed;
    if (kind) {
        o.kind = bs_kind_parse(kind);
        if (o.kind != BS_KIND_GQ && o.kind != BS_KIND_SAQ) {
            fprintf(stderr, "bs-synth-store: --kind is gq or saq, not '%s'\n", kind);
            return 2;
        }
    }
    double t0 = bs_now();
    int tty = isatty(2);
    if (bs_synth_store_write(out, &o, tty ? progress : NULL, &t0, &e)) {
        if (tty)
            fputc('\n', stderr);
        fprintf(stderr, "bs-synth-store: %s\n", e.msg);
        return 1;
    }
    double secs = bs_now() - t0;
    if (tty)
        fputc('\n', stderr);
    struct stat st;
    long long bytes = stat(out, &st) == 0 ? (long long)st.st_size : -1;
    int blocks = o.cfg.n_layers * BS_NLIN * o.levels;
    printf("%s: %d blocks, %lld bytes, %.2f s, synthetic weights of %s's shape\n", out, blocks, bytes, secs,
           o.shape);
    return 0;
}
