/* proxy_body.c - the request body on its way to the upstream: buffered up to body_buffer (whole, within
 * the request_body deadline) or streamed (at least body_min_rate per window), with back-pressure from
 * the upstream, and the client connection's timer while a request is in the proxy. */
#include <stdio.h>
#include <time.h>

#include <event2/buffer.h>
#include "io.h"
#include <event2/event.h>

#include "conn.h"
#include "log.h"
#include "phases.h"
#include "proxy.h"
#include "proxy_internal.h"
#include "util.h"

#define ADD_LIT(out, lit) evbuffer_add((out), (lit), sizeof(lit) - 1)

static uint64_t left_ms(uint64_t since, uint64_t now, uint64_t limit)
{
    uint64_t used = now - since;
    return used >= limit ? 0 : limit - used;
}

/* A chunked body is buffered while it is small, but nobody knows yet whether it will stay small: past the
 * buffered deadline it is held to the streamed body's rule instead (the minimum rate, averaged since its
 * first byte), so a large chunked upload is not cut sooner than the same upload with a Content-Length.
 * Returns how long the body may still take before it falls below that rate, or 0 if it has already. */
static uint64_t chunked_grace_ms(const gw_conn *c, const gw_config *cfg, uint64_t now)
{
    if (c->req->body != GW_BODY_CHUNKED || !cfg->body_min_rate) return 0;
    uint64_t until = c->body_start_ms + c->body_seen * 1000u / cfg->body_min_rate;
    return until > now ? until - now : 0;
}

/* What the buffered body may still take: its deadline, or for a chunked one the grace above. */
static uint64_t buffered_left_ms(const gw_conn *c, const gw_config *cfg, uint64_t now)
{
    uint64_t left = left_ms(c->body_start_ms, now, cfg->request_body_ms);
    return left ? left : chunked_grace_ms(c, cfg, now);
}

/* The body's next limit: idle since the last byte, and the buffered body's deadline or the end of the
 * streamed body's rate window, whichever comes first. */
static void arm_body_timer(gw_conn *c, uint64_t now)
{
    const gw_config *cfg = c->gen->cfg;
    uint64_t ms = left_ms(c->body_last_ms, now, cfg->body_idle_ms), other = UINT64_MAX;
    if (!c->body_streaming) other = buffered_left_ms(c, cfg, now);
    else if (cfg->body_min_rate) other = left_ms(c->rate_start_ms, now, cfg->body_rate_window_ms);
    gw_proxy_arm(c->timer, ms < other ? ms : other);
}

/* Which body limit has passed, if any; a rate window that was met starts the next one. */
static const char *body_late(gw_conn *c, uint64_t now)
{
    const gw_config *cfg = c->gen->cfg;
    if (now - c->body_last_ms >= cfg->body_idle_ms) return "no body byte within the idle timeout";
    if (!c->body_streaming)
        return buffered_left_ms(c, cfg, now) ? NULL : "body not complete within the deadline";
    uint64_t span = now - c->rate_start_ms;
    if (!cfg->body_min_rate || span < cfg->body_rate_window_ms) return NULL;
    if (c->rate_bytes * 1000u < cfg->body_min_rate * span) return "body slower than the minimum rate";
    c->rate_start_ms = now;
    c->rate_bytes = 0;
    return NULL;
}

/* c->timer fired while the request is in the proxy (a filter's retry delay is handled by the caller). */
void gw_proxy_timer(gw_conn *c)
{
    if (c->body_complete || c->response_started) {
        /* Either the client took nothing of a paused response for send_idle, or its body stalled after
         * the response began: no answer is possible any more. */
        gw_debug("client %s: %s", c->peer_ip, c->body_complete ? "not reading the response" : "body stalled");
        gw_conn_free(c);
        return;
    }
    uint64_t now = gw_mono_ms();
    const char *why = body_late(c, now);
    if (!why) {
        arm_body_timer(c, now);
        return;
    }
    gw_debug("client %s: %s (%llu bytes)", c->peer_ip, why, (unsigned long long)c->body_seen);
    gw_proxy_abort(c); /* the upstream saw part of a request: its connection cannot be reused */
    gw_respond_error_close(c, 408, "The request body was not received in time");
}

uint64_t gw_proxy_buffer_limit(const gw_conn *c)
{
    return c->body_want ? c->body_want : c->gen->cfg->body_buffer;
}

