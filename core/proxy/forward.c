/* forward.c - header hygiene on the way upstream: hop-by-hop fields, fields the client names in
 * Connection (RFC 9110 7.6.1), names with '_', and the fields only the gateway may set. X-Forwarded-For and
 * Forwarded (RFC 7239) are chains: what the client sent stays (claims nobody checked) and this hop is
 * appended; a client Forwarded that does not parse is dropped whole, since an open quote in it would
 * swallow our element. X-Real-IP is one answer, the gateway's: the peer, or, when the peer is one of
 * proxy.trusted_proxies, the client that peer reports (right-most untrusted X-Forwarded-For entry, as
 * nginx's realip module with real_ip_recursive does). */
#include "forward.h"

#include <arpa/inet.h>
#include <string.h>

#include "log.h"

/* Set by the gateway alone: whatever the client sent under these names is dropped. */
static const gw_str own[] = {
    {"Host", 4},
    {"Content-Length", 14},
    {"Expect", 6},
    {"X-Forwarded-For", 15},
    {"X-Forwarded-Proto", 17},
    {"X-Forwarded-Host", 16},
    {"X-Request-Id", 12},
    {"X-Real-IP", 9},
    {"Forwarded", 9},
};

/* Runs for every field of every request: lengths first, bytes only when they match. */
static bool ours_or_hop(gw_str name)
{
    if (gw_http_is_hop_by_hop(name)) return true;
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (gw_str_eq_ci_str(name, own[i])) return true;
    return false;
}

const gw_http_field *gw_fwd_fields(const gw_conn *c, size_t *n)
{
    const gw_req *r = &c->rq;
    *n = r->hup_on ? r->hup.n : r->hreq_on ? r->hreq.n : c->req->nfields;
    return r->hup_on ? r->hup.v : r->hreq_on ? r->hreq.v : c->req->fields;
}

/* a (a name with '_') read with '-' for '_' is b, case-insensitively */
static bool dash_eq(gw_str a, gw_str b)
{
    if (a.n != b.n) return false;
    for (size_t i = 0; i < a.n; i++) {
        unsigned char x = (unsigned char)(a.p[i] == '_' ? '-' : a.p[i]), y = (unsigned char)b.p[i];
        if (x >= 'A' && x <= 'Z') x |= 0x20;
        if (y >= 'A' && y <= 'Z') y |= 0x20;
        if (x != y) return false;
    }
    return true;
}

static bool dash_in(gw_str name, const gw_http_field *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (dash_eq(name, v[i].name)) return true;
    return false;
}

/* With underscores allowed, a name that a CGI-style upstream would read as another field is still
 * dropped: a field the gateway sets or a hop-by-hop one, a field that is in the request (as the client
 * sent it or as a filter left it) under its '-' spelling, and the identity fields X-Consumer-* that
 * authentication filters set (on an anonymous request they are absent, yet must not be forgeable). */
static bool shadows(const gw_conn *c, gw_str name)
{
    char buf[24]; /* longer than any name in the lists above */
    if (name.n <= sizeof buf) {
        for (size_t i = 0; i < name.n; i++)
            buf[i] = name.p[i] == '_' ? '-' : name.p[i];
        if (ours_or_hop((gw_str){buf, name.n})) return true;
    }
    if (name.n >= 11 && dash_eq((gw_str){name.p, 11}, (gw_str){"X-Consumer-", 11})) return true;
    size_t n;
    const gw_http_field *out = gw_fwd_fields(c, &n);
    return dash_in(name, out, n) || dash_in(name, c->req->fields, c->req->nfields);
}

bool gw_fwd_skip_field(const gw_conn *c, const gw_http_field *f)
{
    if (ours_or_hop(f->name) || gw_http_conn_lists(c->req, f->name)) return true;
    if (!memchr(f->name.p, '_', f->name.n)) return false;
    /* nginx's underscores_in_headers off: CGI-style upstreams map '-' and '_' to the same variable, so
     * "Transfer_Encoding" or "X_Real_IP" would pass for the real thing there. */
    return !c->gen->cfg->underscores_in_headers || shadows(c, f->name);
}

/* ---- RFC 7239 4: Forwarded = 1#forwarded-element, forwarded-element = [ pair ] *( ";" [ pair ] ),
 * pair = token "=" ( token / quoted-string ). OWS is allowed around ',' (RFC 9110 5.6.1) and, leniently,
 * around ';' (some proxies write "for=a; proto=b"), never around '='. ---- */

