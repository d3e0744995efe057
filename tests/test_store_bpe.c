/* A byte-level BPE vocabulary survives compression (issue 18): a synthetic GGUF model
 * (random weights) carrying GPT-2's tokenizer keys from ggml-vocab-gpt-2.gguf is
 * compressed; the store is version 3, and its tokenizer has the same pieces and merges
 * and encodes every string of llama.cpp's gpt-2 vocabulary tests to the expected ids,
 * exactly as the GGUF's own tokenizer does. A version 2 header on it is refused.
 * With bitstackctl as argv[1], `compress --model X.gguf` takes the model too. */
#include "harness.h"
#include "kernels/rng.h"
#include "model/compress.h"
#include "model/gguf.h"
#include "model/load.h"
#include "model/ppl.h"
#include "model/store.h"

#include <string.h>
#include <unistd.h>

/* ---- a GGUF v3 writer for this one model ---- */

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void put_str(FILE *f, const char *s, size_t n) { put_u64(f, n); fwrite(s, 1, n, f); }
static void put_key(FILE *f, const char *k, uint32_t type) { put_str(f, k, strlen(k)); put_u32(f, type); }

/* A string array key copied from the vocabulary file. */
static void copy_strs(FILE *f, const bs_gguf *v, const char *key)
{
    const bs_gguf_kv *kv = bs_gguf_find(v, key);
    REQUIRE(kv && kv->type == BS_GGUF_ARRAY && kv->v.arr.strs);
    put_key(f, key, BS_GGUF_ARRAY);
    put_u32(f, BS_GGUF_STRING);
    put_u64(f, kv->v.arr.n);
    for (uint64_t i = 0; i < kv->v.arr.n; i++)
        put_str(f, kv->v.arr.strs[i].s, kv->v.arr.strs[i].len);
}

typedef struct {
    char name[48];
    uint64_t rows, cols;
} tensor;

static void write_model(const char *path, const bs_gguf *v, const bs_config *c)
{
    tensor ts[64];
    int nt = 0;
    ts[nt++] = (tensor){"token_embd.weight", (uint64_t)c->vocab_size, (uint64_t)c->dim};
    ts[nt++] = (tensor){"output_norm.weight", 1, (uint64_t)c->dim};
    static const char *const lin[BS_NLIN] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down",
                                             "ffn_up"};
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(ts[nt].name, sizeof ts[nt].name, "blk.%d.attn_norm.weight", l);
        ts[nt].rows = 1, ts[nt++].cols = (uint64_t)c->dim;
        snprintf(ts[nt].name, sizeof ts[nt].name, "blk.%d.ffn_norm.weight", l);
        ts[nt].rows = 1, ts[nt++].cols = (uint64_t)c->dim;
        for (int w = 0; w < BS_NLIN; w++) {
            int r, k;
            bs_lin_shape(c, w, &r, &k);
            snprintf(ts[nt].name, sizeof ts[nt].name, "blk.%d.%s.weight", l, lin[w]);
            ts[nt].rows = (uint64_t)r, ts[nt++].cols = (uint64_t)k;
        }
    }
    int64_t bos = 0, eos = 0;
    REQUIRE(bs_gguf_get_int(v, "tokenizer.ggml.bos_token_id", &bos) == 0);
    REQUIRE(bs_gguf_get_int(v, "tokenizer.ggml.eos_token_id", &eos) == 0);
    const bs_gguf_kv *types = bs_gguf_find(v, "tokenizer.ggml.token_type");
    REQUIRE(types && types->type == BS_GGUF_ARRAY);

    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, (uint64_t)nt);
    put_u64(f, 15);
    put_key(f, "general.architecture", BS_GGUF_STRING), put_str(f, "llama", 5);
    put_key(f, "general.alignment", BS_GGUF_U32), put_u32(f, 32);
    put_key(f, "llama.embedding_length", BS_GGUF_U32), put_u32(f, (uint32_t)c->dim);
    put_key(f, "llama.feed_forward_length", BS_GGUF_U32), put_u32(f, (uint32_t)c->hidden_dim);
    put_key(f, "llama.block_count", BS_GGUF_U32), put_u32(f, (uint32_t)c->n_layers);
    put_key(f, "llama.attention.head_count", BS_GGUF_U32), put_u32(f, (uint32_t)c->n_heads);
    put_key(f, "llama.attention.head_count_kv", BS_GGUF_U32), put_u32(f, (uint32_t)c->n_kv_heads);
    put_key(f, "llama.context_length", BS_GGUF_U32), put_u32(f, (uint32_t)c->seq_len);
    put_key(f, "tokenizer.ggml.model", BS_GGUF_STRING), put_str(f, "gpt2", 4);
    put_key(f, "tokenizer.ggml.pre", BS_GGUF_STRING), put_str(f, "gpt-2", 5);
    copy_strs(f, v, "tokenizer.ggml.tokens");
    put_key(f, "tokenizer.ggml.token_type", BS_GGUF_ARRAY), put_u32(f, BS_GGUF_I32), put_u64(f, types->v.arr.n);
    for (uint64_t i = 0; i < types->v.arr.n; i++)
        put_u32(f, (uint32_t)bs_gguf_arr_i(types, i));
    copy_strs(f, v, "tokenizer.ggml.merges");
    put_key(f, "tokenizer.ggml.bos_token_id", BS_GGUF_U32), put_u32(f, (uint32_t)bos);
    put_key(f, "tokenizer.ggml.eos_token_id", BS_GGUF_U32), put_u32(f, (uint32_t)eos);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(f, ts[i].name, strlen(ts[i].name));
        put_u32(f, ts[i].rows > 1 ? 2 : 1);
        put_u64(f, ts[i].cols);
        if (ts[i].rows > 1)
            put_u64(f, ts[i].rows);
        put_u32(f, 0);   /* F32 */
        put_u64(f, off);
        off += (ts[i].rows * ts[i].cols * 4 + 31) / 32 * 32;
    }
    for (long pos = ftell(f); pos % 32; pos++)
        fputc(0, f);
    uint64_t rng = 18;
    for (int i = 0; i < nt; i++) {
        uint64_t n = ts[i].rows * ts[i].cols;
        float scale = 1.0f / sqrtf((float)ts[i].cols);
        for (uint64_t k = 0; k < n; k++) {
            float x = strstr(ts[i].name, "norm") ? 1.0f
                      : ((float)(bs_splitmix64(&rng) >> 40) / (float)(1 << 24) * 2.0f - 1.0f) * scale;
            fwrite(&x, 4, 1, f);
        }
        for (uint64_t b = n * 4; b % 32; b++)
            fputc(0, f);
    }
    REQUIRE(fclose(f) == 0);
}

