/* admin.c - the core's own admin endpoints: POST /admin/reload (what SIGHUP does, answered with the
 * outcome) and GET /admin/config (the effective configuration as JSON, secrets redacted).
 *
 * Both are endpoints of the generation like a filter's (no owning filter: gw_endpoint.f is NULL), so they
 * go through the request phase: adminauth guards them as every path under /admin. They answer only a
 * request an authentication filter vouched for (adminauth sets the request value "admin.user"): with
 * adminauth disabled or its `path` moved elsewhere they refuse with 403 instead of being open, since a
 * reload or a configuration dump is not something to serve to anyone.
 *
 * Reload runs on the main thread, where SIGHUP runs it: the worker queues a ticket (a mutex taken only by
 * this endpoint and the main thread), writes the main loop's eventfd and waits on a request timer that
 * looks at the ticket every few milliseconds; the main thread runs one reload for every ticket queued
 * meanwhile and marks them done. The ticket has two references (the worker's, dropped by the request's
 * cleanup, so a client gone mid-reload leaks nothing, and the main thread's). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "admin.h"
#include "generation.h"
#include "log.h"
#include "server.h"

#define POLL_MS 5
#define GIVE_UP_MS 120000 /* the main thread answers long before; a bound all the same */

struct gw_reload_ticket {
    gw_reload_ticket *next;
    _Atomic int refs;
    _Atomic int done;
    bool ok;
    unsigned generation; /* the new one, or the one kept */
    char msg[1024];
    uint64_t waited_ms;
};

static void ticket_unref(void *arg)
{
    gw_reload_ticket *t = arg;
    if (atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

static bool vouched(const gw_host *h, gw_req *req)
{
    gw_strv v;
    if (h->req_get(req, "admin.user", &v) && v.n) return true;
    h->respond_error(req, 403,
                     "This endpoint answers only requests an admin authentication filter (adminauth) let in");
    return false;
}

static void send_doc(const gw_host *h, gw_req *req, int status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        h->respond_error(req, 500, "Out of memory");
        return;
    }
    h->respond(req, status, "application/json", s, strlen(s));
    cJSON_free(s);
}

/* --- POST /admin/reload ------------------------------------------------------------------------------ */

static void reload_answer(const gw_host *h, gw_req *req, const gw_reload_ticket *t)
{
    cJSON *o = cJSON_CreateObject();
    if (t->ok) {
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "message", "Configuration reloaded");
        cJSON *d = cJSON_AddObjectToObject(o, "data");
        cJSON_AddNumberToObject(d, "generation", t->generation);
        send_doc(h, req, 200, o);
        return;
    }
    cJSON_Delete(o);
    char m[1200];
    snprintf(m, sizeof m, "%s (generation %u kept)", t->msg, t->generation);
    h->respond_error(req, 422, m);
}

static void reload_poll(gw_req *req, void *arg)
{
    gw_reload_ticket *t = arg;
    const gw_host *h = gw_host_api();
    if (!atomic_load_explicit(&t->done, memory_order_acquire)) {
        t->waited_ms += POLL_MS;
        if (t->waited_ms < GIVE_UP_MS && h->timer_start(req, POLL_MS, reload_poll, t)) return;
        h->respond_error(req, 503, "The reload did not finish in time");
        h->resume(req, GW_RESPOND);
        return;
    }
    reload_answer(h, req, t);
    h->resume(req, GW_RESPOND);
}

static gw_result reload_endpoint(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf, (void)state;
    gw_server *srv = inst;
    const gw_host *h = gw_host_api();
    if (!vouched(h, req)) return GW_RESPOND;
    if (atomic_load(&srv->draining)) {
        h->respond_error(req, 503, "The gateway is shutting down");
        return GW_RESPOND;
    }
    gw_reload_ticket *t = calloc(1, sizeof *t);
    if (!t) {
        h->respond_error(req, 500, "Out of memory");
        return GW_RESPOND;
    }
    atomic_init(&t->refs, 2);
    atomic_init(&t->done, 0);
    if (h->on_cleanup(req, ticket_unref, t) != 0 || !h->timer_start(req, POLL_MS, reload_poll, t)) {
        free(t);
        h->respond_error(req, 500, "Out of memory");
        return GW_RESPOND;
    }
    pthread_mutex_lock(&srv->reload_mu);
    t->next = srv->reload_q;
    srv->reload_q = t;
    pthread_mutex_unlock(&srv->reload_mu);
    uint64_t one = 1;
    ssize_t k = write(srv->reload_fd, &one, sizeof one);
    (void)k; /* EAGAIN: the counter is already set, the main thread wakes all the same */
    return GW_WAIT;
}

