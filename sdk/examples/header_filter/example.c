/* example.c - the SDK's example filter "example".
 *
 *   pipeline:
 *     - name: example
 *       response_header: {name: X-Example, value: hi}          # added to every response
 *       reject_if_header: {name: X-Block, value: "yes", status: 403}
 *                           # requests carrying X-Block (with that value, when `value` is given) are
 *                           # answered `status` (400..599, default 403) with the gateway's error JSON
 *   routes:
 *     - prefix: /special
 *       filters:
 *         example: {response_header: {name: X-Example, value: special}}   # per-route override
 *
 * A per-route setting replaces the pipeline's setting of the same key for requests on that route.
 * Nothing is shared between requests but read-only settings, so the filter needs no per-worker state. */
#include <gw/filter.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *header_name, *header_value; /* response_header; NULL = none */
    char *reject_name;                /* reject_if_header; NULL = none */
    char *reject_value;               /* NULL = any value */
    int reject_status;
} example_conf;

typedef struct {
    const gw_host *host;
    gw_filter *self;
    gw_metric *rejected; /* example_rejected_total{route}; NULL when the host has no metrics */
    example_conf conf;
} example_inst;

/* --- settings -------------------------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    char *d = s ? malloc(strlen(s) + 1) : NULL;
    if (d) strcpy(d, s);
    return d;
}

static void conf_clear(example_conf *c)
{
    free(c->header_name);
    free(c->header_value);
    free(c->reject_name);
    free(c->reject_value);
    memset(c, 0, sizeof *c);
}

static int conf_copy(example_conf *dst, const example_conf *src)
{
    memset(dst, 0, sizeof *dst);
    dst->reject_status = src->reject_status;
    if ((src->header_name && !(dst->header_name = dup_str(src->header_name))) ||
        (src->header_value && !(dst->header_value = dup_str(src->header_value))) ||
        (src->reject_name && !(dst->reject_name = dup_str(src->reject_name))) ||
        (src->reject_value && !(dst->reject_value = dup_str(src->reject_value)))) {
        conf_clear(dst);
        return -1;
    }
    return 0;
}

/* `key:` with nothing (or ~ / null) after it counts as absent, as everywhere in the configuration. */
static const gw_conf *get(const gw_host *h, const gw_conf *map, const char *key)
{
    const gw_conf *n = h->conf_get(map, key);
    const char *s = h->conf_kind(n) == GW_CONF_SCALAR ? h->conf_str(n) : NULL;
    if (s && (!*s || !strcmp(s, "~") || !strcmp(s, "null"))) return NULL;
    return n;
}

static bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A string setting `what` of the mapping `map`: required or not, a header name or a header value. */
static int read_string(const gw_host *h, const gw_conf *map, const char *key, const char *what, bool required,
                       bool header_name, char **out, char *err, size_t errlen)
{
    const gw_conf *n = get(h, map, key);
    if (!n) return required ? h->conf_error(map, err, errlen, "%s: required", what) : 0;
    if (h->conf_kind(n) != GW_CONF_SCALAR) return h->conf_error(n, err, errlen, "%s: expected a string", what);
    const char *s = h->conf_str(n);
    for (const char *p = s; *p; p++)
        if (header_name ? !token_char(*p) : (*p == '\r' || *p == '\n'))
            return h->conf_error(n, err, errlen, "%s: '%s' is not a valid header %s", what, s,
                                 header_name ? "name" : "value");
    char *d = dup_str(s);
    if (!d) return h->conf_error(n, err, errlen, "%s: out of memory", what);
    free(*out);
    *out = d;
    return 0;
}

