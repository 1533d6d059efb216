/* config_test.c - the configuration loader: defaults, every key, interpolation, the shipped files, and
 * every error path with its exact "file:line:col: key: message". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"

static char dir[256];       /* per-run scratch directory */
static char yaml_path[300]; /* the file each case is written to */

/* Variables the shipped files read: cleared so that the runner's environment cannot change results. */
static const char *const shipped_vars[] = {"HOST",       "PORT",       "AUTH_SERVICE_URL", "USER_SERVICE_URL",
                                           "STORE_TYPE", "REDIS_HOST", "REDIS_PORT",       "REDIS_PASSWORD",
                                           "REDIS_DB"};

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/gw-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return -1;
    snprintf(yaml_path, sizeof yaml_path, "%s/case.yaml", dir);
    for (size_t i = 0; i < sizeof shipped_vars / sizeof shipped_vars[0]; i++)
        unsetenv(shipped_vars[i]);
    return 0;
}

static int teardown(void **state)
{
    unlink(yaml_path);
    return rmdir(dir);
}

/* A file in the scratch directory (removed by the test that made it); path has room for 300 bytes. */
static const char *scratch(char *path, const char *name, const char *content)
{
    char *p = path;
    snprintf(p, 300, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return p;
}

static gw_config *load(const char *yaml, char **err)
{
    FILE *f = fopen(yaml_path, "w");
    assert_non_null(f);
    fputs(yaml, f);
    fclose(f);
    return gw_config_load(yaml_path, err);
}

static gw_config *load_ok(const char *yaml)
{
    char *err = NULL;
    gw_config *cfg = load(yaml, &err);
    if (!cfg) fail_msg("unexpected error: %s\n--- for:\n%s", err, yaml);
    assert_null(err);
    return cfg;
}

/* `want` is "line:col: message"; the file name is prepended. */
static void expect_error(const char *yaml, const char *want)
{
    char *err = NULL;
    gw_config *cfg = load(yaml, &err);
    if (cfg) fail_msg("loaded, but expected %s\n--- for:\n%s", want, yaml);
    char full[1024];
    snprintf(full, sizeof full, "%s:%s", yaml_path, want);
    if (!err || strcmp(err, full) != 0)
        fail_msg("\n  want: %s\n  got:  %s\n--- for:\n%s", full, err ? err : "(null)", yaml);
    free(err);
}

typedef struct {
    const char *yaml;
    const char *want;
} err_case;

static void run_cases(const err_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_error(cases[i].yaml, cases[i].want);
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof cases[0])

#define L "listeners: [{port: 8081}]\n"
#define SVC "services:\n  - name: a\n    targets: [http://h]\n"

/* ---- values that load ---- */

static unsigned online_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

static void test_defaults(void **state)
{
    gw_config *cfg = load_ok("listeners:\n  - port: 8081\n");
    assert_string_equal(cfg->file, yaml_path);
    assert_non_null(cfg->doc);
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(cfg->listeners[0].address, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].port, 8081);
    assert_false(cfg->listeners[0].tls);
    assert_null(cfg->listeners[0].cert_file);
    assert_null(cfg->listeners[0].key_file);
    assert_int_equal(cfg->listeners[0].line, 2);
    assert_int_equal(cfg->workers, online_workers());
    assert_int_equal(cfg->max_connections, 10000);
    assert_int_equal(cfg->max_request_line, 8192);
    assert_int_equal(cfg->max_header_block, 32768);
    assert_int_equal(cfg->max_header_fields, 100);
    assert_int_equal(cfg->max_body, 1ull << 30);
    assert_int_equal(cfg->body_buffer, 65536);
    assert_int_equal(cfg->request_head_ms, 10000);
    assert_int_equal(cfg->body_idle_ms, 30000);
    assert_int_equal(cfg->request_body_ms, 30000);
    assert_int_equal(cfg->body_min_rate, 1024);
    assert_int_equal(cfg->body_rate_window_ms, 10000);
    assert_int_equal(cfg->send_idle_ms, 60000);
    assert_int_equal(cfg->keepalive_idle_ms, 60000);
    assert_int_equal(cfg->upstream_connect_ms, 5000);
    assert_int_equal(cfg->upstream_response_ms, 30000);
    assert_int_equal(cfg->upstream_idle_ms, 30000);
    assert_int_equal(cfg->shutdown_ms, 25000);
    assert_int_equal(cfg->upstream_keepalive, 64);
    assert_int_equal(cfg->upstream_keepalive_ms, 60000);
    assert_null(cfg->services);
    assert_int_equal(cfg->nservices, 0);
    assert_null(cfg->routes);
    assert_int_equal(cfg->nroutes, 0);
    assert_int_equal(cfg->store.type, GW_STORE_EMBEDDED);
    assert_string_equal(cfg->store.path, "data");
    assert_string_equal(cfg->store.host, "localhost");
    assert_int_equal(cfg->store.port, 6379);
    assert_null(cfg->store.password);
    assert_int_equal(cfg->store.db, 0);
    assert_int_equal(cfg->store.connect_timeout_ms, 1000);
    assert_int_equal(cfg->store.command_timeout_ms, 250);
    assert_null(cfg->plugin_dir);
    assert_null(cfg->pipeline);
    assert_int_equal(cfg->npipeline, 0);
    assert_string_equal(cfg->log_level, "info");
    gw_config_free(cfg);
    gw_config_free(NULL);
}

/* test_every_key, continued: the numbers of limits, timeouts and upstream. */
static void check_limits_and_timeouts(const gw_config *cfg)
{
    assert_int_equal(cfg->max_request_line, 1024);
    assert_int_equal(cfg->max_header_block, 1 << 20);
    assert_int_equal(cfg->max_header_fields, 256);
    assert_int_equal(cfg->max_body, 0);
    assert_int_equal(cfg->body_buffer, 512);
    assert_int_equal(cfg->request_head_ms, 250);
    assert_int_equal(cfg->body_idle_ms, 120000);
    assert_int_equal(cfg->request_body_ms, 5000);
    assert_int_equal(cfg->body_min_rate, 0);
    assert_int_equal(cfg->body_rate_window_ms, 500);
    assert_int_equal(cfg->send_idle_ms, 120000);
    assert_int_equal(cfg->keepalive_idle_ms, 3600000);
    assert_int_equal(cfg->upstream_connect_ms, 7000);
    assert_int_equal(cfg->upstream_response_ms, 86400000);
    assert_int_equal(cfg->upstream_idle_ms, 1);
    assert_int_equal(cfg->shutdown_ms, 0);
    assert_int_equal(cfg->upstream_keepalive, 0);
    assert_int_equal(cfg->upstream_keepalive_ms, 90000);
}

