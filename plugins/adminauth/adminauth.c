/* adminauth.c - the filter "adminauth": HTTP Basic authentication in front of the admin endpoints.
 *
 *   pipeline:
 *     - name: adminauth
 *       enabled: ${ADMIN_AUTH_ENABLED:-true}   # the host's key: false = the filter is not loaded at all
 *       username: ${ADMIN_USERNAME:-admin}     # default "admin"
 *       password: ${ADMIN_PASSWORD:-}          # required: a missing or empty password refuses the config
 *       realm: API Gateway Admin               # default
 *       path: /admin                           # protected prefix, matched at a '/' boundary; default /admin
 *       max_failures: 5                        # failures per client IP before it is throttled; 0 = never
 *       block: 60s                             # how long a throttled client waits after its last failure
 *
 * Requests below `path` must carry `Authorization: Basic base64(username:password)`. The presented username
 * and password are hashed with SHA-256 and compared, both of them and in constant time, with the digests of
 * the configured ones (computed once in create; the plain password is not kept). Every failure is answered
 * 401 with `WWW-Authenticate: Basic realm="...", charset="UTF-8"` and the gateway's error JSON, and logged
 * (warn) with the client IP and the kind of failure, never with what the client sent.
 *
 * Throttling: failures are counted per client IP (the socket peer) while they come less than `block` apart.
 * Once a client has `max_failures` of them, its requests below `path` are answered 429 with Retry-After
 * (before any credential is looked at) until `block` has passed since its last failure; a success clears
 * its count. The counts live in a bounded table per worker (no locks, nothing shared between workers), so
 * a client spreading its attempts over N workers may get up to N x max_failures attempts per block; a
 * reload starts with empty tables.
 *
 * Requests outside `path` are not touched at all. */
#include <gw/filter.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AA_NAME "adminauth"
#define AA_DIGEST_LEN 32 /* SHA-256 */

#define AA_DEFAULT_USERNAME "admin"
#define AA_DEFAULT_REALM "API Gateway Admin"
#define AA_DEFAULT_PATH "/admin"
#define AA_DEFAULT_MAX_FAILURES 5
#define AA_DEFAULT_BLOCK_MS 60000u

#define AA_MAX_USERNAME 256
#define AA_MAX_PASSWORD 1024
#define AA_MAX_REALM 256
#define AA_MAX_PATH 1024
#define AA_MAX_FAILURES_LIMIT 1000000
#define AA_MAX_BLOCK_MS (24u * 3600u * 1000u)

/* Presented credentials longer than this (decoded) cannot match and are refused before decoding. */
#define AA_MAX_CREDENTIALS 3072
#define AA_MAX_B64 (AA_MAX_CREDENTIALS / 3 * 4)

/* The per-worker failure table: AA_SETS sets of AA_WAYS entries (4096 clients per worker). */
#define AA_SETS 1024
#define AA_WAYS 4
#define AA_IP_MAX 48 /* an IPv6 text address is at most 45 bytes; longer keys are cut (the hash covers all)  \
                      */

typedef enum {
    AA_OK = 0,
    AA_MISSING,     /* no Authorization header */
    AA_SCHEME,      /* a scheme other than Basic */
    AA_BASE64,      /* the credentials are not valid base64 (or empty) */
    AA_TOO_LONG,    /* longer than any credentials this filter accepts */
    AA_NO_COLON,    /* decoded, but no ':' between username and password */
    AA_CREDENTIALS, /* wrong username or password */
    AA_NKINDS
} aa_kind;

/* reason label, log text, client message */
static const char *const kind_reason[AA_NKINDS] = {
    [AA_MISSING] = "missing",   [AA_SCHEME] = "scheme",     [AA_BASE64] = "base64",
    [AA_TOO_LONG] = "too_long", [AA_NO_COLON] = "no_colon", [AA_CREDENTIALS] = "credentials",
};
static const char *const kind_log[AA_NKINDS] = {
    [AA_MISSING] = "no Authorization header",
    [AA_SCHEME] = "authorization scheme is not Basic",
    [AA_BASE64] = "credentials are not valid base64",
    [AA_TOO_LONG] = "credentials too long",
    [AA_NO_COLON] = "no ':' in the decoded credentials",
    [AA_CREDENTIALS] = "wrong username or password",
};
static const char *const kind_message[AA_NKINDS] = {
    [AA_MISSING] = "Authentication required: missing Authorization header",
    [AA_SCHEME] = "Authentication required: unsupported authorization scheme (use Basic)",
    [AA_BASE64] = "Invalid Basic credentials: not valid base64",
    [AA_TOO_LONG] = "Invalid Basic credentials: too long",
    [AA_NO_COLON] = "Invalid Basic credentials: expected username:password",
    [AA_CREDENTIALS] = "Invalid username or password",
};

