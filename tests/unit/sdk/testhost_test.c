/* testhost_test.c - the SDK test host itself: descriptor checks, configuration errors, phase order and
 * results, WAIT/resume with timers and the store, retries, headers, answers, memory, metrics, logs, and
 * the misuse it reports. The filters under test are defined here ("probe" and a few small ones) and the
 * example filter is loaded from its shared object (GW_SDK_EXAMPLE_SO). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

/* ------------------------------------------------------------------------------------------------------
 * probe: a filter whose behaviour per phase comes from its settings, e.g.
 *   name: probe
 *   id: a                       # label in the trace
 *   request: respond            # continue | respond | error | wait | retry | header | invalid
 * Every call appends "<id>.<phase>" to `trace`. */

static char trace[4096];

static void tr(const char *id, const char *what)
{
    size_t n = strlen(trace);
    snprintf(trace + n, sizeof trace - n, "%s%s.%s", n ? " " : "", id, what);
}

enum { P_REQ, P_UPREQ, P_UPRESP, P_RESP, P_LOG, P_N };
static const char *const phase_key[P_N] = {"request", "upstream_request", "upstream_response", "response", "log"};

typedef struct {
    const gw_host *h;
    gw_filter *self;
    char id[16];
    char act[P_N][16];
} probe;

static int probe_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    static const char *const keys[] = {"id", "request", "upstream_request", "upstream_response", "response",
                                       "log", NULL};
    if (h->conf_only(conf, keys, err, errlen) != 0) return -1;
    const gw_conf *id = h->conf_get(conf, "id");
    if (id && h->conf_kind(id) != GW_CONF_SCALAR) return h->conf_error(id, err, errlen, "id: expected a string");
    return 0;
}

static void *probe_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    probe *p = calloc(1, sizeof *p);
    p->h = h;
    p->self = self;
    const char *id = h->conf_str(h->conf_get(conf, "id"));
    snprintf(p->id, sizeof p->id, "%s", id ? id : "p");
    for (int i = 0; i < P_N; i++) {
        const char *a = h->conf_str(h->conf_get(conf, phase_key[i]));
        snprintf(p->act[i], sizeof p->act[i], "%s", a ? a : "continue");
    }
    return p;
}

static void probe_destroy(void *inst)
{
    free(inst);
}

static void resume_cb(gw_req *req, void *arg)
{
    probe *p = arg;
    tr(p->id, "resumed");
    p->h->resume(req, GW_CONTINUE);
}

static gw_result probe_phase(probe *p, int ph, gw_req *req)
{
    const gw_host *h = p->h;
    tr(p->id, phase_key[ph]);
    const char *a = p->act[ph];
    if (!strcmp(a, "respond")) {
        char body[64];
        snprintf(body, sizeof body, "from %s", p->id);
        h->header_set(req, GW_HDR_RESPONSE, "X-Responder", p->id, strlen(p->id));
        return h->respond(req, 202, "text/plain", body, strlen(body)) == 0 ? GW_RESPOND : GW_ERROR;
    }
    if (!strcmp(a, "error")) return GW_ERROR;
    if (!strcmp(a, "invalid")) return (gw_result)42;
    if (!strcmp(a, "wait")) return h->timer_start(req, 100, resume_cb, p) ? GW_WAIT : GW_ERROR;
    if (!strcmp(a, "retry")) {
        if (h->attempts(req) >= 2) return GW_CONTINUE;
        h->retry_after(req, 250);
        return GW_RETRY;
    }
    if (!strcmp(a, "retry_always")) {
        h->retry_after(req, 10);
        return GW_RETRY;
    }
    if (!strcmp(a, "header")) {
        h->header_add(req, GW_HDR_RESPONSE, "X-Probe", p->id, strlen(p->id));
        return GW_CONTINUE;
    }
    return GW_CONTINUE;
}

#define PHASE_FN(fn, ph)                                                                                       \
    static gw_result fn(void *inst, void *rc, void *state, gw_req *req)                                       \
    {                                                                                                          \
        (void)rc;                                                                                              \
        (void)state;                                                                                           \
        return probe_phase(inst, ph, req);                                                                     \
    }
PHASE_FN(probe_req, P_REQ)
PHASE_FN(probe_upreq, P_UPREQ)
PHASE_FN(probe_upresp, P_UPRESP)
PHASE_FN(probe_resp, P_RESP)
PHASE_FN(probe_log, P_LOG)

static const gw_filter_desc probe_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "probe",
    .version = "1.0",
    .config_check = probe_check,
    .create = probe_create,
    .destroy = probe_destroy,
    .on_request = probe_req,
    .on_upstream_request = probe_upreq,
    .on_upstream_response = probe_upresp,
    .on_response = probe_resp,
    .on_log = probe_log,
};

static int setup(void **state)
{
    trace[0] = '\0';
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th_free(*state);
    return 0;
}

static void add_ok(gw_th *th, const gw_filter_desc *d, const char *yaml)
{
    if (gw_th_add(th, d, yaml) != 0) fail_msg("gw_th_add: %s", gw_th_error(th));
}

