/* gw/filter.h - the gateway filter ABI: what a filter exports (its descriptor) and what the host hands it
 * (the host API table). Self-contained: standard headers only, every gateway type opaque.
 *
 * Versioning rules
 *   - GW_ABI_MAJOR changes only when an existing member changes meaning, type or position. The host refuses
 *     a filter whose major differs from its own.
 *   - GW_ABI_MINOR grows when members are appended (to the descriptor, the host table or an enum). The host
 *     refuses a filter built for a newer minor than its own (it may rely on members the host lacks); a filter
 *     built for an older minor is accepted, and the host reads only the descriptor bytes `struct_size`
 *     covers. Filters check `host->struct_size` (or a NULL member) before using anything appended later.
 *   - Members are never removed or reordered; reserved slots are spent before the struct grows.
 *
 * Threads: the gateway runs N workers, one event loop each. A filter instance is shared by all workers;
 * per-request calls for one request always run on the worker that owns it, never concurrently with
 * each other. Anything an instance shares between requests must be per worker (see worker_init) or
 * atomic. Nothing in a phase may block: no sleeping, no synchronous network or disk I/O. */
#ifndef GW_FILTER_H
#define GW_FILTER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GW_ABI_MAJOR 1
#define GW_ABI_MINOR 2

/* The one symbol a filter exports: `const gw_filter_desc gw_filter_descriptor = {...};` */
#define GW_FILTER_SYMBOL "gw_filter_descriptor"
#if defined(__GNUC__)
#define GW_FILTER_EXPORT __attribute__((visibility("default")))
#else
#define GW_FILTER_EXPORT
#endif

typedef struct gw_req gw_req;           /* one request, valid from the request phase to the end of log */
typedef struct gw_filter gw_filter;     /* the host's handle for one configured filter instance */
typedef struct gw_conf gw_conf;         /* a read-only node of the YAML configuration */
typedef struct gw_timer gw_timer;       /* a one-shot timer bound to a request */
typedef struct gw_metric gw_metric;     /* a registered metric family */

typedef struct {
    const char *p; /* not NUL-terminated unless stated */
    size_t n;
} gw_strv;

/* What a phase returns. */
typedef enum {
    GW_CONTINUE = 0, /* go on to the next filter / the next step */
    GW_RESPOND = 1,  /* the filter called host->respond(): skip the rest of this phase and the upstream */
    GW_WAIT = 2,     /* async work pending: the filter will call host->resume() later, from the same worker */
    GW_ERROR = 3,    /* internal failure: the host answers 500 (or cuts the response if it has started) */
    GW_RETRY = 4,    /* upstream_response only: discard this attempt and make another, after the delay set
                        with host->retry_after(); the host refuses (treats as CONTINUE) when the request
                        body cannot be replayed */
} gw_result;

/* Which header set a header call works on. */
typedef enum {
    GW_HDR_REQUEST = 0,  /* the client's request; changes made in the request phase go upstream */
    GW_HDR_UPSTREAM = 1, /* the request to the upstream, per attempt (upstream_request phase) */
    GW_HDR_RESPONSE = 2, /* the response to the client (response phases, or before host->respond()) */
} gw_hdr_set;

