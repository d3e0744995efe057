/* bs_qmat: the single-token decode over sign planes (W never built) and the batch path
 * (W materialised, sgemm) agree with a plain product by the materialised matrix, for
 * every kind and at several depths; a stacked model decodes like its dense copy. */
#include "harness.h"
#include "kernels/team.h"
#include "model/synth.h"
#include "kernels/ops.h"
#include "model/compress.h"
#include "model/forward.h"
#include "model/load.h"
#include "model/stacked.h"
#include "model/store_eval.h"

#include <unistd.h>

static double rel_diff(const float *a, const float *b, int n)
{
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d += (double)(a[i] - b[i]) * (a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s + 1e-30));
}

static bs_team *team;   /* 2 threads: products split their rows over it */

static void check_store_isa(const char *path, const char *what, bs_kernel_isa isa);

static void check_store(const char *path, const char *what)
{
    for (int i = 0; i < BS_KERNEL_NISA; i++)
        if (bs_kernel_isa_supported((bs_kernel_isa)i))
            check_store_isa(path, what, (bs_kernel_isa)i);
}

static void check_store_isa(const char *path, const char *what, bs_kernel_isa isa)
{
    bs_store s;
    bs_err e = {{0}};
    REQUIRE(bs_store_open(&s, path, &e) == 0);
    uint8_t *buf = malloc(bs_store_prefix_end(&s, s.n_blocks));
    REQUIRE(bs_store_read_prefix(&s, s.n_blocks, buf, &e) == 0);
    bs_stacked sm;
    REQUIRE(bs_stacked_init(&sm, &s, buf, s.n_blocks, &e) == 0);
    int ns[3] = {s.min_blocks, (s.min_blocks + s.n_blocks) / 2, s.n_blocks};
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        bs_stacked_set_prefix(&sm, ns[k]);
        for (int i = 0; i < s.n_matrices; i++) {
            const bs_qmat *q = &sm.q[i];
            int r = q->m->rows, c = q->m->cols, nt = 3;
            float *W = malloc(sizeof(float) * (size_t)r * c), *x = malloc(sizeof(float) * (size_t)c * nt);
            float *y1 = malloc(sizeof(float) * (size_t)r * nt), *y2 = malloc(sizeof(float) * (size_t)r * nt);
            float *sc = malloc(sizeof(float) * bs_qmat_scratch_floats(c, 2));
            bs_qmat_run run1 = {sc, NULL, isa}, run2 = {sc, team, isa};
            bs_qmat_materialize(q, W);
            for (int j = 0; j < c * nt; j++)
                x[j] = sinf((float)(j * 7 + i + k));
            for (int t = 0; t < nt; t++)
                for (int a = 0; a < r; a++) {
                    double acc = 0;
                    for (int b = 0; b < c; b++)
                        acc += (double)W[(size_t)a * c + b] * x[(size_t)t * c + b];
                    y2[(size_t)t * r + a] = (float)acc;
                }
            /* one token at a time (the bit-plane path for saq/gq) */
            for (int t = 0; t < nt; t++)
                CHECK(bs_qmat_apply(q, y1 + (size_t)t * r, x + (size_t)t * c, 1, 0, t % 2 ? &run2 : &run1, NULL) == 0);
            double d1 = rel_diff(y1, y2, r * nt);
            /* a batch (materialise + sgemm), and accumulate */
            CHECK(bs_qmat_apply(q, y1, x, nt, 0, &run2, NULL) == 0);
            double d2 = rel_diff(y1, y2, r * nt);
            CHECK(bs_qmat_apply(q, y1, x, nt, 1, &run1, NULL) == 0);
            for (int j = 0; j < r * nt; j++)
                y1[j] *= 0.5f;
            double d3 = rel_diff(y1, y2, r * nt);
            double d = fmax(d1, fmax(d2, d3));
            worst = d > worst ? d : worst;
            free(W); free(x); free(y1); free(y2); free(sc);
        }
    }
    /* exact float paths; the int8 ones round x to 1/254 of each group's largest input */
    double tol = isa == BS_KERNEL_AVX2 || isa == BS_KERNEL_AVX512 ? 2e-2 : 1e-5;
    fprintf(stderr, "%s, %s: worst relative difference %.2e (bound %.0e)\n", what, bs_kernel_isa_name(isa), worst, tol);
    CHECKF(worst < tol, "%s, %s: qmat products differ from the materialised matrix by %.2e", what,
           bs_kernel_isa_name(isa), worst);

    /* the stacked model (decode through blocks) gives the logits of its dense copy */
    bs_stacked_set_prefix(&sm, ns[1]);
    bs_model dense;
    REQUIRE(bs_stacked_to_dense(&sm, &dense, &e) == 0);
    bs_state a, b;
    REQUIRE(bs_state_init(&a, &s.cfg, 32, 1, &e) == 0 && bs_state_init(&b, &s.cfg, 32, 1, &e) == 0);
    a.qrun.isa = isa;
    int toks[6] = {1, 403, 407, 261, 378, 432};
    double wl = 0;
    for (int p = 0; p < 6; p++) {
        const float *la = bs_forward(&sm.model, &a, &toks[p], 1, p, 0, &e);
        const float *lb = bs_forward(&dense, &b, &toks[p], 1, p, 0, &e);
        REQUIRE(la && lb);
        double d = rel_diff(la, lb, s.cfg.vocab_size);
        wl = d > wl ? d : wl;
    }
    /* six layers' worth of int8 rounding on the int8 paths */
    double tol_l = isa == BS_KERNEL_AVX2 || isa == BS_KERNEL_AVX512 ? 5e-2 : 1e-5;
    CHECKF(wl < tol_l, "%s, %s: stacked decode logits differ from dense by %.2e", what, bs_kernel_isa_name(isa), wl);
    bs_state_free(&a);
    bs_state_free(&b);

    /* sequences at different positions stepped together (bs_forward_batch) get the
     * logits they get alone: plane blocks bit for bit, the classifier's sgemm within
     * float rounding of its sgemv */
    enum { NB = 3, STEPS = 4 };
    bs_state one[NB], bat[NB];
    bs_state *bp[NB];
    for (int i = 0; i < NB; i++) {
        REQUIRE(bs_state_init(&one[i], &s.cfg, 32, 1, &e) == 0);
        REQUIRE(bs_state_init(&bat[i], &s.cfg, 32, i == 0 ? NB : 1, &e) == 0);
        one[i].qrun.isa = bat[i].qrun.isa = isa;
        bp[i] = &bat[i];
        REQUIRE(bs_forward(&sm.model, &one[i], toks, i + 1, 0, 0, &e));
        REQUIRE(bs_forward(&sm.model, &bat[i], toks, i + 1, 0, 0, &e));
    }
    REQUIRE(bs_state_use_team(&bat[0], team, &e) == 0);
    double wb = 0;
    int V = s.cfg.vocab_size;
    for (int st = 0; st < STEPS; st++) {
        int tk[NB], ps[NB];
        for (int i = 0; i < NB; i++) {
            tk[i] = toks[(st + 2 * i) % 6];
            ps[i] = i + 1 + st;
        }
        const float *lb = bs_forward_batch(&sm.model, bp, tk, ps, NB, &e);
        REQUIRE(lb);
        for (int i = 0; i < NB; i++) {
            const float *la = bs_forward(&sm.model, &one[i], &tk[i], 1, ps[i], 0, &e);
            REQUIRE(la);
            CHECK(!memcmp(bat[i].logits, lb + (size_t)i * V, sizeof(float) * (size_t)V));
            double d = rel_diff(bat[i].logits, la, V);
            wb = d > wb ? d : wb;
        }
    }
    /* float rounding only (measured: < 1e-6 on every path and kind) */
    double tol_b = 1e-5;
    fprintf(stderr, "%s, %s: batch of %d vs alone: logits differ by %.2e\n", what, bs_kernel_isa_name(isa), NB, wb);
    CHECKF(wb < tol_b, "%s, %s: batched decode logits differ from lone runs by %.2e", what,
           bs_kernel_isa_name(isa), wb);
    for (int i = 0; i < NB; i++) {
        bs_state_free(&one[i]);
        bs_state_free(&bat[i]);
    }
    bs_model_free(&dense);
    bs_stacked_free(&sm);
    free(buf);
    bs_store_close(&s);
}

