/* breaker_test.c - unit tests of plugins/breaker on the SDK test host and its fake clock: the admin listing
 * before any traffic, closed -> open after exactly max_failures (5xx and every attempt error; 4xx is a
 * success and resets the count), the 503 JSON and Retry-After, half-open probe slots (freed by a success, by
 * a client abort, by a timeout), half-open -> closed and -> open, reset one / all / 404 / 405, the state
 * gauge moved by exact deltas and the trips counter, state kept by a second test host (a reload), retries
 * ended by the breaker's 503, per-service overrides and settings errors. GW_PLUGIN_SO is the built filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "breaker.so"
#endif

#define CONF                                                                                                 \
    "name: breaker\nmax_failures: 3\nreset_timeout: 10s\nhalf_open_max_requests: 2\nsuccess_threshold: 2\n"

#define assert_near(a, b)                                                                                    \
    do {                                                                                                     \
        double a_ = (a), b_ = (b);                                                                           \
        if (!(fabs(a_ - b_) < 1e-9)) fail_msg("%s = %g, expected %g", #a, a_, b_);                           \
    } while (0)

/* --- "hold": a filter after the breaker that keeps a request waiting (a probe in flight) ------------- */

/* The instance is the host table (each test host has its own). */
static void *host_as_inst(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)self;
    (void)conf;
    (void)err;
    (void)errlen;
    return (void *)h;
}

static gw_result hold_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    const gw_host *h = inst;
    (void)route_conf;
    (void)state;
    gw_strv v;
    return h->header_get(req, GW_HDR_REQUEST, "X-Hold", &v) ? GW_WAIT : GW_CONTINUE;
}

static const gw_filter_desc hold_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "hold",
    .version = "1.0.0",
    .create = host_as_inst,
    .on_request = hold_on_request,
};

/* --- "retry": retries every 5xx or failed attempt, before the breaker in the pipeline ------------------- */

static gw_result retry_on_upstream_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    const gw_host *h = inst;
    (void)route_conf;
    (void)state;
    if (h->status(req) < 500 || h->attempts(req) >= 8) return GW_CONTINUE;
    h->retry_after(req, 10);
    return GW_RETRY;
}

static const gw_filter_desc retry_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "retry",
    .version = "1.0.0",
    .create = host_as_inst,
    .on_upstream_response = retry_on_upstream_response,
};

/* --- helpers --------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
    return 0;
}

/* Routes first: the test host's services are its route names at create(). */
static void load(gw_th *th, const char *conf)
{
    assert_int_equal(gw_th_route(th, "svc-a", "/a", NULL), 0);
    assert_int_equal(gw_th_route(th, "svc-b", "/b", NULL), 0);
    if (gw_th_load(th, GW_PLUGIN_SO, conf ? conf : CONF) != 0) fail_msg("%s", gw_th_error(th));
    assert_int_equal(gw_th_add(th, &hold_desc, "name: hold\n"), 0);
}

/* One request whose upstream answers `status`, or fails with `fail` when not NULL. */
static gw_req *call(gw_th *th, const char *path, int status, const char *fail)
{
    gw_req *r = gw_th_request(th, "GET", path);
    if (fail)
        assert_int_equal(gw_th_upstream_fail(r, fail), 0);
    else
        assert_int_equal(gw_th_upstream_reply(r, status, NULL, "x"), 0);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static int status_of(gw_th *th, const char *path, int status)
{
    return gw_th_status(call(th, path, status, NULL));
}

/* A probe held in flight by "hold" (its upstream will answer `status`). */
static gw_req *held(gw_th *th, const char *path, int status)
{
    gw_req *r = gw_th_request(th, "GET", path);
    gw_th_request_header(r, "X-Hold", "1");
    gw_th_upstream_reply(r, status, NULL, "x");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    return r;
}

static void release(gw_th *th, gw_req *r)
{
    gw_th_host(th)->resume(r, GW_CONTINUE);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
}

static gw_req *admin(gw_th *th, const char *method, const char *path)
{
    gw_req *r = gw_th_request(th, method, path);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_false(gw_th_upstream_called(r));
    return r;
}

static cJSON *json_of(gw_req *r)
{
    cJSON *doc = cJSON_Parse(gw_th_body(r, NULL));
    if (!doc) fail_msg("not JSON: %s", gw_th_body(r, NULL));
    return doc;
}

/* The listing's entry for `name` (owned by doc). */
static const cJSON *entry(const cJSON *doc, const char *name)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data"), *e;
    cJSON_ArrayForEach(e, data)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return e;
    }
    fail_msg("no breaker %s listed", name);
    return NULL;
}

