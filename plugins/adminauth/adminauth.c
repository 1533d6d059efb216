/* adminauth.c - the filter "adminauth": HTTP Basic authentication in front of the admin endpoints.
 *
 *   pipeline:
 *     - name: adminauth
 *       enabled: ${ADMIN_AUTH_ENABLED:-true}   # the host's key: false = the filter is not loaded at all
 *       username: ${ADMIN_USERNAME:-admin}     # default "admin"
 *       password: ${ADMIN_PASSWORD:-}          # required: a missing or empty password refuses the config
 *       realm: API Gateway Admin               # default
 *       path: /admin                           # protected prefix, matched at a '/' boundary; default /admin
 *       max_failures: 5                        # wrong credentials per (client IP, username) before a block
 *       max_failures_per_address: 0            # ... per client IP, any username; 0 = 4 x max_failures
 *       block: 60s                             # how long a throttled client waits after its last failure
 *       allow_cross_site: false                # true accepts other sites' browser requests that change
 * things
 *
 * Requests below `path` must carry `Authorization: Basic base64(username:password)`. The presented username
 * and password are hashed with SHA-256 and compared, both of them and in constant time, with the digests of
 * the configured ones (computed once in create; the plain password is not kept). Every failure is answered
 * 401 with `WWW-Authenticate: Basic realm="...", charset="UTF-8"` and the gateway's error JSON, and logged
 * (warn) with the client IP and the kind of failure, never with what the client sent.
 *
 * Throttling: only wrong credentials count (a request without credentials, or with malformed ones, names
 * no username and is not counted), per (client IP, username tried), while they come less than `block`
 * apart. The max_failures-th one blocks that pair: its requests below `path` are answered 429 with
 * Retry-After, correct password included, until `block` has passed since its last counted failure; the
 * block is logged once. A success clears the pair's count. Every wrong attempt also counts for the client
 * address (an IPv6 one by its /64) whatever the username; the max_failures_per_address-th blocks the
 * address for every username alike, so rotating usernames buys no more guesses. The counts live in one
 * bounded table per instance, shared by all workers behind a mutex (aa_throttle.c), so N workers still
 * allow exactly max_failures attempts; a blocked entry is never evicted, and an attempt that finds no
 * slot to be counted in is refused with 429 (fail-closed); a reload starts with an empty table.
 *
 * Failure warnings are rate-limited per instance (AA_LOG_LINES per second across the workers, the same
 * for block lines); what is left out is summed up in one line, and every failure is counted in
 * gateway_admin_auth_failures_total{reason}.
 *
 * Cross-site requests: a browser re-sends cached Basic credentials with any site's form or fetch, so an
 * authenticated request that changes something (not GET/HEAD/OPTIONS) is refused with 403 when the
 * browser says another site asked for it (aa_origin.c: Sec-Fetch-Site, else Origin against Host), unless
 * allow_cross_site. Scripts and curl send neither field.
 *
 * Requests outside `path` are not touched at all. */
#include <gw/filter.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "aa_loglimit.h"
#include "aa_origin.h"
#include "aa_throttle.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AA_NAME "adminauth"
#define AA_DIGEST_LEN 32 /* SHA-256 */
_Static_assert(AA_DIGEST_LEN == AA_USER_MD_LEN, "the throttle keys on the username digest");

#define AA_DEFAULT_USERNAME "admin"
#define AA_DEFAULT_REALM "API Gateway Admin"
#define AA_DEFAULT_PATH "/admin"

#define AA_MAX_USERNAME 256
#define AA_MAX_PASSWORD 1024
#define AA_MAX_REALM 256
#define AA_MAX_PATH 1024
#define AA_MAX_FAILURES_LIMIT 1000000
#define AA_MAX_BLOCK_MS (24u * 3600u * 1000u)
#define AA_PER_ADDRESS_FACTOR 4 /* max_failures_per_address 0 = this many times max_failures */
#define AA_LOG_LINES 10         /* warnings of each kind per AA_LOG_INTERVAL_MS, then a summary */
#define AA_LOG_INTERVAL_MS 1000

/* Presented credentials longer than this (decoded) cannot match and are refused before decoding. */
#define AA_MAX_CREDENTIALS 3072
#define AA_MAX_B64 (AA_MAX_CREDENTIALS / 3 * 4)

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
    unsigned char user_md[AA_DIGEST_LEN], pass_md[AA_DIGEST_LEN];
    char *challenge; /* the WWW-Authenticate value */
    char *path;      /* protected prefix without a trailing '/'; "" = everything */
    size_t path_len;
    uint32_t max_failures; /* 0 = no throttling */
    uint32_t per_address;  /* failures per address, any username */
    uint64_t block_ms;
    const char *username; /* the host's settings string (lives as long as the instance) */
    size_t username_len;
    bool allow_cross_site;
} aa_settings;