int main(void)
{
    bs_model m;
    bs_err e = {{0}};
    team = bs_team_new(2, &e);
    REQUIRE(team);
    REQUIRE(bs_model_load(&m, bs_shared("models/stories260K.bin"), &e) == 0);
    bs_tokenizer *t = bs_tok_load_for(NULL, bs_shared("models/tok512.bin"), m.cfg.vocab_size, &e);
    REQUIRE(t);
    size_t len;
    char *calib = bs_read_file(bs_shared("data/tinystories_train_head.txt"), &len, &e);
    REQUIRE(calib);
    char path[256];
    snprintf(path, sizeof path, "/tmp/bs_test_qmat_%d.bstk", (int)getpid());
    int kinds[3] = {BS_KIND_GQ, BS_KIND_SAQ, BS_KIND_AVD};
    for (int k = 0; k < 3; k++) {
        bs_compress_opts o;
        bs_compress_defaults(&o, kinds[k]);
        o.levels = kinds[k] == BS_KIND_GQ ? 10 : 4;
        o.gq_restart = kinds[k] == BS_KIND_GQ ? 7 : -1;
        o.calib_windows = 2;
        REQUIRE(bs_compress(&m, t, calib, len, &o, path, NULL, &e) == 0);
        check_store(path, bs_kind_name(kinds[k]));
    }
    /* with a LittleBit floor under gq, avd (two paths) and lsq blocks: the floor alone
     * (prefix 0) and floor + blocks */
    int fkinds[3] = {BS_KIND_GQ, BS_KIND_AVD, BS_KIND_LSQ};
    for (int k = 0; k < 3; k++) {
        bs_compress_opts o;
        bs_compress_defaults(&o, fkinds[k]);
        o.levels = 4;
        o.calib_windows = 2;
        o.floor_bpw = k == 1 ? 1.2 : 0.8;
        o.floor_paths = k == 1 ? 2 : 1;
        o.group = k == 2 ? 64 : o.group;
        REQUIRE(bs_compress(&m, t, calib, len, &o, path, NULL, &e) == 0);
        check_store(path, k == 1 ? "avd over a 2-path floor" : k ? "lsq (group 64) over a floor" : "gq over a floor");
    }
    REQUIRE(bs_quantize_baseline(&m, t, calib, len, BS_BASE_GPTQ, 3, 256, 2, NULL, path, NULL, &e) == 0);
    check_store(path, "qasym (gptq 3-bit)");
    /* matrices large enough to be split over the team (stories260K's are not) */
    bs_synth_opts so;
    REQUIRE(bs_synth_preset(&so, "stories260k", &e) == 0);
    so.cfg.dim = 256;
    so.cfg.hidden_dim = 688;
    so.cfg.n_layers = 1;
    REQUIRE(bs_synth_store_write(path, &so, NULL, NULL, &e) == 0);
    check_store(path, "gq synthetic 256x688");
    unlink(path);
    free(calib);
    bs_tok_free(t);
    bs_model_free(&m);
    bs_team_free(team);
    TEST_MAIN_END();
}