static void no_violations(gw_th *th)
{
    if (gw_th_violations(th)) {
        for (size_t i = 0; i < gw_th_log_count(th); i++)
            print_error("%s\n", gw_th_log_line(th, i, NULL));
        fail_msg("%u violation(s)", gw_th_violations(th));
    }
}

/* ------------------------------------------------------------------------------------------------------
 * descriptors and configuration */

static void test_abi_checks(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = probe_desc;
    d.abi_major = GW_ABI_MAJOR + 1;
    assert_int_equal(gw_th_add(th, &d, NULL), -1);
    assert_non_null(strstr(gw_th_error(th), "major versions differ"));

    d = probe_desc;
    d.abi_minor = GW_ABI_MINOR + 1;
    assert_int_equal(gw_th_add(th, &d, NULL), -1);
    char want[128];
    snprintf(want, sizeof want, "built for filter ABI %d.%d, this host implements %d.%d (the filter is newer)",
             GW_ABI_MAJOR, GW_ABI_MINOR + 1, GW_ABI_MAJOR, GW_ABI_MINOR);
    assert_non_null(strstr(gw_th_error(th), want));

    d = probe_desc;
    d.struct_size = 8;
    assert_int_equal(gw_th_add(th, &d, NULL), -1);
    assert_non_null(strstr(gw_th_error(th), "descriptor size 8 is not valid"));

    d = probe_desc;
    d.name = "Bad Name";
    assert_int_equal(gw_th_add(th, &d, NULL), -1);
    assert_non_null(strstr(gw_th_error(th), "name is missing or not [a-z0-9_-]+"));

    d = probe_desc;
    d.version = NULL;
    assert_int_equal(gw_th_add(th, &d, NULL), -1);
    assert_non_null(strstr(gw_th_error(th), "has no version"));

    d = probe_desc;
    d.reserved[2] = &d;
    assert_int_equal(gw_th_add(th, &d, NULL), -1);
    assert_non_null(strstr(gw_th_error(th), "reserved[2] must be NULL"));
}

static void test_load_so(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_load(th, GW_SDK_ABI2_SO, NULL), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: built for filter ABI %d.3, this host implements %d.%d (major versions differ)",
             GW_SDK_ABI2_SO, GW_ABI_MAJOR + 1, GW_ABI_MAJOR, GW_ABI_MINOR);
    assert_string_equal(gw_th_error(th), want);

    assert_int_equal(gw_th_load(th, "/nonexistent/x.so", NULL), -1);
    assert_non_null(strstr(gw_th_error(th), "/nonexistent/x.so: cannot load"));

    assert_int_equal(gw_th_load(th, GW_SDK_EXAMPLE_SO, "name: example\nresponse_header: {name: X-E, value: 1}\n"), 0);
    assert_non_null(gw_th_instance(th, "example"));
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-E"), "1");
    no_violations(th);
}

static int failing_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, "size");
    int64_t v;
    if (n && h->conf_int(n, 1, 10, &v, err, errlen) != 0) return -1;
    return 0;
}

static void *failing_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (h->conf_get(conf, "fail_create")) {
        snprintf(err, errlen, "cannot create");
        return NULL;
    }
    return (void *)h;
}

static int failing_worker_init(void *inst, unsigned worker, unsigned workers)
{
    assert_int_equal(worker, 0);
    assert_int_equal(workers, 1);
    return inst ? 0 : -1;
}

static void test_config_errors(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "f",
                        .version = "1",
                        .config_check = failing_check,
                        .create = failing_create,
                        .worker_init = failing_worker_init};
    assert_int_equal(gw_th_add(th, &d, "name: f\nsize: 11\n"), -1);
    assert_string_equal(gw_th_error(th), "pipeline.yaml:2:7: size: must be 1..10");
    assert_int_equal(gw_th_add(th, &d, "name: f\nsize: [1\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "pipeline.yaml:"));
    assert_int_equal(gw_th_add(th, &d, "name: g\n"), -1);
    assert_string_equal(gw_th_error(th), "pipeline.yaml:1:7: name: the entry names 'g' but the filter is 'f'");
    assert_int_equal(gw_th_add(th, &d, "name: f\nfail_create: 1\n"), -1);
    assert_string_equal(gw_th_error(th), "filter 'f': cannot create");
    assert_int_equal(gw_th_add(th, &d, "- a\n"), -1);
    assert_string_equal(gw_th_error(th), "pipeline.yaml:1:1: a pipeline entry must be a mapping");
    assert_int_equal(gw_th_add(th, &d, "name: f\nenabled: false\n"), 0); /* disabled: nothing added */
    assert_null(gw_th_instance(th, "f"));
    assert_int_equal(gw_th_add(th, &d, "name: f\nsize: 3\n"), 0);
    assert_non_null(gw_th_instance(th, "f"));

    /* routes: unknown filter, filter without per-route settings */
    assert_int_equal(gw_th_route(th, "r", "/r", "nope: {}\n"), -1);
    assert_string_equal(gw_th_error(th), "routes.yaml:1:1: filters: 'nope' is not in the pipeline");
    assert_int_equal(gw_th_route(th, "r", "/r", "f: {a: 1}\n"), -1);
    assert_string_equal(gw_th_error(th), "routes.yaml:1:1: filters.f: filter 'f' has no per-route settings");
    assert_int_equal(gw_th_route(th, "r", "/r", NULL), 0);
    assert_int_equal(gw_th_route(th, "r2", "/r/", NULL), -1); /* same prefix once normalised */
}

/* ------------------------------------------------------------------------------------------------------
 * phases */

static gw_th *three_probes(gw_th *th, const char *a, const char *b, const char *c)
{
    char y[256];
    snprintf(y, sizeof y, "name: probe\nid: a\n%s", a ? a : "");
    add_ok(th, &probe_desc, y);
    snprintf(y, sizeof y, "name: probe\nid: b\n%s", b ? b : "");
    add_ok(th, &probe_desc, y);
    snprintf(y, sizeof y, "name: probe\nid: c\n%s", c ? c : "");
    add_ok(th, &probe_desc, y);
    return th;
}

static void test_phase_order(void **state)
{
    gw_th *th = three_probes(*state, NULL, NULL, NULL);
    gw_req *r = gw_th_request(th, "GET", "/x");
    gw_th_upstream_reply(r, 201, "X-Up: 1\n", "up");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_string_equal(trace, "a.request b.request c.request "
                               "a.upstream_request b.upstream_request c.upstream_request "
                               "c.upstream_response b.upstream_response a.upstream_response "
                               "c.response b.response a.response c.log b.log a.log");
    assert_int_equal(gw_th_status(r), 201);
    assert_string_equal(gw_th_body(r, NULL), "up");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Up"), "1");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Request-Id"), "req-1");
    assert_int_equal(gw_th_attempts(r), 1);
    assert_string_equal(gw_th_phase(r), "done");
    no_violations(th);
}

