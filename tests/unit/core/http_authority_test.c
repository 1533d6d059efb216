/* http_authority_test.c - the Host / absolute-form authority check and how the request parser uses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http.h"

static bool valid(const char *s)
{
    return gw_http_authority_valid((gw_str){s, strlen(s)});
}

static void test_valid(void **state)
{
    static const char *const ok[] = {"example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:1", "h:65535",
                                     "[::1]", "[::1]:8080", "[2001:db8::1]", "xn--bcher-kva.example", "a-b_c~d",
                                     "[::ffff:10.0.0.1]:443"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!valid(ok[i])) fail_msg("'%s' should be valid", ok[i]);
}

static void test_invalid(void **state)
{
    static const char *const bad[] = {"",           "[::1",       "::1",        "evil.com:99999", "evil.com:0",
                                      "evil.com:",  ":80",        "h:+80",      "h:8a",           "h:123456",
                                      "127.0.0.1%00.evil", "a%41b", "a b",     "a/b",            "a@b",
                                      "[fe80::1%25eth0]",  "[v1.x]", "[::1]x",   "[::1]:",         "[1.2.3.4]",
                                      "a\"b",       "a\\b",       "h:80:80",    "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (valid(bad[i])) fail_msg("'%s' should be invalid", bad[i]);
    /* RFC 3986 sub-delims are refused on purpose: "h,for=6.6.6.6" would read as a chain upstream */
    static const char *const subdelims[] = {"h,for=6.6.6.6", "h;a", "h=1", "h!", "h$", "h&", "h'", "h(",
                                            "h)", "h*", "h+", "a,b:80"};
    for (size_t i = 0; i < sizeof subdelims / sizeof subdelims[0]; i++)
        if (valid(subdelims[i])) fail_msg("'%s' should be invalid", subdelims[i]);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_false(valid(longname));
    longname[255] = '\0';
    assert_true(valid(longname));
}

static ssize_t parse_host(const char *host)
{
    static gw_http_head h;
    char req[512];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    return gw_http_parse_request(req, (size_t)n, NULL, &h);
}

static void test_parser_uses_it(void **state)
{
    assert_int_equal(parse_host("[::1"), -400);
    assert_int_equal(parse_host("evil.com:99999"), -400);
    assert_int_equal(parse_host("127.0.0.1%00.evil"), -400);
    assert_int_equal(parse_host("h,for=6.6.6.6"), -400);
    assert_true(parse_host("[::1]:8080") > 0);
    assert_true(parse_host("") > 0); /* RFC 9112 3.2: an empty Host is allowed */
}

static void test_absolute_form(void **state)
{
    gw_str a, p;
#define T(s) ((gw_str){s, sizeof(s) - 1})
    assert_int_equal(gw_http_absolute_form(T("http://abs.example:8080/x?q=1"), &a, &p), 0);
    assert_int_equal(a.n, 16);
    assert_memory_equal(a.p, "abs.example:8080", 16);
    assert_int_equal(p.n, 6);
    assert_memory_equal(p.p, "/x?q=1", 6);
    assert_int_equal(gw_http_absolute_form(T("HTTPS://[::1]"), &a, &p), 0);
    assert_int_equal(a.n, 5);
    assert_int_equal(p.n, 1);
    assert_memory_equal(p.p, "/", 1);
    assert_int_equal(gw_http_absolute_form(T("http:///x"), &a, &p), 400);
    assert_int_equal(gw_http_absolute_form(T("http://u@h/x"), &a, &p), 400);
    assert_int_equal(gw_http_absolute_form(T("http://h?q"), &a, &p), 400);
    assert_int_equal(gw_http_absolute_form(T("http://h#f"), &a, &p), 400);
    assert_int_equal(gw_http_absolute_form(T("http://h:99999/"), &a, &p), 400);
    assert_int_equal(gw_http_absolute_form(T("ftp://h/x"), &a, &p), 400);
    assert_int_equal(gw_http_absolute_form(T("http://h,for=1.2.3.4/x"), &a, &p), 400);
#undef T
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_parser_uses_it),
        cmocka_unit_test(test_absolute_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
