/* apikey.c - the filter "apikey": API keys presented by clients, validated against the store.
 *
 *   pipeline:
 *     - name: apikey
 *       require: false           # a request without a key passes anonymously (per route: require: true)
 *       header: X-API-Key        # where clients put the key (or Authorization: Bearer <prefix>...)
 *       prefix: gw_              # every key starts with it; a Bearer token without it is not ours
 *       cache_ttl: 5s            # how long a worker trusts a validated key without asking the store; 0 = never
 *       stale_if_error: 5m       # while the store fails, a verdict it gave this recently still answers; 0 = off
 *       admin_path: /admin/apikeys
 *
 * Keys are 32 random bytes (OpenSSL RAND_bytes), shown once as <prefix><base64url>; the store keeps only
 * their SHA-256: one record per key, "k:<hex digest>" -> {"id","name","rate_limit"?,"active","created_at",
 * "expires_at"?}, persistent. The admin endpoints (apikey_admin.c) create, list, revoke and delete them.
 *
 * Request phase (every request except those below admin_path): the client's own X-Consumer-ID and
 * X-Consumer-Name are always removed. The key comes from `header`, or from `Authorization: Bearer <token>`
 * when the token starts with `prefix` (any other Authorization is left alone for the backend). No key: the
 * request passes anonymously unless the route (or the filter) requires one. A key that is unknown, revoked
 * or expired is answered 401; a valid one is removed from the request and its id and name are forwarded
 * as X-Consumer-ID and X-Consumer-Name.
 *
 * Each worker caches what the store said about a key (valid, revoked or unknown) for cache_ttl, and keeps
 * it for stale_if_error to answer while the store fails (apikey_cache.c). A revoke or delete through this
 * gateway makes every worker drop that key at once (other gateways sharing a Redis store see it within
 * cache_ttl, or after an outage).
 *
 * Waiting requests: the store callbacks and the cleanup get a token, not a pointer (apikey_pend.c). */
#include "apikey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AK_DEFAULT_HEADER "X-API-Key"
#define AK_DEFAULT_PREFIX "gw_"
#define AK_DEFAULT_CACHE_TTL_MS 5000u
#define AK_DEFAULT_ADMIN_PATH "/admin/apikeys"
#define AK_MAX_CACHE_TTL_MS (3600u * 1000u)
#define AK_DEFAULT_STALE_MS (300u * 1000u)
#define AK_MAX_STALE_MS (24u * 3600u * 1000u)

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)



/* ---------------------------------------------------------------------------------------------------
 * settings */

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A string setting: NULL node = keep the default. */
static int read_string(const gw_host *h, const gw_conf *conf, const char *key, char *buf, size_t cap,
                       const gw_conf **node, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, key);
    *node = n;
    if (!n) return 0;
    const char *s = h->conf_kind(n) == GW_CONF_SCALAR ? h->conf_str(n) : NULL;
    if (!s) return h->conf_error(n, err, errlen, "%s: expected a string", key);
    if (strlen(s) >= cap) return h->conf_error(n, err, errlen, "%s: longer than %zu bytes", key, cap - 1);
    strcpy(buf, s);
    return 0;
}

/* A duration setting: NULL node = keep the default; an invalid value is refused naming the key. */
static int read_duration(const gw_host *h, const gw_conf *conf, const char *key, uint64_t *out,
                         const gw_conf **node, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, key);
    *node = n;
    if (!n || h->conf_duration_ms(n, out, NULL, 0) == 0) return 0;
    const char *v = h->conf_kind(n) == GW_CONF_SCALAR ? h->conf_str(n) : NULL;
    return h->conf_error(n, err, errlen, "%s: expected a duration such as 250ms, 5s or 5m, got '%s'", key,
                         v ? v : "(not a scalar)");
}

