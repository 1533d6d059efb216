/* ratelimit.h - internals shared by the files of the filter "ratelimit": ratelimit.c (settings, lifecycle,
 * the request phase), rl_local.c (local buckets), rl_answer.c (headers and refusals) and rl_addr.c
 * (addresses and trusted proxies). Not part of any public interface. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <gw/filter.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_IP_TEXT 48        /* canonical text of an address, NUL included */
#define RL_MAX_XFF_FIELDS 32 /* X-Forwarded-For fields looked at */
#define RL_KEY_MAX 320       /* a bucket's key in the store */
#define RL_LOCAL_SLOTS 4096  /* local fallback buckets per worker (power of two) */
#define RL_LOCAL_PROBE 8     /* slots looked at per lookup */
#define RL_LOCAL_KEY 112     /* longer keys are kept by their hash */

enum { RL_HDR_LEGACY = 1, RL_HDR_IETF = 2 };

typedef struct {
    uint8_t a[16]; /* IPv6, or IPv4-mapped IPv6 */
} rl_ip;

typedef struct {
    rl_ip net;
    unsigned bits; /* prefix length in the 128-bit form */
} rl_cidr;

/* The settings, filled by the host from the table in ratelimit.c: the pipeline's, and per route a copy
 * merged over them (route_conf). */
typedef struct {
    double rpm;
    int64_t burst;
    gw_list trusted; /* gw_cidr */
    int headers;     /* index in header_names (ratelimit.c) */
    int on_error;    /* RL_ERR_* */
    uint64_t store_timeout_ms;
    gw_list exempt;   /* const char *: normalised path prefixes */
    bool disabled;    /* per route only */
    bool limit_admin; /* also limit requests with admin.user set */
} rl_conf;

typedef struct {
    char key[RL_LOCAL_KEY];
    uint8_t used;
    double tokens;
    uint64_t last_ms, expires_ms;
} rl_slot;

typedef struct {
    bool failing;         /* this worker's view of the store */
    bool probing;         /* a request is asking the store while failing */
    uint64_t retry_at_ms; /* now_ms() when the next probe may go */
    rl_slot slots[RL_LOCAL_SLOTS];
} rl_worker;

typedef struct {
    unsigned n;
    rl_worker *w[];
} rl_workers;

typedef struct {
    const gw_host *h;
    gw_filter *self;
    const rl_conf *s; /* the host's (host->settings) */
    rl_cidr *trusted; /* s->trusted in the form rl_client_ip matches against */
    size_t ntrusted;
    unsigned headers; /* RL_HDR_* bits */
    gw_metric *m_limited, *m_fallback;
    _Atomic(rl_workers *) workers;
    atomic_bool store_failing; /* instance-wide, for logging each change once */
} rl_inst;

/* Per request (req_state_size): also the argument of the store and timer callbacks, which the host drops
 * or cancels when the request ends. */
typedef struct {
    rl_inst *in;
    gw_req *req;
    rl_worker *w;
    gw_timer *timer;
    bool waiting, probe, cleanup_set;
    double cap, rate;
    char key[RL_KEY_MAX];
} rl_state;

/* rl_local.c */
uint64_t rl_fnv1a(const char *s, size_t n);
/* One token from the worker's local bucket for key, as the store would take it. */
void rl_local_take(rl_worker *w, const char *key, double cap, double rate, uint64_t now,
                   gw_bucket_result *br);

/* rl_answer.c */
void rl_set_header_u64(const gw_host *h, gw_req *req, const char *name, uint64_t v);
gw_result rl_respond_json(const rl_inst *in, gw_req *req, int status, const char *error, const char *message);
gw_result rl_verdict(rl_inst *in, gw_req *req, double cap, double rate, const gw_bucket_result *br);

/* rl_addr.c */
bool rl_ip_parse(const char *s, size_t n, rl_ip *out);
bool rl_ip_is_v4(const rl_ip *ip);
void rl_ip_format(const rl_ip *ip, char out[RL_IP_TEXT]);
bool rl_cidr_match(const rl_cidr *list, size_t n, const rl_ip *ip);
bool rl_client_ip(const gw_host *h, const gw_req *req, const rl_cidr *trusted, size_t ntrusted, rl_ip *out);
bool rl_strncaseeq(const char *a, const char *b, size_t n);

#endif
