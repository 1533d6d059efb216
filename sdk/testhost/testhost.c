/* testhost.c - the test host object: filters (load, ABI checks, configure), routes, endpoints, header
 * lists and small helpers. Requests are built in th_request.c, routed in th_route.c, run in th_engine.c and
 * served by th_host_req.c; the store and clock live in th_store.c, metrics and logs in th_metrics.c. */
#include "th_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_api.h"
#include "conf_settings.h"
#include "http.h"

#define ERRLEN 1024

static unsigned g_live; /* test hosts alive in this process (the clock is shared) */

/* ------------------------------------------------------------------------------------------------------
 * helpers */

void *th_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fputs("gwtesthost: out of memory\n", stderr);
        abort();
    }
    return p;
}

char *th_xmemdup(const char *p, size_t n)
{
    char *s = th_xcalloc(n + 1, 1);
    if (n) memcpy(s, p, n);
    return s;
}

char *th_xstrdup(const char *s)
{
    return s ? th_xmemdup(s, strlen(s)) : NULL;
}

void *th_grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 4;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * size);
    if (!q) {
        fputs("gwtesthost: out of memory\n", stderr);
        abort();
    }
    memset((char *)q + *cap * size, 0, (c - *cap) * size);
    *cap = c;
    return q;
}

int th_fail(gw_th *th, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(th->error, sizeof th->error, fmt, ap);
    va_end(ap);
    return -1;
}

const char *gw_th_error(const gw_th *th)
{
    return th->error;
}

/* ------------------------------------------------------------------------------------------------------
 * lifecycle */

static int register_endpoint(gw_filter *self, const char *method, const char *path, bool prefix,
                             gw_phase_fn handler);

gw_th *gw_th_new(void)
{
    gw_th *th = th_xcalloc(1, sizeof *th);
    gw_host *h = &th->host;
    h->struct_size = (uint32_t)sizeof *h;
    h->abi_major = GW_ABI_MAJOR;
    h->abi_minor = GW_ABI_MINOR;
    gw_conf_api_fill(h);
    th_metrics_fill(h);
    th_store_fill(h);
    th_request_fill(h);
    th_call_fill(h);
    th_settings_fill(h);
    th_body_fill(h);
    th_abi12_fill(h);
    h->register_endpoint = register_endpoint;
    th->store_auto = true;
    if (g_live++ == 0) th_clock_reset();
    return th;
}

const gw_host *gw_th_host(gw_th *th)
{
    return &th->host;
}

static void endpoints_drop(gw_th *th, const gw_filter *f)
{
    for (size_t i = 0; i < th->neps;) {
        if (th->eps[i].f == f) {
            free(th->eps[i].method);
            free(th->eps[i].path);
            memmove(&th->eps[i], &th->eps[i + 1], (th->neps - i - 1) * sizeof *th->eps);
            th->neps--;
        } else {
            i++;
        }
    }
}

/* Under AddressSanitizer a module is kept mapped, so that leak reports can still name its functions. */
static void unload(void *dl)
{
    if (dl && !dlsym(RTLD_DEFAULT, "__asan_init")) dlclose(dl);
}

static void filter_free(gw_filter *f)
{
    if (!f) return;
    gw_settings_free(f->settings);
    gw_yaml_free(f->doc);
    unload(f->dl);
    free(f->source);
    free(f);
}

void gw_th_free(gw_th *th)
{
    if (!th) return;
    for (gw_req *r = th->reqs; r; r = r->next)
        gw_th_abort(r);
    gw_th_run_pending(th); /* the filters' callback arguments are usually freed by the callbacks */
    while (th->reqs) {
        gw_req *r = th->reqs;
        th->reqs = r->next;
        th_request_free(r);
    }
    for (size_t i = th->nfilters; i-- > 0;) {
        gw_filter *f = th->filters[i];
        if (f->worker_ok && f->d.worker_fini) f->d.worker_fini(f->inst, 0);
    }
    for (size_t i = th->nfilters; i-- > 0;) {
        gw_filter *f = th->filters[i];
        for (size_t k = 0; k < th->nroutes; k++) {
            th_route *rt = &th->routes[k];
            if (i < rt->nconf) th_route_conf_free(f, rt->conf[i]);
        }
        if (f->created && f->d.destroy) f->d.destroy(f->inst);
        filter_free(f);
    }
    free(th->filters);
    for (size_t k = 0; k < th->nroutes; k++) {
        free(th->routes[k].name);
        free(th->routes[k].prefix);
        free(th->routes[k].conf);
        gw_yaml_free(th->routes[k].doc);
    }
    free(th->routes);
    for (size_t i = 0; i < th->neps; i++) {
        free(th->eps[i].method);
        free(th->eps[i].path);
    }
    free(th->eps);
    th_store_free(th);
    th_call_free(th);
    th_metrics_free(th);
    th_logs_free(th);
    free(th);
    if (--g_live == 0) th_shared_free_all();
}

