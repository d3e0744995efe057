#include "model/train.h"
#include "kernels/rng.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/clock.h"
#include "kernels/crc32c.h"
#include "model/train_ops.h"

void bs_train_defaults(bs_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->minutes = 5.0;
    o->batch = 0;   /* 512 tokens a step */
    o->seq = 0;     /* the model's context, at most 256 */
    o->lr = 2e-3f;
    o->weight_decay = 0.0f;
    o->mse_weight = 10.0f;
    o->warmup = 50;
    o->seed = 1;
    o->checkpoint_every = 60.0;
    o->report_every = 2.0;
}

/* What one forward pass keeps for the backward (N = batch · seq rows). */
typedef struct {
    float *x;               /* (L + 1) × N×d: x[0] the embeddings, x[l + 1] the output of layer l */
    float *xn1, *rs1, *q, *k, *v, *P, *ao, *x2, *xn2, *rs2, *a, *b, *hh;   /* L × each */
    float *xf, *rsf, *logits;
} acts;

struct bs_trainer {
    const bs_model *teacher;
    bs_config c;
    int paths, B, T, N;
    float mse_weight;
    int nm;                  /* matrices: L · 7 */
    bs_tlin *lin;            /* nm · paths */
    float *g1, *g2;          /* L × d each: the trainable norm weights (views into params) */
    float *dg1, *dg2;
    size_t np;
    float *params, *grads, *m1, *m2;
    uint8_t *latent;         /* np flags */
    float *signs, *dsigns;   /* backing for every Su, Sv and their gradients */
    acts s, t;               /* student, teacher */
    float *dx, *dx2, *dxn, *dq, *dk, *dv, *dao, *da, *db, *dhh, *dz, *scratch;
};

static float *salloc(size_t n, int *bad)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        *bad = 1;
    return p;
}

static int acts_alloc(acts *a, const bs_config *c, int B, int T)
{
    size_t N = (size_t)B * T, L = (size_t)c->n_layers, d = (size_t)c->dim, kv = (size_t)c->kv_dim,
           h = (size_t)c->hidden_dim;
    int bad = 0;
    a->x = salloc((L + 1) * N * d, &bad);
    a->xn1 = salloc(L * N * d, &bad);
    a->rs1 = salloc(L * N, &bad);
    a->q = salloc(L * N * d, &bad);
    a->k = salloc(L * N * kv, &bad);
    a->v = salloc(L * N * kv, &bad);
    a->P = salloc(L * (size_t)B * c->n_heads * T * T, &bad);
    a->ao = salloc(L * N * d, &bad);
    a->x2 = salloc(L * N * d, &bad);
    a->xn2 = salloc(L * N * d, &bad);
    a->rs2 = salloc(L * N, &bad);
    a->a = salloc(L * N * h, &bad);
    a->b = salloc(L * N * h, &bad);
    a->hh = salloc(L * N * h, &bad);
    a->xf = salloc(N * d, &bad);
    a->rsf = salloc(N, &bad);
    a->logits = salloc(N * (size_t)c->vocab_size, &bad);
    return bad ? -1 : 0;
}

static void acts_free(acts *a)
{
    free(a->x); free(a->xn1); free(a->rs1); free(a->q); free(a->k); free(a->v); free(a->P); free(a->ao);
    free(a->x2); free(a->xn2); free(a->rs2); free(a->a); free(a->b); free(a->hh); free(a->xf); free(a->rsf);
    free(a->logits);
}

void bs_trainer_free(bs_trainer *t)
{
    if (!t)
        return;
    acts_free(&t->s);
    acts_free(&t->t);
    free(t->lin); free(t->params); free(t->grads); free(t->m1); free(t->m2); free(t->latent);
    free(t->signs); free(t->dsigns);
    free(t->dx); free(t->dx2); free(t->dxn); free(t->dq); free(t->dk); free(t->dv); free(t->dao); free(t->da);
    free(t->db); free(t->dhh); free(t->dz); free(t->scratch);
    free(t);
}

