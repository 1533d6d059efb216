/* ratelimit.c - the filter "ratelimit": a token bucket per client, kept in the gateway's store.
 *
 *   pipeline:
 *     - name: ratelimit          # after apikey, which says who the consumer is
 *       rpm: 60                  # tokens added per minute, continuously (fractions count)
 *       burst: 10                # bucket capacity; a new bucket starts full; one token per request
 *       trusted_proxies: []      # CIDRs whose X-Forwarded-For / X-Real-IP are believed
 *       headers: legacy          # legacy (X-RateLimit-*) | ietf (RateLimit, RateLimit-Policy) | both | none
 *       on_store_error: local    # local | allow | deny
 *       store_timeout: 100ms     # how long a request waits for the store before on_store_error decides
 *       exempt: [/health, /info, /metrics, /services/health]   # never limited (prefixes, at a '/')
 *       limit_admin: false       # requests that passed admin authentication (admin.user) are not limited
 *   routes[].filters.ratelimit: {rpm: 5, burst: 2} | {disabled: true}
 *
 * Identity: "key:<consumer.id>" when an earlier filter (apikey) identified the consumer, with the key's own
 * consumer.rate_limit as its rate; otherwise "ip:<canonical client address>". A route whose rpm or burst
 * (its settings merged over the pipeline's by the host) differs from the pipeline's has buckets of its own
 * (the route name is part of the store key, length-prefixed).
 *
 * The decision is host->store_take (embedded: exact across workers; Redis: one script on the server's clock,
 * exact across gateways). A guard timer of store_timeout bounds the wait; a store error or timeout decides
 * per on_store_error and marks the worker's store state failing: further requests on that worker decide
 * at once, and one request per second probes the store until it answers again. The state changes are
 * logged once per instance and every fallback decision is counted. */
#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_NAME "ratelimit"
#define RL_MAX_RATE 1e9
#define RL_MAX_TRUSTED 256
#define RL_MAX_EXEMPT 64
#define RL_MAX_ID 128 /* consumer ids longer than this are hashed into the identity */
#define RL_PROBE_INTERVAL_MS 1000u

enum { RL_ERR_LOCAL = 0, RL_ERR_ALLOW = 1, RL_ERR_DENY = 2 };
static const char *const err_names[] = {"local", "allow", "deny", NULL};
static const char *const header_names[] = {"legacy", "ietf", "both", "none", NULL};
static const unsigned header_bits[] = {RL_HDR_LEGACY, RL_HDR_IETF, RL_HDR_LEGACY | RL_HDR_IETF, 0};

#define RL_SET(key, type, field, def, lo, hi, names, flags, help)                                            \
    {                                                                                                        \
        key, type, offsetof(rl_conf, field), def, lo, hi, names, flags, help                                 \
    }
static const gw_setting rl_settings_table[] = {
    RL_SET("rpm", GW_SET_NUMBER, rpm, "60", 0, RL_MAX_RATE, NULL, GW_SET_ROUTE,
           "Tokens added per minute, continuously (fractions count); above 0"),
    RL_SET("burst", GW_SET_INT, burst, "10", 1, RL_MAX_RATE, NULL, GW_SET_ROUTE,
           "Bucket capacity: requests allowed at once; a new bucket starts full"),
    RL_SET("trusted_proxies", GW_SET_CIDRS, trusted, NULL, 0, RL_MAX_TRUSTED, NULL, 0,
           "Peers whose X-Forwarded-For / X-Real-IP are believed (a bare address is /32 or /128)"),
    RL_SET("headers", GW_SET_ENUM, headers, "legacy", 0, 0, header_names, 0,
           "Rate-limit headers: X-RateLimit-* (legacy), RateLimit and RateLimit-Policy (ietf), both or none"),
    RL_SET("on_store_error", GW_SET_ENUM, on_error, "local", 0, 0, err_names, 0,
           "Who decides when the store fails or is late: a local bucket, allow, or deny (503)"),
    RL_SET("store_timeout", GW_SET_DURATION, store_timeout_ms, "100ms", 1, 60000, NULL, 0,
           "How long a request waits for the store before on_store_error decides"),
    RL_SET("exempt", GW_SET_PREFIXES, exempt, "/health,/info,/metrics,/services/health", 0, RL_MAX_EXEMPT,
           NULL, 0,
           "Path prefixes (matched at a '/' boundary) never limited (the gateway's probes and scrapes); [] "
           "limits everything"),
    RL_SET("limit_admin", GW_SET_BOOL, limit_admin, "false", 0, 0, NULL, 0,
           "Also limit requests that passed admin authentication (adminauth's admin.user); by default they "
           "are not counted (adminauth throttles wrong credentials itself)"),
    RL_SET("disabled", GW_SET_BOOL, disabled, "false", 0, 0, NULL, GW_SET_ROUTE,
           "Per route only: no limit and no headers on that route"),
    {.name = NULL},
};

