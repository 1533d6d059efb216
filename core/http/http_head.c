/* http_head.c - the strict HTTP/1.1 head parser: request and status lines, field lines, the framing they
 * imply. Each verdict is taken at the first byte that settles it, so a prefix never contradicts the whole. */
#include "http_internal.h"

#include <string.h>

const unsigned char gw_http_cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    4,  15, 6,  7,  15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 6,  /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 6,  14, 6,  6,  /* 0x30 */
    6,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 6,  14, 7,  15, /* 0x50 */
    7,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  7,  6,  15, 0,  /* 0x70 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x80 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x90 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xa0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xb0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xc0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xd0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xe0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xf0 */
};

#define MAX_LEADING_EMPTY 4 /* empty lines tolerated before a request line (RFC 9112 2.2) */
#define CL_MAX_DIGITS 19

/* ---- head parser ------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *b;
    size_t len;        /* bytes present */
    size_t end;        /* min(len, max_head): bytes the head may occupy */
    size_t max_line;   /* start line content, without CRLF */
    size_t max_fields; /* clamped to the array size */
    int line_err;      /* -414 for a request line, -400 for a status line */
} parser;

/* What the parser learns from the fields it cares about while it walks them. */
typedef struct {
    uint64_t cl;
    unsigned ncl, nte, te_chunked, nhost, conn;
    bool cl_bad, te_bad, te_unknown, host_bad, has_upgrade, expect;
    gw_str host;
} facts;

static void parser_init(parser *ps, const char *buf, size_t len, const gw_http_limits *lim, int line_err)
{
    ps->b = (const unsigned char *)buf;
    ps->len = len;
    ps->max_line = lim ? lim->max_line : SIZE_MAX;
    size_t max_head = lim ? lim->max_head : SIZE_MAX;
    ps->end = len < max_head ? len : max_head;
    ps->max_fields =
        lim && lim->max_fields < GW_HTTP_MAX_FIELDS_HARD ? lim->max_fields : GW_HTTP_MAX_FIELDS_HARD;
    ps->line_err = line_err;
}

/* Internally 0 means "go on", so "give me more bytes" needs its own value until the public boundary. */
#define NEED_MORE (-1)

static ssize_t public_rc(ssize_t rc)
{
    return rc == NEED_MORE ? GW_HTTP_INCOMPLETE : rc;
}

/* Verdict when the parser needs the byte at p but may not look at it. */
static ssize_t stop_at(const parser *ps, size_t p)
{
    return p >= ps->len ? NEED_MORE : -431;
}

/* Bound for start-line scanning: one byte past max_line, so a content byte there proves the line long. */
static size_t line_bound(const parser *ps, size_t s)
{
    return ps->max_line < ps->end - s ? s + ps->max_line + 1 : ps->end;
}

static ssize_t line_stop(const parser *ps, size_t s, size_t p)
{
    return p - s > ps->max_line ? ps->line_err : stop_at(ps, p);
}

/* CR at p must be followed by LF; returns 0 when it is. */
static ssize_t expect_crlf(const parser *ps, size_t p)
{
    if (ps->b[p] != '\r') return -400;
    if (p + 1 >= ps->end) return stop_at(ps, p + 1);
    return ps->b[p + 1] == '\n' ? 0 : -400;
}

/* "HTTP/" DIGIT "." DIGIT at *pp; *version = major * 10 + minor. */
static ssize_t parse_version(const parser *ps, size_t s, size_t le, size_t *pp, int *version)
{
    static const char pat[] = "HTTP/#.#";
    size_t p = *pp;
    int v = 0;
    for (size_t i = 0; i < sizeof pat - 1; i++, p++) {
        if (p >= le) return line_stop(ps, s, p);
        unsigned char c = ps->b[p];
        if (pat[i] != '#') {
            if (c != (unsigned char)pat[i]) return -400;
        } else {
            if (c < '0' || c > '9') return -400;
            v = v * 10 + (c - '0');
        }
    }
    *pp = p;
    *version = v;
    return 0;
}