static void test_respond_in_request(void **state)
{
    gw_th *th = three_probes(*state, NULL, "request: respond\n", NULL);
    gw_req *r = gw_th_request(th, "GET", "/x");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_string_equal(trace, "a.request b.request c.response b.response a.response c.log b.log a.log");
    assert_int_equal(gw_th_status(r), 202);
    assert_string_equal(gw_th_body(r, NULL), "from b");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "text/plain");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Responder"), "b");
    assert_false(gw_th_upstream_called(r));
    no_violations(th);
}

static void test_error_answers_500(void **state)
{
    gw_th *th = three_probes(*state, "request: error\n", NULL, NULL);
    gw_req *r = gw_th_request(th, "GET", "/x");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 500);
    assert_string_equal(gw_th_body(r, NULL), "{\"error\":\"Internal Server Error\","
                                             "\"message\":\"A filter failed to process the request\","
                                             "\"request_id\":\"req-1\"}");
    assert_string_equal(trace, "a.request c.response b.response a.response c.log b.log a.log");
    assert_int_equal(gw_th_log_find(th, GW_LOG_ERROR, "filter 'probe' failed in the request phase"), 1);
    no_violations(th);
}

static void test_respond_replaces_upstream_response(void **state)
{
    gw_th *th = three_probes(*state, NULL, "response: respond\n", NULL);
    gw_req *r = gw_th_request(th, "GET", "/x");
    gw_th_upstream_reply(r, 200, "X-Up: 1\n", "up");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    /* the filter's answer goes through the response phase once more; b answers again, which then stands */
    assert_string_equal(trace, "a.request b.request c.request a.upstream_request b.upstream_request "
                               "c.upstream_request c.upstream_response b.upstream_response a.upstream_response "
                               "c.response b.response c.response b.response c.log b.log a.log");
    assert_int_equal(gw_th_status(r), 202);
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, "X-Up")); /* the upstream's headers went with its response */
    no_violations(th);
}

static void test_wait_timer_resume(void **state)
{
    gw_th *th = three_probes(*state, NULL, "request: wait\n", NULL);
    const gw_host *h = gw_th_host(th);
    uint64_t t0 = h->now_ms(), u0 = h->unix_ms();
    assert_int_equal(u0, GW_TH_UNIX_START_MS);
    gw_req *r = gw_th_request(th, "GET", "/x");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    assert_string_equal(gw_th_phase(r), "request");
    assert_string_equal(trace, "a.request b.request");
    gw_th_advance(th, 99);
    assert_int_equal(gw_th_state_of(r), GW_TH_WAITING);
    gw_th_advance(th, 1);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_int_equal(h->now_ms(), t0 + 100);
    assert_int_equal(h->unix_ms(), u0 + 100);
    assert_true(strncmp(trace, "a.request b.request b.resumed c.request a.upstream_request", 58) == 0);
    assert_int_equal(gw_th_status(r), 200);
    no_violations(th);
}

static void test_wait_then_abort(void **state)
{
    gw_th *th = three_probes(*state, NULL, "upstream_request: wait\n", NULL);
    gw_req *r = gw_th_request(th, "GET", "/x");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    assert_string_equal(gw_th_phase(r), "upstream_request");
    gw_th_abort(r); /* the client went away: log phase, cleanup; the timer is cancelled */
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_false(gw_th_upstream_called(r));
    gw_th_advance(th, 1000);
    assert_null(strstr(trace, "resumed"));
    assert_non_null(strstr(trace, "c.log b.log a.log"));
    no_violations(th);
}