/* ---- checks ---- */

static int same_ids(const int *a, int na, const int *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, sizeof(int) * (size_t)na) == 0);
}

/* llama.cpp's vectors: strings each followed by "\n__ggml_vocab_test__\n", one line of ids
 * per string. Returns how many strings matched; *total gets the count. */
static int vocab_tests(const bs_tokenizer *st, const bs_tokenizer *gt, int *total)
{
    bs_err e = {{0}};
    size_t il, ol;
    char *inp = bs_read_file(bs_shared("models/vocab-tests/ggml-vocab-gpt-2.gguf.inp"), &il, &e);
    char *out = bs_read_file(bs_shared("models/vocab-tests/ggml-vocab-gpt-2.gguf.out"), &ol, &e);
    REQUIRE(inp && out);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep);
    int pass = 0, want[4096];
    *total = 0;
    char *s = inp, *line = out;
    for (char *end; (end = memmem(s, il - (size_t)(s - inp), sep, sl)); s = end + sl) {
        char *eol = strchr(line, '\n');
        REQUIRE(eol);
        *eol = 0;
        int nw = 0;
        for (char *p = line, *q; nw < 4096; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            want[nw++] = (int)v;
        }
        line = eol + 1;
        int *a, na, *b, nb;
        size_t n = (size_t)(end - s);
        REQUIRE(bs_tok_encode(st, s, n, 0, bs_tok_add_space_prefix(st), &a, &na, &e) == 0);
        REQUIRE(bs_tok_encode(gt, s, n, 0, bs_tok_add_space_prefix(gt), &b, &nb, &e) == 0);
        size_t dl;
        char *back = bs_tok_decode(st, a, na, &dl);
        int ok = same_ids(a, na, want, nw) && same_ids(a, na, b, nb) && back && dl == n && !memcmp(back, s, n);
        CHECKF(ok, "vocab test %d ('%.*s'): %d ids from the store, %d expected, %d from the GGUF", *total,
               (int)(n > 40 ? 40 : n), s, na, nw, nb);
        pass += ok;
        (*total)++;
        free(a);
        free(b);
        free(back);
    }
    free(inp);
    free(out);
    return pass;
}

