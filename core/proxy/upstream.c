/* upstream.c - connections to upstream targets: per-worker keep-alive pools (LIFO, bounded, idle
 * timeout), non-blocking connects over the resolved addresses in turn, TLS for https targets. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include "io.h"
#include <event2/event.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "proxy_internal.h"
#include "server.h"
#include "util.h"

static void pool_remove(gw_pool *p, gw_upconn *u)
{
    for (gw_upconn **pp = &p->idle; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            p->nidle--;
            return;
        }
}

static void upconn_free(gw_upconn *u)
{
    if (u->bev) gw_io_free(u->bev);
    if (u->timer) event_free(u->timer);
    free(u);
}

/* An idle pooled connection that becomes readable was closed (or spoke out of turn): drop it. */
static void idle_read(gw_io *bev, void *arg)
{
    gw_upconn *u = arg;
    pool_remove(u->pool, u);
    upconn_free(u);
}

static void idle_event(gw_io *bev, int what, void *arg)
{
    idle_read(bev, arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_upconn *u = arg;
    if (u->owner) {
        gw_proxy_up_timeout(u);
        return;
    }
    pool_remove(u->pool, u);
    upconn_free(u);
}

static bool is_ip_literal(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* A TLS session for an https target: SNI for host names, and the certificate must name the target. */
SSL *gw_upstream_ssl(const gw_target *t)
{
    SSL *ssl = SSL_new(t->ssl_ctx);
    if (!ssl) return NULL;
    const char *host = t->conf->host;
    if (is_ip_literal(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
    }
    return ssl;
}

static gw_io *new_io(gw_worker *w, gw_target *t)
{
    if (!t->conf->https) return gw_io_outgoing(w->base, NULL);
    SSL *ssl = gw_upstream_ssl(t);
    return ssl ? gw_io_outgoing(w->base, ssl) : NULL;
}

/* Starts (or restarts, with the next address) a connect. The output buffer keeps what was queued. */
int gw_upstream_connect(gw_worker *w, gw_upconn *u)
{
    gw_target *t = u->pool->target;
    if (u->addr_idx >= t->naddrs) return -1;
    gw_io *io = new_io(w, t);
    if (!io) return -1;
    if (u->bev) { /* a retry with the next address: keep the queued request bytes */
        evbuffer_add_buffer(gw_io_output(io), gw_io_output(u->bev));
        gw_io_free(u->bev);
    }
    u->bev = io;
    gw_io_setcb(io, gw_proxy_up_read, gw_proxy_up_write, gw_proxy_up_event, u);
    gw_io_set_write_low(io, GW_HIGH_WATER / 2);
    return gw_io_connect(io, (struct sockaddr *)&t->addrs[u->addr_idx], t->addrlens[u->addr_idx]);
}

gw_upconn *gw_upstream_acquire(gw_worker *w, gw_pool *pool, bool fresh, char **why)
{
    gw_upconn *u = fresh ? NULL : pool->idle;
    if (u) {
        pool->idle = u->next;
        pool->nidle--;
        u->next = NULL;
        u->reused = true;
        evtimer_del(u->timer);
        gw_io_setcb(u->bev, gw_proxy_up_read, gw_proxy_up_write, gw_proxy_up_event, u);
        gw_io_read_enable(u->bev, true);
        return u;
    }
    u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->pool = pool;
    u->timer = evtimer_new(w->base, on_timer, u);
    errno = 0;
    if (!u->timer || gw_upstream_connect(w, u) != 0) {
        static _Thread_local char buf[96];
        int e = errno;
        *why = "cannot start a connection";
        if (e && snprintf(buf, sizeof buf, "%s: %s", *why, strerror(e)) > 0) *why = buf;
        upconn_free(u);
        return NULL;
    }
    return u;
}

void gw_upstream_release(gw_upconn *u, bool reusable)
{
    gw_pool *p = u->pool;
    const gw_config *cfg = p->gen->cfg;
    u->owner = NULL;
    evtimer_del(u->timer);
    if (!reusable || !u->bev || p->w->draining || p->gen != p->w->gen || p->nidle >= cfg->upstream_keepalive) {
        upconn_free(u);
        return;
    }
    u->got_bytes = u->head_done = u->req_sent = false;
    u->scan_from = 0;
    gw_io_setcb(u->bev, idle_read, NULL, idle_event, u);
    gw_io_read_enable(u->bev, true);
    u->next = p->idle;
    p->idle = u;
    p->nidle++;
    struct timeval tv = {.tv_sec = (time_t)(cfg->upstream_keepalive_ms / 1000),
                         .tv_usec = (suseconds_t)((cfg->upstream_keepalive_ms % 1000) * 1000)};
    evtimer_add(u->timer, &tv);
}

/* The same plain-HTTP target: URL as written and the addresses it resolved to. */
static bool same_target(const gw_target *a, const gw_target *b)
{
    if (a->conf->https || b->conf->https || strcmp(a->conf->url, b->conf->url) != 0 || a->naddrs != b->naddrs)
        return false;
    for (int i = 0; i < a->naddrs; i++)
        if (a->addrlens[i] != b->addrlens[i] || memcmp(&a->addrs[i], &b->addrs[i], a->addrlens[i]) != 0)
            return false;
    return true;
}

/* Without this, a reload made every worker open every upstream connection again at once, and the first
 * requests after it waited for those connects (the tail latency of a load with one reload a second rose
 * ~10 %). TLS connections stay with their generation (its client context and verification settings);
 * the new keepalive limit applies; an idle connection's timer keeps running. */
void gw_upstream_pools_carry(gw_worker *w, gw_gen *old, gw_gen *next)
{
    gw_gen_worker *po = &old->pw[w->id], *pn = &next->pw[w->id];
    if (!po->pools || !pn->pools) return;
    for (size_t s = 0; s < next->nservices; s++)
        for (size_t t = 0; pn->pools[s] && t < next->services[s].ntargets; t++) {
            gw_pool *np = &pn->pools[s][t];
            for (size_t os = 0; os < old->nservices; os++)
                for (size_t ot = 0; po->pools[os] && ot < old->services[os].ntargets; ot++) {
                    gw_pool *op = &po->pools[os][ot];
                    if (!op->idle || !same_target(op->target, np->target)) continue;
                    while (op->idle && np->nidle < next->cfg->upstream_keepalive) {
                        gw_upconn *u = op->idle;
                        op->idle = u->next;
                        op->nidle--;
                        u->pool = np;
                        u->next = np->idle;
                        np->idle = u;
                        np->nidle++;
                    }
                }
        }
}

void gw_upstream_pools_free(gw_worker *w, gw_gen *g)
{
    gw_gen_worker *pw = &g->pw[w->id];
    for (size_t s = 0; pw->pools && s < g->nservices; s++)
        for (size_t t = 0; pw->pools[s] && t < g->services[s].ntargets; t++) {
            gw_pool *p = &pw->pools[s][t];
            while (p->idle) {
                gw_upconn *u = p->idle;
                p->idle = u->next;
                upconn_free(u);
            }
            p->nidle = 0;
        }
    gw_http_call_pools_idle_free(w, g);
}

/* A connection that cannot even be started (out of descriptors or memory) fails every request alike, so
 * the warning is rate-limited per worker: the first of an interval at once, then, from the worker's sweep
 * once the interval is over, how many more there were. Worker-thread state, no lock. */
#define FAIL_LOG_EVERY_MS 10000

static _Thread_local struct {
    int64_t first_ms;
    bool logged; /* an interval is open */
    unsigned long more;
    char last[160];
} fail_log;

static int64_t mono_ms(void)
{
    return (int64_t)gw_mono_ms();
}

void gw_upstream_log_flush(void)
{
    if (!fail_log.logged || mono_ms() - fail_log.first_ms < FAIL_LOG_EVERY_MS) return;
    if (fail_log.more)
        gw_warn("%lu more upstream connection%s could not be started in the last %d s (the last: %s)",
                fail_log.more, fail_log.more == 1 ? "" : "s", FAIL_LOG_EVERY_MS / 1000, fail_log.last);
    fail_log.logged = false;
}

void gw_upstream_log_failure(const char *what, const char *url, const char *why)
{
    gw_upstream_log_flush(); /* an interval that is over ends here too (a thread without the sweep) */
    if (fail_log.logged) {
        fail_log.more++;
        snprintf(fail_log.last, sizeof fail_log.last, "%s %s: %s", what, url, why);
        return;
    }
    gw_warn("%s %s: %s (more such failures in the next %d s are counted and reported then)", what, url, why,
            FAIL_LOG_EVERY_MS / 1000);
    fail_log.logged = true;
    fail_log.first_ms = mono_ms();
    fail_log.more = 0;
}
