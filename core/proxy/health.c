/* health.c - active health checks: GET <path> on every target of a service every interval, over a fresh
 * connection (TLS for https targets), with hysteresis: the first result sets the state (and so does the
 * first success of a target that never passed, checked every second meanwhile), then it takes
 * `healthy_threshold` successes or `unhealthy_threshold` failures in a row to change it. Results are
 * published through atomics that workers and built-in endpoints read; a target taken out by passive
 * health (passive.c) needs a full streak of successes. Also: state carried over a reload, and the
 * per-target gauges. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "health.h"
#include "log.h"
#include "proxy_internal.h"
#include "util.h"

typedef struct {
    gw_server *srv;
    gw_target *t;
    struct event *tick;
    struct event *timeout;
    struct bufferevent *bev;
    struct timespec started;
    int64_t since_ms; /* checks of this target started (gw_mono_ms) */
} gw_check;

static gw_check *checks;
static size_t nchecks;
static bool stopped;
static struct event *gauge_tick;

static void arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

/* While a target has never passed a check (new, or its upstream starts later than we do), it is checked
 * at this pace for a while, so that it comes in about as soon as it answers. */
#define FAST_RECHECK_MS 1000
#define FAST_RECHECK_FOR_MS 60000

static void set_state(gw_target *t, int prev, int next, int reason, int detail)
{
    if (next == GW_HEALTH_UNHEALTHY) { /* the latest failure is the reason shown */
        atomic_store(&t->down_detail, detail);
        atomic_store(&t->down_reason, reason);
    }
    if (next == prev) return;
    if (next == GW_HEALTH_HEALTHY) atomic_store(&t->down_reason, GW_DOWN_NONE);
    atomic_store(&t->down_since, (int64_t)time(NULL));
    /* A worker may have taken it out meanwhile (passive): then that stands. */
    if (!atomic_compare_exchange_strong(&t->health, &prev, next)) return;
    if (next == GW_HEALTH_HEALTHY) atomic_store(&t->passive_fails, 0);
    char why[160];
    gw_target_reason(t, why, sizeof why);
    gw_log(next == GW_HEALTH_HEALTHY ? GW_LOG_INFO : GW_LOG_WARN, "health: %s target %s is %s%s%s",
           t->service->name, t->conf->url, next == GW_HEALTH_HEALTHY ? "healthy" : "unhealthy",
           next == GW_HEALTH_HEALTHY ? "" : ": ", next == GW_HEALTH_HEALTHY ? "" : why);
}

/* One check's result. reason/detail (GW_DOWN_*) say what failed. */
static void record(gw_check *k, bool ok, int reason, int detail)
{
    gw_target *t = k->t;
    const gw_health_conf *hc = &t->service->health;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (now.tv_sec - k->started.tv_sec) * 1000000 + (now.tv_nsec - k->started.tv_nsec) / 1000;
    if (k->bev) bufferevent_free(k->bev);
    k->bev = NULL;
    evtimer_del(k->timeout);
    atomic_store(&t->last_rtt_us, (uint32_t)(us > 0 ? us : 0));
    atomic_store(&t->last_check, (int64_t)time(NULL));
    unsigned ej = atomic_load(&t->ejections);
    if (ej != t->seen_ejections) { /* taken out by live traffic since: coming back takes a full streak */
        t->seen_ejections = ej;
        t->ok_streak = 0;
    }
    int prev = atomic_load(&t->health), next = prev;
    if (ok) {
        t->fail_streak = 0;
        /* the first result sets the state; so does the first success of a target that never had one */
        if (++t->ok_streak >= hc->healthy || prev == GW_HEALTH_UNKNOWN || (!t->ever_checked_ok && ej == 0))
            next = GW_HEALTH_HEALTHY;
        t->ever_checked_ok = true;
    } else {
        t->ok_streak = 0;
        if (++t->fail_streak >= hc->unhealthy || prev == GW_HEALTH_UNKNOWN) next = GW_HEALTH_UNHEALTHY;
    }
    set_state(t, prev, next, reason, detail);
    if (stopped) return;
    int64_t age = (int64_t)gw_mono_ms() - k->since_ms;
    bool fast = !t->ever_checked_ok && age < FAST_RECHECK_FOR_MS && hc->interval_ms > FAST_RECHECK_MS;
    arm(k->tick, fast ? FAST_RECHECK_MS : hc->interval_ms);
}

