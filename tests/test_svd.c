#include "kernels/svd.h"
#include "kernels/rng.h"
#include "harness.h"

#include <stdint.h>

/* One weight matrix of a llama2.c checkpoint (rows = outputs, cols = inputs). */
typedef struct {
    char name[32];
    int rows, cols;
    const float *w;
} mat;

/* Reads a llama2.c .bin (7 int32 header, fp32 arrays) and points mats at the token
 * embedding and every layer's wq wk wv wo w1 w2 w3. Returns the count; *blob owns the data. */
static int load_llama2c(const char *path, float **blob, mat *mats, int cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    int32_t h[7];
    memcpy(h, buf, sizeof h);
    int dim = h[0], hid = h[1], L = h[2], nh = h[3], nkv = h[4];
    int vocab = h[5] < 0 ? -h[5] : h[5];
    int kv = dim * nkv / nh;
    const float *p = (const float *)(buf + sizeof h);
    size_t need = (size_t)vocab * dim + 2 * (size_t)L * dim + (size_t)L * dim * (2 * dim + 2 * kv)
                  + 3 * (size_t)L * dim * hid;
    if ((size_t)size < sizeof h + need * sizeof(float)) {
        free(buf);
        return -1;
    }
    int n = 0;
    const float *emb = p;
    p += (size_t)vocab * dim + (size_t)L * dim;
    const float *wq = p;  p += (size_t)L * dim * dim;
    const float *wk = p;  p += (size_t)L * kv * dim;
    const float *wv = p;  p += (size_t)L * kv * dim;
    const float *wo = p;  p += (size_t)L * dim * dim;
    p += (size_t)L * dim;
    const float *w1 = p;  p += (size_t)L * hid * dim;
    const float *w2 = p;  p += (size_t)L * dim * hid;
    const float *w3 = p;
    struct { const char *nm; const float *base; int r, c; } kinds[7] = {
        {"wq", wq, dim, dim}, {"wk", wk, kv, dim}, {"wv", wv, kv, dim}, {"wo", wo, dim, dim},
        {"w1", w1, hid, dim}, {"w2", w2, dim, hid}, {"w3", w3, hid, dim},
    };
    if (n < cap)
        mats[n++] = (mat){"tok_emb", vocab, dim, emb};
    for (int l = 0; l < L; l++)
        for (int t = 0; t < 7 && n < cap; t++) {
            mat *m = &mats[n++];
            snprintf(m->name, sizeof m->name, "%s.%d", kinds[t].nm, l);
            m->rows = kinds[t].r;
            m->cols = kinds[t].c;
            m->w = kinds[t].base + (size_t)l * kinds[t].r * kinds[t].c;
        }
    *blob = (float *)buf;
    return n;
}

/* ‖A − U diag(S) Vt‖_F in double. */
static double recon_error(const float *A, int m, int n, int k, const float *U, const float *S,
                          const float *Vt)
{
    double ss = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = A[(size_t)i * n + j];
            for (int t = 0; t < k; t++)
                v -= (double)U[(size_t)i * k + t] * S[t] * Vt[(size_t)t * n + j];
            ss += v * v;
        }
    return sqrt(ss);
}

/* max |XᵀX − I| over the k columns of X (rows×k, row stride ld) or, with rows_are_vecs,
 * over the k rows of a k×len matrix. */
static double orth_defect(const float *X, int len, int k, int rows_are_vecs)
{
    double worst = 0;
    for (int a = 0; a < k; a++)
        for (int b = a; b < k; b++) {
            double d = 0;
            for (int i = 0; i < len; i++) {
                double xa = rows_are_vecs ? X[(size_t)a * len + i] : X[(size_t)i * k + a];
                double xb = rows_are_vecs ? X[(size_t)b * len + i] : X[(size_t)i * k + b];
                d += xa * xb;
            }
            d = fabs(d - (a == b));
            if (d > worst)
                worst = d;
        }
    return worst;
}

static double frob(const float *A, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)A[i] * A[i];
    return sqrt(s);
}