bs_trainer *bs_trainer_new(const bs_model *teacher, bs_floor_f *floors, int paths, int batch, int seq, float mse_weight,
                           bs_err *e)
{
    bs_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return bs_err_set(e, "out of memory"), NULL;
    const bs_config *c = &teacher->cfg;
    t->teacher = teacher;
    t->c = *c;
    t->paths = paths;
    t->B = batch;
    t->T = seq;
    t->N = batch * seq;
    t->mse_weight = mse_weight;
    t->nm = c->n_layers * BS_NLIN;
    int nl = t->nm * paths;
    /* the flat parameter array: every path's U, V, h, l, g, then the norm weights */
    size_t np = 0, ns = 0, scr = 0;
    for (int i = 0; i < nl; i++) {
        const bs_floor_f *f = &floors[i];
        np += (size_t)f->rank * (f->rows + f->cols) + (size_t)f->rows + f->rank + f->cols;
        ns += (size_t)f->rank * (f->rows + f->cols);
    }
    np += 2 * (size_t)c->n_layers * c->dim;
    t->np = np;
    int bad = 0;
    t->lin = calloc((size_t)nl, sizeof *t->lin);
    t->params = salloc(np, &bad);
    t->grads = salloc(np, &bad);
    t->m1 = salloc(np, &bad);
    t->m2 = salloc(np, &bad);
    t->latent = calloc(np, 1);
    t->signs = salloc(ns, &bad);
    t->dsigns = salloc(ns, &bad);
    if (!t->lin || !t->latent || bad || acts_alloc(&t->s, c, batch, seq) || acts_alloc(&t->t, c, batch, seq)) {
        bs_trainer_free(t);
        return bs_err_set(e, "out of memory for training (%zu parameters, %d tokens a step)", np, batch * seq), NULL;
    }
    size_t at = 0, sat = 0;
    for (int i = 0; i < nl; i++) {
        const bs_floor_f *f = &floors[i];
        bs_tlin *L = &t->lin[i];
        size_t mr = (size_t)f->rows * f->rank, nr = (size_t)f->cols * f->rank;
        L->m = f->rows;
        L->n = f->cols;
        L->r = f->rank;
        L->U = t->params + at; L->dU = t->grads + at;
        memcpy(L->U, f->U, mr * sizeof(float));
        memset(t->latent + at, 1, mr);
        at += mr;
        L->V = t->params + at; L->dV = t->grads + at;
        memcpy(L->V, f->V, nr * sizeof(float));
        memset(t->latent + at, 1, nr);
        at += nr;
        L->h = t->params + at; L->dh = t->grads + at;
        memcpy(L->h, f->h, (size_t)f->rows * sizeof(float));
        at += (size_t)f->rows;
        L->l = t->params + at; L->dl = t->grads + at;
        memcpy(L->l, f->l, (size_t)f->rank * sizeof(float));
        at += (size_t)f->rank;
        L->g = t->params + at; L->dg = t->grads + at;
        memcpy(L->g, f->g, (size_t)f->cols * sizeof(float));
        at += (size_t)f->cols;
        L->Su = t->signs + sat; L->dSu = t->dsigns + sat;
        L->Sv = L->Su + mr; L->dSv = L->dSu + mr;
        sat += mr + nr;
        size_t need = bs_tlin_scratch(L, t->N);
        scr = need > scr ? need : scr;
    }
    scr = bs_tattn_scratch(seq) > scr ? bs_tattn_scratch(seq) : scr;
    size_t d = (size_t)c->dim;
    t->g1 = t->params + at; t->dg1 = t->grads + at;
    at += (size_t)c->n_layers * d;
    t->g2 = t->params + at; t->dg2 = t->grads + at;
    for (int l = 0; l < c->n_layers; l++) {
        memcpy(t->g1 + l * d, teacher->layers[l].att_norm, d * sizeof(float));
        memcpy(t->g2 + l * d, teacher->layers[l].ffn_norm, d * sizeof(float));
    }
    size_t N = (size_t)t->N;
    t->dx = salloc(N * d, &bad);
    t->dx2 = salloc(N * d, &bad);
    t->dxn = salloc(N * d, &bad);
    t->dq = salloc(N * d, &bad);
    t->dk = salloc(N * (size_t)c->kv_dim, &bad);
    t->dv = salloc(N * (size_t)c->kv_dim, &bad);
    t->dao = salloc(N * d, &bad);
    t->da = salloc(N * (size_t)c->hidden_dim, &bad);
    t->db = salloc(N * (size_t)c->hidden_dim, &bad);
    t->dhh = salloc(N * (size_t)c->hidden_dim, &bad);
    t->dz = salloc(N * (size_t)c->vocab_size, &bad);
    t->scratch = salloc(scr, &bad);
    if (bad) {
        bs_trainer_free(t);
        return bs_err_set(e, "out of memory for training"), NULL;
    }
    return t;
}

