/* A memory cgroup made by a test: v1 under /sys/fs/cgroup/memory when that hierarchy
 * exists, else v2 under /sys/fs/cgroup (enabling the memory controller for children).
 * The test puts processes in it, reads its OOM-kill count, and removes it at the end. */
#ifndef BS_TEST_DAEMON_CGROUP_H
#define BS_TEST_DAEMON_CGROUP_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char dir[256];      /* its directory; "" when none */
    char rel[128];      /* its path inside the hierarchy, as /proc/PID/cgroup shows it */
    int version;
} tc_cgroup;

static inline bool tc_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text);
}

static inline bool tc_file_has(const char *path, const char *word)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, word) != NULL;
}

/* Makes the cgroup `name` with a memory limit; false (with why) when this machine cannot. */
static inline bool tc_make(tc_cgroup *cg, const char *name, long long limit, char *why, size_t n)
{
    char lim[32];
    snprintf(lim, sizeof lim, "%lld", limit);
    memset(cg, 0, sizeof *cg);
    snprintf(cg->rel, sizeof cg->rel, "/%s-%d", name, (int)getpid());
    struct stat st;
    if (!stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st)) {
        snprintf(cg->dir, sizeof cg->dir, "/sys/fs/cgroup/memory%s", cg->rel);
        if (mkdir(cg->dir, 0755)) {
            snprintf(why, n, "cannot create the cgroup v1 %s: %s", cg->dir, strerror(errno));
            cg->dir[0] = '\0';
            return false;
        }
        cg->version = 1;
        if (!tc_write(cg->dir, "memory.limit_in_bytes", lim)) {
            snprintf(why, n, "cannot set %s/memory.limit_in_bytes: %s", cg->dir, strerror(errno));
            return false;
        }
        return true;
    }
    if (tc_file_has("/sys/fs/cgroup/cgroup.controllers", "memory")) {
        if (!tc_file_has("/sys/fs/cgroup/cgroup.subtree_control", "memory") &&
            !tc_write("/sys/fs/cgroup", "cgroup.subtree_control", "+memory")) {
            snprintf(why, n, "cannot enable the memory controller for children of /sys/fs/cgroup: %s",
                     strerror(errno));
            return false;
        }
        snprintf(cg->dir, sizeof cg->dir, "/sys/fs/cgroup%s", cg->rel);
        if (mkdir(cg->dir, 0755)) {
            snprintf(why, n, "cannot create the cgroup v2 %s: %s", cg->dir, strerror(errno));
            cg->dir[0] = '\0';
            return false;
        }
        cg->version = 2;
        if (!tc_write(cg->dir, "memory.max", lim)) {
            snprintf(why, n, "cannot set %s/memory.max: %s", cg->dir, strerror(errno));
            return false;
        }
        return true;
    }
    snprintf(why, n, "no memory cgroup hierarchy at /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2)");
    return false;
}

static inline bool tc_join(const tc_cgroup *cg, pid_t pid)
{
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    return tc_write(cg->dir, "cgroup.procs", text);
}

/* Processes the kernel's OOM killer took in this cgroup (v1 memory.oom_control, v2
 * memory.events "oom_kill"); -1 when unreadable. */
static inline long long tc_oom_kills(const tc_cgroup *cg)
{
    char path[512], buf[4096];
    snprintf(path, sizeof path, "%s/%s", cg->dir, cg->version == 1 ? "memory.oom_control" : "memory.events");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strstr(buf, "oom_kill ");
    return p ? atoll(p + 9) : -1;
}

static inline long long tc_read_int(const tc_cgroup *cg, const char *file)
{
    char path[512], buf[64];
    snprintf(path, sizeof path, "%s/%s", cg->dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v = -1;
    if (fgets(buf, sizeof buf, f))
        v = atoll(buf);
    fclose(f);
    return v;
}

/* bs-hog (exe) with args, in the cgroup, its output in log; the pid, or -1. */
static inline pid_t tc_start_hog(const tc_cgroup *cg, const char *exe, const char *const *args, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!tc_join(cg, getpid()))
            _exit(3);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);   /* the hog holds until stdin ends or --hold-ms */
        const char *argv[24];
        int n = 0;
        argv[n++] = exe;
        for (int i = 0; args[i] && n < 23; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits up to ms for *pid to exit; true (and *pid = -1) when it did. */
static inline bool tc_wait_exit(pid_t *pid, int ms, int *status)
{
    for (int waited = 0; waited <= ms; waited += 20) {
        if (waitpid(*pid, status, WNOHANG) == *pid) {
            *pid = -1;
            return true;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Kills a hog (if *pid > 0) and reaps it. */
static inline void tc_kill(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

/* Under ASan the daemon's quarantine of freed memory would grow beside a hog or under a
 * limit by up to 256 MiB, which no model resize can make up for, and which a release build
 * does not hold: the daemons this test starts get a quarantine of mb MiB (and thread_kb
 * KiB per thread, when > 0). */
static inline void tc_asan_quarantine(int mb, int thread_kb)
{
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    int k = snprintf(opts, sizeof opts, "%s%squarantine_size_mb=%d", asan ? asan : "", asan && *asan ? ":" : "", mb);
    if (thread_kb > 0 && k > 0 && (size_t)k < sizeof opts)
        snprintf(opts + k, sizeof opts - (size_t)k, ":thread_local_quarantine_size_kb=%d", thread_kb);
    setenv("ASAN_OPTIONS", opts, 1);
}

/* Removes the cgroup (its processes must have ended; rmdir waits out their teardown). */
static inline void tc_remove(tc_cgroup *cg)
{
    if (!cg->dir[0])
        return;
    for (int i = 0; i < 200 && rmdir(cg->dir) && errno == EBUSY; i++)
        usleep(10000);
    cg->dir[0] = '\0';
}

#endif
