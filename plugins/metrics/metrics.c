/* metrics.c - the filter "metrics": serves GET /metrics (Prometheus text 0.0.4, or JSON when the client's
 * Accept prefers application/json) and counts every request that passes it.
 *
 *   pipeline:
 *     - name: metrics
 *       path: /metrics                      # the exposition endpoint
 *       quantiles: [0.5, 0.95, 0.99]        # of gateway_http_request_duration_ms (a summary)
 *       buckets: [0.005, 0.01, ..., 10]     # of gateway_http_request_duration_seconds (a histogram)
 *       unmatched_route: unmatched          # route label of requests that matched no route
 *
 * Families: gateway_requests_in_flight (+1 in the request phase, -1 in the log phase of the same request,
 * so a request that never ran the request phase is not counted and one whose client went away is taken
 * out), gateway_http_requests_total{method,route,status}, the duration summary and histogram (from the
 * moment the request head was received to the log phase). Labels stay bounded: the route's name (or the
 * endpoint's path), never the request path; a method that is not one of the standard ones is OTHER; a
 * request that got no status (the client went away first) is 499, as nginx logs it. Everything is per
 * worker in the host (no lock here); the host merges the workers at scrape. */
#include "mx.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

#define MX_SET(key, type, field, def, lo, hi, help)                                                          \
    {                                                                                                        \
        key, type, offsetof(mx_conf, field), def, lo, hi, NULL, 0, help                                      \
    }
static const gw_setting mx_settings_table[] = {
    MX_SET("path", GW_SET_STRING, path, "/metrics", 0, 0, "Path of the exposition endpoint (GET and HEAD)"),
    MX_SET("quantiles", GW_SET_STRINGS, quantiles, "0.5,0.95,0.99", 1, MX_MAX_LIST,
           "Quantiles of gateway_http_request_duration_ms (a summary over the last minute), ascending, in "
           "(0,1)"),
    MX_SET("buckets", GW_SET_STRINGS, buckets, "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10", 1,
           MX_MAX_LIST,
           "Upper bounds in seconds of the gateway_http_request_duration_seconds histogram, ascending"),
    MX_SET("unmatched_route", GW_SET_STRING, unmatched, "unmatched", 0, 0,
           "Route label of requests that matched no route (404s of unknown paths)"),
    {.name = NULL},
};

static const char *const methods[] = {"GET",   "HEAD",    "POST",    "PUT",   "DELETE",
                                      "PATCH", "OPTIONS", "CONNECT", "TRACE", NULL};

/* The method label: a standard method as sent, anything else OTHER (the label set stays bounded). */
static const char *method_label(gw_strv m)
{
    for (size_t i = 0; methods[i]; i++)
        if (strlen(methods[i]) == m.n && memcmp(methods[i], m.p, m.n) == 0) return methods[i];
    return "OTHER";
}

static uint64_t now_us(const gw_host *h)
{
    return HAS(h, now_us) ? h->now_us() : h->now_ms() * 1000;
}

/* --- phases --------------------------------------------------------------------------------------------- */

static gw_result mx_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    mx_inst *in = inst;
    mx_state *st = state;
    st->start_us = now_us(in->h);
    if (in->in_flight) {
        in->h->metric_add(in->in_flight, req, NULL, 1);
        st->in_flight = 1;
    }
    return GW_CONTINUE;
}

static gw_result mx_on_log(void *inst, void *route_conf, void *state, gw_req *req)
{
    mx_inst *in = inst;
    const gw_host *h = in->h;
    mx_state *st = state;
    if (st->in_flight) {
        h->metric_add(in->in_flight, req, NULL, -1);
        st->in_flight = 0;
    }
    gw_strv route = h->route(req);
    char rbuf[256], status[12];
    const char *rl = in->s->unmatched;
    if (route.n) { /* route names and endpoint paths are few and fixed by the configuration */
        size_t n = route.n < sizeof rbuf - 1 ? route.n : sizeof rbuf - 1;
        memcpy(rbuf, route.p, n);
        rbuf[n] = '\0';
        rl = rbuf;
    }
    int code = h->status(req);
    if (code <= 0 || code > 999) code = 499; /* no answer went out: the client went away (as nginx logs it) */
    status[0] = (char)('0' + code / 100), status[1] = (char)('0' + code / 10 % 10);
    status[2] = (char)('0' + code % 10), status[3] = '\0';
    const char *const labels[] = {method_label(h->method(req)), rl, status};
    if (in->requests) h->metric_add(in->requests, req, labels, 1);

    uint64_t start = HAS(h, start_us) ? h->start_us(req) : st->start_us, now = now_us(h);
    if (!start) return GW_CONTINUE; /* a host that cannot say when the request began */
    double us = now > start ? (double)(now - start) : 0;
    if (in->duration_ms) h->metric_observe(in->duration_ms, req, NULL, us / 1e3);
    if (in->duration_s) h->metric_observe(in->duration_s, req, NULL, us / 1e6);
    return GW_CONTINUE;
}

