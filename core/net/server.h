/* server.h - runtime objects of the core: the server (process-wide), workers (one thread each), client
 * connections and upstream connections. Private to core/. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "bufpool.h"
#include "config.h"
#include "generation.h"
#include "http.h"
#include "io.h"
#include "metrics.h"
#include "router.h"

struct event_base;
struct event;
struct evbuffer;
struct gw_listen;
struct gw_client_slot;

typedef struct gw_server gw_server;
typedef struct gw_worker gw_worker;
typedef struct gw_conn gw_conn;
typedef struct gw_upconn gw_upconn;
typedef struct gw_call gw_call;

/* Output above this stops reading from the other side until it drains below half of it. */
#define GW_HIGH_WATER (256u * 1024u)
/* Pipelined input is not read past this while a response is in progress. */
#define GW_READ_HIGH_WATER (64u * 1024u)

/* Resolved addresses of one target, shared read-only by all workers. */
typedef struct {
    const gw_target_conf *conf;
    const gw_service_conf *service;
    struct sockaddr_storage addrs[4];
    socklen_t addrlens[4];
    int naddrs;
    SSL_CTX *ssl_ctx; /* https targets */
    /* health, written by the main thread, read by anyone */
    _Atomic int health;              /* GW_HEALTH_* */
    _Atomic uint32_t last_rtt_us;    /* last check's response time */
    _Atomic int64_t last_check;      /* unix seconds, 0 = never */
    unsigned ok_streak, fail_streak; /* main thread */
    unsigned seen_ejections;         /* main thread: `ejections` when the checker last looked */
    bool ever_checked_ok;            /* main thread: some active check succeeded */
    /* why it is out (GW_DOWN_*), since when (unix seconds) and a detail: the HTTP status or errno of a
     * failed check, the count of a passive ejection */
    _Atomic int down_reason;
    _Atomic int down_detail;
    _Atomic int64_t down_since;
    /* passive health, written by the workers (core/proxy/passive.c) */
    _Atomic unsigned passive_fails; /* failed attempts in a row on live traffic */
    _Atomic int passive_last;       /* GW_PASSIVE_* of the latest */
    _Atomic int64_t retry_at_ms;    /* no active checks: monotonic ms from which one trial request goes */
    _Atomic unsigned ejections;     /* passive ejections so far */
} gw_target;

enum { GW_HEALTH_UNKNOWN = 0, GW_HEALTH_HEALTHY, GW_HEALTH_UNHEALTHY };
/* Why a target is out. */
enum {
    GW_DOWN_NONE = 0,
    GW_DOWN_NO_ADDRESS,
    GW_DOWN_CONNECT,
    GW_DOWN_TIMEOUT,
    GW_DOWN_STATUS,
    GW_DOWN_CLOSED,
    GW_DOWN_PASSIVE
};
/* What a failed attempt on live traffic was. */
enum { GW_PASSIVE_CONNECT = 1, GW_PASSIVE_TIMEOUT, GW_PASSIVE_CLOSED };

struct gw_service {
    const gw_service_conf *conf;
    gw_target *targets;
    size_t ntargets;
};

