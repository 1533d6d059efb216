/* config_schema.c - what the configuration file may contain: one descriptor per key (docs/configuration.md
 * in table form, defaults included) plus the checks that need more than a type: URLs, names, references. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_schema.h"
#include "http.h" /* enum gw_http_method, the field array size, gw_path_normalize for route prefixes */

#define SEC_MS 1000ull
#define DAY_MS (24 * 3600 * SEC_MS)
#define MIB (1ull << 20)
#define GIB (1ull << 30)

/* One line per key in the tables below; clang-format would spread each macro over four lines. */
// clang-format off
#define AT(T, m) .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define STR(k, d, T, m, fl, chk) {.name = k, .parse = gw_cfg_string, .def = d, AT(T, m), .flags = fl, .check = chk}
#define BOOLF(k, d, T, m) {.name = k, .parse = gw_cfg_bool, .def = d, AT(T, m)}
#define UINTF(k, d, T, m, lo, hi, fl) {.name = k, .parse = gw_cfg_uint, .def = d, AT(T, m), .min = lo, .max = hi, .flags = fl}
#define DURF(k, d, T, m, lo, hi) {.name = k, .parse = gw_cfg_duration, .def = d, AT(T, m), .min = lo, .max = hi}
#define SIZEF(k, d, T, m, lo, hi) {.name = k, .parse = gw_cfg_size, .def = d, AT(T, m), .min = lo, .max = hi}
#define ENUMF(k, d, fn, T, m, names) {.name = k, .parse = fn, .def = d, AT(T, m), .aux = names}
#define SECTION(k, off_, tbl, chk) {.name = k, .parse = gw_cfg_section, .off = off_, .aux = tbl, .check = chk, .flags = GW_F_WALK}
#define LIST(k, T, m, desc) {.name = k, .parse = gw_cfg_list, AT(T, m), .aux = &desc, .flags = GW_F_WALK}
#define CUSTOM(k, fn, d, T, m, fl) {.name = k, .parse = fn, .def = d, AT(T, m), .flags = fl}
#define END {.name = NULL}
// clang-format on

#define FIELD(rec, f, type) ((type *)(void *)((char *)(rec) + (f)->off))

/* ---- strings with a shape ---- */

/* Host names (letters, digits, '-', '_', '.'), IPv4 dotted quads, IPv6 literals without brackets. */
static bool valid_host(const char *h, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n > 253) return false;
    if (memchr(h, ':', n)) {
        struct in6_addr a6;
        if (n >= sizeof buf) return false;
        memcpy(buf, h, n);
        buf[n] = '\0';
        return inet_pton(AF_INET6, buf, &a6) == 1;
    }
    bool numeric = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') && !(ch >= '0' && ch <= '9') &&
            ch != '-' && ch != '_' && ch != '.')
            return false;
        numeric = numeric && (ch == '.' || (ch >= '0' && ch <= '9'));
    }
    if (!numeric) /* "999.1.1.1" is not a name either: all-numeric must be a real IPv4 address */
        return true;
    struct in_addr a4;
    if (n >= sizeof buf) return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1;
}

static bool check_host(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *h = *FIELD(rec, f, char *);
    return !h || valid_host(h, strlen(h)) || gw_cfg_fail(c, n, "invalid host or address '%s'", h);
}

/* Service and route names end up in logs and metric labels: keep them to a safe alphabet. */
static bool check_name(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = *FIELD(rec, f, char *);
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    if (!s || strspn(s, ok) == strlen(s)) return true;
    return gw_cfg_fail(c, n, "invalid name '%s' (letters, digits, '.', '_' and '-' only)", s);
}

/* Certificates and CA files are opened at load time so that `gateway -t` catches a wrong path. */
static bool check_file(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *path = *FIELD(rec, f, char *);
    if (!path) return true;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gw_cfg_fail(c, n, "cannot read '%s': %s", path, strerror(errno));
    struct stat st;
    bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    return regular || gw_cfg_fail(c, n, "'%s' is not a regular file", path);
}

