#include "model/train_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void bs_tlin_signs(bs_tlin *t)
{
    for (size_t i = 0; i < (size_t)t->m * t->r; i++)
        t->Su[i] = t->U[i] >= 0.0f ? 1.0f : -1.0f;
    for (size_t i = 0; i < (size_t)t->n * t->r; i++)
        t->Sv[i] = t->V[i] >= 0.0f ? 1.0f : -1.0f;
}

size_t bs_tlin_scratch(const bs_tlin *t, int N)
{
    /* A (N×n), Bm (N×r), C (N×r), D (N×m) or dD, dC, dB, dA reusing them */
    return (size_t)N * ((size_t)t->n * 2 + (size_t)t->r * 3 + (size_t)t->m * 2);
}

/* A = X ⊙ g (N×n); Bm = A Sv (N×r); C = Bm ⊙ l (N×r); D = C Suᵀ (N×m). */
static void lin_parts(const bs_tlin *t, const float *X, int N, float *A, float *Bm, float *C, float *D)
{
    int m = t->m, n = t->n, r = t->r;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++)
            A[(size_t)i * n + j] = X[(size_t)i * n + j] * t->g[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, n, 1.0f, A, n, t->Sv, r, 0.0f, Bm, r);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < r; k++)
            C[(size_t)i * r + k] = Bm[(size_t)i * r + k] * t->l[k];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, m, r, 1.0f, C, r, t->Su, r, 0.0f, D, m);
}

void bs_tlin_forward(const bs_tlin *t, const float *X, float *Y, int N, int accumulate, float *scratch)
{
    int m = t->m, n = t->n, r = t->r;
    float *A = scratch, *Bm = A + (size_t)N * n, *C = Bm + (size_t)N * r, *D = C + (size_t)N * r;
    lin_parts(t, X, N, A, Bm, C, D);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < m; o++) {
            float y = D[(size_t)i * m + o] * t->h[o];
            Y[(size_t)i * m + o] = accumulate ? Y[(size_t)i * m + o] + y : y;
        }
}

void bs_tlin_backward(const bs_tlin *t, const float *X, const float *dY, float *dX, int N, float *scratch)
{
    int m = t->m, n = t->n, r = t->r;
    float *A = scratch, *Bm = A + (size_t)N * n, *C = Bm + (size_t)N * r, *D = C + (size_t)N * r;
    float *dD = D + (size_t)N * m, *dC = dD + (size_t)N * m, *dA = dC + (size_t)N * r;
    lin_parts(t, X, N, A, Bm, C, D);
    /* Y = D ⊙ h:  dh = Σ_t dY ⊙ D,  dD = dY ⊙ h */
    for (int i = 0; i < N; i++)
        for (int o = 0; o < m; o++) {
            t->dh[o] += dY[(size_t)i * m + o] * D[(size_t)i * m + o];
            dD[(size_t)i * m + o] = dY[(size_t)i * m + o] * t->h[o];
        }
    /* D = C Suᵀ:  dC = dD Su (N×r),  dSu += dDᵀ C (m×r) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, m, 1.0f, dD, m, t->Su, r, 0.0f, dC, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, r, N, 1.0f, dD, m, C, r, 1.0f, t->dSu, r);
    /* C = Bm ⊙ l:  dl = Σ_t dC ⊙ Bm,  dB = dC ⊙ l (in place of dC) */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < r; k++) {
            t->dl[k] += dC[(size_t)i * r + k] * Bm[(size_t)i * r + k];
            dC[(size_t)i * r + k] *= t->l[k];
        }
    /* Bm = A Sv:  dA = dB Svᵀ (N×n),  dSv += Aᵀ dB (n×r) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, n, r, 1.0f, dC, r, t->Sv, r, 0.0f, dA, n);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, r, N, 1.0f, A, n, dC, r, 1.0f, t->dSv, r);
    /* A = X ⊙ g:  dg = Σ_t dA ⊙ X,  dX += dA ⊙ g */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++) {
            t->dg[j] += dA[(size_t)i * n + j] * X[(size_t)i * n + j];
            if (dX)
                dX[(size_t)i * n + j] += dA[(size_t)i * n + j] * t->g[j];
        }
}