gw_reload_ticket *gw_admin_reload_take(gw_server *srv)
{
    pthread_mutex_lock(&srv->reload_mu);
    gw_reload_ticket *q = srv->reload_q;
    srv->reload_q = NULL;
    pthread_mutex_unlock(&srv->reload_mu);
    return q;
}

void gw_admin_reload_done(gw_reload_ticket *q, bool ok, unsigned generation, const char *msg)
{
    while (q) {
        gw_reload_ticket *next = q->next;
        q->ok = ok;
        q->generation = generation;
        snprintf(q->msg, sizeof q->msg, "%s", msg ? msg : "");
        atomic_store_explicit(&q->done, 1, memory_order_release);
        ticket_unref(q);
        q = next;
    }
}

/* --- GET /admin/config ------------------------------------------------------------------------------- */

#define REDACTED "[redacted]"

/* Keys whose values are secrets wherever they appear (the store's password, and anything so named). */
static bool secret_name(const char *k)
{
    static const char *const words[] = {"password", "secret", "token", "passphrase", NULL};
    for (int i = 0; words[i]; i++)
        if (strcasestr(k, words[i])) return true;
    return false;
}

static const gw_setting *setting_of(const gw_filter_desc *d, const char *key)
{
    for (const gw_setting *s = d && d->settings_size ? d->settings : NULL; s && s->name; s++)
        if (strcmp(s->name, key) == 0) return s;
    return NULL;
}

/* A scalar as the gateway read it: unquoted true/false and numbers as JSON ones, the rest as strings. */
static cJSON *scalar_json(const gw_yaml_node *n)
{
    const char *v = n->scalar ? n->scalar : "";
    if (!n->quoted) {
        if (strcmp(v, "true") == 0) return cJSON_CreateTrue();
        if (strcmp(v, "false") == 0) return cJSON_CreateFalse();
        if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0) return cJSON_CreateNull();
        char *end;
        double d = strtod(v, &end);
        if (*v && *end == '\0' && v[strspn(v, "+-0123456789.eE")] == '\0') return cJSON_CreateNumber(d);
    }
    return cJSON_CreateString(v);
}

/* `filter`: the descriptor whose settings table says which keys of this mapping are secret (a pipeline
 * entry, or a route's settings for that filter); NULL elsewhere. */
static cJSON *node_json(const gw_yaml_node *n, const gw_filter_desc *filter);

static cJSON *map_json(const gw_yaml_node *n, const gw_filter_desc *filter, const gw_gen *g, bool in_filters)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i]->scalar ? n->keys[i]->scalar : "";
        const gw_yaml_node *v = n->items[i];
        const gw_setting *s = filter ? setting_of(filter, k) : NULL;
        if (v->kind == GW_YAML_SCALAR && ((s && (s->flags & GW_SET_SECRET)) || secret_name(k))) {
            cJSON_AddItemToObject(
                o, k, v->scalar && *v->scalar ? cJSON_CreateString(REDACTED) : cJSON_CreateString(""));
            continue;
        }
        const gw_filter_desc *sub = NULL;
        if (in_filters && g) /* routes[].filters.<name>: that filter's table */
            for (size_t f = 0; f < g->nfilters; f++)
                if (strcmp(g->filters[f]->name, k) == 0) sub = g->filters[f]->d;
        cJSON_AddItemToObject(o, k, sub ? node_json(v, sub) : node_json(v, filter));
    }
    return o;
}

static cJSON *node_json(const gw_yaml_node *n, const gw_filter_desc *filter)
{
    if (!n) return cJSON_CreateNull();
    if (n->kind == GW_YAML_SCALAR) return scalar_json(n);
    if (n->kind == GW_YAML_MAP) return map_json(n, filter, NULL, false);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n->n; i++)
        cJSON_AddItemToArray(a, node_json(n->items[i], filter));
    return a;
}

