#include "model/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/sha256.h"
#include "model/selfcalib.h"
#include "model/load.h"
#include "model/ppl.h"
#include "model/store.h"

/* Bumped when the compressor changes what it writes for the same settings. */
#define CACHE_FORMAT 1

int bs_cache_dir(const char *explicit_dir, char *out, size_t n, bs_err *e)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int w;
    if (explicit_dir && *explicit_dir)
        w = snprintf(out, n, "%s", explicit_dir);
    else if (xdg && xdg[0] == '/')   /* the spec ignores a relative one */
        w = snprintf(out, n, "%s/bitstack", xdg);
    else if (home && *home)
        w = snprintf(out, n, "%s/.cache/bitstack", home);
    else
        return bs_err_set(e, "no cache directory: neither $XDG_CACHE_HOME nor $HOME is set (give one explicitly)");
    if (w < 0 || (size_t)w >= n)
        return bs_err_set(e, "the cache directory's path is too long");
    return 0;
}

int bs_cache_settings(const bs_cache_src *src, const char *calib_sha, const char *tok_sha, char *out, size_t n,
                      bs_err *e)
{
    const bs_compress_opts *o = &src->opts;
    char kind[160] = "", floor[256] = "";
    /* only what changes the store: a setting another kind ignores does not split the cache */
    if (o->kind == BS_KIND_GQ)
        snprintf(kind, sizeof kind, " gq_levels=%d gq_restart=%d clip_search=%d", o->gq_levels, o->gq_restart,
                 o->clip_search);
    else if (o->kind == BS_KIND_AVD)
        snprintf(kind, sizeof kind, " k=%d", o->k);
    if (o->floor_bpw > 0) {
        int qat = o->qat.minutes > 0 || o->qat.max_steps > 0;
        int w = snprintf(floor, sizeof floor, " floor_bpw=%.9g floor_paths=%d", o->floor_bpw, o->floor_paths);
        if (qat && w > 0 && (size_t)w < sizeof floor)
            snprintf(floor + w, sizeof floor - (size_t)w,
                     " qat_minutes=%.9g qat_steps=%ld qat_batch=%d qat_seq=%d qat_lr=%.9g qat_mse=%.9g",
                     o->qat.minutes, (long)o->qat.max_steps, o->qat.batch, o->qat.seq, (double)o->qat.lr,
                     (double)o->qat.mse_weight);
    }
    char ppl[32] = "";
    if (o->sort == BS_SORT_PPL)
        snprintf(ppl, sizeof ppl, " ppl_windows=%d", o->ppl_windows);
    int w = snprintf(out, n,
                     "bitstack-cache=%d store<=%d kind=%s levels=%d group=%d sort=%s%s ctx=%d calib_windows=%d "
                     "act_scale=%d act_alpha=%.9g act_order=%d%s%s calib=%s tokenizer=%s",
                     CACHE_FORMAT, BS_STORE_VERSION_BPE, bs_kind_name(o->kind), o->levels, o->group,
                     o->sort == BS_SORT_PPL ? "ppl" : "level", ppl, o->ctx, o->calib_windows, o->act_scale,
                     (double)o->act_alpha, o->act_order, kind, floor, calib_sha, tok_sha ? tok_sha : "inside");
    if (w < 0 || (size_t)w >= n)
        return bs_err_set(e, "the cache key's settings string is too long");
    return 0;
}

static void on_hash_chunk(void *ctx, uint64_t done, uint64_t size)
{
    bs_progress_report(ctx, "hash", (int64_t)done, (int64_t)size, NULL);
}

int bs_cache_key(bs_cache_entry *ce, const char *dir, const bs_cache_src *src, const bs_progress *pg, bs_err *e)
{
    memset(ce, 0, sizeof *ce);
    char calib_sha[65], tok_sha[65];
    if (!src->source)
        return bs_err_set(e, "a cached store needs a source model");
    /* without a text the model writes its own (model/selfcalib.h): determined by the
     * source and the seed, so the key names them instead of a file's hash */
    if (!src->calib)
        snprintf(calib_sha, sizeof calib_sha, "self:%llu", (unsigned long long)src->self_seed);
    if (bs_sha256_file(src->source, ce->source_sha, on_hash_chunk, (void *)pg, e) ||
        (src->calib && bs_sha256_file(src->calib, calib_sha, NULL, NULL, e)) ||
        (src->tokenizer && bs_sha256_file(src->tokenizer, tok_sha, NULL, NULL, e)))
        return -1;
    if (bs_cache_settings(src, calib_sha, src->tokenizer ? tok_sha : NULL, ce->settings, sizeof ce->settings, e))
        return -1;
    char settings_sha[65];
    bs_sha256_hex(ce->settings, strlen(ce->settings), settings_sha);
    int w = snprintf(ce->path, sizeof ce->path, "%s/%.16s-%.16s.bstk", dir, ce->source_sha, settings_sha);
    int wk = snprintf(ce->key_path, sizeof ce->key_path, "%s/%.16s-%.16s.key", dir, ce->source_sha, settings_sha);
    int wl = snprintf(ce->lock_path, sizeof ce->lock_path, "%s/%.16s-%.16s.lock", dir, ce->source_sha, settings_sha);
    if (w < 0 || wk < 0 || wl < 0 || (size_t)w >= sizeof ce->path || (size_t)wk >= sizeof ce->key_path ||
        (size_t)wl >= sizeof ce->lock_path)
        return bs_err_set(e, "%s: the cache directory's path is too long", dir);
    return 0;
}

