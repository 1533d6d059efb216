/* th_request.c - fake requests as a test builds them: method, target, headers, body, client address, the
 * scripted upstream replies and failures; inspection of the outcome, the values filters pass to each other
 * (host->req_set / req_get), and freeing a request. The phases run in th_engine.c. */
#include "th_internal.h"

#include <stdlib.h>
#include <string.h>

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
    return th_stage_names[r->stage];
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
 * values filters pass to each other */

struct th_kv_val {
    struct th_kv_val *next;
    char *key, *val;
    size_t len;
};

int th_value_set(gw_req *r, const char *key, const char *value, size_t len)
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

bool th_value_get(const gw_req *r, const char *key, gw_strv *out)
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
    return th_value_get(r, key, out);
}

void th_request_free(gw_req *r)
{
    th_request_end(r);
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
