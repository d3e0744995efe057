/* Subcommands around stacked stores: compress, quantize (baselines), inspect, and
 * eval --store (perplexity at a budget, or a sweep of budgets). */
#include "client/cmds.h"
#include "client/progress.h"
#include "kernels/team.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "model/compress.h"
#include "model/selfcalib.h"
#include "model/load.h"
#include "model/ppl.h"
#include "model/store.h"
#include "model/store_eval.h"

/* The floor's training progress: a redrawn line on a terminal, a line every report
 * otherwise. */
static void qat_progress(void *ctx, const bs_train_status *st)
{
    (void)ctx;
    int tty = isatty(2);
    fprintf(stderr, "%sqat: step %ld  loss %.4f (kl %.4f, mse %.4f)  lr %.2e  %.0f tok/s  %.0fs elapsed, ETA %.0fs%s%s",
            tty ? "\r\033[K" : "", st->step, st->loss, st->kl, st->mse, st->lr, st->tok_per_s, st->elapsed, st->eta,
            st->resumed ? "  (resumed)" : "", tty ? "" : "\n");
    if (tty && st->eta <= 0)
        fputc('\n', stderr);
}

/* Checks that a store can be written at out (its directory exists and takes files, it
 * is not a directory) before minutes of calibration are spent. Prints the problem with
 * the path as the user gave it. */
static int check_out(const char *out)
{
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "bitstackctl: cannot write --out %s: it is a directory\n", out);
        return -1;
    }
    /* the writer goes through out.tmp in the same directory: try to make that file */
    size_t n = strlen(out);
    char *tmp = malloc(n + 5);
    if (!tmp)
        return -1;
    memcpy(tmp, out, n);
    memcpy(tmp + n, ".tmp", 5);
    int existed = access(tmp, F_OK) == 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int err = errno;
    if (fd >= 0) {
        close(fd);
        if (!existed)
            unlink(tmp);
    }
    free(tmp);
    if (fd < 0) {
        fprintf(stderr, "bitstackctl: cannot write --out %s: %s\n", out, strerror(err));
        return -1;
    }
    return 0;
}