static bool tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static size_t skip_ows(gw_str v, size_t i)
{
    while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t'))
        i++;
    return i;
}

/* The end of the token or quoted-string at i, or 0 when there is none (i > 0 for every value). */
static size_t value_end(gw_str v, size_t i)
{
    size_t s = i;
    if (i < v.n && v.p[i] == '"') {
        for (i++; i < v.n; i++) {
            unsigned char ch = (unsigned char)v.p[i];
            if (ch == '"') return i + 1;
            if (ch == '\\') {
                if (++i == v.n) return 0;
                ch = (unsigned char)v.p[i];
            }
            if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) return 0; /* qdtext / quoted-pair: no CTLs */
        }
        return 0; /* unbalanced quote */
    }
    while (i < v.n && tchar((unsigned char)v.p[i]))
        i++;
    return i > s ? i : 0;
}

static bool forwarded_valid(gw_str v)
{
    size_t i = skip_ows(v, 0);
    while (i < v.n) {
        if (v.p[i] != ',' && v.p[i] != ';') { /* a pair */
            size_t k = i;
            while (k < v.n && tchar((unsigned char)v.p[k]))
                k++;
            if (k == i || k == v.n || v.p[k] != '=') return false;
            if (!(i = value_end(v, k + 1))) return false;
            i = skip_ows(v, i);
            if (i < v.n && v.p[i] != ',' && v.p[i] != ';') return false;
            continue;
        }
        i = skip_ows(v, i + 1); /* a separator; empty elements and pairs are allowed */
    }
    return true;
}

/* The client's Forwarded is used only when every one of its fields parses: a field is one list with the
 * next (RFC 9110 5.3), so an open quote in one would take in the others and ours. */
static bool client_forwarded_ok(const gw_conn *c)
{
    const gw_http_head *h = c->req;
    for (size_t i = 0; i < h->nfields; i++) {
        const gw_http_field *f = &h->fields[i];
        if (gw_str_eq_ci(f->name, "Forwarded") && !forwarded_valid(f->value)) {
            gw_debug("%s: malformed Forwarded from the client dropped", c->peer_ip);
            return false;
        }
    }
    return true;
}

/* The client's own values of a chain field, unless the client declared the field hop-by-hop. */
static void add_client_values(const gw_conn *c, gw_hbuf *b, const char *name)
{
    const gw_http_head *h = c->req;
    gw_str n = {name, strlen(name)};
    if (gw_http_conn_lists(h, n)) return;
    for (size_t i = 0; i < h->nfields; i++) {
        const gw_http_field *f = &h->fields[i];
        if (f->value.n && gw_str_eq_ci(f->name, name)) {
            gw_hb_add(b, f->value.p, f->value.n);
            GW_HB_LIT(b, ", ");
        }
    }
}

/* ---- addresses: 16 bytes, IPv4 as IPv4-mapped IPv6 ---- */

static bool parse_ip(const char *p, size_t n, uint8_t out[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct in_addr a4;
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return true;
    }
    return inet_pton(AF_INET6, buf, out) == 1;
}

static bool trusted(const gw_config *cfg, const uint8_t a[16])
{
    for (size_t i = 0; i < cfg->ntrusted_proxies; i++) {
        const gw_addr_block *r = &cfg->trusted_proxies[i];
        unsigned full = r->bits / 8, rest = r->bits % 8;
        if (memcmp(a, r->addr, full) != 0) continue;
        if (rest && ((a[full] ^ r->addr[full]) & (0xff00u >> rest) & 0xff)) continue;
        return true;
    }
    return false;
}

static void ip_text(const uint8_t a[16], char out[INET6_ADDRSTRLEN])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) inet_ntop(AF_INET, a + 12, out, INET6_ADDRSTRLEN);
    else inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN);
}

static gw_str trim(const char *p, size_t s, size_t e)
{
    while (s < e && (p[s] == ' ' || p[s] == '\t'))
        s++;
    while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
        e--;
    return (gw_str){p + s, e - s};
}

/* Walks the X-Forwarded-For entries right to left from a trusted peer (ip holds it). Returns true and
 * leaves the client in ip when the walk ended; false when there was no entry at all. An entry that does
 * not parse ends the walk at the last trusted hop: nobody trusted vouches for what lies beyond it. */