static ssize_t check_version(int version, gw_http_head *out)
{
    if (version != 10 && version != 11) return -505;
    out->minor_version = version - 10;
    return 0;
}

static ssize_t skip_empty_lines(const parser *ps, size_t *pp)
{
    size_t p = *pp;
    for (int n = 0; p < ps->end && ps->b[p] == '\r'; n++, p += 2) {
        if (n == MAX_LEADING_EMPTY) return -400;
        ssize_t rc = expect_crlf(ps, p);
        if (rc) return rc;
    }
    *pp = p;
    return 0;
}

static ssize_t parse_request_line(const parser *ps, size_t *pp, gw_http_head *out)
{
    const unsigned char *b = ps->b;
    size_t s = *pp, p = s, le = line_bound(ps, s);
    while (p < le && (gw_http_cls[b[p]] & C_TCHAR))
        p++;
    if (p >= le) return line_stop(ps, s, p);
    if (p == s || b[p] != ' ') return -400;
    out->method = (gw_str){(const char *)b + s, p - s};
    size_t t = ++p;
    while (p < le && (gw_http_cls[b[p]] & C_VCHAR))
        p++;
    if (p >= le) return line_stop(ps, s, p);
    if (p == t || b[p] != ' ') return -400;
    out->target = (gw_str){(const char *)b + t, p - t};
    p++;
    int version;
    ssize_t rc = parse_version(ps, s, le, &p, &version);
    if (rc) return rc;
    if (p >= le) return line_stop(ps, s, p);
    if ((rc = expect_crlf(ps, p))) return rc;
    if ((rc = check_version(version, out))) return rc;
    out->method_id = gw_http_method_id(out->method);
    out->status = 0;
    out->reason = (gw_str){"", 0};
    *pp = p + 2;
    return 0;
}

static ssize_t parse_status_line(const parser *ps, size_t *pp, gw_http_head *out)
{
    const unsigned char *b = ps->b;
    size_t s = *pp, p = s, le = line_bound(ps, s);
    int version, status = 0;
    ssize_t rc = parse_version(ps, s, le, &p, &version);
    if (rc) return rc;
    if (p >= le) return line_stop(ps, s, p);
    if (b[p++] != ' ') return -400;
    for (int i = 0; i < 3; i++, p++) {
        if (p >= le) return line_stop(ps, s, p);
        unsigned char lo = i ? '0' : '1', hi = i ? '9' : '5'; /* 100-599 */
        if (b[p] < lo || b[p] > hi) return -400;
        status = status * 10 + (b[p] - '0');
    }
    size_t r = p;
    if (p < le && b[p] == ' ') {
        r = ++p;
        while (p < le && (gw_http_cls[b[p]] & C_FVAL))
            p++;
    }
    if (p >= le) return line_stop(ps, s, p);
    if ((rc = expect_crlf(ps, p))) return rc;
    if ((rc = check_version(version, out))) return rc;
    out->status = status;
    out->reason = (gw_str){(const char *)b + r, p - r};
    out->method = out->target = (gw_str){"", 0};
    out->method_id = GW_METHOD_OTHER;
    *pp = p + 2;
    return 0;
}

/* 1*DIGIT, at most 19 digits and at most 2^63-1; anything else (sign, list, spaces, hex) is bad. */
static bool parse_cl(gw_str v, uint64_t *out)
{
    if (v.n == 0 || v.n > CL_MAX_DIGITS) return false;
    uint64_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c < '0' || c > '9') return false;
        n = n * 10 + (c - '0'); /* 19 digits fit in 64 bits */
    }
    if (n > INT63_MAX) return false;
    *out = n;
    return true;
}

static void note_cl(facts *f, gw_str v)
{
    uint64_t n;
    if (!parse_cl(v, &n) || (f->ncl && n != f->cl))
        f->cl_bad = true;
    else
        f->cl = n;
    f->ncl++;
}

