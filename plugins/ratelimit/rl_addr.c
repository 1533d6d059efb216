/* rl_addr.c - IP addresses for the filter "ratelimit": parsing (IPv4, IPv6), canonical text, CIDR lists of
 * trusted proxies, and the client address behind them (X-Forwarded-For / X-Real-IP, right-most untrusted).
 * IPv4 addresses are kept as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one 16-byte form covers both and an
 * IPv4 CIDR /n is the mapped prefix /96+n. */
#include "ratelimit.h"

#include <stdio.h>
#include <string.h>

bool rl_strncaseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Dotted quad, four decimal parts 0..255 without leading zeros. */
static bool parse_v4(const char *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.') return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0')) return false;
        out[part] = (uint8_t)v;
    }
    return i == n;
}

/* The 16 bytes from the groups parsed, the "::" (at group index gap, -1 for none) filled with zeros. */
static bool v6_assemble(const uint16_t groups[8], int ngroups, int gap, uint8_t out[16])
{
    if (gap < 0 && ngroups != 8) return false;
    if (gap >= 0 && ngroups > 7) return false;
    memset(out, 0, 16);
    int head = gap < 0 ? ngroups : gap;
    for (int k = 0; k < head; k++) {
        out[2 * k] = (uint8_t)(groups[k] >> 8);
        out[2 * k + 1] = (uint8_t)groups[k];
    }
    if (gap >= 0) {
        int tail = ngroups - gap;
        for (int k = 0; k < tail; k++) {
            int pos = 8 - tail + k;
            out[2 * pos] = (uint8_t)(groups[gap + k] >> 8);
            out[2 * pos + 1] = (uint8_t)groups[gap + k];
        }
    }
    return true;
}

static bool parse_v6(const char *s, size_t n, uint8_t out[16])
{
    uint16_t groups[8] = {0};
    int ngroups = 0, gap = -1; /* gap: index where "::" stands */
    size_t i = 0;
    if (n < 2) return false;
    if (s[0] == ':') {
        if (s[1] != ':') return false;
        gap = 0;
        i = 2;
        if (i == n) return v6_assemble(groups, ngroups, gap, out);
    }
    for (int guard = 0; guard < 16 && i < n; guard++) {
        /* an embedded IPv4 tail: only in the last 32 bits */
        size_t j = i;
        while (j < n && s[j] != ':' && s[j] != '.')
            j++;
        if (j < n && s[j] == '.') {
            if (ngroups > 6) return false;
            uint8_t v4[4];
            if (!parse_v4(s + i, n - i, v4)) return false;
            groups[ngroups++] = (uint16_t)(v4[0] << 8 | v4[1]);
            groups[ngroups++] = (uint16_t)(v4[2] << 8 | v4[3]);
            i = n;
            break;
        }
        if (j == i || j - i > 4 || ngroups == 8) return false;
        unsigned v = 0;
        for (size_t k = i; k < j; k++) {
            int d = hexval(s[k]);
            if (d < 0) return false;
            v = v << 4 | (unsigned)d;
        }
        groups[ngroups++] = (uint16_t)v;
        i = j;
        if (i == n) break;
        i++; /* the ':' */
        if (i < n && s[i] == ':') {
            if (gap >= 0) return false;
            gap = ngroups;
            i++;
            if (i == n) break;
        } else if (i == n) {
            return false; /* trailing single ':' */
        }
    }
    if (i != n) return false;
    return v6_assemble(groups, ngroups, gap, out);
}

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool rl_ip_parse(const char *s, size_t n, rl_ip *out)
{
    uint8_t v4[4];
    if (n == 0 || n > 64) return false;
    if (memchr(s, ':', n)) {
        if (!parse_v6(s, n, out->a)) return false;
    } else {
        if (!parse_v4(s, n, v4)) return false;
        memcpy(out->a, v4_mapped, 12);
        memcpy(out->a + 12, v4, 4);
    }
    return true;
}

bool rl_ip_is_v4(const rl_ip *ip)
{
    return memcmp(ip->a, v4_mapped, 12) == 0;
}

/* RFC 5952: lowercase, no leading zeros, the longest run (>= 2) of zero groups as "::" (the first if tied);
 * IPv4 (and IPv4-mapped) in dotted form. */
