/* size_limit_test.c - the settings-table example of sdk/README.md (sdk/examples/size_limit) on the test
 * host: its defaults, a per-route max_body merged over the pipeline's, the metric, and the table's checks
 * (the same code as the gateway's) refusing wrong settings with the filter and key named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <gw/testhost.h>

/* A filter that is only a table: no create, so its instance is the settings struct. */
typedef struct {
    int64_t n;
} only_conf;

static const gw_setting only_table[] = {
    {.name = "n", .type = GW_SET_INT, .offset = offsetof(only_conf, n), .def = "7", .flags = GW_SET_ROUTE},
    {.name = NULL},
};

static const gw_host *only_host;

static gw_result only_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    char v[64];
    snprintf(v, sizeof v, "%lld/%lld", (long long)((only_conf *)inst)->n, (long long)((only_conf *)route_conf)->n);
    only_host->header_set(req, GW_HDR_REQUEST, "X-N", v, strlen(v));
    return GW_CONTINUE;
}

static const gw_filter_desc only_desc = {.abi_major = GW_ABI_MAJOR,
                                         .abi_minor = GW_ABI_MINOR,
                                         .struct_size = sizeof(gw_filter_desc),
                                         .name = "only",
                                         .version = "1",
                                         .on_request = only_request,
                                         .settings = only_table,
                                         .settings_size = sizeof(only_conf)};

static int setup(void **state)
{
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th_free(*state);
    return 0;
}

static int status_of(gw_th *th, const char *path, const char *content_length)
{
    gw_req *r = gw_th_request(th, "POST", path);
    if (content_length) assert_int_equal(gw_th_request_header(r, "Content-Length", content_length), 0);
    gw_th_run(r);
    return gw_th_status(r);
}

static void test_defaults_routes_and_metric(void **state)
{
    gw_th *th = *state;
    if (gw_th_load(th, GW_SDK_SIZE_LIMIT_SO, "name: size_limit\n") != 0) fail_msg("%s", gw_th_error(th));
    assert_int_equal(gw_th_route(th, "small", "/small", "size_limit: {max_body: 10}\n"), 0);
    assert_int_equal(gw_th_route(th, "plain", "/plain", NULL), 0);
    assert_int_equal(status_of(th, "/plain/x", "1048576"), 200); /* the default 1m */
    assert_int_equal(status_of(th, "/plain/x", "1048577"), 413);
    assert_int_equal(status_of(th, "/small/x", "10"), 200);
    gw_req *r = gw_th_request(th, "POST", "/small/x");
    gw_th_request_header(r, "Content-Length", "11");
    gw_th_run(r);
    assert_int_equal(gw_th_status(r), 413);
    assert_non_null(strstr(gw_th_body(r, NULL), "\"message\":\"request body too large\""));
    assert_int_equal(status_of(th, "/plain/y", NULL), 200); /* no declared body */
    assert_true(gw_th_metric(th, "size_limit_refused_total", NULL) == 2);
}

static void test_settings_checked(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_load(th, GW_SDK_SIZE_LIMIT_SO, "name: size_limit\nmax_body: lots\n"), -1);
    assert_string_equal(gw_th_error(th),
                        "pipeline.yaml:2:11: size_limit.max_body: expected a size like 512, 64k, "
                        "10m, 1g (1..1g), got 'lots'");
    assert_int_equal(gw_th_load(th, GW_SDK_SIZE_LIMIT_SO, "name: size_limit\nmax_body: 2g\n"), -1);
    assert_string_equal(gw_th_error(th), "pipeline.yaml:2:11: size_limit.max_body: 2g is out of range 1..1g");
    assert_int_equal(gw_th_load(th, GW_SDK_SIZE_LIMIT_SO, "name: size_limit\nmesage: hi\n"), -1);
    assert_string_equal(gw_th_error(th),
                        "pipeline.yaml:2:1: size_limit.mesage: unknown setting (allowed: max_body, "
                        "message)");
    assert_int_equal(
        gw_th_load(th, GW_SDK_SIZE_LIMIT_SO, "name: size_limit\nmessage: too big\nmax_body: 64k\n"), 0);
    assert_int_equal(gw_th_route(th, "r", "/r", "size_limit: {message: other}\n"), -1);
    assert_string_equal(gw_th_error(th), "routes.yaml:1:14: size_limit.message: not a per-route setting "
                                         "(per-route settings: max_body)");
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_header(r, "Content-Length", "65537");
    gw_th_run(r);
    assert_int_equal(gw_th_status(r), 413);
    assert_non_null(strstr(gw_th_body(r, NULL), "\"message\":\"too big\""));
}

static void test_table_only_filter(void **state)
{
    gw_th *th = *state;
    only_host = gw_th_host(th);
    assert_int_equal(gw_th_add(th, &only_desc, "name: only\nn: 3\n"), 0);
    const only_conf *inst = gw_th_instance(th, "only");
    assert_non_null(inst);
    assert_int_equal(inst->n, 3);
    assert_int_equal(gw_th_route(th, "five", "/five", "only: {n: 5}\n"), 0);
    assert_int_equal(gw_th_route(th, "root", "/", NULL), 0);
    gw_req *r = gw_th_request(th, "GET", "/five/x");
    gw_th_run(r);
    assert_string_equal(gw_th_header(r, GW_HDR_REQUEST, "X-N"), "3/5");
    r = gw_th_request(th, "GET", "/x");
    gw_th_run(r);
    assert_string_equal(gw_th_header(r, GW_HDR_REQUEST, "X-N"), "3/3"); /* the pipeline's struct: never NULL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_routes_and_metric, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_only_filter, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
