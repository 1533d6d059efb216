/* http_call.c - host->http_call: a filter's outbound HTTP/1.1 call through the upstream client and its
 * per-worker keep-alive pools: a configured service (round-robin over healthy targets) or an absolute URL
 * (one pool per origin, worker and generation; host names resolved by evdns on the worker's loop). One
 * timer covers the whole call; the answer is parsed by the strict codec; a call still pending when its
 * request ends is closed and never called back. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "phases.h"
#include "proxy_internal.h"
#include "server.h"
#include "tls.h"
#include "util.h"

#define MAX_ORIGINS 64                /* URL origins pooled per worker and generation */
#define MAX_HEAD (64u * 1024u)        /* response head, as for proxied responses */
#define DEFAULT_MAX_BODY (1024u * 1024u)

typedef struct {
    gw_target target;
    gw_target_conf conf;
    gw_pool pool;
    unsigned busy; /* calls bound to this origin now: it is not reused for another one meanwhile */
    bool resolved;
} gw_origin;

struct gw_call_origins {
    gw_origin *v[MAX_ORIGINS];
    size_t n;
};

struct gw_call {
    gw_call *next; /* the request's pending calls */
    gw_req *r;
    gw_filter *f;
    gw_worker *w;
    gw_http_call_cb cb;
    void *arg;
    gw_pool *pool;
    gw_origin *origin; /* URL calls */
    gw_upconn *u;
    struct event *timer; /* the whole call; fired at once to report a failure found before any I/O */
    struct evdns_getaddrinfo_request *dns;
    char *out; /* the request bytes, kept for one replay on a stale pooled connection */
    size_t out_len;
    uint64_t max_body;
    int method_id, fail;
    bool head_done, retried, keep_alive;
    gw_body_kind kind;
    uint64_t left; /* GW_BODY_LENGTH: bytes still to come */
    gw_chunked ch;
    int status;
    char *head;       /* the response head's bytes; the header views point into it */
    gw_strv *fields;  /* (name, value) pairs */
    size_t nfields;
    struct evbuffer *body;
};

static void call_read(gw_io *io, void *arg);
static void call_event(gw_io *io, int what, void *arg);

static void call_free(gw_call *c)
{
    if (c->timer) event_free(c->timer);
    if (c->body) evbuffer_free(c->body);
    free(c->out);
    free(c->head);
    free(c->fields);
    free(c);
}