static int settings_read(const gw_host *h, const gw_conf *conf, ak_settings *s, char *err, size_t errlen)
{
    static const char *const keys[] = {"require",    "header",         "prefix", "cache_ttl",
                                       "admin_path", "stale_if_error", NULL};
    memset(s, 0, sizeof *s);
    strcpy(s->header, AK_DEFAULT_HEADER);
    strcpy(s->prefix, AK_DEFAULT_PREFIX);
    strcpy(s->admin_path, AK_DEFAULT_ADMIN_PATH);
    s->cache_ttl_ms = AK_DEFAULT_CACHE_TTL_MS;
    s->stale_ms = AK_DEFAULT_STALE_MS;
    if (conf && h->conf_kind(conf) != GW_CONF_MAP)
        return h->conf_error(conf, err, errlen, "apikey: expected a mapping of settings");
    if (!conf) goto derived;
    if (h->conf_only(conf, keys, err, errlen) != 0) return -1;

    const gw_conf *n = h->conf_get(conf, "require");
    if (n && h->conf_bool(n, &s->require, err, errlen) != 0) return -1;

    if (read_string(h, conf, "header", s->header, sizeof s->header, &n, err, errlen) != 0) return -1;
    if (n) {
        if (!s->header[0]) return h->conf_error(n, err, errlen, "header: must not be empty");
        for (const char *c = s->header; *c; c++)
            if (!is_tchar((unsigned char)*c))
                return h->conf_error(n, err, errlen, "header: '%s' is not a valid header name", s->header);
        if (strcasecmp(s->header, "Authorization") == 0)
            return h->conf_error(n, err, errlen,
                                 "header: Authorization is read for Bearer tokens already; name another header");
    }

    if (read_string(h, conf, "prefix", s->prefix, sizeof s->prefix, &n, err, errlen) != 0) return -1;
    if (n) {
        if (!s->prefix[0])
            return h->conf_error(n, err, errlen, "prefix: must not be empty (Bearer tokens are recognised by it)");
        for (const char *c = s->prefix; *c; c++) {
            unsigned char ch = (unsigned char)*c;
            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                  ch == '-' || ch == '.'))
                return h->conf_error(n, err, errlen, "prefix: only letters, digits, '_', '-' and '.' are allowed");
        }
    }

    if (read_duration(h, conf, "cache_ttl", &s->cache_ttl_ms, &n, err, errlen) != 0) return -1;
    if (n && s->cache_ttl_ms > AK_MAX_CACHE_TTL_MS)
        return h->conf_error(n, err, errlen, "cache_ttl: at most 1h (a revoke elsewhere must take effect)");
    if (read_duration(h, conf, "stale_if_error", &s->stale_ms, &n, err, errlen) != 0) return -1;
    if (n && s->stale_ms > AK_MAX_STALE_MS) return h->conf_error(n, err, errlen, "stale_if_error: at most 24h");

    if (read_string(h, conf, "admin_path", s->admin_path, sizeof s->admin_path, &n, err, errlen) != 0) return -1;
    if (n) {
        const char *p = s->admin_path;
        size_t len = strlen(p);
        if (len < 2 || p[0] != '/' || p[len - 1] == '/')
            return h->conf_error(n, err, errlen, "admin_path: expected a path like /admin/apikeys (no trailing '/')");
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)p[i];
            bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      strchr("/-._~", ch);
            if (!ok || (ch == '/' && p[i + 1] == '/'))
                return h->conf_error(n, err, errlen, "admin_path: '%s' is not a plain path", p);
            if (ch == '/' && p[i + 1] == '.' &&
                (p[i + 2] == '/' || !p[i + 2] || (p[i + 2] == '.' && (p[i + 3] == '/' || !p[i + 3]))))
                return h->conf_error(n, err, errlen, "admin_path: no '.' or '..' segments");
        }
    }
derived:
    s->prefix_len = strlen(s->prefix);
    s->admin_len = strlen(s->admin_path);
    return 0;
}

static int ak_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    ak_settings s;
    return settings_read(h, conf, &s, err, errlen);
}

/* Per route: routes[].filters.apikey: {require: bool}. */
typedef struct {
    bool require;
} ak_route;

