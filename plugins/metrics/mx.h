/* mx.h - the filter "metrics": shared declarations of its files (metrics.c: settings, lifecycle, phases;
 * mx_accept.c: content negotiation; mx_numbers.c: the numeric list settings). */
#ifndef MX_H
#define MX_H

#include <stddef.h>
#include <stdint.h>

#include <gw/filter.h>

#define MX_NAME "metrics"
#define MX_MAX_LIST 32 /* quantiles and buckets: the host's limit per family */

typedef struct {
    const char *path;           /* the exposition endpoint */
    gw_list quantiles, buckets; /* strings: numbers checked by mx_numbers */
    const char *unmatched;      /* route label of requests that matched no route */
} mx_conf;

typedef struct {
    const gw_host *h;
    gw_filter *self;
    const mx_conf *s;
    gw_metric *in_flight, *requests, *duration_ms, *duration_s;
} mx_inst;

typedef struct {
    uint64_t start_us;       /* when on_request ran, for hosts without start_us */
    unsigned char in_flight; /* counted in gateway_requests_in_flight: take it out in the log phase */
} mx_state;

/* Which representation the Accept header prefers: 1 = JSON, 0 = Prometheus text (also when absent, when
 * the two tie, and when neither is acceptable). */
int mx_accept_json(const char *accept, size_t len);

/* Parses a list of decimal numbers from a STRINGS setting into out (at most MX_MAX_LIST); 0 or -1 with a
 * message in err naming the item. kind: "quantiles" (each in (0,1)) or "buckets" (finite, > 0). Both
 * ascending. */
int mx_numbers(const gw_list *l, int quantiles, double *out, size_t *n, char *err, size_t errlen);

/* config_check for the lists: points at the offending item of the YAML. */
int mx_check_lists(const gw_host *h, const gw_conf *conf, char *err, size_t errlen);

#endif
