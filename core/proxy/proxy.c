/* proxy.c - the request side of proxying: target choice, the re-framed upstream request head, upstream
 * connection events, timers and failures (502/504, one replay on a stale pooled connection when that is
 * safe). The request body is in proxy_body.c, the response side in proxy_response.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include "io.h"
#include <event2/event.h>
#include <openssl/err.h>

#include "conn.h"
#include "forward.h"
#include "head_buf.h"
#include "health.h"
#include "log.h"
#include "phases.h"
#include "proxy.h"
#include "proxy_internal.h"
#include "util.h"

void gw_proxy_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

void gw_proxy_abort(gw_conn *c)
{
    if (c->up) {
        gw_upstream_release(c->up, false);
        c->up = NULL;
    }
}

/* Ends the current exchange with an error: an error response if nothing was sent yet, else the client
 * connection is cut (the truncated body tells the client something went wrong). */
void gw_proxy_fail(gw_conn *c, int status, const char *message)
{
    gw_proxy_abort(c);
    if (c->response_started) {
        gw_conn_free(c);
        return;
    }
    if (!c->body_complete) c->keep_alive = false;
    gw_respond_error(c, status, message);
}

/* After a failed attempt the response view goes back to what filters set before any response: fields of
 * an upstream head that was staged (then found broken, or retried) must not end up in our error. */
static void reset_response_view(gw_req *r)
{
    if (!r->staged) return;
    r->hresp_on = false;
    r->hresp = (gw_hlist){0};
    for (size_t i = 0; i < r->hset.n; i++)
        gw_hdr_put(r, GW_HDR_RESPONSE, r->hset.v[i].name.p, r->hset.v[i].value.p, r->hset.v[i].value.n, false);
}

static void passive_failed(gw_conn *c, const char *why);
/* Every attempt's outcome, counted here rather than by filters: a retry filter's GW_RETRY skips the
 * upstream_response phase of the filters after it for the attempts it discards. */
void gw_proxy_count_attempt(gw_conn *c, bool error)
{
    gw_server *srv = c->w->srv;
    if (!c->route || !srv->m_backend_requests) return;
    const char *const v[] = {c->gen->services[c->route->service].conf->name};
    gw_metric_add(srv->m_backend_requests, c->w->id, v, 1);
    if (error && srv->m_backend_errors) gw_metric_add(srv->m_backend_errors, c->w->id, v, 1);
}

/* A failed upstream attempt: filters see it in the upstream_response phase (a retry filter may ask for
 * another attempt); otherwise the client gets the error. */
void gw_proxy_attempt_failed(gw_conn *c, int status, const char *why, const char *message)
{
    passive_failed(c, why);
    gw_proxy_count_attempt(c, true);
    reset_response_view(&c->rq);
    c->attempt_sent = c->attempt_queued && c->up && c->up->connected;
    if (c->response_started || !gw_phase_present(c, GW_PH_UPSTREAM_RESPONSE)) {
        gw_proxy_fail(c, status, message);
        return;
    }
    gw_proxy_abort(c);
    c->status = status;
    c->rq.attempt_error = why;
    c->fail_message = message;
    c->state = GW_C_FILTER;
    gw_phase_start(c, GW_PH_UPSTREAM_RESPONSE);
}

static bool websocket_upgrade(const gw_http_head *h)
{
    const gw_http_field *up = gw_http_find(h, "Upgrade");
    return h->upgrade && up && gw_http_list_has(up->value, "websocket");
}

#define ADD_LIT(out, lit) evbuffer_add((out), (lit), sizeof(lit) - 1)

static void write_request_line(gw_conn *c, gw_hbuf *b)
{
    const gw_http_head *h = c->req;
    char path[8192 + 16];
    char *pp = path;
    size_t cap = c->path_total + 2 < sizeof path ? sizeof path : c->path_total + 2;
    if (cap > sizeof path) pp = malloc(cap);
    long plen = pp ? gw_route_upstream_path(c->route, c->path_buf, c->path_len, c->path_buf + c->path_len,
                                            c->path_total - c->path_len, pp, cap)
                   : -1;
    gw_hb_add(b, h->method.p, h->method.n);
    GW_HB_LIT(b, " ");
    if (plen < 0) GW_HB_LIT(b, "/");
    else gw_hb_add(b, pp, (size_t)plen);
    GW_HB_LIT(b, " HTTP/1.1\r\n");
    if (pp != path) free(pp);
}

