/* retry_test.c - unit tests of plugins/retry on the SDK test host and its fake clock: the backoff sequence
 * and its cap, jitter bounds over many draws, X-Retry-Count and "retry.count" (also on a final error), the
 * safety rules (methods after sending, POST on a connect failure, "closed", "invalid", route opt-in, bodies
 * not kept), max_retries 0 (globally and per route), the deadline, the budget's ratio and floor and its
 * window, the body kept for replay, settings errors. GW_PLUGIN_SO is the built filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "retry.so"
#endif

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

static void load(gw_th *th, const char *conf)
{
    if (gw_th_load(th, GW_PLUGIN_SO, conf) != 0) fail_msg("%s", gw_th_error(th));
    if (gw_th_route(th, "api", "/api", NULL) != 0) fail_msg("%s", gw_th_error(th));
}

static double metric(gw_th *th, const char *name, const char *svc)
{
    return gw_th_metric(th, name, (const char *const[]){svc});
}

/* A request on /api that meets `n` scripted outcomes: a status, or a failure named by a negative index
 * into fails[] (-1 connect, -2 timeout, -3 closed, -4 invalid); the last one repeats. */
static gw_req *run(gw_th *th, const char *method, const int *outcomes, size_t n)
{
    static const char *const fails[] = {"connect", "timeout", "closed", "invalid"};
    gw_req *r = gw_th_request(th, method, "/api/x");
    for (size_t i = 0; i < n; i++) {
        if (outcomes[i] < 0)
            assert_int_equal(gw_th_upstream_fail(r, fails[-outcomes[i] - 1]), 0);
        else
            assert_int_equal(gw_th_upstream_reply(r, outcomes[i], NULL, "x"), 0);
    }
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

#define RUN(th, m, ...) run(th, m, (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

static const char *retry_count(gw_req *r)
{
    return gw_th_header(r, GW_HDR_RESPONSE, "X-Retry-Count");
}

static void test_backoff_sequence_and_cap(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 5\ninitial_delay_ms: 100\nmax_delay_ms: 500\nmultiplier: 2\n"
             "jitter: 0\nbudget: false\n");
    uint64_t t0 = gw_th_host(th)->now_ms();
    gw_req *r = RUN(th, "GET", 503);
    assert_int_equal(gw_th_attempts(r), 6);
    const uint64_t want[] = {100, 200, 400, 500, 500};
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(gw_th_retry_delay(r, i + 1), want[i]);
    assert_int_equal(gw_th_retry_delay(r, 6), 0);
    assert_int_equal(gw_th_host(th)->now_ms() - t0, 1700); /* the delays passed on the clock */
    assert_int_equal(gw_th_status(r), 503);
    assert_string_equal(retry_count(r), "5");
    gw_strv v;
    assert_true(gw_th_value(r, "retry.count", &v));
    assert_int_equal(v.n, 1);
    assert_memory_equal(v.p, "5", 1);
    assert_true(metric(th, "gateway_retries_total", "api") == 5);
    assert_true(metric(th, "gateway_retries_exhausted_total", "api") == 1);
}

static void test_success_after_two_503(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\n"); /* the seed's defaults: 3, 100 ms, 5000 ms, 2.0, 0.1 */
    gw_req *r = RUN(th, "GET", 503, 503, 200);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(gw_th_attempts(r), 3);
    assert_string_equal(retry_count(r), "2");
    uint64_t d1 = gw_th_retry_delay(r, 1), d2 = gw_th_retry_delay(r, 2);
    assert_in_range(d1, 90, 110);
    assert_in_range(d2, 180, 220);
    assert_true(metric(th, "gateway_retries_total", "api") == 2);
    assert_true(metric(th, "gateway_retries_exhausted_total", "api") == 0);
    /* an answer that needed no retry has no header */
    r = RUN(th, "GET", 200);
    assert_null(retry_count(r));
    gw_strv v;
    assert_false(gw_th_value(r, "retry.count", &v));
}

static void test_jitter_bounds(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\ninitial_delay_ms: 1000\njitter: 0.25\nbudget: false\n");
    uint64_t lo = UINT64_MAX, hi = 0;
    double sum = 0;
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        gw_req *r = RUN(th, "GET", 502, 200);
        uint64_t d = gw_th_retry_delay(r, 1);
        assert_in_range(d, 750, 1250);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += (double)d;
    }
    /* uniform over [750, 1250]: the draws spread over the range, centred on 1000 */
    assert_in_range(lo, 750, 770);
    assert_in_range(hi, 1230, 1250);
    assert_in_range((uint64_t)(sum / n), 985, 1015);
}

static void test_jitter_stays_under_cap(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 4\ninitial_delay_ms: 800\nmax_delay_ms: 1000\njitter: 1\n"
             "budget: false\n");
    for (int i = 0; i < 200; i++) {
        gw_req *r = RUN(th, "GET", 504);
        for (unsigned k = 1; k <= 4; k++)
            assert_true(gw_th_retry_delay(r, k) <= 1000);
    }
}

