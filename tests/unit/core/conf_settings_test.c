/* conf_settings_test.c - filter settings tables (core/config/conf_settings.c): every type with its defaults
 * and YAML values, ranges, enums, lists, CIDRs, path prefixes, required keys, unknown and non-route keys, the
 * per-route merge, the table's own checks, the typed readers naming the key, and freeing (run under
 * ASan/LSan: every struct filled here is freed, with all it allocated). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_api.h"
#include "conf_settings.h"
#include "yaml_tree.h"

typedef struct {
    int64_t count;
    double ratio;
    bool on;
    uint64_t timeout_ms, max_body;
    int mode;
    const char *label;
    gw_list tags, nets, paths;
    const gw_conf *extra;
    const char *token;
} conf_t;

static const char *const modes[] = {"fast", "safe", "off", NULL};

#define S(key, type, field, def, lo, hi, names, flags)                                                       \
    {                                                                                                        \
        key, type, offsetof(conf_t, field), def, lo, hi, names, flags, "help for " key                       \
    }
static const gw_setting table[] = {
    S("count", GW_SET_INT, count, "10", 1, 100, NULL, GW_SET_ROUTE),
    S("ratio", GW_SET_NUMBER, ratio, "0.5", 0, 1, NULL, 0),
    S("on", GW_SET_BOOL, on, "true", 0, 0, NULL, GW_SET_ROUTE),
    S("timeout", GW_SET_DURATION, timeout_ms, "2s", 1, 60000, NULL, 0),
    S("max_body", GW_SET_SIZE, max_body, "64k", 0, 0, NULL, 0),
    S("mode", GW_SET_ENUM, mode, "safe", 0, 0, modes, GW_SET_ROUTE),
    S("label", GW_SET_STRING, label, NULL, 0, 0, NULL, 0),
    S("tags", GW_SET_STRINGS, tags, "a, b", 0, 3, NULL, 0),
    S("nets", GW_SET_CIDRS, nets, NULL, 0, 0, NULL, 0),
    S("paths", GW_SET_PREFIXES, paths, "/health", 0, 0, NULL, GW_SET_ROUTE),
    S("extra", GW_SET_RAW, extra, NULL, 0, 0, NULL, 0),
    S("token", GW_SET_STRING, token, NULL, 0, 0, NULL, GW_SET_REQUIRED | GW_SET_SECRET),
    {.name = NULL},
};

static gw_yaml_doc *doc_of(const char *name, const char *text)
{
    char *err = NULL;
    gw_yaml_doc *d = gw_yaml_load_string(name, text, &err);
    if (!d) fail_msg("%s: %s", text, err);
    return d;
}

/* Checks and fills `text` (a pipeline entry); NULL + the message in err when refused. */
static conf_t *fill(const char *text, char *err, size_t errlen, gw_yaml_doc **keep)
{
    gw_yaml_doc *d = doc_of("p.yaml", text);
    conf_t *c = NULL;
    err[0] = '\0';
    if (gw_settings_check("f", table, d->root, false, err, errlen) == 0)
        c = gw_settings_new("f", table, sizeof(conf_t), d->root, NULL, err, errlen);
    if (keep && c)
        *keep = d;
    else
        gw_yaml_free(d);
    return c;
}

static void expect_refused(const char *text, const char *want)
{
    char err[1024];
    conf_t *c = fill(text, err, sizeof err, NULL);
    if (c) fail_msg("accepted: %s", text);
    if (strcmp(err, want) != 0) fail_msg("for %s\n  want: %s\n  got:  %s", text, want, err);
}

static void test_defaults(void **state)
{
    (void)state;
    char err[1024];
    conf_t *c = fill("name: f\ntoken: t\n", err, sizeof err, NULL);
    assert_non_null(c);
    assert_int_equal(c->count, 10);
    assert_true(c->ratio == 0.5);
    assert_true(c->on);
    assert_int_equal(c->timeout_ms, 2000);
    assert_int_equal(c->max_body, 65536);
    assert_int_equal(c->mode, 1);
    assert_null(c->label);
    assert_int_equal(c->tags.n, 2);
    assert_string_equal(((const char *const *)c->tags.v)[0], "a");
    assert_string_equal(((const char *const *)c->tags.v)[1], "b");
    assert_int_equal(c->nets.n, 0);
    assert_int_equal(c->paths.n, 1);
    assert_string_equal(((const char *const *)c->paths.v)[0], "/health");
    assert_null(c->extra);
    assert_string_equal(c->token, "t");
    gw_settings_free(c);
}

