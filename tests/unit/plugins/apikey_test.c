/* apikey_test.c - unit tests of plugins/apikey on the SDK test host: the admin endpoints (create, every 400,
 * list order, revoke, delete, 404/405, store failures), validation by X-API-Key and Bearer, foreign Bearer
 * tokens passed through, 401 for unknown/revoked/expired keys, require per route, the per-worker cache,
 * requests that end while waiting, settings errors. GW_PLUGIN_SO is the built filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "apikey.so"
#endif

#define CREATED "API key created. Save the raw_key - it won't be shown again!"

/* --- helpers --------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
    return 0;
}

static void load(gw_th *th, const char *conf)
{
    if (gw_th_load(th, GW_PLUGIN_SO, conf) != 0) fail_msg("%s", gw_th_error(th));
}

/* The filter with default settings, a route /api/auth (optional key) and /private (key required). */
static void standard(gw_th *th)
{
    load(th, "name: apikey\n");
    assert_int_equal(gw_th_route(th, "auth", "/api/auth", NULL), 0);
    assert_int_equal(gw_th_route(th, "private", "/private", "apikey:\n  require: true\n"), 0);
}

static gw_req *admin(gw_th *th, const char *method, const char *target, const char *body)
{
    gw_req *r = gw_th_request(th, method, target);
    if (body) gw_th_request_body(r, body, strlen(body));
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_false(gw_th_upstream_called(r));
    return r;
}

static cJSON *json_of(gw_req *r)
{
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    cJSON *doc = cJSON_Parse(gw_th_body(r, NULL));
    if (!doc) fail_msg("not JSON: %s", gw_th_body(r, NULL));
    return doc;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* status + the gateway's error shape with exactly this message */
static void assert_error(gw_req *r, int status, const char *title, const char *message)
{
    char want[1024];
    assert_int_equal(gw_th_status(r), status);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), "application/json");
    snprintf(want, sizeof want, "{\"error\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}", title, message,
             gw_th_header(r, GW_HDR_RESPONSE, "X-Request-Id"));
    assert_string_equal(gw_th_body(r, NULL), want);
}

static void assert_success_message(gw_req *r, const char *message)
{
    assert_int_equal(gw_th_status(r), 200);
    char want[256];
    snprintf(want, sizeof want, "{\"status\":\"success\",\"message\":\"%s\"}", message);
    assert_string_equal(gw_th_body(r, NULL), want);
}

typedef struct {
    char id[64];
    char raw[128];
} created;

/* POST /admin/apikeys with `body`, expecting 201; returns id and raw key. */
static created create_key(gw_th *th, const char *body)
{
    gw_req *r = admin(th, "POST", "/admin/apikeys", body);
    if (gw_th_status(r) != 201) fail_msg("create: %d %s", gw_th_status(r), gw_th_body(r, NULL));
    cJSON *doc = json_of(r);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(data, "api_key");
    created c;
    assert_non_null(str_of(key, "id"));
    assert_non_null(str_of(data, "raw_key"));
    snprintf(c.id, sizeof c.id, "%s", str_of(key, "id"));
    snprintf(c.raw, sizeof c.raw, "%s", str_of(data, "raw_key"));
    cJSON_Delete(doc);
    return c;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[32];
    unsigned n = 0;
    assert_int_equal(EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static const char *stored(gw_th *th, const char *raw)
{
    char key[70] = "k:";
    sha256_hex(raw, key + 2);
    return gw_th_store_peek(th, "apikey", key, NULL);
}

/* A proxied request; header/value pairs NULL-terminated. */
static gw_req *call(gw_th *th, const char *target, ...)
{
    gw_req *r = gw_th_request(th, "GET", target);
    va_list ap;
    va_start(ap, target);
    for (const char *n; (n = va_arg(ap, const char *));)
        assert_int_equal(gw_th_request_header(r, n, va_arg(ap, const char *)), 0);
    va_end(ap);
    gw_th_upstream_reply(r, 200, "Content-Type: text/plain\n", "backend");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

static void assert_consumer(gw_req *r, const char *id, const char *name)
{
    assert_int_equal(gw_th_status(r), 200);
    assert_true(gw_th_upstream_called(r));
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Consumer-ID"), id);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Consumer-Name"), name);
    assert_int_equal(gw_th_header_count(r, GW_HDR_UPSTREAM, "X-Consumer-ID"), 1);
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-API-Key"));
    /* ... and the same identity for the filters after it (the rate limiter) */
    gw_strv v;
    assert_true(gw_th_value(r, "consumer.id", &v));
    assert_int_equal(v.n, strlen(id));
    assert_memory_equal(v.p, id, v.n);
    assert_true(gw_th_value(r, "consumer.name", &v));
    assert_memory_equal(v.p, name, v.n);
}

static void assert_401(gw_req *r, const char *message)
{
    assert_error(r, 401, "Unauthorized", message);
    assert_false(gw_th_upstream_called(r));
}

/* --- create ---------------------------------------------------------------------------------------- */

static void test_create(void **state)
{
    gw_th *th = *state;
    standard(th);
    gw_req *r = admin(th, "POST", "/admin/apikeys", "{\"name\": \"my-app\", \"rate_limit\": 100}");
    assert_int_equal(gw_th_status(r), 201);
    cJSON *doc = json_of(r);
    assert_string_equal(str_of(doc, "status"), "success");
    assert_string_equal(str_of(doc, "message"), CREATED);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(data, "api_key");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    const char *id = str_of(key, "id"), *raw = str_of(data, "raw_key");
    assert_non_null(id);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    assert_string_equal(str_of(key, "name"), "my-app");
    assert_true(cJSON_GetObjectItemCaseSensitive(key, "rate_limit")->valuedouble == 100);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(key, "active")));
    assert_string_equal(str_of(key, "created_at"), "2023-11-14T22:13:20Z"); /* GW_TH_UNIX_START_MS */
    assert_null(cJSON_GetObjectItemCaseSensitive(key, "expires_at"));
    assert_int_equal(cJSON_GetArraySize(key), 5);
    /* gw_ + 43 base64url characters (32 bytes) */
    assert_non_null(raw);
    assert_int_equal(strlen(raw), 3 + 43);
    assert_memory_equal(raw, "gw_", 3);
    assert_int_equal(strspn(raw + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);

    /* stored under the hash; the record holds neither the raw key nor the hash */
    char hex[65];
    sha256_hex(raw, hex);
    const char *rec = stored(th, raw);
    assert_non_null(rec);
    assert_null(strstr(rec, raw));
    assert_null(strstr(rec, raw + 3));
    assert_null(strstr(rec, hex));
    char want[512];
    snprintf(want, sizeof want,
             "{\"id\":\"%s\",\"name\":\"my-app\",\"rate_limit\":100,\"active\":true,\"created_at\":"
             "\"2023-11-14T22:13:20Z\"}",
             id);
    assert_string_equal(rec, want);
    assert_null(gw_th_store_peek(th, "apikey", raw, NULL));
    /* the log never sees it */
    for (size_t i = 0; i < gw_th_log_count(th); i++)
        assert_null(strstr(gw_th_log_line(th, i, NULL), raw + 3));

    /* two keys differ; without rate_limit it reads 0, expires_at is normalised to UTC */
    created b = create_key(th, "{\"name\":\"b\",\"expires_at\":\"2030-01-02T03:04:05.250+02:00\"}");
    assert_string_not_equal(b.raw, raw);
    assert_string_not_equal(b.id, id);
    snprintf(want, sizeof want,
             "{\"id\":\"%s\",\"name\":\"b\",\"active\":true,\"created_at\":\"2023-11-14T22:13:20Z\","
             "\"expires_at\":\"2030-01-02T01:04:05.250Z\"}",
             b.id);
    assert_string_equal(stored(th, b.raw), want);
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", id);
    cJSON_Delete(doc);
    id = first_id;

    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    doc = json_of(l);
    /* created in the same millisecond: ordered by id */
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "data");
    bool b_first = strcmp(b.id, id) < 0;
    assert_string_equal(str_of(cJSON_GetArrayItem(list, b_first ? 1 : 0), "id"), id);
    const cJSON *second = cJSON_GetArrayItem(list, b_first ? 0 : 1);
    assert_true(cJSON_GetObjectItemCaseSensitive(second, "rate_limit")->valuedouble == 0);
    assert_string_equal(str_of(second, "expires_at"), "2030-01-02T01:04:05.250Z");
    cJSON_Delete(doc);
}

