#include "daemon/peers.h"

#include <stdlib.h>

void bs_peers_init(bs_peers *p, int max_conns, int max_sessions)
{
    p->list = NULL;
    p->max_conns = max_conns;
    p->max_sessions = max_sessions;
    p->n_trusted = 0;
}

void bs_peers_free(bs_peers *p)
{
    while (p->list) {
        bs_peer_use *u = p->list;
        p->list = u->next;
        free(u);
    }
}

int bs_peers_trust(bs_peers *p, uid_t uid, bs_err *e)
{
    if (bs_peers_trusted(p, uid))
        return 0;
    if (p->n_trusted == BS_PEERS_MAX_TRUSTED)
        return bs_err_set(e, "at most %d trusted users", BS_PEERS_MAX_TRUSTED);
    p->trusted[p->n_trusted++] = uid;
    return 0;
}

bool bs_peers_trusted(const bs_peers *p, uid_t uid)
{
    for (int i = 0; i < p->n_trusted; i++)
        if (p->trusted[i] == uid)
            return true;
    return false;
}

bs_peer_use *bs_peers_get(bs_peers *p, uid_t uid)
{
    for (bs_peer_use *u = p->list; u; u = u->next)
        if (u->uid == uid)
            return u;
    bs_peer_use *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->uid = uid;
    u->next = p->list;
    p->list = u;
    return u;
}

static int count(const bs_peers *p, uid_t uid, bool sessions)
{
    for (const bs_peer_use *u = p->list; u; u = u->next)
        if (u->uid == uid)
            return sessions ? u->sessions : u->conns;
    return 0;
}

bool bs_peers_may_connect(bs_peers *p, uid_t uid)
{
    return bs_peers_trusted(p, uid) || !p->max_conns || count(p, uid, false) < p->max_conns;
}

bool bs_peers_may_start(bs_peers *p, uid_t uid)
{
    return bs_peers_trusted(p, uid) || !p->max_sessions || count(p, uid, true) < p->max_sessions;
}

void bs_peers_release(bs_peers *p, bs_peer_use *u)
{
    if (!u || u->conns > 0 || u->sessions > 0)
        return;
    for (bs_peer_use **pp = &p->list; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            free(u);
            return;
        }
}
