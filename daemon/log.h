/* bs_log: the daemon's log lines, on stderr.
 *
 * Under systemd, stderr is the journal ($JOURNAL_STREAM names it as "dev:inode"); then each
 * line starts with the sd-daemon priority prefix "<N>" (N the syslog level) and carries no
 * timestamp, since journald adds its own. Anywhere else a line reads
 * "2025-01-31T12:00:00.123Z bitstackd[42] warning: message".
 *
 * A line is formatted whole and written with one write(2), so lines from different
 * threads never interleave. Messages longer than ~2 KiB are cut. */
#ifndef BS_LOG_H
#define BS_LOG_H

#include <stdbool.h>
#include <syslog.h>   /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

typedef struct {
    bool journal;     /* stderr is the journal: "<N>" prefixes */
    int max_level;    /* lines above this level (less important) are dropped */
    int fd;           /* where lines go (2) */
} bs_log;

/* Looks at $JOURNAL_STREAM and stderr. verbose: also LOG_DEBUG lines. */
void bs_log_init(bs_log *lg, bool verbose);

void bs_logf(const bs_log *lg, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define bs_log_err(lg, ...) bs_logf(lg, LOG_ERR, __VA_ARGS__)
#define bs_log_warn(lg, ...) bs_logf(lg, LOG_WARNING, __VA_ARGS__)
#define bs_log_notice(lg, ...) bs_logf(lg, LOG_NOTICE, __VA_ARGS__)
#define bs_log_info(lg, ...) bs_logf(lg, LOG_INFO, __VA_ARGS__)
#define bs_log_debug(lg, ...) bs_logf(lg, LOG_DEBUG, __VA_ARGS__)

#endif