int main(int argc, char **argv)
{
    bs_err e = {{0}};
    bs_gguf v;
    REQUIRE(bs_gguf_open(&v, bs_shared("models/vocab-tests/ggml-vocab-gpt-2.gguf"), &e) == 0);
    bs_tokenizer *gt = bs_tok_from_gguf(&v, &e);
    REQUIRE(gt && bs_tok_is_bpe(gt));
    bs_config c = {.dim = 32, .hidden_dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                   .vocab_size = bs_tok_vocab_size(gt), .seq_len = 64, .rope_theta = 10000.0f, .rms_eps = 1e-5f};
    REQUIRE(bs_config_check(&c, "synthetic", &e) == 0);
    char gpath[256], spath[256], bad[256];
    snprintf(gpath, sizeof gpath, "/tmp/bs_test_store_bpe_%d.gguf", (int)getpid());
    snprintf(spath, sizeof spath, "/tmp/bs_test_store_bpe_%d.bstk", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/bs_test_store_bpe_%d_v2.bstk", (int)getpid());
    write_model(gpath, &v, &c);

    /* the GGUF loads as a model with a BPE vocabulary */
    bs_model m;
    REQUIRE(bs_model_load(&m, gpath, &e) == 0);
    bs_tokenizer *mt = bs_tok_load_for(gpath, NULL, m.cfg.vocab_size, &e);
    REQUIRE(mt && bs_tok_is_bpe(mt));

    size_t calib_len;
    char *calib = bs_read_file(bs_shared("data/tinystories_train_head.txt"), &calib_len, &e);
    REQUIRE(calib);
    if (calib_len > 16384)
        calib_len = 16384;
    bs_compress_opts o;
    bs_compress_defaults(&o, BS_KIND_GQ);
    o.levels = 6;
    o.ctx = 64;
    o.calib_windows = 4;
    int rc = bs_compress(&m, mt, calib, calib_len, &o, spath, NULL, &e);
    CHECKF(rc == 0, "compress: %s", e.msg);
    REQUIRE(rc == 0);

    FILE *f = fopen(spath, "rb");
    uint8_t hdr[8] = {0};
    REQUIRE(f && fread(hdr, 1, 8, f) == 8);
    fclose(f);
    uint32_t version;
    memcpy(&version, hdr + 4, 4);
    CHECKF(version == BS_STORE_VERSION_BPE, "version %u", version);

    bs_store s;
    rc = bs_store_open(&s, spath, &e);
    CHECKF(rc == 0, "open: %s", e.msg);
    REQUIRE(rc == 0);
    CHECK(bs_tok_is_bpe(s.tok));
    CHECK(bs_tok_vocab_size(s.tok) == bs_tok_vocab_size(gt));
    CHECK(bs_tok_bos(s.tok) == bs_tok_bos(gt) && bs_tok_eos(s.tok) == bs_tok_eos(gt));
    int differ = 0;
    for (int i = 0; i < bs_tok_vocab_size(gt); i++) {
        size_t la, lb, ra, rb;
        const char *a = bs_tok_piece_bpe_raw(s.tok, i, &la), *b = bs_tok_piece_bpe_raw(gt, i, &lb);
        const char *da = bs_tok_piece(s.tok, -1, i, &ra), *db = bs_tok_piece(gt, -1, i, &rb);
        differ += la != lb || memcmp(a, b, la) || ra != rb || memcmp(da, db, ra) ||
                  bs_tok_type(s.tok, i) != bs_tok_type(gt, i);
    }
    CHECKF(differ == 0, "%d pieces differ", differ);
    int na, nb;
    int *pa = bs_tok_bpe_merges(s.tok, &na), *pb = bs_tok_bpe_merges(gt, &nb);
    REQUIRE(pa && pb);
    CHECKF(na == nb && na > 49000 && !memcmp(pa, pb, 2 * sizeof(int) * (size_t)na), "merges: %d vs %d", na, nb);
    free(pa);
    free(pb);
    int total, pass = vocab_tests(s.tok, gt, &total);
    fprintf(stderr, "store tokenizer: %d of %d gpt-2 vocab tests give llama.cpp's ids; %d merges kept\n", pass, total,
            na);
    CHECK(total >= 40 && pass == total);
    bs_store_close(&s);

    /* a reader must not take the BPE vocabulary for SentencePiece: a version 2 header on
     * the same store is refused, naming the version it needs */
    size_t sl;
    char *bytes = bs_read_file(spath, &sl, &e);
    REQUIRE(bytes);
    version = BS_STORE_VERSION_FLOOR;
    memcpy(bytes + 4, &version, 4);
    f = fopen(bad, "wb");
    REQUIRE(f && fwrite(bytes, 1, sl, f) == sl && fclose(f) == 0);
    free(bytes);
    e.msg[0] = 0;
    CHECK(bs_store_open(&s, bad, &e) != 0);
    CHECKF(strstr(e.msg, "BPE") && strstr(e.msg, "version 3"), "%s", e.msg);
    unlink(bad);

    if (argc > 1) {
        /* the command line takes the BPE model too (it used to refuse it) */
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "'%s' compress --model '%s' --calib '%s' --ctx 64 --calib-windows 2 --levels 4 "
                 "--out '%s' --quiet >/dev/null && '%s' inspect '%s' >/dev/null", argv[1], gpath,
                 bs_shared("data/tinystories_train_head.txt"), spath, argv[1], spath);
        CHECKF(system(cmd) == 0, "%s", cmd);
    }
    unlink(spath);
    unlink(gpath);
    free(calib);
    bs_tok_free(mt);
    bs_model_free(&m);
    bs_tok_free(gt);
    bs_gguf_close(&v);
    TEST_MAIN_END();
}
