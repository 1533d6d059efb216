/* worker.c - worker threads: each owns an event base, its own SO_REUSEPORT listening sockets (paused
 * while the process-wide connection budget is full) and its upstream pools; drains on request from the
 * main thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "conn.h"
#include "connlimit.h"
#include "log.h"
#include "proxy.h"
#include "server.h"
#include "store.h"

#define ACCEPT_BACKOFF_MS 250 /* pause after EMFILE/ENFILE */
#define TRIM_MIN_PEAK 64      /* connections open at once before an idle worker trims */
#define TRIM_IDLE_S 1         /* ... and for how long it must have stayed below a quarter of that */
#define SWEEP_S 2             /* the periodic summaries of rate-limited warnings, this often */

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

/* Listeners are on unless the budget is full, descriptors ran out a moment ago, or we drain. */
static void listen_update(gw_worker *w)
{
    bool on = !w->paused && !w->fd_backoff && !w->draining;
    if (on == w->listening) return;
    struct gw_listen **ls = w->listeners;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (!ls[i]->ev) continue;
        if (on)
            event_add(ls[i]->ev, NULL);
        else
            event_del(ls[i]->ev);
    }
    w->listening = on;
}

static void resume(gw_worker *w)
{
    if (!w->paused) return;
    w->paused = false;
    atomic_fetch_sub(&w->srv->npaused, 1);
    listen_update(w); /* a backlog that is still there fires on_accept, which takes a slot or pauses again */
}

/* The budget is full: stop accepting (the kernel keeps new clients in this worker's backlog) until a
 * connection closes anywhere. The order (announce, then look again) pairs with wake_paused: either the
 * closer sees our flag or we see its slot. */
static void pause_for_budget(gw_worker *w, unsigned max)
{
    if (!w->paused) {
        w->paused = true;
        atomic_fetch_add(&w->srv->npaused, 1);
        gw_connlimit_hit(w->srv->climit, GW_LIMIT_MAX_CONNECTIONS, max, NULL);
    }
    atomic_store(&w->wants_slot, true);
    listen_update(w);
    if (gw_connlimit_open(w->srv->climit) < max && atomic_exchange(&w->wants_slot, false)) resume(w);
}

/* A slot came free: every worker waiting for one gets a chance (the kernel may have queued the next
 * client on any of their sockets); those that find the budget full again pause again. */
static void wake_paused(gw_worker *self)
{
    gw_server *srv = self->srv;
    if (atomic_load(&srv->npaused) == 0) return;
    uint64_t one = 1;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        gw_worker *o = &srv->workers[i];
        if (!atomic_exchange(&o->wants_slot, false)) continue;
        if (o == self)
            resume(self);
        else if (write(o->drain_fd, &one, sizeof one) != sizeof one)
            gw_error("cannot wake worker %u: %s", o->id, strerror(errno));
    }
}

static void on_backoff_end(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    w->fd_backoff = false;
    listen_update(w);
}

/* Out of descriptors: the pending connection stays in the backlog and the listener stays readable, so
 * retrying at once would spin; wait a little (as nginx does) for connections to close. */
static void backoff_descriptors(gw_worker *w, int err)
{
    gw_connlimit_hit(w->srv->climit, GW_LIMIT_DESCRIPTORS, 0, strerror(err));
    w->fd_backoff = true;
    listen_update(w);
    struct timeval tv = {0, ACCEPT_BACKOFF_MS * 1000};
    evtimer_add(w->backoff_ev, &tv);
}

/* Takes a budget slot and a per-address count for a connection about to be accepted; false with the
 * connection closed (or left in the backlog) otherwise. */