/* Transfer-Encoding: a token list; every element must be a bare coding name (no parameters). */
static void note_te(facts *f, gw_str v)
{
    size_t i = 0;
    gw_str elt;
    f->nte++;
    while (list_next(v, &i, &elt)) {
        size_t k = 0;
        while (k < elt.n && (gw_http_cls[(unsigned char)elt.p[k]] & C_TCHAR))
            k++;
        if (elt.n == 0 || k != elt.n)
            f->te_bad = true;
        else if (elt.n == 7 && eq_ci_n(elt.p, "chunked", 7))
            f->te_chunked++;
        else
            f->te_unknown = true;
    }
}

static void note_conn(facts *f, gw_str v)
{
    size_t i = 0;
    gw_str e;
    while (list_next(v, &i, &e)) {
        if (e.n == 5 && eq_ci_n(e.p, "close", 5))
            f->conn |= GW_CONN_CLOSE;
        else if (e.n == 10 && eq_ci_n(e.p, "keep-alive", 10))
            f->conn |= GW_CONN_KEEP_ALIVE;
        else if (e.n == 7 && eq_ci_n(e.p, "upgrade", 7))
            f->conn |= GW_CONN_UPGRADE;
    }
}

static void note_host(facts *f, gw_str v)
{
    if (f->nhost++ == 0) f->host = v;
    if (v.n && !gw_http_authority_valid(v)) f->host_bad = true; /* empty: RFC 9112 3.2 allows it */
}

/* Dispatch on the name length first: most fields are none of these and cost one switch. */
static void note_field(facts *f, gw_str name, gw_str v)
{
    switch (name.n) {
    case 4:
        if (eq_ci_n(name.p, "host", 4)) note_host(f, v);
        break;
    case 6:
        if (eq_ci_n(name.p, "expect", 6)) f->expect |= list_has_str(v, (gw_str){"100-continue", 12});
        break;
    case 7:
        if (eq_ci_n(name.p, "upgrade", 7)) f->has_upgrade = true;
        break;
    case 10:
        if (eq_ci_n(name.p, "connection", 10)) note_conn(f, v);
        break;
    case 14:
        if (eq_ci_n(name.p, "content-length", 14)) note_cl(f, v);
        break;
    case 17:
        if (eq_ci_n(name.p, "transfer-encoding", 17)) note_te(f, v);
        break;
    }
}

/* One field line at p (not the final CRLF): name ":" OWS value OWS CRLF. */
static ssize_t parse_field(const parser *ps, size_t *pp, gw_http_field *fld)
{
    const unsigned char *b = ps->b;
    size_t end = ps->end, p = *pp, ns = p;
    while (p < end && (gw_http_cls[b[p]] & C_TCHAR))
        p++;
    if (p >= end) return stop_at(ps, p);
    if (p == ns || b[p] != ':') return -400; /* empty name, obs-fold, space before the colon, CTL */
    size_t ne = p++;
    while (p < end && is_ows(b[p]))
        p++;
    size_t vs = p;
    while (p < end && (gw_http_cls[b[p]] & C_FVAL))
        p++;
    if (p >= end) return stop_at(ps, p);
    ssize_t rc = expect_crlf(ps, p);
    if (rc) return rc;
    size_t ve = p;
    while (ve > vs && is_ows(b[ve - 1]))
        ve--;
    fld->name = (gw_str){(const char *)b + ns, ne - ns};
    fld->value = (gw_str){(const char *)b + vs, ve - vs};
    *pp = p + 2;
    return 0;
}

/* Field lines up to and including the empty line; returns the head length. */
static ssize_t parse_fields(const parser *ps, size_t p, gw_http_head *out, facts *f)
{
    memset(f, 0, sizeof *f);
    f->host = (gw_str){"", 0};
    out->nfields = 0;
    for (;;) {
        if (p >= ps->end) return stop_at(ps, p);
        if (ps->b[p] == '\r') {
            ssize_t rc = expect_crlf(ps, p);
            return rc ? rc : (ssize_t)(p + 2);
        }
        if (out->nfields >= ps->max_fields) return -431;
        gw_http_field *fld = &out->fields[out->nfields];
        ssize_t rc = parse_field(ps, &p, fld);
        if (rc) return rc;
        out->nfields++;
        note_field(f, fld->name, fld->value);
    }
}

