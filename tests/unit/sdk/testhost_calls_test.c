/* testhost_calls_test.c - the SDK test host's ABI 1.1 doubles: store_incr (counters, TTL on the first write
 * on the fake clock, failures) and http_call (canned answers, handlers, failures, latency and timeout on
 * the fake clock, max_body, calls recorded, dropped with their request, misuse reported). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

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

static void *host_as_inst(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    return (void *)h;
}

static void add_ok(gw_th *th, const gw_filter_desc *d)
{
    if (gw_th_add(th, d, NULL) != 0) fail_msg("gw_th_add: %s", gw_th_error(th));
}

static void no_violations(gw_th *th)
{
    if (gw_th_violations(th)) {
        for (size_t i = 0; i < gw_th_log_count(th); i++)
            print_error("%s\n", gw_th_log_line(th, i, NULL));
        fail_msg("%u violation(s)", gw_th_violations(th));
    }
}

/* Per-request state, the callbacks' argument (as sdk/README.md recommends). */
typedef struct {
    const gw_host *h;
    gw_req *req;
} st_t;

static int last_status;
static int64_t last_value;

/* ------------------------------------------------------------------------------------------------------
 * store_incr */

static void counted(void *arg, int status, int64_t v)
{
    st_t *st = arg;
    last_status = status;
    last_value = v;
    st->h->resume(st->req, GW_CONTINUE);
}

static gw_result incr_req(void *inst, void *rc, void *state, gw_req *req)
{
    st_t *st = state;
    st->h = inst;
    st->req = req;
    gw_strv q = st->h->query(req); /* "delta", or "t": a TTL past the longest one a store takes */
    int64_t delta = q.n && q.p[0] != 't' ? strtoll(q.p, NULL, 10) : 1;
    uint64_t ttl = q.n && q.p[0] == 't' ? GW_STORE_TTL_MAX_MS + 1 : 1000;
    return st->h->store_incr(req, "n", delta, ttl, counted, st) == 0 ? GW_WAIT : GW_ERROR;
}

static const gw_filter_desc incr_desc = {.abi_major = GW_ABI_MAJOR,
                                         .abi_minor = GW_ABI_MINOR,
                                         .struct_size = sizeof(gw_filter_desc),
                                         .name = "inc",
                                         .version = "1",
                                         .create = host_as_inst,
                                         .on_request = incr_req,
                                         .req_state_size = sizeof(st_t)};

static int64_t incr_once(gw_th *th, const char *target)
{
    gw_req *r = gw_th_request(th, "GET", target);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    return last_value;
}

static void test_store_incr(void **state)
{
    gw_th *th = *state;
    add_ok(th, &incr_desc);
    assert_int_equal(incr_once(th, "/"), 1);
    assert_int_equal(incr_once(th, "/?5"), 6);
    gw_th_advance(th, 600);
    assert_int_equal(incr_once(th, "/?-2"), 4);
    assert_string_equal(gw_th_store_peek(th, "inc", "n", NULL), "4");
    gw_th_advance(th, 400); /* 1000 ms after the first write: gone, whatever came later */
    assert_null(gw_th_store_peek(th, "inc", "n", NULL));
    assert_int_equal(incr_once(th, "/"), 1);
    gw_req *t = gw_th_request(th, "GET", "/?t"); /* refused as by the gateway: no call, the filter fails */
    assert_int_equal(gw_th_run(t), GW_TH_DONE);
    assert_int_equal(gw_th_status(t), 500);
    assert_int_equal(gw_th_store_put(th, "inc", "n", "abc", 3, 0), 0);
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(last_status, -1); /* not an integer */
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(last_status, -1);
    assert_int_equal(last_value, 0);
    no_violations(th);
}

/* ------------------------------------------------------------------------------------------------------
 * http_call */

static int got_status;
static char got_body[256];
static char got_header[64];

