/* bs_mq: a tokenizer's candidate merges, best first. Both tokenizers (SentencePiece by
 * score, byte-level BPE by rank) merge the best adjacent pair again and again; this is
 * their one priority queue: a binary heap on (prio ascending, left ascending), the left
 * symbol's index being text order, so equal priorities merge leftmost first. Entries go
 * stale when a side is merged first; the caller checks a and b and skips those. */
#ifndef BS_MERGE_QUEUE_H
#define BS_MERGE_QUEUE_H

#include <stddef.h>

typedef struct {
    double prio;    /* lower first (SentencePiece: minus the score; BPE: the merge rank) */
    int left;       /* the left symbol */
    int a, b;       /* the caller's: what the pair was when pushed */
} bs_mq_item;

typedef struct {
    bs_mq_item *v;
    size_t n, cap;
} bs_mq;

/* 0, or -1 when out of memory (the queue is unchanged). */
int bs_mq_push(bs_mq *q, bs_mq_item it);
/* The best item; q->n must be > 0. */
bs_mq_item bs_mq_pop(bs_mq *q);
void bs_mq_free(bs_mq *q);

#endif
