/* bs_peers: what each client user (uid, from SO_PEERCRED) holds of the daemon, so that
 * one user cannot take every connection, every session or all of the compute.
 *
 * A peer is a uid with connections or sessions open; it is forgotten when it holds none.
 * Trusted uids (root and the daemon's own user, unless configured otherwise) are counted
 * but never limited. `served` is the peer's share of compute so far: the scheduler runs
 * the peer that has had the least next (daemon/sched.h), so a user's sixteen sessions
 * share one user's turn. TCP clients have no uid: they count as one peer (uid -1).
 * Loop thread only. */
#ifndef BS_PEERS_H
#define BS_PEERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "kernels/err.h"

#define BS_PEERS_MAX_TRUSTED 8

typedef struct bs_peer_use {
    uid_t uid;
    int conns, sessions;
    uint64_t served;                 /* slices run for its sessions (the scheduler's key) */
    struct bs_peer_use *next;
} bs_peer_use;

typedef struct {
    bs_peer_use *list;
    int max_conns, max_sessions;     /* per untrusted uid; 0: no limit */
    uid_t trusted[BS_PEERS_MAX_TRUSTED];
    int n_trusted;
} bs_peers;

void bs_peers_init(bs_peers *p, int max_conns, int max_sessions);
void bs_peers_free(bs_peers *p);

/* Adds a trusted uid; -1 when the table is full. */
int bs_peers_trust(bs_peers *p, uid_t uid, bs_err *e);
bool bs_peers_trusted(const bs_peers *p, uid_t uid);

/* The uid's entry, made on first use (NULL on OOM). */
bs_peer_use *bs_peers_get(bs_peers *p, uid_t uid);

/* May uid open one more connection / session? (Trusted: always.) */
bool bs_peers_may_connect(bs_peers *p, uid_t uid);
bool bs_peers_may_start(bs_peers *p, uid_t uid);

/* Drops the entry when it holds nothing any more. */
void bs_peers_release(bs_peers *p, bs_peer_use *u);

#endif
