/* http.h - the strict HTTP/1.1 message codec: request/response heads (http_head.c), chunked bodies
 * (http_chunked.c), field helpers (http_fields.c), the authority check and path normalisation.
 * Pure functions over byte ranges; no I/O, no allocation. Used by the server, the upstream client and
 * the fuzzers. RFC 9112 framing rules; anything ambiguous is an error, never a guess. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define GW_HTTP_MAX_FIELDS_HARD 256 /* array size; the configured limit may be lower */

typedef struct {
    const char *p;
    size_t n;
} gw_str;

typedef struct {
    gw_str name;  /* as received (case preserved), never empty, token chars only */
    gw_str value; /* leading/trailing OWS trimmed */
} gw_http_field;

enum gw_http_method {
    GW_METHOD_OTHER = 0,
    GW_METHOD_GET,
    GW_METHOD_HEAD,
    GW_METHOD_POST,
    GW_METHOD_PUT,
    GW_METHOD_DELETE,
    GW_METHOD_PATCH,
    GW_METHOD_OPTIONS,
    GW_METHOD_CONNECT,
    GW_METHOD_TRACE,
};

typedef enum {
    GW_BODY_NONE = 0, /* no body at all */
    GW_BODY_LENGTH,   /* exactly content_length bytes follow */
    GW_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
    GW_BODY_CLOSE,    /* responses only: body runs until the connection closes */
} gw_body_kind;

/* Tokens seen in Connection: headers. */
enum {
    GW_CONN_CLOSE = 1u << 0,
    GW_CONN_KEEP_ALIVE = 1u << 1,
    GW_CONN_UPGRADE = 1u << 2,
};

typedef struct {
    /* request line (requests only) */
    gw_str method;
    int method_id; /* enum gw_http_method */
    gw_str target; /* raw request-target as received */
    /* status line (responses only) */
    int status;
    gw_str reason;

    int minor_version; /* HTTP/1.<minor>: 0 or 1 */

    size_t nfields;
    gw_http_field fields[GW_HTTP_MAX_FIELDS_HARD];

    /* Derived by the parser after validating the whole head. */
    gw_body_kind body;
    uint64_t content_length; /* valid when body == GW_BODY_LENGTH */
    unsigned conn_tokens;    /* GW_CONN_* bits from all Connection fields */
    bool keep_alive;         /* persistent per version and Connection tokens */
    bool upgrade;            /* Connection: upgrade and an Upgrade field present */
    bool expect_continue;    /* requests: Expect: 100-continue */
    int host_count;          /* requests: number of Host fields */
    gw_str host;             /* requests: value of the Host field (empty if none) */
} gw_http_head;

typedef struct {
    size_t max_line;   /* request line / status line, bytes without CRLF: over -> 414 (request) / error */
    size_t max_head;   /* whole head incl. request line and final CRLFCRLF: over -> 431 */
    size_t max_fields; /* field lines: over -> 431; clamped to GW_HTTP_MAX_FIELDS_HARD */
} gw_http_limits;

/* Result codes of the head parsers: > 0 is the number of bytes of the head (through the final
 * CRLFCRLF); GW_HTTP_INCOMPLETE means "give me more bytes" (no error seen in what is there);
 * any other negative value is minus the HTTP status to answer (-400, -414, -431, -501, -505). */
#define GW_HTTP_INCOMPLETE 0

/* Parses a request head from buf[0..len). May be called on a prefix: returns an error as soon as the
 * bytes present are invalid, GW_HTTP_INCOMPLETE when they are a valid prefix, and enforces the limits
 * on what it has seen (a prefix already longer than a limit is an error). The gw_str members of `out`
 * point into buf. Rules (RFC 9112): CRLF line endings only (bare CR or bare LF -> 400), no NUL or other
 * CTLs except HTAB in values, no obs-fold, no whitespace before a colon or in a name, method is a token,
 * version exactly HTTP/1.0 or HTTP/1.1 (other HTTP/x.y -> 505), Content-Length digits only and all copies
 * equal, Transfer-Encoding exactly "chunked" (other codings -> 501, TE with CL -> 400, TE in 1.0 -> 400),
 * exactly one Host in HTTP/1.1 (none or several -> 400), a Host that is empty or a valid authority
 * (gw_http_authority_valid, else 400). Leading empty lines (CRLF) before the request line
 * are tolerated and counted in the return value. */
ssize_t gw_http_parse_request(const char *buf, size_t len, const gw_http_limits *lim, gw_http_head *out);

/* Parses a response head. `req_method` is the method of the request it answers (HEAD responses and
 * 1xx/204/304 have no body; a 2xx to CONNECT is a tunnel and reported as GW_BODY_CLOSE). Same rules as
 * requests; a response without CL or TE gets GW_BODY_CLOSE. Status must be 3 digits 100-599. */
ssize_t gw_http_parse_response(const char *buf, size_t len, const gw_http_limits *lim, int req_method,
                               gw_http_head *out);