/* The module a pipeline entry loaded (by position among the entries; disabled ones loaded nothing). */
static const gw_filter_desc *entry_desc(const gw_gen *g, const gw_config *cfg, size_t entry)
{
    size_t k = 0;
    for (size_t i = 0; i < entry && i < cfg->npipeline; i++)
        k += cfg->pipeline[i].enabled;
    return cfg->pipeline[entry].enabled && k < g->nfilters ? g->filters[k]->d : NULL;
}

static cJSON *config_json(const gw_gen *g)
{
    const gw_config *cfg = g->cfg;
    const gw_yaml_node *root = cfg->doc ? cfg->doc->root : NULL;
    if (!root || root->kind != GW_YAML_MAP) return node_json(root, NULL);
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < root->n; i++) {
        const char *k = root->keys[i]->scalar ? root->keys[i]->scalar : "";
        const gw_yaml_node *v = root->items[i];
        cJSON *j;
        if (strcmp(k, "pipeline") == 0 && v->kind == GW_YAML_SEQ) {
            j = cJSON_CreateArray();
            for (size_t e = 0; e < v->n; e++) {
                const gw_filter_desc *d = e < cfg->npipeline ? entry_desc(g, cfg, e) : NULL;
                cJSON_AddItemToArray(j, node_json(v->items[e], d));
            }
        } else if (strcmp(k, "routes") == 0 && v->kind == GW_YAML_SEQ) {
            j = cJSON_CreateArray();
            for (size_t r = 0; r < v->n; r++) {
                const gw_yaml_node *route = v->items[r];
                if (route->kind != GW_YAML_MAP) {
                    cJSON_AddItemToArray(j, node_json(route, NULL));
                    continue;
                }
                cJSON *ro = cJSON_CreateObject();
                for (size_t f = 0; f < route->n; f++) {
                    const char *rk = route->keys[f]->scalar ? route->keys[f]->scalar : "";
                    const gw_yaml_node *rv = route->items[f];
                    bool filters = strcmp(rk, "filters") == 0 && rv->kind == GW_YAML_MAP;
                    cJSON_AddItemToObject(ro, rk,
                                          filters ? map_json(rv, NULL, g, true) : node_json(rv, NULL));
                }
                cJSON_AddItemToArray(j, ro);
            }
        } else {
            j = node_json(v, NULL);
        }
        cJSON_AddItemToObject(o, k, j);
    }
    return o;
}

static gw_result config_endpoint(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)inst, (void)route_conf, (void)state;
    const gw_host *h = gw_host_api();
    if (!vouched(h, req)) return GW_RESPOND;
    const gw_gen *g = req->c->gen;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    cJSON *d = cJSON_AddObjectToObject(o, "data");
    cJSON_AddNumberToObject(d, "generation", g->id);
    cJSON_AddStringToObject(d, "file", g->cfg->file ? g->cfg->file : "");
    cJSON_AddNumberToObject(d, "reloads", atomic_load(&g->srv->reloads_ok));
    cJSON_AddNumberToObject(d, "reloads_failed", atomic_load(&g->srv->reloads_failed));
    cJSON_AddItemToObject(d, "config", config_json(g));
    send_doc(h, req, 200, o);
    return GW_RESPOND;
}

/* --- registration ------------------------------------------------------------------------------------ */

static int add(gw_gen *g, int method, const char *path, gw_phase_fn fn)
{
    bool known = false;
    size_t len = strlen(path);
    const gw_endpoint *have = gw_gen_endpoint(g, method, path, len, &known);
    if (have && have->method == method) return 0; /* a filter serves it: the filter wins */
    gw_endpoint *e = realloc(g->endpoints, (g->nendpoints + 1) * sizeof *e);
    if (!e) return -1;
    g->endpoints = e;
    e = &g->endpoints[g->nendpoints];
    *e = (gw_endpoint){.f = NULL, .method = method, .path = strdup(path), .path_len = len, .handler = fn};
    if (!e->path) return -1;
    g->nendpoints++;
    return 0;
}

int gw_admin_register(gw_gen *g)
{
    if (add(g, GW_METHOD_POST, GW_ADMIN_RELOAD_PATH, reload_endpoint) != 0 ||
        add(g, GW_METHOD_GET, GW_ADMIN_CONFIG_PATH, config_endpoint) != 0)
        return -1;
    return 0;
}