/* GET/HEAD <path>: every registered family, in the representation the client prefers. */
static gw_result mx_endpoint(void *inst, void *route_conf, void *state, gw_req *req)
{
    mx_inst *in = inst;
    const gw_host *h = in->h;
    gw_strv m = h->method(req);
    bool get = m.n == 3 && !memcmp(m.p, "GET", 3), head = m.n == 4 && !memcmp(m.p, "HEAD", 4);
    if (!get && !head) {
        h->header_set(req, GW_HDR_RESPONSE, "Allow", "GET, HEAD", 9);
        h->respond_error(req, 405, "Metrics are read with GET or HEAD");
        return GW_RESPOND;
    }
    gw_strv accept = {0};
    int json = h->header_get(req, GW_HDR_REQUEST, "Accept", &accept) ? mx_accept_json(accept.p, accept.n) : 0;
    gw_strv body;
    if (!HAS(h, metrics_render) || h->metrics_render(req, json, &body) != 0) {
        h->log(in->self, req, GW_LOG_ERROR, "rendering the metrics failed (out of memory?)");
        h->respond_error(req, 500, "The metrics could not be rendered");
        return GW_RESPOND;
    }
    h->header_set(req, GW_HDR_RESPONSE, "Vary", "Accept", 6);
    h->header_set(req, GW_HDR_RESPONSE, "Cache-Control", "no-store", 8);
    h->respond(req, 200, json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8", body.p,
               body.n);
    return GW_RESPOND;
}

/* --- lifecycle ------------------------------------------------------------------------------------------ */

static int mx_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *p = h->conf_get(conf, "path");
    const char *ps = p ? h->conf_str(p) : NULL;
    if (ps && ps[0] != '/') return h->conf_error(p, err, errlen, MX_NAME ".path: must start with '/'");
    return mx_check_lists(h, conf, err, errlen);
}

static void *mx_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (!HAS(h, settings) || !HAS(h, register_endpoint) || !HAS(h, metric_register) ||
        !HAS(h, respond_error)) {
        snprintf(err, errlen,
                 MX_NAME ": the host lacks the settings, endpoint or metric calls this filter needs");
        return NULL;
    }
    mx_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, MX_NAME ": out of memory");
        return NULL;
    }
    in->h = h;
    in->self = self;
    in->s = h->settings(self);
    double qs[MX_MAX_LIST], bs[MX_MAX_LIST];
    size_t nq = 0, nb = 0;
    if (mx_numbers(&in->s->quantiles, 1, qs, &nq, err, errlen) != 0 ||
        mx_numbers(&in->s->buckets, 0, bs, &nb, err, errlen) != 0) {
        free(in);
        return NULL;
    }
    static const char *const req_labels[] = {"method", "route", "status", NULL};
    in->in_flight =
        h->metric_register(self, GW_METRIC_GAUGE, "gateway_requests_in_flight",
                           "Requests being processed (request phase seen, log phase not yet)", NULL, NULL, 0);
    in->requests = h->metric_register(self, GW_METRIC_COUNTER, "gateway_http_requests_total",
                                      "HTTP requests by method, route and status", req_labels, NULL, 0);
    in->duration_ms =
        h->metric_register(self, GW_METRIC_SUMMARY, "gateway_http_request_duration_ms",
                           "Request duration in milliseconds (quantiles over the last minute)", NULL, qs, nq);
    in->duration_s = h->metric_register(self, GW_METRIC_HISTOGRAM, "gateway_http_request_duration_seconds",
                                        "Request duration in seconds, from the request head to the last byte",
                                        NULL, bs, nb);
    if (!in->requests || !in->in_flight || !in->duration_s)
        h->log(self, NULL, GW_LOG_WARN,
               "some metric families could not be registered (see the gateway's log)");
    if (!in->duration_ms)
        h->log(self, NULL, GW_LOG_WARN,
               "gateway_http_request_duration_ms not registered: the host has no summaries");
    if (h->register_endpoint(self, "*", in->s->path, false, mx_endpoint) != 0 &&
        (h->register_endpoint(self, "GET", in->s->path, false, mx_endpoint) != 0 ||
         h->register_endpoint(self, "HEAD", in->s->path, false, mx_endpoint) != 0)) {
        snprintf(err, errlen, MX_NAME ": cannot register the endpoint %s", in->s->path);
        free(in);
        return NULL;
    }
    return in;
}

static void mx_destroy(void *inst)
{
    free(inst);
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = MX_NAME,
    .version = "1.0.0",
    .description = "Prometheus metrics: GET /metrics (text 0.0.4 or JSON), request counts and durations",
    .config_check = mx_config_check,
    .create = mx_create,
    .destroy = mx_destroy,
    .on_request = mx_on_request,
    .on_log = mx_on_log,
    .req_state_size = sizeof(mx_state),
    .settings = mx_settings_table,
    .settings_size = sizeof(mx_conf),
};