typedef struct {
    double sv_rel;    /* worst |σ̃_i − σ_i| / σ_i over the top k */
    double err_ratio; /* worst ‖A − USVᵀ‖ / optimal rank-k error */
    double orth;      /* worst orthonormality defect of U and Vt */
    int runs, failures;
    int sketched;     /* runs that took the randomised path (k + p < min(m, n)) */
} stats;

/* Runs the truncated SVD of A for each k and compares with the exact SVD. */
static void check_matrix(const char *what, const float *A, int m, int n, stats *st)
{
    static const int ks[] = {1, 4, 8, 16};
    int r = m < n ? m : n;
    float *u = malloc(sizeof(float) * (size_t)m * r);
    float *s = malloc(sizeof(float) * (size_t)r);
    float *vt = malloc(sizeof(float) * (size_t)r * n);
    float *U = malloc(sizeof(float) * (size_t)m * 16);
    float *S = malloc(sizeof(float) * 16);
    float *Vt = malloc(sizeof(float) * 16 * (size_t)n);
    REQUIRE(u && s && vt && U && S && Vt);
    bs_err e = {0};
    int rc = bs_svd_full(A, m, n, u, s, vt, &e);
    CHECKF(rc == 0, "%s: %s", what, e.msg);
    if (rc) {
        free(u), free(s), free(vt), free(U), free(S), free(Vt);
        return;
    }
    double anorm = frob(A, (size_t)m * n);
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        int k = ks[t];
        rc = bs_svd_truncated(A, m, n, k, BS_SVD_OVERSAMPLE, BS_SVD_POWER_ITERS, 42 + k, U, S,
                              Vt, &e);
        CHECKF(rc == 0, "%s k=%d: %s", what, k, e.msg);
        if (rc)
            continue;
        st->runs++;
        st->sketched += k + BS_SVD_OVERSAMPLE < r;
        int bad = 0;
        for (int i = 0; i < k && i < r; i++) {
            /* Past the numerical rank both values are float rounding noise (~1e-6·σ_0):
             * the absolute floor 1e-5·σ_0 keeps those from counting as relative errors. */
            double diff = fabs((double)S[i] - s[i]);
            double rel = diff / (s[i] > 0 ? s[i] : 1);
            if (s[i] > 1e-4 * s[0] && rel > st->sv_rel)
                st->sv_rel = rel;
            if (diff > 1e-3 * s[i] + 1e-5 * s[0]) {
                fprintf(stderr, "%s k=%d: σ_%d %.7g vs exact %.7g (rel %.2e)\n", what, k, i,
                        S[i], s[i], rel);
                bad = 1;
            }
        }
        double opt = 0;
        for (int i = k; i < r; i++)
            opt += (double)s[i] * s[i];
        opt = sqrt(opt);
        double err = recon_error(A, m, n, k, U, S, Vt);
        double ratio = opt > 0 ? err / opt : 1;
        if (ratio > st->err_ratio)
            st->err_ratio = ratio;
        if (err > 1.01 * opt + 1e-6 * anorm) {
            fprintf(stderr, "%s k=%d: error %.7g vs optimal %.7g\n", what, k, err, opt);
            bad = 1;
        }
        double od = orth_defect(U, m, k, 0), ov = orth_defect(Vt, n, k, 1);
        if (od > st->orth)
            st->orth = od;
        if (ov > st->orth)
            st->orth = ov;
        if (od > 1e-4 || ov > 1e-4) {
            fprintf(stderr, "%s k=%d: orthonormality defect U %.2e Vt %.2e\n", what, k, od, ov);
            bad = 1;
        }
        st->failures += bad;
    }
    free(u), free(s), free(vt), free(U), free(S), free(Vt);
}

