/* generation.h - a generation: everything one configuration produces (routes, services and their targets, the
 * filter pipeline with its instances and endpoints), built on the main thread, adopted by each worker,
 * and released when the last worker has no request left on it. Reload = build a new one and swap. */
#ifndef GW_GENERATION_H
#define GW_GENERATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <gw/filter.h>

#include "config.h"
#include "module.h"
#include "router.h"

typedef struct gw_server gw_server;
typedef struct gw_gen gw_gen;
typedef struct gw_pool gw_pool;
typedef struct gw_service gw_service;

/* One configured filter instance: the host-side handle filters know as gw_filter. */
struct gw_filter {
    gw_gen *gen;
    gw_module *mod;
    const gw_filter_desc *d; /* &mod->desc */
    const char *name;
    const gw_yaml_node *conf;
    void *inst;
    void **route_conf; /* [gen->cfg->nroutes] */
    void *settings;      /* ABI 1.1: the struct filled from the filter's settings table (NULL without one) */
    void *route_default; /* route_conf on routes without settings: `settings` unless route_create is set */
    size_t index;      /* position among enabled filters */
    size_t state_off;  /* offset of its per-request state */
    bool created;
};

typedef struct {
    gw_filter *f;
    int method; /* enum gw_http_method; GW_METHOD_OTHER = any */
    char *path;
    size_t path_len;
    bool prefix;
    gw_phase_fn handler;
} gw_endpoint;

/* Per worker view of a generation. */
typedef struct {
    gw_pool **pools;   /* [service][target] */
    size_t *rr;        /* round-robin cursor per service */
    unsigned inflight; /* requests on this worker pinned to the generation */
    bool adopted;      /* worker_init ran */
    bool retired;      /* no longer current on this worker */
    bool *init_ok;     /* [nfilters] worker_init result */
    struct gw_call_origins *origins; /* host->http_call's pools for URL origins (http_call.c) */
} gw_gen_worker;

struct gw_gen {
    unsigned id;
    gw_server *srv;
    gw_config *cfg;
    gw_router *router;
    gw_service *services;
    size_t nservices;
    gw_filter **filters; /* enabled, in pipeline order */
    size_t nfilters;
    gw_endpoint *endpoints;
    size_t nendpoints;
    size_t state_size; /* per-request state of all filters */
    unsigned phases; /* bit (1u << GW_PH_*) for each phase some filter implements */
    gw_gen_worker *pw; /* [nworkers] */
    unsigned nworkers;
    atomic_uint workers_left; /* workers that have not retired it yet */
};

/* Builds a generation from a loaded config (takes ownership of cfg, also on failure). Loads and checks the
 * filters, creates instances and per-route settings. NULL + *err (malloc'd) on failure. */
gw_gen *gw_gen_build(gw_server *srv, gw_config *cfg, unsigned id, char **err);
/* Runs every enabled filter's config_check and route_check without creating anything (gateway -t). */
int gw_gen_check(gw_config *cfg, const char *exe_dir, char **err);
/* Main thread, after every worker retired it (or it was never adopted): destroys instances, unloads. */
void gw_gen_free(gw_gen *g);

const gw_endpoint *gw_gen_endpoint(const gw_gen *g, int method, const char *path, size_t len, bool *path_known);
/* The methods the endpoints serving `path` accept, as (1u << enum gw_http_method) bits (GET implies HEAD). */
unsigned gw_gen_endpoint_methods(const gw_gen *g, const char *path, size_t len);

/* The host API table handed to filters. */
const gw_host *gw_host_api(void);

#endif
