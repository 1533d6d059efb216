/* th_engine.c - the phase engine of the test host: request / upstream_request / fake upstream /
 * upstream_response / response / log with the gateway's ordering and result handling, WAIT and resume,
 * retries, the host's own error answers, and the end of a request (timers off, cleanups, memory). */
#include "th_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

#define TH_MAX_ATTEMPTS 16 /* as the gateway: a retry is made while fewer attempts were made */

static void answer_now(gw_req *r, gw_result res, bool responded, const char *phase);

const char *const th_stage_names[] = {
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

/* The gateway's own table (core/http/http_fields.c): the error JSON's title is the status line's, RFC 9110's. */
const char *th_status_title(int status)
{
    return gw_http_reason(status);
}

/* ------------------------------------------------------------------------------------------------------
 * responses the host makes */

void th_set_body(gw_req *r, const char *body, size_t len)
{
    free(r->resp_body);
    r->resp_body = th_xmemdup(body, body ? len : 0);
    r->resp_blen = body ? len : 0;
}

char *th_error_json(const gw_req *r, int status, const char *message)
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
    char *s = th_error_json(r, status, message);
    if (!s) abort();
    th_hdrs_set(&r->resp_h, "Content-Type", "application/json", 16);
    th_set_body(r, s, strlen(s));
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

const char *th_fname(const gw_req *r)
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
    r->attempt_sent = false;
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
    r->attempt_sent = true;
    if (!p->fail) r->up_status = p->status;
    th_hdrs prior = r->resp_h;
    r->resp_h = (th_hdrs){0};
    for (size_t i = 0; i < p->hdrs.n; i++)
        th_hdrs_add(&r->resp_h, p->hdrs.v[i].name, p->hdrs.v[i].value, p->hdrs.v[i].vlen, true);
    for (size_t i = 0; i < prior.n; i++)
        if (!prior.v[i].from_upstream)
            th_hdrs_add(&r->resp_h, prior.v[i].name, prior.v[i].value, prior.v[i].vlen, false);
    th_hdrs_clear(&prior);
    th_set_body(r, p->body, p->blen);
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
        th_note(th, r, GW_LOG_DEBUG, "GW_RETRY from '%s' refused (%s): treated as GW_CONTINUE", th_fname(r),
                r->replayable ? "attempt limit reached" : "the request body cannot be replayed");
        r->idx = nfilters(r); /* a result other than CONTINUE ends the phase */
        return;
    }
    size_t cap = r->ndelays;
    r->delays = th_grow(r->delays, &cap, r->attempts, sizeof *r->delays);
    r->ndelays = r->attempts;
    r->delays[r->attempts - 1] = r->retry_ms;
    th_hdrs_remove_upstream(&r->resp_h);
    th_set_body(r, NULL, 0);
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
        th_violation(th, r, "filter '%s': returned GW_RESPOND without calling respond()", th_fname(r));
        res = GW_ERROR;
    } else if (res != GW_RESPOND && res != GW_ERROR) {
        th_violation(th, r, "filter '%s': result %d is not valid in the %s phase", th_fname(r), (int)res,
                     phase);
        res = GW_ERROR;
    }
    if (res == GW_ERROR) {
        th_note(th, r, GW_LOG_ERROR, "filter '%s' failed in the %s phase: answering 500", th_fname(r), phase);
        host_error(r, 500, r->stage == TH_ENDPOINT ? "The endpoint failed"
                           : response_side         ? "A filter failed to process the response"
                                                   : "A filter failed to process the request");
    }
    begin_response(r, true);
}

/* A result other than GW_CONTINUE in the response phase. */
static void response_answer(gw_req *r, gw_result res, bool responded)
{
    gw_th *th = r->th;
    if (res == GW_RESPOND && !responded) {
        th_violation(th, r, "filter '%s': returned GW_RESPOND without calling respond()", th_fname(r));
        res = GW_ERROR;
    } else if (res != GW_RESPOND && res != GW_ERROR) {
        th_violation(th, r, "filter '%s': result %d is not valid in the response phase", th_fname(r),
                     (int)res);
        res = GW_ERROR;
    }
    if (res == GW_ERROR) {
        th_note(th, r, GW_LOG_ERROR, "filter '%s' failed in the response phase: answering 500", th_fname(r));
        host_error(r, 500, "A filter failed to process the response");
    }
    /* An answer replacing the upstream's goes through the response phase once more; a replaced or
     * failed answer of ours goes out as it is. */
    if (!r->resp_own) begin_response(r, true);
    else begin_log(r);
}

/* Applies the result of a phase call (direct or via resume). r->cur is the filter that produced it. */
void th_on_result(gw_req *r, gw_result res)
{
    gw_th *th = r->th;
    if (res == GW_WAIT) {
        if (r->stage == TH_LOG) {
            th_violation(th, r, "filter '%s': GW_WAIT in the log phase (not allowed), treated as an error",
                         th_fname(r));
            r->idx++;
            return;
        }
        r->waiting = true; /* r->responded is kept: respond() may come before the resume */
        return;
    }
    bool responded = r->responded;
    r->responded = false;
    const char *phase = th_stage_names[r->stage];
    if (res == GW_CONTINUE && responded && r->stage != TH_LOG) {
        th_violation(th, r, "filter '%s': called respond() in the %s phase but returned GW_CONTINUE",
                     th_fname(r), phase);
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
            th_note(th, r, GW_LOG_WARN, "endpoint of '%s' returned GW_CONTINUE without an answer",
                    th_fname(r));
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
        response_answer(r, res, responded);
        return;
    case TH_LOG:
        if (res != GW_CONTINUE)
            th_note(th, r, GW_LOG_DEBUG, "filter '%s' returned %d in the log phase (ignored)", th_fname(r),
                    (int)res);
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
        th_on_result(r, call(r, f, fn));
        return;
    }
    case TH_ENDPOINT: th_on_result(r, call(r, r->ep->f, r->ep->handler)); return;
    case TH_UP_CALL: upstream_call(r); return;
    default: return;
    }
}

/* Ends the request: timers off, cleanup callbacks (last registered first), per-request memory freed. */
void th_request_end(gw_req *r)
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

void th_drive(gw_req *r)
{
    if (r->driving) return;
    r->driving = true;
    while (!r->waiting && r->stage != TH_DONE)
        step(r);
    r->driving = false;
    if (r->stage == TH_DONE) th_request_end(r);
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
    int st = th_route_request(r);
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
        r->start_us = th_clock_now() * 1000u;
        start(r);
        th_drive(r);
    }
    th_auto_pending(r->th);
    return gw_th_state_of(r);
}

void gw_th_abort(gw_req *r)
{
    if (r->ended) return;
    if (r->stage == TH_NEW) {
        th_request_end(r);
        return;
    }
    if (r->driving) return; /* not reachable from the host API */
    r->waiting = false;
    r->in_phase = false;
    if (r->stage != TH_LOG) begin_log(r);
    th_drive(r);
}
