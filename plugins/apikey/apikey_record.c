/* apikey_record.c - what apikey stores and shows about a key: the record's JSON, RFC 3339 times, hex, the
 * SHA-256 a key is stored under and the random bytes it is made of. */
#include "apikey.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int ak_sha256(const EVP_MD *md, const char *in, size_t n, uint8_t out[AK_DIGEST_LEN])
{
    unsigned len = 0;
    return EVP_Digest(in, n, out, &len, md ? md : EVP_sha256(), NULL) == 1 && len == AK_DIGEST_LEN ? 0 : -1;
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

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The code unit of the escape "\uXXXX" at s[i] (s[i] == '\\'), or -1. */
static long u_escape(const char *s, size_t len, size_t i)
{
    if (i + 6 > len || s[i + 1] != 'u') return -1;
    long v = 0;
    for (size_t k = 2; k < 6; k++) {
        int d = hexval(s[i + k]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The escapes at which a record's text goes wrong for cJSON, "\u0000" and unpaired surrogates, rewritten
 * in place as "\ufffd" (same length). Only escapes are touched: a backslash inside a string always starts
 * one, and outside strings there is none in a record. */
static void fix_escapes(char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] != '\\') continue;
        long v = u_escape(s, len, i);
        if (v < 0) {
            i++; /* another escape: skip the escaped character */
            continue;
        }
        bool bad = v == 0 || (v >= 0xdc00 && v <= 0xdfff);
        if (v >= 0xd800 && v <= 0xdbff) {
            long lo = i + 6 < len && s[i + 6] == '\\' ? u_escape(s, len, i + 6) : -1;
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                i += 11; /* a pair: both escapes are fine */
                continue;
            }
            bad = true;
        }
        if (bad) memcpy(s + i, "\\ufffd", 6);
        i += 5;
    }
}

static bool needs_fix(const char *json, size_t len)
{
    for (size_t i = 0; i + 2 < len; i++)
        if (json[i] == '\\' && json[i + 1] == 'u' &&
            (json[i + 2] == '0' || json[i + 2] == 'd' || json[i + 2] == 'D'))
            return true;
    return false;
}

void ak_record_salvage_id(const char *json, size_t len, gw_strv store_key, char id[AK_ID_LEN + 1])
{
    static const char tag[] = "\"id\":\"";
    for (size_t i = 0; i + sizeof tag - 1 + AK_ID_LEN < len; i++) {
        if (memcmp(json + i, tag, sizeof tag - 1) != 0) continue;
        const char *v = json + i + sizeof tag - 1;
        if (is_hex_id(v, AK_ID_LEN) && v[AK_ID_LEN] == '"') {
            memcpy(id, v, AK_ID_LEN);
            id[AK_ID_LEN] = '\0';
            return;
        }
    }
    size_t n = store_key.n > 2 ? store_key.n - 2 : 0;
    n = n < AK_ID_LEN ? n : AK_ID_LEN;
    for (size_t i = 0; i < n; i++) {
        char c = store_key.p[2 + i];
        id[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : (hexval(c) >= 0 ? c : '0');
    }
    memset(id + n, '0', AK_ID_LEN - n);
    id[AK_ID_LEN] = '\0';
}

void *ak_record_doc(const char *json, size_t len)
{
    if (!needs_fix(json, len)) return cJSON_ParseWithLength(json, len);
    char *copy = malloc(len ? len : 1);
    if (!copy) return NULL;
    memcpy(copy, json, len);
    fix_escapes(copy, len);
    cJSON *doc = cJSON_ParseWithLength(copy, len);
    free(copy);
    return doc;
}

int ak_record_parse(const char *json, size_t len, ak_record *out)
{
    memset(out, 0, sizeof *out);
    cJSON *doc = ak_record_doc(json, len);
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