static void test_create_bad_requests(void **state)
{
    gw_th *th = *state;
    standard(th);
    static char big[70000];
    memset(big, ' ', sizeof big - 1);
    memcpy(big, "{\"name\":\"x\"}", 12);
    static char long_name[400];
    snprintf(long_name, sizeof long_name, "{\"name\":\"%0257d\"}", 0);
    const struct {
        const char *body;
        int status;
        const char *message;
    } cases[] = {
        {"", 400, "The request body must be a JSON object"},
        {"{", 400, "The request body is not valid JSON"},
        {"{\"name\":\"a\"} x", 400, "The request body is not valid JSON"},
        {"not json", 400, "The request body is not valid JSON"},
        {"[1,2]", 400, "The request body must be a JSON object"},
        {"\"name\"", 400, "The request body must be a JSON object"},
        {"{}", 400, "name is required"},
        {"{\"name\":null}", 400, "name is required"},
        {"{\"Name\":\"x\"}", 400, "name is required"},
        {"{\"name\":\"\"}", 400, "name must not be empty"},
        {"{\"name\":5}", 400, "name must be a string"},
        {"{\"name\":[\"a\"]}", 400, "name must be a string"},
        {"{\"name\":\"a\\nb\"}", 400, "name must not contain control characters"},
        {long_name, 400, "name must be at most 256 bytes"},
        {"{\"name\":\"a\",\"rate_limit\":\"100\"}", 400, "rate_limit must be an integer (requests per minute)"},
        {"{\"name\":\"a\",\"rate_limit\":1.5}", 400, "rate_limit must be an integer (requests per minute)"},
        {"{\"name\":\"a\",\"rate_limit\":true}", 400, "rate_limit must be an integer (requests per minute)"},
        {"{\"name\":\"a\",\"rate_limit\":0}", 400, "rate_limit must be at least 1 (leave it out for the default limit)"},
        {"{\"name\":\"a\",\"rate_limit\":-5}", 400, "rate_limit must be at least 1 (leave it out for the default limit)"},
        {"{\"name\":\"a\",\"rate_limit\":1e12}", 400, "rate_limit must be at most 1000000000"},
        {"{\"name\":\"a\",\"expires_at\":12}", 400, "expires_at must be an RFC 3339 date-time string"},
        {"{\"name\":\"a\",\"expires_at\":\"tomorrow\"}", 400,
         "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z"},
        {"{\"name\":\"a\",\"expires_at\":\"2030-02-30T00:00:00Z\"}", 400,
         "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z"},
        {"{\"name\":\"a\",\"expires_at\":\"2030-01-01T00:00:00\"}", 400,
         "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z"},
        {"{\"name\":\"a\",\"expires_at\":\"2030-01-01T24:00:00Z\"}", 400,
         "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z"},
        {"{\"name\":\"a\",\"expires_at\":\"2030-01-01\"}", 400,
         "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z"},
        {"{\"name\":\"a\",\"expires_at\":\"2020-01-01T00:00:00Z\"}", 400, "expires_at must be in the future"},
        {"{\"name\":\"a\",\"expires_at\":\"2023-11-14T22:13:20Z\"}", 400, "expires_at must be in the future"},
        {big, 413, "The request body is larger than 64 KiB"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_req *r = admin(th, "POST", "/admin/apikeys", cases[i].body);
        if (gw_th_status(r) != cases[i].status) fail_msg("case %zu: %d %s", i, gw_th_status(r), gw_th_body(r, NULL));
        assert_error(r, cases[i].status, cases[i].status == 400 ? "Bad Request" : "Content Too Large",
                     cases[i].message);
    }
    /* nothing was stored */
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    assert_string_equal(gw_th_body(l, NULL), "{\"status\":\"success\",\"data\":[]}");
    /* the edges that are fine: null optional fields, unknown fields, exactly 256 bytes, a leap day */
    char ok[400];
    snprintf(ok, sizeof ok, "{\"name\":\"%0256d\",\"rate_limit\":null,\"expires_at\":null,\"extra\":1}", 0);
    create_key(th, ok);
    create_key(th, "{\"name\":\"a\",\"rate_limit\":1,\"expires_at\":\"2028-02-29t23:59:60.5z\"}");
    create_key(th, "{\"name\":\"ü\",\"rate_limit\":1000000000,\"expires_at\":\"2023-11-14 22:13:21-00:30\"}");
}

/* Strict RFC 3629 UTF-8, written independently of the filter's own check. */
static bool strict_utf8(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i], len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (unsigned k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

/* Invalid UTF-8, NUL escapes, raw control characters and duplicate keys: 400 naming the field (or the
 * body), nothing stored. cJSON alone took the bytes as they were and cut a name at \u0000. */
static void test_create_refuses_bad_text(void **state)
{
    gw_th *th = *state;
    standard(th);
    const struct {
        const char *body, *message;
    } cases[] = {
        {"{\"name\":\"\xff\xfe\"}", "The request body is not valid UTF-8"},
        {"{\"name\":\"ok\xc3\"}", "The request body is not valid UTF-8"},             /* truncated */
        {"{\"name\":\"\xc0\xaf\"}", "The request body is not valid UTF-8"},           /* overlong '/' */
        {"{\"name\":\"\xe0\x80\xaf\"}", "The request body is not valid UTF-8"},       /* overlong, 3 bytes */
        {"{\"name\":\"\xf0\x80\x80\xaf\"}", "The request body is not valid UTF-8"},   /* overlong, 4 bytes */
        {"{\"name\":\"\xed\xa0\x80\"}", "The request body is not valid UTF-8"},       /* U+D800 */
        {"{\"name\":\"\xed\xbf\xbf\"}", "The request body is not valid UTF-8"},       /* U+DFFF */
        {"{\"name\":\"\xf4\x90\x80\x80\"}", "The request body is not valid UTF-8"},   /* above U+10FFFF */
        {"{\"name\":\"\xf8\x88\x80\x80\x80\"}", "The request body is not valid UTF-8"},
        {"{\"name\":\"a\",\"x\":\"\x80\"}", "The request body is not valid UTF-8"},     /* any field */
        {"{\"name\":\"a\\u0000b\"}", "name must not contain NUL characters (\\\\u0000)"},
        {"{\"name\":\"\\u0000\"}", "name must not contain NUL characters (\\\\u0000)"},
        {"{\"name\":\"a\",\"expires_at\":\"2030\\u0000\"}", "expires_at must not contain NUL characters (\\\\u0000)"},
        {"{\"name\":\"a\",\"x\":{\"y\":[\"\\u0000\"]}}", "x must not contain NUL characters (\\\\u0000)"},
        {"{\"a\\u0000\":1,\"name\":\"a\"}", "The request body must not contain NUL characters (\\\\u0000)"},
        {"{\"name\":\"a\tb\"}", "The request body is not valid JSON"}, /* a raw control character */
        {"{\"name\":\"a\\u0085b\"}", "name must not contain control characters"},  /* C1, escaped */
        {"{\"name\":\"a\xc2\x9b\"}", "name must not contain control characters"},  /* C1, raw */
        {"{\"name\":\"a\\u007f\"}", "name must not contain control characters"},
        {"{\"name\":\"a\",\"name\":\"b\"}", "name is given more than once"},
        {"{\"name\":\"a\",\"rate_limit\":5,\"rate_limit\":7}", "rate_limit is given more than once"},
        {"{\"name\":\"a\",\"x\":{\"k\":1,\"k\":2}}", "x has a key more than once"},
        {"{\"name\":\"a\",\"x\":[{\"k\":1},{\"j\":1,\"k\":2,\"j\":3}]}", "x has a key more than once"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_req *r = admin(th, "POST", "/admin/apikeys", cases[i].body);
        if (gw_th_status(r) != 400) fail_msg("case %zu: %d %s", i, gw_th_status(r), gw_th_body(r, NULL));
        assert_error(r, 400, "Bad Request", cases[i].message);
    }
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    assert_string_equal(gw_th_body(l, NULL), "{\"status\":\"success\",\"data\":[]}");

    /* well-formed text of every length is fine, and listed as it was given */
    created k = create_key(th, "{\"name\":\"n\xc3\xa4me \xe2\x9c\x93 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \\u00e9\"}");
    l = admin(th, "GET", "/admin/apikeys", NULL);
    size_t len;
    const char *body = gw_th_body(l, &len);
    assert_true(strict_utf8((const unsigned char *)body, len));
    assert_non_null(strstr(body, "\"name\":\"n\xc3\xa4me \xe2\x9c\x93 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xc3\xa9\""));
    assert_non_null(strstr(body, k.id));
    /* many distinct keys are not duplicates (and cost no n^2) */
    static char wide[60000];
    size_t o = (size_t)snprintf(wide, sizeof wide, "{\"name\":\"w\"");
    for (int i = 0; i < 4000; i++) /* at most 14 bytes each */
        o += (size_t)snprintf(wide + o, sizeof wide - o, ",\"k%d\":%d", i, i);
    assert_true(o < sizeof wide - 2);
    snprintf(wide + o, sizeof wide - o, "}");
    create_key(th, wide);
}

/* A record stored with invalid UTF-8 in its name (an older version let it in; or written into the store
 * directly) is listed with U+FFFD for the bad bytes: the list is valid JSON for a strict client. */
static void test_list_repairs_stored_bad_text(void **state)
{
    gw_th *th = *state;
    standard(th);
    created good = create_key(th, "{\"name\":\"good\"}");
    static const char rec[] = "{\"id\":\"0123456789abcdef0123456789abcdef\",\"name\":\"a\xff\xfe"
                              "b\xc0\xaf\xed\xa0\x80\xe2\x82\",\"active\":true,\"created_at\":\"2020-01-01T00:00:00Z\"}";
    assert_int_equal(gw_th_store_put(th, "apikey", "k:" "00000000000000000000000000000000"
                                     "00000000000000000000000000000000", rec, sizeof rec - 1, 0), 0);
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    assert_int_equal(gw_th_status(l), 200);
    size_t len;
    const char *body = gw_th_body(l, &len);
    if (!strict_utf8((const unsigned char *)body, len)) fail_msg("not UTF-8: %s", body);
    cJSON *doc = json_of(l);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    const cJSON *bad = cJSON_GetArrayItem(data, 0); /* created 2020: listed first */
    assert_string_equal(str_of(bad, "id"), "0123456789abcdef0123456789abcdef");
    /* each bad byte became U+FFFD */
    assert_string_equal(str_of(bad, "name"), "a\xef\xbf\xbd\xef\xbf\xbd"
                                             "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                             "\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(str_of(cJSON_GetArrayItem(data, 1), "id"), good.id);
    cJSON_Delete(doc);
}

/* Stored names with control characters, raw bad bytes or an escaped NUL are forwarded as printable UTF-8
 * ('?' for each), never raw or cut at the NUL; a record that does not parse is listed (invalid: true) under
 * the id it names and can be deleted, and its key gets 401, not 500. */
static void test_stored_bad_records_forwarded_and_listed(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k = create_key(th, "{\"name\":\"x\"}");
    char key[70] = "k:", rec[512];
    sha256_hex(k.raw, key + 2);
    snprintf(rec, sizeof rec, "{\"id\":\"%s\",\"name\":\"a\\u0000b\x01\x7f\xc2\x85\xff\xfe\xc3\xa9\",\"active\":true,"
             "\"created_at\":\"2020-01-01T00:00:00Z\"}", k.id);
    assert_int_equal(gw_th_store_put(th, "apikey", key, rec, strlen(rec), 0), 0);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "a\xef\xbf\xbd" "b?????\xc3\xa9");
    static const char broken[] = "{\"id\":\"00112233445566778899aabbccddeeff\",\"name\":\"\\ud800\",\"active\":";
    assert_int_equal(gw_th_store_put(th, "apikey", "k:" "ff00000000000000000000000000000000000000000000000000000000000000", broken, sizeof broken - 1, 0), 0);
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    cJSON *doc = json_of(l);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    assert_string_equal(str_of(cJSON_GetArrayItem(data, 0), "name"), "a\xef\xbf\xbd" "b\x01\x7f\xc2\x85\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9");
    const cJSON *bad = cJSON_GetArrayItem(data, 1);
    assert_string_equal(str_of(bad, "id"), "00112233445566778899aabbccddeeff");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bad, "invalid")));
    cJSON_Delete(doc);
    assert_int_equal(gw_th_status(admin(th, "POST", "/admin/apikeys/00112233445566778899aabbccddeeff/revoke", NULL)), 409);
    snprintf(rec, sizeof rec, "/admin/apikeys/%s/revoke", k.id); /* the NUL record is revoked as it was listed */
    assert_int_equal(gw_th_status(admin(th, "POST", rec, NULL)), 200);
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), "API key has been revoked");
    assert_int_equal(gw_th_status(admin(th, "DELETE", "/admin/apikeys/00112233445566778899aabbccddeeff", NULL)), 200);
    assert_null(gw_th_store_peek(th, "apikey", "k:ff00000000000000000000000000000000000000000000000000000000000000", NULL));
}

