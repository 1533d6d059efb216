/* adminauth_test.c - unit tests of plugins/adminauth on the SDK test host: every failure kind, success,
 * the protected prefix, throttling per (address, username) on the fake clock (anonymous and malformed
 * requests not counted), settings errors. GW_PLUGIN_SO is the built filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "adminauth.so"
#endif

#define PASSWORD "s3cret:with:colons"
#define CHALLENGE "Basic realm=\"API Gateway Admin\", charset=\"UTF-8\""

static const char *const CONF = "name: adminauth\n"
                                "password: '" PASSWORD "'\n";

/* --- helpers --------------------------------------------------------------------------------------- */

static void b64(const char *in, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < n) w |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n) w |= (unsigned char)in[i + 2];
        out[o++] = alphabet[(w >> 18) & 63];
        out[o++] = alphabet[(w >> 12) & 63];
        out[o++] = i + 1 < n ? alphabet[(w >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? alphabet[w & 63] : '=';
    }
    out[o] = '\0';
}

/* "Basic base64(user:pass)", in one of 32 static buffers used in turn (a table may hold several) */
static const char *basic(const char *userpass)
{
    static char bufs[32][512];
    static unsigned next;
    char *buf = bufs[next++ % 32];
    assert_true(strlen(userpass) < 300);
    strcpy(buf, "Basic ");
    b64(userpass, buf + 6);
    return buf;
}

static int setup(void **state)
{
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_violations(th), 0);
    /* the password never reaches the log */
    for (size_t i = 0; i < gw_th_log_count(th); i++)
        assert_null(strstr(gw_th_log_line(th, i, NULL), "s3cret"));
    gw_th_free(th);
    return 0;
}

static void load(gw_th *th, const char *conf)
{
    if (gw_th_load(th, GW_PLUGIN_SO, conf) != 0) fail_msg("%s", gw_th_error(th));
}

/* Runs a request; authorization NULL = no header; ip NULL = the default 127.0.0.1. */
static gw_req *run(gw_th *th, const char *method, const char *target, const char *authorization,
                   const char *ip)
{
    gw_req *r = gw_th_request(th, method, target);
    if (authorization) assert_int_equal(gw_th_request_header(r, "Authorization", authorization), 0);
    if (ip) gw_th_request_client_ip(r, ip);
    gw_th_upstream_reply(r, 200, "Content-Type: text/plain\n", "admin data");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static void assert_passed(gw_req *r)
{
    assert_int_equal(gw_th_status(r), 200);
    assert_true(gw_th_upstream_called(r));
    assert_string_equal(gw_th_body(r, NULL), "admin data");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, "WWW-Authenticate"));
}

static void assert_401(gw_req *r, const char *message, const char *challenge)
{
    char want[512];
    assert_int_equal(gw_th_status(r), 401);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "WWW-Authenticate"),
                        challenge ? challenge : CHALLENGE);
    assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, "WWW-Authenticate"), 1);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, "Retry-After"));
    snprintf(want, sizeof want, "{\"error\":\"Unauthorized\",\"message\":\"%s\",\"request_id\":\"%s\"}",
             message, gw_th_header(r, GW_HDR_RESPONSE, "X-Request-Id"));
    assert_string_equal(gw_th_body(r, NULL), want);
}

static void assert_429(gw_req *r, const char *retry_after)
{
    assert_int_equal(gw_th_status(r), 429);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Retry-After"), retry_after);
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, "WWW-Authenticate"));
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    assert_non_null(strstr(gw_th_body(r, NULL),
                           "{\"error\":\"Too Many Requests\",\"message\":\"Too many failed "
                           "authentication attempts; retry later\""));
}

/* --- failures and success -------------------------------------------------------------------------- */

