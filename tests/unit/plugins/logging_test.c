/* logging_test.c - unit tests of plugins/logging on the SDK test host: every field of the access-log record
 * (present and absent), JSON escaping of quotes, backslashes, controls and invalid UTF-8, the string caps,
 * W3C traceparent (valid, invalid, absent, a future version, trace_context off), sampling, include/exclude,
 * the level threshold, the writer's wake-ups (nap, half-full queue), a reopen after a rename, a full queue
 * (dropped lines counted, none else lost) and the settings errors. The writer is the filter's own thread:
 * gw_th_free (destroy) writes every queued line, so the tests read the output file after it. GW_PLUGIN_SO is
 * the built filter. */
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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "logging.so"
#endif

#define MAX_LINES 8192
#define FIELDS 17

/* --- a stand-in for apikey, retry and a slow filter, driven by test headers ------------------------- */

static const gw_host *aux_host;
static gw_req *aux_waiting;

static gw_result aux_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)inst, (void)route_conf, (void)state;
    gw_strv v;
    if (aux_host->header_get(req, GW_HDR_REQUEST, "X-Test-Consumer", &v))
        aux_host->req_set(req, "consumer.id", v.p, v.n);
    if (aux_host->header_get(req, GW_HDR_REQUEST, "X-Test-Hostile-Key", &v)) /* raw bytes no header has */
        aux_host->req_set(req, "consumer.id", "a\nb\"}\r\0z", 8);
    if (aux_host->header_get(req, GW_HDR_REQUEST, "X-Test-Retry-Count", &v))
        aux_host->req_set(req, "retry.count", v.p, v.n);
    if (aux_host->header_get(req, GW_HDR_REQUEST, "X-Test-Wait", &v)) {
        aux_waiting = req;
        return GW_WAIT;
    }
    return GW_CONTINUE;
}

static gw_result aux_on_upstream_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)inst, (void)route_conf, (void)state;
    gw_strv v;
    if (aux_host->header_get(req, GW_HDR_REQUEST, "X-Test-Retry", &v) && aux_host->attempts(req) < 3)
        return GW_RETRY;
    return GW_CONTINUE;
}

static void *aux_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)self, (void)conf, (void)err, (void)errlen;
    aux_host = h;
    return (void *)&aux_host;
}

static const gw_filter_desc aux_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "aux",
    .version = "1.0.0",
    .create = aux_create,
    .on_request = aux_on_request,
    .on_upstream_response = aux_on_upstream_response,
};

/* --- fixture: a test host, a directory for the output, the lines read back -------------------------- */

typedef struct {
    gw_th *th;
    char dir[256];
    char path[300];
    char *text;           /* the whole output read back */
    char *raw[MAX_LINES]; /* each line (in text, NUL instead of '\n') */
    cJSON *line[MAX_LINES];
    size_t n;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/logging_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/access.log", f->dir);
    f->th = gw_th_new();
    aux_waiting = NULL;
    *state = f;
    return 0;
}

static void forget_lines(fx *f)
{
    for (size_t i = 0; i < f->n; i++)
        cJSON_Delete(f->line[i]);
    f->n = 0;
    free(f->text);
    f->text = NULL;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->th) gw_th_free(f->th);
    forget_lines(f);
    char p[320];
    const char *names[] = {"access.log", "access.log.1", NULL};
    for (int i = 0; names[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* logging (writing to f->path unless `conf` names an output) first, the stand-in after it, route /api */
static void load(fx *f, const char *conf)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "name: logging\n%s%s%s", conf && strstr(conf, "output:") ? "" : "output: ",
             conf && strstr(conf, "output:") ? "" : f->path, conf && strstr(conf, "output:") ? "" : "\n");
    strncat(yaml, conf ? conf : "", sizeof yaml - strlen(yaml) - 1);
    if (gw_th_load(f->th, GW_PLUGIN_SO, yaml) != 0) fail_msg("%s", gw_th_error(f->th));
    assert_int_equal(gw_th_add(f->th, &aux_desc, "name: aux\n"), 0);
    assert_int_equal(gw_th_route(f->th, "api", "/api", NULL), 0);
}

