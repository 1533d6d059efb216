/* host.c - the host API table (gw/filter.h) as the gateway implements it: request accessors, header views,
 * answers, per-request memory, timers, cleanups, resume and endpoint registration. Every request-bound
 * call runs on the worker that owns the request. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf_api.h"
#include "conn.h"
#include "log.h"
#include "phases.h"
#include "proxy.h"
#include "server.h"
#include "shared.h"
#include "util.h"

#define CHUNK 4096

struct gw_timer_rec {
    gw_timer_rec *next;
    struct event *ev;
    gw_req *req;
    gw_filter *f;
    void (*cb)(gw_req *req, void *arg);
    void *arg;
};

struct gw_cleanup_rec {
    gw_cleanup_rec *next;
    void (*cb)(void *arg);
    void *arg;
};

static gw_conn *C(const gw_req *r)
{
    return r->c;
}

static gw_strv sv(const char *p, size_t n)
{
    return (gw_strv){p, n};
}

/* --- memory ----------------------------------------------------------------------------------------- */

/* Bump allocation from the current chunk; the connection's first chunk is kept for its next request,
 * later chunks (and big blocks) go on a list freed when the request ends. */
void *gw_req_alloc(gw_req *r, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (r->arena && r->arena_used + n <= r->arena_cap) {
        void *p = r->arena + r->arena_used;
        r->arena_used += n;
        return p;
    }
    if (!r->first && n <= CHUNK / 2) {
        if (!(r->first = gw_bufpool_get(&r->c->w->pool_chunk, CHUNK))) return NULL;
        r->arena = r->first;
        r->arena_cap = CHUNK;
        r->arena_used = n;
        return r->arena;
    }
    size_t cap = n > CHUNK ? n : CHUNK;
    void **blk = malloc(16 + cap);
    if (!blk) return NULL;
    *blk = r->chunks;
    r->chunks = blk;
    char *mem = (char *)blk + 16;
    if (n <= CHUNK / 2) { /* the bump pointer moves on to the new chunk */
        r->arena = mem;
        r->arena_cap = cap;
        r->arena_used = n;
    }
    return mem;
}

static void *h_alloc(gw_req *r, size_t n)
{
    return gw_req_alloc(r, n);
}

