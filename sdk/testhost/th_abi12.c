/* th_abi12.c - the test host's ABI 1.2 members: shared blocks (kept while any test host lives, so a second
 * test host loading a filter again stands for a reload), the services (the test host's route names),
 * attempt_sent, upstream_status, the microsecond clock and the reopen hook. */
#include "th_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct th_shared {
    struct th_shared *next;
    char *filter, *key;
    size_t size;
    void *data;
} th_shared;

static th_shared *g_blocks;

static void *h_shared_block(gw_filter *self, const char *key, size_t size)
{
    if (!self || !key || !size) return NULL;
    for (th_shared *b = g_blocks; b; b = b->next)
        if (strcmp(b->filter, self->d.name) == 0 && strcmp(b->key, key) == 0) return b->size == size ? b->data : NULL;
    th_shared *b = th_xcalloc(1, sizeof *b);
    b->filter = th_xstrdup(self->d.name);
    b->key = th_xstrdup(key);
    b->size = size;
    b->data = th_xcalloc(1, size);
    b->next = g_blocks;
    g_blocks = b;
    return b->data;
}

void th_shared_free_all(void)
{
    while (g_blocks) {
        th_shared *b = g_blocks;
        g_blocks = b->next;
        free(b->filter);
        free(b->key);
        free(b->data);
        free(b);
    }
}

static const char *h_service_name(gw_filter *self, size_t i)
{
    if (!self || i >= self->th->nroutes) return NULL;
    return self->th->routes[i].name;
}

static bool h_attempt_sent(const gw_req *r)
{
    return r->attempt_sent;
}

static int h_upstream_status(const gw_req *r)
{
    return r->up_status;
}

static uint64_t h_now_us(void)
{
    return th_clock_now() * 1000u;
}

static uint64_t h_start_us(const gw_req *r)
{
    return r->start_us;
}

void gw_th_reopen(gw_th *th)
{
    for (size_t i = 0; i < th->nfilters; i++) {
        gw_filter *f = th->filters[i];
        if (f->created && f->d.reopen) f->d.reopen(f->inst);
    }
}

void th_abi12_fill(gw_host *h)
{
    h->shared_block = h_shared_block;
    h->service_name = h_service_name;
    h->attempt_sent = h_attempt_sent;
    h->upstream_status = h_upstream_status;
    h->now_us = h_now_us;
    h->start_us = h_start_us;
}