static void test_every_type(void **state)
{
    (void)state;
    char err[1024];
    gw_yaml_doc *d = NULL;
    conf_t *c =
        fill("name: f\nenabled: true\ncount: 100\nratio: 1\non: no\ntimeout: 250ms\nmax_body: 10m\n"
             "mode: off\nlabel: 'hi there'\ntags: []\nnets: [10.1.2.3/8, '::1', 192.168.1.7, 'fd00::1/8']\n"
             "paths: [/api/, /a/./b/../c]\nextra: {x: [1, 2]}\ntoken: t\n",
             err, sizeof err, &d);
    if (!c) fail_msg("%s", err);
    assert_int_equal(c->count, 100);
    assert_true(c->ratio == 1.0);
    assert_false(c->on);
    assert_int_equal(c->timeout_ms, 250);
    assert_int_equal(c->max_body, 10u << 20);
    assert_int_equal(c->mode, 2);
    assert_string_equal(c->label, "hi there");
    assert_int_equal(c->tags.n, 0);
    assert_int_equal(c->nets.n, 4);
    const gw_cidr *n = c->nets.v;
    assert_int_equal(n[0].family, 4);
    assert_int_equal(n[0].bits, 8);
    assert_memory_equal(n[0].addr, "\x0a\0\0\0", 4); /* host bits cleared */
    assert_int_equal(n[1].family, 6);
    assert_int_equal(n[1].bits, 128);
    assert_int_equal(n[1].addr[15], 1);
    assert_int_equal(n[2].bits, 32);
    assert_memory_equal(n[2].addr, "\xc0\xa8\x01\x07", 4);
    assert_int_equal(n[3].bits, 8);
    assert_int_equal(n[3].addr[0], 0xfd); /* the first 8 bits stay, the rest are cleared */
    assert_int_equal(n[3].addr[15], 0);
    assert_int_equal(c->paths.n, 2);
    assert_string_equal(((const char *const *)c->paths.v)[0], "/api");
    assert_string_equal(((const char *const *)c->paths.v)[1], "/a/c");
    assert_non_null(c->extra);
    gw_host h = {0};
    gw_conf_api_fill(&h);
    assert_int_equal(h.conf_kind(c->extra), GW_CONF_MAP);
    gw_settings_free(c);
    gw_yaml_free(d);
}

/* A scalar where a list is expected: items separated by ',' (what an environment variable can carry). */
static void test_scalar_lists(void **state)
{
    (void)state;
    char err[1024];
    conf_t *c = fill("name: f\ntoken: t\ntags: ' x ,y,, z'\nnets: 10.0.0.0/8\npaths: /api/, /b\n", err,
                     sizeof err, NULL);
    if (!c) fail_msg("%s", err);
    assert_int_equal(c->tags.n, 3);
    assert_string_equal(((const char *const *)c->tags.v)[0], "x");
    assert_string_equal(((const char *const *)c->tags.v)[1], "y");
    assert_string_equal(((const char *const *)c->tags.v)[2], "z");
    assert_int_equal(c->nets.n, 1);
    assert_int_equal(((const gw_cidr *)c->nets.v)[0].bits, 8);
    assert_int_equal(c->paths.n, 2);
    assert_string_equal(((const char *const *)c->paths.v)[0], "/api");
    assert_string_equal(((const char *const *)c->paths.v)[1], "/b");
    gw_settings_free(c);
}

