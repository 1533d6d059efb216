/* cors.c - the filter "cors": Cross-Origin Resource Sharing for browsers calling the gateway's APIs.
 *
 *   pipeline:
 *     - name: cors                         # first, so preflights are answered before authentication
 *       allow_origins: ${CORS_ALLOW_ORIGINS:-*}   # "*", or origins (a list, or one string "a, b")
 *       allow_methods: [GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD]   # or "*": whatever is asked
 *       allow_headers: [Authorization, Content-Type, ...]              # or "*": whatever is asked
 *       expose_headers: [X-Request-ID, X-RateLimit-Limit, ...]
 *       allow_credentials: false           # never with allow_origins "*" (refused at load)
 *       max_age: 10m                       # how long a browser may cache a preflight's answer
 *   routes[].filters.cors: {allow_origins: [https://admin.example.com]} | {disabled: true}
 *
 * A request with an allowed Origin gets Access-Control-Allow-Origin (the origin itself, or "*" when every
 * origin is allowed without credentials), Access-Control-Expose-Headers and, when configured,
 * Access-Control-Allow-Credentials, on every response: the upstream's and the gateway's own answers alike
 * (a 401 from apikey or a 429 from ratelimit), since this runs in the response phase, which every answer
 * passes. Every response carries Vary: Origin (added to the upstream's Vary), so a cache never hands an
 * answer made for one origin (or for none) to another. A disallowed or missing origin gets no CORS headers
 * (those the upstream set are removed: the gateway's policy is the policy) and the request goes on: CORS is
 * enforced by browsers, not by servers.
 *
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method) never reaches the upstream: allowed
 * (origin, method and every requested header), it is answered 204 in the request phase with the allow
 * headers and Access-Control-Max-Age; refused (any of the three), it is answered 403 JSON naming what was
 * refused, without CORS headers. Other OPTIONS requests go on through the pipeline. */
#include "cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CORS_DEF_METHODS "GET,POST,PUT,PATCH,DELETE,OPTIONS,HEAD"
#define CORS_DEF_HEADERS                                                                                     \
    "Authorization,Content-Type,Accept,Accept-Language,Content-Language,X-API-Key,X-Request-ID,traceparent," \
    "tracestate"
#define CORS_DEF_EXPOSE                                                                                      \
    "X-Request-ID,X-RateLimit-Limit,X-RateLimit-Remaining,X-RateLimit-Reset,RateLimit,RateLimit-Policy,"     \
    "Retry-After,X-Retry-Count"

#define CORS_SET(key, type, field, def, lo, hi, flags, help)                                                 \
    {                                                                                                        \
        key, type, offsetof(cors_conf, field), def, lo, hi, NULL, flags, help                                \
    }
static const gw_setting cors_settings_table[] = {
    CORS_SET("allow_origins", GW_SET_STRINGS, origins, "*", 1, CORS_MAX_ITEMS, GW_SET_ROUTE,
             "Origins allowed: * (any), or scheme://host[:port] items (https://*.example.com for subdomains; "
             "a list or one string with ',' between)"),
    CORS_SET("allow_methods", GW_SET_STRINGS, methods, CORS_DEF_METHODS, 0, CORS_MAX_ITEMS, GW_SET_ROUTE,
             "Methods a preflight may ask for (* allows whatever is asked)"),
    CORS_SET("allow_headers", GW_SET_STRINGS, headers, CORS_DEF_HEADERS, 0, CORS_MAX_ITEMS, GW_SET_ROUTE,
             "Request headers a preflight may ask for, any case (* allows whatever is asked)"),
    CORS_SET("expose_headers", GW_SET_STRINGS, expose, CORS_DEF_EXPOSE, 0, CORS_MAX_ITEMS, GW_SET_ROUTE,
             "Response headers scripts may read (Access-Control-Expose-Headers)"),
    CORS_SET("allow_credentials", GW_SET_BOOL, credentials, "false", 0, 0, GW_SET_ROUTE,
             "Send Access-Control-Allow-Credentials: true (cookies, HTTP auth); needs a list of origins"),
    CORS_SET("max_age", GW_SET_DURATION, max_age_ms, "10m", 0, 86400000.0, GW_SET_ROUTE,
             "How long browsers may cache a preflight's answer (Access-Control-Max-Age; 0: not sent)"),
    CORS_SET("disabled", GW_SET_BOOL, disabled, "false", 0, 0, GW_SET_ROUTE,
             "Per route only: no CORS handling on that route (preflights go to the upstream)"),
    {.name = NULL},
};

typedef struct {
    const gw_host *h;
    gw_filter *self;
    cors_policy pol; /* the pipeline's */
} cors_inst;

