/* th_route.c - routing a test request as the gateway does: the target normalised, endpoints (exact or
 * prefix, by method) before routes (longest prefix), and the route_conf a filter sees on a route. */
#include "th_internal.h"

#include <stdlib.h>
#include <string.h>

#include "http.h" /* gw_path_normalize */

static bool method_matches(const th_endpoint *e, const char *method)
{
    return !e->method || strcmp(e->method, method) == 0 ||
           (strcmp(e->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static bool prefix_matches(const char *prefix, size_t plen, const char *path)
{
    if (plen == 1 && prefix[0] == '/') return true;
    return strncmp(path, prefix, plen) == 0 && (path[plen] == '\0' || path[plen] == '/');
}

/* Routing; returns 0 or the status the host answers with. */
int th_route_request(gw_req *r)
{
    gw_th *th = r->th;
    size_t tlen = strlen(r->target), cap = tlen + 16, out_len, path_len;
    char *norm = th_xcalloc(cap, 1);
    int st = gw_path_normalize(r->target, tlen, norm, cap, &out_len, &path_len);
    if (st) {
        free(norm);
        return st;
    }
    free(r->path);
    free(r->query);
    r->path = th_xmemdup(norm, path_len);
    r->query = th_xstrdup(path_len < out_len ? norm + path_len + 1 : "");
    free(norm);

    bool path_known = false;
    for (size_t i = 0; i < th->neps; i++) {
        th_endpoint *e = &th->eps[i];
        if (!(e->prefix ? prefix_matches(e->path, e->plen, r->path)
                        : strlen(r->path) == e->plen && memcmp(r->path, e->path, e->plen) == 0))
            continue;
        path_known = true;
        if (method_matches(e, r->method)) {
            r->ep_copy = *e; /* the array may grow while the request waits; the strings stay */
            r->ep = &r->ep_copy;
            return 0;
        }
    }
    if (path_known) return 405;
    if (th->nroutes == 0) return 0; /* the implicit route "default" */
    const th_route *found = NULL;
    for (size_t i = 0; i < th->nroutes; i++) {
        const th_route *rt = &th->routes[i];
        if ((!found || rt->plen > found->plen) && prefix_matches(rt->prefix, rt->plen, r->path)) found = rt;
    }
    if (found) {
        r->route_copy = *found; /* the array may grow while the request waits; its members stay */
        r->route = &r->route_copy;
        return 0;
    }
    r->unrouted = true;
    return 404;
}

void *th_route_conf(const gw_req *r, const gw_filter *f)
{
    if (r->ep || !r->route || f->index >= r->route->nconf || !r->route->conf[f->index])
        return f->route_default;
    return r->route->conf[f->index];
}