/* The health-check path goes into a request line as is. */
static bool check_http_path(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = *FIELD(rec, f, char *);
    if (!s) return true;
    bool ok = s[0] == '/';
    for (const unsigned char *p = (const unsigned char *)s; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && *p != '#';
    return ok || gw_cfg_fail(c, n, "must be an absolute path such as /health, not '%s'", s);
}

/* ---- listeners ---- */

static const gw_field tls_fields[] = {
    STR("cert", NULL, gw_listener_conf, cert_file, GW_F_REQUIRED | GW_F_NONEMPTY, check_file),
    STR("key", NULL, gw_listener_conf, key_file, GW_F_REQUIRED | GW_F_NONEMPTY, check_file),
    END,
};

static bool p_tls(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    gw_listener_conf *l = rec;
    l->tls = true;
    return gw_cfg_map(c, n, n, tls_fields, false, l);
}

static const gw_field listener_fields[] = {
    STR("address", "0.0.0.0", gw_listener_conf, address, GW_F_NONEMPTY, check_host),
    UINTF("port", NULL, gw_listener_conf, port, 1, 65535, GW_F_REQUIRED),
    CUSTOM("tls", p_tls, NULL, gw_listener_conf, tls, 0),
    END,
};

/* SO_REUSEPORT would let two listeners share a port silently, splitting traffic between them. */
static bool listener_item(gw_cfg_ctx *c, const gw_yaml_node *item, void *items, size_t i)
{
    gw_listener_conf *l = items;
    for (size_t j = 0; j < i; j++)
        if (l[j].port == l[i].port && strcmp(l[j].address, l[i].address) == 0)
            return gw_cfg_fail(c, gw_yaml_get(item, "port"),
                               "address %s port %u is already used by listeners[%zu]", l[i].address,
                               l[i].port, j);
    return true;
}

static const gw_list_desc listeners_desc = {
    .what = "listener",
    .elem_size = sizeof(gw_listener_conf),
    .count_off = offsetof(gw_config, nlisteners),
    .line_off = offsetof(gw_listener_conf, line),
    .fields = listener_fields,
    .nonempty = true,
    .check = listener_item,
};

/* ---- services ---- */

/* scheme://host[:port][/] with nothing else; returns why not, or NULL and fills t (host malloc'd). */
static const char *split_url(const char *url, gw_target_conf *t)
{
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        t->https = true;
    } else {
        return "the scheme must be http:// or https://";
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen, *host = p, *hend, *port = NULL;
    if (memchr(p, '@', alen)) return "user information is not allowed";
    if (*p == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb || !memchr(p, ':', (size_t)(rb - p)) || !valid_host(p + 1, (size_t)(rb - p) - 1))
            return "invalid IPv6 address";
        if (rb + 1 < rest && rb[1] != ':') return "junk after the IPv6 address";
        host = p + 1;
        hend = rb;
        port = rb + 1 < rest ? rb + 2 : NULL;
    } else {
        const char *colon = memchr(p, ':', alen);
        hend = colon ? colon : rest;
        port = colon ? colon + 1 : NULL;
        if (colon && memchr(port, ':', (size_t)(rest - port)))
            return "an IPv6 address must be written in brackets";
        if (hend == host) return "the host is missing";
        if (!valid_host(host, (size_t)(hend - host))) return "invalid host name";
    }
    uint64_t pn = t->https ? 443 : 80;
    char digits[8] = "";
    size_t plen = port ? (size_t)(rest - port) : 0;
    if (port && (plen == 0 || plen >= sizeof digits)) return "the port must be 1..65535";
    memcpy(digits, port ? port : "", plen);
    digits[plen] = '\0';
    if (port && (!gw_cfg_decimal(digits, &pn) || pn < 1 || pn > 65535)) return "the port must be 1..65535";
    if (strchr(rest, '?')) return "a query is not allowed";
    if (strchr(rest, '#')) return "a fragment is not allowed";
    if (*rest && strcmp(rest, "/") != 0) return "a path is not allowed (only an empty one or '/')";
    t->port = (uint16_t)pn;
    t->host = strndup(host, (size_t)(hend - host));
    return t->host ? NULL : "out of memory";
}

