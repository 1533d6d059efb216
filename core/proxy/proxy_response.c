/* proxy_response.c - the response side of proxying: the upstream's head is parsed strictly and
 * re-framed for the client (Content-Length kept, chunked or close-delimited otherwise), the body is
 * streamed with back-pressure, the upstream connection goes back to its pool when it can, and a 101
 * turns both connections into a tunnel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include "io.h"
#include <event2/event.h>

#include "conn.h"
#include "head_buf.h"
#include "health.h"
#include "log.h"
#include "phases.h"
#include "proxy.h"
#include "proxy_internal.h"

#define ADD_LIT(out, lit) evbuffer_add((out), (lit), sizeof(lit) - 1)
static bool read_upstream(gw_upconn *u);
static void response_complete(gw_conn *c);
#define MAX_RESPONSE_HEAD (64u * 1024u)
/* A client output this large is written at once, not at the end of the loop turn (gw_io_write_now). */
#define WRITE_NOW_BYTES (32u * 1024u)

static bool skip_response_field(const gw_http_head *h, const gw_http_field *f)
{
    if (gw_http_is_hop_by_hop(f->name) || gw_str_eq_ci(f->name, "X-Request-Id")) return true;
    /* A HEAD or 304 answer's Content-Length describes the representation: keep it. */
    if (gw_str_eq_ci(f->name, "Content-Length")) return h->body != GW_BODY_NONE || h->status < 200 || h->status == 204;
    return gw_http_conn_lists(h, f->name);
}

/* How the body goes to the client, from the upstream's framing and the client's version. */
static void set_framing(gw_conn *c, const gw_http_head *h)
{
    c->resp_in = h->body;
    c->resp_left = h->content_length;
    c->resp_body_seen = 0;
    c->resp_chunk_out = false;
    c->resp_close_out = false;
    if (h->body == GW_BODY_CHUNKED || h->body == GW_BODY_CLOSE) {
        if (c->req->minor_version == 0) c->resp_close_out = true;
        else c->resp_chunk_out = true;
        if (h->body == GW_BODY_CHUNKED) gw_chunked_init(&c->resp_chunked);
    }
    if (c->resp_close_out || !c->body_complete || c->w->draining) c->keep_alive = false;
    c->status = h->status;
    c->up_status = h->status;
    c->attempt_sent = true;
}

static bool skip_view_field(const gw_conn *c, const gw_http_field *f)
{
    if (gw_http_is_hop_by_hop(f->name) || gw_str_eq_ci(f->name, "X-Request-Id")) return true;
    return gw_str_eq_ci(f->name, "Content-Length") && c->resp_in != GW_BODY_NONE;
}

/* The response head: status line, the upstream's fields (h: filtered here; NULL: `view` holds the
 * already filtered and filter-edited list), then our framing and correlation fields. */
static void emit_head(gw_conn *c, int status, gw_str reason, const gw_http_head *h, const gw_hlist *view)
{
    bool http10 = c->req->minor_version == 0;
    struct evbuffer *out = gw_io_output(c->bev);
    size_t before = evbuffer_get_length(out);
    c->response_started = true;
    gw_hbuf b;
    gw_hb_init(&b, out);
    GW_HB_LIT(&b, "HTTP/1.1 ");
    gw_hb_u64(&b, (uint64_t)status, 10);
    GW_HB_LIT(&b, " ");
    if (reason.n) gw_hb_add(&b, reason.p, reason.n);
    else gw_hb_str(&b, gw_http_reason(status));
    GW_HB_LIT(&b, "\r\n");
    for (size_t i = 0; h && i < h->nfields; i++) {
        const gw_http_field *f = &h->fields[i];
        if (!skip_response_field(h, f)) gw_hb_field(&b, f->name.p, f->name.n, f->value.p, f->value.n);
    }
    for (size_t i = 0; view && i < view->n; i++) {
        const gw_http_field *f = &view->v[i];
        if (!skip_view_field(c, f)) gw_hb_field(&b, f->name.p, f->name.n, f->value.p, f->value.n);
    }
    if (c->resp_in == GW_BODY_LENGTH) {
        GW_HB_LIT(&b, "Content-Length: ");
        gw_hb_u64(&b, c->resp_left, 10);
        GW_HB_LIT(&b, "\r\n");
    }
    if (c->resp_chunk_out) GW_HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    gw_hb_field(&b, "X-Request-Id", 12, c->request_id, strlen(c->request_id));
    if (!c->keep_alive) GW_HB_LIT(&b, "Connection: close\r\n");
    else if (http10) GW_HB_LIT(&b, "Connection: keep-alive\r\n");
    GW_HB_LIT(&b, "\r\n");
    gw_hb_flush(&b);
    c->resp_queued = evbuffer_get_length(out) - before; /* nothing is written before the loop turn ends */
}

