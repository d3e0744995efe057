/* Quantized GGUF: every tensor of every gguf-kquant/ fixture dequantizes to exactly
 * the float32 bytes llama.cpp's reference gives (sha256 from the .ref.json beside it),
 * every gguf-quant/ file loads, and types without a dequantizer are refused by name. */
#include "harness.h"
#include "kernels/sha256.h"
#include "kernels/dequant.h"
#include "model/forward.h"
#include "model/gguf.h"
#include "model/load.h"

#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Checks one fixture against its reference; returns the number of tensors matched. */
static int check_fixture(const char *gguf_path, const char *ref_path, int *by_type)
{
    json_error_t je;
    json_t *ref = json_load_file(ref_path, 0, &je);
    REQUIRE(ref);
    bs_gguf g;
    bs_err e = {{0}};
    if (bs_gguf_open(&g, gguf_path, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        REQUIRE(0);
    }
    json_t *tensors = json_object_get(ref, "tensors");
    REQUIRE(json_is_array(tensors));
    CHECK(json_array_size(tensors) == g.n_tensors);
    int ok = 0;
    size_t i;
    json_t *jt;
    json_array_foreach(tensors, i, jt) {
        const char *name = json_string_value(json_object_get(jt, "name"));
        const char *type = json_string_value(json_object_get(jt, "type"));
        uint32_t type_id = (uint32_t)json_integer_value(json_object_get(jt, "type_id"));
        const char *raw = json_string_value(json_object_get(jt, "raw_sha256"));
        const char *want = json_string_value(json_object_get(json_object_get(jt, "dequant"), "sha256_f32le"));
        REQUIRE(name && type && raw && want);
        const bs_gguf_tensor *t = bs_gguf_tensor_find(&g, name);
        CHECKF(t, "%s: %s missing", gguf_path, name);
        if (!t)
            continue;
        CHECKF(t->type == type_id && strcmp(bs_ggml_type_name(t->type), type) == 0,
               "%s: type %u (%s) vs %u (%s)", name, t->type, bs_ggml_type_name(t->type), type_id, type);
        char got[65];
        bs_sha256_hex(t->data, t->nbytes, got);
        CHECKF(strcmp(got, raw) == 0, "%s %s: raw bytes differ", gguf_path, name);
        size_t n = (size_t)(t->dims[0] * t->dims[1] * t->dims[2] * t->dims[3]);
        float *f = malloc(n * sizeof *f);
        REQUIRE(f);
        CHECKF(bs_dequant(t->type, t->data, f, n) == 0, "%s: %s not dequantized", name, type);
        bs_sha256_hex(f, n * sizeof *f, got);
        int same = strcmp(got, want) == 0;
        CHECKF(same, "%s %s (%s): dequantized sha256 %s, want %s", gguf_path, name, type, got, want);
        if (same) {
            ok++;
            by_type[t->type & 63]++;
        }
        free(f);
    }
    bs_gguf_close(&g);
    json_decref(ref);
    return ok;
}

static void kquant_fixtures(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", bs_shared("models/gguf-kquant"));
    DIR *d = opendir(dir);
    REQUIRE(d);
    int files = 0, tensors = 0, by_type[64] = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".gguf"))
            continue;
        char gp[2048], rp[2100];
        snprintf(gp, sizeof gp, "%s/%s", dir, de->d_name);
        snprintf(rp, sizeof rp, "%s.ref.json", gp);
        REQUIRE(access(rp, R_OK) == 0);
        tensors += check_fixture(gp, rp, by_type);
        files++;
    }
    closedir(d);
    fprintf(stderr, "gguf-kquant: %d tensors of %d files reproduce llama.cpp's sha256\n", tensors, files);
    CHECKF(files == 12, "%d fixtures", files);
    CHECKF(tensors == 12 * 21, "%d tensors matched", tensors);
    static const uint32_t want[] = {BS_GGML_Q2_K, BS_GGML_Q3_K, BS_GGML_Q4_K, BS_GGML_Q5_K, BS_GGML_Q6_K,
                                    BS_GGML_Q8_0, BS_GGML_IQ4_NL, BS_GGML_IQ4_XS, BS_GGML_IQ3_S,
                                    BS_GGML_IQ3_XXS};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        CHECKF(by_type[want[k]] > 0, "no %s tensor checked", bs_ggml_type_name(want[k]));
}

/* Every gguf-quant/ model loads, and its first forward step gives finite logits. */
static void quant_models(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", bs_shared("models/gguf-quant"));
    DIR *d = opendir(dir);
    REQUIRE(d);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".gguf"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        bs_model m;
        bs_err e = {{0}};
        int rc = bs_model_load(&m, path, &e);
        CHECKF(rc == 0, "%s", e.msg);
        if (rc)
            continue;
        bs_state s;
        REQUIRE(bs_state_init(&s, &m.cfg, 8, 8, &e) == 0);
        int toks[3] = {1, 5, 9};
        const float *logits = bs_forward(&m, &s, toks, 3, 0, 0, &e);
        int finite = logits != NULL;
        for (int v = 0; finite && v < m.cfg.vocab_size; v++)
            finite = isfinite(logits[v]);
        CHECKF(finite, "%s: logits not finite", path);
        bs_state_free(&s);
        bs_model_free(&m);
        files++;
    }
    closedir(d);
    CHECKF(files == 14, "%d gguf-quant models loaded", files);
}

/* Refusals: a type with no dequantizer names the tensor and the type; a row that is
 * not whole blocks is refused at open. Made by editing a Q8_0 fixture's tensor table. */
static void refusals(void)
{
    const char *src = bs_shared("models/gguf-quant/babyllama-d128-Q8_0.gguf");
    bs_gguf g;
    bs_err e = {{0}};
    REQUIRE(bs_gguf_open(&g, src, &e) == 0);
    const bs_gguf_tensor *t = bs_gguf_tensor_find(&g, "blk.0.attn_q.weight");
    REQUIRE(t && t->type == BS_GGML_Q8_0);
    size_t type_at = (size_t)((const uint8_t *)t->name.s - g.map) + t->name.len + 4 + 8 * t->n_dims;
    size_t size = g.size;
    uint8_t *b = malloc(size);
    REQUIRE(b);
    memcpy(b, g.map, size);
    bs_gguf_close(&g);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/bs_test_dequant_%d.gguf", (int)getpid());
    struct { uint32_t type; const char *want1, *want2; } cases[] = {
        {BS_GGML_TQ2_0, "TQ2_0", "blk.0.attn_q.weight"},   /* sized the same: opens, no dequantizer */
        {BS_GGML_IQ2_XXS, "IQ2_XXS", "blk.0.attn_q.weight"},
        {BS_GGML_Q4_K, "Q4_K", "block of 256"},            /* 128-wide rows */
        {77, "unknown ggml type 77", "attn_q"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(b + type_at, &cases[k].type, 4);
        FILE *f = fopen(tmp, "wb");
        REQUIRE(f && fwrite(b, 1, size, f) == size);
        fclose(f);
        bs_model m;
        int rc = bs_model_load(&m, tmp, &e);
        CHECKF(rc != 0, "type %u loaded", cases[k].type);
        if (rc == 0)
            bs_model_free(&m);
        else
            CHECKF(strstr(e.msg, cases[k].want1) && strstr(e.msg, cases[k].want2), "message: %s", e.msg);
    }
    unlink(tmp);
    free(b);
}

int main(void)
{
    kquant_fixtures();
    quant_models();
    refusals();
    TEST_MAIN_END();
}
