/* conn.c - the client connection: reads and validates request heads under the limits and deadlines,
 * dispatches to built-in endpoints or the proxy, keeps the connection alive between requests, answers
 * pipelined requests in order, and closes gracefully (lingering) after an error response. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include "io.h"
#include <event2/event.h>

#include "conn.h"
#include "log.h"
#include "phases.h"
#include "proxy.h"
#include "server.h"
#include "util.h"

#define LINGER_MS 2000
#define LINGER_BYTES (1u << 20)
#define IDLE_KEEP_BYTES                                                                                      \
    4096 /* head copies of this size are pooled; larger ones are freed after their request */

static void arm_timer(gw_conn *c, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
}

static void read_head(gw_conn *c);

/* A head refused before it became a request: no filter sees it, so the core counts it. */
static void refuse_head(gw_conn *c, int status, const char *message)
{
    gw_metric *m = c->w->srv->m_malformed;
    if (m) {
        char st[12];
        snprintf(st, sizeof st, "%d", status);
        const char *const v[] = {st};
        gw_metric_add(m, c->w->id, v, 1);
    }
    gw_respond_error_close(c, status, message);
}

/* The configuration in force for this connection: the request's generation, else the worker's. */
static const gw_config *cfg_of(const gw_conn *c)
{
    return c->gen ? c->gen->cfg : c->w->gen->cfg;
}

/* Ends the request's filter context and unpins its generation. */
static void end_request(gw_conn *c)
{
    if (!c->gen) return;
    gw_phase_log(c);
    gw_req_end(&c->rq);
    gw_worker_request_end(c->w, c->gen);
    c->gen = NULL;
}

static void format_peer(gw_conn *c, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer_ip, sizeof c->peer_ip);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], c->peer_ip, sizeof c->peer_ip);
        else
            inet_ntop(AF_INET6, a, c->peer_ip, sizeof c->peer_ip);
    } else {
        strcpy(c->peer_ip, "unknown");
    }
}

/* The per-request buffers go back to the worker's pools (bufpool.h) for the next request. */
static void give_back(gw_conn *c)
{
    gw_worker *w = c->w;
    if (c->head_cap == IDLE_KEEP_BYTES)
        gw_bufpool_put(&w->pool_copy, c->head_buf, IDLE_KEEP_BYTES);
    else
        free(c->head_buf);
    c->head_buf = NULL;
    c->head_cap = 0;
    gw_bufpool_put(&w->pool_head, c->req, sizeof *c->req); /* req_valid is false between requests */
    c->req = NULL;
    gw_bufpool_put(&w->pool_path, c->path_buf, c->path_cap);
    c->path_buf = NULL;
    c->path_cap = 0;
}

