/* th_internal.h - the test host's private structures, shared by its source files. */
#ifndef GW_TH_INTERNAL_H
#define GW_TH_INTERNAL_H

#include <gw/testhost.h>

#include <stdarg.h>

#include "yaml_tree.h"

/* ---- header lists ---- */
typedef struct {
    char *name;
    char *value; /* NUL-terminated (values never contain NUL) */
    size_t vlen;
    bool from_upstream; /* response header that came with the upstream's reply */
} th_hdr;

typedef struct {
    th_hdr *v;
    size_t n, cap;
} th_hdrs;

bool th_hdr_name_ok(const char *name);
bool th_hdr_value_ok(const char *value, size_t len);
int th_hdrs_add(th_hdrs *h, const char *name, const char *value, size_t len, bool from_upstream);
int th_hdrs_set(th_hdrs *h, const char *name, const char *value, size_t len);
size_t th_hdrs_remove(th_hdrs *h, const char *name);
void th_hdrs_remove_upstream(th_hdrs *h);
const th_hdr *th_hdrs_get(const th_hdrs *h, const char *name);
size_t th_hdrs_count(const th_hdrs *h, const char *name);
int th_hdrs_copy(th_hdrs *dst, const th_hdrs *src);
void th_hdrs_clear(th_hdrs *h);

/* ---- filters, routes, endpoints ---- */
struct gw_filter {
    gw_th *th;
    gw_filter_desc d; /* zero-extended copy of the filter's descriptor */
    unsigned built_major, built_minor;
    char *source;     /* file name, or "descriptor 'name'" */
    void *dl;         /* dlopen handle, NULL for a linked descriptor */
    gw_yaml_doc *doc; /* the pipeline entry; the filter may keep nodes until destroy */
    void *inst;
    void *settings;      /* ABI 1.1: filled from the settings table (conf_settings.c), NULL without one */
    void *route_default; /* route_conf where a route has none: `settings` unless route_create is set */
    size_t index;
    bool created, worker_ok;
};

typedef struct {
    char *name;
    char *prefix; /* normalised */
    size_t plen;
    gw_yaml_doc *doc; /* the filters mapping */
    void **conf;      /* [nconf]: route_create results by filter index */
    size_t nconf;
} th_route;

typedef struct {
    gw_filter *f;
    char *method; /* NULL = any */
    char *path;
    size_t plen;
    bool prefix;
    gw_phase_fn handler;
} th_endpoint;

/* ---- a scripted upstream reply ---- */
typedef struct {
    int status;
    const char *fail; /* attempt_error value, or NULL */
    th_hdrs hdrs;
    char *body;
    size_t blen;
} th_reply;

struct gw_timer {
    gw_req *r;
    gw_filter *f;
    uint64_t due, seq;
    void (*cb)(gw_req *req, void *arg);
    void *arg;
    bool done;      /* fired or cancelled: will not fire */
    bool fired, cancelled;
    gw_timer *next;
};

typedef struct {
    void (*cb)(void *arg);
    void *arg;
    gw_filter *f;
} th_cleanup;

enum {
    TH_NEW = 0,
    TH_REQUEST,
    TH_ENDPOINT,
    TH_UP_REQUEST,
    TH_UP_CALL,
    TH_UP_RESPONSE,
    TH_RESPONSE,
    TH_LOG,
    TH_DONE,
};

struct gw_req {
    gw_th *th;
    gw_req *next;
    unsigned seq;
    struct th_kv_val *vals; /* host->req_set values */

    /* the client's request */
    char *method;
    char *target;   /* as given */
    char *path;     /* normalised, without the query */
    char *query;    /* without '?' */
    char *client_ip;
    char request_id[40];
    th_hdrs req_h;
    char *body;
    size_t blen;
    bool replayable;
    bool chunked;          /* gw_th_request_chunked: Transfer-Encoding instead of Content-Length */
    size_t *req_pieces, *resp_pieces; /* body piece sizes for the body phases (th_body.c) */
    size_t nreq_pieces, nresp_pieces;
    uint64_t body_want;    /* host->body_buffer's max */

    /* scripted upstream */
    th_reply *replies;
    size_t nreplies, next_reply;

