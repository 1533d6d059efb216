/* apikey.c - the filter "apikey": API keys presented by clients, validated against the store.
 *
 *   pipeline:
 *     - name: apikey
 *       require: false           # a request without a key passes anonymously (per route: require: true)
 *       header: X-API-Key        # where clients put the key (or Authorization: Bearer <prefix>...)
 *       prefix: gw_              # every key starts with it; a Bearer token without it is not ours
 *       cache_ttl: 5s            # how long a worker trusts a validated key without asking the store; 0 = never
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
 * Each worker caches what the store said about a key (valid, revoked or unknown) for cache_ttl. A revoke or
 * delete through this gateway bumps a generation counter shared by the instance's workers, and every worker
 * drops its cache when it sees the new generation, so the change applies at once to the whole gateway
 * (other gateways sharing a Redis store see it within cache_ttl).
 *
 * Waiting requests: the store callbacks and the cleanup get a token, not a pointer; the contexts live in a
 * per-thread table. The callback of a request that ended is thus harmless whether the host still delivers
 * it or has cancelled it. */
#include "apikey.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define AK_DEFAULT_HEADER "X-API-Key"
#define AK_DEFAULT_PREFIX "gw_"
#define AK_DEFAULT_CACHE_TTL_MS 5000u
#define AK_DEFAULT_ADMIN_PATH "/admin/apikeys"
#define AK_MAX_CACHE_TTL_MS (3600u * 1000u)

#define AK_CACHE_SETS 64
#define AK_CACHE_WAYS 4

_Static_assert(sizeof(uintptr_t) >= 8, "tokens need 64-bit pointers");

/* ---------------------------------------------------------------------------------------------------
 * small helpers */

void ak_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int ak_random(uint8_t *out, size_t n)
{
    return n <= (size_t)INT32_MAX && RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

int ak_sha256(const char *in, size_t n, uint8_t out[AK_DIGEST_LEN])
{
    unsigned len = 0;
    return EVP_Digest(in, n, out, &len, EVP_sha256(), NULL) == 1 && len == AK_DIGEST_LEN ? 0 : -1;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Leap years in [1, y]. */
static int64_t leaps_through(int64_t y)
{
    return y / 4 - y / 100 + y / 400;
}

/* Days from 1970-01-01 to y-m-d (y >= 1970). */
static int64_t days_since_epoch(int64_t y, int m, int d)
{
    int64_t days = 365 * (y - 1970) + leaps_through(y - 1) - leaps_through(1969);
    for (int i = 1; i < m; i++)
        days += month_days(y, i);
    return days + d - 1;
}

/* n decimal digits at s into *out; false if any is not a digit. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339 date-time ("2030-01-02T03:04:05Z", "2030-01-02t03:04:05.5+01:00", a space instead of the T),
 * years 1970..9999, into unix milliseconds (fractions beyond milliseconds are dropped; a leap second
 * counts as :59.999). 0 or -1. */
int ak_parse_rfc3339(const char *s, int64_t *unix_ms)
{
    int y, mo, d, hh, mi, ss, ms = 0;
    size_t len = strlen(s);
    if (len < 20 || len > 64) return -1;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d))
        return -1;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return -1;
    if (!digits(s + 11, 2, &hh) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &ss))
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 3) ms = ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0) return -1;
        for (int i = n; i < 3; i++)
            ms *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59) return -1;
        offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0') return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || hh > 23 || mi > 59 || ss > 60)
        return -1;
    if (ss == 60) {
        ss = 59;
        ms = 999;
    }
    int64_t secs = days_since_epoch(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - (int64_t)offset_min * 60;
    if (secs < 0) return -1;
    *unix_ms = secs * 1000 + ms;
    return 0;
}

