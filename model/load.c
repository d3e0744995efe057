#include "model/load.h"

#include <stdio.h>
#include <string.h>

#include "model/gguf.h"

int bs_is_gguf(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int bs_model_load(bs_model *m, const char *path, bs_err *e)
{
    /* a file that cannot be opened is not GGUF: the llama2.c loader names it and says why */
    return bs_is_gguf(path) ? bs_model_load_gguf(m, path, e) : bs_model_load_llama2c(m, path, e);
}

static bs_tokenizer *tok_from_gguf_file(const char *path, bs_err *e)
{
    bs_gguf g;
    if (bs_gguf_open(&g, path, e))
        return NULL;
    bs_tokenizer *t = bs_tok_from_gguf(&g, e);
    bs_gguf_close(&g);
    return t;
}

bs_tokenizer *bs_tok_load_for(const char *model_path, const char *tok_path, int vocab_size, bs_err *e)
{
    bs_tokenizer *t;
    if (tok_path)
        t = bs_is_gguf(tok_path) ? tok_from_gguf_file(tok_path, e) : bs_tok_load_llama2c(tok_path, vocab_size, e);
    else if (model_path && bs_is_gguf(model_path))
        t = tok_from_gguf_file(model_path, e);
    else
        return bs_err_set(e, "%s is a llama2.c checkpoint: name its tokenizer with --tokenizer",
                          model_path ? model_path : "the model"), NULL;
    if (t && bs_tok_vocab_size(t) != vocab_size) {
        bs_err_set(e, "%s has %d pieces but the model has a vocabulary of %d",
                   tok_path ? tok_path : model_path, bs_tok_vocab_size(t), vocab_size);
        bs_tok_free(t);
        return NULL;
    }
    return t;
}
