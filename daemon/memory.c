#include "daemon/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/psi.h"

/* v1 writes "no limit" as the largest page-aligned counter, about 2^63. */
#define UNLIMITED_ABOVE ((int64_t)1 << 62)

/* Formats a path into buf (PATH_MAX bytes); false when it does not fit, and then buf
 * is "" (which names no file). */
static bool pathf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX) {
        buf[0] = '\0';
        return false;
    }
    return true;
}

/* A file holding one integer, or "max" (returned as -2). -1 when unreadable. */
static int64_t read_int_file(const char *dir, const char *name)
{
    char path[PATH_MAX], buf[64];
    pathf(path, "%s/%s", dir, name);
    if (bs_psi_read_file(path, buf, sizeof buf) <= 0)
        return -1;
    if (!strncmp(buf, "max", 3))
        return -2;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || v < 0)
        return -1;
    return v;
}

/* "key value" lines (meminfo, memory.stat): the value of key, times mult; -1 if absent. */
static int64_t keyed_value(const char *text, const char *key, int64_t mult)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, key, kl) && (p[kl] == ' ' || p[kl] == ':' || p[kl] == '\t')) {
            const char *v = p + kl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            long long x = strtoll(v, NULL, 10);
            return x < 0 ? -1 : x * mult;
        }
    }
    return -1;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

/* Does the comma-separated controller list name memory? */
static bool has_memory(const char *ctl, size_t n)
{
    const char *p = ctl, *end = ctl + n;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t len = c ? (size_t)(c - p) : (size_t)(end - p);
        if (len == 6 && !memcmp(p, "memory", 6))
            return true;
        p += len + 1;
    }
    return false;
}

/* The limit of dir and of each ancestor below mount: the smallest, or -1 for none. */
static int64_t tightest_limit(const char *mount, const char *dir, const char *file)
{
    char d[PATH_MAX];
    pathf(d, "%s", dir);
    size_t ml = strlen(mount);
    int64_t best = -1;
    for (;;) {
        int64_t v = read_int_file(d, file);
        if (v >= 0 && v < UNLIMITED_ABOVE && (best < 0 || v < best))
            best = v;
        if (strlen(d) <= ml)
            break;
        char *slash = strrchr(d, '/');
        if (!slash || (size_t)(slash - d) < ml)
            break;
        *slash = '\0';
    }
    return best;
}

/* Where the v2 hierarchy is mounted into mount: fs/cgroup on pure v2, fs/cgroup/unified
 * on hybrid setups. False when neither holds cgroup.controllers. */
static bool v2_mount(const char *sys, char *mount)
{
    const char *where[] = {"fs/cgroup", "fs/cgroup/unified"};
    for (int i = 0; i < 2; i++) {
        char probe[PATH_MAX];
        struct stat st;
        if (pathf(mount, "%s/%s", sys, where[i]) && pathf(probe, "%s/cgroup.controllers", mount)
            && !stat(probe, &st))
            return true;
    }
    mount[0] = '\0';
    return false;
}

/* The directory of cgroup path cg (cglen bytes, "/a/b") under mount into dir (PATH_MAX
 * bytes); the mount's root when the path is not there, as inside a cgroup namespace. */
static void cgroup_dir(char *dir, const char *mount, const char *cg, size_t cglen)
{
    if (cglen == 1 && cg[0] == '/')
        cglen = 0;   /* the root: no trailing slash on the directory */
    if (!pathf(dir, "%s%.*s", mount, (int)cglen, cg) || !is_dir(dir))
        pathf(dir, "%s", mount);
}

