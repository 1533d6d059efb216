/* cb_phase.c - the breaker on the request path: admission in the request phase (first attempt) and in the
 * upstream_request phase (each later attempt, so an open breaker ends a retry sequence with its 503), the
 * outcome of every attempt in upstream_response (an attempt that skipped upstream_request, having no
 * connection, is admitted there first), and the probe slot given back on cleanup when a probe
 * ends without an outcome (client gone, error). */
#include "breaker.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The request's service breaker and its limits: the service's, with what the route sets itself. */
static bool bind_service(cb_inst *in, const cb_conf *rc, cb_state *st, gw_req *req)
{
    if (st->svc) return true;
    gw_strv name = in->h->service(req);
    if (name.n == 0) return false; /* an endpoint: never subject to the breaker */
    cb_svc *s = cb_find(in, name.p, name.n);
    if (!s) return false;
    st->svc = s;
    st->lim = s->lim;
    const cb_conf *p = in->s;
    if (rc && rc != p) {
        if (rc->max_failures != p->max_failures) st->lim.max_failures = (uint32_t)rc->max_failures;
        if (rc->reset_ms != p->reset_ms) st->lim.reset_ms = rc->reset_ms;
        if (rc->half_open_max != p->half_open_max) st->lim.half_open_max = (uint32_t)rc->half_open_max;
        if (rc->success_threshold != p->success_threshold)
            st->lim.success_threshold = (uint32_t)rc->success_threshold;
    }
    return true;
}

static gw_result refuse(cb_inst *in, cb_state *st, gw_req *req, const cb_admit *a)
{
    const gw_host *h = in->h;
    char msg[400];
    snprintf(msg, sizeof msg, "Circuit breaker is open for %s", st->svc->name);
    gw_strv rid = h->request_id(req);
    char idbuf[256];
    size_t n = rid.n < sizeof idbuf - 1 ? rid.n : sizeof idbuf - 1;
    memcpy(idbuf, rid.p, n);
    idbuf[n] = '\0';
    /* During an outage every request to the service comes here: keys and values are references (no
     * copies) and the text goes to the stack. */
    cJSON *doc = cJSON_CreateObject();
    char buf[1024], *text = NULL, *big = NULL;
    if (doc && cJSON_AddItemToObjectCS(doc, "error", cJSON_CreateStringReference("Service unavailable")) &&
        cJSON_AddItemToObjectCS(doc, "message", cJSON_CreateStringReference(msg)) &&
        cJSON_AddItemToObjectCS(doc, "request_id", cJSON_CreateStringReference(idbuf)))
        text = cJSON_PrintPreallocated(doc, buf, (int)sizeof buf, false)
                   ? buf
                   : (big = cJSON_PrintUnformatted(doc));
    cJSON_Delete(doc);
    if (!text) return GW_ERROR;
    char ra[24];
    int ralen = snprintf(ra, sizeof ra, "%llu", (unsigned long long)a->retry_after_s);
    h->header_set(req, GW_HDR_RESPONSE, "Retry-After", ra, (size_t)ralen);
    const char *state = cb_state_name(a->state);
    if (CB_HAS(h, req_set)) h->req_set(req, "breaker.state", state, strlen(state));
    int rc = h->respond(req, 503, "application/json", text, strlen(text));
    free(big);
    st->refused = true;
    return rc == 0 ? GW_RESPOND : GW_ERROR;
}

static void probe_cleanup(void *arg)
{
    cb_state *st = arg;
    if (st->admitted && st->probe) cb_release(st->svc, st->seq);
    st->admitted = false;
    st->probe = false;
}

static gw_result admit(cb_inst *in, cb_state *st, gw_req *req)
{
    cb_admit a;
    cb_try_admit(st->svc, &st->lim, req, &a);
    if (!a.allowed) return refuse(in, st, req, &a);
    st->admitted = true;
    st->seq = a.seq;
    st->probe = a.probe;
    if (a.probe && !st->cleanup_set) {
        if (in->h->on_cleanup(req, probe_cleanup, st) != 0) {
            cb_release(st->svc, st->seq);
            st->admitted = st->probe = false;
            return GW_ERROR;
        }
        st->cleanup_set = true;
    }
    return GW_CONTINUE;
}

gw_result cb_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    cb_inst *in = inst;
    cb_state *st = state;
    if (!bind_service(in, route_conf, st, req)) return GW_CONTINUE;
    return admit(in, st, req);
}

/* Attempts after the first ask again: their predecessor's outcome may have opened the breaker. */
gw_result cb_on_upstream_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    cb_inst *in = inst;
    cb_state *st = state;
    if (!bind_service(in, route_conf, st, req) || st->admitted) return GW_CONTINUE;
    return admit(in, st, req);
}

/* NULL for a success; else what failed, for the log ("upstream 503", "connect", "timeout", ...). */
static const char *failure_of(const gw_host *h, gw_req *req, char *buf, size_t len)
{
    const char *e = h->attempt_error(req);
    if (e) return e;
    int status = CB_HAS(h, upstream_status) ? h->upstream_status(req) : 0;
    if (!status) status = h->status(req);
    if (status < 500) return NULL;
    snprintf(buf, len, "upstream %d", status);
    return buf;
}

gw_result cb_on_upstream_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    cb_inst *in = inst;
    cb_state *st = state;
    (void)route_conf;
    if (!st->svc || st->refused) return GW_CONTINUE;
    char buf[32];
    const char *why = failure_of(in->h, req, buf, sizeof buf);
    uint32_t seq = st->seq;
    bool probe = st->probe;
    if (!st->admitted) {
        /* A later attempt that failed before its upstream_request phase (no connection): it asks now, and
         * an open breaker answers instead of the attempt's error, which also ends the retries. */
        cb_admit a;
        cb_try_admit(st->svc, &st->lim, req, &a);
        if (!a.allowed) return refuse(in, st, req, &a);
        seq = a.seq;
        probe = a.probe;
    }
    st->admitted = st->probe = false;
    cb_record(st->svc, &st->lim, req, seq, probe, why);
    return GW_CONTINUE;
}
