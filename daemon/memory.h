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
 *        memory.stat inactive_file
 *   The limit is the tightest one on the way up to the hierarchy's root, since a parent's
 *   limit binds its children too. v1 is used when present (hybrid setups keep memory
 *   there). When <path> is not found under the mount (a cgroup namespace shows "/"), the
 *   mount's root is used.
 * The roots default to "/proc" and "/sys"; tests point them at fixture trees.
 * The cgroup is looked up again on every read: the process may have been moved. */
#ifndef BS_MEMORY_H
#define BS_MEMORY_H

#include <stdint.h>

typedef struct {
    int64_t mem_available;      /* bytes */
    double psi_some_avg10;      /* percent */
    double psi_full_avg10;
    int cgroup_version;         /* 1 or 2; 0 when no memory cgroup was found */
    char cgroup[512];           /* the cgroup's path inside its hierarchy ("/a/b") */
    int64_t memory_current;     /* bytes charged to the cgroup */
    int64_t memory_max;         /* the tightest limit; -1 unlimited or unknown */
    int64_t inactive_file;      /* page cache the kernel can reclaim first */
} bs_mem_facts;

/* Fills *f; never fails (what cannot be read is -1, or 0 for cgroup_version). */
void bs_mem_read(const char *proc_root, const char *sys_root, bs_mem_facts *f);

#endif