enum { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

enum { GW_CONF_NONE = 0, GW_CONF_SCALAR = 1, GW_CONF_SEQ = 2, GW_CONF_MAP = 3 };

/* GW_METRIC_SUMMARY (ABI 1.2): metric_observe values; `buckets` passed to metric_register are the quantiles
 * to report (ascending, each in (0, 1)). The host keeps a sketch of bounded relative error per worker over a
 * sliding window of recent time and merges the workers at scrape; _sum and _count cover all time. */
enum { GW_METRIC_COUNTER = 0, GW_METRIC_GAUGE = 1, GW_METRIC_HISTOGRAM = 2, GW_METRIC_SUMMARY = 3 };

/* Phase callback. `inst` is what create() returned; `route_conf` what route_create() returned for the
 * request's route (NULL when the route has no settings for this filter), or for a filter with a settings
 * table and no route_create the struct filled for the route (never NULL; see gw_filter_desc.settings);
 * `state` the filter's zeroed
 * per-request state of desc->req_state_size bytes (NULL when 0). */
typedef gw_result (*gw_phase_fn)(void *inst, void *route_conf, void *state, gw_req *req);

/* Completion of an async store call; runs on the worker that issued it. status: 0 = done, 1 = not found,
 * < 0 = store error (unavailable, timeout). The value is valid only during the call. */
typedef void (*gw_store_cb)(void *arg, int status, const char *value, size_t len);

/* Token-bucket result (see host->store_take). */
typedef struct {
    bool allowed;
    double remaining;     /* tokens left after this request */
    uint64_t reset_ms;    /* unix ms when the bucket is full again */
    uint64_t retry_ms;    /* when refused: ms until one token is back */
} gw_bucket_result;
typedef void (*gw_bucket_cb)(void *arg, int status, const gw_bucket_result *r);

/* A prefix listing (host->store_list): n records, keys without the filter's namespace; valid during the
 * call only. */
typedef void (*gw_store_list_cb)(void *arg, int status, size_t n, const gw_strv *keys, const gw_strv *values);

typedef struct gw_host gw_host;

/* ---------------------------------------------------------------------------------------------------
 * ABI 1.1: settings as data. A filter may describe its settings as a table (gw_filter_desc.settings); the
 * host then checks the pipeline entry against it (unknown key, wrong type, out of range, bad enum name:
 * refused with "file:line:col: <filter>.<key>: ..." naming what is allowed), fills a struct of
 * settings_size bytes once per instance (defaults first), and frees what it allocated for it when the
 * instance goes away. The filter reads the struct with host->settings(). */
typedef enum {
    GW_SET_END = 0,  /* (name NULL) ends the table */
    GW_SET_INT,      /* int64_t */
    GW_SET_NUMBER,   /* double */
    GW_SET_BOOL,     /* bool: true/false (also yes/no, on/off) */
    GW_SET_DURATION, /* uint64_t milliseconds: "250ms", "10s", "2m", "1h", or a bare number of seconds */
    GW_SET_SIZE,     /* uint64_t bytes: "512", "64k", "64KiB", "10m", "1g" (binary units) */
    GW_SET_ENUM,     /* int: the index in `names` of the name given */
    GW_SET_STRING,   /* const char * (NUL-terminated, host-owned; NULL when unset and no default) */
    GW_SET_STRINGS,  /* gw_list of const char * (a YAML sequence of scalars) */
    GW_SET_CIDRS,    /* gw_list of gw_cidr ("10.0.0.0/8", "::1", "192.168.1.7": a host without /bits) */
    GW_SET_PREFIXES, /* gw_list of const char *: path prefixes, each starting with '/', normalised (no
                        trailing '/', no dot segments), matched at a '/' boundary by the filter */
    GW_SET_RAW,      /* const gw_conf *: the node itself (NULL when absent); the filter reads it */
} gw_setting_type;

/* gw_setting.flags */
enum {
    GW_SET_REQUIRED = 1u << 0, /* must be present */
    GW_SET_ROUTE = 1u << 1,    /* may also be set per route (routes[].filters.<name>.<key>) */
    GW_SET_SECRET = 1u << 2,   /* never printed (--describe-filter shows whether it has a default only) */
};

typedef struct {
    const void *v; /* n items: const char *[n] (STRINGS, PREFIXES) or gw_cidr[n] (CIDRS) */
    size_t n;
} gw_list;

typedef struct {
    uint8_t family; /* 4 or 6 */
    uint8_t bits;   /* prefix length: 0..32 or 0..128 */
    uint8_t addr[16]; /* network byte order; IPv4 in the first 4 bytes; bits past the prefix are zero */
} gw_cidr;

typedef struct gw_setting {
    const char *name;  /* the YAML key; NULL ends the table */
    int type;          /* gw_setting_type */
    size_t offset;     /* offsetof(<your settings struct>, <field>) */
    const char *def;   /* default, written as it would be in YAML ("10", "30s", "64k", "true", one of
                          `names`; lists: items separated by ','); NULL: zero / false / NULL / empty */
    double min, max;   /* INT, NUMBER, DURATION (ms), SIZE (bytes): allowed range, checked when min < max;
                          STRINGS, CIDRS, PREFIXES: number of items, likewise */
    const char *const *names; /* ENUM: the allowed names, NULL-terminated */
    unsigned flags;    /* GW_SET_* */
    const char *help;  /* one line, for --describe-filter and docs/filters.md */
} gw_setting;

/* ABI 1.1: a piece of a request or response body, for the body phases. */
typedef struct {
    gw_strv data;    /* this piece (decoded payload: no chunk framing); may be empty when only `last` is news */
    uint64_t offset; /* payload bytes of this body before this piece */
    bool last;       /* the body ends with this piece */
} gw_body_chunk;

/* Body phase callback (ABI 1.1): sees the body as it streams, read-only; requests and responses without a
 * body do not run it. Returns CONTINUE (pass it on), RESPOND (request_body only, and only while nothing of
 * the request went upstream, i.e. the body is still being buffered: the response set with host->respond()
 * is sent and the upstream is not contacted; later it counts as ERROR), or ERROR (request_body: the
 * upstream connection, if any, is closed and the client gets a 500, or is cut when its response has begun;
 * response_body: a 500 if none of the response left yet, else both connections are cut). The client
 * connection closes after a stopped request body. WAIT (and RETRY) count as ERROR in body phases. */
typedef gw_result (*gw_body_fn)(void *inst, void *route_conf, void *state, gw_req *req,
                                const gw_body_chunk *chunk);

/* ABI 1.1: store_incr result. status as gw_store_cb (< 0 also when the key holds something that is not an
 * integer, or the addition would overflow); value the counter after the addition (0 when status < 0). */
/* The longest TTL a store call takes (100 years in ms); a larger one makes the call fail with -1, on
 * every store alike, instead of overflowing a clock. */
#define GW_STORE_TTL_MAX_MS 3153600000000ull

typedef void (*gw_incr_cb)(void *arg, int status, int64_t value);

/* ABI 1.1: an outbound HTTP call (host->http_call) through the gateway's own upstream client and pools. */
typedef struct {
    const char *service;   /* a configured service by name (its targets, round-robin, health, pools) ... */
    const char *url;       /* ... or, when service is NULL, an absolute http:// or https:// URL */
    const char *method;    /* NULL = "GET" */
    const char *path;      /* path and query; NULL = "/" (service) or the URL's own path */
    const gw_strv *headers; /* nheaders (name, value) pairs: 2 * nheaders items; Host and framing fields are
                              the host's */
    size_t nheaders;
    const char *body;      /* sent with Content-Length; NULL/0 = no body */
    size_t body_len;
    uint64_t timeout_ms;   /* the whole call, connect included; 0 = the gateway's upstream_response timeout */
    uint64_t max_body;     /* response bodies over this fail the call (GW_CALL_TOO_LARGE); 0 = 1 MiB */
} gw_http_call;

typedef struct {
    int status;             /* the upstream's HTTP status */
    const gw_strv *headers; /* nheaders (name, value) pairs */
    size_t nheaders;
    gw_strv body;           /* the whole response body (de-chunked) */
} gw_http_response;

/* Outbound call failures (the `status` argument of gw_http_call_cb). */
enum {
    GW_CALL_OK = 0,
    GW_CALL_CONNECT = -1,   /* no connection (refused, unreachable, no healthy target, DNS) */
    GW_CALL_TIMEOUT = -2,
    GW_CALL_INVALID = -3,   /* the upstream's answer was not valid HTTP/1.1 */
    GW_CALL_TOO_LARGE = -4, /* response body over max_body */
    GW_CALL_CLOSED = -5,    /* the connection closed before a complete response */
};
/* Runs later on the calling worker (never inside the call); resp (and all it points to) is valid during the
 * callback only, and NULL unless status is GW_CALL_OK. Dropped, never called, when its request ends first. */
typedef void (*gw_http_call_cb)(void *arg, int status, const gw_http_response *resp);

/* ---------------------------------------------------------------------------------------------------
 * The descriptor a filter exports. Designated initialisers, please: members are appended over time. */
typedef struct gw_filter_desc {
    uint16_t abi_major;   /* GW_ABI_MAJOR the filter was built against */
    uint16_t abi_minor;   /* GW_ABI_MINOR the filter was built against */
    uint32_t struct_size; /* sizeof(gw_filter_desc) the filter was built with */
    const char *name;     /* short identifier: [a-z0-9_-]+, the name used in the pipeline */
    const char *version;  /* the filter's own version, e.g. "1.2.0" */
    const char *description;

    /* Main thread, before anything changes (gateway -t, start, each reload). `conf` is the filter's
     * pipeline entry (a mapping; the keys name/enabled are the host's). Pure: no side effects, no I/O
     * beyond reading files the settings name. Returns 0, or -1 with a message in err ("file:line:col: ..."
     * via host->conf_error()). NULL = any settings accepted. */
    int (*config_check)(const gw_host *host, const gw_conf *conf, char *err, size_t errlen);

    /* Main thread, once per configured instance (each reload makes new instances). Register endpoints and
     * metrics here. Returns the instance (any non-NULL pointer) or NULL with a message in err. */
    void *(*create)(const gw_host *host, gw_filter *self, const gw_conf *conf, char *err, size_t errlen);

    /* On worker `worker` (0..workers-1) before its first request with this instance, and after its last.
     * For per-worker state (caches, connections). worker_init returns 0 or -1 (the instance is unusable
     * on that worker: its requests get 500). NULL = nothing to do. */
    int (*worker_init)(void *inst, unsigned worker, unsigned workers);
    void (*worker_fini)(void *inst, unsigned worker);

    /* Main thread, after every worker ran worker_fini and the last request using the instance ended. */
    void (*destroy)(void *inst);

    /* Per-route settings (routes[].filters.<name>): checked and compiled once per generation on the main
     * thread; the result is passed to every phase for requests on that route. NULL = none supported. */
    int (*route_check)(const gw_host *host, void *inst, const gw_conf *conf, char *err, size_t errlen);
    void *(*route_create)(const gw_host *host, void *inst, const gw_conf *conf, char *err, size_t errlen);
    void (*route_destroy)(void *inst, void *route_conf);

    /* Phases; each NULL when unused. Request-side phases run in pipeline order, response-side phases
     * (upstream_response, response, log) in reverse order.
     *  request:           head received and routed (or matched a registered endpoint); body not read.
     *  upstream_request:  per attempt, before the request head goes to the chosen target.
     *  upstream_response: per attempt, the upstream's response head arrived (no body read yet), or the
     *                     attempt failed: then host->status() is 502 or 504 and host->attempt_error() says why.
     *                     A response found broken (e.g. its first chunk) before any byte of it reached the
     *                     client also fails its attempt, after this phase saw its head.
     *  response:          before the response head goes to the client (also for host->respond()).
     *  log:               after the last byte went out (or the client went away). Cannot change anything;
     *                     WAIT is not allowed here. */
    gw_phase_fn on_request;
    gw_phase_fn on_upstream_request;
    gw_phase_fn on_upstream_response;
    gw_phase_fn on_response;
    gw_phase_fn on_log;

    size_t req_state_size; /* bytes of zeroed per-request state the host keeps for this filter */

    /* --- ABI 1.1 (these took reserved slots: a 1.0 filter has them NULL) ---
     * settings: the settings table (NULL = the filter reads its YAML itself, as in 1.0); with a table the
     *   host checks the entry before config_check runs, fills a zeroed struct of settings_size bytes
     *   (host->settings() returns it), and, when create is NULL, that struct is the instance. For a route
     *   with settings for this filter (only keys flagged GW_SET_ROUTE are allowed there) the host fills a
     *   copy merged over the pipeline's; phases get it as route_conf, and get the pipeline's struct as
     *   route_conf on other routes (so route_conf is never NULL), unless the filter has route_create, whose
     *   result is used as before. route_check, if set, runs after the table's checks. */
    const gw_setting *settings;
    size_t settings_size;
    /* Body phases (NULL = unused; no cost then). request_body: pieces of the client's body in order, the
     * last one marked, before they go upstream (bodies up to limits.body_buffer, or what host->body_buffer
     * asked for, are complete before the upstream is contacted). response_body: pieces of the upstream's
     * body before they go to the client, in reverse pipeline order. */
    gw_body_fn on_request_body;
    gw_body_fn on_response_body;

    /* --- ABI 1.2 (took a reserved slot: NULL in older filters) ---
     * reopen: main thread, on SIGUSR1 (log rotation), for every instance of the running generation: reopen
     *   the files the instance writes. Must not block for long. NULL = nothing to do. */
    void (*reopen)(void *inst);

    void *reserved[3]; /* must be NULL */
} gw_filter_desc;

/* ---------------------------------------------------------------------------------------------------
 * The host API table. Every pointer may be NULL when the host lacks the feature; members past
 * struct_size do not exist. All request-bound calls must come from the worker that owns the request. */
struct gw_host {
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;

