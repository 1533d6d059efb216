/* test_example.c - unit tests of the example filter on the SDK's test host (no sockets, no gateway).
 * EXAMPLE_SO is the path of the built filter (set by the build; the environment variable of the same name
 * overrides it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

#ifndef EXAMPLE_SO
#define EXAMPLE_SO "example.so"
#endif

static const char *so_path(void)
{
    const char *p = getenv("EXAMPLE_SO");
    return p && *p ? p : EXAMPLE_SO;
}

static const char *const CONF = "name: example\n"
                                "response_header: {name: X-Example, value: hi}\n"
                                "reject_if_header: {name: X-Block, value: 'yes'}\n";

static int setup(void **state)
{
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_violations(th), 0); /* the filter used the host API correctly */
    gw_th_free(th);
    return 0;
}

static void load(gw_th *th, const char *conf)
{
    if (gw_th_load(th, so_path(), conf) != 0) fail_msg("%s", gw_th_error(th));
}

static void test_header_added(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    gw_req *r = gw_th_request(th, "GET", "/api/users/1?x=1");
    gw_th_upstream_reply(r, 200, "Content-Type: text/plain\n", "hello");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Example"), "hi");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "text/plain");
    assert_string_equal(gw_th_body(r, NULL), "hello");
    assert_true(gw_th_upstream_called(r));
    assert_string_equal(gw_th_upstream_target(r), "/api/users/1?x=1");
}

static void test_route_override(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    assert_int_equal(gw_th_route(th, "special", "/special",
                                 "example:\n  response_header: {name: X-Example, value: special}\n"),
                     0);
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);

    gw_req *a = gw_th_request(th, "GET", "/special/1");
    gw_req *b = gw_th_request(th, "GET", "/other");
    assert_int_equal(gw_th_run(a), GW_TH_DONE);
    assert_int_equal(gw_th_run(b), GW_TH_DONE);
    assert_string_equal(gw_th_header(a, GW_HDR_RESPONSE, "X-Example"), "special");
    assert_string_equal(gw_th_header(b, GW_HDR_RESPONSE, "X-Example"), "hi");
    assert_int_equal(gw_th_header_count(a, GW_HDR_RESPONSE, "X-Example"), 1);
}

static void test_rejected(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    gw_req *r = gw_th_request(th, "POST", "/api/orders");
    gw_th_request_header(r, "X-Block", "yes");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 403);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    assert_string_equal(gw_th_body(r, NULL), "{\"error\":\"Forbidden\","
                                             "\"message\":\"Requests with the header X-Block are not accepted\","
                                             "\"request_id\":\"req-1\"}");
    /* the answer went through the response phase too */
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Example"), "hi");
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "rejected: the request carries X-Block"), 1);
    if (gw_th_host(th)->metric_register)
        assert_true(gw_th_metric(th, "example_rejected_total", (const char *[]){"default"}) == 1.0);
}

static void test_rejected_status_per_route(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    assert_int_equal(gw_th_route(th, "api", "/api",
                                 "example:\n  reject_if_header: {name: X-Block, status: 429}\n"),
                     0);
    gw_req *r = gw_th_request(th, "GET", "/api/x");
    gw_th_request_header(r, "X-Block", "anything"); /* no `value` on this route: any value */
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 429);
    assert_non_null(strstr(gw_th_body(r, NULL), "\"error\":\"Too Many Requests\""));
}

static void test_not_rejected(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    gw_req *absent = gw_th_request(th, "GET", "/api/x");
    gw_req *other = gw_th_request(th, "GET", "/api/x");
    gw_th_request_header(other, "X-Block", "no"); /* another value than the rule's */
    assert_int_equal(gw_th_run(absent), GW_TH_DONE);
    assert_int_equal(gw_th_run(other), GW_TH_DONE);
    assert_int_equal(gw_th_status(absent), 200);
    assert_int_equal(gw_th_status(other), 200);
    assert_true(gw_th_upstream_called(absent));
    assert_true(gw_th_upstream_called(other));
    assert_string_equal(gw_th_header(other, GW_HDR_UPSTREAM, "X-Block"), "no");
}

static void test_config_errors(void **state)
{
    gw_th *th = *state;
    const char *so = so_path();
    assert_int_equal(gw_th_load(th, so, "name: example\ncolour: red\n"), -1);
    assert_string_equal(gw_th_error(th), "pipeline.yaml:2:1: unknown key 'colour'");

    assert_int_equal(gw_th_load(th, so, "name: example\nresponse_header: 5\n"), -1);
    assert_string_equal(gw_th_error(th),
                        "pipeline.yaml:2:18: response_header: expected a mapping {name, value}");

    assert_int_equal(gw_th_load(th, so, "name: example\nresponse_header: {name: X-A}\n"), -1);
    assert_string_equal(gw_th_error(th), "pipeline.yaml:2:18: response_header.value: required");

    assert_int_equal(gw_th_load(th, so, "name: example\nreject_if_header:\n  name: X-B\n  status: 700\n"), -1);
    assert_string_equal(gw_th_error(th),
                        "pipeline.yaml:4:11: reject_if_header.status: expected a status 400..599, got '700'");

    assert_int_equal(gw_th_load(th, so, "name: example\nresponse_header: {name: 'X A', value: v}\n"), -1);
    assert_string_equal(gw_th_error(th),
                        "pipeline.yaml:2:25: response_header.name: 'X A' is not a valid header name");

    /* per-route settings are checked the same way */
    load(th, CONF);
    assert_int_equal(gw_th_route(th, "api", "/api", "example:\n  response_header: [a, b]\n"), -1);
    assert_string_equal(gw_th_error(th), "routes.yaml:2:20: response_header: expected a mapping {name, value}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_header_added, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_override, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejected_status_per_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