/* --- chunked transfer coding decoder (resumable, byte-exact) ---------------------------------------
 * Usage: while (1) {
 *   if (gw_chunked_in_data(&c)) { move up to c.remaining bytes of payload; gw_chunked_consumed(&c, n); }
 *   else { r = gw_chunked_feed(&c, p, n, &used); drop `used` framing bytes; act on r; } }
 * Chunk extensions are skipped (bounded), trailer fields are read and discarded (bounded). */
typedef struct {
    int state;
    uint64_t remaining; /* payload bytes left in the current chunk (in data state) */
    size_t line_len;    /* bytes of the current framing line seen so far */
    size_t trailer_len; /* bytes of trailer section seen so far */
    unsigned digits;    /* hex digits in the current size */
    uint64_t total;     /* payload bytes so far (for body caps) */
} gw_chunked;

enum {
    GW_CHUNKED_ERROR = -1, /* malformed: answer 400 and close */
    GW_CHUNKED_AGAIN = 0,  /* consumed what it could, needs more bytes */
    GW_CHUNKED_DATA = 1,   /* a chunk's payload starts: c.remaining bytes of payload follow */
    GW_CHUNKED_DONE = 2,   /* last chunk and trailers consumed; *used ends exactly after the message */
};

void gw_chunked_init(gw_chunked *c);
bool gw_chunked_in_data(const gw_chunked *c);
/* Consumes framing bytes from p[0..n); sets *used. Never consumes payload bytes. */
int gw_chunked_feed(gw_chunked *c, const char *p, size_t n, size_t *used);
/* Tells the decoder that n (<= c->remaining) payload bytes were taken by the caller. */
void gw_chunked_consumed(gw_chunked *c, uint64_t n);

/* --- helpers ------------------------------------------------------------------------------------- */
/* Case-insensitive (ASCII) equality of two strings: lengths first, bytes only when they match. */
static inline bool gw_str_eq_ci_str(gw_str a, gw_str b)
{
    if (a.n != b.n) return false;
    for (size_t i = 0; i < a.n; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        if ((unsigned)(x - 'A') < 26u) x |= 0x20;
        if ((unsigned)(y - 'A') < 26u) y |= 0x20;
        if (x != y) return false;
    }
    return true;
}
/* The same with a C string. Inline, so a literal's length is known at compile time and a name of another
 * length costs one comparison (header names are checked against many literals). */
static inline bool gw_str_eq_ci(gw_str a, const char *lit)
{
    return gw_str_eq_ci_str(a, (gw_str){lit, strlen(lit)});
}
const gw_http_field *gw_http_find(const gw_http_head *h, const char *name); /* first field by name, ci */
/* A non-empty token (RFC 9110 5.6.2): what a field name or a method must be. One table lookup a byte. */
bool gw_http_is_token(const char *s, size_t n);
/* True if the comma-separated token list `value` contains `token` (case-insensitive, OWS tolerated). */
bool gw_http_list_has(gw_str value, const char *token);
/* True for the hop-by-hop fields a proxy never forwards: Connection, Keep-Alive, Proxy-Connection,
 * Proxy-Authenticate, Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade. Fields named in a
 * Connection header are hop-by-hop too: callers check those with gw_http_conn_lists(). */
bool gw_http_is_hop_by_hop(gw_str name);
/* True if `name` is listed as a token in any Connection field of h. */
bool gw_http_conn_lists(const gw_http_head *h, gw_str name);
int gw_http_method_id(gw_str method);
/* "Allow: GET, POST\r\n" for a set of (1u << enum gw_http_method) bits, into out (cap bytes). */
void gw_http_allow_line(unsigned methods, char *out, size_t cap);
const char *gw_http_reason(int status); /* standard reason phrase, "Unknown" if none */

/* --- authority (http_authority.c) ----------------------------------------------------------------- */
/* host [":" port] per RFC 3986: a reg-name (unreserved and sub-delims, no percent-encoding) or an IPv6
 * literal in brackets, then an optional port 1..65535 in digits. Empty is not valid here. */
bool gw_http_authority_valid(gw_str authority);
/* Splits an absolute-form target "http[s]://authority[/path][?query]" (RFC 9112 3.2.2). Returns 0 and
 * sets authority and path ("/" when the target has none), or 400 (other scheme, userinfo, bad host). */
int gw_http_absolute_form(gw_str target, gw_str *authority, gw_str *path);

/* --- request-target path (http_path.c) ----------------------------------------------------------- */
/* Normalises an origin-form request-target (or the path of an absolute-form one: the caller strips
 * "http://authority" first) into `out` (capacity `cap`, NUL-terminated). Result: the path with
 * percent-encoded unreserved characters decoded (%41 -> A, %2E -> .), other escapes kept with upper-case
 * hex, dot-segments removed (RFC 3986 5.2.4), repeated '/' merged; then the query ("?...") appended
 * unchanged. *path_len receives the length of the path part (without the query).
 * Returns 0, or an HTTP status on bad input: 400 (not starting with '/', %00, bad %XX, a ".." that climbs
 * above the root, control bytes), 414 (result longer than cap - 1). */
int gw_path_normalize(const char *target, size_t len, char *out, size_t cap, size_t *out_len,
                      size_t *path_len);

#endif