/* What the .key file holds: the whole key, so a lookup never trusts the 64-bit name alone. */
static int key_text(const bs_cache_entry *ce, char *out, size_t n)
{
    int w = snprintf(out, n, "source_sha256 %s\nsettings %s\n", ce->source_sha, ce->settings);
    return w < 0 || (size_t)w >= n ? -1 : w;
}

int bs_cache_lookup(const bs_cache_entry *ce, bs_err *e)
{
    struct stat st;
    if (stat(ce->path, &st) != 0)
        return bs_err_set(e, "%s: not in the cache", ce->path), 0;
    char want[1200], got[1200];
    int wl = key_text(ce, want, sizeof want);
    FILE *f = fopen(ce->key_path, "r");
    size_t gl = f ? fread(got, 1, sizeof got, f) : 0;
    if (f)
        fclose(f);
    if (wl < 0 || gl != (size_t)wl || memcmp(got, want, gl) != 0)
        return bs_err_set(e, "%s: its key file %s is missing or names another source or settings", ce->path,
                          ce->key_path), 0;
    bs_store s;
    if (bs_store_open(&s, ce->path, e))
        return 0;
    bs_store_close(&s);
    return 1;
}

/* mkdir -p with mode 0700 for what it creates (a cache is the user's own). */
static int make_dirs(const char *dir, bs_err *e)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return bs_err_set(e, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s)
            continue;
        char c = *s;
        *s = 0;
        struct stat st;
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return bs_err_set(e, "cannot create the cache directory %s: %s (at %s)", dir, strerror(errno), p);
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            return bs_err_set(e, "cannot create the cache directory %s: %s is not a directory", dir, p);
        if (!c)
            return 0;
        *s = c;
    }
}

/* Writes the .key through a temporary file, then makes both renames durable. */
static int write_key(const bs_cache_entry *ce, const char *dir, bs_err *e)
{
    char text[1200], tmp[PATH_MAX + 8];
    int n = key_text(ce, text, sizeof text);
    snprintf(tmp, sizeof tmp, "%s.tmp", ce->key_path);
    int fd = n < 0 ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return bs_err_set(e, "%s: cannot write: %s", tmp, n < 0 ? "key too long" : strerror(errno));
    int ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok && rename(tmp, ce->key_path) == 0;
    if (!ok) {
        int err = errno;
        unlink(tmp);
        return bs_err_set(e, "%s: cannot write: %s", ce->key_path, strerror(err));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);   /* best effort: some file systems refuse a directory fsync */
        close(dfd);
    }
    return 0;
}

static int build(const bs_cache_entry *ce, const char *dir, const bs_cache_src *src, const bs_progress *pg,
                 bs_err *e)
{
    bs_model m;
    if (bs_model_load(&m, src->source, e))
        return -1;
    bs_tokenizer *t = bs_tok_load_for(src->source, src->tokenizer, m.cfg.vocab_size, e);
    size_t len = 0;
    char *text = NULL;
    if (t && src->calib)
        text = bs_read_file(src->calib, &len, e);
    else if (t && bs_selfcalib_text(&m, t, src->opts.calib_windows, src->opts.ctx, src->self_seed, pg, &text, &len, e))
        text = NULL;
    int rc = -1;
    if (text) {
        bs_compress_opts o = src->opts;
        o.progress = pg ? *pg : (bs_progress){0};
        rc = bs_compress(&m, t, text, len, &o, ce->path, NULL, e);
    }
    free(text);
    bs_tok_free(t);
    bs_model_free(&m);
    if (rc || write_key(ce, dir, e))
        return -1;
    if (bs_cache_lookup(ce, e) != 1)
        return bs_err_wrap(e, "the store just built does not open");
    return 0;
}

int bs_cache_get(const char *dir, const bs_cache_src *src, const bs_progress *pg, bs_cache_entry *ce, int *reused,
                 bs_err *e)
{
    *reused = 0;
    if (make_dirs(dir, e))
        return -1;
    if (access(dir, W_OK) != 0)
        return bs_err_set(e, "the cache directory %s is not writable: %s", dir, strerror(errno));
    if (bs_cache_key(ce, dir, src, pg, e))
        return -1;
    int fd = open(ce->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return bs_err_set(e, "the cache directory %s is not writable: %s: %s", dir, ce->lock_path, strerror(errno));
    int rc = flock(fd, LOCK_EX | LOCK_NB);
    if (rc != 0 && errno == EWOULDBLOCK) {
        /* another process builds this entry: wait for it, then take its store */
        bs_progress_report(pg, "wait", 0, 1, ce->lock_path);
        while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
            ;
        if (!rc)
            bs_progress_report(pg, "wait", 1, 1, ce->lock_path);
    }
    if (rc != 0) {
        int err = errno;
        close(fd);
        return bs_err_set(e, "%s: cannot lock: %s", ce->lock_path, strerror(err));
    }
    bs_err why = {{0}};
    if (bs_cache_lookup(ce, &why) == 1)
        *reused = 1;
    else
        rc = build(ce, dir, src, pg, e);
    close(fd);   /* releases the lock; the lock file stays (removing it would race a waiter) */
    return rc;
}