/* Reads file `path` into f's lines; every line must be one JSON object with the 17 fields and no raw
 * control byte. */
static void read_lines(fx *f, const char *path)
{
    forget_lines(f);
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    f->text = malloc(cap + 1);
    size_t k;
    while ((k = fread(f->text + len, 1, cap - len, fp)) > 0) {
        len += k;
        if (len == cap) f->text = realloc(f->text, (cap *= 2) + 1);
    }
    fclose(fp);
    f->text[len] = '\0';
    if (len && f->text[len - 1] != '\n') fail_msg("the output ends inside a line");
    for (char *p = f->text; *p;) {
        char *nl = strchr(p, '\n');
        *nl = '\0';
        for (char *c = p; *c; c++)
            if ((unsigned char)*c < 0x20) fail_msg("raw control byte 0x%02x in line %zu", *c, f->n);
        assert_true(f->n < MAX_LINES);
        f->raw[f->n] = p;
        f->line[f->n] = cJSON_Parse(p);
        if (!cJSON_IsObject(f->line[f->n])) fail_msg("line %zu is not a JSON object: %s", f->n, p);
        assert_int_equal(cJSON_GetArraySize(f->line[f->n]), FIELDS);
        f->n++;
        p = nl + 1;
    }
}

/* Frees the test host (destroy flushes the writer) and reads the output. */
static void finish(fx *f)
{
    assert_int_equal(gw_th_violations(f->th), 0);
    gw_th_free(f->th);
    f->th = NULL;
    read_lines(f, f->path);
}

static const cJSON *field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) fail_msg("no field %s", k);
    return v;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = field(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = field(o, k);
    if (!cJSON_IsNumber(v)) fail_msg("%s is not a number", k);
    return v->valuedouble;
}

static bool is_null(const cJSON *o, const char *k)
{
    return cJSON_IsNull(field(o, k));
}

/* The line of request id `rid`, or NULL. */
static const cJSON *line_of(fx *f, const char *rid)
{
    for (size_t i = 0; i < f->n; i++) {
        const char *v = str(f->line[i], "request_id");
        if (v && strcmp(v, rid) == 0) return f->line[i];
    }
    return NULL;
}

