/* lg_ring.c - a worker's single-producer single-consumer ring of access-log records, and the worker's
 * PRNG (xoroshiro128+, seeded from getrandom) for sampling and trace/span ids. */
#include "logging.h"

#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

lg_ring *lg_ring_new(size_t records)
{
    size_t cap = 16;
    while (cap < records && cap < ((size_t)1 << 24))
        cap <<= 1;
    lg_ring *r = aligned_alloc(64, (sizeof(lg_ring) + 63) / 64 * 64);
    if (!r) return NULL;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->mask = cap - 1;
    /* calloc: pages of slots never used are never touched */
    r->slots = calloc(cap, sizeof(lg_rec));
    if (!r->slots) {
        free(r);
        return NULL;
    }
    lg_rand_seed(r->rng);
    return r;
}

void lg_ring_free(lg_ring *r)
{
    if (!r) return;
    free(r->slots);
    free(r);
}

lg_rec *lg_ring_slot(lg_ring *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail > r->mask) return NULL;
    return &r->slots[head & r->mask];
}

void lg_ring_push(lg_ring *r)
{
    /* seq_cst: pairs with the writer's "sleeping" store and ring check (see lg_writer_kick) */
    atomic_fetch_add_explicit(&r->head, 1, memory_order_seq_cst);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t lg_rand(uint64_t s[2])
{
    uint64_t s0 = s[0], s1 = s[1], out = s0 + s1;
    s1 ^= s0;
    s[0] = rotl(s0, 24) ^ s1 ^ (s1 << 16);
    s[1] = rotl(s1, 37);
    return out;
}

void lg_rand_seed(uint64_t s[2])
{
    if (getrandom(s, 2 * sizeof s[0], GRND_NONBLOCK) != (ssize_t)(2 * sizeof s[0])) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)s;
        s[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ull + 1;
    }
    if (!s[0] && !s[1]) s[1] = 1;
}
