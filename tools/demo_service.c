/* demo_service.c - gw-demo-service: a small HTTP/1.1 echo service used as the demo upstream by `make run`
 * (auth-service, user-service) and as a stand-in upstream by the integration tests.
 *
 *   gw-demo-service --name NAME --port PORT [--address 127.0.0.1] [--verbose]
 *
 * Every request is answered 200 with a JSON echo of what arrived:
 *   {"service": NAME, "method", "path", "query", "version", "remote_addr",
 *    "headers": {lower-case name: value, repeated fields joined with ", "},
 *    "body": body as text (first 64 KiB; invalid UTF-8 and NUL bytes become U+FFFD),
 *    "body_length": bytes received, "body_truncated": bool}
 * GET (or HEAD) /health -> 200 {"status":"ok","service":NAME}.
 *
 * HTTP/1.1 keep-alive and pipelining (answers in order); request bodies framed by Content-Length or
 * chunked, up to 1 MiB (413 above); malformed requests get a JSON error and the connection is closed.
 * `--port 0` binds a free port; the bound address is printed on stdout ("NAME listening on ADDR:PORT").
 * SIGTERM/SIGINT: stop at once and exit 0. It is a demo, not a production server: one thread, no TLS.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define MAX_HEAD (64 * 1024)         /* request line + header fields; 431 above */
#define MAX_HEADERS 100              /* header fields per request; 431 above */
#define MAX_BODY (1024 * 1024)       /* request body; 413 above */
#define ECHO_BODY_MAX (64 * 1024)    /* how much of the body is echoed back */
#define MAX_CHUNK_LINE 4096          /* chunk-size line incl. extensions */
#define OUTPUT_HIGH (1024 * 1024)    /* stop parsing pipelined requests while this much is unsent */
#define IDLE_TIMEOUT_S 60            /* no byte in either direction for this long: close */
#define LINGER_TIMEOUT_S 2           /* after an error answer: read and discard for this long */
#define LINGER_MAX (4 * 1024 * 1024) /* ... or until this much was discarded */

enum conn_state {
    ST_HEAD,          /* waiting for a complete request head */
    ST_BODY_LENGTH,   /* reading a Content-Length body */
    ST_CHUNK_SIZE,    /* chunked body: waiting for a chunk-size line */
    ST_CHUNK_DATA,    /* chunked body: inside a chunk */
    ST_CHUNK_CRLF,    /* chunked body: CRLF after chunk data */
    ST_CHUNK_TRAILER, /* chunked body: trailer fields up to the empty line */
    ST_CLOSING,       /* last answer queued; close when it is flushed */
    ST_LINGER,        /* write side shut down; discarding input until EOF or timeout */
};

struct header {
    const char *name; /* lower-cased, inside conn.head */
    const char *value;
};

struct conn {
    struct conn *prev, *next;
    struct bufferevent *bev;
    enum conn_state state;
    bool paused; /* parsing stopped until the output drains */
    char remote_addr[64];

    /* the request being read */
    char *head; /* malloc'd, NUL-terminated copy of the head; fields point into it */
    const char *method;
    const char *target;
    int minor; /* HTTP/1.<minor> */
    struct header headers[MAX_HEADERS];
    size_t nheaders;
    bool keep_alive;
    uint64_t remaining; /* Content-Length bytes, or bytes of the current chunk, still to come */
    size_t trailer_bytes;
    size_t lingered;
    struct evbuffer *body;
};

static struct {
    const char *name;
    bool verbose;
    struct event_base *base;
    struct conn *conns; /* all open connections, freed at exit */
} g;

static void process(struct conn *c);

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* connections */

static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    bufferevent_free(c->bev);
    evbuffer_free(c->body);
    free(c->head);
    free(c);
}

static void reset_request(struct conn *c)
{
    free(c->head);
    c->head = NULL;
    c->method = c->target = NULL;
    c->nheaders = 0;
    c->remaining = 0;
    c->trailer_bytes = 0;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->state = ST_HEAD;
}

static const char *find_header(const struct conn *c, const char *name)
{
    for (size_t i = 0; i < c->nheaders; i++)
        if (strcmp(c->headers[i].name, name) == 0) return c->headers[i].value;
    return NULL;
}

