/* retry.c - the filter "retry": another upstream attempt, after an exponential backoff with jitter, when
 * an attempt failed in a way worth repeating.
 *
 *   pipeline:
 *     - name: retry                          # before breaker: breaker judges every attempt first
 *       max_retries: ${RETRY_MAX_RETRIES:-3} # 0 disables
 *       initial_delay_ms: ${RETRY_INITIAL_DELAY_MS:-100}
 *       max_delay_ms: ${RETRY_MAX_DELAY_MS:-5000}
 *       multiplier: ${RETRY_MULTIPLIER:-2.0}
 *       jitter: ${RETRY_JITTER_FACTOR:-0.1}
 *   routes[].filters.retry: {max_retries: 0} | {retry_non_idempotent: true} | ...
 *
 * Retriable: a status in retry_on (502, 503, 504), a connect failure or timeout, and a connection closed
 * before the answer for the methods below. Safety: once any byte of the attempt reached the upstream, only
 * idempotent_methods (GET, HEAD, OPTIONS, PUT, DELETE) are retried unless the route sets
 * retry_non_idempotent; a POST is retried only when its connection failed before anything was sent. Never
 * when the body could not be kept for replay (host->replayable), never past the deadline, never beyond the
 * budget (rt_budget.c). Endpoints are never retried. The response of a retried request carries
 * X-Retry-Count: N (also when the final answer is an error), and "retry.count" is set for later filters. */
#include "retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_DAY_MS 86400000

#define RT_SET(key, type, field, def, lo, hi, flags, help)                                                   \
    {                                                                                                        \
        key, type, offsetof(rt_conf, field), def, lo, hi, NULL, flags, help                                  \
    }
static const gw_setting rt_settings_table[] = {
    RT_SET("max_retries", GW_SET_INT, max_retries, "3", 0, RT_MAX_RETRIES, GW_SET_ROUTE,
           "Retries after the first attempt (RETRY_MAX_RETRIES); 0 disables retries"),
    RT_SET("initial_delay_ms", GW_SET_INT, initial_delay_ms, "100", 0, RT_DAY_MS, GW_SET_ROUTE,
           "Delay before the first retry, in milliseconds (RETRY_INITIAL_DELAY_MS)"),
    RT_SET("max_delay_ms", GW_SET_INT, max_delay_ms, "5000", 0, RT_DAY_MS, GW_SET_ROUTE,
           "Cap of any delay, jitter included, in milliseconds (RETRY_MAX_DELAY_MS)"),
    RT_SET("multiplier", GW_SET_NUMBER, multiplier, "2.0", 1, 100, GW_SET_ROUTE,
           "Delay of retry k (from 0) = initial_delay_ms * multiplier^k (RETRY_MULTIPLIER)"),
    RT_SET("jitter", GW_SET_NUMBER, jitter, "0.1", 0, 1, GW_SET_ROUTE,
           "Each delay moves uniformly by up to +/- this share of itself (RETRY_JITTER_FACTOR)"),
    RT_SET("retry_on", GW_SET_STRINGS, retry_on, "502,503,504", 0, 32, GW_SET_ROUTE,
           "Upstream statuses retried (connect failures and timeouts always are)"),
    RT_SET("idempotent_methods", GW_SET_STRINGS, methods, "GET,HEAD,OPTIONS,PUT,DELETE", 0, 32, GW_SET_ROUTE,
           "Methods retried after the request reached the upstream; others only when nothing was sent"),
    RT_SET("retry_non_idempotent", GW_SET_BOOL, retry_non_idempotent, "false", 0, 0, GW_SET_ROUTE,
           "Retry every method even after it reached the upstream (for routes whose POSTs are safe)"),
    RT_SET("max_replay_body", GW_SET_SIZE, max_replay_body, "64KiB", 0, 1073741824.0, GW_SET_ROUTE,
           "Request bodies with a Content-Length up to this are kept whole for replay; larger ones stream "
           "and are never retried"),
    RT_SET("deadline", GW_SET_DURATION, deadline_ms, "15s", 0, RT_DAY_MS, GW_SET_ROUTE,
           "No retry starts later than this after the request arrived (0: none); each attempt is bounded "
           "by the timeouts.upstream_* keys"),
    RT_SET("budget", GW_SET_BOOL, budget, "true", 0, 0, 0,
           "Cap retries per service to budget_ratio of recent requests plus a floor per second"),
    RT_SET("budget_ratio", GW_SET_NUMBER, budget_ratio, "0.2", 0, 16, 0,
           "Retries allowed per request received over budget_window, per service (0.2 = 20 %)"),
    RT_SET("budget_window", GW_SET_DURATION, budget_window_ms, "10s", 1000, RT_MAX_WINDOW_S * 1000.0, 0,
           "The window the budget counts requests and retries over, in whole seconds (1s to 60s)"),
    RT_SET("budget_min_per_second", GW_SET_INT, budget_min_per_second, "10", 0, 1000000, 0,
           "Retries per second per service always allowed, whatever the ratio says"),
    {.name = NULL},
};