static void write_request_head(gw_conn *c, gw_upconn *u, uint64_t buffered)
{
    const gw_http_head *h = c->req;
    gw_hbuf b;
    gw_hb_init(&b, gw_io_output(u->bev));
    write_request_line(c, &b);
    const gw_target_conf *t = u->pool->target->conf;
    if (c->route->preserve_host && h->host.n)
        gw_hb_field(&b, "Host", 4, h->host.p, h->host.n);
    else
        gw_hb_field(&b, "Host", 4, t->authority, strlen(t->authority));
    size_t nfields;
    const gw_http_field *fields = gw_fwd_fields(c, &nfields);
    for (size_t i = 0; i < nfields; i++) {
        const gw_http_field *f = &fields[i];
        if (!gw_fwd_skip_field(c, f)) gw_hb_field(&b, f->name.p, f->name.n, f->value.p, f->value.n);
    }
    gw_fwd_add_fields(c, &b);
    gw_hb_field(&b, "X-Request-Id", 12, c->request_id, strlen(c->request_id));
    if (websocket_upgrade(h)) {
        const gw_http_field *up = gw_http_find(h, "Upgrade");
        GW_HB_LIT(&b, "Connection: upgrade\r\n");
        gw_hb_field(&b, "Upgrade", 7, up->value.p, up->value.n);
    }
    if (c->body_streaming && h->body == GW_BODY_CHUNKED) {
        GW_HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    } else if (c->body_streaming || h->body != GW_BODY_NONE) {
        GW_HB_LIT(&b, "Content-Length: ");
        gw_hb_u64(&b, c->body_streaming ? h->content_length : buffered, 10);
        GW_HB_LIT(&b, "\r\n");
    }
    GW_HB_LIT(&b, "\r\n");
    gw_hb_flush(&b);
}

/* Copies (not moves) the buffered body so that it can be replayed on a fresh connection. */
static void copy_body(struct evbuffer *dst, struct evbuffer *src)
{
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(src, &pos, 0, EVBUFFER_PTR_SET);
    for (;;) {
        int n = evbuffer_peek(src, -1, &pos, v, 16);
        if (n <= 0) return;
        size_t moved = 0;
        for (int i = 0; i < n && i < 16; i++) {
            evbuffer_add(dst, v[i].iov_base, v[i].iov_len);
            moved += v[i].iov_len;
        }
        if (n <= 16) return;
        if (evbuffer_ptr_set(src, &pos, moved, EVBUFFER_PTR_ADD) != 0) return;
    }
}

/* Round-robin over the targets in the rotation. A retry (attempts > 0) goes to another one than the
 * previous attempt's when there is one. NULL: every target is out and the service refuses then. */
static gw_pool *pick_target(gw_conn *c)
{
    gw_gen_worker *pw = &c->gen->pw[c->w->id];
    size_t s = c->route->service;
    const gw_service *svc = &c->gen->services[s];
    size_t n = svc->ntargets, start = pw->rr[s]++;
    gw_target *avoid = c->attempts > 0 ? c->up_target : NULL;
    gw_pool *again = NULL; /* the previous attempt's target, if nothing else is in */
    int64_t now = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = (start + i) % n;
        gw_target *t = &svc->targets[idx];
        if (t == avoid) {
            if (atomic_load(&t->health) != GW_HEALTH_UNHEALTHY) again = &pw->pools[s][idx];
            continue;
        }
        if (gw_target_pickable(t, &now)) return &pw->pools[s][idx];
    }
    if (again) return again;
    if (svc->conf->when_all_down == GW_ALL_DOWN_REFUSE) return NULL;
    return &pw->pools[s][start % n]; /* when_all_down: try (panic): forward rather than refuse */
}

