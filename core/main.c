/* main.c - the gateway process: command line, configuration, start of the workers, signals
 * (SIGTERM/SIGINT drain and exit, a second one exits at once; SIGHUP is reserved for reload). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "connlimit.h"
#include "health.h"
#include "log.h"
#include "module.h"
#include "server.h"
#include "shared.h"
#include "store.h"
#include "tls.h"
#include "util.h"

static char *exe_directory(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return NULL;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash) *slash = '\0';
    return strdup(buf);
}

#define FD_MARGIN 64 /* listeners, eventfds, the log, the store, health checks, filters' files */

/* systemd's default soft limit (1024) is far below what max_connections allows: take what the hard limit
 * permits, and say so when even that is short. A proxied connection holds two descriptors (the client's
 * and the upstream's); at the limit accept fails and the workers pause accepting briefly. */
static void fit_fd_limit(const gw_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
        else
            gw_debug("cannot raise the file descriptor limit to %llu: %s", (unsigned long long)rl.rlim_max,
                     strerror(errno));
    }
    unsigned long long need = (unsigned long long)cfg->max_connections * 2 + FD_MARGIN;
    if (cfg->max_connections && rl.rlim_cur != RLIM_INFINITY && need > (unsigned long long)rl.rlim_cur)
        gw_warn(
            "max_connections %u may need up to %llu file descriptors (two per proxied connection) but the "
            "limit is %llu: past it, accepting pauses; raise the limit (ulimit -n, LimitNOFILE=) or lower "
            "max_connections",
            cfg->max_connections, need, (unsigned long long)rl.rlim_cur);
}

/* The short form after a wrong command line (stderr, exit 2); --help adds the rest (stdout, exit 0), a
 * compact gateway(8) (docs/gateway.8). tests/integration/test_install.py checks that --help and the man
 * page both name every long option, handled signal and ${VAR} of conf/gateway.yaml. */
static void usage(FILE *f, bool full)
{
    fputs("usage: gateway [-c FILE] [-t]\n"
          "       gateway --check-filter SO | --describe-filter SO [--json]\n"
          "       gateway --version | --help\n"
          "  -c, --config FILE         configuration file (default conf/gateway.yaml)\n"
          "  -t, --test                check the configuration and every filter, exit\n"
          "      --check-filter SO     print a filter's descriptor, whether it loads here\n"
          "      --describe-filter SO  print a filter's phases and settings\n"
          "      --json                with --describe-filter: the same as JSON\n"
          "  -v, --version             print the version and exit\n"
          "  -h, --help                print this help and exit\n",
          f);
    if (!full) {
        fputs("Try 'gateway --help' for signals, files and environment variables.\n", f);
        return;
    }
    fputs("\n"
          "Runs in the foreground: logs on stderr, access log (logging filter) on stdout.\n"
          "\n"
          "Signals:\n"
          "  SIGTERM, SIGINT  stop accepting, let requests in flight finish within\n"
          "                   timeouts.shutdown (25s), exit 0; a second one exits at once\n"
          "  SIGHUP           reload the configuration (if invalid, the running one stays)\n"
          "  SIGUSR1          filters reopen the files they write (log rotation)\n"
          "\n"
          "Files (make install; PREFIX is /usr/local unless given):\n"
          "  PREFIX/etc/gateway/gateway.yaml  configuration (/etc/gateway for PREFIX=/usr)\n"
          "  PREFIX/lib/gateway/filters/      filters, <name>.so; searched in plugin_dir,\n"
          "       <bin>/plugins, <bin>/../lib/gateway/filters, then the configured prefix\n"
          "  PREFIX/lib/systemd/system/gateway.service  systemd unit (reads gateway.env)\n"
          "  data/     the embedded store (store.path), relative to the working directory\n"
          "\n"
          "Environment, read by the shipped configuration (${VAR:-default}):\n"
          "  HOST, PORT (0.0.0.0, 8081); AUTH_SERVICE_URL, USER_SERVICE_URL;\n"
          "  STORE_TYPE (embedded, redis); REDIS_HOST, REDIS_PORT, REDIS_PASSWORD,\n"
          "  REDIS_DB; ADMIN_AUTH_ENABLED, ADMIN_USERNAME, ADMIN_PASSWORD (required while\n"
          "  enabled); CORS_ALLOW_ORIGINS; RATE_LIMIT_RPM, RATE_LIMIT_BURST;\n"
          "  RETRY_MAX_RETRIES, RETRY_INITIAL_DELAY_MS, RETRY_MAX_DELAY_MS,\n"
          "  RETRY_MULTIPLIER, RETRY_JITTER_FACTOR; CB_MAX_FAILURES,\n"
          "  CB_RESET_TIMEOUT_SECONDS, CB_HALF_OPEN_MAX_REQUESTS, CB_SUCCESS_THRESHOLD.\n"
          "Read by the binary: GW_FILTER_COPY_DIR, else TMPDIR, else /tmp: where filters\n"
          "are copied to when memfd_create is not available (not a noexec mount).\n"
          "\n"
          "Exit status: 0 ok; 1 invalid configuration, start-up failure, filter refused;\n"
          "2 wrong usage. More: man 8 gateway, docs/configuration.md.\n",
          f);
}