static void test_every_failure_kind(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    static char longest[8192];
    memset(longest, 'A', 4202); /* 4196 base64 characters: more than 4096 */
    memcpy(longest, "Basic ", 6);
    longest[4202] = '\0';
    const struct {
        const char *authorization; /* NULL = none */
        const char *message, *log;
    } cases[] = {
        {NULL, "Authentication required: missing Authorization header", "no Authorization header"},
        {"Bearer abc.def.ghi", "Authentication required: unsupported authorization scheme (use Basic)",
         "authorization scheme is not Basic"},
        {"Basicx YWRtaW46eA==", "Authentication required: unsupported authorization scheme (use Basic)",
         "authorization scheme is not Basic"},
        {"", "Authentication required: unsupported authorization scheme (use Basic)",
         "authorization scheme is not Basic"},
        {"Basic", "Invalid Basic credentials: not valid base64", "credentials are not valid base64"},
        {"Basic !!!!", "Invalid Basic credentials: not valid base64", "credentials are not valid base64"},
        {"Basic YWRtaW46eA", "Invalid Basic credentials: not valid base64",
         "credentials are not valid base64"}, /* no padding */
        {"Basic YWRtaW46eB==", "Invalid Basic credentials: not valid base64",
         "credentials are not valid base64"}, /* stray bits */
        {"Basic YW=taW46eA==", "Invalid Basic credentials: not valid base64",
         "credentials are not valid base64"}, /* '=' inside */
        {"Basic YWRt aW46eA==", "Invalid Basic credentials: not valid base64",
         "credentials are not valid base64"}, /* space */
        {"Basic YWRtaW46eA==YWRt", "Invalid Basic credentials: not valid base64",
         "credentials are not valid base64"},
        {longest, "Invalid Basic credentials: too long", "credentials too long"},
        {"Basic YWRtaW4=", "Invalid Basic credentials: expected username:password",
         "no ':' in the decoded credentials"}, /* "admin" */
        {basic("admin:wrong"), "Invalid username or password", "wrong username or password"},
        {basic("admin:" PASSWORD "x"), "Invalid username or password", "wrong username or password"},
        {basic("Admin:" PASSWORD), "Invalid username or password", "wrong username or password"},
        {basic("root:" PASSWORD), "Invalid username or password", "wrong username or password"},
        {basic(":" PASSWORD), "Invalid username or password", "wrong username or password"},
        {basic("admin:"), "Invalid username or password", "wrong username or password"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "192.0.2.%zu", i + 1); /* one client each: no throttling here */
        char auth[8192];
        if (cases[i].authorization) snprintf(auth, sizeof auth, "%s", cases[i].authorization);
        gw_req *r = run(th, "GET", "/admin/apikeys", cases[i].authorization ? auth : NULL, ip);
        assert_401(r, cases[i].message, NULL);
        char line[256];
        snprintf(line, sizeof line, "admin authentication failed: %s", cases[i].log);
        if (gw_th_log_find(th, GW_LOG_WARN, line) < 1) fail_msg("case %zu: no log line with \"%s\"", i, line);
        snprintf(line, sizeof line, "(client %s, GET /admin/apikeys)", ip);
        assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, line), 1);
        gw_th_advance(th, 1000); /* the warnings are rate-limited per second */
    }
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "admin authentication failed"), n);
    if (gw_th_host(th)->metric_register) {
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"missing"}) ==
                    1.0);
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"scheme"}) == 3.0);
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"base64"}) == 7.0);
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"too_long"}) ==
                    1.0);
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"no_colon"}) ==
                    1.0);
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"credentials"}) ==
                    6.0);
    }
}

static void test_correct_credentials_continue(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    const char *auth = basic("admin:" PASSWORD);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", auth);

    gw_req *r = run(th, "POST", "/admin/apikeys?x=1", copy, NULL);
    assert_passed(r);
    assert_string_equal(gw_th_upstream_target(r), "/admin/apikeys?x=1");
    /* the request is not modified */
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"), copy);

    /* scheme case-insensitive, extra blanks around the credentials */
    char variant[300];
    snprintf(variant, sizeof variant, "bAsIc   %s  ", copy + 6);
    assert_passed(run(th, "GET", "/admin", variant, NULL));
    assert_int_equal(gw_th_log_find(th, GW_LOG_DEBUG, "authentication failed"), 0);
}