static bool admit(gw_worker *w, int fd, const struct sockaddr_storage *ss, gw_client_slot **client)
{
    const gw_config *cfg = w->gen->cfg;
    bool over = false;
    *client = gw_connlimit_client_take(w->srv->climit, (const struct sockaddr *)ss,
                                       cfg->max_connections_per_client, &over);
    if (!over) return true;
    char ip[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = (const struct sockaddr *)ss;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    gw_connlimit_hit(w->srv->climit, GW_LIMIT_PER_CLIENT, cfg->max_connections_per_client, ip);
    close(fd);
    return false;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    gw_listen *l = arg;
    gw_worker *w = l->w;
    gw_connlimit *cl = w->srv->climit;
    /* Bounded batch so one busy listener cannot starve the connections already open. */
    for (int i = 0; i < 64; i++) {
        unsigned max = w->gen->cfg->max_connections;
        if (!gw_connlimit_take(cl, max)) {
            pause_for_budget(w, max);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            gw_connlimit_put(cl);
            wake_paused(w); /* someone may have seen our slot as taken */
            if (e == EMFILE || e == ENFILE) backoff_descriptors(w, e);
            return;
        }
        gw_client_slot *client;
        if (!admit(w, cfd, &ss, &client)) {
            gw_connlimit_put(cl);
            wake_paused(w);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        w->nconns++;
        if (w->nconns > w->peak_conns) w->peak_conns = w->nconns;
        gw_metric *open = gw_connlimit_open_gauge(cl);
        if (open) gw_metric_set(open, w->id, NULL, w->nconns);
        gw_conn_accept(w, cfd, (struct sockaddr *)&ss, (int)sl, l->index, client);
    }
}

/* Freed connection memory stays in malloc's arenas (the trim threshold keeps the heap for speed);
 * once a worker has been idle for a moment after a busy spell, give it back. Never on the request path. */
static void pools_clear(gw_worker *w)
{
    gw_bufpool_clear(&w->pool_head);
    gw_bufpool_clear(&w->pool_path);
    gw_bufpool_clear(&w->pool_copy);
    gw_bufpool_clear(&w->pool_chunk);
}

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    static _Atomic int64_t last_trim;
    int64_t now = (int64_t)time(NULL);
    int64_t last = atomic_load(&last_trim);
    if (w->nconns > w->peak_conns / 4) return; /* busy again */
    if (now - last < 1 || !atomic_compare_exchange_strong(&last_trim, &last, now)) {
        struct timeval tv = {1, 0}; /* another worker trimmed a moment ago: ours is freed since */
        evtimer_add(w->trim_ev, &tv);
        return;
    }
    pools_clear(w);
    malloc_trim(0);
    gw_debug("worker %u: idle after %u connections, freed memory returned to the system", w->id, w->peak_conns);
    w->peak_conns = w->nconns;
}

/* Periodic, per worker: summaries of rate-limited warnings. (Request buffers need no sweep: they go back
 * to the worker's pools when a response is queued, see bufpool.h.) */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    gw_connlimit_flush(w->srv->climit, false); /* the limit warnings' summaries, from whichever worker */
    gw_upstream_log_flush();
}

void gw_worker_conn_closed(gw_worker *w, gw_client_slot *client)
{
    gw_connlimit *cl = w->srv->climit;
    w->nconns--;
    gw_connlimit_client_put(cl, client);
    gw_connlimit_put(cl);
    gw_metric *open = gw_connlimit_open_gauge(cl);
    if (open) gw_metric_set(open, w->id, NULL, w->nconns);
    if (w->draining) {
        if (w->nconns == 0) event_base_loopexit(w->base, NULL);
        return;
    }
    wake_paused(w);
    if (w->peak_conns >= TRIM_MIN_PEAK && w->nconns <= w->peak_conns / 4 && w->trim_ev &&
        !evtimer_pending(w->trim_ev, NULL)) {
        struct timeval tv = {TRIM_IDLE_S, 0};
        evtimer_add(w->trim_ev, &tv);
    }
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

/* Makes `g` usable on this worker: pools, round-robin cursors, each filter's worker_init. */
static void adopt(gw_worker *w, gw_gen *g)
{
    gw_gen_worker *pw = &g->pw[w->id];
    size_t ns = g->nservices;
    pw->pools = calloc(ns ? ns : 1, sizeof(gw_pool *));
    pw->rr = calloc(ns ? ns : 1, sizeof(size_t));
    pw->init_ok = calloc(g->nfilters ? g->nfilters : 1, sizeof(bool));
    for (size_t s = 0; pw->pools && s < ns; s++) {
        pw->pools[s] = calloc(g->services[s].ntargets, sizeof(gw_pool));
        for (size_t t = 0; pw->pools[s] && t < g->services[s].ntargets; t++)
            pw->pools[s][t] = (gw_pool){.w = w, .gen = g, .target = &g->services[s].targets[t]};
        if (pw->rr) pw->rr[s] = w->id; /* workers start at different targets */
    }
    for (size_t i = 0; pw->init_ok && i < g->nfilters; i++) {
        const gw_filter *f = g->filters[i];
        pw->init_ok[i] = !f->d->worker_init || f->d->worker_init(f->inst, w->id, w->srv->nworkers) == 0;
        if (!pw->init_ok[i]) gw_error("filter '%s': worker_init failed on worker %u", f->name, w->id);
    }
    pw->adopted = true;
}

/* The last request of a replaced generation on this worker ended (or the worker stops). */
static void retire(gw_worker *w, gw_gen *g)
{
    gw_gen_worker *pw = &g->pw[w->id];
    pw->retired = true;
    for (size_t i = g->nfilters; pw->adopted && i-- > 0;) {
        const gw_filter *f = g->filters[i];
        if (pw->init_ok && pw->init_ok[i] && f->d->worker_fini) f->d->worker_fini(f->inst, w->id);
    }
    gw_upstream_pools_free(w, g);
    gw_http_call_origins_free(w, g);
    for (size_t s = 0; pw->pools && s < g->nservices; s++) free(pw->pools[s]);
    free(pw->pools);
    free(pw->rr);
    pw->pools = NULL;
    pw->rr = NULL;
    if (atomic_fetch_sub(&g->workers_left, 1) == 1) {
        uint64_t one = 1;
        if (write(w->srv->retire_fd, &one, sizeof one) != sizeof one)
            gw_error("worker %u: cannot notify the main thread: %s", w->id, strerror(errno));
    }
}

/* Releases replaced generations whose last request here has ended. Runs from the event loop, never
 * from inside a request: the code of a filter that just finished a request (say, in a timer callback
 * that called resume) may still be on the stack, and its generation's .so must outlive it. */
static void on_retire(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    for (size_t i = 0; i < w->nretiring;) {
        gw_gen *g = w->retiring[i];
        if (g->pw[w->id].inflight == 0) {
            w->retiring[i] = w->retiring[--w->nretiring];
            retire(w, g);
        } else {
            i++;
        }
    }
}

void gw_worker_request_end(gw_worker *w, gw_gen *g)
{
    gw_gen_worker *pw = &g->pw[w->id];
    if (--pw->inflight == 0 && g != w->gen) event_active(w->retire_ev, EV_TIMEOUT, 1);
}

static void swap_generation(gw_worker *w, gw_gen *next)
{
    gw_gen *old = w->gen;
    adopt(w, next);
    w->gen = next;
    if (!old) return;
    gw_upstream_pools_carry(w, old, next);
    if (old->pw[w->id].inflight == 0 || w->nretiring == sizeof w->retiring / sizeof w->retiring[0])
        retire(w, old);
    else
        w->retiring[w->nretiring++] = old;
}

static void start_drain(gw_worker *w)
{
    w->draining = true;
    close_listeners(w);
    gw_upstream_pools_free(w, w->gen);
    gw_conn *c = w->conns;
    while (c) {
        gw_conn *next = c->next;
        gw_conn_drain(c); /* may free c */
        c = next;
    }
    if (w->nconns == 0) event_base_loopexit(w->base, NULL);
}

/* The main thread wrote our eventfd: a new generation to adopt, or the order to drain. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN) gw_debug("worker %u: wake read: %s", w->id, strerror(errno));
    gw_gen *next = atomic_exchange(&w->next_gen, NULL);
    if (next) swap_generation(w, next);
    if (atomic_load(&w->srv->draining) && !w->draining) start_drain(w);
    /* A slot came free elsewhere (or a new generation changed the budget): try again. */
    if (w->paused) {
        atomic_store(&w->wants_slot, false);
        resume(w);
    }
}

