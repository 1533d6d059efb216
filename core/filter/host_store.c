/* host_store.c - the host API's store_* calls: keys namespaced by the calling filter, results delivered
 * on the request's worker, and every pending call cancelled when its request ends (client gone, error)
 * so that no callback reaches a request that no longer exists. */
#include <string.h>

#include "log.h"
#include "phases.h"
#include "server.h"
#include "store.h"

#define MAX_KEY 1024

typedef struct gw_store_call {
    struct gw_store_call *next;
    gw_store_op *op;
    gw_req *r;
    gw_filter *f;
    gw_store_cb cb;
    gw_bucket_cb bcb;
    gw_incr_cb icb;
    void *arg;
    const char *opname; /* for gateway_store_errors_total */
    bool done;
} gw_store_call;

static void count_error(gw_store_call *sc, int status)
{
    gw_metric *m = sc->r->c->w->srv->m_store_errors;
    if (status < 0 && m) gw_metric_add(m, sc->r->c->w->id, (const char *const[]){sc->opname}, 1);
}

static gw_store *store_of(const gw_req *r)
{
    return r->c->w->srv->store;
}

/* "<filter>:<key>" into buf; 0 on success. */
static int ns_key(const gw_req *r, const char *key, char *buf, size_t *len)
{
    const char *name = r->cur ? r->cur->name : "core";
    size_t n = strlen(name), k = strlen(key);
    if (n + 1 + k > MAX_KEY) return -1;
    memcpy(buf, name, n);
    buf[n] = ':';
    memcpy(buf + n + 1, key, k);
    *len = n + 1 + k;
    return 0;
}

static gw_store_call *new_call(gw_req *r, const char *opname, gw_store_cb cb, gw_bucket_cb bcb, void *arg)
{
    gw_store_call *sc = gw_req_alloc(r, sizeof *sc);
    if (!sc) return NULL;
    *sc = (gw_store_call){.r = r, .f = r->cur, .cb = cb, .bcb = bcb, .arg = arg, .opname = opname};
    return sc;
}

static void track(gw_req *r, gw_store_call *sc, gw_store_op *op)
{
    sc->op = op;
    sc->next = r->store_calls;
    r->store_calls = sc;
}

/* The callback may end the request (and free sc): nothing of sc or r is touched after it. */
static void done_value(void *arg, int status, const char *v, size_t n)
{
    gw_store_call *sc = arg;
    sc->done = true;
    sc->r->cur = sc->f;
    count_error(sc, status);
    sc->cb(sc->arg, status, v, n);
}

static void done_bucket(void *arg, int status, const gw_bucket_result *br)
{
    gw_store_call *sc = arg;
    sc->done = true;
    sc->r->cur = sc->f;
    count_error(sc, status);
    sc->bcb(sc->arg, status, br);
}

static int h_get(gw_req *r, const char *key, gw_store_cb cb, void *arg)
{
    char k[MAX_KEY];
    size_t kl;
    gw_store_call *sc;
    if (!store_of(r) || !cb || ns_key(r, key, k, &kl) != 0 || !(sc = new_call(r, "get", cb, NULL, arg))) return -1;
    gw_store_op *op = gw_store_get(store_of(r), r->c->w->id, k, kl, done_value, sc);
    if (!op) return -1;
    track(r, sc, op);
    return 0;
}

static void done_ignored(void *arg, int status, const char *v, size_t n)
{
    (void)arg;
    (void)status;
    (void)v;
    (void)n;
}

static int h_set(gw_req *r, const char *key, const char *value, size_t len, uint64_t ttl_ms, gw_store_cb cb,
                 void *arg)
{
    char k[MAX_KEY];
    size_t kl;
    gw_store_call *sc;
    uint64_t now = gw_host_api()->unix_ms();
    if (ttl_ms > GW_STORE_TTL_MAX_MS) return -1;
    if (!cb) { /* fire and forget: not bound to the request, so the write completes even after it ended */
        if (!store_of(r) || ns_key(r, key, k, &kl) != 0) return -1;
        gw_store_op *op =
            gw_store_set(store_of(r), r->c->w->id, k, kl, value, len, ttl_ms, now, done_ignored, NULL);
        return op ? 0 : -1;
    }
    if (!store_of(r) || ns_key(r, key, k, &kl) != 0 || !(sc = new_call(r, "set", cb, NULL, arg))) return -1;
    gw_store_op *op = gw_store_set(store_of(r), r->c->w->id, k, kl, value, len, ttl_ms, now, done_value, sc);
    if (!op) return -1;
    track(r, sc, op);
    return 0;
}

