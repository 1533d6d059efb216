/* cb_admin.c - the endpoints under /admin/circuit-breakers (adminauth guards everything under /admin):
 *
 *   GET  /admin/circuit-breakers               {"status":"success","data":[{"name","state","failures",
 *                                               "consecutive_successes","last_failure"?}...]} in config order
 *   POST /admin/circuit-breakers/reset         every breaker closed, counters cleared
 *   POST /admin/circuit-breakers/{name}/reset  that one; 404 JSON for an unknown name
 *
 * Other methods: 405 with Allow; other paths below: 404. An open breaker whose timeout has passed is moved
 * to half-open before it is listed, as the next request would. */
#include "breaker.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static gw_result respond_doc(const gw_host *h, gw_req *req, int status, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) return GW_ERROR;
    int rc = h->respond(req, status, "application/json", text, strlen(text));
    free(text);
    return rc == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result answer_error(const gw_host *h, gw_req *req, int status, const char *message)
{
    return h->respond_error(req, status, message) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result answer_message(const gw_host *h, gw_req *req, const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc || !cJSON_AddStringToObject(doc, "status", "success") ||
        !cJSON_AddStringToObject(doc, "message", message)) {
        cJSON_Delete(doc);
        return GW_ERROR;
    }
    return respond_doc(h, req, 200, doc);
}

static gw_result method_not_allowed(const gw_host *h, gw_req *req, const char *allow)
{
    h->header_set(req, GW_HDR_RESPONSE, "Allow", allow, strlen(allow));
    return answer_error(h, req, 405, "The method is not allowed on this endpoint");
}

static void rfc3339(uint64_t unix_ms, char out[32])
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

static cJSON *breaker_json(cb_svc *s, gw_req *req)
{
    uint64_t w = cb_refresh(s, req);
    uint64_t last = atomic_load(&s->b->last_failure_unix_ms);
    cJSON *o = cJSON_CreateObject();
    char when[32];
    if (last) rfc3339(last, when);
    if (!o || !cJSON_AddStringToObject(o, "name", s->name) ||
        !cJSON_AddStringToObject(o, "state", cb_state_name(CB_W_STATE(w))) ||
        !cJSON_AddNumberToObject(o, "failures", (double)atomic_load(&s->b->failures)) ||
        !cJSON_AddNumberToObject(o, "consecutive_successes", (double)atomic_load(&s->b->successes)) ||
        (last && !cJSON_AddStringToObject(o, "last_failure", when))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static gw_result list(cb_inst *in, gw_req *req)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *data =
        doc && cJSON_AddStringToObject(doc, "status", "success") ? cJSON_AddArrayToObject(doc, "data") : NULL;
    if (!data) {
        cJSON_Delete(doc);
        return GW_ERROR;
    }
    for (size_t i = 0; i < in->nsvc; i++) {
        cJSON *o = breaker_json(&in->svc[i], req);
        if (!o) {
            cJSON_Delete(doc);
            return GW_ERROR;
        }
        cJSON_AddItemToArray(data, o);
    }
    return respond_doc(in->h, req, 200, doc);
}

static bool method_is(gw_strv m, const char *name)
{
    size_t n = strlen(name);
    return m.n == n && memcmp(m.p, name, n) == 0;
}

static bool equals(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

gw_result cb_admin_endpoint(void *inst, void *route_conf, void *state, gw_req *req)
{
    cb_inst *in = inst;
    const gw_host *h = in->h;
    (void)route_conf;
    (void)state;
    gw_strv path = h->path(req), m = h->method(req);
    size_t plen = sizeof CB_ADMIN_PATH - 1;
    if (path.n < plen || memcmp(path.p, CB_ADMIN_PATH, plen) != 0)
        return answer_error(h, req, 404, "Not found");
    const char *rest = path.p + plen;
    size_t rn = path.n - plen;
    if (rn == 0 || equals(rest, rn, "/")) {
        if (method_is(m, "GET") || method_is(m, "HEAD")) return list(in, req);
        return method_not_allowed(h, req, "GET, HEAD");
    }
    if (equals(rest, rn, "/reset")) {
        if (!method_is(m, "POST")) return method_not_allowed(h, req, "POST");
        for (size_t i = 0; i < in->nsvc; i++)
            cb_reset(&in->svc[i], req);
        return answer_message(h, req, "All circuit breakers reset");
    }
    /* /{name}/reset */
    static const char suffix[] = "/reset";
    size_t sl = sizeof suffix - 1;
    if (rn > sl + 1 && rest[0] == '/' && memcmp(rest + rn - sl, suffix, sl) == 0 &&
        !memchr(rest + 1, '/', rn - 1 - sl)) {
        if (!method_is(m, "POST")) return method_not_allowed(h, req, "POST");
        cb_svc *s = cb_find(in, rest + 1, rn - 1 - sl);
        if (!s) return answer_error(h, req, 404, "Circuit breaker not found");
        cb_reset(s, req);
        char msg[400];
        snprintf(msg, sizeof msg, "Circuit breaker for %s reset", s->name);
        return answer_message(h, req, msg);
    }
    return answer_error(h, req, 404, "Not found");
}