struct gw_server {
    gw_config *cfg;  /* the configuration at start: listeners and workers come from it */
    gw_gen *gen;     /* main thread: the current generation */
    gw_gen *old[64]; /* main thread: replaced generations not yet released by every worker */
    size_t nold;
    unsigned gen_seq;
    char *exe_dir; /* directory of the gateway binary (filter search path) */
    char *config_path;
    atomic_uint reloads_ok, reloads_failed;
    atomic_uint cur_gen_id;
    int retire_fd;             /* eventfd: a worker released a generation */
    int reload_fd;             /* eventfd: POST /admin/reload queued a ticket (admin.c) */
    pthread_mutex_t reload_mu; /* guards reload_q: only that endpoint and the main thread take it */
    struct gw_reload_ticket *reload_q;
    gw_metrics *metrics;         /* process-wide: values survive reloads */
    struct gw_store *store;      /* process-wide: shared by all workers and generations */
    gw_metric *m_reloads;        /* gateway_config_reloads_total{result} */
    gw_metric *m_store_errors;   /* gateway_store_errors_total{op} */
    gw_metric *m_target_healthy; /* gateway_upstream_target_healthy{service,target}, set by the main thread */
    gw_metric *m_ejections;      /* gateway_upstream_passive_ejections_total{service} */
    gw_metric *m_backend_requests; /* gateway_backend_requests_total{service}: every upstream attempt */
    gw_metric *m_backend_errors;   /* gateway_backend_errors_total{service}: failed or status >= 500 */
    gw_metric *m_malformed;        /* gateway_http_malformed_requests_total{status}: heads refused unparsed */
    uint64_t started_mono_ms;      /* gw_mono_ms() at start: gateway_uptime_seconds */
    struct gw_connlimit *climit;   /* max_connections budget and per-client counts, shared by the workers */
    atomic_uint npaused;           /* workers that stopped accepting because the budget is full */
    SSL_CTX *listener_ssl;         /* one context for all TLS listeners (they share the cert in practice) */
    SSL_CTX **listener_ssl_ctx;    /* per listener (NULL for plain) */
    gw_worker *workers;
    unsigned nworkers;
    struct event_base *main_base;
    int64_t started_at; /* unix seconds */
    char *health_body;  /* preformatted /health JSON, store available */
    size_t health_len;
    char *health_body_down; /* ... and with the store unavailable */
    size_t health_len_down;
    atomic_bool draining;
    atomic_uint workers_done;
};

/* Idle connections to one target, owned by one worker, in one generation. */
struct gw_pool {
    gw_worker *w;
    gw_gen *gen;
    gw_target *target;
    gw_upconn *idle; /* LIFO: the most recently used connection is the warmest */
    unsigned nidle;
};

struct gw_worker {
    gw_server *srv;
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct gw_listen **listeners;
    size_t nlisteners;
    struct event *drain_ev;
    struct event *retire_ev;    /* releases replaced generations from the loop */
    int drain_fd;               /* eventfd written by the main thread: drain or adopt a new generation */
    gw_gen *gen;                /* current generation on this worker */
    _Atomic(gw_gen *) next_gen; /* set by the main thread on reload */
    gw_gen *retiring[64];       /* replaced here, requests still running on them */
    size_t nretiring;
    gw_conn *conns; /* all client connections (for drain) */
    unsigned nconns;
    unsigned peak_conns;     /* since the last trim */
    _Atomic bool wants_slot; /* paused for the budget and not yet woken: a closing connection wakes it */
    bool paused;             /* listeners off: the process-wide budget was full */
    bool fd_backoff;         /* listeners off for a moment: accept ran out of file descriptors */
    bool listening;
    struct event *backoff_ev; /* ends fd_backoff */
    struct event *trim_ev;    /* returns freed memory to the system once the worker is idle */
    struct event *sweep_ev;   /* periodic: summaries of rate-limited warnings */
    bool draining;
    uint64_t rng[2]; /* xorshift128+ state for request ids */
    int64_t date_sec;
    char date[40]; /* "Date: ...\r\n" cached per second */
    size_t date_len;
    gw_http_head scratch;   /* response heads are parsed here and consumed at once */
    struct evdns_base *dns; /* host->http_call's resolver, made on first use */
    /* spare per-request buffers (bufpool.h): parsed heads, paths, head copies, first arena chunks */
    gw_bufpool pool_head, pool_path, pool_copy, pool_chunk;
};

#define GW_REQUEST_ID_MAX 128 /* longest client X-Request-Id kept (longer ones are replaced) */

typedef struct gw_timer_rec gw_timer_rec;
typedef struct gw_cleanup_rec gw_cleanup_rec;

typedef struct {
    gw_http_field *v;
    size_t n, cap;
} gw_hlist;

enum { GW_PH_REQUEST = 0, GW_PH_UPSTREAM_REQUEST, GW_PH_UPSTREAM_RESPONSE, GW_PH_RESPONSE, GW_PH_LOG };