static void read_cgroup(const char *proc, const char *sys, bs_mem_facts *f)
{
    char path[PATH_MAX], text[8192];
    pathf(path, "%s/self/cgroup", proc);
    if (bs_psi_read_file(path, text, sizeof text) <= 0)
        return;
    const char *v1 = NULL, *v2 = NULL;
    size_t v1len = 0, v2len = 0;
    for (char *line = text; line && *line;) {
        char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char *c1 = memchr(line, ':', len);
        char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            const char *p = c2 + 1;
            size_t pl = len - (size_t)(p - line);
            if (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1)
                v2 = p, v2len = pl;
            else if (has_memory(c1 + 1, (size_t)(c2 - c1 - 1)))
                v1 = p, v1len = pl;
        }
        line = eol ? eol + 1 : NULL;
    }
    char mount[PATH_MAX], dir[PATH_MAX], stats[16384];
    char v2mount[PATH_MAX];
    bool have_v2 = v2 && v2_mount(sys, v2mount);
    if (have_v2)
        cgroup_dir(f->v2_dir, v2mount, v2, v2len);
    int ver = 0;
    const char *cg = NULL;
    size_t cglen = 0;
    if (v1) {
        pathf(mount, "%s/fs/cgroup/memory", sys);
        if (is_dir(mount))
            ver = 1, cg = v1, cglen = v1len;
    }
    if (!ver && have_v2) {
        pathf(mount, "%s", v2mount);
        ver = 2, cg = v2, cglen = v2len;
    }
    if (!ver)
        return;
    cgroup_dir(dir, mount, cg, cglen);
    if (cglen == 1 && cg[0] == '/')
        cglen = 0;   /* the root, named "/" below */
    f->cgroup_version = ver;
    snprintf(f->cgroup, sizeof f->cgroup, "%.*s", (int)(cglen ? cglen : 1), cglen ? cg : "/");
    if (ver == 1) {
        f->memory_current = read_int_file(dir, "memory.usage_in_bytes");
        f->memory_max = tightest_limit(mount, dir, "memory.limit_in_bytes");
    } else {
        f->memory_current = read_int_file(dir, "memory.current");
        f->memory_max = tightest_limit(mount, dir, "memory.max");
        f->memory_high = tightest_limit(mount, dir, "memory.high");
    }
    pathf(path, "%s/memory.stat", dir);
    if (bs_psi_read_file(path, stats, sizeof stats) > 0)
        f->inactive_file = keyed_value(stats, ver == 1 ? "total_inactive_file" : "inactive_file", 1);
}

void bs_mem_read(const char *proc_root, const char *sys_root, bs_mem_facts *f)
{
    memset(f, 0, sizeof *f);
    f->mem_available = f->memory_current = f->memory_max = f->memory_high = f->inactive_file = -1;
    f->psi_some_avg10 = f->psi_full_avg10 = -1;
    char path[PATH_MAX], text[4096];
    pathf(path, "%s/meminfo", proc_root);
    if (bs_psi_read_file(path, text, sizeof text) > 0)
        f->mem_available = keyed_value(text, "MemAvailable", 1024);
    pathf(path, "%s/pressure/memory", proc_root);
    bs_psi_read_avg10(path, &f->psi_some_avg10, &f->psi_full_avg10);
    read_cgroup(proc_root, sys_root, f);
}

/* Room under limit for the working set, clamped at 0; -1 when either is unknown. */
static int64_t room_under(int64_t limit, const bs_mem_facts *f)
{
    if (limit < 0 || f->memory_current < 0)
        return -1;
    int64_t ws = f->memory_current - (f->inactive_file > 0 ? f->inactive_file : 0);
    if (ws < 0)
        ws = 0;   /* memory.current and memory.stat are read at different moments */
    return limit > ws ? limit - ws : 0;
}

int64_t bs_mem_headroom(const bs_mem_facts *f, bs_mem_source *src)
{
    /* in order of preference on a tie */
    struct {
        int64_t room;
        bs_mem_source src;
    } cand[] = {
        {f->cgroup_version == 1 ? room_under(f->memory_max, f) : -1, BS_MEM_SRC_CGROUP_V1},
        {f->cgroup_version == 2 ? room_under(f->memory_high, f) : -1, BS_MEM_SRC_CGROUP_V2_HIGH},
        {f->cgroup_version == 2 ? room_under(f->memory_max, f) : -1, BS_MEM_SRC_CGROUP_V2_MAX},
        {f->mem_available, BS_MEM_SRC_MEMAVAILABLE},
    };
    int64_t best = -1;
    bs_mem_source best_src = BS_MEM_SRC_NONE;
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        if (cand[i].room >= 0 && (best < 0 || cand[i].room < best))
            best = cand[i].room, best_src = cand[i].src;
    if (src)
        *src = best_src;
    return best;
}

const char *bs_mem_source_name(bs_mem_source src)
{
    switch (src) {
    case BS_MEM_SRC_CGROUP_V1:
        return "cgroup v1 memory.limit_in_bytes";
    case BS_MEM_SRC_CGROUP_V2_MAX:
        return "cgroup v2 memory.max";
    case BS_MEM_SRC_CGROUP_V2_HIGH:
        return "cgroup v2 memory.high";
    case BS_MEM_SRC_MEMAVAILABLE:
        return "MemAvailable";
    case BS_MEM_SRC_NONE:
        break;
    }
    return "none";
}