/* Framing verdict shared by requests and responses: 0, -400 (ambiguous) or -501 (unknown coding). */
static ssize_t check_framing(const facts *f, int minor)
{
    if (f->cl_bad || f->te_bad) return -400;
    if (f->nte && (f->ncl || minor == 0)) return -400;
    if (f->te_chunked > 1) return -400;
    return f->te_unknown ? -501 : 0;
}

static void derive(gw_http_head *out, const facts *f)
{
    bool v11 = out->minor_version == 1;
    out->body = f->nte ? GW_BODY_CHUNKED : f->ncl ? GW_BODY_LENGTH : GW_BODY_NONE;
    out->content_length = f->ncl ? f->cl : 0;
    out->conn_tokens = f->conn;
    out->keep_alive = !(f->conn & GW_CONN_CLOSE) && (v11 || (f->conn & GW_CONN_KEEP_ALIVE));
    /* RFC 9110 7.8: an Upgrade in an HTTP/1.0 message is ignored. */
    out->upgrade = v11 && (f->conn & GW_CONN_UPGRADE) && f->has_upgrade;
}

static ssize_t request_head(const char *buf, size_t len, const gw_http_limits *lim, gw_http_head *out)
{
    parser ps;
    facts f;
    size_t p = 0;
    parser_init(&ps, buf, len, lim, -414);
    ssize_t rc = skip_empty_lines(&ps, &p);
    if (rc || (rc = parse_request_line(&ps, &p, out))) return rc;
    ssize_t n = parse_fields(&ps, p, out, &f);
    if (n < 0) return n;
    bool v11 = out->minor_version == 1;
    rc = check_framing(&f, out->minor_version);
    if (rc == -400) return rc;
    if (f.host_bad || f.nhost > 1 || (v11 && f.nhost == 0)) return -400;
    if (rc) return rc;
    derive(out, &f);
    out->expect_continue = v11 && f.expect; /* RFC 9110 10.1.1: ignored in HTTP/1.0 */
    out->host_count = (int)f.nhost;
    out->host = f.host;
    return n;
}

static ssize_t response_head(const char *buf, size_t len, const gw_http_limits *lim, int req_method,
                             gw_http_head *out)
{
    parser ps;
    facts f;
    size_t p = 0;
    parser_init(&ps, buf, len, lim, -400);
    ssize_t rc = parse_status_line(&ps, &p, out);
    if (rc) return rc;
    ssize_t n = parse_fields(&ps, p, out, &f);
    if (n < 0) return n;
    if ((rc = check_framing(&f, out->minor_version))) return rc;
    derive(out, &f);
    int st = out->status;
    if (st < 200 || st == 204 || st == 304 || req_method == GW_METHOD_HEAD)
        out->body = GW_BODY_NONE;
    else if (req_method == GW_METHOD_CONNECT && st < 300)
        out->body = GW_BODY_CLOSE;
    else if (out->body == GW_BODY_NONE)
        out->body = GW_BODY_CLOSE;
    if (out->body == GW_BODY_CLOSE) out->keep_alive = false;
    out->expect_continue = false;
    out->host_count = 0;
    out->host = (gw_str){"", 0};
    return n;
}

ssize_t gw_http_parse_request(const char *buf, size_t len, const gw_http_limits *lim, gw_http_head *out)
{
    return public_rc(request_head(buf, len, lim, out));
}

ssize_t gw_http_parse_response(const char *buf, size_t len, const gw_http_limits *lim, int req_method,
                               gw_http_head *out)
{
    return public_rc(response_head(buf, len, lim, req_method, out));
}
