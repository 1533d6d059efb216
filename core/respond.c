/* respond.c - responses the gateway itself produces (errors, built-in endpoints): JSON bodies built with
 * cJSON, the shared error shape {"error","message","request_id"}, framing and connection handling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include "io.h"

#include "log.h"
#include "server.h"

const char *gw_status_title(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return gw_http_reason(status);
    }
}

/* Writes a complete response. A request whose body was not read cannot be followed by another one on
 * the same connection, so such a response closes it. */
void gw_respond_json(gw_conn *c, int status, const char *body, size_t len, const char *extra_headers)
{
    struct evbuffer *out = gw_io_output(c->bev);
    size_t dlen;
    const char *date = gw_worker_date(c->w, &dlen);
    bool head_only = c->req_valid && c->req->method_id == GW_METHOD_HEAD;
    bool close = !c->keep_alive || !c->body_complete || c->w->draining;
    bool http10 = c->req_valid && c->req->minor_version == 0;
    c->status = status;
    c->response_started = true;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n%.*sContent-Type: application/json\r\nContent-Length: %zu\r\n"
                        "X-Request-Id: %s\r\n%s%s\r\n",
                        status, gw_http_reason(status), (int)dlen, date, len,
                        c->request_id[0] ? c->request_id : "-", extra_headers ? extra_headers : "",
                        close ? "Connection: close\r\n" : http10 ? "Connection: keep-alive\r\n" : "");
    if (!head_only) evbuffer_add(out, body, len);
    if (close) c->keep_alive = false;
    gw_conn_request_done(c);
}

void gw_respond_error_hdr(gw_conn *c, int status, const char *message, const char *extra_headers)
{
    if (!c->request_id[0]) gw_worker_request_id(c->w, c->request_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", gw_status_title(status));
    cJSON_AddStringToObject(o, "message", message);
    cJSON_AddStringToObject(o, "request_id", c->request_id);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        gw_conn_free(c);
        return;
    }
    gw_respond_json(c, status, s, strlen(s), extra_headers);
    cJSON_free(s);
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