/* Takes the current response back when none of it has left for the client (the output is flushed at the
 * end of the loop turn, or at once past WRITE_NOW_BYTES): its bytes are the last resp_queued of the
 * output, after what earlier responses left; writes take from the front, so once any of them has gone
 * the output is shorter than resp_queued. */
static bool take_back_response(gw_conn *c)
{
    struct evbuffer *out = gw_io_output(c->bev);
    size_t len = evbuffer_get_length(out);
    if (!c->response_started || !c->resp_queued || len < c->resp_queued) return false;
    size_t keep = len - c->resp_queued;
    if (keep) {
        struct evbuffer *earlier = evbuffer_new();
        if (!earlier) return false;
        evbuffer_remove_buffer(out, earlier, keep);
        evbuffer_drain(out, evbuffer_get_length(out));
        evbuffer_add_buffer(out, earlier);
        evbuffer_free(earlier);
    } else {
        evbuffer_drain(out, len);
    }
    c->resp_queued = 0;
    c->response_started = false;
    return true;
}

static gw_str arena_str(gw_req *r, gw_str s)
{
    char *p = gw_req_alloc(r, s.n + 1);
    if (!p) return (gw_str){"", 0};
    memcpy(p, s.p, s.n);
    p[s.n] = '\0';
    return (gw_str){p, s.n};
}

/* A parsed field into the response view: name and value copied (NUL-terminated) in one allocation; the
 * codec has checked both already. */
static int stage_field(gw_req *r, const gw_http_field *f)
{
    char *p = gw_req_alloc(r, f->name.n + f->value.n + 2);
    if (!p) return -1;
    memcpy(p, f->name.p, f->name.n);
    p[f->name.n] = '\0';
    char *v = p + f->name.n + 1;
    memcpy(v, f->value.p, f->value.n);
    v[f->value.n] = '\0';
    return gw_hdr_append(r, GW_HDR_RESPONSE, (gw_str){p, f->name.n}, (gw_str){v, f->value.n});
}

/* For the response phases: the client-bound fields go into the response view (copied: the head bytes are
 * about to leave the input buffer), ahead of what filters already set there. */
static int stage_response(gw_conn *c, const gw_http_head *h)
{
    gw_req *r = &c->rq;
    if (!r->staged) { /* what filters set before any response: kept apart, for every attempt */
        r->staged = true;
        r->hset.n = 0;
        if (r->hresp_on && r->hresp.n) {
            r->hset.v = gw_req_alloc(r, r->hresp.n * sizeof *r->hset.v);
            if (!r->hset.v) return -1;
            memcpy(r->hset.v, r->hresp.v, r->hresp.n * sizeof *r->hset.v);
            r->hset.n = r->hset.cap = r->hresp.n;
        }
    }
    gw_hlist prior = r->hset;
    r->hresp_on = false;
    r->hresp = (gw_hlist){0};
    gw_hlist *v = gw_hdr_view(r, GW_HDR_RESPONSE);
    if (!v) return -1;
    for (size_t i = 0; i < h->nfields; i++) {
        const gw_http_field *f = &h->fields[i];
        if (skip_response_field(h, f)) continue;
        if (stage_field(r, f) != 0) return -1;
    }
    for (size_t i = 0; i < prior.n; i++) /* checked and copied when a filter set them */
        if (gw_hdr_append(r, GW_HDR_RESPONSE, prior.v[i].name, prior.v[i].value) != 0) return -1;
    r->resp_reason = arena_str(r, h->reason);
    return 0;
}

