/* breaker.c - the filter "breaker": one circuit breaker per configured service, process-wide.
 *
 *   pipeline:
 *     - name: breaker
 *       max_failures: ${CB_MAX_FAILURES:-5}               # consecutive failed attempts that open it
 *       reset_timeout: ${CB_RESET_TIMEOUT_SECONDS:-30}    # open this long, then half-open (bare number: s)
 *       half_open_max_requests: ${CB_HALF_OPEN_MAX_REQUESTS:-3}  # probes in flight at once when half-open
 *       success_threshold: ${CB_SUCCESS_THRESHOLD:-2}     # probe successes that close it
 *       services:                                         # per-service overrides of the four above
 *         user-service: {max_failures: 3}
 *   routes[].filters.breaker: {max_failures: 10, ...}    # per-route overrides (win over the service's)
 *
 * A failure is an attempt that got a 5xx from the upstream or failed (connect, timeout, closed, invalid);
 * every other answer is a success; a client that went away records nothing. Closed -> open after
 * max_failures consecutive failures; open answers 503 JSON at once (Retry-After: seconds until half-open)
 * without contacting the upstream; after reset_timeout, half-open admits at most half_open_max_requests
 * probes at once (a slot is freed however the probe ends); success_threshold successes close it, any
 * failure opens it again. State lives in host->shared_block per service name, so it is exact across
 * workers and survives a reload. Admin: GET /admin/circuit-breakers, POST /admin/circuit-breakers/reset,
 * POST /admin/circuit-breakers/{name}/reset (cb_admin.c). Metrics: gateway_circuit_breaker_state{service}
 * (1 closed, 0.5 half-open, 0 open), gateway_circuit_breaker_trips_total{service}. */
#include "breaker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CB_SET(key, type, field, def, lo, hi, flags, help)                                                   \
    {                                                                                                        \
        key, type, offsetof(cb_conf, field), def, lo, hi, NULL, flags, help                                  \
    }
static const gw_setting cb_settings_table[] = {
    CB_SET("max_failures", GW_SET_INT, max_failures, "5", 1, CB_MAX_COUNT, GW_SET_ROUTE,
           "Consecutive failed attempts (5xx, connect error, timeout) that open a service's breaker"),
    CB_SET("reset_timeout", GW_SET_DURATION, reset_ms, "30s", 1, 86400000, GW_SET_ROUTE,
           "How long an open breaker answers 503 before it lets probes through (half-open)"),
    CB_SET("half_open_max_requests", GW_SET_INT, half_open_max, "3", 1, CB_MAX_PROBES, GW_SET_ROUTE,
           "Probes allowed in flight at once while half-open; others get 503"),
    CB_SET("success_threshold", GW_SET_INT, success_threshold, "2", 1, CB_MAX_COUNT, GW_SET_ROUTE,
           "Consecutive probe successes that close a half-open breaker"),
    CB_SET("services", GW_SET_RAW, services, NULL, 0, 0, 0,
           "Per-service overrides: a mapping of service name to any of the four settings above"),
    {.name = NULL},
};

/* ---------------------------------------------------------------------------------------------------
 * settings */

static void limits_of(const cb_conf *c, cb_limits *lim)
{
    lim->max_failures = (uint32_t)c->max_failures;
    lim->reset_ms = c->reset_ms;
    lim->half_open_max = (uint32_t)c->half_open_max;
    lim->success_threshold = (uint32_t)c->success_threshold;
}

static int read_count(const gw_host *h, const gw_conf *map, const char *key, int64_t max, uint32_t *out,
                      char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(map, key);
    if (!n) return 0;
    int64_t v;
    char why[256];
    if (h->conf_int(n, 1, max, &v, why, sizeof why) != 0)
        return h->conf_error(n, err, errlen, CB_NAME ".services.%s: expected an integer from 1 to %lld", key,
                             (long long)max);
    *out = (uint32_t)v;
    return 0;
}

