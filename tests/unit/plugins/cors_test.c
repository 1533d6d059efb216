/* cors_test.c - unit tests of plugins/cors on the SDK test host: allowed, disallowed and missing origins,
 * "*" with and without an Origin, wildcard subdomains, case rules, credentials (and their refusal with
 * "*"), preflights (allowed, each kind of refusal, reflected headers and methods, never sent upstream),
 * other OPTIONS requests passed on, Vary merged with the upstream's, the upstream's own CORS headers
 * replaced, the gateway's own answers (a later filter's 401) carrying the headers, the comma-separated
 * scalar form of a list, per-route settings and their refusals, settings errors with file:line:col.
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

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "cors.so"
#endif

#define ACAO "Access-Control-Allow-Origin"
#define ACAC "Access-Control-Allow-Credentials"
#define ACAM "Access-Control-Allow-Methods"
#define ACAH "Access-Control-Allow-Headers"
#define ACEH "Access-Control-Expose-Headers"
#define ACMA "Access-Control-Max-Age"

/* --- a stand-in for an authentication filter after cors: 401 unless X-Test-Auth is there ---------- */

static const gw_host *auth_host;

static gw_result auth_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)inst;
    (void)route_conf;
    (void)state;
    gw_strv v;
    if (auth_host->header_get(req, GW_HDR_REQUEST, "X-Test-Auth", &v)) return GW_CONTINUE;
    auth_host->respond_error(req, 401, "Missing credentials");
    return GW_RESPOND;
}

static void *auth_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)self;
    (void)conf;
    (void)err;
    (void)errlen;
    auth_host = h;
    return (void *)&auth_host;
}

static const gw_filter_desc auth_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "auth",
    .version = "0",
    .create = auth_create,
    .on_request = auth_on_request,
};

static gw_th *host_with(const char *entry)
{
    gw_th *th = gw_th_new();
    if (gw_th_load(th, GW_PLUGIN_SO, entry) != 0) fail_msg("load: %s", gw_th_error(th));
    return th;
}

static gw_req *run(gw_th *th, const char *method, const char *path, const char *origin,
                   const char *upstream_hdrs)
{
    gw_req *r = gw_th_request(th, method, path);
    if (origin) gw_th_request_header(r, "Origin", origin);
    gw_th_request_header(r, "X-Test-Auth", "1");
    gw_th_upstream_reply(r, 200, upstream_hdrs, "ok");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static gw_req *preflight(gw_th *th, const char *origin, const char *method, const char *headers)
{
    gw_req *r = gw_th_request(th, "OPTIONS", "/api/x");
    gw_th_request_header(r, "Origin", origin);
    gw_th_request_header(r, "Access-Control-Request-Method", method);
    if (headers) gw_th_request_header(r, "Access-Control-Request-Headers", headers);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

#define LIST "name: cors\nallow_origins: [https://app.example.com, 'http://localhost:3000']\n"

static void test_star_default(void **state)
{
    (void)state;
    gw_th *th = host_with("name: cors\n");
    gw_req *r = run(th, "GET", "/api/x", "https://anything.example", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "*");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAC));
    assert_non_null(strstr(gw_th_header(r, GW_HDR_RESPONSE, ACEH), "X-RateLimit-Remaining"));
    assert_non_null(strstr(gw_th_header(r, GW_HDR_RESPONSE, ACEH), "X-Retry-Count"));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Origin");
    /* no Origin: no CORS headers (not even the upstream's), and Vary says why */
    r = run(th, "GET", "/api/x", NULL, ACAO ": https://up.example\n");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAO));
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACEH));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Origin");
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
}