static void test_every_key(void **state)
{
    gw_config *cfg =
        load_ok("listeners:\n"
                "  - address: ::1\n"
                "    port: 80\n"
                "  - {address: gw.local, port: '81'}\n"
                "workers: 3\n"
                "max_connections: 0\n"
                "limits: {request_line: 1k, header_block: 1M, header_fields: 256, request_body: 0,\n"
                "         body_buffer: 512}\n"
                "timeouts: {request_head: 250ms, body_idle: 2m, keepalive_idle: 1h, upstream_connect: 7,\n"
                "           upstream_response: 24h, upstream_idle: 1ms, shutdown: 0, request_body: 5s,\n"
                "           body_min_rate: 0, body_rate_window: 500ms, send_idle: 2m}\n"
                "upstream: {keepalive: 0, keepalive_idle: 90s}\n"
                "services:\n"
                "  - name: svc.A_1\n"
                "    targets: [https://h]\n"
                "    tls_verify: False\n"
                "    health_check: {path: '/hc?x=1', interval: 3s, timeout: 3s, healthy_threshold: 1,\n"
                "                   unhealthy_threshold: 100}\n"
                "store: {type: redis, path: /var/gw, host: 10.0.0.1, port: 6380, password: 's3cr$$t',\n"
                "        db: 2147483647, connect_timeout: 2s, command_timeout: 1m}\n"
                "plugin_dir: /opt/filters\n"
                "log: {level: debug, format: json}\n");
    assert_int_equal(cfg->nlisteners, 2);
    assert_string_equal(cfg->listeners[0].address, "::1");
    assert_int_equal(cfg->listeners[1].port, 81);
    assert_string_equal(cfg->listeners[1].address, "gw.local");
    assert_int_equal(cfg->listeners[1].line, 4);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->max_connections, 0);
    check_limits_and_timeouts(cfg);
    const gw_service_conf *s = &cfg->services[0];
    assert_string_equal(s->name, "svc.A_1");
    assert_int_equal(s->line, 14);
    assert_false(s->tls_verify);
    assert_null(s->tls_ca_file);
    assert_string_equal(s->health.path, "/hc?x=1");
    assert_int_equal(s->health.interval_ms, 3000);
    assert_int_equal(s->health.timeout_ms, 3000);
    assert_int_equal(s->health.healthy, 1);
    assert_int_equal(s->health.unhealthy, 100);
    assert_int_equal(cfg->store.type, GW_STORE_REDIS);
    assert_string_equal(cfg->store.path, "/var/gw");
    assert_string_equal(cfg->store.host, "10.0.0.1");
    assert_int_equal(cfg->store.port, 6380);
    assert_string_equal(cfg->store.password, "s3cr$t");
    assert_int_equal(cfg->store.db, 2147483647);
    assert_int_equal(cfg->store.connect_timeout_ms, 2000);
    assert_int_equal(cfg->store.command_timeout_ms, 60000);
    assert_string_equal(cfg->plugin_dir, "/opt/filters");
    assert_string_equal(cfg->log_level, "debug");
    assert_int_equal(cfg->log_format, GW_LOG_JSON);
    gw_config_free(cfg);
}

static void test_null_means_default(void **state)
{
    gw_config *cfg = load_ok("listeners:\n  - port: 8081\n    tls: ~\n    address:\n"
                             "workers:\ntimeouts:\nlimits: {request_line: null}\n"
                             "store: {password: , host: Null}\npipeline: NULL\nlog:\n  level: ~\n");
    assert_false(cfg->listeners[0].tls);
    assert_string_equal(cfg->listeners[0].address, "0.0.0.0");
    assert_int_equal(cfg->workers, online_workers());
    assert_int_equal(cfg->request_head_ms, 10000);
    assert_int_equal(cfg->max_request_line, 8192);
    assert_null(cfg->store.password);
    assert_string_equal(cfg->store.host, "localhost");
    assert_int_equal(cfg->npipeline, 0);
    assert_string_equal(cfg->log_level, "info");
    assert_int_equal(cfg->log_format, GW_LOG_TEXT);
    gw_config_free(cfg);
}

static void test_booleans_and_quoting(void **state)
{
    const char *yes[] = {"true", "True", "TRUE", "'true'"};
    const char *no[] = {"false", "False", "FALSE", "\"false\""};
    for (size_t i = 0; i < 4; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml,
                 L SVC "routes:\n  - {prefix: /, service: a, strip_prefix: %s, preserve_host: %s}\n", yes[i],
                 no[i]);
        gw_config *cfg = load_ok(yaml);
        assert_true(cfg->routes[0].strip_prefix);
        assert_false(cfg->routes[0].preserve_host);
        gw_config_free(cfg);
    }
    gw_config *cfg = load_ok("listeners: [{port: \"8081\"}]\nworkers: '2'\nmax_connections: 007\n");
    assert_int_equal(cfg->listeners[0].port, 8081);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->max_connections, 7);
    gw_config_free(cfg);
}

