/* bs_mem_read over fixture trees standing in for /proc and /sys: cgroup v1, v2, hybrid,
 * a cgroup namespace, and nothing at all. The tightest limit on the way up wins.
 * Then bs_mem_headroom over such trees and over facts built by hand. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/memory.h"
#include "harness.h"
#include "tests/daemon/client.h"

static char root[64];

/* Writes root/<case>/<rel> with its folders. */
static void put(const char *tc, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", root, tc, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static void read_case(const char *tc, bs_mem_facts *f)
{
    char proc[256], sys[256];
    snprintf(proc, sizeof proc, "%s/%s/proc", root, tc);
    snprintf(sys, sizeof sys, "%s/%s/sys", root, tc);
    bs_mem_read(proc, sys, f);
}

/* root/<case>/sys/<rel> */
static const char *sys_path(const char *tc, const char *rel)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s/sys/%s", root, tc, rel);
    return buf;
}

static const char *MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000 kB\nMemAvailable:    1000 kB\n";
static const char *PSI = "some avg10=1.50 avg60=0.80 avg300=0.10 total=12345\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=99\n";

int main(void)
{
    td_mkdtemp(root, sizeof root);
    bs_mem_facts f;

    /* v1: limits of the cgroup and its parent; the parent's is tighter */
    put("v1", "proc/meminfo", MEMINFO);
    put("v1", "proc/pressure/memory", PSI);
    put("v1", "proc/self/cgroup", "12:pids:/x\n4:memory:/a/b\n0::/\n");
    put("v1", "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    put("v1", "sys/fs/cgroup/memory/a/memory.limit_in_bytes", "536870912\n");
    put("v1", "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    put("v1", "sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "123456\n");
    put("v1", "sys/fs/cgroup/memory/a/b/memory.stat", "cache 1\ninactive_file 7\ntotal_inactive_file 4096\n");
    read_case("v1", &f);
    CHECK(f.mem_available == 1000 * 1024);
    CHECK_NEAR(f.psi_some_avg10, 1.5, 1e-9);
    CHECK_NEAR(f.psi_full_avg10, 0.25, 1e-9);
    CHECK(f.cgroup_version == 1);
    CHECK(!strcmp(f.cgroup, "/a/b"));
    CHECK(f.memory_current == 123456);
    CHECK(f.memory_max == 536870912);
    CHECK(f.inactive_file == 4096);
    CHECK(f.memory_high == -1);
    CHECK(f.v2_dir[0] == '\0');   /* "0::/" is listed, but there is no v2 mount */

    /* the cgroup's own limit when it is the tighter one */
    put("v1", "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "1048576\n");
    read_case("v1", &f);
    CHECK(f.memory_max == 1048576);

    /* v2: "max" is no limit; the parent slice's limit binds */
    put("v2", "proc/self/cgroup", "0::/svc.slice/x.service\n");
    put("v2", "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
    put("v2", "sys/fs/cgroup/svc.slice/memory.max", "2097152\n");
    put("v2", "sys/fs/cgroup/svc.slice/x.service/memory.max", "max\n");
    put("v2", "sys/fs/cgroup/svc.slice/x.service/memory.current", "2048\n");
    put("v2", "sys/fs/cgroup/svc.slice/x.service/memory.stat", "anon 1\ninactive_file 10\n");
    read_case("v2", &f);
    CHECK(f.cgroup_version == 2);
    CHECK(!strcmp(f.cgroup, "/svc.slice/x.service"));
    CHECK(f.memory_current == 2048);
    CHECK(f.memory_max == 2097152);
    CHECK(f.inactive_file == 10);
    CHECK(f.mem_available == -1 && f.psi_some_avg10 < 0);   /* no proc files in this case */
    CHECK(f.memory_high == -1);
    CHECK(!strcmp(f.v2_dir, sys_path("v2", "fs/cgroup/svc.slice/x.service")));

    /* v2 without any limit */
    put("v2", "sys/fs/cgroup/svc.slice/memory.max", "max\n");
    read_case("v2", &f);
    CHECK(f.memory_max == -1);
    CHECK(f.memory_current == 2048);

    /* hybrid: memory is a v1 controller (here sharing a hierarchy with cpu); v1 wins */
    put("hy", "proc/self/cgroup", "0::/user.slice\n5:cpu,memory:/m\n");
    put("hy", "sys/fs/cgroup/unified/cgroup.controllers", "\n");
    put("hy", "sys/fs/cgroup/memory/m/memory.usage_in_bytes", "777\n");
    put("hy", "sys/fs/cgroup/memory/m/memory.limit_in_bytes", "4096000\n");
    read_case("hy", &f);
    CHECK(f.cgroup_version == 1 && !strcmp(f.cgroup, "/m"));
    CHECK(f.memory_current == 777 && f.memory_max == 4096000);

    /* hybrid with only the unified hierarchy listed: v2 at fs/cgroup/unified */
    put("un", "proc/self/cgroup", "1:name=systemd:/s\n0::/s\n");
    put("un", "sys/fs/cgroup/unified/cgroup.controllers", "\n");
    put("un", "sys/fs/cgroup/unified/s/memory.current", "55\n");
    read_case("un", &f);
    CHECK(f.cgroup_version == 2 && f.memory_current == 55 && f.memory_max == -1);

    /* a cgroup namespace: the path is not under the mount; the mount's root is the cgroup */
    put("ns", "proc/self/cgroup", "0::/not/here\n");
    put("ns", "sys/fs/cgroup/cgroup.controllers", "memory\n");
    put("ns", "sys/fs/cgroup/memory.current", "99\n");
    put("ns", "sys/fs/cgroup/memory.max", "1000\n");
    read_case("ns", &f);
    CHECK(f.cgroup_version == 2 && f.memory_current == 99 && f.memory_max == 1000);

    /* nothing readable: everything unknown, nothing invented */
    put("none", "proc/.keep", "");
    read_case("none", &f);
    CHECK(f.cgroup_version == 0 && f.memory_current == -1 && f.memory_max == -1);
    CHECK(f.mem_available == -1 && f.psi_some_avg10 < 0 && f.psi_full_avg10 < 0 && f.inactive_file == -1);

    /* garbage in the files: unknown, not a crash or a wrong number */
    put("bad", "proc/meminfo", "MemAvailable: lots\n");
    put("bad", "proc/pressure/memory", "some nothing\n");
    put("bad", "proc/self/cgroup", "::::\n4:memory\n0:\n");
    read_case("bad", &f);
    CHECK(f.psi_some_avg10 < 0);
    CHECK(f.cgroup_version == 0);

    /* hybrid where the v2 cgroup exists: the numbers come from v1, but v2_dir is kept,
     * as memory.pressure lives only there */
    put("hb", "proc/self/cgroup", "9:name=systemd:/a/b\n4:memory:/a/b\n0::/a/b\n");
    put("hb", "proc/meminfo", MEMINFO);
    put("hb", "sys/fs/cgroup/unified/cgroup.controllers", "\n");
    put("hb", "sys/fs/cgroup/unified/a/b/memory.pressure", PSI);
    put("hb", "sys/fs/cgroup/unified/a/b/memory.max", "1\n");   /* not v2's to say */
    put("hb", "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "300000\n");
    put("hb", "sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "200000\n");
    put("hb", "sys/fs/cgroup/memory/a/b/memory.stat", "total_inactive_file 50000\n");
    read_case("hb", &f);
    CHECK(f.cgroup_version == 1 && f.memory_max == 300000 && f.memory_high == -1);
    CHECKF(!strcmp(f.v2_dir, sys_path("hb", "fs/cgroup/unified/a/b")), "v2_dir %s", f.v2_dir);
    bs_mem_source src = BS_MEM_SRC_NONE;
    CHECK(bs_mem_headroom(&f, &src) == 300000 - (200000 - 50000));
    CHECK(src == BS_MEM_SRC_CGROUP_V1);
    CHECK(!strcmp(bs_mem_source_name(src), "cgroup v1 memory.limit_in_bytes"));

    /* v1 headroom against MemAvailable: the v1 case's 1 MiB limit, 123456 used of which
     * 4096 is inactive page cache, leaves 929216; MemAvailable is 1000 kB, a little more */
    read_case("v1", &f);
    CHECK(bs_mem_headroom(&f, &src) == 1048576 - (123456 - 4096) && src == BS_MEM_SRC_CGROUP_V1);
    put("v1", "proc/meminfo", "MemAvailable:    800 kB\n");
    read_case("v1", &f);
    CHECK(bs_mem_headroom(&f, &src) == 800 * 1024 && src == BS_MEM_SRC_MEMAVAILABLE);

    /* v2: memory.high on the cgroup, memory.max on its parent, MemAvailable plenty.
     * Working set 6 MiB - 1 MiB = 5 MiB; high leaves 3 MiB, max 5 MiB. */
    const int64_t MiB = 1 << 20;
    put("h2", "proc/self/cgroup", "0::/s/w\n");
    put("h2", "proc/meminfo", "MemAvailable:  102400 kB\n");
    put("h2", "sys/fs/cgroup/cgroup.controllers", "memory\n");
    put("h2", "sys/fs/cgroup/s/memory.max", "10485760\n");
    put("h2", "sys/fs/cgroup/s/memory.high", "max\n");
    put("h2", "sys/fs/cgroup/s/w/memory.max", "max\n");
    put("h2", "sys/fs/cgroup/s/w/memory.high", "8388608\n");
    put("h2", "sys/fs/cgroup/s/w/memory.current", "6291456\n");
    put("h2", "sys/fs/cgroup/s/w/memory.stat", "anon 5242880\ninactive_file 1048576\n");
    read_case("h2", &f);
    CHECK(f.cgroup_version == 2 && f.memory_max == 10 * MiB && f.memory_high == 8 * MiB);
    CHECK(!strcmp(f.v2_dir, sys_path("h2", "fs/cgroup/s/w")));
    CHECK(bs_mem_headroom(&f, &src) == 3 * MiB && src == BS_MEM_SRC_CGROUP_V2_HIGH);
    CHECK(!strcmp(bs_mem_source_name(src), "cgroup v2 memory.high"));

    /* "max" is no limit: without memory.high, memory.max binds */
    put("h2", "sys/fs/cgroup/s/w/memory.high", "max\n");
    read_case("h2", &f);
    CHECK(f.memory_high == -1);
    CHECK(bs_mem_headroom(&f, &src) == 5 * MiB && src == BS_MEM_SRC_CGROUP_V2_MAX);
    CHECK(!strcmp(bs_mem_source_name(src), "cgroup v2 memory.max"));

    /* the machine tighter than the cgroup */
    put("h2", "proc/meminfo", "MemAvailable:  2048 kB\n");
    read_case("h2", &f);
    CHECK(bs_mem_headroom(&f, &src) == 2 * MiB && src == BS_MEM_SRC_MEMAVAILABLE);
    CHECK(!strcmp(bs_mem_source_name(src), "MemAvailable"));

    /* over the limit: no room, not a negative number */
    put("h2", "sys/fs/cgroup/s/w/memory.current", "20971520\n");
    read_case("h2", &f);
    CHECK(bs_mem_headroom(&f, &src) == 0 && src == BS_MEM_SRC_CGROUP_V2_MAX);

    /* no limits and no meminfo: nothing known */
    put("h2", "sys/fs/cgroup/s/memory.max", "max\n");
    put("h2", "proc/meminfo", "MemTotal: 1 kB\n");
    read_case("h2", &f);
    CHECK(f.memory_max == -1 && f.memory_high == -1 && f.mem_available == -1);
    CHECK(bs_mem_headroom(&f, &src) == -1 && src == BS_MEM_SRC_NONE);
    CHECK(!strcmp(bs_mem_source_name(src), "none"));
    CHECK(bs_mem_headroom(&f, NULL) == -1);

    /* hand-made facts: ties, unknown usage, inactive above current */
    bs_mem_facts h;
    memset(&h, 0, sizeof h);
    h.cgroup_version = 2;
    h.memory_current = 100;
    h.inactive_file = 0;
    h.memory_max = h.memory_high = 1000;
    h.mem_available = 900;
    CHECK(bs_mem_headroom(&h, &src) == 900 && src == BS_MEM_SRC_CGROUP_V2_HIGH);
    h.mem_available = 5000;
    h.memory_high = -1;
    CHECK(bs_mem_headroom(&h, &src) == 900 && src == BS_MEM_SRC_CGROUP_V2_MAX);
    h.inactive_file = 500;   /* read a moment apart from current: the working set is 0 */
    CHECK(bs_mem_headroom(&h, &src) == 1000 && src == BS_MEM_SRC_CGROUP_V2_MAX);
    h.memory_current = -1;   /* a limit without the usage says nothing about room */
    CHECK(bs_mem_headroom(&h, &src) == 5000 && src == BS_MEM_SRC_MEMAVAILABLE);
    h.cgroup_version = 1;
    h.memory_current = 100;
    h.inactive_file = -1;    /* unknown page cache: all of current counts */
    h.memory_high = 10;      /* v1 has no memory.high; a stray value is ignored */
    CHECK(bs_mem_headroom(&h, &src) == 900 && src == BS_MEM_SRC_CGROUP_V1);
    CHECK(!strcmp(bs_mem_source_name((bs_mem_source)99), "none"));

    /* the real machine: whatever it has, the numbers are sane */
    bs_mem_read("/proc", "/sys", &f);
    CHECK(f.mem_available > 0);
    CHECK(f.memory_max == -1 || f.memory_max > 0);
    CHECK(f.memory_high == -1 || f.memory_high > 0);
    int64_t room = bs_mem_headroom(&f, &src);
    CHECK(room >= 0 && src != BS_MEM_SRC_NONE);
    fprintf(stderr, "this machine: cgroup v%d %s, v2 dir \"%s\", headroom %lld bytes from %s\n",
            f.cgroup_version, f.cgroup, f.v2_dir, (long long)room, bs_mem_source_name(src));

    td_rmtree(root);
    TEST_MAIN_END();
}