typedef struct {
    char state[16];
    int failures, successes;
    char last_failure[40]; /* "" when absent */
} listed;

static listed list_one(gw_th *th, const char *name)
{
    gw_req *r = admin(th, "GET", "/admin/circuit-breakers");
    assert_int_equal(gw_th_status(r), 200);
    cJSON *doc = json_of(r);
    const cJSON *e = entry(doc, name);
    listed l = {0};
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "state");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "failures");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "consecutive_successes");
    const cJSON *lf = cJSON_GetObjectItemCaseSensitive(e, "last_failure");
    assert_true(cJSON_IsString(st) && cJSON_IsNumber(f) && cJSON_IsNumber(s));
    snprintf(l.state, sizeof l.state, "%s", st->valuestring);
    l.failures = f->valueint;
    l.successes = s->valueint;
    if (lf) {
        assert_true(cJSON_IsString(lf));
        snprintf(l.last_failure, sizeof l.last_failure, "%s", lf->valuestring);
    }
    assert_int_equal(cJSON_GetArraySize(e), lf ? 5 : 4);
    cJSON_Delete(doc);
    return l;
}

static double gauge(gw_th *th, const char *svc)
{
    return gw_th_metric(th, "gateway_circuit_breaker_state", (const char *const[]){svc});
}

static double trips(gw_th *th, const char *svc)
{
    return gw_th_metric(th, "gateway_circuit_breaker_trips_total", (const char *const[]){svc});
}

static void open_it(gw_th *th, const char *path)
{
    for (int i = 0; i < 3; i++)
        assert_int_equal(status_of(th, path, 500), 500);
}

/* The breaker's own 503: exact body, Retry-After, upstream untouched. */
static void assert_refused(gw_req *r, const char *svc, const char *retry_after)
{
    assert_int_equal(gw_th_status(r), 503);
    assert_false(gw_th_upstream_called(r));
    char want[400];
    snprintf(want, sizeof want,
             "{\"error\":\"Service unavailable\",\"message\":\"Circuit breaker is open for "
             "%s\",\"request_id\":\"%s\"}",
             svc, gw_th_header(r, GW_HDR_RESPONSE, "X-Request-Id"));
    assert_string_equal(gw_th_body(r, NULL), want);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Retry-After"), retry_after);
}

/* --- tests ------------------------------------------------------------------------------------------- */

static void test_listed_before_traffic(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    gw_req *r = admin(th, "GET", "/admin/circuit-breakers");
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(
        gw_th_body(r, NULL),
        "{\"status\":\"success\",\"data\":["
        "{\"name\":\"svc-a\",\"state\":\"closed\",\"failures\":0,\"consecutive_successes\":0},"
        "{\"name\":\"svc-b\",\"state\":\"closed\",\"failures\":0,\"consecutive_successes\":0}]}");
    assert_near(gauge(th, "svc-a"), 1);
    assert_near(gauge(th, "svc-b"), 1);
    assert_near(trips(th, "svc-a"), 0);
}

