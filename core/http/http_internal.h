/* http_internal.h - what the codec's files share: the byte classes and the case-insensitive and list
 * helpers the head parser, the chunked decoder and the field helpers all use. Not for outside core/http/. */
#ifndef GW_HTTP_INTERNAL_H
#define GW_HTTP_INTERNAL_H

#include <string.h>

#include "http.h"

/* Character classes, one table lookup per byte on the hot path. */
enum {
    C_TCHAR = 1, /* token (RFC 9110 5.6.2): method, field name, coding */
    C_VCHAR = 2, /* visible ASCII 0x21-0x7E: request-target */
    C_FVAL = 4,  /* field-value / reason-phrase byte: HTAB, SP, VCHAR, obs-text */
    C_HOST = 8,  /* host characters; the Host check itself is gw_http_authority_valid (http_authority.c) */
};

#define INT63_MAX UINT64_C(0x7fffffffffffffff) /* the largest length or chunk size we accept */

extern const unsigned char gw_http_cls[256]; /* C_* bits per byte (http_head.c) */

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Compares n bytes with a lower-case literal, ignoring the case of p. */
static inline bool eq_ci_n(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)lit[i]) return false;
    return true;
}

/* Yields the next element of a comma-separated list, OWS-trimmed (possibly empty). *i starts at 0. */
static inline bool list_next(gw_str v, size_t *i, gw_str *elt)
{
    if (*i > v.n) return false;
    size_t s = *i, e;
    const char *comma = s < v.n ? memchr(v.p + s, ',', v.n - s) : NULL;
    e = comma ? (size_t)(comma - v.p) : v.n;
    *i = e + 1;
    while (s < e && is_ows((unsigned char)v.p[s]))
        s++;
    while (e > s && is_ows((unsigned char)v.p[e - 1]))
        e--;
    *elt = (gw_str){v.p + s, e - s};
    return true;
}

static inline bool list_has_str(gw_str value, gw_str token)
{
    size_t i = 0;
    gw_str elt;
    while (list_next(value, &i, &elt))
        if (elt.n && gw_str_eq_ci_str(elt, token)) return true;
    return false;
}

#endif
