/* metrics_test.c - unit tests of plugins/metrics on the SDK test host and its fake clock: the counts by
 * method, route and status (OTHER methods, unmatched requests, a client gone before the answer), the
 * in-flight gauge balanced for waiting, aborted and unrouted requests, durations in the summary and the
 * histogram, the endpoint (content negotiation with q-values, HEAD, 405, a custom path), settings errors.
 * GW_PLUGIN_SO is the built filter. */
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
#define GW_PLUGIN_SO "metrics.so"
#endif

#define V(...) ((const char *const[]){__VA_ARGS__})

/* --- a stand-in filter after metrics that waits in the request phase when asked (X-Test-Wait) ---------- */

static const gw_host *wait_host;
static gw_req *waiting;

static gw_result wait_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)inst;
    (void)route_conf;
    (void)state;
    gw_strv v;
    if (!wait_host->header_get(req, GW_HDR_REQUEST, "X-Test-Wait", &v)) return GW_CONTINUE;
    waiting = req;
    return GW_WAIT;
}

static void *wait_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)self;
    (void)conf;
    (void)err;
    (void)errlen;
    wait_host = h;
    return (void *)&wait_host;
}

static const gw_filter_desc wait_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "waiter",
    .version = "1.0.0",
    .create = wait_create,
    .on_request = wait_on_request,
};

static int setup(void **state)
{
    gw_th *th = gw_th_new();
    if (gw_th_load(th, GW_PLUGIN_SO, "name: metrics\n") != 0) {
        fprintf(stderr, "load: %s\n", gw_th_error(th));
        return -1;
    }
    if (gw_th_add(th, &wait_desc, NULL) != 0 || gw_th_route(th, "api", "/api", NULL) != 0 ||
        gw_th_route(th, "users", "/users", NULL) != 0)
        return -1;
    *state = th;
    return 0;
}

static int teardown(void **state)
{
    gw_th_free(*state);
    return 0;
}

static void no_violations(gw_th *th)
{
    if (gw_th_violations(th)) {
        for (size_t i = 0; i < gw_th_log_count(th); i++)
            fprintf(stderr, "%s\n", gw_th_log_line(th, i, NULL));
        fail_msg("%u test host violations", gw_th_violations(th));
    }
}

static gw_req *run(gw_th *th, const char *method, const char *target, int up_status)
{
    gw_req *r = gw_th_request(th, method, target);
    if (up_status) gw_th_upstream_reply(r, up_status, NULL, "x");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static void test_counts(void **state)
{
    gw_th *th = *state;
    for (int i = 0; i < 3; i++)
        run(th, "GET", "/api/a", 200);
    run(th, "POST", "/api/b?x=\"1\"", 503);
    run(th, "BREW", "/users/7", 200);
    run(th, "get", "/users/7", 200);            /* methods are case-sensitive: not GET */
    run(th, "GET", "/nowhere/%E2%82%AC", 0);    /* no route: 404 */
    run(th, "GET", "/nowhere/\xe2\x82\xac", 0); /* not a valid target: 400 */
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("GET", "api", "200")) == 3);
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("POST", "api", "503")) == 1);
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("OTHER", "users", "200")) == 2);
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("GET", "unmatched", "404")) == 1);
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("GET", "unmatched", "400")) == 1);
    assert_true(gw_th_metric(th, "gateway_requests_in_flight", NULL) == 0);
    assert_int_equal(gw_th_metric_count(th, "gateway_http_request_duration_seconds", NULL), 8);
    assert_int_equal(gw_th_metric_count(th, "gateway_http_request_duration_ms", NULL), 8);
    no_violations(th);
}