/* A request_body filter stopped the body. Its own answer is sent only while nothing of the request went
 * upstream; otherwise the upstream connection is cut and the client gets a 500 (or is cut when its response
 * has begun). Either way the client connection closes: the rest of its body is not read. */
static void body_refused(gw_conn *c, gw_result r)
{
    c->keep_alive = false;
    evtimer_del(c->timer);
    if (r == GW_RESPOND && !c->body_streaming) {
        gw_proxy_abort(c);
        gw_respond_own(c);
        return;
    }
    gw_proxy_fail(c, 500, "A filter failed to process the request body");
}

/* The request_body phase over n bytes at the front of `in`; -1 when a filter stopped the body (handled:
 * the connection may be gone). Only called when the generation has a request_body filter. */
static int body_filters(gw_conn *c, struct evbuffer *in, size_t n, bool last)
{
    gw_result r = gw_phase_body(c, GW_PH_REQUEST_BODY, in, n, c->body_seen, last);
    if (r == GW_CONTINUE) return 0;
    body_refused(c, r);
    return -1;
}

/* Returns -1 when a filter stopped the body at its end (handled), 0 otherwise. */
static int body_done(gw_conn *c)
{
    if ((c->gen->phases & (1u << GW_PH_REQUEST_BODY)) && body_filters(c, NULL, 0, true) != 0) return -1;
    c->body_complete = true;
    evtimer_del(c->timer);
    if (c->body_streaming && c->up && c->req->body == GW_BODY_CHUNKED)
        ADD_LIT(gw_io_output(c->up->bev), "0\r\n\r\n");
    if (c->body_streaming && c->up && c->state == GW_C_PROXY) gw_proxy_request_timer(c, c->up);
    if (c->for_endpoint) {
        c->state = GW_C_FILTER;
        gw_phase_start(c, GW_PH_ENDPOINT);
    } else if (c->state == GW_C_BODY) {
        c->state = GW_C_PROXY;
        gw_proxy_connect(c);
    }
    return 0;
}

/* Moves n payload bytes from the client to wherever the body goes now, after the request_body filters saw
 * them. -1: the body was refused (over the buffer limit, or by a filter), and answered. */
static int move_payload(gw_conn *c, struct evbuffer *in, size_t n)
{
    if (!c->body_streaming && (c->for_endpoint || c->body_want) &&
        evbuffer_get_length(c->body) + n > gw_proxy_buffer_limit(c)) {
        /* checked per piece: a chunked body can arrive (and end) within one read */
        gw_proxy_fail(c, 413, c->for_endpoint ? "The request body is larger than this endpoint accepts"
                                              : "The request body is larger than allowed");
        return -1;
    }
    if ((c->gen->phases & (1u << GW_PH_REQUEST_BODY)) && body_filters(c, in, n, false) != 0) return -1;
    if (c->body_streaming && c->up) {
        struct evbuffer *out = gw_io_output(c->up->bev);
        bool chunked = c->req->body == GW_BODY_CHUNKED;
        if (chunked) evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_remove_buffer(in, out, n);
        if (chunked) ADD_LIT(out, "\r\n");
    } else {
        evbuffer_remove_buffer(in, c->body, n);
    }
    c->body_seen += n;
    c->rate_bytes += n;
    return 0;
}

/* Returns -1 on malformed chunked framing, -2 past the body limit, -3 when a filter stopped the body
 * (handled), 0 otherwise. */
static int pump_chunked(gw_conn *c, struct evbuffer *in)
{
    uint64_t max_body = c->gen->cfg->max_body;
    for (int guard = 0; guard < 100000; guard++) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return 0;
        if (gw_chunked_in_data(&c->req_chunked)) {
            size_t n = avail < c->req_chunked.remaining ? avail : (size_t)c->req_chunked.remaining;
            if (max_body && c->body_seen + n > max_body) return -2; /* before a filter sees bytes past it */
            if (move_payload(c, in, n) != 0) return -3;
            gw_chunked_consumed(&c->req_chunked, n);
            continue;
        }
        size_t take = avail < 4096 ? avail : 4096, used = 0;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)take);
        int r = gw_chunked_feed(&c->req_chunked, p, take, &used);
        evbuffer_drain(in, used);
        if (r == GW_CHUNKED_ERROR) return -1;
        if (r == GW_CHUNKED_DONE) return body_done(c) == 0 ? 0 : -3;
        if (r == GW_CHUNKED_AGAIN && used == take && take == avail) return 0;
        if (r == GW_CHUNKED_AGAIN && used == 0) return 0;
    }
    return 0;
}

