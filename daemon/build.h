/* bs_build: one model-cache build (model/cache.h) for `bitstackd --model X.gguf`, run on
 * its own thread so the libuv loop never waits for hashing or compression.
 *
 * The worker hashes the source, looks the entry up, and compresses when the cache does
 * not have it; its progress lands in a snapshot (under a mutex) that the loop reads at
 * any time as JSON. When the worker ends, `done` runs once on the loop thread with the
 * store's path or the error. Compression has no cancel point: bs_build_close during a
 * build lets the worker finish on its own (it then frees everything itself). A build
 * holds one referenced handle (uv_async_t) on the loop from start to close. */
#ifndef BS_DAEMON_BUILD_H
#define BS_DAEMON_BUILD_H

#include <jansson.h>
#include <uv.h>

#include "model/cache.h"

typedef struct bs_build bs_build;

enum { BS_BUILD_BUILDING = 0, BS_BUILD_READY = 1, BS_BUILD_FAILED = 2 };

/* On the loop thread, once: store is the store's path (valid until bs_build_close) and
 * error NULL, or store NULL and error the reason. reused: the cache had it. */
typedef void (*bs_build_done_fn)(void *ctx, bs_build *b, const char *store, int reused, const char *error);

/* Starts a build of src (copied: the caller's strings may go) in cache directory
 * cache_dir (bs_cache_dir's result). 0 and *out, or -1 with e set (nothing started). */
int bs_build_start(bs_build **out, uv_loop_t *loop, const char *cache_dir, const bs_cache_src *src,
                   bs_build_done_fn done, void *ctx, bs_err *e);

/* BS_BUILD_* now (any thread). */
int bs_build_state(const bs_build *b);

/* The snapshot as a new JSON object (any thread):
 *   {"state": "building"|"ready"|"failed", "source": path, "stage": "hash"|"wait"|
 *    "calibration"|"floor"|"encode"|"order (...)"|"write"|null, "done": n, "total": n,
 *    "item": text|null, "elapsed": s since the start, "stage_elapsed": s,
 *    "eta": s left in this stage (null when unknown), "store": path|null, "reused": bool,
 *    "error": text|null, "note": last note|null}
 * NULL only when out of memory. */
json_t *bs_build_status_json(const bs_build *b);

/* Ends the caller's interest (loop thread): the handle closes; memory goes once the
 * worker has ended too. done is not called after this. */
void bs_build_close(bs_build *b);

#endif
