/* ratelimit_test.c - unit tests of plugins/ratelimit on the SDK test host and its fake clock: burst, refill
 * (whole and fractional), Retry-After and X-RateLimit-Reset values, the per-key rate, identities that no
 * header can select, trusted proxies (IPv4, IPv6, right-most untrusted), store failure (local, allow,
 * deny; errors, refusals and timeouts) with the fallback metric and the logged state changes, per-route
 * settings, exempt paths, the IETF fields, settings errors. GW_PLUGIN_SO is the built filter. */
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
#define GW_PLUGIN_SO "ratelimit.so"
#endif

#define NS "ratelimit"

#include <math.h>

/* (older cmocka has no assert_double_equal) */
#define assert_near(a, b, eps)                                                                               \
    do {                                                                                                     \
        double a_ = (a), b_ = (b);                                                                           \
        if (!(fabs(a_ - b_) <= (eps))) fail_msg("%s = %g, expected %g", #a, a_, b_);                         \
    } while (0)

/* --- a stand-in for apikey: consumer.id / consumer.rate_limit from test headers ---------------------- */

static const gw_host *ident_host;

static gw_result ident_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)inst;
    (void)route_conf;
    (void)state;
    gw_strv v;
    if (ident_host->header_get(req, GW_HDR_REQUEST, "X-Test-Consumer", &v))
        ident_host->req_set(req, "consumer.id", v.p, v.n);
    if (ident_host->header_get(req, GW_HDR_REQUEST, "X-Test-Rate", &v))
        ident_host->req_set(req, "consumer.rate_limit", v.p, v.n);
    if (ident_host->header_get(req, GW_HDR_REQUEST, "X-Test-Admin", &v))
        ident_host->req_set(req, "admin.user", v.p, v.n); /* as adminauth does after a good password */
    return GW_CONTINUE;
}

static void *ident_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)self;
    (void)conf;
    (void)err;
    (void)errlen;
    ident_host = h;
    return (void *)&ident_host;
}

static const gw_filter_desc ident_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "ident",
    .version = "1.0.0",
    .create = ident_create,
    .on_request = ident_on_request,
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

static void load(gw_th *th, const char *conf)
{
    assert_int_equal(gw_th_add(th, &ident_desc, "name: ident\n"), 0);
    if (gw_th_load(th, GW_PLUGIN_SO, conf) != 0) fail_msg("%s", gw_th_error(th));
}

typedef struct {
    const char *ip, *consumer, *rate, *xff, *xff2, *real_ip, *api_key;
} who;

static gw_req *call(gw_th *th, const char *path, const who *w)
{
    gw_req *r = gw_th_request(th, "GET", path);
    if (w && w->ip) gw_th_request_client_ip(r, w->ip);
    if (w && w->consumer) gw_th_request_header(r, "X-Test-Consumer", w->consumer);
    if (w && w->rate) gw_th_request_header(r, "X-Test-Rate", w->rate);
    if (w && w->xff) gw_th_request_header(r, "X-Forwarded-For", w->xff);
    if (w && w->xff2) gw_th_request_header(r, "X-Forwarded-For", w->xff2);
    if (w && w->real_ip) gw_th_request_header(r, "X-Real-IP", w->real_ip);
    if (w && w->api_key) gw_th_request_header(r, "X-API-Key", w->api_key);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static int status_of(gw_th *th, const char *path, const who *w)
{
    return gw_th_status(call(th, path, w));
}

static const char *hdr(gw_req *r, const char *name)
{
    return gw_th_header(r, GW_HDR_RESPONSE, name);
}

static long hnum(gw_req *r, const char *name)
{
    const char *v = hdr(r, name);
    if (!v) fail_msg("no %s", name);
    return strtol(v, NULL, 10);
}

static uint64_t unix_s_ceil(gw_th *th, uint64_t plus_ms)
{
    uint64_t ms = gw_th_host(th)->unix_ms() + plus_ms;
    return (ms + 999) / 1000;
}

static double metric(gw_th *th, const char *name, const char *label)
{
    if (!label) return gw_th_metric(th, name, NULL);
    return gw_th_metric(th, name, (const char *const[]){label});
}

/* n requests, each expected to answer `status` */
static void expect_n(gw_th *th, int n, int status, const who *w)
{
    for (int i = 0; i < n; i++) {
        gw_req *r = call(th, "/api/x", w);
        if (gw_th_status(r) != status)
            fail_msg("request %d: status %d, expected %d", i + 1, gw_th_status(r), status);
    }
}

/* --- tests ----------------------------------------------------------------------------------------- */

static void test_burst_and_headers(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\n");
    for (int i = 1; i <= 10; i++) {
        gw_req *r = call(th, "/api/x", NULL);
        assert_int_equal(gw_th_status(r), 200);
        assert_true(gw_th_upstream_called(r));
        assert_int_equal(hnum(r, "X-RateLimit-Limit"), 10);
        assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 10 - i);
        /* no time passes: full again after i tokens at 1/s */
        assert_int_equal(hnum(r, "X-RateLimit-Reset"), (long)unix_s_ceil(th, (uint64_t)i * 1000));
        assert_null(hdr(r, "Retry-After"));
        assert_null(hdr(r, "RateLimit"));
    }
    gw_req *r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(hdr(r, "Content-Type"), "application/json");
    assert_string_equal(gw_th_body(r, NULL),
                        "{\"error\":\"Rate limit exceeded\",\"message\":\"Too many requests; try "
                        "again in 1 second\",\"request_id\":\"req-11\"}");
    assert_string_equal(hdr(r, "Retry-After"), "1");
    assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 0);
    assert_int_equal(hnum(r, "X-RateLimit-Limit"), 10);
    assert_int_equal(hnum(r, "X-RateLimit-Reset"), (long)unix_s_ceil(th, 10000));
    assert_near(metric(th, "gateway_rate_limited_total", NULL), 1, 0);
    assert_near(gw_th_bucket_tokens(th, NS, "ip:127.0.0.1"), 0, 1e-9);
}