static int route_read(const gw_host *h, const gw_conf *conf, ak_route *rc, char *err, size_t errlen)
{
    static const char *const keys[] = {"require", NULL};
    rc->require = false;
    if (h->conf_kind(conf) != GW_CONF_MAP)
        return h->conf_error(conf, err, errlen, "apikey: expected a mapping like {require: true}");
    if (h->conf_only(conf, keys, err, errlen) != 0) return -1;
    const gw_conf *n = h->conf_get(conf, "require");
    if (!n) return h->conf_error(conf, err, errlen, "apikey: 'require' is the only per-route setting and is missing");
    return h->conf_bool(n, &rc->require, err, errlen);
}

static int ak_route_check(const gw_host *h, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    ak_route rc;
    return route_read(h, conf, &rc, err, errlen);
}

static void *ak_route_create(const gw_host *h, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    ak_route tmp;
    if (route_read(h, conf, &tmp, err, errlen) != 0) return NULL;
    ak_route *rc = malloc(sizeof *rc);
    if (!rc) {
        snprintf(err, errlen, "apikey: out of memory");
        return NULL;
    }
    *rc = tmp;
    return rc;
}

static void ak_route_destroy(void *inst, void *route_conf)
{
    free(route_conf);
}

/* ---------------------------------------------------------------------------------------------------
 * the request phase */

static bool under_admin(const ak_inst *in, gw_strv path)
{
    size_t n = in->s.admin_len;
    return path.n >= n && memcmp(path.p, in->s.admin_path, n) == 0 && (path.n == n || path.p[n] == '/');
}