/* What filters see of a request (gw_req in the ABI). Lives in its connection, reset per request. */
struct gw_req {
    gw_conn *c;
    char *first; /* the connection's first chunk, reused by each request */
    char *arena; /* current chunk */
    size_t arena_used, arena_cap;
    void *chunks; /* extra chunks, freed at request end */
    unsigned char *state;
    gw_hlist hreq, hup, hresp; /* header views once a filter touched them (or phases need them) */
    bool hreq_on, hup_on, hresp_on;
    int phase;
    size_t next; /* filter position the phase continues at */
    bool waiting, in_call, active, early_set, staged;
    gw_result early; /* resume() called from inside the phase call */
    const gw_endpoint *endpoint;
    int own_status; /* response set by a filter (host->respond) */
    char *own_body;
    size_t own_len;
    gw_str resp_reason;
    gw_hlist hset; /* response fields filters set before the first upstream response */
    uint64_t retry_delay_ms;
    const char *attempt_error;
    gw_timer_rec *timers;
    gw_cleanup_rec *cleanups;
    struct gw_store_call *store_calls; /* pending store operations, cancelled if the request ends */
    struct gw_call *calls;             /* pending outbound calls (http_call.c), closed if the request ends */
    gw_filter *cur;       /* the filter whose code is running (store keys are namespaced by it) */
    struct gw_req_kv *kv; /* host->req_set values */
    uint64_t bytes_out;
    uint64_t started_ms;
};

typedef enum {
    GW_C_IDLE,    /* between requests (keep-alive timer) */
    GW_C_HEAD,    /* reading a request head (head deadline) */
    GW_C_BODY,    /* reading the request body into the buffer before contacting the upstream */
    GW_C_PROXY,   /* upstream in progress; streaming body and/or response */
    GW_C_TUNNEL,  /* after 101: bytes both ways */
    GW_C_CLOSING, /* flushing the last response, then close */
    GW_C_FILTER,  /* a filter phase is waiting (host->resume continues) */
} gw_conn_state;

struct gw_conn {
    gw_worker *w;
    gw_conn *next, *prev;
    gw_io *bev;
    struct event *timer;
    gw_conn_state state;
    bool tls;
    char peer_ip[48];
    size_t listener;
    struct gw_client_slot *client; /* this address's connection count, released at close */

    /* request head: a copy of the raw bytes, reused across requests on this connection */
    char *head_buf;
    size_t head_cap;
    size_t scan_from;   /* where the terminator search resumes */
    size_t parsed_upto; /* prefix length last validated without a terminator */
    gw_http_head *req;  /* allocated on the first request */
    char *path_buf;     /* normalised path + query */
    size_t path_cap;
    size_t path_len, path_total; /* path part, path + query */

