/* bs_team: a persistent set of threads that split one piece of math (the rows of a matrix
 * product) with the calling thread, and return when all of it is done.
 *
 * bs_pool runs independent jobs (a session's slice); a team runs one job in parts, all at
 * once, for a caller that waits: threads are created once, never per call. A team of 1 is
 * the caller alone (no thread, no lock). Parts are handed out by an atomic counter, so an
 * uneven part does not hold the others up. One caller at a time per team. */
#ifndef BS_TEAM_H
#define BS_TEAM_H

#include "kernels/err.h"

typedef struct bs_team bs_team;

/* part: 0..n_parts-1; runs on any of the team's threads or the caller's. */
typedef void (*bs_team_fn)(void *ctx, int part, int n_parts);

/* A --threads value as a count: n > 0 is n; 0 is the CPUs this process may run on. */
int bs_team_resolve(int n);

/* threads >= 1, the caller included. NULL with e filled when a thread cannot start. */
bs_team *bs_team_new(int threads, bs_err *e);
int bs_team_threads(const bs_team *t);   /* 1 for NULL */

/* Runs fn(ctx, part, n_parts) for every part and returns when all have run. A NULL team
 * runs them on the caller. */
void bs_team_run(bs_team *t, int n_parts, bs_team_fn fn, void *ctx);

void bs_team_free(bs_team *t);

#endif