float *bs_trainer_params(bs_trainer *t, size_t *n)
{
    *n = t->np;
    return t->params;
}

const float *bs_trainer_grads(const bs_trainer *t)
{
    return t->grads;
}

int bs_trainer_is_latent(const bs_trainer *t, size_t i)
{
    return i < t->np && t->latent[i];
}

/* Y (N×rows) = linear `which` of layer l applied to X: the teacher's dense weights or the
 * student's floor paths. */
static void lin_fwd(bs_trainer *t, int student, int l, int which, const float *X, float *Y, int accumulate)
{
    if (!student) {
        const bs_linear *lin = &t->teacher->layers[l].lin[which];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->N, lin->rows, lin->cols, 1.0f, X, lin->cols, lin->w,
                    lin->cols, accumulate ? 1.0f : 0.0f, Y, lin->rows);
        return;
    }
    for (int p = 0; p < t->paths; p++)
        bs_tlin_forward(&t->lin[(l * BS_NLIN + which) * t->paths + p], X, Y, t->N, accumulate || p > 0, t->scratch);
}

static void lin_bwd(bs_trainer *t, int l, int which, const float *X, const float *dY, float *dX)
{
    for (int p = 0; p < t->paths; p++)
        bs_tlin_backward(&t->lin[(l * BS_NLIN + which) * t->paths + p], X, dY, dX, t->N, t->scratch);
}