static void test_max_retries_zero(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 0\n");
    gw_req *r = RUN(th, "GET", 503, 200);
    assert_int_equal(gw_th_status(r), 503);
    assert_int_equal(gw_th_attempts(r), 1);
    assert_null(retry_count(r));
    r = RUN(th, "GET", -1, 200);
    assert_int_equal(gw_th_status(r), 502);
    assert_int_equal(gw_th_attempts(r), 1);
}

static void test_statuses(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\njitter: 0\nbudget: false\n"); /* the budget has tests of its own */
    assert_int_equal(gw_th_attempts(RUN(th, "GET", 502, 200)), 2);
    assert_int_equal(gw_th_attempts(RUN(th, "GET", 504, 200)), 2);
    assert_int_equal(gw_th_attempts(RUN(th, "GET", 500, 200)), 1); /* not in retry_on */
    assert_int_equal(gw_th_attempts(RUN(th, "GET", 404, 200)), 1);
    assert_int_equal(gw_th_attempts(RUN(th, "GET", -2, 200)), 2); /* timeout */
    assert_int_equal(gw_th_attempts(RUN(th, "GET", -3, 200)), 2); /* closed, idempotent */
    assert_int_equal(gw_th_attempts(RUN(th, "GET", -4, 200)), 1); /* invalid answer: not retried */
}

static void test_idempotency(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\njitter: 0\nbudget: false\n");
    /* a POST that reached the upstream is never retried, whatever came back */
    gw_req *r = RUN(th, "POST", 503, 200);
    assert_int_equal(gw_th_status(r), 503);
    assert_int_equal(gw_th_attempts(r), 1);
    assert_null(retry_count(r));
    assert_int_equal(gw_th_attempts(RUN(th, "PATCH", 502, 200)), 1);
    assert_int_equal(gw_th_attempts(RUN(th, "POST", -2, 200)), 1); /* timed out after sending */
    assert_int_equal(gw_th_attempts(RUN(th, "POST", -3, 200)), 1); /* closed */
    /* nothing sent (connection refused): safe for any method */
    r = RUN(th, "POST", -1, -1, 201);
    assert_int_equal(gw_th_status(r), 201);
    assert_int_equal(gw_th_attempts(r), 3);
    assert_string_equal(retry_count(r), "2");
    /* the idempotent methods are retried after sending */
    const char *const methods[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(gw_th_attempts(RUN(th, methods[i], 503, 200)), 2);
}

static void test_route_opt_in(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\njitter: 0\n"), 0);
    assert_int_equal(gw_th_route(th, "orders", "/orders", "retry:\n  retry_non_idempotent: true\n"), 0);
    assert_int_equal(gw_th_route(th, "once", "/once", "retry:\n  max_retries: 0\n"), 0);
    assert_int_equal(gw_th_route(th, "api", "/api", NULL), 0);
    gw_req *r = gw_th_request(th, "POST", "/orders/1");
    gw_th_upstream_reply(r, 503, NULL, NULL);
    gw_th_upstream_reply(r, 200, NULL, NULL);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(retry_count(r), "1");
    assert_true(metric(th, "gateway_retries_total", "orders") == 1);
    r = gw_th_request(th, "GET", "/once");
    gw_th_upstream_reply(r, 503, NULL, NULL);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_attempts(r), 1);
    assert_int_equal(gw_th_attempts(RUN(th, "POST", 503, 200)), 1); /* elsewhere the rule holds */
}

static void test_not_replayable(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\n");
    gw_req *r = gw_th_request(th, "PUT", "/api/x");
    gw_th_request_body(r, "abc", 3);
    gw_th_request_replayable(r, false);
    gw_th_upstream_reply(r, 503, NULL, NULL);
    gw_th_upstream_reply(r, 200, NULL, NULL);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 503);
    assert_int_equal(gw_th_attempts(r), 1);
    assert_null(retry_count(r));
    assert_true(metric(th, "gateway_retries_total", "api") == 0);
}

static void test_body_kept_for_replay(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_replay_body: 1k\n");
    gw_req *r = gw_th_request(th, "PUT", "/api/x");
    gw_th_request_body(r, "0123456789", 10);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_body_buffer_max(r), 1024);
    static char big[2048];
    memset(big, 'a', sizeof big);
    r = gw_th_request(th, "PUT", "/api/x");
    gw_th_request_body(r, big, sizeof big);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_body_buffer_max(r), 0); /* streams: not asked, never a 413 */
    assert_int_equal(gw_th_status(r), 200);
    r = gw_th_request(th, "GET", "/api/x");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_body_buffer_max(r), 0);
}