static double uptime_seconds(void *arg)
{
    const gw_server *srv = arg;
    return (double)(gw_mono_ms() - srv->started_mono_ms) / 1000.0;
}

static int build_server(gw_server *srv, char **err)
{
    gw_config *cfg = srv->cfg;
    srv->listener_ssl_ctx = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(SSL_CTX *));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const gw_listener_conf *l = &cfg->listeners[i];
        if (l->tls && !(srv->listener_ssl_ctx[i] = gw_tls_server_ctx(l->cert_file, l->key_file, err)))
            return -1;
    }
    if (gw_builtin_prepare(srv) != 0) return asprintf(err, "out of memory"), -1;
    srv->retire_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->retire_fd < 0) return asprintf(err, "eventfd: %s", strerror(errno)), -1;
    srv->reload_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->reload_fd < 0) return asprintf(err, "eventfd: %s", strerror(errno)), -1;
    pthread_mutex_init(&srv->reload_mu, NULL);
    srv->started_at = (int64_t)time(NULL);
    srv->nworkers = cfg->workers ? cfg->workers : 1;
    srv->metrics = gw_metrics_new(srv->nworkers);
    if (!srv->metrics) return asprintf(err, "out of memory"), -1;
    gw_metrics_set_thread_slot(srv->nworkers);
    static const char *const result_label[] = {"result", NULL};
    const char *merr = NULL;
    srv->m_reloads =
        gw_metrics_register(srv->metrics, GW_METRIC_COUNTER, "gateway_config_reloads_total",
                            "Configuration reloads (SIGHUP) by result", result_label, NULL, 0, &merr);
    const gw_store_conf *sc = &cfg->store;
    srv->store = sc->type == GW_STORE_REDIS
                     ? gw_store_new_redis(sc->host, sc->port, sc->password, sc->db, sc->connect_timeout_ms,
                                          sc->command_timeout_ms, srv->nworkers, err)
                     : gw_store_new(sc->path, srv->nworkers, err);
    if (!srv->store) return -1;
    static const char *const op_label[] = {"op", NULL};
    srv->m_store_errors = gw_metrics_register(srv->metrics, GW_METRIC_COUNTER, "gateway_store_errors_total",
                                              "Store operations that failed (store unavailable or too slow)",
                                              op_label, NULL, 0, &merr);
    static const char *const target_labels[] = {"service", "target", NULL};
    static const char *const svc_label[] = {"service", NULL};
    srv->m_target_healthy =
        gw_metrics_register(srv->metrics, GW_METRIC_GAUGE, "gateway_upstream_target_healthy",
                            "1 while a target takes requests, 0 while it is out (active or passive health)",
                            target_labels, NULL, 0, &merr);
    srv->m_ejections = gw_metrics_register(
        srv->metrics, GW_METRIC_COUNTER, "gateway_upstream_passive_ejections_total",
        "Targets taken out of the rotation by failures of live requests", svc_label, NULL, 0, &merr);
    static const char *const service_label[] = {"service", NULL};
    srv->m_backend_requests =
        gw_metrics_register(srv->metrics, GW_METRIC_COUNTER, "gateway_backend_requests_total",
                            "Upstream attempts by service (retries included)", service_label, NULL, 0, &merr);
    srv->m_backend_errors = gw_metrics_register(
        srv->metrics, GW_METRIC_COUNTER, "gateway_backend_errors_total",
        "Upstream attempts that failed (connect, timeout, closed, invalid) or answered >= 500, by service",
        service_label, NULL, 0, &merr);
    static const char *const status_label[] = {"status", NULL};
    srv->m_malformed = gw_metrics_register(
        srv->metrics, GW_METRIC_COUNTER, "gateway_http_malformed_requests_total",
        "Request heads refused before routing (malformed or too large), by status; no filter sees them",
        status_label, NULL, 0, &merr);
    srv->started_mono_ms = gw_mono_ms();
    gw_metrics_register_func(srv->metrics, GW_METRIC_GAUGE, "gateway_uptime_seconds",
                             "Seconds since the gateway started", uptime_seconds, srv, &merr);
    srv->climit = gw_connlimit_new(srv->metrics);
    if (!srv->climit) return asprintf(err, "out of memory"), -1;
    /* The first generation owns a configuration of its own: the listeners' one lives as long as we do. */
    char *e2 = NULL;
    gw_config *gcfg = gw_config_load(srv->config_path, &e2);
    if (!gcfg) {
        *err = e2;
        return -1;
    }
    srv->gen = gw_gen_build(srv, gcfg, ++srv->gen_seq, err);
    if (srv->gen && gw_admin_register(srv->gen) != 0) return asprintf(err, "out of memory"), -1;
    if (!srv->gen) return -1;
    atomic_store(&srv->cur_gen_id, srv->gen->id);
    return 0;
}