static void test_protected_prefix(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    const char *const protected_paths[] = {
        "/admin",     "/admin/",    "/admin/x",     "/admin/circuit-breakers/reset",
        "/admin?x=1", "//admin//x", "/x/../admin/y"};
    for (size_t i = 0; i < sizeof protected_paths / sizeof protected_paths[0]; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "198.51.100.%zu", i + 1);
        assert_int_equal(gw_th_status(run(th, "GET", protected_paths[i], NULL, ip)), 401);
    }
    const char *const open_paths[] = {"/administrator", "/adminx", "/admi", "/", "/api/admin", "/health"};
    for (size_t i = 0; i < sizeof open_paths / sizeof open_paths[0]; i++) {
        gw_req *r = run(th, "GET", open_paths[i], "Basic !!!", NULL);
        assert_passed(r);
        /* other requests are left exactly as they came */
        assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"), "Basic !!!");
    }
}

static void test_custom_settings(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\n"
             "username: ops\n"
             "password: hunter2\n"
             "realm: 'Ops \"internal\" \\ area'\n"
             "path: /ops/\n");
    assert_int_equal(gw_th_status(run(th, "GET", "/admin", NULL, NULL)), 200); /* only `path` is protected */
    gw_req *r = run(th, "GET", "/ops/a", basic("admin:hunter2"), NULL);
    assert_401(r, "Invalid username or password",
               "Basic realm=\"Ops \\\"internal\\\" \\\\ area\", charset=\"UTF-8\"");
    assert_passed(run(th, "GET", "/ops", basic("ops:hunter2"), NULL));
}

static void test_whole_site(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: p\npath: /\n");
    assert_int_equal(gw_th_status(run(th, "GET", "/anything", NULL, NULL)), 401);
    assert_passed(run(th, "GET", "/anything", basic("admin:p"), NULL));
}

static void test_disabled_not_loaded(void **state)
{
    gw_th *th = *state;
    /* enabled: false is the host's: the filter is not even configured (no password needed) */
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, "name: adminauth\nenabled: false\n"), 0);
    assert_null(gw_th_instance(th, "adminauth"));
    assert_passed(run(th, "GET", "/admin/apikeys", NULL, NULL));
    assert_int_equal(gw_th_log_count(th), 0);
}

/* --- throttling ------------------------------------------------------------------------------------ */

static void fail_n(gw_th *th, const char *ip, int n)
{
    for (int i = 0; i < n; i++)
        assert_401(run(th, "GET", "/admin/x", basic("admin:nope"), ip), "Invalid username or password", NULL);
}

static void test_throttled_after_max_failures(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    const char *good = "admin:" PASSWORD;
    fail_n(th, "10.0.0.1", 5);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "client 10.0.0.1 throttled for 60000 ms after 5 failed"),
                     1);

    /* the blocked (address, username) is refused whatever its password: the right one or a wrong one */
    assert_429(run(th, "GET", "/admin/x", basic(good), "10.0.0.1"), "60");
    assert_429(run(th, "GET", "/admin", basic("admin:nope"), "10.0.0.1"), "60");
    assert_429(run(th, "DELETE", "/admin/apikeys/1", basic("admin:other"), "10.0.0.1"), "60");
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "admin authentication failed"), 5);
    /* the block is logged once, not once per refused request */
    assert_int_equal(gw_th_log_find(th, GW_LOG_DEBUG, "throttled"), 1);
    if (gw_th_host(th)->metric_register)
        assert_true(gw_th_metric(th, "gateway_admin_auth_throttled_total", NULL) == 3.0);
    /* requests that name no username are not throttled (nor counted): they are plain 401s */
    assert_401(run(th, "GET", "/admin", NULL, "10.0.0.1"),
               "Authentication required: missing Authorization header", NULL);
    assert_401(run(th, "GET", "/admin", "Bearer x", "10.0.0.1"),
               "Authentication required: unsupported authorization scheme (use Basic)", NULL);
    /* another username from the same address is counted on its own */
    assert_401(run(th, "GET", "/admin", basic("root:" PASSWORD), "10.0.0.1"), "Invalid username or password",
               NULL);

    /* other clients and other paths are not affected */
    assert_passed(run(th, "GET", "/admin/x", basic(good), "10.0.0.2"));
    assert_passed(run(th, "GET", "/api/users", NULL, "10.0.0.1"));
    assert_passed(run(th, "GET", "/administrator", NULL, "10.0.0.1"));

    /* Retry-After counts down, rounded up; 429s do not extend the block */
    gw_th_advance(th, 30000);
    assert_429(run(th, "GET", "/admin/x", basic(good), "10.0.0.1"), "30");
    gw_th_advance(th, 29001);
    assert_429(run(th, "GET", "/admin/x", basic(good), "10.0.0.1"), "1");
    gw_th_advance(th, 999);

    /* block passed since the last failure: checked again, and the count starts over */
    assert_401(run(th, "GET", "/admin/x", basic("admin:nope"), "10.0.0.1"), "Invalid username or password",
               NULL);
    fail_n(th, "10.0.0.1", 3);
    assert_passed(run(th, "GET", "/admin/x", basic(good), "10.0.0.1"));
}