static int rt_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    return rt_check_conf(h, conf, err, errlen);
}

static int rt_route_check(const gw_host *h, void *inst, const gw_conf *conf, char *err, size_t errlen)
{
    (void)inst;
    return rt_check_conf(h, conf, err, errlen);
}

static rt_worker *worker_of(rt_inst *in, const gw_req *req)
{
    rt_workers *ws = atomic_load(&in->workers);
    unsigned w = in->h->worker(req);
    return ws && w < ws->n ? atomic_load_explicit(&ws->w[w], memory_order_relaxed) : NULL;
}

/* The service's name, NUL-terminated, for metric labels. */
static const char *svc_label(const rt_inst *in, int svc, gw_strv name, char *buf, size_t len)
{
    if (svc >= 0 && (size_t)svc < in->nsvc - 1) return in->svc_names[svc];
    snprintf(buf, len, "%.*s", (int)name.n, name.p);
    return buf;
}

static bool method_may_repeat(const rt_conf *rc, gw_strv m)
{
    return rc->retry_non_idempotent || rt_list_has(&rc->methods, m.p, m.n);
}

/* Ask the core to keep a body of known length whole, so it can be sent again. */
static void keep_body(const rt_inst *in, const rt_conf *rc, gw_req *req)
{
    const gw_host *h = in->h;
    gw_strv cl;
    if (!rc->max_replay_body || !h->body_buffer || !h->header_get(req, GW_HDR_REQUEST, "Content-Length", &cl))
        return;
    uint64_t n = 0;
    for (size_t i = 0; i < cl.n; i++) {
        if (cl.p[i] < '0' || cl.p[i] > '9' || n > UINT64_MAX / 10) return;
        n = n * 10 + (uint64_t)(cl.p[i] - '0');
    }
    if (cl.n && n > 0 && n <= rc->max_replay_body) (void)h->body_buffer(req, rc->max_replay_body);
}

static gw_result rt_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    rt_inst *in = inst;
    const gw_host *h = in->h;
    const rt_conf *rc = route_conf ? route_conf : in->s;
    rt_state *st = state;
    gw_strv svc = h->service(req);
    if (svc.n == 0 || rc->max_retries == 0) return GW_CONTINUE; /* endpoints are never retried */
    st->active = true;
    st->svc = rt_service_index(in, svc);
    st->w = worker_of(in, req);
    st->start_us = in->has_start ? h->start_us(req) : h->now_ms() * 1000u;
    rt_budget_count_request(in, st->w, st->svc, h->now_ms());
    keep_body(in, rc, req);
    return GW_CONTINUE;
}

/* Why this attempt's outcome deserves another attempt, or NULL. */
static const char *retriable(const rt_inst *in, const rt_conf *rc, gw_req *req, gw_strv method, bool *sent)
{
    const gw_host *h = in->h;
    const char *e = h->attempt_error(req);
    *sent = in->has_sent ? h->attempt_sent(req) : !(e && strcmp(e, "connect") == 0);
    if (e) {
        if (strcmp(e, "connect") == 0 || strcmp(e, "timeout") == 0) return e;
        if (strcmp(e, "closed") == 0 && method_may_repeat(rc, method)) return e;
        return NULL;
    }
    return rt_status_retriable(rc, h->status(req)) ? "status" : NULL;
}