    /* routing */
    th_route *route;     /* &route_copy or NULL */
    th_endpoint *ep;     /* &ep_copy or NULL */
    th_route route_copy;
    th_endpoint ep_copy;
    bool unrouted;       /* answered by the host before the pipeline (400, 404, 405) */
    th_hdrs orig_h;      /* the client's headers as received */

    /* run state */
    int stage;
    size_t idx;          /* position within the current phase (counts calls made) */
    bool waiting;        /* a phase returned GW_WAIT */
    bool in_phase;       /* a phase function is executing */
    bool driving;        /* drive() is on the stack */
    bool responded;      /* respond() was called during the current phase call */
    bool resp_own;       /* the response in the response phase is the host's or a filter's, not upstream */
    bool early_set;      /* resume() came from inside the phase call */
    gw_result early;
    bool ended;          /* cleanup done */
    gw_filter *cur;      /* the filter on whose behalf calls are made (store namespace, logs) */
    void **state;        /* [nfilters at start] per-request states */
    size_t nstate;

    /* upstream */
    unsigned attempts;
    size_t reply;        /* index of the current attempt's scripted reply, SIZE_MAX = the default */
    const char *attempt_error;
    bool attempt_sent;   /* host->attempt_sent */
    int up_status;       /* host->upstream_status */
    uint64_t start_us;   /* host->start_us: the fake clock when the request first ran */
    th_hdrs up_h;        /* current attempt's upstream head */
    bool up_started;     /* an upstream_request phase began */
    bool up_called;
    char *up_method, *up_target;
    th_hdrs up_sent;
    uint64_t *delays;    /* [attempt-1] */
    size_t ndelays;
    uint64_t retry_ms;   /* set by retry_after during the current attempt */

    /* response */
    int status;
    th_hdrs resp_h;
    char *resp_body;
    size_t resp_blen;
    uint64_t bytes_in, bytes_out;

    /* per-request memory and callbacks */
    void **allocs;
    size_t nallocs, callocs, alloc_bytes;
    th_cleanup *cleanups;
    size_t ncleanups, ccleanups;
    gw_timer *timers;
};

/* ---- store ---- */
typedef struct {
    char *ns, *key;
    char *value;
    size_t len;
    uint64_t expires; /* monotonic ms, 0 = never */
} th_kv;

typedef struct {
    char *ns, *key;
    double tokens;
    uint64_t last;         /* monotonic ms of the last refill */
    double capacity, rate; /* of the last take */
} th_bucket;

typedef struct th_op th_op;
struct th_op {
    th_op *next;
    gw_req *r;
    gw_filter *f;
    gw_store_cb cb;
    gw_bucket_cb bcb;
    void *arg;
    int status;
    char *value;
    size_t len;
    bool has_bucket;
    gw_bucket_result br;
    gw_incr_cb icb; /* store_incr: result in ival */
    int64_t ival;
    struct th_call *call; /* http_call answered from the queue (th_call.c) */
    gw_store_list_cb lcb; /* store_list: results below */
    size_t n;
    gw_strv *keys, *vals;
};

/* ---- metrics and logs ---- */
typedef struct {
    char **values;
    double value; /* counter/gauge; histogram: sum */
    uint64_t count;
    uint64_t *bucket_counts; /* [nbuckets], non-cumulative */
    struct gw_sketch *sk;    /* summary: the recent observations (core/metrics/sketch.h) */
} th_series;

struct gw_metric {
    gw_th *th;
    int type;
    char *name, *help;
    char **labels;
    size_t nlabels;
    double *buckets;
    size_t nbuckets;
    th_series *series;
    size_t nseries, cseries;
};

typedef struct {
    int level;
    char *line;
} th_log;

struct gw_th {
    gw_host host;
    char error[1024];

    gw_filter **filters;
    size_t nfilters;
    th_route *routes;
    size_t nroutes;
    th_endpoint *eps;
    size_t neps;
    gw_filter *creating; /* create() of this filter is running */

    gw_req *reqs;
    unsigned req_seq;
    uint64_t timer_seq;
    size_t alloc_limit;

    th_kv *kv;
    size_t nkv, ckv;
    th_bucket *bk;
    size_t nbk, cbk;
    th_op *q_head, *q_tail;
    size_t q_len;
    bool store_auto;
    int store_mode;

    gw_metric **fams;
    size_t nfams;