static void test_refill(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nrpm: 60\nburst: 3\n");
    expect_n(th, 3, 200, NULL);
    expect_n(th, 1, 429, NULL);
    gw_th_advance(th, 999);
    expect_n(th, 1, 429, NULL);
    gw_th_advance(th, 1);
    expect_n(th, 1, 200, NULL);
    expect_n(th, 1, 429, NULL);
    gw_th_advance(th, 5000); /* never beyond the capacity */
    expect_n(th, 3, 200, NULL);
    expect_n(th, 1, 429, NULL);
    assert_near(metric(th, "gateway_rate_limited_total", NULL), 4, 0);
}

static void test_fractional_refill_and_retry_after(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nrpm: 40\nburst: 2\n"); /* 2/3 token per second: 1500 ms per token */
    expect_n(th, 2, 200, NULL);
    gw_req *r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "2"); /* 1.5 s, rounded up */
    assert_int_equal(hnum(r, "X-RateLimit-Reset"), (long)unix_s_ceil(th, 3000));
    gw_th_advance(th, 750); /* half a token: still refused, 0.75 s to go */
    r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "1");
    assert_near(gw_th_bucket_tokens(th, NS, "ip:127.0.0.1"), 0.5, 1e-9);
    gw_th_advance(th, 750);
    r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 0);
    gw_th_advance(th, 1499);
    assert_int_equal(status_of(th, "/api/x", NULL), 429);
    gw_th_advance(th, 1);
    assert_int_equal(status_of(th, "/api/x", NULL), 200);
}

static void test_per_key_rate(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nrpm: 6\nburst: 2\n");
    who k1 = {.consumer = "k1", .rate = "600"}; /* 10/s */
    who k2 = {.consumer = "k2"};                /* no rate of its own: the default */
    expect_n(th, 2, 200, &k1);
    gw_req *r = call(th, "/api/x", &k1);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "1");
    assert_int_equal(hnum(r, "X-RateLimit-Limit"), 2); /* the capacity stays */
    gw_th_advance(th, 100);
    expect_n(th, 1, 200, &k1);
    expect_n(th, 2, 200, &k2);
    r = call(th, "/api/x", &k2);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "10");
    /* the IP bucket is untouched by keyed requests */
    assert_near(gw_th_bucket_tokens(th, NS, "ip:127.0.0.1"), -1, 0);
    expect_n(th, 2, 200, NULL);
    /* a bad rate is ignored */
    who k3 = {.consumer = "k3", .rate = "-5"};
    expect_n(th, 2, 200, &k3);
    r = call(th, "/api/x", &k3);
    assert_string_equal(hdr(r, "Retry-After"), "10");
}

