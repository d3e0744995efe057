/* Round-to-nearest and GPTQ baselines (asymmetric, group 32, fp16 scale and min),
 * written as stores of one qasym block per matrix so `eval` runs them the same way. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/gptq.h"
#include "model/calib.h"
#include "model/compress.h"
#include "model/progress.h"
#include "model/store.h"

#define BASE_GROUP 32

static void pack_codes(const uint8_t *codes, int rows, int cols, int bits, uint8_t *out)
{
    size_t rb = ((size_t)cols * bits + 7) / 8;
    memset(out, 0, rb * (size_t)rows);
    for (int i = 0; i < rows; i++) {
        uint8_t *row = out + (size_t)i * rb;
        for (int j = 0; j < cols; j++) {
            size_t bit = (size_t)j * bits;
            for (int b = 0; b < bits; b++, bit++)
                if ((codes[(size_t)i * cols + j] >> b) & 1)
                    row[bit >> 3] |= (uint8_t)(1u << (bit & 7));
        }
    }
}

int bs_quantize_baseline(const bs_model *src, const bs_tokenizer *tok, const char *calib, size_t calib_len,
                         int method, int bits, int ctx, int calib_windows, const bs_progress *pg,
                         const char *out_path, json_t *report, bs_err *e)
{
    if (bits < 2 || bits > 8)
        return bs_err_set(e, "bits must lie in 2..8 (got %d)", bits);
    if (method == BS_BASE_GPTQ && !calib)
        return bs_err_set(e, "GPTQ needs calibration text");
    if (bs_compress_check_model(src, NULL, 0, e))
        return -1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const bs_config *c = &src->cfg;
    int nm = c->n_layers * BS_NLIN, rc = -1;
    bs_calib cb = {0};
    bs_store_matrix *mats = calloc((size_t)nm, sizeof *mats);
    bs_store_block *blocks = calloc((size_t)nm, sizeof *blocks);
    uint8_t **payload = calloc((size_t)nm, sizeof *payload);
    if (!mats || !blocks || !payload) {
        bs_err_set(e, "out of memory");
        goto out;
    }
    if (method == BS_BASE_GPTQ && bs_calib_run(&cb, src, tok, calib, calib_len, ctx, calib_windows, pg, e))
        goto out;
    const char *stage = method == BS_BASE_GPTQ ? "gptq" : "rtn";
    bs_progress_report(pg, stage, 0, nm, NULL);
    for (int i = 0; i < nm; i++) {
        int l = i / BS_NLIN, w = i % BS_NLIN;
        const bs_linear *lin = &src->layers[l].lin[w];
        bs_store_matrix *m = &mats[i];
        *m = (bs_store_matrix){.layer = l, .which = w, .rows = lin->rows, .cols = lin->cols, .kind = BS_KIND_QASYM,
                               .levels = 1, .group = BASE_GROUP, .bits = bits};
        snprintf(m->name, sizeof m->name, "layers.%d.%s", l, bs_lin_name(w));
        size_t n = (size_t)m->rows * m->cols, G = bs_block_groups(m);
        payload[i] = calloc(1, bs_block_bytes(m, 0));
        float *Q = malloc(sizeof(float) * n), *H = NULL;
        uint8_t *codes = malloc(n);
        if (!payload[i] || !Q || !codes) {
            free(Q);
            free(codes);
            bs_err_set(e, "out of memory");
            goto out;
        }
        uint16_t *scales = (uint16_t *)payload[i], *mins = scales + (size_t)m->rows * G;
        int r;
        if (method == BS_BASE_GPTQ) {
            H = malloc(sizeof(float) * (size_t)m->cols * m->cols);
            if (H)
                bs_calib_hessian(&cb, l, w, H);
            bs_gptq_opts go = BS_GPTQ_OPTS_DEFAULT;
            r = H ? bs_gptq_asym(lin->w, m->rows, m->cols, H, BS_HESS_F32, &go, bits, BASE_GROUP, Q, codes, scales,
                                 mins, e) : bs_err_set(e, "out of memory");
        } else {
            r = bs_quant_rtn_asym(lin->w, m->rows, m->cols, bits, BASE_GROUP, Q, codes, scales, mins, e);
        }
        if (!r)
            pack_codes(codes, m->rows, m->cols, bits, (uint8_t *)(mins + (size_t)m->rows * G));
        free(Q);
        free(H);
        free(codes);
        if (r) {
            bs_err_wrap(e, "%s", m->name);
            goto out;
        }
        blocks[i] = (bs_store_block){.matrix = i, .level = 0};
        bs_progress_report(pg, stage, i + 1, nm, m->name);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    json_t *info = json_pack("{s:s, s:i, s:i, s:f}", "baseline", method == BS_BASE_GPTQ ? "gptq" : "rtn", "bits", bits,
                             "group", BASE_GROUP, "seconds", secs);
    bs_store_out so = {.model = src, .tok = tok, .n_matrices = nm, .mats = mats, .n_blocks = nm, .blocks = blocks,
                        .payload = (const uint8_t *const *)payload, .info = info};
    bs_progress_report(pg, "write", 0, 1, out_path);
    rc = bs_store_write(out_path, &so, e);
    if (!rc)
        bs_progress_report(pg, "write", 1, 1, out_path);
    if (!rc && report)
        json_object_update(report, info);
    json_decref(info);
out:
    if (payload)
        for (int i = 0; i < nm; i++)
            free(payload[i]);
    free(payload);
    free(mats);
    free(blocks);
    bs_calib_free(&cb);
    return rc;
}
