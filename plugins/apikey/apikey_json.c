/* apikey_json.c - the strict checks an admin request body passes before its fields are read, and the
 * repair of stored text on its way out, so that what the admin API answers is always valid JSON.
 *
 * cJSON alone is lenient where it matters here: it takes any bytes inside strings (so invalid UTF-8 went
 * into the store and out again in every listing), decodes "\u0000" into a NUL that silently ends the
 * string, and keeps both members of a duplicated key (answering the first one). */
#include "apikey.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: shortest form, no surrogates, at most
 * U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
        if (c == 0xed) hi = 0x9f; /* U+D800..U+DFFF are surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* a continuation byte, C0/C1 (overlong ASCII), F5..FF */
    }
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return len;
}

bool ak_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

size_t ak_utf8_repair(const char *s, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        const char *src = k ? s + i : "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */
        size_t len = k ? k : 3;
        if (o + len >= cap) break;
        memcpy(out + o, src, len);
        o += len;
        i += k ? k : 1;
    }
    out[o] = '\0';
    return o;
}

size_t ak_name_forwardable(const char *s, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n && o + 1 < cap;) {
        size_t k = utf8_seq(p + i, n - i);
        bool ctl = k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f)) ||
                   (k == 2 && p[i] == 0xc2 && p[i + 1] <= 0x9f); /* C0, DEL, C1 */
        if (ctl || o + k >= cap) {
            out[o++] = '?'; /* one byte for one bad byte or character: never longer than the stored name */
            i += k ? k : 1;
            continue;
        }
        memcpy(out + o, s + i, k);
        o += k;
        i += k;
    }
    out[o] = '\0';
    return o;
}

bool ak_has_control(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f) return true;
        if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) return true; /* U+0080..U+009F (C1) */
    }
    return false;
}

/* A field name fit for a message: the text as it is when it is short and plain, else NULL. */
static const char *plain_name(const char *p, size_t n, char *buf, size_t cap)
{
    if (n == 0 || n >= cap || n > 64) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') return NULL;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Scans a body cJSON has accepted for what it lets through inside strings: a raw control character (not
 * JSON) or the escape \u0000. Returns NULL or the 400 message, built in msg. The field named is the
 * top-level member the string belongs to. */
static const char *scan_strings(const char *p, size_t n, char *msg, size_t msglen)
{
    size_t depth = 0;
    bool top_object = false, expect_key = false;
    const char *key = NULL; /* the current top-level member's name, raw */
    size_t key_len = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '{' || c == '[') {
            if (depth == 0) top_object = c == '{';
            depth++;
            expect_key = depth == 1 && c == '{';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1 && top_object) {
            expect_key = true;
        } else if (c == '"') {
            bool is_key = expect_key;
            expect_key = false;
            size_t start = ++i;
            for (; i < n && p[i] != '"'; i++) {
                if ((unsigned char)p[i] < 0x20) return "The request body is not valid JSON";
                if (p[i] != '\\') continue;
                i++;
                if (i + 4 < n && p[i] == 'u' && hex4(p + i + 1) == 0) {
                    char nb[72];
                    const char *field = is_key || !key ? NULL : plain_name(key, key_len, nb, sizeof nb);
                    if (field) snprintf(msg, msglen, "%s must not contain NUL characters (\\u0000)", field);
                    else snprintf(msg, msglen, "The request body must not contain NUL characters (\\u0000)");
                    return msg;
                }
            }
            if (is_key) {
                key = p + start;
                key_len = i - start;
            }
        }
    }
    return NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key that the object `node` has twice, or NULL. Sorting the names keeps a body of many keys (64 KiB
 * holds thousands) from costing n^2 comparisons. */
static const char *own_duplicate(const cJSON *node, bool *oom)
{
    size_t count = 0;
    for (const cJSON *c = node->child; c; c = c->next)
        count++;
    if (!cJSON_IsObject(node) || count < 2) return NULL;
    const char **names = malloc(count * sizeof *names);
    if (!names) {
        *oom = true;
        return NULL;
    }
    size_t i = 0;
    for (const cJSON *c = node->child; c; c = c->next)
        names[i++] = c->string ? c->string : "";
    qsort(names, count, sizeof *names, by_name);
    const char *dup = NULL;
    for (i = 1; i < count && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
    free(names);
    return dup;
}

/* Whether any object in the tree at `node` (itself included) has a key twice. */
static bool has_duplicate(const cJSON *node, bool *oom)
{
    if (own_duplicate(node, oom) || *oom) return true;
    for (const cJSON *c = node->child; c; c = c->next)
        if (has_duplicate(c, oom)) return true;
    return false;
}

/* 0, 1 with *why set (the 400 message), or -1 (out of memory). */
static int check_duplicates(const cJSON *doc, const char **why, char *msg, size_t msglen)
{
    static const char anonymous[] = "The request body has a key more than once";
    bool oom = false;
    char nb[72];
    const char *dup = own_duplicate(doc, &oom), *field;
    if (dup) {
        field = plain_name(dup, strlen(dup), nb, sizeof nb);
        if (field) snprintf(msg, msglen, "%s is given more than once", field);
        *why = field ? msg : anonymous;
        return 1;
    }
    for (const cJSON *c = doc->child; c && !oom; c = c->next) {
        if (!has_duplicate(c, &oom) || oom) continue;
        field = cJSON_IsObject(doc) && c->string ? plain_name(c->string, strlen(c->string), nb, sizeof nb) : NULL;
        if (field) snprintf(msg, msglen, "%s has a key more than once", field);
        *why = field ? msg : anonymous;
        return 1;
    }
    return oom ? -1 : 0;
}

int ak_json_parse_strict(gw_strv body, void **out, const char **why, char *msg, size_t msglen)
{
    *out = NULL;
    *why = NULL;
    if (!ak_utf8_valid(body.p, body.n)) {
        *why = "The request body is not valid UTF-8";
        return 1;
    }
    const char *end = NULL;
    cJSON *doc = body.n ? cJSON_ParseWithLengthOpts(body.p, body.n, &end, false) : NULL;
    if (!doc) {
        *why = body.n ? "The request body is not valid JSON" : "The request body must be a JSON object";
        return 1;
    }
    for (const char *p = end; p && p < body.p + body.n && !*why; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') *why = "The request body is not valid JSON";
    if (!*why) *why = scan_strings(body.p, (size_t)(end - body.p), msg, msglen);
    int rc = *why ? 1 : check_duplicates(doc, why, msg, msglen);
    if (rc != 0) {
        cJSON_Delete(doc);
        return rc;
    }
    *out = doc;
    return 0;
}
