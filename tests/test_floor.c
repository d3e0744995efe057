/* The LittleBit floor: the rank solve hits the bit budget, a packed floor reads back as the
 * floats it was packed from, Dual-SVID fits real matrices (babyllama-d128) better at rank 64
 * than at rank 4, and better with a second, residual path; and a store with a briefly trained
 * floor (the default, switching from the floor to the stack) never gets worse with budget. */
#include <stdio.h>
#include <unistd.h>

#include "kernels/half.h"
#include "model/compress.h"
#include "model/engine.h"
#include "model/floor.h"
#include "model/load.h"
#include "model/model.h"
#include "model/ppl.h"
#include "model/store_eval.h"
#include "harness.h"

static double frob(const float *a, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

static void test_solve(void)
{
    bs_config c = {.dim = 128, .hidden_dim = 352, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4};
    c.head_dim = 16;
    c.kv_dim = 64;
    int rows[35], cols[35], rank[35];
    double weights = 0.0;
    for (int i = 0; i < 35; i++) {
        bs_lin_shape(&c, i % BS_NLIN, &rows[i], &cols[i]);
        weights += (double)rows[i] * cols[i];
    }
    bs_err e = {{0}};
    for (int paths = 1; paths <= 2; paths++) {
        static const double targets[] = {0.3, 0.55, 0.8};
        for (int t = 0; t < 3; t++) {
            if (paths == 2 && t == 0) {
                /* two paths' h and g alone cost ~0.5 bpw at this width */
                CHECK(bs_floor_solve_ranks(rows, cols, 35, targets[t], paths, rank, NULL, &e) != 0);
                continue;
            }
            REQUIRE(bs_floor_solve_ranks(rows, cols, 35, targets[t], paths, rank, NULL, &e) == 0);
            double bits = 0.0, step = 0.0;
            for (int i = 0; i < 35; i++) {
                bits += bs_floor_bits(rows[i], cols[i], rank[i], paths);
                step = fmax(step, paths * (rows[i] + cols[i] + 16.0));
                CHECK(rank[i] >= 1);
            }
            CHECKF(bits <= targets[t] * weights && bits > targets[t] * weights - 35 * step, "%d paths at %.2f: %.4f bpw",
                   paths, targets[t], bits / weights);
            /* ranks follow m n / (m + n + 16): the wide FFN matrices get more */
            CHECK(rank[BS_W1] > rank[BS_WQ]);
        }
    }
    CHECK(bs_floor_solve_ranks(rows, cols, 35, 0.01, 1, rank, NULL, &e) != 0 && strstr(e.msg, "below"));
}

static void test_pack(void)
{
    bs_err e = {{0}};
    int shapes[][3] = {{5, 9, 3}, {64, 172, 17}, {1, 1, 1}};
    for (int s = 0; s < 3; s++) {
        int m = shapes[s][0], n = shapes[s][1], r = shapes[s][2];
        bs_floor_f f[2];
        bs_store_matrix mt = {.rows = m, .cols = n, .floor_rank = r, .floor_paths = 2};
        uint8_t *payload = calloc(1, bs_floor_bytes(&mt));
        float *a = calloc((size_t)m * n, sizeof(float)), *w = calloc((size_t)m * n, sizeof(float));
        for (int p = 0; p < 2; p++) {
            REQUIRE(bs_floor_f_alloc(&f[p], m, n, r, &e) == 0);
            for (int i = 0; i < m * r; i++)
                f[p].U[i] = (float)sin(i * 1.3 + p);
            for (int i = 0; i < n * r; i++)
                f[p].V[i] = (float)cos(i * 0.7 + p);
            for (int i = 0; i < m; i++)
                f[p].h[i] = 0.1f + 0.01f * (float)i;
            for (int i = 0; i < r; i++)
                f[p].l[i] = 1.0f + (float)i;
            for (int i = 0; i < n; i++)
                f[p].g[i] = 0.5f - 0.003f * (float)i;
            bs_floor_f_pack(&f[p], payload + (size_t)p * bs_floor_path_bytes(m, n, r));
            bs_floor_f_subtract(&f[p], a);
        }
        bs_floor_view v;
        bs_floor_view_of(&mt, payload, &v);
        CHECK(v.paths == 2);
        bs_floor_add_dense(&v, w);
        double worst = 0.0;
        for (int i = 0; i < m * n; i++)
            worst = fmax(worst, fabs(w[i] + a[i]));
        CHECKF(worst < 1e-4 * frob(w, (size_t)m * n) + 1e-6, "%dx%d r%d: %g", m, n, r, worst);
        /* the kernel agrees with the dense floor */
        float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)m);
        void *sc = malloc(bs_kernel_lb_scratch(n, r));
        for (int j = 0; j < n; j++)
            x[j] = (float)sin(j);
        for (int p = 0; p < 2; p++)
            REQUIRE(bs_kernel_lb_matvec(BS_KERNEL_PORTABLE, &v.path[p], x, y, p, sc) == 0);
        for (int i = 0; i < m; i++) {
            double ref = 0.0, mag = 0.0;
            for (int j = 0; j < n; j++) {
                ref += (double)w[(size_t)i * n + j] * x[j];
                mag += fabs((double)w[(size_t)i * n + j] * x[j]);
            }
            CHECK_NEAR(y[i], ref, 1e-4 * mag + 1e-5);
        }
        free(x); free(y); free(sc);
        bs_floor_f_free(&f[0]);
        bs_floor_f_free(&f[1]);
        free(payload); free(a); free(w);
    }
}