void gw_conn_free(gw_conn *c)
{
    gw_worker *w = c->w;
    gw_proxy_abort(c);
    end_request(c);
    gw_req_free(&c->rq);
    if (c->bev) gw_io_free(c->bev);
    if (c->timer) event_free(c->timer);
    if (c->body) evbuffer_free(c->body);
    give_back(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    struct gw_client_slot *client = c->client;
    free(c);
    gw_worker_conn_closed(w, client);
}

/* After the last response byte is flushed: stop sending, keep reading (and discarding) for a while so
 * that unread request bytes do not turn our close into a reset that destroys the response in flight. */
static void start_linger(gw_conn *c)
{
    if (c->tls || c->peer_eof) {
        gw_conn_free(c);
        return;
    }
    shutdown(gw_io_fd(c->bev), SHUT_WR);
    c->body_seen = 0;
    gw_io_read_enable(c->bev, true);
    arm_timer(c, LINGER_MS);
}

static void on_write(gw_io *bev, void *arg)
{
    gw_conn *c = arg;
    size_t out = evbuffer_get_length(gw_io_output(bev));
    if (c->state == GW_C_CLOSING) {
        if (out == 0 && !c->lingering) {
            c->lingering = true;
            start_linger(c);
        } else if (out) {
            arm_timer(c, cfg_of(c)->send_idle_ms); /* progress: the client is still reading */
        }
        return;
    }
    if (c->state == GW_C_IDLE && c->wait_drain) {
        c->wait_drain = false;
        arm_timer(c, 0);
        return;
    }
    gw_proxy_client_drained(c);
}

static void on_read(gw_io *bev, void *arg)
{
    gw_conn *c = arg;
    switch (c->state) {
    case GW_C_IDLE:
        c->state = GW_C_HEAD;
        arm_timer(c, cfg_of(c)->request_head_ms);
        /* fall through */
    case GW_C_HEAD:
        read_head(c);
        break;
    case GW_C_BODY:
    case GW_C_PROXY:
    case GW_C_TUNNEL:
        gw_proxy_client_readable(c);
        break;
    case GW_C_FILTER:
        break; /* bytes wait in the input (bounded by its watermark) until the filter resumes */
    case GW_C_CLOSING: {
        struct evbuffer *in = gw_io_input(bev);
        c->body_seen += evbuffer_get_length(in);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (c->body_seen > LINGER_BYTES) gw_conn_free(c);
        break;
    }
    }
}

static void on_event(gw_io *bev, int what, void *arg)
{
    gw_conn *c = arg;
    if (what & GW_IO_CONNECTED) return;
    if ((what & GW_IO_EOF) && !(what & GW_IO_ERROR) && (c->state == GW_C_PROXY || c->state == GW_C_FILTER) &&
        c->body_complete && c->response_started) {
        /* EOF once the response has begun: send the rest, then close (a client that is really gone
         * makes the next write fail). */
        c->peer_eof = true;
        c->keep_alive = false;
        return;
    }
    /* EOF before any of the response went out (waiting for a filter, the upstream or a retry's backoff)
     * ends the request, as nginx's client abort does: a half-close cannot be told from a client that
     * left, and an answer nobody reads would still hold an upstream connection, a breaker's probe slot
     * or a retry. */
    if ((what & GW_IO_EOF) && !(what & GW_IO_ERROR) && c->state == GW_C_TUNNEL && c->up && !c->peer_eof) {
        /* Half-close: pass it on once the upstream got everything, keep the other direction open. */
        gw_proxy_client_readable(c);
        c->peer_eof = true;
        gw_proxy_tunnel_client_eof(c);
        arm_timer(c, cfg_of(c)->upstream_idle_ms); /* the upstream has that long to finish */
        return;
    }
    gw_conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_conn *c = arg;
    const gw_config *cfg = cfg_of(c);
    switch (c->state) {
    case GW_C_IDLE:
        if (c->wait_drain) {
            gw_conn_free(c);
        } else if (c->pending_next) {
            c->pending_next = false;
            c->state = GW_C_HEAD;
            arm_timer(c, cfg->request_head_ms);
            read_head(c);
        } else {
            gw_conn_free(c); /* keep-alive idle */
        }
        break;
    case GW_C_HEAD:
        if (!c->got_bytes) {
            gw_conn_free(c);
        } else {
            gw_debug("client %s: request head not complete within %llu ms", c->peer_ip,
                     (unsigned long long)cfg->request_head_ms);
            gw_respond_error_close(c, 408, "The request head was not received in time");
        }
        break;
    case GW_C_BODY:
    case GW_C_PROXY:
        if (c->retry_pending) { /* a filter asked for another attempt after a delay */
            c->retry_pending = false;
            gw_proxy_connect(c);
        } else {
            gw_proxy_timer(c); /* the body's limits, or a client that takes none of the response */
        }
        break;
    case GW_C_TUNNEL:
    case GW_C_CLOSING:
    case GW_C_FILTER:
        gw_conn_free(c);
        break;
    }
}

void gw_conn_accept(gw_worker *w, int fd, struct sockaddr *sa, int salen, size_t listener,
                    struct gw_client_slot *client)
{
    gw_server *srv = w->srv;
    gw_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        gw_worker_conn_closed(w, client);
        return;
    }
    c->w = w;
    c->rq.c = c; /* the request's memory comes from this worker's pools */
    c->listener = listener;
    c->client = client;
    format_peer(c, sa);
    SSL_CTX *ctx = srv->listener_ssl_ctx ? srv->listener_ssl_ctx[listener] : NULL;
    SSL *ssl = NULL;
    if (ctx) {
        c->tls = true;
        if (!(ssl = SSL_new(ctx))) {
            close(fd);
            free(c);
            gw_worker_conn_closed(w, client);
            return;
        }
    }
    c->bev = gw_io_accepted(w->base, fd, ssl); /* owns fd (and ssl) from here, even on failure */
    c->timer = evtimer_new(w->base, on_timer, c);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    if (!c->bev || !c->timer) {
        gw_conn_free(c);
        return;
    }
    gw_io_setcb(c->bev, on_read, on_write, on_event, c);
    gw_io_set_read_high(c->bev, GW_READ_HIGH_WATER);
    gw_io_set_write_low(c->bev, GW_HIGH_WATER / 2);
    c->state = GW_C_HEAD;
    arm_timer(c, w->gen->cfg->request_head_ms);
}