typedef struct {
    const gw_host *host;
    gw_filter *self;
    aa_settings s;
    gw_metric *failures_total, *throttled_total;
    aa_throttle *throttle; /* NULL when max_failures is 0 */
    aa_loglimit *fail_log, *block_log;
} aa_inst;

/* The table the host checks and fills (host->settings); aa_settings is what create compiles from it. */
typedef struct {
    const char *username, *password, *realm, *path;
    int64_t max_failures, per_address;
    bool allow_cross_site;
    uint64_t block_ms;
} aa_conf;

#define AA_SET(key, type, field, def, lo, hi, flags, help)                                                   \
    {                                                                                                        \
        key, type, offsetof(aa_conf, field), def, lo, hi, NULL, flags, help                                  \
    }
static const gw_setting aa_settings_table[] = {
    AA_SET("username", GW_SET_STRING, username, AA_DEFAULT_USERNAME, 0, 0, 0,
           "The one admin username (no ':' or control characters)"),
    AA_SET("password", GW_SET_STRING, password, NULL, 0, 0, GW_SET_SECRET,
           "The admin password; required while the filter is enabled (the gateway refuses to start without)"),
    AA_SET("realm", GW_SET_STRING, realm, AA_DEFAULT_REALM, 0, 0, 0,
           "The realm of the WWW-Authenticate challenge"),
    AA_SET("path", GW_SET_STRING, path, AA_DEFAULT_PATH, 0, 0, 0,
           "The protected path prefix (matched at a '/' boundary); / protects everything"),
    AA_SET("max_failures", GW_SET_INT, max_failures, "5", 0, AA_MAX_FAILURES_LIMIT, 0,
           "Wrong credentials per client address and username, less than `block` apart, before 429; 0 = off"),
    AA_SET("max_failures_per_address", GW_SET_INT, per_address, "0", 0, AA_MAX_FAILURES_LIMIT, 0,
           "Wrong credentials per client address (IPv6: per /64), any username, less than `block` apart, "
           "before 429 for every username; 0 = 4 x max_failures"),
    AA_SET("block", GW_SET_DURATION, block_ms, "60s", 1, AA_MAX_BLOCK_MS, 0,
           "How long failures are remembered, and how long a blocked pair stays blocked"),
    AA_SET("allow_cross_site", GW_SET_BOOL, allow_cross_site, "false", 0, 0, 0,
           "Accept admin requests that change something (not GET/HEAD/OPTIONS) from a browser on behalf of "
           "another site (Sec-Fetch-Site, Origin); false refuses them with 403 (CSRF)"),
    {.name = NULL},
};

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

/* A string the table has type-checked: its node and text, or NULL when absent. */
static const char *given(const gw_host *h, const gw_conf *conf, const char *key, const gw_conf **node)
{
    *node = h->conf_get(conf, key);
    return *node ? h->conf_str(*node) : NULL;
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

/* What the table cannot say: the strings' alphabets and lengths, and the password being there. */
static int aa_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n;
    const char *user = given(h, conf, "username", &n);
    if (user && !*user) return h->conf_error(n, err, errlen, AA_NAME ".username: must not be empty");
    if (user && strlen(user) > AA_MAX_USERNAME)
        return h->conf_error(n, err, errlen, AA_NAME ".username: longer than %d bytes", AA_MAX_USERNAME);
    if (user && (strchr(user, ':') || has_ctl(user)))
        return h->conf_error(n, err, errlen,
                             AA_NAME
                             ".username: must not contain ':' or control characters (Basic authentication)");
    /* The password's value never appears in a message. */
    const char *pass = given(h, conf, "password", &n);
    if (!pass || !*pass)
        return h->conf_error(n ? n : conf, err, errlen,
                             AA_NAME ": password is required when admin authentication is enabled "
                                     "(set ADMIN_PASSWORD)");
    if (strlen(pass) > AA_MAX_PASSWORD)
        return h->conf_error(n, err, errlen, AA_NAME ".password: longer than %d bytes", AA_MAX_PASSWORD);
    if (has_ctl(pass))
        return h->conf_error(n, err, errlen, AA_NAME ".password: must not contain control characters");
    const char *realm = given(h, conf, "realm", &n);
    if (realm && (!*realm || strlen(realm) > AA_MAX_REALM || has_ctl(realm)))
        return h->conf_error(n, err, errlen,
                             AA_NAME ".realm: expected 1..%d characters without control characters",
                             AA_MAX_REALM);
    const char *path = given(h, conf, "path", &n);
    if (path && (strlen(path) > AA_MAX_PATH || !path_ok(path)))
        return h->conf_error(n, err, errlen,
                             AA_NAME ".path: expected an absolute path such as /admin (no query, '%%', "
                                     "empty or dot segments), got '%s'",
                             path);
    return 0;
}