/* --- list, revoke, delete -------------------------------------------------------------------------- */

static void test_list_revoke_delete(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k[3];
    k[0] = create_key(th, "{\"name\":\"first\",\"rate_limit\":10}");
    gw_th_advance(th, 1500);
    k[1] = create_key(th, "{\"name\":\"second\",\"expires_at\":\"2031-05-06T07:08:09Z\"}");
    gw_th_advance(th, 1000);
    k[2] = create_key(th, "{\"name\":\"third\"}");

    gw_req *r = admin(th, "GET", "/admin/apikeys", NULL);
    assert_int_equal(gw_th_status(r), 200);
    const char *body = gw_th_body(r, NULL);
    for (int i = 0; i < 3; i++) {
        char hex[65];
        sha256_hex(k[i].raw, hex);
        assert_null(strstr(body, k[i].raw + 3));
        assert_null(strstr(body, hex));
    }
    assert_null(strstr(body, "raw_key"));
    char want[2048];
    snprintf(want, sizeof want,
             "{\"status\":\"success\",\"data\":["
             "{\"id\":\"%s\",\"name\":\"first\",\"rate_limit\":10,\"active\":true,\"created_at\":\"2023-11-14T22:13:20Z\"},"
             "{\"id\":\"%s\",\"name\":\"second\",\"rate_limit\":0,\"active\":true,\"created_at\":"
             "\"2023-11-14T22:13:21.500Z\",\"expires_at\":\"2031-05-06T07:08:09Z\"},"
             "{\"id\":\"%s\",\"name\":\"third\",\"rate_limit\":0,\"active\":true,\"created_at\":"
             "\"2023-11-14T22:13:22.500Z\"}]}",
             k[0].id, k[1].id, k[2].id);
    assert_string_equal(body, want);

    /* revoke: 200, again 200 (idempotent), the record is kept inactive; unknown ids 404 */
    char path[128];
    snprintf(path, sizeof path, "/admin/apikeys/%s/revoke", k[1].id);
    assert_success_message(admin(th, "POST", path, NULL), "API key revoked");
    assert_non_null(strstr(stored(th, k[1].raw), "\"active\":false"));
    assert_success_message(admin(th, "POST", path, ""), "API key revoked");
    assert_error(admin(th, "POST", "/admin/apikeys/0123456789abcdef0123456789abcdef/revoke", NULL), 404, "Not Found",
                 "API key not found");
    assert_error(admin(th, "POST", "/admin/apikeys/nope/revoke", NULL), 404, "Not Found", "API key not found");
    r = admin(th, "GET", "/admin/apikeys", NULL);
    cJSON *doc = json_of(r);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    assert_int_equal(cJSON_GetArraySize(data), 3);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "active")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 1), "active")));
    assert_string_equal(str_of(cJSON_GetArrayItem(data, 1), "expires_at"), "2031-05-06T07:08:09Z");
    cJSON_Delete(doc);

    /* delete: 200, then 404 */
    snprintf(path, sizeof path, "/admin/apikeys/%s", k[0].id);
    assert_success_message(admin(th, "DELETE", path, NULL), "API key deleted");
    assert_null(stored(th, k[0].raw));
    assert_error(admin(th, "DELETE", path, NULL), 404, "Not Found", "API key not found");
    assert_error(admin(th, "DELETE", "/admin/apikeys/XYZ", NULL), 404, "Not Found", "API key not found");
    snprintf(path, sizeof path, "/admin/apikeys/%s/revoke", k[0].id);
    assert_error(admin(th, "POST", path, NULL), 404, "Not Found", "API key not found");
    r = admin(th, "GET", "/admin/apikeys", NULL);
    doc = json_of(r);
    data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    assert_string_equal(str_of(cJSON_GetArrayItem(data, 0), "id"), k[1].id);
    assert_string_equal(str_of(cJSON_GetArrayItem(data, 1), "id"), k[2].id);
    cJSON_Delete(doc);

    /* methods and paths */
    r = admin(th, "PUT", "/admin/apikeys", "{}");
    assert_error(r, 405, "Method Not Allowed", "The method is not allowed on this endpoint");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Allow"), "GET, HEAD, POST");
    snprintf(path, sizeof path, "/admin/apikeys/%s", k[2].id);
    r = admin(th, "GET", path, NULL);
    assert_error(r, 405, "Method Not Allowed", "The method is not allowed on this endpoint");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Allow"), "DELETE");
    snprintf(path, sizeof path, "/admin/apikeys/%s/revoke", k[2].id);
    r = admin(th, "DELETE", path, NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Allow"), "POST");
    assert_int_equal(gw_th_status(r), 405);
    assert_error(admin(th, "POST", "/admin/apikeys/x/y/z", NULL), 404, "Not Found", "Not found");
    assert_error(admin(th, "POST", "/admin/apikeys/x/unrevoke", NULL), 404, "Not Found", "Not found");
    /* a path that only starts like the admin path is not ours */
    gw_req *other = call(th, "/admin/apikeysx", NULL);
    assert_int_equal(gw_th_status(other), 404);
}

