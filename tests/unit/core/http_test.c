/* http_test.c - unit tests for the HTTP/1.1 codec (core/http/): heads, limits, prefix feeding,
 * the chunked decoder and the field helpers. Inputs are parsed from exact-size heap copies so that
 * AddressSanitizer catches any read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static gw_http_head H;
static char *g_buf; /* copy the last parse points into; freed by the next parse */
static const gw_http_limits LIM = {.max_line = 8192, .max_head = 65536, .max_fields = 100};

static const char *copy_in(const char *s, size_t n)
{
    free(g_buf);
    g_buf = malloc(n ? n : 1);
    assert_non_null(g_buf);
    memcpy(g_buf, s, n);
    return g_buf;
}

static ssize_t parse_req_lim(const char *s, size_t n, const gw_http_limits *lim)
{
    return gw_http_parse_request(copy_in(s, n), n, lim, &H);
}

static ssize_t parse_req(const char *s, size_t n)
{
    return parse_req_lim(s, n, &LIM);
}

static ssize_t parse_resp(const char *s, size_t n, int method)
{
    return gw_http_parse_response(copy_in(s, n), n, &LIM, method, &H);
}

/* Literals may hold NUL bytes, so their length comes from sizeof. */
#define REQ(lit) parse_req(lit, sizeof(lit) - 1)
#define RESP(lit, m) parse_resp(lit, sizeof(lit) - 1, m)
#define LEN(lit) ((ssize_t)(sizeof(lit) - 1))

static void assert_str(gw_str s, const char *lit)
{
    assert_int_equal(s.n, strlen(lit));
    if (s.n) assert_memory_equal(s.p, lit, s.n);
}

/* For table-driven cases: names the failing row. */
static void expect_verdict(ssize_t got, ssize_t want, const char *what)
{
    if (got != want) print_error("case \"%s\": got %zd, want %zd\n", what, got, want);
    assert_int_equal(got, want);
}

static int teardown_group(void **state)
{
    free(g_buf);
    g_buf = NULL;
    return 0;
}

/* Every proper prefix gives INCOMPLETE or `want` (never another verdict); the whole gives `want`. */
static void check_prefixes(const char *s, size_t n, bool response, int method, ssize_t want)
{
    for (size_t k = 0; k <= n; k++) {
        ssize_t r = response ? parse_resp(s, k, method) : parse_req(s, k);
        if (k == n)
            assert_int_equal(r, want);
        else if (want > 0)
            assert_int_equal(r, (ssize_t)k >= want ? want : GW_HTTP_INCOMPLETE);
        else if (r != GW_HTTP_INCOMPLETE)
            assert_int_equal(r, want);
    }
}

#define PREFIXES_REQ(lit, want) check_prefixes(lit, sizeof(lit) - 1, false, 0, want)
#define PREFIXES_RESP(lit, m, want) check_prefixes(lit, sizeof(lit) - 1, true, m, want)

/* ---- valid requests ----------------------------------------------------------------------------- */

static void test_get_minimal(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_str(H.method, "GET");
    assert_int_equal(H.method_id, GW_METHOD_GET);
    assert_str(H.target, "/");
    assert_int_equal(H.minor_version, 1);
    assert_int_equal(H.nfields, 1);
    assert_str(H.fields[0].name, "Host");
    assert_str(H.fields[0].value, "example.com");
    assert_int_equal(H.host_count, 1);
    assert_str(H.host, "example.com");
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_true(H.keep_alive);
    assert_false(H.upgrade);
    assert_false(H.expect_continue);
    assert_int_equal(H.conn_tokens, 0);
}

static void test_fields_point_into_buffer(void **state)
{
    static const char m[] = "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_ptr_equal(H.method.p, g_buf);
    assert_ptr_equal(H.target.p, g_buf + 4);
    assert_ptr_equal(H.fields[1].name.p, g_buf + 30);
    assert_ptr_equal(H.fields[1].value.p, g_buf + 35);
    assert_str(H.target, "/a?b=c");
}

static void test_post_content_length(void **state)
{
    static const char m[] = "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(REQ(m), LEN(m) - 5);
    assert_int_equal(H.method_id, GW_METHOD_POST);
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 5);
}

static void test_post_chunked(void **state)
{
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.body, GW_BODY_CHUNKED);
    assert_int_equal(H.content_length, 0);
}

static void test_te_chunked_case_and_ows(void **state)
{
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: \t CHUNKED \t\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.body, GW_BODY_CHUNKED);
    assert_str(H.fields[1].value, "CHUNKED");
}

static void test_content_length_zero_is_length(void **state)
{
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 0);
}

static void test_content_length_leading_zeros(void **state)
{
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.content_length, 7);
}

static void test_content_length_ows_trimmed(void **state)
{
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 42 \t\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 42);
}

static void test_content_length_max(void **state)
{
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_true(H.content_length == UINT64_C(9223372036854775807));
}

static void test_content_length_duplicates_equal(void **state)
{
    static const char m[] = "PUT / HTTP/1.1\r\nContent-Length: 12\r\nHost: a\r\ncontent-length:012\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 12);
}

static void test_get_with_body_is_reported(void **state)
{
    static const char m1[] = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    static const char m2[] = "HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(REQ(m1), LEN(m1) - 3);
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 3);
    assert_int_equal(REQ(m2), LEN(m2));
    assert_int_equal(H.method_id, GW_METHOD_HEAD);
    assert_int_equal(H.body, GW_BODY_CHUNKED);
}

static void test_http10_without_host(void **state)
{
    static const char m[] = "GET /x HTTP/1.0\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.minor_version, 0);
    assert_int_equal(H.host_count, 0);
    assert_str(H.host, "");
    assert_false(H.keep_alive);
    assert_int_equal(H.body, GW_BODY_NONE);
}

