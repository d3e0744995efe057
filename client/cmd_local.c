/* Subcommands that run a model in this process: run (generate) and eval (perplexity). */
#include "client/cmds.h"
#include "client/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/clock.h"

#include "kernels/ops.h"
#include "kernels/team.h"
#include "model/generate.h"
#include "model/load.h"
#include "model/ppl.h"
#include "model/engine.h"

int bs_cli_open_model(const char *model, const char *tokp, bs_model *m, bs_tokenizer **t)
{
    bs_err e = {{0}};
    if (bs_model_load(m, model, &e)) {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        return -1;
    }
    *t = bs_tok_load_for(model, tokp, m->cfg.vocab_size, &e);
    if (!*t) {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        bs_model_free(m);
        return -1;
    }
    return 0;
}

/* A store at a budget as a runnable model: exactly the blocks of the budget, read from disk. */
static int open_stacked(const char *path, const char *budget, bs_engine *eng)
{
    bs_err e = {{0}};
    bs_budget b;
    if (bs_proto_parse_budget(budget ? budget : "max", &b, &e) || bs_engine_open_at(eng, path, &b, &e)) {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        return -1;
    }
    const bs_store *st = &eng->store;
    int n = eng->cur->n;
    fprintf(stderr, "store %s: %d of %d blocks, %llu resident bytes, %.3f bits per weight\n", path, n, st->n_blocks,
            (unsigned long long)st->resident[n], bs_store_bpw(st, n));
    return 0;
}

int bs_cmd_run(int argc, char **argv)
{
    bs_opt o[] = {
        {"model", 'm', 0, NULL}, {"tokenizer", 't', 0, NULL}, {"prompt", 'p', 0, NULL},
        {"tokens", 'n', 0, NULL}, {"temperature", 0, 0, NULL}, {"top-p", 0, 0, NULL},
        {"seed", 's', 0, NULL}, {"threads", 0, 0, NULL}, {"store", 0, 0, NULL}, {"budget", 'b', 0, NULL},
    };
    int no = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    long n, seed, threads;
    double temp, top_p;
    if (bs_opts_parse(argc, argv, o, no, pos, 0) < 0 || bs_opt_int(o, no, "tokens", 256, 1, 1 << 20, &n) ||
        bs_opt_int(o, no, "seed", 0, 0, (long)1 << 62, &seed) || bs_opt_int(o, no, "threads", 0, 0, 1024, &threads) ||
        bs_opt_double(o, no, "temperature", 0.8, 0, 100, &temp) ||
        bs_opt_double(o, no, "top-p", 0.9, 1e-6, 1, &top_p))
        return BS_EXIT_USAGE;
    const char *model = bs_opt_get(o, no, "model"), *store = bs_opt_get(o, no, "store");
    if (!model == !store) {
        fprintf(stderr, "usage: bitstackctl run (--model M [--tokenizer T] | --store S [--budget B]) [--prompt P] "
                        "[-n N] [--temperature T] [--top-p P] [--seed S] [--threads N]\n");
        return BS_EXIT_USAGE;
    }
    bs_budget bud;
    bs_err be;
    if (store && bs_proto_parse_budget(bs_opt_get(o, no, "budget") ? bs_opt_get(o, no, "budget") : "max", &bud, &be)) {
        fprintf(stderr, "bitstackctl: run: %s\n", be.msg);
        return BS_EXIT_USAGE;
    }
    bs_blas_threads((int)threads);
    bs_model m = {0};
    bs_tokenizer *t = NULL;
    bs_engine eng;
    if (store) {
        if (open_stacked(store, bs_opt_get(o, no, "budget"), &eng))
            return 1;
        m = eng.cur->sm.model;   /* a fixed size: the engine's current view stays */
        t = eng.store.tok;
    } else if (bs_cli_open_model(model, bs_opt_get(o, no, "tokenizer"), &m, &t))
        return 1;
    const char *prompt = bs_opt_get(o, no, "prompt");
    if (!prompt)
        prompt = "";
    bs_err e = {{0}};
    /* a stacked model splits each product's rows over a team of --threads (OpenBLAS then
     * runs single-threaded inside each part, so the two never oversubscribe the cores) */
    bs_team *team = NULL;
    if (store && bs_team_resolve((int)threads) > 1) {
        team = bs_team_new(bs_team_resolve((int)threads), &e);
        if (!team) {
            fprintf(stderr, "bitstackctl: %s\n", e.msg);
            bs_engine_close(&eng);
            return 1;
        }
        bs_blas_threads(1);
    }
    bs_gen_params gp = {(float)temp, (float)top_p, seed ? (uint64_t)seed : (uint64_t)time(NULL), 0, team};
    bs_gen g;
    int rc = 1;
    if (bs_gen_init(&g, &m, t, &gp, &e))
        goto out;
    double t0 = bs_now();
    if (bs_gen_prompt(&g, prompt, strlen(prompt), &e))
        goto out_gen;
    double t1 = bs_now();
    fputs(prompt, stdout);
    fflush(stdout);
    int tok, made = 0, r = 1;
    while (made < n && (r = bs_gen_step(&g, &tok, &e)) == 1) {
        fwrite(g.piece, 1, g.piece_len, stdout);
        fflush(stdout);
        made++;
    }
    if (r < 0)
        goto out_gen;
    double t2 = bs_now();
    fputc('\n', stdout);
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s (%.1f tok/s)\n",
            g.prompt_tokens, t1 - t0, g.prompt_tokens / (t1 - t0 + 1e-12), made, t2 - t1,
            made / (t2 - t1 + 1e-12));
    rc = 0;