/* ---------------------------------------------------------------------------------------------------
 * settings: what the table cannot say */

static int check_rpm(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, "rpm");
    double v;
    if (n && h->conf_double(n, &v, err, errlen) == 0 && !(v > 0))
        return h->conf_error(n, err, errlen, RL_NAME ".rpm: expected a number above 0 and at most %.0f",
                             RL_MAX_RATE);
    return 0;
}

static int rl_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, "disabled");
    if (n)
        return h->conf_error(n, err, errlen,
                             RL_NAME ".disabled: a per-route setting (the whole filter: enabled: false)");
    return check_rpm(h, conf, err, errlen);
}

static int rl_route_check(const gw_host *h, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    (void)inst;
    return check_rpm(h, conf, err, errlen);
}

/* gw_cidr -> the 128-bit form (IPv4 as IPv4-mapped IPv6) the address code matches. */
static void to_rl_cidr(const gw_cidr *c, rl_cidr *out)
{
    memset(out, 0, sizeof *out);
    if (c->family == 4) {
        out->net.a[10] = out->net.a[11] = 0xff;
        memcpy(&out->net.a[12], c->addr, 4);
        out->bits = 96u + c->bits;
    } else {
        memcpy(out->net.a, c->addr, 16);
        out->bits = c->bits;
    }
}

static rl_worker *worker_of(rl_inst *in, gw_req *req)
{
    rl_workers *ws = atomic_load(&in->workers);
    unsigned w = in->h->worker(req);
    return ws && w < ws->n ? ws->w[w] : NULL;
}

static int rl_worker_init(void *inst, unsigned worker, unsigned workers)
{
    rl_inst *in = inst;
    rl_workers *ws = atomic_load(&in->workers);
    if (!ws) {
        rl_workers *mine = calloc(1, sizeof *mine + (size_t)workers * sizeof mine->w[0]);
        if (!mine) return -1;
        mine->n = workers;
        if (atomic_compare_exchange_strong(&in->workers, &ws, mine))
            ws = mine;
        else
            free(mine); /* another worker was first: ws is its table */
    }
    if (worker >= ws->n) return -1;
    ws->w[worker] = calloc(1, sizeof(rl_worker));
    return ws->w[worker] ? 0 : -1;
}

static void rl_worker_fini(void *inst, unsigned worker)
{
    rl_inst *in = inst;
    rl_workers *ws = atomic_load(&in->workers);
    if (!ws || worker >= ws->n) return;
    free(ws->w[worker]);
    ws->w[worker] = NULL;
}

/* The store failed or was too slow: on_store_error decides. */
static gw_result fallback(rl_inst *in, rl_state *st)
{
    const gw_host *h = in->h;
    gw_req *req = st->req;
    if (in->m_fallback)
        h->metric_add(in->m_fallback, req, (const char *const[]){err_names[in->s->on_error]}, 1);
    switch (in->s->on_error) {
    case RL_ERR_ALLOW:
        return GW_CONTINUE;
    case RL_ERR_DENY:
        rl_set_header_u64(h, req, "Retry-After", 1);
        return rl_respond_json(in, req, 503, "Service Unavailable",
                               "Rate limiting is unavailable; try again shortly");
    default:
        break;
    }
    if (!st->w) return GW_ERROR;
    gw_bucket_result br;
    rl_local_take(st->w, st->key, st->cap, st->rate, h->unix_ms(), &br);
    return rl_verdict(in, req, st->cap, st->rate, &br);
}

static void store_state(rl_inst *in, rl_state *st, bool ok, const char *why)
{
    const gw_host *h = in->h;
    rl_worker *w = st->w;
    if (w) {
        w->failing = !ok;
        if (!ok) w->retry_at_ms = h->now_ms() + RL_PROBE_INTERVAL_MS;
        if (st->probe) w->probing = false;
    }
    st->probe = false;
    bool was_failing = atomic_exchange(&in->store_failing, !ok);
    if (was_failing && ok)
        h->log(in->self, NULL, GW_LOG_INFO, "store available again: limits are shared through the store");
    else if (!was_failing && !ok)
        h->log(in->self, NULL, GW_LOG_WARN, "store unavailable (%s): on_store_error=%s%s", why,
               err_names[in->s->on_error],
               in->s->on_error == RL_ERR_LOCAL ? ", limiting with per-worker local buckets" : "");
}