static gw_req *run(fx *f, const char *method, const char *target, const char *const *headers)
{
    gw_req *r = gw_th_request(f->th, method, target);
    for (size_t i = 0; headers && headers[i]; i += 2)
        assert_int_equal(gw_th_request_header(r, headers[i], headers[i + 1]), 0);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

/* --- fields ------------------------------------------------------------------------------------------ */

static void test_record_fields(void **state)
{
    fx *f = *state;
    load(f, NULL);
    gw_req *r = gw_th_request(f->th, "POST", "/api/users/1?x=1&y=%22");
    gw_th_request_header(r, "User-Agent", "curl/8.5.0");
    gw_th_request_header(r, "X-Request-Id", "client-rid-1");
    gw_th_request_header(r, "X-Test-Consumer", "key-42");
    gw_th_request_header(r, "X-Test-Wait", "1");
    gw_th_request_client_ip(r, "192.0.2.7");
    gw_th_request_body(r, "0123456789", 10);
    gw_th_upstream_reply(r, 201, "Content-Type: text/plain\n", "created!");
    gw_th_advance(f->th, 1500); /* the clock before the request starts does not count */
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_th_advance(f->th, 250);
    assert_ptr_equal(aux_waiting, r);
    aux_host->resume(r, GW_CONTINUE);
    assert_int_equal(gw_th_state_of(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 201);
    /* absent values: a 404 outside every route, no user agent, no key */
    gw_req *r2 = run(f, "GET", "/elsewhere", NULL);
    assert_int_equal(gw_th_status(r2), 404);
    finish(f);
    assert_int_equal(f->n, 2);

    const cJSON *a = line_of(f, "client-rid-1");
    assert_non_null(a);
    assert_string_equal(str(a, "time"), "2023-11-14T22:13:21.750Z"); /* written at the end, in unix ms */
    assert_string_equal(str(a, "level"), "info");
    const char *trace = str(a, "trace_id");
    assert_non_null(trace);
    assert_int_equal(strlen(trace), 32);
    assert_int_equal(strspn(trace, "0123456789abcdef"), 32);
    assert_string_equal(str(a, "method"), "POST");
    assert_string_equal(str(a, "path"), "/api/users/1?x=1&y=%22");
    assert_string_equal(str(a, "route"), "api");
    assert_int_equal((int)num(a, "status"), 201);
    assert_true(num(a, "duration_ms") == 250.0);
    assert_true(strstr(f->raw[0], "\"duration_ms\":250.000,") ||
                strstr(f->raw[1], "\"duration_ms\":250.000,"));
    assert_string_equal(str(a, "upstream"), GW_TH_UPSTREAM_URL);
    assert_int_equal((int)num(a, "upstream_status"), 201);
    assert_int_equal((int)num(a, "retries"), 0);
    assert_string_equal(str(a, "client_ip"), "192.0.2.7");
    assert_string_equal(str(a, "api_key_id"), "key-42");
    assert_int_equal((int)num(a, "bytes_in"), 10);
    assert_int_equal((int)num(a, "bytes_out"), 8);
    assert_string_equal(str(a, "user_agent"), "curl/8.5.0");

    const cJSON *b = line_of(f, "req-2"); /* (r2 went with the test host) */
    assert_non_null(b);
    assert_string_equal(str(b, "level"), "warn");
    assert_int_equal((int)num(b, "status"), 404);
    assert_string_equal(str(b, "path"), "/elsewhere");
    assert_true(is_null(b, "route")); /* an unrouted request has no route (host->route() is empty) */
    assert_true(is_null(b, "upstream"));
    assert_true(is_null(b, "upstream_status"));
    assert_true(is_null(b, "api_key_id"));
    assert_true(is_null(b, "user_agent"));
    assert_true(is_null(b, "trace_id")); /* the request phase did not run */
    assert_int_equal((int)num(b, "retries"), 0);
    assert_int_equal((int)num(b, "bytes_in"), 0);
    assert_true(num(b, "duration_ms") == 0.0);
}

static void test_retries_and_errors(void **state)
{
    fx *f = *state;
    load(f, NULL);
    /* two attempts retried by the stand-in: retries 2, the last upstream status */
    gw_req *r = gw_th_request(f->th, "GET", "/api/a");
    gw_th_request_header(r, "X-Test-Retry", "1");
    gw_th_upstream_reply(r, 503, NULL, NULL);
    gw_th_upstream_reply(r, 502, NULL, NULL);
    gw_th_upstream_reply(r, 500, NULL, "boom");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_attempts(r), 3);
    /* retry.count, when a retry filter set it, wins over the attempts */
    gw_req *r2 = gw_th_request(f->th, "GET", "/api/b");
    gw_th_request_header(r2, "X-Test-Retry-Count", "7");
    assert_int_equal(gw_th_run(r2), GW_TH_DONE);
    /* a refused connection: the gateway's own 502, no upstream status */
    gw_req *r3 = gw_th_request(f->th, "GET", "/api/c");
    gw_th_upstream_fail(r3, "connect");
    assert_int_equal(gw_th_run(r3), GW_TH_DONE);
    /* the client went away while a filter waited: no status, level warn */
    gw_req *r4 = gw_th_request(f->th, "GET", "/api/d");
    gw_th_request_header(r4, "X-Test-Wait", "1");
    assert_int_equal(gw_th_run(r4), GW_TH_WAITING);
    gw_th_abort(r4);
    finish(f);
    assert_int_equal(f->n, 4);
    const cJSON *a = line_of(f, "req-1"), *b = line_of(f, "req-2"), *c = line_of(f, "req-3"),
                *d = line_of(f, "req-4");
    assert_non_null(a), assert_non_null(b), assert_non_null(c), assert_non_null(d);
    assert_int_equal((int)num(a, "retries"), 2);
    assert_int_equal((int)num(a, "status"), 500);
    assert_int_equal((int)num(a, "upstream_status"), 500);
    assert_string_equal(str(a, "level"), "error");
    assert_int_equal((int)num(b, "retries"), 7);
    assert_int_equal((int)num(c, "status"), 502);
    assert_true(is_null(c, "upstream_status"));
    assert_string_equal(str(c, "level"), "error");
    assert_int_equal((int)num(d, "status"), 499); /* the client went away first, as nginx logs it */
    assert_string_equal(str(d, "level"), "warn");
}

/* --- escaping and caps ----------------------------------------------------------------------------- */

static void test_escaping(void **state)
{
    fx *f = *state;
    load(f, NULL);
    const char *ua = "q\" b\\ t\tc\x01 d\x7f e\xff f\xc3\x28 g\xc0\xaf h\xed\xa0\x80 i\xf4\x90\x80\x80 "
                     "j\xc3\xa9 k\xf0\x9f\x98\x80 l\xe2\x82";
    const char *want = "\"user_agent\":\"q\\\" b\\\\ t\\tc\\u0001 d\\u007f e\\ufffd f\\ufffd( "
                       "g\\ufffd\\ufffd h\\ufffd\\ufffd\\ufffd i\\ufffd\\ufffd\\ufffd\\ufffd j\xc3\xa9 "
                       "k\xf0\x9f\x98\x80 l\\ufffd\\ufffd\"}";
    run(f, "GET", "/api/x", (const char *[]){"User-Agent", ua, NULL});
    run(f, "GET", "/api/a\"b\\c?q=\"}{\"forged\":1", (const char *[]){"X-Test-Consumer", "k\"\x02", NULL});
    run(f, "GET", "/api/k", (const char *[]){"X-Test-Hostile-Key", "1", NULL});
    finish(f);
    assert_int_equal(f->n, 3);
    const cJSON *a = line_of(f, "req-1"), *b = line_of(f, "req-2");
    assert_non_null(a), assert_non_null(b);
    if (!strstr(f->raw[0], want) && !strstr(f->raw[1], want))
        fail_msg("lines:\n%s\n%s", f->raw[0], f->raw[1]);
    assert_string_equal(str(b, "path"), "/api/a\"b\\c?q=\"}{\"forged\":1");
    assert_null(cJSON_GetObjectItemCaseSensitive(b, "forged"));
    assert_string_equal(str(b, "api_key_id"), "k\"\x02");
    const cJSON *c = line_of(f, "req-3");
    assert_non_null(c);
    const cJSON *key = field(c, "api_key_id");
    if (!strstr(f->raw[2], "\"api_key_id\":\"a\\nb\\\"}\\r\\u0000z\"")) fail_msg("%s", f->raw[2]);
    assert_true(cJSON_IsString(key));
    assert_memory_equal(key->valuestring, "a\nb\"}\r", 6); /* (cJSON's string ends at the NUL) */
}

static void test_caps(void **state)
{
    fx *f = *state;
    load(f, NULL);
    char ua[1200], path[3000];
    memset(ua, 'u', sizeof ua);
    memcpy(ua + 511, "\xc3\xa9", 2); /* a two-byte character across the 512-byte cap */
    ua[sizeof ua - 1] = '\0';
    strcpy(path, "/api/");
    memset(path + 5, 'p', 2500);
    path[2505] = '\0';
    run(f, "GET", path, (const char *[]){"User-Agent", ua, NULL});
    finish(f);
    assert_int_equal(f->n, 1);
    const char *u = str(f->line[0], "user_agent"), *p = str(f->line[0], "path");
    assert_int_equal(strlen(u), 511); /* the character that does not fit is left out whole */
    assert_int_equal(strlen(p), 2048);
    assert_memory_equal(p, path, 2048);
}

/* --- trace context ---------------------------------------------------------------------------------- */

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT "00f067aa0ba902b7"

static void check_traceparent(const char *tp, const char *trace, const char *flags)
{
    assert_non_null(tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-", 3);
    if (trace) assert_memory_equal(tp + 3, trace, 32);
    assert_int_equal(strspn(tp + 3, "0123456789abcdef"), 32);
    assert_int_equal(tp[35], '-');
    assert_int_equal(strspn(tp + 36, "0123456789abcdef"), 16);
    assert_false(memcmp(tp + 36, PARENT, 16) == 0);
    assert_false(memcmp(tp + 36, "0000000000000000", 16) == 0);
    assert_int_equal(tp[52], '-');
    assert_string_equal(tp + 53, flags);
}

static void test_traceparent(void **state)
{
    fx *f = *state;
    load(f, NULL);
    static const struct {
        const char *tp;
        bool kept;
        const char *flags;
    } cases[] = {
        {"00-" TRACE "-" PARENT "-01", true, "01"},
        {"00-" TRACE "-" PARENT "-00", true, "00"},
        {"00-" TRACE "-" PARENT "-ff", true, "03"}, /* flags this version does not define are cleared */
        {" 00-" TRACE "-" PARENT "-01\t", true, "01"},
        {"cc-" TRACE "-" PARENT "-01-what-comes-later", true, "01"}, /* a future version, read as 00 */
        {"cc-" TRACE "-" PARENT "-01", true, "01"},
        {NULL, false, "01"},                                                /* absent */
        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PARENT "-01", false, "01"}, /* uppercase */
        {"00-00000000000000000000000000000000-" PARENT "-01", false, "01"}, /* zero trace id */
        {"00-" TRACE "-0000000000000000-01", false, "01"},                  /* zero parent id */
        {"ff-" TRACE "-" PARENT "-01", false, "01"},                        /* version ff */
        {"00-" TRACE "-" PARENT "-01-x", false, "01"},                      /* 00 is exactly 55 chars */
        {"cc-" TRACE "-" PARENT "-01x", false, "01"},                       /* no '-' after the 55 */
        {"00-" TRACE "-" PARENT "-1", false, "01"},                         /* short */
        {"00_" TRACE "_" PARENT "_01", false, "01"},                        /* separators */
        {"0g-" TRACE "-" PARENT "-01", false, "01"},                        /* version not hex */
        {"", false, "01"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    char traces[32][33];
    for (size_t i = 0; i < n; i++) {
        gw_req *r = gw_th_request(f->th, "GET", "/api/t");
        if (cases[i].tp) gw_th_request_header(r, "traceparent", cases[i].tp);
        gw_th_request_header(r, "tracestate", "vendor=opaque");
        assert_int_equal(gw_th_run(r), GW_TH_DONE);
        const char *tp = gw_th_header(r, GW_HDR_UPSTREAM, "traceparent");
        check_traceparent(tp, cases[i].kept ? TRACE : NULL, cases[i].flags);
        assert_int_equal(gw_th_header_count(r, GW_HDR_UPSTREAM, "traceparent"), 1);
        if (!cases[i].kept) assert_false(memcmp(tp + 3, TRACE, 32) == 0);
        memcpy(traces[i], tp + 3, 32);
        traces[i][32] = '\0';
        /* tracestate belongs to the parent: kept with it, dropped with an unreadable one */
        const char *ts = gw_th_header(r, GW_HDR_UPSTREAM, "tracestate");
        if (cases[i].kept)
            assert_string_equal(ts, "vendor=opaque");
        else if (cases[i].tp)
            assert_null(ts);
    }
    /* two traceparent fields: one comma-joined value, unparseable */
    gw_req *r = gw_th_request(f->th, "GET", "/api/t");
    gw_th_request_header(r, "traceparent", "00-" TRACE "-" PARENT "-01");
    gw_th_request_header(r, "Traceparent", "00-" TRACE "-" PARENT "-01");
    gw_th_request_header(r, "tracestate", "vendor=opaque");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    const char *tp = gw_th_header(r, GW_HDR_UPSTREAM, "traceparent");
    check_traceparent(tp, NULL, "01");
    assert_false(memcmp(tp + 3, TRACE, 32) == 0);
    assert_int_equal(gw_th_header_count(r, GW_HDR_UPSTREAM, "traceparent"), 1);
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "tracestate"));
    finish(f);
    assert_int_equal(f->n, n + 1);
    for (size_t i = 0; i < n; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "req-%zu", i + 1);
        const cJSON *l = line_of(f, rid);
        assert_non_null(l);
        assert_string_equal(str(l, "trace_id"), traces[i]); /* the trace id that went upstream */
        for (size_t j = 0; j < i; j++)                      /* every started trace is a new one */
            if (!cases[i].kept && !cases[j].kept) assert_string_not_equal(traces[i], traces[j]);
    }
}