/* true if the comma-separated list in `value` holds `token` (case-insensitive) */
static bool has_token(const char *value, const char *token)
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
/* text for JSON: cJSON wants NUL-terminated UTF-8 */

/* length of the valid UTF-8 sequence at s (n bytes available), 0 if there is none */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp, min;
    if (s[0] < 0x80) return s[0] != 0 ? 1 : 0;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, cp = s[0] & 0x1Fu, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, cp = s[0] & 0x0Fu, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, cp = s[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* malloc'd NUL-terminated copy of s[0..n) with every invalid byte replaced by U+FFFD */
static char *to_text(const unsigned char *s, size_t n)
{
    char *out = malloc(3 * n + 1);
    size_t o = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(s + i, n - i);
        if (len) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static void add_text(cJSON *obj, const char *key, const char *s, size_t n)
{
    char *t = to_text((const unsigned char *)s, n);
    cJSON_AddStringToObject(obj, key, t ? t : "");
    free(t);
}

/* ------------------------------------------------------------------------------------------------ */
/* answers */

static void send_json(struct conn *c, int status, cJSON *json, bool close_after)
{
    char *text = cJSON_PrintUnformatted(json);
    size_t len = text ? strlen(text) + 1 : 0; /* + the trailing newline */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const char *connection = close_after ? "close" : (c->minor == 0 ? "keep-alive" : NULL);
    bool head_only = c->method && strcmp(c->method, "HEAD") == 0;

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n",
                        status, reason_phrase(status), len);
    if (connection) evbuffer_add_printf(out, "Connection: %s\r\n", connection);
    evbuffer_add(out, "\r\n", 2);
    if (text && !head_only) {
        evbuffer_add(out, text, len - 1);
        evbuffer_add(out, "\n", 1);
    }
    cJSON_free(text);
    cJSON_Delete(json);
    if (g.verbose)
        fprintf(stderr, "%s: %s %s -> %d\n", g.name, c->method ? c->method : "-", c->target ? c->target : "-",
                status);
    if (close_after) {
        c->state = ST_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
    }
}

static void send_error(struct conn *c, int status, const char *message)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "error", message);
    cJSON_AddNumberToObject(json, "status", status);
    cJSON_AddStringToObject(json, "service", g.name);
    send_json(c, status, json, true);
}

static cJSON *echo_json(struct conn *c)
{
    cJSON *json = cJSON_CreateObject();
    cJSON *headers = cJSON_CreateObject();
    const char *query = strchr(c->target, '?');
    size_t path_len = query ? (size_t)(query - c->target) : strlen(c->target);
    size_t body_len = evbuffer_get_length(c->body);
    size_t echo_len = body_len < ECHO_BODY_MAX ? body_len : ECHO_BODY_MAX;
    unsigned char *body = echo_len ? evbuffer_pullup(c->body, (ev_ssize_t)echo_len) : NULL;

    cJSON_AddStringToObject(json, "service", g.name);
    cJSON_AddStringToObject(json, "method", c->method);
    add_text(json, "path", c->target, path_len);
    if (query)
        add_text(json, "query", query + 1, strlen(query + 1));
    else
        cJSON_AddStringToObject(json, "query", "");
    cJSON_AddStringToObject(json, "version", c->minor ? "HTTP/1.1" : "HTTP/1.0");
    cJSON_AddStringToObject(json, "remote_addr", c->remote_addr);
    for (size_t i = 0; i < c->nheaders; i++) {
        const struct header *h = &c->headers[i];
        cJSON *prev = cJSON_GetObjectItemCaseSensitive(headers, h->name);
        char *value = to_text((const unsigned char *)h->value, strlen(h->value));
        if (!value) continue;
        if (prev && cJSON_IsString(prev)) {
            size_t n = strlen(prev->valuestring) + 2 + strlen(value) + 1;
            char *joined = malloc(n);
            if (joined) {
                snprintf(joined, n, "%s, %s", prev->valuestring, value);
                cJSON_ReplaceItemInObjectCaseSensitive(headers, h->name, cJSON_CreateString(joined));
                free(joined);
            }
        } else {
            cJSON_AddStringToObject(headers, h->name, value);
        }
        free(value);
    }
    cJSON_AddItemToObject(json, "headers", headers);
    add_text(json, "body", (const char *)body, echo_len);
    cJSON_AddNumberToObject(json, "body_length", (double)body_len);
    cJSON_AddBoolToObject(json, "body_truncated", body_len > echo_len);
    return json;
}