static void free_server(gw_server *srv)
{
    for (size_t i = 0; i < srv->nold; i++)
        gw_gen_free(srv->old[i]);
    gw_gen_free(srv->gen);
    gw_metrics_free(srv->metrics);
    gw_store_free(srv->store);
    gw_connlimit_free(srv->climit);
    if (srv->listener_ssl_ctx)
        for (size_t i = 0; i < srv->cfg->nlisteners; i++)
            if (srv->listener_ssl_ctx[i]) SSL_CTX_free(srv->listener_ssl_ctx[i]);
    free(srv->listener_ssl_ctx);
    free(srv->health_body);
    free(srv->health_body_down);
    if (srv->retire_fd > 0) close(srv->retire_fd);
    if (srv->reload_fd > 0) close(srv->reload_fd);
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
    gw_workers_wake(m->srv);
    struct timeval tv = {.tv_sec = (time_t)(m->srv->cfg->shutdown_ms / 1000),
                         .tv_usec = (suseconds_t)(m->srv->cfg->shutdown_ms % 1000) * 1000};
    evtimer_add(m->deadline, &tv);
    struct timeval p = {0, 20 * 1000};
    event_add(m->poll, &p);
}

static bool same_listeners(const gw_config *a, const gw_config *b)
{
    if (a->nlisteners != b->nlisteners || a->workers != b->workers) return false;
    for (size_t i = 0; i < a->nlisteners; i++) {
        const gw_listener_conf *x = &a->listeners[i], *y = &b->listeners[i];
        if (x->port != y->port || x->tls != y->tls || strcmp(x->address, y->address) != 0) return false;
    }
    return true;
}

static void reload_failed(gw_server *srv, char *msg, size_t msglen, const char *why)
{
    snprintf(msg, msglen, "%s", why);
    gw_error("reload failed, generation %u kept: %s", srv->gen->id, why);
    atomic_fetch_add(&srv->reloads_failed, 1);
    if (srv->m_reloads) gw_metric_add(srv->m_reloads, srv->nworkers, (const char *const[]){"failure"}, 1);
}

typedef struct {
    gw_server *srv;
    gw_config *cfg;
    gw_gen *g;
    char *err;
} build_job;

/* Reads the file and builds the generation, on a thread of its own at a lower priority than the workers:
 * where every core is busy serving, a reload takes a few milliseconds longer instead of taking them out
 * of the requests in flight (one reload a second under full load raised p99 ~15 % when this ran on the
 * main thread). The main thread waits for it: nothing else runs on its event base meanwhile. */
static void build_generation(build_job *j)
{
    j->cfg = gw_config_load(j->srv->config_path, &j->err);
    j->g = j->cfg ? gw_gen_build(j->srv, j->cfg, j->srv->gen_seq + 1, &j->err) : NULL;
}

static void *build_thread(void *arg)
{
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10); /* this thread only, on Linux */
    build_generation(arg);
    return NULL;
}

/* Validates and builds a whole new generation; only then hands it to the workers. Anything wrong leaves
 * the running generation untouched. True on success; msg gets the reason of a failure. */