/* when_all_down: refuse. Retry-After: when the first target may be tried again, at least a second. */
static void refuse_all_down(gw_conn *c)
{
    const gw_service *svc = &c->gen->services[c->route->service];
    int64_t now = (int64_t)gw_mono_ms(), wait = 0;
    for (size_t i = 0; i < svc->ntargets; i++) {
        int64_t w = gw_target_retry_in_ms(&svc->targets[i], now);
        if (w > 0 && (wait == 0 || w < wait)) wait = w;
    }
    char msg[160], hdr[48];
    snprintf(msg, sizeof msg, "No healthy target for service %s", svc->conf->name);
    snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)(wait > 1000 ? (wait + 999) / 1000 : 1));
    if (!c->body_complete) c->keep_alive = false;
    c->up_url = NULL;
    gw_respond_error_hdr(c, 503, msg, hdr);
}

/* A failed attempt that says something about its target: connect failures, timeouts before the head, a
 * fresh connection closed before any response (a pooled one may have been closed while idle). */
static void passive_failed(gw_conn *c, const char *why)
{
    if (!c->up_counts || !c->up_target) return;
    c->up_counts = false; /* once per attempt */
    int kind = strcmp(why, "connect") == 0 ? GW_PASSIVE_CONNECT
               : strcmp(why, "timeout") == 0 ? GW_PASSIVE_TIMEOUT
               : strcmp(why, "closed") == 0 && !c->up_reused ? GW_PASSIVE_CLOSED
                                                             : 0;
    if (!kind || !gw_passive_failure(c->up_target, kind, (int64_t)gw_mono_ms())) return;
    gw_metric *m = c->w->srv->m_ejections;
    if (m) gw_metric_add(m, c->w->id, (const char *const[]){c->up_target->service->name}, 1);
}

void gw_proxy_connect(gw_conn *c)
{
    gw_pool *pool = pick_target(c);
    if (!pool) {
        refuse_all_down(c);
        return;
    }
    char *why = "out of memory";
    gw_upconn *u = gw_upstream_acquire(c->w, pool, c->attempts > 0, &why);
    c->attempts++;
    c->attempt_queued = c->attempt_sent = false;
    c->up_url = pool->target->conf->url;
    c->up_target = pool->target;
    c->up_counts = u || pool->target->naddrs == 0; /* not when we ran out of descriptors or memory */
    c->up_reused = u && u->reused;
    c->rq.hup_on = false; /* the upstream view is per attempt */
    c->rq.attempt_error = NULL;
    if (!u) {
        gw_upstream_log_failure("upstream", pool->target->conf->url, why);
        gw_proxy_attempt_failed(c, 502, "connect", "The upstream service is unavailable");
        return;
    }
    u->owner = c;
    c->up = u;
    u->requests++;
    if (gw_phase_present(c, GW_PH_UPSTREAM_REQUEST)) {
        c->state = GW_C_FILTER;
        gw_phase_start(c, GW_PH_UPSTREAM_REQUEST);
    } else {
        gw_after_upstream_request(c, GW_CONTINUE);
    }
}

/* The upstream connection failed (or spoke out of turn) while the upstream_request phase was waiting:
 * forget it now, act on it when the phase is done. */
static bool failed_during_wait(gw_conn *c, int status, const char *why)
{
    if (c->state != GW_C_FILTER || !c->rq.waiting || c->rq.phase != GW_PH_UPSTREAM_REQUEST) return false;
    gw_upconn *u = c->up;
    c->wait_fail_stale = u && u->reused && !u->got_bytes && c->attempts < 2;
    c->wait_fail_status = status;
    c->wait_fail_why = why;
    gw_proxy_abort(c);
    return true;
}