static void test_listed_origins(void **state)
{
    (void)state;
    gw_th *th = host_with(LIST);
    gw_req *r = run(th, "GET", "/api/x", "https://app.example.com", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Origin");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAC));
    /* scheme and host compare without case; the origin is echoed as sent */
    r = run(th, "GET", "/api/x", "HTTPS://App.Example.COM", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "HTTPS://App.Example.COM");
    r = run(th, "GET", "/api/x", "http://localhost:3000", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "http://localhost:3000");
    /* another port, scheme, a suffix trick, "null": not allowed, still forwarded, Vary kept */
    const char *bad[] = {"http://localhost:3001",
                         "http://app.example.com",
                         "https://app.example.com.evil.test",
                         "https://evilapp.example.com",
                         "null",
                         "https://app.example.com/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = run(th, "GET", "/api/x", bad[i], NULL);
        assert_int_equal(gw_th_status(r), 200);
        assert_true(gw_th_upstream_called(r));
        if (gw_th_header(r, GW_HDR_RESPONSE, ACAO)) fail_msg("%s allowed", bad[i]);
        assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACEH));
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Origin");
    }
    /* no Origin: no CORS headers but Vary, since the answer depends on it */
    r = run(th, "GET", "/api/x", NULL, NULL);
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAO));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Origin");
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
}

static void test_wildcard_subdomain(void **state)
{
    (void)state;
    gw_th *th =
        host_with("name: cors\nallow_origins: ['https://*.example.com', 'https://*.dev.test:8443']\n");
    const char *good[] = {"https://a.example.com", "https://a.b.example.com", "https://x.dev.test:8443"};
    const char *bad[] = {"https://example.com",       "https://.example.com",    "http://a.example.com",
                         "https://a.example.com:444", "https://a/b.example.com", "https://x.dev.test",
                         "https://a.example.com.evil"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        gw_req *r = run(th, "GET", "/api/x", good[i], NULL);
        const char *v = gw_th_header(r, GW_HDR_RESPONSE, ACAO);
        if (!v || strcmp(v, good[i]) != 0) fail_msg("%s refused", good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_req *r = run(th, "GET", "/api/x", bad[i], NULL);
        if (gw_th_header(r, GW_HDR_RESPONSE, ACAO)) fail_msg("%s allowed", bad[i]);
    }
    gw_th_free(th);
}

static void test_credentials(void **state)
{
    (void)state;
    gw_th *th = host_with(LIST "allow_credentials: true\n");
    gw_req *r = run(th, "GET", "/api/x", "https://app.example.com", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAC), "true");
    r = preflight(th, "https://app.example.com", "PUT", NULL);
    assert_int_equal(gw_th_status(r), 204);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAC), "true");
    r = run(th, "GET", "/api/x", "https://other.example", NULL);
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAC));
    gw_th_free(th);

    /* with "*": refused at load, at the key */
    th = gw_th_new();
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: cors\nallow_credentials: true\n"), -1);
    assert_non_null(
        strstr(gw_th_error(th), "pipeline.yaml:2:20: cors.allow_credentials: true cannot go with"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: cors\nallow_origins: '*'\nallow_credentials: yes\n"),
                     -1);
    assert_non_null(strstr(gw_th_error(th), "cors.allow_credentials"));
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, LIST "allow_credentials: true\nexpose_headers: ['*']\n"),
                     -1);
    assert_non_null(strstr(gw_th_error(th), "cors.expose_headers: '*' means nothing with allow_credentials"));
    gw_th_free(th);
}