static void test_store_failure_on_admin_calls(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k = create_key(th, "{\"name\":\"a\"}");
    char revoke[128], del[128];
    snprintf(revoke, sizeof revoke, "/admin/apikeys/%s/revoke", k.id);
    snprintf(del, sizeof del, "/admin/apikeys/%s", k.id);
    for (int mode = GW_TH_STORE_FAIL; mode <= GW_TH_STORE_DOWN; mode++) {
        gw_th_store_mode(th, mode);
        assert_error(admin(th, "POST", "/admin/apikeys", "{\"name\":\"b\"}"), 503, "Service Unavailable",
                     "the key store is unavailable");
        assert_error(admin(th, "GET", "/admin/apikeys", NULL), 503, "Service Unavailable",
                     "the key store is unavailable");
        assert_error(admin(th, "POST", revoke, NULL), 503, "Service Unavailable", "the key store is unavailable");
        assert_error(admin(th, "DELETE", del, NULL), 503, "Service Unavailable", "the key store is unavailable");
        /* validation fails closed */
        gw_req *r = call(th, "/api/auth/me", "X-API-Key", "gw_not-cached", NULL);
        assert_error(r, 503, "Service Unavailable", "the key store is unavailable");
    }
    gw_th_store_mode(th, GW_TH_STORE_OK);
    assert_non_null(strstr(stored(th, k.raw), "\"active\":true"));
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    cJSON *doc = json_of(l);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "data")), 1);
    cJSON_Delete(doc);
}

