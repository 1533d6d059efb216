/* th_store.c - the fake clock and the in-memory store: values with TTLs, exact token buckets, callbacks
 * queued and delivered later (never inside the call), and failure modes. */
#include "th_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DELIVERIES 1000000u

static uint64_t g_now = GW_TH_CLOCK_START_MS;

uint64_t th_clock_now(void)
{
    return g_now;
}

void th_clock_set(uint64_t now)
{
    g_now = now;
}

void th_clock_reset(void)
{
    g_now = GW_TH_CLOCK_START_MS;
}

static uint64_t h_now_ms(void)
{
    return g_now;
}

static uint64_t h_unix_ms(void)
{
    return GW_TH_UNIX_START_MS + (g_now - GW_TH_CLOCK_START_MS);
}

/* ------------------------------------------------------------------------------------------------------
 * values and buckets */

static th_kv *kv_find(gw_th *th, const char *ns, const char *key)
{
    for (size_t i = 0; i < th->nkv; i++) {
        th_kv *e = &th->kv[i];
        if (strcmp(e->ns, ns) != 0 || strcmp(e->key, key) != 0) continue;
        if (e->expires && e->expires <= g_now) { /* expired: gone */
            free(e->ns);
            free(e->key);
            free(e->value);
            th->kv[i] = th->kv[--th->nkv];
            return NULL;
        }
        return e;
    }
    return NULL;
}

static void kv_put(gw_th *th, const char *ns, const char *key, const char *value, size_t len, uint64_t ttl_ms)
{
    th_kv *e = kv_find(th, ns, key);
    if (!e) {
        th->kv = th_grow(th->kv, &th->ckv, th->nkv + 1, sizeof *th->kv);
        e = &th->kv[th->nkv++];
        e->ns = th_xstrdup(ns);
        e->key = th_xstrdup(key);
    } else {
        free(e->value);
    }
    e->value = th_xmemdup(value, value ? len : 0);
    e->len = value ? len : 0;
    e->expires = ttl_ms ? g_now + ttl_ms : 0;
}

static bool kv_del(gw_th *th, const char *ns, const char *key)
{
    th_kv *e = kv_find(th, ns, key);
    if (!e) return false;
    free(e->ns);
    free(e->key);
    free(e->value);
    *e = th->kv[--th->nkv];
    return true;
}

static th_bucket *bucket_find(gw_th *th, const char *ns, const char *key)
{
    for (size_t i = 0; i < th->nbk; i++)
        if (strcmp(th->bk[i].ns, ns) == 0 && strcmp(th->bk[i].key, key) == 0) return &th->bk[i];
    return NULL;
}

static double refill(th_bucket *b, double capacity, double rate_per_s)
{
    double t = b->tokens + (double)(g_now - b->last) * rate_per_s / 1000.0;
    b->tokens = t > capacity ? capacity : t;
    b->last = g_now;
    return b->tokens;
}

static uint64_t ms_for(double tokens, double rate_per_s)
{
    if (tokens <= 0) return 0;
    return (uint64_t)ceil(tokens * 1000.0 / rate_per_s - 1e-9);
}

static gw_bucket_result take(gw_th *th, const char *ns, const char *key, double capacity, double rate, double cost)
{
    th_bucket *b = bucket_find(th, ns, key);
    if (!b) {
        th->bk = th_grow(th->bk, &th->cbk, th->nbk + 1, sizeof *th->bk);
        b = &th->bk[th->nbk++];
        b->ns = th_xstrdup(ns);
        b->key = th_xstrdup(key);
        b->tokens = capacity;
        b->last = g_now;
    }
    b->capacity = capacity;
    b->rate = rate;
    refill(b, capacity, rate);
    gw_bucket_result res = {0};
    /* a tiny tolerance absorbs binary rounding of the refill (10/s for 100 ms is one token, not 0.99999) */
    res.allowed = cost <= capacity && b->tokens + 1e-9 >= cost;
    if (res.allowed) {
        b->tokens -= cost;
        if (b->tokens < 1e-9) b->tokens = 0;
    }
    res.remaining = b->tokens;
    res.reset_ms = h_unix_ms() + ms_for(capacity - b->tokens, rate);
    if (!res.allowed) res.retry_ms = cost <= capacity ? ms_for(cost - b->tokens, rate) : ms_for(capacity - b->tokens, rate);
    return res;
}

double gw_th_bucket_tokens(gw_th *th, const char *filter, const char *key)
{
    th_bucket *b = filter && key ? bucket_find(th, filter, key) : NULL;
    if (!b) return -1;
    double t = b->tokens + (double)(g_now - b->last) * b->rate / 1000.0;
    return t > b->capacity ? b->capacity : t;
}

const char *gw_th_store_peek(gw_th *th, const char *filter, const char *key, size_t *len)
{
    th_kv *e = filter && key ? kv_find(th, filter, key) : NULL;
    if (len) *len = e ? e->len : 0;
    return e ? e->value : NULL;
}