static bool reload(gw_main *m, char *msg, size_t msglen)
{
    gw_server *srv = m->srv;
    if (srv->nold >= sizeof srv->old / sizeof srv->old[0]) {
        reload_failed(srv, msg, msglen,
                      "too many older generations still have requests in flight; try again later");
        return false;
    }
    build_job job = {.srv = srv};
    pthread_t t;
    if (pthread_create(&t, NULL, build_thread, &job) == 0)
        pthread_join(t, NULL);
    else
        build_generation(&job); /* no thread to spare: here, at the main thread's priority */
    char *err = job.err;
    gw_gen *g = job.g;
    if (g && gw_admin_register(g) != 0) {
        gw_gen_free(g);
        g = NULL;
        free(err);
        err = strdup("out of memory");
    }
    if (!g) {
        reload_failed(srv, msg, msglen, err ? err : "unknown error");
        free(err);
        return false;
    }
    if (!same_listeners(srv->cfg, g->cfg))
        gw_warn("reload: listener or worker changes need a restart; the running listeners are kept");
    srv->gen_seq++;
    gw_health_stop();
    gw_health_free();
    gw_health_adopt(g, srv->gen); /* before any worker sees g: unchanged targets keep their state */
    srv->old[srv->nold++] = srv->gen;
    srv->gen = g;
    atomic_store(&srv->cur_gen_id, g->id);
    gw_log_set_level(g->cfg->log_level); /* log.level and log.format follow the new file too */
    gw_log_set_format(g->cfg->log_format);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        gw_gen *skipped = atomic_exchange(&srv->workers[i].next_gen, g);
        /* That worker never adopted the previous one: it will never release it either. */
        if (skipped && atomic_fetch_sub(&skipped->workers_left, 1) == 1) {
            uint64_t one = 1;
            if (write(srv->retire_fd, &one, sizeof one) != sizeof one)
                gw_warn("reload: eventfd write failed");
        }
    }
    gw_workers_wake(srv);
    gw_health_start(srv);
    atomic_fetch_add(&srv->reloads_ok, 1);
    if (srv->m_reloads) gw_metric_add(srv->m_reloads, srv->nworkers, (const char *const[]){"success"}, 1);
    gw_info("reload: generation %u serves new requests (%zu filter%s)", g->id, g->nfilters,
            g->nfilters == 1 ? "" : "s");
    msg[0] = '\0';
    return true;
}

/* SIGHUP */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    gw_main *m = arg;
    if (atomic_load(&m->srv->draining)) return;
    char msg[1024];
    reload(m, msg, sizeof msg);
}

/* POST /admin/reload (admin.c): one reload for every request queued meanwhile, each told the outcome. */
static void on_reload_request(evutil_socket_t fd, short what, void *arg)
{
    gw_main *m = arg;
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0) return;
    gw_reload_ticket *q = gw_admin_reload_take(m->srv);
    if (!q) return;
    char msg[1024];
    bool ok = false;
    if (atomic_load(&m->srv->draining))
        snprintf(msg, sizeof msg, "the gateway is shutting down");
    else
        ok = reload(m, msg, sizeof msg);
    gw_admin_reload_done(q, ok, m->srv->gen->id, msg);
}

/* SIGUSR1: filters that write files reopen them (log rotation). */
static void on_usr1(evutil_socket_t sig, short what, void *arg)
{
    gw_main *m = arg;
    const gw_gen *g = m->srv->gen;
    size_t n = 0;
    for (size_t i = 0; i < g->nfilters; i++) {
        const gw_filter *f = g->filters[i];
        if (f->d->reopen) { /* older filters: NULL (the loader zero-fills what their descriptor lacks) */
            f->d->reopen(f->inst);
            n++;
        }
    }
    gw_info("SIGUSR1: %zu filter%s reopened their files", n, n == 1 ? "" : "s");
}

/* A worker released a generation: free those every worker is done with (main thread only). */
static void on_retired(evutil_socket_t fd, short what, void *arg)
{
    gw_main *m = arg;
    gw_server *srv = m->srv;
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0) return;
    for (size_t i = 0; i < srv->nold;) {
        gw_gen *g = srv->old[i];
        if (atomic_load(&g->workers_left) == 0) {
            gw_debug("generation %u released", g->id);
            gw_gen_free(g);
            srv->old[i] = srv->old[--srv->nold];
        } else {
            i++;
        }
    }
}

