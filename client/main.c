/* bitstackctl: the command-line client. Local work (run, eval, compress) runs in this
 * process; everything else talks to bitstackd over its Unix socket. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cmds.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
    int local;   /* prints its usage when run without arguments (the way --help shows it) */
} command;

static const command commands[] = {
    {"run", bs_cmd_run, "generate text in this process from a model file", 1},
    {"eval", bs_cmd_eval, "perplexity of a model file, or of a store at a budget (--store)", 1},
    {"compress", bs_cmd_compress, "compress a model into a stacked store (.bstk)", 1},
    {"quantize", bs_cmd_quantize, "baseline store: round-to-nearest or GPTQ at 2..8 bits", 1},
    {"inspect", bs_cmd_inspect, "print a store's metadata", 1},
    {"status", bs_cmd_status, "bitstackd: model, stack, target, memory, resizes (--json, --watch)", 0},
    {"generate", bs_cmd_generate, "bitstackd: complete a prompt, streaming the text", 0},
    {"chat", bs_cmd_chat, "bitstackd: a conversation (terminal) or one message per line (pipe)", 0},
    {"budget", bs_cmd_budget, "bitstackd: show the memory budget, pin it (--fixed) or let it float (--min/--max, --auto)", 0},
    {"metrics", bs_cmd_metrics, "bitstackd: counters since start", 0},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: bitstackctl COMMAND [options]    (COMMAND --help: its options; --version)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nThe bitstackd commands take --socket PATH; without it: $BITSTACK_SOCKET, else\n"
               "$RUNTIME_DIRECTORY/bitstackd.sock, else /run/bitstackd/bitstackd.sock (root) or\n"
               "$XDG_RUNTIME_DIR/bitstackd.sock. Exit codes: 0 ok, 1 error, 2 usage, 3 cannot connect.\n"
               "More: man bitstackctl; the protocol and the daemon in docs/protocol.md and\n"
               "docs/daemon.md (installed under share/doc/bitstack).\n");
}

int main(int argc, char **argv)
{
    /* "bitstackctl --socket P CMD ..." means "bitstackctl CMD ... --socket P" */
    const char *sock = NULL;
    int first = 1;
    if (argc > 2 && !strcmp(argv[1], "--socket")) {
        sock = argv[2];
        first = 3;
    } else if (argc > 1 && !strncmp(argv[1], "--socket=", 9)) {
        sock = argv[1] + 9;
        first = 2;
    }
    if (argc <= first) {
        usage(stderr);
        return BS_EXIT_USAGE;
    }
    const char *name = argv[first];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        printf("bitstackctl %s\n", BS_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name))
            continue;
        int n = argc - first - 1;
        if (commands[i].local)
            for (int k = 0; k < n; k++)
                if (!strcmp(argv[first + 1 + k], "--help") || !strcmp(argv[first + 1 + k], "-h")) {
                    /* the usage a local command prints for a bare call, to stdout, exit 0 */
                    fflush(stderr);
                    dup2(1, 2);
                    char *none[] = {NULL};
                    commands[i].fn(0, none);
                    return 0;
                }
        char **args = malloc(sizeof(char *) * (size_t)(n + 3));
        if (!args)
            return 1;
        memcpy(args, argv + first + 1, sizeof(char *) * (size_t)n);
        if (sock) {
            args[n++] = "--socket";
            args[n++] = (char *)sock;
        }
        args[n] = NULL;
        int rc = commands[i].fn(n, args);
        free(args);
        return rc;
    }
    fprintf(stderr, "bitstackctl: unknown command '%s'\n", name);
    usage(stderr);
    return BS_EXIT_USAGE;
}
