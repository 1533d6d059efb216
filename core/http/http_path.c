/* http_path.c - request-target normalisation (RFC 3986 5.2.4 plus '//' merging and %XX decoding of
 * unreserved characters): what routes match and what goes upstream. Pure, shared with the configuration
 * (route prefixes, per-route settings) and the SDK test host. */
#include "http.h"

#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Bytes that can never appear raw in a request-target: controls, space, non-ASCII, and '#' (a fragment
 * is never sent by a client; accepting one would make "/a#/../b" ambiguous). */
static bool bad_byte(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '#';
}

/* Copies one segment into out[*w..], decoding %XX of unreserved characters and upper-casing the rest. */
static int decode_segment(const char *s, size_t n, char *out, size_t cap, size_t *w)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = *w;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (bad_byte(c)) return 400;
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
            if (lo < 0 || (hi | lo) == 0) /* bad escape, or %00 */
                return 400;
            unsigned char v = (unsigned char)(hi << 4 | lo);
            i += 2;
            if (unreserved(v)) {
                c = v;
            } else {
                if (o + 3 >= cap) return 414;
                out[o++] = '%';
                out[o++] = hex[v >> 4];
                out[o++] = hex[v & 15];
                continue;
            }
        }
        if (o + 1 >= cap) return 414;
        out[o++] = (char)c;
    }
    *w = o;
    return 0;
}

/* RFC 3986 5.2.4 with '//' runs merged first. out holds "/seg/seg" while going; ".." pops one segment,
 * and popping past the root is an error rather than being clamped silently. A path that does not fit in
 * the buffer while being built is 414 even if later ".." would have shortened it. */
static int normalize_path(const char *p, size_t n, char *out, size_t cap, size_t *olen)
{
    size_t o = 0;
    bool trailing = false;
    for (size_t i = 1; i <= n;) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        if (o + 1 >= cap) return 414;
        out[o] = '/';
        size_t start = o + 1, w = start;
        int st = decode_segment(p + i, j - i, out, cap, &w);
        if (st) return st;
        size_t len = w - start;
        bool last = j >= n;
        if (len == 0 || (len == 1 && out[start] == '.')) {
            trailing = last;
        } else if (len == 2 && out[start] == '.' && out[start + 1] == '.') {
            if (o == 0) return 400;
            while (out[--o] != '/')
                ;
            trailing = last;
        } else {
            o = w;
            trailing = false;
        }
        i = j + 1;
    }
    if (o == 0 || trailing) {
        if (o + 1 >= cap) return 414;
        out[o++] = '/';
    }
    *olen = o;
    return 0;
}

int gw_path_normalize(const char *target, size_t len, char *out, size_t cap, size_t *out_len,
                      size_t *path_len)
{
    if (len == 0 || target[0] != '/') return 400;
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len, o = 0;
    for (size_t i = plen; i < len; i++) /* the query is forwarded byte for byte, but must be sane */
        if (bad_byte((unsigned char)target[i])) return 400;
    int st = normalize_path(target, plen, out, cap, &o);
    if (st) return st;
    if (o + (len - plen) + 1 > cap) return 414;
    memcpy(out + o, target + plen, len - plen);
    out[o + len - plen] = '\0';
    *path_len = o;
    *out_len = o + len - plen;
    return 0;
}