static void test_namespaces(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 2\n");
    /* a consumer whose id looks like an address does not share the address's bucket */
    who addr = {.ip = "192.0.2.1"};
    who key_like_addr = {.consumer = "192.0.2.1", .ip = "198.51.100.9"};
    who key_like_ns = {.consumer = "ip:192.0.2.1", .ip = "198.51.100.9"};
    expect_n(th, 2, 200, &addr);
    expect_n(th, 1, 429, &addr);
    expect_n(th, 2, 200, &key_like_addr);
    expect_n(th, 2, 200, &key_like_ns);
    assert_near(gw_th_bucket_tokens(th, NS, "ip:192.0.2.1"), 0, 1e-9);
    assert_near(gw_th_bucket_tokens(th, NS, "key:192.0.2.1"), 0, 1e-9);
    assert_near(gw_th_bucket_tokens(th, NS, "key:ip:192.0.2.1"), 0, 1e-9);
    /* headers the client controls choose nothing: X-API-Key (no consumer without apikey), XFF (untrusted) */
    who spoof = {.ip = "192.0.2.1", .api_key = "key:k9", .xff = "203.0.113.5"};
    expect_n(th, 1, 429, &spoof);
    who victim = {.consumer = "k9"};
    expect_n(th, 2, 200, &victim);
    who spoof2 = {.ip = "203.0.113.77", .api_key = "k9"};
    expect_n(th, 2, 200, &spoof2);
    assert_near(gw_th_bucket_tokens(th, NS, "ip:203.0.113.5"), -1, 0);
    assert_near(gw_th_bucket_tokens(th, NS, "key:k9"), 0, 1e-9);
}

static void test_trusted_proxies(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 1\ntrusted_proxies: [10.0.0.0/8, '2001:db8::/32', 127.0.0.1]\n");
    struct {
        who w;
        const char *bucket;
    } cases[] = {
        {{.ip = "10.0.0.5", .xff = "1.1.1.1, 2.2.2.2, 10.0.0.7"}, "ip:2.2.2.2"}, /* right-most untrusted */
        {{.ip = "192.0.2.10", .xff = "3.3.3.3"}, "ip:192.0.2.10"},               /* untrusted peer */
        {{.ip = "10.1.2.3", .xff = "4.4.4.4", .xff2 = "10.9.9.9, 5.5.5.5"}, "ip:5.5.5.5"}, /* two fields */
        {{.ip = "10.1.2.3", .xff = "10.2.2.2, 10.3.3.3"}, "ip:10.2.2.2"},         /* all trusted: left-most */
        {{.ip = "10.1.2.3", .xff = "6.6.6.6, garbage, 10.4.4.4"}, "ip:10.4.4.4"}, /* unparsable: stop there */
        {{.ip = "10.1.2.3", .real_ip = "7.7.7.7"}, "ip:7.7.7.7"},                 /* X-Real-IP without XFF */
        {{.ip = "10.1.2.3", .xff = "8.8.8.8:4711"}, "ip:8.8.8.8"},                /* with a port */
        {{.ip = "2001:db8::1", .xff = "2001:0DB8:0:0::5, 2001:db9:0::7"}, "ip:2001:db9::7"},
        {{.ip = "2001:db8:ffff::1", .xff = "[2001:db9::8]:443"}, "ip:2001:db9::8"},
        {{.ip = "::ffff:10.0.0.9", .xff = "9.9.9.9"}, "ip:9.9.9.9"}, /* IPv4-mapped peer */
        {{.ip = "2001:db9::1", .xff = "1.2.3.4"}, "ip:2001:db9::1"}, /* untrusted IPv6 peer */
        {{.ip = "2001:0db9:0000:0000:0001:0000:0000:0001"}, "ip:2001:db9::1:0:0:1"},
        {{.ip = "127.0.0.1", .xff = "::1"}, "ip:::1"},
        {{.ip = "127.0.0.2", .xff = "1.2.3.5"}, "ip:127.0.0.2"}, /* a /32 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_req *r = call(th, "/api/x", &cases[i].w);
        if (gw_th_status(r) != 200) fail_msg("case %zu: status %d", i, gw_th_status(r));
        if (gw_th_bucket_tokens(th, NS, cases[i].bucket) != 0)
            fail_msg("case %zu: bucket %s has %g", i, cases[i].bucket,
                     gw_th_bucket_tokens(th, NS, cases[i].bucket));
    }
    /* the second request of the first client, through another trusted proxy: the same bucket */
    who again = {.ip = "10.200.0.1", .xff = "2.2.2.2"};
    expect_n(th, 1, 429, &again);
}

static void test_store_fail_local(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 3\n");
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    for (int i = 0; i < 3; i++) {
        gw_req *r = call(th, "/api/x", NULL);
        assert_int_equal(gw_th_status(r), 200);
        assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 2 - i);
    }
    gw_req *r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "1");
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "local"), 4, 0);
    assert_near(metric(th, "gateway_rate_limited_total", NULL), 1, 0);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "store unavailable"), 1);
    /* the store works again; the next probe goes after a second */
    gw_th_store_mode(th, GW_TH_STORE_OK);
    gw_th_advance(th, 500);
    expect_n(th, 1, 429, NULL);                                      /* still local: 0.5 tokens */
    assert_near(gw_th_bucket_tokens(th, NS, "ip:127.0.0.1"), -1, 0); /* the store was not asked */
    gw_th_advance(th, 500);
    r = call(th, "/api/x", NULL); /* the probe: the store's own (full) bucket */
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 2);
    assert_near(gw_th_bucket_tokens(th, NS, "ip:127.0.0.1"), 2, 1e-9);
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "store available again"), 1);
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "local"), 5, 0);
    expect_n(th, 2, 200, NULL);
    expect_n(th, 1, 429, NULL);
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "local"), 5, 0);
    /* failing again: logged again, once */
    gw_th_store_mode(th, GW_TH_STORE_DOWN);
    gw_th_advance(th, 3000);
    expect_n(th, 3, 200, NULL);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "store unavailable"), 2);
}

