/* lg_json.c - the writer thread's formatting: one access-log record as one JSON line.
 *
 * Not cJSON: the line has a fixed shape and is written millions of times, so it is encoded field by field
 * into the writer's batch buffer without a tree or an allocation. Every string goes through lg_escape,
 * which also replaces invalid UTF-8 (cJSON would pass it through), so no value can end the line early,
 * forge a field or make the line unparseable. */
#include "logging.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char hexd[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at s (1..4), 0 if the bytes there are not one (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

size_t lg_escape(char *out, const char *in, size_t n)
{
    const unsigned char *s = (const unsigned char *)in;
    char *o = out;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = utf8_len(s + i, n - i);
            if (len) {
                memcpy(o, s + i, len);
                o += len;
                i += len;
            } else {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                i++;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default: /* other controls and DEL */
            memcpy(o, "u00", 3);
            o[3] = hexd[c >> 4];
            o[4] = hexd[c & 15];
            o += 5;
        }
        i++;
    }
    return (size_t)(o - out);
}

size_t lg_cut(const char *s, size_t n, size_t cap)
{
    if (n <= cap) return n;
    size_t k = cap;
    /* back off over continuation bytes so a multi-byte character is not split into invalid UTF-8 */
    for (size_t i = 0; i < 3 && k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80; i++)
        k--;
    return k;
}

static char *put(char *o, const char *lit, size_t n)
{
    memcpy(o, lit, n);
    return o + n;
}
#define PUT(o, lit) put((o), (lit), sizeof(lit) - 1)

static char *put_u64(char *o, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = tmp[--n];
    return o;
}

static char *put_str(char *o, const char *s, size_t n)
{
    *o++ = '"';
    o += lg_escape(o, s, n);
    *o++ = '"';
    return o;
}

/* A string field, null when absent (n == 0 and !present). */
static char *put_opt(char *o, const char *s, size_t n, bool present)
{
    return present ? put_str(o, s, n) : PUT(o, "null");
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" quoted. The part up to the seconds is formatted once a second per thread (the
 * writer formats thousands of lines a second): the rest is three digits. */
static char *put_time(char *o, uint64_t unix_ms)
{
    static _Thread_local uint64_t cached_sec = UINT64_MAX;
    static _Thread_local char head[32];
    static _Thread_local size_t head_n;
    uint64_t sec = unix_ms / 1000;
    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        int n = snprintf(head, sizeof head, "\"%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        head_n = n > 0 && (size_t)n < sizeof head ? (size_t)n : 0;
        cached_sec = sec;
    }
    o = put(o, head, head_n);
    unsigned ms = (unsigned)(unix_ms % 1000);
    *o++ = (char)('0' + ms / 100);
    *o++ = (char)('0' + ms / 10 % 10);
    *o++ = (char)('0' + ms % 10);
    return PUT(o, "Z\"");
}

static const char *const level_names[] = {"info", "warn", "error"};

size_t lg_format(char *out, const lg_rec *r)
{
    char *o = out;
    o = PUT(o, "{\"time\":");
    o = put_time(o, r->unix_ms);
    o = PUT(o, ",\"level\":\"");
    const char *lv = level_names[r->level <= LG_LVL_ERROR ? r->level : LG_LVL_ERROR];
    o = put(o, lv, strlen(lv));
    o = PUT(o, "\",\"request_id\":");
    o = put_opt(o, r->rid, r->n_rid, r->n_rid > 0);
    o = PUT(o, ",\"trace_id\":");
    if (r->has_trace) {
        *o++ = '"';
        lg_hex(o, r->trace, 16);
        o += 32;
        *o++ = '"';
    } else
        o = PUT(o, "null");
    o = PUT(o, ",\"method\":");
    o = put_str(o, r->method, r->n_method);
    o = PUT(o, ",\"path\":");
    o = put_str(o, r->path, r->n_path);
    o = PUT(o, ",\"route\":");
    o = put_opt(o, r->route, r->n_route, r->n_route > 0);
    o = PUT(o, ",\"status\":");
    o = r->status ? put_u64(o, r->status) : PUT(o, "null");
    o = PUT(o, ",\"duration_ms\":");
    o = put_u64(o, r->dur_us / 1000);
    *o++ = '.';
    unsigned frac = (unsigned)(r->dur_us % 1000);
    *o++ = (char)('0' + frac / 100);
    *o++ = (char)('0' + frac / 10 % 10);
    *o++ = (char)('0' + frac % 10);
    o = PUT(o, ",\"upstream\":");
    o = put_opt(o, r->upstream, r->n_upstream, r->n_upstream > 0);
    o = PUT(o, ",\"upstream_status\":");
    o = r->upstream_status ? put_u64(o, r->upstream_status) : PUT(o, "null");
    o = PUT(o, ",\"retries\":");
    o = put_u64(o, r->retries);
    o = PUT(o, ",\"client_ip\":");
    o = put_opt(o, r->ip, r->n_ip, r->n_ip > 0);
    o = PUT(o, ",\"api_key_id\":");
    o = put_opt(o, r->key, r->n_key, r->has_key);
    o = PUT(o, ",\"bytes_in\":");
    o = put_u64(o, r->bytes_in);
    o = PUT(o, ",\"bytes_out\":");
    o = put_u64(o, r->bytes_out);
    o = PUT(o, ",\"user_agent\":");
    o = put_opt(o, r->ua, r->n_ua, r->has_ua);
    o = PUT(o, "}\n");
    return (size_t)(o - out);
}