/* One entry of `services`: the service's overrides over lim. */
static int service_overrides(const gw_host *h, const gw_conf *node, cb_limits *lim, char *err, size_t errlen)
{
    static const char *const known[] = {"max_failures", "reset_timeout", "half_open_max_requests",
                                        "success_threshold", NULL};
    if (h->conf_kind(node) != GW_CONF_MAP)
        return h->conf_error(node, err, errlen,
                             CB_NAME ".services: each service maps to its settings, e.g. {max_failures: 3}");
    for (size_t i = 0; i < h->conf_len(node); i++) {
        const char *k = h->conf_key_at(node, i);
        bool ok = false;
        for (size_t j = 0; known[j]; j++)
            ok = ok || strcmp(k, known[j]) == 0;
        if (!ok)
            return h->conf_error(h->conf_at(node, i), err, errlen,
                                 CB_NAME
                                 ".services.%s: unknown setting (allowed: max_failures, reset_timeout, "
                                 "half_open_max_requests, success_threshold)",
                                 k);
    }
    if (read_count(h, node, "max_failures", CB_MAX_COUNT, &lim->max_failures, err, errlen) != 0 ||
        read_count(h, node, "half_open_max_requests", CB_MAX_PROBES, &lim->half_open_max, err, errlen) != 0 ||
        read_count(h, node, "success_threshold", CB_MAX_COUNT, &lim->success_threshold, err, errlen) != 0)
        return -1;
    const gw_conf *n = h->conf_get(node, "reset_timeout");
    if (n) {
        uint64_t ms;
        char why[256];
        if (h->conf_duration_ms(n, &ms, why, sizeof why) != 0 || ms < 1 || ms > 86400000)
            return h->conf_error(n, err, errlen,
                                 CB_NAME ".services.reset_timeout: expected a duration from 1ms to 24h "
                                         "(\"500ms\", \"30s\", or seconds)");
        lim->reset_ms = ms;
    }
    return 0;
}

static int cb_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *svcs = h->conf_get(conf, "services");
    if (!svcs) return 0;
    if (h->conf_kind(svcs) != GW_CONF_MAP)
        return h->conf_error(svcs, err, errlen,
                             CB_NAME ".services: expected a mapping of service name to settings");
    for (size_t i = 0; i < h->conf_len(svcs); i++) {
        cb_limits lim = {0};
        if (service_overrides(h, h->conf_at(svcs, i), &lim, err, errlen) != 0) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * the service index */

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t x = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        x = (x ^ (unsigned char)s[i]) * 1099511628211ull;
    return x;
}

cb_svc *cb_find(const cb_inst *in, const char *name, size_t len)
{
    if (!in->nindex) return NULL;
    size_t mask = in->nindex - 1;
    for (size_t i = fnv1a(name, len) & mask, k = 0; k < in->nindex; i = (i + 1) & mask, k++) {
        uint32_t slot = in->index[i];
        if (!slot) return NULL;
        cb_svc *s = &in->svc[slot - 1];
        if (s->len == len && memcmp(s->name, name, len) == 0) return s;
    }
    return NULL;
}