void bs_tlin_surrogate(bs_tlin *t)
{
    const float k = BS_TRAIN_SURROGATE_K;
    for (size_t i = 0; i < (size_t)t->m * t->r; i++) {
        float th = tanhf(k * t->U[i]);
        t->dU[i] += t->dSu[i] * k * (1.0f - th * th);
    }
    for (size_t i = 0; i < (size_t)t->n * t->r; i++) {
        float th = tanhf(k * t->V[i]);
        t->dV[i] += t->dSv[i] * k * (1.0f - th * th);
    }
}

void bs_tnorm_forward(const float *X, const float *w, float *Y, float *rs, int N, int d, float eps)
{
    for (int i = 0; i < N; i++) {
        const float *x = X + (size_t)i * d;
        double ss = 0.0;
        for (int j = 0; j < d; j++)
            ss += (double)x[j] * x[j];
        float s = (float)(1.0 / sqrt(ss / d + eps));
        rs[i] = s;
        for (int j = 0; j < d; j++)
            Y[(size_t)i * d + j] = x[j] * s * w[j];
    }
}

void bs_tnorm_backward(const float *X, const float *w, const float *rs, const float *dY, float *dX, float *dw, int N,
                       int d)
{
    /* y_j = x_j s w_j, s = (mean x² + eps)^-1/2, ds/dx_j = −s³ x_j / d:
     * dx_j = s w_j dy_j − x_j s³/d · Σ_i dy_i w_i x_i */
    for (int i = 0; i < N; i++) {
        const float *x = X + (size_t)i * d, *dy = dY + (size_t)i * d;
        float s = rs[i];
        double dot = 0.0;
        for (int j = 0; j < d; j++)
            dot += (double)dy[j] * w[j] * x[j];
        float c = (float)(dot * s * s * s / d);
        for (int j = 0; j < d; j++) {
            dX[(size_t)i * d + j] += s * w[j] * dy[j] - x[j] * c;
            if (dw)
                dw[j] += dy[j] * x[j] * s;
        }
    }
}

void bs_trope(float *X, int N, int T, int heads, int hd, float theta, int dir)
{
    /* the pairing and frequencies of kernels/ops.c bs_rope */
    for (int t = 0; t < N; t++) {
        int pos = t % T;
        float *row = X + (size_t)t * heads * hd;
        for (int i = 0; i < hd; i += 2) {
            float ang = (float)pos / powf(theta, (float)i / (float)hd);
            float c = cosf(ang), s = dir > 0 ? sinf(ang) : -sinf(ang);
            for (int h = 0; h < heads; h++) {
                float *v = row + h * hd + i, a = v[0], b = v[1];
                v[0] = a * c - b * s;
                v[1] = a * s + b * c;
            }
        }
    }
}

/* Per sequence and head: S = Q Kᵀ · scale (T×T, causal), P = softmax(S), O = P V. Rows of
 * one head are strided by the width of q (or k, v): sgemm takes them with lda. */
void bs_tattn_forward(const float *q, const float *k, const float *v, float *P, float *out, int B, int T, int H,
                      int KV, int hd)
{
    int qw = H * hd, kw = KV * hd, group = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            const float *Q = q + (size_t)b * T * qw + h * hd, *K = k + (size_t)b * T * kw + kh * hd;
            const float *V = v + (size_t)b * T * kw + kh * hd;
            float *p = P + ((size_t)b * H + h) * T * T, *O = out + (size_t)b * T * qw + h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, Q, qw, K, kw, 0.0f, p, T);
            for (int t = 0; t < T; t++) {
                float *row = p + (size_t)t * T, mx = row[0];
                for (int j = 1; j <= t; j++)
                    mx = row[j] > mx ? row[j] : mx;
                double sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = (float)(1.0 / sum);
                for (int j = 0; j <= t; j++)
                    row[j] *= inv;
                for (int j = t + 1; j < T; j++)
                    row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, V, kw, 0.0f, O, qw);
        }
}

