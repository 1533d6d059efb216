/* config_proxy_test.c - the proxy section (trusted_proxies, trust_request_id, underscores_in_headers), the
 * duplicate checks at scale, and the position named when a file is too large to read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char dir[256];
static char path[300];

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/gw-cfgproxy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/case.yaml", dir);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return rmdir(dir);
}

static gw_config *load(const char *yaml, char **err)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(yaml, f);
    fclose(f);
    return gw_config_load(path, err);
}

#define BASE "listeners: [{port: 8081}]\nservices: [{name: a, targets: ['http://h']}]\n"

static void expect_error(const char *yaml, const char *want)
{
    char *err = NULL;
    gw_config *cfg = load(yaml, &err);
    if (cfg) fail_msg("loaded, but expected %s", want);
    char full[1024];
    snprintf(full, sizeof full, "%s:%s", path, want);
    assert_string_equal(err, full);
    free(err);
}

static void test_defaults(void **state)
{
    char *err = NULL;
    gw_config *cfg = load(BASE, &err);
    assert_non_null(cfg);
    assert_int_equal(cfg->ntrusted_proxies, 0);
    assert_true(cfg->trust_request_id);
    assert_false(cfg->underscores_in_headers);
    gw_config_free(cfg);
}

static void test_values(void **state)
{
    char *err = NULL;
    gw_config *cfg = load(BASE "proxy:\n  trusted_proxies: [10.0.0.0/8, '2001:db8::/32', 192.0.2.7, '::1', "
                               "0.0.0.0/0]\n  trust_request_id: false\n  underscores_in_headers: true\n",
                          &err);
    if (!cfg) fail_msg("%s", err);
    assert_int_equal(cfg->ntrusted_proxies, 5);
    static const uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0};
    assert_memory_equal(cfg->trusted_proxies[0].addr, v4, 16);
    assert_int_equal(cfg->trusted_proxies[0].bits, 104);
    assert_int_equal(cfg->trusted_proxies[1].addr[0], 0x20);
    assert_int_equal(cfg->trusted_proxies[1].bits, 32);
    assert_int_equal(cfg->trusted_proxies[2].bits, 128);
    assert_int_equal(cfg->trusted_proxies[3].addr[15], 1);
    assert_int_equal(cfg->trusted_proxies[4].bits, 96);
    assert_false(cfg->trust_request_id);
    assert_true(cfg->underscores_in_headers);
    gw_config_free(cfg);
}

static void test_errors(void **state)
{
    expect_error(BASE "proxy:\n  trusted_proxies: 10.0.0.0/8\n",
                 "4:20: proxy.trusted_proxies: must be a sequence of CIDRs like 10.0.0.0/8");
    expect_error(BASE "proxy:\n  trusted_proxies: [10.0.0.0/8, 10.1.2.3/8]\n",
                 "4:33: proxy.trusted_proxies[1]: '10.1.2.3/8' is not an IPv4 or IPv6 CIDR (host bits zero)");
    expect_error(BASE "proxy:\n  trusted_proxies: [10.0.0.0/33]\n",
                 "4:21: proxy.trusted_proxies[0]: '10.0.0.0/33' is not an IPv4 or IPv6 CIDR (host bits zero)");
    expect_error(BASE "proxy:\n  trusted_proxies: [localhost]\n",
                 "4:21: proxy.trusted_proxies[0]: 'localhost' is not an IPv4 or IPv6 CIDR (host bits zero)");
    expect_error(BASE "proxy:\n  trusted_proxies: ['::1/129']\n",
                 "4:21: proxy.trusted_proxies[0]: '::1/129' is not an IPv4 or IPv6 CIDR (host bits zero)");
    expect_error(BASE "proxy:\n  trusted_proxies: [10.0.0.0/]\n",
                 "4:21: proxy.trusted_proxies[0]: '10.0.0.0/' is not an IPv4 or IPv6 CIDR (host bits zero)");
    expect_error(BASE "proxy:\n  trust_request_id: maybe\n",
                 "4:21: proxy.trust_request_id: invalid boolean 'maybe' (expected true or false)");
    expect_error(BASE "proxy:\n  underscore: true\n", "4:3: unknown key 'underscore' in proxy");
}

/* Many routes: the duplicate check used to compare each route with all before it. The last of 50,000
 * repeats the first; the message names both, as it did. */
static void test_many_routes_duplicate(void **state)
{
    size_t n = 50000, cap = n * 48 + 256, len = 0;
    char *y = malloc(cap);
    assert_non_null(y);
    len += (size_t)snprintf(y + len, cap - len, BASE "routes:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(y + len, cap - len, "  - {prefix: /r%zu, service: a}\n", i);
    len += (size_t)snprintf(y + len, cap - len, "  - {prefix: /r0/, service: a}\n");
    char want[128];
    snprintf(want, sizeof want, "%zu:14: routes[%zu].prefix: duplicate prefix '/r0' (also routes[0])", n + 4, n);
    expect_error(y, want);
    y[len - strlen("  - {prefix: /r0/, service: a}\n")] = '\0';
    char *err = NULL;
    gw_config *cfg = load(y, &err);
    if (!cfg) fail_msg("%s", err);
    assert_int_equal(cfg->nroutes, n);
    gw_config_free(cfg);
    free(y);
}

/* Past 16 MiB the loader stops reading and says where. */
static void test_too_large_names_position(void **state)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("listeners: [{port: 8081}]\n", f); /* 26 bytes */
    char line[101];
    memset(line, 'x', 99);
    line[0] = '#';
    line[99] = '\n';
    line[100] = '\0';
    for (int i = 0; i < 170000; i++)
        fputs(line, f);
    fclose(f);
    char *err = NULL;
    assert_null(gw_config_load(path, &err));
    /* (16 MiB - 26) / 100 = 167771 whole lines after the first, then 90 bytes of the next */
    char want[512];
    snprintf(want, sizeof want,
             "%s:167773:91: the file is larger than the limit of 16777216 bytes (16 MiB): reading stopped here",
             path);
    assert_string_equal(err, want);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_many_routes_duplicate),
        cmocka_unit_test(test_too_large_names_position),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