int bs_cmd_compress(int argc, char **argv)
{
    bs_opt o[] = {
        {"model", 'm', 0, NULL}, {"tokenizer", 't', 0, NULL}, {"calib", 0, 0, NULL}, {"out", 'o', 0, NULL},
        {"blocks", 0, 0, NULL}, {"levels", 0, 0, NULL}, {"gq-levels", 0, 0, NULL}, {"gq-restart", 0, 0, NULL}, {"k", 0, 0, NULL},
        {"sort", 0, 0, NULL}, {"ctx", 0, 0, NULL}, {"calib-windows", 0, 0, NULL}, {"ppl-windows", 0, 0, NULL},
        {"act-scale", 0, 1, NULL}, {"no-act-scale", 0, 1, NULL}, {"act-alpha", 0, 0, NULL},
        {"act-order", 0, 1, NULL}, {"clip-search", 0, 1, NULL}, {"no-clip-search", 0, 1, NULL},
        {"threads", 0, 0, NULL}, {"quiet", 'q', 1, NULL}, {"floor-bpw", 0, 0, NULL}, {"floor-paths", 0, 0, NULL},
        {"qat-minutes", 0, 0, NULL}, {"qat-steps", 0, 0, NULL}, {"qat-batch", 0, 0, NULL}, {"qat-seq", 0, 0, NULL},
        {"qat-lr", 0, 0, NULL}, {"qat-checkpoint", 0, 0, NULL}, {"group", 0, 0, NULL},
        {"qat-mse", 0, 0, NULL}, {"floor-stack", 0, 0, NULL},
    };
    int no = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    if (bs_opts_parse(argc, argv, o, no, pos, 0) < 0)
        return BS_EXIT_USAGE;
    const char *model = bs_opt_get(o, no, "model"), *calib = bs_opt_get(o, no, "calib"), *out = bs_opt_get(o, no, "out");
    const char *kind_s = bs_opt_get(o, no, "blocks"), *sort = bs_opt_get(o, no, "sort");
    const char *fstack = bs_opt_get(o, no, "floor-stack");
    int kind = kind_s ? bs_kind_parse(kind_s) : BS_KIND_GQ;
    if (!model || !calib || !out || kind < 0 || kind == BS_KIND_QASYM ||
        (sort && strcmp(sort, "level") && strcmp(sort, "ppl")) ||
        (fstack && strcmp(fstack, "switch") && strcmp(fstack, "over"))) {
        fprintf(stderr, "usage: bitstackctl compress --model M [--tokenizer T] --calib TEXT|self --out S.bstk\n"
                        "         [--blocks gq|saq|avd|lsq] [--group G] [--levels L] [--gq-levels K] [--gq-restart R] [--k RANK] [--sort level|ppl]\n"
                        "         [--ctx 256] [--calib-windows 64] [--ppl-windows 4] [--act-scale|--no-act-scale]\n"
                        "         [--act-alpha A] [--act-order] [--clip-search|--no-clip-search] [--threads N] [--quiet]\n"
                        "         [--floor-bpw X [--floor-paths 1|2] [--floor-stack switch|over]]   (a LittleBit floor of X bits\n"
                        "                                 per weight under the stack: the floor alone until the stack alone\n"
                        "                                 is better (switch), or the stack's blocks on the floor (over))\n"
                        "         [--qat-minutes M] [--qat-steps S] [--qat-batch B] [--qat-seq T] [--qat-lr 2e-3] [--qat-mse 10]\n"
                        "         [--qat-checkpoint F]   (train the floor against the float model; resumes from F,\n"
                        "                                 by default OUT.qat, removed once the store is written)\n");
        return BS_EXIT_USAGE;
    }
    bs_compress_opts co;
    bs_compress_defaults(&co, kind);
    long v, threads;
    if (bs_opt_int(o, no, "levels", co.levels, 1, 64, &v) || (co.levels = (int)v, 0) ||
        bs_opt_int(o, no, "gq-levels", co.gq_levels, 1, 8, &v) || (co.gq_levels = (int)v, 0) ||
        bs_opt_int(o, no, "gq-restart", co.gq_restart, -1, 64, &v) || (co.gq_restart = (int)v, 0) ||
        bs_opt_int(o, no, "k", 0, 0, 4096, &v) || (co.k = (int)v, 0) ||
        bs_opt_int(o, no, "ctx", co.ctx, 2, 1 << 16, &v) || (co.ctx = (int)v, 0) ||
        bs_opt_int(o, no, "group", co.group, 8, 1 << 16, &v) || (co.group = (int)v, 0) ||
        bs_opt_int(o, no, "calib-windows", co.calib_windows, 1, 1 << 20, &v) || (co.calib_windows = (int)v, 0) ||
        bs_opt_int(o, no, "ppl-windows", co.ppl_windows, 1, 1 << 20, &v) || (co.ppl_windows = (int)v, 0) ||
        bs_opt_int(o, no, "threads", 0, 0, 1024, &threads))
        return BS_EXIT_USAGE;
    co.sort = sort && !strcmp(sort, "ppl") ? BS_SORT_PPL : BS_SORT_LEVEL;
    if (bs_opt_get(o, no, "act-scale"))
        co.act_scale = 1;
    if (bs_opt_get(o, no, "no-act-scale"))
        co.act_scale = 0;
    double alpha;
    if (bs_opt_double(o, no, "act-alpha", co.act_alpha, 0, 4, &alpha))
        return BS_EXIT_USAGE;
    co.act_alpha = (float)alpha;
    double fbpw;
    long fpaths;
    if (bs_opt_double(o, no, "floor-bpw", 0, 0, 16, &fbpw) || bs_opt_int(o, no, "floor-paths", 1, 1, 2, &fpaths))
        return BS_EXIT_USAGE;
    co.floor_bpw = fbpw;
    co.floor_paths = (int)fpaths;
    co.floor_mode = fstack && !strcmp(fstack, "over") ? BS_FLOOR_OVER : BS_FLOOR_SWITCH;
    double qmin, qlr, qmse;
    long qsteps, qbatch, qseq;
    if (bs_opt_double(o, no, "qat-minutes", 0, 0, 100000, &qmin) || bs_opt_int(o, no, "qat-steps", 0, 0, 1L << 40, &qsteps) ||
        bs_opt_int(o, no, "qat-batch", co.qat.batch, 0, 4096, &qbatch) ||
        bs_opt_int(o, no, "qat-seq", co.qat.seq, 0, 1 << 16, &qseq) || bs_opt_double(o, no, "qat-lr", co.qat.lr, 0, 1, &qlr) ||
        bs_opt_double(o, no, "qat-mse", co.qat.mse_weight, 0, 1e6, &qmse))
        return BS_EXIT_USAGE;
    co.qat.minutes = qmin;
    co.qat.max_steps = qsteps;
    co.qat.batch = (int)qbatch;
    co.qat.seq = (int)qseq;
    co.qat.lr = (float)qlr;
    co.qat.mse_weight = (float)qmse;
    char ckpt[4096];
    const char *ck = bs_opt_get(o, no, "qat-checkpoint");
    snprintf(ckpt, sizeof ckpt, "%s.qat", out);
    co.qat.checkpoint = ck ? ck : ckpt;
    co.qat.progress = bs_opt_get(o, no, "quiet") ? NULL : qat_progress;
    if ((qmin > 0 || qsteps > 0) && fbpw <= 0) {
        fprintf(stderr, "bitstackctl: --qat-minutes and --qat-steps train a floor: give --floor-bpw too\n");
        return BS_EXIT_USAGE;
    }
    co.act_order = bs_opt_get(o, no, "act-order") != NULL;
    if (bs_opt_get(o, no, "clip-search"))
        co.clip_search = 1;
    if (bs_opt_get(o, no, "no-clip-search"))
        co.clip_search = 0;
    bs_cli_bar bar;
    bs_cli_bar_init(&bar, NULL, 1, 1);
    if (!bs_opt_get(o, no, "quiet"))
        co.progress = (bs_progress){bs_cli_bar_stage, &bar};
    bs_blas_threads((int)threads);
    if (check_out(out))
        return 1;

    bs_model m;
    bs_tokenizer *t;
    if (bs_cli_open_model(model, bs_opt_get(o, no, "tokenizer"), &m, &t))
        return 1;
    bs_err e = {{0}};
    size_t len;
    /* "self": no corpus, the model samples its own (model/selfcalib.h) */
    char *text = NULL;
    if (strcmp(calib, "self"))
        text = bs_read_file(calib, &len, &e);
    else if (bs_selfcalib_text(&m, t, co.calib_windows, co.ctx, BS_SELFCALIB_SEED, &co.progress, &text, &len, &e))
        text = NULL;
    json_t *rep = json_object();
    int rc = 1;
    if (text && bs_compress(&m, t, text, len, &co, out, rep, &e) == 0) {
        /* the store holds the trained floor: the default checkpoint was only for an
         * interruption (one named with --qat-checkpoint is kept: it can seed other stacks) */
        if (co.floor_bpw > 0 && (co.qat.minutes > 0 || co.qat.max_steps > 0) && !ck)
            unlink(co.qat.checkpoint);
        printf("wrote %s: %s blocks, %d levels, sort %s, in %.2f s\n", out, bs_kind_name(kind), co.levels,
               co.sort == BS_SORT_PPL ? "ppl" : "level", json_real_value(json_object_get(rep, "seconds")));
        rc = 0;
    } else {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
    }
    json_decref(rep);
    free(text);
    bs_tok_free(t);
    bs_model_free(&m);
    return rc;
}