    struct th_callee *callees; /* http_call answers by target (th_call.c) */
    size_t ncallees, ccallees;
    struct th_call **calls;    /* every http_call made */
    size_t ncalls, ccalls;

    th_log *logs;
    size_t nlogs, clogs;
    bool echo;
    unsigned violations;
};

/* ---- shared helpers ---- */
void *th_xcalloc(size_t n, size_t size);
char *th_xstrdup(const char *s);
char *th_xmemdup(const char *p, size_t n); /* NUL-terminated copy */
void *th_grow(void *p, size_t *cap, size_t need, size_t size);
int th_fail(gw_th *th, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* logging (th_log.c) */
char *th_vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void th_log_add(gw_th *th, int level, const char *filter, const gw_req *r, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));
void th_violation(gw_th *th, const gw_req *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void th_note(gw_th *th, const gw_req *r, int level, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void th_metrics_fill(gw_host *h); /* and th_log_fill */
void th_log_fill(gw_host *h);
void th_metrics_free(gw_th *th);
void th_logs_free(gw_th *th);

/* clock and store (th_store.c) */
uint64_t th_clock_now(void);
void th_clock_set(uint64_t now);
void th_clock_reset(void);
void th_store_fill(gw_host *h);
void th_store_free(gw_th *th);
void th_auto_pending(gw_th *th);

/* outbound calls (th_call.c) */
typedef struct th_callee th_callee;
typedef struct th_call th_call;
void th_call_fill(gw_host *h);
void th_call_free(gw_th *th);
void th_call_deliver(th_call *k);
th_op *th_enqueue(gw_req *r); /* a callback queued like a store callback (th_store.c) */

/* requests (th_request.c) */
int th_parse_header_lines(th_hdrs *h, const char *text); /* "Name: value\n..." */
int th_value_set(gw_req *r, const char *key, const char *value, size_t len); /* host->req_set */
bool th_value_get(const gw_req *r, const char *key, gw_strv *out);            /* host->req_get */
void th_request_free(gw_req *r);
/* th_settings.c: the gateway's settings-table checks (core/config/conf_settings.c) applied by the test host. */
int th_settings_entry(gw_th *th, gw_filter *f);         /* check f->doc, fill f->settings; -1 + th->error */
bool th_settings_per_route(const gw_filter *f);          /* the table has GW_SET_ROUTE keys */
int th_settings_route_check(gw_th *th, const gw_filter *f, const gw_yaml_node *conf);
void *th_settings_route_conf(gw_th *th, const gw_filter *f, const gw_yaml_node *conf); /* merged copy */
void th_route_conf_free(gw_filter *f, void *rc);         /* route_destroy, or the merged copy */
void th_settings_fill(gw_host *h);

/* the phase engine (th_engine.c) */
extern const char *const th_stage_names[]; /* by TH_* stage: the phase names filters and logs see */
const char *th_status_title(int status);
const char *th_fname(const gw_req *r); /* the filter a call is made for, "?" outside one */
void th_set_body(gw_req *r, const char *body, size_t len);
char *th_error_json(const gw_req *r, int status, const char *message); /* cJSON_free it */
void th_on_result(gw_req *r, gw_result res); /* a phase call's result, direct or through resume */
void th_drive(gw_req *r);                    /* runs the request until it waits or is done */
void th_request_end(gw_req *r);              /* timers off, cleanups, per-request memory freed */

/* routing (th_route.c) */
int th_route_request(gw_req *r); /* 0, or the status the host answers with */
void *th_route_conf(const gw_req *r, const gw_filter *f);

/* the request-bound host table members and timers (th_host_req.c) */
void th_request_fill(gw_host *h);
void *th_req_alloc(gw_req *r, size_t n); /* host->alloc */
void th_timers_fire_due(gw_th *th, uint64_t until);

/* th_body.c */
void th_body_fill(gw_host *h);

/* th_abi12.c: the ABI 1.2 members; shared blocks live while any test host does. */
void th_abi12_fill(gw_host *h);
void th_shared_free_all(void);
void th_body_framing(gw_req *r);
bool th_body_too_large(const gw_req *r);
gw_result th_body_request(gw_req *r);
gw_result th_body_response(gw_req *r);
void th_body_free(gw_req *r);

#endif
