/* Compression into stacked stores, on both real models: the activation-scale fold
 * leaves the float model unchanged, the full stack matches the float model, prefixes
 * at uniform-depth bytes are no worse than the uniform model, bad input fails clearly. */
#include "harness.h"
#include "model/calib.h"
#include "model/compress.h"
#include "model/floor.h"
#include "model/load.h"
#include "model/stacked.h"
#include "model/store_eval.h"
#include "proto/budget.h"
#include "kernels/crc32c.h"

#include <unistd.h>

typedef struct {
    const char *model, *tok;
    bs_model m;
    bs_tokenizer *t;
    int *ids;
    int nids;
} fixture;

static char *calib_text, *valid_text;
static size_t calib_len, valid_len;

static void fx_open(fixture *f, const char *model, const char *tok)
{
    bs_err e = {{0}};
    f->model = model;
    REQUIRE(bs_model_load(&f->m, bs_shared(model), &e) == 0);
    f->t = bs_tok_load_for(NULL, bs_shared(tok), f->m.cfg.vocab_size, &e);
    REQUIRE(f->t);
    REQUIRE(bs_tok_encode(f->t, valid_text, valid_len, 0, 1, &f->ids, &f->nids, &e) == 0);
}

static void fx_close(fixture *f)
{
    free(f->ids);
    bs_tok_free(f->t);
    bs_model_free(&f->m);
}

static double ppl_model(const fixture *f, const bs_model *m, int windows)
{
    bs_ppl_result r;
    bs_err e = {{0}};
    REQUIRE(bs_ppl_ids(m, f->ids, f->nids, bs_tok_bos(f->t), 256, windows, &r, &e) == 0);
    return r.ppl;
}

/* The fold multiplies columns by s and divides the previous op by s: logits unchanged. */
static void test_fold(fixture *f)
{
    bs_calib cb;
    bs_err e = {{0}};
    REQUIRE(bs_calib_run(&cb, &f->m, f->t, calib_text, calib_len, 256, 4, NULL, &e) == 0);
    bs_model scaled;
    REQUIRE(bs_model_copy(&scaled, &f->m, &e) == 0);
    REQUIRE(bs_calib_fold(&cb, &scaled, 1.0f, &e) == 0);
    /* the scales are not all 1: the test would pass vacuously otherwise */
    int moved = 0;
    for (int i = 0; i < f->m.cfg.dim; i++)
        moved += fabsf(cb.act[BS_SITE_ATT_IN][i] - 1.0f) > 0.05f;
    CHECKF(moved > f->m.cfg.dim / 2, "only %d scales differ from 1", moved);
    bs_state a, b;
    REQUIRE(bs_state_init(&a, &f->m.cfg, 64, 64, &e) == 0 && bs_state_init(&b, &f->m.cfg, 64, 64, &e) == 0);
    int n = 48;
    const float *la = bs_forward(&f->m, &a, f->ids, n, 0, 1, &e);
    const float *lb = bs_forward(&scaled, &b, f->ids, n, 0, 1, &e);
    REQUIRE(la && lb);
    /* relative to each position's logit vector (elementwise ratios blow up near 0) */
    double worst = 0;
    for (int t = 0; t < n; t++) {
        double d2 = 0, a2 = 0;
        for (int i = 0; i < f->m.cfg.vocab_size; i++) {
            size_t k = (size_t)t * f->m.cfg.vocab_size + i;
            d2 += (double)(la[k] - lb[k]) * (la[k] - lb[k]);
            a2 += (double)la[k] * la[k];
        }
        double rel = sqrt(d2 / a2);
        worst = rel > worst ? rel : worst;
    }
    fprintf(stderr, "%s: scaled vs float logits, worst relative difference %.2e\n", f->model, worst);
    CHECKF(worst < 1e-4, "fold changed logits by %.2e relative", worst);
    bs_state_free(&a);
    bs_state_free(&b);
    bs_model_free(&scaled);
    bs_calib_free(&cb);
}