static void finish_response(gw_conn *c)
{
    gw_upconn *u = c->up;
    gw_io *ub = u->bev;
    if (c->resp_chunk_out) ADD_LIT(gw_io_output(c->bev), "0\r\n\r\n");
    bool reusable = u->keep_alive && c->resp_in != GW_BODY_CLOSE && c->body_complete &&
                    evbuffer_get_length(gw_io_input(ub)) == 0 &&
                    evbuffer_get_length(gw_io_output(ub)) == 0;
    gw_upstream_release(u, reusable);
    c->up = NULL;
    gw_conn_request_done(c);
}

void gw_proxy_response_eof(gw_conn *c)
{
    if (read_upstream(c->up) && c->up) response_complete(c);
}

static void start_tunnel(gw_conn *c, gw_upconn *u, const char *head, size_t head_len)
{
    struct evbuffer *out = gw_io_output(c->bev);
    evbuffer_add(out, head, head_len - 2); /* the 101 as received (it parsed strictly), minus the blank line */
    ADD_LIT(out, "X-Request-Id: ");
    evbuffer_add(out, c->request_id, strlen(c->request_id));
    ADD_LIT(out, "\r\n\r\n");
    evbuffer_drain(gw_io_input(u->bev), head_len);
    gw_proxy_count_attempt(c, false);
    c->status = 101;
    c->response_started = true;
    c->keep_alive = false;
    c->state = GW_C_TUNNEL;
    u->head_done = true;
    evtimer_del(c->timer);
    evtimer_del(u->timer);
    gw_proxy_tunnel_move(c, false);
    if (c->state == GW_C_TUNNEL && c->up) gw_proxy_tunnel_move(c, true);
}

/* Returns 1 when a final head was written, 0 when more bytes are needed, -1 when handled otherwise
 * (error answered, tunnel started). Interim 1xx heads are dropped: the client got our own 100. */
static int read_response_head(gw_conn *c, gw_upconn *u)
{
    struct evbuffer *in = gw_io_input(u->bev);
    for (int interim = 0; interim < 16; interim++) {
        size_t len = evbuffer_get_length(in);
        size_t window = len < MAX_RESPONSE_HEAD ? len : MAX_RESPONSE_HEAD;
        if (window < 4) return 0;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)window);
        size_t start = u->scan_from > 3 ? u->scan_from - 3 : 0;
        const char *end = memmem(p + start, window - start, "\r\n\r\n", 4);
        if (!end) {
            u->scan_from = window;
            if (window < MAX_RESPONSE_HEAD) return 0;
            gw_warn("upstream %s: response head larger than %u bytes", u->pool->target->conf->url, MAX_RESPONSE_HEAD);
            gw_proxy_attempt_failed(c, 502, "invalid", "The upstream service sent an invalid response");
            return -1;
        }
        size_t head_len = (size_t)(end - p) + 4;
        u->scan_from = 0;
        gw_http_head *h = &c->w->scratch;
        gw_http_limits lim = {MAX_RESPONSE_HEAD, MAX_RESPONSE_HEAD, GW_HTTP_MAX_FIELDS_HARD};
        ssize_t r = gw_http_parse_response(p, head_len, &lim, c->req->method_id, h);
        if (r <= 0 || (size_t)r != head_len) {
            gw_warn("upstream %s: malformed response head (%d)", u->pool->target->conf->url, (int)r);
            gw_proxy_attempt_failed(c, 502, "invalid", "The upstream service sent an invalid response");
            return -1;
        }
        gw_passive_success(u->pool->target); /* any answer, 5xx included: that is the breaker's business */
        if (h->status == 101) {
            if (c->req->upgrade && h->upgrade) {
                start_tunnel(c, u, p, head_len);
                return -1;
            }
            gw_proxy_attempt_failed(c, 502, "invalid", "The upstream service switched protocols unasked");
            return -1;
        }
        if (h->status < 200) {
            evbuffer_drain(in, head_len);
            continue;
        }
        u->keep_alive = h->keep_alive;
        set_framing(c, h);
        u->head_done = true;
        gw_proxy_count_attempt(c, h->status >= 500);
        if (c->gen->phases & (1u << GW_PH_UPSTREAM_RESPONSE | 1u << GW_PH_RESPONSE)) {
            int rc = stage_response(c, h);
            evbuffer_drain(in, head_len);
            if (rc != 0) {
                gw_proxy_fail(c, 502, "Out of memory");
                return -1;
            }
            gw_io_read_enable(u->bev, false); /* the body waits until the filters are done */
            evtimer_del(u->timer);            /* ... and the upstream is not idle meanwhile */
            u->held = true;
            c->state = GW_C_FILTER;
            if (gw_phase_present(c, GW_PH_UPSTREAM_RESPONSE)) gw_phase_start(c, GW_PH_UPSTREAM_RESPONSE);
            else gw_after_upstream_response(c, GW_CONTINUE);
            return -1;
        }
        emit_head(c, h->status, h->reason, h, c->rq.hresp_on ? &c->rq.hresp : NULL);
        evbuffer_drain(in, head_len);
        return 1;
    }
    gw_proxy_attempt_failed(c, 502, "invalid", "The upstream service sent too many interim responses");
    return -1;
}