static bool parse_target(gw_cfg_ctx *c, const gw_yaml_node *n, gw_target_conf *t)
{
    const char *url = gw_cfg_scalar(c, n, "a URL");
    if (!url) return false;
    const char *why = split_url(url, t);
    if (why) return gw_cfg_fail(c, n, "invalid target URL '%s': %s", url, why);
    bool v6 = strchr(t->host, ':') != NULL, dflt = t->port == (t->https ? 443 : 80);
    size_t cap = strlen(t->host) + 9;
    t->url = strdup(url);
    t->authority = malloc(cap);
    if (!t->url || !t->authority) return gw_cfg_fail(c, n, "out of memory");
    /* The Host header form: the port only when it is not the scheme's default. */
    snprintf(t->authority, cap, "%s%s%s", v6 ? "[" : "", t->host, v6 ? "]" : "");
    if (!dflt) snprintf(t->authority + strlen(t->authority), cap - strlen(t->authority), ":%u", t->port);
    return true;
}

static bool p_targets(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    gw_service_conf *s = rec;
    if (!n || (n->kind == GW_YAML_SEQ && n->n == 0))
        return gw_cfg_fail(c, n ? n : c->at, "at least one target is required");
    if (n->kind != GW_YAML_SEQ) return gw_cfg_fail(c, n, "must be a sequence of URLs");
    if (!(s->targets = calloc(n->n, sizeof *s->targets))) return gw_cfg_fail(c, n, "out of memory");
    s->ntargets = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = gw_cfg_push_index(c, i);
        bool ok = parse_target(c, n->items[i], &s->targets[i]);
        gw_cfg_pop(c, mark);
        if (!ok) return false;
    }
    return true;
}

static const gw_field health_fields[] = {
    STR("path", NULL, gw_health_conf, path, GW_F_NONEMPTY, check_http_path),
    DURF("interval", "10s", gw_health_conf, interval_ms, 1, DAY_MS),
    DURF("timeout", "2s", gw_health_conf, timeout_ms, 1, DAY_MS),
    UINTF("healthy_threshold", "2", gw_health_conf, healthy, 1, 100, 0),
    UINTF("unhealthy_threshold", "3", gw_health_conf, unhealthy, 1, 100, 0),
    END,
};

/* A present health_check section means "check": it needs a path. Absent: path stays NULL. */
static bool check_health(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const gw_health_conf *h = FIELD(rec, f, gw_health_conf);
    if (!n) return true;
    const char *key = !h->path ? "path" : "timeout";
    const gw_yaml_node *at = gw_yaml_get(n, key);
    size_t mark = gw_cfg_push(c, key);
    bool ok = h->path ? h->timeout_ms <= h->interval_ms ||
                            gw_cfg_fail(c, at ? at : n, "must not exceed the interval")
                      : gw_cfg_fail(c, n, "required");
    gw_cfg_pop(c, mark);
    return ok;
}

static const gw_field passive_fields[] = {
    UINTF("failures", "3", gw_passive_conf, failures, 0, 1000, 0),
    DURF("cooldown", "10s", gw_passive_conf, cooldown_ms, 1, DAY_MS),
    END,
};

static const char *const all_down_names[] = {"try", "refuse", NULL}; /* GW_ALL_DOWN_* order */

static const gw_field service_fields[] = {
    STR("name", NULL, gw_service_conf, name, GW_F_REQUIRED | GW_F_NONEMPTY, check_name),
    CUSTOM("targets", p_targets, NULL, gw_service_conf, targets, GW_F_WALK),
    BOOLF("tls_verify", "true", gw_service_conf, tls_verify),
    STR("tls_ca", NULL, gw_service_conf, tls_ca_file, 0, check_file),
    SECTION("health_check", offsetof(gw_service_conf, health), health_fields, check_health),
    SECTION("passive_health", offsetof(gw_service_conf, passive), passive_fields, NULL),
    ENUMF("when_all_down", "try", gw_cfg_enum, gw_service_conf, when_all_down, all_down_names),
    END,
};

static const gw_list_desc services_desc = {
    .what = "service",
    .elem_size = sizeof(gw_service_conf),
    .count_off = offsetof(gw_config, nservices),
    .line_off = offsetof(gw_service_conf, line),
    .fields = service_fields,
    .unique_key = "name",
    .unique_what = "service name",
    .unique_off = offsetof(gw_service_conf, name),
};

/* ---- routes ---- */