/* Compresses, then checks the stack against float and against uniform-depth models. */
static void test_stack(fixture *f, int kind, int sort, int levels, const char *path)
{
    bs_compress_opts o;
    bs_compress_defaults(&o, kind);
    o.levels = levels;
    o.sort = sort;
    o.calib_windows = kind == BS_KIND_GQ ? 32 : 8;  /* GPTQ needs a fair Hessian for the full-stack check */
    o.ppl_windows = 1;
    bs_err e = {{0}};
    if (bs_compress(&f->m, f->t, calib_text, calib_len, &o, path, NULL, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        REQUIRE(0);
    }
    bs_store s;
    REQUIRE(bs_store_open(&s, path, &e) == 0);
    CHECK(s.n_blocks == levels * f->m.cfg.n_layers * BS_NLIN);
    CHECK(s.min_blocks == f->m.cfg.n_layers * BS_NLIN);
    for (int i = 1; i <= s.n_blocks; i++)
        CHECK(s.resident[i] > s.resident[i - 1]);
    /* the loss each prefix reaches (for splitting one budget over several models): the
     * full stack keeps a small fraction of what the empty one does, and the working prefix
     * less than the empty one */
    REQUIRE(s.loss);
    CHECKF(s.loss[s.n_blocks] < 0.05 * s.loss[0] && s.loss[s.min_blocks] < s.loss[0], "loss %g .. %g .. %g",
           s.loss[0], s.loss[s.min_blocks], s.loss[s.n_blocks]);
    int windows = 6;
    double pf = ppl_model(f, &f->m, windows);
    bs_engine eng;
    REQUIRE(bs_engine_open(&eng, path, &e) == 0);
    uint8_t *stack = malloc(bs_store_prefix_end(&s, s.n_blocks));
    REQUIRE(bs_store_read_prefix(&s, s.n_blocks, stack, &e) == 0);
    bs_stacked sm;
    REQUIRE(bs_stacked_init(&sm, &s, stack, s.n_blocks, &e) == 0);
    double prev = INFINITY;
    for (int d = 1; d <= levels; d++) {
        /* the uniform model: every matrix at depth d, built directly from the blocks */
        for (int i = 0; i < s.n_matrices; i++)
            sm.q[i].depth = d;
        bs_model uni;
        REQUIRE(bs_stacked_to_dense(&sm, &uni, &e) == 0);
        double pu = ppl_model(f, &uni, windows);
        bs_model_free(&uni);
        uint64_t bytes = s.base_bytes;
        for (int i = 0; i < s.n_matrices; i++)
            for (int l = 0; l < d; l++)
                bytes += bs_block_bytes(&s.mats[i], l);
        char b[32];
        snprintf(b, sizeof b, "%llu", (unsigned long long)bytes);
        int n;
        REQUIRE(bs_engine_budget_n(&s, b, &n, &e) == 0);
        bs_ppl_result r;
        REQUIRE(bs_engine_ppl(&eng, n, f->ids, f->nids, 256, windows, &r, &e) == 0);
        fprintf(stderr, "%s %s/%s depth %d: uniform %.4f, stack prefix %d at %llu bytes %.4f\n", f->model,
                bs_kind_name(kind), sort ? "ppl" : "level", d, pu, n, (unsigned long long)bytes, r.ppl);
        CHECKF(r.ppl <= pu * 1.01, "depth %d: stack %.4f above uniform %.4f", d, r.ppl, pu);
        if (d >= 3)
            CHECKF(pu < prev * 1.02, "depth %d ppl %.4f did not improve on %.4f", d, pu, prev);
        prev = pu;
    }
    bs_ppl_result r;
    REQUIRE(bs_engine_ppl(&eng, s.n_blocks, f->ids, f->nids, 256, windows, &r, &e) == 0);
    fprintf(stderr, "%s full stack %.5f, float %.5f\n", f->model, r.ppl, pf);
    if (levels >= 10)
        CHECKF(fabs(r.ppl / pf - 1) < 0.001, "full stack %.5f vs float %.5f", r.ppl, pf);
    /* the serving path (one token at a time through the bit-plane kernels, int8 activations
     * on SIMD machines) scores within 0.3% of the batch path at min, 4.0bpw and max of the
     * default (gq) stores */
    int ns[3] = {s.min_blocks, 0, s.n_blocks};
    REQUIRE(bs_engine_budget_n(&s, "4.0bpw", &ns[1], &e) == 0 || ns[1] == 0);
    for (int i = 0; i < 3 && kind == BS_KIND_GQ && ns[1] > 0; i++) {
        bs_ppl_result rb, rd;
        REQUIRE(bs_engine_ppl(&eng, ns[i], f->ids, f->nids, 256, windows, &rb, &e) == 0);
        REQUIRE(bs_engine_ppl_decode(&eng, ns[i], f->ids, f->nids, 256, windows, &rd, &e) == 0);
        fprintf(stderr, "%s %s prefix %d: batch %.4f, decode path %.4f (%+.3f%%)\n", f->model, bs_kind_name(kind),
                ns[i], rb.ppl, rd.ppl, 100 * (rd.ppl / rb.ppl - 1));
        CHECKF(fabs(rd.ppl / rb.ppl - 1) < 0.003, "decode path %.4f vs batch %.4f at %d blocks", rd.ppl, rb.ppl, ns[i]);
    }
    bs_stacked_free(&sm);
    free(stack);
    bs_engine_close(&eng);
    bs_store_close(&s);
}

/* A floor under the stack: version 2, prefix 0 is the floor alone (a working model, the
 * smallest), the budget table starts at base + floor, the floor's bytes are what the paper's
 * count gives (plus byte rounding of the sign rows), the full stack still matches float,
 * and the floor alone is a model, if a bad one before training (Dual-SVID only). */
static void test_floor_stack(fixture *f, const char *path)
{
    bs_compress_opts o;
    /* saq: gq's restart planes are sized by the mean residual and never reach the outliers
     * the floor leaves (measured: gq's full stack over a floor stays 0.5% above float here) */
    bs_compress_defaults(&o, BS_KIND_SAQ);
    o.calib_windows = 32;
    o.floor_bpw = 0.55;
    o.floor_mode = BS_FLOOR_OVER;   /* the blocks on the floor (the default switch: test_floor.c) */
    bs_err e = {{0}};
    REQUIRE(bs_compress(&f->m, f->t, calib_text, calib_len, &o, path, NULL, &e) == 0);
    bs_store s;
    REQUIRE(bs_store_open(&s, path, &e) == 0);
    CHECK(s.floor && s.min_blocks == 0);
    CHECK(s.resident[0] == s.base_bytes + s.floor_bytes);
    double bits = 0.0;
    for (int i = 0; i < s.n_matrices; i++) {
        CHECK(s.mats[i].floor_rank >= 1 && s.mats[i].floor_paths == 1);
        bits += bs_floor_bits(s.mats[i].rows, s.mats[i].cols, s.mats[i].floor_rank, 1);
    }
    double bpw0 = bs_store_bpw(&s, 0);
    CHECKF(bits / (double)s.linear_params <= 0.55 && bpw0 >= bits / (double)s.linear_params && bpw0 < 0.62,
           "floor: counted %.4f, stored %.4f bpw", bits / (double)s.linear_params, bpw0);
    uint32_t version;
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp && fseek(fp, 4, SEEK_SET) == 0 && fread(&version, 4, 1, fp) == 1);
    fclose(fp);
    CHECK(version == BS_STORE_VERSION_FLOOR);
    int n;
    REQUIRE(bs_engine_budget_n(&s, "min", &n, &e) == 0);
    CHECK(n == 0);
    bs_engine eng;
    REQUIRE(bs_engine_open(&eng, path, &e) == 0);
    bs_ppl_result r0, rf;
    double pf = ppl_model(f, &f->m, 6);
    REQUIRE(bs_engine_ppl(&eng, 0, f->ids, f->nids, 256, 6, &r0, &e) == 0);
    REQUIRE(bs_engine_ppl(&eng, s.n_blocks, f->ids, f->nids, 256, 6, &rf, &e) == 0);
    fprintf(stderr, "%s floor 0.55 bpw (Dual-SVID): %.2f; floor + full stack %.5f, float %.5f\n", f->model, r0.ppl,
            rf.ppl, pf);
    CHECK(isfinite(r0.ppl) && r0.ppl > pf);
    CHECKF(fabs(rf.ppl / pf - 1) < 0.001, "floor + full stack %.5f vs float %.5f", rf.ppl, pf);
    bs_engine_close(&eng);
    bs_store_close(&s);
}