/* Compiles the host's struct into the instance's form: digests, the challenge, the bare prefix. */
static int settings_compile(const aa_conf *c, aa_settings *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->max_failures = (uint32_t)c->max_failures;
    s->per_address =
        c->per_address ? (uint32_t)c->per_address : (uint32_t)c->max_failures * AA_PER_ADDRESS_FACTOR;
    s->block_ms = c->block_ms;
    s->allow_cross_site = c->allow_cross_site;
    s->username = c->username;
    s->username_len = strlen(c->username);
    size_t plen = strlen(c->path);
    while (plen > 0 && c->path[plen - 1] == '/') /* "/admin/" = "/admin"; "/" = everything */
        plen--;
    s->path = malloc(plen + 1);
    s->challenge = make_challenge(c->realm);
    if (!s->path || !s->challenge) {
        settings_clear(s);
        snprintf(err, errlen, AA_NAME ": out of memory");
        return -1;
    }
    memcpy(s->path, c->path, plen);
    s->path[plen] = '\0';
    s->path_len = plen;
    if (!sha256(c->username, strlen(c->username), s->user_md) ||
        !sha256(c->password, strlen(c->password), s->pass_md)) {
        settings_clear(s);
        snprintf(err, errlen, AA_NAME ": SHA-256 is not available");
        return -1;
    }
    return 0;
}

/* --- credentials ----------------------------------------------------------------------------------- */

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Checks the request's Authorization header. Returns AA_OK, a failure kind, or -1 (internal error). For
 * AA_OK and AA_CREDENTIALS (the kinds that name a username), user_md is the SHA-256 of the username. */
static int check_credentials(const aa_inst *in, gw_req *req, unsigned char user_md[AA_DIGEST_LEN])
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
    unsigned char pmd[AA_DIGEST_LEN];
    bool hashed = sha256(buf, ulen, user_md) && sha256(colon + 1, (size_t)len - ulen - 1, pmd);
    OPENSSL_cleanse(buf, (size_t)len);
    if (!hashed) return -1;
    /* Both digests are always compared (no short circuit), each in constant time. */
    int differ = CRYPTO_memcmp(user_md, in->s.user_md, AA_DIGEST_LEN);
    differ |= CRYPTO_memcmp(pmd, in->s.pass_md, AA_DIGEST_LEN);
    OPENSSL_cleanse(pmd, sizeof pmd);
    return differ ? AA_CREDENTIALS : AA_OK;
}

/* --- lifecycle ------------------------------------------------------------------------------------- */

static void aa_destroy(void *inst)
{
    aa_inst *in = inst;
    aa_throttle_free(in->throttle);
    aa_loglimit_free(in->fail_log);
    aa_loglimit_free(in->block_log);
    settings_clear(&in->s);
    free(in);
}