/* UTC, "2030-01-02T03:04:05Z", or "...05.123Z" when there are milliseconds. */
void ak_format_rfc3339(int64_t unix_ms, char *out, size_t outlen)
{
    time_t t = (time_t)(unix_ms / 1000);
    int ms = (int)(unix_ms % 1000);
    struct tm tm;
    if (unix_ms < 0 || !gmtime_r(&t, &tm)) {
        snprintf(out, outlen, "1970-01-01T00:00:00Z");
        return;
    }
    if (ms)
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    else
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static bool is_hex_id(const char *s, size_t n)
{
    if (n != AK_ID_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* A stored record; -1 when it is not one (the caller logs it). */
int ak_record_parse(const char *json, size_t len, ak_record *out)
{
    memset(out, 0, sizeof *out);
    cJSON *doc = cJSON_ParseWithLength(json, len);
    int rc = -1;
    if (!cJSON_IsObject(doc)) goto done;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(doc, "rate_limit");
    const cJSON *active = cJSON_GetObjectItemCaseSensitive(doc, "active");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(doc, "created_at");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(doc, "expires_at");
    if (!cJSON_IsString(id) || !is_hex_id(id->valuestring, strlen(id->valuestring))) goto done;
    if (!cJSON_IsString(name) || strlen(name->valuestring) > AK_MAX_NAME) goto done;
    if (!cJSON_IsBool(active) || !cJSON_IsString(created) || strlen(created->valuestring) >= sizeof out->created_at)
        goto done;
    if (ak_parse_rfc3339(created->valuestring, &out->created_ms) != 0) goto done;
    if (rl && !cJSON_IsNull(rl)) {
        if (!cJSON_IsNumber(rl) || rl->valuedouble < 0 || rl->valuedouble > (double)AK_MAX_RATE_LIMIT) goto done;
        out->rate_limit = (int64_t)rl->valuedouble;
    }
    if (expires && !cJSON_IsNull(expires)) {
        if (!cJSON_IsString(expires) || strlen(expires->valuestring) >= sizeof out->expires_at ||
            ak_parse_rfc3339(expires->valuestring, &out->expires_ms) != 0)
            goto done;
        strcpy(out->expires_at, expires->valuestring);
    }
    strcpy(out->id, id->valuestring);
    strcpy(out->name, name->valuestring);
    strcpy(out->created_at, created->valuestring);
    out->active = cJSON_IsTrue(active);
    rc = 0;
done:
    cJSON_Delete(doc);
    return rc;
}

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

static int settings_read(const gw_host *h, const gw_conf *conf, ak_settings *s, char *err, size_t errlen)
{
    static const char *const keys[] = {"require", "header", "prefix", "cache_ttl", "admin_path", NULL};
    memset(s, 0, sizeof *s);
    strcpy(s->header, AK_DEFAULT_HEADER);
    strcpy(s->prefix, AK_DEFAULT_PREFIX);
    strcpy(s->admin_path, AK_DEFAULT_ADMIN_PATH);
    s->cache_ttl_ms = AK_DEFAULT_CACHE_TTL_MS;
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

    n = h->conf_get(conf, "cache_ttl");
    if (n) {
        if (h->conf_duration_ms(n, &s->cache_ttl_ms, err, errlen) != 0) return -1;
        if (s->cache_ttl_ms > AK_MAX_CACHE_TTL_MS)
            return h->conf_error(n, err, errlen, "cache_ttl: at most 1h (a revoke elsewhere must take effect)");
    }

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
 * waiting requests: a per-thread table of contexts, addressed by tokens (slot index + sequence number) */

#define AK_SLOT_BITS 20
#define AK_MAX_SLOTS ((1u << AK_SLOT_BITS) - 1)

typedef struct {
    uint64_t seq;
    ak_pend *p; /* NULL = free */
    uint32_t next_free;
} ak_slot;

static _Thread_local ak_slot *tl_slots;
static _Thread_local uint32_t tl_nslots, tl_cap, tl_live, tl_free = UINT32_MAX;
static _Thread_local uint64_t tl_seq;

static void pend_cleanup(void *token)
{
    ak_pend *p = ak_pend_find(token);
    if (p) ak_pend_release(p);
}

ak_pend *ak_pend_find(void *token)
{
    uintptr_t t = (uintptr_t)token;
    uint32_t idx = (uint32_t)(t & AK_MAX_SLOTS);
    if (idx == 0 || idx > tl_nslots) return NULL;
    ak_slot *s = &tl_slots[idx - 1];
    return s->p && s->seq == (uint64_t)(t >> AK_SLOT_BITS) ? s->p : NULL;
}

void ak_pend_release(ak_pend *p)
{
    uint32_t idx = (uint32_t)(p->token & AK_MAX_SLOTS);
    ak_slot *s = &tl_slots[idx - 1];
    s->p = NULL;
    s->next_free = tl_free;
    tl_free = idx - 1;
    if (p->response) {
        OPENSSL_cleanse(p->response, strlen(p->response)); /* it held a raw key */
        free(p->response);
    }
    free(p->record_json);
    OPENSSL_cleanse(p->digest, sizeof p->digest);
    free(p);
    if (--tl_live == 0) { /* nothing pending on this thread: give the table back */
        free(tl_slots);
        tl_slots = NULL;
        tl_nslots = tl_cap = 0;
        tl_free = UINT32_MAX;
    }
}

ak_pend *ak_pend_new(ak_inst *in, gw_req *req, int op)
{
    uint32_t idx;
    if (tl_free != UINT32_MAX) {
        idx = tl_free;
        tl_free = tl_slots[idx].next_free;
    } else {
        if (tl_nslots == AK_MAX_SLOTS) return NULL;
        if (tl_nslots == tl_cap) {
            uint32_t cap = tl_cap ? tl_cap * 2 : 16;
            if (cap > AK_MAX_SLOTS) cap = AK_MAX_SLOTS;
            ak_slot *ns = realloc(tl_slots, cap * sizeof *ns);
            if (!ns) return NULL;
            tl_slots = ns;
            tl_cap = cap;
        }
        idx = tl_nslots++;
    }
    ak_pend *p = calloc(1, sizeof *p);
    if (!p) {
        tl_slots[idx].p = NULL;
        tl_slots[idx].next_free = tl_free;
        tl_free = idx;
        if (tl_live == 0) {
            free(tl_slots);
            tl_slots = NULL;
            tl_nslots = tl_cap = 0;
            tl_free = UINT32_MAX;
        }
        return NULL;
    }
    tl_seq = (tl_seq + 1) & ((UINT64_C(1) << (64 - AK_SLOT_BITS)) - 1);
    if (tl_seq == 0) tl_seq = 1;
    tl_slots[idx] = (ak_slot){.seq = tl_seq, .p = p, .next_free = UINT32_MAX};
    tl_live++;
    p->in = in;
    p->req = req;
    p->op = op;
    p->token = ((uintptr_t)tl_seq << AK_SLOT_BITS) | (uintptr_t)(idx + 1);
    if (in->h->on_cleanup(req, pend_cleanup, (void *)p->token) != 0) {
        ak_pend_release(p);
        return NULL;
    }
    return p;
}

void ak_finish(ak_pend *p, gw_result res)
{
    const gw_host *h = p->in->h;
    gw_req *req = p->req;
    ak_pend_release(p);
    h->resume(req, res); /* may end the request: nothing of it is touched afterwards */
}

/* ---------------------------------------------------------------------------------------------------
 * the per-worker cache of what the store said about a key */

enum { AK_C_EMPTY = 0, AK_C_VALID, AK_C_UNKNOWN, AK_C_REVOKED };

typedef struct {
    uint8_t state;
    uint8_t digest[AK_DIGEST_LEN];
    uint64_t until_ms;  /* host->now_ms() when the entry goes stale */
    int64_t expires_ms; /* the key's own expiry (unix ms), 0 = never */
    int64_t rate_limit;
    char id[AK_ID_LEN + 1];
    char name[AK_MAX_NAME + 1];
} ak_ident;

struct ak_cache {
    uint64_t generation;
    ak_ident e[AK_CACHE_SETS][AK_CACHE_WAYS];
};

struct ak_caches {
    unsigned n;
    ak_cache *c[];
};

void ak_cache_flush_all(ak_inst *in)
{
    atomic_fetch_add(&in->generation, 1);
}

/* This worker's cache, emptied first if a revoke or delete happened since it was last used. */
static ak_cache *cache_of(ak_inst *in, gw_req *req)
{
    ak_caches *cs = atomic_load(&in->caches);
    unsigned w = in->h->worker(req);
    if (!cs || w >= cs->n || !cs->c[w]) return NULL;
    ak_cache *c = cs->c[w];
    uint64_t g = atomic_load(&in->generation);
    if (c->generation != g) {
        memset(c->e, 0, sizeof c->e);
        c->generation = g;
    }
    return c;
}

static ak_ident *cache_find(ak_cache *c, const uint8_t *digest, uint64_t now)
{
    ak_ident *set = c->e[digest[0] % AK_CACHE_SETS];
    for (int i = 0; i < AK_CACHE_WAYS; i++) {
        ak_ident *e = &set[i];
        if (e->state == AK_C_EMPTY || CRYPTO_memcmp(e->digest, digest, AK_DIGEST_LEN) != 0) continue;
        if (e->until_ms <= now) {
            memset(e, 0, sizeof *e);
            return NULL;
        }
        return e;
    }
    return NULL;
}

static void cache_put(ak_cache *c, const ak_ident *id, uint64_t now)
{
    ak_ident *set = c->e[id->digest[0] % AK_CACHE_SETS];
    ak_ident *slot = NULL;
    for (int i = 0; i < AK_CACHE_WAYS && !slot; i++)
        if (set[i].state == AK_C_EMPTY || set[i].until_ms <= now ||
            memcmp(set[i].digest, id->digest, AK_DIGEST_LEN) == 0)
            slot = &set[i];
    if (!slot) { /* all live: replace the one that goes stale first */
        slot = &set[0];
        for (int i = 1; i < AK_CACHE_WAYS; i++)
            if (set[i].until_ms < slot->until_ms) slot = &set[i];
    }
    *slot = *id;
}

static int ak_worker_init(void *inst, unsigned worker, unsigned workers)
{
    ak_inst *in = inst;
    if (in->s.cache_ttl_ms == 0) return 0;
    ak_caches *cs = atomic_load(&in->caches);
    if (!cs) {
        ak_caches *mine = calloc(1, sizeof *mine + (size_t)workers * sizeof mine->c[0]);
        if (!mine) return -1;
        mine->n = workers;
        if (atomic_compare_exchange_strong(&in->caches, &cs, mine)) cs = mine;
        else free(mine); /* another worker was first; cs is its table */
    }
    if (worker >= cs->n) return -1;
    cs->c[worker] = calloc(1, sizeof(ak_cache));
    if (!cs->c[worker]) return -1;
    cs->c[worker]->generation = atomic_load(&in->generation);
    return 0;
}

static void ak_worker_fini(void *inst, unsigned worker)
{
    ak_inst *in = inst;
    ak_caches *cs = atomic_load(&in->caches);
    if (!cs || worker >= cs->n) return;
    free(cs->c[worker]);
    cs->c[worker] = NULL;
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
        h->log(in->self, req, GW_LOG_WARN, "key store lookup failed (status %d)", status);
        ak_finish(p, store_unavailable(in, req));
        return;
    }
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
    if (in->s.cache_ttl_ms && p->generation == atomic_load(&in->generation)) {
        ak_cache *c = cache_of(in, req);
        if (c) {
            uint64_t now = h->now_ms();
            id.until_ms = now + in->s.cache_ttl_ms;
            cache_put(c, &id, now);
        }
    }
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
    ak_cache *c = in->s.cache_ttl_ms ? cache_of(in, req) : NULL;
    if (c) {
        const ak_ident *hit = cache_find(c, digest, h->now_ms());
        if (hit) return judge(in, req, hit, from_auth);
    }

    ak_pend *p = ak_pend_new(in, req, AK_OP_VALIDATE);
    if (!p) return GW_ERROR;
    memcpy(p->digest, digest, sizeof digest);
    p->from_auth = from_auth;
    p->require = require;
    p->generation = atomic_load(&in->generation);
    memcpy(p->store_key, AK_STORE_PREFIX, 2);
    ak_hex(digest, AK_DIGEST_LEN, p->store_key + 2);
    if (h->store_get(req, p->store_key, validate_done, (void *)p->token) != 0) {
        h->log(in->self, req, GW_LOG_WARN, "key store lookup could not be started");
        ak_pend_release(p);
        return store_unavailable(in, req);
    }
    return GW_WAIT;
}

/* ---------------------------------------------------------------------------------------------------
 * lifecycle */

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

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
    atomic_init(&in->generation, 0);
    atomic_init(&in->caches, NULL);
    /* every method, routed (and 405'd with Allow) by the handler; a host that does not take "*" gets the
     * three methods the endpoints use, and answers other methods itself */
    if (h->register_endpoint(self, "*", in->s.admin_path, true, ak_admin_endpoint) != 0 &&
        (h->register_endpoint(self, "GET", in->s.admin_path, true, ak_admin_endpoint) != 0 ||
         h->register_endpoint(self, "POST", in->s.admin_path, true, ak_admin_endpoint) != 0 ||
         h->register_endpoint(self, "DELETE", in->s.admin_path, true, ak_admin_endpoint) != 0)) {
        snprintf(err, errlen, "apikey: cannot register the endpoints under %s", in->s.admin_path);
        free(in);
        return NULL;
    }
    return in;
}

static void ak_destroy(void *inst)
{
    ak_inst *in = inst;
    ak_caches *cs = atomic_load(&in->caches);
    if (cs) {
        for (unsigned i = 0; i < cs->n; i++)
            free(cs->c[i]);
        free(cs);
    }
    free(in);
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