/* Reads the settings present in `conf` over `c` (absent keys leave c as it is). */
static int conf_read(const gw_host *h, const gw_conf *conf, example_conf *c, char *err, size_t errlen)
{
    static const char *const keys[] = {"response_header", "reject_if_header", NULL};
    if (h->conf_only(conf, keys, err, errlen) != 0) return -1;

    const gw_conf *rh = get(h, conf, "response_header");
    if (rh) {
        static const char *const rh_keys[] = {"name", "value", NULL};
        if (h->conf_kind(rh) != GW_CONF_MAP)
            return h->conf_error(rh, err, errlen, "response_header: expected a mapping {name, value}");
        if (h->conf_only(rh, rh_keys, err, errlen) != 0 ||
            read_string(h, rh, "name", "response_header.name", true, true, &c->header_name, err, errlen) != 0 ||
            read_string(h, rh, "value", "response_header.value", true, false, &c->header_value, err, errlen) != 0)
            return -1;
    }

    const gw_conf *rj = get(h, conf, "reject_if_header");
    if (rj) {
        static const char *const rj_keys[] = {"name", "value", "status", NULL};
        if (h->conf_kind(rj) != GW_CONF_MAP)
            return h->conf_error(rj, err, errlen, "reject_if_header: expected a mapping {name, value, status}");
        free(c->reject_value); /* a rule replaces the whole previous rule */
        c->reject_value = NULL;
        c->reject_status = 403;
        if (h->conf_only(rj, rj_keys, err, errlen) != 0 ||
            read_string(h, rj, "name", "reject_if_header.name", true, true, &c->reject_name, err, errlen) != 0 ||
            read_string(h, rj, "value", "reject_if_header.value", false, false, &c->reject_value, err, errlen) != 0)
            return -1;
        const gw_conf *st = get(h, rj, "status");
        int64_t v;
        if (st) {
            if (h->conf_int(st, 400, 599, &v, NULL, 0) != 0)
                return h->conf_error(st, err, errlen, "reject_if_header.status: expected a status 400..599, got '%s'",
                                     h->conf_str(st) ? h->conf_str(st) : "(not a scalar)");
            c->reject_status = (int)v;
        }
    }
    return 0;
}

/* --- lifecycle ------------------------------------------------------------------------------------- */

static int example_config_check(const gw_host *host, const gw_conf *conf, char *err, size_t errlen)
{
    example_conf c = {0};
    int rc = conf_read(host, conf, &c, err, errlen);
    conf_clear(&c);
    return rc;
}

static void *example_create(const gw_host *host, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    example_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    in->host = host;
    in->self = self;
    if (conf_read(host, conf, &in->conf, err, errlen) != 0) {
        conf_clear(&in->conf);
        free(in);
        return NULL;
    }
    if (host->metric_register) { /* optional member: NULL when the host has no metrics */
        static const char *const labels[] = {"route", NULL};
        in->rejected = host->metric_register(self, GW_METRIC_COUNTER, "example_rejected_total",
                                             "Requests rejected by the example filter", labels, NULL, 0);
    }
    return in;
}

static void example_destroy(void *inst)
{
    example_inst *in = inst;
    conf_clear(&in->conf);
    free(in);
}

/* `inst` is NULL here: route settings are checked before any instance exists (gateway -t). */
static int example_route_check(const gw_host *host, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    (void)inst;
    return example_config_check(host, conf, err, errlen);
}

static void *example_route_create(const gw_host *host, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    example_inst *in = inst;
    example_conf *c = malloc(sizeof *c);
    if (!c || conf_copy(c, &in->conf) != 0) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf_read(host, conf, c, err, errlen) != 0) {
        conf_clear(c);
        free(c);
        return NULL;
    }
    return c;
}

static void example_route_destroy(void *inst, void *route_conf)
{
    (void)inst;
    conf_clear(route_conf);
    free(route_conf);
}

/* --- phases ---------------------------------------------------------------------------------------- */

static gw_result example_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)state; /* req_state_size is 0: no per-request state */
    example_inst *in = inst;
    const gw_host *h = in->host;
    const example_conf *c = route_conf ? route_conf : &in->conf;
    gw_strv v;
    if (!c->reject_name || !h->header_get(req, GW_HDR_REQUEST, c->reject_name, &v)) return GW_CONTINUE;
    if (c->reject_value && (strlen(c->reject_value) != v.n || memcmp(c->reject_value, v.p, v.n) != 0))
        return GW_CONTINUE;

    gw_strv route = h->route(req);
    char label[128];
    snprintf(label, sizeof label, "%.*s", (int)route.n, route.p);
    if (in->rejected) h->metric_add(in->rejected, req, (const char *const[]){label}, 1);
    h->log(in->self, req, GW_LOG_INFO, "rejected: the request carries %s", c->reject_name);

    char msg[256];
    snprintf(msg, sizeof msg, "Requests with the header %s are not accepted", c->reject_name);
    return h->respond_error(req, c->reject_status, msg) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result example_on_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)state;
    example_inst *in = inst;
    const example_conf *c = route_conf ? route_conf : &in->conf;
    if (c->header_name &&
        in->host->header_set(req, GW_HDR_RESPONSE, c->header_name, c->header_value, strlen(c->header_value)) != 0)
        return GW_ERROR;
    return GW_CONTINUE;
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "example",
    .version = "1.0.0",
    .description = "Adds a response header; rejects requests by a header rule",
    .config_check = example_config_check,
    .create = example_create,
    .destroy = example_destroy,
    .route_check = example_route_check,
    .route_create = example_route_create,
    .route_destroy = example_route_destroy,
    .on_request = example_on_request,
    .on_response = example_on_response,
};