static void warn_budget(rt_inst *in, rt_worker *w, gw_req *req, const char *svc, uint64_t now)
{
    if (w && w->warned_ms && now - w->warned_ms < 10000u) return;
    if (w) w->warned_ms = now ? now : 1;
    in->h->log(in->self, req, GW_LOG_WARN, "retry budget of service %s exhausted: retries refused", svc);
}

/* The attempt a retry decided has begun: now it counts (retry.count for later filters, the metric). A
 * client gone during the backoff ends the request before that, and the retry is not counted. */
static void count_started(rt_inst *in, rt_state *st, gw_req *req)
{
    const gw_host *h = in->h;
    st->pending = false;
    st->retries++;
    char n[16];
    int len = snprintf(n, sizeof n, "%u", st->retries);
    h->req_set(req, "retry.count", n, (size_t)len);
    char buf[RT_SVC_NAME_MAX];
    const char *const labels[] = {svc_label(in, st->svc, h->service(req), buf, sizeof buf)};
    if (in->m_retries) h->metric_add(in->m_retries, req, labels, 1);
}

static gw_result rt_on_upstream_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    rt_inst *in = inst;
    const gw_host *h = in->h;
    const rt_conf *rc = route_conf ? route_conf : in->s;
    rt_state *st = state;
    if (!st->active) return GW_CONTINUE;
    if (st->pending) count_started(in, st, req); /* a refused connection skips upstream_request */
    gw_strv method = h->method(req);
    bool sent;
    const char *why = retriable(in, rc, req, method, &sent);
    if (!why) return GW_CONTINUE;
    if (sent && !method_may_repeat(rc, method)) {
        h->log(in->self, req, GW_LOG_DEBUG, "%.*s not retried: it reached the upstream", (int)method.n,
               method.p);
        return GW_CONTINUE;
    }
    if (!h->replayable(req)) {
        h->log(in->self, req, GW_LOG_DEBUG, "not retried: the request body was not kept for replay");
        return GW_CONTINUE;
    }
    char buf[RT_SVC_NAME_MAX];
    const char *svc = svc_label(in, st->svc, h->service(req), buf, sizeof buf);
    const char *const labels[] = {svc};
    if (st->retries >= (unsigned)rc->max_retries || h->attempts(req) >= RT_MAX_RETRIES + 1) {
        if (in->m_exhausted) h->metric_add(in->m_exhausted, req, labels, 1);
        return GW_CONTINUE;
    }
    uint64_t rng_fallback = 0x9E3779B97F4A7C15ull ^ st->start_us;
    uint64_t delay = rt_delay_ms(rc, st->retries, st->w ? &st->w->rng : &rng_fallback);
    uint64_t now = h->now_ms();
    uint64_t now_us = in->has_start ? h->now_us() : now * 1000u;
    if (rc->deadline_ms && now_us + delay * 1000u > st->start_us + rc->deadline_ms * 1000u) {
        h->log(in->self, req, GW_LOG_DEBUG, "not retried: the next attempt would start past the deadline");
        if (in->m_exhausted) h->metric_add(in->m_exhausted, req, labels, 1);
        return GW_CONTINUE;
    }
    if (!rt_budget_allows(in, st->svc, now)) {
        if (in->m_budget) h->metric_add(in->m_budget, req, labels, 1);
        warn_budget(in, st->w, req, svc, now);
        return GW_CONTINUE;
    }
    rt_budget_count_retry(in, st->w, st->svc, now);
    st->pending = true; /* counted when it starts: a client gone during the backoff ends it unmade */
    h->log(in->self, req, GW_LOG_DEBUG, "retry %u of %s (%s, status %d) in %llu ms", st->retries + 1, svc,
           why, h->status(req), (unsigned long long)delay);
    h->retry_after(req, delay);
    return GW_RETRY;
}

static gw_result rt_on_upstream_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    rt_state *st = state;
    if (st->active && st->pending) count_started(inst, st, req);
    return GW_CONTINUE;
}

static gw_result rt_on_response(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    rt_inst *in = inst;
    rt_state *st = state;
    if (!st->active || st->retries == 0) return GW_CONTINUE;
    char n[16];
    int len = snprintf(n, sizeof n, "%u", st->retries);
    (void)in->h->header_set(req, GW_HDR_RESPONSE, "X-Retry-Count", n, (size_t)len);
    return GW_CONTINUE;
}