static void test_block_passes_then_success(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures: 3\nblock: 2s\n");
    fail_n(th, "10.1.1.1", 3);
    assert_429(run(th, "GET", "/admin", basic("admin:pw"), "10.1.1.1"), "2");
    gw_th_advance(th, 2000);
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "10.1.1.1"));
}

static void test_success_resets(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    const char *good = "admin:" PASSWORD;
    fail_n(th, "10.0.0.3", 4);
    assert_passed(run(th, "GET", "/admin/x", basic(good), "10.0.0.3"));
    fail_n(th, "10.0.0.3", 4); /* counted from zero again: 4 < 5 */
    assert_passed(run(th, "GET", "/admin/x", basic(good), "10.0.0.3"));
    fail_n(th, "10.0.0.3", 5);
    assert_429(run(th, "GET", "/admin/x", basic(good), "10.0.0.3"), "60");
}

static void test_spaced_failures_do_not_add_up(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures: 2\nblock: 10s\n");
    for (int i = 0; i < 5; i++) {
        fail_n(th, "10.0.0.4", 1);
        gw_th_advance(th, 10000); /* each failure is `block` old when the next one comes */
    }
    fail_n(th, "10.0.0.4", 2);
    gw_th_advance(th, 9999); /* less than `block` since the last failure */
    assert_429(run(th, "GET", "/admin", basic("admin:pw"), "10.0.0.4"), "1");
}

static void test_max_failures_zero_never_throttles(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures: 0\n");
    fail_n(th, "10.0.0.5", 50);
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "10.0.0.5"));
}

static void test_many_clients_bounded(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures: 1\n");
    /* more blocked clients than the table holds: it stays bounded and keeps every block (none evicted);
     * a client whose attempt finds no slot to be counted in is refused (fail-closed) */
    int refused = 0;
    for (int i = 0; i < 6000; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
        int st = gw_th_status(run(th, "GET", "/admin", basic("admin:nope"), ip));
        assert_true(st == 401 || st == 429);
        refused += st == 429;
        gw_th_advance(th, 1);
    }
    assert_true(refused > 0);
    assert_429(run(th, "GET", "/admin", basic("admin:pw"), "10.0.0.1"),
               "54"); /* the first one: still blocked */
    gw_th_advance(th, 60000);
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "10.0.0.1"));
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "fd00::1"));
}

/* One address cycling through usernames: its own count (4 x max_failures by default) blocks it for every
 * username, the configured one with the right password included; other addresses are not affected. */
static void test_many_usernames_bounded(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures: 1\n");
    for (int i = 0; i < 6000; i++) {
        char cred[64];
        snprintf(cred, sizeof cred, "user%d:nope", i);
        assert_int_equal(gw_th_status(run(th, "GET", "/admin", basic(cred), "192.0.2.9")), i < 4 ? 401 : 429);
        gw_th_advance(th, 1);
    }
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN,
                                    "client 192.0.2.9 throttled for 60000 ms after 4 failed "
                                    "attempts across usernames"),
                     1);
    assert_429(run(th, "GET", "/admin", basic("admin:pw"), "192.0.2.9"), "55");
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "192.0.2.10"));
}

/* The attack that evicted its own block: blocked for "admin", the client fails with ever new usernames so
 * that other entries push (address, admin) out of its set, then tries the password again. The block
 * stays, the address is blocked at 4 x 5 failures, and the admin elsewhere is never locked out. */