static void test_retry(void **state)
{
    gw_th *th = three_probes(*state, NULL, "upstream_response: retry\n", NULL);
    const gw_host *h = gw_th_host(th);
    uint64_t t0 = h->now_ms();
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "abc", 3);
    gw_th_upstream_reply(r, 503, "X-Attempt: 1\n", "busy");
    gw_th_upstream_reply(r, 200, "X-Attempt: 2\n", "ok");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_attempts(r), 2);
    assert_int_equal(gw_th_retry_delay(r, 1), 250);
    assert_int_equal(gw_th_retry_delay(r, 2), 0);
    assert_int_equal(h->now_ms(), t0 + 250);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_body(r, NULL), "ok");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Attempt"), "2");
    assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, "X-Attempt"), 1);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Content-Length"), "3");
    no_violations(th);
}

static void test_retry_refused(void **state)
{
    gw_th *th = three_probes(*state, NULL, "upstream_response: retry_always\n", NULL);
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_replayable(r, false);
    gw_th_upstream_reply(r, 503, NULL, "busy");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_attempts(r), 1);
    assert_int_equal(gw_th_status(r), 503);
    /* RETRY refused counts as CONTINUE but ends the phase: a is not called */
    assert_null(strstr(trace, "a.upstream_response"));

    gw_req *r2 = gw_th_request(th, "GET", "/x"); /* replayable, but at most 16 attempts */
    gw_th_upstream_reply(r2, 503, NULL, "busy");
    assert_int_equal(gw_th_run(r2), GW_TH_DONE);
    assert_int_equal(gw_th_attempts(r2), 16);
    assert_int_equal(gw_th_retry_delay(r2, 15), 10);
    no_violations(th);
}

static const char *seen_attempt_error;
static int seen_status;
static bool upreq_called;

static gw_result fail_upreq(void *inst, void *rc, void *st, gw_req *req)
{
    upreq_called = true;
    return GW_CONTINUE;
}

static gw_result fail_upresp(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    seen_attempt_error = h->attempt_error(req);
    seen_status = h->status(req);
    return GW_CONTINUE;
}

static void *host_as_inst(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    return (void *)h;
}

static void test_upstream_failures(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "watch",
                        .version = "1",
                        .create = host_as_inst,
                        .on_upstream_request = fail_upreq,
                        .on_upstream_response = fail_upresp};
    add_ok(th, &d, NULL);
    gw_req *r = gw_th_request(th, "GET", "/x");
    assert_int_equal(gw_th_upstream_fail(r, "connect"), 0);
    assert_int_equal(gw_th_upstream_fail(r, "bogus"), -1);
    upreq_called = false;
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_false(upreq_called); /* nothing was sent */
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(seen_attempt_error, "connect");
    assert_int_equal(seen_status, 502);
    assert_int_equal(gw_th_status(r), 502);
    assert_non_null(strstr(gw_th_body(r, NULL), "\"message\":\"The upstream service is unavailable\""));

    gw_req *t = gw_th_request(th, "GET", "/x");
    gw_th_upstream_fail(t, "timeout");
    assert_int_equal(gw_th_run(t), GW_TH_DONE);
    assert_true(upreq_called);
    assert_true(gw_th_upstream_called(t));
    assert_int_equal(gw_th_status(t), 504);
    assert_non_null(strstr(gw_th_body(t, NULL), "\"error\":\"Gateway Timeout\""));
    no_violations(th);
}

/* ------------------------------------------------------------------------------------------------------
 * headers and answers */

static gw_result hdr_req(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    assert_int_equal(h->header_add(req, GW_HDR_REQUEST, "X-Multi", "1", 1), 0);
    assert_int_equal(h->header_add(req, GW_HDR_REQUEST, "x-multi", "2", 1), 0);
    assert_int_equal(h->header_set(req, GW_HDR_REQUEST, "X-Set", "a", 1), 0);
    assert_int_equal(h->header_set(req, GW_HDR_REQUEST, "X-Set", "b", 1), 0);
    assert_int_equal(h->header_remove(req, GW_HDR_REQUEST, "X-Drop"), 0);
    assert_int_equal(h->header_set(req, GW_HDR_REQUEST, "X-Bad", "a\r\nb", 4), -1);
    assert_int_equal(h->header_add(req, GW_HDR_REQUEST, "X-Bad", "a\nb", 3), -1);
    assert_int_equal(h->header_set(req, GW_HDR_REQUEST, "X-Bad", "a\0b", 3), -1);
    assert_int_equal(h->header_set(req, GW_HDR_REQUEST, "Bad Name", "v", 1), -1);
    assert_int_equal(h->header_set(req, GW_HDR_RESPONSE, "X-Early", "yes", 3), 0);
    gw_strv v;
    assert_true(h->header_get(req, GW_HDR_REQUEST, "x-set", &v));
    assert_int_equal(v.n, 1);
    assert_memory_equal(v.p, "b", 1);
    assert_false(h->header_get(req, GW_HDR_REQUEST, "X-Drop", &v));
    gw_strv path = h->path(req), query = h->query(req), method = h->method(req);
    assert_true(path.n == 6 && memcmp(path.p, "/a/b/c", 6) == 0);
    assert_true(query.n == 3 && memcmp(query.p, "q=1", 3) == 0);
    assert_true(method.n == 3 && memcmp(method.p, "PUT", 3) == 0);
    gw_strv ip = h->client_ip(req);
    assert_true(ip.n == 8 && memcmp(ip.p, "10.0.0.9", 8) == 0);
    assert_int_equal(h->bytes_in(req), 0); /* the body is not read yet */
    return GW_CONTINUE;
}