static int run(gw_server *srv)
{
    char *err = NULL;
    srv->main_base = event_base_new();
    if (build_server(srv, &err) != 0 || gw_workers_start(srv, &err) != 0) {
        fprintf(stderr, "gateway: %s\n", err ? err : "start-up failed");
        free(err);
        event_base_free(srv->main_base);
        return 1;
    }
    gw_main m = {.srv = srv};
    m.poll = event_new(srv->main_base, -1, EV_PERSIST, on_poll, &m);
    m.deadline = evtimer_new(srv->main_base, on_deadline, &m);
    struct event *sigs[6] = {
        evsignal_new(srv->main_base, SIGTERM, on_stop_signal, &m),
        evsignal_new(srv->main_base, SIGINT, on_stop_signal, &m),
        evsignal_new(srv->main_base, SIGHUP, on_hup, &m),
        evsignal_new(srv->main_base, SIGUSR1, on_usr1, &m),
        event_new(srv->main_base, srv->retire_fd, EV_READ | EV_PERSIST, on_retired, &m),
        event_new(srv->main_base, srv->reload_fd, EV_READ | EV_PERSIST, on_reload_request, &m)};
    for (int i = 0; i < 6; i++)
        event_add(sigs[i], NULL);
    gw_health_start(srv);
    for (size_t i = 0; i < srv->cfg->nlisteners; i++)
        gw_info("listening on %s:%u (%s), %u worker%s", srv->cfg->listeners[i].address,
                srv->cfg->listeners[i].port, srv->cfg->listeners[i].tls ? "https" : "http", srv->nworkers,
                srv->nworkers == 1 ? "" : "s");
    event_base_dispatch(srv->main_base);
    gw_workers_join(srv);
    gw_admin_reload_done(gw_admin_reload_take(srv), false, srv->gen->id, "the gateway stopped");
    gw_health_free();
    for (int i = 0; i < 6; i++)
        event_free(sigs[i]);
    event_free(m.poll);
    event_free(m.deadline);
    event_base_free(srv->main_base);
    gw_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-filter", required_argument, NULL, 'F'},
                                         {"describe-filter", required_argument, NULL, 'D'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"test", no_argument, NULL, 't'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *file = "conf/gateway.yaml";
    bool test_only = false, json = false;
    const char *describe = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("gateway %s\n", GW_VERSION);
            return 0;
        case 'h':
            usage(stdout, true);
            return 0;
        case 'F':
            return gw_module_check_cli(optarg);
        case 'D':
            describe = optarg;
            break;
        case 'J':
            json = true;
            break;
        default:
            usage(stderr, false);
            return 2;
        }
    }
    if (optind < argc || (json && !describe)) {
        usage(stderr, false);
        return 2;
    }
    if (describe) return gw_module_describe_cli(describe, json);
    char *err = NULL;
    gw_config *cfg = gw_config_load(file, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err ? err : "cannot load the configuration");
        free(err);
        return 1;
    }
    char *exe_dir = exe_directory();
    if (test_only) {
        int rc = gw_gen_check(cfg, exe_dir, &err);
        if (rc == 0)
            printf("%s: ok\n", file);
        else
            fprintf(stderr, "%s\n", err ? err : "filter check failed");
        free(err);
        free(exe_dir);
        gw_config_free(cfg);
        return rc == 0 ? 0 : 1;
    }
    gw_log_set_level(cfg->log_level);
    gw_log_set_format(cfg->log_format);
    fit_fd_limit(cfg);
    /* Buffers come and go at up to 64 KiB per read: keep them on the heap instead of mapping, faulting in
     * and unmapping pages on every response (measured: a third of the CPU time). A thread arena gives
     * back only what is free at its top past the trim threshold, so not the 64 MiB of a whole thread heap:
     * at 4 MiB floods are returned (see worker.c, on_trim). A trim keeps top_pad bytes, so a steady load's
     * ups and downs do not shrink and regrow the heap: measured on /64k with 64 connections, 6.4 page
     * faults per request with the threshold alone, none with the 8 MiB pad (throughput -38 % without). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_TOP_PAD, 8 << 20);
    signal(SIGPIPE, SIG_IGN);
    gw_server srv = {
        .cfg = cfg, .exe_dir = exe_dir, .config_path = (char *)file, .retire_fd = -1, .reload_fd = -1};
    int rc = run(&srv);
    free_server(&srv);
    gw_shared_free_all();
    free(exe_dir);
    libevent_global_shutdown();
    return rc;
}