void gw_after_upstream_request(gw_conn *c, gw_result r)
{
    if (r == GW_CONTINUE && !c->up) { /* the connection went away during the phase */
        int st = c->wait_fail_status ? c->wait_fail_status : 502;
        c->wait_fail_status = 0;
        if (c->wait_fail_stale) {
            c->wait_fail_stale = false;
            gw_proxy_connect(c);
        } else {
            gw_proxy_attempt_failed(c, st, c->wait_fail_why ? c->wait_fail_why : "closed",
                                    st == 504 ? "The upstream service did not answer in time"
                                              : "The upstream service is unavailable");
        }
        return;
    }
    if (r != GW_CONTINUE) {
        gw_proxy_abort(c);
        if (r == GW_RESPOND && c->rq.own_status) gw_respond_own(c);
        else gw_respond_error(c, 500, "A filter failed to process the request");
        return;
    }
    gw_upconn *u = c->up;
    c->state = GW_C_PROXY;
    uint64_t buffered = c->body ? evbuffer_get_length(c->body) : 0;
    write_request_head(c, u, buffered);
    c->attempt_queued = true;
    struct evbuffer *out = gw_io_output(u->bev);
    if (buffered && !c->body_streaming) {
        copy_body(out, c->body); /* kept for a replay (stale pooled connection, retry) */
    } else if (buffered) { /* switched to streaming: what was buffered goes first */
        if (c->req->body == GW_BODY_CHUNKED) evbuffer_add_printf(out, "%llx\r\n", (unsigned long long)buffered);
        evbuffer_add_buffer(out, c->body);
        if (c->req->body == GW_BODY_CHUNKED) ADD_LIT(out, "\r\n");
    }
    if (c->body_complete && c->body_streaming && c->req->body == GW_BODY_CHUNKED) ADD_LIT(out, "0\r\n\r\n");
    u->req_queued = evbuffer_get_length(out);
    u->req_sent = false;
    gw_proxy_request_timer(c, u);
    if (c->body_streaming && !c->body_complete) gw_proxy_body_continue(c); /* bytes that waited */
}

/* The upstream's timer until its response head: the connect timeout; none while the body streams (the
 * body's own limits apply, and a stalled write when the upstream stops reading it); then the response
 * timeout, counted again from the last request byte written (gw_proxy_up_write). */
void gw_proxy_request_timer(gw_conn *c, gw_upconn *u)
{
    const gw_config *cfg = c->gen->cfg;
    if (u->head_done) return; /* the response's own timers run */
    if (!u->connected) {
        /* armed once per attempt: body progress must not extend the connect timeout */
        if (!evtimer_pending(u->timer, NULL)) gw_proxy_arm(u->timer, cfg->upstream_connect_ms);
    } else if (c->body_complete) {
        gw_proxy_arm(u->timer, cfg->upstream_response_ms);
    } else if (c->read_paused) {
        gw_proxy_arm(u->timer, cfg->upstream_idle_ms);
    } else {
        evtimer_del(u->timer);
    }
}

/* Methods whose repetition has the effect of one request (RFC 9110 9.2.2). */
static bool idempotent(int method)
{
    return method == GW_METHOD_GET || method == GW_METHOD_HEAD || method == GW_METHOD_OPTIONS ||
           method == GW_METHOD_TRACE || method == GW_METHOD_PUT || method == GW_METHOD_DELETE;
}

/* A stale pooled connection may have consumed the request before it closed: only a request that is safe
 * to repeat, or one of which no byte left our output buffer, is sent again. */
static bool replay_safe(const gw_conn *c, gw_upconn *u)
{
    return idempotent(c->req->method_id) || evbuffer_get_length(gw_io_output(u->bev)) >= u->req_queued;
}

void gw_proxy_up_write(gw_io *bev, void *arg)
{
    gw_upconn *u = arg;
    if (u->shut_pending && evbuffer_get_length(gw_io_output(bev)) == 0) {
        u->shut_pending = false;
        shutdown(gw_io_fd(bev), SHUT_WR);
        return;
    }
    gw_conn *c = u->owner;
    if (!c) return;
    if (!u->req_sent && !u->head_done && c->body_complete && c->state == GW_C_PROXY &&
        evbuffer_get_length(gw_io_output(bev)) == 0) {
        u->req_sent = true;
        gw_proxy_arm(u->timer, c->gen->cfg->upstream_response_ms);
    }
    if (c->read_paused && c->state == GW_C_PROXY && !c->body_complete) gw_proxy_body_continue(c);
    else gw_conn_resume_read(c);
}

