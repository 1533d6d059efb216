/* th_host_req.c - the request-bound members of the test host's host table (request fields, header sets,
 * respond, resume, timers, cleanups, per-request memory), with the phase rules the gateway enforces, and
 * the timers on the fake clock. */
#include "th_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------------
 * timers */

void th_timers_fire_due(gw_th *th, uint64_t until)
{
    for (;;) {
        gw_timer *next = NULL;
        for (gw_req *r = th->reqs; r; r = r->next)
            for (gw_timer *t = r->timers; t; t = t->next)
                if (!t->done && t->due <= until &&
                    (!next || t->due < next->due || (t->due == next->due && t->seq < next->seq)))
                    next = t;
        if (!next) break;
        if (next->due > th_clock_now()) th_clock_set(next->due);
        next->done = next->fired = true;
        next->r->cur = next->f;
        next->cb(next->r, next->arg);
        th_auto_pending(th);
    }
    if (until > th_clock_now()) th_clock_set(until);
}

void gw_th_advance(gw_th *th, uint64_t ms)
{
    th_timers_fire_due(th, th_clock_now() + ms);
    th_auto_pending(th);
}

/* ------------------------------------------------------------------------------------------------------
 * the request-bound members of the host table */

static bool live(const gw_req *r)
{
    return r && r->stage != TH_NEW && r->stage != TH_DONE;
}

static gw_strv sv(const char *s)
{
    return (gw_strv){s ? s : "", s ? strlen(s) : 0};
}

static gw_strv h_method(const gw_req *req)
{
    return sv(req ? req->method : NULL);
}

static gw_strv h_path(const gw_req *req)
{
    return sv(req ? req->path : NULL);
}

static gw_strv h_query(const gw_req *req)
{
    return sv(req ? req->query : NULL);
}

static gw_strv h_route(const gw_req *req)
{
    if (!req) return sv(NULL);
    if (req->ep) return (gw_strv){req->ep->path, req->ep->plen};
    if (req->unrouted) return sv(NULL); /* as the gateway: a request that matched nothing has no route */
    return sv(req->route ? req->route->name : "default");
}

static gw_strv h_service(const gw_req *req)
{
    if (!req || req->ep || req->unrouted) return sv(NULL);
    return sv(req->route ? req->route->name : "default");
}

static gw_strv h_client_ip(const gw_req *req)
{
    return sv(req ? req->client_ip : NULL);
}

static gw_strv h_request_id(const gw_req *req)
{
    return sv(req ? req->request_id : NULL);
}

static unsigned h_worker(const gw_req *req)
{
    (void)req;
    return 0; /* the test host is worker 0 of 1 */
}

static int h_status(const gw_req *req)
{
    return req ? req->status : 0;
}

static uint64_t h_bytes_in(const gw_req *req)
{
    return req ? req->bytes_in : 0;
}

static uint64_t h_bytes_out(const gw_req *req)
{
    return req ? req->bytes_out : 0;
}

static unsigned h_attempts(const gw_req *req)
{
    return req ? req->attempts : 0;
}

static const char *h_attempt_error(const gw_req *req)
{
    return req ? req->attempt_error : NULL;
}

static gw_strv h_upstream(const gw_req *req)
{
    return sv(req && req->attempts ? GW_TH_UPSTREAM_URL : NULL);
}

static const th_hdrs *read_set(const gw_req *r, gw_hdr_set set)
{
    if (!r) return NULL;
    switch (set) {
    case GW_HDR_REQUEST: return &r->req_h;
    case GW_HDR_UPSTREAM: return r->up_started ? &r->up_h : NULL;
    case GW_HDR_RESPONSE: return &r->resp_h;
    }
    return NULL;
}