static void check_model(const char *file)
{
    float *blob = NULL;
    mat mats[64];
    int n = load_llama2c(bs_shared(file), &blob, mats, 64);
    CHECKF(n > 0, "cannot read %s", bs_shared(file));
    if (n <= 0)
        return;
    stats plain = {0}, absval = {0};
    for (int i = 0; i < n; i++) {
        const mat *mt = &mats[i];
        size_t sz = (size_t)mt->rows * mt->cols;
        char what[160];
        snprintf(what, sizeof what, "%.64s %.31s (%d×%d)", file, mt->name, mt->rows, mt->cols);
        check_matrix(what, mt->w, mt->rows, mt->cols, &plain);
        /* avd factors |R|: non-negative, with a dominant first singular value. */
        float *a = malloc(sizeof(float) * sz);
        REQUIRE(a);
        for (size_t j = 0; j < sz; j++)
            a[j] = fabsf(mt->w[j]);
        snprintf(what, sizeof what, "%.64s |%.31s| (%d×%d)", file, mt->name, mt->rows, mt->cols);
        check_matrix(what, a, mt->rows, mt->cols, &absval);
        free(a);
    }
    fprintf(stderr,
            "%s, %d matrices, oversample %d, power iterations %d:\n"
            "  W:   worst σ rel err %.2e, worst error/optimal %.6f, orth %.1e, %d/%d runs bad"
            " (%d randomised)\n"
            "  |W|: worst σ rel err %.2e, worst error/optimal %.6f, orth %.1e, %d/%d runs bad"
            " (%d randomised)\n",
            file, n, BS_SVD_OVERSAMPLE, BS_SVD_POWER_ITERS, plain.sv_rel, plain.err_ratio,
            plain.orth, plain.failures, plain.runs, plain.sketched, absval.sv_rel,
            absval.err_ratio, absval.orth, absval.failures, absval.runs, absval.sketched);
    /* Most runs must exercise the sketch, not the exact fallback. */
    CHECK(plain.sketched >= plain.runs / 2);
    CHECK(plain.failures == 0);
    CHECK(absval.failures == 0);
    CHECK(plain.runs == 4 * n && absval.runs == 4 * n);
    free(blob);
}

static float urand(uint64_t *s) { return (float)((bs_splitmix64(s) >> 40) * 0x1.0p-24) - 0.5f; }

/* A random m×n matrix with singular values decaying like 1/(1+i): products of random
 * factors give a realistic, non-flat spectrum. rank limits the rank (0 = full). */
static float *random_matrix(int m, int n, int rank, uint64_t seed)
{
    int r = rank ? rank : (m < n ? m : n);
    float *a = calloc((size_t)m * n, sizeof(float));
    float *x = malloc(sizeof(float) * (size_t)m);
    float *y = malloc(sizeof(float) * (size_t)n);
    REQUIRE(a && x && y);
    uint64_t s = seed;
    for (int t = 0; t < r; t++) {
        for (int i = 0; i < m; i++)
            x[i] = urand(&s);
        for (int j = 0; j < n; j++)
            y[j] = urand(&s) / (1.0f + t);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                a[(size_t)i * n + j] += x[i] * y[j];
    }
    free(x), free(y);
    return a;
}

