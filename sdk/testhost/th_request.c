/* th_request.c - fake requests and the phase engine: routing, request / upstream_request / fake upstream /
 * upstream_response / response / log with the gateway's ordering and result handling, WAIT and resume,
 * retries, timers, per-request memory and cleanup, and the request-bound members of the host table. */
#include "th_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "router.h"

#define TH_MAX_ATTEMPTS 16 /* as the gateway: a retry is made while fewer attempts were made */

static void drive(gw_req *r);
static int respond(gw_req *req, int status, const char *content_type, const char *body, size_t len);
static void answer_now(gw_req *r, gw_result res, bool responded, const char *phase);

static const char *const stage_names[] = {
    [TH_NEW] = "new",
    [TH_REQUEST] = "request",
    [TH_ENDPOINT] = "endpoint",
    [TH_UP_REQUEST] = "upstream_request",
    [TH_UP_CALL] = "upstream_request",
    [TH_UP_RESPONSE] = "upstream_response",
    [TH_RESPONSE] = "response",
    [TH_LOG] = "log",
    [TH_DONE] = "done",
};

/* The gateway's own table (core/http.c): the error JSON's title is the status line's, RFC 9110's. */
const char *th_status_title(int status)
{
    return gw_http_reason(status);
}

/* ------------------------------------------------------------------------------------------------------
 * building a request */

gw_req *gw_th_request(gw_th *th, const char *method, const char *target)
{
    gw_req *r = th_xcalloc(1, sizeof *r);
    r->th = th;
    r->seq = ++th->req_seq;
    r->method = th_xstrdup(method ? method : "GET");
    r->target = th_xstrdup(target ? target : "/");
    r->client_ip = th_xstrdup("127.0.0.1");
    r->replayable = true;
    r->path = th_xstrdup("");
    r->query = th_xstrdup("");
    gw_req **tail = &th->reqs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = r;
    return r;
}

static bool not_new(gw_req *r, const char *fn)
{
    if (r->stage == TH_NEW) return false;
    th_violation(r->th, r, "%s: the request already ran", fn);
    return true;
}

int gw_th_request_header(gw_req *r, const char *name, const char *value)
{
    if (not_new(r, "gw_th_request_header")) return -1;
    return th_hdrs_add(&r->req_h, name, value, value ? strlen(value) : 0, false);
}

void gw_th_request_body(gw_req *r, const void *body, size_t len)
{
    if (not_new(r, "gw_th_request_body")) return;
    free(r->body);
    r->body = th_xmemdup(body, body ? len : 0);
    r->blen = body ? len : 0;
}

void gw_th_request_client_ip(gw_req *r, const char *ip)
{
    if (not_new(r, "gw_th_request_client_ip") || !ip) return;
    free(r->client_ip);
    r->client_ip = th_xstrdup(ip);
}

void gw_th_request_replayable(gw_req *r, bool replayable)
{
    r->replayable = replayable;
}

static th_reply *new_reply(gw_req *r)
{
    size_t cap = r->nreplies;
    r->replies = th_grow(r->replies, &cap, r->nreplies + 1, sizeof *r->replies);
    th_reply *p = &r->replies[r->nreplies];
    memset(p, 0, sizeof *p);
    return p;
}

int th_parse_header_lines(th_hdrs *h, const char *text)
{
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n && p[n - 1] == '\r') n--;
        if (n) {
            const char *colon = memchr(p, ':', n);
            if (!colon || colon == p) return -1;
            char *name = th_xmemdup(p, (size_t)(colon - p));
            const char *v = colon + 1, *end = p + n;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            int rc = th_hdrs_add(h, name, v, (size_t)(end - v), true);
            free(name);
            if (rc != 0) return -1;
        }
        p = eol ? eol + 1 : NULL;
    }
    return 0;
}

int gw_th_upstream_reply(gw_req *r, int status, const char *headers, const char *body)
{
    if (status < 100 || status > 599) return -1;
    th_hdrs h = {0};
    if (th_parse_header_lines(&h, headers) != 0) {
        th_hdrs_clear(&h);
        return -1;
    }
    th_reply *p = new_reply(r);
    p->status = status;
    p->hdrs = h;
    p->blen = body ? strlen(body) : 0;
    p->body = th_xmemdup(body, p->blen);
    r->nreplies++;
    return 0;
}

