/* Every backward of quantisation-aware training against central finite differences:
 * the floor linear (with its sign matrices as free floats), RMSNorm, RoPE (its backward is
 * its inverse), causal attention with grouped keys, SwiGLU, KL and MSE, and the whole model
 * (a small random one with two floor paths) on every kind of smooth parameter (scales h, l, g
 * and norm weights); the latent factors get the surrogate's chain rule. Differences in
 * double over float code: tolerance 2% of the larger gradient plus a small absolute term. */
#include "harness.h"
#include "model/floor.h"
#include "model/train.h"
#include "model/train_ops.h"

static uint64_t rs = 42;

static float frand(void)
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill(float *a, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = scale * frand();
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static int fd_bad;

static void check_grad(const char *what, double an, double fd, double scale)
{
    double tol = 0.02 * fmax(fabs(an), fabs(fd)) + 1e-3 * scale;
    if (fabs(an - fd) > tol && fd_bad++ < 20)
        fprintf(stderr, "%s: analytic %.6g, finite difference %.6g\n", what, an, fd);
    CHECK(fabs(an - fd) <= tol);
}

/* ---- the floor linear ------------------------------------------------------------- */

static bs_tlin tl;
static float *tX, *tR, *tY, *tS;
static int tN;

static double lin_loss(void)
{
    bs_tlin_forward(&tl, tX, tY, tN, 0, tS);
    return dot(tY, tR, (size_t)tN * tl.m);
}

static void fd_vec(const char *what, float *p, const float *g, size_t n, double (*loss)(void), double scale)
{
    for (size_t i = 0; i < n; i++) {
        float keep = p[i];
        float h = 1e-3f * fmaxf(1.0f, fabsf(keep));
        p[i] = keep + h;
        double up = loss();
        p[i] = keep - h;
        double dn = loss();
        p[i] = keep;
        char name[64];
        snprintf(name, sizeof name, "%s[%zu]", what, i);
        check_grad(name, g[i], (up - dn) / (2.0 * ((double)(keep + h) - keep)), scale);
    }
}

static void test_lin(void)
{
    int m = 5, n = 7, r = 3;
    tN = 4;
    bs_tlin t = {.m = m, .n = n, .r = r};
    float *buf = calloc(4 * (size_t)(m * r + n * r + m + n + r), sizeof(float));
    float *p = buf;
    t.U = p; p += m * r; t.V = p; p += n * r; t.h = p; p += m; t.l = p; p += r; t.g = p; p += n;
    t.dU = p; p += m * r; t.dV = p; p += n * r; t.dh = p; p += m; t.dl = p; p += r; t.dg = p; p += n;
    t.Su = p; p += m * r; t.Sv = p; p += n * r; p += m + n + r;
    t.dSu = p; p += m * r; t.dSv = p;
    fill(t.U, (size_t)m * r, 1); fill(t.V, (size_t)n * r, 1); fill(t.h, (size_t)m, 1); fill(t.l, (size_t)r, 1);
    fill(t.g, (size_t)n, 1);
    fill(t.Su, (size_t)m * r, 1); fill(t.Sv, (size_t)n * r, 1);   /* free floats: the product's own gradient */
    tl = t;
    tX = malloc(sizeof(float) * (size_t)tN * n);
    tR = malloc(sizeof(float) * (size_t)tN * m);
    tY = malloc(sizeof(float) * (size_t)tN * m);
    tS = malloc(sizeof(float) * bs_tlin_scratch(&t, tN));
    float *dX = calloc((size_t)tN * n, sizeof(float));
    fill(tX, (size_t)tN * n, 1);
    fill(tR, (size_t)tN * m, 1);
    bs_tlin_backward(&tl, tX, tR, dX, tN, tS);
    fd_vec("lin dX", tX, dX, (size_t)tN * n, lin_loss, 1);
    fd_vec("lin dh", tl.h, tl.dh, (size_t)m, lin_loss, 1);
    fd_vec("lin dl", tl.l, tl.dl, (size_t)r, lin_loss, 1);
    fd_vec("lin dg", tl.g, tl.dg, (size_t)n, lin_loss, 1);
    fd_vec("lin dSu", tl.Su, tl.dSu, (size_t)m * r, lin_loss, 1);
    fd_vec("lin dSv", tl.Sv, tl.dSv, (size_t)n * r, lin_loss, 1);
    /* the straight-through estimator: dU = dSu · k (1 − tanh²(k U)) */
    bs_tlin_surrogate(&tl);
    for (int i = 0; i < m * r; i++) {
        float th = tanhf(BS_TRAIN_SURROGATE_K * tl.U[i]);
        CHECK_NEAR(tl.dU[i], tl.dSu[i] * BS_TRAIN_SURROGATE_K * (1 - th * th), 1e-6);
    }
    bs_tlin_signs(&tl);
    for (int i = 0; i < n * r; i++)
        CHECK(tl.Sv[i] == (tl.V[i] >= 0 ? 1.0f : -1.0f));
    free(buf); free(tX); free(tR); free(tY); free(tS); free(dX);
}

/* ---- norm, rope, attention, swiglu, losses ------------------------------------------ */

static float *nX, *nW, *nY, *nRs, *nR;
static int nN = 3, nD = 8;

static double norm_loss(void)
{
    bs_tnorm_forward(nX, nW, nY, nRs, nN, nD, 1e-5f);
    return dot(nY, nR, (size_t)nN * nD);
}

static void test_norm(void)
{
    size_t n = (size_t)nN * nD;
    nX = malloc(sizeof(float) * n); nW = malloc(sizeof(float) * nD); nY = malloc(sizeof(float) * n);
    nRs = malloc(sizeof(float) * nN); nR = malloc(sizeof(float) * n);
    float *dX = calloc(n, sizeof(float)), *dW = calloc((size_t)nD, sizeof(float));
    fill(nX, n, 1); fill(nW, (size_t)nD, 1); fill(nR, n, 1);
    norm_loss();
    bs_tnorm_backward(nX, nW, nRs, nR, dX, dW, nN, nD);
    fd_vec("norm dX", nX, dX, n, norm_loss, 1);
    fd_vec("norm dw", nW, dW, (size_t)nD, norm_loss, 1);
    free(nX); free(nW); free(nY); free(nRs); free(nR); free(dX); free(dW);
}

static void test_rope(void)
{
    int N = 6, T = 3, H = 2, hd = 8;
    size_t n = (size_t)N * H * hd;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *x0 = malloc(sizeof(float) * n);
    fill(x, n, 1); fill(y, n, 1);
    memcpy(x0, x, sizeof(float) * n);
    /* <R x, y> = <x, R⁻¹ y>: the backward (dir −1) is the transpose */
    bs_trope(x, N, T, H, hd, 10000.0f, 1);
    double a = dot(x, y, n);
    bs_trope(y, N, T, H, hd, 10000.0f, -1);
    CHECK_NEAR(a, dot(x0, y, n), 1e-5);
    /* and it does rotate (position 1 onwards) */
    CHECK(fabs(x[(size_t)H * hd] - x0[(size_t)H * hd]) > 1e-4);
    free(x); free(y); free(x0);
}

static float *aq, *ak, *av, *aP, *aO, *aR;
enum { AB = 2, AT = 5, AH = 4, AKV = 2, AHD = 4 };

static double attn_loss(void)
{
    bs_tattn_forward(aq, ak, av, aP, aO, AB, AT, AH, AKV, AHD);
    return dot(aO, aR, (size_t)AB * AT * AH * AHD);
}

static void test_attn(void)
{
    size_t nq = (size_t)AB * AT * AH * AHD, nk = (size_t)AB * AT * AKV * AHD;
    aq = malloc(sizeof(float) * nq); ak = malloc(sizeof(float) * nk); av = malloc(sizeof(float) * nk);
    aP = malloc(sizeof(float) * AB * AH * AT * AT); aO = malloc(sizeof(float) * nq); aR = malloc(sizeof(float) * nq);
    float *dq = calloc(nq, sizeof(float)), *dk = calloc(nk, sizeof(float)), *dv = calloc(nk, sizeof(float));
    fill(aq, nq, 1); fill(ak, nk, 1); fill(av, nk, 1); fill(aR, nq, 1);
    attn_loss();
    float *sc = malloc(sizeof(float) * bs_tattn_scratch(AT));
    bs_tattn_backward(aq, ak, av, aP, aR, dq, dk, dv, AB, AT, AH, AKV, AHD, sc);
    free(sc);
    fd_vec("attn dq", aq, dq, nq, attn_loss, 1);
    fd_vec("attn dk", ak, dk, nk, attn_loss, 1);
    fd_vec("attn dv", av, dv, nk, attn_loss, 1);
    free(aq); free(ak); free(av); free(aP); free(aO); free(aR); free(dq); free(dk); free(dv);
}

static float *sA, *sB, *sH, *sR, *kZt, *kZs, *kD;
enum { SN = 12, KN = 3, KV = 6 };

static double swiglu_loss(void)
{
    bs_tswiglu_forward(sA, sB, sH, SN);
    return dot(sH, sR, SN);
}

static double kl_loss(void)
{
    return bs_tkl(kZt, kZs, kD, KN, KV);
}

static double mse_loss(void)
{
    float junk[SN] = {0};
    return bs_tmse(sA, sB, junk, SN, 10.0f);
}

static void test_small(void)
{
    float A[SN], B[SN], H[SN], R[SN], dA[SN] = {0}, dB[SN] = {0};
    sA = A; sB = B; sH = H; sR = R;
    fill(A, SN, 3); fill(B, SN, 1); fill(R, SN, 1);
    bs_tswiglu_backward(A, B, R, dA, dB, SN);
    fd_vec("swiglu dA", sA, dA, SN, swiglu_loss, 1);
    fd_vec("swiglu dB", sB, dB, SN, swiglu_loss, 1);
    float dM[SN] = {0};
    bs_tmse(A, B, dM, SN, 10.0f);
    fd_vec("mse", sA, dM, SN, mse_loss, 1);
    float Zt[KN * KV], Zs[KN * KV], D[KN * KV], Dk[KN * KV];
    kZt = Zt; kZs = Zs; kD = D;
    fill(Zt, KN * KV, 2); fill(Zs, KN * KV, 2);
    CHECK(bs_tkl(Zt, Zs, Dk, KN, KV) > 0);
    CHECK_NEAR(bs_tkl(Zt, Zt, D, KN, KV), 0.0, 1e-9);
    bs_tkl(Zt, Zs, Dk, KN, KV);
    fd_vec("kl dZs", kZs, Dk, KN * KV, kl_loss, 1);
}

/* ---- the whole model -------------------------------------------------------------- */

static bs_trainer *wt;
static int wtok[2 * 6];

static double model_loss(void)
{
    return bs_trainer_loss(wt, wtok, 0, NULL, NULL);
}

static void test_model(void)
{
    bs_config c = {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 11,
                   .seq_len = 32, .rope_theta = 10000.0f, .rms_eps = 1e-5f};
    bs_err e = {{0}};
    REQUIRE(bs_config_check(&c, "test", &e) == 0);
    bs_model m;
    REQUIRE(bs_model_alloc(&m, &c, 1, &e) == 0);
    bs_model_randomize(&m, 3);
    int paths = 2, nf = c.n_layers * BS_NLIN * paths;
    bs_floor_f *f = calloc((size_t)nf, sizeof *f);
    for (int i = 0; i < nf; i++) {
        const bs_linear *lin = &m.layers[i / paths / BS_NLIN].lin[i / paths % BS_NLIN];
        REQUIRE(bs_floor_f_alloc(&f[i], lin->rows, lin->cols, 3, &e) == 0);
        REQUIRE(bs_floor_dual_svid(&f[i], lin->w, (uint64_t)i, &e) == 0);
    }
    wt = bs_trainer_new(&m, f, paths, 2, 6, 10.0f, &e);
    REQUIRE(wt);
    for (int i = 0; i < 12; i++)
        wtok[i] = i % 6 == 0 ? 1 : (int)(rs = rs * 6364136223846793005ull + 1, (rs >> 33) % 11);
    double kl, mse;
    double loss = bs_trainer_loss(wt, wtok, 1, &kl, &mse);
    CHECK(loss > 0 && kl > 0 && mse > 0);
    CHECK_NEAR(loss, model_loss(), 1e-6 * loss);
    size_t np;
    float *p = bs_trainer_params(wt, &np);
    float *g = malloc(sizeof(float) * np);
    memcpy(g, bs_trainer_grads(wt), sizeof(float) * np);
    double gmax = 0.0;
    for (size_t i = 0; i < np; i++)
        gmax = fmax(gmax, fabs(g[i]));
    /* every smooth parameter of a few matrices and norm weights, a sample of the rest */
    int checked = 0, latent_nz = 0;
    for (size_t i = 0; i < np; i++) {
        if (bs_trainer_is_latent(wt, i)) {
            latent_nz += g[i] != 0.0f;
            continue;
        }
        if (i % 7 != 0 && i < np - 2 * 16 * 2)
            continue;
        float keep = p[i], h = 1e-3f * fmaxf(1.0f, fabsf(keep));
        p[i] = keep + h;
        double up = model_loss();
        p[i] = keep - h;
        double dn = model_loss();
        p[i] = keep;
        char name[64];
        snprintf(name, sizeof name, "model param %zu", i);
        check_grad(name, g[i], (up - dn) / (2.0 * ((double)(keep + h) - keep)), gmax);
        checked++;
    }
    fprintf(stderr, "model: %zu parameters, %d checked against finite differences, %d latent gradients non-zero\n", np,
            checked, latent_nz);
    CHECK(checked > 100 && latent_nz > 0);
    /* one training run lowers the loss, and the export folds norm weights into g */
    bs_trainer_free(wt);
    bs_train_opts o;
    bs_train_defaults(&o);
    o.minutes = 0;
    o.max_steps = 60;
    o.batch = 2;
    o.seq = 6;
    o.warmup = 5;
    o.lr = 1e-2f;
    int ids[200];
    for (int i = 0; i < 200; i++)
        ids[i] = 2 + (i * 7 + i / 5) % 9;
    wt = bs_trainer_new(&m, f, paths, 2, 6, 10.0f, &e);
    double before = 0;
    for (int s = 0; s < 8; s++) {
        for (int b = 0; b < 2; b++) {
            wtok[b * 6] = 1;
            memcpy(wtok + b * 6 + 1, ids + s * 11 + b * 37, sizeof(int) * 5);
        }
        before += model_loss();
    }
    bs_trainer_free(wt);
    REQUIRE(bs_train_floor(&m, ids, 200, 1, f, paths, &o, NULL, &e) == 0);
    wt = bs_trainer_new(&m, f, paths, 2, 6, 10.0f, &e);
    /* the exported floors carry the trained norms in g: reset the trainer's norms to the
     * float model's (as a new trainer has them) and the loss is the trained one */
    double after = 0;
    for (int s = 0; s < 8; s++) {
        for (int b = 0; b < 2; b++) {
            wtok[b * 6] = 1;
            memcpy(wtok + b * 6 + 1, ids + s * 11 + b * 37, sizeof(int) * 5);
        }
        after += model_loss();
    }
    fprintf(stderr, "model: loss on 8 batches %.4f before 60 steps of training, %.4f after\n", before / 8, after / 8);
    CHECK(after < 0.8 * before);
    bs_trainer_free(wt);
    for (int i = 0; i < nf; i++)
        bs_floor_f_free(&f[i]);
    free(f);
    free(g);
    bs_model_free(&m);
}

int main(void)
{
    test_lin();
    test_norm();
    test_rope();
    test_attn();
    test_small();
    test_model();
    TEST_MAIN_END();
}