/* ------------------------------------------------------------------------------------------------------
 * filters */

static bool valid_filter_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-')) return false;
    return true;
}

/* The gateway's descriptor checks. Only abi_major, abi_minor and struct_size may be read before the
 * version check passed. */
static int check_desc(gw_th *th, const char *src, const gw_filter_desc *d)
{
    if (d->abi_major != GW_ABI_MAJOR)
        return th_fail(th, "%s: built for filter ABI %u.%u, this host implements %u.%u (major versions differ)",
                       src, d->abi_major, d->abi_minor, GW_ABI_MAJOR, GW_ABI_MINOR);
    if (d->abi_minor > GW_ABI_MINOR)
        return th_fail(th, "%s: built for filter ABI %u.%u, this host implements %u.%u (the filter is newer)",
                       src, d->abi_major, d->abi_minor, GW_ABI_MAJOR, GW_ABI_MINOR);
    if (d->struct_size < offsetof(gw_filter_desc, reserved) || d->struct_size > 65536)
        return th_fail(th, "%s: descriptor size %u is not valid for filter ABI %u.%u", src, d->struct_size,
                       d->abi_major, d->abi_minor);
    if (!valid_filter_name(d->name))
        return th_fail(th, "%s: the descriptor's name is missing or not [a-z0-9_-]+", src);
    if (!d->version) return th_fail(th, "%s: the descriptor has no version", src);
    size_t nres = d->struct_size >= sizeof *d ? sizeof d->reserved / sizeof d->reserved[0]
                  : d->struct_size > offsetof(gw_filter_desc, reserved)
                      ? (d->struct_size - offsetof(gw_filter_desc, reserved)) / sizeof(void *)
                      : 0;
    for (size_t i = 0; i < nres; i++)
        if (d->reserved[i]) return th_fail(th, "%s: descriptor member reserved[%zu] must be NULL", src, i);
    if (d->req_state_size > (16u << 20))
        return th_fail(th, "%s: req_state_size %zu is not sane", src, d->req_state_size);
    return 0;
}

static gw_filter *find_filter(const gw_th *th, const char *name)
{
    for (size_t i = 0; name && i < th->nfilters; i++)
        if (strcmp(th->filters[i]->d.name, name) == 0) return th->filters[i];
    return NULL;
}

void *gw_th_instance(const gw_th *th, const char *name)
{
    gw_filter *f = find_filter(th, name);
    return f ? f->inst : NULL;
}