static char *dup_mem(gw_req *r, const char *p, size_t n)
{
    char *d = gw_req_alloc(r, n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* --- request end ------------------------------------------------------------------------------------ */

void gw_req_end(gw_req *r)
{
    gw_host_store_cancel_all(r);
    gw_http_call_cancel_all(r);
    /* Cleanups first: they disarm async work and may still use the request's timers and memory. */
    while (r->cleanups) {
        gw_cleanup_rec *k = r->cleanups;
        r->cleanups = k->next;
        k->cb(k->arg);
    }
    while (r->timers) {
        gw_timer_rec *t = r->timers;
        r->timers = t->next;
        event_free(t->ev);
        free(t);
    }
    while (r->chunks) {
        void **blk = r->chunks;
        r->chunks = *blk;
        free(blk);
    }
    char *first = r->first; /* stays with the connection for its next request */
    gw_conn *c = r->c;
    memset(r, 0, sizeof *r);
    r->c = c;
    r->first = first;
    r->arena = first;
    r->arena_cap = first ? CHUNK : 0;
}

void gw_req_free(gw_req *r)
{
    gw_req_end(r);
    gw_bufpool_put(&r->c->w->pool_chunk, r->first, CHUNK);
    r->first = r->arena = NULL;
}

/* --- logging ---------------------------------------------------------------------------------------- */

static void h_log(gw_filter *self, const gw_req *req, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void h_log(gw_filter *self, const gw_req *req, int level, const char *fmt, ...)
{
    if (level < gw_log_threshold) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_log_filter(level, self ? self->name : "?", req ? C(req)->request_id : NULL, msg);
}

/* --- request accessors ------------------------------------------------------------------------------ */

static gw_strv h_method(const gw_req *r)
{
    return sv(C(r)->req->method.p, C(r)->req->method.n);
}

static gw_strv h_path(const gw_req *r)
{
    return sv(C(r)->path_buf, C(r)->path_len);
}

static gw_strv h_query(const gw_req *r)
{
    const gw_conn *c = C(r);
    size_t q = c->path_total - c->path_len;
    return q > 1 ? sv(c->path_buf + c->path_len + 1, q - 1) : sv("", 0);
}

static gw_strv h_route(const gw_req *r)
{
    const gw_conn *c = C(r);
    if (r->endpoint) return sv(r->endpoint->path, r->endpoint->path_len);
    if (c->route) return sv(c->route->name, strlen(c->route->name));
    if (c->builtin) return sv(c->path_buf, c->path_len); /* built-in endpoints are their own route */
    return sv("", 0); /* matched nothing: never the raw path (it would make labels unbounded) */
}

static gw_strv h_service(const gw_req *r)
{
    const gw_conn *c = C(r);
    if (!c->route) return sv("", 0);
    const char *n = c->gen->services[c->route->service].conf->name;
    return sv(n, strlen(n));
}

static gw_strv h_client_ip(const gw_req *r)
{
    return sv(C(r)->peer_ip, strlen(C(r)->peer_ip));
}

static gw_strv h_request_id(const gw_req *r)
{
    return sv(C(r)->request_id, strlen(C(r)->request_id));
}

static unsigned h_worker(const gw_req *r)
{
    return C(r)->w->id;
}

static int h_status(const gw_req *r)
{
    return r->own_status ? r->own_status : C(r)->status;
}

static uint64_t h_bytes_in(const gw_req *r)
{
    return C(r)->body_seen;
}

static uint64_t h_bytes_out(const gw_req *r)
{
    return r->bytes_out;
}

static unsigned h_attempts(const gw_req *r)
{
    return C(r)->attempts;
}

static const char *h_attempt_error(const gw_req *r)
{
    return r->attempt_error;
}

static gw_strv h_upstream(const gw_req *r)
{
    const gw_conn *c = C(r);
    if (!c->up_url) return sv("", 0);
    return sv(c->up_url, strlen(c->up_url));
}

/* --- answers ---------------------------------------------------------------------------------------- */

static bool clean_value(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return false;
    return true;
}

static int h_respond(gw_req *r, int status, const char *ctype, const char *body, size_t len)
{
    if (status < 200 || status > 599) return -1;
    r->own_status = status;
    r->own_body = len ? dup_mem(r, body, len) : NULL;
    r->own_len = r->own_body ? len : 0;
    if (ctype && clean_value(ctype, strlen(ctype)))
        gw_hdr_put(r, GW_HDR_RESPONSE, "Content-Type", ctype, strlen(ctype), true);
    else
        gw_host_api()->header_remove(r, GW_HDR_RESPONSE, "Content-Type");
    return 0;
}

static int h_respond_error(gw_req *r, int status, const char *message)
{
    size_t len;
    char *body = gw_error_json(C(r), status, message, &len);
    if (!body) return -1;
    int rc = h_respond(r, status, "application/json", body, len);
    free(body);
    return rc;
}

static void h_retry_after(gw_req *r, uint64_t ms)
{
    r->retry_delay_ms = ms;
}

static bool h_replayable(const gw_req *r)
{
    const gw_conn *c = C(r);
    return c->body_complete && !c->body_streaming;
}

/* Only the request phase decides how the body is read: later it may already be streaming. Several filters
 * asking: the largest max holds (each filter still applies its own limit to what it sees). */
static int h_body_buffer(gw_req *r, uint64_t max)
{
    gw_conn *c = C(r);
    if (r->phase != GW_PH_REQUEST || c->state != GW_C_FILTER || c->body_streaming || max == 0) return -1;
    if (max > c->body_want) c->body_want = max;
    return 0;
}

static bool h_body(const gw_req *r, gw_strv *out)
{
    gw_conn *c = C(r);
    if (!r->endpoint || !c->body_complete) return false;
    size_t n = c->body ? evbuffer_get_length(c->body) : 0;
    *out = (gw_strv){n ? (const char *)evbuffer_pullup(c->body, (ev_ssize_t)n) : "", n};
    return true;
}

/* --- values shared between filters ------------------------------------------------------------------ */

struct gw_req_kv {
    struct gw_req_kv *next;
    const char *key;
    gw_strv value;
};

static int h_req_set(gw_req *r, const char *key, const char *value, size_t len)
{
    if (!key || (!value && len)) return -1;
    char *v = dup_mem(r, value ? value : "", len);
    if (!v) return -1;
    for (struct gw_req_kv *e = r->kv; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->value = (gw_strv){v, len};
            return 0;
        }
    struct gw_req_kv *e = gw_req_alloc(r, sizeof *e);
    char *k = dup_mem(r, key, strlen(key));
    if (!e || !k) return -1;
    *e = (struct gw_req_kv){.next = r->kv, .key = k, .value = {v, len}};
    r->kv = e;
    return 0;
}

static bool h_req_get(const gw_req *r, const char *key, gw_strv *out)
{
    for (const struct gw_req_kv *e = r->kv; key && e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            *out = e->value;
            return true;
        }
    return false;
}

/* --- time ------------------------------------------------------------------------------------------- */

static uint64_t h_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- timers and cleanups ---------------------------------------------------------------------------- */

static void unlink_timer(gw_req *r, gw_timer_rec *t)
{
    for (gw_timer_rec **pp = &r->timers; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            return;
        }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_timer_rec *t = arg;
    gw_req *r = t->req;
    unlink_timer(r, t);
    void (*cb)(gw_req *, void *) = t->cb;
    void *cbarg = t->arg;
    r->cur = t->f;
    event_free(t->ev);
    free(t);
    cb(r, cbarg);
}

static gw_timer *h_timer_start(gw_req *r, uint64_t ms, void (*cb)(gw_req *, void *), void *arg)
{
    gw_timer_rec *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ev = evtimer_new(C(r)->w->base, on_timer, t);
    if (!t->ev) {
        free(t);
        return NULL;
    }
    t->req = r;
    t->f = r->cur;
    t->cb = cb;
    t->arg = arg;
    t->next = r->timers;
    r->timers = t;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->ev, &tv);
    return (gw_timer *)t;
}

static void h_timer_cancel(gw_timer *tm)
{
    gw_timer_rec *t = (gw_timer_rec *)tm;
    if (!t) return;
    unlink_timer(t->req, t);
    event_free(t->ev);
    free(t);
}

static int h_on_cleanup(gw_req *r, void (*cb)(void *), void *arg)
{
    gw_cleanup_rec *k = gw_req_alloc(r, sizeof *k);
    if (!k) return -1;
    k->cb = cb;
    k->arg = arg;
    k->next = r->cleanups;
    r->cleanups = k;
    return 0;
}

/* --- endpoints -------------------------------------------------------------------------------------- */

static int h_register_endpoint(gw_filter *self, const char *method, const char *path, bool prefix,
                               gw_phase_fn handler)
{
    gw_gen *g = self->gen;
    if (!path || path[0] != '/' || !handler) return -1;
    int m = GW_METHOD_OTHER;
    if (method && strcmp(method, "*") != 0) {
        m = gw_http_method_id((gw_str){method, strlen(method)});
        if (m == GW_METHOD_OTHER) return -1;
    }
    gw_endpoint *e = realloc(g->endpoints, (g->nendpoints + 1) * sizeof *e);
    if (!e) return -1;
    g->endpoints = e;
    e = &g->endpoints[g->nendpoints];
    *e = (gw_endpoint){.f = self, .method = m, .path = strdup(path), .prefix = prefix, .handler = handler};
    if (!e->path) return -1;
    e->path_len = strlen(path);
    g->nendpoints++;
    return 0;
}

/* --- metrics --------------------------------------------------------------------------------------- */

static gw_metric *h_metric_register(gw_filter *self, int type, const char *name, const char *help,
                                    const char *const *labels, const double *buckets, size_t nbuckets)
{
    const char *err = NULL;
    gw_metric *m =
        gw_metrics_register(self->gen->srv->metrics, type, name, help, labels, buckets, nbuckets, &err);
    if (!m) gw_log_write(GW_LOG_ERROR, "[filter:%s] metric '%s': %s", self->name, name ? name : "", err);
    return m;
}

static unsigned metric_slot(const gw_req *r)
{
    return r ? C(r)->w->id : gw_metrics_thread_slot();
}

static void h_metric_add(gw_metric *m, gw_req *r, const char *const *v, double x)
{
    gw_metric_add(m, metric_slot(r), v, x);
}

static void h_metric_set(gw_metric *m, gw_req *r, const char *const *v, double x)
{
    gw_metric_set(m, metric_slot(r), v, x);
}

static void h_metric_observe(gw_metric *m, gw_req *r, const char *const *v, double x)
{
    gw_metric_observe(m, metric_slot(r), v, x);
}

static int h_metrics_render(gw_req *r, int format, gw_strv *out)
{
    size_t n;
    char *s = gw_metrics_render(C(r)->w->srv->metrics, format, &n);
    if (!s) return -1;
    char *d = gw_req_alloc(r, n + 1);
    if (d) memcpy(d, s, n + 1);
    free(s);
    if (!d) return -1;
    *out = (gw_strv){d, n};
    return 0;
}

static const void *h_settings(gw_filter *self)
{
    return self ? self->settings : NULL;
}

/* --- ABI 1.2 ------------------------------------------------------------------------------------------ */

static void *h_shared_block(gw_filter *self, const char *key, size_t size)
{
    return self ? gw_shared_block(self->d->name, key, size) : NULL;
}

static const char *h_service_name(gw_filter *self, size_t i)
{
    if (!self || !self->gen || i >= self->gen->cfg->nservices) return NULL;
    return self->gen->cfg->services[i].name;
}

static bool h_attempt_sent(const gw_req *r)
{
    return C(r)->attempt_sent;
}

static int h_upstream_status(const gw_req *r)
{
    return C(r)->up_status;
}

static uint64_t h_start_us(const gw_req *r)
{
    return C(r)->start_us;
}

static gw_host host_table;

const gw_host *gw_host_api(void)
{
    if (host_table.struct_size) return &host_table;
    gw_host *h = &host_table;
    h->abi_major = GW_ABI_MAJOR;
    h->abi_minor = GW_ABI_MINOR;
    h->log = h_log;
    gw_conf_api_fill(h);
    h->method = h_method;
    h->path = h_path;
    h->query = h_query;
    h->route = h_route;
    h->service = h_service;
    h->client_ip = h_client_ip;
    h->request_id = h_request_id;
    h->worker = h_worker;
    h->status = h_status;
    h->bytes_in = h_bytes_in;
    h->bytes_out = h_bytes_out;
    h->attempts = h_attempts;
    h->attempt_error = h_attempt_error;
    h->upstream = h_upstream;
    gw_host_headers_fill(h);
    gw_host_store_fill(h);
    gw_host_http_call_fill(h);
    h->respond = h_respond;
    h->respond_error = h_respond_error;
    h->retry_after = h_retry_after;
    h->replayable = h_replayable;
    h->body = h_body;
    h->body_buffer = h_body_buffer;
    h->req_set = h_req_set;
    h->req_get = h_req_get;
    h->alloc = h_alloc;
    h->now_ms = gw_mono_ms;
    h->unix_ms = h_unix_ms;
    h->resume = gw_phase_resume;
    h->timer_start = h_timer_start;
    h->timer_cancel = h_timer_cancel;
    h->on_cleanup = h_on_cleanup;
    h->register_endpoint = h_register_endpoint;
    h->metric_register = h_metric_register;
    h->metric_add = h_metric_add;
    h->metric_set = h_metric_set;
    h->metric_observe = h_metric_observe;
    h->metrics_render = h_metrics_render;
    h->settings = h_settings;
    h->shared_block = h_shared_block;
    h->service_name = h_service_name;
    h->attempt_sent = h_attempt_sent;
    h->upstream_status = h_upstream_status;
    h->now_us = gw_mono_us;
    h->start_us = h_start_us;
    h->struct_size = sizeof *h; /* last: marks the table ready */
    return h;
}