static void test_trace_context_off_and_unsampled(void **state)
{
    fx *f = *state;
    load(f, "trace_context: false\n");
    gw_req *r = run(f, "GET", "/api/t", (const char *[]){"traceparent", "00-" TRACE "-" PARENT "-01", NULL});
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "traceparent"), "00-" TRACE "-" PARENT "-01");
    r = run(f, "GET", "/api/t", NULL);
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "traceparent"));
    finish(f);
    assert_int_equal(f->n, 2);
    assert_true(is_null(f->line[0], "trace_id"));
    assert_true(is_null(f->line[1], "trace_id"));

    f->th = gw_th_new();
    load(f, "trace_sampled: false\n");
    r = run(f, "GET", "/api/t", NULL);
    check_traceparent(gw_th_header(r, GW_HDR_UPSTREAM, "traceparent"), NULL, "00");
    r = run(f, "GET", "/api/t", (const char *[]){"traceparent", "00-" TRACE "-" PARENT "-01", NULL});
    check_traceparent(gw_th_header(r, GW_HDR_UPSTREAM, "traceparent"), TRACE, "01");
}

/* --- what is written --------------------------------------------------------------------------------- */

static void test_sampling(void **state)
{
    fx *f = *state;
    load(f, "sample: 0.25\n");
    size_t ok = 0;
    for (int i = 0; i < 2000; i++)
        run(f, "GET", "/api/s", NULL);
    for (int i = 0; i < 50; i++) {
        gw_req *r = gw_th_request(f->th, "GET", "/api/e");
        gw_th_upstream_reply(r, i % 2 ? 404 : 503, NULL, NULL);
        assert_int_equal(gw_th_run(r), GW_TH_DONE);
    }
    finish(f);
    size_t errors = 0;
    for (size_t i = 0; i < f->n; i++) {
        int st = (int)num(f->line[i], "status");
        if (st == 200)
            ok++;
        else
            errors++;
    }
    assert_int_equal(errors, 50); /* 4xx and 5xx are never sampled away */
    if (ok < 350 || ok > 650) fail_msg("sample 0.25 kept %zu of 2000", ok);

    unlink(f->path);
    f->th = gw_th_new();
    load(f, "sample: 0\n");
    for (int i = 0; i < 100; i++)
        run(f, "GET", "/api/s", NULL);
    run(f, "GET", "/nowhere", NULL);
    finish(f);
    assert_int_equal(f->n, 1);
    assert_int_equal((int)num(f->line[0], "status"), 404);
}