/* --- validation ------------------------------------------------------------------------------------ */

static void test_validation(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k = create_key(th, "{\"name\":\"my-app\",\"rate_limit\":100}");
    char bearer[160];
    snprintf(bearer, sizeof bearer, "Bearer %s", k.raw);

    /* X-API-Key: removed, consumer forwarded; a client's own X-Consumer-* never gets through */
    gw_req *r = call(th, "/api/auth/me", "X-API-Key", k.raw, "X-Consumer-ID", "spoofed", "X-Consumer-Name", "x", NULL);
    assert_consumer(r, k.id, "my-app");
    assert_string_equal(gw_th_body(r, NULL), "backend");

    /* Authorization: Bearer with our prefix: removed too */
    r = call(th, "/api/auth/me", "Authorization", bearer, NULL);
    assert_consumer(r, k.id, "my-app");
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"));
    snprintf(bearer, sizeof bearer, "bearer   %s ", k.raw);
    assert_consumer(call(th, "/api/auth/me", "Authorization", bearer, NULL), k.id, "my-app");
    /* both, the same key: fine; different: refused */
    assert_consumer(call(th, "/api/auth/me", "Authorization", bearer, "X-API-Key", k.raw, NULL), k.id, "my-app");
    assert_401(call(th, "/api/auth/me", "Authorization", "Bearer gw_other", "X-API-Key", k.raw, NULL),
               "More than one API key presented");
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, "X-API-Key", k.raw, NULL),
               "More than one API key presented");

    /* a backend's token passes untouched, anonymously */
    const char *jwt = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
    r = call(th, "/api/auth/me", "Authorization", jwt, "X-Consumer-ID", "spoofed", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"), jwt);
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-Consumer-ID"));
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-Consumer-Name"));
    r = call(th, "/api/auth/me", "Authorization", "Basic YTpi", NULL);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"), "Basic YTpi");
    /* with our key in X-API-Key, the backend's Authorization still goes through */
    r = call(th, "/api/auth/me", "Authorization", jwt, "X-API-Key", k.raw, NULL);
    assert_consumer(r, k.id, "my-app");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"), jwt);

    /* unknown keys */
    assert_401(call(th, "/api/auth/me", "X-API-Key", "gw_unknown", NULL), "Invalid API key");
    assert_401(call(th, "/api/auth/me", "X-API-Key", "", NULL), "Invalid API key");
    assert_401(call(th, "/api/auth/me", "Authorization", "Bearer gw_unknown", NULL), "Invalid API key");
    char almost[160];
    snprintf(almost, sizeof almost, "%sx", k.raw);
    assert_401(call(th, "/api/auth/me", "X-API-Key", almost, NULL), "Invalid API key");
    static char huge[2000];
    memset(huge, 'a', sizeof huge - 1);
    assert_401(call(th, "/api/auth/me", "X-API-Key", huge, NULL), "Invalid API key");

    /* revoked: 401 at once (the cache of this gateway is dropped), also by Bearer */
    char path[128];
    snprintf(path, sizeof path, "/admin/apikeys/%s/revoke", k.id);
    assert_success_message(admin(th, "POST", path, NULL), "API key revoked");
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), "API key has been revoked");
    snprintf(bearer, sizeof bearer, "Bearer %s", k.raw);
    assert_401(call(th, "/api/auth/me", "Authorization", bearer, NULL), "API key has been revoked");

    /* deleted: unknown */
    created d = create_key(th, "{\"name\":\"d\"}");
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", d.raw, NULL), d.id, "d");
    snprintf(path, sizeof path, "/admin/apikeys/%s", d.id);
    assert_success_message(admin(th, "DELETE", path, NULL), "API key deleted");
    assert_401(call(th, "/api/auth/me", "X-API-Key", d.raw, NULL), "Invalid API key");

    /* no key: anonymous where optional (nothing added), 401 where required */
    r = call(th, "/api/auth/me", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-Consumer-ID"));
    assert_401(call(th, "/private/x", NULL), "API key required");
    assert_401(call(th, "/private/x", "Authorization", jwt, NULL), "API key required");
    created p = create_key(th, "{\"name\":\"p\"}");
    assert_consumer(call(th, "/private/x", "X-API-Key", p.raw, NULL), p.id, "p");
}

