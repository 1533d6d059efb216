/* conn.c - gw-demo-service's connections: accepting, the per-connection request state machine (head,
 * Content-Length and chunked bodies, pipelining with back-pressure), and closing with a linger. */
#include "demo_service.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* ------------------------------------------------------------------------------------------------ */
/* connections */

void demo_conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        demo.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    bufferevent_free(c->bev);
    evbuffer_free(c->body);
    free(c->head);
    free(c);
}

void demo_reset_request(struct conn *c)
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

/* A chunk-size line, or a trailer line, of a chunked body. False when it is not all in yet. */
static bool chunk_line(struct conn *c, struct evbuffer *in)
{
    size_t len;
    char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
    if (!line) {
        if (evbuffer_get_length(in) > MAX_CHUNK_LINE) demo_send_error(c, 400, "chunk line too long");
        return false;
    }
    if (c->state == ST_CHUNK_TRAILER) {
        c->trailer_bytes += len + 2;
        if (len == 0) {
            demo_respond(c);
        } else if (c->trailer_bytes > MAX_HEAD) {
            demo_send_error(c, 431, "trailer section too large");
        }
        free(line);
        return true;
    }
    uint64_t size;
    bool ok = len <= MAX_CHUNK_LINE && demo_parse_chunk_size(line, &size);
    free(line);
    if (!ok) {
        demo_send_error(c, 400, "malformed chunk size");
    } else if (size > MAX_BODY - evbuffer_get_length(c->body)) {
        demo_send_error(c, 413, "request body larger than 1 MiB");
    } else if (size == 0) {
        c->state = ST_CHUNK_TRAILER;
    } else {
        c->remaining = size;
        c->state = ST_CHUNK_DATA;
    }
    return true;
}

/* Runs the request state machine over whatever is in the input buffer. */
void demo_process(struct conn *c)
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
            if (evbuffer_get_length(in) == 0 || !demo_parse_head(c)) return;
            break;
        case ST_BODY_LENGTH: {
            size_t avail = evbuffer_get_length(in);
            size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
            if (n == 0) return;
            evbuffer_remove_buffer(in, c->body, n);
            c->remaining -= n;
            if (c->remaining == 0) demo_respond(c);
            break;
        }
        case ST_CHUNK_SIZE:
        case ST_CHUNK_TRAILER:
            if (!chunk_line(c, in)) return;
            break;
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
                demo_send_error(c, 400, "missing CRLF after chunk data");
            else
                c->state = ST_CHUNK_SIZE;
            break;
        }
        case ST_CLOSING:
            return;
        case ST_LINGER:
            c->lingered += evbuffer_get_length(in);
            evbuffer_drain(in, evbuffer_get_length(in));
            if (c->lingered > LINGER_MAX) demo_conn_free(c);
            return;
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* libevent callbacks */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    demo_process(arg);
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
        demo_process(c);
    } else if (c->paused) {
        c->paused = false;
        bufferevent_enable(bev, EV_READ);
        demo_process(c);
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
    demo_conn_free(c);
}

void demo_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen,
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
    c->bev = bufferevent_socket_new(demo.base, fd, BEV_OPT_CLOSE_ON_FREE);
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

    c->next = demo.conns;
    if (demo.conns) demo.conns->prev = c;
    demo.conns = c;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}