static th_hdrs *write_set(gw_req *r, gw_hdr_set set, const char *fn)
{
    if (!live(r)) return NULL;
    const char *why = NULL;
    switch (set) {
    case GW_HDR_REQUEST:
        if (r->stage == TH_REQUEST || r->stage == TH_ENDPOINT) return &r->req_h;
        why = "GW_HDR_REQUEST can only change in the request phase";
        break;
    case GW_HDR_UPSTREAM:
        if (r->stage == TH_UP_REQUEST) return &r->up_h;
        why = "GW_HDR_UPSTREAM can only change in the upstream_request phase";
        break;
    case GW_HDR_RESPONSE:
        if (r->stage != TH_LOG) return &r->resp_h;
        why = "nothing can change in the log phase";
        break;
    default: why = "no such header set"; break;
    }
    th_violation(r->th, r, "filter '%s': %s in the %s phase: %s", th_fname(r), fn, th_stage_names[r->stage],
                 why);
    return NULL;
}

static bool h_header_get(const gw_req *req, gw_hdr_set set, const char *name, gw_strv *value)
{
    const th_hdrs *h = read_set(req, set);
    const th_hdr *e = h ? th_hdrs_get(h, name) : NULL;
    if (e && value) *value = (gw_strv){e->value, e->vlen};
    return e != NULL;
}

static size_t h_header_count(const gw_req *req, gw_hdr_set set)
{
    const th_hdrs *h = read_set(req, set);
    return h ? h->n : 0;
}

static bool h_header_at(const gw_req *req, gw_hdr_set set, size_t i, gw_strv *name, gw_strv *value)
{
    const th_hdrs *h = read_set(req, set);
    if (!h || i >= h->n) return false;
    if (name) *name = sv(h->v[i].name);
    if (value) *value = (gw_strv){h->v[i].value, h->v[i].vlen};
    return true;
}

static int h_header_set(gw_req *req, gw_hdr_set set, const char *name, const char *value, size_t len)
{
    th_hdrs *h = write_set(req, set, "header_set");
    return h ? th_hdrs_set(h, name, value, len) : -1;
}

static int h_header_add(gw_req *req, gw_hdr_set set, const char *name, const char *value, size_t len)
{
    th_hdrs *h = write_set(req, set, "header_add");
    return h ? th_hdrs_add(h, name, value, len, false) : -1;
}

static int h_header_remove(gw_req *req, gw_hdr_set set, const char *name)
{
    th_hdrs *h = write_set(req, set, "header_remove");
    if (!h || !th_hdr_name_ok(name)) return -1;
    th_hdrs_remove(h, name);
    return 0;
}

static int respond(gw_req *req, int status, const char *content_type, const char *body, size_t len)
{
    if (!live(req)) return -1;
    if (req->stage == TH_LOG) {
        th_violation(req->th, req, "filter '%s': respond() in the log phase", th_fname(req));
        return -1;
    }
    if (status < 200 || status > 599 || (!body && len) ||
        (content_type && !th_hdr_value_ok(content_type, strlen(content_type))))
        return -1;
    th_hdrs_remove_upstream(&req->resp_h);
    th_hdrs_remove(&req->resp_h, "Content-Type");
    if (content_type) th_hdrs_set(&req->resp_h, "Content-Type", content_type, strlen(content_type));
    req->status = status;
    th_set_body(req, body, len);
    req->responded = true;
    return 0;
}

static int h_respond_error(gw_req *req, int status, const char *message)
{
    if (!live(req) || status < 200 || status > 599) return -1;
    char *s = th_error_json(req, status, message);
    if (!s) return -1;
    int rc = respond(req, status, "application/json", s, strlen(s));
    cJSON_free(s);
    return rc;
}

static void h_retry_after(gw_req *req, uint64_t delay_ms)
{
    if (!live(req)) return;
    if (req->stage != TH_UP_RESPONSE)
        th_note(req->th, req, GW_LOG_WARN,
                "filter '%s': retry_after() outside upstream_response has no effect", th_fname(req));
    req->retry_ms = delay_ms;
}