/* Request paths are normalised before matching, so the prefix is normalised the same way. */
static bool p_prefix(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    gw_route_conf *r = rec;
    const char *s = gw_cfg_scalar(c, n, "a string");
    if (!s) return false;
    if (s[0] != '/') return gw_cfg_fail(c, n, "must start with '/'");
    size_t len = strlen(s), out_len, path_len;
    char *out = malloc(len + 2);
    if (!out) return gw_cfg_fail(c, n, "out of memory");
    int st = gw_path_normalize(s, len, out, len + 2, &out_len, &path_len);
    if (st != 0 || out_len != path_len) {
        free(out);
        return gw_cfg_fail(c, n, st ? "invalid path '%s'" : "must not contain a query: '%s'", s);
    }
    while (path_len > 1 && out[path_len - 1] == '/')
        out[--path_len] = '\0';
    r->prefix = out;
    r->prefix_len = path_len;
    return true;
}

typedef struct {
    const char *name;
    size_t i;
} svc_ent;

static int svc_cmp(const void *a, const void *b)
{
    return strcmp(((const svc_ent *)a)->name, ((const svc_ent *)b)->name);
}

/* A binary search over the sorted names: a scan per route made many routes times many services slow. */
static bool p_service_ref(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "a service name");
    if (!s) return false;
    /* services come before routes in the table, so they are all known (and unique) here */
    const gw_config *cfg = c->cfg;
    if (!c->svc_index && cfg->nservices) {
        svc_ent *e = malloc(cfg->nservices * sizeof *e);
        if (!e) return gw_cfg_fail(c, n, "out of memory");
        for (size_t i = 0; i < cfg->nservices; i++)
            e[i] = (svc_ent){cfg->services[i].name, i};
        qsort(e, cfg->nservices, sizeof *e, svc_cmp);
        c->svc_index = e;
    }
    svc_ent key = {s, 0};
    const svc_ent *hit =
        c->svc_index ? bsearch(&key, c->svc_index, cfg->nservices, sizeof key, svc_cmp) : NULL;
    if (hit) {
        ((gw_route_conf *)rec)->service = hit->i;
        return true;
    }
    return gw_cfg_fail(c, n, "no service named '%s'", s);
}

static const struct {
    const char *name;
    enum gw_http_method id;
} route_methods[] = {
    {"GET", GW_METHOD_GET},         {"HEAD", GW_METHOD_HEAD},     {"POST", GW_METHOD_POST},
    {"PUT", GW_METHOD_PUT},         {"DELETE", GW_METHOD_DELETE}, {"PATCH", GW_METHOD_PATCH},
    {"OPTIONS", GW_METHOD_OPTIONS}, {"TRACE", GW_METHOD_TRACE},
};

static bool p_method(gw_cfg_ctx *c, const gw_yaml_node *n, unsigned *mask)
{
    const char *s = gw_cfg_scalar(c, n, "a method name");
    if (!s) return false;
    for (size_t i = 0; i < sizeof route_methods / sizeof route_methods[0]; i++) {
        if (strcmp(route_methods[i].name, s) != 0) continue;
        unsigned bit = 1u << route_methods[i].id;
        if (*mask & bit) return gw_cfg_fail(c, n, "duplicate method '%s'", s);
        *mask |= bit;
        return true;
    }
    return gw_cfg_fail(c, n, "unknown method '%s'", s);
}

static bool p_methods(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    unsigned *mask = FIELD(rec, f, unsigned);
    if (n->kind != GW_YAML_SEQ) return gw_cfg_fail(c, n, "must be a sequence of method names");
    if (n->n == 0) /* 0 would mean "any": an empty list is more likely a mistake than that */
        return gw_cfg_fail(c, n, "must not be empty (leave it out to allow any method)");
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = gw_cfg_push_index(c, i);
        bool ok = p_method(c, n->items[i], mask);
        gw_cfg_pop(c, mark);
        if (!ok) return false;
    }
    return true;
}

/* Kept as a subtree: the filters that own these settings validate them. */
static bool p_subtree_map(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    if (n->kind != GW_YAML_MAP) return gw_cfg_fail(c, n, "must be a mapping");
    gw_cfg_store_ptr((char *)rec + f->off, n);
    return true;
}

