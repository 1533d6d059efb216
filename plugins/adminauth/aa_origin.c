/* aa_origin.c - recognising a browser's cross-site admin request (see aa_origin.h). Browsers send
 * Sec-Fetch-Site on every request since 2020-2023 (Chrome 76, Firefox 90, Safari 16.4); Origin, on
 * every non-GET request, is the fallback for older ones. */
#include "aa_origin.h"

#include <string.h>
#include <strings.h>

static bool eq(gw_strv v, const char *s)
{
    size_t n = strlen(s);
    return v.n == n && strncasecmp(v.p, s, n) == 0;
}

static bool safe_method(gw_strv m)
{
    return eq(m, "GET") || eq(m, "HEAD") || eq(m, "OPTIONS");
}

/* host[:port] without a default port (":80" for http, ":443" for https). */
static gw_strv authority(gw_strv v, bool https)
{
    const char *def = https ? ":443" : ":80";
    size_t dn = strlen(def);
    if (v.n > dn && memcmp(v.p + v.n - dn, def, dn) == 0) v.n -= dn;
    return v;
}

bool aa_cross_site(const gw_host *h, gw_req *req)
{
    if (safe_method(h->method(req))) return false;
    gw_strv v;
    if (h->header_get(req, GW_HDR_REQUEST, "Sec-Fetch-Site", &v))
        return !(eq(v, "same-origin") || eq(v, "none")); /* none: typed by the user, a bookmark */
    if (!h->header_get(req, GW_HDR_REQUEST, "Origin", &v)) return false; /* not a browser's */
    bool https;
    if (v.n > 8 && strncasecmp(v.p, "https://", 8) == 0) {
        https = true;
        v.p += 8, v.n -= 8;
    } else if (v.n > 7 && strncasecmp(v.p, "http://", 7) == 0) {
        https = false;
        v.p += 7, v.n -= 7;
    } else {
        return true; /* "null" (a sandboxed or privacy-sensitive context) or anything else */
    }
    gw_strv host;
    if (!h->header_get(req, GW_HDR_REQUEST, "Host", &host)) return true;
    gw_strv a = authority(v, https), b = authority(host, https);
    return !(a.n == b.n && strncasecmp(a.p, b.p, a.n) == 0);
}
