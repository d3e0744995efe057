#include "model/merge_queue.h"

#include <stdlib.h>

static int before(const bs_mq_item *x, const bs_mq_item *y)
{
    return x->prio != y->prio ? x->prio < y->prio : x->left < y->left;
}

int bs_mq_push(bs_mq *q, bs_mq_item it)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 256;
        bs_mq_item *v = realloc(q->v, cap * sizeof *v);
        if (!v)
            return -1;
        q->v = v;
        q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0 && before(&it, &q->v[(i - 1) / 2])) {
        q->v[i] = q->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->v[i] = it;
    return 0;
}

bs_mq_item bs_mq_pop(bs_mq *q)
{
    bs_mq_item top = q->v[0], last = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && before(&q->v[c + 1], &q->v[c]))
            c++;
        if (!before(&q->v[c], &last))
            break;
        q->v[i] = q->v[c];
        i = c;
    }
    if (q->n)
        q->v[i] = last;
    return top;
}

void bs_mq_free(bs_mq *q)
{
    free(q->v);
    q->v = NULL;
    q->n = q->cap = 0;
}