static void test_bools_and_sizes(void **state)
{
    (void)state;
    static const char *const yes[] = {"true", "True", "yes", "on", "ON"}, *const no[] = {"false", "No",
                                                                                         "off"};
    char text[128], err[1024];
    for (size_t i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "token: t\non: %s\n", yes[i]);
        conf_t *c = fill(text, err, sizeof err, NULL);
        assert_non_null(c);
        assert_true(c->on);
        gw_settings_free(c);
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(text, sizeof text, "token: t\non: %s\n", no[i]);
        conf_t *c = fill(text, err, sizeof err, NULL);
        assert_non_null(c);
        assert_false(c->on);
        gw_settings_free(c);
    }
    static const struct {
        const char *v;
        uint64_t want;
    } sizes[] = {{"512", 512}, {"64k", 65536}, {"64KiB", 65536}, {"1g", 1ull << 30}, {"2M", 2u << 20}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(text, sizeof text, "token: t\nmax_body: %s\n", sizes[i].v);
        conf_t *c = fill(text, err, sizeof err, NULL);
        assert_non_null(c);
        assert_int_equal(c->max_body, sizes[i].want);
        gw_settings_free(c);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused(
        "name: f\ntoken: t\ncolour: red\n",
        "p.yaml:3:1: f.colour: unknown setting (allowed: count, ratio, on, timeout, max_body, mode, "
        "label, tags, nets, paths, extra, token)");
    expect_refused("token: t\ncount: lots\n",
                   "p.yaml:2:8: f.count: expected an integer (1..100), got 'lots'");
    expect_refused("token: t\ncount: 0\n", "p.yaml:2:8: f.count: 0 is out of range 1..100");
    expect_refused("token: t\ncount: 1.5\n", "p.yaml:2:8: f.count: expected an integer (1..100), got '1.5'");
    expect_refused("token: t\ncount: [1]\n", "p.yaml:2:8: f.count: expected a single value, not a list");
    expect_refused("token: t\nratio: 2\n", "p.yaml:2:8: f.ratio: 2 is out of range 0..1");
    expect_refused("token: t\nratio: half\n", "p.yaml:2:8: f.ratio: expected a number (0..1), got 'half'");
    expect_refused("token: t\non: maybe\n", "p.yaml:2:5: f.on: expected true or false, got 'maybe'");
    expect_refused("token: t\ntimeout: 2m\n", "p.yaml:2:10: f.timeout: 2m is out of range 1ms..1m");
    expect_refused(
        "token: t\ntimeout: soon\n",
        "p.yaml:2:10: f.timeout: expected a duration like 250ms, 10s, 2m, 1h (1ms..1m), got 'soon'");
    expect_refused("token: t\nmax_body: 1t\n",
                   "p.yaml:2:11: f.max_body: expected a size like 512, 64k, 10m, 1g, got '1t'");
    expect_refused("token: t\nmode: quick\n", "p.yaml:2:7: f.mode: 'quick' is not one of fast, safe, off");
    expect_refused("token: t\nlabel: {a: 1}\n", "p.yaml:2:8: f.label: expected a string, not a mapping");
    expect_refused("token: t\ntags: {a: 1}\n",
                   "p.yaml:2:7: f.tags: expected a list like [a, b] (or items separated by ',')");
    expect_refused("token: t\ntags: a, b, c, d\n", "p.yaml:2:7: f.tags: 4 items, expected 0..3 items");
    expect_refused(
        "token: t\nnets: '10.0.0.0/8, 10.0.0.0/99'\n",
        "p.yaml:2:7: f.nets: '10.0.0.0/99' is not an IPv4 or IPv6 address or CIDR (like 10.0.0.0/8 or ::1)");
    expect_refused("token: t\ntags: [a, b, c, d]\n", "p.yaml:2:7: f.tags: 4 items, expected 0..3 items");
    expect_refused("token: t\ntags: [a, [b]]\n", "p.yaml:2:11: f.tags: list items must be single values");
    expect_refused(
        "token: t\nnets: [10.0.0.0/33]\n",
        "p.yaml:2:8: f.nets: '10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR (like 10.0.0.0/8 or ::1)");
    expect_refused(
        "token: t\nnets: [300.1.1.1]\n",
        "p.yaml:2:8: f.nets: '300.1.1.1' is not an IPv4 or IPv6 address or CIDR (like 10.0.0.0/8 or ::1)");
    expect_refused(
        "token: t\nnets: ['::1/129']\n",
        "p.yaml:2:8: f.nets: '::1/129' is not an IPv4 or IPv6 address or CIDR (like 10.0.0.0/8 or ::1)");
    expect_refused("token: t\npaths: [health]\n",
                   "p.yaml:2:9: f.paths: 'health' is not a path prefix starting with '/'");
    expect_refused(
        "token: t\npaths: ['/a?b']\n",
        "p.yaml:2:9: f.paths: '/a?b' is not a valid path prefix (no query, no '..' above the root)");
    expect_refused(
        "token: t\npaths: [/../x]\n",
        "p.yaml:2:9: f.paths: '/../x' is not a valid path prefix (no query, no '..' above the root)");
    expect_refused("[1, 2]\n", "p.yaml:1:1: f: settings must be a mapping of keys to values");
}

