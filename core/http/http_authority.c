/* http_authority.c - the request's authority (RFC 3986 3.2.2 host, RFC 9112 3.2 Host and 3.2.2
 * absolute-form): what the gateway accepts as a host, since it is forwarded in Host, X-Forwarded-Host and
 * Forwarded and upstreams build URLs from it. Pure functions, no allocation. */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "http.h"

#define HOST_MAX 255 /* DNS names stop at 253; nothing legitimate is longer */

/* A deliberate subset of RFC 3986's reg-name: its unreserved characters only (ALPHA DIGIT - . _ ~), what
 * real host names use. The sub-delims (",;=!$&'()*+") are refused: no host needs them, and a ',' or ';'
 * would let a Host value pass for several elements of an X-Forwarded-Host or Forwarded chain upstream.
 * Percent-encoding is refused too: a decoded "%00" is how a NUL reaches code that builds URLs from it. */
static bool reg_name_char(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return true;
    return ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* 1..65535, digits only (no sign, no empty port). */
static bool valid_port(const char *p, size_t n)
{
    if (n == 0 || n > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* "[" IPv6address "]": no zone identifier, no IPvFuture. */
static bool valid_ip_literal(const char *p, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct in6_addr a;
    if (n < 2 || n - 2 >= sizeof buf) return false;
    memcpy(buf, p + 1, n - 2);
    buf[n - 2] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

bool gw_http_authority_valid(gw_str a)
{
    const char *p = a.p;
    size_t host_len;
    if (a.n == 0 || a.n > HOST_MAX + 6) return false;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', a.n);
        if (!rb) return false;
        host_len = (size_t)(rb - p) + 1;
        if (!valid_ip_literal(p, host_len)) return false;
    } else {
        const char *colon = memchr(p, ':', a.n);
        host_len = colon ? (size_t)(colon - p) : a.n;
        if (host_len == 0) return false;
        for (size_t i = 0; i < host_len; i++)
            if (!reg_name_char((unsigned char)p[i])) return false;
    }
    if (host_len > HOST_MAX) return false;
    if (host_len == a.n) return true;
    return p[host_len] == ':' && valid_port(p + host_len + 1, a.n - host_len - 1);
}

int gw_http_absolute_form(gw_str target, gw_str *authority, gw_str *path)
{
    size_t skip = 0;
    if (target.n > 7 && strncasecmp(target.p, "http://", 7) == 0) skip = 7;
    else if (target.n > 8 && strncasecmp(target.p, "https://", 8) == 0) skip = 8;
    if (!skip) return 400;
    const char *s = target.p + skip, *end = target.p + target.n, *e = s;
    while (e < end && *e != '/' && *e != '?' && *e != '#')
        e++;
    *authority = (gw_str){s, (size_t)(e - s)};
    /* RFC 9110 4.2.4: userinfo in an http(s) URI is an error; so is an empty or malformed host. */
    if (memchr(s, '@', authority->n) || !gw_http_authority_valid(*authority)) return 400;
    if (e < end && *e != '/') return 400; /* "http://h?q": a query needs a path */
    *path = e < end ? (gw_str){e, (size_t)(end - e)} : (gw_str){"/", 1};
    return 0;
}