enum { CORS_NONE = 0, CORS_NO_ORIGIN, CORS_ALLOWED, CORS_DENIED, CORS_PREFLIGHT };

typedef struct {
    int mode;
    const cors_policy *pol;
} cors_state;

/* ---------------------------------------------------------------------------------------------------
 * settings: what the table cannot say (origins, tokens, credentials with "*") */

/* One list: the node's if present, else `base`. */
typedef struct {
    const char *const *v;
    size_t n;
    cors_list own;
} src_list;

static int src_get(const gw_host *h, const gw_conf *conf, const char *key, const char *const *base,
                   size_t nbase, src_list *out, char *err, size_t errlen)
{
    *out = (src_list){base, nbase, {0}};
    const gw_conf *n = h->conf_get(conf, key);
    if (!n) return 0;
    if (cors_list_read(h, n, key, &out->own, err, errlen) != 0) return -1;
    out->v = out->own.items;
    out->n = out->own.n;
    return 0;
}

/* A boolean the settings table has already accepted (true/false, yes/no, on/off). */
static bool truthy(const char *s)
{
    return s && (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 || strcasecmp(s, "on") == 0);
}

/* Builds the policy from conf's keys over base (the pipeline's settings; NULL: no base, each absent list
 * empty except origins). A refusal is placed at the node of the key it names. */
static int build(const gw_host *h, const gw_conf *conf, const cors_conf *base, cors_policy *p, char *err,
                 size_t errlen)
{
    static const char *const dummy_origin[] = {"null"};
    src_list o, m, hd, ex;
    int rc = -1;
    char msg[512] = "";
    memset(&m, 0, sizeof m), memset(&hd, 0, sizeof hd), memset(&ex, 0, sizeof ex);
    if (src_get(h, conf, "allow_origins", base ? base->origins.v : dummy_origin, base ? base->origins.n : 1,
                &o, err, errlen) != 0)
        return -1;
    if (src_get(h, conf, "allow_methods", base ? base->methods.v : NULL, base ? base->methods.n : 0, &m, err,
                errlen) != 0 ||
        src_get(h, conf, "allow_headers", base ? base->headers.v : NULL, base ? base->headers.n : 0, &hd, err,
                errlen) != 0 ||
        src_get(h, conf, "expose_headers", base ? base->expose.v : NULL, base ? base->expose.n : 0, &ex, err,
                errlen) != 0)
        goto out;
    bool cred = base ? base->credentials : false, disabled = false;
    uint64_t max_age = base ? base->max_age_ms : 0;
    const gw_conf *n;
    if ((n = h->conf_get(conf, "allow_credentials"))) cred = truthy(h->conf_str(n));
    if ((n = h->conf_get(conf, "max_age")) && h->conf_duration_ms(n, &max_age, err, errlen) != 0) goto out;
    if ((n = h->conf_get(conf, "disabled"))) disabled = truthy(h->conf_str(n));
    if (cors_policy_build(p, o.v, o.n, m.v, m.n, hd.v, hd.n, ex.v, ex.n, cred, max_age, disabled, msg,
                          sizeof msg) != 0) {
        char key[32];
        size_t kl = strcspn(msg, ":");
        snprintf(key, sizeof key, "%.*s", (int)(kl < sizeof key ? kl : sizeof key - 1), msg);
        const gw_conf *at = h->conf_get(conf, key);
        h->conf_error(at ? at : conf, err, errlen, CORS_NAME ".%s", msg);
        cors_policy_free(p);
        goto out;
    }
    rc = 0;
out:
    cors_list_free(&o.own);
    cors_list_free(&m.own);
    cors_list_free(&hd.own);
    cors_list_free(&ex.own);
    return rc;
}

static int cors_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, "disabled");
    if (n)
        return h->conf_error(n, err, errlen,
                             CORS_NAME ".disabled: a per-route setting (the whole filter: enabled: false)");
    /* The table filled nothing yet here: the entry over the defaults that matter to the checks (origins
     * "*", no credentials; the default lists are valid, and absent lists are not checked). */
    static const char *const star[] = {"*"};
    cors_conf d = {.origins = {star, 1}};
    cors_policy p;
    if (build(h, conf, &d, &p, err, errlen) != 0) return -1;
    cors_policy_free(&p);
    return 0;
}

/* inst is NULL here (as for every route_check): what the route says by itself; the combination with the
 * pipeline's settings is checked when the route is compiled. */
static int cors_route_check(const gw_host *h, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    (void)inst;
    cors_policy p;
    if (build(h, conf, NULL, &p, err, errlen) != 0) return -1;
    cors_policy_free(&p);
    return 0;
}