/* The whole request (head and body) is in: answer it and get ready for the next one. */
static void respond(struct conn *c)
{
    const char *query = strchr(c->target, '?');
    size_t path_len = query ? (size_t)(query - c->target) : strlen(c->target);
    bool health = path_len == 7 && strncmp(c->target, "/health", 7) == 0 &&
                  (strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0);
    cJSON *json;

    if (health) {
        json = cJSON_CreateObject();
        cJSON_AddStringToObject(json, "status", "ok");
        cJSON_AddStringToObject(json, "service", g.name);
    } else {
        json = echo_json(c);
    }
    send_json(c, 200, json, !c->keep_alive);
    if (c->keep_alive) reset_request(c);
}

/* ------------------------------------------------------------------------------------------------ */
/* request parsing */

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool parse_uint(const char *s, uint64_t *out)
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

/* Parses the head at the start of the input. Returns false when more bytes are needed or the request
 * was refused (an error answer is then queued and the state is ST_CLOSING). */
static bool parse_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char first;

    /* RFC 9112 2.2: ignore empty lines before a request line */
    for (int i = 0; i < 64 && evbuffer_copyout(in, &first, 1) == 1 && (first == '\r' || first == '\n'); i++)
        evbuffer_drain(in, 1);

    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > MAX_HEAD) send_error(c, 431, "request head too large");
        return false;
    }
    size_t hlen = (size_t)end.pos + 4;
    if (hlen > MAX_HEAD) {
        send_error(c, 431, "request head too large");
        return false;
    }
    c->head = malloc(hlen + 1);
    if (!c->head) {
        send_error(c, 503, "out of memory");
        return false;
    }
    evbuffer_remove(in, c->head, hlen);
    c->head[hlen] = '\0';
    if (memchr(c->head, '\0', hlen)) {
        send_error(c, 400, "NUL byte in the request head");
        return false;
    }

    /* request line: method SP request-target SP HTTP-version */
    char *line = c->head;
    char *eol = strstr(line, "\r\n");
    *eol = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1) {
        send_error(c, 400, "malformed request line");
        return false;
    }
    *sp1 = *sp2 = '\0';
    for (const char *p = line; *p; p++)
        if (!is_tchar((unsigned char)*p)) {
            send_error(c, 400, "malformed method");
            return false;
        }
    for (const char *p = sp1 + 1; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            send_error(c, 400, "malformed request target");
            return false;
        }
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") == 0) {
        c->minor = 1;
    } else if (strcmp(version, "HTTP/1.0") == 0) {
        c->minor = 0;
    } else if (strncmp(version, "HTTP/", 5) == 0) {
        c->minor = 1;
        send_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
        return false;
    } else {
        send_error(c, 400, "malformed HTTP version");
        return false;
    }
    c->method = line;
    c->target = sp1 + 1;

    /* header fields */
    for (line = eol + 2; *line; line = eol + 2) {
        eol = strstr(line, "\r\n");
        if (eol == line) break; /* the empty line ending the head */
        *eol = '\0';
        if (strpbrk(line, "\r\n")) {
            send_error(c, 400, "bare CR or LF in a header field");
            return false;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            send_error(c, 400, "malformed header field");
            return false;
        }
        for (char *p = line; p < colon; p++) {
            if (!is_tchar((unsigned char)*p)) {
                send_error(c, 400, "malformed header field name");
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
            send_error(c, 431, "too many header fields");
            return false;
        }
        c->headers[c->nheaders].name = line;
        c->headers[c->nheaders].value = value;
        c->nheaders++;
    }

    /* message framing */
    const char *te = find_header(c, "transfer-encoding");
    const char *connection = find_header(c, "connection");
    bool chunked = false;
    uint64_t length = 0;
    bool have_length = false;
    size_t nte = 0;

    for (size_t i = 0; i < c->nheaders; i++) {
        if (strcmp(c->headers[i].name, "transfer-encoding") == 0) nte++;
        if (strcmp(c->headers[i].name, "content-length") != 0) continue;
        uint64_t v;
        if (!parse_uint(c->headers[i].value, &v) || (have_length && v != length)) {
            send_error(c, 400, "invalid Content-Length");
            return false;
        }
        length = v;
        have_length = true;
    }
    if (te) {
        if (c->minor == 0) {
            send_error(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
            return false;
        }
        if (have_length) {
            send_error(c, 400, "both Transfer-Encoding and Content-Length");
            return false;
        }
        if (nte != 1 || strcasecmp(te, "chunked") != 0) {
            send_error(c, 501, "only the chunked transfer coding is supported");
            return false;
        }
        chunked = true;
    }
    if (length > MAX_BODY) {
        send_error(c, 413, "request body larger than 1 MiB");
        return false;
    }

    if (connection && has_token(connection, "close"))
        c->keep_alive = false;
    else if (c->minor == 1)
        c->keep_alive = true;
    else
        c->keep_alive = connection && has_token(connection, "keep-alive");

    const char *expect = find_header(c, "expect");
    if (expect && c->minor == 1 && strcasecmp(expect, "100-continue") == 0 && (chunked || length > 0) &&
        evbuffer_get_length(in) == 0)
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");

    if (chunked) {
        c->state = ST_CHUNK_SIZE;
    } else if (length > 0) {
        c->remaining = length;
        c->state = ST_BODY_LENGTH;
    } else {
        respond(c);
    }
    return true;
}

/* chunk-size [ext] -> size; false on junk */
static bool parse_chunk_size(const char *line, uint64_t *size)
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

/* Runs the request state machine over whatever is in the input buffer. */
static void process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    for (;;) {
        if (c->state == ST_HEAD && evbuffer_get_length(out) > OUTPUT_HIGH) {
            /* the client is not reading its answers: stop reading its requests until it does */
            c->paused = true;
            bufferevent_disable(c->bev, EV_READ);
            return;
        }
        switch (c->state) {
        case ST_HEAD:
            if (evbuffer_get_length(in) == 0 || !parse_head(c)) return;
            break;
        case ST_BODY_LENGTH: {
            size_t avail = evbuffer_get_length(in);
            size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
            if (n == 0) return;
            evbuffer_remove_buffer(in, c->body, n);
            c->remaining -= n;
            if (c->remaining == 0) respond(c);
            break;
        }
        case ST_CHUNK_SIZE:
        case ST_CHUNK_TRAILER: {
            size_t len;
            char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
            if (!line) {
                if (evbuffer_get_length(in) > MAX_CHUNK_LINE) send_error(c, 400, "chunk line too long");
                return;
            }
            if (c->state == ST_CHUNK_TRAILER) {
                c->trailer_bytes += len + 2;
                if (len == 0) {
                    respond(c);
                } else if (c->trailer_bytes > MAX_HEAD) {
                    send_error(c, 431, "trailer section too large");
                }
                free(line);
                break;
            }
            uint64_t size;
            bool ok = len <= MAX_CHUNK_LINE && parse_chunk_size(line, &size);
            free(line);
            if (!ok) {
                send_error(c, 400, "malformed chunk size");
            } else if (size > MAX_BODY - evbuffer_get_length(c->body)) {
                send_error(c, 413, "request body larger than 1 MiB");
            } else if (size == 0) {
                c->state = ST_CHUNK_TRAILER;
            } else {
                c->remaining = size;
                c->state = ST_CHUNK_DATA;
            }
            break;
        }
        case ST_CHUNK_DATA: {
            size_t avail = evbuffer_get_length(in);
            size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
            if (n == 0) return;
            evbuffer_remove_buffer(in, c->body, n);
            c->remaining -= n;
            if (c->remaining == 0) c->state = ST_CHUNK_CRLF;
            break;
        }
        case ST_CHUNK_CRLF: {
            char crlf[2];
            if (evbuffer_get_length(in) < 2) return;
            evbuffer_remove(in, crlf, 2);
            if (crlf[0] != '\r' || crlf[1] != '\n')
                send_error(c, 400, "missing CRLF after chunk data");
            else
                c->state = ST_CHUNK_SIZE;
            break;
        }
        case ST_CLOSING:
            return;
        case ST_LINGER:
            c->lingered += evbuffer_get_length(in);
            evbuffer_drain(in, evbuffer_get_length(in));
            if (c->lingered > LINGER_MAX) conn_free(c);
            return;
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* libevent callbacks */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == ST_CLOSING) {
        /* answer flushed: half-close, then read until the client closes so it surely gets the answer */
        struct timeval tv = {LINGER_TIMEOUT_S, 0};
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        c->state = ST_LINGER;
        bufferevent_set_timeouts(bev, &tv, NULL);
        bufferevent_enable(bev, EV_READ);
        process(c);
    } else if (c->paused) {
        c->paused = false;
        bufferevent_enable(bev, EV_READ);
        process(c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if ((what & BEV_EVENT_EOF) && c->state != ST_LINGER &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        /* the client half-closed after its request: let the answers go out first */
        c->state = ST_CLOSING;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    conn_free(c);
}

static void accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)lst;
    (void)salen;
    (void)arg;
    struct conn *c = calloc(1, sizeof *c);
    struct timeval idle = {IDLE_TIMEOUT_S, 0};
    int one = 1;

    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->bev = bufferevent_socket_new(g.base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->body = evbuffer_new();
    if (!c->bev || !c->body) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->body) evbuffer_free(c->body);
        free(c);
        return;
    }
    if (sa->sa_family == AF_INET)
        evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->remote_addr,
                         sizeof c->remote_addr);
    else if (sa->sa_family == AF_INET6)
        evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->remote_addr,
                         sizeof c->remote_addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    c->next = g.conns;
    if (g.conns) g.conns->prev = c;
    g.conns = c;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopbreak(g.base);
}