/* lsq over a floor: every level is the least-squares sign plane of what is left, so the
 * weight error of every matrix falls with every level. */
static void test_lsq(fixture *f, const char *path)
{
    bs_compress_opts o;
    bs_compress_defaults(&o, BS_KIND_LSQ);
    o.levels = 6;
    o.calib_windows = 4;
    o.floor_bpw = 0.8;
    o.floor_mode = BS_FLOOR_OVER;
    bs_err e = {{0}};
    REQUIRE(bs_compress(&f->m, f->t, calib_text, calib_len, &o, path, NULL, &e) == 0);
    bs_store s;
    REQUIRE(bs_store_open(&s, path, &e) == 0);
    uint8_t *stack = malloc(bs_store_prefix_end(&s, s.n_blocks));
    REQUIRE(bs_store_read_prefix(&s, s.n_blocks, stack, &e) == 0);
    bs_stacked sm;
    REQUIRE(bs_stacked_init(&sm, &s, stack, s.n_blocks, &e) == 0);
    int rising = 0;
    for (int i = 0; i < s.n_matrices; i++) {
        const bs_linear *lin = &f->m.layers[s.mats[i].layer].lin[s.mats[i].which];
        size_t n = (size_t)lin->rows * lin->cols;
        float *W = malloc(sizeof(float) * n);
        double prev = INFINITY;
        for (int d = 0; d <= o.levels; d++) {
            sm.q[i].depth = d;
            bs_qmat_materialize(&sm.q[i], W);
            double err = 0.0;
            for (size_t k = 0; k < n; k++)
                err += ((double)W[k] - lin->w[k]) * ((double)W[k] - lin->w[k]);
            rising += err > prev * (1 + 1e-6);
            prev = err;
        }
        free(W);
    }
    CHECKF(rising == 0, "lsq: %d levels raised their matrix's error", rising);
    bs_stacked_free(&sm);
    free(stack);
    bs_store_close(&s);
}

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(b, 1, n, fp) == n);
    fclose(fp);
}