static void forward(bs_trainer *t, int student, const int *tokens)
{
    const bs_config *c = &t->c;
    acts *A = student ? &t->s : &t->t;
    int N = t->N, d = c->dim, kv = c->kv_dim, hid = c->hidden_dim, L = c->n_layers;
    size_t Nd = (size_t)N * d, Nkv = (size_t)N * kv, Nh = (size_t)N * hid;
    size_t Pl = (size_t)t->B * c->n_heads * t->T * t->T;
    for (int i = 0; i < N; i++)
        memcpy(A->x + (size_t)i * d, t->teacher->tok_emb + (size_t)tokens[i] * d, sizeof(float) * (size_t)d);
    for (int l = 0; l < L; l++) {
        float *X = A->x + l * Nd, *xn1 = A->xn1 + l * Nd, *q = A->q + l * Nd, *k = A->k + l * Nkv, *v = A->v + l * Nkv;
        float *ao = A->ao + l * Nd, *x2 = A->x2 + l * Nd, *xn2 = A->xn2 + l * Nd;
        float *a = A->a + l * Nh, *b = A->b + l * Nh, *hh = A->hh + l * Nh;
        const float *w1 = student ? t->g1 + (size_t)l * d : t->teacher->layers[l].att_norm;
        const float *w2 = student ? t->g2 + (size_t)l * d : t->teacher->layers[l].ffn_norm;
        /* attention: xn1 = norm(X) (N×d); q (N×d), k, v (N×kv); roped; ao (N×d); x2 = X + Wo ao */
        bs_tnorm_forward(X, w1, xn1, A->rs1 + (size_t)l * N, N, d, c->rms_eps);
        lin_fwd(t, student, l, BS_WQ, xn1, q, 0);
        lin_fwd(t, student, l, BS_WK, xn1, k, 0);
        lin_fwd(t, student, l, BS_WV, xn1, v, 0);
        bs_trope(q, N, t->T, c->n_heads, c->head_dim, c->rope_theta, 1);
        bs_trope(k, N, t->T, c->n_kv_heads, c->head_dim, c->rope_theta, 1);
        bs_tattn_forward(q, k, v, A->P + l * Pl, ao, t->B, t->T, c->n_heads, c->n_kv_heads, c->head_dim);
        memcpy(x2, X, sizeof(float) * Nd);
        lin_fwd(t, student, l, BS_WO, ao, x2, 1);
        /* FFN: xn2 = norm(x2); a = W1 xn2, b = W3 xn2 (N×hid); hh = silu(a) b; x' = x2 + W2 hh */
        bs_tnorm_forward(x2, w2, xn2, A->rs2 + (size_t)l * N, N, d, c->rms_eps);
        lin_fwd(t, student, l, BS_W1, xn2, a, 0);
        lin_fwd(t, student, l, BS_W3, xn2, b, 0);
        bs_tswiglu_forward(a, b, hh, (int)Nh);
        float *xo = A->x + (l + 1) * Nd;
        memcpy(xo, x2, sizeof(float) * Nd);
        lin_fwd(t, student, l, BS_W2, hh, xo, 1);
    }
    /* logits (N×V) = norm(x_L) clsᵀ */
    bs_tnorm_forward(A->x + L * Nd, t->teacher->final_norm, A->xf, A->rsf, N, d, c->rms_eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, c->vocab_size, d, 1.0f, A->xf, d, t->teacher->cls, d, 0.0f,
                A->logits, c->vocab_size);
}

static void backward(bs_trainer *t, double *mse)
{
    const bs_config *c = &t->c;
    acts *A = &t->s;
    int N = t->N, d = c->dim, kv = c->kv_dim, hid = c->hidden_dim, L = c->n_layers;
    size_t Nd = (size_t)N * d, Nkv = (size_t)N * kv, Nh = (size_t)N * hid;
    size_t Pl = (size_t)t->B * c->n_heads * t->T * t->T;
    /* dxf = dZ cls (N×d), then through the final norm (its weight is fixed) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, c->vocab_size, 1.0f, t->dz, c->vocab_size,
                t->teacher->cls, d, 0.0f, t->dxn, d);
    memset(t->dx, 0, sizeof(float) * Nd);
    bs_tnorm_backward(A->x + L * Nd, t->teacher->final_norm, A->rsf, t->dxn, t->dx, NULL, N, d);
    *mse = 0.0;
    for (int l = L - 1; l >= 0; l--) {
        /* the residual stream after layer l is matched to the teacher's */
        *mse += bs_tmse(A->x + (l + 1) * Nd, t->t.x + (l + 1) * Nd, t->dx, (int)Nd, t->mse_weight);
        float *X = A->x + l * Nd, *xn1 = A->xn1 + l * Nd, *q = A->q + l * Nd, *k = A->k + l * Nkv, *v = A->v + l * Nkv;
        float *ao = A->ao + l * Nd, *x2 = A->x2 + l * Nd, *xn2 = A->xn2 + l * Nd;
        float *a = A->a + l * Nh, *b = A->b + l * Nh, *hh = A->hh + l * Nh;
        /* x' = x2 + W2 hh: dx2 = dx', dhh = W2ᵀ dx' */
        memcpy(t->dx2, t->dx, sizeof(float) * Nd);
        memset(t->dhh, 0, sizeof(float) * Nh);
        lin_bwd(t, l, BS_W2, hh, t->dx, t->dhh);
        memset(t->da, 0, sizeof(float) * Nh);
        memset(t->db, 0, sizeof(float) * Nh);
        bs_tswiglu_backward(a, b, t->dhh, t->da, t->db, (int)Nh);
        memset(t->dxn, 0, sizeof(float) * Nd);
        lin_bwd(t, l, BS_W1, xn2, t->da, t->dxn);
        lin_bwd(t, l, BS_W3, xn2, t->db, t->dxn);
        bs_tnorm_backward(x2, t->g2 + (size_t)l * d, A->rs2 + (size_t)l * N, t->dxn, t->dx2, t->dg2 + (size_t)l * d, N, d);
        /* x2 = X + Wo ao: dX = dx2, dao = Woᵀ dx2; attention; rope back; q, k, v */
        memcpy(t->dx, t->dx2, sizeof(float) * Nd);
        memset(t->dao, 0, sizeof(float) * Nd);
        lin_bwd(t, l, BS_WO, ao, t->dx2, t->dao);
        memset(t->dq, 0, sizeof(float) * Nd);
        memset(t->dk, 0, sizeof(float) * Nkv);
        memset(t->dv, 0, sizeof(float) * Nkv);
        bs_tattn_backward(q, k, v, A->P + l * Pl, t->dao, t->dq, t->dk, t->dv, t->B, t->T, c->n_heads, c->n_kv_heads,
                          c->head_dim, t->scratch);
        bs_trope(t->dq, N, t->T, c->n_heads, c->head_dim, c->rope_theta, -1);
        bs_trope(t->dk, N, t->T, c->n_kv_heads, c->head_dim, c->rope_theta, -1);
        memset(t->dxn, 0, sizeof(float) * Nd);
        lin_bwd(t, l, BS_WQ, xn1, t->dq, t->dxn);
        lin_bwd(t, l, BS_WK, xn1, t->dk, t->dxn);
        lin_bwd(t, l, BS_WV, xn1, t->dv, t->dxn);
        bs_tnorm_backward(X, t->g1 + (size_t)l * d, A->rs1 + (size_t)l * N, t->dxn, t->dx, t->dg1 + (size_t)l * d, N, d);
    }
}