static gw_result hdr_upreq(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    assert_int_equal(h->header_set(req, GW_HDR_UPSTREAM, "X-Up-Only", "u", 1), 0);
    assert_int_equal(h->header_remove(req, GW_HDR_UPSTREAM, "X-Secret"), 0);
    assert_int_equal(h->attempts(req), 1);
    assert_int_equal(h->bytes_in(req), 4);
    return GW_CONTINUE;
}

static gw_result hdr_resp(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    assert_int_equal(h->status(req), 200);
    gw_strv n, v;
    size_t count = h->header_count(req, GW_HDR_RESPONSE);
    assert_true(count >= 3);
    assert_true(h->header_at(req, GW_HDR_RESPONSE, 0, &n, &v));
    assert_true(n.n == 6 && memcmp(n.p, "X-From", 6) == 0); /* the upstream's headers first */
    assert_false(h->header_at(req, GW_HDR_RESPONSE, count, &n, &v));
    h->header_remove(req, GW_HDR_RESPONSE, "X-Remove-Me");
    return GW_CONTINUE;
}

static void test_headers(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "hdr",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = hdr_req,
                        .on_upstream_request = hdr_upreq,
                        .on_response = hdr_resp};
    add_ok(th, &d, NULL);
    gw_req *r = gw_th_request(th, "PUT", "/a/./b//c?q=1");
    gw_th_request_header(r, "Host", "api.example.com");
    gw_th_request_header(r, "X-Drop", "1");
    gw_th_request_header(r, "X-Drop", "2");
    gw_th_request_header(r, "X-Secret", "s");
    gw_th_request_header(r, "X-Forwarded-For", "1.2.3.4");
    gw_th_request_header(r, "Connection", "close");
    assert_int_equal(gw_th_request_header(r, "X-Bad", "a\r\n"), -1);
    gw_th_request_client_ip(r, "10.0.0.9");
    gw_th_request_body(r, "body", 4);
    gw_th_upstream_reply(r, 200, "X-From: upstream\r\nX-Remove-Me: 1\r\n", "ok");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);

    assert_string_equal(gw_th_upstream_method(r), "PUT");
    assert_string_equal(gw_th_upstream_target(r), "/a/b/c?q=1");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Host"), "upstream.test:8080");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Set"), "b");
    assert_int_equal(gw_th_header_count(r, GW_HDR_UPSTREAM, "X-Multi"), 2);
    assert_int_equal(gw_th_header_count(r, GW_HDR_UPSTREAM, "X-Drop"), 0);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Up-Only"), "u");
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-Secret"));
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "Connection"));
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Forwarded-For"), "1.2.3.4, 10.0.0.9");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Forwarded-Host"), "api.example.com");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Request-Id"), "req-1");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Content-Length"), "4");
    assert_null(gw_th_header(r, GW_HDR_REQUEST, "X-Up-Only")); /* the upstream view is separate */
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Early"), "yes"); /* set before the upstream */
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-From"), "upstream");
    assert_null(gw_th_header(r, GW_HDR_RESPONSE, "X-Remove-Me"));
    no_violations(th);
}

static gw_result late_edit(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    assert_int_equal(h->header_set(req, GW_HDR_REQUEST, "X-Late", "1", 1), -1);  /* after the request phase */
    assert_int_equal(h->header_set(req, GW_HDR_UPSTREAM, "X-Late", "1", 1), -1); /* outside upstream_request */
    return GW_CONTINUE;
}

static void test_header_phase_rules(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "late",
                        .version = "1",
                        .create = host_as_inst,
                        .on_response = late_edit};
    add_ok(th, &d, NULL);
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_violations(th), 2);
}

static gw_result err_titles(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    gw_strv q = h->query(req);
    int status = atoi(q.p);
    return h->respond_error(req, status, "m\"sg") == 0 ? GW_RESPOND : GW_ERROR;
}

static void test_respond_error_titles(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "err",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = err_titles};
    add_ok(th, &d, NULL);
    static const struct {
        int status;
        const char *title;
    } want[] = {{400, "Bad Request"},
                {401, "Unauthorized"},
                {403, "Forbidden"},
                {404, "Not Found"},
                {405, "Method Not Allowed"},
                {408, "Request Timeout"},
                {413, "Content Too Large"},
                {429, "Too Many Requests"},
                {500, "Internal Server Error"},
                {502, "Bad Gateway"},
                {503, "Service Unavailable"},
                {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char target[32], body[256];
        snprintf(target, sizeof target, "/?%d", want[i].status);
        gw_req *r = gw_th_request(th, "GET", target);
        assert_int_equal(gw_th_run(r), GW_TH_DONE);
        assert_int_equal(gw_th_status(r), want[i].status);
        snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"m\\\"sg\",\"request_id\":\"req-%zu\"}",
                 want[i].title, i + 1);
        assert_string_equal(gw_th_body(r, NULL), body);
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    }
    no_violations(th);
}