static void test_preflight(void **state)
{
    (void)state;
    gw_th *th = host_with(LIST "max_age: 1h\n");
    gw_req *r = preflight(th, "https://app.example.com", "DELETE", "content-type, x-api-key");
    assert_int_equal(gw_th_status(r), 204);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAM),
                        "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD");
    assert_non_null(strstr(gw_th_header(r, GW_HDR_RESPONSE, ACAH), "X-API-Key"));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACMA), "3600");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"),
                        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    size_t len = 1;
    gw_th_body(r, &len);
    assert_int_equal(len, 0);

    /* refusals: 403 JSON naming what, no CORS headers, never upstream */
    struct {
        const char *origin, *method, *headers, *msg;
    } no[] = {
        {"https://evil.example", "GET", NULL, "origin https://evil.example is not allowed"},
        {"https://app.example.com", "TRACE", NULL, "method TRACE is not allowed"},
        {"https://app.example.com", "get", NULL, "method get is not allowed"}, /* methods are exact */
        {"https://app.example.com", "GET", "Content-Type, X-Secret", "header X-Secret is not allowed"},
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        r = preflight(th, no[i].origin, no[i].method, no[i].headers);
        assert_int_equal(gw_th_status(r), 403);
        assert_false(gw_th_upstream_called(r));
        if (!strstr(gw_th_body(r, NULL), no[i].msg)) fail_msg("%s: %s", no[i].msg, gw_th_body(r, NULL));
        assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAO));
        assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAM));
    }
    /* OPTIONS without Access-Control-Request-Method, or without Origin: an ordinary request */
    r = run(th, "OPTIONS", "/api/x", "https://app.example.com", "Allow: GET\n");
    assert_true(gw_th_upstream_called(r));
    assert_string_equal(gw_th_upstream_method(r), "OPTIONS");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    gw_req *q = gw_th_request(th, "OPTIONS", "/api/x");
    gw_th_request_header(q, "Access-Control-Request-Method", "GET");
    assert_int_equal(gw_th_run(q), GW_TH_DONE);
    assert_true(gw_th_upstream_called(q));
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
}

static void test_preflight_reflects_star(void **state)
{
    (void)state;
    gw_th *th = host_with("name: cors\nallow_methods: '*'\nallow_headers: '*'\nmax_age: 0\n");
    gw_req *r = preflight(th, "https://a.test", "PURGE", "X-Anything, x-other");
    assert_int_equal(gw_th_status(r), 204);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "*");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAM), "PURGE");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAH), "X-Anything, x-other");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACMA));
    /* what is reflected must be a list of header names */
    r = preflight(th, "https://a.test", "GET", "X-A, bad header(");
    assert_int_equal(gw_th_status(r), 403);
    gw_th_free(th);
}

static void test_before_authentication(void **state)
{
    (void)state;
    gw_th *th = host_with(LIST);
    assert_int_equal(gw_th_add(th, &auth_desc, NULL), 0);
    /* the preflight is answered before auth asks for credentials */
    gw_req *r = preflight(th, "https://app.example.com", "GET", "x-api-key");
    assert_int_equal(gw_th_status(r), 204);
    /* auth's own 401 carries the CORS headers, so the page can read it */
    r = gw_th_request(th, "GET", "/api/x");
    gw_th_request_header(r, "Origin", "https://app.example.com");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 401);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    assert_non_null(gw_th_header(r, GW_HDR_RESPONSE, ACEH));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Vary"), "Origin");
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
}

static void test_upstream_headers(void **state)
{
    (void)state;
    gw_th *th = host_with(LIST);
    /* Vary added to, never duplicated */
    gw_req *r = run(th, "GET", "/api/x", "https://app.example.com", "Vary: Accept-Encoding\n");
    assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, "Vary"), 2);
    r = run(th, "GET", "/api/x", "https://app.example.com", "Vary: accept-encoding, ORIGIN\n");
    assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, "Vary"), 1);
    /* the upstream's own CORS headers: replaced for an allowed origin, removed for another */
    r = run(th, "GET", "/api/x", "https://app.example.com", ACAO ": *\n" ACAC ": true\n");
    assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, ACAO), 1);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAC));
    r = run(th, "GET", "/api/x", "https://evil.example", ACAO ": https://evil.example\n" ACAC ": true\n");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAO));
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAC));
    gw_th_free(th);
}

static void test_scalar_list(void **state)
{
    (void)state;
    /* what ${CORS_ALLOW_ORIGINS} gives: one string */
    gw_th *th = host_with("name: cors\nallow_origins: 'https://a.example, https://b.example'\n");
    gw_req *r = run(th, "GET", "/api/x", "https://b.example", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://b.example");
    r = run(th, "GET", "/api/x", "https://c.example", NULL);
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAO));
    gw_th_free(th);
}