static void test_final_error_has_count(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\njitter: 0\n");
    gw_req *r = RUN(th, "GET", -1);
    assert_int_equal(gw_th_status(r), 502);
    assert_int_equal(gw_th_attempts(r), 4);
    assert_string_equal(retry_count(r), "3");
    assert_non_null(strstr(gw_th_body(r, NULL), "\"error\""));
    assert_true(metric(th, "gateway_retries_exhausted_total", "api") == 1);
}

static void test_deadline(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 5\ninitial_delay_ms: 400\njitter: 0\ndeadline: 1s\nbudget: false\n");
    gw_req *r = RUN(th, "GET", 503);
    /* 400 ms: starts at 400 <= 1000; the next, 800 ms later, would start at 1200 */
    assert_int_equal(gw_th_attempts(r), 2);
    assert_string_equal(retry_count(r), "1");
    assert_true(metric(th, "gateway_retries_exhausted_total", "api") == 1);
}

/* What the budget arithmetic allows for `n` requests within one second, each wanting one retry. */
static unsigned expected_budget(unsigned n, double ratio, unsigned floor_per_s)
{
    unsigned retries = 0;
    for (unsigned i = 1; i <= n; i++)
        if ((double)retries < ratio * i || retries < floor_per_s) retries++;
    return retries;
}

static void test_budget_ratio_and_floor(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 1\ninitial_delay_ms: 0\njitter: 0\n"); /* 0.2, 10 s, 3/s */
    unsigned retried = 0;
    for (unsigned i = 0; i < 100; i++)
        retried += gw_th_attempts(RUN(th, "GET", 503)) - 1;
    unsigned want = expected_budget(100, 0.2, 3);
    assert_int_equal(want, 20);
    assert_int_equal(retried, want);
    assert_true(metric(th, "gateway_retries_total", "api") == want);
    assert_true(metric(th, "gateway_retry_budget_exhausted_total", "api") == 100 - want);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "retry budget of service api exhausted"), 1);
}

static void test_budget_floor_and_window(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 1\ninitial_delay_ms: 0\njitter: 0\nbudget_ratio: 0\n"
             "budget_min_per_second: 2\nbudget_window: 3s\n");
    unsigned retried = 0;
    for (unsigned i = 0; i < 5; i++)
        retried += gw_th_attempts(RUN(th, "GET", 503)) - 1;
    assert_int_equal(retried, 2);
    gw_th_advance(th, 1000); /* a new second: the floor again */
    retried = 0;
    for (unsigned i = 0; i < 5; i++)
        retried += gw_th_attempts(RUN(th, "GET", 503)) - 1;
    assert_int_equal(retried, 2);
    assert_true(metric(th, "gateway_retry_budget_exhausted_total", "api") == 6);
}

static void test_budget_window_expires(void **state)
{
    gw_th *th = *state;
    load(th, "name: retry\nmax_retries: 1\ninitial_delay_ms: 0\njitter: 0\nbudget_ratio: 0.5\n"
             "budget_min_per_second: 0\nbudget_window: 2s\n");
    /* 10 requests that succeed fill the window: 5 retries allowed */
    for (unsigned i = 0; i < 10; i++)
        RUN(th, "GET", 200);
    unsigned retried = 0;
    for (unsigned i = 0; i < 10; i++)
        retried += gw_th_attempts(RUN(th, "GET", 503)) - 1;
    assert_int_equal(retried, expected_budget(10, 0.5, 0) + 5); /* requests 11..20 against 10 before */
    gw_th_advance(th, 2500); /* those seconds left the window */
    retried = gw_th_attempts(RUN(th, "GET", 503)) - 1;
    assert_int_equal(retried, 1); /* 0 < 0.5 * 1 */
    retried = gw_th_attempts(RUN(th, "GET", 503)) - 1;
    assert_int_equal(retried, 0); /* 1 < 0.5 * 2 fails */
}

static void test_settings_errors(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\nretry_on: [503, 200]\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "pipeline.yaml:2:"));
    assert_non_null(strstr(gw_th_error(th), "retry.retry_on"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\nidempotent_methods: [GET, \"P T\"]\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "retry.idempotent_methods"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\nmax_retries: 16\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "retry.max_retries"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\njitter: 1.5\n"), -1);
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\nmultiplier: 0.5\n"), -1);
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\nbogus: 1\n"), -1);
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: retry\n"), 0);
    assert_int_equal(gw_th_route(th, "r", "/r", "retry:\n  retry_on: [99]\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "routes.yaml:"));
    assert_int_equal(gw_th_route(th, "r", "/r", "retry:\n  budget_ratio: 1\n"), -1); /* not per route */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backoff_sequence_and_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_after_two_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jitter_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jitter_stays_under_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_retries_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_opt_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_replayable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_kept_for_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_error_has_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_ratio_and_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_floor_and_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_window_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