double bs_trainer_loss(bs_trainer *t, const int *tokens, int grads, double *kl, double *mse)
{
    int nl = t->nm * t->paths;
    for (int i = 0; i < nl; i++)
        bs_tlin_signs(&t->lin[i]);
    forward(t, 0, tokens);
    forward(t, 1, tokens);
    double k = bs_tkl(t->t.logits, t->s.logits, t->dz, t->N, t->c.vocab_size), m = 0.0;
    if (grads) {
        memset(t->grads, 0, sizeof(float) * t->np);
        size_t ns = 0;
        for (int i = 0; i < nl; i++)
            ns += (size_t)t->lin[i].r * (t->lin[i].m + t->lin[i].n);
        memset(t->dsigns, 0, sizeof(float) * ns);
        backward(t, &m);
        for (int i = 0; i < nl; i++)
            bs_tlin_surrogate(&t->lin[i]);
    } else {
        size_t Nd = (size_t)t->N * t->c.dim;
        for (int l = 1; l <= t->c.n_layers; l++)
            for (size_t i = 0; i < Nd; i++) {
                double dd = (double)t->s.x[l * Nd + i] - t->t.x[l * Nd + i];
                m += t->mse_weight * dd * dd / (double)Nd;
            }
    }
    if (kl)
        *kl = k;
    if (mse)
        *mse = m;
    return k + m;
}

void bs_trainer_export(const bs_trainer *t, bs_floor_f *floors)
{
    const bs_config *c = &t->c;
    for (int i = 0; i < t->nm * t->paths; i++) {
        const bs_tlin *L = &t->lin[i];
        bs_floor_f *f = &floors[i];
        int l = i / t->paths / BS_NLIN, which = i / t->paths % BS_NLIN;
        memcpy(f->U, L->U, sizeof(float) * (size_t)L->m * L->r);
        memcpy(f->V, L->V, sizeof(float) * (size_t)L->n * L->r);
        memcpy(f->h, L->h, sizeof(float) * (size_t)L->m);
        memcpy(f->l, L->l, sizeof(float) * (size_t)L->r);
        memcpy(f->g, L->g, sizeof(float) * (size_t)L->n);
        /* diag(g) acts on the norm's output: a trained norm weight w' in place of w is g·w'/w */
        const float *w = NULL, *wt = NULL;
        if (which == BS_WQ || which == BS_WK || which == BS_WV) {
            w = t->teacher->layers[l].att_norm;
            wt = t->g1 + (size_t)l * c->dim;
        } else if (which == BS_W1 || which == BS_W3) {
            w = t->teacher->layers[l].ffn_norm;
            wt = t->g2 + (size_t)l * c->dim;
        }
        for (int j = 0; w && j < L->n; j++)
            if (w[j] != 0.0f)
                f->g[j] *= wt[j] / w[j];
    }
}

