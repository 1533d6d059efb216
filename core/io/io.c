/* io.c - byte streams for the proxy (see io.h). Why not bufferevent for plain TCP: libevent 2.1 reads at
 * most 4 KiB per read (plus a FIONREAD ioctl each time), writes at most 16 KiB per loop turn, and adds and
 * removes the write event around every response; on a 64 KiB response that was ~19 reads, 10 writes and
 * 24 epoll_ctl calls per request. TLS on accepted connections runs OpenSSL on the socket from the same
 * events (below): records read straight into reserved input space, 16 KiB records written from the
 * output. Outgoing TLS (https upstreams) still goes through bufferevent_openssl. */
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#define READ_MIN (16u * 1024u)
#define READ_MAX (64u * 1024u) /* larger chains would come from mmap and fault on every use */

struct gw_io {
    struct event_base *base;
    int fd;
    struct bufferevent *bev; /* outgoing TLS only */
    SSL *ssl;                /* accepted TLS (below) */
    unsigned long ssl_err;   /* the OpenSSL error that failed the stream */
    size_t retry_len;        /* an SSL_write that wanted to be repeated: with this many bytes */
    bool hs_done, read_wants_write, write_wants_read;
    struct evbuffer *in, *out;
    struct event *rev, *wev; /* wev doubles as the "flush soon" event (activated by hand) */
    gw_io_cb on_read, on_drained;
    gw_io_event_cb on_event;
    void *arg;
    size_t read_high, write_low, read_size;
    bool read_wanted, wm_paused, rev_added, wev_added, flush_pending, connecting, eof, failed;
    int pending_error; /* an immediate connect failure, reported from the loop */
};

static bool want_read(const gw_io *io)
{
    return io->read_wanted && !io->wm_paused && !io->eof && !io->connecting && io->fd >= 0 && io->rev;
}

static void drop_read(gw_io *io)
{
    if (!io->rev_added) return;
    event_del(io->rev);
    io->rev_added = false;
}

/* The input holds read_high bytes: reading stops until it drains below (in_changed resumes it). */
static void pause_full(gw_io *io)
{
    io->wm_paused = true;
    drop_read(io);
}

/* Registers the read event when reading is wanted. A pause leaves it registered: the next readiness
 * finds reading unwanted and removes it then (on_readable). Most pauses end within the loop turn that
 * began them (a response whose filters all answer at once), and so cost no epoll_ctl at all. */
static void update_read(gw_io *io)
{
    if (!want_read(io) || io->rev_added) return;
    event_add(io->rev, NULL);
    io->rev_added = true;
}

static void set_wev(gw_io *io, bool on)
{
    if (on == io->wev_added) return;
    if (on)
        event_add(io->wev, NULL);
    else
        event_del(io->wev);
    io->wev_added = on;
}

static void fail(gw_io *io, int what)
{
    io->failed = true;
    io->read_wanted = false;
    drop_read(io);
    set_wev(io, false);
    io->on_event(io, what, io->arg); /* last: it may free io */
}

/* --- TLS on accepted connections -------------------------------------------------------------------
 * OpenSSL works on the socket itself, driven by the stream's own events: a read readiness runs the
 * handshake or reads records straight into reserved input space; the write side sends the output in
 * records of up to 16 KiB (one write(2) each). A read that needs to write (or the reverse) waits for
 * the other readiness. Records OpenSSL has already taken off the socket do not make it readable again:
 * when reading resumes with such bytes pending, the read event is activated by hand. */

#define TLS_RECORD 16384u

static void tls_failed(gw_io *io)
{
    io->ssl_err = ERR_peek_last_error();
    ERR_clear_error();
    fail(io, GW_IO_ERROR);
}

/* Bytes OpenSSL holds decrypted or undecrypted: the socket will not say so. */
static void tls_kick_read(gw_io *io)
{
    if (io->ssl && io->hs_done && want_read(io) && SSL_has_pending(io->ssl))
        event_active(io->rev, EV_READ, 1);
}

