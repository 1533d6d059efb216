/* router_test.c - request-target normalisation, longest-prefix matching at '/' boundaries, and the
 * upstream path with and without strip_prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "router.h"

/* ---- normalisation ---- */

typedef struct {
    const char *in;
    int status;      /* 0 or the expected HTTP status */
    const char *out; /* expected result when status is 0 */
    size_t path_len;
} norm_case;

static void run_norm(const norm_case *t, size_t cap)
{
    char out[256];
    size_t out_len = 12345, path_len = 12345;
    assert_true(cap <= sizeof out);
    int st = gw_path_normalize(t->in, strlen(t->in), out, cap, &out_len, &path_len);
    if (st != t->status) fail_msg("'%s': status %d, want %d (out '%s')", t->in, st, t->status, st ? "" : out);
    if (st) return;
    if (strcmp(out, t->out) != 0 || out_len != strlen(t->out) || path_len != t->path_len)
        fail_msg("'%s': got '%s' (len %zu, path %zu), want '%s' (path %zu)", t->in, out, out_len, path_len,
                 t->out, t->path_len);
}

static void test_normalize_ok(void **state)
{
    static const norm_case cases[] = {
        {"/", 0, "/", 1},
        {"/a", 0, "/a", 2},
        {"/a/", 0, "/a/", 3},
        {"/a/./b", 0, "/a/b", 4},
        {"/a/../b", 0, "/b", 2},
        {"/a//b", 0, "/a/b", 4},
        {"//a///b//", 0, "/a/b/", 5},
        {"/a/b/..", 0, "/a/", 3},
        {"/a/b/../", 0, "/a/", 3},
        {"/a/.", 0, "/a/", 3},
        {"/a/..", 0, "/", 1},
        {"/.", 0, "/", 1},
        {"/./././a", 0, "/a", 2},
        {"/a/b/c/../../d", 0, "/a/d", 4},
        {"/a/%2e%2e/b", 0, "/b", 2},
        {"/a/.%2E/b", 0, "/b", 2},
        {"/a/%2E/b", 0, "/a/b", 4},
        {"/%41%62c", 0, "/Abc", 4},
        {"/%7e%5F%2D%2e%30", 0, "/~_-.0", 6},
        {"/a%2Fb", 0, "/a%2Fb", 6},
        {"/a%2fb", 0, "/a%2Fb", 6},
        {"/a/%2e%2e%2fb", 0, "/a/..%2Fb", 9}, /* an encoded '/' does not end the segment */
        {"/%c3%a9", 0, "/%C3%A9", 7},
        {"/%0a", 0, "/%0A", 4},
        {"/%20x", 0, "/%20x", 5},
        {"/..a/b..", 0, "/..a/b..", 8},
        {"/a/.../b", 0, "/a/.../b", 8},
        {"/a/b?x=../y&z=%2e", 0, "/a/b?x=../y&z=%2e", 4},
        {"/a/./b?", 0, "/a/b?", 4},
        {"/a?b?c", 0, "/a?b?c", 2},
        {"/?q=%zz", 0, "/?q=%zz", 1}, /* the query is forwarded byte for byte, escapes unchecked */
        {"/a/..?x", 0, "/?x", 1},
        {"/~user/a-b_c.d", 0, "/~user/a-b_c.d", 14},
        {"/a;p=1/b,c", 0, "/a;p=1/b,c", 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_norm(&cases[i], 256);
}

static void test_normalize_rejects(void **state)
{
    static const norm_case cases[] = {
        {"", 400, NULL, 0},           {"a/b", 400, NULL, 0},      {"*", 400, NULL, 0},
        {"/..", 400, NULL, 0},        {"/../a", 400, NULL, 0},    {"/a/../..", 400, NULL, 0},
        {"/a/../../b", 400, NULL, 0}, {"/%2e%2e/", 400, NULL, 0}, {"/a%00", 400, NULL, 0},
        {"/a%zz", 400, NULL, 0},      {"/a%4", 400, NULL, 0},     {"/a%", 400, NULL, 0},
        {"/%G1", 400, NULL, 0},       {"/a#b", 400, NULL, 0},     {"/a#", 400, NULL, 0},
        {"/a?b#c", 400, NULL, 0},     {"/a b", 400, NULL, 0},     {"/a?b c", 400, NULL, 0},
        {"/a\tb", 400, NULL, 0},      {"/a\r\n", 400, NULL, 0},   {"/a\x7f", 400, NULL, 0},
        {"/\xc3\xa9", 400, NULL, 0},  {"/a?\x01", 400, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_norm(&cases[i], 256);
    /* an embedded NUL is a control byte, even though C strings would hide it */
    char out[16];
    size_t ol, pl;
    assert_int_equal(gw_path_normalize("/a\0b", 4, out, sizeof out, &ol, &pl), 400);
}

static void test_normalize_length(void **state)
{
    /* cap 16 leaves 15 bytes of result */
    const norm_case fits = {"/aaaaaaaaaaaaaa", 0, "/aaaaaaaaaaaaaa", 15};
    const norm_case too_long = {"/aaaaaaaaaaaaaaa", 414, NULL, 0};
    const norm_case decoded_fits = {"/%61%61%61aaaaaaaaaaa", 0, "/aaaaaaaaaaaaaa", 15};
    const norm_case escape_too_long = {"/aaaaaaaaaaaa%2F", 414, NULL, 0};
    const norm_case query_fits = {"/aaaaaaa?bbbbbbb", 0, "/aaaaaaa?bbbbbbb", 8};
    const norm_case query_too_long = {"/aaaaaaa?bbbbbbbb", 414, NULL, 0};
    const norm_case dots_fit = {"/a/./././b", 0, "/a/b", 4};
    const norm_case trailing_too_long = {"/aaaaaaaaaaaaaaa/..", 414, NULL, 0};
    run_norm(&fits, 16);
    run_norm(&too_long, 16);
    run_norm(&decoded_fits, 16);
    run_norm(&escape_too_long, 16);
    run_norm(&query_fits, 17);
    run_norm(&query_too_long, 17);
    run_norm(&dots_fit, 5);
    run_norm(&trailing_too_long, 16);
    const norm_case root = {"/", 0, "/", 1}, root_no_room = {"/", 414, NULL, 0};
    run_norm(&root, 2);
    run_norm(&root_no_room, 1);
    run_norm(&root_no_room, 0);
}

/* ---- routing ---- */

typedef struct {
    gw_config cfg;
    gw_route_conf routes[8];
    gw_router *r;
} table;

static void add_route(table *t, const char *prefix, bool strip)
{
    gw_route_conf *rt = &t->routes[t->cfg.nroutes++];
    rt->prefix = (char *)prefix;
    rt->prefix_len = strlen(prefix);
    rt->name = (char *)prefix;
    rt->strip_prefix = strip;
    t->cfg.routes = t->routes;
}

static const char *match(const table *t, const char *path)
{
    const gw_route_conf *rt = gw_router_match(t->r, path, strlen(path));
    return rt ? rt->prefix : NULL;
}

static void expect_match(const table *t, const char *path, const char *want)
{
    const char *got = match(t, path);
    if (!want && got) fail_msg("'%s' matched '%s', want no route", path, got);
    if (want && (!got || strcmp(got, want) != 0))
        fail_msg("'%s' matched '%s', want '%s'", path, got ? got : "(none)", want);
}

static void test_longest_prefix(void **state)
{
    table t = {0};
    add_route(&t, "/api", false);
    add_route(&t, "/api/auth/admin", false);
    add_route(&t, "/api/auth", false);
    add_route(&t, "/", false);
    t.r = gw_router_new(&t.cfg);
    assert_non_null(t.r);
    expect_match(&t, "/api/auth", "/api/auth");
    expect_match(&t, "/api/auth/", "/api/auth");
    expect_match(&t, "/api/auth/login", "/api/auth");
    expect_match(&t, "/api/auth/admin", "/api/auth/admin");
    expect_match(&t, "/api/auth/admin/x/y", "/api/auth/admin");
    expect_match(&t, "/api/auth/administrator", "/api/auth");
    expect_match(&t, "/api/authz", "/api");
    expect_match(&t, "/api/", "/api");
    expect_match(&t, "/api", "/api");
    expect_match(&t, "/apix", "/");
    expect_match(&t, "/ap", "/");
    expect_match(&t, "/", "/");
    expect_match(&t, "/other/api/auth", "/");
    /* the length is honoured: the path need not be NUL-terminated at path_len */
    const gw_route_conf *rt = gw_router_match(t.r, "/api/authXYZ", 9);
    assert_string_equal(rt->prefix, "/api/auth");
    gw_router_free(t.r);
}

static void test_no_catch_all(void **state)
{
    table t = {0};
    add_route(&t, "/api/users", false);
    t.r = gw_router_new(&t.cfg);
    expect_match(&t, "/api/users/7", "/api/users");
    expect_match(&t, "/api/user", NULL);
    expect_match(&t, "/api/usersx", NULL);
    expect_match(&t, "/", NULL);
    expect_match(&t, "/api", NULL);
    gw_router_free(t.r);

    table empty = {0};
    empty.r = gw_router_new(&empty.cfg);
    assert_non_null(empty.r);
    expect_match(&empty, "/", NULL);
    expect_match(&empty, "/x", NULL);
    gw_router_free(empty.r);
    assert_null(gw_router_match(NULL, "/", 1));
    gw_router_free(NULL);
}

static void test_many_routes(void **state)
{
    enum { N = 500 };
    gw_route_conf *routes = calloc(N, sizeof *routes);
    char(*names)[32] = calloc(N, sizeof *names);
    assert_non_null(routes);
    assert_non_null(names);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], i % 2 ? "/svc%d" : "/svc/%d/x", i);
        routes[i].prefix = names[i];
        routes[i].prefix_len = strlen(names[i]);
    }
    gw_config cfg = {.routes = routes, .nroutes = N};
    gw_router *r = gw_router_new(&cfg);
    assert_non_null(r);
    for (int i = 0; i < N; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/tail", names[i]);
        assert_ptr_equal(gw_router_match(r, path, strlen(path)), &routes[i]);
        assert_ptr_equal(gw_router_match(r, names[i], strlen(names[i])), &routes[i]);
    }
    assert_null(gw_router_match(r, "/svc/1/y", 8));
    gw_router_free(r);
    free(routes);
    free(names);
}

static void test_methods_bitmask(void **state)
{
    table t = {0};
    add_route(&t, "/ro", false);
    t.routes[0].methods = 1u << GW_METHOD_GET | 1u << GW_METHOD_HEAD;
    add_route(&t, "/any", false);
    t.r = gw_router_new(&t.cfg);
    const gw_route_conf *rt = gw_router_match(t.r, "/ro/x", 5);
    assert_true(rt->methods & (1u << GW_METHOD_GET));
    assert_true(rt->methods & (1u << GW_METHOD_HEAD));
    assert_false(rt->methods & (1u << GW_METHOD_POST));
    assert_int_equal(gw_router_match(t.r, "/any", 4)->methods, 0); /* any method */
    gw_router_free(t.r);
}

static void expect_upstream(const gw_route_conf *rt, const char *path, const char *query, const char *want)
{
    char out[64];
    long n = gw_route_upstream_path(rt, path, strlen(path), query, strlen(query), out, sizeof out);
    if (n < 0 || strcmp(out, want) != 0 || (size_t)n != strlen(want))
        fail_msg("%s + '%s' -> '%s' (%ld), want '%s'", path, query, n < 0 ? "" : out, n, want);
}

static void test_upstream_path(void **state)
{
    table t = {0};
    add_route(&t, "/api/users", true);
    add_route(&t, "/keep", false);
    add_route(&t, "/", true);
    expect_upstream(&t.routes[0], "/api/users/1", "", "/1");
    expect_upstream(&t.routes[0], "/api/users/1/posts", "?a=1&b=%zz", "/1/posts?a=1&b=%zz");
    expect_upstream(&t.routes[0], "/api/users", "", "/");
    expect_upstream(&t.routes[0], "/api/users/", "", "/");
    expect_upstream(&t.routes[0], "/api/users", "?q=x", "/?q=x");
    expect_upstream(&t.routes[0], "/api/users", "q=x", "/?q=x"); /* a query given without its '?' */
    expect_upstream(&t.routes[0], "/api/users/1", "?", "/1?");   /* an empty query is kept as sent */
    expect_upstream(&t.routes[1], "/keep/a", "?x", "/keep/a?x");
    expect_upstream(&t.routes[1], "/keep", "", "/keep");
    expect_upstream(&t.routes[2], "/a/b", "?x", "/a/b?x"); /* stripping "/" changes nothing */
    expect_upstream(&t.routes[2], "/", "", "/");

    char out[8];
    assert_int_equal(gw_route_upstream_path(&t.routes[1], "/keep/a", 7, "", 0, out, 8), 7);
    assert_string_equal(out, "/keep/a");
    assert_int_equal(gw_route_upstream_path(&t.routes[1], "/keep/ab", 8, "", 0, out, 8), -1);
    assert_int_equal(gw_route_upstream_path(&t.routes[1], "/keep", 5, "?ab", 3, out, 8), -1);
    assert_int_equal(gw_route_upstream_path(&t.routes[0], "/api/users", 10, "", 0, out, 2), 1);
    assert_string_equal(out, "/");
    assert_int_equal(gw_route_upstream_path(&t.routes[0], "/api/users", 10, "", 0, out, 1), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_ok),     cmocka_unit_test(test_normalize_rejects),
        cmocka_unit_test(test_normalize_length), cmocka_unit_test(test_longest_prefix),
        cmocka_unit_test(test_no_catch_all),     cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_methods_bitmask),  cmocka_unit_test(test_upstream_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