int bs_cmd_quantize(int argc, char **argv)
{
    bs_opt o[] = {
        {"model", 'm', 0, NULL}, {"tokenizer", 't', 0, NULL}, {"calib", 0, 0, NULL}, {"out", 'o', 0, NULL},
        {"method", 0, 0, NULL}, {"bits", 0, 0, NULL}, {"ctx", 0, 0, NULL}, {"calib-windows", 0, 0, NULL},
        {"quiet", 'q', 1, NULL},
    };
    int no = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    long bits, ctx, windows;
    if (bs_opts_parse(argc, argv, o, no, pos, 0) < 0 || bs_opt_int(o, no, "bits", 4, 2, 8, &bits) ||
        bs_opt_int(o, no, "ctx", 256, 2, 1 << 16, &ctx) || bs_opt_int(o, no, "calib-windows", 64, 1, 1 << 20, &windows))
        return BS_EXIT_USAGE;
    const char *model = bs_opt_get(o, no, "model"), *out = bs_opt_get(o, no, "out"), *meth = bs_opt_get(o, no, "method");
    const char *calib = bs_opt_get(o, no, "calib");
    int method = meth && !strcmp(meth, "gptq") ? BS_BASE_GPTQ : BS_BASE_RTN;
    if (!model || !out || !meth || (strcmp(meth, "rtn") && strcmp(meth, "gptq")) || (method == BS_BASE_GPTQ && !calib)) {
        fprintf(stderr, "usage: bitstackctl quantize --model M [--tokenizer T] --method rtn|gptq --bits 2..8 "
                        "--out S.bstk [--calib TEXT (gptq)] [--ctx 256] [--calib-windows 64] [--quiet]\n");
        return BS_EXIT_USAGE;
    }
    if (check_out(out))
        return 1;
    bs_model m;
    bs_tokenizer *t;
    if (bs_cli_open_model(model, bs_opt_get(o, no, "tokenizer"), &m, &t))
        return 1;
    bs_err e = {{0}};
    size_t len = 0;
    char *text = calib ? bs_read_file(calib, &len, &e) : NULL;
    int rc = 1;
    bs_cli_bar bar;
    bs_cli_bar_init(&bar, NULL, 1, 1);
    bs_progress pg = {bs_opt_get(o, no, "quiet") ? NULL : bs_cli_bar_stage, &bar};
    if ((!calib || text) && bs_quantize_baseline(&m, t, text, len, method, (int)bits, (int)ctx, (int)windows,
                                                 &pg, out, NULL, &e) == 0) {
        printf("wrote %s: %s %ld-bit, group 32\n", out, meth, bits);
        rc = 0;
    } else {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
    }
    free(text);
    bs_tok_free(t);
    bs_model_free(&m);
    return rc;
}