static void unlink_call(gw_call *c)
{
    for (gw_call **pp = &c->r->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

/* Ends the call: the connection goes back to the pool only when the exchange was complete and reusable;
 * then the filter's callback. The callback may end the request: nothing of c->r is touched after it. */
static void finish(gw_call *c, int status, bool reusable)
{
    unlink_call(c);
    evtimer_del(c->timer);
    if (c->u) gw_upstream_release(c->u, reusable);
    c->u = NULL;
    if (c->origin) c->origin->busy--;
    gw_http_response resp = {.status = c->status, .headers = c->fields, .nheaders = c->nfields / 2};
    if (status == GW_CALL_OK) {
        size_t n = evbuffer_get_length(c->body);
        resp.body = (gw_strv){n ? (const char *)evbuffer_pullup(c->body, -1) : "", n};
    } else {
        gw_debug("http_call %s: failed (%d)", c->pool ? c->pool->target->conf->url : "-", status);
    }
    c->r->cur = c->f;
    c->cb(c->arg, status, status == GW_CALL_OK ? &resp : NULL);
    call_free(c);
}

static void fail_later(gw_call *c, int status)
{
    c->fail = status;
    evtimer_del(c->timer);
    event_active(c->timer, EV_TIMEOUT, 1);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_call *c = arg;
    if (!c->fail) gw_warn("http_call %s: no complete answer in time", c->pool->target->conf->url);
    finish(c, c->fail ? c->fail : GW_CALL_TIMEOUT, false);
}

/* --- connection ------------------------------------------------------------------------------------ */

static void bind_conn(gw_call *c)
{
    gw_io_setcb(c->u->bev, call_read, NULL, call_event, c);
    gw_io_read_enable(c->u->bev, true);
}

static void send_request(gw_call *c, bool fresh)
{
    char *why = "out of memory";
    if (!(c->u = gw_upstream_acquire(c->w, c->pool, fresh, &why))) {
        gw_upstream_log_failure("http_call", c->pool->target->conf->url, why);
        fail_later(c, GW_CALL_CONNECT);
        return;
    }
    c->u->requests++;
    bind_conn(c);
    evbuffer_add(gw_io_output(c->u->bev), c->out, c->out_len);
}

static void call_event(gw_io *io, int what, void *arg)
{
    gw_call *c = arg;
    gw_upconn *u = c->u;
    if (what & GW_IO_CONNECTED) {
        u->connected = true;
        return;
    }
    if (!u->connected) { /* the next address, else give up */
        u->addr_idx++;
        if (gw_upstream_connect(c->w, u) == 0) {
            bind_conn(c);
            return;
        }
        gw_warn("http_call %s: cannot connect", c->pool->target->conf->url);
        finish(c, GW_CALL_CONNECT, false);
        return;
    }
    if (c->head_done && c->kind == GW_BODY_CLOSE && !(what & GW_IO_ERROR)) { /* the end of the body */
        evbuffer_add_buffer(c->body, gw_io_input(io));
        finish(c, evbuffer_get_length(c->body) > c->max_body ? GW_CALL_TOO_LARGE : GW_CALL_OK, false);
        return;
    }
    if (!u->got_bytes && u->reused && !c->retried) { /* closed by the upstream while pooled */
        c->retried = true;
        gw_upstream_release(u, false);
        c->u = NULL;
        send_request(c, true);
        return;
    }
    gw_warn("http_call %s: connection closed before a complete answer", c->pool->target->conf->url);
    finish(c, GW_CALL_CLOSED, false);
}

/* --- the response ---------------------------------------------------------------------------------- */

/* 1 = head parsed (interim 1xx answers skipped), 0 = more bytes needed, -1 = the call has ended. */
static int read_head(gw_call *c, struct evbuffer *in)
{
    gw_http_head *h = &c->w->scratch;
    gw_http_limits lim = {MAX_HEAD, MAX_HEAD, GW_HTTP_MAX_FIELDS_HARD};
    for (int guard = 0; guard < 16; guard++) {
        size_t len = evbuffer_get_length(in);
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) { /* a prefix that is already invalid fails now, not at the timeout */
            size_t win = len < MAX_HEAD ? len : MAX_HEAD;
            const char *pre = win ? (const char *)evbuffer_pullup(in, (ssize_t)win) : "";
            if (len > MAX_HEAD || (win && gw_http_parse_response(pre, win, &lim, c->method_id, h) < 0))
                goto invalid;
            return 0;
        }
        size_t hl = (size_t)end.pos + 4;
        if (hl > MAX_HEAD) goto invalid;
        char *buf = malloc(hl);
        if (!buf) goto invalid;
        evbuffer_remove(in, buf, hl);
        if (gw_http_parse_response(buf, hl, &lim, c->method_id, h) != (ssize_t)hl || h->status == 101) {
            free(buf);
            goto invalid;
        }
        if (h->status < 200) { /* 100 Continue and other interim answers */
            free(buf);
            continue;
        }
        c->fields = malloc((h->nfields ? h->nfields : 1) * 2 * sizeof *c->fields);
        if (!c->fields) {
            free(buf);
            goto invalid;
        }
        for (size_t i = 0; i < h->nfields; i++) {
            c->fields[2 * i] = (gw_strv){h->fields[i].name.p, h->fields[i].name.n};
            c->fields[2 * i + 1] = (gw_strv){h->fields[i].value.p, h->fields[i].value.n};
        }
        c->nfields = 2 * h->nfields;
        c->head = buf;
        c->status = h->status;
        c->kind = h->body;
        c->keep_alive = h->keep_alive;
        c->left = h->content_length;
        gw_chunked_init(&c->ch);
        c->head_done = true;
        if (c->kind == GW_BODY_LENGTH && c->left > c->max_body) {
            finish(c, GW_CALL_TOO_LARGE, false);
            return -1;
        }
        return 1;
    }
invalid:
    gw_warn("http_call %s: invalid response", c->pool->target->conf->url);
    finish(c, GW_CALL_INVALID, false);
    return -1;
}

/* Chunked body: payload moved into c->body, framing dropped. 1 = complete, 0 = more, -1 = malformed. */
static int read_chunked(gw_call *c, struct evbuffer *in)
{
    for (int guard = 0; guard < 100000; guard++) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return 0;
        if (gw_chunked_in_data(&c->ch)) {
            size_t n = avail < c->ch.remaining ? avail : (size_t)c->ch.remaining;
            evbuffer_remove_buffer(in, c->body, n);
            gw_chunked_consumed(&c->ch, n);
            if (evbuffer_get_length(c->body) > c->max_body) return 0; /* the caller checks the cap */
            continue;
        }
        size_t take = avail < 4096 ? avail : 4096, used = 0;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)take);
        int r = gw_chunked_feed(&c->ch, p, take, &used);
        evbuffer_drain(in, used);
        if (r == GW_CHUNKED_ERROR) return -1;
        if (r == GW_CHUNKED_DONE) return 1;
        if (r == GW_CHUNKED_AGAIN && (used == 0 || (used == take && take == avail))) return 0;
    }
    return -1;
}

