/* demo_service.h - what the files of gw-demo-service (the demo and test upstream, main.c) share:
 * the limits, a connection and its request, and the calls between parsing, answering and the event loop. */
#ifndef GW_DEMO_SERVICE_H
#define GW_DEMO_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <event2/util.h>

struct bufferevent;
struct evbuffer;
struct event_base;
struct evconnlistener;
struct sockaddr;

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

struct demo_globals {
    const char *name;
    bool verbose;
    struct event_base *base;
    struct conn *conns; /* all open connections, freed at exit */
};
extern struct demo_globals demo;

/* conn.c: connections and the request state machine */
void demo_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    void *arg);
void demo_conn_free(struct conn *c);
void demo_reset_request(struct conn *c);
void demo_process(struct conn *c); /* runs the request state machine over the input buffer */

/* parse.c: the request head and chunked framing */
bool demo_parse_head(struct conn *c); /* false: more bytes needed, or refused (then ST_CLOSING) */
bool demo_parse_chunk_size(const char *line, uint64_t *size);
bool demo_parse_uint(const char *s, uint64_t *out);
const char *demo_find_header(const struct conn *c, const char *name); /* name lower-case */
bool demo_has_token(const char *value, const char *token);

/* answer.c: the JSON answers */
void demo_send_json(struct conn *c, int status, cJSON *json, bool close_after); /* takes json */
void demo_send_error(struct conn *c, int status, const char *message);         /* and closes */
void demo_respond(struct conn *c); /* the whole request is in: answer it, ready for the next one */

#endif