out_gen:
    bs_gen_free(&g);
out:
    if (rc)
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
    if (store) {
        bs_team_free(team);
        bs_engine_close(&eng);
    } else {
        bs_tok_free(t);
        bs_model_free(&m);
    }
    return rc;
}

int bs_cmd_eval(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--store") || !strncmp(argv[i], "--store=", 8))
            return bs_cmd_eval_store(argc, argv);
    bs_opt o[] = {
        {"model", 'm', 0, NULL}, {"tokenizer", 't', 0, NULL}, {"text", 0, 0, NULL},
        {"ctx", 0, 0, NULL}, {"max-chunks", 0, 0, NULL}, {"threads", 0, 0, NULL},
        {"protocol", 0, 0, NULL},
    };
    int no = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    long ctx, chunks, threads;
    if (bs_opts_parse(argc, argv, o, no, pos, 0) < 0 || bs_opt_int(o, no, "ctx", 256, 2, 1 << 20, &ctx) ||
        bs_opt_int(o, no, "max-chunks", 0, 0, 1 << 30, &chunks) || bs_opt_int(o, no, "threads", 0, 0, 1024, &threads))
        return BS_EXIT_USAGE;
    const char *model = bs_opt_get(o, no, "model"), *text = bs_opt_get(o, no, "text");
    if (!model || !text) {
        fprintf(stderr, "usage: bitstackctl eval --model M [--tokenizer T] --text FILE [--ctx 256] [--max-chunks N]"
                        " [--protocol bitstack|llama.cpp]\n"
                        "   or: bitstackctl eval --store S --text FILE (--budget B | --sweep [--budgets B1,B2,..]"
                        " [--csv F] [--png F]\n");
        bs_eval_store_usage(stderr, 0);
        return BS_EXIT_USAGE;
    }
    const char *proto_name = bs_opt_get(o, no, "protocol");
    int protocol = proto_name ? bs_ppl_protocol_parse(proto_name) : BS_PPL_BITSTACK;
    if (protocol < 0) {
        fprintf(stderr, "bitstackctl: --protocol is bitstack (the default) or llama.cpp, not '%s'\n", proto_name);
        return BS_EXIT_USAGE;
    }
    bs_blas_threads((int)threads);
    bs_model m;
    bs_tokenizer *t;
    if (bs_cli_open_model(model, bs_opt_get(o, no, "tokenizer"), &m, &t))
        return 1;
    bs_err e = {{0}};
    size_t len;
    char *buf = bs_read_file(text, &len, &e);
    bs_ppl_result r;
    int rc = 1;
    bs_cli_bar bar;
    bs_cli_bar_init(&bar, "eval", 1, 0);
    bs_ppl_progress pg = {bs_cli_bar_update, &bar};
    /* llama.cpp's protocol runs without a bar: it is for comparing figures, not long runs */
    int ok = buf && (protocol == BS_PPL_LLAMACPP
                         ? bs_ppl_text_protocol(&m, t, buf, len, protocol, (int)ctx, (int)chunks, &r, &e)
                         : bs_ppl_text_p(&m, t, buf, len, (int)ctx, (int)chunks, &pg, &r, &e)) == 0;
    bs_cli_bar_clear(&bar);
    if (ok) {
        if (protocol == BS_PPL_LLAMACPP)
            printf("perplexity %.4f over %ld tokens (llama.cpp protocol: %d windows of %ld, second halves scored)"
                   " in %.2f s\n", r.ppl, r.tokens, r.windows, ctx, r.seconds);
        else
            printf("perplexity %.4f over %ld tokens (%d windows of %ld, ctx %ld) in %.2f s\n", r.ppl, r.tokens,
                   r.windows, ctx - 1, ctx, r.seconds);
        rc = 0;
    } else {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
    }
    free(buf);
    bs_tok_free(t);
    bs_model_free(&m);
    return rc;
}