static void call_read(gw_io *io, void *arg)
{
    gw_call *c = arg;
    struct evbuffer *in = gw_io_input(io);
    if (evbuffer_get_length(in)) c->u->got_bytes = true;
    if (!c->head_done && read_head(c, in) != 1) return;
    int done = 0;
    switch (c->kind) {
    case GW_BODY_NONE: done = 1; break;
    case GW_BODY_LENGTH: {
        size_t n = evbuffer_get_length(in);
        if (n > c->left) n = (size_t)c->left;
        evbuffer_remove_buffer(in, c->body, n);
        c->left -= n;
        done = c->left == 0;
        break;
    }
    case GW_BODY_CHUNKED: done = read_chunked(c, in); break;
    case GW_BODY_CLOSE: evbuffer_add_buffer(c->body, in); break;
    }
    if (evbuffer_get_length(c->body) > c->max_body) {
        gw_warn("http_call %s: response body over %llu bytes", c->pool->target->conf->url,
                (unsigned long long)c->max_body);
        finish(c, GW_CALL_TOO_LARGE, false);
    } else if (done < 0) {
        gw_warn("http_call %s: invalid chunked body", c->pool->target->conf->url);
        finish(c, GW_CALL_INVALID, false);
    } else if (done) {
        /* Reusable only when nothing followed the response: an upstream speaking out of turn is dropped. */
        finish(c, GW_CALL_OK, c->keep_alive && c->kind != GW_BODY_CLOSE && evbuffer_get_length(in) == 0);
    }
}

/* --- targets --------------------------------------------------------------------------------------- */

static gw_pool *service_pool(gw_req *r, const char *name)
{
    gw_gen *g = r->c->gen;
    gw_gen_worker *pw = &g->pw[r->c->w->id];
    for (size_t s = 0; s < g->nservices; s++) {
        const gw_service *svc = &g->services[s];
        if (strcmp(svc->conf->name, name) != 0 || !svc->ntargets || !pw->pools) continue;
        size_t n = svc->ntargets, start = pw->rr[s]++;
        for (size_t i = 0; i < n; i++) {
            size_t idx = (start + i) % n;
            if (atomic_load(&svc->targets[idx].health) != GW_HEALTH_UNHEALTHY) return &pw->pools[s][idx];
        }
        return &pw->pools[s][start % n]; /* all marked down: still try, as proxied requests do */
    }
    return NULL;
}

static SSL_CTX *url_ssl_ctx;
static pthread_once_t url_ssl_once = PTHREAD_ONCE_INIT;

/* https URLs verify against the system's CA store; one context for the process, made on first use. */
static void url_ssl_init(void)
{
    char *err = NULL;
    if (!(url_ssl_ctx = gw_tls_client_ctx(true, NULL, &err))) gw_error("http_call: no TLS context: %s", err);
    free(err);
}

static void origin_free(gw_origin *o)
{
    free(o->conf.url);
    free(o->conf.host);
    free(o->conf.authority);
    free(o);
}

