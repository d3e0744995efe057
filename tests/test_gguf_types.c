/* GGUF F16 and BF16 tensors: stories260K.gguf is re-encoded here with every tensor in
 * F16 (then BF16), keeping its metadata bytes, and must load to the fp32 weights rounded
 * the same way. */
#include "harness.h"
#include "kernels/half.h"
#include "model/gguf.h"
#include "model/load.h"

#include <stdint.h>
#include <unistd.h>

static void put(FILE *f, const void *p, size_t n)
{
    if (fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "write failed\n");
        exit(1);
    }
}

/* Writes src's metadata unchanged and every tensor converted to `type`. */
static void reencode(const char *src, const char *dst, uint32_t type)
{
    bs_gguf g;
    bs_err e = {{0}};
    REQUIRE(bs_gguf_open(&g, src, &e) == 0);
    FILE *f = fopen(dst, "wb");
    REQUIRE(f);
    /* header and metadata: everything before the first tensor's name length */
    size_t ti_start = (size_t)((const uint8_t *)g.tensors[0].name.s - g.map) - 8;
    put(f, g.map, ti_start);
    uint64_t off = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const bs_gguf_tensor *t = &g.tensors[i];
        put(f, &t->name.len, 8);
        put(f, t->name.s, t->name.len);
        put(f, &t->n_dims, 4);
        put(f, t->dims, 8 * t->n_dims);
        put(f, &type, 4);
        put(f, &off, 8);
        off += (t->nbytes / 4 * 2 + g.alignment - 1) / g.alignment * g.alignment;
    }
    long pos = ftell(f);
    while (pos % (long)g.alignment) {
        fputc(0, f);
        pos++;
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const bs_gguf_tensor *t = &g.tensors[i];
        REQUIRE(t->type == BS_GGML_F32);
        size_t n = t->nbytes / 4;
        for (size_t j = 0; j < n; j++) {
            float v;
            memcpy(&v, (const uint8_t *)t->data + 4 * j, 4);
            uint16_t h = type == BS_GGML_F16 ? bs_f32_to_fp16(v) : bs_f32_to_bf16(v);
            put(f, &h, 2);
        }
        size_t pad = (size_t)((2 * n + g.alignment - 1) / g.alignment * g.alignment - 2 * n);
        for (size_t j = 0; j < pad; j++)
            fputc(0, f);
    }
    fclose(f);
    bs_gguf_close(&g);
}

static float rounded(float v, uint32_t type)
{
    return type == BS_GGML_F16 ? bs_fp16_to_f32(bs_f32_to_fp16(v)) : bs_bf16_to_f32(bs_f32_to_bf16(v));
}

static int matches(const float *got, const float *ref, size_t n, uint32_t type)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != rounded(ref[i], type))
            return 0;
    return 1;
}

int main(void)
{
    bs_model ref;
    bs_err e = {{0}};
    REQUIRE(bs_model_load(&ref, bs_shared("models/stories260K.bin"), &e) == 0);
    const bs_config *c = &ref.cfg;
    uint32_t types[2] = {BS_GGML_F16, BS_GGML_BF16};
    for (int k = 0; k < 2; k++) {
        char path[256];
        snprintf(path, sizeof path, "/tmp/bs_test_gguf_%d_%u.gguf", (int)getpid(), types[k]);
        reencode(bs_shared("models/stories260K.gguf"), path, types[k]);
        bs_model m;
        if (bs_model_load(&m, path, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            REQUIRE(0);
        }
        int bad = !matches(m.tok_emb, ref.tok_emb, (size_t)c->vocab_size * c->dim, types[k]) +
                  !matches(m.final_norm, ref.final_norm, (size_t)c->dim, types[k]);
        for (int l = 0; l < c->n_layers; l++) {
            bad += !matches(m.layers[l].att_norm, ref.layers[l].att_norm, (size_t)c->dim, types[k]);
            for (int w = 0; w < BS_NLIN; w++)
                bad += !matches(m.layers[l].lin[w].w, ref.layers[l].lin[w].w,
                                (size_t)m.layers[l].lin[w].rows * m.layers[l].lin[w].cols, types[k]);
        }
        CHECKF(bad == 0, "%d tensors differ for type %u", bad, types[k]);
        /* the rounded weights still carry the model: same first greedy tokens */
        bs_tokenizer *t = bs_tok_load_for(path, NULL, m.cfg.vocab_size, &e);
        REQUIRE(t);
        CHECK(bs_tok_vocab_size(t) == 512);
        bs_tok_free(t);
        bs_model_free(&m);
        unlink(path);
    }
    bs_model_free(&ref);
    TEST_MAIN_END();
}