/* 1: done; 0: waiting (the event it needs is set); -1: failed (io may be gone). */
static int tls_handshake(gw_io *io)
{
    ERR_clear_error();
    int r = SSL_do_handshake(io->ssl);
    if (r == 1) {
        io->hs_done = true;
        tls_kick_read(io);
        return 1;
    }
    switch (SSL_get_error(io->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        set_wev(io, false);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        set_wev(io, true);
        return 0;
    default:
        tls_failed(io);
        return -1;
    }
}

static void tls_read(gw_io *io, size_t want)
{
    if (!io->hs_done && tls_handshake(io) <= 0) return;
    if (io->write_wants_read) { /* a write waited for this */
        io->write_wants_read = false;
        event_active(io->wev, EV_TIMEOUT, 1);
    }
    size_t got = 0;
    int e = SSL_ERROR_NONE;
    for (int i = 0; i < 64; i++) {
        if (io->read_high && evbuffer_get_length(io->in) >= io->read_high) break;
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(io->in, (ev_ssize_t)want, &v, 1) < 1) break;
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(io->ssl, v.iov_base, v.iov_len, &n);
        if (r != 1) {
            e = SSL_get_error(io->ssl, r);
            break;
        }
        v.iov_len = n;
        evbuffer_commit_space(io->in, &v, 1);
        got += n;
    }
    /* Stopped with bytes still inside OpenSSL (at the high-water mark, or at the bound above): the socket
     * will not signal them. At the mark, pause as a plain read does (in_changed resumes and kicks the
     * read); at the bound, go on from the loop. */
    if (e == SSL_ERROR_NONE && SSL_has_pending(io->ssl)) {
        if (io->read_high && evbuffer_get_length(io->in) >= io->read_high)
            pause_full(io);
        else
            event_active(io->rev, EV_READ, 1);
    }
    if (e == SSL_ERROR_WANT_WRITE) { /* a key update or such to answer first */
        io->read_wants_write = true;
        set_wev(io, true);
    }
    if (got) {
        if (got >= want && io->read_size < READ_MAX) io->read_size *= 2;
        /* an end or error after the data shows at the next readiness; a close_notify the socket no
         * longer signals is looked at again from the loop */
        if (e == SSL_ERROR_ZERO_RETURN) event_active(io->rev, EV_READ, 1);
        io->on_read(io, io->arg);
        return;
    }
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a plain EOF */
        io->eof = true;
        drop_read(io);
        io->on_event(io, GW_IO_EOF, io->arg);
        return;
    }
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) tls_failed(io);
}

/* 0: wrote what it could (the caller sets the write event); 1: waits for writability; 2: waits for
 * readability; -1: failed (io may be gone). */
static int tls_write(gw_io *io)
{
    if (!io->hs_done) {
        int h = tls_handshake(io);
        if (h <= 0) return h < 0 ? -1 : io->wev_added ? 1 : 2;
    }
    if (io->read_wants_write) { /* a read waited for this */
        io->read_wants_write = false;
        event_active(io->rev, EV_READ, 1);
    }
    for (int i = 0; i < 64 && evbuffer_get_length(io->out) > 0; i++) {
        size_t len = io->retry_len;
        if (!len) {
            len = evbuffer_get_length(io->out);
            if (len > TLS_RECORD) len = TLS_RECORD;
        }
        const unsigned char *p = evbuffer_pullup(io->out, (ev_ssize_t)len);
        if (!p) { /* out of memory */
            tls_failed(io);
            return -1;
        }
        size_t done = 0;
        ERR_clear_error();
        int r = SSL_write_ex(io->ssl, p, len, &done);
        if (r == 1) {
            io->retry_len = 0;
            evbuffer_drain(io->out, done);
            continue;
        }
        io->retry_len = len; /* OpenSSL wants the same call again */
        int e = SSL_get_error(io->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) return 1;
        if (e == SSL_ERROR_WANT_READ) {
            io->write_wants_read = true;
            return 2;
        }
        tls_failed(io);
        return -1;
    }
    return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    gw_io *io = arg;
    if (!want_read(io)) { /* paused since it was registered (update_read) */
        drop_read(io);
        return;
    }
    size_t want = io->read_size;
    if (io->read_high) {
        size_t have = evbuffer_get_length(io->in);
        if (have >= io->read_high) {
            pause_full(io);
            return;
        }
        if (io->read_high - have < want) want = io->read_high - have;
    }
    if (io->ssl) {
        tls_read(io, want);
        return;
    }
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(io->in, (ev_ssize_t)want, v, 2);
    if (n <= 0) return;
    ssize_t r = readv(io->fd, (struct iovec *)v, n);
    if (r > 0) {
        size_t left = (size_t)r;
        int used = 0;
        for (; used < n && left; used++) {
            if (v[used].iov_len > left) v[used].iov_len = left;
            left -= v[used].iov_len;
        }
        evbuffer_commit_space(io->in, v, used);
        /* Adapt: a full read means more is waiting; a small one means small messages. */
        if ((size_t)r >= want && io->read_size < READ_MAX) io->read_size *= 2;
        else if ((size_t)r < want / 8 && io->read_size > READ_MIN) io->read_size /= 2;
        io->on_read(io, io->arg);
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r == 0) {
        io->eof = true;
        drop_read(io);
        io->on_event(io, GW_IO_EOF, io->arg);
        return;
    }
    fail(io, GW_IO_ERROR);
}

