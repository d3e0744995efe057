#include "model/calib.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCALE_EPS 1e-3

int bs_calib_site(int which)
{
    switch (which) {
    case BS_WQ: case BS_WK: case BS_WV: return BS_SITE_ATT_IN;
    case BS_WO: return BS_SITE_ATT_OUT;
    case BS_W1: case BS_W3: return BS_SITE_FFN_IN;
    default: return BS_SITE_FFN_OUT;
    }
}

typedef struct {
    bs_calib *cb;
    float *xtx;   /* width x width scratch */
} hook_ctx;

/* One call carries a whole window (the state's batch is the window). */
static void observe(void *p, int layer, int site, const float *x, int ntok, int width)
{
    hook_ctx *h = p;
    bs_calib *cb = h->cb;
    double *sc = cb->scale[site] + (size_t)layer * width;
    for (int c = 0; c < width; c++) {
        double ss = 0.0;
        for (int t = 0; t < ntok; t++)
            ss += (double)x[(size_t)t * width + c] * x[(size_t)t * width + c];
        sc[c] += sqrt(ss);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, width, width, ntok, 1.0f, x, width, x, width, 0.0f,
                h->xtx, width);
    double *H = cb->hess[site] + (size_t)layer * width * width;
    for (size_t i = 0; i < (size_t)width * width; i++)
        H[i] += h->xtx[i];
}

void bs_calib_free(bs_calib *cb)
{
    for (int s = 0; s < BS_NSITES; s++) {
        free(cb->scale[s]);
        free(cb->hess[s]);
        free(cb->act[s]);
    }
    memset(cb, 0, sizeof *cb);
}

int bs_calib_run(bs_calib *cb, const bs_model *m, const bs_tokenizer *t, const char *text, size_t len,
                 int ctx, int max_windows, const bs_progress *pg, bs_err *e)
{
    const bs_config *c = &m->cfg;
    memset(cb, 0, sizeof *cb);
    cb->n_layers = c->n_layers;
    cb->width[BS_SITE_ATT_IN] = cb->width[BS_SITE_ATT_OUT] = cb->width[BS_SITE_FFN_IN] = c->dim;
    cb->width[BS_SITE_FFN_OUT] = c->hidden_dim;
    if (ctx > c->seq_len)
        ctx = c->seq_len;
    int *ids = NULL, n = 0;
    if (bs_tok_encode(t, text, len, 0, 1, &ids, &n, e))
        return -1;
    int win = ctx - 1, windows = n / win;
    if (max_windows > 0 && windows > max_windows)
        windows = max_windows;
    if (windows < 1) {
        free(ids);
        return bs_err_set(e, "the calibration text has %d tokens, fewer than one window of %d", n, win);
    }
    int maxw = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;
    hook_ctx h = {cb, malloc(sizeof(float) * (size_t)maxw * maxw)};
    int ok = h.xtx != NULL;
    for (int s = 0; ok && s < BS_NSITES; s++) {
        size_t w = (size_t)cb->width[s];
        cb->scale[s] = calloc((size_t)c->n_layers * w, sizeof(double));
        cb->hess[s] = calloc((size_t)c->n_layers * w * w, sizeof(double));
        cb->act[s] = malloc((size_t)c->n_layers * w * sizeof(float));
        ok = cb->scale[s] && cb->hess[s] && cb->act[s];
        for (size_t i = 0; ok && i < (size_t)c->n_layers * w; i++)
            cb->act[s][i] = 1.0f;
    }
    bs_state st;
    if (!ok || bs_state_init(&st, c, ctx, ctx, e)) {
        free(ids);
        free(h.xtx);
        bs_calib_free(cb);
        return ok ? -1 : bs_err_set(e, "out of memory for calibration statistics");
    }
    st.hook = observe;
    st.hook_ctx = &h;
    int *in = malloc(sizeof(int) * (size_t)ctx);
    int rc = in ? 0 : bs_err_set(e, "out of memory");
    bs_progress_report(pg, "calibration", 0, windows, NULL);
    for (int w = 0; !rc && w < windows; w++) {
        in[0] = bs_tok_bos(t);
        memcpy(in + 1, ids + (size_t)w * win, sizeof(int) * (size_t)win);
        if (!bs_forward(m, &st, in, ctx, 0, 0, e))
            rc = -1;
        else
            bs_progress_report(pg, "calibration", w + 1, windows, NULL);
    }
    cb->windows = windows;
    cb->tokens = (long)windows * ctx;
    free(in);
    free(ids);
    free(h.xtx);
    bs_state_free(&st);
    if (rc)
        bs_calib_free(cb);
    return rc;
}

