/* timerheap.h -- a binary min-heap of timers ordered by (when, seq).
 *
 * Pure C, no Python.  `seq` is a per-loop sequence number, so timers due at
 * the same time come out in the order they were scheduled.  Cancellation is
 * lazy: the loop marks a handle cancelled, pops cancelled ones when they
 * reach the top, and calls rl_timerheap_filter() to rebuild the heap when
 * cancelled entries dominate. */
#ifndef RL_TIMERHEAP_H
#define RL_TIMERHEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double when;
    uint64_t seq;
    void *data;
} rl_timer;

typedef struct {
    rl_timer *items;
    size_t len;
    size_t cap;
} rl_timerheap;

void rl_timerheap_init(rl_timerheap *h);
void rl_timerheap_free(rl_timerheap *h);
/* 0 or -ENOMEM. */
int rl_timerheap_push(rl_timerheap *h, double when, uint64_t seq, void *data);
/* The earliest timer, or NULL when empty. */
static inline const rl_timer *
rl_timerheap_peek(const rl_timerheap *h)
{
    return h->len ? &h->items[0] : NULL;
}
/* Remove the earliest timer and return its data (heap must be non-empty). */
void *rl_timerheap_pop(rl_timerheap *h);
/* Drop every entry for which drop(data, arg) returns non-zero, then re-heap
 * in O(n).  Returns the number dropped. */
size_t rl_timerheap_filter(rl_timerheap *h, int (*drop)(void *data, void *arg),
                           void *arg);

#endif /* RL_TIMERHEAP_H */
