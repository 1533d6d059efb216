/* builtin.c - the gateway's own endpoints: /health, /info, /services/health. Exact paths, matched before
 * the route table; GET and HEAD only (405 with Allow otherwise). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "conn.h"
#include "log.h"
#include "proxy.h"
#include "server.h"
#include "store.h"

static const char *health_name(int h)
{
    return h == GW_HEALTH_HEALTHY ? "healthy" : h == GW_HEALTH_UNHEALTHY ? "unhealthy" : "unknown";
}

/* A service is healthy when any target is, unhealthy when all are, unknown before the first checks. */
static int service_health(const gw_service *s)
{
    int healthy = 0, unhealthy = 0;
    for (size_t t = 0; t < s->ntargets; t++) {
        int h = atomic_load(&s->targets[t].health);
        healthy += h == GW_HEALTH_HEALTHY;
        unhealthy += h == GW_HEALTH_UNHEALTHY;
    }
    if (healthy) return GW_HEALTH_HEALTHY;
    if (s->ntargets && unhealthy == (int)s->ntargets) return GW_HEALTH_UNHEALTHY;
    return GW_HEALTH_UNKNOWN;
}

static double rtt_ms(const gw_target *t)
{
    return (double)atomic_load(&t->last_rtt_us) / 1000.0;
}

static const char *service_prefix(const gw_config *cfg, size_t s)
{
    for (size_t r = 0; r < cfg->nroutes; r++)
        if (cfg->routes[r].service == s) return cfg->routes[r].prefix;
    return "";
}

static void iso_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void send_json(gw_conn *c, int status, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        gw_respond_error(c, 500, "Out of memory");
        return;
    }
    gw_respond_json(c, status, s, strlen(s), NULL);
    cJSON_free(s);
}

static void add_filters(cJSON *o, const gw_gen *g)
{
    cJSON *arr = cJSON_AddArrayToObject(o, "filters");
    for (size_t i = 0; i < g->nfilters; i++) {
        const gw_filter *f = g->filters[i];
        char abi[24];
        snprintf(abi, sizeof abi, "%u.%u", f->mod->built_major, f->mod->built_minor);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", f->name);
        cJSON_AddStringToObject(e, "version", f->d->version);
        cJSON_AddStringToObject(e, "abi", abi);
        cJSON_AddItemToArray(arr, e);
    }
}

static void info(gw_conn *c)
{
    const gw_gen *srv = c->gen;
    const gw_server *server = c->w->srv;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", GW_VERSION);
    cJSON *arr = cJSON_AddArrayToObject(o, "services");
    for (size_t i = 0; i < srv->nservices; i++) {
        const gw_service *s = &srv->services[i];
        const gw_target *best = s->ntargets ? &s->targets[0] : NULL;
        for (size_t t = 0; t < s->ntargets; t++)
            if (atomic_load(&s->targets[t].health) == GW_HEALTH_HEALTHY) {
                best = &s->targets[t];
                break;
            }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", s->conf->name);
        cJSON_AddStringToObject(e, "path_prefix", service_prefix(srv->cfg, i));
        cJSON_AddStringToObject(e, "target_url", best ? best->conf->url : "");
        cJSON_AddStringToObject(e, "status", health_name(service_health(s)));
        cJSON_AddNumberToObject(e, "response_time_ms", best ? rtt_ms(best) : 0);
        cJSON_AddItemToArray(arr, e);
    }
    add_filters(o, srv);
    if (server->store) {
        cJSON *st = cJSON_AddObjectToObject(o, "store");
        cJSON_AddStringToObject(st, "type", gw_store_kind(server->store));
        cJSON_AddStringToObject(st, "state", gw_store_available(server->store) ? "ok" : "unavailable");
        if (!strcmp(gw_store_kind(server->store), "embedded"))
            cJSON_AddNumberToObject(st, "records", (double)gw_store_count(server->store));
    }
    cJSON_AddNumberToObject(o, "generation", srv->id);
    cJSON *rl = cJSON_AddObjectToObject(o, "reloads");
    cJSON_AddNumberToObject(rl, "success", atomic_load(&server->reloads_ok));
    cJSON_AddNumberToObject(rl, "failure", atomic_load(&server->reloads_failed));
    send_json(c, 200, o);
}

/* Why an instance is out ("reason", null when it is not) and since when its status holds ("since", null
 * before any change). */