/* A response_body filter failed: a 500 instead when none of the response has left yet, else both
 * connections are cut (the client sees a truncated body). */
static void response_body_refused(gw_conn *c)
{
    c->keep_alive = false;
    if (take_back_response(c)) {
        gw_proxy_fail(c, 500, "A filter failed to process the response body");
        return;
    }
    gw_proxy_abort(c);
    gw_conn_free(c);
}

/* The response_body phase over n bytes at the front of `in` (n == 0: the end); -1 when a filter failed
 * (handled: the connection is gone or answered). Free when no filter has the phase. */
static int response_body_filters(gw_conn *c, struct evbuffer *in, size_t n, bool last)
{
    if (!(c->gen->phases & (1u << GW_PH_RESPONSE_BODY))) return 0;
    gw_result r = gw_phase_body(c, GW_PH_RESPONSE_BODY, in, n, c->resp_body_seen, last);
    if (r == GW_CONTINUE) return 0;
    response_body_refused(c);
    return -1;
}

/* Moves n payload bytes to the client, chunk-encoded when we re-frame; -1 when a response_body filter
 * stopped it (handled). */
static int send_payload(gw_conn *c, struct evbuffer *in, size_t n)
{
    if (response_body_filters(c, in, n, false) != 0) return -1;
    c->resp_body_seen += n;
    c->rq.bytes_out += n; /* host->bytes_out: payload bytes, as for the gateway's own answers */
    struct evbuffer *out = gw_io_output(c->bev);
    size_t before = evbuffer_get_length(out);
    if (c->resp_chunk_out) {
        char line[24];
        int k = (int)sizeof line;
        line[--k] = '\n';
        line[--k] = '\r';
        size_t v = n;
        do {
            line[--k] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v);
        evbuffer_add(out, line + k, sizeof line - (size_t)k);
    }
    evbuffer_remove_buffer(in, out, n);
    if (c->resp_chunk_out) ADD_LIT(out, "\r\n");
    c->resp_queued += evbuffer_get_length(out) - before;
    if (evbuffer_get_length(out) >= WRITE_NOW_BYTES) gw_io_write_now(c->bev);
    return 0;
}

/* Returns 1 when the body is complete, 0 when more is needed, -1 on malformed framing, -2 when a
 * response_body filter stopped it (handled: touch nothing of the connection). */