static void test_bad_store(const char *path)
{
    bs_err e = {{0}};
    bs_store s;
    size_t n;
    uint8_t *b = (uint8_t *)bs_read_file(path, &n, &e);
    REQUIRE(b);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/bs_test_store_%d.bstk", (int)getpid());
    size_t cuts[] = {0, 10, 63, 64, 200, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(tmp, b, cuts[i]);
        CHECKF(bs_store_open(&s, tmp, &e) != 0, "store truncated to %zu bytes opened", cuts[i]);
        CHECKF(strstr(e.msg, tmp) != NULL, "message does not name the file: %s", e.msg);
    }
    /* a flipped byte inside block 7 is found when the block is read, and named */
    REQUIRE(bs_store_open(&s, path, &e) == 0);
    size_t at = (size_t)(s.stack_off + s.blocks[7].offset + s.blocks[7].bytes / 2);
    char name[64];
    snprintf(name, sizeof name, "block 7 (%s level %d)", s.mats[s.blocks[7].matrix].name, s.blocks[7].level);
    bs_store_close(&s);
    b[at] ^= 0x10;
    write_bytes(tmp, b, n);
    REQUIRE(bs_store_open(&s, tmp, &e) == 0);
    uint8_t *buf = malloc(bs_store_prefix_end(&s, s.n_blocks));
    CHECK(bs_store_read_prefix(&s, 7, buf, &e) == 0);   /* the blocks before it are fine */
    CHECK(bs_store_read_prefix(&s, 8, buf, &e) != 0);
    CHECKF(strstr(e.msg, name) != NULL, "'%s' not in: %s", name, e.msg);
    /* a budget below the smallest working model states the minimum */
    int nb;
    CHECK(bs_engine_budget_n(&s, "1K", &nb, &e) != 0);
    char minb[32];
    snprintf(minb, sizeof minb, "%llu bytes", (unsigned long long)s.resident[s.min_blocks]);
    CHECKF(strstr(e.msg, minb) != NULL, "minimum not stated: %s", e.msg);
    CHECK(bs_engine_budget_n(&s, "12Q", &nb, &e) != 0 && strstr(e.msg, "unit"));
    CHECK(bs_engine_budget_n(&s, "max", &nb, &e) == 0 && nb == s.n_blocks);
    CHECK(bs_engine_budget_n(&s, "min", &nb, &e) == 0 && nb == s.min_blocks);
    CHECK(bs_engine_budget_n(&s, "100%", &nb, &e) == 0 && nb == s.n_blocks);
    CHECK(bs_engine_budget_n(&s, "3.0bpw", &nb, &e) == 0 && bs_store_bpw(&s, nb) <= 3.0 && bs_store_bpw(&s, nb + 1) > 3.0);
    /* one grammar (proto/budget.h): lower-case units, no exponent, nothing empty */
    CHECK(bs_engine_budget_n(&s, "1e3", &nb, &e) != 0);
    CHECK(bs_engine_budget_n(&s, "", &nb, &e) != 0);
    CHECK(bs_engine_budget_n(&s, "4BPW", &nb, &e) == 0 && bs_store_bpw(&s, nb) <= 4.0);
    char kb[32];
    snprintf(kb, sizeof kb, "%lluk", (unsigned long long)(s.resident[s.n_blocks] / 1024));
    CHECK(bs_engine_budget_n(&s, kb, &nb, &e) == 0 && nb <= s.n_blocks);
    /* a size above the whole stack, asked for exactly, is an error naming the full size */
    CHECK(bs_engine_budget_n(&s, "1G", &nb, &e) != 0 && strstr(e.msg, "above the full stack"));
    /* a daemon following a budget clamps instead, and says which way */
    bs_budget bud;
    int clamped;
    REQUIRE(bs_proto_parse_budget("1G", &bud, &e) == 0);
    CHECK(bs_engine_resolve(&s, &bud, false, &nb, &clamped, &e) == 0 && nb == s.n_blocks && clamped == 1);
    REQUIRE(bs_proto_parse_budget("1K", &bud, &e) == 0);
    CHECK(bs_engine_resolve(&s, &bud, false, &nb, &clamped, &e) == 0 && nb == s.min_blocks && clamped == -1);
    free(buf);
    bs_store_close(&s);
    /* metadata damaged but with a valid crc (a crafted file): the JSON checks must hold,
     * never a crash or an out-of-bounds read; anything that opens must also read */
    {
        uint64_t meta_len;
        memcpy(&meta_len, b + 16, 8);
        uint8_t *c = malloc(n);
        uint64_t rng = 12345;
        int opened = 0;
        for (int it = 0; it < 300; it++) {
            memcpy(c, b, n);
            for (int k = 0; k < 1 + it % 3; k++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                size_t pos = 64 + (size_t)((rng >> 33) % meta_len);
                const char digits[] = "0123456789-,]}\"x";
                c[pos] = (uint8_t)digits[(rng >> 20) % (sizeof digits - 1)];
            }
            uint32_t crc = bs_crc32c(0, c + 64, meta_len);
            memcpy(c + 56, &crc, 4);
            write_bytes(tmp, c, n);
            bs_store t;
            if (bs_store_open(&t, tmp, &e) == 0) {
                opened++;
                uint8_t *blk = malloc(bs_store_prefix_end(&t, t.n_blocks) + 1);
                int nb2;
                if (bs_engine_budget_n(&t, "50%", &nb2, &e) == 0)
                    (void)bs_store_read_prefix(&t, nb2, blk, &e);
                free(blk);
                bs_store_close(&t);
            } else {
                CHECKF(strstr(e.msg, tmp) != NULL || strstr(e.msg, "tokenizer") != NULL, "unnamed error: %s", e.msg);
            }
        }
        fprintf(stderr, "metadata mutations: %d of 300 still opened (edits inside numbers or strings)\n", opened);
        free(c);
    }
    /* a flipped byte in the metadata is caught by its crc */
    b[at] ^= 0x10;
    b[100] ^= 0x01;
    write_bytes(tmp, b, n);
    CHECK(bs_store_open(&s, tmp, &e) != 0 && strstr(e.msg, "metadata"));
    unlink(tmp);
    free(b);
}