static void test_in_flight_and_durations(void **state)
{
    gw_th *th = *state;
    const gw_host *h = gw_th_host(th);
    gw_req *r = gw_th_request(th, "GET", "/api/slow");
    gw_th_request_header(r, "X-Test-Wait", "1");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    assert_true(gw_th_metric(th, "gateway_requests_in_flight", NULL) == 1);
    gw_req *gone = gw_th_request(th, "GET", "/api/gone");
    gw_th_request_header(gone, "X-Test-Wait", "1");
    assert_int_equal(gw_th_run(gone), GW_TH_WAITING);
    assert_true(gw_th_metric(th, "gateway_requests_in_flight", NULL) == 2);
    gw_th_abort(gone); /* the client went away: out of the gauge, counted with the status it had */
    assert_true(gw_th_metric(th, "gateway_requests_in_flight", NULL) == 1);
    gw_th_advance(th, 250);
    h->resume(r, GW_CONTINUE);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_true(gw_th_metric(th, "gateway_requests_in_flight", NULL) == 0);
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("GET", "api", "200")) == 1);
    int st = gw_th_status(gone);
    char code[16];
    snprintf(code, sizeof code, "%d", st > 0 ? st : 499);
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("GET", "api", code)) == 1);
    /* 250 ms in the summary (ms) and the histogram (s): le=0.25 holds it, le=0.1 does not */
    /* the sketch's quantile is the observation of rank floor(q (n - 1)): of {0, 250}, q < 1 gives the 0 of
     * the aborted request, q = 1 the 250 ms one (within the sketch's 1 %) */
    assert_true(gw_th_metric_quantile(th, "gateway_http_request_duration_ms", NULL, 0.99) == 0);
    assert_true(fabs(gw_th_metric_quantile(th, "gateway_http_request_duration_ms", NULL, 1) - 250) <= 2.5);
    assert_int_equal(gw_th_metric_bucket(th, "gateway_http_request_duration_seconds", NULL, 0.25), 2);
    assert_int_equal(gw_th_metric_bucket(th, "gateway_http_request_duration_seconds", NULL, 0.1), 1);
    assert_true(fabs(gw_th_metric(th, "gateway_http_request_duration_seconds", NULL) - 0.25) < 1e-9);
    assert_true(fabs(gw_th_metric(th, "gateway_http_request_duration_ms", NULL) - 250) < 1e-6);
    /* a minute on, the window is empty but the count stays */
    gw_th_advance(th, 61000);
    assert_true(isnan(gw_th_metric_quantile(th, "gateway_http_request_duration_ms", NULL, 0.5)));
    assert_int_equal(gw_th_metric_count(th, "gateway_http_request_duration_ms", NULL), 2);
    no_violations(th);
}