static int pump_response_body(gw_conn *c, struct evbuffer *in)
{
    if (c->resp_in == GW_BODY_NONE) return 1;
    if (c->resp_in == GW_BODY_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < c->resp_left ? avail : (size_t)c->resp_left;
        if (n && send_payload(c, in, n) != 0) return -2;
        c->resp_left -= n;
        return c->resp_left == 0;
    }
    if (c->resp_in == GW_BODY_CLOSE) {
        size_t n = evbuffer_get_length(in);
        if (n && send_payload(c, in, n) != 0) return -2;
        return 0;
    }
    for (int guard = 0; guard < 100000; guard++) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return 0;
        if (gw_chunked_in_data(&c->resp_chunked)) {
            size_t n = avail < c->resp_chunked.remaining ? avail : (size_t)c->resp_chunked.remaining;
            if (send_payload(c, in, n) != 0) return -2;
            gw_chunked_consumed(&c->resp_chunked, n);
            continue;
        }
        size_t take = avail < 4096 ? avail : 4096, used = 0;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)take);
        int r = gw_chunked_feed(&c->resp_chunked, p, take, &used);
        evbuffer_drain(in, used);
        if (r == GW_CHUNKED_ERROR) return -1;
        if (r == GW_CHUNKED_DONE) return 1;
        if (r == GW_CHUNKED_AGAIN && (used == 0 || take == avail)) return 0;
    }
    return 0;
}

/* The whole body went to the client: response_body filters see its end first (bodiless responses do not
 * run the phase). */
static void response_complete(gw_conn *c)
{
    if (c->resp_in != GW_BODY_NONE && response_body_filters(c, NULL, 0, true) != 0) return;
    finish_response(c);
}

void gw_proxy_up_read(gw_io *bev, void *arg)
{
    (void)bev;
    read_upstream(arg);
}

/* What the upstream sent; false when the connection was ended or answered otherwise (touch nothing of it
 * then), true when it is still streaming (or in a tunnel, or in a filter phase). */
static bool read_upstream(gw_upconn *u)
{
    gw_conn *c = u->owner;
    gw_io *bev = u->bev;
    if (c->state == GW_C_TUNNEL) {
        gw_proxy_tunnel_move(c, false);
        return true;
    }
    if (c->state == GW_C_FILTER && c->rq.waiting && c->rq.phase == GW_PH_UPSTREAM_REQUEST) {
        gw_proxy_up_event(bev, GW_IO_ERROR, u); /* an answer before the request: drop the connection */
        return false;
    }
    u->got_bytes = true;
    if (!u->head_done) {
        int h = read_response_head(c, u);
        if (h < 0) return false;
        if (h == 0) return true;
    }
    int r = pump_response_body(c, gw_io_input(bev));
    if (r == -2) return false;
    if (r < 0) {
        gw_warn("upstream %s: malformed chunked response body", u->pool->target->conf->url);
        /* Nothing reached the client yet: it gets a 502 instead (and the connection closes after it, as it
         * would have without the take-back), and filters see a failed attempt. */
        if (take_back_response(c)) {
            c->keep_alive = false;
            gw_proxy_attempt_failed(c, 502, "invalid", "The upstream service sent an invalid response");
        } else {
            gw_conn_free(c);
        }
        return false;
    }
    if (r == 1) {
        response_complete(c);
        return false;
    }
    if (evbuffer_get_length(gw_io_output(c->bev)) > GW_HIGH_WATER) {
        /* Waiting on the client now, not on the upstream: its idle time stops counting until the client
         * takes part of the output, and the client has send_idle to do so. */
        gw_io_read_enable(bev, false);
        u->read_paused = true;
        evtimer_del(u->timer);
        if (c->body_complete) gw_proxy_arm(c->timer, c->gen->cfg->send_idle_ms);
        return true;
    }
    gw_proxy_arm(u->timer, c->gen->cfg->upstream_idle_ms);
    return true;
}