/* Moves what the client sent; false when the request ended or moved on (complete, failed). */
static bool pump_framing(gw_conn *c)
{
    struct evbuffer *in = gw_io_input(c->bev);
    if (c->req->body == GW_BODY_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
        if (n && move_payload(c, in, n) != 0) return false;
        c->body_left -= n;
        if (c->body_left == 0) return body_done(c) == 0 && !c->body_complete;
        return true;
    }
    int r = pump_chunked(c, in);
    if (r == -1) gw_proxy_fail(c, 400, "The chunked request body is malformed");
    else if (r == -2) gw_proxy_fail(c, 413, "The request body is larger than allowed");
    return r == 0 && !c->body_complete;
}

static void pump_body(gw_conn *c)
{
    const gw_config *cfg = c->gen->cfg;
    if (!pump_framing(c)) return;
    uint64_t now = gw_mono_ms();
    c->body_last_ms = now;
    bool may_stream = !c->body_want && !c->for_endpoint; /* else over the limit was refused in move_payload */
    if (!c->body_streaming && may_stream && evbuffer_get_length(c->body) > cfg->body_buffer) {
        c->body_streaming = true; /* too big to hold: contact the upstream and stream the rest */
        /* the bytes buffered so far count towards the first rate window, which began with the body */
        c->rate_start_ms = c->body_start_ms;
        c->rate_bytes = c->body_seen;
        c->state = GW_C_PROXY;
        arm_body_timer(c, now);
        gw_proxy_connect(c);
        return;
    }
    if (c->body_streaming && c->up && evbuffer_get_length(gw_io_output(c->up->bev)) > GW_HIGH_WATER) {
        /* The upstream is not taking the body: the client is not to blame while we stop reading it. */
        gw_io_read_enable(c->bev, false);
        c->read_paused = true;
        evtimer_del(c->timer);
        gw_proxy_request_timer(c, c->up);
        return;
    }
    arm_body_timer(c, now);
}

/* The streamed body flows again after a pause that was not the client's doing (upstream back-pressure,
 * the upstream_request phase): the rate window restarts and bytes that waited move on. */
void gw_proxy_body_continue(gw_conn *c)
{
    c->rate_start_ms = gw_mono_ms();
    c->rate_bytes = 0;
    gw_conn_resume_read(c);
    if (c->up && c->state == GW_C_PROXY) gw_proxy_request_timer(c, c->up);
    pump_body(c);
}

void gw_proxy_start(gw_conn *c)
{
    gw_http_head *rq = c->req;
    c->body_seen = 0;
    c->body_streaming = false;
    c->attempts = 0;
    if (c->body_complete) {
        c->state = GW_C_PROXY;
        gw_proxy_connect(c);
        return;
    }
    uint64_t now = gw_mono_ms();
    c->body_start_ms = c->body_last_ms = c->rate_start_ms = now;
    c->rate_bytes = 0;
    if (rq->body == GW_BODY_LENGTH) c->body_left = rq->content_length;
    else gw_chunked_init(&c->req_chunked);
    if (!c->body && !(c->body = evbuffer_new())) {
        gw_conn_free(c);
        return;
    }
    if (c->body_want && rq->body == GW_BODY_LENGTH && rq->content_length > c->body_want) {
        gw_proxy_fail(c, 413, "The request body is larger than allowed"); /* before a byte of it is read */
        return;
    }
    if (rq->expect_continue && rq->minor_version == 1) {
        ADD_LIT(gw_io_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
        c->sent_continue = true;
    }
    if (rq->body == GW_BODY_LENGTH && rq->content_length > gw_proxy_buffer_limit(c) && !c->for_endpoint) {
        c->body_streaming = true;
        c->state = GW_C_PROXY;
        gw_proxy_connect(c);
        /* failed and answered, a filter waits, or the whole body had arrived with the head */
        if (c->state != GW_C_PROXY || !c->up || c->body_complete) return;
    } else {
        c->state = GW_C_BODY;
    }
    arm_body_timer(c, now);
    if (evbuffer_get_length(gw_io_input(c->bev))) pump_body(c);
}

void gw_proxy_client_readable(gw_conn *c)
{
    if (c->state == GW_C_TUNNEL) {
        gw_proxy_tunnel_move(c, true);
        return;
    }
    if (!c->body_complete) pump_body(c);
    /* else: the next pipelined request waits in the input buffer until this response is done */
}
