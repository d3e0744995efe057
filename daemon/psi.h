/* bs_psi: a PSI trigger on memory pressure, for the daemon's loop to poll, and the avg10
 * numbers of a pressure file.
 *
 * A trigger is a line "some <stall_us> <window_us>" written to a pressure file: the
 * kernel then wakes a poll for POLLPRI whenever tasks stalled on memory for stall_us
 * within a window_us. Where the trigger goes, in order:
 * - $MEMORY_PRESSURE_WATCH, when the service manager set it (systemd does for services;
 *   its value and $MEMORY_PRESSURE_WRITE's come in through the config, so tests can pass
 *   their own). "/dev/null" turns monitoring off. Otherwise the path is opened and
 *   $MEMORY_PRESSURE_WRITE, base64-decoded, is written as is (systemd's includes the
 *   trailing NUL the kernel expects); without it, our own trigger. The path may also be a
 *   FIFO (poll it for POLLIN; only what $MEMORY_PRESSURE_WRITE gives is written to it, as
 *   our own line would read back as an event) or an AF_UNIX socket (connected; poll for
 *   POLLIN). When this path fails nothing else is tried: the service manager chose it.
 * - <v2_dir>/memory.pressure: our own cgroup's stalls, which is what a limit causes.
 * - <proc>/pressure/memory: the whole machine's.
 * When none works the daemon still runs, on periodic samples alone: bs_psi_open then
 * returns 0 with fd -1 and says why. */
#ifndef BS_PSI_H
#define BS_PSI_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kernels/err.h"

#define BS_PSI_STALL_US_DEFAULT 150000u
#define BS_PSI_WINDOW_US_DEFAULT 1000000u

typedef struct {
    const char *proc_root;   /* NULL: "/proc" */
    const char *v2_dir;      /* bs_mem_facts.v2_dir; NULL or "" when there is none */
    const char *watch;       /* the value of $MEMORY_PRESSURE_WATCH, or NULL when unset */
    const char *write_b64;   /* the value of $MEMORY_PRESSURE_WRITE, or NULL when unset */
    /* Our own trigger; 0 takes the default. The kernel wants a window of 0.5 s to 10 s
     * and a stall of at most the window. Without CAP_SYS_RESOURCE it also wants the
     * window in whole multiples of 2 s: when it refuses the trigger for that, the window
     * is rounded up and the stall scaled with it (bs_psi.trigger shows what was set). */
    uint32_t stall_us;
    uint32_t window_us;
} bs_psi_config;

typedef struct {
    int fd;                  /* -1: no trigger; why says why */
    short events;            /* what to poll fd for: POLLPRI, or POLLIN on a FIFO or socket.
                              * POLLERR, which comes with POLLPRI, means the trigger is gone
                              * (its cgroup was removed): reopen rather than shrink. */
    char path[PATH_MAX];     /* what fd is open on; "" when fd is -1 */
    char trigger[256];       /* the text written, up to its NUL; "" when nothing was */
    char why[1024];          /* when fd is -1; "" otherwise */
} bs_psi;

/* Sets up the trigger into *out (see above). Returns -1 only for a bad call (NULL
 * arguments, stall or window out of the kernel's range); an environment without a
 * usable pressure file is not an error. */
int bs_psi_open(const bs_psi_config *cfg, bs_psi *out, bs_err *e);

/* Closes the trigger (the kernel drops it with the fd); safe on a closed one. */
void bs_psi_close(bs_psi *p);

/* The avg10 of the "some" and "full" lines of a pressure file (percent of wall time
 * stalled). 0 when the file was read, -1 when it could not be; a line or number that is
 * missing reads as -1. */
int bs_psi_read_avg10(const char *path, double *some, double *full);

/* Reads a small pseudo-file (/proc, /sys) whole into buf (cap bytes, NUL-terminated); its
 * length, or -1 when it cannot be opened. */
ssize_t bs_psi_read_file(const char *path, char *buf, size_t cap);

/* Decodes NUL-terminated base64 text (RFC 4648, the standard alphabet, with padding)
 * into out (cap bytes), its length in *n. -1 on anything else: a character outside the
 * alphabet (whitespace too), a length that is not a multiple of 4, misplaced padding,
 * pad bits that are not zero, or more than cap bytes. */
int bs_psi_base64_decode(const char *in, uint8_t *out, size_t cap, size_t *n);

#endif