static bool set_literal(gw_origin *o)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&o->target.addrs[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&o->target.addrs[0];
    if (inet_pton(AF_INET, o->conf.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(o->conf.port);
        o->target.addrlens[0] = sizeof *a4;
    } else if (inet_pton(AF_INET6, o->conf.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(o->conf.port);
        o->target.addrlens[0] = sizeof *a6;
    } else {
        return false;
    }
    o->target.naddrs = 1;
    return o->resolved = true;
}

/* The worker's pool for scheme://authority (found, made, or an idle one replaced); NULL when full. */
static gw_origin *origin_get(gw_req *r, bool https, gw_str auth)
{
    gw_gen_worker *pw = &r->c->gen->pw[r->c->w->id];
    if (!pw->origins && !(pw->origins = calloc(1, sizeof *pw->origins))) return NULL;
    struct gw_call_origins *t = pw->origins;
    gw_origin *spare = NULL;
    for (size_t i = 0; i < t->n; i++) {
        gw_origin *o = t->v[i];
        bool same = strlen(o->conf.authority) == auth.n && !memcmp(o->conf.authority, auth.p, auth.n);
        if (o->conf.https == https && same) return o;
        if (!o->busy && !spare) spare = o;
    }
    size_t slot = t->n;
    if (t->n == MAX_ORIGINS) {
        if (!spare) return NULL;
        for (slot = 0; t->v[slot] != spare; slot++) {
        }
        while (spare->pool.idle) { /* forget its idle connections */
            gw_upconn *u = spare->pool.idle;
            spare->pool.idle = u->next;
            spare->pool.nidle--;
            gw_upstream_release(u, false);
        }
        origin_free(spare);
    }
    gw_origin *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    const char *p = auth.p, *colon;
    size_t hl = auth.n;
    if (p[0] == '[') {
        hl = (size_t)((const char *)memchr(p, ']', auth.n) - p) + 1;
        colon = hl < auth.n ? p + hl : NULL;
        p++, hl -= 2;
    } else {
        colon = memchr(p, ':', auth.n);
        if (colon) hl = (size_t)(colon - p);
    }
    o->conf.https = https;
    o->conf.port = colon ? (uint16_t)atoi(colon + 1) : https ? 443 : 80;
    o->conf.host = strndup(p, hl);
    o->conf.authority = strndup(auth.p, auth.n);
    o->conf.url = gw_strdupf("%s://%.*s", https ? "https" : "http", (int)auth.n, auth.p);
    o->target.conf = &o->conf;
    o->pool = (gw_pool){.w = r->c->w, .gen = r->c->gen, .target = &o->target};
    if (https) {
        pthread_once(&url_ssl_once, url_ssl_init);
        o->target.ssl_ctx = url_ssl_ctx;
    }
    if (!o->conf.host || !o->conf.authority || !o->conf.url || (https && !url_ssl_ctx)) {
        origin_free(o);
        return NULL;
    }
    set_literal(o);
    t->v[slot] = o;
    if (slot == t->n) t->n++;
    return o;
}

static void dns_done(int result, struct evutil_addrinfo *ai, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) { /* the call is gone */
        if (ai) evutil_freeaddrinfo(ai);
        return;
    }
    gw_call *c = arg;
    c->dns = NULL;
    gw_origin *o = c->origin;
    if (result == 0 && !o->resolved) {
        for (struct evutil_addrinfo *a = ai; a && o->target.naddrs < 4; a = a->ai_next) {
            if (a->ai_addrlen > sizeof o->target.addrs[0]) continue;
            memcpy(&o->target.addrs[o->target.naddrs], a->ai_addr, a->ai_addrlen);
            o->target.addrlens[o->target.naddrs++] = (socklen_t)a->ai_addrlen;
        }
        o->resolved = o->target.naddrs > 0;
    }
    if (ai) evutil_freeaddrinfo(ai);
    if (!o->resolved) {
        gw_warn("http_call %s: cannot resolve %s: %s", o->conf.url, o->conf.host,
                result ? evutil_gai_strerror(result) : "no address");
        fail_later(c, GW_CALL_CONNECT); /* this may run inside evdns_getaddrinfo, i.e. inside the call */
        return;
    }
    send_request(c, false);
}

static void resolve(gw_call *c)
{
    gw_worker *w = c->w;
    if (!w->dns && !(w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE))) {
        fail_later(c, GW_CALL_CONNECT);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", c->origin->conf.port);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    /* May answer at once (hosts file): dns_done then runs inside this call, and reports later anyway. */
    c->dns = evdns_getaddrinfo(w->dns, c->origin->conf.host, port, &hints, dns_done, c);
}

/* --- the call -------------------------------------------------------------------------------------- */

static bool token(const char *s)
{
    if (!s || !*s) return false;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *s)) return false;
    return true;
}

static bool target_ok(const char *p, size_t n)
{
    if (!n || p[0] != '/') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 127) return false;
    return true;
}

/* The request bytes: Host and framing are ours, hop-by-hop fields are dropped. */
static int build(gw_call *c, const gw_http_call *call, const char *method, gw_str path)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) return -1;
    const char *auth = c->pool->target->conf->authority;
    evbuffer_add_printf(b, "%s %.*s HTTP/1.1\r\nHost: %s\r\n", method, (int)path.n, path.p, auth);
    for (size_t i = 0; i < call->nheaders; i++) {
        gw_strv n = call->headers[2 * i], v = call->headers[2 * i + 1];
        char name[256];
        if (!n.p || n.n == 0 || n.n >= sizeof name || (!v.p && v.n)) goto bad;
        memcpy(name, n.p, n.n);
        name[n.n] = '\0';
        if (!token(name) || memchr(v.p ? v.p : "", '\r', v.n) || memchr(v.p ? v.p : "", '\n', v.n) ||
            memchr(v.p ? v.p : "", '\0', v.n))
            goto bad;
        gw_str gn = {n.p, n.n};
        if (gw_str_eq_ci(gn, "Host") || gw_str_eq_ci(gn, "Content-Length") || gw_http_is_hop_by_hop(gn))
            continue;
        evbuffer_add_printf(b, "%s: %.*s\r\n", name, (int)v.n, v.p ? v.p : "");
    }
    int m = c->method_id;
    if (call->body_len || m == GW_METHOD_POST || m == GW_METHOD_PUT || m == GW_METHOD_PATCH)
        evbuffer_add_printf(b, "Content-Length: %zu\r\n", call->body_len);
    evbuffer_add(b, "\r\n", 2);
    if (call->body_len) evbuffer_add(b, call->body, call->body_len);
    c->out_len = evbuffer_get_length(b);
    if ((c->out = malloc(c->out_len))) evbuffer_remove(b, c->out, c->out_len);
    evbuffer_free(b);
    return c->out ? 0 : -1;