/* ------------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: gw-demo-service --name NAME --port PORT [--address ADDR] [--verbose]\n"
        "  an HTTP/1.1 service that answers every request with a JSON echo of it;\n"
        "  GET /health answers {\"status\":\"ok\"}. ADDR defaults to 127.0.0.1; PORT 0 picks a free one.\n");
}

int main(int argc, char **argv)
{
    const char *address = "127.0.0.1", *port = NULL;
    uint64_t port_num = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **dst = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            g.verbose = true;
            continue;
        }
        if (strcmp(arg, "--name") == 0) dst = &g.name;
        if (strcmp(arg, "--port") == 0) dst = &port;
        if (strcmp(arg, "--address") == 0) dst = &address;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "gw-demo-service: %s: %s\n", dst ? "missing value for" : "unknown option", arg);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!g.name || !*g.name || !port || !parse_uint(port, &port_num) || port_num > 65535) {
        fprintf(stderr, "gw-demo-service: --name and --port (0..65535) are required\n");
        usage(stderr);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    g.base = event_base_new();
    if (!g.base) {
        fprintf(stderr, "gw-demo-service: cannot create an event base\n");
        return 1;
    }

    struct evutil_addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
    int gai = evutil_getaddrinfo(address, port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "gw-demo-service: %s: %s\n", address, evutil_gai_strerror(gai));
        event_base_free(g.base);
        return 1;
    }
    struct evconnlistener *lst = evconnlistener_new_bind(
        g.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 511,
        ai->ai_addr, (int)ai->ai_addrlen);
    int err = EVUTIL_SOCKET_ERROR();
    evutil_freeaddrinfo(ai);
    if (!lst) {
        fprintf(stderr, "gw-demo-service: %s cannot listen on %s:%s: %s\n", g.name, address, port,
                evutil_socket_error_to_string(err));
        event_base_free(g.base);
        return 1;
    }

    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char host[64] = "?";
    unsigned bport = 0;
    if (getsockname(evconnlistener_get_fd(lst), (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&bound;
            evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
            bport = ntohs(sin->sin_port);
        } else if (bound.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&bound;
            host[0] = '[';
            evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host + 1, sizeof host - 2);
            strcat(host, "]");
            bport = ntohs(sin6->sin6_port);
        }
    }

    struct event *sigterm = evsignal_new(g.base, SIGTERM, signal_cb, NULL);
    struct event *sigint = evsignal_new(g.base, SIGINT, signal_cb, NULL);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "gw-demo-service: cannot install signal handlers\n");
        return 1;
    }

    printf("%s listening on %s:%u\n", g.name, host, bport);
    fflush(stdout);

    event_base_dispatch(g.base);

    while (g.conns)
        conn_free(g.conns);
    evconnlistener_free(lst);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(g.base);
    libevent_global_shutdown();
    return 0;
}
