/* worker.c - worker threads: each owns an event base, its own SO_REUSEPORT listening sockets, its share
 * of the connection budget and its upstream pools; drains on request from the main thread. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "log.h"
#include "server.h"

typedef struct gw_listen {
    gw_worker *w;
    int fd;
    size_t index; /* listener index in the config */
    struct event *ev;
} gw_listen;


static int resolve_listen(const gw_listener_conf *l, struct sockaddr_storage *ss, socklen_t *len, char **err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", l->port);
    int rc = getaddrinfo(l->address, port, &hints, &res);
    if (rc != 0 || !res) {
        if (asprintf(err, "listener %s:%u: cannot resolve address: %s", l->address, l->port, gai_strerror(rc)) < 0)
            *err = NULL;
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int open_listen_fd(const struct sockaddr_storage *ss, socklen_t len, bool reuseport)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss->ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void listen_set(gw_worker *w, bool on)
{
    struct gw_listen **ls = w->listeners;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (!ls[i]->ev) continue;
        if (on)
            event_add(ls[i]->ev, NULL);
        else
            event_del(ls[i]->ev);
    }
    w->paused = !on;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    gw_listen *l = arg;
    gw_worker *w = l->w;
    /* Bounded batch so one busy listener cannot starve the connections already open. */
    for (int i = 0; i < 64; i++) {
        if (w->max_conns && w->nconns >= w->max_conns) {
            listen_set(w, false);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                gw_warn("accept: %s (raise the file limit or lower max_connections)", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        gw_conn_accept(w, cfd, (struct sockaddr *)&ss, (int)sl, l->index);
    }
}

void gw_worker_conn_closed(gw_worker *w)
{
    w->nconns--;
    if (w->draining) {
        if (w->nconns == 0) event_base_loopexit(w->base, NULL);
        return;
    }
    if (w->paused && (!w->max_conns || w->nconns < w->max_conns)) listen_set(w, true);
}

static void close_listeners(gw_worker *w)
{
    struct gw_listen **ls = w->listeners;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (ls[i]->ev) event_free(ls[i]->ev);
        ls[i]->ev = NULL;
        if (ls[i]->fd >= 0) close(ls[i]->fd);
        ls[i]->fd = -1;
    }
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN) gw_debug("worker %u: drain read: %s", w->id, strerror(errno));
    if (w->draining) return;
    w->draining = true;
    close_listeners(w);
    gw_upstream_pools_free(w);
    gw_conn *c = w->conns;
    while (c) {
        gw_conn *next = c->next;
        gw_conn_drain(c); /* may free c */
        c = next;
    }
    if (w->nconns == 0) event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
    gw_worker *w = arg;
    event_base_dispatch(w->base);
    /* Whatever is still open here was cut by the shutdown deadline or a forced exit. */
    while (w->conns) gw_conn_free(w->conns);
    gw_upstream_pools_free(w);
    atomic_fetch_add(&w->srv->workers_done, 1);
    return NULL;
}

static int worker_init(gw_server *srv, gw_worker *w, unsigned id, const int *probe_ok, char **err)
{
    const gw_config *cfg = srv->cfg;
    w->srv = srv;
    w->id = id;
    w->base = event_base_new();
    if (!w->base) return asprintf(err, "cannot create an event base"), -1;
    if (RAND_bytes((unsigned char *)w->rng, sizeof w->rng) != 1) w->rng[0] = (uint64_t)time(NULL) ^ id;
    w->rng[1] |= 1;
    if (cfg->max_connections)
        w->max_conns = (cfg->max_connections + srv->nworkers - 1) / srv->nworkers;
    /* The main thread wakes the worker through an eventfd: libevent runs without its thread locks. */
    w->drain_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->drain_fd < 0) return asprintf(err, "eventfd: %s", strerror(errno)), -1;
    w->drain_ev = event_new(w->base, w->drain_fd, EV_READ | EV_PERSIST, on_drain, w);
    event_add(w->drain_ev, NULL);
    w->nlisteners = cfg->nlisteners;
    w->listeners = calloc(cfg->nlisteners, sizeof(gw_listen *));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const gw_listener_conf *lc = &cfg->listeners[i];
        struct sockaddr_storage ss;
        socklen_t sl;
        if (resolve_listen(lc, &ss, &sl, err) != 0) return -1;
        gw_listen *l = calloc(1, sizeof *l);
        w->listeners[i] = l;
        l->w = w;
        l->index = i;
        l->fd = open_listen_fd(&ss, sl, true);
        if (l->fd < 0 || !probe_ok[i]) {
            if (asprintf(err, "listener %s:%u (%s:%d): cannot listen: %s", lc->address, lc->port,
                         cfg->file, lc->line, strerror(errno)) < 0)
                *err = NULL;
            return -1;
        }
        l->ev = event_new(w->base, l->fd, EV_READ | EV_PERSIST, on_accept, l);
        event_add(l->ev, NULL);
    }
    size_t ns = srv->nservices;
    w->pools = calloc(ns ? ns : 1, sizeof(gw_pool *));
    w->rr = calloc(ns ? ns : 1, sizeof(size_t));
    for (size_t s = 0; s < ns; s++) {
        w->pools[s] = calloc(srv->services[s].ntargets, sizeof(gw_pool));
        for (size_t t = 0; t < srv->services[s].ntargets; t++) {
            w->pools[s][t].target = &srv->services[s].targets[t];
            w->pools[s][t].w = w;
        }
        w->rr[s] = id; /* workers start at different targets */
    }
    return 0;
}