void rl_ip_format(const rl_ip *ip, char out[RL_IP_TEXT])
{
    if (rl_ip_is_v4(ip)) { /* every request of an anonymous client: no printf */
        char *o = out;
        for (int k = 12; k < 16; k++) {
            unsigned v = ip->a[k];
            if (v >= 100) *o++ = (char)('0' + v / 100);
            if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = k < 15 ? '.' : '\0';
        }
        return;
    }
    unsigned g[8];
    for (int k = 0; k < 8; k++)
        g[k] = (unsigned)ip->a[2 * k] << 8 | ip->a[2 * k + 1];
    int best = -1, bestlen = 1;
    for (int k = 0; k < 8;) {
        if (g[k] != 0) {
            k++;
            continue;
        }
        int e = k;
        while (e < 8 && g[e] == 0)
            e++;
        if (e - k > bestlen) {
            best = k;
            bestlen = e - k;
        }
        k = e;
    }
    size_t o = 0;
    for (int k = 0; k < 8; k++) {
        if (k == best) {
            o += (size_t)snprintf(out + o, RL_IP_TEXT - o, "::");
            k += bestlen - 1;
            continue;
        }
        if (k > 0 && k != best + bestlen) out[o++] = ':';
        o += (size_t)snprintf(out + o, RL_IP_TEXT - o, "%x", g[k]);
    }
    out[o] = '\0';
}

bool rl_cidr_match(const rl_cidr *list, size_t n, const rl_ip *ip)
{
    for (size_t i = 0; i < n; i++) {
        const rl_cidr *c = &list[i];
        unsigned full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(c->net.a, ip->a, full) != 0) continue;
        if (rest) {
            uint8_t mask = (uint8_t)(0xffu << (8 - rest));
            if ((ip->a[full] & mask) != c->net.a[full]) continue;
        }
        return true;
    }
    return false;
}

/* One X-Forwarded-For element without blanks: "1.2.3.4", "1.2.3.4:5678", "[::1]", "[::1]:80", "::1". */
static bool parse_forwarded_elem(const char *s, size_t n, rl_ip *out)
{
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return false;
        size_t rest = n - (size_t)(close - s) - 1;
        if (rest && close[1] != ':') return false;
        return rl_ip_parse(s + 1, (size_t)(close - s) - 1, out);
    }
    const char *colon = memchr(s, ':', n);
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) /* one colon: IPv4 with a port */
        n = (size_t)(colon - s);
    return rl_ip_parse(s, n, out);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The client address: the peer, unless it is a trusted proxy; then the right-most X-Forwarded-For element
 * that is not a trusted proxy (all elements of all X-Forwarded-For fields in order), else X-Real-IP when
 * there is no X-Forwarded-For. An element that does not parse ends the walk: the last trusted hop seen is
 * the client then (nobody trusted vouches for what lies beyond it). */
bool rl_client_ip(const gw_host *h, const gw_req *req, const rl_cidr *trusted, size_t ntrusted, rl_ip *out)
{
    gw_strv peer = h->client_ip(req);
    if (!rl_ip_parse(peer.p, peer.n, out)) return false;
    if (!ntrusted || !rl_cidr_match(trusted, ntrusted, out)) return true;

    /* collect the X-Forwarded-For fields (header_at gives them in order) */
    size_t nh = h->header_count(req, GW_HDR_REQUEST);
    gw_strv fields[RL_MAX_XFF_FIELDS];
    size_t nf = 0;
    for (size_t i = 0; i < nh && nf < RL_MAX_XFF_FIELDS; i++) {
        gw_strv name, value;
        if (h->header_at(req, GW_HDR_REQUEST, i, &name, &value) && name.n == 15 &&
            rl_strncaseeq(name.p, "X-Forwarded-For", 15))
            fields[nf++] = value;
    }
    if (nf == 0) {
        gw_strv real;
        rl_ip ip;
        if (h->header_get(req, GW_HDR_REQUEST, "X-Real-IP", &real)) {
            while (real.n && is_blank(real.p[0])) {
                real.p++;
                real.n--;
            }
            while (real.n && is_blank(real.p[real.n - 1]))
                real.n--;
            if (parse_forwarded_elem(real.p, real.n, &ip)) *out = ip;
        }
        return true;
    }
    for (size_t f = nf; f-- > 0;) {
        const char *p = fields[f].p;
        size_t end = fields[f].n;
        for (unsigned guard = 0; guard < 4096 && end > 0; guard++) {
            size_t start = end;
            while (start > 0 && p[start - 1] != ',')
                start--;
            size_t a = start, b = end;
            while (a < b && is_blank(p[a]))
                a++;
            while (b > a && is_blank(p[b - 1]))
                b--;
            end = start ? start - 1 : 0;
            if (a == b) {
                if (start == 0) break;
                continue; /* an empty element: "a,,b" */
            }
            rl_ip ip;
            if (!parse_forwarded_elem(p + a, b - a, &ip)) return true;
            *out = ip;
            if (!rl_cidr_match(trusted, ntrusted, &ip)) return true;
            if (start == 0) break;
        }
    }
    return true; /* every hop trusted: the left-most one */
}