static void log_up_error(gw_upconn *u, int what, const char *stage)
{
    int err = EVUTIL_SOCKET_ERROR();
    unsigned long ssl_err = gw_io_ssl_error(u->bev);
    if (ssl_err) { /* the TCP connection worked; TLS did not */
        char buf[256];
        ERR_error_string_n(ssl_err, buf, sizeof buf);
        gw_warn("upstream %s: TLS handshake failed: %s", u->pool->target->conf->url, buf);
        return;
    }
    gw_warn("upstream %s: %s: %s", u->pool->target->conf->url, stage,
            (what & GW_IO_EOF) ? "connection closed" : err ? strerror(err) : "error");
}

void gw_proxy_up_event(gw_io *bev, int what, void *arg)
{
    gw_upconn *u = arg;
    gw_conn *c = u->owner;
    const gw_config *cfg = c->gen->cfg;
    if (what & GW_IO_CONNECTED) {
        u->connected = true;
        gw_proxy_request_timer(c, u);
        return;
    }
    if (c->state == GW_C_TUNNEL) {
        gw_proxy_tunnel_closed(c);
        return;
    }
    if (failed_during_wait(c, 502, u->connected ? "closed" : "connect")) return;
    if (!u->connected) {
        log_up_error(u, what, "connect failed");
        u->addr_idx++;
        if (gw_upstream_connect(c->w, u) == 0) {
            gw_proxy_arm(u->timer, cfg->upstream_connect_ms);
            return;
        }
        gw_proxy_attempt_failed(c, 502, "connect", "The upstream service is unavailable");
        return;
    }
    if (u->head_done && c->resp_in == GW_BODY_CLOSE && (what & GW_IO_EOF) && !(what & GW_IO_ERROR)) {
        gw_proxy_response_eof(c);
        return;
    }
    if (!u->got_bytes && u->reused && c->body_complete && !c->body_streaming && c->attempts < 2) {
        /* The pooled connection was closed by the upstream while idle: replay once on a new one. */
        if (replay_safe(c, u)) {
            gw_debug("upstream %s: pooled connection was closed; retrying on a new one", u->pool->target->conf->url);
            gw_proxy_abort(c);
            gw_proxy_connect(c);
            return;
        }
        gw_warn("upstream %s: pooled connection closed after the request was sent; not replaying a %.*s",
                u->pool->target->conf->url, (int)c->req->method.n, c->req->method.p);
    }
    log_up_error(u, what, u->head_done ? "response body cut short" : "no response");
    if (!u->head_done) {
        gw_proxy_attempt_failed(c, 502, "closed", "The upstream service closed the connection without answering");
        return;
    }
    gw_conn_free(c);
}

void gw_proxy_up_timeout(gw_upconn *u)
{
    gw_conn *c = u->owner;
    if (failed_during_wait(c, 504, "timeout")) return;
    if (!u->connected) {
        gw_warn("upstream %s: connect timed out", u->pool->target->conf->url);
        gw_proxy_attempt_failed(c, 504, "timeout", "The upstream service did not accept the connection in time");
    } else if (!u->head_done) {
        if (!c->body_complete)
            gw_warn("upstream %s: took none of the request body for %llu ms", u->pool->target->conf->url,
                    (unsigned long long)c->gen->cfg->upstream_idle_ms);
        else
            gw_warn("upstream %s: no response within %llu ms", u->pool->target->conf->url,
                    (unsigned long long)c->gen->cfg->upstream_response_ms);
        gw_proxy_attempt_failed(c, 504, "timeout", "The upstream service did not answer in time");
    } else if (c->state == GW_C_TUNNEL) {
        gw_conn_free(c);
    } else {
        gw_warn("upstream %s: response body stalled", u->pool->target->conf->url);
        gw_conn_free(c);
    }
}