static void test_routes(void **state)
{
    (void)state;
    gw_th *th = host_with(LIST);
    assert_int_equal(gw_th_route(th, "admin", "/admin",
                                 "cors:\n  allow_origins: https://admin.example.com\n"
                                 "  allow_credentials: true\n"),
                     0);
    assert_int_equal(gw_th_route(th, "raw", "/raw", "cors:\n  disabled: true\n"), 0);
    assert_int_equal(gw_th_route(th, "api", "/api", NULL), 0);
    gw_req *r = run(th, "GET", "/admin/x", "https://admin.example.com", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://admin.example.com");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAC), "true");
    r = run(th, "GET", "/admin/x", "https://app.example.com", NULL);
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAO));
    r = run(th, "GET", "/api/x", "https://app.example.com", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://app.example.com");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, ACAC));
    /* disabled: nothing added, nothing removed, preflights go upstream */
    r = run(th, "GET", "/raw/x", "https://app.example.com", ACAO ": https://up.example\n");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, ACAO), "https://up.example");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, "Vary"));
    gw_req *q = gw_th_request(th, "OPTIONS", "/raw/x");
    gw_th_request_header(q, "Origin", "https://app.example.com");
    gw_th_request_header(q, "Access-Control-Request-Method", "GET");
    assert_int_equal(gw_th_run(q), GW_TH_DONE);
    assert_true(gw_th_upstream_called(q));
    /* a bad origin on a route, and credentials over an inherited "*" */
    assert_int_equal(gw_th_route(th, "bad", "/bad", "cors:\n  allow_origins: [ftp//x]\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "routes.yaml:2:18: cors.allow_origins: 'ftp//x': expected"));
    gw_th_free(th);

    th = host_with("name: cors\n");
    assert_int_equal(gw_th_route(th, "c", "/c", "cors:\n  allow_credentials: true\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "cors.allow_credentials: true cannot go with allow_origins '*'"));
    gw_th_free(th);
}

static void test_settings_errors(void **state)
{
    (void)state;
    struct {
        const char *entry, *want;
    } cases[] = {
        {"name: cors\nallow_origins: ['https://a.example/']\n",
         "pipeline.yaml:2:16: cors.allow_origins: 'https://a.example/': an origin has no path"},
        {"name: cors\nallow_origins: [a.example]\n",
         "cors.allow_origins: 'a.example': expected scheme://host"},
        {"name: cors\nallow_origins: ['https://a.*.example']\n", "'*' only as the first label"},
        {"name: cors\nallow_origins: ['https://a.example:99999']\n", "a bad port"},
        {"name: cors\nallow_origins: ['*', 'https://a.example']\n",
         "cors.allow_origins: '*' must be the only item"},
        {"name: cors\nallow_origins: []\n", "cors.allow_origins: 0 items, expected 1..256 items"},
        {"name: cors\nallow_methods: [GET, 'PO ST']\n", "cors.allow_methods: 'PO ST' is not a token"},
        {"name: cors\nallow_headers: [X-A, '*']\n", "cors.allow_headers: '*' must be the only item"},
        {"name: cors\nmax_age: 2d\n", "cors.max_age"},
        {"name: cors\ndisabled: true\n", "pipeline.yaml:2:11: cors.disabled: a per-route setting"},
        {"name: cors\nallow_origin: '*'\n", "allow_origin"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_th *th = gw_th_new();
        if (gw_th_load(th, GW_PLUGIN_SO, cases[i].entry) != -1) fail_msg("accepted: %s", cases[i].entry);
        if (!strstr(gw_th_error(th), cases[i].want))
            fail_msg("for %s\n  want: %s\n  got:  %s", cases[i].entry, cases[i].want, gw_th_error(th));
        gw_th_free(th);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_star_default),
        cmocka_unit_test(test_listed_origins),
        cmocka_unit_test(test_wildcard_subdomain),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_preflight),
        cmocka_unit_test(test_preflight_reflects_star),
        cmocka_unit_test(test_before_authentication),
        cmocka_unit_test(test_upstream_headers),
        cmocka_unit_test(test_scalar_list),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_settings_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