static const gw_field route_fields[] = {
    CUSTOM("prefix", p_prefix, NULL, gw_route_conf, prefix, GW_F_REQUIRED),
    CUSTOM("service", p_service_ref, NULL, gw_route_conf, service, GW_F_REQUIRED),
    STR("name", NULL, gw_route_conf, name, GW_F_NONEMPTY, check_name),
    CUSTOM("methods", p_methods, NULL, gw_route_conf, methods, 0),
    BOOLF("strip_prefix", "false", gw_route_conf, strip_prefix),
    BOOLF("preserve_host", "false", gw_route_conf, preserve_host),
    CUSTOM("filters", p_subtree_map, NULL, gw_route_conf, filters, 0),
    END,
};

static bool route_item(gw_cfg_ctx *c, const gw_yaml_node *item, void *items, size_t i)
{
    gw_route_conf *r = items;
    if (!r[i].name && !(r[i].name = strdup(c->cfg->services[r[i].service].name)))
        return gw_cfg_fail(c, item, "out of memory");
    return true;
}

static const gw_list_desc routes_desc = {
    .what = "route",
    .elem_size = sizeof(gw_route_conf),
    .count_off = offsetof(gw_config, nroutes),
    .line_off = offsetof(gw_route_conf, line),
    .fields = route_fields,
    .unique_key = "prefix",
    .unique_what = "prefix",
    .unique_off = offsetof(gw_route_conf, prefix),
    .check = route_item,
};

/* ---- pipeline ---- */

static const gw_field pipeline_fields[] = {
    STR("name", NULL, gw_pipeline_entry, name, GW_F_REQUIRED | GW_F_NONEMPTY, NULL),
    BOOLF("enabled", "true", gw_pipeline_entry, enabled),
    END,
};

static bool pipeline_item(gw_cfg_ctx *c, const gw_yaml_node *item, void *items, size_t i)
{
    ((gw_pipeline_entry *)items)[i].settings = item;
    return true;
}

static const gw_list_desc pipeline_desc = {
    .what = "filter",
    .elem_size = sizeof(gw_pipeline_entry),
    .count_off = offsetof(gw_config, npipeline),
    .line_off = offsetof(gw_pipeline_entry, line),
    .fields = pipeline_fields,
    .open = true, /* the other keys are the filter's own settings */
    .check = pipeline_item,
};

/* ---- top level ---- */

static bool p_workers(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "'auto' or 1..256");
    uint64_t v;
    if (!s) return false;
    if (strcmp(s, "auto") == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        v = cpus < 1 ? 1 : cpus > 256 ? 256 : (uint64_t)cpus;
    } else if (!gw_cfg_decimal(s, &v) || v < 1 || v > 256) {
        return gw_cfg_fail(c, n, "must be 'auto' or 1..256");
    }
    gw_cfg_store_uint((char *)rec + f->off, f->size, v);
    return true;
}

static const gw_field limits_fields[] = {
    SIZEF("request_line", "8KiB", gw_config, max_request_line, 1, MIB),
    SIZEF("header_block", "32KiB", gw_config, max_header_block, 1, 16 * MIB),
    UINTF("header_fields", "100", gw_config, max_header_fields, 1, GW_HTTP_MAX_FIELDS_HARD, 0),
    SIZEF("request_body", "1GiB", gw_config, max_body, 0, UINT64_MAX),
    SIZEF("body_buffer", "64KiB", gw_config, body_buffer, 0, GIB),
    UINTF("max_connections_per_client", "1024", gw_config, max_connections_per_client, 0, INT_MAX, 0),
    END,
};

static const gw_field timeouts_fields[] = {
    DURF("request_head", "10s", gw_config, request_head_ms, 1, DAY_MS),
    DURF("body_idle", "30s", gw_config, body_idle_ms, 1, DAY_MS),
    DURF("request_body", "30s", gw_config, request_body_ms, 1, DAY_MS),
    SIZEF("body_min_rate", "1KiB", gw_config, body_min_rate, 0, GIB),
    DURF("body_rate_window", "10s", gw_config, body_rate_window_ms, 1, DAY_MS),
    DURF("send_idle", "60s", gw_config, send_idle_ms, 1, DAY_MS),
    DURF("keepalive_idle", "60s", gw_config, keepalive_idle_ms, 1, DAY_MS),
    DURF("upstream_connect", "5s", gw_config, upstream_connect_ms, 1, DAY_MS),
    DURF("upstream_response", "30s", gw_config, upstream_response_ms, 1, DAY_MS),
    DURF("upstream_idle", "30s", gw_config, upstream_idle_ms, 1, DAY_MS),
    DURF("shutdown", "25s", gw_config, shutdown_ms, 0, DAY_MS),
    END,
};