    /* --- logging: one line, prefixed "[filter:name]"; req may be NULL (adds the request id if not) --- */
    void (*log)(gw_filter *self, const gw_req *req, int level, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

    /* --- configuration nodes (read-only; valid until destroy / route_destroy) --- */
    /* NULL if absent, null (`key:`, `~`, `null`) or `map` is not a mapping. */
    const gw_conf *(*conf_get)(const gw_conf *map, const char *key);
    int (*conf_kind)(const gw_conf *node);                            /* GW_CONF_* (NULL -> NONE) */
    size_t (*conf_len)(const gw_conf *node);                          /* items of a seq/map */
    const gw_conf *(*conf_at)(const gw_conf *node, size_t i);         /* i-th item (map: value) */
    const char *(*conf_key_at)(const gw_conf *map, size_t i);         /* i-th key of a map */
    const char *(*conf_str)(const gw_conf *node);                     /* scalar text (NUL-terminated) */
    /* Typed readers: 0 = ok, -1 = wrong type/range (message in err with file:line:col). */
    int (*conf_int)(const gw_conf *n, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen);
    int (*conf_double)(const gw_conf *n, double *out, char *err, size_t errlen);
    int (*conf_bool)(const gw_conf *n, bool *out, char *err, size_t errlen);
    int (*conf_duration_ms)(const gw_conf *n, uint64_t *out, char *err, size_t errlen);
    /* Formats "file:line:col: <message>" for node n into err. Returns -1 (handy for `return`). */
    int (*conf_error)(const gw_conf *n, char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
    /* Rejects keys of map not listed in `known` (NULL-terminated); the host's own keys are allowed. */
    int (*conf_only)(const gw_conf *map, const char *const *known, char *err, size_t errlen);

    /* --- the request --- */
    gw_strv (*method)(const gw_req *req);
    gw_strv (*path)(const gw_req *req);       /* normalised path, without the query */
    gw_strv (*query)(const gw_req *req);      /* without '?', empty if none */
    gw_strv (*route)(const gw_req *req);      /* route name, or the endpoint path for registered endpoints */
    gw_strv (*service)(const gw_req *req);    /* service name, empty for endpoints */
    gw_strv (*client_ip)(const gw_req *req);  /* the socket peer */
    gw_strv (*request_id)(const gw_req *req);
    unsigned (*worker)(const gw_req *req);
    int (*status)(const gw_req *req);         /* response status once known, else 0 */
    uint64_t (*bytes_in)(const gw_req *req);  /* body bytes received from the client so far */
    uint64_t (*bytes_out)(const gw_req *req); /* body bytes sent to the client so far */
    unsigned (*attempts)(const gw_req *req);  /* upstream attempts made so far */
    const char *(*attempt_error)(const gw_req *req); /* NULL, "connect", "timeout", "closed", "invalid" */
    gw_strv (*upstream)(const gw_req *req);   /* target URL of the current/last attempt, empty if none */

    /* --- headers (names case-insensitive; values without CR/LF/NUL, else the call fails with -1) --- */
    bool (*header_get)(const gw_req *req, gw_hdr_set set, const char *name, gw_strv *value); /* first one */
    size_t (*header_count)(const gw_req *req, gw_hdr_set set);
    bool (*header_at)(const gw_req *req, gw_hdr_set set, size_t i, gw_strv *name, gw_strv *value);
    int (*header_set)(gw_req *req, gw_hdr_set set, const char *name, const char *value, size_t len);
    int (*header_add)(gw_req *req, gw_hdr_set set, const char *name, const char *value, size_t len);
    int (*header_remove)(gw_req *req, gw_hdr_set set, const char *name); /* all with that name */

    /* --- answering --- */
    /* Sets the response (status, body copied; Content-Type as given, none when NULL) and returns 0; the phase then
     * returns GW_RESPOND. Extra response headers: header_set(GW_HDR_RESPONSE) before or after. */
    int (*respond)(gw_req *req, int status, const char *content_type, const char *body, size_t len);
    /* The standard error shape {"error": <title for status>, "message": message, "request_id": ...}. */
    int (*respond_error)(gw_req *req, int status, const char *message);
    /* upstream_response: delay before the next attempt when the phase returns GW_RETRY. */
    void (*retry_after)(gw_req *req, uint64_t delay_ms);
    /* May the request be sent again (body fully buffered, nothing streamed yet)? */
    bool (*replayable)(const gw_req *req);

    /* --- memory and time --- */
    void *(*alloc)(gw_req *req, size_t n); /* freed when the request ends; NULL on exhaustion */
    uint64_t (*now_ms)(void);              /* monotonic milliseconds */
    uint64_t (*unix_ms)(void);             /* wall clock */

    /* --- async --- */
    /* Continues a request whose phase returned GW_WAIT, with the phase's final result. Must be called
     * exactly once, from the owning worker. The rest of the request may run before resume() returns, and
     * the request may be gone by then: touch nothing of it afterwards. Called from inside the phase call
     * (the async work finished at once), it takes effect when the phase returns GW_WAIT. */
    void (*resume)(gw_req *req, gw_result result);
    /* One-shot timer on the request's worker; cancelled automatically when the request ends. The handle
     * is invalid once its callback has started: cancel only timers that have not fired. */
    gw_timer *(*timer_start)(gw_req *req, uint64_t ms, void (*cb)(gw_req *req, void *arg), void *arg);
    void (*timer_cancel)(gw_timer *t);
    /* Runs when the request ends for any reason (client gone included), before its memory is freed:
     * the place to disarm async work that would otherwise call back into a dead request. */
    int (*on_cleanup)(gw_req *req, void (*cb)(void *arg), void *arg);

    /* --- endpoints and metrics: create() only --- */
    /* Serves METHOD ("GET", ...; "*" or NULL = any method) PATH (exact, or every path below it when prefix
     * is true) with `handler` as its request
     * phase. Endpoints go through the pipeline's request phase like any request. */
    int (*register_endpoint)(gw_filter *self, const char *method, const char *path, bool prefix,
                             gw_phase_fn handler);
    /* A metric family; label names NULL-terminated (may be NULL). Histogram buckets ascending. */
    gw_metric *(*metric_register)(gw_filter *self, int type, const char *name, const char *help,
                                  const char *const *labels, const double *buckets, size_t nbuckets);
    /* Label values in the order of the names; counters only grow. Cheap and per worker; safe in phases.
     * `req` may be NULL outside a request (then the call must come from a worker thread via worker_init
     * or from the main thread, and is slower). Registering the same name again (a reload creates new
     * instances) returns the existing family, whose values carry on; a different type or label set fails
     * with NULL. */
    void (*metric_add)(gw_metric *m, gw_req *req, const char *const *label_values, double v);
    void (*metric_set)(gw_metric *m, gw_req *req, const char *const *label_values, double v);
    void (*metric_observe)(gw_metric *m, gw_req *req, const char *const *label_values, double v);

    /* --- the store (embedded or Redis; same semantics on both). Keys are namespaced by the host per
     * filter. Callbacks run later on the calling worker, never inside the call. Return 0 if started.
     * A callback still pending when its request ends (client gone, error) is dropped, never called:
     * free what it would have freed in an on_cleanup callback. --- */
    int (*store_get)(gw_req *req, const char *key, gw_store_cb cb, void *arg);
    /* ttl 0 = persistent (at most GW_STORE_TTL_MAX_MS, else -1). cb may be NULL: fire and forget (the
     * write is not bound to the request and completes even if the request ends first; a failure goes
     * unreported). */
    int (*store_set)(gw_req *req, const char *key, const char *value, size_t len, uint64_t ttl_ms,
                     gw_store_cb cb, void *arg);
    int (*store_del)(gw_req *req, const char *key, gw_store_cb cb, void *arg);
    /* Atomic token bucket: refill `rate_per_s` continuously up to `capacity`, take `cost`; state expires
     * when idle. Exact across workers and (Redis) across gateway instances. */
    int (*store_take)(gw_req *req, const char *key, double capacity, double rate_per_s, double cost,
                      gw_bucket_cb cb, void *arg);

    /* --- request body and metrics exposition --- */
    /* Endpoint handlers: the complete request body, read by the host before the handler runs (bodies over
     * limits.body_buffer are refused with 413 first). Elsewhere: false (bodies stream). */
    bool (*body)(const gw_req *req, gw_strv *out);
    /* Every registered metric (all filters' and the gateway's own), merged over workers, rendered as
     * format 0 = Prometheus text format 0.0.4, 1 = JSON. The text lives in the request's memory. */
    int (*metrics_render)(gw_req *req, int format, gw_strv *out);
    /* Every value record (buckets excluded) whose key starts with `prefix`, in no particular order, in one
     * callback. For administrative listings, not for every request. */
    int (*store_list)(gw_req *req, const char *prefix, gw_store_list_cb cb, void *arg);

    /* --- values filters pass to each other about one request (never sent anywhere) ---
     * Conventional keys: "consumer.id", "consumer.name" (who the client is, e.g. from an API key),
     * "consumer.rate_limit" (requests per minute for that consumer, decimal), "admin.user" (the username
     * of a request that passed admin authentication, e.g. adminauth's). Setting a key again
     * replaces it; the value is copied. */
    int (*req_set)(gw_req *req, const char *key, const char *value, size_t len);
    bool (*req_get)(const gw_req *req, const char *key, gw_strv *out);

    /* --- ABI 1.1 (these took reserved slots: check host->abi_minor >= 1 or the member for NULL) --- */
    /* The settings struct the host filled from the filter's table (see gw_filter_desc.settings); valid
     * from before create() until destroy(). NULL for a filter without a table. */
    const void *(*settings)(gw_filter *self);
    /* Atomic counter: adds delta (may be negative) and returns the new value; a key that does not exist
     * starts at 0 and gets ttl_ms (0 = no expiry) on that first write only. Exact across workers and, on
     * Redis, across gateway instances (exact over the whole int64 range on both). Counters are not persisted
     * by the embedded store. cb is required; ttl_ms at most GW_STORE_TTL_MAX_MS, as for store_set. */
    int (*store_incr)(gw_req *req, const char *key, int64_t delta, uint64_t ttl_ms, gw_incr_cb cb, void *arg);
    /* An outbound HTTP call bound to the request (from any phase but log); 0 if started, -1 if it cannot
     * start (no callback, an unknown service, a URL that is not absolute http(s), a method that is not a
     * token, a path not starting with '/', a header name that is not a token or a value with CR/LF/NUL).
     * The call's strings are copied. Pair it with GW_WAIT and resume() from the callback. */
    int (*http_call)(gw_req *req, const gw_http_call *call, gw_http_call_cb cb, void *arg);
    /* Request phase: read the whole request body (up to max bytes; larger: 413) before the upstream is
     * contacted, so on_request_body sees all of it first. 0 if accepted, -1 too late (the body streams). */
    int (*body_buffer)(gw_req *req, uint64_t max);
    /* Typed reader for sizes ("64k", "10MiB", bare bytes), like conf_duration_ms. */
    int (*conf_size)(const gw_conf *n, uint64_t *out, char *err, size_t errlen);

    /* --- ABI 1.2 (took reserved slots: check host->abi_minor >= 2 or the member for NULL) --- */
    /* Process-lifetime memory shared by every instance of this filter (same descriptor name), across
     * reloads: the first call for a key returns `size` zeroed bytes, later calls with the same key (from
     * this or a later generation's instance) return the same block; NULL when size differs or memory runs
     * out. create() only. Never freed while the process runs, and a reload loads a new copy of the filter's
     * code: the block must hold no pointer into the filter's code or data (no function pointers, no string
     * literals). Workers share it: use atomics or a lock of your own inside it. */
    void *(*shared_block)(gw_filter *self, const char *key, size_t size);
    /* The configured services of the instance's generation in configuration order: the i-th name, NULL
     * past the end. From create() on, any thread; the string lives as long as the instance. */
    const char *(*service_name)(gw_filter *self, size_t i);
    /* upstream_response: whether any byte of this attempt's request was written to the upstream (false when
     * the attempt failed before sending: no connection, or a connect timeout). */
    bool (*attempt_sent)(const gw_req *req);
    /* The status of the last upstream response head received (0 when no attempt got one), whatever the
     * client is answered. */
    int (*upstream_status)(const gw_req *req);
    /* Monotonic microseconds, on the clock of now_ms; and when the request's head had been received. */
    uint64_t (*now_us)(void);
    uint64_t (*start_us)(const gw_req *req);

    void *reserved[5];
};

#ifdef __cplusplus
}
#endif

#endif