static void human_bytes(uint64_t b, char *out, size_t n)
{
    if (b >= 1u << 20)
        snprintf(out, n, "%.2f MiB", b / 1048576.0);
    else if (b >= 1u << 10)
        snprintf(out, n, "%.1f KiB", b / 1024.0);
    else
        snprintf(out, n, "%llu B", (unsigned long long)b);
}

int bs_cmd_inspect(int argc, char **argv)
{
    bs_opt o[] = {{"json", 0, 1, NULL}, {"no-verify", 0, 1, NULL}};
    const char *pos[1];
    int np = bs_opts_parse(argc, argv, o, 2, pos, 1);
    if (np != 1) {
        fprintf(stderr, "usage: bitstackctl inspect STORE [--json] [--no-verify]\n"
                        "  reads every block and checks its crc32c unless --no-verify\n");
        return BS_EXIT_USAGE;
    }
    bs_store s;
    bs_err e = {{0}};
    if (bs_store_open(&s, pos[0], &e)) {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        return 1;
    }
    if (!o[1].value && bs_store_verify_file(&s, &e)) {
        fprintf(stderr, "bitstackctl: %s: %s\n", pos[0], e.msg);
        bs_store_close(&s);
        return 1;
    }
    if (o[0].value) {
        json_dumpf(s.meta, stdout, JSON_INDENT(1));
        putchar('\n');
        bs_store_close(&s);
        return 0;
    }
    const bs_config *c = &s.cfg;
    char a[32], b[32], d[32];
    human_bytes(s.base_bytes, a, sizeof a);
    human_bytes(s.resident[s.min_blocks], b, sizeof b);
    human_bytes(s.resident[s.n_blocks], d, sizeof d);
    printf("store       %s (%llu bytes)\n", s.path, (unsigned long long)s.file_size);
    printf("model       dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, seq_len %d\n", c->dim, c->hidden_dim,
           c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len);
    printf("tokenizer   %d pieces%s\n", bs_tok_vocab_size(s.tok), bs_tok_has_bytes(s.tok) ? ", byte fallback" : ", no byte pieces");
    printf("base        %s (embeddings fp16, norms fp32)\n", a);
    printf("stack       %d blocks over %d matrices; smallest working prefix %d blocks\n", s.n_blocks, s.n_matrices,
           s.min_blocks);
    printf("resident    min %s (%.3f bpw) .. max %s (%.3f bpw); %zu linear weights\n", b,
           bs_store_bpw(&s, s.min_blocks), d, bs_store_bpw(&s, s.n_blocks), s.linear_params);
    printf("blocks      %s\n", o[1].value ? "not verified (--no-verify)" : "all read, every crc32c checked");
    json_t *info = json_copy(json_object_get(s.meta, "info"));
    if (info) {
        json_object_del(info, "errors");   /* per-matrix numbers: --json shows them */
        char *js = json_dumps(info, JSON_COMPACT);
        printf("made with   %s\n", js ? js : "?");
        free(js);
        json_decref(info);
    }
    printf("\n%-18s %-6s %9s %6s %4s %4s\n", "matrix", "kind", "shape", "levels", "k", "bits");
    for (int i = 0; i < s.n_matrices; i++) {
        const bs_store_matrix *m = &s.mats[i];
        char shape[24];
        snprintf(shape, sizeof shape, "%dx%d", m->rows, m->cols);
        printf("%-18s %-6s %9s %6d %4d %4d\n", m->name, bs_kind_name(m->kind), shape, m->levels, m->k, m->bits);
    }
    bs_store_close(&s);
    return 0;
}