static void add_reason(cJSON *ie, const gw_target *t)
{
    char why[160] = "", when[32];
    if (atomic_load(&t->health) == GW_HEALTH_UNHEALTHY) gw_target_reason(t, why, sizeof why);
    if (why[0])
        cJSON_AddStringToObject(ie, "reason", why);
    else
        cJSON_AddNullToObject(ie, "reason");
    int64_t since = atomic_load(&t->down_since);
    if (since) {
        iso_time(since, when);
        cJSON_AddStringToObject(ie, "since", when);
    } else {
        cJSON_AddNullToObject(ie, "since");
    }
}

static void services_health(gw_conn *c)
{
    const gw_gen *srv = c->gen;
    bool all_ok = true;
    cJSON *o = cJSON_CreateObject();
    cJSON *st = cJSON_AddStringToObject(o, "status", "healthy");
    cJSON *arr = cJSON_AddArrayToObject(o, "services");
    for (size_t i = 0; i < srv->nservices; i++) {
        const gw_service *s = &srv->services[i];
        int h = service_health(s);
        if (h == GW_HEALTH_UNHEALTHY) all_ok = false;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", s->conf->name);
        cJSON_AddStringToObject(e, "url", s->ntargets ? s->targets[0].conf->url : "");
        cJSON_AddStringToObject(e, "status", health_name(h));
        int64_t last = 0;
        double rt = 0;
        cJSON *inst = cJSON_CreateArray();
        for (size_t t = 0; t < s->ntargets; t++) {
            const gw_target *tg = &s->targets[t];
            int64_t lc = atomic_load(&tg->last_check);
            char when[32] = "";
            if (lc) iso_time(lc, when);
            if (lc > last) last = lc, rt = rtt_ms(tg);
            cJSON *ie = cJSON_CreateObject();
            cJSON_AddStringToObject(ie, "url", tg->conf->url);
            cJSON_AddStringToObject(ie, "status", health_name(atomic_load(&tg->health)));
            if (lc)
                cJSON_AddStringToObject(ie, "last_check", when);
            else
                cJSON_AddNullToObject(ie, "last_check");
            cJSON_AddNumberToObject(ie, "response_time_ms", rtt_ms(tg));
            add_reason(ie, tg);
            cJSON_AddItemToArray(inst, ie);
        }
        char when[32];
        if (last) {
            iso_time(last, when);
            cJSON_AddStringToObject(e, "last_check", when);
        } else {
            cJSON_AddNullToObject(e, "last_check");
        }
        cJSON_AddNumberToObject(e, "response_time_ms", rt);
        cJSON_AddItemToObject(e, "instances", inst);
        cJSON_AddItemToArray(arr, e);
    }
    if (!all_ok) cJSON_SetValuestring(st, "unhealthy");
    send_json(c, all_ok ? 200 : 503, o);
}

/* /health: the gateway answers, so 200; the store's state is a detail (a Redis store that is down makes
 * the admin API and key checks fail, not the proxy). Both bodies are made once. */
static char *health_json(const char *store_type, bool store_ok)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "message", "API Gateway is running");
    cJSON *st = cJSON_AddObjectToObject(o, "store");
    cJSON_AddStringToObject(st, "type", store_type);
    cJSON_AddStringToObject(st, "status", store_ok ? "ok" : "unavailable");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int gw_builtin_prepare(gw_server *srv)
{
    const char *type = srv->cfg->store.type == GW_STORE_REDIS ? "redis" : "embedded";
    srv->health_body = health_json(type, true);
    srv->health_body_down = health_json(type, false);
    if (!srv->health_body || !srv->health_body_down) return -1;
    srv->health_len = strlen(srv->health_body);
    srv->health_len_down = strlen(srv->health_body_down);
    return 0;
}

bool gw_builtin_handle(gw_conn *c)
{
    int which = c->builtin;
    if (!which) return false;
    int m = c->req->method_id;
    if (m != GW_METHOD_GET && m != GW_METHOD_HEAD) {
        gw_respond_error_hdr(c, 405, "Only GET and HEAD are allowed here", "Allow: GET, HEAD\r\n");
        return true;
    }
    const gw_server *srv = c->w->srv;
    if (which == 1 && (!srv->store || gw_store_available(srv->store)))
        gw_respond_json(c, 200, srv->health_body, srv->health_len, NULL);
    else if (which == 1)
        gw_respond_json(c, 200, srv->health_body_down, srv->health_len_down, NULL);
    else if (which == 2)
        info(c);
    else
        services_health(c);
    return true;
}
