/* lg_writer.c - the instance's writer thread: drains every worker's ring, formats the lines into one large
 * buffer and writes it with as few write(2) calls as the output allows.
 *
 * Sleeping and waking without a lock. After a drain that found lines, the writer naps for `flush`
 * (LG_NAP): lines arriving meanwhile wait for the end of the nap, and a worker wakes the writer early only
 * when its ring is half full. Waking a thread per request (an eventfd write and a context switch, on the
 * same core under load) cost more than formatting the line; batching them makes the wake-ups a few dozen
 * a second at any rate. When a drain finds nothing the writer sleeps deeply (LG_DEEP, at most a second):
 * the next push wakes it at once, so a lone request is logged without waiting for a nap. The writer
 * announces its state, looks at every ring once more, and only then waits on the eventfd. A worker reads
 * the state after its push (both sequentially consistent), so either the writer's last look sees the
 * record or the worker sees the state and writes the eventfd; while the writer drains or naps with
 * rings below half full, the workers make no syscall at all.
 * Output to a pipe or socket is written in pieces of at most PIPE_BUF bytes cut at line ends, so the
 * lines stay whole when other writers (the gateway's own log, on the same pipe) write in between; a file
 * gets the whole batch at once (O_APPEND). The thread blocks every signal: they are the main thread's. */
#include "logging.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LG_BATCH (256u * 1024u + LG_LINE_MAX)
#define LG_IDLE_MS 1000
#define LG_STOP_GRACE_MS 5000 /* after stop, how long a blocked output may hold the writer */

enum { LG_AWAKE = 0, LG_NAP = 1, LG_DEEP = 2 };

struct lg_writer {
    lg_inst *in;
    pthread_t thread;
    int fd;
    bool own_fd;         /* a file we opened (and reopen on SIGUSR1) */
    bool is_pipe;        /* FIFO or socket: pieces of at most PIPE_BUF */
    bool may_block;      /* FIFO, socket or terminal: a reader decides when a write returns */
    uint64_t give_up_ms; /* after stop, the monotonic time past which unwritten lines are given up */
    char *path;
    int efd;
    int nap_ms;
    _Atomic int sleeping; /* LG_AWAKE, LG_NAP, LG_DEEP */
    _Atomic int stop;
    _Atomic int reopen;
    bool failing;   /* the last write failed: logged once until a write succeeds */
    bool abandoned; /* stopping with an output that takes nothing: the rest is dropped, not written */
    size_t lost;    /* lines dropped so, reported once at the end */
    char *buf;
    size_t len;
    lg_rec rec; /* the record being formatted */
};

static int open_output(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void note_failure(lg_writer *w, const char *what, int err)
{
    if (w->failing) return;
    w->failing = true;
    w->in->h->log(w->in->self, NULL, GW_LOG_ERROR, "access log %s: %s: %s (lines are lost until it works)",
                  what, w->path ? w->path : "stdout", strerror(err));
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        k++;
    return k;
}

/* An output a reader drains (pipe, socket, terminal): wait until it takes a piece instead of blocking in
 * write(2), so a reader that stopped reading cannot hold a stopping gateway. False: give up (stopping and
 * the grace time is over). */
static bool wait_writable(lg_writer *w)
{
    for (;;) {
        struct pollfd pf = {.fd = w->fd, .events = POLLOUT};
        int r = poll(&pf, 1, 200);
        if (r > 0 || (r < 0 && errno != EINTR)) return true; /* writable, or an error write reports */
        if (atomic_load(&w->stop)) {
            uint64_t now = mono_ms();
            if (!w->give_up_ms) w->give_up_ms = now + LG_STOP_GRACE_MS;
            if (now >= w->give_up_ms) return false;
        }
    }
}

/* Writes n bytes; waits (this is the writer's own thread) while the output is full. */
static bool write_all(lg_writer *w, const char *p, size_t n)
{
    while (n) {
        if (w->may_block && !wait_writable(w)) {
            w->abandoned = true;
            return false;
        }
        ssize_t k = write(w->fd, p, n);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = w->fd, .events = POLLOUT};
            if (poll(&pf, 1, 1000) >= 0 || errno == EINTR) continue;
        }
        note_failure(w, "write failed", k < 0 ? errno : EIO);
        return false;
    }
    if (w->failing) {
        w->failing = false;
        w->in->h->log(w->in->self, NULL, GW_LOG_INFO, "access log writes work again");
    }
    return true;
}

static void flush(lg_writer *w)
{
    const char *p = w->buf;
    size_t n = w->len;
    w->len = 0;
    if (w->abandoned) {
        w->lost += count_lines(p, n);
        return;
    }
    if (!w->is_pipe) {
        if (!write_all(w, p, n) && w->abandoned) w->lost += count_lines(p, n);
        return;
    }
    while (n) {
        size_t k = n;
        if (k > PIPE_BUF) {
            /* whole lines up to PIPE_BUF; a single longer line goes as it is */
            k = PIPE_BUF;
            while (k > 0 && p[k - 1] != '\n')
                k--;
            if (k == 0) {
                const char *nl = memchr(p, '\n', n);
                k = nl ? (size_t)(nl - p) + 1 : n;
            }
        }
        if (!write_all(w, p, k)) {
            if (w->abandoned) w->lost += count_lines(p, n);
            return;
        }
        p += k;
        n -= k;
    }
}