static void test_routing(void **state)
{
    gw_th *th = three_probes(*state, NULL, NULL, NULL);
    assert_int_equal(gw_th_route(th, "api", "/api", NULL), 0);
    assert_int_equal(gw_th_route(th, "users", "/api/users/", NULL), 0);
    gw_req *r = gw_th_request(th, "GET", "/nothing");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 404);
    assert_non_null(strstr(gw_th_body(r, NULL), "No route matches the request path"));
    /* no request phase, but response and log run */
    assert_string_equal(trace, "c.response b.response a.response c.log b.log a.log");
    gw_req *bad = gw_th_request(th, "GET", "/../x");
    assert_int_equal(gw_th_run(bad), GW_TH_DONE);
    assert_int_equal(gw_th_status(bad), 400);
    gw_req *u = gw_th_request(th, "GET", "/api/users/7");
    gw_req *a = gw_th_request(th, "GET", "/api/usersx");
    gw_th_run(u);
    gw_th_run(a);
    const gw_host *h = gw_th_host(th);
    gw_strv ru = h->route(u), ra = h->route(a), sv = h->service(u);
    assert_true(ru.n == 5 && memcmp(ru.p, "users", 5) == 0);
    assert_true(ra.n == 3 && memcmp(ra.p, "api", 3) == 0);
    assert_true(sv.n == 5 && memcmp(sv.p, "users", 5) == 0);
    no_violations(th);
}

/* ------------------------------------------------------------------------------------------------------
 * memory, cleanup, misuse */

static char cleanup_order[64];

static void on_clean(void *arg)
{
    strcat(cleanup_order, arg);
}

static gw_result mem_req(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    char *p = h->alloc(req, 100);
    assert_non_null(p);
    memset(p, 'x', 100);
    assert_null(h->alloc(req, 1u << 20)); /* over the limit set by the test */
    assert_int_equal(h->on_cleanup(req, on_clean, "1"), 0);
    assert_int_equal(h->on_cleanup(req, on_clean, "2"), 0);
    uint32_t *state = st;
    assert_int_equal(*state, 0); /* zeroed */
    *state = 7;
    return GW_CONTINUE;
}

static void test_memory_and_cleanup(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "mem",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = mem_req,
                        .req_state_size = sizeof(uint32_t)};
    add_ok(th, &d, NULL);
    gw_th_alloc_limit(th, 4096);
    cleanup_order[0] = '\0';
    gw_req *r = gw_th_request(th, "GET", "/");
    gw_req *r2 = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_string_equal(cleanup_order, "21"); /* last registered first */
    assert_int_equal(gw_th_run(r2), GW_TH_DONE); /* a fresh zeroed state */
    no_violations(th);
}

typedef struct {
    const gw_host *h;
    gw_req *req;
    gw_timer *t;
} misuse_ctx;

static misuse_ctx mctx;

static void misuse_timer(gw_req *req, void *arg)
{
    const gw_host *h = arg;
    h->resume(req, GW_CONTINUE);
    h->resume(req, GW_CONTINUE); /* twice: violation */
}

static gw_result misuse_req(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    mctx.h = h;
    mctx.req = req;
    mctx.t = h->timer_start(req, 5, misuse_timer, (void *)h);
    return GW_WAIT;
}

static gw_result misuse_log(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    assert_int_equal(h->respond(req, 200, NULL, NULL, 0), -1); /* nothing changes in the log phase */
    h->timer_cancel(mctx.t);                                   /* already fired: violation */
    return GW_WAIT;                                            /* not allowed: violation */
}

static void test_misuse_reported(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "misuse",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = misuse_req,
                        .on_log = misuse_log};
    add_ok(th, &d, NULL);
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_th_advance(th, 5);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    /* resume twice, respond() in log, timer_cancel after firing, WAIT in log */
    assert_int_equal(gw_th_violations(th), 4);
    assert_int_equal(gw_th_log_find(th, GW_LOG_ERROR, "GW_WAIT in the log phase"), 1);
    assert_int_equal(gw_th_log_find(th, GW_LOG_ERROR, "resume() on a request that is not waiting"), 1);
}

/* ------------------------------------------------------------------------------------------------------
 * store */

typedef struct {
    const gw_host *h;
    gw_req *req;
    int status;
    char value[64];
    gw_bucket_result b;
    bool got_bucket;
} store_ctx;

static store_ctx sctx;

static void got_value(void *arg, int status, const char *value, size_t len)
{
    store_ctx *c = arg;
    c->status = status;
    snprintf(c->value, sizeof c->value, "%.*s", (int)len, value ? value : "");
    c->h->resume(c->req, GW_CONTINUE);
}

static gw_result store_req(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    sctx.h = h;
    sctx.req = req;
    gw_strv q = h->query(req);
    char key[32];
    snprintf(key, sizeof key, "%.*s", (int)q.n, q.p);
    if (h->store_get(req, key, got_value, &sctx) != 0) {
        sctx.status = -100;
        return GW_CONTINUE;
    }
    return GW_WAIT;
}