static void test_dual_svid(void)
{
    bs_model m;
    bs_err e = {{0}};
    if (bs_model_load(&m, bs_shared("models/babyllama-d128.bin"), &e)) {
        fprintf(stderr, "skip dual-svid: %s\n", e.msg);
        return;
    }
    const int which[] = {BS_WQ, BS_W2};
    for (int t = 0; t < 2; t++) {
        const bs_linear *lin = &m.layers[2].lin[which[t]];
        size_t n = (size_t)lin->rows * lin->cols;
        double norm = frob(lin->w, n), first = 0.0, err = 0.0;
        float *A = malloc(sizeof(float) * n);
        for (int r = 4; r <= 64; r *= 4) {
            bs_floor_f f;
            REQUIRE(bs_floor_f_alloc(&f, lin->rows, lin->cols, r, &e) == 0);
            REQUIRE(bs_floor_dual_svid(&f, lin->w, 7, &e) == 0);
            memcpy(A, lin->w, sizeof(float) * n);
            bs_floor_f_subtract(&f, A);
            err = frob(A, n) / norm;
            CHECKF(err < 1.0, "%s rank %d: relative error %.4f", bs_lin_name(which[t]), r, err);
            if (r == 4)
                first = err;
            /* residual compensation: a second path on what the first missed */
            bs_floor_f f2;
            REQUIRE(bs_floor_f_alloc(&f2, lin->rows, lin->cols, r, &e) == 0);
            float *R = malloc(sizeof(float) * n);
            memcpy(R, A, sizeof(float) * n);
            REQUIRE(bs_floor_dual_svid(&f2, R, 8, &e) == 0);
            bs_floor_f_subtract(&f2, A);
            CHECKF(frob(A, n) / norm < err, "second path: %.4f vs %.4f", frob(A, n) / norm, err);
            fprintf(stderr, "%s rank %d: %.4f, with a residual path %.4f\n", bs_lin_name(which[t]), r, err,
                    frob(A, n) / norm);
            free(R);
            bs_floor_f_free(&f);
            bs_floor_f_free(&f2);
        }
        /* sign factors do not improve with every rank step (measured), but 16x the rank does */
        CHECKF(err < first, "%s: rank 64 %.4f, rank 4 %.4f", bs_lin_name(which[t]), err, first);
        free(A);
    }
    bs_model_free(&m);
}

/* babyllama-d128 with a floor of 0.55 bits per weight trained for a few dozen steps (a
 * floor far better than Dual-SVID alone, worse than a real run) under the default gq stack:
 * a sweep of 16 budgets from the floor to the full store never rises by more than 2%, the
 * budgets short of the switch run the floor alone at its bytes, and the full store is within
 * 0.1% of float. Over the same floor the stack's first levels were measured to make the
 * model worse than the floor alone (docs/results.md §11): what the switch exists for. */