int gw_th_upstream_fail(gw_req *r, const char *why)
{
    static const char *const reasons[] = {"connect", "timeout", "closed", "invalid"};
    for (size_t i = 0; why && i < sizeof reasons / sizeof reasons[0]; i++)
        if (strcmp(why, reasons[i]) == 0) {
            th_reply *p = new_reply(r);
            p->fail = reasons[i];
            p->status = i == 1 ? 504 : 502;
            p->body = th_xstrdup("");
            r->nreplies++;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------------------------------------------
 * inspection */

gw_th_state gw_th_state_of(const gw_req *r)
{
    return r->stage == TH_DONE ? GW_TH_DONE : GW_TH_WAITING;
}

const char *gw_th_phase(const gw_req *r)
{
    return stage_names[r->stage];
}

int gw_th_status(const gw_req *r)
{
    return r->status;
}

static const th_hdrs *inspect_set(const gw_req *r, gw_hdr_set set)
{
    switch (set) {
    case GW_HDR_REQUEST: return &r->req_h;
    case GW_HDR_UPSTREAM: return r->up_called ? &r->up_sent : NULL;
    case GW_HDR_RESPONSE: return &r->resp_h;
    }
    return NULL;
}

const char *gw_th_header(const gw_req *r, gw_hdr_set set, const char *name)
{
    const th_hdrs *h = inspect_set(r, set);
    const th_hdr *e = h ? th_hdrs_get(h, name) : NULL;
    return e ? e->value : NULL;
}

size_t gw_th_header_count(const gw_req *r, gw_hdr_set set, const char *name)
{
    const th_hdrs *h = inspect_set(r, set);
    return h ? th_hdrs_count(h, name) : 0;
}

const char *gw_th_body(const gw_req *r, size_t *len)
{
    if (len) *len = r->resp_blen;
    return r->resp_body ? r->resp_body : "";
}

bool gw_th_upstream_called(const gw_req *r)
{
    return r->up_called;
}

unsigned gw_th_attempts(const gw_req *r)
{
    return r->attempts;
}

const char *gw_th_upstream_method(const gw_req *r)
{
    return r->up_called ? r->up_method : NULL;
}

const char *gw_th_upstream_target(const gw_req *r)
{
    return r->up_called ? r->up_target : NULL;
}

uint64_t gw_th_retry_delay(const gw_req *r, unsigned attempt)
{
    return attempt >= 1 && attempt <= r->ndelays ? r->delays[attempt - 1] : 0;
}

/* ------------------------------------------------------------------------------------------------------
 * responses the host makes */

static void set_body(gw_req *r, const char *body, size_t len)
{
    free(r->resp_body);
    r->resp_body = th_xmemdup(body, body ? len : 0);
    r->resp_blen = body ? len : 0;
}

static char *error_json(const gw_req *r, int status, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "error", th_status_title(status)) &&
        cJSON_AddStringToObject(o, "message", message ? message : th_status_title(status)) &&
        cJSON_AddStringToObject(o, "request_id", r->request_id))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The host's own error answer. Headers the filters set stay (as in the gateway); the upstream's go. */
static void host_error(gw_req *r, int status, const char *message)
{
    th_hdrs_remove_upstream(&r->resp_h);
    r->status = status;
    char *s = error_json(r, status, message);
    if (!s) abort();
    th_hdrs_set(&r->resp_h, "Content-Type", "application/json", 16);
    set_body(r, s, strlen(s));
    cJSON_free(s);
}

/* ------------------------------------------------------------------------------------------------------
 * the phase engine */

static size_t nfilters(const gw_req *r)
{
    return r->nstate < r->th->nfilters ? r->nstate : r->th->nfilters;
}

static gw_phase_fn phase_fn(const gw_filter *f, int stage)
{
    switch (stage) {
    case TH_REQUEST: return f->d.on_request;
    case TH_UP_REQUEST: return f->d.on_upstream_request;
    case TH_UP_RESPONSE: return f->d.on_upstream_response;
    case TH_RESPONSE: return f->d.on_response;
    case TH_LOG: return f->d.on_log;
    default: return NULL;
    }
}

static bool reverse_order(int stage)
{
    return stage == TH_UP_RESPONSE || stage == TH_RESPONSE || stage == TH_LOG;
}

void *th_route_conf(const gw_req *r, const gw_filter *f)
{
    if (r->ep || !r->route || f->index >= r->route->nconf || !r->route->conf[f->index])
        return f->route_default;
    return r->route->conf[f->index];
}

static const char *fname(const gw_req *r)
{
    return r->cur ? r->cur->d.name : "?";
}

static gw_result call(gw_req *r, gw_filter *f, gw_phase_fn fn)
{
    r->cur = f;
    r->in_phase = true;
    r->responded = false;
    r->early_set = false;
    void *state = f->index < r->nstate ? r->state[f->index] : NULL;
    gw_result res = fn(f->inst, th_route_conf(r, f), state, r);
    r->in_phase = false;
    if (res == GW_WAIT && r->early_set) res = r->early; /* resumed from inside the call (a violation) */
    return res;
}

/* The response (the upstream's, or one of ours when `own`) goes through the response phase. */
static void begin_response(gw_req *r, bool own)
{
    r->resp_own = own;
    r->stage = TH_RESPONSE;
    r->idx = 0;
}

static void begin_log(gw_req *r)
{
    if (!th_hdrs_get(&r->resp_h, "X-Request-Id"))
        th_hdrs_add(&r->resp_h, "X-Request-Id", r->request_id, strlen(r->request_id), false);
    r->bytes_out = r->resp_blen;
    r->stage = TH_LOG;
    r->idx = 0;
}

/* Fields of the client's head the gateway never forwards as they are (hop-by-hop, or its own). */
static bool own_request_field(const char *name)
{
    static const char *const skip[] = {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                                       "Transfer-Encoding", "Upgrade", "Proxy-Authenticate",
                                       "Proxy-Authorization", "Host", "Content-Length", "Expect",
                                       "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
                                       "X-Request-Id"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (strcasecmp(name, skip[i]) == 0) return true;
    return false;
}

/* The scripted reply of the current attempt (the queue may grow while a request waits: no pointer kept). */
static const th_reply *attempt_reply(const gw_req *r)
{
    static const th_reply dflt = {.status = 200};
    return r->reply < r->nreplies ? &r->replies[r->reply] : &dflt;
}

/* One upstream attempt begins: the upstream view starts as a copy of the (edited) request headers. A
 * refused connection fails before anything is sent, so upstream_request does not run for it. */
static void begin_attempt(gw_req *r)
{
    r->attempts++;
    r->retry_ms = 0;
    r->attempt_error = NULL;
    r->bytes_in = r->blen;
    r->reply = r->next_reply < r->nreplies ? r->next_reply++ : r->nreplies ? r->nreplies - 1 : SIZE_MAX;
    const th_reply *rp = attempt_reply(r);
    th_hdrs_copy(&r->up_h, &r->req_h);
    for (size_t i = 0; i < r->up_h.n; i++)
        r->up_h.v[i].from_upstream = false;
    r->up_started = true;
    r->idx = 0;
    if (rp->fail && strcmp(rp->fail, "connect") == 0) {
        r->status = rp->status;
        r->attempt_error = rp->fail;
        r->stage = TH_UP_RESPONSE;
        return;
    }
    r->stage = TH_UP_REQUEST;
}

/* The request head as it goes out: the upstream view without the fields the gateway owns, then those. */
static void snapshot_upstream_head(gw_req *r)
{
    th_hdrs *s = &r->up_sent;
    th_hdrs_clear(s);
    const char *authority = &GW_TH_UPSTREAM_URL[7]; /* after "http://" */
    th_hdrs_add(s, "Host", authority, strlen(authority), false);
    for (size_t i = 0; i < r->up_h.n; i++) {
        const th_hdr *e = &r->up_h.v[i];
        if (!own_request_field(e->name)) th_hdrs_add(s, e->name, e->value, e->vlen, false);
    }
    size_t n = strlen(r->client_ip) + 1;
    for (size_t i = 0; i < r->orig_h.n; i++)
        n += r->orig_h.v[i].vlen + 2;
    char *xff = th_xcalloc(n, 1);
    for (size_t i = 0; i < r->orig_h.n; i++) /* every value the client sent, then the peer */
        if (r->orig_h.v[i].vlen && strcasecmp(r->orig_h.v[i].name, "X-Forwarded-For") == 0) {
            strcat(xff, r->orig_h.v[i].value);
            strcat(xff, ", ");
        }
    strcat(xff, r->client_ip);
    th_hdrs_add(s, "X-Forwarded-For", xff, strlen(xff), false);
    free(xff);
    th_hdrs_add(s, "X-Forwarded-Proto", "http", 4, false);
    const th_hdr *host = th_hdrs_get(&r->orig_h, "Host");
    if (host && host->vlen) th_hdrs_add(s, "X-Forwarded-Host", host->value, host->vlen, false);
    th_hdrs_add(s, "X-Request-Id", r->request_id, strlen(r->request_id), false);
    if (r->blen) {
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", r->blen);
        th_hdrs_add(s, "Content-Length", cl, strlen(cl), false);
    }
}

/* The request goes upstream; the scripted reply (or failure) comes back. The reply's headers come
 * first in the response set, then those filters set before it arrived. */
static void upstream_call(gw_req *r)
{
    free(r->up_method);
    free(r->up_target);
    r->up_method = th_xstrdup(r->method);
    size_t pl = strlen(r->path), ql = strlen(r->query);
    r->up_target = th_xcalloc(pl + ql + 2, 1);
    snprintf(r->up_target, pl + ql + 2, "%s%s%s", r->path, ql ? "?" : "", r->query);
    snapshot_upstream_head(r);
    r->up_called = true;

    const th_reply *p = attempt_reply(r);
    r->status = p->status;
    r->attempt_error = p->fail;
    th_hdrs prior = r->resp_h;
    r->resp_h = (th_hdrs){0};
    for (size_t i = 0; i < p->hdrs.n; i++)
        th_hdrs_add(&r->resp_h, p->hdrs.v[i].name, p->hdrs.v[i].value, p->hdrs.v[i].vlen, true);
    for (size_t i = 0; i < prior.n; i++)
        if (!prior.v[i].from_upstream)
            th_hdrs_add(&r->resp_h, prior.v[i].name, prior.v[i].value, prior.v[i].vlen, false);
    th_hdrs_clear(&prior);
    set_body(r, p->body, p->blen);
    r->stage = TH_UP_RESPONSE;
    r->idx = 0;
}

static const char *failure_message(const char *why)
{
    if (strcmp(why, "timeout") == 0) return "The upstream service did not answer in time";
    if (strcmp(why, "closed") == 0) return "The upstream service closed the connection without answering";
    if (strcmp(why, "invalid") == 0) return "The upstream service sent an invalid response";
    return "The upstream service is unavailable";
}

/* The phase at r->stage has run for every filter (all returned GW_CONTINUE). */
static void phase_done(gw_req *r)
{
    switch (r->stage) {
    case TH_REQUEST: {
        if (th_body_too_large(r)) { /* host->body_buffer's max: refused before the body is read */
            host_error(r, 413, "The request body is larger than allowed");
            begin_response(r, true);
            break;
        }
        gw_result res = th_body_request(r);
        if (res != GW_CONTINUE) {
            answer_now(r, res, res == GW_RESPOND, "request_body");
            break;
        }
        if (r->ep) r->stage = TH_ENDPOINT;
        else begin_attempt(r);
        break;
    }
    case TH_UP_REQUEST: r->stage = TH_UP_CALL; break;
    case TH_UP_RESPONSE:
        if (r->attempt_error) {
            host_error(r, r->status, failure_message(r->attempt_error));
            begin_response(r, true);
        } else {
            begin_response(r, false);
        }
        break;
    case TH_RESPONSE:
        if (!r->resp_own && th_body_response(r) != GW_CONTINUE) /* the gateway: 500, or cut once sent */
            host_error(r, 500, "A filter failed to process the response body");
        begin_log(r);
        break;
    case TH_LOG: r->stage = TH_DONE; break;
    default: break;
    }
}

static void retry(gw_req *r)
{
    gw_th *th = r->th;
    if (!r->replayable || r->attempts >= TH_MAX_ATTEMPTS) {
        th_note(th, r, GW_LOG_DEBUG, "GW_RETRY from '%s' refused (%s): treated as GW_CONTINUE", fname(r),
                r->replayable ? "attempt limit reached" : "the request body cannot be replayed");
        r->idx = nfilters(r); /* a result other than CONTINUE ends the phase */
        return;
    }
    size_t cap = r->ndelays;
    r->delays = th_grow(r->delays, &cap, r->attempts, sizeof *r->delays);
    r->ndelays = r->attempts;
    r->delays[r->attempts - 1] = r->retry_ms;
    th_hdrs_remove_upstream(&r->resp_h);
    set_body(r, NULL, 0);
    r->status = 0;
    r->attempt_error = NULL;
    th_timers_fire_due(th, th_clock_now() + r->retry_ms); /* the delay passes on the fake clock */
    begin_attempt(r);
}

/* A result other than GW_CONTINUE in a phase before the response phase: the answer goes through the
 * response phase. */
static void answer_now(gw_req *r, gw_result res, bool responded, const char *phase)
{
    gw_th *th = r->th;
    bool response_side = r->stage == TH_UP_RESPONSE;
    if (res == GW_RESPOND && !responded) {
        th_violation(th, r, "filter '%s': returned GW_RESPOND without calling respond()", fname(r));
        res = GW_ERROR;
    } else if (res != GW_RESPOND && res != GW_ERROR) {
        th_violation(th, r, "filter '%s': result %d is not valid in the %s phase", fname(r), (int)res, phase);
        res = GW_ERROR;
    }
    if (res == GW_ERROR) {
        th_note(th, r, GW_LOG_ERROR, "filter '%s' failed in the %s phase: answering 500", fname(r), phase);
        host_error(r, 500, r->stage == TH_ENDPOINT ? "The endpoint failed"
                           : response_side         ? "A filter failed to process the response"
                                                   : "A filter failed to process the request");
    }
    begin_response(r, true);
}

/* Applies the result of a phase call (direct or via resume). r->cur is the filter that produced it. */
static void on_result(gw_req *r, gw_result res)
{
    gw_th *th = r->th;
    if (res == GW_WAIT) {
        if (r->stage == TH_LOG) {
            th_violation(th, r, "filter '%s': GW_WAIT in the log phase (not allowed), treated as an error",
                         fname(r));
            r->idx++;
            return;
        }
        r->waiting = true; /* r->responded is kept: respond() may come before the resume */
        return;
    }
    bool responded = r->responded;
    r->responded = false;
    const char *phase = stage_names[r->stage];
    if (res == GW_CONTINUE && responded && r->stage != TH_LOG) {
        th_violation(th, r, "filter '%s': called respond() in the %s phase but returned GW_CONTINUE", fname(r),
                     phase);
        res = GW_RESPOND;
    }
    switch (r->stage) {
    case TH_REQUEST:
    case TH_UP_REQUEST:
    case TH_UP_RESPONSE:
        if (res == GW_CONTINUE) {
            r->idx++;
            return;
        }
        if (res == GW_RETRY && r->stage == TH_UP_RESPONSE) {
            retry(r);
            return;
        }
        answer_now(r, res, responded, phase);
        return;
    case TH_ENDPOINT:
        if (res == GW_CONTINUE) {
            th_note(th, r, GW_LOG_WARN, "endpoint of '%s' returned GW_CONTINUE without an answer", fname(r));
            host_error(r, 500, "The endpoint did not answer");
            begin_response(r, true);
            return;
        }
        answer_now(r, res, responded, phase);
        return;
    case TH_RESPONSE:
        if (res == GW_CONTINUE) {
            r->idx++;
            return;
        }
        if (res == GW_RESPOND && !responded) {
            th_violation(th, r, "filter '%s': returned GW_RESPOND without calling respond()", fname(r));
            res = GW_ERROR;
        } else if (res != GW_RESPOND && res != GW_ERROR) {
            th_violation(th, r, "filter '%s': result %d is not valid in the response phase", fname(r), (int)res);
            res = GW_ERROR;
        }
        if (res == GW_ERROR) {
            th_note(th, r, GW_LOG_ERROR, "filter '%s' failed in the response phase: answering 500", fname(r));
            host_error(r, 500, "A filter failed to process the response");
        }
        /* An answer replacing the upstream's goes through the response phase once more; a replaced or
         * failed answer of ours goes out as it is. */
        if (!r->resp_own) begin_response(r, true);
        else begin_log(r);
        return;
    case TH_LOG:
        if (res != GW_CONTINUE)
            th_note(th, r, GW_LOG_DEBUG, "filter '%s' returned %d in the log phase (ignored)", fname(r), (int)res);
        r->idx++;
        return;
    default: return;
    }
}

static void step(gw_req *r)
{
    gw_th *th = r->th;
    switch (r->stage) {
    case TH_REQUEST:
    case TH_UP_REQUEST:
    case TH_UP_RESPONSE:
    case TH_RESPONSE:
    case TH_LOG: {
        size_t n = nfilters(r);
        if (r->idx >= n) {
            phase_done(r);
            return;
        }
        gw_filter *f = th->filters[reverse_order(r->stage) ? n - 1 - r->idx : r->idx];
        gw_phase_fn fn = phase_fn(f, r->stage);
        if (!fn) {
            r->idx++;
            return;
        }
        on_result(r, call(r, f, fn));
        return;
    }
    case TH_ENDPOINT: on_result(r, call(r, r->ep->f, r->ep->handler)); return;
    case TH_UP_CALL: upstream_call(r); return;
    default: return;
    }
}

/* Ends the request: timers off, cleanup callbacks (last registered first), per-request memory freed. */
static void end_request(gw_req *r)
{
    if (r->ended) return;
    r->ended = true;
    r->stage = TH_DONE;
    r->waiting = false;
    for (gw_timer *t = r->timers; t; t = t->next)
        if (!t->done) t->done = t->cancelled = true;
    while (r->ncleanups) {
        th_cleanup c = r->cleanups[--r->ncleanups];
        r->cur = c.f;
        c.cb(c.arg);
    }
    for (size_t i = 0; i < r->nallocs; i++)
        free(r->allocs[i]);
    free(r->allocs);
    r->allocs = NULL;
    r->nallocs = r->callocs = 0;
    for (size_t i = 0; i < r->nstate; i++)
        free(r->state[i]);
    free(r->state);
    r->state = NULL;
    r->nstate = 0;
}

static void drive(gw_req *r)
{
    if (r->driving) return;
    r->driving = true;
    while (!r->waiting && r->stage != TH_DONE)
        step(r);
    r->driving = false;
    if (r->stage == TH_DONE) end_request(r);
}

static bool sane_request_id(const char *v, size_t n)
{
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
              c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static bool method_matches(const th_endpoint *e, const char *method)
{
    return !e->method || strcmp(e->method, method) == 0 ||
           (strcmp(e->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static bool prefix_matches(const char *prefix, size_t plen, const char *path)
{
    if (plen == 1 && prefix[0] == '/') return true;
    return strncmp(path, prefix, plen) == 0 && (path[plen] == '\0' || path[plen] == '/');
}

/* Routing; returns 0 or the status the host answers with. */
static int route_request(gw_req *r)
{
    gw_th *th = r->th;
    size_t tlen = strlen(r->target), cap = tlen + 16, out_len, path_len;
    char *norm = th_xcalloc(cap, 1);
    int st = gw_path_normalize(r->target, tlen, norm, cap, &out_len, &path_len);
    if (st) {
        free(norm);
        return st;
    }
    free(r->path);
    free(r->query);
    r->path = th_xmemdup(norm, path_len);
    r->query = th_xstrdup(path_len < out_len ? norm + path_len + 1 : "");
    free(norm);

    bool path_known = false;
    for (size_t i = 0; i < th->neps; i++) {
        th_endpoint *e = &th->eps[i];
        if (!(e->prefix ? prefix_matches(e->path, e->plen, r->path)
                        : strlen(r->path) == e->plen && memcmp(r->path, e->path, e->plen) == 0))
            continue;
        path_known = true;
        if (method_matches(e, r->method)) {
            r->ep_copy = *e; /* the array may grow while the request waits; the strings stay */
            r->ep = &r->ep_copy;
            return 0;
        }
    }
    if (path_known) return 405;
    if (th->nroutes == 0) return 0; /* the implicit route "default" */
    const th_route *found = NULL;
    for (size_t i = 0; i < th->nroutes; i++) {
        const th_route *rt = &th->routes[i];
        if ((!found || rt->plen > found->plen) && prefix_matches(rt->prefix, rt->plen, r->path)) found = rt;
    }
    if (found) {
        r->route_copy = *found; /* the array may grow while the request waits; its members stay */
        r->route = &r->route_copy;
        return 0;
    }
    r->unrouted = true;
    return 404;
}

static void start(gw_req *r)
{
    gw_th *th = r->th;
    const th_hdr *rid = th_hdrs_get(&r->req_h, "X-Request-Id");
    if (rid && sane_request_id(rid->value, rid->vlen))
        snprintf(r->request_id, sizeof r->request_id, "%.39s", rid->value);
    else
        snprintf(r->request_id, sizeof r->request_id, "req-%u", r->seq);
    th_body_framing(r);
    th_hdrs_copy(&r->orig_h, &r->req_h);
    r->nstate = th->nfilters;
    r->state = th_xcalloc(r->nstate, sizeof *r->state);
    for (size_t i = 0; i < r->nstate; i++)
        if (th->filters[i]->d.req_state_size) r->state[i] = th_xcalloc(1, th->filters[i]->d.req_state_size);
    int st = route_request(r);
    if (st) { /* answered by the host: no request phase, but response and log phases run */
        r->unrouted = true;
        host_error(r, st,
                   st == 404   ? "No route matches the request path"
                   : st == 405 ? "The method is not allowed on this endpoint"
                   : st == 414 ? "The request target is too long"
                               : "The request target is not valid");
        begin_response(r, true);
        return;
    }
    r->stage = TH_REQUEST;
    r->idx = 0;
}

gw_th_state gw_th_run(gw_req *r)
{
    if (r->stage == TH_NEW) {
        start(r);
        drive(r);
    }
    th_auto_pending(r->th);
    return gw_th_state_of(r);
}

void gw_th_abort(gw_req *r)
{
    if (r->ended) return;
    if (r->stage == TH_NEW) {
        end_request(r);
        return;
    }
    if (r->driving) return; /* not reachable from the host API */
    r->waiting = false;
    r->in_phase = false;
    if (r->stage != TH_LOG) begin_log(r);
    drive(r);
}

/* ------------------------------------------------------------------------------------------------------
 * values filters pass to each other */

struct th_kv_val {
    struct th_kv_val *next;
    char *key, *val;
    size_t len;
};

static int h_req_set(gw_req *r, const char *key, const char *value, size_t len)
{
    if (!r || !key || (!value && len)) return -1;
    for (struct th_kv_val *e = r->vals; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            free(e->val);
            e->val = th_xmemdup(value ? value : "", len);
            e->len = len;
            return 0;
        }
    struct th_kv_val *e = th_xcalloc(1, sizeof *e);
    e->key = th_xmemdup(key, strlen(key));
    e->val = th_xmemdup(value ? value : "", len);
    e->len = len;
    e->next = r->vals;
    r->vals = e;
    return 0;
}

static bool h_req_get(const gw_req *r, const char *key, gw_strv *out)
{
    for (const struct th_kv_val *e = r ? r->vals : NULL; key && e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            *out = (gw_strv){e->val, e->len};
            return true;
        }
    return false;
}

bool gw_th_value(gw_req *r, const char *key, gw_strv *out)
{
    return h_req_get(r, key, out);
}

void th_request_free(gw_req *r)
{
    end_request(r);
    th_body_free(r);
    while (r->timers) {
        gw_timer *t = r->timers;
        r->timers = t->next;
        free(t);
    }
    free(r->method);
    free(r->target);
    free(r->path);
    free(r->query);
    free(r->client_ip);
    free(r->body);
    th_hdrs_clear(&r->req_h);
    th_hdrs_clear(&r->orig_h);
    for (size_t i = 0; i < r->nreplies; i++) {
        th_hdrs_clear(&r->replies[i].hdrs);
        free(r->replies[i].body);
    }
    free(r->replies);
    th_hdrs_clear(&r->up_h);
    th_hdrs_clear(&r->up_sent);
    free(r->up_method);
    free(r->up_target);
    free(r->delays);
    th_hdrs_clear(&r->resp_h);
    free(r->resp_body);
    free(r->cleanups);
    while (r->vals) {
        struct th_kv_val *e = r->vals;
        r->vals = e->next;
        free(e->key);
        free(e->val);
        free(e);
    }
    free(r);
}

/* ------------------------------------------------------------------------------------------------------
 * timers */

void th_timers_fire_due(gw_th *th, uint64_t until)
{
    for (;;) {
        gw_timer *next = NULL;
        for (gw_req *r = th->reqs; r; r = r->next)
            for (gw_timer *t = r->timers; t; t = t->next)
                if (!t->done && t->due <= until && (!next || t->due < next->due || (t->due == next->due && t->seq < next->seq)))
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
    if (req->unrouted) return sv(req->path); /* as the gateway: an unrouted request is its own route */
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
    th_violation(r->th, r, "filter '%s': %s in the %s phase: %s", fname(r), fn, stage_names[r->stage], why);
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
        th_violation(req->th, req, "filter '%s': respond() in the log phase", fname(req));
        return -1;
    }
    if (status < 200 || status > 599 || (!body && len) ||
        (content_type && !th_hdr_value_ok(content_type, strlen(content_type))))
        return -1;
    th_hdrs_remove_upstream(&req->resp_h);
    th_hdrs_remove(&req->resp_h, "Content-Type");
    if (content_type) th_hdrs_set(&req->resp_h, "Content-Type", content_type, strlen(content_type));
    req->status = status;
    set_body(req, body, len);
    req->responded = true;
    return 0;
}

static int h_respond_error(gw_req *req, int status, const char *message)
{
    if (!live(req) || status < 200 || status > 599) return -1;
    char *s = error_json(req, status, message);
    if (!s) return -1;
    int rc = respond(req, status, "application/json", s, strlen(s));
    cJSON_free(s);
    return rc;
}

static void h_retry_after(gw_req *req, uint64_t delay_ms)
{
    if (!live(req)) return;
    if (req->stage != TH_UP_RESPONSE)
        th_note(req->th, req, GW_LOG_WARN, "filter '%s': retry_after() outside upstream_response has no effect",
                fname(req));
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
        th_violation(th, req, "filter '%s': resume() called from inside its phase", fname(req));
        if (req->early_set) return;
        req->early = result == GW_WAIT ? GW_ERROR : result;
        req->early_set = true;
        return;
    }
    if (!req->waiting) {
        th_violation(th, req, "resume() on a request that is not waiting (resumed twice, or already ended; "
                              "phase %s)", stage_names[req->stage]);
        return;
    }
    if (result == GW_WAIT) {
        th_violation(th, req, "filter '%s': resume() with GW_WAIT, treated as GW_ERROR", fname(req));
        result = GW_ERROR;
    }
    req->waiting = false;
    on_result(req, result);
    drive(req);
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
    h->req_set = h_req_set;
    h->req_get = h_req_get;
    h->alloc = th_req_alloc;
    h->resume = h_resume;
    h->timer_start = h_timer_start;
    h->timer_cancel = h_timer_cancel;
    h->on_cleanup = h_on_cleanup;
}