static void test_expiry(void **state)
{
    gw_th *th = *state;
    standard(th);
    /* start + 1 h */
    created k = create_key(th, "{\"name\":\"short\",\"expires_at\":\"2023-11-14T23:13:20Z\"}");
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "short");
    gw_th_advance(th, 3600 * 1000 - 1);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "short");
    gw_th_advance(th, 1); /* still cached: the cache checks the expiry too */
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), "API key has expired");
    gw_th_advance(th, 10000); /* from the store */
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), "API key has expired");
    /* still listed, as it was */
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    assert_non_null(strstr(gw_th_body(l, NULL), "\"expires_at\":\"2023-11-14T23:13:20Z\""));
}

static void test_require_everywhere(void **state)
{
    gw_th *th = *state;
    load(th, "name: apikey\nrequire: true\n");
    assert_int_equal(gw_th_route(th, "open", "/open", "apikey: {require: false}\n"), 0);
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);
    assert_401(call(th, "/api/auth/me", NULL), "API key required");
    assert_int_equal(gw_th_status(call(th, "/open/x", NULL)), 200);
    /* the admin endpoints are not ours to guard (adminauth is) */
    gw_req *l = admin(th, "GET", "/admin/apikeys", NULL);
    assert_int_equal(gw_th_status(l), 200);
    created k = create_key(th, "{\"name\":\"n\"}");
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "n");
}

/* --- the cache ------------------------------------------------------------------------------------- */

static void test_cache(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k = create_key(th, "{\"name\":\"c\"}");
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    assert_401(call(th, "/api/auth/me", "X-API-Key", "gw_bad", NULL), "Invalid API key");

    /* within cache_ttl (5 s) the store is not asked: a failing store does not matter */
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_th_advance(th, 4999);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    assert_401(call(th, "/api/auth/me", "X-API-Key", "gw_bad", NULL), "Invalid API key");
    gw_th_store_mode(th, GW_TH_STORE_DOWN);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    /* a key not in the cache needs the store */
    assert_error(call(th, "/api/auth/me", "X-API-Key", "gw_new", NULL), 503, "Service Unavailable",
                 "the key store is unavailable");
}

static void test_cache_expiry_and_revoke(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k = create_key(th, "{\"name\":\"c\"}");
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_th_advance(th, 4999);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    gw_th_advance(th, 1); /* stale now: asked again; the store fails, so stale_if_error (5m) answers */
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    gw_th_store_mode(th, GW_TH_STORE_OK);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");

    /* a record changed behind the cache's back (another gateway) shows after cache_ttl */
    char key[70] = "k:";
    sha256_hex(k.raw, key + 2);
    const char *rec = gw_th_store_peek(th, "apikey", key, NULL);
    char changed[512];
    snprintf(changed, sizeof changed, "%s", rec);
    char *a = strstr(changed, "\"active\":true");
    assert_non_null(a);
    memcpy(a, "\"active\":0   ", 13); /* not a bool: a broken record */
    assert_int_equal(gw_th_store_put(th, "apikey", key, changed, strlen(changed), 0), 0);
    assert_consumer(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), k.id, "c");
    gw_th_advance(th, 5000);
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), "Invalid API key record"); /* not 500 */
    gw_th_advance(th, 5000);
    assert_401(call(th, "/api/auth/me", "X-API-Key", k.raw, NULL), "Invalid API key record");
    assert_int_equal(gw_th_log_find(th, GW_LOG_ERROR, "is not a valid API key record"), 1); /* once */
}

static void test_cache_disabled(void **state)
{
    gw_th *th = *state;
    load(th, "name: apikey\ncache_ttl: 0\nstale_if_error: 0\n");
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);
    created k = create_key(th, "{\"name\":\"c\"}");
    assert_consumer(call(th, "/x", "X-API-Key", k.raw, NULL), k.id, "c");
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    assert_error(call(th, "/x", "X-API-Key", k.raw, NULL), 503, "Service Unavailable", "the key store is unavailable");
}

/* cache_ttl 0 asks the store every time, and still has stale_if_error when it fails. */
static void test_cache_ttl_zero_keeps_stale_if_error(void **state)
{
    gw_th *th = *state;
    load(th, "name: apikey\ncache_ttl: 0\n");
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);
    created k = create_key(th, "{\"name\":\"c\"}");
    assert_consumer(call(th, "/x", "X-API-Key", k.raw, NULL), k.id, "c");
    /* every request asks: a record changed in the store shows at once */
    char key[70] = "k:";
    sha256_hex(k.raw, key + 2);
    assert_int_equal(gw_th_store_put(th, "apikey", key, "x", 1, 0), 0);
    assert_401(call(th, "/x", "X-API-Key", k.raw, NULL), "Invalid API key record");
    created k2 = create_key(th, "{\"name\":\"d\"}");
    assert_consumer(call(th, "/x", "X-API-Key", k2.raw, NULL), k2.id, "d");
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_th_advance(th, 299999);
    assert_consumer(call(th, "/x", "X-API-Key", k2.raw, NULL), k2.id, "d");
    gw_th_advance(th, 1); /* 5m since the store last confirmed it */
    assert_error(call(th, "/x", "X-API-Key", k2.raw, NULL), 503, "Service Unavailable", "the key store is unavailable");
}

/* While the store fails, a verdict it gave within stale_if_error still answers: valid keys keep working,
 * revoked ones stay refused, keys never seen get 503 as before, and a revoke or delete made on this gateway
 * before the outage is not undone by a stale entry. The outage is logged when it starts and ends, once. */
