/* th_call.c - the test host's double for host->http_call: answers registered per service name or URL
 * (canned, failures, or a test's handler), delivered later on the fake loop (with the store callbacks, or
 * after a latency on the fake clock), the gateway's timeout and max_body rules, every call recorded for
 * inspection, calls dropped with their request, and misuse reported. */
#include "th_internal.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 30000 /* the gateway's default timeouts.upstream_response */
#define DEFAULT_MAX_BODY (1024u * 1024u)

struct th_callee {
    char *target; /* service name or URL; a trailing '*' matches as a prefix */
    int fail;     /* GW_CALL_* < 0, or 0 */
    int status;
    th_hdrs hdrs;
    char *body;
    size_t blen;
    uint64_t latency_ms;
    gw_th_call_fn fn;
    void *arg;
};

struct th_call {
    gw_http_call call; /* the filter's call, every string copied */
    gw_strv *headers;
    gw_req *r;
    gw_http_call_cb cb;
    void *arg;
    int result;
    int status;
    th_hdrs hdrs;
    char *body;
    size_t blen;
};

static th_callee *callee_find(gw_th *th, const char *target, bool exact)
{
    th_callee *best = NULL;
    for (size_t i = 0; target && i < th->ncallees; i++) {
        th_callee *c = &th->callees[i];
        size_t n = strlen(c->target);
        if (strcmp(c->target, target) == 0) return c;
        if (!exact && n && c->target[n - 1] == '*' && strncmp(c->target, target, n - 1) == 0 &&
            (!best || n > strlen(best->target)))
            best = c;
    }
    return best;
}

static th_callee *callee_get(gw_th *th, const char *target)
{
    th_callee *c = callee_find(th, target, true);
    if (c) {
        th_hdrs_clear(&c->hdrs);
        free(c->body);
        uint64_t latency = c->latency_ms;
        char *t = c->target;
        memset(c, 0, sizeof *c);
        c->target = t;
        c->latency_ms = latency;
        return c;
    }
    th->callees = th_grow(th->callees, &th->ccallees, th->ncallees + 1, sizeof *th->callees);
    c = &th->callees[th->ncallees++];
    memset(c, 0, sizeof *c);
    c->target = th_xstrdup(target);
    return c;
}

int gw_th_call_reply(gw_th *th, const char *target, int status, const char *headers, const char *body)
{
    th_hdrs h = {0};
    if (!target || status < 100 || status > 599 || th_parse_header_lines(&h, headers) != 0) {
        th_hdrs_clear(&h);
        return -1;
    }
    th_callee *c = callee_get(th, target);
    c->status = status;
    c->hdrs = h;
    c->blen = body ? strlen(body) : 0;
    c->body = th_xmemdup(body, c->blen);
    return 0;
}

int gw_th_call_fail(gw_th *th, const char *target, int code)
{
    if (!target || code > GW_CALL_CONNECT || code < GW_CALL_CLOSED) return -1;
    callee_get(th, target)->fail = code;
    return 0;
}

int gw_th_call_handler(gw_th *th, const char *target, gw_th_call_fn fn, void *arg)
{
    if (!target || !fn) return -1;
    th_callee *c = callee_get(th, target);
    c->fn = fn;
    c->arg = arg;
    return 0;
}

int gw_th_call_latency(gw_th *th, const char *target, uint64_t ms)
{
    th_callee *c = target ? callee_find(th, target, true) : NULL;
    if (!c) return -1;
    c->latency_ms = ms;
    return 0;
}

size_t gw_th_call_count(const gw_th *th)
{
    return th->ncalls;
}

const gw_http_call *gw_th_call_made(const gw_th *th, size_t i)
{
    return i < th->ncalls ? &th->calls[i]->call : NULL;
}

/* --- answering ------------------------------------------------------------------------------------- */

static void answer(th_call *k, const th_callee *c)
{
    k->result = GW_CALL_CONNECT;
    if (!c) return;
    if (c->fn) {
        gw_th_call_answer a = {.status = 200};
        k->result = c->fn(c->arg, &k->call, &a);
        if (k->result == GW_CALL_OK &&
            (a.status < 100 || a.status > 599 || th_parse_header_lines(&k->hdrs, a.headers) != 0)) {
            th_violation(k->r->th, k->r, "http_call handler for '%s': bad status or header lines", c->target);
            k->result = GW_CALL_INVALID;
        }
        k->status = a.status;
        k->blen = a.body ? (a.body_len ? a.body_len : strlen(a.body)) : 0;
        k->body = th_xmemdup(a.body, k->blen);
        return;
    }
    if ((k->result = c->fail) != 0) return;
    k->status = c->status;
    th_hdrs_copy(&k->hdrs, &c->hdrs);
    k->blen = c->blen;
    k->body = th_xmemdup(c->body, c->blen);
}

static void deliver(th_call *k)
{
    gw_http_response resp = {.status = k->status, .body = {k->body ? k->body : "", k->blen}};
    gw_strv *h = th_xcalloc(k->hdrs.n ? 2 * k->hdrs.n : 1, sizeof *h);
    for (size_t i = 0; i < k->hdrs.n; i++) {
        h[2 * i] = (gw_strv){k->hdrs.v[i].name, strlen(k->hdrs.v[i].name)};
        h[2 * i + 1] = (gw_strv){k->hdrs.v[i].value, k->hdrs.v[i].vlen};
    }
    resp.headers = h;
    resp.nheaders = k->hdrs.n;
    k->cb(k->arg, k->result, k->result == GW_CALL_OK ? &resp : NULL);
    free(h);
}

