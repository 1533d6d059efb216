/* headers.c - the header views filters read and edit (request, upstream request, response). A view is
 * made on first use as an array over the parsed head (no string copies); edits copy only new strings
 * into the request's memory. The head writers serialise a view when there is one. */
#include <string.h>

#include "phases.h"
#include "server.h"

static bool grow(gw_req *r, gw_hlist *l, size_t need)
{
    if (need <= l->cap) return true;
    size_t cap = l->cap ? l->cap * 2 : 16;
    while (cap < need)
        cap *= 2;
    gw_http_field *v = gw_req_alloc(r, cap * sizeof *v);
    if (!v) return false;
    if (l->n) memcpy(v, l->v, l->n * sizeof *v);
    l->v = v;
    l->cap = cap;
    return true;
}

static bool copy_into(gw_req *r, gw_hlist *l, const gw_http_field *f, size_t n)
{
    l->n = 0;
    if (!grow(r, l, n ? n : 1)) return false;
    memcpy(l->v, f, n * sizeof *f);
    l->n = n;
    return true;
}

/* The view for `set`, made on first use. NULL when out of memory or not available in this phase. */
gw_hlist *gw_hdr_view(gw_req *r, gw_hdr_set set)
{
    gw_conn *c = r->c;
    switch (set) {
    case GW_HDR_REQUEST:
        if (!r->hreq_on && copy_into(r, &r->hreq, c->req->fields, c->req->nfields)) r->hreq_on = true;
        return r->hreq_on ? &r->hreq : NULL;
    case GW_HDR_UPSTREAM:
        if (!r->hup_on) {
            const gw_hlist *src = gw_hdr_view(r, GW_HDR_REQUEST);
            if (src && copy_into(r, &r->hup, src->v, src->n)) r->hup_on = true;
        }
        return r->hup_on ? &r->hup : NULL;
    case GW_HDR_RESPONSE:
        if (!r->hresp_on && grow(r, &r->hresp, 8)) r->hresp_on = true;
        return r->hresp_on ? &r->hresp : NULL;
    }
    return NULL;
}

static bool ci_eq(gw_str a, const char *name, size_t n)
{
    return a.n == n && strncasecmp(a.p, name, n) == 0;
}

static bool h_get(const gw_req *rc, gw_hdr_set set, const char *name, gw_strv *value)
{
    gw_hlist *l = gw_hdr_view((gw_req *)rc, set);
    size_t n = strlen(name);
    for (size_t i = 0; l && i < l->n; i++)
        if (ci_eq(l->v[i].name, name, n)) {
            *value = (gw_strv){l->v[i].value.p, l->v[i].value.n};
            return true;
        }
    return false;
}

static size_t h_count(const gw_req *rc, gw_hdr_set set)
{
    gw_hlist *l = gw_hdr_view((gw_req *)rc, set);
    return l ? l->n : 0;
}

static bool h_at(const gw_req *rc, gw_hdr_set set, size_t i, gw_strv *name, gw_strv *value)
{
    gw_hlist *l = gw_hdr_view((gw_req *)rc, set);
    if (!l || i >= l->n) return false;
    *name = (gw_strv){l->v[i].name.p, l->v[i].name.n};
    *value = (gw_strv){l->v[i].value.p, l->v[i].value.n};
    return true;
}

static int h_remove(gw_req *r, gw_hdr_set set, const char *name)
{
    gw_hlist *l = gw_hdr_view(r, set);
    if (!l) return -1;
    size_t n = strlen(name), k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!ci_eq(l->v[i].name, name, n)) l->v[k++] = l->v[i];
    l->n = k;
    return 0;
}

int gw_hdr_put(gw_req *r, gw_hdr_set set, const char *name, const char *value, size_t len, bool replace)
{
    size_t nlen = strlen(name);
    if (!gw_http_is_token(name, nlen) || (len && !value)) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= '\r' && (c == '\r' || c == '\n' || c == '\0')) return -1;
    }
    gw_hlist *l = gw_hdr_view(r, set);
    if (!l || (replace && h_remove(r, set, name) != 0) || !grow(r, l, l->n + 1)) return -1;
    char *nm = gw_req_alloc(r, nlen + len + 2);
    if (!nm) return -1;
    memcpy(nm, name, nlen);
    nm[nlen] = '\0';
    char *v = nm + nlen + 1;
    if (len) memcpy(v, value, len);
    v[len] = '\0';
    l->v[l->n++] = (gw_http_field){{nm, nlen}, {v, len}};
    return 0;
}

int gw_hdr_append(gw_req *r, gw_hdr_set set, gw_str name, gw_str value)
{
    gw_hlist *l = gw_hdr_view(r, set);
    if (!l || !grow(r, l, l->n + 1)) return -1;
    l->v[l->n++] = (gw_http_field){name, value};
    return 0;
}

static int h_set(gw_req *r, gw_hdr_set set, const char *name, const char *value, size_t len)
{
    return gw_hdr_put(r, set, name, value, len, true);
}

static int h_add(gw_req *r, gw_hdr_set set, const char *name, const char *value, size_t len)
{
    return gw_hdr_put(r, set, name, value, len, false);
}

void gw_host_headers_fill(gw_host *h)
{
    h->header_get = h_get;
    h->header_count = h_count;
    h->header_at = h_at;
    h->header_set = h_set;
    h->header_add = h_add;
    h->header_remove = h_remove;
}
