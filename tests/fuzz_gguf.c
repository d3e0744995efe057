/* Fuzz target for the GGUF reader (model/gguf.c) and what is built on it: any bytes
 * through bs_gguf_open; every key read back through each typed getter, every array
 * element, every tensor's data touched; then the llama model loader and the GGUF
 * vocabulary. Each step must succeed or fail with a message, never read outside the
 * file (ASan watches the mapping's bounds through the touches below).
 *
 * libFuzzer (clang): ninja -C build-fuzz fuzz_gguf && build-fuzz/fuzz_gguf tests/fuzz/gguf
 * (scripts/fuzz.sh runs every target). Seeds: tests/fuzz/gguf, made by bs-fuzz-seeds. */
#include "tests/fuzz.h"

#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"

static void read_back(const bs_gguf *g)
{
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const bs_gguf_kv *kv = &g->kv[i];
        char key[256];
        size_t n = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
        memcpy(key, kv->key.s, n);
        key[n] = 0;
        int64_t iv;
        double fv;
        bs_gguf_str sv;
        if (bs_gguf_get_int(g, key, &iv) == 0)
            sink += (uint64_t)iv;
        if (bs_gguf_get_float(g, key, &fv) == 0)
            sink += (uint64_t)(fv == fv);
        if (bs_gguf_get_str(g, key, &sv) == 0 && sv.len)
            sink += (uint8_t)sv.s[sv.len - 1];
        if (kv->type == BS_GGUF_ARRAY) {
            /* a bounded sample of elements: first, last and a stride between */
            uint64_t step = kv->v.arr.n / 64 + 1;
            for (uint64_t k = 0; k < kv->v.arr.n; k += step) {
                if (kv->v.arr.strs) {
                    if (kv->v.arr.strs[k].len)
                        sink += (uint8_t)kv->v.arr.strs[k].s[kv->v.arr.strs[k].len - 1];
                } else if (kv->v.arr.type != BS_GGUF_ARRAY) {
                    sink += (uint64_t)bs_gguf_arr_i(kv, k) + (uint64_t)(bs_gguf_arr_f(kv, k) != 0);
                }
            }
            if (kv->v.arr.n && !kv->v.arr.strs && kv->v.arr.type != BS_GGUF_ARRAY)
                sink += (uint64_t)bs_gguf_arr_i(kv, kv->v.arr.n - 1);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const bs_gguf_tensor *t = &g->tensors[i];
        MUST(t->nbytes <= g->size && (const uint8_t *)t->data >= g->map &&
             (const uint8_t *)t->data + t->nbytes <= g->map + g->size);
        if (t->nbytes)
            sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        char name[256];
        size_t n = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
        memcpy(name, t->name.s, n);
        name[n] = 0;
        MUST(bs_gguf_tensor_find(g, name) != NULL || n != t->name.len || memchr(name, 0, n));
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_as_file(data, size);
    bs_gguf g;
    bs_err e = {{0}};
    if (bs_gguf_open(&g, path, &e)) {
        MUST(e.msg[0] != '\0');
        return 0;
    }
    read_back(&g);
    bs_tokenizer *t = bs_tok_from_gguf(&g, &e);
    if (t) {
        int *ids = NULL, n = 0;
        if (bs_tok_encode(t, "Once upon a time", 16, 1, bs_tok_add_space_prefix(t), &ids, &n, &e) == 0) {
            size_t len;
            char *s = bs_tok_decode(t, ids, n, &len);
            free(s);
        }
        free(ids);
        bs_tok_free(t);
    } else {
        MUST(e.msg[0] != '\0');
    }
    bs_gguf_close(&g);

    bs_model m;
    if (bs_model_load_gguf(&m, path, &e) == 0) {
        MUST(m.cfg.dim > 0 && m.cfg.vocab_size > 0 && m.layers && m.tok_emb);
        bs_model_free(&m);
    } else {
        MUST(e.msg[0] != '\0');
    }
    return 0;
}