static void test_store_fail_allow_deny(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 1\non_store_error: allow\n");
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    for (int i = 0; i < 5; i++) {
        gw_req *r = call(th, "/api/x", NULL);
        assert_int_equal(gw_th_status(r), 200);
        assert_null(hdr(r, "X-RateLimit-Remaining"));
    }
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "allow"), 5, 0);
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "local"), 0, 0);
    gw_th_free(th);

    th = gw_th_new();
    *state = th;
    load(th, "name: ratelimit\nburst: 1\non_store_error: deny\n");
    gw_th_store_mode(th, GW_TH_STORE_DOWN);
    gw_req *r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 503);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(hdr(r, "Retry-After"), "1");
    assert_string_equal(gw_th_body(r, NULL),
                        "{\"error\":\"Service Unavailable\",\"message\":\"Rate limiting is "
                        "unavailable; try again shortly\",\"request_id\":\"req-1\"}");
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "deny"), 1, 0);
    assert_near(metric(th, "gateway_rate_limited_total", NULL), 0, 0);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "on_store_error=deny"), 1);
}

static void test_store_timeout(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 2\nstore_timeout: 50ms\n");
    gw_th_store_auto(th, false);
    gw_req *r = gw_th_request(th, "GET", "/api/x");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_th_advance(th, 49);
    assert_int_equal(gw_th_state_of(r), GW_TH_WAITING);
    gw_th_advance(th, 1); /* the guard: decided locally */
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 1);
    gw_th_run_pending(th); /* the late answer: dropped with the request (the test host reports a call) */
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "local"), 1, 0);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "store unavailable (timeout)"), 1);
    /* meanwhile requests do not wait */
    r = gw_th_request(th, "GET", "/api/x");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(hnum(r, "X-RateLimit-Remaining"), 0);

    /* a probe whose client goes away lets the next request probe */
    gw_th_advance(th, 1000);
    r = gw_th_request(th, "GET", "/api/x");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_req *r2 = gw_th_request(th, "GET", "/api/x");
    assert_int_equal(gw_th_run(r2), GW_TH_DONE); /* a probe is out: local */
    gw_th_abort(r);
    gw_th_run_pending(th);
    r = gw_th_request(th, "GET", "/api/x");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    assert_int_equal(gw_th_run_pending(th), 1); /* the store answers in time */
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "store available again"), 1);
    gw_th_advance(th, 1000); /* the cancelled guard does not fire */
    assert_near(metric(th, "gateway_ratelimit_store_fallback_total", "local"), 3, 0);
}

/* By default the gateway's own probes and scrapes are never limited; their neighbours are. */
static void test_default_exempt(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 1\n");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(status_of(th, "/health", NULL), 200);
        assert_int_equal(status_of(th, "/metrics", NULL), 200);
        assert_int_equal(status_of(th, "/services/health", NULL), 200);
        assert_int_equal(status_of(th, "/info", NULL), 200);
    }
    assert_int_equal(status_of(th, "/services", NULL), 200);
    assert_int_equal(status_of(th, "/services", NULL), 429);
    assert_int_equal(status_of(th, "/metricsz", NULL), 429);
}

