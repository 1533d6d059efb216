/* request_id.c - the request's id (X-Request-Id): a client's is kept when trusted and sane, else the
 * worker makes one (a UUID, worker.c). It goes upstream, back to the client and into every log line. */
#include <string.h>

#include "conn.h"
#include "server.h"

/* Letters, digits and -_.: only, at most GW_REQUEST_ID_MAX: safe in a header, a log line and a label. */
static bool sane_request_id(gw_str v)
{
    if (v.n == 0 || v.n > GW_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' ||
              ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

/* A client's X-Request-Id is kept when trusted, sane and not declared hop-by-hop (named in Connection:
 * meant for this hop only, so it is as good as absent, RFC 9110 7.6.1). */
void gw_conn_set_request_id(gw_conn *c, const gw_config *cfg)
{
    const gw_http_field *rid = gw_http_find(c->req, "X-Request-Id");
    if (cfg->trust_request_id && rid && sane_request_id(rid->value) &&
        !gw_http_conn_lists(c->req, rid->name)) {
        memcpy(c->request_id, rid->value.p, rid->value.n); /* sane: at most GW_REQUEST_ID_MAX */
        c->request_id[rid->value.n] = '\0';
    } else {
        gw_worker_request_id(c->w, c->request_id);
    }
}