/* "HTTP/1.x 2xx" or 3xx in the status line counts as healthy. */
static void on_read(struct bufferevent *bev, void *arg)
{
    gw_check *k = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) < 12) return;
    const char *p = (const char *)evbuffer_pullup(in, 12);
    bool http = memcmp(p, "HTTP/1.", 7) == 0 && p[9] >= '0' && p[9] <= '9' && p[10] >= '0' && p[10] <= '9' &&
                p[11] >= '0' && p[11] <= '9';
    bool ok = http && (p[9] == '2' || p[9] == '3');
    int status = http ? (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0') : 0;
    record(k, ok, GW_DOWN_STATUS, status);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_CONNECTED) return;
    gw_check *k = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (!err) {
        evutil_socket_t fd = bufferevent_getfd(bev);
        socklen_t len = sizeof err;
        if (fd >= 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (what & BEV_EVENT_EOF) record(k, false, GW_DOWN_CLOSED, 0);
    else record(k, false, GW_DOWN_CONNECT, err);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    record(arg, false, GW_DOWN_TIMEOUT, 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    gw_check *k = arg;
    gw_target *t = k->t;
    struct event_base *base = k->srv->main_base;
    clock_gettime(CLOCK_MONOTONIC, &k->started);
    if (t->naddrs == 0) {
        record(k, false, GW_DOWN_NO_ADDRESS, 0);
        return;
    }
    if (t->conf->https) {
        SSL *ssl = gw_upstream_ssl(t);
        k->bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
    } else {
        k->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!k->bev) {
        record(k, false, GW_DOWN_CONNECT, ENOMEM);
        return;
    }
    bufferevent_setcb(k->bev, on_read, NULL, on_event, k);
    bufferevent_enable(k->bev, EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(k->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gateway-health/" GW_VERSION
                        "\r\nConnection: close\r\n\r\n",
                        t->service->health.path, t->conf->authority);
    arm(k->timeout, t->service->health.timeout_ms);
    if (bufferevent_socket_connect(k->bev, (struct sockaddr *)&t->addrs[0], (int)t->addrlens[0]) != 0)
        record(k, false, GW_DOWN_CONNECT, EVUTIL_SOCKET_ERROR());
}

/* gateway_upstream_target_healthy from the main thread's slot: passive changes happen on the workers,
 * so the gauges follow the targets' state once a second rather than at each change. */
static void sync_gauges(evutil_socket_t fd, short what, void *arg)
{
    gw_server *server = arg;
    const gw_gen *g = server->gen;
    for (size_t s = 0; server->m_target_healthy && s < g->nservices; s++)
        for (size_t t = 0; t < g->services[s].ntargets; t++) {
            const gw_target *tg = &g->services[s].targets[t];
            const char *labels[] = {g->services[s].conf->name, tg->conf->url};
            gw_metric_set(server->m_target_healthy, server->nworkers, labels,
                          atomic_load(&tg->health) == GW_HEALTH_UNHEALTHY ? 0 : 1);
        }
    if (!stopped) arm(gauge_tick, 1000);
}

static const gw_target *find_target(const gw_gen *g, const char *service, const char *url)
{
    for (size_t s = 0; g && s < g->nservices; s++) {
        if (strcmp(g->services[s].conf->name, service) != 0) continue;
        for (size_t t = 0; t < g->services[s].ntargets; t++)
            if (strcmp(g->services[s].targets[t].conf->url, url) == 0) return &g->services[s].targets[t];
    }
    return NULL;
}

void gw_health_adopt(gw_gen *next, const gw_gen *prev)
{
    for (size_t s = 0; s < next->nservices; s++)
        for (size_t i = 0; i < next->services[s].ntargets; i++) {
            gw_target *t = &next->services[s].targets[i];
            const gw_target *o = find_target(prev, t->service->name, t->conf->url);
            if (!o) continue;
            int h = atomic_load(&o->health), reason = atomic_load(&o->down_reason);
            /* out on passive health, which the new configuration no longer has a way back from */
            if (h == GW_HEALTH_UNHEALTHY && reason == GW_DOWN_PASSIVE && !t->service->passive.failures &&
                !t->service->health.path)
                continue;
            atomic_store(&t->last_rtt_us, atomic_load(&o->last_rtt_us));
            atomic_store(&t->last_check, atomic_load(&o->last_check));
            t->ok_streak = o->ok_streak;
            t->fail_streak = o->fail_streak;
            t->ever_checked_ok = o->ever_checked_ok;
            t->seen_ejections = o->seen_ejections;
            atomic_store(&t->ejections, atomic_load(&o->ejections));
            atomic_store(&t->down_reason, reason);
            atomic_store(&t->down_detail, atomic_load(&o->down_detail));
            atomic_store(&t->down_since, atomic_load(&o->down_since));
            atomic_store(&t->passive_fails, atomic_load(&o->passive_fails));
            atomic_store(&t->passive_last, atomic_load(&o->passive_last));
            atomic_store(&t->retry_at_ms, atomic_load(&o->retry_at_ms));
            atomic_store(&t->health, h);
        }
}

void gw_health_start(gw_server *server)
{
    const gw_gen *srv = server->gen;
    size_t n = 0;
    for (size_t s = 0; s < srv->nservices; s++)
        if (srv->services[s].conf->health.path) n += srv->services[s].ntargets;
    checks = calloc(n ? n : 1, sizeof *checks);
    nchecks = 0;
    gauge_tick = evtimer_new(server->main_base, sync_gauges, server);
    if (gauge_tick) arm(gauge_tick, 0);
    for (size_t s = 0; s < srv->nservices; s++) {
        if (!srv->services[s].conf->health.path) continue;
        for (size_t t = 0; t < srv->services[s].ntargets; t++) {
            gw_check *k = &checks[nchecks++];
            k->srv = server;
            k->t = &srv->services[s].targets[t];
            k->tick = evtimer_new(server->main_base, on_tick, k);
            k->timeout = evtimer_new(server->main_base, on_timeout, k);
            k->since_ms = (int64_t)gw_mono_ms();
            arm(k->tick, 0); /* the first check at once, after a start as after a reload */
        }
    }
}

void gw_health_stop(void)
{
    stopped = true;
    if (gauge_tick) evtimer_del(gauge_tick);
    for (size_t i = 0; i < nchecks; i++) {
        evtimer_del(checks[i].tick);
        evtimer_del(checks[i].timeout);
        if (checks[i].bev) bufferevent_free(checks[i].bev);
        checks[i].bev = NULL;
    }
}

void gw_health_free(void)
{
    gw_health_stop();
    stopped = false;
    for (size_t i = 0; i < nchecks; i++) {
        event_free(checks[i].tick);
        event_free(checks[i].timeout);
    }
    if (gauge_tick) event_free(gauge_tick);
    gauge_tick = NULL;
    free(checks);
    checks = NULL;
    nchecks = 0;
}