static void test_include_exclude(void **state)
{
    fx *f = *state;
    load(f, "include: [/api, /other/]\nexclude: [/api/health]\n");
    const char *paths[] = {"/api",         "/api/x", "/apix",    "/api/health", "/api/health/deep",
                           "/api/healthz", "/other", "/other/y", "/",           "/health"};
    const bool logged[] = {true, true, false, false, false, true, true, true, false, false};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        run(f, "GET", paths[i], NULL);
    finish(f);
    size_t want = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        bool found = false;
        for (size_t j = 0; j < f->n; j++)
            found |= strcmp(str(f->line[j], "path"), paths[i]) == 0;
        if (found != logged[i]) fail_msg("%s: logged %d, expected %d", paths[i], found, logged[i]);
        want += logged[i];
    }
    assert_int_equal(f->n, want);
}

static void test_level(void **state)
{
    fx *f = *state;
    static const struct {
        const char *level;
        size_t lines;
    } cases[] = {{"info", 4}, {"warn", 3}, {"error", 1}};
    for (size_t c = 0; c < 3; c++) {
        if (!f->th) f->th = gw_th_new();
        char conf[64];
        snprintf(conf, sizeof conf, "level: %s\n", cases[c].level);
        load(f, conf);
        static const int statuses[] = {200, 404, 500};
        for (int i = 0; i < 3; i++) {
            gw_req *r = gw_th_request(f->th, "GET", "/api/l");
            gw_th_upstream_reply(r, statuses[i], NULL, NULL);
            assert_int_equal(gw_th_run(r), GW_TH_DONE);
        }
        gw_req *r = gw_th_request(f->th, "GET", "/api/gone");
        gw_th_request_header(r, "X-Test-Wait", "1");
        assert_int_equal(gw_th_run(r), GW_TH_WAITING);
        gw_th_abort(r);
        finish(f);
        if (f->n != cases[c].lines) fail_msg("level %s: %zu lines", cases[c].level, f->n);
        for (size_t i = 0; i < f->n; i++) {
            const char *lv = str(f->line[i], "level");
            const cJSON *st = field(f->line[i], "status");
            int s = cJSON_IsNumber(st) ? st->valueint : 0;
            assert_string_equal(lv, s >= 500 ? "error" : s >= 400 || s == 0 ? "warn" : "info");
        }
        unlink(f->path);
    }
}