static int conf_fail(gw_th *th, const gw_yaml_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int conf_fail(gw_th *th, const gw_yaml_node *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return th_fail(th, "%s:%d:%d: %s", n && n->file ? n->file : "?", n ? n->line : 0, n ? n->col : 0, msg);
}

/* Parses and checks the pipeline entry. 1 = disabled (nothing to do), 0 = ok, -1 = error. */
static int parse_entry(gw_th *th, const gw_filter_desc *d, const char *yaml, gw_yaml_doc **out)
{
    char synth[128];
    if (!yaml || !*yaml) {
        snprintf(synth, sizeof synth, "name: %s\n", d->name);
        yaml = synth;
    }
    char *err = NULL;
    gw_yaml_doc *doc = gw_yaml_load_string(GW_TH_PIPELINE_FILE, yaml, &err);
    if (!doc) {
        th_fail(th, "%s", err ? err : GW_TH_PIPELINE_FILE ": cannot parse");
        free(err);
        return -1;
    }
    const gw_yaml_node *root = doc->root;
    int rc = 0;
    if (!root || root->kind != GW_YAML_MAP) {
        if (root) rc = conf_fail(th, root, "a pipeline entry must be a mapping");
        else rc = th_fail(th, "%s:1:1: a pipeline entry must be a mapping", GW_TH_PIPELINE_FILE);
    } else {
        const gw_yaml_node *name = gw_yaml_get(root, "name");
        const gw_yaml_node *en = gw_yaml_get(root, "enabled");
        if (name && (name->kind != GW_YAML_SCALAR || strcmp(name->scalar, d->name) != 0)) {
            rc = conf_fail(th, name, "name: the entry names '%s' but the filter is '%s'",
                           name->kind == GW_YAML_SCALAR ? name->scalar : "(not a string)", d->name);
        } else if (en) {
            bool on = true;
            char ebuf[ERRLEN];
            if (th->host.conf_bool(gw_conf_of(en), &on, ebuf, sizeof ebuf) != 0) rc = th_fail(th, "%s", ebuf);
            else if (!on) rc = 1;
        }
    }
    if (rc != 0) {
        gw_yaml_free(doc);
        return rc;
    }
    *out = doc;
    return 0;
}

static int add_filter(gw_th *th, const gw_filter_desc *src, const char *source, void *dl, const char *yaml)
{
    th->error[0] = '\0';
    gw_filter *f = th_xcalloc(1, sizeof *f);
    f->th = th;
    f->dl = dl;
    f->source = th_xstrdup(source);
    if (check_desc(th, source, src) != 0) {
        filter_free(f);
        return -1;
    }
    memcpy(&f->d, src, src->struct_size < sizeof f->d ? src->struct_size : sizeof f->d);
    f->d.struct_size = (uint32_t)sizeof f->d;
    f->built_major = src->abi_major;
    f->built_minor = src->abi_minor;
    int rc = parse_entry(th, &f->d, yaml, &f->doc);
    if (rc != 0) {
        filter_free(f);
        return rc < 0 ? -1 : 0;
    }
    const gw_conf *conf = gw_conf_of(f->doc->root);
    char ebuf[ERRLEN] = "";
    if (th_settings_entry(th, f) != 0) { /* the table's checks come before config_check, as in the gateway */
        filter_free(f);
        return -1;
    }
    if (f->d.config_check && f->d.config_check(&th->host, conf, ebuf, sizeof ebuf) != 0) {
        th_fail(th, "%s", ebuf[0] ? ebuf : "configuration refused by the filter");
        filter_free(f);
        return -1;
    }
    f->index = th->nfilters;
    if (f->d.create) {
        th->creating = f;
        f->inst = f->d.create(&th->host, f, conf, ebuf, sizeof ebuf);
        th->creating = NULL;
        if (!f->inst) {
            th_fail(th, "filter '%s': %s", f->d.name, ebuf[0] ? ebuf : "create failed");
            endpoints_drop(th, f);
            filter_free(f);
            return -1;
        }
    } else {
        f->inst = f->settings; /* a table-only filter: the struct is the instance */
    }
    f->created = true;
    if (f->d.worker_init && f->d.worker_init(f->inst, 0, 1) != 0) {
        th_fail(th, "filter '%s': worker_init failed on worker 0 of 1", f->d.name);
        endpoints_drop(th, f);
        if (f->d.destroy) f->d.destroy(f->inst);
        filter_free(f);
        return -1;
    }
    f->worker_ok = true;
    size_t cap = th->nfilters;
    th->filters = th_grow(th->filters, &cap, th->nfilters + 1, sizeof *th->filters);
    th->filters[th->nfilters++] = f;
    return 0;
}

int gw_th_add(gw_th *th, const gw_filter_desc *desc, const char *entry_yaml)
{
    if (!desc) return th_fail(th, "gw_th_add: no descriptor");
    char source[96];
    snprintf(source, sizeof source, "linked descriptor");
    return add_filter(th, desc, source, NULL, entry_yaml);
}

int gw_th_load(gw_th *th, const char *so_path, const char *entry_yaml)
{
    if (!so_path) return th_fail(th, "gw_th_load: no file");
    void *dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) return th_fail(th, "%s: cannot load: %s", so_path, dlerror());
    const gw_filter_desc *d = dlsym(dl, GW_FILTER_SYMBOL);
    if (!d) {
        unload(dl);
        return th_fail(th, "%s: not a gateway filter: no exported symbol '%s'", so_path, GW_FILTER_SYMBOL);
    }
    return add_filter(th, d, so_path, dl, entry_yaml); /* add_filter owns dl from here */
}

/* ------------------------------------------------------------------------------------------------------
 * routes */

static void route_release(gw_th *th, th_route *rt)
{
    for (size_t i = 0; i < rt->nconf; i++) {
        gw_filter *f = i < th->nfilters ? th->filters[i] : NULL;
        if (f) th_route_conf_free(f, rt->conf[i]);
    }
    free(rt->conf);
    free(rt->name);
    free(rt->prefix);
    gw_yaml_free(rt->doc);
}

/* One entry of a route's filters mapping: checked, then the route's settings for every instance of that
 * filter in the pipeline (rt->conf by filter index). -1 with th->error on refusal. */
