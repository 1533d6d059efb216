/* cb_state.c - the breaker's state machine on its shared block (breaker.h, cb_block): admission, outcomes,
 * probe slots, reset. Lock-free: every transition is a compare-and-swap of the packed word that bumps the
 * sequence, so exactly one caller wins it, and that one logs it, moves the state gauge by the difference and
 * counts a trip. Outcomes and slots carry the sequence they were admitted in; a stale one changes nothing. */
#include "breaker.h"

#include <stdio.h>

#define UNTIL_MS_BITS 44
#define UNTIL_MS_MASK ((1ull << UNTIL_MS_BITS) - 1)
#define UNTIL_SEQ_MASK 0xfffffu
#define CAS_ROUNDS 10000 /* bounded loops; a CAS fails only when another worker moved the word */

double cb_gauge_value(unsigned state)
{
    return state == CB_CLOSED ? 1.0 : state == CB_HALF_OPEN ? 0.5 : 0.0;
}

const char *cb_state_name(unsigned state)
{
    return state == CB_CLOSED ? "closed" : state == CB_HALF_OPEN ? "half-open" : "open";
}

static uint64_t until_pack(uint32_t seq, uint64_t due_ms)
{
    return ((uint64_t)(seq & UNTIL_SEQ_MASK) << UNTIL_MS_BITS) | (due_ms & UNTIL_MS_MASK);
}

/* When the open period `seq` may half-open; false while its opener has not published it yet. */
static bool until_of(cb_block *b, uint32_t seq, uint64_t *due)
{
    uint64_t u = atomic_load(&b->until);
    if ((uint32_t)(u >> UNTIL_MS_BITS) != (seq & UNTIL_SEQ_MASK)) return false;
    *due = u & UNTIL_MS_MASK;
    return true;
}

/* The winner of a transition: log (once), gauge delta, trips. */
static void transitioned(cb_svc *s, gw_req *req, unsigned from, unsigned to, const char *reason)
{
    cb_inst *in = s->in;
    const gw_host *h = in->h;
    const char *lv[] = {s->name};
    if (in->m_state && from != to)
        h->metric_add(in->m_state, req, lv, cb_gauge_value(to) - cb_gauge_value(from));
    if (to == CB_OPEN) {
        atomic_fetch_add(&s->b->trips, 1);
        if (in->m_trips) h->metric_add(in->m_trips, req, lv, 1);
    }
    h->log(in->self, req, to == CB_OPEN ? GW_LOG_WARN : GW_LOG_INFO, "circuit breaker for %s: %s -> %s (%s)",
           s->name, cb_state_name(from), cb_state_name(to), reason);
}

static uint64_t ceil_s(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    return s ? s : 1;
}

void cb_try_admit(cb_svc *s, const cb_limits *lim, gw_req *req, cb_admit *out)
{
    cb_block *b = s->b;
    const gw_host *h = s->in->h;
    *out = (cb_admit){.allowed = false, .state = CB_HALF_OPEN, .retry_after_s = 1};
    uint64_t w = atomic_load(&b->word);
    for (int round = 0; round < CAS_ROUNDS; round++) {
        unsigned st = CB_W_STATE(w);
        uint32_t seq = CB_W_SEQ(w);
        if (st == CB_CLOSED) {
            *out = (cb_admit){.allowed = true, .seq = seq};
            return;
        }
        if (st == CB_OPEN) {
            uint64_t due, now = h->now_ms();
            if (!until_of(b, seq, &due)) { /* opened this instant */
                *out = (cb_admit){.state = CB_OPEN, .retry_after_s = ceil_s(lim->reset_ms)};
                return;
            }
            if (now < due) {
                *out = (cb_admit){.state = CB_OPEN, .retry_after_s = ceil_s(due - now)};
                return;
            }
            /* Due: this request half-opens it and is its first probe. */
            if (atomic_compare_exchange_weak(&b->word, &w, CB_W_MAKE(seq + 1, 1, CB_HALF_OPEN))) {
                transitioned(s, req, CB_OPEN, CB_HALF_OPEN, "reset timeout passed");
                *out = (cb_admit){.allowed = true, .probe = true, .seq = seq + 1};
                return;
            }
            continue;
        }
        unsigned probes = CB_W_PROBES(w);
        if (probes >= lim->half_open_max) {
            *out = (cb_admit){.state = CB_HALF_OPEN, .retry_after_s = 1};
            return;
        }
        if (atomic_compare_exchange_weak(&b->word, &w, CB_W_MAKE(seq, probes + 1, CB_HALF_OPEN))) {
            *out = (cb_admit){.allowed = true, .probe = true, .seq = seq};
            return;
        }
    }
}

