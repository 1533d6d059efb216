/* generation.c - building and freeing generations (see generation.h): services and their resolved targets,
 * the route table, and the filter pipeline (locate, load, check, create, per-route settings, endpoints). */
#include "generation.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf_api.h"
#include "conf_settings.h"
#include "log.h"
#include "phases.h"
#include "server.h"
#include "tls.h"
#include "util.h"

#define ERRLEN 1024

#ifndef GW_FILTER_DIR /* set by the build to <install prefix>/lib/gateway/filters */
#define GW_FILTER_DIR "/usr/local/lib/gateway/filters"
#endif

static void resolve_target(gw_target *t)
{
    char port[8];
    snprintf(port, sizeof port, "%u", t->conf->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(t->conf->host, port, &hints, &res);
    if (rc != 0) {
        gw_warn("service %s: target %s: cannot resolve %s: %s (requests to it will fail with 502)",
                t->service->name, t->conf->url, t->conf->host, gai_strerror(rc));
        return;
    }
    /* IPv4 first: "localhost" services commonly listen on 127.0.0.1 only; the others follow as fallbacks. */
    for (int pass = 0; pass < 2; pass++)
        for (struct addrinfo *a = res; a && t->naddrs < 4; a = a->ai_next) {
            if ((pass == 0) != (a->ai_family == AF_INET)) continue;
            memcpy(&t->addrs[t->naddrs], a->ai_addr, a->ai_addrlen);
            t->addrlens[t->naddrs++] = a->ai_addrlen;
        }
    freeaddrinfo(res);
}

static int build_services(gw_gen *g, char **err)
{
    const gw_config *cfg = g->cfg;
    g->nservices = cfg->nservices;
    g->services = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(gw_service));
    if (!g->services) return (*err = gw_strdupf("out of memory")), -1;
    for (size_t i = 0; i < cfg->nservices; i++) {
        gw_service *s = &g->services[i];
        s->conf = &cfg->services[i];
        s->ntargets = s->conf->ntargets;
        s->targets = calloc(s->ntargets, sizeof(gw_target));
        if (!s->targets) return (*err = gw_strdupf("out of memory")), -1;
        SSL_CTX *ctx = NULL;
        for (size_t t = 0; t < s->ntargets; t++) {
            gw_target *tg = &s->targets[t];
            tg->conf = &s->conf->targets[t];
            tg->service = s->conf;
            if (tg->conf->https) {
                if (!ctx && !(ctx = gw_tls_client_ctx(s->conf->tls_verify, s->conf->tls_ca_file, err))) return -1;
                if (tg != &s->targets[0] && s->targets[0].ssl_ctx == ctx) SSL_CTX_up_ref(ctx);
                tg->ssl_ctx = ctx;
            }
            resolve_target(tg);
        }
    }
    return 0;
}

/* <name>.so in plugin_dir, next to the binary (build tree: plugins/), or the install prefix. */
static char *find_filter(const gw_config *cfg, const char *exe_dir, const gw_pipeline_entry *e)
{
    const gw_yaml_node *file = gw_yaml_get(e->settings, "file");
    if (file && file->kind == GW_YAML_SCALAR && file->scalar[0]) return strdup(file->scalar);
    const char *dirs[4] = {cfg->plugin_dir, NULL, NULL, NULL};
    char *a = exe_dir ? gw_strdupf("%s/plugins", exe_dir) : NULL;
    char *b = exe_dir ? gw_strdupf("%s/../lib/gateway/filters", exe_dir) : NULL;
    dirs[1] = a;
    dirs[2] = b;
    dirs[3] = GW_FILTER_DIR;
    char *found = NULL;
    for (int i = 0; i < 4 && !found; i++) {
        if (!dirs[i]) continue;
        char *p = gw_strdupf("%s/%s.so", dirs[i], e->name);
        if (p && access(p, R_OK) == 0) found = p;
        else free(p);
    }
    if (!found && cfg->plugin_dir) found = gw_strdupf("%s/%s.so", cfg->plugin_dir, e->name); /* for the message */
    free(a);
    free(b);
    return found;
}

/* Points at the entry's `file` when it has one (that is what was looked for), else at its `name`. */
static char *entry_error(const gw_config *cfg, const gw_pipeline_entry *e, const char *msg)
{
    const gw_yaml_node *at = gw_yaml_get(e->settings, "file");
    if (!at) at = gw_yaml_get(e->settings, "name");
    if (!at) at = e->settings;
    return gw_strdupf("%s:%d:%d: pipeline filter '%s': %s", cfg->file, at->line, at->col, e->name, msg);
}