static void answered(void *arg, int status, const gw_http_response *resp)
{
    st_t *st = arg;
    got_status = status;
    got_body[0] = got_header[0] = '\0';
    if (resp) {
        snprintf(got_body, sizeof got_body, "%.*s", (int)resp->body.n, resp->body.p);
        for (size_t i = 0; i < resp->nheaders; i++)
            if (resp->headers[2 * i].n == 4 && !memcmp(resp->headers[2 * i].p, "X-Up", 4))
                snprintf(got_header, sizeof got_header, "%.*s", (int)resp->headers[2 * i + 1].n,
                         resp->headers[2 * i + 1].p);
        st->h->respond(st->req, resp->status, "text/plain", resp->body.p, resp->body.n);
        st->h->resume(st->req, GW_RESPOND);
        return;
    }
    st->h->respond_error(st->req, 502, "call failed");
    st->h->resume(st->req, GW_RESPOND);
}

static uint64_t call_timeout;
static uint64_t call_max;

/* Calls the path's first segment as a service ("/auth/...") or, for "/url", a URL. */
static gw_result call_req(void *inst, void *rc, void *state, gw_req *req)
{
    st_t *st = state;
    st->h = inst;
    st->req = req;
    gw_strv p = st->h->path(req);
    const gw_strv hdrs[] = {{"Authorization", 13}, {"Bearer t", 8}};
    gw_http_call call = {.method = "POST",
                         .path = "/check",
                         .headers = hdrs,
                         .nheaders = 1,
                         .body = "{}",
                         .body_len = 2,
                         .timeout_ms = call_timeout,
                         .max_body = call_max};
    if (p.n == 4 && !memcmp(p.p, "/url", 4))
        call.url = "http://auth.example:8080/introspect";
    else
        call.service = "auth";
    return st->h->http_call(req, &call, answered, st) == 0 ? GW_WAIT : GW_ERROR;
}

static const gw_filter_desc call_desc = {.abi_major = GW_ABI_MAJOR,
                                         .abi_minor = GW_ABI_MINOR,
                                         .struct_size = sizeof(gw_filter_desc),
                                         .name = "ext",
                                         .version = "1",
                                         .create = host_as_inst,
                                         .on_request = call_req,
                                         .req_state_size = sizeof(st_t)};

static void test_call_canned(void **state)
{
    gw_th *th = *state;
    add_ok(th, &call_desc);
    assert_int_equal(gw_th_call_reply(th, "auth", 201, "X-Up: yes\n", "granted"), 0);
    gw_req *r = gw_th_request(th, "GET", "/a");
    assert_int_equal(gw_th_run(r), GW_TH_DONE); /* delivered with the queued callbacks */
    assert_int_equal(got_status, GW_CALL_OK);
    assert_int_equal(gw_th_status(r), 201);
    assert_string_equal(got_body, "granted");
    assert_string_equal(got_header, "yes");
    assert_false(gw_th_upstream_called(r));
    assert_int_equal(gw_th_call_count(th), 1);
    const gw_http_call *c = gw_th_call_made(th, 0);
    assert_string_equal(c->service, "auth");
    assert_string_equal(c->method, "POST");
    assert_string_equal(c->path, "/check");
    assert_int_equal(c->nheaders, 1);
    assert_memory_equal(c->headers[1].p, "Bearer t", 8);
    assert_memory_equal(c->body, "{}", 2);

    /* a URL: prefix match; nothing registered: GW_CALL_CONNECT */
    gw_req *u = gw_th_request(th, "GET", "/url");
    assert_int_equal(gw_th_run(u), GW_TH_DONE);
    assert_int_equal(got_status, GW_CALL_CONNECT);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "no answer registered"), 1);
    assert_int_equal(gw_th_call_reply(th, "http://auth.example:8080/*", 200, NULL, "url"), 0);
    u = gw_th_request(th, "GET", "/url");
    assert_int_equal(gw_th_run(u), GW_TH_DONE);
    assert_string_equal(got_body, "url");

    assert_int_equal(gw_th_call_fail(th, "auth", GW_CALL_INVALID), 0);
    r = gw_th_request(th, "GET", "/a");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(got_status, GW_CALL_INVALID);
    assert_int_equal(gw_th_status(r), 502);
    assert_int_equal(gw_th_call_fail(th, "auth", 7), -1);
    no_violations(th);
}