typedef struct {
    uint64_t hash;
    uint64_t last_ms;  /* host->now_ms() of the last failure */
    uint32_t failures; /* 0 = free slot */
    uint8_t iplen;
    char ip[AA_IP_MAX];
} aa_entry;

typedef struct {
    aa_entry e[AA_SETS * AA_WAYS];
} aa_table;

typedef struct {
    unsigned n;
    aa_table *t[]; /* t[w] is created, used and freed by worker w only */
} aa_tables;

typedef struct {
    unsigned char user_md[AA_DIGEST_LEN], pass_md[AA_DIGEST_LEN];
    char *challenge; /* the WWW-Authenticate value */
    char *path;      /* protected prefix without a trailing '/'; "" = everything */
    size_t path_len;
    uint32_t max_failures; /* 0 = no throttling */
    uint64_t block_ms;
} aa_settings;

typedef struct {
    const gw_host *host;
    gw_filter *self;
    aa_settings s;
    uint64_t seed; /* hash seed of the failure tables */
    gw_metric *failures_total, *throttled_total;
    _Atomic(aa_tables *) tables;
} aa_inst;

/* --- small helpers --------------------------------------------------------------------------------- */

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if (is_ctl((unsigned char)*s)) return true;
    return false;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool sha256(const void *data, size_t len, unsigned char out[AA_DIGEST_LEN])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == AA_DIGEST_LEN;
}

/* Strict RFC 4648 base64 (standard alphabet, padded): the length is a multiple of 4, '=' appears only as
 * the last one or two characters, and the bits the padding discards are zero. Returns the decoded length,
 * or -1 when `s` is not such a string (empty included). `out` holds at least n / 4 * 3 bytes. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static long b64_decode(const char *s, size_t n, unsigned char *out)
{
    if (n == 0 || n % 4 != 0) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + (size_t)k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) return -1; /* a character after '=' */
            v[k] = b64_value(c);
            if (v[k] < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return -1; /* not canonical */
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2) out[o++] = (unsigned char)(w >> 8);
        if (pad < 1) out[o++] = (unsigned char)w;
    }
    return (long)o;
}

/* --- settings -------------------------------------------------------------------------------------- */

static void settings_clear(aa_settings *s)
{
    free(s->challenge);
    free(s->path);
    OPENSSL_cleanse(s, sizeof *s);
}

/* A string setting: *out = its text, or NULL when absent (no key, `key:`, ~, null). */
static int read_string(const gw_host *h, const gw_conf *conf, const char *key, const gw_conf **node,
                       const char **out, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, key);
    *node = n;
    *out = NULL;
    if (!n) return 0;
    if (h->conf_kind(n) != GW_CONF_SCALAR)
        return h->conf_error(n, err, errlen, AA_NAME ": %s: expected a string", key);
    *out = h->conf_str(n);
    return 0;
}

static const char *scalar_text(const gw_host *h, const gw_conf *n)
{
    const char *s = h->conf_kind(n) == GW_CONF_SCALAR ? h->conf_str(n) : NULL;
    return s ? s : "(not a scalar)";
}

/* A plain absolute path: '/' then segments of visible characters other than '?', '#', '%' and '\',
 * no empty, "." or ".." segment (one trailing '/' is allowed and dropped). */