static void test_store_get_set(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "st",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = store_req};
    add_ok(th, &d, NULL);
    assert_int_equal(gw_th_store_put(th, "st", "k", "v1", 2, 1000), 0);
    gw_req *r = gw_th_request(th, "GET", "/?k");
    assert_int_equal(gw_th_run(r), GW_TH_DONE); /* callbacks delivered automatically */
    assert_int_equal(sctx.status, 0);
    assert_string_equal(sctx.value, "v1");

    gw_th_store_auto(th, false);
    gw_req *r2 = gw_th_request(th, "GET", "/?other");
    assert_int_equal(gw_th_run(r2), GW_TH_WAITING);
    assert_int_equal(gw_th_store_pending(th), 1);
    assert_int_equal(gw_th_run_pending(th), 1);
    assert_int_equal(gw_th_state_of(r2), GW_TH_DONE);
    assert_int_equal(sctx.status, 1); /* not found */

    gw_th_advance(th, 1000); /* the TTL ran out */
    assert_null(gw_th_store_peek(th, "st", "k", NULL));
    assert_null(gw_th_store_peek(th, "other", "k", NULL)); /* namespaced per filter */

    gw_th_store_auto(th, true);
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_req *r3 = gw_th_request(th, "GET", "/?k");
    assert_int_equal(gw_th_run(r3), GW_TH_DONE);
    assert_int_equal(sctx.status, -1);
    gw_th_store_mode(th, GW_TH_STORE_DOWN);
    gw_req *r4 = gw_th_request(th, "GET", "/?k");
    assert_int_equal(gw_th_run(r4), GW_TH_DONE);
    assert_int_equal(sctx.status, -100); /* the call itself failed */
    no_violations(th);
}

static void got_bucket(void *arg, int status, const gw_bucket_result *b)
{
    store_ctx *c = arg;
    c->status = status;
    c->got_bucket = b != NULL;
    if (b) c->b = *b;
    c->h->resume(c->req, GW_CONTINUE);
}

static gw_result take_req(void *inst, void *rc, void *st, gw_req *req)
{
    const gw_host *h = inst;
    sctx.h = h;
    sctx.req = req;
    return h->store_take(req, "client", 2, 1, 1, got_bucket, &sctx) == 0 ? GW_WAIT : GW_ERROR;
}

static void take_one(gw_th *th)
{
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(sctx.status, 0);
    assert_true(sctx.got_bucket);
}

static void test_store_take(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "rl",
                        .version = "1",
                        .create = host_as_inst,
                        .on_request = take_req};
    add_ok(th, &d, NULL);
    const gw_host *h = gw_th_host(th);
    take_one(th);
    assert_true(sctx.b.allowed);
    assert_true(sctx.b.remaining == 1.0);
    assert_int_equal(sctx.b.reset_ms, h->unix_ms() + 1000);
    take_one(th);
    assert_true(sctx.b.allowed);
    assert_true(sctx.b.remaining == 0.0);
    assert_int_equal(sctx.b.reset_ms, h->unix_ms() + 2000);
    take_one(th);
    assert_false(sctx.b.allowed);
    assert_int_equal(sctx.b.retry_ms, 1000);
    gw_th_advance(th, 400);
    assert_true(gw_th_bucket_tokens(th, "rl", "client") > 0.399 && gw_th_bucket_tokens(th, "rl", "client") < 0.401);
    take_one(th);
    assert_false(sctx.b.allowed);
    assert_int_equal(sctx.b.retry_ms, 600);
    gw_th_advance(th, 600);
    take_one(th);
    assert_true(sctx.b.allowed);
    assert_true(sctx.b.remaining < 1e-6);
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_req *r = gw_th_request(th, "GET", "/");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(sctx.status, -1);
    assert_false(sctx.got_bucket);
    no_violations(th);
}

/* ------------------------------------------------------------------------------------------------------
 * endpoints and metrics */

typedef struct {
    const gw_host *h;
    gw_metric *count, *gauge, *hist;
} ep_inst;