static void test_opens_after_exactly_max_failures(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    assert_int_equal(status_of(th, "/a/x", 500), 500);
    assert_int_equal(status_of(th, "/a/x", 503), 503);
    assert_int_equal(status_of(th, "/a/x", 200), 200); /* a success resets the count */
    listed l = list_one(th, "svc-a");
    assert_string_equal(l.state, "closed");
    assert_int_equal(l.failures, 0);
    assert_int_equal(l.successes, 1);
    assert_string_equal(l.last_failure, "2023-11-14T22:13:20Z");
    assert_int_equal(status_of(th, "/a/x", 500), 500);
    assert_int_equal(status_of(th, "/a/x", 500), 500);
    assert_string_equal(list_one(th, "svc-a").state, "closed");
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "open"), 0);
    assert_int_equal(status_of(th, "/a/x", 500), 500); /* the third in a row */
    assert_int_equal(
        gw_th_log_find(th, GW_LOG_WARN,
                       "circuit breaker for svc-a: closed -> open (3 consecutive failures, last: "
                       "upstream 500)"),
        1);
    l = list_one(th, "svc-a");
    assert_string_equal(l.state, "open");
    assert_int_equal(l.failures, 3);
    assert_int_equal(l.successes, 0);

    gw_req *r = call(th, "/a/x", 200, NULL);
    assert_refused(r, "svc-a", "10");
    gw_strv v;
    assert_true(gw_th_value(r, "breaker.state", &v));
    assert_true(v.n == 4 && memcmp(v.p, "open", 4) == 0);
    gw_th_advance(th, 4500);
    assert_refused(call(th, "/a/x", 200, NULL), "svc-a", "6"); /* 5.5 s left, rounded up */
    assert_int_equal(status_of(th, "/b/x", 200), 200);         /* the other service is untouched */
    assert_near(gauge(th, "svc-a"), 0);
    assert_near(gauge(th, "svc-b"), 1);
    assert_near(trips(th, "svc-a"), 1);
    assert_near(trips(th, "svc-b"), 0);
}

static void test_failure_kinds(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    call(th, "/a", 0, "connect");
    call(th, "/a", 0, "timeout");
    assert_int_equal(list_one(th, "svc-a").failures, 2);
    assert_int_equal(status_of(th, "/a", 404), 404); /* a client error is the service working */
    assert_int_equal(list_one(th, "svc-a").failures, 0);
    call(th, "/a", 0, "closed");
    call(th, "/a", 0, "invalid");
    assert_string_equal(list_one(th, "svc-a").state, "closed");
    call(th, "/a", 0, "timeout");
    assert_string_equal(list_one(th, "svc-a").state, "open");
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "(3 consecutive failures, last: timeout)"), 1);
}

static void test_half_open_probe_slots(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    open_it(th, "/a");
    gw_th_advance(th, 9999);
    assert_refused(call(th, "/a", 200, NULL), "svc-a", "1");
    gw_th_advance(th, 1);
    gw_req *p1 = held(th, "/a", 200); /* half-opens it: the first probe */
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "svc-a: open -> half-open (reset timeout passed)"), 1);
    assert_near(gauge(th, "svc-a"), 0.5);
    gw_req *p2 = held(th, "/a", 200);
    gw_req *r = call(th, "/a", 200, NULL); /* two in flight: no third */
    assert_refused(r, "svc-a", "1");
    gw_strv v;
    assert_true(gw_th_value(r, "breaker.state", &v) && v.n == 9 && memcmp(v.p, "half-open", 9) == 0);
    assert_string_equal(list_one(th, "svc-a").state, "half-open");

    release(th, p1); /* a success (1 of 2) frees its slot */
    assert_int_equal(gw_th_status(p1), 200);
    assert_string_equal(list_one(th, "svc-a").state, "half-open");
    gw_req *p3 = held(th, "/a", 200);
    assert_int_equal(status_of(th, "/a", 200), 503);
    gw_th_abort(p3); /* the client went away: slot freed, no outcome */
    gw_req *p4 = held(th, "/a", 200);
    assert_int_equal(status_of(th, "/a", 200), 503);
    listed l = list_one(th, "svc-a");
    assert_string_equal(l.state, "half-open");
    assert_int_equal(l.successes, 1);

    release(th, p2); /* the second success closes it */
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "svc-a: half-open -> closed (2 successes)"), 1);
    assert_near(gauge(th, "svc-a"), 1);
    assert_string_equal(list_one(th, "svc-a").state, "closed");
    release(th, p4); /* a probe of the period that ended: changes nothing */
    assert_string_equal(list_one(th, "svc-a").state, "closed");
    for (int i = 0; i < 5; i++)
        assert_int_equal(status_of(th, "/a", 200), 200);
    assert_near(trips(th, "svc-a"), 1);
}