static void *cors_route_create(const gw_host *h, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    cors_inst *in = inst;
    cors_policy *p = calloc(1, sizeof *p);
    if (!p) {
        h->conf_error(conf, err, errlen, CORS_NAME ": out of memory");
        return NULL;
    }
    const cors_conf *s = h->settings(in->self);
    if (build(h, conf, s, p, err, errlen) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

static void cors_route_destroy(void *inst, void *route_conf)
{
    (void)inst;
    if (!route_conf) return;
    cors_policy_free(route_conf);
    free(route_conf);
}

/* ---------------------------------------------------------------------------------------------------
 * phases */

#define SET(req, name, v, n) h->header_set(req, GW_HDR_RESPONSE, name, v, n)

/* Vary: Origin, unless a Vary field already says it (or says '*'). */
static void vary_origin(const gw_host *h, gw_req *req)
{
    size_t n = h->header_count(req, GW_HDR_RESPONSE);
    for (size_t i = 0; i < n; i++) {
        gw_strv name, value;
        if (!h->header_at(req, GW_HDR_RESPONSE, i, &name, &value)) continue;
        if (name.n != 4 || strncasecmp(name.p, "vary", 4) != 0) continue;
        if (cors_has_token(value, "origin") || cors_has_token(value, "*")) return;
    }
    (void)h->header_add(req, GW_HDR_RESPONSE, "Vary", "Origin", 6);
}

/* Each requested header allowed? The first one that is not, in *bad. */
static bool headers_allowed(const cors_policy *p, gw_strv v, gw_strv *bad)
{
    for (size_t i = 0; i < v.n;) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t a = i;
        while (i < v.n && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
            i++;
        if (i == a) continue;
        gw_strv name = {v.p + a, i - a};
        bool token = true;
        for (size_t k = 0; k < name.n && token; k++)
            token = (name.p[k] >= 'a' && name.p[k] <= 'z') || (name.p[k] >= 'A' && name.p[k] <= 'Z') ||
                    (name.p[k] >= '0' && name.p[k] <= '9') || strchr("!#$%&'*+-.^_`|~", name.p[k]);
        if (!token || (!p->any_header && !cors_in_list(p->headers, p->nheaders, name, true))) {
            *bad = name;
            return false;
        }
    }
    return true;
}

/* 403 "CORS preflight refused: <kind> <what> <tail>" (what cut at 64 bytes). */
static gw_result refuse(const gw_host *h, gw_req *req, cors_state *st, const char *kind, gw_strv what,
                        const char *tail)
{
    char msg[200];
    snprintf(msg, sizeof msg, "CORS preflight refused: %s %.*s%s %s", kind, (int)(what.n > 64 ? 64 : what.n),
             what.p, what.n > 64 ? "..." : "", tail);
    st->mode = CORS_DENIED;
    if (h->respond_error(req, 403, msg) != 0) return GW_ERROR;
    return GW_RESPOND;
}

static gw_result preflight(const gw_host *h, const cors_policy *p, gw_req *req, cors_state *st,
                           gw_strv origin, gw_strv acrm)
{
    gw_strv acrh = {"", 0}, bad;
    (void)h->header_get(req, GW_HDR_REQUEST, "Access-Control-Request-Headers", &acrh);
    if (!cors_origin_allowed(p, origin)) return refuse(h, req, st, "origin", origin, "is not allowed");
    if (!p->any_method && !cors_in_list(p->methods, p->nmethods, acrm, false))
        return refuse(h, req, st, "method", acrm, "is not allowed");
    if (acrh.n > CORS_MAX_REFLECT) return refuse(h, req, st, "headers", acrh, "are too many");
    if (!headers_allowed(p, acrh, &bad)) return refuse(h, req, st, "header", bad, "is not allowed");
    if (h->respond(req, 204, NULL, "", 0) != 0) return GW_ERROR;
    st->mode = CORS_PREFLIGHT;
    bool star = p->any_origin && !p->credentials;
    int rc = SET(req, "Access-Control-Allow-Origin", star ? "*" : origin.p, star ? 1 : origin.n);
    if (p->any_method)
        rc |= SET(req, "Access-Control-Allow-Methods", acrm.p, acrm.n);
    else if (p->methods_v)
        rc |= SET(req, "Access-Control-Allow-Methods", p->methods_v, p->methods_n);
    if (p->any_header && acrh.n)
        rc |= SET(req, "Access-Control-Allow-Headers", acrh.p, acrh.n);
    else if (!p->any_header && p->headers_v)
        rc |= SET(req, "Access-Control-Allow-Headers", p->headers_v, p->headers_n);
    if (p->max_age_n) rc |= SET(req, "Access-Control-Max-Age", p->max_age_v, p->max_age_n);
    if (p->credentials) rc |= SET(req, "Access-Control-Allow-Credentials", "true", 4);
    static const char vary[] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
    rc |= SET(req, "Vary", vary, sizeof vary - 1);
    return rc == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result cors_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    cors_inst *in = inst;
    const gw_host *h = in->h;
    const cors_policy *p = route_conf ? route_conf : &in->pol;
    cors_state *st = state;
    st->pol = p;
    if (p->disabled) return GW_CONTINUE;
    gw_strv origin, acrm;
    if (!h->header_get(req, GW_HDR_REQUEST, "Origin", &origin)) {
        st->mode = CORS_NO_ORIGIN;
        return GW_CONTINUE;
    }
    gw_strv m = h->method(req);
    if (m.n == 7 && memcmp(m.p, "OPTIONS", 7) == 0 &&
        h->header_get(req, GW_HDR_REQUEST, "Access-Control-Request-Method", &acrm))
        return preflight(h, p, req, st, origin, acrm);
    st->mode = cors_origin_allowed(p, origin) ? CORS_ALLOWED : CORS_DENIED;
    return GW_CONTINUE;
}

static gw_result cors_on_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    cors_inst *in = inst;
    const gw_host *h = in->h;
    cors_state *st = state;
    const cors_policy *p = st->pol;
    if (!p || p->disabled || st->mode == CORS_NONE || st->mode == CORS_PREFLIGHT) return GW_CONTINUE;
    gw_strv origin;
    if (st->mode == CORS_ALLOWED && h->header_get(req, GW_HDR_REQUEST, "Origin", &origin)) {
        if (p->any_origin && !p->credentials)
            (void)SET(req, "Access-Control-Allow-Origin", "*", 1);
        else
            (void)SET(req, "Access-Control-Allow-Origin", origin.p, origin.n);
        if (p->credentials)
            (void)SET(req, "Access-Control-Allow-Credentials", "true", 4);
        else
            (void)h->header_remove(req, GW_HDR_RESPONSE, "Access-Control-Allow-Credentials");
        if (p->expose_v)
            (void)SET(req, "Access-Control-Expose-Headers", p->expose_v, p->expose_n);
        else
            (void)h->header_remove(req, GW_HDR_RESPONSE, "Access-Control-Expose-Headers");
    } else { /* no Origin, or not allowed: the upstream's CORS headers are not the gateway's policy */
        (void)h->header_remove(req, GW_HDR_RESPONSE, "Access-Control-Allow-Origin");
        (void)h->header_remove(req, GW_HDR_RESPONSE, "Access-Control-Allow-Credentials");
        (void)h->header_remove(req, GW_HDR_RESPONSE, "Access-Control-Expose-Headers");
    }
    vary_origin(h, req); /* with or without Origin the answer differs, even for "*" */
    return GW_CONTINUE;
}

/* ---------------------------------------------------------------------------------------------------
 * lifecycle */

static void *cors_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    const cors_conf *s = h->settings ? h->settings(self) : NULL;
    if (!s) {
        h->conf_error(conf, err, errlen, CORS_NAME ": this gateway does not fill settings tables (ABI 1.1)");
        return NULL;
    }
    cors_inst *in = calloc(1, sizeof *in);
    if (!in) {
        h->conf_error(conf, err, errlen, CORS_NAME ": out of memory");
        return NULL;
    }
    in->h = h;
    in->self = self;
    char msg[512];
    if (cors_policy_build(&in->pol, s->origins.v, s->origins.n, s->methods.v, s->methods.n, s->headers.v,
                          s->headers.n, s->expose.v, s->expose.n, s->credentials, s->max_age_ms, false, msg,
                          sizeof msg) != 0) {
        h->conf_error(conf, err, errlen, CORS_NAME ".%s", msg);
        cors_policy_free(&in->pol);
        free(in);
        return NULL;
    }
    return in;
}

static void cors_destroy(void *inst)
{
    cors_inst *in = inst;
    cors_policy_free(&in->pol);
    free(in);
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = CORS_NAME,
    .version = "1.0.0",
    .description = "CORS: preflights answered at the edge, Access-Control-* headers on every answer",
    .config_check = cors_config_check,
    .create = cors_create,
    .destroy = cors_destroy,
    .route_check = cors_route_check,
    .route_create = cors_route_create,
    .route_destroy = cors_route_destroy,
    .on_request = cors_on_request,
    .on_response = cors_on_response,
    .req_state_size = sizeof(cors_state),
    .settings = cors_settings_table,
    .settings_size = sizeof(cors_conf),
};