static void test_interpolation(void **state)
{
    const char *yaml =
        "listeners:\n  - address: ${GW_T_ADDR:-127.0.0.1}\n    port: ${GW_T_PORT:-8081}\n"
        "services:\n  - name: a\n    targets:\n      - http://${GW_T_H:-localhost}:${GW_T_P:-80}\n";
    unsetenv("GW_T_ADDR");
    unsetenv("GW_T_PORT");
    unsetenv("GW_T_H");
    setenv("GW_T_P", "", 1); /* empty takes the default too */
    gw_config *cfg = load_ok(yaml);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 8081);
    assert_string_equal(cfg->services[0].targets[0].url, "http://localhost:80");
    assert_string_equal(cfg->services[0].targets[0].authority, "localhost");
    gw_config_free(cfg);

    setenv("GW_T_ADDR", "::", 1);
    setenv("GW_T_PORT", "9090", 1);
    setenv("GW_T_H", "api.internal", 1);
    setenv("GW_T_P", "8080", 1);
    cfg = load_ok(yaml);
    assert_string_equal(cfg->listeners[0].address, "::");
    assert_int_equal(cfg->listeners[0].port, 9090);
    assert_string_equal(cfg->services[0].targets[0].host, "api.internal");
    assert_int_equal(cfg->services[0].targets[0].port, 8080);
    assert_string_equal(cfg->services[0].targets[0].authority, "api.internal:8080");
    gw_config_free(cfg);

    setenv("GW_T_PORT", "http", 1); /* interpolation comes first, then the type check */
    expect_error(yaml, "3:11: listeners[0].port: invalid integer 'http'");
    unsetenv("GW_T_PORT");
    expect_error("listeners:\n  - port: ${GW_T_PORT}\n", "2:11: environment variable GW_T_PORT is not set");
    expect_error("listeners: [{port: '${GW_T_PORT'}]\n", "1:20: unterminated '${' in value");
    unsetenv("GW_T_ADDR");
    unsetenv("GW_T_H");
    unsetenv("GW_T_P");
}

static void test_routes(void **state)
{
    gw_config *cfg =
        load_ok(L "services:\n  - {name: a, targets: [http://h]}\n  - {name: b, targets: [http://h]}\n"
                  "routes:\n"
                  "  - {prefix: /api/, service: b}\n"
                  "  - {prefix: /, service: a, name: root}\n"
                  "  - {prefix: '//x/./y//', service: a, methods: [GET, HEAD, OPTIONS]}\n"
                  "  - {prefix: /%7Euser, service: a, filters: {auth: {required: true}}}\n"
                  "  - {prefix: /m, service: b, methods: [POST, PUT, DELETE, PATCH, TRACE], filters: {}}\n");
    assert_int_equal(cfg->nroutes, 5);
    const gw_route_conf *r = cfg->routes;
    assert_string_equal(r[0].prefix, "/api");
    assert_int_equal(r[0].prefix_len, 4);
    assert_int_equal(r[0].service, 1);
    assert_string_equal(r[0].name, "b"); /* default: the service name */
    assert_int_equal(r[0].methods, 0);
    assert_false(r[0].strip_prefix);
    assert_false(r[0].preserve_host);
    assert_null(r[0].filters);
    assert_int_equal(r[0].line, 6);
    assert_string_equal(r[1].prefix, "/");
    assert_int_equal(r[1].prefix_len, 1);
    assert_string_equal(r[1].name, "root");
    assert_string_equal(r[2].prefix, "/x/y");
    assert_int_equal(r[2].methods, 1u << GW_METHOD_GET | 1u << GW_METHOD_HEAD | 1u << GW_METHOD_OPTIONS);
    assert_string_equal(r[3].prefix, "/~user");
    assert_non_null(r[3].filters);
    assert_int_equal(r[3].filters->kind, GW_YAML_MAP);
    assert_string_equal(gw_yaml_get(gw_yaml_get(r[3].filters, "auth"), "required")->scalar, "true");
    assert_int_equal(r[4].methods, 1u << GW_METHOD_POST | 1u << GW_METHOD_PUT | 1u << GW_METHOD_DELETE |
                                       1u << GW_METHOD_PATCH | 1u << GW_METHOD_TRACE);
    assert_non_null(r[4].filters);
    assert_int_equal(r[4].filters->n, 0);
    gw_config_free(cfg);
}

static void test_targets(void **state)
{
    static const struct {
        const char *url, *host, *authority;
        unsigned port;
        bool https;
    } cases[] = {
        {"http://localhost", "localhost", "localhost", 80, false},
        {"http://localhost:80/", "localhost", "localhost", 80, false},
        {"http://h:8080", "h", "h:8080", 8080, false},
        {"https://h", "h", "h", 443, true},
        {"https://h:443", "h", "h", 443, true},
        {"https://h:8443/", "h", "h:8443", 8443, true},
        {"http://h:443", "h", "h:443", 443, false},
        {"HTTPS://Example.COM", "Example.COM", "Example.COM", 443, true},
        {"http://10.1.2.3:65535", "10.1.2.3", "10.1.2.3:65535", 65535, false},
        {"http://[::1]", "::1", "[::1]", 80, false},
        {"http://[2001:db8::7]:8080/", "2001:db8::7", "[2001:db8::7]:8080", 8080, false},
        {"http://my_svc.internal:1", "my_svc.internal", "my_svc.internal:1", 1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml,
                 L "services:\n  - name: a\n    targets:\n      - '%s'\n      - http://x\n", cases[i].url);
        gw_config *cfg = load_ok(yaml);
        const gw_target_conf *t = &cfg->services[0].targets[0];
        assert_int_equal(cfg->services[0].ntargets, 2);
        assert_string_equal(t->url, cases[i].url);
        assert_string_equal(t->host, cases[i].host);
        assert_string_equal(t->authority, cases[i].authority);
        assert_int_equal(t->port, cases[i].port);
        assert_int_equal(t->https, cases[i].https);
        assert_true(cfg->services[0].tls_verify);
        assert_null(cfg->services[0].health.path);
        gw_config_free(cfg);
    }
}