static void test_probe_failure_reopens(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    open_it(th, "/a");
    gw_th_advance(th, 10000);
    call(th, "/a", 0, "timeout"); /* the probe timed out: open again, a new period */
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "svc-a: half-open -> open (probe failed: timeout)"), 1);
    assert_refused(call(th, "/a", 200, NULL), "svc-a", "10");
    assert_near(trips(th, "svc-a"), 2);
    assert_near(gauge(th, "svc-a"), 0);
    gw_th_advance(th, 10000);
    gw_req *p1 = held(th, "/a", 200);
    assert_int_equal(status_of(th, "/a", 502), 502); /* the second probe fails at once */
    assert_string_equal(list_one(th, "svc-a").state, "open");
    release(th, p1); /* its period is over: its success counts for nothing */
    assert_string_equal(list_one(th, "svc-a").state, "open");
    assert_int_equal(list_one(th, "svc-a").successes, 0);
    assert_near(trips(th, "svc-a"), 3);
    assert_near(gauge(th, "svc-a"), 0);
}

/* svc-b: half_open_max_requests 1 and max_failures 1 from the per-service settings. */
static void test_service_overrides_and_abort(void **state)
{
    gw_th *th = *state;
    load(th, CONF "services:\n  svc-b:\n    half_open_max_requests: 1\n    max_failures: 1\n"
                  "    reset_timeout: 2s\n");
    assert_int_equal(status_of(th, "/b", 500), 500);
    assert_refused(call(th, "/b", 200, NULL), "svc-b", "2");
    gw_th_advance(th, 2000);
    gw_req *p = held(th, "/b", 200);
    assert_int_equal(status_of(th, "/b", 200), 503);
    gw_th_abort(p); /* never sticks half-open */
    gw_req *q = held(th, "/b", 200);
    assert_int_equal(status_of(th, "/b", 200), 503);
    release(th, q);
    assert_int_equal(list_one(th, "svc-b").successes, 1);
    assert_int_equal(status_of(th, "/b", 200), 200); /* second probe: closes (threshold 2) */
    assert_string_equal(list_one(th, "svc-b").state, "closed");
    /* svc-a keeps the pipeline's settings */
    assert_int_equal(status_of(th, "/a", 500), 500);
    assert_string_equal(list_one(th, "svc-a").state, "closed");
}

static void test_reset_endpoints(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    open_it(th, "/a");
    open_it(th, "/b");
    gw_req *r = admin(th, "POST", "/admin/circuit-breakers/svc-a/reset");
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_body(r, NULL),
                        "{\"status\":\"success\",\"message\":\"Circuit breaker for svc-a reset\"}");
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "svc-a: open -> closed (reset by admin)"), 1);
    listed l = list_one(th, "svc-a");
    assert_string_equal(l.state, "closed");
    assert_int_equal(l.failures, 0);
    assert_int_equal(status_of(th, "/a", 200), 200);
    assert_int_equal(status_of(th, "/b", 200), 503);
    assert_near(gauge(th, "svc-a"), 1);
    assert_near(gauge(th, "svc-b"), 0);

    r = admin(th, "POST", "/admin/circuit-breakers/nope/reset");
    assert_int_equal(gw_th_status(r), 404);
    cJSON *doc = json_of(r);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "message")->valuestring,
                        "Circuit breaker not found");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(doc, "error"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(doc, "request_id"));
    cJSON_Delete(doc);
    r = admin(th, "GET", "/admin/circuit-breakers/svc-a/reset");
    assert_int_equal(gw_th_status(r), 405);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Allow"), "POST");
    r = admin(th, "DELETE", "/admin/circuit-breakers");
    assert_int_equal(gw_th_status(r), 405);
    assert_int_equal(gw_th_status(admin(th, "GET", "/admin/circuit-breakers/svc-a")), 404);
    assert_int_equal(gw_th_status(admin(th, "POST", "/admin/circuit-breakers/svc-a/b/reset")), 404);

    r = admin(th, "POST", "/admin/circuit-breakers/reset");
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_body(r, NULL),
                        "{\"status\":\"success\",\"message\":\"All circuit breakers reset\"}");
    assert_string_equal(list_one(th, "svc-b").state, "closed");
    assert_int_equal(status_of(th, "/b", 200), 200);
    assert_near(gauge(th, "svc-a"), 1);
    assert_near(gauge(th, "svc-b"), 1);
    assert_near(trips(th, "svc-b"), 1);
}

