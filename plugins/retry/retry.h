/* retry.h - internals shared by the files of the filter "retry": retry.c (settings, lifecycle, phases),
 * rt_policy.c (which outcomes may be retried, the backoff and its jitter) and rt_budget.c (the retry budget
 * over recent requests). Not part of any public interface. */
#ifndef GW_RETRY_H
#define GW_RETRY_H

#include <gw/filter.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_NAME "retry"
#define RT_MAX_RETRIES 15   /* the core makes at most 16 attempts per request */
#define RT_MAX_WINDOW_S 60  /* budget window: at most 60 one-second slots */
#define RT_SVC_NAME_MAX 128 /* service names longer than this share the "other" budget */

/* The settings, filled by the host from the table in retry.c: the pipeline's, and per route a copy merged
 * over them (route_conf). */
typedef struct {
    int64_t max_retries;
    int64_t initial_delay_ms;
    int64_t max_delay_ms;
    double multiplier;
    double jitter;
    gw_list retry_on;          /* const char *: status codes, checked by config_check */
    gw_list methods;           /* const char *: methods retried after the request reached the upstream */
    bool retry_non_idempotent; /* any method may be retried after it was sent */
    uint64_t max_replay_body;  /* bytes kept for replay (Content-Length up to this) */
    uint64_t deadline_ms;      /* whole request: no retry starts past start + deadline; 0 = none */
    bool budget;
    double budget_ratio;
    uint64_t budget_window_ms;
    int64_t budget_min_per_second;
} rt_conf;

/* One second of one service on one worker. Only the owning worker writes; the deciding worker reads every
 * worker's slots (relaxed atomics: a count read while it changes is off by one at most). */
typedef struct {
    _Atomic uint64_t sec; /* monotonic second + 1 this slot counts; 0 = never used */
    _Atomic uint32_t requests, retries;
} rt_slot;

typedef struct {
    uint64_t rng;       /* xorshift64* state, never 0 */
    uint64_t warned_ms; /* last budget warning logged by this worker */
    rt_slot slots[];    /* nsvc * nwin */
} rt_worker;

typedef struct {
    unsigned n;
    _Atomic(rt_worker *) w[]; /* set by each worker's worker_init, freed with the instance */
} rt_workers;

typedef struct {
    const gw_host *h;
    gw_filter *self;
    const rt_conf *s;         /* the pipeline's settings (host->settings) */
    bool has_sent, has_start; /* ABI 1.2 members present */
    size_t nsvc;              /* configured services + 1 ("other": names not known at create) */
    const char **svc_names;   /* nsvc - 1 names, the host's strings */
    uint32_t *svc_hash;       /* open addressing over svc_names: index + 1, 0 = empty */
    size_t hash_size;         /* power of two */
    unsigned nwin;            /* budget window in one-second slots */
    gw_metric *m_retries, *m_budget, *m_exhausted;
    _Atomic(rt_workers *) workers;
} rt_inst;

/* Per request (req_state_size). */
typedef struct {
    bool active;      /* a proxied request the filter looks after */
    unsigned retries; /* retries started (counted when the attempt begins) */
    bool pending;     /* a retry was decided; the next upstream_request is it */
    int svc;          /* index in the budget tables */
    uint64_t start_us;
    rt_worker *w;
} rt_state;

/* rt_policy.c */
bool rt_list_has(const gw_list *l, const char *s, size_t n);
int rt_check_conf(const gw_host *h, const gw_conf *conf, char *err, size_t errlen);
bool rt_status_retriable(const rt_conf *rc, int status);
/* The delay before retry number `k` (0 for the first): initial * multiplier^k capped at max_delay, then
 * moved by up to +/- jitter of itself, uniformly, within [0, max_delay]. */
uint64_t rt_delay_ms(const rt_conf *rc, unsigned k, uint64_t *rng);
uint64_t rt_rng_next(uint64_t *rng);
uint64_t rt_rng_seed(unsigned worker, const void *salt);

/* rt_budget.c */
int rt_services_init(rt_inst *in);
int rt_service_index(const rt_inst *in, gw_strv name);
void rt_budget_count_request(const rt_inst *in, rt_worker *w, int svc, uint64_t now_ms);
/* May a retry for service svc start now (ratio of the window's requests, or the per-second floor)? */
bool rt_budget_allows(const rt_inst *in, int svc, uint64_t now_ms);
void rt_budget_count_retry(const rt_inst *in, rt_worker *w, int svc, uint64_t now_ms);

#endif