/* --- output -------------------------------------------------------------------------------------------- */

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_reopen_after_rename(void **state)
{
    fx *f = *state;
    load(f, NULL);
    for (int i = 0; i < 3; i++)
        run(f, "GET", "/api/before", NULL);
    char old[320];
    snprintf(old, sizeof old, "%s.1", f->path);
    for (int i = 0; i < 5000 && !exists(f->path); i++)
        usleep(1000); /* created at create() */
    assert_int_equal(rename(f->path, old), 0);
    gw_th_reopen(f->th);
    for (int i = 0; i < 5000 && !exists(f->path); i++)
        usleep(1000);
    assert_true(exists(f->path));
    for (int i = 0; i < 2; i++)
        run(f, "GET", "/api/after", NULL);
    finish(f);
    assert_int_equal(f->n, 2);
    for (size_t i = 0; i < f->n; i++)
        assert_string_equal(str(f->line[i], "path"), "/api/after");
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0007, 0); /* not world-readable */
    read_lines(f, old);
    assert_int_equal(f->n, 3);
    for (size_t i = 0; i < f->n; i++)
        assert_string_equal(str(f->line[i], "path"), "/api/before");
}

typedef struct {
    int fd;
    size_t lines;
    bool torn;
} reader;

static void *read_pipe(void *arg)
{
    reader *rd = arg;
    char buf[65536];
    size_t col = 0;
    ssize_t k;
    while ((k = read(rd->fd, buf, sizeof buf)) > 0 || (k < 0 && errno == EINTR))
        for (ssize_t i = 0; i < k; i++) {
            if (col == 0 && buf[i] != '{') rd->torn = true;
            if (buf[i] == '\n')
                rd->lines++, col = 0;
            else
                col++;
        }
    return NULL;
}