static gw_result unauthorized(const ak_inst *in, gw_req *req, const char *message)
{
    return in->h->respond_error(req, 401, message) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result store_unavailable(const ak_inst *in, gw_req *req)
{
    return in->h->respond_error(req, 503, "the key store is unavailable") == 0 ? GW_RESPOND : GW_ERROR;
}

/* The verdict on a key the store (or the cache) knows about. */
static gw_result judge(const ak_inst *in, gw_req *req, const ak_ident *id, bool from_auth)
{
    const gw_host *h = in->h;
    switch (id->state) {
    case AK_C_VALID: break;
    case AK_C_REVOKED: return unauthorized(in, req, "API key has been revoked");
    default: return unauthorized(in, req, "Invalid API key");
    }
    if (id->expires_ms && (int64_t)h->unix_ms() >= id->expires_ms) return unauthorized(in, req, "API key has expired");
    h->header_remove(req, GW_HDR_REQUEST, in->s.header);
    if (from_auth) h->header_remove(req, GW_HDR_REQUEST, "Authorization");
    if (h->header_set(req, GW_HDR_REQUEST, "X-Consumer-ID", id->id, strlen(id->id)) != 0 ||
        h->header_set(req, GW_HDR_REQUEST, "X-Consumer-Name", id->name, strlen(id->name)) != 0) {
        h->log(in->self, req, GW_LOG_ERROR, "API key %s: its name cannot be sent as a header", id->id);
        return GW_ERROR;
    }
    /* For the filters after us (the rate limiter): who this is and the key's own limit. */
    if (h->struct_size > offsetof(gw_host, req_set) && h->req_set) {
        h->req_set(req, "consumer.id", id->id, strlen(id->id));
        h->req_set(req, "consumer.name", id->name, strlen(id->name));
        if (id->rate_limit > 0) {
            char lim[24];
            int n = snprintf(lim, sizeof lim, "%lld", (long long)id->rate_limit);
            h->req_set(req, "consumer.rate_limit", lim, (size_t)n);
        }
    }
    return GW_CONTINUE;
}

static void ident_from_record(ak_ident *id, const ak_record *rec)
{
    id->state = rec->active ? AK_C_VALID : AK_C_REVOKED;
    id->expires_ms = rec->expires_ms;
    id->rate_limit = rec->rate_limit;
    strcpy(id->id, rec->id);
    strcpy(id->name, rec->name);
}

/* The store could not answer about a key: the verdict it gave within stale_if_error answers (expiry still
 * applies), else 503 as without a cache. The outage is logged when it starts and when it ends (not per
 * request; the failed calls are counted in gateway_store_errors_total, the stale answers here). */
static gw_result store_failed(ak_inst *in, gw_req *req, const uint8_t *digest, bool from_auth, int status)
{
    const gw_host *h = in->h;
    if (!atomic_exchange(&in->store_down, true))
        h->log(in->self, NULL, GW_LOG_WARN,
               "key store unavailable (status %d): keys it confirmed within stale_if_error (%llu ms) are "
               "answered from the cache, other keys get 503",
               status, (unsigned long long)in->s.stale_ms);
    const ak_ident *st = ak_cache_stale(in, req, digest);
    if (!st) return store_unavailable(in, req);
    if (in->stale_total && HAS(h, metric_add)) h->metric_add(in->stale_total, req, NULL, 1);
    return judge(in, req, st, from_auth);
}

static void store_answered(ak_inst *in)
{
    if (atomic_load_explicit(&in->store_down, memory_order_relaxed) && atomic_exchange(&in->store_down, false))
        in->h->log(in->self, NULL, GW_LOG_INFO, "key store available again: keys are checked with it again");
}

static void validate_done(void *token, int status, const char *value, size_t len)
{
    ak_pend *p = ak_pend_find(token);
    if (!p) return; /* the request ended meanwhile */
    ak_inst *in = p->in;
    const gw_host *h = in->h;
    gw_req *req = p->req;
    ak_ident id = {0};
    memcpy(id.digest, p->digest, AK_DIGEST_LEN);
    if (status < 0) {
        ak_finish(p, store_failed(in, req, p->digest, p->from_auth, status));
        return;
    }
    store_answered(in);
    if (status == 0) {
        ak_record rec;
        if (ak_record_parse(value, len, &rec) != 0) {
            h->log(in->self, req, GW_LOG_ERROR, "key store record %s is not a valid API key record", p->store_key);
            ak_finish(p, GW_ERROR);
            return;
        }
        ident_from_record(&id, &rec);
    } else {
        id.state = AK_C_UNKNOWN;
    }
    ak_cache_put(in, req, &id, p->generation);
    ak_finish(p, judge(in, req, &id, p->from_auth));
}

/* "Bearer <token>" (scheme case-insensitive) -> the token, or false. */
static bool bearer_token(gw_strv v, gw_strv *tok)
{
    if (v.n < 7 || strncasecmp(v.p, "Bearer", 6) != 0 || (v.p[6] != ' ' && v.p[6] != '\t')) return false;
    size_t i = 6;
    while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t'))
        i++;
    size_t end = v.n;
    while (end > i && (v.p[end - 1] == ' ' || v.p[end - 1] == '\t'))
        end--;
    *tok = (gw_strv){v.p + i, end - i};
    return end > i;
}

static size_t header_occurrences(const gw_host *h, gw_req *req, const char *name)
{
    size_t n = h->header_count(req, GW_HDR_REQUEST), found = 0, len = strlen(name);
    for (size_t i = 0; i < n; i++) {
        gw_strv hn, hv;
        if (h->header_at(req, GW_HDR_REQUEST, i, &hn, &hv) && hn.n == len && strncasecmp(hn.p, name, len) == 0)
            found++;
    }
    return found;
}

static gw_result ak_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    ak_inst *in = inst;
    const gw_host *h = in->h;
    if (under_admin(in, h->path(req))) return GW_CONTINUE; /* our endpoints: adminauth's business */

    /* only this filter says who the consumer is */
    h->header_remove(req, GW_HDR_REQUEST, "X-Consumer-ID");
    h->header_remove(req, GW_HDR_REQUEST, "X-Consumer-Name");

    const ak_route *rc = route_conf;
    bool require = rc ? rc->require : in->s.require;
    gw_strv key = {0}, auth, tok;
    bool have = false, from_auth = false;
    if (h->header_get(req, GW_HDR_REQUEST, in->s.header, &key)) {
        have = true;
        if (header_occurrences(h, req, in->s.header) > 1)
            return unauthorized(in, req, "More than one API key presented");
    }
    if (h->header_get(req, GW_HDR_REQUEST, "Authorization", &auth) && bearer_token(auth, &tok) &&
        tok.n >= in->s.prefix_len && memcmp(tok.p, in->s.prefix, in->s.prefix_len) == 0) {
        if (have && (tok.n != key.n || memcmp(tok.p, key.p, key.n) != 0))
            return unauthorized(in, req, "More than one API key presented");
        key = tok;
        have = from_auth = true;
    }
    if (!have) return require ? unauthorized(in, req, "API key required") : GW_CONTINUE;
    if (key.n == 0 || key.n > AK_MAX_PRESENTED) return unauthorized(in, req, "Invalid API key");

    uint8_t digest[AK_DIGEST_LEN];
    if (ak_sha256(key.p, key.n, digest) != 0) return GW_ERROR;
    const ak_ident *hit = ak_cache_fresh(in, req, digest);
    if (hit) return judge(in, req, hit, from_auth);

    ak_pend *p = ak_pend_new(in, req, AK_OP_VALIDATE);
    if (!p) return GW_ERROR;
    memcpy(p->digest, digest, sizeof digest);
    p->from_auth = from_auth;
    p->require = require;
    p->generation = atomic_load(&in->generation);
    memcpy(p->store_key, AK_STORE_PREFIX, 2);
    ak_hex(digest, AK_DIGEST_LEN, p->store_key + 2);
    if (h->store_get(req, p->store_key, validate_done, (void *)p->token) != 0) {
        ak_pend_release(p);
        return store_failed(in, req, digest, from_auth, -1);
    }
    return GW_WAIT;
}