/* Opens the breaker from the word's state, unless another caller moved it on first. */
static void open_from(cb_svc *s, const cb_limits *lim, gw_req *req, uint64_t w, const char *reason)
{
    cb_block *b = s->b;
    uint32_t seq = CB_W_SEQ(w);
    for (int round = 0; round < CAS_ROUNDS; round++) {
        unsigned st = CB_W_STATE(w);
        if (CB_W_SEQ(w) != seq || st == CB_OPEN) return;
        /* Published before the word, so whoever sees OPEN at seq + 1 finds its due time. */
        atomic_store(&b->until, until_pack(seq + 1, s->in->h->now_ms() + lim->reset_ms));
        if (atomic_compare_exchange_weak(&b->word, &w, CB_W_MAKE(seq + 1, 0, CB_OPEN))) {
            transitioned(s, req, st, CB_OPEN, reason);
            return;
        }
    }
}

void cb_record(cb_svc *s, const cb_limits *lim, gw_req *req, uint32_t seq, bool probe, const char *why)
{
    cb_block *b = s->b;
    uint64_t w = atomic_load(&b->word);
    if (CB_W_SEQ(w) != seq) return; /* its period ended (and its probe slot with it) */
    unsigned st = CB_W_STATE(w);
    if (st == CB_OPEN) return;
    char reason[160];
    if (why) {
        atomic_store(&b->last_failure_unix_ms, s->in->h->unix_ms());
        atomic_store(&b->successes, 0);
        uint32_t f = atomic_fetch_add(&b->failures, 1) + 1;
        if (st == CB_CLOSED) {
            if (f < lim->max_failures) return;
            snprintf(reason, sizeof reason, "%u consecutive failures, last: %s", f, why);
        } else {
            snprintf(reason, sizeof reason, "probe failed: %s", why);
        }
        open_from(s, lim, req, w, reason);
        return;
    }
    atomic_store(&b->failures, 0);
    uint32_t n = atomic_fetch_add(&b->successes, 1) + 1;
    if (st == CB_CLOSED) return;
    for (int round = 0; round < CAS_ROUNDS; round++) {
        if (CB_W_SEQ(w) != seq || CB_W_STATE(w) != CB_HALF_OPEN) return;
        uint64_t next;
        unsigned probes = CB_W_PROBES(w);
        if (n >= lim->success_threshold)
            next = CB_W_MAKE(seq + 1, 0, CB_CLOSED);
        else if (probe && probes > 0)
            next = CB_W_MAKE(seq, probes - 1, CB_HALF_OPEN);
        else
            return;
        if (atomic_compare_exchange_weak(&b->word, &w, next)) {
            if (CB_W_STATE(next) == CB_CLOSED) {
                snprintf(reason, sizeof reason, "%u successes", n);
                transitioned(s, req, CB_HALF_OPEN, CB_CLOSED, reason);
            }
            return;
        }
    }
}

void cb_release(cb_svc *s, uint32_t seq)
{
    cb_block *b = s->b;
    uint64_t w = atomic_load(&b->word);
    for (int round = 0; round < CAS_ROUNDS; round++) {
        if (CB_W_SEQ(w) != seq || CB_W_STATE(w) != CB_HALF_OPEN || CB_W_PROBES(w) == 0) return;
        if (atomic_compare_exchange_weak(&b->word, &w, CB_W_MAKE(seq, CB_W_PROBES(w) - 1, CB_HALF_OPEN)))
            return;
    }
}

void cb_reset(cb_svc *s, gw_req *req)
{
    cb_block *b = s->b;
    uint64_t w = atomic_load(&b->word);
    while (!atomic_compare_exchange_weak(&b->word, &w, CB_W_MAKE(CB_W_SEQ(w) + 1, 0, CB_CLOSED))) {
    }
    uint64_t failures = atomic_exchange(&b->failures, 0);
    atomic_store(&b->successes, 0);
    if (CB_W_STATE(w) != CB_CLOSED)
        transitioned(s, req, CB_W_STATE(w), CB_CLOSED, "reset by admin");
    else if (failures) /* a closed breaker: only its count changed */
        s->in->h->log(s->in->self, req, GW_LOG_INFO,
                      "circuit breaker for %s: closed, %llu failures cleared (reset by admin)", s->name,
                      (unsigned long long)failures);
}

uint64_t cb_refresh(cb_svc *s, gw_req *req)
{
    cb_block *b = s->b;
    uint64_t w = atomic_load(&b->word), due;
    for (int round = 0; round < CAS_ROUNDS; round++) {
        if (CB_W_STATE(w) != CB_OPEN || !until_of(b, CB_W_SEQ(w), &due) || s->in->h->now_ms() < due) return w;
        uint64_t next = CB_W_MAKE(CB_W_SEQ(w) + 1, 0, CB_HALF_OPEN);
        if (atomic_compare_exchange_weak(&b->word, &w, next)) {
            transitioned(s, req, CB_OPEN, CB_HALF_OPEN, "reset timeout passed");
            return next;
        }
    }
    return atomic_load(&b->word);
}