static void check_edges(void)
{
    bs_err e = {0};
    stats st = {0};
    /* Wide and tall, through the same comparison as the real matrices. */
    float *wide = random_matrix(40, 150, 0, 1);
    check_matrix("random 40×150", wide, 40, 150, &st);
    float *tall = random_matrix(150, 40, 0, 2);
    check_matrix("random 150×40", tall, 150, 40, &st);
    /* Rank 5: the singular values past the rank must come out (near) zero. */
    float *low = random_matrix(120, 90, 5, 3);
    check_matrix("rank-5 120×90", low, 120, 90, &st);
    CHECKF(st.failures == 0, "%d of %d runs on random matrices failed", st.failures, st.runs);

    float U[150 * 48], S[48], Vt[48 * 150];
    int rc = bs_svd_truncated(low, 120, 90, 8, 10, 4, 7, U, S, Vt, &e);
    CHECKF(rc == 0, "%s", e.msg);
    CHECKF(S[5] < 1e-5 * S[0], "rank-5 matrix: σ_5 = %g (σ_0 %g)", S[5], S[0]);
    CHECK(orth_defect(U, 120, 8, 0) < 1e-4);

    /* k reaching min(m, n) falls back to the exact SVD; past it the extra triplets are zero. */
    float u[40 * 40], s[40], vt[40 * 150];
    REQUIRE(bs_svd_full(wide, 40, 150, u, s, vt, &e) == 0);
    rc = bs_svd_truncated(wide, 40, 150, 40, 10, 2, 1, U, S, Vt, &e);
    CHECKF(rc == 0, "%s", e.msg);
    int same = 1;
    for (int i = 0; i < 40; i++)
        same &= S[i] == s[i];
    CHECK(same);
    CHECK(recon_error(wide, 40, 150, 40, U, S, Vt) < 1e-4 * frob(wide, 40 * 150));
    rc = bs_svd_truncated(wide, 40, 150, 44, 0, 0, 1, U, S, Vt, &e);
    CHECKF(rc == 0, "%s", e.msg);
    CHECK(S[43] == 0 && S[40] == 0 && S[39] == s[39]);
    CHECK(U[0 * 44 + 42] == 0 && Vt[(size_t)42 * 150 + 7] == 0);
    /* oversampling that reaches min(m, n) also takes the exact path */
    float ut[150 * 40], st_[40], vtt[40 * 40];
    REQUIRE(bs_svd_full(tall, 150, 40, ut, st_, vtt, &e) == 0);
    rc = bs_svd_truncated(tall, 150, 40, 8, 32, 0, 1, U, S, Vt, &e);
    CHECK(rc == 0 && S[0] == st_[0] && S[7] == st_[7]);

    /* Zero matrix: all singular values 0, vectors still orthonormal, nothing non-finite. */
    float *zero = calloc(200 * 100, sizeof(float));
    REQUIRE(zero);
    rc = bs_svd_truncated(zero, 200, 100, 4, 8, 3, 5, U, S, Vt, &e);
    CHECKF(rc == 0, "%s", e.msg);
    CHECK(S[0] == 0 && S[3] == 0);
    CHECK(orth_defect(U, 200, 4, 0) < 1e-5 && orth_defect(Vt, 100, 4, 1) < 1e-5);

    /* Determinism for a seed; another seed agrees on the values. */
    float U2[150 * 16], S2[16], Vt2[16 * 150];
    REQUIRE(bs_svd_truncated(tall, 150, 40, 6, 10, 3, 99, U, S, Vt, &e) == 0);
    REQUIRE(bs_svd_truncated(tall, 150, 40, 6, 10, 3, 99, U2, S2, Vt2, &e) == 0);
    CHECK(memcmp(U, U2, sizeof(float) * 150 * 6) == 0 && memcmp(S, S2, sizeof(float) * 6) == 0
          && memcmp(Vt, Vt2, sizeof(float) * 6 * 40) == 0);
    REQUIRE(bs_svd_truncated(tall, 150, 40, 6, 10, 3, 100, U2, S2, Vt2, &e) == 0);
    CHECK(memcmp(U, U2, sizeof(float) * 150 * 6) != 0);
    CHECK_NEAR(S2[0], S[0], 1e-4 * S[0]);

    /* Bad input is refused with a message. */
    low[17] = NAN;
    e.msg[0] = 0;
    CHECK(bs_svd_truncated(low, 120, 90, 4, 4, 1, 1, U, S, Vt, &e) == -1);
    CHECKF(strstr(e.msg, "non-finite") != NULL, "message: %s", e.msg);
    low[17] = INFINITY;
    CHECK(bs_svd_full(low, 120, 90, U, S, Vt, &e) == -1);
    CHECK(bs_svd_truncated(wide, 40, 150, 0, 4, 1, 1, U, S, Vt, &e) == -1);
    CHECK(bs_svd_truncated(wide, 40, 150, 4, -1, 1, 1, U, S, Vt, &e) == -1);

    free(wide), free(tall), free(low), free(zero);
}

int main(void)
{
    check_edges();
    check_model("models/stories260K.bin");
    check_model("models/babyllama-d128.bin");
    TEST_MAIN_END();
}