/* True when msg starts with "file:line:col: ". */
static bool has_location(const char *msg)
{
    const char *p = strchr(msg, ':');
    for (int part = 0; part < 2; part++) {
        if (!p || p == msg || p[1] < '0' || p[1] > '9') return false;
        p++;
        while (*p >= '0' && *p <= '9') p++;
        if (*p != ':') return false;
    }
    return p[1] == ' ';
}

/* A message from a filter's own checks: kept when it names its place (conf_error does), else it gets the
 * place of the node it is about, so that every load error reads "file:line:col: ...". */
static char *filter_error(const gw_config *cfg, const gw_yaml_node *at, const char *name, const char *msg,
                          const char *fallback)
{
    if (!msg || !*msg) msg = fallback;
    if (has_location(msg)) return gw_strdupf("%s", msg);
    return gw_strdupf("%s:%d:%d: filter '%s': %s", cfg->file, at->line, at->col, name, msg);
}

/* Loads one entry's module and runs its checks; returns the module or NULL with *err. */
static gw_module *load_entry(gw_config *cfg, const char *exe_dir, const gw_pipeline_entry *e, char **err)
{
    char *path = find_filter(cfg, exe_dir, e);
    if (!path) {
        *err = entry_error(cfg, e, "filter not found (set `file:` or `plugin_dir:`)");
        return NULL;
    }
    char *lerr = NULL;
    gw_module *m = gw_module_load(path, &lerr);
    free(path);
    if (!m) {
        *err = entry_error(cfg, e, lerr ? lerr : "cannot load");
        free(lerr);
        return NULL;
    }
    if (strcmp(m->desc.name, e->name) != 0) {
        char *msg = gw_strdupf("the file's filter is named '%s'", m->desc.name);
        *err = entry_error(cfg, e, msg ? msg : "name mismatch");
        free(msg);
        gw_module_free(m);
        return NULL;
    }
    char ebuf[ERRLEN] = "";
    const gw_filter_desc *d = &m->desc;
    /* The table's checks come first: config_check then sees only well-typed settings. */
    if (d->settings && gw_settings_check(e->name, d->settings, e->settings, false, ebuf, sizeof ebuf) != 0) {
        *err = filter_error(cfg, e->settings, e->name, ebuf, "settings refused");
        gw_module_free(m);
        return NULL;
    }
    if (d->config_check && d->config_check(gw_host_api(), gw_conf_of(e->settings), ebuf, sizeof ebuf) != 0) {
        *err = filter_error(cfg, e->settings, e->name, ebuf, "configuration refused by the filter");
        gw_module_free(m);
        return NULL;
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const gw_yaml_node *rc = cfg->routes[r].filters ? gw_yaml_get(cfg->routes[r].filters, e->name) : NULL;
        if (!rc) continue;
        bool by_table = d->settings && gw_settings_has_route(d->settings);
        if (!d->route_create && !by_table) {
            *err = gw_strdupf("%s:%d:%d: routes[%zu].filters.%s: filter '%s' has no per-route settings", cfg->file,
                       rc->line, rc->col, r, e->name, e->name);
            gw_module_free(m);
            return NULL;
        }
        if ((by_table && gw_settings_check(e->name, d->settings, rc, true, ebuf, sizeof ebuf) != 0) ||
            (d->route_check && d->route_check(gw_host_api(), NULL, gw_conf_of(rc), ebuf, sizeof ebuf) != 0)) {
            *err = filter_error(cfg, rc, e->name, ebuf, "route settings refused by the filter");
            gw_module_free(m);
            return NULL;
        }
    }
    return m;
}

static bool route_filters_known(gw_config *cfg, char **err)
{
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const gw_yaml_node *fm = cfg->routes[r].filters;
        for (size_t k = 0; fm && k < fm->n; k++) {
            bool found = false;
            for (size_t i = 0; i < cfg->npipeline && !found; i++)
                found = strcmp(cfg->pipeline[i].name, fm->keys[k]->scalar) == 0;
            if (!found) {
                *err = gw_strdupf("%s:%d:%d: routes[%zu].filters: '%s' is not in the pipeline", cfg->file,
                           fm->keys[k]->line, fm->keys[k]->col, r, fm->keys[k]->scalar);
                return false;
            }
        }
    }
    return true;
}