static void test_stale_if_error(void **state)
{
    gw_th *th = *state;
    load(th, "name: apikey\ncache_ttl: 1s\nstale_if_error: 10s\n");
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);
    created a = create_key(th, "{\"name\":\"a\"}");
    created never = create_key(th, "{\"name\":\"never\"}");
    created revoked = create_key(th, "{\"name\":\"revoked\"}");
    created gone = create_key(th, "{\"name\":\"gone\"}");
    created deleted = create_key(th, "{\"name\":\"deleted\"}");
    assert_consumer(call(th, "/x", "X-API-Key", a.raw, NULL), a.id, "a");
    for (int i = 0; i < 2; i++) { /* cached as valid on the worker */
        assert_consumer(call(th, "/x", "X-API-Key", revoked.raw, NULL), revoked.id, "revoked");
        assert_consumer(call(th, "/x", "X-API-Key", gone.raw, NULL), gone.id, "gone");
        assert_consumer(call(th, "/x", "X-API-Key", deleted.raw, NULL), deleted.id, "deleted");
    }
    char path[128];
    snprintf(path, sizeof path, "/admin/apikeys/%s/revoke", revoked.id);
    assert_success_message(admin(th, "POST", path, NULL), "API key revoked");
    snprintf(path, sizeof path, "/admin/apikeys/%s/revoke", gone.id);
    assert_success_message(admin(th, "POST", path, NULL), "API key revoked");
    snprintf(path, sizeof path, "/admin/apikeys/%s", deleted.id);
    assert_success_message(admin(th, "DELETE", path, NULL), "API key deleted");
    assert_401(call(th, "/x", "X-API-Key", revoked.raw, NULL), "API key has been revoked"); /* cached so */

    size_t warns = gw_th_log_find(th, GW_LOG_WARN, "");
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_th_advance(th, 2000); /* past cache_ttl: every lookup asks the store, which fails */
    for (int i = 0; i < 5; i++) {
        assert_consumer(call(th, "/x", "X-API-Key", a.raw, NULL), a.id, "a");
        assert_401(call(th, "/x", "X-API-Key", revoked.raw, NULL), "API key has been revoked");
        /* revoked or deleted before the outage and not seen since: not in the cache, so not valid */
        assert_error(call(th, "/x", "X-API-Key", gone.raw, NULL), 503, "Service Unavailable",
                     "the key store is unavailable");
        assert_error(call(th, "/x", "X-API-Key", deleted.raw, NULL), 503, "Service Unavailable",
                     "the key store is unavailable");
        assert_error(call(th, "/x", "X-API-Key", never.raw, NULL), 503, "Service Unavailable",
                     "the key store is unavailable");
    }
    gw_th_store_mode(th, GW_TH_STORE_DOWN); /* calls that cannot even start: the same */
    assert_consumer(call(th, "/x", "X-API-Key", a.raw, NULL), a.id, "a");
    assert_error(call(th, "/x", "X-API-Key", never.raw, NULL), 503, "Service Unavailable",
                 "the key store is unavailable");
    if (gw_th_host(th)->metric_register) assert_true(gw_th_metric(th, "gateway_apikey_stale_total", NULL) == 11.0);
    /* one line for the outage, not one per request */
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, ""), warns + 1);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "key store unavailable (status -1): keys it confirmed within "
                                                     "stale_if_error (10000 ms) are answered from the cache"),
                     1);

    /* 10 s after the store last confirmed it, a stale verdict answers no more */
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_th_advance(th, 8000);
    assert_error(call(th, "/x", "X-API-Key", a.raw, NULL), 503, "Service Unavailable", "the key store is unavailable");
    assert_error(call(th, "/x", "X-API-Key", revoked.raw, NULL), 503, "Service Unavailable",
                 "the key store is unavailable");
    /* the store back: checked with it again, logged once */
    gw_th_store_mode(th, GW_TH_STORE_OK);
    assert_consumer(call(th, "/x", "X-API-Key", a.raw, NULL), a.id, "a");
    assert_consumer(call(th, "/x", "X-API-Key", never.raw, NULL), never.id, "never");
    assert_401(call(th, "/x", "X-API-Key", gone.raw, NULL), "API key has been revoked");
    assert_401(call(th, "/x", "X-API-Key", deleted.raw, NULL), "Invalid API key");
    assert_int_equal(gw_th_log_find(th, GW_LOG_INFO, "key store available again"), 1);
}

/* --- requests that end while waiting --------------------------------------------------------------- */

static void test_client_gone_while_waiting(void **state)
{
    gw_th *th = *state;
    standard(th);
    created k = create_key(th, "{\"name\":\"c\"}");
    gw_th_store_auto(th, false);
    gw_req *r = gw_th_request(th, "GET", "/api/auth/me");
    gw_th_request_header(r, "X-API-Key", k.raw);
    assert_int_equal(gw_th_run(r), GW_TH_WAITING);
    gw_req *c = gw_th_request(th, "POST", "/admin/apikeys");
    gw_th_request_body(c, "{\"name\":\"z\"}", 12);
    assert_int_equal(gw_th_run(c), GW_TH_WAITING);
    gw_req *l = gw_th_request(th, "GET", "/admin/apikeys");
    assert_int_equal(gw_th_run(l), GW_TH_WAITING);
    assert_int_equal(gw_th_store_pending(th), 3);
    gw_th_abort(r);
    gw_th_abort(c);
    gw_th_abort(l);
    assert_int_equal(gw_th_run_pending(th), 3); /* late callbacks: ignored */
    /* and one left waiting when the host goes away */
    gw_req *w = gw_th_request(th, "GET", "/api/auth/me");
    gw_th_request_header(w, "X-API-Key", "gw_other");
    assert_int_equal(gw_th_run(w), GW_TH_WAITING);
    gw_th_store_auto(th, true);
    gw_req *ok = call(th, "/api/auth/me", "X-API-Key", k.raw, NULL);
    assert_consumer(ok, k.id, "c");
}

/* --- settings -------------------------------------------------------------------------------------- */

