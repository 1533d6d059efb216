/* router.h - the route table (longest prefix at a '/' boundary); paths are normalised first
 * (gw_path_normalize in http.h).
 * Built once per configuration; lookups are read-only and lock-free from any worker. */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h" /* routes match paths gw_path_normalize produced */

typedef struct gw_router gw_router;

gw_router *gw_router_new(const gw_config *cfg);
void gw_router_free(gw_router *r);

/* Longest configured prefix that matches `path` at a segment boundary: "/api/auth" matches "/api/auth",
 * "/api/auth/", "/api/auth/x", "/api/auth?q" is never passed (path only), not "/api/authz". The route "/"
 * matches everything. Returns NULL when no route matches. */
const gw_route_conf *gw_router_match(const gw_router *r, const char *path, size_t path_len);

/* Path to send upstream: with strip_prefix, the prefix is removed ("/api/users/1" -> "/1", and the bare
 * prefix -> "/"). Writes into out (cap bytes, NUL-terminated), appending `query` (may be empty).
 * Returns the length, or -1 if it does not fit. */
long gw_route_upstream_path(const gw_route_conf *rt, const char *path, size_t path_len, const char *query,
                            size_t query_len, char *out, size_t cap);

#endif