static const gw_field upstream_fields[] = {
    UINTF("keepalive", "64", gw_config, upstream_keepalive, 0, 65535, 0),
    DURF("keepalive_idle", "60s", gw_config, upstream_keepalive_ms, 1, DAY_MS),
    END,
};

/* ---- proxy ---- */

static const gw_field proxy_fields[] = {
    CUSTOM("trusted_proxies", gw_cfg_cidrs, NULL, gw_config, trusted_proxies, 0),
    BOOLF("trust_request_id", "true", gw_config, trust_request_id),
    BOOLF("underscores_in_headers", "false", gw_config, underscores_in_headers),
    END,
};

static const char *const store_types[] = {"embedded", "redis", NULL}; /* gw_store_type order */

static const gw_field store_fields[] = {
    ENUMF("type", "embedded", gw_cfg_enum, gw_store_conf, type, store_types),
    STR("path", "data", gw_store_conf, path, GW_F_NONEMPTY, NULL),
    STR("host", "localhost", gw_store_conf, host, GW_F_NONEMPTY, check_host),
    UINTF("port", "6379", gw_store_conf, port, 1, 65535, 0),
    STR("password", NULL, gw_store_conf, password, 0, NULL),
    UINTF("db", "0", gw_store_conf, db, 0, INT_MAX, 0),
    DURF("connect_timeout", "1s", gw_store_conf, connect_timeout_ms, 1, DAY_MS),
    DURF("command_timeout", "250ms", gw_store_conf, command_timeout_ms, 1, DAY_MS),
    END,
};

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL}; /* GW_LOG_TEXT, GW_LOG_JSON */

static const gw_field log_fields[] = {
    ENUMF("level", "info", gw_cfg_enum_str, gw_config, log_level, log_levels),
    ENUMF("format", "text", gw_cfg_enum, gw_config, log_format, log_formats),
    END,
};

/* Order matters: services are bound before routes, which refer to them by name. */
const gw_field gw_cfg_top[] = {
    LIST("listeners", gw_config, listeners, listeners_desc),
    CUSTOM("workers", p_workers, "auto", gw_config, workers, 0),
    UINTF("max_connections", "10000", gw_config, max_connections, 0, INT_MAX, 0),
    SECTION("limits", 0, limits_fields, NULL),
    SECTION("timeouts", 0, timeouts_fields, NULL),
    SECTION("upstream", 0, upstream_fields, NULL),
    SECTION("proxy", 0, proxy_fields, NULL),
    LIST("services", gw_config, services, services_desc),
    LIST("routes", gw_config, routes, routes_desc),
    SECTION("store", offsetof(gw_config, store), store_fields, NULL),
    STR("plugin_dir", NULL, gw_config, plugin_dir, 0, NULL),
    LIST("pipeline", gw_config, pipeline, pipeline_desc),
    SECTION("log", 0, log_fields, NULL),
    END,
};

bool gw_cfg_finish(gw_cfg_ctx *c, const gw_yaml_node *root)
{
    if (c->cfg->max_header_block >= c->cfg->max_request_line) return true;
    /* The head limit includes the request line, so a smaller one would make request_line meaningless. */
    const gw_yaml_node *limits = gw_yaml_get(root, "limits");
    const gw_yaml_node *at = gw_yaml_get(limits, "header_block");
    size_t mark = gw_cfg_push(c, "limits.header_block");
    gw_cfg_fail(c, at ? at : limits ? limits : root, "must not be smaller than limits.request_line");
    gw_cfg_pop(c, mark);
    return false;
}

const gw_field *gw_cfg_nested(const gw_field *f, bool *list)
{
    *list = f->parse == gw_cfg_list;
    if (f->parse == gw_cfg_section) return f->aux;
    if (f->parse == gw_cfg_list) return ((const gw_list_desc *)f->aux)->fields;
    if (f->parse == p_tls) return tls_fields;
    return NULL;
}