/* ---- the loop --------------------------------------------------------------------- */

typedef struct {
    char magic[8];
    uint64_t np;
    uint32_t shape_crc, pad;
    int64_t step;
    double elapsed;
    uint64_t rng;
} ckpt_header;

static uint32_t shape_crc(const bs_trainer *t)
{
    uint32_t crc = 0;
    for (int i = 0; i < t->nm * t->paths; i++) {
        int s[3] = {t->lin[i].m, t->lin[i].n, t->lin[i].r};
        crc = bs_crc32c(crc, s, sizeof s);
    }
    return crc;
}

static int ckpt_save(const bs_trainer *t, const char *path, long step, double elapsed, uint64_t rng, bs_err *e)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return bs_err_set(e, "%s: cannot create: %s", tmp, strerror(errno));
    ckpt_header h = {"BSQAT01", t->np, shape_crc(t), 0, step, elapsed, rng};
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(t->params, sizeof(float), t->np, f) == t->np &&
             fwrite(t->m1, sizeof(float), t->np, f) == t->np && fwrite(t->m2, sizeof(float), t->np, f) == t->np;
    ok = fflush(f) == 0 && ok && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return bs_err_set(e, "%s: cannot write the training checkpoint", path);
    }
    return 0;
}

/* 1: resumed, 0: no checkpoint there, -1: one that does not fit (e set). */
static int ckpt_load(bs_trainer *t, const char *path, long *step, double *elapsed, uint64_t *rng, bs_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : bs_err_set(e, "%s: cannot open: %s", path, strerror(errno));
    ckpt_header h;
    int ok = fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, "BSQAT01", 8) && h.np == t->np &&
             h.shape_crc == shape_crc(t);
    ok = ok && fread(t->params, sizeof(float), t->np, f) == t->np && fread(t->m1, sizeof(float), t->np, f) == t->np &&
         fread(t->m2, sizeof(float), t->np, f) == t->np;
    fclose(f);
    if (!ok)
        return bs_err_set(e, "%s: not a training checkpoint of this model and floor (remove it to start over)", path);
    *step = (long)h.step;
    *elapsed = h.elapsed;
    *rng = h.rng;
    return 1;
}

static void adamw(bs_trainer *t, float lr, float wd, long step)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    for (size_t i = 0; i < t->np; i++) {
        float g = t->grads[i];
        t->m1[i] = b1 * t->m1[i] + (1.0f - b1) * g;
        t->m2[i] = b2 * t->m2[i] + (1.0f - b2) * g * g;
        float upd = (t->m1[i] / c1) / (sqrtf(t->m2[i] / c2) + eps);
        /* decoupled decay on the latents only: it pulls undecided signs toward flipping */
        t->params[i] -= lr * (upd + (t->latent[i] ? wd * t->params[i] : 0.0f));
    }
}

