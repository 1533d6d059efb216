/* router.c - the route table: a hash of prefixes probed at each '/' boundary of the (normalised, see
 * http_path.c) path in one pass, so a lookup costs one hash walk over the path and never allocates. */
#include "router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

typedef struct {
    uint64_t hash;
    const gw_route_conf *rt; /* NULL: empty slot */
} gw_route_slot;

struct gw_router {
    const gw_route_conf *root; /* the "/" route: matches whatever nothing longer does */
    size_t max_len;            /* longest prefix: the scan stops there */
    size_t mask;               /* slots - 1 (a power of two) */
    gw_route_slot *slots;
};

static uint64_t fnv_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = fnv_step(h, (unsigned char)s[i]);
    return h;
}

gw_router *gw_router_new(const gw_config *cfg)
{
    gw_router *r = cfg ? calloc(1, sizeof *r) : NULL;
    if (!r) return NULL;
    size_t slots = 8;
    while (slots < cfg->nroutes * 2)
        slots *= 2;
    r->mask = slots - 1;
    if (!(r->slots = calloc(slots, sizeof *r->slots))) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const gw_route_conf *rt = &cfg->routes[i];
        if (rt->prefix_len <= 1) { /* "/" */
            if (!r->root) r->root = rt;
            continue;
        }
        uint64_t h = fnv(rt->prefix, rt->prefix_len);
        size_t k = h & r->mask;
        while (r->slots[k].rt) /* first one wins on a duplicate; the loader rejects those anyway */
            k = (k + 1) & r->mask;
        r->slots[k] = (gw_route_slot){h, rt};
        if (rt->prefix_len > r->max_len) r->max_len = rt->prefix_len;
    }
    return r;
}

void gw_router_free(gw_router *r)
{
    if (!r) return;
    free(r->slots);
    free(r);
}

static const gw_route_conf *lookup(const gw_router *r, uint64_t h, const char *path, size_t len)
{
    for (size_t k = h & r->mask; r->slots[k].rt; k = (k + 1) & r->mask) {
        const gw_route_conf *rt = r->slots[k].rt;
        if (r->slots[k].hash == h && rt->prefix_len == len && memcmp(rt->prefix, path, len) == 0) return rt;
    }
    return NULL;
}

const gw_route_conf *gw_router_match(const gw_router *r, const char *path, size_t path_len)
{
    if (!r) return NULL;
    const gw_route_conf *best = r->root;
    size_t lim = path_len < r->max_len ? path_len : r->max_len;
    uint64_t h = FNV_OFFSET;
    /* Shortest to longest boundary: the last hit is the longest matching prefix. */
    for (size_t i = 0; i < lim; i++) {
        h = fnv_step(h, (unsigned char)path[i]);
        size_t len = i + 1;
        if (len < 2 || (len < path_len && path[len] != '/')) continue;
        const gw_route_conf *rt = lookup(r, h, path, len);
        if (rt) best = rt;
    }
    return best;
}

long gw_route_upstream_path(const gw_route_conf *rt, const char *path, size_t path_len, const char *query,
                            size_t query_len, char *out, size_t cap)
{
    const char *p = path;
    size_t n = path_len;
    size_t pl = rt->prefix_len;
    bool at_boundary =
        pl > 1 && path_len >= pl && memcmp(path, rt->prefix, pl) == 0 && (path_len == pl || path[pl] == '/');
    if (rt->strip_prefix && at_boundary) {
        p = path_len == pl ? "/" : path + pl;
        n = path_len == pl ? 1 : path_len - pl;
    }
    /* The query may come with its '?' (as gw_path_normalize leaves it) or without. */
    bool add_qmark = query_len > 0 && query[0] != '?';
    size_t total = n + add_qmark + query_len;
    if (total + 1 > cap) return -1;
    memcpy(out, p, n);
    if (add_qmark) out[n] = '?';
    if (query_len) memcpy(out + n + add_qmark, query, query_len);
    out[total] = '\0';
    return (long)total;
}
