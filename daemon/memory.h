/* bs_mem: read-only facts about memory, for `status`, `metrics` and (next) the resize
 * policy. Nothing here decides anything.
 *
 * Sources, each optional (a missing one reads as unknown, -1):
 * - <proc>/meminfo             MemAvailable
 * - <proc>/pressure/memory     PSI "some" and "full" avg10 (percent of wall time stalled)
 * - <proc>/self/cgroup         which cgroup this process is in; then under <sys>/fs/cgroup:
 *     v1 (a hierarchy with the memory controller): memory/<path>/memory.usage_in_bytes,
 *        memory.limit_in_bytes, memory.stat total_inactive_file
 *     v2 ("0::<path>", at fs/cgroup or fs/cgroup/unified): memory.current, memory.max,
 *        memory.high, memory.stat inactive_file
 *   Each limit is the tightest one on the way up to the hierarchy's root, since a parent's
 *   limit binds its children too. v1 is used when present (hybrid setups keep memory
 *   there). When <path> is not found under the mount (a cgroup namespace shows "/"), the
 *   mount's root is used.
 *   The v2 directory is recorded even when the numbers come from v1: a hybrid setup has
 *   memory.pressure only on the v2 side, and the PSI trigger (daemon/psi.h) wants it.
 * The roots default to "/proc" and "/sys"; tests point them at fixture trees.
 * The cgroup is looked up again on every read: the process may have been moved. */
#ifndef BS_MEMORY_H
#define BS_MEMORY_H

#include <limits.h>
#include <stdint.h>

typedef struct {
    int64_t mem_available;      /* bytes */
    double psi_some_avg10;      /* percent */
    double psi_full_avg10;
    int cgroup_version;         /* 1 or 2; 0 when no memory cgroup was found */
    char cgroup[512];           /* the cgroup's path inside its hierarchy ("/a/b") */
    int64_t memory_current;     /* bytes charged to the cgroup */
    int64_t memory_max;         /* the tightest limit; -1 unlimited or unknown */
    int64_t memory_high;        /* v2 only: the tightest memory.high; -1 unlimited or unknown */
    int64_t inactive_file;      /* page cache the kernel can reclaim first */
    char v2_dir[PATH_MAX];      /* the v2 cgroup's directory under sys_root; "" when none */
} bs_mem_facts;

/* Which number bounds the headroom. */
typedef enum {
    BS_MEM_SRC_NONE,
    BS_MEM_SRC_CGROUP_V1,        /* memory.limit_in_bytes */
    BS_MEM_SRC_CGROUP_V2_MAX,    /* memory.max: past it the kernel reclaims hard, then OOM-kills */
    BS_MEM_SRC_CGROUP_V2_HIGH,   /* memory.high: past it the kernel throttles and reclaims */
    BS_MEM_SRC_MEMAVAILABLE,
} bs_mem_source;

/* Fills *f; never fails (what cannot be read is -1, or 0 for cgroup_version). */
void bs_mem_read(const char *proc_root, const char *sys_root, bs_mem_facts *f);

/* Bytes that can still be charged before the tightest known limit, from facts alone:
 * for a cgroup limit, limit - (current - inactive_file), since reclaimable page cache
 * gives way before the limit bites; for the machine, MemAvailable. The smallest wins and
 * *src (if not NULL) names it; on a tie the cgroup wins, memory.high before memory.max,
 * as that is the one the kernel acts on first. Never negative: an overdrawn limit is 0.
 * -1 with BS_MEM_SRC_NONE when nothing is known. */
int64_t bs_mem_headroom(const bs_mem_facts *f, bs_mem_source *src);

/* "cgroup v1 memory.limit_in_bytes", "cgroup v2 memory.max", "cgroup v2 memory.high",
 * "MemAvailable" or "none" (also for a value outside the enum). */
const char *bs_mem_source_name(bs_mem_source src);

#endif
