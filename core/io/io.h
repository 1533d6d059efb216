/* io.h - a byte stream over a socket with evbuffer input/output, callbacks and watermarks: the shape
 * of a libevent bufferevent, made for the proxy's hot path. Plain TCP is our own code: large adaptive
 * reads straight into the input buffer, one batched optimistic write per loop turn, and a persistent
 * read registration (no epoll_ctl per request). Accepted TLS streams run OpenSSL on the socket in the same
 * layer; outgoing TLS streams delegate to bufferevent_openssl. */
#ifndef GW_IO_H
#define GW_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

struct event_base;
struct evbuffer;

typedef struct gw_io gw_io;

enum {
    GW_IO_EOF = 1 << 0,       /* the peer closed its side */
    GW_IO_ERROR = 1 << 1,     /* socket or TLS error (errno / gw_io_ssl_error) */
    GW_IO_CONNECTED = 1 << 2, /* an outgoing connect (and TLS handshake) completed */
};

typedef void (*gw_io_cb)(gw_io *io, void *arg);
typedef void (*gw_io_event_cb)(gw_io *io, int what, void *arg);

/* Wraps an accepted socket (plain, or TLS when ssl is not NULL: the handshake runs on first use). */
gw_io *gw_io_accepted(struct event_base *base, int fd, SSL *ssl);
/* A stream for an outgoing connection; ssl NULL = plain. Call gw_io_connect next. */
gw_io *gw_io_outgoing(struct event_base *base, SSL *ssl);
/* Starts a non-blocking connect; the result arrives as GW_IO_CONNECTED or GW_IO_ERROR. Bytes queued
 * in the output before that are sent once connected. Returns -1 only when nothing could be started. */
int gw_io_connect(gw_io *io, const struct sockaddr *sa, socklen_t len);

/* Callbacks may free the stream; the stream never touches itself after calling one. */
void gw_io_setcb(gw_io *io, gw_io_cb on_read, gw_io_cb on_drained, gw_io_event_cb on_event, void *arg);
/* Reading pauses while the input holds `high` bytes or more (0 = no limit) and resumes below it. */
void gw_io_set_read_high(gw_io *io, size_t high);
/* on_drained runs after a write leaves `low` bytes or fewer in the output. */
void gw_io_set_write_low(gw_io *io, size_t low);
/* Plain streams: one write of the output now instead of at the end of the loop turn (large bodies: the
 * buffer is freed while it is still in the cache, and a turn that moves many bodies does not hold them all
 * at once). No callback runs; a failure shows at the turn's flush. */
void gw_io_write_now(gw_io *io);
/* Reading on (default) or off, for back-pressure. */
void gw_io_read_enable(gw_io *io, bool on);

struct evbuffer *gw_io_input(gw_io *io);
struct evbuffer *gw_io_output(gw_io *io);
int gw_io_fd(gw_io *io);
unsigned long gw_io_ssl_error(gw_io *io); /* last OpenSSL error, 0 for plain streams */
bool gw_io_is_tls(const gw_io *io);
/* Closes the socket and frees the stream, discarding unsent output. */
void gw_io_free(gw_io *io);

#endif