bad:
    evbuffer_free(b);
    return -1;
}

/* Which pool, and which path: the service's, or the URL's origin and its path. */
static int choose(gw_call *c, const gw_http_call *call, gw_str *path)
{
    if (call->service) {
        if (!(c->pool = service_pool(c->r, call->service))) return -1;
        *path = (gw_str){"/", 1};
        return 0;
    }
    gw_str auth, p;
    if (!call->url || gw_http_absolute_form((gw_str){call->url, strlen(call->url)}, &auth, &p) != 0)
        return -1;
    const char *hash = memchr(p.p, '#', p.n);
    if (hash) p.n = (size_t)(hash - p.p);
    if (!p.n) p = (gw_str){"/", 1};
    if (!(c->origin = origin_get(c->r, call->url[4] == 's' || call->url[4] == 'S', auth))) return -1;
    c->origin->busy++;
    c->pool = &c->origin->pool;
    *path = p;
    return 0;
}

static int h_http_call(gw_req *r, const gw_http_call *call, gw_http_call_cb cb, void *arg)
{
    if (!r || !call || !cb || !r->c->gen || r->phase == GW_PH_LOG || (!call->service && !call->url) ||
        (call->body_len && !call->body))
        return -1;
    const char *method = call->method ? call->method : "GET";
    if (!token(method)) return -1;
    gw_call *c = calloc(1, sizeof *c);
    if (!c) return -1;
    *c = (gw_call){.r = r, .f = r->cur, .w = r->c->w, .cb = cb, .arg = arg,
                   .max_body = call->max_body ? call->max_body : DEFAULT_MAX_BODY,
                   .method_id = gw_http_method_id((gw_str){method, strlen(method)})};
    gw_str path;
    c->timer = evtimer_new(c->w->base, on_timer, c);
    c->body = evbuffer_new();
    if (!c->timer || !c->body || choose(c, call, &path) != 0) goto fail;
    if (call->path) path = (gw_str){call->path, strlen(call->path)};
    if (!target_ok(path.p, path.n) || build(c, call, method, path) != 0) goto fail;
    uint64_t ms = call->timeout_ms ? call->timeout_ms : r->c->gen->cfg->upstream_response_ms;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
    c->next = r->calls;
    r->calls = c;
    if (c->origin && !c->origin->resolved) resolve(c);
    else send_request(c, false);
    return 0;
fail:
    if (c->origin) c->origin->busy--;
    call_free(c);
    return -1;
}

void gw_http_call_cancel_all(gw_req *r)
{
    while (r->calls) {
        gw_call *c = r->calls;
        r->calls = c->next;
        if (c->dns) evdns_getaddrinfo_cancel(c->dns); /* its callback comes later with EAI_CANCEL */
        if (c->u) gw_upstream_release(c->u, false);
        if (c->origin) c->origin->busy--;
        call_free(c);
    }
}

void gw_http_call_pools_idle_free(gw_worker *w, gw_gen *g)
{
    struct gw_call_origins *t = g->pw[w->id].origins;
    for (size_t i = 0; t && i < t->n; i++)
        while (t->v[i]->pool.idle) {
            gw_upconn *u = t->v[i]->pool.idle;
            t->v[i]->pool.idle = u->next;
            t->v[i]->pool.nidle--;
            gw_upstream_release(u, false);
        }
}

void gw_http_call_origins_free(gw_worker *w, gw_gen *g)
{
    struct gw_call_origins *t = g->pw[w->id].origins;
    if (!t) return;
    gw_http_call_pools_idle_free(w, g);
    for (size_t i = 0; i < t->n; i++) origin_free(t->v[i]);
    free(t);
    g->pw[w->id].origins = NULL;
}

void gw_host_http_call_fill(gw_host *h)
{
    h->http_call = h_http_call;
}