static void test_routes_and_exempt(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nburst: 2\nexempt: [/health, /status/]\n");
    assert_int_equal(gw_th_route(th, "slow", "/slow", "ratelimit:\n  rpm: 6\n  burst: 1\n"), 0);
    assert_int_equal(gw_th_route(th, "free", "/free", "ratelimit:\n  disabled: true\n"), 0);
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);
    for (int i = 0; i < 5; i++) {
        gw_req *r = call(th, "/health", NULL);
        assert_int_equal(gw_th_status(r), 200);
        assert_null(hdr(r, "X-RateLimit-Limit"));
        assert_int_equal(status_of(th, "/status/x", NULL), 200);
        assert_int_equal(status_of(th, "/free/a", NULL), 200);
    }
    assert_int_equal(status_of(th, "/healthz", NULL), 200); /* not exempt: a segment boundary */
    assert_int_equal(status_of(th, "/api", NULL), 200);
    assert_int_equal(status_of(th, "/api", NULL), 429);
    /* the route's own bucket */
    gw_req *r = call(th, "/slow/1", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(hnum(r, "X-RateLimit-Limit"), 1);
    r = call(th, "/slow/2", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "10");
    assert_near(gw_th_bucket_tokens(th, NS, "r4:slow|ip:127.0.0.1"), 0, 1e-9);
    /* the route's rpm wins over a key's own rate */
    who k = {.consumer = "k", .rate = "6000"};
    expect_n(th, 1, 200, &k);
    r = gw_th_request(th, "GET", "/slow");
    gw_th_request_header(r, "X-Test-Consumer", "k");
    gw_th_request_header(r, "X-Test-Rate", "6000");
    gw_th_run(r);
    assert_int_equal(gw_th_status(r), 200);
    r = gw_th_request(th, "GET", "/slow");
    gw_th_request_header(r, "X-Test-Consumer", "k");
    gw_th_request_header(r, "X-Test-Rate", "6000");
    gw_th_run(r);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "10");
}

/* A request that passed admin authentication (admin.user) is not limited, unless limit_admin says so. */
static void test_admin_not_limited(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nrpm: 1\nburst: 2\n");
    for (int i = 0; i < 6; i++) {
        gw_req *r = gw_th_request(th, "GET", "/admin/apikeys");
        gw_th_request_header(r, "X-Test-Admin", "admin");
        assert_int_equal(gw_th_run(r), GW_TH_DONE);
        assert_int_equal(gw_th_status(r), 200);
        assert_null(hdr(r, "X-RateLimit-Remaining"));
    }
    /* the same client without admin credentials still has its whole burst, then 429 */
    assert_int_equal(status_of(th, "/api/x", NULL), 200);
    assert_int_equal(status_of(th, "/api/x", NULL), 200);
    assert_int_equal(status_of(th, "/api/x", NULL), 429);
}

static void test_limit_admin(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nrpm: 1\nburst: 2\nlimit_admin: true\n");
    int got[3];
    for (int i = 0; i < 3; i++) {
        gw_req *r = gw_th_request(th, "GET", "/admin/apikeys");
        gw_th_request_header(r, "X-Test-Admin", "admin");
        assert_int_equal(gw_th_run(r), GW_TH_DONE);
        got[i] = gw_th_status(r);
    }
    assert_int_equal(got[0], 200);
    assert_int_equal(got[1], 200);
    assert_int_equal(got[2], 429);
}

static void test_ietf_headers(void **state)
{
    gw_th *th = *state;
    load(th, "name: ratelimit\nrpm: 30\nburst: 5\nheaders: both\n");
    gw_req *r = call(th, "/api/x", NULL);
    assert_string_equal(hdr(r, "RateLimit-Policy"), "\"default\";q=5;w=10");
    assert_string_equal(hdr(r, "RateLimit"), "\"default\";r=4;t=2");
    assert_string_equal(hdr(r, "X-RateLimit-Remaining"), "4");
    gw_th_free(th);

    th = gw_th_new();
    *state = th;
    load(th, "name: ratelimit\nburst: 1\nheaders: ietf\n");
    r = call(th, "/api/x", NULL);
    assert_null(hdr(r, "X-RateLimit-Limit"));
    assert_string_equal(hdr(r, "RateLimit"), "\"default\";r=0;t=1");
    r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "1");
    gw_th_free(th);

    th = gw_th_new();
    *state = th;
    load(th, "name: ratelimit\nburst: 1\nheaders: none\n");
    r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, "RateLimit"), 0);
    assert_null(hdr(r, "X-RateLimit-Limit"));
    r = call(th, "/api/x", NULL);
    assert_int_equal(gw_th_status(r), 429);
    assert_string_equal(hdr(r, "Retry-After"), "1");
}

