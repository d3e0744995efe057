/* Tokenizer throughput on whole files: encode (and decode back) TinyStories and
 * WikiText-2 with the 32000- and the 512-piece Llama vocabularies.
 * Usage: bench_tokenize [repeats]   (BS_SHARED overrides the shared folder) */
#include "bench/common.h"
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static const char *shared(const char *rel, char *buf, size_t cap)
{
    const char *root = getenv("BS_SHARED");
    snprintf(buf, cap, "%s/%s", root ? root : BS_SHARED_DEFAULT, rel);
    return buf;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
            fread(buf, 1, (size_t)n, f) == (size_t)n) {
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static void machine(void)
{
    char model[256];
    bench_proc_field("/proc/cpuinfo", "model name", model, sizeof model);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("machine: %s, %d logical CPUs\n", model, (int)cpus);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1)
        reps = 1;
    static const struct { const char *path; int vocab; } toks[] = {
        { "models/tokenizer.bin", 32000 },
        { "models/tok512.bin", 512 },
    };
    static const char *texts[] = { "data/tinystories_valid_head.txt", "data/wiki.test.raw" };
    char pbuf[1024];
    machine();
    printf("best of %d runs, one call per whole file (BOS + dummy prefix)\n", reps);
    printf("%-22s %-32s %10s %9s %10s %11s %10s\n", "vocabulary", "text", "bytes", "tokens",
           "bytes/tok", "encode MB/s", "decode MB/s");
    int rc = 0;
    for (size_t i = 0; i < sizeof toks / sizeof *toks; i++) {
        bs_err e = { { 0 } };
        bs_tokenizer *t = bs_tok_load_llama2c(shared(toks[i].path, pbuf, sizeof pbuf),
                                              toks[i].vocab, &e);
        if (!t) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        for (size_t j = 0; j < sizeof texts / sizeof *texts; j++) {
            size_t len;
            char *text = slurp(shared(texts[j], pbuf, sizeof pbuf), &len);
            if (!text) {
                fprintf(stderr, "cannot read %s\n", pbuf);
                rc = 1;
                continue;
            }
            double best_enc = 1e30, best_dec = 1e30;
            int n = 0;
            int ok = 1;
            for (int r = 0; r < reps && ok; r++) {
                int *ids;
                double t0 = bs_now();
                if (bs_tok_encode(t, text, len, 1, 1, &ids, &n, &e)) {
                    fprintf(stderr, "%s\n", e.msg);
                    ok = 0;
                    break;
                }
                double t1 = bs_now();
                size_t dl;
                char *d = bs_tok_decode(t, ids, n, &dl);
                double t2 = bs_now();
                if (!d || dl != len || memcmp(d, text, len) != 0) {
                    fprintf(stderr, "%s: decode(encode(text)) differs from the text\n", texts[j]);
                    ok = 0;
                }
                free(d);
                free(ids);
                if (t1 - t0 < best_enc)
                    best_enc = t1 - t0;
                if (t2 - t1 < best_dec)
                    best_dec = t2 - t1;
            }
            if (ok)
                printf("%-22s %-32s %10zu %9d %10.2f %11.2f %10.1f\n", toks[i].path, texts[j], len,
                       n, (double)len / (n > 1 ? n - 1 : 1), (double)len / 1e6 / best_enc,
                       (double)len / 1e6 / best_dec);
            else
                rc = 1;
            free(text);
        }
        bs_tok_free(t);
    }
    return rc;
}