static void finish_connect(gw_io *io)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    io->connecting = false;
    if (err) {
        errno = err;
        fail(io, GW_IO_ERROR);
        return;
    }
    update_read(io);
    io->on_event(io, GW_IO_CONNECTED, io->arg);
}

/* Writes as much as the socket takes now; waits for writability only when it takes less. */
static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    gw_io *io = arg;
    if (io->pending_error) {
        errno = io->pending_error;
        io->pending_error = 0;
        fail(io, GW_IO_ERROR);
        return;
    }
    if (io->connecting) {
        if (what & EV_WRITE) finish_connect(io);
        return;
    }
    io->flush_pending = false;
    if (io->failed || io->fd < 0) return;
    size_t before = evbuffer_get_length(io->out);
    if (io->ssl) {
        int t = tls_write(io);
        if (t < 0) return;
        size_t left = evbuffer_get_length(io->out);
        set_wev(io, t == 1 || (t == 0 && left > 0));
        if (left < before && left <= io->write_low && io->on_drained) io->on_drained(io, io->arg);
        return;
    }
    for (int i = 0; i < 8 && evbuffer_get_length(io->out) > 0; i++) {
        int w = evbuffer_write(io->out, io->fd);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            fail(io, GW_IO_ERROR);
            return;
        }
    }
    size_t left = evbuffer_get_length(io->out);
    set_wev(io, left > 0);
    if (left < before && left <= io->write_low && io->on_drained) io->on_drained(io, io->arg);
}

/* Output grew: flush at the end of this loop turn, batching everything written meanwhile. */
static void out_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    gw_io *io = arg;
    if (info->n_added && !io->flush_pending && !io->wev_added && !io->connecting && !io->failed) {
        io->flush_pending = true;
        event_active(io->wev, EV_TIMEOUT, 1);
    }
}

static void in_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    gw_io *io = arg;
    if (info->n_deleted && io->wm_paused && info->orig_size - info->n_deleted + info->n_added < io->read_high) {
        io->wm_paused = false;
        update_read(io);
        tls_kick_read(io);
    }
}

/* --- TLS: bufferevent_openssl behind the same interface ------------------------------------------- */

static void bev_read(struct bufferevent *bev, void *arg)
{
    gw_io *io = arg;
    io->on_read(io, io->arg);
}

static void bev_write(struct bufferevent *bev, void *arg)
{
    gw_io *io = arg;
    if (io->on_drained) io->on_drained(io, io->arg);
}

static void bev_event(struct bufferevent *bev, short what, void *arg)
{
    gw_io *io = arg;
    int w = 0;
    if (what & BEV_EVENT_CONNECTED) w |= GW_IO_CONNECTED;
    if (what & BEV_EVENT_EOF) w |= GW_IO_EOF;
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) w |= GW_IO_ERROR;
    io->on_event(io, w, io->arg);
}

static gw_io *io_new(struct event_base *base, int fd, SSL *ssl, bool accepted)
{
    gw_io *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->base = base;
    io->fd = fd;
    io->read_wanted = true;
    io->read_size = READ_MIN;
    if (ssl && accepted) {
        io->ssl = ssl;
        SSL_set_accept_state(ssl);
        SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a client that just closes: EOF, as before */
        /* idle connections give their record buffers back; a write may be repeated from moved memory */
        SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (SSL_set_fd(ssl, fd) != 1) {
            SSL_free(ssl);
            close(fd);
            free(io);
            return NULL;
        }
    } else if (ssl) {
        io->bev = bufferevent_openssl_socket_new(base, fd, ssl,
                                                 accepted ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
                                                 BEV_OPT_CLOSE_ON_FREE);
        if (!io->bev) {
            SSL_free(ssl);
            free(io);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(io->bev, 1);
        bufferevent_setcb(io->bev, bev_read, bev_write, bev_event, io);
        bufferevent_enable(io->bev, EV_READ | EV_WRITE);
        io->in = bufferevent_get_input(io->bev);
        io->out = bufferevent_get_output(io->bev);
        return io;
    }
    io->in = evbuffer_new();
    io->out = evbuffer_new();
    io->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, io);
    if (!io->in || !io->out || !io->wev) {
        gw_io_free(io);
        return NULL;
    }
    evbuffer_add_cb(io->out, out_changed, io);
    evbuffer_add_cb(io->in, in_changed, io);
    if (fd >= 0) {
        io->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, io);
        if (!io->rev) {
            gw_io_free(io);
            return NULL;
        }
        update_read(io);
    }
    return io;
}