static void test_custom_settings(void **state)
{
    gw_th *th = *state;
    load(th, "name: apikey\nheader: X-Key\nprefix: acme.\ncache_ttl: 1s\nadmin_path: /ops/keys\nstale_if_error: 2s\n");
    assert_int_equal(gw_th_route(th, "rest", "/", NULL), 0);
    gw_req *r = admin(th, "POST", "/ops/keys", "{\"name\":\"ops\"}");
    assert_int_equal(gw_th_status(r), 201);
    cJSON *doc = json_of(r);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    char raw[128], id[64], bearer[160];
    snprintf(raw, sizeof raw, "%s", str_of(data, "raw_key"));
    snprintf(id, sizeof id, "%s", str_of(cJSON_GetObjectItemCaseSensitive(data, "api_key"), "id"));
    cJSON_Delete(doc);
    assert_int_equal(strlen(raw), 5 + 43);
    assert_memory_equal(raw, "acme.", 5);

    r = call(th, "/x", "X-Key", raw, NULL);
    assert_consumer(r, id, "ops");
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-Key"));
    snprintf(bearer, sizeof bearer, "Bearer %s", raw);
    assert_consumer(call(th, "/x", "Authorization", bearer, NULL), id, "ops");
    /* X-API-Key and gw_ tokens are not ours now: passed on */
    r = call(th, "/x", "X-API-Key", raw, "Authorization", "Bearer gw_abc", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-API-Key"), raw);
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "Authorization"), "Bearer gw_abc");
    assert_null(gw_th_header(r, GW_HDR_UPSTREAM, "X-Consumer-ID"));
    /* /admin/apikeys is an ordinary path now */
    r = call(th, "/admin/apikeys", NULL);
    assert_int_equal(gw_th_status(r), 200);
    assert_true(gw_th_upstream_called(r));
    /* the shorter cache_ttl and stale_if_error */
    gw_th_store_mode(th, GW_TH_STORE_FAIL);
    gw_th_advance(th, 999);
    assert_consumer(call(th, "/x", "X-Key", raw, NULL), id, "ops");
    gw_th_advance(th, 1); /* asked: the store fails, the entry is 1 s old */
    assert_consumer(call(th, "/x", "X-Key", raw, NULL), id, "ops");
    gw_th_advance(th, 1000);
    assert_int_equal(gw_th_status(call(th, "/x", "X-Key", raw, NULL)), 503);
}

static void test_settings_errors(void **state)
{
    gw_th *th = *state;
    const struct {
        const char *conf, *error;
    } cases[] = {
        {"name: apikey\ncolour: red\n", "pipeline.yaml:2:1: apikey.colour: unknown setting (allowed: require, header, prefix, cache_ttl, "
         "stale_if_error, admin_path)"},
        {"name: apikey\nrequire: maybe\n", NULL},
        {"name: apikey\nheader: [a]\n", "pipeline.yaml:2:9: apikey.header: expected a string, not a list"},
        {"name: apikey\nheader: 'X API'\n", "pipeline.yaml:2:9: apikey.header: 'X API' is not a valid header name"},
        {"name: apikey\nheader: ''\n", "pipeline.yaml:2:9: apikey.header: must not be empty"},
        {"name: apikey\nheader: authorization\n",
         "pipeline.yaml:2:9: apikey.header: Authorization is read for Bearer tokens already; name another header"},
        {"name: apikey\nprefix: ''\n",
         "pipeline.yaml:2:9: apikey.prefix: must not be empty (Bearer tokens are recognised by it)"},
        {"name: apikey\nprefix: 'a b'\n", "pipeline.yaml:2:9: apikey.prefix: only letters, digits, '_', '-' and '.' are allowed"},
        {"name: apikey\nprefix: abcdefghijklmnopqrstuvwxyz0123456789\n", "pipeline.yaml:2:9: apikey.prefix: longer than 32 bytes"},
        {"name: apikey\ncache_ttl: soon\n",
         "pipeline.yaml:2:12: apikey.cache_ttl: expected a duration like 250ms, 10s, 2m, 1h (0..1h), got 'soon'"},
        {"name: apikey\ncache_ttl: 2h\n",
         "pipeline.yaml:2:12: apikey.cache_ttl: 2h is out of range 0..1h"},
        {"name: apikey\nstale_if_error: 25h\n", "pipeline.yaml:2:17: apikey.stale_if_error: 25h is out of range 0..24h"},
        {"name: apikey\nstale_if_error: later\n",
         "pipeline.yaml:2:17: apikey.stale_if_error: expected a duration like 250ms, 10s, 2m, 1h (0..24h), "
         "got 'later'"},
        {"name: apikey\nadmin_path: admin\n",
         "pipeline.yaml:2:13: apikey.admin_path: expected a path like /admin/apikeys (no trailing '/')"},
        {"name: apikey\nadmin_path: /admin/\n",
         "pipeline.yaml:2:13: apikey.admin_path: expected a path like /admin/apikeys (no trailing '/')"},
        {"name: apikey\nadmin_path: /\n",
         "pipeline.yaml:2:13: apikey.admin_path: expected a path like /admin/apikeys (no trailing '/')"},
        {"name: apikey\nadmin_path: /a//b\n", "pipeline.yaml:2:13: apikey.admin_path: '/a//b' is not a plain path"},
        {"name: apikey\nadmin_path: /a/../b\n", "pipeline.yaml:2:13: apikey.admin_path: no '.' or '..' segments"},
        {"name: apikey\nadmin_path: '/a?b'\n", "pipeline.yaml:2:13: apikey.admin_path: '/a?b' is not a plain path"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (gw_th_load(th, GW_PLUGIN_SO, cases[i].conf) != -1) fail_msg("case %zu accepted", i);
        const char *e = gw_th_error(th);
        if (cases[i].error) {
            if (strcmp(e, cases[i].error) != 0) fail_msg("case %zu: got \"%s\"", i, e);
        } else if (strncmp(e, "pipeline.yaml:2:", 16) != 0) {
            fail_msg("case %zu: no position in \"%s\"", i, e);
        }
    }
    load(th, "name: apikey\n");
    assert_int_equal(gw_th_route(th, "a", "/a", "apikey: {require: sometimes}\n"), -1);
    assert_int_equal(strncmp(gw_th_error(th), "routes.yaml:", 12), 0);
    assert_int_equal(gw_th_route(th, "b", "/b", "apikey: {required: true}\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "apikey.required: unknown setting (per-route settings: require)"));
    assert_int_equal(gw_th_route(th, "c", "/c", "apikey: true\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "apikey: settings must be a mapping"));
    assert_int_equal(gw_th_route(th, "d", "/d", "apikey: {header: X-Other}\n"), -1);
    assert_non_null(strstr(gw_th_error(th), "apikey.header: not a per-route setting (per-route settings: require)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refuses_bad_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_repairs_stored_bad_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_bad_records_forwarded_and_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_revoke_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_failure_on_admin_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_require_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_expiry_and_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_ttl_zero_keeps_stale_if_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_if_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