/* A bind without SO_REUSEPORT fails if anything already holds the port, including another gateway
 * that would otherwise silently share it with us. */
static int probe_listeners(const gw_config *cfg, int *ok, char **err)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const gw_listener_conf *lc = &cfg->listeners[i];
        struct sockaddr_storage ss;
        socklen_t sl;
        if (resolve_listen(lc, &ss, &sl, err) != 0) return -1;
        int fd = open_listen_fd(&ss, sl, false);
        if (fd < 0) {
            if (asprintf(err, "%s:%d: listener %s:%u: cannot listen: %s", cfg->file, lc->line, lc->address,
                         lc->port, strerror(errno)) < 0)
                *err = NULL;
            return -1;
        }
        close(fd);
        ok[i] = 1;
    }
    return 0;
}

int gw_workers_start(gw_server *srv, char **err)
{
    const gw_config *cfg = srv->cfg;
    int ok[cfg->nlisteners ? cfg->nlisteners : 1];
    memset(ok, 0, sizeof ok);
    if (probe_listeners(cfg, ok, err) != 0) return -1;
    srv->nworkers = cfg->workers ? cfg->workers : 1;
    srv->workers = calloc(srv->nworkers, sizeof(gw_worker));
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (worker_init(srv, &srv->workers[i], i, ok, err) != 0) return -1;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            if (asprintf(err, "cannot start worker thread %u", i) < 0) *err = NULL;
            return -1;
        }
    }
    return 0;
}

void gw_workers_drain(gw_server *srv)
{
    uint64_t one = 1;
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (write(srv->workers[i].drain_fd, &one, sizeof one) != sizeof one)
            gw_error("cannot signal worker %u to drain: %s", i, strerror(errno));
}

void gw_workers_join(gw_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        gw_worker *w = &srv->workers[i];
        pthread_join(w->thread, NULL);
        close_listeners(w);
        for (size_t j = 0; j < w->nlisteners; j++) free(w->listeners[j]);
        free(w->listeners);
        for (size_t s = 0; s < srv->nservices; s++) free(w->pools[s]);
        free(w->pools);
        free(w->rr);
        event_free(w->drain_ev);
        close(w->drain_fd);
        event_base_free(w->base);
    }
    free(srv->workers);
    srv->workers = NULL;
}

const char *gw_worker_date(gw_worker *w, size_t *len)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        w->date_len = strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        w->date_sec = now;
    }
    *len = w->date_len;
    return w->date;
}

static uint64_t next_rand(gw_worker *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

/* UUID version 4 layout. Unique enough for correlation; not a secret. */
void gw_worker_request_id(gw_worker *w, char out[40])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = next_rand(w), b = next_rand(w);
    unsigned char r[16];
    memcpy(r, &a, 8);
    memcpy(r + 8, &b, 8);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hex[r[i] >> 4];
        *p++ = hex[r[i] & 15];
    }
    *p = '\0';
}