    /* per request */
    gw_gen *gen; /* pinned at the request head; NULL between requests */
    struct gw_req rq;
    const gw_route_conf *route;
    char request_id[GW_REQUEST_ID_MAX + 1]; /* a client's (kept whole when sane) or generated (36) */
    uint64_t body_limit; /* 413 above; 0 = none */
    uint64_t body_want;  /* host->body_buffer: hold the whole body up to this, 413 above; 0 = not asked */
    uint64_t body_seen;  /* payload bytes read from the client */
    uint64_t body_left;  /* Content-Length bodies: bytes still to read */
    gw_chunked req_chunked;
    struct evbuffer *body;  /* buffered request body (kept for a replay on a stale pooled connection) */
    uint64_t body_start_ms; /* monotonic: the body began (a buffered body's deadline counts from here) */
    uint64_t body_last_ms;  /* body bytes last arrived (or reading resumed after a pause of ours) */
    uint64_t rate_start_ms; /* streamed body: the current rate window began */
    uint64_t rate_bytes;    /* streamed body: payload bytes in the current rate window */
    bool body_complete;     /* whole request body read */
    bool body_streaming;    /* body goes upstream as it arrives */
    bool keep_alive;        /* the client connection may carry another request after this one */
    bool peer_eof;          /* client half-closed after its request */
    bool pending_next;      /* a pipelined request is waiting in the input buffer */
    bool read_paused;       /* client reads stopped by back-pressure */
    bool got_bytes;         /* any byte of the current request head arrived */
    bool req_valid;         /* c->req holds the current request's parsed head */
    bool retry_pending;     /* the timer starts the next upstream attempt */
    bool wait_drain;        /* the next pipelined request waits for our output to drain */
    bool lingering;         /* closing: our side is shut, the client's leftovers are being read */
    bool for_endpoint;      /* the body is read for a registered endpoint, not proxied */
    bool resp_own;          /* the response being prepared is ours (not the upstream's) */
    int builtin;            /* 1 /health, 2 /info, 3 /services/health */
    int refuse;             /* 404 or 405: nothing serves the request, answered after the request phase */
    unsigned refuse_allow;  /* 405: the methods that are allowed, (1u << enum gw_http_method) bits */
    bool sent_continue;
    bool response_started; /* a response head went to the client */
    gw_upconn *up;
    const char *up_url;       /* target of the current/last attempt */
    gw_target *up_target;     /* ... and its target (a retry prefers another one) */
    bool up_counts;           /* a failure of this attempt counts for passive health (not a local one) */
    bool up_reused;           /* this attempt went out on a pooled connection */
    const char *fail_message; /* a failed attempt's answer, if filters let it stand */
    int wait_fail_status;     /* the upstream connection failed while upstream_request waited */
    const char *wait_fail_why;
    bool wait_fail_stale; /* ... and it was a stale pooled one: just connect again */
    unsigned attempts;
    bool attempt_queued; /* the current attempt's request head went to its connection */
    bool attempt_sent;   /* ... and that connection was established (host->attempt_sent) */
    int up_status;       /* status of the last upstream response head, 0 if none */
    uint64_t start_us;   /* when the request head was complete (monotonic) */
    /* response to the client */
    gw_body_kind resp_in; /* framing of the upstream's body */
    bool resp_chunk_out;  /* we chunk-encode towards the client */
    bool resp_close_out;  /* close-delimited towards the client */
    uint64_t resp_left;
    uint64_t resp_body_seen; /* payload bytes of the upstream's body so far (response_body offsets) */
    size_t resp_queued;      /* bytes of this response put in the client output (none sent while all there) */
    gw_chunked resp_chunked;
    int status;
};

struct gw_upconn {
    gw_pool *pool;
    gw_upconn *next; /* idle list */
    gw_io *bev;
    struct event *timer;
    gw_conn *owner;
    int addr_idx;
    bool connected;
    bool reused;
    bool got_bytes;    /* any response byte arrived for the current request */
    bool head_done;    /* response head parsed */
    bool req_sent;     /* the last request byte was written: the response deadline counts from here */
    bool keep_alive;   /* the response allows another request on this connection */
    bool read_paused;  /* reads stopped by back-pressure from the client */
    bool held;         /* reads stopped while response-side filters work on the head */
    bool shut_pending; /* tunnel: shut our write side once the output is flushed */
    size_t scan_from;
    size_t req_queued; /* head + buffered body queued at once; output that long = nothing was written */
    unsigned requests;
};

/* worker.c */
int gw_workers_start(gw_server *srv, char **err);
void gw_workers_wake(gw_server *srv); /* after setting draining or next_gen */
void gw_worker_request_end(gw_worker *w, gw_gen *g);
void gw_workers_join(gw_server *srv);
void gw_worker_conn_closed(gw_worker *w, struct gw_client_slot *client);
const char *gw_worker_date(gw_worker *w, size_t *len);
void gw_worker_request_id(gw_worker *w, char out[GW_REQUEST_ID_MAX + 1]);

/* builtin.c */
bool gw_builtin_handle(gw_conn *c);
int gw_builtin_prepare(gw_server *srv);

#endif