static void test_required_and_null(void **state)
{
    (void)state;
    expect_refused("name: f\n", "p.yaml:1:1: f.token: required setting missing");
    expect_refused("name: f\ntoken:\n", "p.yaml:1:1: f.token: required setting missing"); /* null = absent */
    char err[1024];
    conf_t *c = fill("token: t\ncount:\nlabel: ~\n", err, sizeof err, NULL); /* null keeps the default */
    assert_non_null(c);
    assert_int_equal(c->count, 10);
    assert_null(c->label);
    gw_settings_free(c);
    assert_int_equal(gw_settings_check("f", table, NULL, false, err, sizeof err), -1);
    assert_string_equal(err, "f.token: required setting missing");
}

static void test_route_merge(void **state)
{
    (void)state;
    char err[1024];
    gw_yaml_doc *p = doc_of("p.yaml", "name: f\ntoken: t\ncount: 20\nlabel: base\npaths: [/x]\n");
    gw_yaml_doc *r = doc_of("r.yaml", "count: 30\nmode: fast\npaths: [/y, /z/]\n");
    assert_int_equal(gw_settings_check("f", table, r->root, true, err, sizeof err), 0);
    conf_t *base = gw_settings_new("f", table, sizeof(conf_t), p->root, NULL, err, sizeof err);
    conf_t *m = gw_settings_new("f", table, sizeof(conf_t), p->root, r->root, err, sizeof err);
    assert_non_null(base);
    assert_non_null(m);
    assert_int_equal(base->count, 20);
    assert_int_equal(m->count, 30); /* the route's */
    assert_int_equal(m->mode, 0);
    assert_string_equal(m->label, "base"); /* the pipeline's */
    assert_true(m->label != base->label);  /* a copy of its own: each struct frees its own */
    assert_int_equal(m->timeout_ms, 2000); /* the default */
    assert_int_equal(m->paths.n, 2);
    assert_string_equal(((const char *const *)m->paths.v)[1], "/z");
    gw_settings_free(base);
    assert_string_equal(m->label, "base");
    gw_settings_free(m);
    gw_yaml_free(r);

    r = doc_of("r.yaml", "label: mine\n");
    assert_int_equal(gw_settings_check("f", table, r->root, true, err, sizeof err), -1);
    assert_string_equal(
        err, "r.yaml:1:1: f.label: not a per-route setting (per-route settings: count, on, mode, paths)");
    gw_yaml_free(r);
    r = doc_of("r.yaml", "cuont: 1\n");
    assert_int_equal(gw_settings_check("f", table, r->root, true, err, sizeof err), -1);
    assert_string_equal(err,
                        "r.yaml:1:1: f.cuont: unknown setting (per-route settings: count, on, mode, paths)");
    gw_yaml_free(r);
    r = doc_of("r.yaml", "name: f\n"); /* the host's keys belong to pipeline entries only */
    assert_int_equal(gw_settings_check("f", table, r->root, true, err, sizeof err), -1);
    gw_yaml_free(r);
    r = doc_of("r.yaml", "count: 500\n");
    assert_int_equal(gw_settings_check("f", table, r->root, true, err, sizeof err), -1);
    assert_string_equal(err, "r.yaml:1:8: f.count: 500 is out of range 1..100");
    gw_yaml_free(r);
    assert_true(gw_settings_has_route(table));
    gw_yaml_free(p);
}

