/* bufpool.h - a worker's spare per-request buffers (the parsed-head array, the normalised path, the head
 * copy, the request's first arena chunk).
 *
 * A keep-alive connection hands its buffers back here as soon as its response is queued, and the next
 * request on the worker, on any connection, takes them again: only requests in progress hold buffers,
 * and the steady state allocates nothing. Idle connections then hold only their long-lived parts (the
 * connection, its I/O layer and events), which the heap packs together instead of scattering them between
 * request buffers that, once freed, could not be returned to the system (see docs/architecture.md,
 * Memory). One pool per buffer kind; all buffers of a pool have the pool's size, a buffer of another size
 * is freed instead of kept. Worker thread only: no locks. */
#ifndef GW_BUFPOOL_H
#define GW_BUFPOOL_H

#include <stddef.h>
#include <stdlib.h>

#define GW_BUFPOOL_KEEP 64 /* spares kept per kind; more are freed (the worker's trim frees them all) */

typedef struct {
    void *v[GW_BUFPOOL_KEEP];
    unsigned n;
    size_t size; /* of every buffer in v */
} gw_bufpool;

static inline void gw_bufpool_clear(gw_bufpool *p)
{
    while (p->n)
        free(p->v[--p->n]);
}

/* A buffer of `size` bytes (uninitialised), or NULL when out of memory. */
static inline void *gw_bufpool_get(gw_bufpool *p, size_t size)
{
    if (p->n && p->size == size) return p->v[--p->n];
    return malloc(size);
}

/* Takes b (of `size` bytes, may be NULL) back. */
static inline void gw_bufpool_put(gw_bufpool *p, void *b, size_t size)
{
    if (!b) return;
    if (p->size != size) { /* the configuration changed the size: the old spares go */
        gw_bufpool_clear(p);
        p->size = size;
    }
    if (p->n < GW_BUFPOOL_KEEP)
        p->v[p->n++] = b;
    else
        free(b);
}

#endif
