/* respond.c - responses the gateway itself produces (errors, built-in endpoints): JSON bodies built with
 * cJSON, the shared error shape {"error","message","request_id"}, framing and connection handling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include "io.h"

#include "conn.h"
#include "head_buf.h"
#include "log.h"
#include "phases.h"
#include "server.h"

static bool own_skip(gw_str name)
{
    return gw_http_is_hop_by_hop(name) || gw_str_eq_ci(name, "Content-Length") ||
           gw_str_eq_ci(name, "X-Request-Id") || gw_str_eq_ci(name, "Date");
}

/* Writes a complete response of ours: headers filters set (the response view) come with it. A request
 * whose body was not read cannot be followed by another one on the same connection, so such a response
 * closes it. */
static void write_own(gw_conn *c, int status, const char *body, size_t len, const char *extra_headers)
{
    struct evbuffer *out = gw_io_output(c->bev);
    size_t dlen;
    const char *date = gw_worker_date(c->w, &dlen);
    if (status == 204 || status == 304 || status < 200) len = 0; /* never a body, whatever a filter gave */
    bool head_only = c->req_valid && c->req->method_id == GW_METHOD_HEAD;
    bool close = !c->keep_alive || !c->body_complete || c->w->draining;
    bool http10 = c->req_valid && c->req->minor_version == 0;
    const gw_hlist *view = c->rq.hresp_on ? &c->rq.hresp : NULL;
    bool has_ctype = false;
    c->status = status;
    c->response_started = true;
    gw_hbuf b;
    gw_hb_init(&b, out);
    GW_HB_LIT(&b, "HTTP/1.1 ");
    gw_hb_u64(&b, (uint64_t)status, 10);
    GW_HB_LIT(&b, " ");
    gw_hb_str(&b, gw_http_reason(status));
    GW_HB_LIT(&b, "\r\n");
    gw_hb_add(&b, date, dlen);
    for (size_t i = 0; view && i < view->n; i++) {
        const gw_http_field *f = &view->v[i];
        if (own_skip(f->name)) continue;
        has_ctype |= gw_str_eq_ci(f->name, "Content-Type");
        gw_hb_field(&b, f->name.p, f->name.n, f->value.p, f->value.n);
    }
    if (!has_ctype && len) GW_HB_LIT(&b, "Content-Type: application/json\r\n");
    if (extra_headers) gw_hb_str(&b, extra_headers);
    if (status != 204 && status != 304) {
        GW_HB_LIT(&b, "Content-Length: ");
        gw_hb_u64(&b, len, 10);
        GW_HB_LIT(&b, "\r\n");
    }
    GW_HB_LIT(&b, "X-Request-Id: ");
    gw_hb_str(&b, c->request_id[0] ? c->request_id : "-");
    GW_HB_LIT(&b, "\r\n");
    if (close) GW_HB_LIT(&b, "Connection: close\r\n");
    else if (http10) GW_HB_LIT(&b, "Connection: keep-alive\r\n");
    GW_HB_LIT(&b, "\r\n");
    if (!head_only && len) gw_hb_add(&b, body, len);
    gw_hb_flush(&b);
    c->rq.bytes_out += head_only ? 0 : len;
    if (close) c->keep_alive = false;
    gw_conn_request_done(c);
}

/* Extra header lines ("Name: value\r\n...") into the response view, for the response phase. */
static void extra_into_view(gw_conn *c, const char *extra)
{
    while (extra && *extra) {
        const char *colon = strchr(extra, ':'), *eol = strstr(extra, "\r\n");
        if (!colon || !eol || colon > eol) return;
        char name[64];
        size_t nl = (size_t)(colon - extra);
        if (nl >= sizeof name) return;
        memcpy(name, extra, nl);
        name[nl] = '\0';
        const char *v = colon + 1;
        while (*v == ' ') v++;
        gw_hdr_put(&c->rq, GW_HDR_RESPONSE, name, v, (size_t)(eol - v), true);
        extra = eol + 2;
    }
}

/* Our own response goes through the filters' response phase first when there is one. */
void gw_respond_json(gw_conn *c, int status, const char *body, size_t len, const char *extra_headers)
{
    gw_req *r = &c->rq;
    if (r->active && c->gen && !c->resp_own && gw_phase_present(c, GW_PH_RESPONSE)) {
        char *copy = len ? gw_req_alloc(r, len) : NULL;
        if (copy) memcpy(copy, body, len);
        r->own_status = status;
        r->own_body = copy;
        r->own_len = copy ? len : 0;
        gw_hdr_put(r, GW_HDR_RESPONSE, "Content-Type", "application/json", 16, true);
        extra_into_view(c, extra_headers);
        c->resp_own = true;
        c->state = GW_C_FILTER;
        gw_phase_start(c, GW_PH_RESPONSE);
        return;
    }
    write_own(c, status, body, len, extra_headers);
}

void gw_respond_own(gw_conn *c)
{
    gw_req *r = &c->rq;
    if (c->gen && !c->resp_own && gw_phase_present(c, GW_PH_RESPONSE)) {
        c->resp_own = true;
        c->state = GW_C_FILTER;
        gw_phase_start(c, GW_PH_RESPONSE);
        return;
    }
    write_own(c, r->own_status, r->own_body, r->own_len, NULL);
}

/* After the response phase of one of our own responses (upstream responses: proxy_response.c). */
void gw_respond_own_after_phase(gw_conn *c, gw_result res)
{
    gw_req *r = &c->rq;
    if (res == GW_ERROR) {
        size_t len;
        char *body = gw_error_json(c, 500, "A filter failed to process the response", &len);
        write_own(c, 500, body ? body : "", body ? len : 0, NULL);
        free(body);
        return;
    }
    write_own(c, r->own_status, r->own_body, r->own_len, NULL);
}

char *gw_error_json(gw_conn *c, int status, const char *message, size_t *len)
{
    if (!c->request_id[0]) gw_worker_request_id(c->w, c->request_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", gw_http_reason(status)); /* the status line's title */
    cJSON_AddStringToObject(o, "message", message);
    cJSON_AddStringToObject(o, "request_id", c->request_id);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return NULL;
    *len = strlen(s);
    char *m = malloc(*len + 1); /* plain malloc so callers free() it */
    if (m) memcpy(m, s, *len + 1);
    cJSON_free(s);
    return m;
}

void gw_respond_error_hdr(gw_conn *c, int status, const char *message, const char *extra_headers)
{
    size_t len = 0;
    char *s = gw_error_json(c, status, message, &len);
    if (!s) {
        c->keep_alive = false;
        write_own(c, status, "", 0, extra_headers);
        return;
    }
    gw_respond_json(c, status, s, len, extra_headers);
    free(s);
}

void gw_respond_error(gw_conn *c, int status, const char *message)
{
    gw_respond_error_hdr(c, status, message, NULL);
}

void gw_respond_error_close(gw_conn *c, int status, const char *message)
{
    c->keep_alive = false;
    gw_respond_error_hdr(c, status, message, NULL);
}