static bool walk_xff(const gw_conn *c, uint8_t ip[16])
{
    const gw_http_head *h = c->req;
    bool any = false;
    if (gw_http_conn_lists(h, (gw_str){"X-Forwarded-For", 15})) return false;
    for (size_t i = h->nfields; i-- > 0;) {
        const gw_http_field *f = &h->fields[i];
        if (!gw_str_eq_ci(f->name, "X-Forwarded-For")) continue;
        size_t end = f->value.n;
        for (size_t k = 0; k <= f->value.n; k++) { /* each turn consumes a comma: n + 1 turns at most */
            size_t s = end;
            while (s > 0 && f->value.p[s - 1] != ',')
                s--;
            gw_str e = trim(f->value.p, s, end);
            if (e.n) {
                uint8_t a[16];
                any = true;
                if (!parse_ip(e.p, e.n, a)) return true;
                memcpy(ip, a, 16);
                if (!trusted(c->gen->cfg, a)) return true;
            }
            if (s == 0) break;
            end = s - 1;
        }
    }
    return any;
}

/* The client's address as this gateway believes it, as text: the peer's, or written into out. */
static const char *real_ip(const gw_conn *c, char out[INET6_ADDRSTRLEN])
{
    uint8_t ip[16];
    if (!c->gen->cfg->ntrusted_proxies || !parse_ip(c->peer_ip, strlen(c->peer_ip), ip) ||
        !trusted(c->gen->cfg, ip))
        return c->peer_ip;
    if (!walk_xff(c, ip)) {
        const gw_http_field *x = gw_http_find(c->req, "X-Real-IP");
        uint8_t a[16];
        if (x && !gw_http_conn_lists(c->req, x->name) && parse_ip(x->value.p, x->value.n, a))
            memcpy(ip, a, 16);
    }
    ip_text(ip, out);
    return out;
}

/* RFC 7239 4: for=, proto=, host=; an IPv6 node is a quoted "[...]", the host always a quoted-string
 * (it may hold ':', which a token may not). The authority check leaves no '"' or '\\' in the host; they
 * are escaped all the same, so that our element stays one quoted-string whatever that check allows. */
static void add_forwarded(const gw_conn *c, gw_hbuf *b)
{
    const gw_http_head *h = c->req;
    GW_HB_LIT(b, "Forwarded: ");
    if (client_forwarded_ok(c)) add_client_values(c, b, "Forwarded");
    bool v6 = strchr(c->peer_ip, ':') != NULL;
    GW_HB_LIT(b, "for=");
    if (v6) GW_HB_LIT(b, "\"[");
    gw_hb_str(b, c->peer_ip);
    if (v6) GW_HB_LIT(b, "]\"");
    if (c->tls) GW_HB_LIT(b, ";proto=https");
    else GW_HB_LIT(b, ";proto=http");
    if (h->host.n) {
        GW_HB_LIT(b, ";host=\"");
        for (size_t i = 0, s = 0; i <= h->host.n; i++) {
            if (i < h->host.n && h->host.p[i] != '"' && h->host.p[i] != '\\') continue;
            gw_hb_add(b, h->host.p + s, i - s);
            if (i < h->host.n) {
                GW_HB_LIT(b, "\\");
                s = i; /* the escaped character starts the next run */
            }
        }
        GW_HB_LIT(b, "\"");
    }
    GW_HB_LIT(b, "\r\n");
}

void gw_fwd_add_fields(const gw_conn *c, gw_hbuf *b)
{
    const gw_http_head *h = c->req;
    GW_HB_LIT(b, "X-Forwarded-For: ");
    add_client_values(c, b, "X-Forwarded-For");
    gw_hb_str(b, c->peer_ip);
    GW_HB_LIT(b, "\r\n");
    if (c->tls) GW_HB_LIT(b, "X-Forwarded-Proto: https\r\n");
    else GW_HB_LIT(b, "X-Forwarded-Proto: http\r\n");
    if (h->host.n) gw_hb_field(b, "X-Forwarded-Host", 16, h->host.p, h->host.n);
    char ip[INET6_ADDRSTRLEN];
    GW_HB_LIT(b, "X-Real-IP: ");
    gw_hb_str(b, real_ip(c, ip));
    GW_HB_LIT(b, "\r\n");
    add_forwarded(c, b);
}