int bs_train_floor(const bs_model *teacher, const int *ids, int nids, int bos, bs_floor_f *floors, int paths,
                   const bs_train_opts *o, json_t *report, bs_err *e)
{
    /* windows as long as the contexts the model will be scored and served at: a floor
     * trained on 64 positions was measured at 4.9 perplexity at ctx 64 and 11.0 at ctx 256 */
    int seq = o->seq > 0 ? o->seq : teacher->cfg.seq_len < 256 ? teacher->cfg.seq_len : 256;
    int batch = o->batch > 0 ? o->batch : (512 + seq - 1) / seq;
    if (seq < 2 || nids < seq || !(o->minutes > 0 || o->max_steps > 0))
        return bs_err_set(e, "training: %d tokens of text, windows of %d, batch %d, %.2f minutes: nothing to do",
                          nids, seq, batch, o->minutes);
    bs_trainer *t = bs_trainer_new(teacher, floors, paths, batch, seq, o->mse_weight, e);
    if (!t)
        return -1;
    int *tokens = malloc(sizeof(int) * (size_t)t->N);
    if (!tokens) {
        bs_trainer_free(t);
        return bs_err_set(e, "out of memory");
    }
    long step = 0;
    double before = 0.0;   /* seconds trained before this run (a resume) */
    uint64_t rng = o->seed;
    int resumed = 0, rc = -1;
    if (o->checkpoint) {
        resumed = ckpt_load(t, o->checkpoint, &step, &before, &rng, e);
        if (resumed < 0)
            goto out;
    }
    double total = o->minutes > 0 ? o->minutes * 60.0 : INFINITY;
    double t0 = bs_now(), last_ck = t0, last_rep = -INFINITY, loss = 0, kl = 0, mse = 0, lr = 0;
    long step0 = step;
    for (;;) {
        double el = before + (bs_now() - t0);
        if (el >= total || (o->max_steps > 0 && step >= o->max_steps))
            break;
        for (int b = 0; b < t->B; b++) {
            int s = (int)(bs_splitmix64(&rng) % (uint64_t)(nids - (t->T - 1) + 1));
            tokens[b * t->T] = bos;
            memcpy(tokens + b * t->T + 1, ids + s, sizeof(int) * (size_t)(t->T - 1));
        }
        loss = bs_trainer_loss(t, tokens, 1, &kl, &mse);
        step++;
        /* warm-up over steps, then cosine over the time budget (or the steps) to 10% */
        double frac = isfinite(total) ? el / total : (double)step / (double)o->max_steps;
        if (o->max_steps > 0 && isfinite(total))
            frac = fmax(frac, (double)step / (double)o->max_steps);
        lr = o->lr * (0.1 + 0.9 * 0.5 * (1.0 + cos(M_PI * fmin(frac, 1.0))));
        if (step <= o->warmup)
            lr *= (double)step / (double)(o->warmup + 1);
        adamw(t, (float)lr, o->weight_decay, step);
        double now = bs_now();
        if (o->checkpoint && now - last_ck >= o->checkpoint_every) {
            if (ckpt_save(t, o->checkpoint, step, before + (now - t0), rng, e))
                goto out;
            last_ck = now;
        }
        if (o->progress && now - last_rep >= o->report_every) {
            double run = now - t0;
            bs_train_status st = {step, loss, kl, mse, run > 0 ? (double)(step - step0) * t->N / run : 0,
                                  before + run, isfinite(total) ? fmax(0, total - before - run) : 0, lr, resumed};
            o->progress(o->progress_ctx, &st);
            last_rep = now;
        }
    }
    double run = bs_now() - t0;
    if (o->checkpoint && ckpt_save(t, o->checkpoint, step, before + run, rng, e))
        goto out;
    if (o->progress) {
        bs_train_status st = {step, loss, kl, mse, run > 0 ? (double)(step - step0) * t->N / run : 0, before + run, 0,
                              lr, resumed};
        o->progress(o->progress_ctx, &st);
    }
    bs_trainer_export(t, floors);
    if (report)
        json_object_update_new(report, json_pack("{s:I, s:f, s:f, s:f, s:f, s:i, s:i, s:f, s:b}", "steps", (json_int_t)step,
                                                 "seconds", before + run, "loss", loss, "kl", kl, "mse", mse, "batch",
                                                 t->B, "seq", t->T, "lr", (double)o->lr, "resumed", resumed));
    rc = 0;
out:
    free(tokens);
    bs_trainer_free(t);
    return rc;
}
