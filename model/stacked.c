#include "model/stacked.h"

#include <stdlib.h>
#include <string.h>

int bs_stacked_init(bs_stacked *sm, const bs_store *s, const uint8_t *stack, int n, bs_err *e)
{
    memset(sm, 0, sizeof *sm);
    sm->store = s;
    const bs_config *c = &s->cfg;
    size_t total = 0;
    for (int i = 0; i < s->n_matrices; i++)
        total += (size_t)s->mats[i].levels;
    sm->q = calloc((size_t)(unsigned)s->n_matrices, sizeof *sm->q);
    sm->ptrs = calloc(total, sizeof *sm->ptrs);
    sm->model.layers = calloc((size_t)(unsigned)c->n_layers, sizeof *sm->model.layers);
    if (!sm->q || !sm->ptrs || !sm->model.layers) {
        bs_stacked_free(sm);
        return bs_err_set(e, "out of memory for the stacked model");
    }
    size_t at = 0;
    for (int i = 0; i < s->n_matrices; i++) {
        sm->q[i].m = &s->mats[i];
        sm->q[i].blk = sm->ptrs + at;
        sm->q[i].floor = s->floor ? s->floor + s->floor_at[i] : NULL;
        at += (size_t)s->mats[i].levels;
    }
    for (int b = 0; b < s->n_blocks; b++)
        sm->q[s->blocks[b].matrix].blk[s->blocks[b].level] = stack + s->blocks[b].offset;
    sm->model.cfg = *c;
    sm->model.tok_emb = s->tok_emb;
    sm->model.cls = s->cls;
    sm->model.final_norm = s->final_norm;
    for (int l = 0; l < c->n_layers; l++) {
        sm->model.layers[l].att_norm = s->att_norm + (size_t)l * c->dim;
        sm->model.layers[l].ffn_norm = s->ffn_norm + (size_t)l * c->dim;
    }
    for (int i = 0; i < s->n_matrices; i++) {
        const bs_store_matrix *m = &s->mats[i];
        bs_linear *lin = &sm->model.layers[m->layer].lin[m->which];
        lin->rows = m->rows;
        lin->cols = m->cols;
        lin->w = NULL;
        lin->q = &sm->q[i];
    }
    bs_stacked_set_prefix(sm, n);
    return 0;
}

void bs_stacked_free(bs_stacked *sm)
{
    free(sm->q);
    free(sm->ptrs);
    free(sm->model.layers);
    memset(sm, 0, sizeof *sm);
}

void bs_stacked_set_prefix(bs_stacked *sm, int n)
{
    const bs_store *s = sm->store;
    if (n < 0)
        n = 0;
    if (n > s->n_blocks)
        n = s->n_blocks;
    for (int i = 0; i < s->n_matrices; i++)
        sm->q[i].depth = 0;
    /* block (M, l) always follows (M, l-1): the depth is the count in the prefix */
    for (int b = 0; b < n; b++)
        sm->q[s->blocks[b].matrix].depth++;
    /* a switching store (model/store.h): the floor alone below the switch, the blocks
     * alone from it on */
    int below = s->floor_switch > 0 && n < s->floor_switch;
    for (int i = 0; i < s->n_matrices && s->floor_switch > 0; i++) {
        sm->q[i].floor = below ? s->floor + s->floor_at[i] : NULL;
        if (below)
            sm->q[i].depth = 0;
    }
    sm->n = n;
}

int bs_stacked_to_dense(const bs_stacked *sm, bs_model *out, bs_err *e)
{
    const bs_model *m = &sm->model;
    const bs_config *c = &m->cfg;
    if (bs_model_alloc(out, c, m->cls == m->tok_emb, e))
        return -1;
    size_t emb = (size_t)c->vocab_size * c->dim;
    memcpy(out->tok_emb, m->tok_emb, emb * sizeof(float));
    if (out->cls != out->tok_emb)
        memcpy(out->cls, m->cls, emb * sizeof(float));
    memcpy(out->final_norm, m->final_norm, (size_t)c->dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        memcpy(out->layers[l].att_norm, m->layers[l].att_norm, (size_t)c->dim * sizeof(float));
        memcpy(out->layers[l].ffn_norm, m->layers[l].ffn_norm, (size_t)c->dim * sizeof(float));
        for (int w = 0; w < BS_NLIN; w++)
            bs_qmat_materialize(m->layers[l].lin[w].q, out->layers[l].lin[w].w);
    }
    return 0;
}