static void test_block_not_evicted_by_other_usernames(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    fail_n(th, "10.9.9.9", 5);
    int counted = 5;
    for (int i = 0; i < 20000; i++) {
        char cred[64];
        snprintf(cred, sizeof cred, "u%d:x", i);
        counted += gw_th_status(run(th, "GET", "/admin", basic(cred), "10.9.9.9")) == 401;
        gw_th_advance(th, 1);
    }
    assert_int_equal(counted, 20);
    assert_429(run(th, "GET", "/admin", basic("admin:" PASSWORD), "10.9.9.9"), "41");
    fail_n(th, "10.9.9.10", 1); /* the 20 warnings came within a second: 10 logged, the rest summed up */
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "10 more admin auth failures (last from 10.9.9.9)"), 1);
    assert_passed(run(th, "GET", "/admin", basic("admin:" PASSWORD), "10.9.9.10"));
    if (gw_th_host(th)->metric_register) /* logged or not, every failure is counted */
        assert_true(gw_th_metric(th, "gateway_admin_auth_failures_total", (const char *[]){"credentials"}) ==
                    21.0);
}

/* max_failures_per_address; an IPv6 address counts by its /64 */
static void test_per_address_setting(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures_per_address: 3\n");
    assert_int_equal(gw_th_status(run(th, "GET", "/admin", basic("a:x"), "2001:db8:1:2::1")), 401);
    assert_int_equal(gw_th_status(run(th, "GET", "/admin", basic("b:x"), "2001:db8:1:2::2")), 401);
    assert_int_equal(gw_th_status(run(th, "GET", "/admin", basic("c:x"), "2001:db8:1:2:ffff::3")), 401);
    assert_429(run(th, "GET", "/admin", basic("admin:pw"), "2001:db8:1:2::4"), "60");
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "2001:db8:1:3::1"));
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "::ffff:192.0.2.1"));
}

/* Requests that name no username (none, another scheme, malformed) are answered 401 but never counted, so
 * nobody can lock the admin out without guessing at a username. */
static void test_anonymous_not_counted(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    for (int i = 0; i < 12; i++)
        assert_401(run(th, "GET", "/admin/apikeys", NULL, "203.0.113.5"),
                   "Authentication required: missing Authorization header", NULL);
    const char *const malformed[] = {"Bearer abc", "Basic !!!!", "Basic YWRtaW4=", "Digest x", "Basic"};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
            assert_int_equal(gw_th_status(run(th, "GET", "/admin", malformed[i], "203.0.113.5")), 401);
    assert_passed(run(th, "GET", "/admin/apikeys", basic("admin:" PASSWORD), "203.0.113.5"));
    assert_int_equal(gw_th_log_find(th, GW_LOG_DEBUG, "throttled"), 0);
    /* wrong passwords from there are still throttled, at exactly max_failures */
    fail_n(th, "203.0.113.5", 5);
    assert_429(run(th, "GET", "/admin/apikeys", basic("admin:" PASSWORD), "203.0.113.5"), "60");
    assert_int_equal(
        gw_th_log_find(th, GW_LOG_WARN,
                       "client 203.0.113.5 throttled for 60000 ms after 5 failed attempts with the "
                       "configured username"),
        1);
}

/* The throttle keys on (address, username): a block for one username leaves the others alone. */
static void test_keyed_by_address_and_username(void **state)
{
    gw_th *th = *state;
    load(th, "name: adminauth\npassword: pw\nmax_failures: 2\n");
    for (int i = 0; i < 2; i++)
        assert_401(run(th, "GET", "/admin", basic("root:guess"), "198.51.100.7"),
                   "Invalid username or password", NULL);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN,
                                    "client 198.51.100.7 throttled for 60000 ms after 2 failed attempts with "
                                    "another username"),
                     1);
    assert_429(run(th, "GET", "/admin", basic("root:pw"), "198.51.100.7"), "60");
    /* the configured username from the same address is not blocked by the guesses at "root" */
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "198.51.100.7"));
    /* nor is "root" from another address */
    assert_401(run(th, "GET", "/admin", basic("root:guess"), "198.51.100.8"), "Invalid username or password",
               NULL);
    /* one failure of "admin", a success clears it; two block it */
    assert_401(run(th, "GET", "/admin", basic("admin:x"), "198.51.100.7"), "Invalid username or password",
               NULL);
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "198.51.100.7"));
    assert_401(run(th, "GET", "/admin", basic("admin:x"), "198.51.100.7"), "Invalid username or password",
               NULL);
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "198.51.100.7"));
    for (int i = 0; i < 2; i++)
        assert_401(run(th, "GET", "/admin", basic("admin:x"), "198.51.100.7"), "Invalid username or password",
                   NULL);
    assert_429(run(th, "GET", "/admin", basic("admin:pw"), "198.51.100.7"), "60");
    assert_passed(run(th, "GET", "/admin", basic("admin:pw"), "198.51.100.8"));
}

