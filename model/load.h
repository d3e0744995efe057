/* Opening what a user names on the command line: a model file of either format and
 * the tokenizer that goes with it. */
#ifndef BS_LOAD_H
#define BS_LOAD_H

#include "model/model.h"
#include "model/tokenizer.h"

/* 1 when the file starts with the GGUF magic. */
int bs_is_gguf(const char *path);

/* Tokenizer for a model: tok_path when given (llama2.c tokenizer.bin or a GGUF with a
 * vocabulary), else the vocabulary inside a GGUF model. vocab_size must match. */
bs_tokenizer *bs_tok_load_for(const char *model_path, const char *tok_path, int vocab_size, bs_err *e);

#endif