int gw_gen_check(gw_config *cfg, const char *exe_dir, char **err)
{
    if (!route_filters_known(cfg, err)) return -1;
    for (size_t i = 0; i < cfg->npipeline; i++) {
        /* The same filter may appear more than once, each entry an instance with its own settings. */
        const gw_pipeline_entry *e = &cfg->pipeline[i];
        if (!e->enabled) continue;
        gw_module *m = load_entry(cfg, exe_dir, e, err);
        if (!m) return -1;
        gw_module_free(m);
    }
    return 0;
}

/* Route r's route_conf: route_create's result, or for a table filter a merged copy (routes with settings)
 * or the pipeline's struct (the others). */
static int route_conf_make(const gw_config *cfg, gw_filter *f, const gw_yaml_node *rc, size_t r, char *ebuf,
                           char **err)
{
    if (f->d->route_create) {
        if (!rc) return 0;
        f->route_conf[r] = f->d->route_create(gw_host_api(), f->inst, gw_conf_of(rc), ebuf, ERRLEN);
    } else if (!f->settings) {
        return 0;
    } else if (!rc) {
        f->route_conf[r] = f->settings;
        return 0;
    } else {
        f->route_conf[r] =
            gw_settings_new(f->name, f->d->settings, f->d->settings_size, f->conf, rc, ebuf, ERRLEN);
    }
    if (!f->route_conf[r])
        return (*err = filter_error(cfg, rc, f->name, ebuf, "per-route settings refused by the filter")), -1;
    return 0;
}

static int create_filter(gw_gen *g, gw_filter *f, char **err)
{
    char ebuf[ERRLEN] = "";
    const gw_config *cfg = g->cfg;
    if (f->d->settings) {
        f->settings =
            gw_settings_new(f->name, f->d->settings, f->d->settings_size, f->conf, NULL, ebuf, ERRLEN);
        if (!f->settings) return (*err = gw_strdupf("%s", ebuf)), -1;
        if (!f->d->route_create) f->route_default = f->settings;
    }
    if (f->d->create) {
        f->inst = f->d->create(gw_host_api(), f, gw_conf_of(f->conf), ebuf, sizeof ebuf);
        if (!f->inst) {
            *err = filter_error(cfg, f->conf, f->name, ebuf, "create failed");
            return -1;
        }
    } else {
        f->inst = f->settings; /* a table-only filter: the struct is the instance */
    }
    f->created = true;
    f->route_conf = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(void *));
    if (!f->route_conf) return (*err = gw_strdupf("out of memory")), -1;
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const gw_yaml_node *rc = cfg->routes[r].filters ? gw_yaml_get(cfg->routes[r].filters, f->name) : NULL;
        if (route_conf_make(cfg, f, rc, r, ebuf, err) != 0) return -1;
    }
    return 0;
}

static int build_pipeline(gw_gen *g, char **err)
{
    gw_config *cfg = g->cfg;
    if (gw_gen_check(cfg, g->srv->exe_dir, err) != 0) return -1;
    g->filters = calloc(cfg->npipeline ? cfg->npipeline : 1, sizeof(gw_filter *));
    if (!g->filters) return (*err = gw_strdupf("out of memory")), -1;
    for (size_t i = 0; i < cfg->npipeline; i++) {
        const gw_pipeline_entry *e = &cfg->pipeline[i];
        if (!e->enabled) {
            /* Said loudly: a disabled policy (admin authentication, say) is a choice worth seeing. */
            const gw_yaml_node *at = gw_yaml_get(e->settings, "enabled");
            gw_warn("%s:%d:%d: filter '%s' is disabled (enabled: false)", cfg->file, at ? at->line : e->line,
                    at ? at->col : 1, e->name);
            continue;
        }
        gw_filter *f = calloc(1, sizeof *f);
        if (!f) return (*err = gw_strdupf("out of memory")), -1;
        g->filters[g->nfilters++] = f;
        f->gen = g;
        f->name = e->name;
        f->conf = e->settings;
        f->index = g->nfilters - 1;
        if (!(f->mod = load_entry(cfg, g->srv->exe_dir, e, err))) return -1;
        f->d = &f->mod->desc;
        f->state_off = (g->state_size + 15) & ~(size_t)15;
        g->state_size = f->state_off + f->d->req_state_size;
        gw_phase_fn fns[] = {f->d->on_request, f->d->on_upstream_request, f->d->on_upstream_response,
                             f->d->on_response, f->d->on_log};
        for (unsigned ph = 0; ph < sizeof fns / sizeof fns[0]; ph++)
            if (fns[ph]) g->phases |= 1u << ph; /* same order as GW_PH_* */
        if (f->d->on_request_body) g->phases |= 1u << GW_PH_REQUEST_BODY;
        if (f->d->on_response_body) g->phases |= 1u << GW_PH_RESPONSE_BODY;
        if (create_filter(g, f, err) != 0) return -1;
    }
    return 0;
}

