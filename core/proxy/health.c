/* health.c - active health checks: GET <path> on every target of a service every interval, over a fresh
 * connection (TLS for https targets), with hysteresis: the first result sets the state, then it takes
 * `healthy_threshold` successes or `unhealthy_threshold` failures in a row to change it. Results are
 * published through atomics that workers and built-in endpoints read. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "health.h"
#include "log.h"
#include "proxy_internal.h"

typedef struct {
    gw_server *srv;
    gw_target *t;
    struct event *tick;
    struct event *timeout;
    struct bufferevent *bev;
    struct timespec started;
} gw_check;

static gw_check *checks;
static size_t nchecks;
static bool stopped;

static void arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

static void record(gw_check *k, bool ok)
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
    int prev = atomic_load(&t->health), next = prev;
    if (ok) {
        t->fail_streak = 0;
        if (++t->ok_streak >= hc->healthy || prev == GW_HEALTH_UNKNOWN) next = GW_HEALTH_HEALTHY;
    } else {
        t->ok_streak = 0;
        if (++t->fail_streak >= hc->unhealthy || prev == GW_HEALTH_UNKNOWN) next = GW_HEALTH_UNHEALTHY;
    }
    if (next != prev) {
        atomic_store(&t->health, next);
        gw_log(next == GW_HEALTH_HEALTHY ? GW_LOG_INFO : GW_LOG_WARN, "health: %s target %s is %s",
               t->service->name, t->conf->url, next == GW_HEALTH_HEALTHY ? "healthy" : "unhealthy");
    }
    if (!stopped) arm(k->tick, hc->interval_ms);
}

/* "HTTP/1.x 2xx" or 3xx in the status line counts as healthy. */
static void on_read(struct bufferevent *bev, void *arg)
{
    gw_check *k = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) < 12) return;
    const char *p = (const char *)evbuffer_pullup(in, 12);
    bool ok = memcmp(p, "HTTP/1.", 7) == 0 && (p[9] == '2' || p[9] == '3');
    record(k, ok);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_CONNECTED) return;
    record(arg, false);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    record(arg, false);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    gw_check *k = arg;
    gw_target *t = k->t;
    struct event_base *base = k->srv->main_base;
    clock_gettime(CLOCK_MONOTONIC, &k->started);
    if (t->naddrs == 0) {
        record(k, false);
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
        record(k, false);
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
        record(k, false);
}

void gw_health_start(gw_server *server)
{
    const gw_gen *srv = server->gen;
    size_t n = 0;
    for (size_t s = 0; s < srv->nservices; s++)
        if (srv->services[s].conf->health.path) n += srv->services[s].ntargets;
    checks = calloc(n ? n : 1, sizeof *checks);
    nchecks = 0;
    for (size_t s = 0; s < srv->nservices; s++) {
        if (!srv->services[s].conf->health.path) continue;
        for (size_t t = 0; t < srv->services[s].ntargets; t++) {
            gw_check *k = &checks[nchecks++];
            k->srv = server;
            k->t = &srv->services[s].targets[t];
            k->tick = evtimer_new(server->main_base, on_tick, k);
            k->timeout = evtimer_new(server->main_base, on_timeout, k);
            arm(k->tick, 0);
        }
    }
}

void gw_health_stop(void)
{
    stopped = true;
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
    free(checks);
    checks = NULL;
    nchecks = 0;
}
