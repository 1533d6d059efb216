/* shared.c - host->shared_block: process-lifetime memory a filter keeps across reloads (a breaker's state,
 * say). Blocks are found by (descriptor name, key); they are made and looked up only on the main thread
 * (create() runs there), so the list needs no lock; workers touch the blocks' contents, never the list. */
#include "shared.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct gw_shared {
    struct gw_shared *next;
    char *filter, *key;
    size_t size;
    _Alignas(64) unsigned char data[]; /* cache-line aligned: atomics inside do not share a line with the list */
} gw_shared;

static gw_shared *blocks;

void *gw_shared_block(const char *filter, const char *key, size_t size)
{
    if (!filter || !key || size == 0) return NULL;
    for (gw_shared *b = blocks; b; b = b->next) {
        if (strcmp(b->filter, filter) != 0 || strcmp(b->key, key) != 0) continue;
        if (b->size != size) {
            gw_warn("filter '%s': shared block '%s' exists with %zu bytes, asked for %zu", filter, key, b->size, size);
            return NULL;
        }
        return b->data;
    }
    gw_shared *b = aligned_alloc(64, (sizeof *b + size + 63) & ~(size_t)63);
    if (!b) return NULL;
    memset(b, 0, sizeof *b + size);
    b->filter = strdup(filter);
    b->key = strdup(key);
    if (!b->filter || !b->key) {
        free(b->filter);
        free(b->key);
        free(b);
        return NULL;
    }
    b->size = size;
    b->next = blocks;
    blocks = b;
    return b->data;
}

void gw_shared_free_all(void)
{
    while (blocks) {
        gw_shared *b = blocks;
        blocks = b->next;
        free(b->filter);
        free(b->key);
        free(b);
    }
}