/* logging writing into the pipe p (made here), with `extra` settings, then n requests whose lines are over
 * 400 bytes each (their user agent), so a few hundred fill the pipe. */
static void pipe_and_fill(fx *f, int p[2], const char *extra, size_t n)
{
    assert_int_equal(pipe(p), 0);
    char conf[160];
    snprintf(conf, sizeof conf, "output: /proc/self/fd/%d\n%s", p[1], extra);
    load(f, conf);
    char ua[401];
    memset(ua, 'a', 400);
    ua[400] = '\0';
    for (size_t i = 0; i < n; i++)
        run(f, "GET", "/api/q", (const char *[]){"User-Agent", ua, NULL});
}

/* Nobody reads the output: the writer blocks, the rings fill, further lines are dropped and counted; every
 * line not counted as dropped is written once the output drains. */
static void test_full_queue_drops_and_counts(void **state)
{
    fx *f = *state;
    int p[2];
    const size_t total = 3000;
    pipe_and_fill(f, p, "queue_size: 16\n", total);
    double dropped = gw_th_metric(f->th, "gateway_access_log_dropped_total", NULL);
    if (!(dropped > 0)) fail_msg("dropped %g of %zu with no reader", dropped, total);
    reader rd = {.fd = p[0]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_pipe, &rd), 0);
    assert_int_equal(gw_th_violations(f->th), 0);
    gw_th_free(f->th); /* the writer drains the rest into the pipe, closes its end */
    f->th = NULL;
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    assert_false(rd.torn);
    assert_int_equal(rd.lines + (size_t)dropped, total);
}