void gw_conn_drain(gw_conn *c)
{
    c->keep_alive = false;
    if (c->state == GW_C_IDLE || (c->state == GW_C_HEAD && !c->got_bytes)) gw_conn_free(c);
}

void gw_conn_resume_read(gw_conn *c)
{
    if (c->read_paused) {
        c->read_paused = false;
        gw_io_read_enable(c->bev, true);
    }
}

/* The response is fully queued. Either close after flushing, or get ready for the next request. */
void gw_conn_request_done(gw_conn *c)
{
    end_request(c);
    c->for_endpoint = false;
    c->resp_own = false;
    c->builtin = 0;
    c->refuse = 0;
    c->up_url = NULL;
    if (!c->keep_alive || !c->body_complete || c->w->draining) {
        c->state = GW_C_CLOSING;
        c->pending_next = false;
        gw_io_read_enable(c->bev, false);
        arm_timer(c, cfg_of(c)->send_idle_ms); /* a client that never takes the rest is dropped */
        if (evbuffer_get_length(gw_io_output(c->bev)) == 0) on_write(c->bev, c);
        return;
    }
    c->state = GW_C_IDLE;
    c->route = NULL;
    c->response_started = false;
    c->got_bytes = false;
    c->req_valid = false;
    c->sent_continue = false;
    c->attempts = 0;
    c->up_status = 0;
    c->status = 0;
    if (c->body) evbuffer_drain(c->body, evbuffer_get_length(c->body));
    gw_conn_resume_read(c);
    if (evbuffer_get_length(gw_io_input(c->bev)) > 0) {
        /* Pipelined: handle it from the loop, not recursively, and only once the client reads what it
         * was sent: a client that only writes must not make us queue responses without end. */
        c->pending_next = true;
        if (evbuffer_get_length(gw_io_output(c->bev)) > GW_HIGH_WATER) {
            c->wait_drain = true;
            arm_timer(c, cfg_of(c)->keepalive_idle_ms); /* a client that never reads is dropped */
        } else {
            arm_timer(c, 0);
        }
    } else {
        /* nothing waits: the request's buffers (its arena's first chunk too) go back to the worker's
         * pools, so an idle keep-alive connection holds only its long-lived parts */
        give_back(c);
        gw_req_free(&c->rq);
        arm_timer(c, cfg_of(c)->keepalive_idle_ms);
    }
}

/* Absolute-form ("http://host/path"): its authority is the request's host (RFC 9112 3.2.2: the Host
 * field is ignored then), for routing and for everything forwarded. "*" and authority-form are not for us. */
static int request_path(gw_conn *c)
{
    gw_str t = c->req->target;
    if (t.n && t.p[0] != '/') {
        if (c->req->method_id == GW_METHOD_CONNECT) return 501;
        gw_str authority;
        int st = gw_http_absolute_form(c->req->target, &authority, &t);
        if (st) return st;
        c->req->host = authority;
    }
    size_t cap = cfg_of(c)->max_request_line + 1;
    if (c->path_cap != cap) {
        gw_bufpool_put(&c->w->pool_path, c->path_buf, c->path_cap);
        c->path_cap = 0;
        if (!(c->path_buf = gw_bufpool_get(&c->w->pool_path, cap))) return 500;
        c->path_cap = cap;
    }
    size_t out_len, path_len;
    int st = gw_path_normalize(t.p, t.n, c->path_buf, c->path_cap, &out_len, &path_len);
    if (st) return st;
    c->path_len = path_len;
    c->path_total = out_len;
    return 0;
}