static void *aa_create(const gw_host *host, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (!host->log || !host->path || !host->method || !host->client_ip || !host->header_get ||
        !host->header_set || !host->respond_error || !host->now_ms ||
        host->struct_size <= offsetof(gw_host, settings) || !host->settings) {
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
    if (settings_compile(host->settings(self), &in->s, err, errlen) != 0) {
        free(in);
        return NULL;
    }
    in->fail_log = aa_loglimit_new(AA_LOG_LINES, AA_LOG_INTERVAL_MS);
    in->block_log = aa_loglimit_new(AA_LOG_LINES, AA_LOG_INTERVAL_MS);
    uint64_t seed;
    if (RAND_bytes((unsigned char *)&seed, sizeof seed) != 1) seed = (uint64_t)(uintptr_t)in ^ host->now_ms();
    if (in->s.max_failures)
        in->throttle = aa_throttle_new(in->s.max_failures, in->s.per_address, in->s.block_ms, seed);
    if (!in->fail_log || !in->block_log || (in->s.max_failures && !in->throttle)) {
        snprintf(err, errlen, AA_NAME ": out of memory");
        aa_destroy(in);
        return NULL;
    }
    if (host->metric_register) {
        static const char *const labels[] = {"reason", NULL};
        in->failures_total =
            host->metric_register(self, GW_METRIC_COUNTER, "gateway_admin_auth_failures_total",
                                  "Failed admin authentication attempts, by kind", labels, NULL, 0);
        in->throttled_total = host->metric_register(
            self, GW_METRIC_COUNTER, "gateway_admin_auth_throttled_total",
            "Admin requests refused (429) while their client address and username were blocked", NULL, NULL,
            0);
    }
    return in;
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

/* Whether a warning of `lim`'s kind may be logged now; first logs the summary of those left out before. */
static bool limited(aa_inst *in, aa_loglimit *lim, gw_req *req, gw_strv ip, const char *what)
{
    aa_loglimit_summary sum;
    bool take = aa_loglimit_take(lim, in->host->now_ms(), ip, &sum);
    if (sum.suppressed)
        in->host->log(in->self, req, GW_LOG_WARN, "%" PRIu64 " more %s (last from %s)", sum.suppressed, what,
                      sum.last_ip);
    return take;
}

/* 429 with Retry-After (seconds, rounded up); counted, not logged (the block was, once, when it began). */
static gw_result throttled(aa_inst *in, gw_req *req, uint64_t left_ms)
{
    const gw_host *h = in->host;
    char secs[24];
    int k = snprintf(secs, sizeof secs, "%" PRIu64, (left_ms + 999) / 1000);
    count(in->throttled_total, req, in, NULL);
    if (h->header_set(req, GW_HDR_RESPONSE, "Retry-After", secs, (size_t)k) != 0 ||
        h->respond_error(req, 429, "Too many failed authentication attempts; retry later") != 0)
        return GW_ERROR;
    return GW_RESPOND;
}

static gw_result aa_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    (void)state;
    aa_inst *in = inst;
    const gw_host *h = in->host;
    gw_strv path = h->path(req);
    if (!is_protected(in, path)) return GW_CONTINUE;

    gw_strv ip = h->client_ip(req);
    int ipn = ip.n > 64 ? 64 : (int)ip.n;
    unsigned char user_md[AA_DIGEST_LEN];
    int kind = check_credentials(in, req, user_md);
    if (kind < 0) return GW_ERROR;
    aa_throttle_info ti = {0};
    aa_throttle_verdict tv = AA_T_FAILED;
    /* Only attempts that name a username are looked up and counted: an anonymous or malformed request
     * cannot use up anybody's attempts. */
    if (in->throttle && (kind == AA_OK || kind == AA_CREDENTIALS)) {
        tv = aa_throttle_attempt(in->throttle, ip, user_md, kind == AA_OK, h->now_ms(), &ti);
        if (tv == AA_T_BLOCKED) {
            if (ti.scope == AA_SCOPE_FULL && limited(in, in->block_log, req, ip, "admin throttle blocks"))
                h->log(
                    in->self, req, GW_LOG_WARN,
                    "client %.*s refused: no free slot in the throttle table for its attempt (many clients "
                    "blocked)",
                    ipn, ip.p);
            return throttled(in, req, ti.left_ms);
        }
    }
    bool configured_user =
        kind == AA_CREDENTIALS && CRYPTO_memcmp(user_md, in->s.user_md, AA_DIGEST_LEN) == 0;
    OPENSSL_cleanse(user_md, sizeof user_md);
    if (kind == AA_OK && !in->s.allow_cross_site && aa_cross_site(h, req)) {
        /* A browser re-sends cached credentials for any site's form or fetch: good credentials are not
         * enough for a change asked for by another site's page. */
        count(in->failures_total, req, in, "cross_site");
        if (limited(in, in->fail_log, req, ip, "admin auth failures"))
            h->log(in->self, req, GW_LOG_WARN, "cross-site admin request refused (client %.*s, %.*s)", ipn,
                   ip.p, (int)(path.n > 256 ? 256 : path.n), path.p);
        return h->respond_error(req, 403, "Cross-site admin requests are refused") != 0 ? GW_ERROR
                                                                                        : GW_RESPOND;
    }
    if (kind == AA_OK) {
        /* Later filters may tell an authenticated admin apart (ratelimit leaves them alone by default). */
        if (h->req_set && h->req_set(req, "admin.user", in->s.username, in->s.username_len) != 0)
            return GW_ERROR;
        return GW_CONTINUE;
    }

    count(in->failures_total, req, in, kind_reason[kind]);
    if (limited(in, in->fail_log, req, ip, "admin auth failures")) {
        gw_strv method = h->method(req);
        h->log(in->self, req, GW_LOG_WARN, "admin authentication failed: %s (client %.*s, %.*s %.*s)",
               kind_log[kind], ipn, ip.p, (int)(method.n > 16 ? 16 : method.n), method.p,
               (int)(path.n > 256 ? 256 : path.n), path.p);
    }
    /* the username itself is never logged: it may be a mistyped password */
    if (tv == AA_T_BLOCKS && limited(in, in->block_log, req, ip, "admin throttle blocks"))
        h->log(in->self, req, GW_LOG_WARN,
               "client %.*s throttled for %" PRIu64 " ms after %" PRIu32 " failed attempts %s", ipn, ip.p,
               in->s.block_ms, ti.failures,
               ti.scope == AA_SCOPE_ADDRESS ? "across usernames"
               : configured_user            ? "with the configured username"
                                            : "with another username");

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
    .settings = aa_settings_table,
    .settings_size = sizeof(aa_conf),
    .destroy = aa_destroy,
    .on_request = aa_on_request,
};
