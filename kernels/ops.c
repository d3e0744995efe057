#include "kernels/ops.h"

#include <cblas.h>
#include <math.h>

void bs_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        out[i] = x[i] * inv * w[i];
}

void bs_softmax(float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

void bs_matmul(float *y, const float *x, const float *w, int ntok, int m, int n, int accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;
    if (ntok == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, w, n, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ntok, m, n, 1.0f, x, n, w, n, beta, y, m);
}

void bs_matmul_ld(float *y, int ldy, const float *x, const float *w, int ntok, int m, int n, int accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;
    if (ntok == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, w, n, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ntok, m, n, 1.0f, x, n, w, n, beta, y, ldy);
}

void bs_rope(float *vec, int n_heads, int head_dim, int pos, float theta)
{
    for (int i = 0; i < head_dim; i += 2) {
        float freq = 1.0f / powf(theta, (float)i / (float)head_dim);
        float ang = (float)pos * freq;
        float c = cosf(ang), s = sinf(ang);
        for (int h = 0; h < n_heads; h++) {
            float *v = vec + h * head_dim + i;
            float a = v[0], b = v[1];
            v[0] = a * c - b * s;
            v[1] = a * s + b * c;
        }
    }
}

void bs_swiglu(float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        float v = a[i];
        a[i] = v / (1.0f + expf(-v)) * b[i];
    }
}

int bs_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

double bs_logsumexp(const float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    return mx + log(s);
}

void bs_blas_threads(int n)
{
    if (n > 0)
        openblas_set_num_threads(n);
}
