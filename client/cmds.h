/* bitstackctl subcommands. Each takes the words after its name and returns the
 * process exit code: 0 ok, 1 failure (daemon or model error), 2 usage, 3 cannot connect. */
#ifndef BS_CMDS_H
#define BS_CMDS_H

#include <stdio.h>

#include "client/opts.h"

#include "model/model.h"
#include "model/tokenizer.h"

/* Loads a model file and its tokenizer (tok_path, or the GGUF's own vocabulary);
 * prints the error and returns -1 on failure. */
int bs_cli_open_model(const char *model, const char *tok_path, bs_model *m, bs_tokenizer **t);

int bs_cmd_run(int argc, char **argv);
int bs_cmd_eval(int argc, char **argv);
int bs_cmd_eval_store(int argc, char **argv);
/* eval --store's usage (first_line 0: without the first line), for eval's usage too */
void bs_eval_store_usage(FILE *f, int first_line);
int bs_cmd_compress(int argc, char **argv);
int bs_cmd_quantize(int argc, char **argv);
int bs_cmd_inspect(int argc, char **argv);

/* cmd_daemon.c: talk to bitstackd */
int bs_cmd_status(int argc, char **argv);
int bs_cmd_metrics(int argc, char **argv);
int bs_cmd_generate(int argc, char **argv);
int bs_cmd_budget(int argc, char **argv);
/* cmd_chat.c: a conversation with bitstackd */
int bs_cmd_chat(int argc, char **argv);

#endif
