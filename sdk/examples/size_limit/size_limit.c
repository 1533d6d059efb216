/* size_limit.c - the settings-table example (sdk/README.md): 413 for a declared body over max_body (which
 * a route may lower or raise), with the configured message; counts what it refused. */
#include <gw/filter.h>
#include <stdlib.h>

typedef struct {
    uint64_t max_body; /* bytes */
    const char *message;
} limit_conf;

static const gw_setting limit_settings[] = {
    {.name = "max_body", .type = GW_SET_SIZE, .offset = offsetof(limit_conf, max_body), .def = "1m", .min = 1,
     .max = 1 << 30, .flags = GW_SET_ROUTE, .help = "Largest Content-Length let through (413 above)"},
    {.name = "message", .type = GW_SET_STRING, .offset = offsetof(limit_conf, message),
     .def = "request body too large", .help = "The message of the 413 answer"},
    {.name = NULL},
};

typedef struct { const gw_host *h; gw_metric *refused; } limit_inst;

static void *limit_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    limit_inst *in = calloc(1, sizeof *in);
    if (in) *in = (limit_inst){h, h->metric_register(self, GW_METRIC_COUNTER, "size_limit_refused_total",
                                                     "Requests refused with 413", NULL, NULL, 0)};
    return in;
}

/* route_conf: the route's settings merged over the pipeline's, or the pipeline's. */
static gw_result limit_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    const limit_inst *in = inst;
    const limit_conf *c = route_conf;
    gw_strv cl;
    uint64_t len = 0;
    if (!in->h->header_get(req, GW_HDR_REQUEST, "Content-Length", &cl) || cl.n > 18) return GW_CONTINUE;
    for (size_t i = 0; i < cl.n; i++)
        len = len * 10 + (uint64_t)(cl.p[i] - '0'); /* the host refuses a Content-Length that is not digits */
    if (len <= c->max_body) return GW_CONTINUE;
    in->h->metric_add(in->refused, req, NULL, 1);
    return in->h->respond_error(req, 413, c->message) == 0 ? GW_RESPOND : GW_ERROR;
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR, .abi_minor = GW_ABI_MINOR, .struct_size = sizeof(gw_filter_desc),
    .name = "size_limit", .version = "1.0.0", .description = "Refuses declared request bodies over a size",
    .create = limit_create, .destroy = free, .on_request = limit_request,
    .settings = limit_settings, .settings_size = sizeof(limit_conf),
};