static int handler(void *arg, const gw_http_call *call, gw_th_call_answer *a)
{
    int *n = arg;
    (*n)++;
    if (strcmp(call->path, "/check") != 0) return GW_CALL_CLOSED;
    a->status = 200;
    a->headers = "X-Up: handled\n";
    a->body = "0123456789";
    return GW_CALL_OK;
}

static void test_call_handler_latency_limits(void **state)
{
    gw_th *th = *state;
    add_ok(th, &call_desc);
    int n = 0;
    assert_int_equal(gw_th_call_handler(th, "auth", handler, &n), 0);
    assert_int_equal(gw_th_call_latency(th, "auth", 200), 0);
    gw_req *r = gw_th_request(th, "GET", "/a");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING); /* 200 ms on the fake clock */
    assert_int_equal(n, 1);
    gw_th_advance(th, 199);
    assert_int_equal(gw_th_state_of(r), GW_TH_WAITING);
    gw_th_advance(th, 1);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_string_equal(got_header, "handled");

    call_timeout = 100; /* latency 200 >= timeout: GW_CALL_TIMEOUT at 100 ms */
    r = gw_th_request(th, "GET", "/a");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_th_advance(th, 100);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_int_equal(got_status, GW_CALL_TIMEOUT);
    call_timeout = 0;

    call_max = 5; /* the handler's 10 bytes are over it */
    assert_int_equal(gw_th_call_latency(th, "auth", 0), 0);
    r = gw_th_request(th, "GET", "/a");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(got_status, GW_CALL_TOO_LARGE);
    call_max = 0;

    /* the client goes away while the call is pending: dropped, never called back */
    assert_int_equal(gw_th_call_latency(th, "auth", 50), 0);
    got_status = 99;
    r = gw_th_request(th, "GET", "/a");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_th_abort(r);
    gw_th_advance(th, 100);
    assert_int_equal(got_status, 99);
    assert_int_equal(gw_th_call_latency(th, "auth", 0), 0);
    r = gw_th_request(th, "GET", "/a");
    gw_th_store_auto(th, false);
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_th_abort(r);
    assert_int_equal(gw_th_run_pending(th), 1); /* taken off the queue, not delivered */
    assert_int_equal(got_status, 99);
    no_violations(th);
}

static gw_result bad_call_req(void *inst, void *rc, void *state, gw_req *req)
{
    const gw_host *h = inst;
    const gw_strv hdrs[] = {{"X-A", 3}, {"a\r\nb", 4}};
    gw_http_call none = {0}, bad_hdr = {.service = "auth", .headers = hdrs, .nheaders = 1};
    gw_http_call bad_path = {.service = "auth", .path = "no-slash"}, bad_url = {.url = "ftp://x/"};
    int rc1 = h->http_call(req, &none, answered, state), rc2 = h->http_call(req, &bad_hdr, answered, state);
    int rc3 = h->http_call(req, &bad_path, answered, state),
        rc4 = h->http_call(req, &bad_url, answered, state);
    return rc1 == -1 && rc2 == -1 && rc3 == -1 && rc4 == -1 ? GW_CONTINUE : GW_ERROR;
}

static gw_result log_call(void *inst, void *rc, void *state, gw_req *req)
{
    const gw_host *h = inst;
    gw_http_call c = {.service = "auth"};
    h->http_call(req, &c, answered, state);
    return GW_CONTINUE;
}

static void test_call_misuse(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "bad",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = bad_call_req,
                        .on_log = log_call,
                        .req_state_size = sizeof(st_t)};
    add_ok(th, &d);
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(gw_th_violations(th), 5);
    assert_int_equal(gw_th_log_find(th, GW_LOG_ERROR, "http_call with neither a service nor a URL"), 1);
    assert_int_equal(gw_th_log_find(th, GW_LOG_ERROR, "http_call in the log phase"), 1);
    assert_int_equal(gw_th_call_count(th), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_incr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_canned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_handler_latency_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_misuse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
