/* The socket path rule (proto/sockpath.h): each step wins over the ones after it, empty
 * variables count as unset, RUNTIME_DIRECTORY lists are cut at ':', and paths that do
 * not fit sun_path are refused with a message naming them. */
#include "proto/sockpath.h"

#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

static int pick(const bs_sockpath_inputs *in, char *out, bs_sockpath_source *src, bs_err *e)
{
    memset(out, 'x', BS_SOCKPATH_MAX);
    return bs_sockpath_pick(in, out, src, e);
}

int main(void)
{
    char p[BS_SOCKPATH_MAX];
    bs_sockpath_source src;
    bs_err e = {{0}};

    bs_sockpath_inputs all = {"/opt/a.sock", "/env/b.sock", "/run/unit", "/run/user/1000", true};
    CHECK(pick(&all, p, &src, &e) == 0);
    CHECK(!strcmp(p, "/opt/a.sock") && src == BS_SOCKPATH_FROM_OPTION);

    bs_sockpath_inputs in = all;
    in.option = "";
    CHECK(pick(&in, p, &src, &e) == 0);
    CHECK(!strcmp(p, "/env/b.sock") && src == BS_SOCKPATH_FROM_BITSTACK_SOCKET);

    in.bitstack_socket = NULL;
    CHECK(pick(&in, p, &src, &e) == 0);
    CHECK(!strcmp(p, "/run/unit/bitstackd.sock") && src == BS_SOCKPATH_FROM_RUNTIME_DIRECTORY);

    in.runtime_directory = "/run/first/:/run/second";
    CHECK(pick(&in, p, &src, &e) == 0);
    CHECKF(!strcmp(p, "/run/first/bitstackd.sock"), "%s", p);

    in.runtime_directory = "";
    CHECK(pick(&in, p, &src, &e) == 0);
    CHECK(!strcmp(p, "/run/bitstackd/bitstackd.sock") && src == BS_SOCKPATH_FROM_SYSTEM);

    in.root = false;
    CHECK(pick(&in, p, &src, &e) == 0);
    CHECK(!strcmp(p, "/run/user/1000/bitstackd.sock") && src == BS_SOCKPATH_FROM_XDG_RUNTIME_DIR);

    /* nothing applies: an error that says what to do */
    in.xdg_runtime_dir = NULL;
    CHECK(pick(&in, p, &src, &e) == -1);
    CHECKF(strstr(e.msg, "--socket") && strstr(e.msg, "BITSTACK_SOCKET"), "%s", e.msg);

    /* 107 bytes fit sun_path with the NUL; 108 do not, and the message names the path */
    char longp[BS_SOCKPATH_MAX + 1];
    memset(longp, 'a', sizeof longp);
    longp[0] = '/';
    longp[BS_SOCKPATH_MAX - 1] = 0;
    in.option = longp;
    CHECK(pick(&in, p, &src, &e) == 0);
    CHECK(strlen(p) == BS_SOCKPATH_MAX - 1);
    longp[BS_SOCKPATH_MAX - 1] = 'a';
    longp[BS_SOCKPATH_MAX] = 0;
    CHECK(pick(&in, p, &src, &e) == -1);
    CHECKF(strstr(e.msg, longp) && strstr(e.msg, "--socket"), "%s", e.msg);

    /* a directory whose joined path is too long */
    char longd[BS_SOCKPATH_MAX];
    memset(longd, 'd', sizeof longd);
    longd[0] = '/';
    longd[BS_SOCKPATH_MAX - 10] = 0;
    bs_sockpath_inputs dir = {.xdg_runtime_dir = longd};
    CHECK(pick(&dir, p, &src, &e) == -1);
    CHECKF(strstr(e.msg, "XDG_RUNTIME_DIR") != NULL, "%s", e.msg);

    /* bs_sockpath_resolve reads this process's environment */
    setenv("BITSTACK_SOCKET", "/tmp/from-env.sock", 1);
    CHECK(bs_sockpath_resolve(NULL, p, &src, &e) == 0);
    CHECK(!strcmp(p, "/tmp/from-env.sock") && src == BS_SOCKPATH_FROM_BITSTACK_SOCKET);
    CHECK(bs_sockpath_resolve("/tmp/opt.sock", p, NULL, &e) == 0 && !strcmp(p, "/tmp/opt.sock"));
    unsetenv("BITSTACK_SOCKET");
    setenv("RUNTIME_DIRECTORY", "/run/x", 1);
    CHECK(bs_sockpath_resolve(NULL, p, &src, &e) == 0 && !strcmp(p, "/run/x/bitstackd.sock"));

    CHECK(!strcmp(bs_sockpath_source_name(BS_SOCKPATH_FROM_BITSTACK_SOCKET), "$BITSTACK_SOCKET"));
    TEST_MAIN_END();
}