static void test_listing_moves_due_breaker(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    open_it(th, "/a");
    gw_th_advance(th, 10000);
    assert_string_equal(list_one(th, "svc-a").state, "half-open");
    assert_string_equal(list_one(th, "svc-a").state, "half-open");
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "open -> half-open"), 1);
    assert_near(gauge(th, "svc-a"), 0.5);
    /* it admits its probes as if a request had half-opened it */
    gw_req *p1 = held(th, "/a", 200), *p2 = held(th, "/a", 200);
    assert_int_equal(status_of(th, "/a", 200), 503);
    release(th, p1);
    release(th, p2);
    assert_string_equal(list_one(th, "svc-a").state, "closed");
    assert_near(gauge(th, "svc-a"), 1);
}

/* A second test host loading the filter while the first lives stands for a reload. */
static void test_state_survives_reload(void **state)
{
    gw_th *th = *state;
    load(th, NULL);
    open_it(th, "/a");
    assert_int_equal(status_of(th, "/b", 500), 500);

    gw_th *th2 = gw_th_new();
    load(th2, NULL);
    listed l = list_one(th2, "svc-a");
    assert_string_equal(l.state, "open");
    assert_int_equal(l.failures, 3);
    assert_int_equal(list_one(th2, "svc-b").failures, 1);
    assert_refused(call(th2, "/a", 200, NULL), "svc-a", "10");
    assert_int_equal(gw_th_status(admin(th2, "POST", "/admin/circuit-breakers/svc-a/reset")), 200);
    assert_int_equal(status_of(th, "/a", 200), 200); /* the old generation sees the same breaker */
    assert_int_equal(status_of(th2, "/b", 500), 500);
    assert_int_equal(status_of(th, "/b", 500), 500); /* the third failure, counted across both */
    assert_string_equal(list_one(th, "svc-b").state, "open");
    assert_int_equal(gw_th_violations(th2), 0);
    gw_th_free(th2);
    assert_string_equal(list_one(th, "svc-b").state, "open");
}

/* retry runs its upstream_response after the breaker's: the attempt that opens the breaker is retried, and
 * the breaker's upstream_request answers the next attempt with its 503. */
static void test_retries_end_with_breaker_503(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_route(th, "svc-a", "/a", NULL), 0);
    assert_int_equal(gw_th_add(th, &retry_desc, "name: retry\n"), 0);
    if (gw_th_load(th, GW_PLUGIN_SO, CONF) != 0) fail_msg("%s", gw_th_error(th));
    gw_req *r = gw_th_request(th, "GET", "/a");
    gw_th_upstream_reply(r, 500, NULL, "x");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 503);
    assert_non_null(strstr(gw_th_body(r, NULL), "Circuit breaker is open for svc-a"));
    assert_true(gw_th_attempts(r) >= 3 && gw_th_attempts(r) <= 4);
    assert_near(trips(th, "svc-a"), 1);
    /* a connect failure on a retry (no upstream_request phase for it) still counts */
    assert_int_equal(gw_th_status(admin(th, "POST", "/admin/circuit-breakers/reset")), 200);
    r = gw_th_request(th, "GET", "/a");
    gw_th_upstream_fail(r, "connect");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 503);
    assert_near(trips(th, "svc-a"), 2);
}

static void test_settings_errors(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_route(th, "svc-a", "/a", NULL), 0);
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nservices:\n  nope: {max_failures: 2}\n"),
                     -1);
    assert_non_null(strstr(gw_th_error(th), "pipeline.yaml:3:"));
    assert_non_null(strstr(gw_th_error(th), "breaker.services.nope: no service of that name is configured"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nservices:\n  svc-a: {max_fails: 2}\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "breaker.services.max_fails: unknown setting"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nservices:\n  svc-a: {max_failures: 0}\n"),
                     -1);
    assert_non_null(strstr(gw_th_error(th), "breaker.services.max_failures: expected an integer from 1"));
    assert_int_equal(
        gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nservices:\n  svc-a: {reset_timeout: soon}\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "breaker.services.reset_timeout"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nservices: [svc-a]\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "breaker.services: expected a mapping"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nmax_failures: 0\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "breaker.max_failures"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nhalf_open_max_requests: 5000\n"), -1);
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: breaker\nreset_timeout: 1\n"),
                     0); /* bare: seconds */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listed_before_traffic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opens_after_exactly_max_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_open_probe_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_failure_reopens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_overrides_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing_moves_due_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_survives_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_end_with_breaker_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
