/* mx_accept.c - content negotiation for /metrics: Accept media ranges with q-values (RFC 9110 12.5.1),
 * JSON only when application/json is strictly preferred over text/plain. */
#include "mx.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    double q;
    int spec; /* 3 = type/subtype, 2 = type/ *, 1 = * / *, 0 = no match */
} mx_pref;

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool same(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* q of one element's parameters ("; q=0.5; x=y"); 1 when absent, -1 when malformed. */
static double qvalue(const char *p, const char *end)
{
    double q = 1;
    while (p < end) {
        while (p < end && (ows(*p) || *p == ';'))
            p++;
        const char *name = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        size_t nlen = (size_t)(p - name);
        while (nlen && ows(name[nlen - 1]))
            nlen--;
        if (p >= end || *p != '=') continue;
        const char *v = ++p;
        while (p < end && *p != ';')
            p++;
        if (nlen == 1 && (name[0] == 'q' || name[0] == 'Q')) {
            char buf[16];
            size_t vl = (size_t)(p - v);
            while (vl && ows(v[vl - 1]))
                vl--;
            while (vl && ows(*v))
                v++, vl--;
            if (!vl || vl >= sizeof buf) return -1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            char *e;
            q = strtod(buf, &e);
            if (*e || !(q >= 0 && q <= 1)) return -1;
        }
    }
    return q;
}

/* Updates *pref with one media range when it matches type/subtype more specifically than before. */
static void consider(mx_pref *pref, const char *t, size_t tn, const char *st, size_t stn, double q,
                     const char *want_t, const char *want_st)
{
    int spec = 0;
    if (same(t, tn, "*") && same(st, stn, "*"))
        spec = 1;
    else if (same(t, tn, want_t) && same(st, stn, "*"))
        spec = 2;
    else if (same(t, tn, want_t) && same(st, stn, want_st))
        spec = 3;
    if (spec > pref->spec) {
        pref->spec = spec;
        pref->q = q;
    }
}

int mx_accept_json(const char *a, size_t len)
{
    mx_pref json = {0, 0}, text = {0, 0};
    const char *end = a + len;
    for (const char *p = a; p < end;) {
        const char *el = p;
        while (p < end && *p != ',')
            p++;
        const char *el_end = p;
        if (p < end) p++;
        while (el < el_end && ows(*el))
            el++;
        const char *semi = memchr(el, ';', (size_t)(el_end - el));
        const char *range_end = semi ? semi : el_end;
        while (range_end > el && ows(range_end[-1]))
            range_end--;
        const char *slash = memchr(el, '/', (size_t)(range_end - el));
        if (!slash) continue;
        double q = semi ? qvalue(semi, el_end) : 1;
        if (q < 0) continue;
        size_t tn = (size_t)(slash - el), stn = (size_t)(range_end - slash - 1);
        consider(&json, el, tn, slash + 1, stn, q, "application", "json");
        consider(&text, el, tn, slash + 1, stn, q, "text", "plain");
    }
    double qj = json.spec ? json.q : 0, qt = text.spec ? text.q : 0;
    return qj > qt ? 1 : 0;
}