size_t bs_tattn_scratch(int T)
{
    return (size_t)T * T;
}

void bs_tattn_backward(const float *q, const float *k, const float *v, const float *P, const float *dout, float *dq,
                       float *dk, float *dv, int B, int T, int H, int KV, int hd, float *scratch)
{
    int qw = H * hd, kw = KV * hd, group = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    float *dS = scratch;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            const float *Q = q + (size_t)b * T * qw + h * hd, *K = k + (size_t)b * T * kw + kh * hd;
            const float *V = v + (size_t)b * T * kw + kh * hd, *dO = dout + (size_t)b * T * qw + h * hd;
            const float *p = P + ((size_t)b * H + h) * T * T;
            float *dQ = dq + (size_t)b * T * qw + h * hd, *dK = dk + (size_t)b * T * kw + kh * hd;
            float *dV = dv + (size_t)b * T * kw + kh * hd;
            /* O = P V: dV += Pᵀ dO, dP = dO Vᵀ (into dS) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, dO, qw, 1.0f, dV, kw);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO, qw, V, kw, 0.0f, dS, T);
            /* softmax: dS_j = p_j (dP_j − Σ_i p_i dP_i), times the score scale; zero above the diagonal */
            for (int t = 0; t < T; t++) {
                const float *pr = p + (size_t)t * T;
                float *dr = dS + (size_t)t * T;
                double pdp = 0.0;
                for (int j = 0; j <= t; j++)
                    pdp += (double)pr[j] * dr[j];
                for (int j = 0; j <= t; j++)
                    dr[j] = pr[j] * (dr[j] - (float)pdp) * scale;
                for (int j = t + 1; j < T; j++)
                    dr[j] = 0.0f;
            }
            /* S = Q Kᵀ: dQ += dS K, dK += dSᵀ Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T, K, kw, 1.0f, dQ, qw);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T, Q, qw, 1.0f, dK, kw);
        }
}

void bs_tswiglu_forward(const float *A, const float *Bv, float *H, int n)
{
    for (int i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-A[i]));
        H[i] = A[i] * sg * Bv[i];
    }
}

void bs_tswiglu_backward(const float *A, const float *Bv, const float *dH, float *dA, float *dB, int n)
{
    for (int i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-A[i]));
        float silu = A[i] * sg;
        dA[i] += dH[i] * Bv[i] * sg * (1.0f + A[i] * (1.0f - sg));
        dB[i] += dH[i] * silu;
    }
}

double bs_tkl(const float *Zt, const float *Zs, float *dZs, int N, int V)
{
    double kl = 0.0;
    for (int i = 0; i < N; i++) {
        const float *zt = Zt + (size_t)i * V, *zs = Zs + (size_t)i * V;
        float mt = zt[0], ms = zs[0];
        for (int c = 1; c < V; c++) {
            mt = zt[c] > mt ? zt[c] : mt;
            ms = zs[c] > ms ? zs[c] : ms;
        }
        double st = 0.0, ss = 0.0;
        for (int c = 0; c < V; c++) {
            st += exp((double)zt[c] - mt);
            ss += exp((double)zs[c] - ms);
        }
        double lt = mt + log(st), ls = ms + log(ss);
        for (int c = 0; c < V; c++) {
            double pt = exp(zt[c] - lt), ps = exp(zs[c] - ls);
            if (pt > 0)
                kl += pt * ((zt[c] - lt) - (zs[c] - ls));
            dZs[(size_t)i * V + c] = (float)((ps - pt) / N);
        }
    }
    return kl / N;
}

double bs_tmse(const float *Xs, const float *Xt, float *dXs, int n, float w)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double d = (double)Xs[i] - Xt[i];
        s += d * d;
        dXs[i] += (float)(2.0 * w * d / n);
    }
    return w * s / n;
}