static void test_http10_keep_alive(void **state)
{
    static const char m[] = "GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_true(H.keep_alive);
    assert_int_equal(H.conn_tokens, GW_CONN_KEEP_ALIVE);
    assert_int_equal(H.host_count, 1);
}

static void test_http10_ignores_upgrade_and_expect(void **state)
{
    static const char m[] = "POST / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                            "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.conn_tokens, GW_CONN_UPGRADE);
    assert_false(H.upgrade);
    assert_false(H.expect_continue);
}

static void test_connection_close(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_false(H.keep_alive);
    assert_int_equal(H.conn_tokens, GW_CONN_CLOSE);
}

static void test_connection_tokens_from_all_fields(void **state)
{
    static const char m[] = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive ,, X-Foo\r\n"
                            "Upgrade: websocket\r\nconnection: UPGRADE\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.conn_tokens, GW_CONN_KEEP_ALIVE | GW_CONN_UPGRADE);
    assert_true(H.upgrade);
    assert_true(H.keep_alive);
}

static void test_upgrade_needs_both(void **state)
{
    static const char m1[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n";
    static const char m2[] = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    assert_int_equal(REQ(m1), LEN(m1));
    assert_false(H.upgrade);
    assert_int_equal(REQ(m2), LEN(m2));
    assert_false(H.upgrade);
}

static void test_expect_continue(void **state)
{
    static const char m1[] = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n";
    static const char m2[] = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 9\r\n\r\n";
    assert_int_equal(REQ(m1), LEN(m1));
    assert_true(H.expect_continue);
    assert_int_equal(REQ(m2), LEN(m2));
    assert_false(H.expect_continue);
}

static void test_absolute_form_target(void **state)
{
    static const char m[] = "GET http://example.com:8080/p?q=1#f HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_str(H.target, "http://example.com:8080/p?q=1#f");
    assert_str(H.host, "example.com:8080");
}

static void test_connect_and_options_targets(void **state)
{
    static const char m1[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    static const char m2[] = "OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\n\r\n";
    assert_int_equal(REQ(m1), LEN(m1));
    assert_int_equal(H.method_id, GW_METHOD_CONNECT);
    assert_str(H.target, "example.com:443");
    assert_int_equal(REQ(m2), LEN(m2));
    assert_int_equal(H.method_id, GW_METHOD_OPTIONS);
    assert_str(H.host, "[::1]:80");
}

static void test_unknown_and_lowercase_method(void **state)
{
    static const char m1[] = "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char m2[] = "get / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(REQ(m1), LEN(m1));
    assert_int_equal(H.method_id, GW_METHOD_OTHER);
    assert_str(H.method, "PURGE");
    assert_int_equal(REQ(m2), LEN(m2));
    assert_int_equal(H.method_id, GW_METHOD_OTHER);
}

static void test_leading_empty_lines(void **state)
{
    static const char m1[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char m4[] = "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char m5[] = "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(REQ(m1), LEN(m1));
    assert_str(H.method, "GET");
    assert_ptr_equal(H.method.p, g_buf + 4);
    assert_int_equal(REQ(m4), LEN(m4));
    assert_int_equal(REQ(m5), -400);
    assert_int_equal(REQ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
}

static void test_value_trimming_and_empty_value(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t a \t b \t\r\nX-B:\r\nX-C:   \r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.nfields, 4);
    assert_str(H.fields[1].value, "a \t b");
    assert_str(H.fields[2].value, "");
    assert_str(H.fields[3].value, "");
}

static void test_obs_text_in_value(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_str(H.fields[1].value, "caf\xc3\xa9 \xff");
}

static void test_empty_host_accepted(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_int_equal(H.host_count, 1);
    assert_str(H.host, "");
}

static void test_pipelined_bytes_not_consumed(void **state)
{
    static const char m[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    ssize_t n = REQ(m);
    assert_int_equal(n, LEN(m) / 2);
    assert_str(H.target, "/1");
    assert_int_equal(parse_req(m + n, (size_t)(LEN(m) - n)), LEN(m) / 2);
    assert_str(H.target, "/2");
}

static void test_all_method_ids(void **state)
{
    static const struct {
        const char *m;
        int id;
    } t[] = {{"GET", GW_METHOD_GET},         {"HEAD", GW_METHOD_HEAD},       {"POST", GW_METHOD_POST},
             {"PUT", GW_METHOD_PUT},         {"DELETE", GW_METHOD_DELETE},   {"PATCH", GW_METHOD_PATCH},
             {"OPTIONS", GW_METHOD_OPTIONS}, {"CONNECT", GW_METHOD_CONNECT}, {"TRACE", GW_METHOD_TRACE},
             {"GETS", GW_METHOD_OTHER},      {"Get", GW_METHOD_OTHER},       {"", GW_METHOD_OTHER}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(gw_http_method_id((gw_str){t[i].m, strlen(t[i].m)}), t[i].id);
}

/* ---- rejected requests -------------------------------------------------------------------------- */

static void test_cl_and_te_together(void **state)
{
    assert_int_equal(
        REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
    assert_int_equal(
        REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"), -400);
    /* the framing conflict wins over the unknown coding */
    assert_int_equal(
        REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"), -400);
}

static void test_cl_different_values(void **state)
{
    assert_int_equal(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
                     -400);
}

static void test_cl_bad_syntax(void **state)
{
    static const char *const bad[] = {"+5",
                                      "-5",
                                      "0x5",
                                      "5 5",
                                      "5, 5",
                                      "5,5",
                                      "",
                                      "5a",
                                      "a",
                                      "1.0",
                                      "\"5\"",
                                      "10000000000000000000",
                                      "9223372036854775808",
                                      "00000000000000000001"};
    char m[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = snprintf(m, sizeof m, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n", bad[i]);
        expect_verdict(parse_req(m, (size_t)n), -400, bad[i]);
    }
}

static void test_te_lists_rejected(void **state)
{
    static const struct {
        const char *te;
        ssize_t want;
    } t[] = {{"chunked, chunked", -400}, {"gzip", -501},          {"gzip, chunked", -501},
             {"identity", -501},         {"chunked, gzip", -501}, {"", -400},
             {",chunked", -400},         {"chunked,", -400},      {"chunked;q=1", -400},
             {"chun ked", -400},         {"\"chunked\"", -400},   {"chunked , , gzip", -400}};
    char m[256];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int n = snprintf(m, sizeof m, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n", t[i].te);
        expect_verdict(parse_req(m, (size_t)n), t[i].want, t[i].te);
    }
}

static void test_te_twice_as_fields(void **state)
{
    assert_int_equal(
        REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        -400);
    assert_int_equal(
        REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
        -501);
}

static void test_te_in_http10(void **state)
{
    assert_int_equal(REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
}

static void test_space_before_colon(void **state)
{
    assert_int_equal(REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"), -400);
    assert_int_equal(REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n"), -400);
}

static void test_bad_field_names(void **state)
{
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: 1\r\n\r\n"), -400);
}

static void test_obs_fold(void **state)
{
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n"), -400);
    /* whitespace between the start line and the first field */
    assert_int_equal(REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), -400);
}

static void test_nul_and_ctl(void **state)
{
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-\0: 1\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x7f\r\n\r\n"), -400);
    assert_int_equal(REQ("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    /* HTAB is fine inside a value */
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\r\n\r\n"),
                     LEN("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\r\n\r\n"));
}

static void test_bare_cr(void **state)
{
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\rHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), -400);
    assert_int_equal(REQ("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
}

static void test_bare_lf(void **state)
{
    assert_int_equal(REQ("GET / HTTP/1.1\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\n\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\nb\r\n\r\n"), -400);
}

static void test_host_count(void **state)
{
    assert_int_equal(REQ("GET / HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), -400);
}

static void test_host_bad_chars(void **state)
{
    static const char *const bad[] = {"a b", "a\tb", "a/b", "user@a", "a\\b", "a?b", "a#b", "caf\xc3\xa9"};
    char m[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = snprintf(m, sizeof m, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        expect_verdict(parse_req(m, (size_t)n), -400, bad[i]);
    }
}

static void test_host_error_wins_over_501(void **state)
{
    assert_int_equal(REQ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), -400);
}

static void test_versions(void **state)
{
    assert_int_equal(REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), -505);
    assert_int_equal(REQ("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), -505);
    assert_int_equal(REQ("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), -505);
    assert_int_equal(REQ("GET / HTTP/3.1\r\n\r\n"), -505);
    assert_int_equal(REQ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), -505);
    assert_int_equal(REQ("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / http/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/10.0\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET /\r\n\r\n"), -400); /* HTTP/0.9 simple request */
}

static void test_request_line_syntax(void **state)
{
    assert_int_equal(REQ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
    assert_int_equal(REQ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), -400); /* TLS on a plain port */
}

/* ---- limits ----------------------------------------------------------------------------------- */

static void test_request_line_limit(void **state)
{
    static const char m[] = "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n"; /* line: 24 bytes */
    gw_http_limits lim = LIM;
    lim.max_line = 24;
    assert_int_equal(parse_req_lim(m, sizeof m - 1, &lim), LEN(m));
    lim.max_line = 23;
    assert_int_equal(parse_req_lim(m, sizeof m - 1, &lim), -414);
    /* a prefix without CRLF already past the limit */
    assert_int_equal(parse_req_lim(m, 24, &lim), -414);
    assert_int_equal(parse_req_lim(m, 23, &lim), GW_HTTP_INCOMPLETE);
    /* leading empty lines are not part of the request line */
    assert_int_equal(parse_req_lim("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 31, &lim), 31);
}

static void test_request_line_limit_syntax_first(void **state)
{
    gw_http_limits lim = LIM;
    lim.max_line = 10;
    /* an error inside the first max_line bytes is reported as such */
    assert_int_equal(parse_req_lim("GET /\x01xxxxxxxxxxxxxxxxxx", 24, &lim), -400);
    assert_int_equal(parse_req_lim("GET /xxxxxxxxxxxxxxxxxxxx", 24, &lim), -414);
}

static void test_too_many_fields(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    gw_http_limits lim = LIM;
    lim.max_fields = 3;
    assert_int_equal(parse_req_lim(m, sizeof m - 1, &lim), LEN(m));
    lim.max_fields = 2;
    assert_int_equal(parse_req_lim(m, sizeof m - 1, &lim), -431);
    /* decided as soon as the third field line starts */
    assert_int_equal(parse_req_lim(m, 32, &lim), -431);
    assert_int_equal(parse_req_lim(m, 31, &lim), GW_HTTP_INCOMPLETE);
}

static void test_max_fields_clamped(void **state)
{
    static char m[8192];
    gw_http_limits lim = {.max_line = 8192, .max_head = 1 << 20, .max_fields = 100000};
    size_t n = (size_t)snprintf(m, sizeof m, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < GW_HTTP_MAX_FIELDS_HARD; i++)
        n += (size_t)snprintf(m + n, sizeof m - n, "F%d: x\r\n", i);
    memcpy(m + n, "\r\n", 2);
    assert_int_equal(parse_req_lim(m, n + 2, &lim), (ssize_t)(n + 2));
    assert_int_equal(H.nfields, GW_HTTP_MAX_FIELDS_HARD);
    memcpy(m + n, "Z: z\r\n\r\n", 8);
    assert_int_equal(parse_req_lim(m, n + 8, &lim), -431);
}

static void test_head_too_large(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: 0123456789\r\n\r\n";
    gw_http_limits lim = LIM;
    lim.max_head = sizeof m - 1;
    assert_int_equal(parse_req_lim(m, sizeof m - 1, &lim), LEN(m));
    lim.max_head = sizeof m - 2;
    assert_int_equal(parse_req_lim(m, sizeof m - 1, &lim), -431);
    /* a prefix past the limit, the head still open */
    lim.max_head = 20;
    assert_int_equal(parse_req_lim(m, 21, &lim), -431);
    assert_int_equal(parse_req_lim(m, 20, &lim), GW_HTTP_INCOMPLETE);
    /* bytes after a head that fits do not count */
    lim.max_head = sizeof m - 1;
    assert_int_equal(
        parse_req_lim("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: 0123456789\r\n\r\nGET", sizeof m + 2, &lim),
        LEN(m));
}

static void test_no_limits_pointer(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(gw_http_parse_request(m, sizeof m - 1, NULL, &H), LEN(m));
}

/* ---- prefix feeding ----------------------------------------------------------------------------- */

static void test_prefixes_of_valid_requests(void **state)
{
    PREFIXES_REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
    PREFIXES_REQ("\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX:  v \r\n\r\nabc", 60);
    PREFIXES_REQ("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", 18);
}

static void test_prefixes_of_invalid_requests(void **state)
{
    PREFIXES_REQ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", -400);
    PREFIXES_REQ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", -400);
    PREFIXES_REQ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", -400);
    PREFIXES_REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505);
    PREFIXES_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -501);
    PREFIXES_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -400);
    PREFIXES_REQ("GET / HTTP/1.1\r\n\r\n", -400);
}

static void test_prefix_reports_error_early(void **state)
{
    /* the bad byte is enough; no need to wait for the end of the head */
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: \0"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\n folded"), -400);
    assert_int_equal(REQ("GE\tT"), -400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX"), GW_HTTP_INCOMPLETE);
}

/* ---- responses ---------------------------------------------------------------------------------- */

static void test_response_content_length(void **state)
{
    static const char m[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi";
    assert_int_equal(RESP(m, GW_METHOD_GET), LEN(m) - 2);
    assert_int_equal(H.status, 200);
    assert_str(H.reason, "OK");
    assert_int_equal(H.minor_version, 1);
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 2);
    assert_true(H.keep_alive);
    assert_int_equal(H.nfields, 2);
    assert_int_equal(H.host_count, 0);
}

static void test_response_reason_forms(void **state)
{
    static const char m1[] = "HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n";
    static const char m2[] = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
    static const char m3[] = "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n";
    static const char m4[] = "HTTP/1.1 500 D\xe9j\xe0\tvu\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(RESP(m1, GW_METHOD_GET), LEN(m1));
    assert_int_equal(H.status, 404);
    assert_str(H.reason, "Not Found Here");
    assert_int_equal(RESP(m2, GW_METHOD_GET), LEN(m2));
    assert_str(H.reason, "");
    assert_int_equal(RESP(m3, GW_METHOD_GET), LEN(m3));
    assert_str(H.reason, "");
    assert_int_equal(RESP(m4, GW_METHOD_GET), LEN(m4));
    assert_str(H.reason, "D\xe9j\xe0\tvu");
}

static void test_response_close_delimited(void **state)
{
    static const char m[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    assert_int_equal(RESP(m, GW_METHOD_GET), LEN(m));
    assert_int_equal(H.body, GW_BODY_CLOSE);
    assert_false(H.keep_alive);
}

static void test_response_chunked(void **state)
{
    static const char m[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(RESP(m, GW_METHOD_GET), LEN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
    assert_int_equal(H.body, GW_BODY_CHUNKED);
    assert_true(H.keep_alive);
}

static void test_response_no_body_statuses(void **state)
{
    static const char m204[] = "HTTP/1.1 204 No Content\r\n\r\n";
    static const char m304[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n";
    static const char m100[] = "HTTP/1.1 100 Continue\r\n\r\n";
    static const char m103[] = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n";
    assert_int_equal(RESP(m204, GW_METHOD_GET), LEN(m204));
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_true(H.keep_alive);
    assert_int_equal(RESP(m304, GW_METHOD_GET), LEN(m304));
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_int_equal(H.content_length, 1234);
    assert_int_equal(RESP(m100, GW_METHOD_PUT), LEN(m100));
    assert_int_equal(H.status, 100);
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_int_equal(RESP(m103, GW_METHOD_GET), LEN(m103));
    assert_int_equal(H.body, GW_BODY_NONE);
}

static void test_response_to_head(void **state)
{
    static const char m1[] = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
    static const char m2[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char m3[] = "HTTP/1.1 200 OK\r\n\r\n";
    assert_int_equal(RESP(m1, GW_METHOD_HEAD), LEN(m1));
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_int_equal(H.content_length, 500);
    assert_true(H.keep_alive);
    assert_int_equal(RESP(m2, GW_METHOD_HEAD), LEN(m2));
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_int_equal(RESP(m3, GW_METHOD_HEAD), LEN(m3));
    assert_int_equal(H.body, GW_BODY_NONE);
    assert_true(H.keep_alive);
}

static void test_response_to_connect(void **state)
{
    static const char m1[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    static const char m2[] = "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n";
    assert_int_equal(RESP(m1, GW_METHOD_CONNECT), LEN(m1));
    assert_int_equal(H.body, GW_BODY_CLOSE);
    assert_false(H.keep_alive);
    assert_int_equal(RESP(m2, GW_METHOD_CONNECT), LEN(m2));
    assert_int_equal(H.body, GW_BODY_LENGTH);
    assert_int_equal(H.content_length, 3);
}

static void test_response_101_upgrade(void **state)
{
    static const char m[] =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_int_equal(RESP(m, GW_METHOD_GET), LEN(m));
    assert_int_equal(H.status, 101);
    assert_true(H.upgrade);
    assert_int_equal(H.body, GW_BODY_NONE);
}

static void test_response_http10(void **state)
{
    static const char m1[] = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n";
    static const char m2[] = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n";
    assert_int_equal(RESP(m1, GW_METHOD_GET), LEN(m1));
    assert_int_equal(H.minor_version, 0);
    assert_false(H.keep_alive);
    assert_int_equal(RESP(m2, GW_METHOD_GET), LEN(m2));
    assert_true(H.keep_alive);
    assert_int_equal(RESP("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GW_METHOD_GET), -400);
}

static void test_response_status_range(void **state)
{
    assert_int_equal(RESP("HTTP/1.1 099 X\r\n\r\n", GW_METHOD_GET), -400);
    assert_int_equal(RESP("HTTP/1.1 600 X\r\n\r\n", GW_METHOD_GET), -400);
    assert_int_equal(RESP("HTTP/1.1 20 X\r\n\r\n", GW_METHOD_GET), -400);
    assert_int_equal(RESP("HTTP/1.1 2000 X\r\n\r\n", GW_METHOD_GET), -400);
    assert_int_equal(RESP("HTTP/1.1 2x0 X\r\n\r\n", GW_METHOD_GET), -400);
    assert_int_equal(RESP("HTTP/1.1  200 X\r\n\r\n", GW_METHOD_GET), -400);
    assert_int_equal(RESP("HTTP/1.1 599 X\r\n\r\n", GW_METHOD_GET), LEN("HTTP/1.1 599 X\r\n\r\n"));
    assert_int_equal(H.status, 599);
}

static void test_response_rejects(void **state)
{
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 1),
                     -400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n", 1), -400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", 1), -400);
    assert_int_equal(RESP("HTTP/1.1 200 O\rK\r\n\r\n", 1), -400);
    assert_int_equal(RESP("HTTP/1.1 200 O\x01K\r\n\r\n", 1), -400);
    assert_int_equal(RESP("\r\nHTTP/1.1 200 OK\r\n\r\n", 1), -400);
    assert_int_equal(RESP("HTTP/2.0 200 OK\r\n\r\n", 1), -505);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", 1), -400);
    assert_int_equal(RESP("ICY 200 OK\r\n\r\n", 1), -400);
}

static void test_response_line_limit(void **state)
{
    static const char m[] = "HTTP/1.1 200 OK\r\n\r\n";
    gw_http_limits lim = LIM;
    lim.max_line = 14;
    assert_int_equal(gw_http_parse_response(m, sizeof m - 1, &lim, GW_METHOD_GET, &H), -400);
    lim.max_line = 15;
    assert_int_equal(gw_http_parse_response(m, sizeof m - 1, &lim, GW_METHOD_GET, &H), LEN(m));
}

static void test_response_prefixes(void **state)
{
    PREFIXES_RESP("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", GW_METHOD_GET, 38);
    PREFIXES_RESP("HTTP/1.1 204\r\n\r\n", GW_METHOD_GET, 16);
    PREFIXES_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n", GW_METHOD_GET,
                  -400);
    PREFIXES_RESP("HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n", GW_METHOD_GET, -400);
}

/* ---- chunked decoder ---------------------------------------------------------------------------- */

typedef struct {
    int verdict; /* DONE, ERROR, or AGAIN when the input ran out */
    size_t end;  /* offset just past the message when DONE */
    char payload[1024];
    size_t plen;
    uint64_t total;
} ch_result;

/* Runs the decoder over s in pieces of `piece` bytes, each an exact-size heap copy. */
static void ch_run(const char *s, size_t n, size_t piece, ch_result *res)
{
    gw_chunked c;
    gw_chunked_init(&c);
    memset(res, 0, sizeof *res);
    res->verdict = GW_CHUNKED_AGAIN;
    for (size_t a = 0; a < n; a += piece) {
        size_t len = n - a < piece ? n - a : piece, off = 0;
        char *buf = malloc(len);
        assert_non_null(buf);
        memcpy(buf, s + a, len);
        while (off < len) {
            if (gw_chunked_in_data(&c)) {
                size_t take = c.remaining < len - off ? (size_t)c.remaining : len - off;
                assert_true(res->plen + take <= sizeof res->payload);
                memcpy(res->payload + res->plen, buf + off, take);
                res->plen += take;
                off += take;
                gw_chunked_consumed(&c, take);
                continue;
            }
            size_t used = 0;
            int r = gw_chunked_feed(&c, buf + off, len - off, &used);
            assert_true(used <= len - off);
            off += used;
            if (r == GW_CHUNKED_DONE || r == GW_CHUNKED_ERROR) {
                res->verdict = r;
                res->end = a + off;
                res->total = c.total;
                free(buf);
                return;
            }
            if (r == GW_CHUNKED_AGAIN) assert_int_equal(off, len);
        }
        free(buf);
    }
    res->total = c.total;
}

/* The verdict, payload and end must not depend on how the bytes are split. */
static void ch_check(const char *s, size_t n, int verdict, const char *payload, size_t end)
{
    for (size_t piece = 1; piece <= n + 1; piece++) {
        ch_result r;
        ch_run(s, n, piece, &r);
        assert_int_equal(r.verdict, verdict);
        if (verdict == GW_CHUNKED_DONE) {
            assert_int_equal(r.end, end);
            assert_int_equal(r.total, strlen(payload));
        }
        if (payload) {
            assert_int_equal(r.plen, strlen(payload));
            assert_memory_equal(r.payload, payload, r.plen);
        }
    }
}

#define CH_DONE(lit, payload, end) ch_check(lit, sizeof(lit) - 1, GW_CHUNKED_DONE, payload, end)
#define CH_ERR(lit) ch_check(lit, sizeof(lit) - 1, GW_CHUNKED_ERROR, NULL, 0)
#define CH_AGAIN(lit, payload) ch_check(lit, sizeof(lit) - 1, GW_CHUNKED_AGAIN, payload, 0)

static void test_chunked_simple(void **state)
{
    CH_DONE("5\r\nhello\r\n0\r\n\r\n", "hello", 15);
}

static void test_chunked_multi_and_hex(void **state)
{
    CH_DONE("3\r\nabc\r\nA\r\n0123456789\r\n1\r\nz\r\n0\r\n\r\n", "abc0123456789z", 34);
    CH_DONE("a\r\n0123456789\r\n00\r\n\r\n", "0123456789", 21);
    CH_DONE("0000000000000001\r\nx\r\n0\r\n\r\n", "x", 26);
}

static void test_chunked_empty_body(void **state)
{
    CH_DONE("0\r\n\r\n", "", 5);
}

static void test_chunked_stops_at_message_end(void **state)
{
    CH_DONE("2\r\nhi\r\n0\r\n\r\nPOST / HTTP/1.1\r\n", "hi", 12);
}

static void test_chunked_extensions(void **state)
{
    CH_DONE("5;name=value;flag\r\nhello\r\n0;last=\"quoted;str\"\r\n\r\n", "hello", 49);
    CH_DONE("5 ;a=b\r\nhello\r\n0\t; x\r\n\r\n", "hello", 24);
}

static void test_chunked_trailers(void **state)
{
    CH_DONE("1\r\na\r\n0\r\nX-Sum: abc\r\nX-Empty:\r\n\r\nnext", "a", 33);
}

static void test_chunked_incomplete(void **state)
{
    CH_AGAIN("5\r\nhel", "hel");
    CH_AGAIN("5\r\nhello\r\n0\r\n", "hello");
    CH_AGAIN("5\r\nhello\r\n0\r\nX: y\r\n", "hello");
    CH_AGAIN("5;ext", "");
}

static void test_chunked_malformed_size(void **state)
{
    CH_ERR(" 5\r\nhello\r\n0\r\n\r\n");
    CH_ERR("0x5\r\nhello\r\n0\r\n\r\n");
    CH_ERR("-5\r\nhello\r\n0\r\n\r\n");
    CH_ERR("+5\r\nhello\r\n0\r\n\r\n");
    CH_ERR("\r\nhello\r\n0\r\n\r\n");
    CH_ERR(";x\r\nhello\r\n0\r\n\r\n");
    CH_ERR("5 \r\nhello\r\n0\r\n\r\n");
    CH_ERR("5\nhello\r\n0\r\n\r\n");
    CH_ERR("5\rhello\r\n0\r\n\r\n");
    CH_ERR("g\r\n");
}

static void test_chunked_size_overflow(void **state)
{
    CH_ERR("00000000000000001\r\nx\r\n0\r\n\r\n"); /* 17 digits */
    CH_ERR("8000000000000000\r\n");                /* 2^63 */
    CH_ERR("ffffffffffffffff\r\n");
    CH_AGAIN("7fffffffffffffff\r\nabc", "abc"); /* 2^63-1 is a size */
}

static void test_chunked_bad_data_end(void **state)
{
    CH_ERR("5\r\nhelloX\r\n0\r\n\r\n");
    CH_ERR("5\r\nhello0\r\n\r\n");
    CH_ERR("5\r\nhello\n0\r\n\r\n");
    CH_ERR("5\r\nhello\r0\r\n\r\n");
}

static void test_chunked_bad_extensions(void **state)
{
    CH_ERR("5;a\nhello\r\n0\r\n\r\n");
    CH_ERR("5;a\0b\r\nhello\r\n0\r\n\r\n");
    CH_ERR("5;a\rb\r\nhello\r\n0\r\n\r\n");
    CH_ERR("5 x\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_bad_trailers(void **state)
{
    CH_ERR("0\r\nX: a\nb\r\n\r\n");
    CH_ERR("0\r\nX: a\rb\r\n\r\n");
    CH_ERR("0\r\nX: a\0\r\n\r\n");
    CH_ERR("0\r\n folded\r\n\r\n");
    CH_ERR("0\r\nNoColon\r\n\r\n");
    CH_ERR("0\r\n: v\r\n\r\n");
    CH_ERR("0\r\nX : v\r\n\r\n");
    CH_ERR("0\r\n\n");
    CH_ERR("0\r\n\rx");
}

static void test_chunked_size_line_limit(void **state)
{
    static char m[5000];
    size_t n;
    /* 4096 bytes with CRLF is the most a size line may take */
    memcpy(m, "1;", 2);
    memset(m + 2, 'e', 4092);
    memcpy(m + 4094, "\r\nx\r\n0\r\n\r\n", 10);
    n = 4104;
    ch_check(m, n, GW_CHUNKED_DONE, "x", n);
    memcpy(m, "1;", 2);
    memset(m + 2, 'e', 4093);
    memcpy(m + 4095, "\r\nx\r\n0\r\n\r\n", 10);
    ch_result r;
    ch_run(m, n + 1, n + 1, &r);
    assert_int_equal(r.verdict, GW_CHUNKED_ERROR);
}

static void test_chunked_trailer_limit(void **state)
{
    static char m[40000];
    size_t n = 3;
    memcpy(m, "0\r\n", 3);
    while (n < 32768 - 100)
        n += (size_t)sprintf(m + n, "X-Pad: %090d\r\n", 0);
    size_t fill = 32768 - 4 - n; /* the trailer: n - 3 bytes, "Y: ", the fill, CRLF, CRLF */
    memcpy(m + n, "Y: ", 3);
    memset(m + n + 3, 'p', fill);
    memcpy(m + n + 3 + fill, "\r\n\r\n", 4);
    size_t total = n + 3 + fill + 4;
    assert_int_equal(total - 3, 32768);
    ch_result r;
    ch_run(m, total, total, &r);
    assert_int_equal(r.verdict, GW_CHUNKED_DONE);
    assert_int_equal(r.end, total);
    memcpy(m + n + 3 + fill, "p\r\n\r\n", 5);
    ch_run(m, total + 1, total + 1, &r);
    assert_int_equal(r.verdict, GW_CHUNKED_ERROR);
}

static void test_chunked_total_counts_payload(void **state)
{
    static const char m[] = "4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
    ch_result r;
    ch_run(m, sizeof m - 1, sizeof m - 1, &r);
    assert_int_equal(r.verdict, GW_CHUNKED_DONE);
    assert_int_equal(r.total, 24);
    assert_int_equal(r.plen, 24);
    assert_memory_equal(r.payload, "Wikipedia in \r\n\r\nchunks.", 24);
    CH_DONE("4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n",
            "Wikipedia in \r\n\r\nchunks.", 44);
}

static void test_chunked_api_details(void **state)
{
    gw_chunked c;
    size_t used = 99;
    gw_chunked_init(&c);
    assert_false(gw_chunked_in_data(&c));
    assert_int_equal(gw_chunked_feed(&c, "3\r\nabc\r\n", 8, &used), GW_CHUNKED_DATA);
    assert_int_equal(used, 3); /* framing only: the payload is left for the caller */
    assert_true(gw_chunked_in_data(&c));
    assert_int_equal(c.remaining, 3);
    /* feeding in the data state consumes nothing */
    assert_int_equal(gw_chunked_feed(&c, "abc", 3, &used), GW_CHUNKED_DATA);
    assert_int_equal(used, 0);
    gw_chunked_consumed(&c, 2);
    assert_int_equal(c.remaining, 1);
    assert_int_equal(c.total, 2);
    gw_chunked_consumed(&c, 5); /* more than remaining: clamped */
    assert_int_equal(c.total, 3);
    assert_false(gw_chunked_in_data(&c));
    assert_int_equal(gw_chunked_feed(&c, "\r\n0\r\n\r\nrest", 11, &used), GW_CHUNKED_DONE);
    assert_int_equal(used, 7);
    /* DONE and ERROR are sticky and consume nothing */
    assert_int_equal(gw_chunked_feed(&c, "5\r\n", 3, &used), GW_CHUNKED_DONE);
    assert_int_equal(used, 0);
    gw_chunked_init(&c);
    assert_int_equal(gw_chunked_feed(&c, "x", 1, &used), GW_CHUNKED_ERROR);
    assert_int_equal(gw_chunked_feed(&c, "0\r\n\r\n", 5, &used), GW_CHUNKED_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(gw_chunked_feed(&c, "", 0, &used), GW_CHUNKED_ERROR);
}

static void test_chunked_empty_feed(void **state)
{
    gw_chunked c;
    size_t used = 5;
    gw_chunked_init(&c);
    assert_int_equal(gw_chunked_feed(&c, "", 0, &used), GW_CHUNKED_AGAIN);
    assert_int_equal(used, 0);
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static gw_str S(const char *s)
{
    return (gw_str){s, strlen(s)};
}

static void test_str_eq_ci(void **state)
{
    assert_true(gw_str_eq_ci(S("Content-Length"), "content-length"));
    assert_true(gw_str_eq_ci(S("HOST"), "Host"));
    assert_true(gw_str_eq_ci(S(""), ""));
    assert_false(gw_str_eq_ci(S("Host"), "Hos"));
    assert_false(gw_str_eq_ci(S("Hos"), "Host"));
    assert_false(gw_str_eq_ci(S("Hist"), "host"));
    assert_false(gw_str_eq_ci((gw_str){"Host", 3}, "host"));
}

static void test_find(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    const gw_http_field *f = gw_http_find(&H, "X-DUP");
    assert_non_null(f);
    assert_ptr_equal(f, &H.fields[1]);
    assert_str(f->value, "1");
    assert_null(gw_http_find(&H, "X-Du"));
    assert_null(gw_http_find(&H, "Missing"));
}

static void test_list_has(void **state)
{
    assert_true(gw_http_list_has(S("close"), "close"));
    assert_true(gw_http_list_has(S("keep-alive, Close"), "close"));
    assert_true(gw_http_list_has(S(" a ,\tb\t, c "), "b"));
    assert_true(gw_http_list_has(S(",,x,,"), "x"));
    assert_false(gw_http_list_has(S("closed"), "close"));
    assert_false(gw_http_list_has(S("clos"), "close"));
    assert_false(gw_http_list_has(S("a b"), "a"));
    assert_false(gw_http_list_has(S(""), "close"));
    assert_false(gw_http_list_has(S(", ,"), ""));
}

static void test_hop_by_hop(void **state)
{
    static const char *const hop[] = {"Connection",
                                      "Keep-Alive",
                                      "Proxy-Connection",
                                      "Proxy-Authenticate",
                                      "Proxy-Authorization",
                                      "TE",
                                      "Trailer",
                                      "Transfer-Encoding",
                                      "upgrade"};
    static const char *const e2e[] = {
        "Host",   "Content-Length",  "Trailers", "T", "Upgrade-Insecure-Requests",
        "Cookie", "X-Forwarded-For", ""};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        assert_true(gw_http_is_hop_by_hop(S(hop[i])));
    for (size_t i = 0; i < sizeof e2e / sizeof e2e[0]; i++)
        assert_false(gw_http_is_hop_by_hop(S(e2e[i])));
}

static void test_conn_lists(void **state)
{
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\n"
                            "X-Secret: 1\r\nCONNECTION: x-other\r\n\r\n";
    assert_int_equal(REQ(m), LEN(m));
    assert_true(gw_http_conn_lists(&H, S("x-secret")));
    assert_true(gw_http_conn_lists(&H, S("X-Other")));
    assert_true(gw_http_conn_lists(&H, S("Keep-Alive")));
    assert_false(gw_http_conn_lists(&H, S("Host")));
    assert_false(gw_http_conn_lists(&H, S("")));
}

static void test_reason(void **state)
{
    assert_string_equal(gw_http_reason(100), "Continue");
    assert_string_equal(gw_http_reason(200), "OK");
    assert_string_equal(gw_http_reason(204), "No Content");
    assert_string_equal(gw_http_reason(404), "Not Found");
    assert_string_equal(gw_http_reason(408), "Request Timeout");
    assert_string_equal(gw_http_reason(413), "Content Too Large");
    assert_string_equal(gw_http_reason(414), "URI Too Long");
    assert_string_equal(gw_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(gw_http_reason(502), "Bad Gateway");
    assert_string_equal(gw_http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(gw_http_reason(511), "Network Authentication Required");
    assert_string_equal(gw_http_reason(299), "Unknown");
    assert_string_equal(gw_http_reason(0), "Unknown");
    assert_string_equal(gw_http_reason(-1), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_minimal),
        cmocka_unit_test(test_fields_point_into_buffer),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_te_chunked_case_and_ows),
        cmocka_unit_test(test_content_length_zero_is_length),
        cmocka_unit_test(test_content_length_leading_zeros),
        cmocka_unit_test(test_content_length_ows_trimmed),
        cmocka_unit_test(test_content_length_max),
        cmocka_unit_test(test_content_length_duplicates_equal),
        cmocka_unit_test(test_get_with_body_is_reported),
        cmocka_unit_test(test_http10_without_host),
        cmocka_unit_test(test_http10_keep_alive),
        cmocka_unit_test(test_http10_ignores_upgrade_and_expect),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_connection_tokens_from_all_fields),
        cmocka_unit_test(test_upgrade_needs_both),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_absolute_form_target),
        cmocka_unit_test(test_connect_and_options_targets),
        cmocka_unit_test(test_unknown_and_lowercase_method),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_value_trimming_and_empty_value),
        cmocka_unit_test(test_obs_text_in_value),
        cmocka_unit_test(test_empty_host_accepted),
        cmocka_unit_test(test_pipelined_bytes_not_consumed),
        cmocka_unit_test(test_all_method_ids),
        cmocka_unit_test(test_cl_and_te_together),
        cmocka_unit_test(test_cl_different_values),
        cmocka_unit_test(test_cl_bad_syntax),
        cmocka_unit_test(test_te_lists_rejected),
        cmocka_unit_test(test_te_twice_as_fields),
        cmocka_unit_test(test_te_in_http10),
        cmocka_unit_test(test_space_before_colon),
        cmocka_unit_test(test_bad_field_names),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_nul_and_ctl),
        cmocka_unit_test(test_bare_cr),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_host_count),
        cmocka_unit_test(test_host_bad_chars),
        cmocka_unit_test(test_host_error_wins_over_501),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_request_line_syntax),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_request_line_limit_syntax_first),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_max_fields_clamped),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_no_limits_pointer),
        cmocka_unit_test(test_prefixes_of_valid_requests),
        cmocka_unit_test(test_prefixes_of_invalid_requests),
        cmocka_unit_test(test_prefix_reports_error_early),
        cmocka_unit_test(test_response_content_length),
        cmocka_unit_test(test_response_reason_forms),
        cmocka_unit_test(test_response_close_delimited),
        cmocka_unit_test(test_response_chunked),
        cmocka_unit_test(test_response_no_body_statuses),
        cmocka_unit_test(test_response_to_head),
        cmocka_unit_test(test_response_to_connect),
        cmocka_unit_test(test_response_101_upgrade),
        cmocka_unit_test(test_response_http10),
        cmocka_unit_test(test_response_status_range),
        cmocka_unit_test(test_response_rejects),
        cmocka_unit_test(test_response_line_limit),
        cmocka_unit_test(test_response_prefixes),
        cmocka_unit_test(test_chunked_simple),
        cmocka_unit_test(test_chunked_multi_and_hex),
        cmocka_unit_test(test_chunked_empty_body),
        cmocka_unit_test(test_chunked_stops_at_message_end),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_malformed_size),
        cmocka_unit_test(test_chunked_size_overflow),
        cmocka_unit_test(test_chunked_bad_data_end),
        cmocka_unit_test(test_chunked_bad_extensions),
        cmocka_unit_test(test_chunked_bad_trailers),
        cmocka_unit_test(test_chunked_size_line_limit),
        cmocka_unit_test(test_chunked_trailer_limit),
        cmocka_unit_test(test_chunked_total_counts_payload),
        cmocka_unit_test(test_chunked_api_details),
        cmocka_unit_test(test_chunked_empty_feed),
        cmocka_unit_test(test_str_eq_ci),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_conn_lists),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_group);
}