/* Lines in the file now (without stopping the writer). */
static size_t lines_now(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    fclose(fp);
    return n;
}

/* Waits (at most 5 s) until the file has `want` lines; returns how many it has then. */
static size_t wait_lines(const char *path, size_t want)
{
    size_t n = 0;
    for (int i = 0; i < 500 && (n = lines_now(path)) < want; i++)
        usleep(10000);
    return n;
}

/* The writer's wake-ups: a line after a quiet spell is written at once; after that the writer naps for
 * `flush` (10 s here) and lines wait, unless a worker's queue passes half full (16 slots: the 8th line). */
static void test_flush_nap_and_half_full_wake(void **state)
{
    fx *f = *state;
    load(f, "queue_size: 16\nflush: 10s\n");
    run(f, "GET", "/api/first", NULL);
    assert_int_equal(wait_lines(f->path, 1), 1); /* deep sleep: woken by the push */
    usleep(50000);                               /* now napping */
    for (int i = 0; i < 7; i++)
        run(f, "GET", "/api/batch", NULL);
    usleep(300000);
    assert_int_equal(lines_now(f->path), 1); /* 7 of 16: below half, they wait for the nap's end */
    run(f, "GET", "/api/batch", NULL);       /* 8 of 16: past half, the worker wakes the writer */
    assert_int_equal(wait_lines(f->path, 9), 9);
    finish(f);
    assert_int_equal(f->n, 9);
}

static void *free_host(void *arg)
{
    gw_th_free(arg);
    return NULL;
}

/* An output nobody reads cannot hold a stopping gateway: destroy gives the queued lines up after the
 * grace time (5 s) instead of blocking in write(2) for good. */
static void test_stop_with_an_output_nobody_reads(void **state)
{
    fx *f = *state;
    int p[2];
    pipe_and_fill(f, p, "queue_size: 64\nflush: 0\n", 2000); /* far more than the pipe holds */
    assert_int_equal(gw_th_violations(f->th), 0);
    pthread_t t;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pthread_create(&t, NULL, free_host, f->th), 0);
    f->th = NULL;
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 20;
    int rc = pthread_timedjoin_np(t, NULL, &limit);
    if (rc != 0) fail_msg("destroy still blocked after 20 s with a full pipe"); /* the thread leaks */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs >= 4.0); /* it did wait the grace time for a reader */
    close(p[0]);
    close(p[1]);
}

static void test_settings_errors(void **state)
{
    fx *f = *state;
    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"name: logging\noutput: ''\n", "logging.output"},
        {"name: logging\nsample: 1.5\n", "logging.sample"},
        {"name: logging\nlevel: debug\n", "logging.level"},
        {"name: logging\nqueue_size: 4\n", "logging.queue_size"},
        {"name: logging\nflush: 11s\n", "logging.flush"},
        {"name: logging\ninclude: [api]\n", "logging.include"},
        {"name: logging\ncolour: blue\n", "logging.colour: unknown setting"},
        {"name: logging\noutput: /nonexistent-dir/x/access.log\n", "logging.output: cannot write"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gw_th_load(f->th, GW_PLUGIN_SO, bad[i].yaml), -1);
        if (!strstr(gw_th_error(f->th), bad[i].msg))
            fail_msg("%s: '%s' lacks '%s'", bad[i].yaml, gw_th_error(f->th), bad[i].msg);
    }
    assert_int_equal(gw_th_load(f->th, GW_PLUGIN_SO, "name: logging\noutput: stderr\nexclude: [/health]\n"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traceparent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_context_off_and_unsampled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sampling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_nap_and_half_full_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_an_output_nobody_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_exclude, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_drops_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
