/* main.c - the gateway process: command line, configuration, start of the workers, signals
 * (SIGTERM/SIGINT drain and exit, a second one exits at once; SIGHUP is reserved for reload). */
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "health.h"
#include "log.h"
#include "server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: gateway [-c FILE] [-t] [--version]\n"
               "  -c, --config FILE   configuration file (default conf/gateway.yaml)\n"
               "  -t, --test          check the configuration and exit (0 = valid)\n"
               "  -v, --version       print the version and exit\n");
}

static int resolve_target(gw_target *t)
{
    char port[8];
    snprintf(port, sizeof port, "%u", t->conf->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(t->conf->host, port, &hints, &res);
    if (rc != 0) {
        gw_warn("service %s: target %s: cannot resolve %s: %s (requests to it will fail with 502)",
                t->service->name, t->conf->url, t->conf->host, gai_strerror(rc));
        return 0;
    }
    /* IPv4 first: "localhost" services commonly listen on 127.0.0.1 only; the others follow as fallbacks. */
    for (int pass = 0; pass < 2; pass++)
        for (struct addrinfo *a = res; a && t->naddrs < 4; a = a->ai_next) {
            if ((pass == 0) != (a->ai_family == AF_INET)) continue;
            memcpy(&t->addrs[t->naddrs], a->ai_addr, a->ai_addrlen);
            t->addrlens[t->naddrs++] = a->ai_addrlen;
        }
    freeaddrinfo(res);
    return 0;
}

static int build_server(gw_server *srv, char **err)
{
    gw_config *cfg = srv->cfg;
    srv->router = gw_router_new(cfg);
    if (!srv->router) return asprintf(err, "cannot build the route table"), -1;
    srv->nservices = cfg->nservices;
    srv->services = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(gw_service));
    for (size_t i = 0; i < cfg->nservices; i++) {
        gw_service *s = &srv->services[i];
        s->conf = &cfg->services[i];
        s->ntargets = s->conf->ntargets;
        s->targets = calloc(s->ntargets, sizeof(gw_target));
        SSL_CTX *ctx = NULL;
        for (size_t t = 0; t < s->ntargets; t++) {
            gw_target *tg = &s->targets[t];
            tg->conf = &s->conf->targets[t];
            tg->service = s->conf;
            if (tg->conf->https) {
                if (!ctx && !(ctx = gw_tls_client_ctx(s->conf->tls_verify, s->conf->tls_ca_file, err))) return -1;
                if (t > 0) SSL_CTX_up_ref(ctx);
                tg->ssl_ctx = ctx;
            }
            resolve_target(tg);
        }
    }
    srv->listener_ssl_ctx = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(SSL_CTX *));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const gw_listener_conf *l = &cfg->listeners[i];
        if (l->tls && !(srv->listener_ssl_ctx[i] = gw_tls_server_ctx(l->cert_file, l->key_file, err))) return -1;
    }
    if (gw_builtin_prepare(srv) != 0) return asprintf(err, "out of memory"), -1;
    srv->started_at = (int64_t)time(NULL);
    return 0;
}

static void free_server(gw_server *srv)
{
    for (size_t i = 0; i < srv->nservices; i++) {
        for (size_t t = 0; t < srv->services[i].ntargets; t++)
            if (srv->services[i].targets[t].ssl_ctx) SSL_CTX_free(srv->services[i].targets[t].ssl_ctx);
        free(srv->services[i].targets);
    }
    free(srv->services);
    if (srv->listener_ssl_ctx)
        for (size_t i = 0; i < srv->cfg->nlisteners; i++)
            if (srv->listener_ssl_ctx[i]) SSL_CTX_free(srv->listener_ssl_ctx[i]);
    free(srv->listener_ssl_ctx);
    free(srv->health_body);
    gw_router_free(srv->router);
    gw_config_free(srv->cfg);
}

typedef struct {
    gw_server *srv;
    struct event *poll;
    struct event *deadline;
    int signals;
} gw_main;

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    gw_main *m = arg;
    if (atomic_load(&m->srv->workers_done) == m->srv->nworkers) event_base_loopbreak(m->srv->main_base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    gw_main *m = arg;
    gw_warn("shutdown: requests still in flight after %llu ms; exiting anyway",
            (unsigned long long)m->srv->cfg->shutdown_ms);
    _exit(0);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    gw_main *m = arg;
    if (m->signals++ > 0) {
        gw_warn("second %s: exiting now", strsignal((int)sig));
        _exit(1);
    }
    gw_info("%s: draining (up to %llu ms); send it again to exit at once", strsignal((int)sig),
            (unsigned long long)m->srv->cfg->shutdown_ms);
    atomic_store(&m->srv->draining, true);
    gw_health_stop();
    gw_workers_drain(m->srv);
    struct timeval tv = {.tv_sec = (time_t)(m->srv->cfg->shutdown_ms / 1000),
                         .tv_usec = (suseconds_t)(m->srv->cfg->shutdown_ms % 1000) * 1000};
    evtimer_add(m->deadline, &tv);
    struct timeval p = {0, 20 * 1000};
    event_add(m->poll, &p);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    gw_warn("SIGHUP: configuration reload is not available in this version; running configuration kept");
}

static int run(gw_server *srv)
{
    char *err = NULL;
    if (build_server(srv, &err) != 0 || gw_workers_start(srv, &err) != 0) {
        fprintf(stderr, "gateway: %s\n", err ? err : "start-up failed");
        free(err);
        return 1;
    }
    gw_main m = {.srv = srv};
    srv->main_base = event_base_new();
    m.poll = event_new(srv->main_base, -1, EV_PERSIST, on_poll, &m);
    m.deadline = evtimer_new(srv->main_base, on_deadline, &m);
    struct event *sigs[3] = {evsignal_new(srv->main_base, SIGTERM, on_stop_signal, &m),
                             evsignal_new(srv->main_base, SIGINT, on_stop_signal, &m),
                             evsignal_new(srv->main_base, SIGHUP, on_hup, &m)};
    for (int i = 0; i < 3; i++) event_add(sigs[i], NULL);
    gw_health_start(srv);
    for (size_t i = 0; i < srv->cfg->nlisteners; i++)
        gw_info("listening on %s:%u (%s), %u worker%s", srv->cfg->listeners[i].address, srv->cfg->listeners[i].port,
                srv->cfg->listeners[i].tls ? "https" : "http", srv->nworkers, srv->nworkers == 1 ? "" : "s");
    event_base_dispatch(srv->main_base);
    gw_workers_join(srv);
    gw_health_free();
    for (int i = 0; i < 3; i++) event_free(sigs[i]);
    event_free(m.poll);
    event_free(m.deadline);
    event_base_free(srv->main_base);
    gw_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"test", no_argument, NULL, 't'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *file = "conf/gateway.yaml";
    bool test_only = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': file = optarg; break;
        case 't': test_only = true; break;
        case 'v': printf("gateway %s\n", GW_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    char *err = NULL;
    gw_config *cfg = gw_config_load(file, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err ? err : "cannot load the configuration");
        free(err);
        return 1;
    }
    if (test_only) {
        printf("%s: ok\n", file);
        gw_config_free(cfg);
        return 0;
    }
    gw_log_set_level(cfg->log_level);
    /* Buffers come and go at up to 64 KiB per read: keep them on the heap and keep the heap, instead of
     * mapping, faulting in and trimming pages on every response (measured: a third of the CPU time). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    signal(SIGPIPE, SIG_IGN);
    gw_server srv = {.cfg = cfg};
    int rc = run(&srv);
    free_server(&srv);
    libevent_global_shutdown();
    return rc;
}
