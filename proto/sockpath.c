#include "proto/sockpath.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const source_names[] = {
    [BS_SOCKPATH_FROM_OPTION] = "--socket",
    [BS_SOCKPATH_FROM_BITSTACK_SOCKET] = "$BITSTACK_SOCKET",
    [BS_SOCKPATH_FROM_RUNTIME_DIRECTORY] = "$RUNTIME_DIRECTORY",
    [BS_SOCKPATH_FROM_SYSTEM] = "the system default",
    [BS_SOCKPATH_FROM_XDG_RUNTIME_DIR] = "$XDG_RUNTIME_DIR",
};

const char *bs_sockpath_source_name(bs_sockpath_source src)
{
    if ((unsigned)src >= sizeof source_names / sizeof source_names[0])
        return "?";
    return source_names[src];
}

static int set(const char *s)
{
    return s && *s;
}

/* dir + "/" + name into out; dir has dlen bytes (a ':'-separated list is cut before). */
static int join(char out[BS_SOCKPATH_MAX], const char *dir, size_t dlen, bs_sockpath_source src,
                bs_err *e)
{
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    int n = snprintf(out, BS_SOCKPATH_MAX, "%.*s/%s", (int)dlen, dir, BS_SOCKPATH_NAME);
    if (n < 0 || n >= BS_SOCKPATH_MAX)
        return bs_err_set(e, "socket path %.*s/%s (from %s) is %d bytes; a Unix socket path "
                          "holds at most %d", (int)dlen, dir, BS_SOCKPATH_NAME,
                          bs_sockpath_source_name(src), n, BS_SOCKPATH_MAX - 1);
    return 0;
}

static int copy(char out[BS_SOCKPATH_MAX], const char *path, bs_sockpath_source src, bs_err *e)
{
    size_t n = strlen(path);
    if (n >= BS_SOCKPATH_MAX)
        return bs_err_set(e, "socket path %s (from %s) is %zu bytes; a Unix socket path holds "
                          "at most %d", path, bs_sockpath_source_name(src), n, BS_SOCKPATH_MAX - 1);
    memcpy(out, path, n + 1);
    return 0;
}

int bs_sockpath_pick(const bs_sockpath_inputs *in, char out[BS_SOCKPATH_MAX],
                     bs_sockpath_source *src, bs_err *e)
{
    bs_sockpath_source s;
    int rc;
    out[0] = 0;
    if (set(in->option)) {
        s = BS_SOCKPATH_FROM_OPTION;
        rc = copy(out, in->option, s, e);
    } else if (set(in->bitstack_socket)) {
        s = BS_SOCKPATH_FROM_BITSTACK_SOCKET;
        rc = copy(out, in->bitstack_socket, s, e);
    } else if (set(in->runtime_directory) && in->runtime_directory[0] != ':') {
        /* systemd joins several RuntimeDirectory= entries with ':'; ours is the first. */
        s = BS_SOCKPATH_FROM_RUNTIME_DIRECTORY;
        rc = join(out, in->runtime_directory, strcspn(in->runtime_directory, ":"), s, e);
    } else if (in->root) {
        s = BS_SOCKPATH_FROM_SYSTEM;
        rc = copy(out, BS_SOCKPATH_SYSTEM, s, e);
    } else if (set(in->xdg_runtime_dir)) {
        s = BS_SOCKPATH_FROM_XDG_RUNTIME_DIR;
        rc = join(out, in->xdg_runtime_dir, strlen(in->xdg_runtime_dir), s, e);
    } else {
        return bs_err_set(e, "no socket path: give --socket PATH or set BITSTACK_SOCKET "
                          "(XDG_RUNTIME_DIR is not set, and " BS_SOCKPATH_SYSTEM " is for root)");
    }
    if (rc == 0 && src)
        *src = s;
    return rc;
}

int bs_sockpath_resolve(const char *option, char out[BS_SOCKPATH_MAX], bs_sockpath_source *src,
                        bs_err *e)
{
    bs_sockpath_inputs in = {
        .option = option,
        .bitstack_socket = getenv("BITSTACK_SOCKET"),
        .runtime_directory = getenv("RUNTIME_DIRECTORY"),
        .xdg_runtime_dir = getenv("XDG_RUNTIME_DIR"),
        .root = geteuid() == 0,
    };
    return bs_sockpath_pick(&in, out, src, e);
}
