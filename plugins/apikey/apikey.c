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

#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AK_MAX_CACHE_TTL_MS (3600u * 1000u)
#define AK_MAX_STALE_MS (24u * 3600u * 1000u)

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

/* ---------------------------------------------------------------------------------------------------
 * settings */

/* The table the host checks and fills (host->settings); per route, `require` over the pipeline's. */
typedef struct {
    bool require;
    const char *header, *prefix, *admin_path;
    uint64_t cache_ttl_ms, stale_ms;
} ak_conf;

#define AK_SET(key, type, field, def, lo, hi, flags, help)                                                  \
    {key, type, offsetof(ak_conf, field), def, lo, hi, NULL, flags, help}
static const gw_setting ak_settings_table[] = {
    AK_SET("require", GW_SET_BOOL, require, "false", 0, 0, GW_SET_ROUTE,
           "Refuse requests without a key (401); false: they pass anonymously"),
    AK_SET("header", GW_SET_STRING, header, "X-API-Key", 0, 0, 0,
           "The request header clients put the key in (Authorization: Bearer <prefix>... works too)"),
    AK_SET("prefix", GW_SET_STRING, prefix, "gw_", 0, 0, 0,
           "Every key starts with it; a Bearer token without it is not an API key"),
    AK_SET("cache_ttl", GW_SET_DURATION, cache_ttl_ms, "5s", 0, AK_MAX_CACHE_TTL_MS, 0,
           "How long a worker trusts what the store said about a key; 0 = ask every time"),
    AK_SET("stale_if_error", GW_SET_DURATION, stale_ms, "5m", 0, AK_MAX_STALE_MS, 0,
           "While the store fails, a verdict it gave this recently still answers; 0 = off (503)"),
    AK_SET("admin_path", GW_SET_STRING, admin_path, "/admin/apikeys", 0, 0, 0,
           "Where the key administration endpoints are served"),
    {.name = NULL},
};

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A string setting the table has type-checked already; NULL when not given. */
static const char *given(const gw_host *h, const gw_conf *conf, const char *key, size_t max,
                         const gw_conf **node, char *err, size_t errlen, int *rc)
{
    *node = h->conf_get(conf, key);
    const char *s = *node ? h->conf_str(*node) : NULL;
    *rc = s && strlen(s) > max
              ? h->conf_error(*node, err, errlen, AK_NAME ".%s: longer than %zu bytes", key, max)
              : 0;
    return *rc ? NULL : s;
}

static int check_header(const gw_host *h, const gw_conf *n, const char *v, char *err, size_t errlen)
{
    if (!v[0]) return h->conf_error(n, err, errlen, AK_NAME ".header: must not be empty");
    for (const char *c = v; *c; c++)
        if (!is_tchar((unsigned char)*c))
            return h->conf_error(n, err, errlen, AK_NAME ".header: '%s' is not a valid header name", v);
    if (strcasecmp(v, "Authorization") == 0)
        return h->conf_error(n, err, errlen,
                             AK_NAME
                             ".header: Authorization is read for Bearer tokens already; name another header");
    return 0;
}

static int check_prefix(const gw_host *h, const gw_conf *n, const char *v, char *err, size_t errlen)
{
    if (!v[0])
        return h->conf_error(n, err, errlen,
                             AK_NAME ".prefix: must not be empty (Bearer tokens are recognised by it)");
    for (const char *c = v; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
              ch == '-' || ch == '.'))
            return h->conf_error(n, err, errlen,
                                 AK_NAME ".prefix: only letters, digits, '_', '-' and '.' are allowed");
    }
    return 0;
}

static int check_admin_path(const gw_host *h, const gw_conf *n, const char *p, char *err, size_t errlen)
{
    size_t len = strlen(p);
    if (len < 2 || p[0] != '/' || p[len - 1] == '/')
        return h->conf_error(n, err, errlen,
                             AK_NAME ".admin_path: expected a path like /admin/apikeys (no trailing '/')");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  strchr("/-._~", ch);
        if (!ok || (ch == '/' && p[i + 1] == '/'))
            return h->conf_error(n, err, errlen, AK_NAME ".admin_path: '%s' is not a plain path", p);
        if (ch == '/' && p[i + 1] == '.' &&
            (p[i + 2] == '/' || !p[i + 2] || (p[i + 2] == '.' && (p[i + 3] == '/' || !p[i + 3]))))
            return h->conf_error(n, err, errlen, AK_NAME ".admin_path: no '.' or '..' segments");
    }
    return 0;
}

/* What the table cannot say: the strings' alphabets and lengths. */
static int ak_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n;
    int rc;
    const char *v;
    if ((v = given(h, conf, "header", AK_MAX_HEADER, &n, err, errlen, &rc)) &&
        check_header(h, n, v, err, errlen))
        return -1;
    if (rc || ((v = given(h, conf, "prefix", AK_MAX_PREFIX, &n, err, errlen, &rc)) &&
               check_prefix(h, n, v, err, errlen)))
        return -1;
    if (rc || ((v = given(h, conf, "admin_path", AK_MAX_ADMIN_PATH, &n, err, errlen, &rc)) &&
               check_admin_path(h, n, v, err, errlen)))
        return -1;
    return rc;
}

