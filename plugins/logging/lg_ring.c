/* lg_ring.c - a worker's single-producer single-consumer ring of access-log records, and the worker's
 * PRNG (xoroshiro128+, seeded from getrandom) for sampling and trace/span ids. */
#include "logging.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

lg_ring *lg_ring_new(size_t records)
{
    size_t cap = 16;
    while (cap < records && cap < ((size_t)1 << 24))
        cap <<= 1;
    size_t bytes = LG_RING_MIN_BYTES;
    while (bytes < cap * LG_RING_BYTES_PER_REC)
        bytes <<= 1;
    lg_ring *r = aligned_alloc(64, (sizeof(lg_ring) + 63) / 64 * 64);
    if (!r) return NULL;
    atomic_init(&r->head, 0);
    atomic_init(&r->head_n, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->tail_n, 0);
    r->mask = bytes - 1;
    r->rec_mask = cap - 1;
    r->bytes = malloc(bytes); /* pages are touched as the ring goes round, never before */
    if (!r->bytes) {
        free(r);
        return NULL;
    }
    lg_rand_seed(r->rng);
    return r;
}

void lg_ring_free(lg_ring *r)
{
    if (!r) return;
    free(r->bytes);
    free(r);
}

lg_rec *lg_ring_slot(lg_ring *r)
{
    uint64_t head_n = atomic_load_explicit(&r->head_n, memory_order_relaxed);
    uint64_t tail_n = atomic_load_explicit(&r->tail_n, memory_order_acquire);
    return head_n - tail_n > r->rec_mask ? NULL : &r->fill;
}

/* The fixed fields come first in lg_rec, the string arrays after: this much is copied as it is. */
#define LG_FIXED offsetof(lg_rec, method)
#define LG_ALIGN(n) (((n) + 7u) & ~(uint64_t)7u)

typedef struct {
    char *dst;
    uint16_t n;
} lg_str;

static void strings_of(lg_rec *x, lg_str s[8])
{
    s[0] = (lg_str){x->method, x->n_method};
    s[1] = (lg_str){x->path, x->n_path};
    s[2] = (lg_str){x->route, x->n_route};
    s[3] = (lg_str){x->upstream, x->n_upstream};
    s[4] = (lg_str){x->ip, x->n_ip};
    s[5] = (lg_str){x->key, x->n_key};
    s[6] = (lg_str){x->ua, x->n_ua};
    s[7] = (lg_str){x->rid, x->n_rid};
}

int lg_ring_push(lg_ring *r)
{
    lg_str s[8];
    strings_of(&r->fill, s);
    uint64_t need = 8 + LG_FIXED;
    for (int i = 0; i < 8; i++)
        need += s[i].n;
    need = LG_ALIGN(need);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t cap = r->mask + 1, pos = head & r->mask, to_end = cap - pos;
    uint64_t take = need <= to_end ? need : to_end + need; /* a record that would wrap starts at 0 */
    if (take > cap - (head - tail)) return -1;
    if (need > to_end) {
        memset(r->bytes + pos, 0, 4); /* size 0: continue at the start */
        pos = 0;
    }
    char *o = r->bytes + pos;
    uint32_t size = (uint32_t)need;
    memcpy(o, &size, 4);
    memcpy(o + 8, &r->fill, LG_FIXED);
    o += 8 + LG_FIXED;
    for (int i = 0; i < 8; i++) {
        memcpy(o, s[i].dst, s[i].n);
        o += s[i].n;
    }
    atomic_store_explicit(&r->head_n, atomic_load_explicit(&r->head_n, memory_order_relaxed) + 1,
                          memory_order_relaxed); /* the worker's own count: only it reads head_n */
    /* seq_cst: pairs with the writer's "sleeping" store and ring check (see lg_writer_kick) */
    atomic_store_explicit(&r->head, head + take, memory_order_seq_cst);
    return 0;
}

void lg_ring_unpack(const lg_ring *r, uint64_t *tail, lg_rec *out)
{
    uint64_t pos = *tail & r->mask;
    uint32_t size;
    memcpy(&size, r->bytes + pos, 4);
    if (size == 0) { /* the record went to the start */
        *tail += r->mask + 1 - pos;
        pos = 0;
        memcpy(&size, r->bytes, 4);
    }
    const char *p = r->bytes + pos + 8;
    memcpy(out, p, LG_FIXED);
    p += LG_FIXED;
    lg_str s[8];
    strings_of(out, s);
    for (int i = 0; i < 8; i++) {
        memcpy(s[i].dst, p, s[i].n);
        p += s[i].n;
    }
    *tail += size;
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