/* W[:, j] *= a[j] for every row. */
static void scale_cols(float *w, int rows, int cols, const float *a)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            w[(size_t)i * cols + j] *= a[j];
}

static void div_row(float *w, int cols, float a)
{
    for (int j = 0; j < cols; j++)
        w[j] /= a;
}

int bs_calib_fold(bs_calib *cb, bs_model *m, float alpha, bs_err *e)
{
    const bs_config *c = &m->cfg;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    for (int l = 0; l < c->n_layers; l++) {
        bs_layer *L = &m->layers[l];
        float *a[BS_NSITES];
        for (int s = 0; s < BS_NSITES; s++) {
            a[s] = cb->act[s] + (size_t)l * cb->width[s];
            const double *sc = cb->scale[s] + (size_t)l * cb->width[s];
            for (int j = 0; j < cb->width[s]; j++)
                a[s][j] = (float)pow(sc[j] / cb->windows + SCALE_EPS, alpha);
        }
        /* wo's input channel (head h, index i) is a mix of wv row (h / group, i): one scale
         * per kv channel keeps the fold exact under grouped-query attention */
        for (int kv = 0; kv < c->n_kv_heads; kv++)
            for (int i = 0; i < hd; i++) {
                double mean = 0.0;
                for (int g = 0; g < group; g++)
                    mean += a[BS_SITE_ATT_OUT][(kv * group + g) * hd + i];
                mean /= group;
                for (int g = 0; g < group; g++)
                    a[BS_SITE_ATT_OUT][(kv * group + g) * hd + i] = (float)mean;
            }
        for (int j = 0; j < c->dim; j++) {
            L->att_norm[j] /= a[BS_SITE_ATT_IN][j];
            L->ffn_norm[j] /= a[BS_SITE_FFN_IN][j];
        }
        for (int kv = 0; kv < c->n_kv_heads; kv++)
            for (int i = 0; i < hd; i++)
                div_row(L->lin[BS_WV].w + (size_t)(kv * hd + i) * c->dim, c->dim,
                        a[BS_SITE_ATT_OUT][(kv * group) * hd + i]);
        for (int r = 0; r < c->hidden_dim; r++)
            div_row(L->lin[BS_W3].w + (size_t)r * c->dim, c->dim, a[BS_SITE_FFN_OUT][r]);
        for (int w = 0; w < BS_NLIN; w++) {
            bs_linear *lin = &L->lin[w];
            scale_cols(lin->w, lin->rows, lin->cols, a[bs_calib_site(w)]);
        }
        for (int s = 0; s < BS_NSITES; s++) {
            int n = cb->width[s];
            double *H = cb->hess[s] + (size_t)l * n * n;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    H[(size_t)i * n + j] /= (double)a[s][i] * a[s][j];
        }
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < BS_NLIN; w++) {
            const bs_linear *lin = &m->layers[l].lin[w];
            for (size_t i = 0; i < (size_t)lin->rows * lin->cols; i++)
                if (!isfinite(lin->w[i]))
                    return bs_err_set(e, "layers.%d.%s: activation scaling produced a non-finite weight", l,
                                      bs_lin_name(w));
        }
    return 0;
}

void bs_calib_hessian(const bs_calib *cb, int layer, int which, float *H)
{
    int s = bs_calib_site(which), n = cb->width[s];
    const double *src = cb->hess[s] + (size_t)layer * n * n;
    double inv = 1.0 / (double)(cb->tokens > 0 ? cb->tokens : 1);
    for (size_t i = 0; i < (size_t)n * n; i++)
        H[i] = (float)(src[i] * inv);
}