static void take_done(void *arg, int status, const gw_bucket_result *br)
{
    rl_state *st = arg;
    if (!st->waiting) return; /* decided already (the guard timer fired): a late answer changes nothing */
    rl_inst *in = st->in;
    const gw_host *h = in->h;
    gw_req *req = st->req;
    st->waiting = false;
    if (st->timer) {
        h->timer_cancel(st->timer);
        st->timer = NULL;
    }
    gw_result res;
    if (status < 0 || !br) {
        store_state(in, st, false, "store error");
        res = fallback(in, st);
    } else {
        store_state(in, st, true, NULL);
        res = rl_verdict(in, req, st->cap, st->rate, br);
    }
    h->resume(req, res); /* may end the request: nothing of it is touched afterwards */
}

static void guard_fired(gw_req *req, void *arg)
{
    rl_state *st = arg;
    st->timer = NULL; /* invalid once fired */
    if (!st->waiting) return;
    st->waiting = false;
    store_state(st->in, st, false, "timeout");
    gw_result res = fallback(st->in, st);
    st->in->h->resume(req, res);
}

/* The request ended while a probe was out (client gone): let another request probe. */
static void state_cleanup(void *arg)
{
    rl_state *st = arg;
    if (st->waiting && st->probe && st->w) st->w->probing = false;
    st->waiting = false;
}

/* ---------------------------------------------------------------------------------------------------
 * the request phase */

static bool exempt(const rl_inst *in, gw_strv path)
{
    const char *const *list = in->s->exempt.v;
    for (size_t i = 0; i < in->s->exempt.n; i++) {
        const char *e = list[i];
        size_t n = strlen(e);
        if (n == 1) return true; /* "/" */
        if (path.n >= n && memcmp(path.p, e, n) == 0 && (path.n == n || path.p[n] == '/')) return true;
    }
    return false;
}

/* consumer.rate_limit: requests per minute, decimal, > 0. */
static bool consumer_rate(const gw_host *h, gw_req *req, double *rpm)
{
    gw_strv v;
    if (!h->req_get(req, "consumer.rate_limit", &v) || v.n == 0 || v.n > 31) return false;
    if (v.n <= 15) { /* apikey writes whole numbers: read them without strtod (this runs on every request) */
        uint64_t k = 0;
        size_t i = 0;
        while (i < v.n && v.p[i] >= '0' && v.p[i] <= '9')
            k = k * 10 + (uint64_t)(v.p[i++] - '0');
        if (i == v.n) {
            if (k == 0 || k > RL_MAX_RATE) return false;
            *rpm = (double)k;
            return true;
        }
    }
    char buf[32];
    memcpy(buf, v.p, v.n);
    buf[v.n] = '\0';
    char *end;
    double d = strtod(buf, &end);
    if (end == buf || *end != '\0' || !(d > 0) || d > RL_MAX_RATE) return false;
    *rpm = d;
    return true;
}

/* Appends n bytes to key (NUL-terminated, cut at its size): the per-request key without printf. */
static size_t key_put(char *key, size_t cap, size_t o, const char *s, size_t n)
{
    if (o >= cap) return o;
    size_t k = n < cap - 1 - o ? n : cap - 1 - o;
    memcpy(key + o, s, k);
    key[o + k] = '\0';
    return o + k;
}

/* A route whose merged limit differs from the pipeline's has buckets of its own, and its rpm wins over a
 * key's rate_limit. */
static int identity(rl_inst *in, gw_req *req, const rl_conf *rc, rl_state *st, double *rpm)
{
    const gw_host *h = in->h;
    size_t o = 0;
    bool own_rpm = rc->rpm != in->s->rpm, own_burst = rc->burst != in->s->burst;
    if (own_rpm || own_burst) {
        gw_strv route = h->route(req);
        if (route.n > 64)
            o = (size_t)snprintf(st->key, sizeof st->key, "r#%016llx|",
                                 (unsigned long long)rl_fnv1a(route.p, route.n));
        else
            o = (size_t)snprintf(st->key, sizeof st->key, "r%zu:%.*s|", route.n, (int)route.n, route.p);
    }
    gw_strv id;
    bool have_id = h->struct_size > offsetof(gw_host, req_get) && h->req_get &&
                   h->req_get(req, "consumer.id", &id) && id.n > 0;
    if (have_id) {
        double krpm;
        if (consumer_rate(h, req, &krpm) && !own_rpm) *rpm = krpm;
        if (id.n > RL_MAX_ID)
            snprintf(st->key + o, sizeof st->key - o, "key#%016llx",
                     (unsigned long long)rl_fnv1a(id.p, id.n));
        else
            key_put(st->key, sizeof st->key, key_put(st->key, sizeof st->key, o, "key:", 4), id.p, id.n);
        return 0;
    }
    rl_ip ip;
    if (!rl_client_ip(h, req, in->trusted, in->ntrusted, &ip)) {
        gw_strv peer = h->client_ip(req); /* not an address we know (a unix socket?): as it is */
        if (peer.n > 64)
            snprintf(st->key + o, sizeof st->key - o, "peer#%016llx",
                     (unsigned long long)rl_fnv1a(peer.p, peer.n));
        else
            snprintf(st->key + o, sizeof st->key - o, "peer:%.*s", (int)peer.n, peer.p);
        return 0;
    }
    char text[RL_IP_TEXT];
    rl_ip_format(&ip, text);
    key_put(st->key, sizeof st->key, key_put(st->key, sizeof st->key, o, "ip:", 3), text, strlen(text));
    return 0;
}

