/* bs_sockpath: where bitstackd listens and bitstackctl connects. One rule, used by both
 * programs, so a daemon and a client started the same way always meet:
 *
 *   1. the --socket option, when given;
 *   2. else $BITSTACK_SOCKET;
 *   3. else $RUNTIME_DIRECTORY/bitstackd.sock (systemd's RuntimeDirectory=; when it lists
 *      several directories, separated by ':', the first);
 *   4. else /run/bitstackd/bitstackd.sock for root (what the unit's RuntimeDirectory
 *      gives), or $XDG_RUNTIME_DIR/bitstackd.sock for anyone else.
 *
 * An environment variable set to the empty string counts as unset. The result must fit
 * sockaddr_un.sun_path with its NUL (107 bytes on Linux); a longer path is an error that
 * names it, since the kernel would otherwise cut it silently. */
#ifndef BS_SOCKPATH_H
#define BS_SOCKPATH_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/err.h"

#define BS_SOCKPATH_NAME "bitstackd.sock"
#define BS_SOCKPATH_SYSTEM "/run/bitstackd/" BS_SOCKPATH_NAME
#define BS_SOCKPATH_MAX 108        /* sizeof(sockaddr_un.sun_path), NUL included */

/* The inputs of the rule, so it can be tested without touching the environment.
 * NULL or "" means unset. */
typedef struct {
    const char *option;             /* --socket */
    const char *bitstack_socket;    /* $BITSTACK_SOCKET */
    const char *runtime_directory;  /* $RUNTIME_DIRECTORY */
    const char *xdg_runtime_dir;    /* $XDG_RUNTIME_DIR */
    bool root;                      /* effective uid 0 */
} bs_sockpath_inputs;

/* Which step of the rule chose a path: for messages ("from $BITSTACK_SOCKET"). */
typedef enum {
    BS_SOCKPATH_FROM_OPTION,
    BS_SOCKPATH_FROM_BITSTACK_SOCKET,
    BS_SOCKPATH_FROM_RUNTIME_DIRECTORY,
    BS_SOCKPATH_FROM_SYSTEM,
    BS_SOCKPATH_FROM_XDG_RUNTIME_DIR,
} bs_sockpath_source;

const char *bs_sockpath_source_name(bs_sockpath_source src);   /* "--socket", "$BITSTACK_SOCKET", ... */

/* Applies the rule to in; writes the path to out[BS_SOCKPATH_MAX]. Fails when no step
 * applies (not root and no XDG_RUNTIME_DIR) or the path is too long. src may be NULL. */
int bs_sockpath_pick(const bs_sockpath_inputs *in, char out[BS_SOCKPATH_MAX],
                     bs_sockpath_source *src, bs_err *e);

/* The rule with this process's environment and effective uid; option is --socket or
 * NULL. */
int bs_sockpath_resolve(const char *option, char out[BS_SOCKPATH_MAX], bs_sockpath_source *src,
                        bs_err *e);

#endif