static void test_tls_files(void **state)
{
    char cert_buf[300], key_buf[300];
    const char *cert = scratch(cert_buf, "cert.pem", "-----BEGIN CERTIFICATE-----\n");
    const char *key = scratch(key_buf, "key.pem", "-----BEGIN PRIVATE KEY-----\n");
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "listeners:\n  - port: 8443\n    tls: {cert: %s, key: %s}\n"
             "services:\n  - {name: a, targets: [https://h], tls_ca: %s}\n",
             cert, key, cert);
    gw_config *cfg = load_ok(yaml);
    assert_true(cfg->listeners[0].tls);
    assert_string_equal(cfg->listeners[0].cert_file, cert);
    assert_string_equal(cfg->listeners[0].key_file, key);
    assert_string_equal(cfg->services[0].tls_ca_file, cert);
    gw_config_free(cfg);

    /* the key cannot be read: the column is right after the cert path */
    char want[1024];
    snprintf(yaml, sizeof yaml, "listeners:\n  - port: 8443\n    tls: {cert: %s, key: %s/none.pem}\n", cert,
             dir);
    snprintf(want, sizeof want,
             "3:%zu: listeners[0].tls.key: cannot read '%s/none.pem': No such file or directory",
             17 + strlen(cert) + 7, dir);
    expect_error(yaml, want);
    /* a directory opens, but it is not a certificate */
    snprintf(yaml, sizeof yaml, "listeners:\n  - port: 8443\n    tls: {cert: %s, key: %s}\n", dir, key);
    snprintf(want, sizeof want, "3:17: listeners[0].tls.cert: '%s' is not a regular file", dir);
    expect_error(yaml, want);
    snprintf(yaml, sizeof yaml, L "services:\n  - {name: a, targets: [https://h], tls_ca: %s}\n", dir);
    snprintf(want, sizeof want, "3:45: services[0].tls_ca: '%s' is not a regular file", dir);
    expect_error(yaml, want);
    unlink(cert);
    unlink(key);
}

static void test_pipeline(void **state)
{
    gw_config *cfg = load_ok(L "plugin_dir: ''\n"
                               "pipeline:\n"
                               "  - name: request-id\n"
                               "  - name: rate-limit\n"
                               "    enabled: false\n"
                               "    limit: 100\n"
                               "    per: [ip, route]\n");
    assert_null(cfg->plugin_dir);
    assert_int_equal(cfg->npipeline, 2);
    assert_string_equal(cfg->pipeline[0].name, "request-id");
    assert_true(cfg->pipeline[0].enabled);
    assert_int_equal(cfg->pipeline[0].line, 4);
    const gw_pipeline_entry *p = &cfg->pipeline[1];
    assert_string_equal(p->name, "rate-limit");
    assert_false(p->enabled);
    assert_int_equal(p->line, 5);
    assert_int_equal(p->settings->kind, GW_YAML_MAP);
    assert_string_equal(gw_yaml_get(p->settings, "limit")->scalar, "100");
    assert_int_equal(gw_yaml_get(p->settings, "per")->n, 2);
    gw_config_free(cfg);
}

/* Repository root: GW_SOURCE_DIR when the runner sets it, else derived from where this file was compiled. */
static const char *repo_file(const char *rel)
{
    static char buf[1024];
    const char *root = getenv("GW_SOURCE_DIR");
    if (root && *root) {
        snprintf(buf, sizeof buf, "%s/%s", root, rel);
    } else {
        const char *self = __FILE__, *tail = strstr(self, "tests/unit/core/");
        snprintf(buf, sizeof buf, "%.*s%s", tail ? (int)(tail - self) : 0, self, rel);
    }
    return buf;
}

static gw_config *load_repo(const char *rel)
{
    char *err = NULL;
    gw_config *cfg = gw_config_load(repo_file(rel), &err);
    if (!cfg) fail_msg("%s: %s", rel, err);
    return cfg;
}

static void test_shipped_gateway_yaml(void **state)
{
    gw_config *cfg = load_repo("conf/gateway.yaml");
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(cfg->listeners[0].address, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].port, 8081);
    assert_int_equal(cfg->workers, online_workers());
    assert_int_equal(cfg->nservices, 2);
    assert_string_equal(cfg->services[0].name, "auth-service");
    assert_string_equal(cfg->services[0].targets[0].authority, "localhost:8080");
    assert_string_equal(cfg->services[0].health.path, "/health");
    assert_string_equal(cfg->services[1].name, "user-service");
    assert_string_equal(cfg->services[1].targets[0].authority, "localhost:8082");
    assert_string_equal(cfg->services[1].health.path, "/health");
    assert_int_equal(cfg->nroutes, 2);
    assert_string_equal(cfg->routes[0].prefix, "/api/auth");
    assert_int_equal(cfg->routes[0].service, 0);
    assert_string_equal(cfg->routes[1].prefix, "/api/users");
    assert_int_equal(cfg->routes[1].service, 1);
    assert_int_equal(cfg->store.type, GW_STORE_EMBEDDED);
    assert_null(cfg->store.password);
    /* the shipped pipeline, in its documented order (docs/filters.md, "The default pipeline") */
    static const char *const order[] = {"logging", "cors",  "metrics", "adminauth", "apikey",
                                        "ratelimit", "retry", "breaker", "console"};
    assert_int_equal(cfg->npipeline, sizeof order / sizeof order[0]);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        assert_string_equal(cfg->pipeline[i].name, order[i]);
    gw_config_free(cfg);

    setenv("PORT", "9000", 1);
    setenv("HOST", "127.0.0.1", 1);
    setenv("AUTH_SERVICE_URL", "http://auth:80", 1);
    setenv("STORE_TYPE", "redis", 1);
    setenv("REDIS_PASSWORD", "pw", 1);
    setenv("REDIS_DB", "3", 1);
    cfg = load_repo("conf/gateway.yaml");
    assert_int_equal(cfg->listeners[0].port, 9000);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
    assert_string_equal(cfg->services[0].targets[0].authority, "auth");
    assert_int_equal(cfg->store.type, GW_STORE_REDIS);
    assert_string_equal(cfg->store.password, "pw");
    assert_int_equal(cfg->store.db, 3);
    gw_config_free(cfg);
    for (size_t i = 0; i < sizeof shipped_vars / sizeof shipped_vars[0]; i++)
        unsetenv(shipped_vars[i]);
}

static void test_shipped_examples(void **state)
{
    gw_config *cfg = load_repo("conf/examples/multi-target.yaml");
    assert_int_equal(cfg->services[0].ntargets, 3);
    assert_string_equal(cfg->services[0].targets[2].authority, "[::1]:8084");
    assert_true(cfg->routes[1].strip_prefix);
    assert_int_not_equal(cfg->routes[0].methods, 0);
    gw_config_free(cfg);
    cfg = load_repo("conf/examples/redis.yaml");
    assert_int_equal(cfg->store.type, GW_STORE_REDIS);
    gw_config_free(cfg);
}