static void test_settings_errors(void **state)
{
    gw_th *th = *state;
    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"name: ratelimit\ncolour: red\n", "ratelimit.colour: unknown setting (allowed: rpm, burst,"},
        {"name: ratelimit\nrpm: 0\n", "rpm: expected a number above 0"},
        {"name: ratelimit\nrpm: x\n", NULL},
        {"name: ratelimit\nburst: 0\n", NULL},
        {"name: ratelimit\nheaders: all\n",
         "ratelimit.headers: 'all' is not one of legacy, ietf, both, none"},
        {"name: ratelimit\non_store_error: ignore\n",
         "on_store_error: 'ignore' is not one of local, allow, deny"},
        {"name: ratelimit\nstore_timeout: 0ms\n", "ratelimit.store_timeout: 0ms is out of range 1ms..1m"},
        {"name: ratelimit\ntrusted_proxies: 10.0.0.0/8, 10.0.0.0/33\n",
         "'10.0.0.0/33' is not an IPv4 or IPv6"},
        {"name: ratelimit\ntrusted_proxies: [10.0.0.0/33]\n",
         "'10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR"},
        {"name: ratelimit\ntrusted_proxies: ['::1/129']\n", "is not an IPv4 or IPv6 address or CIDR"},
        {"name: ratelimit\ntrusted_proxies: [300.1.1.1]\n", "is not an IPv4 or IPv6 address or CIDR"},
        {"name: ratelimit\nburst: lots\n",
         "ratelimit.burst: expected an integer (1..1000000000), got 'lots'"},
        {"name: ratelimit\ndisabled: true\n", "ratelimit.disabled: a per-route setting"},
        {"name: ratelimit\nexempt: [health]\n",
         "ratelimit.exempt: 'health' is not a path prefix starting with '/'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (gw_th_load(th, GW_PLUGIN_SO, bad[i].yaml) != -1) fail_msg("accepted: %s", bad[i].yaml);
        if (!strstr(gw_th_error(th), "pipeline.yaml:"))
            fail_msg("%s: no position in '%s'", bad[i].yaml, gw_th_error(th));
        if (bad[i].msg && !strstr(gw_th_error(th), bad[i].msg))
            fail_msg("%s: '%s' lacks '%s'", bad[i].yaml, gw_th_error(th), bad[i].msg);
    }
    assert_int_equal(gw_th_load(th, GW_PLUGIN_SO,
                                "name: ratelimit\nrpm: 0.5\nburst: 1\ntrusted_proxies: ['::/0', 0.0.0.0/0]\n"
                                "headers: ietf\non_store_error: deny\nstore_timeout: 2s\nexempt: []\n"),
                     0);
    assert_int_equal(gw_th_route(th, "bad", "/bad", "ratelimit:\n  rpm: -1\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "ratelimit.rpm: -1 is out of range 0..1000000000"));
    assert_int_equal(gw_th_route(th, "bad0", "/bad0", "ratelimit:\n  rpm: 0\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "rpm: expected a number above 0"));
    assert_int_equal(gw_th_route(th, "bad2", "/bad2", "ratelimit:\n  burst: 2\n  speed: 3\n"), -1);
    assert_non_null(strstr(gw_th_error(th),
                           "ratelimit.speed: unknown setting (per-route settings: rpm, burst, disabled)"));
    assert_int_equal(gw_th_route(th, "bad3", "/bad3", "ratelimit:\n  disabled: maybe\n"), -1);
    assert_int_equal(gw_th_route(th, "bad4", "/bad4", "ratelimit:\n  headers: none\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "ratelimit.headers: not a per-route setting"));
    /* exempt: [] limits /health too */
    assert_int_equal(status_of(th, "/health", NULL), 200);
    assert_int_equal(status_of(th, "/health", NULL), 429);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fractional_refill_and_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_key_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trusted_proxies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fail_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fail_allow_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_exempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routes_and_exempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ietf_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_not_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