/* A request nothing serves: 404, or 405 with Allow. Answered after the request phase, so the filters see
 * it first, as any other request: adminauth answers 401 for every path under its prefix whether or not
 * something is served there (no mapping the admin API without credentials), CORS and rate limits apply,
 * and the access log and metrics record it (route empty). Envoy's filter chain likewise runs before its
 * router says 404. */
static void answer_refused(gw_conn *c)
{
    if (c->refuse == 405) {
        char allow[160];
        gw_http_allow_line(c->refuse_allow, allow, sizeof allow);
        gw_respond_error_hdr(c, 405,
                             c->route ? "The method is not allowed on this route"
                                      : "The method is not allowed on this endpoint",
                             allow);
    } else {
        gw_respond_error(c, 404, "No route matches the request path");
    }
}

/* What serves the request: a built-in endpoint, a filter's endpoint, a route, or nothing (c->refuse). */
static bool dispatch_target(gw_conn *c)
{
    const gw_gen *g = c->gen;
    const char *p = c->path_buf;
    size_t n = c->path_len;
    c->builtin = (n == 7 && !memcmp(p, "/health", 7))              ? 1
                 : (n == 5 && !memcmp(p, "/info", 5))              ? 2
                 : (n == 16 && !memcmp(p, "/services/health", 16)) ? 3
                                                                   : 0;
    if (c->builtin) return true;
    bool known = false;
    if (g->nendpoints && (c->rq.endpoint = gw_gen_endpoint(g, c->req->method_id, p, n, &known))) return true;
    if (known) {
        c->refuse = 405;
        c->refuse_allow = gw_gen_endpoint_methods(g, p, n);
        return true;
    }
    c->route = gw_router_match(g->router, p, n);
    if (!c->route) {
        c->refuse = 404;
    } else if (c->route->methods && !(c->route->methods & (1u << c->req->method_id))) {
        c->refuse = 405;
        c->refuse_allow = c->route->methods;
    }
    return true;
}

static void handle_request(gw_conn *c)
{
    gw_http_head *rq = c->req;
    evtimer_del(c->timer);
    c->start_us = gw_mono_us();
    c->gen = c->w->gen;
    c->gen->pw[c->w->id].inflight++;
    c->req_valid = true;
    c->keep_alive = rq->keep_alive && !c->w->draining;
    c->body_complete = rq->body == GW_BODY_NONE || (rq->body == GW_BODY_LENGTH && rq->content_length == 0);
    gw_conn_set_request_id(c, c->gen->cfg);
    if (gw_phase_request_init(c) != 0) {
        gw_respond_error_close(c, 500, "Out of memory");
        return;
    }
    int st = request_path(c);
    if (st) {
        gw_respond_error_close(c, st,
                               st == 414   ? "The request target is too long"
                               : st == 501 ? "CONNECT is not supported"
                                           : "The request target is not valid");
        return;
    }
    const gw_config *cfg = c->gen->cfg;
    if (rq->body == GW_BODY_LENGTH && cfg->max_body && rq->content_length > cfg->max_body) {
        gw_respond_error_close(c, 413, "The request body is larger than allowed");
        return;
    }
    if (!dispatch_target(c)) return;
    if (gw_phase_present(c, GW_PH_REQUEST)) {
        c->state = GW_C_FILTER;
        gw_phase_start(c, GW_PH_REQUEST);
    } else {
        gw_after_request_phase(c, GW_CONTINUE);
    }
}

void gw_after_request_phase(gw_conn *c, gw_result r)
{
    if (r == GW_RESPOND && c->rq.own_status) {
        gw_respond_own(c);
        return;
    }
    if (r != GW_CONTINUE) {
        gw_respond_error(c, 500, "A filter failed to process the request");
        return;
    }
    if (c->refuse) {
        answer_refused(c);
    } else if (c->builtin) {
        gw_builtin_handle(c);
    } else if (c->rq.endpoint) {
        if (c->body_complete) {
            c->state = GW_C_FILTER;
            gw_phase_start(c, GW_PH_ENDPOINT);
        } else if (c->req->body == GW_BODY_LENGTH && c->req->content_length > gw_proxy_buffer_limit(c)) {
            gw_respond_error_close(c, 413, "The request body is larger than this endpoint accepts");
        } else {
            c->for_endpoint = true; /* read the body, then run the handler */
            gw_proxy_start(c);
        }
    } else {
        gw_proxy_start(c);
    }
}

