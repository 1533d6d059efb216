/* aa_origin.h - is an admin request a browser's cross-site one? (aa_origin.c) */
#ifndef AA_ORIGIN_H
#define AA_ORIGIN_H

#include <gw/filter.h>

#include <stdbool.h>

/* True for a request that changes something (any method but GET, HEAD, OPTIONS) sent by a browser on
 * behalf of another site: Sec-Fetch-Site says cross-site or same-site, or, without it, Origin names
 * another authority than Host (or is "null"). A browser re-sends cached Basic credentials with such a
 * request, so a page elsewhere could reset breakers, reload or revoke keys; curl and scripts send
 * neither field and are not affected. */
bool aa_cross_site(const gw_host *h, gw_req *req);

#endif