int gw_th_store_put(gw_th *th, const char *filter, const char *key, const char *value, size_t len,
                    uint64_t ttl_ms)
{
    if (!filter || !key || (!value && len)) return -1;
    kv_put(th, filter, key, value, len, ttl_ms);
    return 0;
}

/* ------------------------------------------------------------------------------------------------------
 * the callback queue */

void gw_th_store_mode(gw_th *th, int mode)
{
    th->store_mode = mode;
}

void gw_th_store_auto(gw_th *th, bool on)
{
    th->store_auto = on;
}

size_t gw_th_store_pending(const gw_th *th)
{
    return th->q_len;
}

static void list_free(th_op *op)
{
    for (size_t i = 0; i < op->n; i++) {
        free((char *)op->keys[i].p);
        free((char *)op->vals[i].p);
    }
    free(op->keys);
    free(op->vals);
}

th_op *th_enqueue(gw_req *r)
{
    gw_th *th = r->th;
    th_op *op = th_xcalloc(1, sizeof *op);
    op->f = r->cur;
    op->r = r;
    if (th->q_tail) th->q_tail->next = op;
    else th->q_head = op;
    th->q_tail = op;
    th->q_len++;
    return op;
}

size_t gw_th_run_pending(gw_th *th)
{
    size_t ran = 0;
    while (th->q_head) {
        if (ran == MAX_DELIVERIES) {
            th_violation(th, NULL, "store callbacks keep queueing new store calls (%u delivered): stopped",
                         MAX_DELIVERIES);
            break;
        }
        th_op *op = th->q_head;
        th->q_head = op->next;
        if (!th->q_head) th->q_tail = NULL;
        th->q_len--;
        op->r->cur = op->f; /* calls made from the callback are on behalf of the same filter */
        if (op->r->ended) /* like the gateway: a request's pending store calls die with it */
            ;
        else if (op->bcb) op->bcb(op->arg, op->status, op->has_bucket ? &op->br : NULL);
        else if (op->call) th_call_deliver(op->call);
        else if (op->icb) op->icb(op->arg, op->status, op->status == 0 ? op->ival : 0);
        else if (op->lcb) op->lcb(op->arg, op->status, op->n, op->keys, op->vals);
        else if (op->cb) op->cb(op->arg, op->status, op->value, op->len);
        list_free(op);
        free(op->value);
        free(op);
        ran++;
    }
    return ran;
}

void th_auto_pending(gw_th *th)
{
    if (th->store_auto) gw_th_run_pending(th);
}

void th_store_free(gw_th *th)
{
    for (size_t i = 0; i < th->nkv; i++) {
        free(th->kv[i].ns);
        free(th->kv[i].key);
        free(th->kv[i].value);
    }
    free(th->kv);
    for (size_t i = 0; i < th->nbk; i++) {
        free(th->bk[i].ns);
        free(th->bk[i].key);
    }
    free(th->bk);
    while (th->q_head) {
        th_op *op = th->q_head;
        th->q_head = op->next;
        list_free(op);
        free(op->value);
        free(op);
    }
}

/* ------------------------------------------------------------------------------------------------------
 * the store members of the host table */

/* Common checks; returns the namespace (the calling filter's name) or NULL when the call is refused. */
static const char *store_ns(gw_req *r, const char *key, const char *fn)
{
    if (!r || !key) return NULL;
    gw_th *th = r->th;
    if (r->stage == TH_NEW || r->ended) {
        th_violation(th, r, "%s('%s') on a request that %s", fn, key, r->ended ? "has ended" : "has not started");
        return NULL;
    }
    if (!r->cur) {
        th_violation(th, r, "%s('%s'): no filter is running on this request", fn, key);
        return NULL;
    }
    if (th->store_mode == GW_TH_STORE_DOWN) return NULL;
    return r->cur->d.name;
}

static int h_store_get(gw_req *req, const char *key, gw_store_cb cb, void *arg)
{
    const char *ns = store_ns(req, key, "store_get");
    if (!ns) return -1;
    th_op *op = th_enqueue(req);
    op->cb = cb;
    op->arg = arg;
    if (req->th->store_mode == GW_TH_STORE_FAIL) {
        op->status = -1;
        return 0;
    }
    th_kv *e = kv_find(req->th, ns, key);
    op->status = e ? 0 : 1;
    if (e) {
        op->value = th_xmemdup(e->value, e->len);
        op->len = e->len;
    }
    return 0;
}

static int h_store_set(gw_req *req, const char *key, const char *value, size_t len, uint64_t ttl_ms,
                       gw_store_cb cb, void *arg)
{
    if ((!value && len) || ttl_ms > GW_STORE_TTL_MAX_MS) return -1; /* as in the gateway */
    const char *ns = store_ns(req, key, "store_set");
    if (!ns) return -1;
    th_op *op = th_enqueue(req);
    op->cb = cb;
    op->arg = arg;
    if (req->th->store_mode == GW_TH_STORE_FAIL) {
        op->status = -1;
        return 0;
    }
    kv_put(req->th, ns, key, value, len, ttl_ms);
    return 0;
}