static void test_durations(void **state)
{
    static const struct {
        const char *s;
        bool ok;
        uint64_t ms;
    } d[] = {
        {"250ms", true, 250},
        {"10s", true, 10000},
        {"2m", true, 120000},
        {"1h", true, 3600000},
        {"10", true, 10000},
        {"0", true, 0},
        {"0ms", true, 0},
        {"007s", true, 7000},
        {"18446744073709551615ms", true, UINT64_MAX},
        {"18446744073709551616ms", false, 0}, /* overflow while reading digits */
        {"18446744073709551s", true, 18446744073709551000ull},
        {"18446744073709552s", false, 0}, /* overflow once scaled */
        {"5124095576030432h", false, 0},
        {"", false, 0},
        {"s", false, 0},
        {"-1s", false, 0},
        {"+1s", false, 0},
        {"1.5s", false, 0},
        {"10 s", false, 0},
        {" 10s", false, 0},
        {"10S", false, 0},
        {"1d", false, 0},
        {"5sec", false, 0},
        {"five", false, 0},
        {"1h30m", false, 0},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        uint64_t v = 42;
        bool ok = gw_parse_duration_ms(d[i].s, &v);
        if (ok != d[i].ok || (ok && v != d[i].ms))
            fail_msg("duration '%s': ok=%d v=%llu", d[i].s, ok, (unsigned long long)v);
    }
}

static void test_sizes(void **state)
{
    static const struct {
        const char *s;
        bool ok;
        uint64_t b;
    } z[] = {
        {"512", true, 512},
        {"0", true, 0},
        {"64k", true, 65536},
        {"64K", true, 65536},
        {"64KiB", true, 65536},
        {"10m", true, 10485760},
        {"10M", true, 10485760},
        {"10MiB", true, 10485760},
        {"1g", true, 1073741824},
        {"1G", true, 1073741824},
        {"1GiB", true, 1073741824},
        {"17179869183g", true, 17179869183ull << 30},
        {"17179869184g", false, 0},
        {"", false, 0},
        {"k", false, 0},
        {"-1", false, 0},
        {"64kb", false, 0},
        {"64KB", false, 0},
        {"1.5m", false, 0},
        {"1t", false, 0},
        {"64 k", false, 0},
        {"0x10", false, 0},
        {"64kib", false, 0},
        {"1 ", false, 0},
    };
    for (size_t i = 0; i < sizeof z / sizeof z[0]; i++) {
        uint64_t v = 42;
        bool ok = gw_parse_size(z[i].s, &v);
        if (ok != z[i].ok || (ok && v != z[i].b))
            fail_msg("size '%s': ok=%d v=%llu", z[i].s, ok, (unsigned long long)v);
    }
    uint64_t v;
    assert_false(gw_parse_duration_ms(NULL, &v));
    assert_false(gw_parse_size(NULL, &v));
}

/* ---- errors ---- */

static void test_errors_structure(void **state)
{
    static const err_case cases[] = {
        {"listners: []\n", "1:1: unknown key 'listners' in top level"},
        {L "timeouts:\n  request_head: 5s\n  foo: 1s\n", "4:3: unknown key 'foo' in timeouts"},
        {"listeners:\n  - port: 8081\n    adress: x\n", "3:5: unknown key 'adress' in listeners[0]"},
        {"listeners:\n  - port: 8443\n    tls: {cert: a, key: b, ca: c}\n",
         "3:28: unknown key 'ca' in listeners[0].tls"},
        {"", "1:1: listeners: at least one listener is required"},
        {"# nothing but a comment\n", "1:1: listeners: at least one listener is required"},
        {"workers: 2\n", "1:1: listeners: at least one listener is required"},
        {"# hi\nlisteners: []\n", "2:12: listeners: at least one listener is required"},
        {"- a\n", "1:1: the top level must be a mapping"},
        {"just text\n", "1:1: the top level must be a mapping"},
        {"listeners: {port: 1}\n", "1:12: listeners: must be a sequence"},
        {"listeners: [8081]\n", "1:13: listeners[0]: must be a mapping"},
        {"listeners: [~]\n", "1:13: listeners[0]: must be a mapping"},
        {"listeners:\n  - address: 127.0.0.1\n", "2:5: listeners[0].port: required"},
        {"listeners:\n  - port:\n", "2:5: listeners[0].port: required"},
        {L "timeouts: 5\n", "2:11: timeouts: must be a mapping"},
        {L "limits: [1]\n", "2:9: limits: must be a mapping"},
        {L "log: verbose\n", "2:6: log: must be a mapping"},
        {L "plugin_dir: {a: 1}\n", "2:13: plugin_dir: must be a string, not a mapping"},
        {L "plugin_dir: [a]\n", "2:13: plugin_dir: must be a string, not a sequence"},
    };
    RUN(cases);
}

static void test_errors_numbers(void **state)
{
    static const err_case cases[] = {
        {"listeners: [{port: abc}]\n", "1:20: listeners[0].port: invalid integer 'abc'"},
        {"listeners: [{port: 0x50}]\n", "1:20: listeners[0].port: invalid integer '0x50'"},
        {"listeners: [{port: 1.5}]\n", "1:20: listeners[0].port: invalid integer '1.5'"},
        {"listeners: [{port: +80}]\n", "1:20: listeners[0].port: invalid integer '+80'"},
        {"listeners: [{port: ''}]\n", "1:20: listeners[0].port: invalid integer ''"},
        {"listeners: [{port: 70000}]\n", "1:20: listeners[0].port: must be 1..65535"},
        {"listeners: [{port: 0}]\n", "1:20: listeners[0].port: must be 1..65535"},
        {"listeners: [{port: -1}]\n", "1:20: listeners[0].port: must be 1..65535"},
        {"listeners: [{port: 99999999999999999999999}]\n", "1:20: listeners[0].port: must be 1..65535"},
        {"listeners: [{port: {a: 1}}]\n", "1:20: listeners[0].port: must be an integer, not a mapping"},
        {L "workers: 0\n", "2:10: workers: must be 'auto' or 1..256"},
        {L "workers: 257\n", "2:10: workers: must be 'auto' or 1..256"},
        {L "workers: many\n", "2:10: workers: must be 'auto' or 1..256"},
        {L "workers: -1\n", "2:10: workers: must be 'auto' or 1..256"},
        {L "workers: AUTO\n", "2:10: workers: must be 'auto' or 1..256"},
        {L "workers: {a: 1}\n", "2:10: workers: must be 'auto' or 1..256, not a mapping"},
        {L "max_connections: -1\n", "2:18: max_connections: must be 0..2147483647"},
        {L "max_connections: 1e6\n", "2:18: max_connections: invalid integer '1e6'"},
        {L "upstream:\n  keepalive: 70000\n", "3:14: upstream.keepalive: must be 0..65535"},
        {L "limits:\n  header_fields: 257\n", "3:18: limits.header_fields: must be 1..256"},
        {L "limits:\n  header_fields: 0\n", "3:18: limits.header_fields: must be 1..256"},
    };
    RUN(cases);
}