/* Formats every record queued now; returns how many. */
static size_t drain(lg_writer *w)
{
    lg_rings *rs = atomic_load(&w->in->rings);
    size_t got = 0;
    for (size_t i = 0; rs && i < rs->n; i++) {
        lg_ring *r = atomic_load(&rs->r[i]);
        if (!r) continue;
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t tail_n = atomic_load_explicit(&r->tail_n, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail != head) {
            if (LG_BATCH - w->len < LG_LINE_MAX) flush(w);
            lg_ring_unpack(r, &tail, &w->rec);
            w->len += lg_format(w->buf + w->len, &w->rec);
            got++;
            /* the record is copied out: the worker may reuse its bytes */
            atomic_store_explicit(&r->tail, tail, memory_order_release);
            atomic_store_explicit(&r->tail_n, ++tail_n, memory_order_release);
        }
    }
    if (w->len) flush(w);
    return got;
}

static bool rings_empty(lg_writer *w)
{
    lg_rings *rs = atomic_load(&w->in->rings);
    for (size_t i = 0; rs && i < rs->n; i++) {
        lg_ring *r = atomic_load(&rs->r[i]);
        if (r && atomic_load(&r->head) != atomic_load(&r->tail)) return false;
    }
    return true;
}

static void do_reopen(lg_writer *w)
{
    if (!w->own_fd) return;
    int fd = open_output(w->path);
    if (fd < 0) {
        w->in->h->log(w->in->self, NULL, GW_LOG_ERROR,
                      "access log reopen: %s: %s (writing on to the old file)", w->path, strerror(errno));
        return;
    }
    close(w->fd);
    w->fd = fd;
    w->failing = false;
}

/* Waits on the eventfd for at most ms, in state `how`, unless a ring or a request is already there. */
static void wait_kick(lg_writer *w, int how, int ms)
{
    atomic_store(&w->sleeping, how);
    if (how == LG_DEEP && (!rings_empty(w) || atomic_load(&w->stop) || atomic_load(&w->reopen))) {
        atomic_store(&w->sleeping, LG_AWAKE);
        return;
    }
    struct pollfd pf = {.fd = w->efd, .events = POLLIN};
    if (poll(&pf, 1, ms) > 0) {
        uint64_t v;
        ssize_t k = read(w->efd, &v, sizeof v);
        (void)k;
    }
    atomic_store(&w->sleeping, LG_AWAKE);
}

static void *writer_main(void *arg)
{
    lg_writer *w = arg;
    for (;;) {
        if (atomic_exchange(&w->reopen, 0)) {
            drain(w); /* lines queued before the signal still go to the old file */
            do_reopen(w);
        }
        size_t got = drain(w);
        if (atomic_load(&w->stop)) {
            drain(w); /* the workers are done: whatever they queued last */
            if (w->lost)
                w->in->h->log(w->in->self, NULL, GW_LOG_ERROR,
                              "access log: %zu line%s not written: the output took nothing for %d s after "
                              "the stop",
                              w->lost, w->lost == 1 ? "" : "s", LG_STOP_GRACE_MS / 1000);
            break;
        }
        if (got && w->nap_ms > 0)
            wait_kick(w, LG_NAP, w->nap_ms);
        else if (!got)
            wait_kick(w, LG_DEEP, LG_IDLE_MS);
    }
    return NULL;
}

static void wake(lg_writer *w)
{
    uint64_t one = 1;
    ssize_t k = write(w->efd, &one, sizeof one);
    (void)k; /* EAGAIN: the counter is already non-zero, the writer wakes anyway */
}

void lg_writer_kick(lg_writer *w, const lg_ring *r)
{
    int s = atomic_load(&w->sleeping);
    if (s == LG_AWAKE) return;
    if (s == LG_NAP && !lg_ring_half_full(r)) return;
    if (atomic_exchange(&w->sleeping, LG_AWAKE) != LG_AWAKE) wake(w);
}

void lg_writer_reopen(lg_writer *w)
{
    atomic_store(&w->reopen, 1);
    wake(w);
}

static void writer_close(lg_writer *w)
{
    if (w->own_fd && w->fd >= 0) close(w->fd);
    if (w->efd >= 0) close(w->efd);
    free(w->buf);
    free(w->path);
    free(w);
}

lg_writer *lg_writer_new(lg_inst *in, const char *output, int nap_ms, char *err, size_t errlen)
{
    lg_writer *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->in = in;
    w->nap_ms = nap_ms;
    w->fd = w->efd = -1;
    if (!(w->buf = malloc(LG_BATCH))) goto oom;
    if (strcmp(output, "stdout") == 0)
        w->fd = STDOUT_FILENO;
    else if (strcmp(output, "stderr") == 0)
        w->fd = STDERR_FILENO;
    else {
        if (!(w->path = strdup(output))) goto oom;
        if ((w->fd = open_output(output)) < 0) {
            snprintf(err, errlen, LG_NAME ".output: cannot open '%s': %s", output, strerror(errno));
            goto fail;
        }
        w->own_fd = true;
    }
    struct stat st;
    bool known = fstat(w->fd, &st) == 0;
    w->is_pipe = known && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    w->may_block = w->is_pipe || (known && S_ISCHR(st.st_mode) && isatty(w->fd));
    if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(err, errlen, LG_NAME ": eventfd: %s", strerror(errno));
        goto fail;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, LG_NAME ": cannot start the writer thread: %s", strerror(rc));
        goto fail;
    }
    return w;
oom:
    snprintf(err, errlen, LG_NAME ": out of memory");
fail:
    if (w) writer_close(w);
    return NULL;
}

void lg_writer_free(lg_writer *w)
{
    if (!w) return;
    atomic_store(&w->stop, 1);
    wake(w);
    pthread_join(w->thread, NULL);
    writer_close(w);
}