static bool path_ok(const char *p)
{
    if (p[0] != '/' || strstr(p, "//")) return false;
    size_t n = strlen(p);
    if (n > 1 && p[n - 1] == '/') n--;
    const char *seg = p + 1;
    for (size_t i = 1; i <= n; i++) {
        char c = i < n ? p[i] : '/';
        if (c == '/') {
            size_t len = (size_t)(p + i - seg);
            if (n > 1 &&
                (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')))
                return false;
            seg = p + i + 1;
            continue;
        }
        if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f || strchr("?#%\\", c)) return false;
    }
    return true;
}

/* `WWW-Authenticate: Basic realm="<realm, quoted-string escaped>", charset="UTF-8"` */
static char *make_challenge(const char *realm)
{
    size_t n = strlen(realm);
    char *v = malloc(2 * n + 48);
    if (!v) return NULL;
    char *o = v;
    o += sprintf(o, "Basic realm=\"");
    for (size_t i = 0; i < n; i++) {
        if (realm[i] == '"' || realm[i] == '\\') *o++ = '\\';
        *o++ = realm[i];
    }
    strcpy(o, "\", charset=\"UTF-8\"");
    return v;
}

/* Reads and checks the settings; with `s` non-NULL also compiles them into it. */
static int settings_read(const gw_host *h, const gw_conf *conf, aa_settings *s, char *err, size_t errlen)
{
    static const char *const keys[] = {"username",     "password", "realm", "path",
                                       "max_failures", "block",    NULL};
    if (h->conf_only(conf, keys, err, errlen) != 0) return -1;

    const gw_conf *n;
    const char *user, *pass, *realm, *path;

    if (read_string(h, conf, "username", &n, &user, err, errlen) != 0) return -1;
    if (!user)
        user = AA_DEFAULT_USERNAME;
    else if (!*user)
        return h->conf_error(n, err, errlen, AA_NAME ": username: must not be empty");
    else if (strlen(user) > AA_MAX_USERNAME)
        return h->conf_error(n, err, errlen, AA_NAME ": username: longer than %d bytes", AA_MAX_USERNAME);
    else if (strchr(user, ':') || has_ctl(user))
        return h->conf_error(n, err, errlen,
                             AA_NAME
                             ": username: must not contain ':' or control characters (Basic authentication)");

    /* The password's value never appears in a message. */
    if (read_string(h, conf, "password", &n, &pass, err, errlen) != 0) return -1;
    if (!pass || !*pass)
        return h->conf_error(n ? n : conf, err, errlen,
                             AA_NAME ": password is required when admin authentication is enabled "
                                     "(set ADMIN_PASSWORD)");
    if (strlen(pass) > AA_MAX_PASSWORD)
        return h->conf_error(n, err, errlen, AA_NAME ": password: longer than %d bytes", AA_MAX_PASSWORD);
    if (has_ctl(pass))
        return h->conf_error(n, err, errlen, AA_NAME ": password: must not contain control characters");

    if (read_string(h, conf, "realm", &n, &realm, err, errlen) != 0) return -1;
    if (!realm)
        realm = AA_DEFAULT_REALM;
    else if (!*realm || strlen(realm) > AA_MAX_REALM || has_ctl(realm))
        return h->conf_error(n, err, errlen,
                             AA_NAME ": realm: expected 1..%d characters without control characters",
                             AA_MAX_REALM);

    if (read_string(h, conf, "path", &n, &path, err, errlen) != 0) return -1;
    if (!path)
        path = AA_DEFAULT_PATH;
    else if (strlen(path) > AA_MAX_PATH || !path_ok(path))
        return h->conf_error(n, err, errlen,
                             AA_NAME ": path: expected an absolute path such as /admin (no query, '%%', "
                                     "empty or dot segments), got '%s'",
                             path);

    int64_t max_failures = AA_DEFAULT_MAX_FAILURES;
    if ((n = h->conf_get(conf, "max_failures")) &&
        h->conf_int(n, 0, AA_MAX_FAILURES_LIMIT, &max_failures, NULL, 0) != 0)
        return h->conf_error(n, err, errlen, AA_NAME ": max_failures: expected an integer 0..%d, got '%s'",
                             AA_MAX_FAILURES_LIMIT, scalar_text(h, n));

    uint64_t block_ms = AA_DEFAULT_BLOCK_MS;
    if ((n = h->conf_get(conf, "block")) &&
        (h->conf_duration_ms(n, &block_ms, NULL, 0) != 0 || block_ms == 0 || block_ms > AA_MAX_BLOCK_MS))
        return h->conf_error(n, err, errlen,
                             AA_NAME ": block: expected a duration 1ms..24h (e.g. 60s), got '%s'",
                             scalar_text(h, n));

    if (!s) return 0;
    memset(s, 0, sizeof *s);
    s->max_failures = (uint32_t)max_failures;
    s->block_ms = block_ms;
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/') /* "/admin/" = "/admin"; "/" = everything */
        plen--;
    s->path = malloc(plen + 1);
    s->challenge = make_challenge(realm);
    if (!s->path || !s->challenge) {
        settings_clear(s);
        snprintf(err, errlen, AA_NAME ": out of memory");
        return -1;
    }
    memcpy(s->path, path, plen);
    s->path[plen] = '\0';
    s->path_len = plen;
    if (!sha256(user, strlen(user), s->user_md) || !sha256(pass, strlen(pass), s->pass_md)) {
        settings_clear(s);
        snprintf(err, errlen, AA_NAME ": SHA-256 is not available");
        return -1;
    }
    return 0;
}

/* --- the per-worker failure table ------------------------------------------------------------------ */

static uint64_t ip_hash(const aa_inst *in, gw_strv ip)
{
    uint64_t h = 0xcbf29ce484222325u ^ in->seed; /* FNV-1a, seeded per instance */
    for (size_t i = 0; i < ip.n; i++) {
        h ^= (unsigned char)ip.p[i];
        h *= 0x100000001b3u;
    }
    h ^= h >> 29; /* spread the high bits over the set index */
    return h;
}

static size_t key_len(gw_strv ip)
{
    return ip.n < AA_IP_MAX ? ip.n : AA_IP_MAX;
}

static bool expired(const aa_inst *in, const aa_entry *e, uint64_t now)
{
    return now - e->last_ms >= in->s.block_ms;
}

/* The live entry of `ip`, or NULL; an entry whose last failure is `block` old is freed on the way. */
static aa_entry *entry_find(const aa_inst *in, aa_table *t, gw_strv ip, uint64_t hash, uint64_t now)
{
    aa_entry *set = &t->e[(hash % AA_SETS) * AA_WAYS];
    size_t klen = key_len(ip);
    for (int i = 0; i < AA_WAYS; i++) {
        aa_entry *e = &set[i];
        if (!e->failures || e->hash != hash || e->iplen != klen || memcmp(e->ip, ip.p, klen) != 0) continue;
        if (expired(in, e, now)) {
            e->failures = 0;
            return NULL;
        }
        return e;
    }
    return NULL;
}

/* A slot for a new client: a free or expired one of its set, else the one with the oldest failure. */
static aa_entry *entry_new(const aa_inst *in, aa_table *t, gw_strv ip, uint64_t hash, uint64_t now)
{
    aa_entry *set = &t->e[(hash % AA_SETS) * AA_WAYS];
    aa_entry *victim = &set[0];
    for (int i = 0; i < AA_WAYS; i++) {
        aa_entry *e = &set[i];
        if (!e->failures || expired(in, e, now)) {
            victim = e;
            break;
        }
        if (e->last_ms < victim->last_ms) victim = e;
    }
    size_t klen = key_len(ip);
    memset(victim, 0, sizeof *victim);
    victim->hash = hash;
    victim->iplen = (uint8_t)klen;
    memcpy(victim->ip, ip.p, klen);
    return victim;
}

static aa_table *table_of(aa_inst *in, unsigned worker)
{
    aa_tables *ts = atomic_load_explicit(&in->tables, memory_order_acquire);
    return ts && worker < ts->n ? ts->t[worker] : NULL;
}

/* --- credentials ----------------------------------------------------------------------------------- */

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Checks the request's Authorization header. Returns AA_OK, a failure kind, or -1 (internal error). */
static int check_credentials(const aa_inst *in, gw_req *req)
{
    const gw_host *h = in->host;
    gw_strv v;
    if (!h->header_get(req, GW_HDR_REQUEST, "Authorization", &v)) return AA_MISSING;
    const char *p = v.p, *end = v.p + v.n;
    while (p < end && ows(*p))
        p++;
    while (end > p && ows(end[-1]))
        end--;
    const char *scheme = p;
    while (p < end && !ows(*p))
        p++;
    static const char basic[] = "basic";
    if ((size_t)(p - scheme) != sizeof basic - 1) return AA_SCHEME;
    for (size_t i = 0; i < sizeof basic - 1; i++)
        if (lower((unsigned char)scheme[i]) != (unsigned char)basic[i]) return AA_SCHEME;
    while (p < end && ows(*p))
        p++;
    size_t n = (size_t)(end - p);
    if (n > AA_MAX_B64) return AA_TOO_LONG;

    unsigned char buf[AA_MAX_CREDENTIALS];
    long len = b64_decode(p, n, buf);
    if (len < 0) return AA_BASE64;
    const unsigned char *colon = memchr(buf, ':', (size_t)len);
    if (!colon) {
        OPENSSL_cleanse(buf, (size_t)len);
        return AA_NO_COLON;
    }
    size_t ulen = (size_t)(colon - buf);
    unsigned char umd[AA_DIGEST_LEN], pmd[AA_DIGEST_LEN];
    bool hashed = sha256(buf, ulen, umd) && sha256(colon + 1, (size_t)len - ulen - 1, pmd);
    OPENSSL_cleanse(buf, (size_t)len);
    if (!hashed) return -1;
    /* Both digests are always compared (no short circuit), each in constant time. */
    int differ = CRYPTO_memcmp(umd, in->s.user_md, AA_DIGEST_LEN);
    differ |= CRYPTO_memcmp(pmd, in->s.pass_md, AA_DIGEST_LEN);
    OPENSSL_cleanse(umd, sizeof umd);
    OPENSSL_cleanse(pmd, sizeof pmd);
    return differ ? AA_CREDENTIALS : AA_OK;
}

/* --- lifecycle ------------------------------------------------------------------------------------- */

static int aa_config_check(const gw_host *host, const gw_conf *conf, char *err, size_t errlen)
{
    return settings_read(host, conf, NULL, err, errlen);
}

static void *aa_create(const gw_host *host, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (!host->log || !host->path || !host->method || !host->client_ip || !host->worker ||
        !host->header_get || !host->header_set || !host->respond_error || !host->now_ms) {
        snprintf(err, errlen, AA_NAME ": the host lacks a member this filter needs");
        return NULL;
    }
    aa_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, AA_NAME ": out of memory");
        return NULL;
    }
    in->host = host;
    in->self = self;
    atomic_init(&in->tables, NULL);
    if (settings_read(host, conf, &in->s, err, errlen) != 0) {
        free(in);
        return NULL;
    }
    if (RAND_bytes((unsigned char *)&in->seed, sizeof in->seed) != 1)
        in->seed = (uint64_t)(uintptr_t)in ^ host->now_ms();
    if (host->metric_register) {
        static const char *const labels[] = {"reason", NULL};
        in->failures_total =
            host->metric_register(self, GW_METRIC_COUNTER, "gateway_admin_auth_failures_total",
                                  "Failed admin authentication attempts, by kind", labels, NULL, 0);
        in->throttled_total = host->metric_register(
            self, GW_METRIC_COUNTER, "gateway_admin_auth_throttled_total",
            "Admin requests refused (429) while their client was throttled", NULL, NULL, 0);
    }
    return in;
}

