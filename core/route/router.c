/* router.c - request-target normalisation and the route table: a hash of prefixes probed at each '/'
 * boundary of the path in one pass, so a lookup costs one hash walk over the path and never allocates. */
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

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Bytes that can never appear raw in a request-target: controls, space, non-ASCII, and '#' (a fragment
 * is never sent by a client; accepting one would make "/a#/../b" ambiguous). */
static bool bad_byte(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '#';
}

/* Copies one segment into out[*w..], decoding %XX of unreserved characters and upper-casing the rest. */
static int decode_segment(const char *s, size_t n, char *out, size_t cap, size_t *w)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = *w;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (bad_byte(c)) return 400;
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
            if (lo < 0 || (hi | lo) == 0) /* bad escape, or %00 */
                return 400;
            unsigned char v = (unsigned char)(hi << 4 | lo);
            i += 2;
            if (unreserved(v)) {
                c = v;
            } else {
                if (o + 3 >= cap) return 414;
                out[o++] = '%';
                out[o++] = hex[v >> 4];
                out[o++] = hex[v & 15];
                continue;
            }
        }
        if (o + 1 >= cap) return 414;
        out[o++] = (char)c;
    }
    *w = o;
    return 0;
}

/* RFC 3986 5.2.4 with '//' runs merged first. out holds "/seg/seg" while going; ".." pops one segment,
 * and popping past the root is an error rather than being clamped silently. A path that does not fit in
 * the buffer while being built is 414 even if later ".." would have shortened it. */
static int normalize_path(const char *p, size_t n, char *out, size_t cap, size_t *olen)
{
    size_t o = 0;
    bool trailing = false;
    for (size_t i = 1; i <= n;) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        if (o + 1 >= cap) return 414;
        out[o] = '/';
        size_t start = o + 1, w = start;
        int st = decode_segment(p + i, j - i, out, cap, &w);
        if (st) return st;
        size_t len = w - start;
        bool last = j >= n;
        if (len == 0 || (len == 1 && out[start] == '.')) {
            trailing = last;
        } else if (len == 2 && out[start] == '.' && out[start + 1] == '.') {
            if (o == 0) return 400;
            while (out[--o] != '/')
                ;
            trailing = last;
        } else {
            o = w;
            trailing = false;
        }
        i = j + 1;
    }
    if (o == 0 || trailing) {
        if (o + 1 >= cap) return 414;
        out[o++] = '/';
    }
    *olen = o;
    return 0;
}

int gw_path_normalize(const char *target, size_t len, char *out, size_t cap, size_t *out_len,
                      size_t *path_len)
{
    if (len == 0 || target[0] != '/') return 400;
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len, o = 0;
    for (size_t i = plen; i < len; i++) /* the query is forwarded byte for byte, but must be sane */
        if (bad_byte((unsigned char)target[i])) return 400;
    int st = normalize_path(target, plen, out, cap, &o);
    if (st) return st;
    if (o + (len - plen) + 1 > cap) return 414;
    memcpy(out + o, target + plen, len - plen);
    out[o + len - plen] = '\0';
    *path_len = o;
    *out_len = o + len - plen;
    return 0;
}

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