static bool h_replayable(const gw_req *req)
{
    return req && req->replayable;
}

void *th_req_alloc(gw_req *req, size_t n)
{
    if (!req || req->ended) return NULL;
    gw_th *th = req->th;
    if (th->alloc_limit && (n > th->alloc_limit || req->alloc_bytes > th->alloc_limit - n)) return NULL;
    void *p = malloc(n ? n : 1);
    if (!p) return NULL;
    req->allocs = th_grow(req->allocs, &req->callocs, req->nallocs + 1, sizeof *req->allocs);
    req->allocs[req->nallocs++] = p;
    req->alloc_bytes += n;
    return p;
}

static void h_resume(gw_req *req, gw_result result)
{
    if (!req) return;
    gw_th *th = req->th;
    if (req->in_phase && !req->waiting) {
        /* The ABI forbids it; the gateway takes the result when the call returns WAIT, and so do we. */
        th_violation(th, req, "filter '%s': resume() called from inside its phase", th_fname(req));
        if (req->early_set) return;
        req->early = result == GW_WAIT ? GW_ERROR : result;
        req->early_set = true;
        return;
    }
    if (!req->waiting) {
        th_violation(th, req, "resume() on a request that is not waiting (resumed twice, or already ended; "
                              "phase %s)", th_stage_names[req->stage]);
        return;
    }
    if (result == GW_WAIT) {
        th_violation(th, req, "filter '%s': resume() with GW_WAIT, treated as GW_ERROR", th_fname(req));
        result = GW_ERROR;
    }
    req->waiting = false;
    th_on_result(req, result);
    th_drive(req);
}

static gw_timer *h_timer_start(gw_req *req, uint64_t ms, void (*cb)(gw_req *req, void *arg), void *arg)
{
    if (!live(req) || !cb) return NULL;
    gw_timer *t = th_xcalloc(1, sizeof *t);
    t->r = req;
    t->f = req->cur;
    t->due = th_clock_now() + ms;
    t->seq = ++req->th->timer_seq;
    t->cb = cb;
    t->arg = arg;
    t->next = req->timers;
    req->timers = t;
    return t;
}

static void h_timer_cancel(gw_timer *t)
{
    if (!t) return;
    if (t->fired || t->cancelled) {
        /* In the gateway the handle is freed once the timer fired, was cancelled or its request ended. */
        th_violation(t->r->th, t->r, "timer_cancel on a timer that %s: the handle is no longer valid",
                     t->fired ? "already fired" : "was already cancelled (or its request ended)");
        return;
    }
    t->done = t->cancelled = true;
}

static bool h_body(const gw_req *req, gw_strv *out)
{
    if (!req || !req->ep || !live(req)) return false;
    if (out) *out = (gw_strv){req->body ? req->body : "", req->blen};
    return true;
}

static int h_on_cleanup(gw_req *req, void (*cb)(void *arg), void *arg)
{
    if (!live(req) || !cb) return -1;
    req->cleanups = th_grow(req->cleanups, &req->ccleanups, req->ncleanups + 1, sizeof *req->cleanups);
    req->cleanups[req->ncleanups++] = (th_cleanup){.cb = cb, .arg = arg, .f = req->cur};
    return 0;
}

void th_request_fill(gw_host *h)
{
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
    h->header_get = h_header_get;
    h->header_count = h_header_count;
    h->header_at = h_header_at;
    h->header_set = h_header_set;
    h->header_add = h_header_add;
    h->header_remove = h_header_remove;
    h->respond = respond;
    h->respond_error = h_respond_error;
    h->retry_after = h_retry_after;
    h->replayable = h_replayable;
    h->body = h_body;
    h->req_set = th_value_set;
    h->req_get = th_value_get;
    h->alloc = th_req_alloc;
    h->resume = h_resume;
    h->timer_start = h_timer_start;
    h->timer_cancel = h_timer_cancel;
    h->on_cleanup = h_on_cleanup;
}