static int build_index(cb_inst *in)
{
    size_t n = 8;
    while (n < 2 * in->nsvc)
        n <<= 1;
    in->index = calloc(n, sizeof *in->index);
    if (!in->index) return -1;
    in->nindex = n;
    for (size_t k = 0; k < in->nsvc; k++) {
        size_t i = fnv1a(in->svc[k].name, in->svc[k].len) & (n - 1);
        while (in->index[i])
            i = (i + 1) & (n - 1);
        in->index[i] = (uint32_t)(k + 1);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * lifecycle */

static void cb_destroy(void *inst)
{
    cb_inst *in = inst;
    if (!in) return;
    if (in->own_blocks)
        for (size_t i = 0; i < in->nsvc; i++)
            free(in->svc[i].b);
    free(in->svc);
    free(in->index);
    free(in);
}

static cb_block *block_for(cb_inst *in, const char *name, char *err, size_t errlen)
{
    cb_block *b;
    if (in->own_blocks) {
        b = calloc(1, sizeof *b);
    } else {
        char key[320];
        if (snprintf(key, sizeof key, "svc:%s", name) >= (int)sizeof key) {
            snprintf(err, errlen, CB_NAME ": service name too long: %.40s...", name);
            return NULL;
        }
        b = in->h->shared_block(in->self, key, sizeof *b);
    }
    if (!b) {
        snprintf(err, errlen,
                 CB_NAME ": no shared state for service %s (out of memory, or a block of another "
                         "layout from an earlier version of this filter: restart the gateway)",
                 name);
        return NULL;
    }
    /* A zeroed block is a closed breaker at sequence 0; the magic marks the layout. */
    bool expected = false;
    if (atomic_compare_exchange_strong(&b->magic_set, &expected, true)) b->magic = CB_BLOCK_MAGIC;
    if (b->magic != CB_BLOCK_MAGIC) {
        snprintf(err, errlen, CB_NAME ": shared state for service %s has another layout: restart the gateway",
                 name);
        return NULL;
    }
    return b;
}

/* The services map names only configured services (file:line:col otherwise), and fills their limits. */
static int apply_service_settings(cb_inst *in, char *err, size_t errlen)
{
    const gw_host *h = in->h;
    const gw_conf *svcs = in->s->services;
    if (!svcs) return 0;
    for (size_t i = 0; i < h->conf_len(svcs); i++) {
        const char *name = h->conf_key_at(svcs, i);
        cb_svc *s = cb_find(in, name, strlen(name));
        if (!s)
            return h->conf_error(h->conf_at(svcs, i), err, errlen,
                                 CB_NAME ".services.%s: no service of that name is configured", name);
        if (service_overrides(h, h->conf_at(svcs, i), &s->lim, err, errlen) != 0) return -1;
    }
    return 0;
}

static int metrics_init(cb_inst *in)
{
    const gw_host *h = in->h;
    const char *const labels[] = {"service", NULL};
    in->m_state = h->metric_register(in->self, GW_METRIC_GAUGE, "gateway_circuit_breaker_state",
                                     "Circuit breaker state per service: 1 closed, 0.5 half-open, 0 open",
                                     labels, NULL, 0);
    in->m_trips = h->metric_register(in->self, GW_METRIC_COUNTER, "gateway_circuit_breaker_trips_total",
                                     "Transitions of a service's circuit breaker to open", labels, NULL, 0);
    for (size_t i = 0; i < in->nsvc; i++) {
        cb_svc *s = &in->svc[i];
        const char *lv[] = {s->name};
        /* Gauges merge by sum: the block's state enters once per process, transitions add deltas. */
        bool expected = false;
        if (in->m_state && atomic_compare_exchange_strong(&s->b->gauge_init, &expected, true)) {
            uint64_t w = atomic_load(&s->b->word);
            h->metric_add(in->m_state, NULL, lv, cb_gauge_value(CB_W_STATE(w)));
        }
        if (in->m_trips) h->metric_add(in->m_trips, NULL, lv, 0); /* listed before the first trip */
    }
    return 0;
}

static void *cb_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)conf;
    if (!CB_HAS(h, settings) || !CB_HAS(h, service_name) || !CB_HAS(h, respond) || !CB_HAS(h, on_cleanup) ||
        !CB_HAS(h, register_endpoint) || !CB_HAS(h, header_set)) {
        snprintf(err, errlen,
                 CB_NAME ": the host lacks the service list, cleanup or endpoint calls this filter "
                         "needs (filter ABI 1.2)");
        return NULL;
    }
    cb_inst *in = calloc(1, sizeof *in);
    if (!in) goto oom;
    in->h = h;
    in->self = self;
    in->s = h->settings(self);
    in->own_blocks = !CB_HAS(h, shared_block);
    while (h->service_name(self, in->nsvc))
        in->nsvc++;
    if (in->nsvc && !(in->svc = calloc(in->nsvc, sizeof *in->svc))) goto oom;
    for (size_t i = 0; i < in->nsvc; i++) {
        cb_svc *s = &in->svc[i];
        s->name = h->service_name(self, i);
        s->len = strlen(s->name);
        s->in = in;
        limits_of(in->s, &s->lim);
        if (!(s->b = block_for(in, s->name, err, errlen))) goto fail;
    }
    if (build_index(in) != 0) goto oom;
    if (apply_service_settings(in, err, errlen) != 0) goto fail;
    if (h->register_endpoint(self, "*", CB_ADMIN_PATH, true, cb_admin_endpoint) != 0) {
        snprintf(err, errlen, CB_NAME ": cannot register the endpoints under " CB_ADMIN_PATH);
        goto fail;
    }
    if (CB_HAS(h, metric_register) && CB_HAS(h, metric_add)) metrics_init(in);
    if (in->own_blocks)
        h->log(self, NULL, GW_LOG_WARN,
               "the host has no shared blocks: breaker state is per instance and "
               "starts closed again after a reload");
    return in;
oom:
    snprintf(err, errlen, CB_NAME ": out of memory");
fail:
    cb_destroy(in);
    return NULL;
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = CB_NAME,
    .version = "1.0.0",
    .description = "Circuit breaker per service: open after consecutive failures, probe when half-open",
    .config_check = cb_config_check,
    .create = cb_create,
    .destroy = cb_destroy,
    .on_request = cb_on_request,
    .on_upstream_request = cb_on_upstream_request,
    .on_upstream_response = cb_on_upstream_response,
    .req_state_size = sizeof(cb_state),
    .settings = cb_settings_table,
    .settings_size = sizeof(cb_conf),
};
