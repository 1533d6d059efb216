/* parse.c - gw-demo-service's request parsing: the head (request line, header fields, framing by
 * Content-Length or chunked, keep-alive, Expect: 100-continue) and chunk-size lines. */
#include "demo_service.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

const char *demo_find_header(const struct conn *c, const char *name)
{
    for (size_t i = 0; i < c->nheaders; i++)
        if (strcmp(c->headers[i].name, name) == 0) return c->headers[i].value;
    return NULL;
}

/* true if the comma-separated list in `value` holds `token` (case-insensitive) */
bool demo_has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if ((size_t)(last - p) == tlen && strncasecmp(p, token, tlen) == 0) return true;
        p = end;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------------ */
/* request parsing */

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

bool demo_parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

/* Takes the head off the input into c->head. False when more bytes are needed or it was refused. */
static bool read_head(struct conn *c, struct evbuffer *in)
{
    char first;

    /* RFC 9112 2.2: ignore empty lines before a request line */
    for (int i = 0; i < 64 && evbuffer_copyout(in, &first, 1) == 1 && (first == '\r' || first == '\n'); i++)
        evbuffer_drain(in, 1);

    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > MAX_HEAD) demo_send_error(c, 431, "request head too large");
        return false;
    }
    size_t hlen = (size_t)end.pos + 4;
    if (hlen > MAX_HEAD) {
        demo_send_error(c, 431, "request head too large");
        return false;
    }
    c->head = malloc(hlen + 1);
    if (!c->head) {
        demo_send_error(c, 503, "out of memory");
        return false;
    }
    evbuffer_remove(in, c->head, hlen);
    c->head[hlen] = '\0';
    if (memchr(c->head, '\0', hlen)) {
        demo_send_error(c, 400, "NUL byte in the request head");
        return false;
    }
    return true;
}

static bool parse_version(struct conn *c, const char *version)
{
    if (strcmp(version, "HTTP/1.1") == 0) {
        c->minor = 1;
    } else if (strcmp(version, "HTTP/1.0") == 0) {
        c->minor = 0;
    } else if (strncmp(version, "HTTP/", 5) == 0) {
        c->minor = 1;
        demo_send_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
        return false;
    } else {
        demo_send_error(c, 400, "malformed HTTP version");
        return false;
    }
    return true;
}

/* The request line: method SP request-target SP HTTP-version. Returns the end of the line in c->head,
 * or NULL when it was refused. */
static char *parse_request_line(struct conn *c)
{
    char *line = c->head;
    char *eol = strstr(line, "\r\n");
    *eol = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1) {
        demo_send_error(c, 400, "malformed request line");
        return NULL;
    }
    *sp1 = *sp2 = '\0';
    for (const char *p = line; *p; p++)
        if (!is_tchar((unsigned char)*p)) {
            demo_send_error(c, 400, "malformed method");
            return NULL;
        }
    for (const char *p = sp1 + 1; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            demo_send_error(c, 400, "malformed request target");
            return NULL;
        }
    if (!parse_version(c, sp2 + 1)) return NULL;
    c->method = line;
    c->target = sp1 + 1;
    return eol;
}

/* The header fields after the request line (which ends at eol): names lower-cased, values trimmed. */
static bool parse_fields(struct conn *c, char *eol)
{
    for (char *line = eol + 2; *line; line = eol + 2) {
        eol = strstr(line, "\r\n");
        if (eol == line) break; /* the empty line ending the head */
        *eol = '\0';
        if (strpbrk(line, "\r\n")) {
            demo_send_error(c, 400, "bare CR or LF in a header field");
            return false;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            demo_send_error(c, 400, "malformed header field");
            return false;
        }
        for (char *p = line; p < colon; p++) {
            if (!is_tchar((unsigned char)*p)) {
                demo_send_error(c, 400, "malformed header field name");
                return false;
            }
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        }
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        char *vend = value + strlen(value);
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            *--vend = '\0';
        if (c->nheaders == MAX_HEADERS) {
            demo_send_error(c, 431, "too many header fields");
            return false;
        }
        c->headers[c->nheaders].name = line;
        c->headers[c->nheaders].value = value;
        c->nheaders++;
    }
    return true;
}

/* Message framing: Content-Length (all equal) or Transfer-Encoding: chunked alone, the body at most
 * MAX_BODY. False when the request was refused. */
static bool parse_framing(struct conn *c, bool *chunked, uint64_t *length)
{
    const char *te = demo_find_header(c, "transfer-encoding");
    bool have_length = false;
    size_t nte = 0;

    *chunked = false;
    *length = 0;
    for (size_t i = 0; i < c->nheaders; i++) {
        if (strcmp(c->headers[i].name, "transfer-encoding") == 0) nte++;
        if (strcmp(c->headers[i].name, "content-length") != 0) continue;
        uint64_t v;
        if (!demo_parse_uint(c->headers[i].value, &v) || (have_length && v != *length)) {
            demo_send_error(c, 400, "invalid Content-Length");
            return false;
        }
        *length = v;
        have_length = true;
    }
    if (te) {
        if (c->minor == 0) {
            demo_send_error(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
            return false;
        }
        if (have_length) {
            demo_send_error(c, 400, "both Transfer-Encoding and Content-Length");
            return false;
        }
        if (nte != 1 || strcasecmp(te, "chunked") != 0) {
            demo_send_error(c, 501, "only the chunked transfer coding is supported");
            return false;
        }
        *chunked = true;
    }
    if (*length > MAX_BODY) {
        demo_send_error(c, 413, "request body larger than 1 MiB");
        return false;
    }
    return true;
}

/* Parses the head at the start of the input. Returns false when more bytes are needed or the request
 * was refused (an error answer is then queued and the state is ST_CLOSING). */
bool demo_parse_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!read_head(c, in)) return false;
    char *eol = parse_request_line(c);
    if (!eol || !parse_fields(c, eol)) return false;
    bool chunked;
    uint64_t length;
    if (!parse_framing(c, &chunked, &length)) return false;

    const char *connection = demo_find_header(c, "connection");
    if (connection && demo_has_token(connection, "close"))
        c->keep_alive = false;
    else if (c->minor == 1)
        c->keep_alive = true;
    else
        c->keep_alive = connection && demo_has_token(connection, "keep-alive");

    const char *expect = demo_find_header(c, "expect");
    if (expect && c->minor == 1 && strcasecmp(expect, "100-continue") == 0 && (chunked || length > 0) &&
        evbuffer_get_length(in) == 0)
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");

    if (chunked) {
        c->state = ST_CHUNK_SIZE;
    } else if (length > 0) {
        c->remaining = length;
        c->state = ST_BODY_LENGTH;
    } else {
        demo_respond(c);
    }
    return true;
}

/* chunk-size [ext] -> size; false on junk */
bool demo_parse_chunk_size(const char *line, uint64_t *size)
{
    uint64_t v = 0;
    int digits = 0;
    const char *p = line;
    for (; *p; p++, digits++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            break;
        if (digits >= 15) return false;
        v = (v << 4) | (uint64_t)d;
    }
    if (digits == 0) return false;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' && *p != ';') return false;
    *size = v;
    return true;
}