/* The client's output drained below the low watermark: let the upstream side flow again. */
void gw_proxy_client_drained(gw_conn *c)
{
    gw_upconn *u = c->up;
    if (u && u->read_paused && !u->held) {
        u->read_paused = false;
        gw_io_read_enable(u->bev, true);
        if (c->state == GW_C_TUNNEL) return;
        if (c->body_complete) evtimer_del(c->timer); /* the client took some: send_idle is met */
        gw_proxy_arm(u->timer, c->gen->cfg->upstream_idle_ms);
        if (evbuffer_get_length(gw_io_input(u->bev))) gw_proxy_up_read(u->bev, u);
    }
}

void gw_proxy_tunnel_move(gw_conn *c, bool from_client)
{
    gw_upconn *u = c->up;
    if (!u) return;
    gw_io *src = from_client ? c->bev : u->bev, *dst = from_client ? u->bev : c->bev;
    struct evbuffer *out = gw_io_output(dst);
    evbuffer_add_buffer(out, gw_io_input(src));
    if (evbuffer_get_length(out) > GW_HIGH_WATER) {
        gw_io_read_enable(src, false);
        if (from_client) c->read_paused = true;
        else u->read_paused = true;
    }
}

/* The client half-closed a tunnel: shut the upstream's write side once it has every byte. */
void gw_proxy_tunnel_client_eof(gw_conn *c)
{
    gw_upconn *u = c->up;
    if (!u || gw_io_is_tls(u->bev)) return; /* TLS: wait for the upstream to close */
    if (evbuffer_get_length(gw_io_output(u->bev)) == 0) shutdown(gw_io_fd(u->bev), SHUT_WR);
    else u->shut_pending = true;
}

/* The upstream side of a tunnel ended: flush what it sent, then close the client side. */
void gw_proxy_tunnel_closed(gw_conn *c)
{
    gw_proxy_tunnel_move(c, false);
    gw_proxy_abort(c);
    c->keep_alive = false;
    gw_conn_request_done(c);
}

/* After upstream_response: on to the response phase, another attempt, or an answer of ours. */
void gw_after_upstream_response(gw_conn *c, gw_result r)
{
    gw_req *rq = &c->rq;
    bool failed = rq->attempt_error != NULL; /* the attempt produced no response */
    if (r == GW_RETRY && c->body_complete && !c->body_streaming && c->attempts < 16) {
        gw_proxy_abort(c);
        c->status = 0;
        c->retry_pending = true;
        c->state = GW_C_PROXY;
        gw_proxy_arm(c->timer, rq->retry_delay_ms);
        return;
    }
    if (r == GW_RESPOND && rq->own_status) {
        gw_proxy_abort(c);
        gw_respond_own(c);
        return;
    }
    if (r == GW_ERROR || r == GW_RESPOND) {
        gw_proxy_abort(c);
        gw_respond_error(c, 500, "A filter failed to process the response");
        return;
    }
    if (failed) {
        int st = c->status ? c->status : 502;
        gw_respond_error(c, st, c->fail_message ? c->fail_message : "The upstream service is unavailable");
        return;
    }
    if (gw_phase_present(c, GW_PH_RESPONSE)) gw_phase_start(c, GW_PH_RESPONSE);
    else gw_after_response_phase(c, GW_CONTINUE);
}

void gw_after_response_phase(gw_conn *c, gw_result r)
{
    if (c->resp_own) {
        gw_respond_own_after_phase(c, r);
        return;
    }
    gw_upconn *u = c->up;
    if (r != GW_CONTINUE || !u) {
        gw_proxy_abort(c);
        if (r == GW_RESPOND && c->rq.own_status) gw_respond_own(c);
        else gw_respond_error(c, 500, "A filter failed to process the response");
        return;
    }
    c->state = GW_C_PROXY;
    emit_head(c, c->status, c->rq.resp_reason, NULL, &c->rq.hresp);
    u->held = false;
    u->read_paused = false;
    gw_io_read_enable(u->bev, true);
    gw_proxy_up_read(u->bev, u); /* body bytes that arrived meanwhile */
}