void th_call_deliver(th_call *k)
{
    deliver(k);
}

static void on_due(gw_req *r, void *arg)
{
    deliver(arg);
}

/* --- the host member ------------------------------------------------------------------------------- */

static bool token(const char *s, size_t n)
{
    if (!s || !n) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 127 || strchr("\"(),/:;<=>?@[\\]{}", s[i])) return false;
    return true;
}

/* What the gateway refuses with -1, reported here as misuse (the filter has a bug). */
static const char *misuse(const gw_req *r, const gw_http_call *call)
{
    if (r->stage == TH_NEW || r->ended)
        return r->ended ? "on a request that has ended" : "before the request ran";
    if (r->stage == TH_LOG) return "in the log phase";
    if (!call->service && !call->url) return "with neither a service nor a URL";
    if (call->url && strncmp(call->url, "http://", 7) != 0 && strncmp(call->url, "https://", 8) != 0)
        return "with a URL that is not http:// or https://";
    if (call->method && !token(call->method, strlen(call->method)))
        return "with a method that is not a token";
    if (call->path && (call->path[0] != '/' || strpbrk(call->path, " \t\r\n")))
        return "with a path that does not start with '/' or holds blanks";
    if (call->body_len && !call->body) return "with body_len but no body";
    for (size_t i = 0; i < call->nheaders; i++) {
        gw_strv n = call->headers[2 * i], v = call->headers[2 * i + 1];
        if (!token(n.p, n.n) || (v.n && !v.p) ||
            (v.n && (memchr(v.p, '\r', v.n) || memchr(v.p, '\n', v.n) || memchr(v.p, '\0', v.n))))
            return "with a header name that is not a token or a value with CR, LF or NUL";
    }
    return NULL;
}

static char *opt_dup(const char *s)
{
    return s ? th_xstrdup(s) : NULL;
}

static th_call *record(gw_req *r, const gw_http_call *call, gw_http_call_cb cb, void *arg)
{
    gw_th *th = r->th;
    th_call *k = th_xcalloc(1, sizeof *k);
    k->call = *call;
    k->call.service = opt_dup(call->service);
    k->call.url = opt_dup(call->url);
    k->call.method = th_xstrdup(call->method ? call->method : "GET");
    k->call.path = opt_dup(call->path);
    k->call.body = call->body_len ? th_xmemdup(call->body, call->body_len) : NULL;
    k->headers = th_xcalloc(call->nheaders ? 2 * call->nheaders : 1, sizeof *k->headers);
    for (size_t i = 0; i < 2 * call->nheaders; i++)
        k->headers[i] = (gw_strv){th_xmemdup(call->headers[i].p, call->headers[i].n), call->headers[i].n};
    k->call.headers = k->headers;
    k->r = r;
    k->cb = cb;
    k->arg = arg;
    th->calls = th_grow(th->calls, &th->ccalls, th->ncalls + 1, sizeof *th->calls);
    th->calls[th->ncalls++] = k;
    return k;
}

static int h_http_call(gw_req *r, const gw_http_call *call, gw_http_call_cb cb, void *arg)
{
    if (!r || !call || !cb) return -1;
    const char *why = misuse(r, call);
    if (why) {
        th_violation(r->th, r, "http_call %s", why);
        return -1;
    }
    th_call *k = record(r, call, cb, arg);
    const char *target = call->service ? call->service : call->url;
    const th_callee *c = callee_find(r->th, target, false);
    if (!c)
        th_note(r->th, r, GW_LOG_WARN, "http_call to '%s': no answer registered: GW_CALL_CONNECT", target);
    answer(k, c);
    uint64_t timeout = call->timeout_ms ? call->timeout_ms : DEFAULT_TIMEOUT_MS;
    uint64_t latency = c ? c->latency_ms : 0;
    if (k->result == GW_CALL_OK && k->blen > (call->max_body ? call->max_body : DEFAULT_MAX_BODY))
        k->result = GW_CALL_TOO_LARGE;
    if (latency >= timeout) {
        k->result = GW_CALL_TIMEOUT;
        latency = timeout;
    }
    if (latency) { /* on the fake clock; a timer of the request, so it dies with it */
        r->th->host.timer_start(r, latency, on_due, k);
        return 0;
    }
    th_op *op = th_enqueue(r);
    op->call = k;
    return 0;
}

void th_call_fill(gw_host *h)
{
    h->http_call = h_http_call;
}

void th_call_free(gw_th *th)
{
    for (size_t i = 0; i < th->ncallees; i++) {
        free(th->callees[i].target);
        th_hdrs_clear(&th->callees[i].hdrs);
        free(th->callees[i].body);
    }
    free(th->callees);
    for (size_t i = 0; i < th->ncalls; i++) {
        th_call *k = th->calls[i];
        free((char *)k->call.service);
        free((char *)k->call.url);
        free((char *)k->call.method);
        free((char *)k->call.path);
        free((char *)k->call.body);
        for (size_t j = 0; j < 2 * k->call.nheaders; j++)
            free((char *)k->headers[j].p);
        free(k->headers);
        th_hdrs_clear(&k->hdrs);
        free(k->body);
        free(k);
    }
    free(th->calls);
}