static void aa_destroy(void *inst)
{
    aa_inst *in = inst;
    aa_tables *ts = atomic_load(&in->tables);
    if (ts) {
        for (unsigned i = 0; i < ts->n; i++)
            free(ts->t[i]);
        free(ts);
    }
    settings_clear(&in->s);
    free(in);
}

/* Workers may start concurrently: the first one to get here installs the slot array. */
static int aa_worker_init(void *inst, unsigned worker, unsigned workers)
{
    aa_inst *in = inst;
    aa_tables *ts = atomic_load_explicit(&in->tables, memory_order_acquire);
    if (!ts) {
        if (workers == 0) return -1;
        aa_tables *mine = calloc(1, sizeof *mine + (size_t)workers * sizeof mine->t[0]);
        if (!mine) return -1;
        mine->n = workers;
        aa_tables *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&in->tables, &expected, mine, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            ts = mine;
        } else {
            free(mine);
            ts = expected;
        }
    }
    if (worker >= ts->n) return -1;
    free(ts->t[worker]); /* a repeated init on the same worker starts afresh */
    ts->t[worker] = calloc(1, sizeof(aa_table));
    return ts->t[worker] ? 0 : -1;
}

static void aa_worker_fini(void *inst, unsigned worker)
{
    aa_inst *in = inst;
    aa_tables *ts = atomic_load_explicit(&in->tables, memory_order_acquire);
    if (!ts || worker >= ts->n) return;
    free(ts->t[worker]);
    ts->t[worker] = NULL;
}