/* Writes a gnuplot PNG of perplexity against bits per weight from the sweep CSV: the
 * stack as a line, each baseline store as its own point with its name and perplexity in
 * the key (labels beside points overlap when baselines sit at the same size), the float
 * model as a dashed line. The y range shows where the curves differ: from just below
 * the best perplexity to 1.75 times it (budgets near the smallest stack reach thousands
 * and would flatten everything else); points above it are counted in the title. */
static void plot_sweep(const char *csv, const char *png, const char *title, double float_ppl)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "gnuplot is not installed: no %s\n", png);
        return;
    }
    FILE *f = fopen(csv, "r");
    if (!f) {
        fprintf(stderr, "bitstackctl: cannot read %s: no %s\n", csv, png);
        return;
    }
    char line[512], names[16][128];
    double base_ppl[16];
    int nb = 0, above = 0, n = 0;
    double best = float_ppl > 0 ? float_ppl : INFINITY, ppl[256];
    while (fgets(line, sizeof line, f) && n < 256) {
        char *last = strrchr(line, ',');
        if (!last || strncmp(line, "label", 5) == 0)
            continue;
        ppl[n] = strtod(last + 1, NULL);
        if (ppl[n] < best)
            best = ppl[n];
        n++;
        if (!strncmp(line, "base:", 5) && nb < 16) {
            char *comma = strchr(line + 5, ',');
            base_ppl[nb] = ppl[n - 1];
            snprintf(names[nb++], sizeof names[0], "%.*s", (int)(comma - line - 5), line + 5);
        }
    }
    fclose(f);
    double lo = best * 0.97, hi = best * 1.75;
    for (int i = 0; i < n; i++)
        above += ppl[i] > hi;
    char script[] = "/tmp/bitstackctl-plot-XXXXXX";
    int fd = mkstemp(script);
    FILE *g = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!g) {
        fprintf(stderr, "bitstackctl: cannot write a gnuplot script: no %s\n", png);
        if (fd >= 0)
            close(fd);
        return;
    }
    fprintf(g, "set terminal pngcairo size 900,600 noenhanced\nset output '%s'\n", png);
    fprintf(g, "set datafile separator ','\nset key top right box opaque\nset grid\n");
    fprintf(g, "set xlabel 'bits per linear weight'\nset ylabel 'perplexity'\n");
    fprintf(g, "set yrange [%g:%g]\n", lo, hi);
    if (above)
        fprintf(g, "set title '%s  (%d point%s above %.3g not shown)'\n", title, above, above == 1 ? "" : "s", hi);
    else
        fprintf(g, "set title '%s'\n", title);
    fprintf(g, "plot '%s' every ::1 using ((strcol(1)[1:6] eq 'stack:') ? $4 : NaN):5 "
               "with linespoints pointtype 7 title 'stack'", csv);
    for (int i = 0; i < nb; i++)
        fprintf(g, ", '%s' every ::1 using ((strcol(1) eq 'base:%s') ? $4 : NaN):5 with points "
                   "pointtype %d pointsize 2 title '%s %.3f'",
                csv, names[i], 5 + 2 * (i % 4), names[i], base_ppl[i]);
    if (float_ppl > 0)
        fprintf(g, ", %.6f with lines dashtype 2 linewidth 2 title 'float %.4f'", float_ppl, float_ppl);
    fprintf(g, "\n");
    fclose(g);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "gnuplot %s 2>&1", script);
    FILE *p = popen(cmd, "r");
    int warned = 0;
    while (p && fgets(line, sizeof line, p)) {
        fprintf(stderr, "gnuplot: %s", line);
        warned = 1;
    }
    int rc = p ? pclose(p) : -1;
    unlink(script);
    if (rc == 0 && !warned)
        fprintf(stderr, "wrote %s\n", png);
    else
        fprintf(stderr, "bitstackctl: gnuplot did not plot cleanly: %s may be missing or wrong\n", png);
}