gw_gen *gw_gen_build(gw_server *srv, gw_config *cfg, unsigned id, char **err)
{
    gw_gen *g = calloc(1, sizeof *g);
    if (!g) {
        gw_config_free(cfg);
        *err = gw_strdupf("out of memory");
        return NULL;
    }
    g->id = id;
    g->srv = srv;
    g->cfg = cfg;
    g->nworkers = srv->nworkers ? srv->nworkers : (cfg->workers ? cfg->workers : 1);
    g->pw = calloc(g->nworkers, sizeof *g->pw);
    atomic_init(&g->workers_left, g->nworkers);
    if (!g->pw || !(g->router = gw_router_new(cfg))) {
        *err = gw_strdupf("cannot build the route table");
        goto fail;
    }
    if (build_services(g, err) != 0 || build_pipeline(g, err) != 0) goto fail;
    return g;
fail:
    gw_gen_free(g);
    return NULL;
}

void gw_gen_free(gw_gen *g)
{
    if (!g) return;
    for (size_t i = g->nfilters; i-- > 0;) {
        gw_filter *f = g->filters[i];
        for (size_t r = 0; f->route_conf && r < g->cfg->nroutes; r++) {
            void *rc = f->route_conf[r];
            if (rc && f->d->route_create && f->d->route_destroy)
                f->d->route_destroy(f->inst, rc);
            else if (rc && !f->d->route_create && rc != f->settings)
                gw_settings_free(rc);
        }
        free(f->route_conf);
        if (f->created && f->d->destroy) f->d->destroy(f->inst);
        gw_settings_free(f->settings); /* after destroy: the instance may read it to the end */
        gw_module_free(f->mod);
        free(f);
    }
    free(g->filters);
    for (size_t i = 0; i < g->nendpoints; i++) free(g->endpoints[i].path);
    free(g->endpoints);
    for (size_t i = 0; i < g->nservices; i++) {
        for (size_t t = 0; t < g->services[i].ntargets; t++)
            if (g->services[i].targets[t].ssl_ctx) SSL_CTX_free(g->services[i].targets[t].ssl_ctx);
        free(g->services[i].targets);
    }
    free(g->services);
    for (unsigned w = 0; g->pw && w < g->nworkers; w++) free(g->pw[w].init_ok);
    free(g->pw);
    gw_router_free(g->router);
    gw_config_free(g->cfg);
    free(g);
}

static bool endpoint_matches(const gw_endpoint *e, const char *path, size_t len)
{
    if (!e->prefix) return len == e->path_len && memcmp(path, e->path, len) == 0;
    return len >= e->path_len && memcmp(path, e->path, e->path_len) == 0 &&
           (len == e->path_len || path[e->path_len] == '/' || e->path[e->path_len - 1] == '/');
}

const gw_endpoint *gw_gen_endpoint(const gw_gen *g, int method, const char *path, size_t len, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < g->nendpoints; i++) {
        const gw_endpoint *e = &g->endpoints[i];
        if (!endpoint_matches(e, path, len)) continue;
        *path_known = true;
        if (e->method == GW_METHOD_OTHER || e->method == method ||
            (e->method == GW_METHOD_GET && method == GW_METHOD_HEAD))
            return e;
    }
    return NULL;
}

unsigned gw_gen_endpoint_methods(const gw_gen *g, const char *path, size_t len)
{
    unsigned mask = 0;
    for (size_t i = 0; i < g->nendpoints; i++)
        if (endpoint_matches(&g->endpoints[i], path, len)) mask |= 1u << g->endpoints[i].method;
    if (mask & (1u << GW_METHOD_GET)) mask |= 1u << GW_METHOD_HEAD;
    return mask;
}