static void *worker_main(void *arg)
{
    gw_worker *w = arg;
    gw_metrics_set_thread_slot(w->id);
    if (w->srv->store && gw_store_worker_attach(w->srv->store, w->id, w->base) != 0)
        gw_error("worker %u: cannot attach to the store", w->id);
    adopt(w, w->gen);
    event_base_dispatch(w->base);
    /* Whatever is still open here was cut by the shutdown deadline or a forced exit. */
    while (w->conns) gw_conn_free(w->conns);
    gw_gen *next = atomic_exchange(&w->next_gen, NULL);
    if (next) swap_generation(w, next);
    while (w->nretiring) retire(w, w->retiring[--w->nretiring]);
    retire(w, w->gen);
    if (w->srv->store) gw_store_worker_detach(w->srv->store, w->id);
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
    /* The main thread wakes the worker through an eventfd: libevent runs without its thread locks. */
    w->drain_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->drain_fd < 0) return asprintf(err, "eventfd: %s", strerror(errno)), -1;
    w->drain_ev = event_new(w->base, w->drain_fd, EV_READ | EV_PERSIST, on_wake, w);
    w->retire_ev = event_new(w->base, -1, 0, on_retire, w);
    w->backoff_ev = evtimer_new(w->base, on_backoff_end, w);
    w->trim_ev = evtimer_new(w->base, on_trim, w);
    w->sweep_ev = event_new(w->base, -1, EV_PERSIST, on_sweep, w);
    if (!w->drain_ev || !w->retire_ev || !w->backoff_ev || !w->trim_ev || !w->sweep_ev)
        return asprintf(err, "cannot create worker events"), -1;
    event_add(w->drain_ev, NULL);
    struct timeval sweep = {SWEEP_S, 0};
    event_add(w->sweep_ev, &sweep);
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
    w->listening = true;
    w->gen = srv->gen;
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

void gw_workers_wake(gw_server *srv)
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
        event_free(w->drain_ev);
        event_free(w->retire_ev);
        if (w->backoff_ev) event_free(w->backoff_ev);
        if (w->trim_ev) event_free(w->trim_ev);
        if (w->sweep_ev) event_free(w->sweep_ev);
        close(w->drain_fd);
        if (w->dns) evdns_base_free(w->dns, 0);
        event_base_free(w->base);
        pools_clear(w); /* the worker has freed its connections */
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
void gw_worker_request_id(gw_worker *w, char out[GW_REQUEST_ID_MAX + 1])
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