static void test_errors_durations_sizes(void **state)
{
    static const err_case cases[] = {
        {L "timeouts:\n  upstream_connect: five\n",
         "3:21: timeouts.upstream_connect: invalid duration 'five'"},
        {L "timeouts:\n  request_head: 0\n", "3:17: timeouts.request_head: must be 1ms..24h"},
        {L "timeouts:\n  body_idle: 25h\n", "3:14: timeouts.body_idle: must be 1ms..24h"},
        {L "timeouts:\n  keepalive_idle: -5s\n", "3:19: timeouts.keepalive_idle: invalid duration '-5s'"},
        {L "timeouts:\n  upstream_response: 1.5s\n",
         "3:22: timeouts.upstream_response: invalid duration '1.5s'"},
        {L "timeouts:\n  upstream_idle: 99999999999999999999h\n",
         "3:18: timeouts.upstream_idle: invalid duration '99999999999999999999h'"},
        {L "timeouts:\n  shutdown: 2d\n", "3:13: timeouts.shutdown: invalid duration '2d'"},
        {L "timeouts:\n  request_body: 0\n", "3:17: timeouts.request_body: must be 1ms..24h"},
        {L "timeouts:\n  body_min_rate: fast\n", "3:18: timeouts.body_min_rate: invalid size 'fast'"},
        {L "timeouts:\n  body_min_rate: 2GiB\n", "3:18: timeouts.body_min_rate: must be 0..1GiB"},
        {L "timeouts:\n  body_rate_window: 0\n", "3:21: timeouts.body_rate_window: must be 1ms..24h"},
        {L "timeouts:\n  send_idle: 1.5s\n", "3:14: timeouts.send_idle: invalid duration '1.5s'"},
        {L "timeouts:\n  shutdown: 86400001ms\n", "3:13: timeouts.shutdown: must be 0ms..24h"},
        {L "timeouts:\n  shutdown: [1s]\n", "3:13: timeouts.shutdown: must be a duration, not a sequence"},
        {L "upstream:\n  keepalive_idle: 0\n", "3:19: upstream.keepalive_idle: must be 1ms..24h"},
        {L "limits:\n  request_line: 8KB\n", "3:17: limits.request_line: invalid size '8KB'"},
        {L "limits:\n  request_line: 2MiB\n", "3:17: limits.request_line: must be 1..1MiB"},
        {L "limits:\n  request_line: 0\n", "3:17: limits.request_line: must be 1..1MiB"},
        {L "limits:\n  header_block: 17m\n", "3:17: limits.header_block: must be 1..16MiB"},
        {L "limits:\n  body_buffer: 2g\n", "3:16: limits.body_buffer: must be 0..1GiB"},
        {L "limits:\n  request_body: 1e9\n", "3:17: limits.request_body: invalid size '1e9'"},
        {L "limits:\n  request_body: 20000000000g\n",
         "3:17: limits.request_body: invalid size '20000000000g'"},
        {L "limits:\n  request_body: {}\n", "3:17: limits.request_body: must be a size, not a mapping"},
        {L "limits:\n  header_block: 4k\n",
         "3:17: limits.header_block: must not be smaller than limits.request_line"},
        {L "limits:\n  request_line: 64k\n",
         "3:3: limits.header_block: must not be smaller than limits.request_line"},
    };
    RUN(cases);
}

static void test_errors_listeners(void **state)
{
    static const err_case cases[] = {
        {"listeners:\n  - port: 8081\n    address: 'bad host'\n",
         "3:14: listeners[0].address: invalid host or address 'bad host'"},
        {"listeners:\n  - port: 8081\n    address: 999.1.1.1\n",
         "3:14: listeners[0].address: invalid host or address '999.1.1.1'"},
        {"listeners:\n  - port: 8081\n    address: '[::1]'\n",
         "3:14: listeners[0].address: invalid host or address '[::1]'"},
        {"listeners:\n  - port: 8081\n    address: ''\n", "3:14: listeners[0].address: must not be empty"},
        {"listeners:\n  - port: 8081\n    tls: true\n", "3:10: listeners[0].tls: must be a mapping"},
        {"listeners:\n  - port: 8081\n    tls: {key: /k}\n", "3:10: listeners[0].tls.cert: required"},
        {"listeners:\n  - port: 8081\n    tls: {cert: '', key: /k}\n",
         "3:17: listeners[0].tls.cert: must not be empty"},
        {"listeners:\n  - port: 8081\n    tls: {cert: /nonexistent/c.pem, key: /k}\n",
         "3:17: listeners[0].tls.cert: cannot read '/nonexistent/c.pem': No such file or directory"},
        {"listeners:\n  - port: 8081\n  - port: 8081\n",
         "3:11: listeners[1]: address 0.0.0.0 port 8081 is already used by listeners[0]"},
        {"listeners:\n  - {address: '::1', port: 80}\n  - {address: 127.0.0.1, port: 80}\n"
         "  - {address: '::1', port: 80}\n",
         "4:28: listeners[2]: address ::1 port 80 is already used by listeners[0]"},
    };
    RUN(cases);
}