/* --- settings -------------------------------------------------------------------------------------- */

/* A browser's request on behalf of another site that would change something is refused (403), good
 * credentials or not; reads, same-origin pages, typed URLs and non-browser clients pass. */
static gw_req *run_from(gw_th *th, const char *method, const char *fetch_site, const char *origin,
                        const char *host)
{
    char auth[256];
    snprintf(auth, sizeof auth, "%s", basic("admin:" PASSWORD));
    gw_req *r = gw_th_request(th, method, "/admin/circuit-breakers/reset");
    assert_int_equal(gw_th_request_header(r, "Authorization", auth), 0);
    if (fetch_site) assert_int_equal(gw_th_request_header(r, "Sec-Fetch-Site", fetch_site), 0);
    if (origin) assert_int_equal(gw_th_request_header(r, "Origin", origin), 0);
    if (host) assert_int_equal(gw_th_request_header(r, "Host", host), 0);
    gw_th_upstream_reply(r, 200, "Content-Type: text/plain\n", "admin data");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static void test_cross_site_refused(void **state)
{
    gw_th *th = *state;
    load(th, CONF);
    static const struct {
        const char *method, *site, *origin, *host;
        int status;
    } cases[] = {
        {"POST", "cross-site", NULL, "gw.example", 403},
        {"POST", "same-site", NULL, "gw.example", 403},
        {"DELETE", "cross-site", "https://evil.example", "gw.example", 403},
        {"POST", "same-origin", "http://gw.example:8081", "gw.example:8081", 200},
        {"POST", "none", NULL, "gw.example", 200},                        /* typed or bookmarked */
        {"GET", "cross-site", "https://evil.example", "gw.example", 200}, /* a read changes nothing */
        {"HEAD", "cross-site", NULL, "gw.example", 200},
        /* no Sec-Fetch-Site (an older browser): Origin against Host */
        {"POST", NULL, "https://evil.example", "gw.example", 403},
        {"POST", NULL, "null", "gw.example", 403},
        {"POST", NULL, "http://gw.example:8081", "gw.example:8081", 200},
        {"POST", NULL, "http://gw.example", "gw.example:80", 200},
        {"POST", NULL, "https://GW.example:443", "gw.example", 200},
        {"POST", NULL, "http://gw.example:8082", "gw.example:8081", 403},
        {"POST", NULL, NULL, "gw.example", 200}, /* curl, scripts */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_req *r = run_from(th, cases[i].method, cases[i].site, cases[i].origin, cases[i].host);
        if (gw_th_status(r) != cases[i].status)
            fail_msg("case %zu (%s, Sec-Fetch-Site %s, Origin %s): %d, not %d", i, cases[i].method,
                     cases[i].site ? cases[i].site : "-", cases[i].origin ? cases[i].origin : "-",
                     gw_th_status(r), cases[i].status);
        if (cases[i].status == 403) {
            assert_false(gw_th_upstream_called(r));
            assert_non_null(strstr(gw_th_body(r, NULL), "Cross-site admin requests are refused"));
        }
    }
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "cross-site admin request refused"), 6);
    /* allow_cross_site: true lets them through */
    gw_th_free(th);
    *state = th = gw_th_new();
    load(th, "name: adminauth\npassword: '" PASSWORD "'\nallow_cross_site: true\n");
    assert_int_equal(gw_th_status(run_from(th, "POST", "cross-site", "https://evil.example", "gw.example")),
                     200);
}

static void expect_error(gw_th *th, const char *conf, const char *want)
{
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, conf), -1);
    assert_string_equal(gw_th_error(th), want);
    assert_null(strstr(gw_th_error(th), "s3cret"));
}