static void test_bad_models(fixture *f)
{
    bs_err e = {{0}};
    bs_compress_opts o;
    bs_compress_defaults(&o, BS_KIND_GQ);
    o.levels = 4;
    o.calib_windows = 2;
    char path[256];
    snprintf(path, sizeof path, "/tmp/bs_test_bad_%d.bstk", (int)getpid());
    bs_model m;
    /* non-finite weight: refused, naming the matrix */
    REQUIRE(bs_model_copy(&m, &f->m, &e) == 0);
    m.layers[2].lin[BS_W1].w[5] = NAN;
    CHECK(bs_compress(&m, f->t, calib_text, calib_len, &o, path, NULL, &e) != 0);
    CHECKF(strstr(e.msg, "layers.2.w1") && strstr(e.msg, "non-finite"), "%s", e.msg);
    bs_model_free(&m);
    /* calibration shorter than one window */
    CHECK(bs_compress(&f->m, f->t, "Once upon a time.", 17, &o, path, NULL, &e) != 0);
    CHECKF(strstr(e.msg, "fewer than one window") != NULL, "%s", e.msg);
    CHECK(access(path, F_OK) != 0);
    /* an all-zero matrix compresses, and stays exactly zero */
    REQUIRE(bs_model_copy(&m, &f->m, &e) == 0);
    memset(m.layers[1].lin[BS_WO].w, 0, sizeof(float) * (size_t)m.cfg.dim * m.cfg.dim);
    char zero[64];
    CHECK(bs_compress_check_model(&m, zero, sizeof zero, &e) == 0 && !strcmp(zero, "layers.1.wo"));
    REQUIRE(bs_compress(&m, f->t, calib_text, calib_len, &o, path, NULL, &e) == 0);
    bs_engine eng;
    REQUIRE(bs_engine_open(&eng, path, &e) == 0);
    bs_model d;
    REQUIRE(bs_engine_dense(&eng, eng.store.n_blocks, &d, &e) == 0);
    int nz = 0;
    for (int i = 0; i < m.cfg.dim * m.cfg.dim; i++)
        nz += d.layers[1].lin[BS_WO].w[i] != 0.0f;
    CHECKF(nz == 0, "%d non-zero weights in the all-zero matrix", nz);
    bs_model_free(&d);
    bs_engine_close(&eng);
    bs_model_free(&m);
    /* dead inputs (a norm weight of 0 silences a channel): H is singular, GPTQ copes */
    REQUIRE(bs_model_copy(&m, &f->m, &e) == 0);
    m.layers[0].att_norm[3] = 0.0f;
    m.layers[0].att_norm[9] = 0.0f;
    REQUIRE(bs_compress(&m, f->t, calib_text, calib_len, &o, path, NULL, &e) == 0);
    REQUIRE(bs_engine_open(&eng, path, &e) == 0);
    json_t *dead = json_object_get(json_object_get(eng.store.meta, "info"), "dead_inputs");
    CHECKF(json_integer_value(dead) >= 6, "dead inputs recorded: %lld", (long long)json_integer_value(dead));
    bs_ppl_result r;
    CHECK(bs_engine_ppl(&eng, eng.store.n_blocks, f->ids, f->nids, 256, 2, &r, &e) == 0 && isfinite(r.ppl));
    bs_engine_close(&eng);
    bs_model_free(&m);
    unlink(path);
}