static void test_errors_services(void **state)
{
    static const err_case cases[] = {
        {L "services: [x]\n", "2:12: services[0]: must be a mapping"},
        {L "services:\n  - targets: [http://h]\n", "3:5: services[0].name: required"},
        {L "services:\n  - name: 'a b'\n    targets: [http://h]\n",
         "3:11: services[0].name: invalid name 'a b' (letters, digits, '.', '_' and '-' only)"},
        {L "services:\n  - name: ''\n    targets: [http://h]\n", "3:11: services[0].name: must not be empty"},
        {L "services:\n  - {name: a, targets: [http://h]}\n  - {name: a, targets: [http://h]}\n",
         "4:12: services[1].name: duplicate service name 'a' (also services[0])"},
        {L "services:\n  - name: a\n", "3:5: services[0].targets: at least one target is required"},
        {L "services:\n  - name: a\n    targets: []\n",
         "4:14: services[0].targets: at least one target is required"},
        {L "services:\n  - name: a\n    targets: http://h\n",
         "4:14: services[0].targets: must be a sequence of URLs"},
        {L "services:\n  - name: a\n    targets: [{url: x}]\n",
         "4:15: services[0].targets[0]: must be a URL, not a mapping"},
        {L "services:\n  - name: a\n    targets: [http://h, ftp://x]\n",
         "4:25: services[0].targets[1]: invalid target URL 'ftp://x': the scheme must be http:// or "
         "https://"},
        {L SVC "    tls_verify: yes\n",
         "5:17: services[0].tls_verify: invalid boolean 'yes' (expected true or false)"},
        {L SVC "    tls_verify: [true]\n",
         "5:17: services[0].tls_verify: must be true or false, not a sequence"},
        {L SVC "    tls_ca: /nonexistent/ca.pem\n",
         "5:13: services[0].tls_ca: cannot read '/nonexistent/ca.pem': No such file or directory"},
        {L SVC "    health_check: []\n", "5:19: services[0].health_check: must be a mapping"},
        {L SVC "    health_check: {}\n", "5:19: services[0].health_check.path: required"},
        {L SVC "    health_check: {interval: 5s}\n", "5:19: services[0].health_check.path: required"},
        {L SVC "    health_check: {path: health}\n",
         "5:26: services[0].health_check.path: must be an absolute path such as /health, not 'health'"},
        {L SVC "    health_check: {path: '/a b'}\n",
         "5:26: services[0].health_check.path: must be an absolute path such as /health, not '/a b'"},
        {L SVC "    health_check: {path: '/a#b'}\n",
         "5:26: services[0].health_check.path: must be an absolute path such as /health, not '/a#b'"},
        {L SVC "    health_check: {path: ''}\n", "5:26: services[0].health_check.path: must not be empty"},
        {L SVC "    health_check: {path: /h, interval: 1s, timeout: 2s}\n",
         "5:53: services[0].health_check.timeout: must not exceed the interval"},
        {L SVC "    health_check: {path: /h, healthy_threshold: 0}\n",
         "5:49: services[0].health_check.healthy_threshold: must be 1..100"},
        {L SVC "    health_check: {path: /h, unhealthy_threshold: 101}\n",
         "5:51: services[0].health_check.unhealthy_threshold: must be 1..100"},
        {L SVC "    health_check: {path: /h, interval: 0}\n",
         "5:40: services[0].health_check.interval: must be 1ms..24h"},
        {L SVC "    health_check: {path: /h, every: 1s}\n",
         "5:30: unknown key 'every' in services[0].health_check"},
    };
    RUN(cases);
}

static void test_errors_target_urls(void **state)
{
    static const struct {
        const char *url, *why;
    } cases[] = {
        {"ftp://h", "the scheme must be http:// or https://"},
        {"localhost:8080", "the scheme must be http:// or https://"},
        {"http:/h", "the scheme must be http:// or https://"},
        {"http://user:pw@h", "user information is not allowed"},
        {"http://@h", "user information is not allowed"},
        {"http://[::1", "invalid IPv6 address"},
        {"http://[zz]", "invalid IPv6 address"},
        {"http://[1.2.3.4]", "invalid IPv6 address"},
        {"http://[]", "invalid IPv6 address"},
        {"http://[::1]x", "junk after the IPv6 address"},
        {"http://::1:80", "an IPv6 address must be written in brackets"},
        {"http://:80", "the host is missing"},
        {"http://", "the host is missing"},
        {"http:///x", "the host is missing"},
        {"http://a b", "invalid host name"},
        {"http://a%20b", "invalid host name"},
        {"http://999.1.1.1", "invalid host name"},
        {"http://h:", "the port must be 1..65535"},
        {"http://h:0", "the port must be 1..65535"},
        {"http://h:65536", "the port must be 1..65535"},
        {"http://h:8o", "the port must be 1..65535"},
        {"http://h:-1", "the port must be 1..65535"},
        {"http://h:123456789", "the port must be 1..65535"},
        {"http://[::1]:", "the port must be 1..65535"},
        {"http://h?x", "a query is not allowed"},
        {"http://h/?x", "a query is not allowed"},
        {"http://h#f", "a fragment is not allowed"},
        {"http://h/api", "a path is not allowed (only an empty one or '/')"},
        {"http://h//", "a path is not allowed (only an empty one or '/')"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256], want[512];
        snprintf(yaml, sizeof yaml, L "services:\n  - name: a\n    targets:\n      - '%s'\n", cases[i].url);
        snprintf(want, sizeof want, "5:9: services[0].targets[0]: invalid target URL '%s': %s", cases[i].url,
                 cases[i].why);
        expect_error(yaml, want);
    }
}