static int h_del(gw_req *r, const char *key, gw_store_cb cb, void *arg)
{
    char k[MAX_KEY];
    size_t kl;
    gw_store_call *sc;
    if (!store_of(r) || !cb || ns_key(r, key, k, &kl) != 0 || !(sc = new_call(r, "del", cb, NULL, arg))) return -1;
    gw_store_op *op = gw_store_del(store_of(r), r->c->w->id, k, kl, done_value, sc);
    if (!op) return -1;
    track(r, sc, op);
    return 0;
}

static int h_take(gw_req *r, const char *key, double capacity, double rate_per_s, double cost, gw_bucket_cb cb,
                  void *arg)
{
    char k[MAX_KEY];
    size_t kl;
    gw_store_call *sc;
    if (!store_of(r) || !cb || ns_key(r, key, k, &kl) != 0 || !(sc = new_call(r, "take", NULL, cb, arg))) return -1;
    uint64_t now = gw_host_api()->unix_ms();
    gw_store_op *op =
        gw_store_take(store_of(r), r->c->w->id, k, kl, capacity, rate_per_s, cost, now, done_bucket, sc);
    if (!op) return -1;
    track(r, sc, op);
    return 0;
}

static void done_incr(void *arg, int status, int64_t v)
{
    gw_store_call *sc = arg;
    sc->done = true;
    sc->r->cur = sc->f;
    count_error(sc, status);
    sc->icb(sc->arg, status, v);
}

static int h_incr(gw_req *r, const char *key, int64_t delta, uint64_t ttl_ms, gw_incr_cb cb, void *arg)
{
    char k[MAX_KEY];
    size_t kl;
    gw_store_call *sc;
    if (ttl_ms > GW_STORE_TTL_MAX_MS || !store_of(r) || !cb || ns_key(r, key, k, &kl) != 0 ||
        !(sc = new_call(r, "incr", NULL, NULL, arg)))
        return -1;
    sc->icb = cb;
    uint64_t now = gw_host_api()->unix_ms();
    gw_store_op *op = gw_store_incr(store_of(r), r->c->w->id, k, kl, delta, ttl_ms, now, done_incr, sc);
    if (!op) return -1;
    track(r, sc, op);
    return 0;
}

typedef struct {
    gw_store_call call;
    gw_store_list_cb lcb;
    size_t ns; /* length of "<filter>:" to strip */
} gw_list_call;

static void done_list(void *arg, int status, size_t n, const gw_strv *keys, const gw_strv *values)
{
    gw_list_call *lc = arg;
    lc->call.done = true;
    lc->call.r->cur = lc->call.f;
    count_error(&lc->call, status);
    gw_strv *stripped = n ? malloc(n * sizeof *stripped) : NULL;
    if (n && !stripped) {
        lc->lcb(lc->call.arg, -1, 0, NULL, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) stripped[i] = (gw_strv){keys[i].p + lc->ns, keys[i].n - lc->ns};
    gw_store_list_cb cb = lc->lcb;
    void *a = lc->call.arg;
    cb(a, status, n, stripped, values); /* may end the request: nothing of lc after this */
    free(stripped);
}

static int h_list(gw_req *r, const char *prefix, gw_store_list_cb cb, void *arg)
{
    char k[MAX_KEY];
    size_t kl;
    if (!store_of(r) || !cb || ns_key(r, prefix, k, &kl) != 0) return -1;
    gw_list_call *lc = gw_req_alloc(r, sizeof *lc);
    if (!lc) return -1;
    *lc = (gw_list_call){.call = {.r = r, .f = r->cur, .arg = arg, .opname = "list"}, .lcb = cb,
                         .ns = kl - strlen(prefix)};
    gw_store_op *op = gw_store_list(store_of(r), r->c->w->id, k, kl, done_list, lc);
    if (!op) return -1;
    track(r, &lc->call, op);
    return 0;
}

void gw_host_store_cancel_all(gw_req *r)
{
    for (gw_store_call *sc = r->store_calls; sc; sc = sc->next)
        if (!sc->done) gw_store_cancel(sc->op);
    r->store_calls = NULL;
}

void gw_host_store_fill(gw_host *h)
{
    h->store_get = h_get;
    h->store_set = h_set;
    h->store_del = h_del;
    h->store_take = h_take;
    h->store_list = h_list;
    h->store_incr = h_incr;
}