static void test_config_errors(void **state)
{
    gw_th *th = *state;
    const char *const required =
        "adminauth: password is required when admin authentication is enabled (set ADMIN_PASSWORD)";
    char want[256];
    snprintf(want, sizeof want, "pipeline.yaml:1:1: %s", required);
    expect_error(th, "name: adminauth\n", want);
    expect_error(th, "name: adminauth\npassword:\n", want); /* what an unquoted ${ADMIN_PASSWORD:-} gives */
    expect_error(th, "name: adminauth\nusername: root\npassword: ~\n", want);
    snprintf(want, sizeof want, "pipeline.yaml:2:11: %s", required);
    expect_error(th, "name: adminauth\npassword: ''\n", want);

    expect_error(th, "name: adminauth\npassword: [s3cret]\n",
                 "pipeline.yaml:2:11: adminauth.password: expected a string, not a list");
    expect_error(
        th, "name: adminauth\npassword: s3cret\npasword: x\n",
        "pipeline.yaml:3:1: adminauth.pasword: unknown setting (allowed: username, password, realm, path, "
        "max_failures, max_failures_per_address, block, allow_cross_site)");
    expect_error(th, "name: adminauth\npassword: s3cret\nusername: {a: b}\n",
                 "pipeline.yaml:3:11: adminauth.username: expected a string, not a mapping");
    expect_error(th, "name: adminauth\npassword: s3cret\nusername: ''\n",
                 "pipeline.yaml:3:11: adminauth.username: must not be empty");
    expect_error(th, "name: adminauth\npassword: s3cret\nusername: 'a:b'\n",
                 "pipeline.yaml:3:11: adminauth.username: must not contain ':' or control characters "
                 "(Basic authentication)");
    expect_error(th, "name: adminauth\npassword: s3cret\nmax_failures: many\n",
                 "pipeline.yaml:3:15: adminauth.max_failures: expected an integer (0..1000000), got 'many'");
    expect_error(th, "name: adminauth\npassword: s3cret\nmax_failures: -1\n",
                 "pipeline.yaml:3:15: adminauth.max_failures: -1 is out of range 0..1000000");
    expect_error(th, "name: adminauth\npassword: s3cret\nmax_failures: [5]\n",
                 "pipeline.yaml:3:15: adminauth.max_failures: expected a single value, not a list");
    expect_error(
        th, "name: adminauth\npassword: s3cret\nblock: soon\n",
        "pipeline.yaml:3:8: adminauth.block: expected a duration like 250ms, 10s, 2m, 1h (1ms..24h), "
        "got 'soon'");
    expect_error(th, "name: adminauth\npassword: s3cret\nblock: 0\n",
                 "pipeline.yaml:3:8: adminauth.block: 0 is out of range 1ms..24h");
    expect_error(th, "name: adminauth\npassword: s3cret\nblock: 25h\n",
                 "pipeline.yaml:3:8: adminauth.block: 25h is out of range 1ms..24h");
    expect_error(
        th, "name: adminauth\npassword: s3cret\npath: admin\n",
        "pipeline.yaml:3:7: adminauth.path: expected an absolute path such as /admin (no query, '%', "
        "empty or dot segments), got 'admin'");
    expect_error(
        th, "name: adminauth\npassword: s3cret\npath: /a/../admin\n",
        "pipeline.yaml:3:7: adminauth.path: expected an absolute path such as /admin (no query, '%', "
        "empty or dot segments), got '/a/../admin'");
    expect_error(
        th, "name: adminauth\npassword: s3cret\npath: '/admin?x'\n",
        "pipeline.yaml:3:7: adminauth.path: expected an absolute path such as /admin (no query, '%', "
        "empty or dot segments), got '/admin?x'");
    expect_error(th, "name: adminauth\npassword: s3cret\nrealm: ''\n",
                 "pipeline.yaml:3:8: adminauth.realm: expected 1..256 characters without control characters");
    assert_null(gw_th_instance(th, "adminauth"));

    /* the smallest valid entry */
    load(th, "name: adminauth\npassword: x\n");
    assert_non_null(gw_th_instance(th, "adminauth"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_failure_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_correct_credentials_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_site_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protected_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_not_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttled_after_max_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_passes_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spaced_failures_do_not_add_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_failures_zero_never_throttles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_clients_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_usernames_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_not_evicted_by_other_usernames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_address_setting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anonymous_not_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyed_by_address_and_username, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
