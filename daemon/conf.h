/* bitstackd.conf: the models a daemon serves, read at start and again on SIGHUP.
 *
 *   # comment
 *   [model chat]                  one section per model; the name is what requests use
 *   store = /var/lib/bitstack/chat.bstk   (relative: to the file's directory)
 *   source = /models/chat-Q4_K_M.gguf     instead of store: compressed into the cache first
 *   weight = 2                    its share of importance when memory is split (1)
 *   min = 2bpw                    its own range, in the budget grammar (the daemon's)
 *   max = 80%
 *
 * Pure: text in, specs out; the error names the line. */
#ifndef BS_CONF_H
#define BS_CONF_H

#include "daemon/models.h"

/* Parses text (NUL-terminated) into at most max specs. dir: where relative store paths
 * start ("" or NULL: as written). */
int bs_conf_parse(const char *text, const char *dir, bs_served_spec *out, int max, int *n, bs_err *e);

/* Reads and parses a file. */
int bs_conf_load(const char *path, bs_served_spec *out, int max, int *n, bs_err *e);

/* Is name a valid model name (1..63 of the characters requests may use)? */
bool bs_conf_name_ok(const char *name);

#endif