/* ---------------------------------------------------------------------------------------------------
 * lifecycle */

static void ak_destroy(void *inst)
{
    ak_inst *in = inst;
    ak_cache_destroy(in);
    free(in);
}

static int ak_worker_init(void *inst, unsigned worker, unsigned workers)
{
    return ak_cache_worker_init(inst, worker, workers);
}

static void ak_worker_fini(void *inst, unsigned worker)
{
    ak_cache_worker_fini(inst, worker);
}

static void *ak_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (!HAS(h, store_get) || !HAS(h, store_set) || !HAS(h, store_del) || !HAS(h, store_list) || !HAS(h, body) ||
        !HAS(h, on_cleanup) || !HAS(h, resume) || !HAS(h, register_endpoint) || !HAS(h, respond_error)) {
        snprintf(err, errlen, "apikey: the host lacks the store, body, cleanup or endpoint calls this filter needs");
        return NULL;
    }
    ak_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "apikey: out of memory");
        return NULL;
    }
    if (settings_read(h, conf, &in->s, err, errlen) != 0) {
        free(in);
        return NULL;
    }
    in->h = h;
    in->self = self;
    atomic_init(&in->store_down, false);
    if (ak_cache_create(in) != 0) {
        snprintf(err, errlen, "apikey: out of memory");
        free(in);
        return NULL;
    }
    if (HAS(h, metric_register))
        in->stale_total = h->metric_register(self, GW_METRIC_COUNTER, "gateway_apikey_stale_total",
                                             "Requests whose API key was judged from a cached verdict because "
                                             "the key store failed (stale_if_error)",
                                             NULL, NULL, 0);
    /* every method, routed (and 405'd with Allow) by the handler; a host that does not take "*" gets the
     * three methods the endpoints use, and answers other methods itself */
    if (h->register_endpoint(self, "*", in->s.admin_path, true, ak_admin_endpoint) != 0 &&
        (h->register_endpoint(self, "GET", in->s.admin_path, true, ak_admin_endpoint) != 0 ||
         h->register_endpoint(self, "POST", in->s.admin_path, true, ak_admin_endpoint) != 0 ||
         h->register_endpoint(self, "DELETE", in->s.admin_path, true, ak_admin_endpoint) != 0)) {
        snprintf(err, errlen, "apikey: cannot register the endpoints under %s", in->s.admin_path);
        ak_destroy(in);
        return NULL;
    }
    return in;
}


GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = AK_NAME,
    .version = "1.0.0",
    .description = "API keys: validates X-API-Key / Bearer keys, serves /admin/apikeys",
    .config_check = ak_config_check,
    .create = ak_create,
    .worker_init = ak_worker_init,
    .worker_fini = ak_worker_fini,
    .destroy = ak_destroy,
    .route_check = ak_route_check,
    .route_create = ak_route_create,
    .route_destroy = ak_route_destroy,
    .on_request = ak_on_request,
};
