/* bs_cache: stores compressed from source models (`bitstackd --model X.gguf`), kept in a
 * cache directory and found again by what made them, so a model is compressed once.
 *
 * An entry's key is the sha256 of the source file's bytes plus a canonical string of
 * everything else that changes the store: the compression settings, the sha256 of the
 * calibration text and of a separate tokenizer file, and the store format. The store is
 * <dir>/<first 16 hex of the source sha>-<first 16 hex of sha256(settings)>.bstk, beside
 * it <same>.key (the full source sha and settings: a lookup checks them, not just the
 * name) and <same>.lock (flock: two processes never build one entry at once; the second
 * waits, then finds the first one's store).
 *
 * Everything here blocks (hashing reads the whole source; a build compresses it): call
 * it from a worker thread (daemon/build.h), never from an event loop. */
#ifndef BS_CACHE_H
#define BS_CACHE_H

#include <limits.h>
#include <stdint.h>

#include "kernels/err.h"
#include "model/compress.h"
#include "model/progress.h"

/* What a store is built from. */
typedef struct {
    const char *source;      /* the model: GGUF, or llama2.c .bin with `tokenizer` */
    const char *tokenizer;   /* llama2.c's tokenizer.bin, or NULL (a GGUF has its own) */
    const char *calib;       /* calibration text file, or NULL: text the model samples itself
                              * (model/selfcalib.h) from self_seed */
    bs_compress_opts opts;   /* its progress member is not used: bs_cache_get's pg is */
    uint64_t self_seed;
} bs_cache_src;

typedef struct {
    char source_sha[65];     /* sha256 of the source file, hex */
    char settings[1024];     /* the canonical settings string */
    char path[PATH_MAX];     /* the store */
    char key_path[PATH_MAX]; /* its .key file */
    char lock_path[PATH_MAX];
} bs_cache_entry;

/* The cache directory: `explicit_dir` when given (systemd's $CACHE_DIRECTORY, a
 * --cache-dir), else $XDG_CACHE_HOME/bitstack, else $HOME/.cache/bitstack. Not created. */
int bs_cache_dir(const char *explicit_dir, char *out, size_t n, bs_err *e);

/* The canonical settings string of src with these file hashes (tok_sha NULL: none). */
int bs_cache_settings(const bs_cache_src *src, const char *calib_sha, const char *tok_sha, char *out, size_t n,
                      bs_err *e);

/* The entry of src in dir: hashes the source (stage "hash", bytes), the calibration text
 * and the tokenizer file. */
int bs_cache_key(bs_cache_entry *ce, const char *dir, const bs_cache_src *src, const bs_progress *pg, bs_err *e);

/* 1 when the entry's store exists, its .key matches and it opens (header, metadata and
 * base checked by bs_store_open); 0 when not (e says why, for a log: absent, another
 * key, or a store that does not open, which a build replaces). */
int bs_cache_lookup(const bs_cache_entry *ce, bs_err *e);

/* The store of src in dir, built when the cache does not have it: creates dir, takes the
 * entry's lock (stage "wait" while another process holds it), looks again, else loads
 * the source and compresses it (bs_compress's stages; the writer goes through
 * <path>.tmp, fsync, rename), writes the .key and checks the store opens. *reused says
 * whether an existing store was found. ce gets the entry (ce->path: the store). A
 * directory that cannot be created or written is an error naming it. */
int bs_cache_get(const char *dir, const bs_cache_src *src, const bs_progress *pg, bs_cache_entry *ce, int *reused,
                 bs_err *e);

#endif