/* The instance's copy of the settings, in the fixed-size form the rest of the filter reads. */
static void settings_copy(const ak_conf *c, ak_settings *s)
{
    memset(s, 0, sizeof *s);
    s->require = c->require;
    snprintf(s->header, sizeof s->header, "%s", c->header);
    snprintf(s->prefix, sizeof s->prefix, "%s", c->prefix);
    snprintf(s->admin_path, sizeof s->admin_path, "%s", c->admin_path);
    s->cache_ttl_ms = c->cache_ttl_ms;
    s->stale_ms = c->stale_ms;
    s->prefix_len = strlen(s->prefix);
    s->admin_len = strlen(s->admin_path);
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
    case AK_C_INVALID: return unauthorized(in, req, "Invalid API key record");
    default: return unauthorized(in, req, "Invalid API key");
    }
    if (id->expires_ms && (int64_t)h->unix_ms() >= id->expires_ms) return unauthorized(in, req, "API key has expired");
    h->header_remove(req, GW_HDR_REQUEST, in->s.header);
    if (from_auth) h->header_remove(req, GW_HDR_REQUEST, "Authorization");
    if (h->header_set(req, GW_HDR_REQUEST, "X-Consumer-ID", id->id, id->id_len) != 0 ||
        h->header_set(req, GW_HDR_REQUEST, "X-Consumer-Name", id->name, id->name_len) != 0) {
        h->log(in->self, req, GW_LOG_ERROR, "API key %s: its name cannot be sent as a header", id->id);
        return GW_ERROR;
    }
    /* For the filters after us (the rate limiter): who this is and the key's own limit. */
    if (h->struct_size > offsetof(gw_host, req_set) && h->req_set) {
        h->req_set(req, "consumer.id", id->id, id->id_len);
        h->req_set(req, "consumer.name", id->name, id->name_len);
        if (id->rate_len) h->req_set(req, "consumer.rate_limit", id->rate_text, id->rate_len);
    }
    return GW_CONTINUE;
}

static void ident_from_record(ak_ident *id, const ak_record *rec)
{
    id->state = rec->active ? AK_C_VALID : AK_C_REVOKED;
    id->expires_ms = rec->expires_ms;
    id->rate_limit = rec->rate_limit;
    strcpy(id->id, rec->id);
    ak_name_forwardable(rec->name, id->name, sizeof id->name); /* a header value: no raw bad bytes */
    id->id_len = (uint16_t)strlen(id->id);
    id->name_len = (uint16_t)strlen(id->name);
    int n = rec->rate_limit > 0
                ? snprintf(id->rate_text, sizeof id->rate_text, "%lld", (long long)rec->rate_limit)
                : 0;
    id->rate_len = n > 0 && (size_t)n < sizeof id->rate_text ? (uint8_t)n : 0;
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
        if (ak_record_parse(value, len, &rec) == 0) {
            ident_from_record(&id, &rec);
        } else {
            /* 401 (cached like an unknown key); logged once, not on every use of the key */
            uint64_t tag;
            memcpy(&tag, p->digest, sizeof tag);
            if (atomic_exchange(&in->invalid_logged, tag) != tag)
                h->log(in->self, req, GW_LOG_ERROR,
                       "key store record %s is not a valid API key record: its key is refused (401); "
                       "list and delete it through the admin API",
                       p->store_key);
            id.state = AK_C_INVALID;
        }
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

    const ak_conf *rc = route_conf; /* the pipeline's or the route's merged settings */
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
    if (ak_sha256(in->sha256, key.p, key.n, digest) != 0) return GW_ERROR;
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
    EVP_MD_free(in->sha256);
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
    if (!HAS(h, store_get) || !HAS(h, store_set) || !HAS(h, store_del) || !HAS(h, store_list) ||
        !HAS(h, body) || !HAS(h, on_cleanup) || !HAS(h, resume) || !HAS(h, register_endpoint) ||
        !HAS(h, respond_error) || !HAS(h, settings)) {
        snprintf(err, errlen, "apikey: the host lacks the store, body, cleanup or endpoint calls this filter needs");
        return NULL;
    }
    ak_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "apikey: out of memory");
        return NULL;
    }
    settings_copy(h->settings(self), &in->s);
    in->h = h;
    in->self = self;
    atomic_init(&in->store_down, false);
    in->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL); /* NULL (no provider): ak_sha256 falls back */
    if (ak_cache_create(in) != 0) {
        EVP_MD_free(in->sha256);
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
    .on_request = ak_on_request,
    .settings = ak_settings_table,
    .settings_size = sizeof(ak_conf),
};
