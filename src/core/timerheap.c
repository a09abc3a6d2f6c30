/* timerheap.c -- see timerheap.h. */
#include "timerheap.h"

#include <errno.h>
#include <stdlib.h>

static inline int
before(const rl_timer *a, const rl_timer *b)
{
    if (a->when < b->when) {
        return 1;
    }
    if (b->when < a->when) {
        return 0;
    }
    return a->seq < b->seq;
}

static void
sift_up(rl_timer *items, size_t i)
{
    rl_timer t = items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&t, &items[parent])) {
            break;
        }
        items[i] = items[parent];
        i = parent;
    }
    items[i] = t;
}

static void
sift_down(rl_timer *items, size_t len, size_t i)
{
    rl_timer t = items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= len) {
            break;
        }
        if (child + 1 < len && before(&items[child + 1], &items[child])) {
            child++;
        }
        if (!before(&items[child], &t)) {
            break;
        }
        items[i] = items[child];
        i = child;
    }
    items[i] = t;
}

void
rl_timerheap_init(rl_timerheap *h)
{
    h->items = NULL;
    h->len = 0;
    h->cap = 0;
}

void
rl_timerheap_free(rl_timerheap *h)
{
    free(h->items);
    rl_timerheap_init(h);
}

int
rl_timerheap_push(rl_timerheap *h, double when, uint64_t seq, void *data)
{
    if (h->len == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64;
        rl_timer *n = realloc(h->items, ncap * sizeof(rl_timer));
        if (n == NULL) {
            return -ENOMEM;
        }
        h->items = n;
        h->cap = ncap;
    }
    h->items[h->len].when = when;
    h->items[h->len].seq = seq;
    h->items[h->len].data = data;
    sift_up(h->items, h->len);
    h->len++;
    return 0;
}

void *
rl_timerheap_pop(rl_timerheap *h)
{
    void *data = h->items[0].data;
    h->len--;
    if (h->len > 0) {
        h->items[0] = h->items[h->len];
        sift_down(h->items, h->len, 0);
    }
    return data;
}

size_t
rl_timerheap_filter(rl_timerheap *h, int (*drop)(void *data, void *arg),
                    void *arg)
{
    size_t j = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (!drop(h->items[i].data, arg)) {
            h->items[j++] = h->items[i];
        }
    }
    size_t dropped = h->len - j;
    h->len = j;
    if (j > 1) {
        for (size_t i = j / 2; i-- > 0;) {
            sift_down(h->items, j, i);
        }
    }
    return dropped;
}