int main(void)
{
    bs_err e = {{0}};
    calib_text = bs_read_file(bs_shared("data/tinystories_train_head.txt"), &calib_len, &e);
    valid_text = bs_read_file(bs_shared("data/tinystories_valid_head.txt"), &valid_len, &e);
    REQUIRE(calib_text && valid_text);
    char path[256];
    snprintf(path, sizeof path, "/tmp/bs_test_compress_%d.bstk", (int)getpid());

    fixture a = {0};
    fx_open(&a, "models/stories260K.bin", "models/tok512.bin");
    test_fold(&a);
    test_stack(&a, BS_KIND_GQ, BS_SORT_LEVEL, 12, path);
    test_bad_store(path);
    test_stack(&a, BS_KIND_SAQ, BS_SORT_PPL, 4, path);
    test_stack(&a, BS_KIND_AVD, BS_SORT_LEVEL, 3, path);
    test_bad_models(&a);
    test_floor_stack(&a, path);
    test_lsq(&a, path);
    fx_close(&a);

    fixture b = {0};
    fx_open(&b, "models/babyllama-d128.bin", "models/babyllama-tok105.bin");
    test_fold(&b);
    test_stack(&b, BS_KIND_GQ, BS_SORT_LEVEL, 6, path);
    fx_close(&b);

    unlink(path);
    free(calib_text);
    free(valid_text);
    TEST_MAIN_END();
}