static void test_table_checks(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(gw_settings_table_check("f", table, sizeof(conf_t), err, sizeof err), 0);
    assert_int_equal(gw_settings_table_check("f", table, sizeof(conf_t) - 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "setting 'token': offset"));
    assert_int_equal(gw_settings_table_check("f", table, 0, err, sizeof err), -1);
    const gw_setting bad_default[] = {{"n", GW_SET_INT, 0, "ten", 0, 0, NULL, 0, NULL}, {.name = NULL}};
    assert_int_equal(gw_settings_table_check("f", bad_default, 8, err, sizeof err), -1);
    assert_string_equal(err, "filter 'f': setting 'n': default: expected an integer, got 'ten'");
    const gw_setting out_of_range[] = {{"n", GW_SET_INT, 0, "0", 1, 5, NULL, 0, NULL}, {.name = NULL}};
    assert_int_equal(gw_settings_table_check("f", out_of_range, 8, err, sizeof err), -1);
    assert_string_equal(err, "filter 'f': setting 'n': default: 0 is out of range 1..5");
    const gw_setting no_names[] = {{"e", GW_SET_ENUM, 0, NULL, 0, 0, NULL, 0, NULL}, {.name = NULL}};
    assert_int_equal(gw_settings_table_check("f", no_names, 8, err, sizeof err), -1);
    const gw_setting twice[] = {{"a", GW_SET_BOOL, 0, NULL, 0, 0, NULL, 0, NULL},
                                {"a", GW_SET_BOOL, 1, NULL, 0, 0, NULL, 0, NULL},
                                {.name = NULL}};
    assert_int_equal(gw_settings_table_check("f", twice, 8, err, sizeof err), -1);
    const gw_setting host_key[] = {{"enabled", GW_SET_BOOL, 0, NULL, 0, 0, NULL, 0, NULL}, {.name = NULL}};
    assert_int_equal(gw_settings_table_check("f", host_key, 8, err, sizeof err), -1);
    const gw_setting bad_type[] = {{"x", 99, 0, NULL, 0, 0, NULL, 0, NULL}, {.name = NULL}};
    assert_int_equal(gw_settings_table_check("f", bad_type, 8, err, sizeof err), -1);
    assert_int_equal(gw_settings_table_check("f", NULL, 0, err, sizeof err), 0); /* no table: 1.0 style */
}

static void test_describe_text(void **state)
{
    (void)state;
    char buf[256];
    gw_settings_allowed_text(&table[0], buf, sizeof buf);
    assert_string_equal(buf, "1..100");
    gw_settings_allowed_text(&table[3], buf, sizeof buf);
    assert_string_equal(buf, "1ms..1m");
    gw_settings_allowed_text(&table[5], buf, sizeof buf);
    assert_string_equal(buf, "fast, safe, off");
    gw_settings_allowed_text(&table[4], buf, sizeof buf);
    assert_string_equal(buf, "");
    assert_string_equal(gw_settings_type_name(GW_SET_CIDRS), "CIDR list");
}

/* The typed readers of the host table name the key (they did not: "p.yaml:2:8: must be 1..10"). */
static void test_readers_name_the_key(void **state)
{
    (void)state;
    gw_host h = {0};
    gw_conf_api_fill(&h);
    gw_yaml_doc *d = doc_of("p.yaml", "name: f\nsize: 11\nbody: 2x\nlist: [a]\n");
    char err[256];
    int64_t v;
    uint64_t u;
    assert_int_equal(h.conf_int(h.conf_get(gw_conf_of(d->root), "size"), 1, 10, &v, err, sizeof err), -1);
    assert_string_equal(err, "p.yaml:2:7: size: must be 1..10");
    assert_int_equal(h.conf_size(h.conf_get(gw_conf_of(d->root), "body"), &u, err, sizeof err), -1);
    assert_string_equal(err, "p.yaml:3:7: body: invalid size '2x' (bytes, or with k, m, g: 64k, 10m)");
    assert_int_equal(
        h.conf_int(h.conf_at(h.conf_get(gw_conf_of(d->root), "list"), 0), 1, 10, &v, err, sizeof err), -1);
    assert_string_equal(err, "p.yaml:4:8: list: invalid integer 'a'");
    gw_yaml_free(d);
    d = doc_of("p.yaml", "size: 64k\n");
    assert_int_equal(h.conf_size(h.conf_get(gw_conf_of(d->root), "size"), &u, err, sizeof err), 0);
    assert_int_equal(u, 65536);
    gw_yaml_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_scalar_lists),  cmocka_unit_test(test_bools_and_sizes),
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_required_and_null),
        cmocka_unit_test(test_route_merge),   cmocka_unit_test(test_table_checks),
        cmocka_unit_test(test_describe_text), cmocka_unit_test(test_readers_name_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