/* --- the request phase ----------------------------------------------------------------------------- */

static bool is_protected(const aa_inst *in, gw_strv path)
{
    size_t n = in->s.path_len;
    if (n == 0) return true; /* path: / */
    if (path.n < n || memcmp(path.p, in->s.path, n) != 0) return false;
    return path.n == n || path.p[n] == '/';
}

static void count(gw_metric *m, gw_req *req, const aa_inst *in, const char *reason)
{
    if (!m || !in->host->metric_add) return;
    if (reason)
        in->host->metric_add(m, req, (const char *const[]){reason}, 1);
    else
        in->host->metric_add(m, req, NULL, 1);
}

static gw_result aa_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    (void)state;
    aa_inst *in = inst;
    const gw_host *h = in->host;
    gw_strv path = h->path(req);
    if (!is_protected(in, path)) return GW_CONTINUE;

    aa_table *t = table_of(in, h->worker(req));
    if (!t) return GW_ERROR; /* worker_init failed on this worker */
    gw_strv ip = h->client_ip(req);
    uint64_t now = h->now_ms();
    uint64_t hash = ip_hash(in, ip);
    int ipn = ip.n > 64 ? 64 : (int)ip.n;

    aa_entry *e = entry_find(in, t, ip, hash, now);
    if (e && in->s.max_failures && e->failures >= in->s.max_failures) {
        uint64_t left_ms = e->last_ms + in->s.block_ms - now;
        char secs[24];
        int k = snprintf(secs, sizeof secs, "%" PRIu64, (left_ms + 999) / 1000);
        count(in->throttled_total, req, in, NULL);
        h->log(in->self, req, GW_LOG_DEBUG, "client %.*s throttled: %" PRIu32 " failed attempts, %s s left",
               ipn, ip.p, e->failures, secs);
        if (h->header_set(req, GW_HDR_RESPONSE, "Retry-After", secs, (size_t)k) != 0 ||
            h->respond_error(req, 429, "Too many failed authentication attempts; retry later") != 0)
            return GW_ERROR;
        return GW_RESPOND;
    }

    int kind = check_credentials(in, req);
    if (kind < 0) return GW_ERROR;
    if (kind == AA_OK) {
        if (e) e->failures = 0; /* a success clears the client's count */
        return GW_CONTINUE;
    }

    gw_strv method = h->method(req);
    h->log(in->self, req, GW_LOG_WARN, "admin authentication failed: %s (client %.*s, %.*s %.*s)",
           kind_log[kind], ipn, ip.p, (int)(method.n > 16 ? 16 : method.n), method.p,
           (int)(path.n > 256 ? 256 : path.n), path.p);
    count(in->failures_total, req, in, kind_reason[kind]);
    if (in->s.max_failures) {
        if (!e) e = entry_new(in, t, ip, hash, now);
        if (e->failures < UINT32_MAX) e->failures++;
        e->last_ms = now;
        if (e->failures == in->s.max_failures)
            h->log(in->self, req, GW_LOG_WARN,
                   "client %.*s throttled for %" PRIu64 " ms after %" PRIu32 " failed attempts", ipn, ip.p,
                   in->s.block_ms, e->failures);
    }

    const char *challenge = in->s.challenge;
    if (h->header_set(req, GW_HDR_RESPONSE, "WWW-Authenticate", challenge, strlen(challenge)) != 0 ||
        h->respond_error(req, 401, kind_message[kind]) != 0)
        return GW_ERROR;
    return GW_RESPOND;
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = AA_NAME,
    .version = "1.0.0",
    .description = "HTTP Basic authentication for the admin endpoints, with per-client throttling",
    .config_check = aa_config_check,
    .create = aa_create,
    .worker_init = aa_worker_init,
    .worker_fini = aa_worker_fini,
    .destroy = aa_destroy,
    .on_request = aa_on_request,
};