gw_io *gw_io_accepted(struct event_base *base, int fd, SSL *ssl)
{
    gw_io *io = io_new(base, fd, ssl, true);
    if (!io && !ssl) close(fd);
    return io;
}

gw_io *gw_io_outgoing(struct event_base *base, SSL *ssl)
{
    return io_new(base, -1, ssl, false);
}

int gw_io_connect(gw_io *io, const struct sockaddr *sa, socklen_t len)
{
    if (io->bev) return bufferevent_socket_connect(io->bev, (struct sockaddr *)sa, (int)len);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    io->fd = fd;
    io->rev = event_new(io->base, fd, EV_READ | EV_PERSIST, on_readable, io);
    event_assign(io->wev, io->base, fd, EV_WRITE | EV_PERSIST, on_writable, io);
    if (!io->rev) return -1;
    io->connecting = true;
    if (connect(fd, sa, len) == 0 || errno == EINPROGRESS) {
        set_wev(io, true);
        return 0;
    }
    io->pending_error = errno; /* reported from the loop, like any other connect failure */
    event_active(io->wev, EV_TIMEOUT, 1);
    return 0;
}

void gw_io_setcb(gw_io *io, gw_io_cb on_read, gw_io_cb on_drained, gw_io_event_cb on_event, void *arg)
{
    io->on_read = on_read;
    io->on_drained = on_drained;
    io->on_event = on_event;
    io->arg = arg;
}

void gw_io_set_read_high(gw_io *io, size_t high)
{
    io->read_high = high;
    if (io->bev) bufferevent_setwatermark(io->bev, EV_READ, 0, high);
}

void gw_io_set_write_low(gw_io *io, size_t low)
{
    io->write_low = low;
    if (io->bev) bufferevent_setwatermark(io->bev, EV_WRITE, low, 0);
}

void gw_io_read_enable(gw_io *io, bool on)
{
    if (io->bev) {
        if (on)
            bufferevent_enable(io->bev, EV_READ);
        else
            bufferevent_disable(io->bev, EV_READ);
        return;
    }
    io->read_wanted = on;
    update_read(io);
    if (on) tls_kick_read(io);
    /* Bytes may already be waiting in the input from before the pause: let the owner see them. */
}

void gw_io_write_now(gw_io *io)
{
    if (io->bev || io->ssl || io->connecting || io->failed || io->wev_added || io->fd < 0) return;
    if (evbuffer_get_length(io->out) > 0) (void)evbuffer_write(io->out, io->fd);
}

struct evbuffer *gw_io_input(gw_io *io)
{
    return io->in;
}

struct evbuffer *gw_io_output(gw_io *io)
{
    return io->out;
}

int gw_io_fd(gw_io *io)
{
    return io->bev ? bufferevent_getfd(io->bev) : io->fd;
}

bool gw_io_is_tls(const gw_io *io)
{
    return io->bev != NULL || io->ssl != NULL;
}

unsigned long gw_io_ssl_error(gw_io *io)
{
    return io->bev ? bufferevent_get_openssl_error(io->bev) : io->ssl_err;
}

void gw_io_free(gw_io *io)
{
    if (!io) return;
    if (io->bev) {
        bufferevent_free(io->bev);
        free(io);
        return;
    }
    if (io->rev) event_free(io->rev);
    if (io->wev) event_free(io->wev);
    if (io->in) evbuffer_free(io->in);
    if (io->out) evbuffer_free(io->out);
    if (io->ssl) {
        /* close_notify when the session is sound: to a peer still there, or in answer to the peer's own
         * (RFC 8446 6.1); one try, never waited for. Not after a bare EOF: nobody would read it. */
        bool peer_notified = (SSL_get_shutdown(io->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
        if (io->hs_done && !io->failed && io->fd >= 0 && (!io->eof || peer_notified)) {
            ERR_clear_error();
            SSL_shutdown(io->ssl);
        }
        ERR_clear_error();
        SSL_free(io->ssl);
    }
    if (io->fd >= 0) close(io->fd);
    free(io);
}