static gw_req *scrape(gw_th *th, const char *method, const char *accept)
{
    gw_req *r = gw_th_request(th, method, "/metrics");
    if (accept) gw_th_request_header(r, "Accept", accept);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static bool is_json(gw_th *th, const char *accept)
{
    gw_req *r = scrape(th, "GET", accept);
    assert_int_equal(gw_th_status(r), 200);
    const char *ct = gw_th_header(r, GW_HDR_RESPONSE, "Content-Type");
    assert_non_null(ct);
    if (strcmp(ct, "application/json") == 0) {
        cJSON *j = cJSON_Parse(gw_th_body(r, NULL));
        assert_non_null(j);
        cJSON_Delete(j);
        return true;
    }
    assert_string_equal(ct, "text/plain; version=0.0.4; charset=utf-8");
    return false;
}

static void test_endpoint(void **state)
{
    gw_th *th = *state;
    run(th, "GET", "/api/a", 200);
    gw_req *r = scrape(th, "GET", NULL);
    assert_int_equal(gw_th_status(r), 200);
    const char *body = gw_th_body(r, NULL);
    assert_non_null(strstr(body,
                           "# TYPE gateway_http_requests_total counter\n"
                           "gateway_http_requests_total{method=\"GET\",route=\"api\",status=\"200\"} 1\n"));
    assert_non_null(strstr(body, "# TYPE gateway_http_request_duration_ms summary\n"
                                 "gateway_http_request_duration_ms{quantile=\"0.5\"} "));
    assert_non_null(strstr(body, "gateway_http_request_duration_ms{quantile=\"0.95\"} "));
    assert_non_null(strstr(body, "gateway_http_request_duration_ms{quantile=\"0.99\"} "));
    assert_non_null(strstr(body, "gateway_http_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(body, "gateway_http_request_duration_seconds_bucket{le=\"10\"} 1\n"));
    /* the scrape itself is in flight while it renders */
    assert_non_null(strstr(body, "gateway_requests_in_flight 1\n"));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Accept");

    assert_false(is_json(th, "text/plain"));
    assert_false(is_json(th, "*/*"));
    assert_false(is_json(th, "image/png"));
    assert_false(is_json(th, "application/json, text/plain")); /* a tie: text */
    assert_false(is_json(th, "application/json;q=0.5, text/plain"));
    assert_false(is_json(th, "application/json;q=0, */*"));
    assert_false(is_json(th,
                         "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,"
                         "*/*;q=0.2")); /* what a Prometheus server sends */
    assert_true(is_json(th, "application/json"));
    assert_true(is_json(th, "Application/JSON"));
    assert_true(is_json(th, "text/plain;q=0.1, application/json"));
    assert_true(is_json(th, "text/*;q=0.2, application/*"));
    assert_true(is_json(th, " application/json ; q=0.9 , text/plain ; q=0.8"));

    /* the JSON agrees with the text */
    r = scrape(th, "GET", "application/json");
    cJSON *j = cJSON_Parse(gw_th_body(r, NULL)), *f, *found = NULL;
    cJSON_ArrayForEach(
        f, cJSON_GetObjectItem(j, "metrics")) if (!strcmp(cJSON_GetObjectItem(f, "name")->valuestring,
                                                          "gateway_http_requests_total")) found = f;
    assert_non_null(found);
    cJSON *s = NULL, *it;
    cJSON_ArrayForEach(
        it, cJSON_GetObjectItem(
                found, "series")) if (!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "labels"), "route")
                                                  ->valuestring,
                                              "api")) s = it;
    assert_non_null(s);
    assert_true(cJSON_GetObjectItem(s, "value")->valuedouble == 1);
    cJSON_Delete(j);

    r = scrape(th, "HEAD", NULL);
    assert_int_equal(gw_th_status(r), 200);
    r = scrape(th, "POST", NULL);
    assert_int_equal(gw_th_status(r), 405);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Allow"), "GET, HEAD");
    /* scrapes are requests too: counted under their endpoint's path */
    assert_true(gw_th_metric(th, "gateway_http_requests_total", V("GET", "/metrics", "200")) >= 13);
    no_violations(th);
}

static void test_settings(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"name: metrics\nquantiles: [0.5, 1.5]\n", "metrics.quantiles"},
        {"name: metrics\nquantiles: [0.9, 0.5]\n", "ascending"},
        {"name: metrics\nbuckets: [0.1, 0.05]\n", "metrics.buckets"},
        {"name: metrics\nbuckets: [0.1, abc]\n", "not a number"},
        {"name: metrics\npath: metrics\n", "metrics.path"},
        {"name: metrics\nbogus: 1\n", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gw_th *th = gw_th_new();
        assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, bad[i].yaml), -1);
        const char *e = gw_th_error(th);
        if (!strstr(e, bad[i].want) || !strstr(e, ":2:")) fail_msg("%s: %s", bad[i].yaml, e);
        gw_th_free(th);
    }
    gw_th *th = gw_th_new();
    assert_int_equal(
        gw_th_load(th, GW_PLUGIN_SO,
                   "name: metrics\npath: /internal/prom\nquantiles: [0.25, 0.75]\nbuckets: [1, 2]\n"),
        0);
    assert_int_equal(gw_th_route(th, "api", "/api", NULL), 0); /* so that /metrics matches nothing */
    gw_req *r = gw_th_request(th, "GET", "/internal/prom");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    const char *body = gw_th_body(r, NULL);
    assert_non_null(strstr(body, "gateway_http_request_duration_ms{quantile=\"0.25\"} NaN\n"));
    assert_non_null(strstr(body, "gateway_http_request_duration_seconds_bucket{le=\"2\"} 0\n"));
    r = gw_th_request(th, "GET", "/metrics");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 404); /* no longer served there */
    no_violations(th);
    gw_th_free(th);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_and_durations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endpoint, setup, teardown),
        cmocka_unit_test(test_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