static void test_errors_routes(void **state)
{
    static const err_case cases[] = {
        {L SVC "routes: {}\n", "5:9: routes: must be a sequence"},
        {L SVC "routes:\n  - service: a\n", "6:5: routes[0].prefix: required"},
        {L SVC "routes:\n  - prefix: api\n    service: a\n", "6:13: routes[0].prefix: must start with '/'"},
        {L SVC "routes:\n  - prefix: /a/../..\n    service: a\n",
         "6:13: routes[0].prefix: invalid path '/a/../..'"},
        {L SVC "routes:\n  - prefix: '/a b'\n    service: a\n",
         "6:13: routes[0].prefix: invalid path '/a b'"},
        {L SVC "routes:\n  - prefix: '/a%zz'\n    service: a\n",
         "6:13: routes[0].prefix: invalid path '/a%zz'"},
        {L SVC "routes:\n  - prefix: '/a?x'\n    service: a\n",
         "6:13: routes[0].prefix: must not contain a query: '/a?x'"},
        {L SVC "routes:\n  - prefix: {a: 1}\n", "6:13: routes[0].prefix: must be a string, not a mapping"},
        {L SVC "routes:\n  - {prefix: /api, service: a}\n  - {prefix: /api/, service: a}\n",
         "7:14: routes[1].prefix: duplicate prefix '/api' (also routes[0])"},
        {L SVC "routes:\n  - {prefix: /, service: a}\n  - {prefix: /./, service: a}\n",
         "7:14: routes[1].prefix: duplicate prefix '/' (also routes[0])"},
        {L SVC "routes:\n  - prefix: /x\n", "6:5: routes[0].service: required"},
        {L SVC "routes:\n  - prefix: /x\n    service: foo\n",
         "7:14: routes[0].service: no service named 'foo'"},
        {L "routes:\n  - prefix: /x\n    service: a\n", "4:14: routes[0].service: no service named 'a'"},
        {L SVC "routes:\n  - prefix: /x\n    service: [a]\n",
         "7:14: routes[0].service: must be a service name, not a sequence"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    name: x y\n",
         "8:11: routes[0].name: invalid name 'x y' (letters, digits, '.', '_' and '-' only)"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    methods: GET\n",
         "8:14: routes[0].methods: must be a sequence of method names"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    methods: []\n",
         "8:14: routes[0].methods: must not be empty (leave it out to allow any method)"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    methods: [get]\n",
         "8:15: routes[0].methods[0]: unknown method 'get'"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    methods: [GET, CONNECT]\n",
         "8:20: routes[0].methods[1]: unknown method 'CONNECT'"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    methods: [GET, GET]\n",
         "8:20: routes[0].methods[1]: duplicate method 'GET'"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    methods: [[GET]]\n",
         "8:15: routes[0].methods[0]: must be a method name, not a sequence"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    filters: []\n",
         "8:14: routes[0].filters: must be a mapping"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    filters: on\n",
         "8:14: routes[0].filters: must be a mapping"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    strip_prefix: 1\n",
         "8:19: routes[0].strip_prefix: invalid boolean '1' (expected true or false)"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    preserve_host: yes\n",
         "8:20: routes[0].preserve_host: invalid boolean 'yes' (expected true or false)"},
        {L SVC "routes:\n  - prefix: /x\n    service: a\n    strip: true\n",
         "8:5: unknown key 'strip' in routes[0]"},
    };
    RUN(cases);
}

static void test_errors_store_log_pipeline(void **state)
{
    static const err_case cases[] = {
        {L "store:\n  type: mysql\n", "3:9: store.type: must be 'embedded' or 'redis', not 'mysql'"},
        {L "store:\n  type: [redis]\n", "3:9: store.type: must be a string, not a sequence"},
        {L "store:\n  port: 0\n", "3:9: store.port: must be 1..65535"},
        {L "store:\n  db: -1\n", "3:7: store.db: must be 0..2147483647"},
        {L "store:\n  host: 'a b'\n", "3:9: store.host: invalid host or address 'a b'"},
        {L "store:\n  path: ''\n", "3:9: store.path: must not be empty"},
        {L "store:\n  password: [x]\n", "3:13: store.password: must be a string, not a sequence"},
        {L "store:\n  connect_timeout: 0\n", "3:20: store.connect_timeout: must be 1ms..24h"},
        {L "store:\n  command_timeout: soon\n", "3:20: store.command_timeout: invalid duration 'soon'"},
        {L "store:\n  redis: {}\n", "3:3: unknown key 'redis' in store"},
        {L "log:\n  level: verbose\n",
         "3:10: log.level: must be 'debug', 'info', 'warn' or 'error', not 'verbose'"},
        {L "log:\n  level: INFO\n",
         "3:10: log.level: must be 'debug', 'info', 'warn' or 'error', not 'INFO'"},
        {L "log:\n  file: x\n", "3:3: unknown key 'file' in log"},
        {L "log:\n  format: xml\n", "3:11: log.format: must be 'text' or 'json', not 'xml'"},
        {L "pipeline: {}\n", "2:11: pipeline: must be a sequence"},
        {L "pipeline: [x]\n", "2:12: pipeline[0]: must be a mapping"},
        {L "pipeline: [{enabled: true}]\n", "2:12: pipeline[0].name: required"},
        {L "pipeline: [{name: {a: 1}}]\n", "2:19: pipeline[0].name: must be a string, not a mapping"},
        {L "pipeline: [{name: ''}]\n", "2:19: pipeline[0].name: must not be empty"},
        {L "pipeline: [{name: x, enabled: nope}]\n",
         "2:31: pipeline[0].enabled: invalid boolean 'nope' (expected true or false)"},
    };
    RUN(cases);
}

static void test_errors_yaml_and_files(void **state)
{
    static const err_case cases[] = {
        {"listeners: [{port: 8081}\n",
         "2:1: did not find expected ',' or ']' (while parsing a flow sequence at 1:12)"},
        {L "workers: 2\nworkers: 3\n", "3:1: duplicate key 'workers' (first at line 2)"},
        {L "x: &a 1\n", "2:4: anchors are not supported"},
        {L "---\nworkers: 2\n", "2:1: multiple documents in one file are not supported"},
    };
    RUN(cases);
    char *err = NULL;
    char missing[300], want[400];
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
    assert_null(gw_config_load(missing, &err));
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    assert_string_equal(err, want);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_null_means_default),
        cmocka_unit_test(test_booleans_and_quoting),
        cmocka_unit_test(test_interpolation),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_tls_files),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_shipped_gateway_yaml),
        cmocka_unit_test(test_shipped_examples),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_errors_structure),
        cmocka_unit_test(test_errors_numbers),
        cmocka_unit_test(test_errors_durations_sizes),
        cmocka_unit_test(test_errors_listeners),
        cmocka_unit_test(test_errors_services),
        cmocka_unit_test(test_errors_target_urls),
        cmocka_unit_test(test_errors_routes),
        cmocka_unit_test(test_errors_store_log_pipeline),
        cmocka_unit_test(test_errors_yaml_and_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
