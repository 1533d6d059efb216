/* breaker.h - internals shared by the files of the filter "breaker": breaker.c (settings, lifecycle),
 * cb_state.c (the state machine on the shared blocks), cb_phase.c (admission and outcomes per attempt) and
 * cb_admin.c (the /admin/circuit-breakers endpoints). Not part of any public interface. */
#ifndef GW_BREAKER_H
#define GW_BREAKER_H

#include <gw/filter.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_NAME "breaker"
#define CB_ADMIN_PATH "/admin/circuit-breakers"
#define CB_MAX_PROBES 1000         /* half_open_max_requests upper bound (fits the probe field of the word) */
#define CB_MAX_COUNT 1000000       /* max_failures, success_threshold upper bound */
#define CB_BLOCK_MAGIC 0x43427631u /* "CBv1": the layout of cb_block */

/* Whether the host table has member m (older hosts have a shorter table or a NULL there). */
#define CB_HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

enum { CB_CLOSED = 0, CB_OPEN = 1, CB_HALF_OPEN = 2 };

/* The settings, filled by the host from the table in breaker.c: the pipeline's, and per route a copy
 * merged over them (route_conf). */
typedef struct {
    int64_t max_failures;
    uint64_t reset_ms;
    int64_t half_open_max;
    int64_t success_threshold;
    const gw_conf *services; /* per-service overrides (a mapping), NULL when absent */
} cb_conf;

/* The limits one breaker works with. */
typedef struct {
    uint32_t max_failures, half_open_max, success_threshold;
    uint64_t reset_ms;
} cb_limits;

/* One service's breaker, process-wide (host->shared_block "svc:<name>"): every worker and every later
 * generation use the same block. `word` packs the state, the number of half-open probes in flight and a
 * transition sequence, so a transition is one compare-and-swap and happens once; a probe slot or an
 * outcome that belongs to an earlier sequence changes nothing. `until` packs the sequence of the open period
 * it belongs to (low 20 bits) with the monotonic ms at which it may half-open. */
typedef struct {
    uint32_t magic;
    _Atomic uint64_t word;                 /* seq << 32 | probes << 2 | state */
    _Atomic uint64_t until;                /* (seq & 0xfffff) << 44 | due ms (44 bits) */
    _Atomic uint32_t failures;             /* consecutive failures (a success resets) */
    _Atomic uint32_t successes;            /* consecutive successes (a failure resets) */
    _Atomic uint64_t last_failure_unix_ms; /* 0: never */
    _Atomic uint64_t trips;
    atomic_bool gauge_init; /* the state gauge got its +1 for this process */
    atomic_bool magic_set;
} cb_block;

#define CB_W_STATE(w) ((unsigned)((w)&3u))
#define CB_W_PROBES(w) ((unsigned)(((w) >> 2) & 0xffffu))
#define CB_W_SEQ(w) ((uint32_t)((w) >> 32))
#define CB_W_MAKE(seq, probes, state)                                                                        \
    (((uint64_t)(seq) << 32) | ((uint64_t)(probes) << 2) | (uint64_t)(state))

struct cb_inst;

typedef struct {
    const char *name; /* host->service_name's string */
    size_t len;
    cb_block *b;
    cb_limits lim; /* the pipeline's settings with the service's overrides */
    struct cb_inst *in;
} cb_svc;

typedef struct cb_inst {
    const gw_host *h;
    gw_filter *self;
    const cb_conf *s;
    cb_svc *svc;
    size_t nsvc;
    uint32_t *index; /* open addressing over svc (index + 1; 0 = empty), nindex a power of two */
    size_t nindex;
    gw_metric *m_state, *m_trips;
    bool own_blocks; /* no host->shared_block: blocks calloc'ed here, freed in destroy */
} cb_inst;

/* Per request (req_state_size); also the on_cleanup argument. */
typedef struct {
    cb_svc *svc;
    cb_limits lim;
    uint32_t seq;  /* the sequence the current attempt was admitted in */
    bool admitted; /* the current attempt was admitted and its outcome not recorded yet */
    bool probe;    /* ... and holds a half-open probe slot */
    bool refused;  /* this filter answered 503: no attempt of ours to record */
    bool cleanup_set;
} cb_state;

/* What admission decided. */
typedef struct {
    bool allowed;
    bool probe;
    uint32_t seq;
    unsigned state;         /* when refused: CB_OPEN or CB_HALF_OPEN */
    uint64_t retry_after_s; /* when refused */
} cb_admit;

/* cb_state.c */
double cb_gauge_value(unsigned state);
const char *cb_state_name(unsigned state);
void cb_try_admit(cb_svc *s, const cb_limits *lim, gw_req *req, cb_admit *out);
/* The outcome of an attempt admitted in `seq` (probe: it holds a slot, which this frees). why: NULL for a
 * success, else "upstream 503", "connect", ... */
void cb_record(cb_svc *s, const cb_limits *lim, gw_req *req, uint32_t seq, bool probe, const char *why);
/* A probe ended without an outcome (client gone, error): frees its slot. */
void cb_release(cb_svc *s, uint32_t seq);
void cb_reset(cb_svc *s, gw_req *req);
/* Moves an OPEN breaker whose timeout passed to HALF_OPEN; returns the word after. */
uint64_t cb_refresh(cb_svc *s, gw_req *req);

/* cb_phase.c */
gw_result cb_on_request(void *inst, void *route_conf, void *state, gw_req *req);
gw_result cb_on_upstream_request(void *inst, void *route_conf, void *state, gw_req *req);
gw_result cb_on_upstream_response(void *inst, void *route_conf, void *state, gw_req *req);

/* cb_admin.c */
gw_result cb_admin_endpoint(void *inst, void *route_conf, void *state, gw_req *req);

/* breaker.c */
cb_svc *cb_find(const cb_inst *in, const char *name, size_t len);

#endif