void gw_after_endpoint(gw_conn *c, gw_result r)
{
    if (r == GW_RESPOND && c->rq.own_status)
        gw_respond_own(c);
    else
        gw_respond_error(c, 500, r == GW_CONTINUE ? "The endpoint did not answer" : "The endpoint failed");
}

static int grow_head_buf(gw_conn *c, size_t need)
{
    if (c->head_cap >= need) return 0;
    if (!c->head_buf && need <= IDLE_KEEP_BYTES) { /* the usual size, from the pool */
        if (!(c->head_buf = gw_bufpool_get(&c->w->pool_copy, IDLE_KEEP_BYTES))) return -1;
        c->head_cap = IDLE_KEEP_BYTES;
        return 0;
    }
    size_t cap = c->head_cap ? c->head_cap : IDLE_KEEP_BYTES;
    while (cap < need)
        cap *= 2;
    char *p = realloc(c->head_buf, cap);
    if (!p) return -1;
    c->head_buf = p;
    c->head_cap = cap;
    return 0;
}

static const char *find_terminator(const char *p, size_t len, size_t from)
{
    size_t start = from > 3 ? from - 3 : 0;
    if (len < 4 || start > len - 4) return NULL;
    return memmem(p + start, len - start, "\r\n\r\n", 4);
}

/* Waits for the whole head (or a limit) and parses it once. Prefixes are also validated, with the
 * interval doubling each time, so garbage is refused early at linear total cost. */
static void read_head(gw_conn *c)
{
    const gw_config *cfg = cfg_of(c);
    struct evbuffer *in = gw_io_input(c->bev);
    gw_http_limits lim = {cfg->max_request_line, cfg->max_header_block, cfg->max_header_fields};
    /* Empty lines before a request line are tolerated (RFC 9112 2.2); they would confuse the search
     * for the end of the head, so they go first. */
    for (int i = 0; i < 4 && c->scan_from == 0 && evbuffer_get_length(in) >= 2; i++) {
        const char *p2 = (const char *)evbuffer_pullup(in, 2);
        if (p2[0] != '\r' || p2[1] != '\n') break;
        evbuffer_drain(in, 2);
        c->got_bytes = true;
    }
    size_t len = evbuffer_get_length(in);
    if (len == 0) return;
    c->got_bytes = true;
    if (!c->req && !(c->req = gw_bufpool_get(&c->w->pool_head, sizeof *c->req))) {
        gw_conn_free(c);
        return;
    }
    size_t window = len < cfg->max_header_block ? len : cfg->max_header_block;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)window);
    const char *end = find_terminator(p, window, c->scan_from);
    if (!end) {
        c->scan_from = window;
        if (window >= cfg->max_header_block || window >= 2 * c->parsed_upto) {
            ssize_t r = gw_http_parse_request(p, window, &lim, c->req);
            if (r < 0) {
                refuse_head(c, (int)-r, "The request head is malformed or too large");
                return;
            }
            if (window >= cfg->max_header_block) {
                refuse_head(c, 431, "The request header fields are too large");
                return;
            }
            c->parsed_upto = window;
        }
        return;
    }
    size_t head_len = (size_t)(end - p) + 4;
    c->scan_from = 0;
    c->parsed_upto = 0;
    if (grow_head_buf(c, head_len) != 0) {
        gw_conn_free(c);
        return;
    }
    memcpy(c->head_buf, p, head_len);
    evbuffer_drain(in, head_len);
    ssize_t r = gw_http_parse_request(c->head_buf, head_len, &lim, c->req);
    if (r <= 0 || (size_t)r != head_len) {
        refuse_head(c, r < 0 ? (int)-r : 400, "The request head is malformed");
        return;
    }
    handle_request(c);
}