void bs_eval_store_usage(FILE *f, int first_line)
{
    if (first_line)
        fprintf(f, "usage: bitstackctl eval --store S --text FILE (--budget B | --sweep [--budgets B1,B2,..]"
                   " [--csv F] [--png F]\n");
    fprintf(f,          "         [--baselines S1,S2,..] [--model M [--tokenizer T]]) [--ctx 256] [--max-chunks N]\n"
                        "         [--decode]   (score one token at a time through the serving kernels)\n"
                        "  B: 180K, 2.5M, 40%%, 4.0bpw, min, max\n");
}

int bs_cmd_eval_store(int argc, char **argv)
{
    bs_opt o[] = {
        {"store", 0, 0, NULL}, {"budget", 'b', 0, NULL}, {"text", 0, 0, NULL}, {"ctx", 0, 0, NULL},
        {"max-chunks", 0, 0, NULL}, {"sweep", 0, 1, NULL}, {"budgets", 0, 0, NULL}, {"csv", 0, 0, NULL},
        {"png", 0, 0, NULL}, {"threads", 0, 0, NULL}, {"baselines", 0, 0, NULL}, {"model", 'm', 0, NULL},
        {"decode", 0, 1, NULL},
        {"tokenizer", 't', 0, NULL},
    };
    int no = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    long ctx, chunks, threads;
    if (bs_opts_parse(argc, argv, o, no, pos, 0) < 0 || bs_opt_int(o, no, "ctx", 256, 2, 1 << 20, &ctx) ||
        bs_opt_int(o, no, "max-chunks", 0, 0, 1 << 30, &chunks) || bs_opt_int(o, no, "threads", 0, 0, 1024, &threads))
        return BS_EXIT_USAGE;
    const char *path = bs_opt_get(o, no, "store"), *text = bs_opt_get(o, no, "text");
    const char *budget = bs_opt_get(o, no, "budget"), *budgets = bs_opt_get(o, no, "budgets");
    int sweep = bs_opt_get(o, no, "sweep") != NULL, decode = bs_opt_get(o, no, "decode") != NULL;
    if (!path || !text || (!sweep && !budget && !budgets)) {
        bs_eval_store_usage(stderr, 1);
        return BS_EXIT_USAGE;
    }
    bs_err e = {{0}};
    /* the decode path splits each product's rows over a team of --threads (OpenBLAS then
     * runs one thread per part); the batch path is OpenBLAS's sgemm on its own threads */
    bs_team *team = NULL;
    bs_blas_threads(decode && bs_team_resolve((int)threads) > 1 ? 1 : (int)threads);
    if (decode && bs_team_resolve((int)threads) > 1 && !(team = bs_team_new(bs_team_resolve((int)threads), &e))) {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        return 1;
    }
    bs_engine eng;
    if (bs_engine_open(&eng, path, &e)) {
        bs_team_free(team);
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        return 1;
    }
    const bs_store *s = &eng.store;
    size_t len;
    char *buf = bs_read_file(text, &len, &e);
    int *ids = NULL, nids = 0, rc = 1;
    if (!buf || bs_tok_encode(s->tok, buf, len, 0, 1, &ids, &nids, &e)) {
        fprintf(stderr, "bitstackctl: %s\n", e.msg);
        goto out;
    }
    /* the list of prefixes to score */
    int ns = 0, cap = 64;
    int *ns_list = malloc(sizeof(int) * (size_t)cap);
    char names[64][32];
    if (budgets || budget) {
        char *list = strdup(budgets ? budgets : budget), *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok && ns < cap; tok = strtok_r(NULL, ",", &save)) {
            bs_budget syntax;
            int bad_syntax = bs_proto_parse_budget(tok, &syntax, &e) != 0;
            if (bad_syntax || bs_engine_budget_n(s, tok, &ns_list[ns], &e)) {
                /* a budget that does not parse is a usage error; one the store cannot meet is not */
                fprintf(stderr, "bitstackctl: %s\n", e.msg);
                free(list);
                free(ns_list);
                rc = bad_syntax ? BS_EXIT_USAGE : 1;
                goto out;
            }
            snprintf(names[ns++], sizeof names[0], "%s", tok);
        }
        free(list);
        if (ns == 0) {
            fprintf(stderr, "bitstackctl: eval: --%s is empty (give 180K, 2.5M, 40%%, 4.0bpw, min or max)\n",
                    budgets ? "budgets" : "budget");
            free(ns_list);
            rc = BS_EXIT_USAGE;
            goto out;
        }
    } else {
        /* ten budgets evenly spaced in bytes from the smallest working stack to the full one */
        uint64_t lo = s->resident[s->min_blocks], hi = s->resident[s->n_blocks];
        for (int i = 0; i < 10; i++) {
            char b[32];
            snprintf(b, sizeof b, "%llu", (unsigned long long)(lo + (hi - lo) * (uint64_t)i / 9));
            if (bs_engine_budget_n(s, b, &ns_list[ns], &e) == 0)
                snprintf(names[ns++], sizeof names[0], "%s", b);
        }
    }
    /* the CSV goes to --csv, or after the table when a sweep names no file */
    const char *csvp = bs_opt_get(o, no, "csv");
    char *mem_csv = NULL;
    size_t mem_len = 0;
    FILE *csv = csvp ? fopen(csvp, "w") : sweep ? open_memstream(&mem_csv, &mem_len) : NULL;
    if ((csvp || sweep) && !csv) {
        fprintf(stderr, "bitstackctl: cannot write %s\n", csvp);
        free(ns_list);
        goto out;
    }
    if (csv)
        fprintf(csv, "label,blocks,resident_bytes,bpw,ppl\n");
    printf("%-12s %8s %14s %8s %10s\n", "budget", "blocks", "resident", "bpw", "ppl");
    rc = 0;
    bs_cli_bar bar;
    bs_cli_bar_init(&bar, sweep || ns > 1 ? "sweep" : "eval", ns, 0);
    bs_ppl_progress pg = {bs_cli_bar_update, &bar};
    for (int i = 0; i < ns; i++) {
        bs_ppl_result r;
        bar.step = i;
        int rc_ppl = bs_engine_ppl_p(&eng, ns_list[i], ids, nids, (int)ctx, (int)chunks, decode, team, &pg, &r, &e);
        bs_cli_bar_clear(&bar);
        if (rc_ppl) {
            fprintf(stderr, "bitstackctl: %s\n", e.msg);
            rc = 1;
            break;
        }
        int n = ns_list[i];
        printf("%-12s %8d %14llu %8.3f %10.4f\n", names[i], n, (unsigned long long)s->resident[n], bs_store_bpw(s, n), r.ppl);
        fflush(stdout);
        if (csv)
            fprintf(csv, "stack:%s,%d,%llu,%.4f,%.6f\n", names[i], n, (unsigned long long)s->resident[n],
                    bs_store_bpw(s, n), r.ppl);
    }
    /* reference points measured in the same run: baseline stores at max, the float model */
    const char *bl = bs_opt_get(o, no, "baselines");
    char *list = bl ? strdup(bl) : NULL, *save = NULL;
    for (char *p = list ? strtok_r(list, ",", &save) : NULL; p && !rc; p = strtok_r(NULL, ",", &save)) {
        bs_engine be;
        bs_ppl_result r;
        if (bs_engine_open(&be, p, &e)) {
            fprintf(stderr, "bitstackctl: %s\n", e.msg);
            rc = 1;
            break;
        }
        const bs_store *b = &be.store;
        if (bs_engine_ppl(&be, b->n_blocks, ids, nids, (int)ctx, (int)chunks, &r, &e)) {
            fprintf(stderr, "bitstackctl: %s\n", e.msg);
            bs_engine_close(&be);
            rc = 1;
            break;
        }
        const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
        printf("%-12s %8d %14llu %8.3f %10.4f\n", base, b->n_blocks, (unsigned long long)b->resident[b->n_blocks],
               bs_store_bpw(b, b->n_blocks), r.ppl);
        if (csv)
            fprintf(csv, "base:%s,%d,%llu,%.4f,%.6f\n", base, b->n_blocks, (unsigned long long)b->resident[b->n_blocks],
                    bs_store_bpw(b, b->n_blocks), r.ppl);
        bs_engine_close(&be);
    }
    free(list);
    double float_ppl = 0;
    const char *fm = bs_opt_get(o, no, "model");
    if (fm && !rc) {
        bs_model m;
        bs_tokenizer *ft = NULL;
        bs_ppl_result r;
        if (bs_model_load(&m, fm, &e) == 0) {
            ft = bs_tok_load_for(fm, bs_opt_get(o, no, "tokenizer"), m.cfg.vocab_size, &e);
            if (ft && bs_ppl_text(&m, ft, buf, len, (int)ctx, (int)chunks, &r, &e) == 0) {
                float_ppl = r.ppl;
                printf("%-12s %8s %14s %8s %10.4f\n", "float", "-", "-", "32", r.ppl);
            }
            bs_tok_free(ft);
            bs_model_free(&m);
        }
        if (float_ppl == 0) {
            fprintf(stderr, "bitstackctl: %s\n", e.msg);
            rc = 1;
        }
    }
    if (csv) {
        fclose(csv);
        const char *png = bs_opt_get(o, no, "png");
        if (png && csvp && !rc)
            plot_sweep(csvp, png, s->path, float_ppl);
        else if (png)
            fprintf(stderr, "bitstackctl: --png needs --csv FILE (gnuplot reads the file)\n");
        if (mem_csv && !rc)
            printf("\n%s", mem_csv);
        free(mem_csv);
    }
    free(ns_list);
out:
    free(ids);
    free(buf);
    bs_engine_close(&eng);
    bs_team_free(team);
    return rc;
}
