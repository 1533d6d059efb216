/* answer.c - gw-demo-service's answers: the JSON echo of a request (its text made valid UTF-8), the health
 * answer and the JSON errors, written to the connection's output. */
#include "demo_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

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

void demo_send_json(struct conn *c, int status, cJSON *json, bool close_after)
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
    if (demo.verbose)
        fprintf(stderr, "%s: %s %s -> %d\n", demo.name, c->method ? c->method : "-",
                c->target ? c->target : "-", status);
    if (close_after) {
        c->state = ST_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
    }
}

void demo_send_error(struct conn *c, int status, const char *message)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "error", message);
    cJSON_AddNumberToObject(json, "status", status);
    cJSON_AddStringToObject(json, "service", demo.name);
    demo_send_json(c, status, json, true);
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

    cJSON_AddStringToObject(json, "service", demo.name);
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
void demo_respond(struct conn *c)
{
    const char *query = strchr(c->target, '?');
    size_t path_len = query ? (size_t)(query - c->target) : strlen(c->target);
    bool health = path_len == 7 && strncmp(c->target, "/health", 7) == 0 &&
                  (strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0);
    cJSON *json;

    if (health) {
        json = cJSON_CreateObject();
        cJSON_AddStringToObject(json, "status", "ok");
        cJSON_AddStringToObject(json, "service", demo.name);
    } else {
        json = echo_json(c);
    }
    demo_send_json(c, 200, json, !c->keep_alive);
    if (c->keep_alive) demo_reset_request(c);
}