static gw_result stats_handler(void *inst, void *rc, void *st, gw_req *req)
{
    ep_inst *in = inst;
    gw_strv body;
    assert_true(in->h->body(req, &body));
    char out[64];
    snprintf(out, sizeof out, "{\"got\":%zu}", body.n);
    return in->h->respond(req, 200, "application/json", out, strlen(out)) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result metrics_handler(void *inst, void *rc, void *st, gw_req *req)
{
    ep_inst *in = inst;
    gw_strv q = in->h->query(req), out;
    if (in->h->metrics_render(req, q.n && q.p[0] == 'j' ? 1 : 0, &out) != 0) return GW_ERROR;
    return in->h->respond(req, 200, "text/plain", out.p, out.n) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result ep_log(void *inst, void *rc, void *st, gw_req *req)
{
    ep_inst *in = inst;
    const gw_host *h = in->h;
    char status[8];
    snprintf(status, sizeof status, "%d", h->status(req));
    h->metric_add(in->count, req, (const char *const[]){status}, 1);
    h->metric_set(in->gauge, req, NULL, 42);
    h->metric_observe(in->hist, req, NULL, 0.3);
    h->log(NULL, req, GW_LOG_DEBUG, "ignored");
    return GW_CONTINUE;
}

static void *ep_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    ep_inst *in = calloc(1, sizeof *in);
    in->h = h;
    assert_int_equal(h->register_endpoint(self, "POST", "/ep/stats", false, stats_handler), 0);
    assert_int_equal(h->register_endpoint(self, "GET", "/ep/metrics", false, metrics_handler), 0);
    static const char *const labels[] = {"status", NULL};
    static const double buckets[] = {0.1, 0.5, 1};
    in->count = h->metric_register(self, GW_METRIC_COUNTER, "ep_requests_total", "Requests", labels, NULL, 0);
    in->gauge = h->metric_register(self, GW_METRIC_GAUGE, "ep_answer", "The answer", NULL, NULL, 0);
    in->hist = h->metric_register(self, GW_METRIC_HISTOGRAM, "ep_seconds", "Latency", NULL, buckets, 3);
    assert_null(h->metric_register(self, GW_METRIC_GAUGE, "ep_requests_total", "clash", NULL, NULL, 0));
    h->log(self, NULL, GW_LOG_INFO, "created with %d metrics", 3);
    return in;
}

static void test_endpoints_and_metrics(void **state)
{
    gw_th *th = *state;
    gw_filter_desc d = {.abi_major = GW_ABI_MAJOR,
                        .abi_minor = GW_ABI_MINOR,
                        .struct_size = sizeof d,
                        .name = "ep",
                        .version = "1",
                        .create = ep_create,
                        .destroy = free,
                        .on_log = ep_log};
    add_ok(th, &d, NULL);
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "[filter:ep] created with 3 metrics"), 1);
    gw_req *r = gw_th_request(th, "POST", "/ep/stats");
    gw_th_request_body(r, "12345", 5);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_body(r, NULL), "{\"got\":5}");
    assert_false(gw_th_upstream_called(r));
    gw_req *m = gw_th_request(th, "GET", "/ep/stats");
    assert_int_equal(gw_th_run(m), GW_TH_DONE);
    assert_int_equal(gw_th_status(m), 405);

    assert_true(gw_th_metric(th, "ep_requests_total", (const char *[]){"200"}) == 1.0);
    assert_true(gw_th_metric(th, "ep_requests_total", (const char *[]){"405"}) == 1.0);
    assert_true(gw_th_metric(th, "ep_requests_total", (const char *[]){"500"}) == 0.0);
    assert_true(gw_th_metric(th, "ep_answer", NULL) == 42.0);
    assert_int_equal(gw_th_metric_count(th, "ep_seconds", NULL), 2);
    assert_int_equal(gw_th_metric_bucket(th, "ep_seconds", NULL, 0.1), 0);
    assert_int_equal(gw_th_metric_bucket(th, "ep_seconds", NULL, 0.5), 2);
    assert_true(gw_th_metric(th, "ep_seconds", NULL) > 0.59 && gw_th_metric(th, "ep_seconds", NULL) < 0.61);
    assert_true(gw_th_metric(th, "nope", NULL) != gw_th_metric(th, "nope", NULL)); /* NAN */
    assert_int_equal(gw_th_log_find(th, GW_LOG_DEBUG, "[filter:?] ignored (request req-1)"), 1);

    gw_req *text = gw_th_request(th, "GET", "/ep/metrics");
    gw_req *json = gw_th_request(th, "GET", "/ep/metrics?json");
    assert_int_equal(gw_th_run(text), GW_TH_DONE);
    assert_int_equal(gw_th_run(json), GW_TH_DONE);
    const char *body = gw_th_body(text, NULL);
    assert_non_null(strstr(body, "# HELP ep_requests_total Requests\n# TYPE ep_requests_total counter\n"));
    assert_non_null(strstr(body, "ep_requests_total{status=\"200\"} 1\n"));
    assert_non_null(strstr(body, "ep_answer 42\n"));
    assert_non_null(strstr(body, "ep_seconds_bucket{le=\"0.1\"} 0\nep_seconds_bucket{le=\"0.5\"} 2\n"));
    assert_non_null(strstr(body, "ep_seconds_bucket{le=\"+Inf\"} 2\nep_seconds_sum 0.6\n"
                                 "ep_seconds_count 2\n"));
    assert_non_null(strstr(gw_th_body(json, NULL), "{\"name\":\"ep_answer\",\"type\":\"gauge\""));
    no_violations(th);
}

static void test_every_host_member(void **state)
{
    const gw_host *h = gw_th_host(*state);
    assert_int_equal(h->struct_size, sizeof *h);
    assert_int_equal(h->abi_major, GW_ABI_MAJOR);
    assert_int_equal(h->abi_minor, GW_ABI_MINOR);
    /* every function pointer before the reserved slots is set */
    const char *p = (const char *)h + offsetof(gw_host, log), *end = (const char *)h + offsetof(gw_host, reserved);
    for (; p < end; p += sizeof(void (*)(void))) {
        void (*fn)(void);
        memcpy(&fn, p, sizeof fn);
        assert_non_null(fn);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abi_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_so, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_phase_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_in_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_answers_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_replaces_upstream_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_timer_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_then_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_phase_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_error_titles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_and_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_get_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endpoints_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_host_member, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