static void test_switch_curve(void)
{
    const char *mp = bs_shared("models/babyllama-d128.bin"), *tp = bs_shared("models/babyllama-tok105.bin");
    bs_model m;
    bs_err e = {{0}};
    if (bs_model_load(&m, mp, &e)) {
        fprintf(stderr, "skip the switch curve: %s\n", e.msg);
        return;
    }
    bs_tokenizer *tok = bs_tok_load_for(mp, tp, m.cfg.vocab_size, &e);
    size_t clen = 0, vlen = 0;
    char *calib = bs_read_file(bs_shared("data/tinystories_train_head.txt"), &clen, &e);
    char *valid = bs_read_file(bs_shared("data/tinystories_valid_head.txt"), &vlen, &e);
    REQUIRE(tok && calib && valid);
    char path[256];
    snprintf(path, sizeof path, "/tmp/bs_test_floor_%d.bstk", (int)getpid());
    bs_compress_opts o;
    bs_compress_defaults(&o, BS_KIND_GQ);
    o.floor_bpw = 0.55;
    o.qat.max_steps = 80;
    REQUIRE(bs_compress(&m, tok, calib, clen, &o, path, NULL, &e) == 0);
    bs_engine eng;
    REQUIRE(bs_engine_open(&eng, path, &e) == 0);
    const bs_store *s = &eng.store;
    int bad = -1;
    REQUIRE(bs_engine_read_blocks(&eng, s->n_blocks, &bad, &e) == 0);
    CHECKF(s->floor_switch > 0 && s->floor_switch <= s->n_blocks, "switch at %d of %d blocks", s->floor_switch,
           s->n_blocks);
    int *ids = NULL, nids = 0;
    REQUIRE(bs_tok_encode(tok, valid, vlen, 0, 1, &ids, &nids, &e) == 0);
    const int windows = 8;
    bs_ppl_result r;
    REQUIRE(bs_ppl_ids(&m, ids, nids, bs_tok_bos(tok), 256, windows, &r, &e) == 0);
    double pfloat = r.ppl, prev = INFINITY, pfloor = 0.0, worst = 0.0;
    const int points = 16;
    for (int k = 0; k <= points; k++) {
        double bytes = s->resident[0] + (double)k / points * (double)(s->resident[s->n_blocks] - s->resident[0]);
        int n = bs_engine_n_for_bytes(s, bytes);
        CHECKF(n == 0 || n >= s->floor_switch, "budget %.0f bytes: %d blocks, short of the switch at %d", bytes, n,
               s->floor_switch);
        REQUIRE(bs_engine_ppl(&eng, n, ids, nids, 256, windows, &r, &e) == 0);
        fprintf(stderr, "%.3f bpw: %d blocks, ppl %.4f\n", bs_store_bpw(s, n), n, r.ppl);
        if (k == 0)
            pfloor = r.ppl;
        worst = fmax(worst, r.ppl / prev);
        prev = r.ppl;
    }
    CHECKF(worst <= 1.02, "the curve rises by %.1f%% at some budget", 100 * (worst - 1));
    /* the full store against float on the results' 40 windows */
    REQUIRE(bs_engine_ppl(&eng, s->n_blocks, ids, nids, 256, 40, &r, &e) == 0);
    double pfull = r.ppl;
    REQUIRE(bs_ppl_ids(&m, ids, nids, bs_tok_bos(tok), 256, 40, &r, &e) == 0);
    pfloat = r.ppl;
    CHECKF(fabs(pfull / pfloat - 1) < 0.001, "full store %.5f, float %.5f", pfull, pfloat);
    /* the loss table (info.errors) follows the model: the floor's until the switch */
    CHECK(s->loss && s->loss[s->floor_switch - 1] == s->loss[0] && s->loss[s->n_blocks] < s->loss[0]);
    /* the prefixes short of the switch hold blocks the model does not use */
    if (s->floor_switch > 1) {
        REQUIRE(bs_engine_ppl(&eng, s->floor_switch - 1, ids, nids, 256, windows, &r, &e) == 0);
        CHECKF(r.ppl == pfloor, "prefix %d: %.4f, the floor %.4f", s->floor_switch - 1, r.ppl, pfloor);
    }
    fprintf(stderr, "floor %.3f, switch at %d blocks (%.2f bpw), float %.4f\n", pfloor, s->floor_switch,
            bs_store_bpw(s, s->floor_switch), pfloat);
    /* the reader refuses a switch where some matrix has no block yet, or past the stack */
    bs_model dense;
    REQUIRE(bs_engine_dense(&eng, 0, &dense, &e) == 0);
    bs_store_block *blocks = malloc(sizeof *blocks * (size_t)s->n_blocks);
    const uint8_t **payload = malloc(sizeof *payload * (size_t)s->n_blocks);
    REQUIRE(blocks && payload);
    for (int b = 0; b < s->n_blocks; b++) {
        blocks[b] = (bs_store_block){.matrix = s->blocks[b].matrix, .level = s->blocks[b].level};
        payload[b] = eng.stack + s->blocks[b].offset;
    }
    char bad_path[300];
    snprintf(bad_path, sizeof bad_path, "%s.sw", path);
    const int sws[] = {1, s->n_blocks + 1};
    for (int k = 0; k < 2; k++) {
        bs_store_out so = {.model = &dense, .tok = tok, .n_matrices = s->n_matrices, .mats = s->mats,
                           .n_blocks = s->n_blocks, .blocks = blocks, .payload = payload, .floor = s->floor,
                           .floor_switch = sws[k]};
        REQUIRE(bs_store_write(bad_path, &so, &e) == 0);
        bs_store t;
        bs_err e2 = {{0}};
        CHECKF(bs_store_open(&t, bad_path, &e2) != 0 && strstr(e2.msg, "switches"), "switch at %d: %s", sws[k],
               e2.msg);
    }
    unlink(bad_path);
    free(blocks);
    free(payload);
    bs_model_free(&dense);
    bs_engine_close(&eng);
    unlink(path);
    free(ids);
    free(calib);
    free(valid);
    bs_tok_free(tok);
    bs_model_free(&m);
}

int main(void)
{
    test_solve();
    test_pack();
    test_dual_svid();
    test_switch_curve();
    TEST_MAIN_END();
}
