/* io.c - byte streams for the proxy (see io.h). Why not bufferevent for plain TCP: libevent 2.1 reads at
 * most 4 KiB per read (plus a FIONREAD ioctl each time), writes at most 16 KiB per loop turn, and adds and
 * removes the write event around every response; on a 64 KiB response that was ~19 reads, 10 writes and
 * 24 epoll_ctl calls per request. */
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

#define READ_MIN (16u * 1024u)
#define READ_MAX (64u * 1024u) /* larger chains would come from mmap and fault on every use */

struct gw_io {
    struct event_base *base;
    int fd;
    struct bufferevent *bev; /* TLS only */
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
            io->wm_paused = true;
            drop_read(io);
            return;
        }
        if (io->read_high - have < want) want = io->read_high - have;
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
    if (ssl) {
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
    /* Bytes may already be waiting in the input from before the pause: let the owner see them. */
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
    return io->bev != NULL;
}

unsigned long gw_io_ssl_error(gw_io *io)
{
    return io->bev ? bufferevent_get_openssl_error(io->bev) : 0;
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
    if (io->fd >= 0) close(io->fd);
    free(io);
}