/* ---------------------------------------------------------------------------------------------------
 * lifecycle */

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

static int rt_worker_init(void *inst, unsigned worker, unsigned workers)
{
    rt_inst *in = inst;
    rt_workers *ws = atomic_load(&in->workers);
    if (!ws) {
        rt_workers *mine = calloc(1, sizeof *mine + (size_t)workers * sizeof mine->w[0]);
        if (!mine) return -1;
        mine->n = workers;
        if (atomic_compare_exchange_strong(&in->workers, &ws, mine))
            ws = mine;
        else
            free(mine); /* another worker was first: ws is its table */
    }
    if (worker >= ws->n) return -1;
    rt_worker *w = calloc(1, sizeof *w + in->nsvc * in->nwin * sizeof(rt_slot));
    if (!w) return -1;
    w->rng = rt_rng_seed(worker, w);
    rt_worker *old = atomic_exchange(&ws->w[worker], w);
    free(old); /* none unless the worker was initialised twice */
    return 0;
}

/* A worker's counts stay until destroy(): another worker may be reading them to decide a retry. */
static void rt_worker_fini(void *inst, unsigned worker)
{
    (void)inst;
    (void)worker;
}

static void rt_destroy(void *inst)
{
    rt_inst *in = inst;
    rt_workers *ws = atomic_load(&in->workers);
    if (ws) {
        for (unsigned i = 0; i < ws->n; i++)
            free(atomic_load(&ws->w[i]));
        free(ws);
    }
    free(in->svc_names);
    free(in->svc_hash);
    free(in);
}

static void *rt_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)conf;
    if (!HAS(h, settings) || !HAS(h, retry_after) || !HAS(h, replayable) || !HAS(h, attempt_error) ||
        !HAS(h, header_set) || !HAS(h, req_set)) {
        snprintf(err, errlen, "retry: the host lacks the retry calls this filter needs");
        return NULL;
    }
    rt_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "retry: out of memory");
        return NULL;
    }
    in->h = h;
    in->self = self;
    in->s = h->settings(self);
    in->has_sent = h->abi_minor >= 2 && HAS(h, attempt_sent);
    in->has_start = h->abi_minor >= 2 && HAS(h, start_us) && HAS(h, now_us);
    in->nwin = (unsigned)(in->s->budget_window_ms / 1000u);
    if (in->nwin < 1) in->nwin = 1;
    if (in->nwin > RT_MAX_WINDOW_S) in->nwin = RT_MAX_WINDOW_S;
    atomic_init(&in->workers, NULL);
    if (rt_services_init(in) != 0) {
        snprintf(err, errlen, "retry: out of memory");
        rt_destroy(in);
        return NULL;
    }
    if (HAS(h, metric_register)) {
        const char *const labels[] = {"service", NULL};
        in->m_retries =
            h->metric_register(self, GW_METRIC_COUNTER, "gateway_retries_total",
                               "Retries started (upstream attempts after the first)", labels, NULL, 0);
        in->m_budget = h->metric_register(self, GW_METRIC_COUNTER, "gateway_retry_budget_exhausted_total",
                                          "Retries refused because the service's retry budget was spent",
                                          labels, NULL, 0);
        in->m_exhausted = h->metric_register(self, GW_METRIC_COUNTER, "gateway_retries_exhausted_total",
                                             "Requests answered with a retriable failure after max_retries "
                                             "or at the deadline",
                                             labels, NULL, 0);
    }
    return in;
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = RT_NAME,
    .version = "1.0.0",
    .description =
        "Retries: another upstream attempt after an exponential backoff with jitter, within a budget",
    .config_check = rt_config_check,
    .create = rt_create,
    .worker_init = rt_worker_init,
    .worker_fini = rt_worker_fini,
    .destroy = rt_destroy,
    .route_check = rt_route_check,
    .on_request = rt_on_request,
    .on_upstream_request = rt_on_upstream_request,
    .on_upstream_response = rt_on_upstream_response,
    .on_response = rt_on_response,
    .req_state_size = sizeof(rt_state),
    .settings = rt_settings_table,
    .settings_size = sizeof(rt_conf),
};