static int h_store_del(gw_req *req, const char *key, gw_store_cb cb, void *arg)
{
    const char *ns = store_ns(req, key, "store_del");
    if (!ns) return -1;
    th_op *op = th_enqueue(req);
    op->cb = cb;
    op->arg = arg;
    if (req->th->store_mode == GW_TH_STORE_FAIL) {
        op->status = -1;
        return 0;
    }
    op->status = kv_del(req->th, ns, key) ? 0 : 1;
    return 0;
}

static int h_store_take(gw_req *req, const char *key, double capacity, double rate_per_s, double cost,
                        gw_bucket_cb cb, void *arg)
{
    if (!(capacity > 0) || !(rate_per_s > 0) || !(cost >= 0) || !isfinite(capacity) || !isfinite(rate_per_s) ||
        !isfinite(cost))
        return -1;
    const char *ns = store_ns(req, key, "store_take");
    if (!ns) return -1;
    th_op *op = th_enqueue(req);
    op->bcb = cb;
    op->arg = arg;
    if (req->th->store_mode == GW_TH_STORE_FAIL) {
        op->status = -1;
        return 0;
    }
    op->br = take(req->th, ns, key, capacity, rate_per_s, cost);
    op->has_bucket = true;
    return 0;
}

/* Counters are values holding decimal text, as in the gateway's stores; a missing key starts at 0 and gets
 * the TTL (on the fake clock) with that first write only. A value that is not an integer fails (-1). */
static int incr(gw_th *th, const char *ns, const char *key, int64_t delta, uint64_t ttl_ms, int64_t *out)
{
    th_kv *e = kv_find(th, ns, key);
    long long cur = 0;
    if (e) {
        char *end;
        errno = 0;
        cur = strtoll(e->value, &end, 10);
        bool digits = e->len && (e->value[0] == '-' || (e->value[0] >= '0' && e->value[0] <= '9'));
        if (errno || !digits || *end) return -1;
    }
    int64_t v;
    if (__builtin_add_overflow((int64_t)cur, delta, &v)) return -1;
    char text[24];
    int n = snprintf(text, sizeof text, "%lld", (long long)v);
    uint64_t expires = e ? e->expires : 0;
    kv_put(th, ns, key, text, (size_t)n, e ? 0 : ttl_ms);
    if (e) kv_find(th, ns, key)->expires = expires; /* an existing counter keeps its expiry */
    *out = v;
    return 0;
}

static int h_store_incr(gw_req *req, const char *key, int64_t delta, uint64_t ttl_ms, gw_incr_cb cb,
                        void *arg)
{
    if (!cb || ttl_ms > GW_STORE_TTL_MAX_MS) return -1; /* as in the gateway: the result is the point */
    const char *ns = store_ns(req, key, "store_incr");
    if (!ns) return -1;
    th_op *op = th_enqueue(req);
    op->icb = cb;
    op->arg = arg;
    if (req->th->store_mode == GW_TH_STORE_FAIL) {
        op->status = -1;
        return 0;
    }
    op->status = incr(req->th, ns, key, delta, ttl_ms, &op->ival) == 0 ? 0 : -1;
    return 0;
}

static int h_store_list(gw_req *req, const char *prefix, gw_store_list_cb cb, void *arg)
{
    const char *ns = store_ns(req, prefix, "store_list");
    if (!ns || !cb) return -1;
    th_op *op = th_enqueue(req);
    op->lcb = cb;
    op->arg = arg;
    if (req->th->store_mode == GW_TH_STORE_FAIL) {
        op->status = -1;
        return 0;
    }
    gw_th *th = req->th;
    size_t plen = strlen(prefix);
    op->keys = th_xcalloc(th->nkv ? th->nkv : 1, sizeof *op->keys);
    op->vals = th_xcalloc(th->nkv ? th->nkv : 1, sizeof *op->vals);
    for (size_t i = 0; i < th->nkv; i++) {
        th_kv *e = &th->kv[i];
        if (strcmp(e->ns, ns) != 0 || strncmp(e->key, prefix, plen) != 0) continue;
        if (e->expires && e->expires <= g_now) continue;
        op->keys[op->n] = (gw_strv){th_xmemdup(e->key, strlen(e->key)), strlen(e->key)};
        op->vals[op->n++] = (gw_strv){th_xmemdup(e->value, e->len), e->len};
    }
    return 0;
}

void th_store_fill(gw_host *h)
{
    h->now_ms = h_now_ms;
    h->unix_ms = h_unix_ms;
    h->store_get = h_store_get;
    h->store_set = h_store_set;
    h->store_del = h_store_del;
    h->store_take = h_store_take;
    h->store_list = h_store_list;
    h->store_incr = h_store_incr;
}