static int route_filter_conf(gw_th *th, th_route *rt, const gw_yaml_node *key, const gw_yaml_node *val)
{
    const gw_conf *conf = gw_conf_of(val);
    gw_filter *f = find_filter(th, key->scalar);
    char ebuf[ERRLEN] = "";
    int rc = 0;
    if (!f) {
        rc = conf_fail(th, key, "filters: '%s' is not in the pipeline", key->scalar);
    } else if (!f->d.route_create && !th_settings_per_route(f)) {
        rc = conf_fail(th, key, "filters.%s: filter '%s' has no per-route settings", key->scalar, key->scalar);
    } else if (th_settings_route_check(th, f, val) != 0) {
        rc = -1;
    } else if (f->d.route_check && f->d.route_check(&th->host, NULL, conf, ebuf, sizeof ebuf) != 0) {
        rc = th_fail(th, "%s", ebuf[0] ? ebuf : "route settings refused by the filter");
    }
    /* Every instance of that filter in the pipeline gets the route's settings. */
    for (size_t i = 0; rc == 0 && i < rt->nconf; i++) {
        gw_filter *g = th->filters[i];
        if (strcmp(g->d.name, key->scalar) != 0) continue;
        rt->conf[i] = g->d.route_create ? g->d.route_create(&th->host, g->inst, conf, ebuf, sizeof ebuf)
                                        : th_settings_route_conf(th, g, val);
        if (!rt->conf[i])
            rc = g->d.route_create
                     ? th_fail(th, "%s", ebuf[0] ? ebuf : "per-route settings refused by the filter")
                     : -1; /* th->error says why */
    }
    return rc;
}

int gw_th_route(gw_th *th, const char *name, const char *prefix, const char *filters_yaml)
{
    th->error[0] = '\0';
    if (!name || !*name) return th_fail(th, "gw_th_route: a route needs a name");
    if (!prefix) return th_fail(th, "route '%s': no prefix", name);
    size_t len = strlen(prefix), cap = len + 16, out_len, path_len;
    char *norm = th_xcalloc(cap, 1);
    if (gw_path_normalize(prefix, len, norm, cap, &out_len, &path_len) != 0 || out_len != path_len) {
        free(norm);
        return th_fail(th, "route '%s': invalid prefix '%s'", name, prefix);
    }
    while (path_len > 1 && norm[path_len - 1] == '/')
        norm[--path_len] = '\0';
    for (size_t k = 0; k < th->nroutes; k++)
        if (strcmp(th->routes[k].prefix, norm) == 0 || strcmp(th->routes[k].name, name) == 0) {
            free(norm);
            return th_fail(th, "route '%s': prefix or name already used by route '%s'", name, th->routes[k].name);
        }
    th_route rt = {.name = th_xstrdup(name), .prefix = norm, .plen = path_len};
    rt.nconf = th->nfilters;
    rt.conf = th_xcalloc(rt.nconf, sizeof *rt.conf);
    if (filters_yaml && *filters_yaml) {
        char *err = NULL;
        rt.doc = gw_yaml_load_string(GW_TH_ROUTES_FILE, filters_yaml, &err);
        if (!rt.doc) {
            th_fail(th, "%s", err ? err : GW_TH_ROUTES_FILE ": cannot parse");
            free(err);
            route_release(th, &rt);
            return -1;
        }
    }
    const gw_yaml_node *m = rt.doc ? rt.doc->root : NULL;
    if (m && m->kind != GW_YAML_MAP) {
        conf_fail(th, m, "filters: expected a mapping of filter names to settings");
        route_release(th, &rt);
        return -1;
    }
    for (size_t k = 0; m && k < m->n; k++)
        if (route_filter_conf(th, &rt, m->keys[k], m->items[k]) != 0) {
            route_release(th, &rt);
            return -1;
        }
    size_t rcap = th->nroutes;
    th->routes = th_grow(th->routes, &rcap, th->nroutes + 1, sizeof *th->routes);
    th->routes[th->nroutes++] = rt;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------
 * endpoints (create() only) */

static int register_endpoint(gw_filter *self, const char *method, const char *path, bool prefix,
                             gw_phase_fn handler)
{
    if (!self) return -1;
    gw_th *th = self->th;
    if (th->creating != self) {
        th_violation(th, NULL, "filter '%s': register_endpoint outside create()", self->d.name);
        return -1;
    }
    if (!path || path[0] != '/' || !handler || (method && !th_hdr_name_ok(method))) {
        th_note(th, NULL, GW_LOG_ERROR, "filter '%s': register_endpoint: invalid method, path or handler",
                self->d.name);
        return -1;
    }
    if (method && strcmp(method, "*") == 0) method = NULL;
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    for (size_t i = 0; i < th->neps; i++) {
        th_endpoint *e = &th->eps[i];
        bool same_method = (!e->method && !method) || (e->method && method && strcmp(e->method, method) == 0);
        if (same_method && e->plen == plen && memcmp(e->path, path, plen) == 0 && e->prefix == prefix) {
            th_note(th, NULL, GW_LOG_ERROR, "filter '%s': register_endpoint: %s %.*s is already registered",
                    self->d.name, method ? method : "*", (int)plen, path);
            return -1;
        }
    }
    size_t cap = th->neps;
    th->eps = th_grow(th->eps, &cap, th->neps + 1, sizeof *th->eps);
    th->eps[th->neps++] = (th_endpoint){.f = self,
                                        .method = th_xstrdup(method),
                                        .path = th_xmemdup(path, plen),
                                        .plen = plen,
                                        .prefix = prefix,
                                        .handler = handler};
    return 0;
}