static gw_result rl_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    rl_inst *in = inst;
    const gw_host *h = in->h;
    const rl_conf *rc = route_conf ? route_conf : in->s; /* the host passes the pipeline's on other routes */
    rl_state *st = state;
    if (rc->disabled) return GW_CONTINUE;
    if (exempt(in, h->path(req))) return GW_CONTINUE;
    gw_strv admin;
    if (!in->s->limit_admin && h->req_get && h->req_get(req, "admin.user", &admin) && admin.n > 0)
        return GW_CONTINUE;

    double rpm = rc->rpm;
    double burst = (double)rc->burst;
    memset(st, 0, sizeof *st);
    st->in = in;
    st->req = req;
    st->w = worker_of(in, req);
    if (identity(in, req, rc, st, &rpm) != 0) return GW_ERROR;
    st->cap = burst;
    st->rate = rpm / 60.0;

    rl_worker *w = st->w;
    if (w && w->failing) {
        uint64_t now = h->now_ms();
        if (w->probing || now < w->retry_at_ms) return fallback(in, st);
        w->probing = true; /* this request asks the store again */
        st->probe = true;
    }
    if (h->on_cleanup(req, state_cleanup, st) != 0) {
        if (st->probe) w->probing = false;
        return GW_ERROR;
    }
    st->waiting = true;
    if (h->store_take(req, st->key, st->cap, st->rate, 1.0, take_done, st) != 0) {
        st->waiting = false;
        store_state(in, st, false, "the call could not be started");
        return fallback(in, st);
    }
    st->timer = h->timer_start(req, in->s->store_timeout_ms, guard_fired, st);
    return GW_WAIT;
}

/* ---------------------------------------------------------------------------------------------------
 * lifecycle */

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

static void *rl_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (!HAS(h, store_take) || !HAS(h, resume) || !HAS(h, timer_start) || !HAS(h, on_cleanup) ||
        !HAS(h, respond) || !HAS(h, header_set) || !HAS(h, settings)) {
        snprintf(err, errlen,
                 "ratelimit: the host lacks the store, timer or cleanup calls this filter needs");
        return NULL;
    }
    rl_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "ratelimit: out of memory");
        return NULL;
    }
    in->s = h->settings(self);
    in->headers = header_bits[in->s->headers];
    in->ntrusted = in->s->trusted.n;
    if (in->ntrusted && !(in->trusted = calloc(in->ntrusted, sizeof *in->trusted))) {
        snprintf(err, errlen, "ratelimit: out of memory");
        free(in);
        return NULL;
    }
    for (size_t i = 0; i < in->ntrusted; i++)
        to_rl_cidr((const gw_cidr *)in->s->trusted.v + i, &in->trusted[i]);
    in->h = h;
    in->self = self;
    atomic_init(&in->workers, NULL);
    atomic_init(&in->store_failing, false);
    if (HAS(h, metric_register)) {
        in->m_limited = h->metric_register(self, GW_METRIC_COUNTER, "gateway_rate_limited_total",
                                           "Requests refused by the rate limiter (429)", NULL, NULL, 0);
        in->m_fallback =
            h->metric_register(self, GW_METRIC_COUNTER, "gateway_ratelimit_store_fallback_total",
                               "Rate-limit decisions made without the store (store error or timeout), "
                               "by on_store_error mode",
                               (const char *const[]){"decision", NULL}, NULL, 0);
    }
    return in;
}

static void rl_destroy(void *inst)
{
    rl_inst *in = inst;
    rl_workers *ws = atomic_load(&in->workers);
    if (ws) {
        for (unsigned i = 0; i < ws->n; i++)
            free(ws->w[i]);
        free(ws);
    }
    free(in->trusted);
    free(in);
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = RL_NAME,
    .version = "1.0.0",
    .description = "Rate limiting: a token bucket per API key or client IP, in the store",
    .config_check = rl_config_check,
    .create = rl_create,
    .worker_init = rl_worker_init,
    .worker_fini = rl_worker_fini,
    .destroy = rl_destroy,
    .route_check = rl_route_check,
    .on_request = rl_on_request,
    .req_state_size = sizeof(rl_state),
    .settings = rl_settings_table,
    .settings_size = sizeof(rl_conf),
};
