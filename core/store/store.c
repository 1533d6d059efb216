/* store.c - the embedded store (see store.h): sharded hash table, lazy expiry, values, exact token buckets
 * and counters, listings, and results delivered on the calling worker's loop. The persistence thread,
 * loading, start and stop are in store_persist.c. */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "store_internal.h"
#include "store_table.h"
#include "util.h"

uint64_t gw_st_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

shard *gw_st_shard(gw_store *s, uint64_t h)
{
    return &s->shards[h % NSHARDS];
}

void gw_st_rec_free(rec *r)
{
    free(r->key);
    free(r->val);
    free(r);
}

/* Finds a live record (removing it if expired) in a locked shard; *pp is its link. */
rec *gw_st_find(gw_store *s, shard *sh, uint64_t h, const char *k, size_t n, uint64_t now, rec ***pp)
{
    if (!sh->cap) return NULL;
    rec **p = &sh->tab[(h >> 6) % sh->cap];
    for (; *p; p = &(*p)->next) {
        rec *r = *p;
        if (r->hash != h || r->klen != n || memcmp(r->key, k, n) != 0) continue;
        if (r->expires_ms && r->expires_ms <= now) {
            *p = r->next;
            gw_st_rec_free(r);
            sh->n--;
            atomic_fetch_sub(&s->count, 1);
            return NULL;
        }
        if (pp) *pp = p;
        return r;
    }
    return NULL;
}

static bool grow(shard *sh)
{
    size_t cap = sh->cap ? sh->cap * 2 : 64;
    rec **tab = calloc(cap, sizeof *tab);
    if (!tab) return false;
    for (size_t i = 0; i < sh->cap; i++)
        for (rec *r = sh->tab[i], *nx; r; r = nx) {
            nx = r->next;
            rec **b = &tab[(r->hash >> 6) % cap];
            r->next = *b;
            *b = r;
        }
    free(sh->tab);
    sh->tab = tab;
    sh->cap = cap;
    return true;
}

/* A new empty record in a locked shard. */
rec *gw_st_insert(gw_store *s, shard *sh, uint64_t h, const char *k, size_t n)
{
    if (sh->n >= sh->cap && !grow(sh)) return NULL;
    rec *r = calloc(1, sizeof *r);
    if (!r || !(r->key = malloc(n ? n : 1))) {
        free(r);
        return NULL;
    }
    memcpy(r->key, k, n);
    r->klen = n;
    r->hash = h;
    rec **b = &sh->tab[(h >> 6) % sh->cap];
    r->next = *b;
    *b = r;
    sh->n++;
    atomic_fetch_add(&s->count, 1);
    return r;
}

uint64_t gw_st_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- delivery on the worker ------------------------------------------------------------------------ */

void gw_st_op_free(gw_store_op *op)
{
    for (size_t i = 0; i < op->n; i++) {
        free((char *)op->keys[i].p);
        free((char *)op->vals[i].p);
    }
    free(op->keys);
    free(op->vals);
    free(op->val);
    free(op);
}

static void deliver(gw_store_op *op)
{
    if (!atomic_load(&op->cancelled)) {
        if (op->kind == OP_TAKE) op->bcb(op->arg, op->status, op->status == GW_STORE_OK ? &op->br : NULL);
        else if (op->kind == OP_LIST) op->lcb(op->arg, op->status, op->n, op->keys, op->vals);
        else if (op->kind == OP_INCR) op->icb(op->arg, op->status, op->status == GW_STORE_OK ? op->ival : 0);
        else op->cb(op->arg, op->status, op->val, op->vlen);
    }
    gw_st_op_free(op);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    slot *sl = arg;
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN) gw_debug("store: eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&sl->mu);
    gw_store_op *in = sl->inbox;
    sl->inbox = NULL;
    pthread_mutex_unlock(&sl->mu);
    gw_store_op *list = sl->ready;
    sl->ready = NULL;
    /* Completion order: local results first (they are older than anything the disk confirmed). */
    for (gw_store_op *op = list, *nx; op; op = nx) {
        nx = op->next;
        deliver(op);
    }
    for (gw_store_op *op = in, *nx; op; op = nx) {
        nx = op->next;
        deliver(op);
    }
}

/* Completed on the worker itself: delivered from its loop, never inside the call. Keeps call order. */
static void complete_local(gw_store *s, gw_store_op *op)
{
    slot *sl = &s->slots[op->worker];
    gw_store_op **p = &sl->ready;
    while (*p) p = &(*p)->next;
    op->next = NULL;
    *p = op;
    event_active(sl->ev, EV_READ, 1);
}

static gw_store_op *new_op(gw_store *s, unsigned worker, int kind, gw_store_cb cb, gw_bucket_cb bcb, void *arg)
{
    if (worker >= s->nslots || !s->slots[worker].ev) return NULL;
    gw_store_op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->kind = kind;
    op->cb = cb;
    op->bcb = bcb;
    op->arg = arg;
    op->worker = worker;
    return op;
}

/* --- operations ------------------------------------------------------------------------------------ */

gw_store_op *gw_store_get(gw_store *s, unsigned worker, const char *key, size_t klen, gw_store_cb cb, void *arg)
{
    if (s->be) return s->be->get(s->impl, worker, key, klen, cb, arg);
    gw_store_op *op = new_op(s, worker, OP_GET, cb, NULL, arg);
    if (!op) return NULL;
    uint64_t h = gw_st_hash(key, klen);
    shard *sh = gw_st_shard(s, h);
    pthread_mutex_lock(&sh->mu);
    rec *r = gw_st_find(s, sh, h, key, klen, gw_st_wall_ms(), NULL);
    if (!r || r->bucket) {
        op->status = GW_STORE_NOT_FOUND;
    } else if ((op->val = malloc(r->vlen + 1))) {
        memcpy(op->val, r->val, r->vlen);
        op->val[r->vlen] = '\0';
        op->vlen = r->vlen;
    } else {
        op->status = GW_STORE_ERROR;
    }
    pthread_mutex_unlock(&sh->mu);
    complete_local(s, op);
    return op;
}

gw_store_op *gw_store_set(gw_store *s, unsigned worker, const char *key, size_t klen, const char *val,
                          size_t vlen, uint64_t ttl_ms, uint64_t now_ms, gw_store_cb cb, void *arg)
{
    if (s->be) return s->be->set(s->impl, worker, key, klen, val, vlen, ttl_ms, now_ms, cb, arg);
    gw_store_op *op = new_op(s, worker, OP_SET, cb, NULL, arg);
    char *copy = op ? malloc(vlen ? vlen : 1) : NULL;
    if (!copy) {
        free(op);
        return NULL;
    }
    memcpy(copy, val, vlen);
    uint64_t h = gw_st_hash(key, klen);
    shard *sh = gw_st_shard(s, h);
    pthread_mutex_lock(&sh->mu);
    rec *r = gw_st_find(s, sh, h, key, klen, now_ms, NULL);
    bool was_persistent = r && r->persistent;
    if (!r) r = gw_st_insert(s, sh, h, key, klen);
    if (r) {
        free(r->val);
        r->val = copy;
        r->vlen = vlen;
        r->bucket = false;
        r->persistent = ttl_ms == 0;
        r->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!r) {
        free(copy);
        op->status = GW_STORE_ERROR;
        complete_local(s, op);
    } else if (ttl_ms == 0 || was_persistent) {
        gw_st_queue_persist(s, op); /* reported done once it is on disk */
    } else {
        complete_local(s, op);
    }
    return op;
}

gw_store_op *gw_store_del(gw_store *s, unsigned worker, const char *key, size_t klen, gw_store_cb cb, void *arg)
{
    if (s->be) return s->be->del(s->impl, worker, key, klen, cb, arg);
    gw_store_op *op = new_op(s, worker, OP_DEL, cb, NULL, arg);
    if (!op) return NULL;
    uint64_t h = gw_st_hash(key, klen);
    shard *sh = gw_st_shard(s, h);
    rec **pp = NULL;
    bool persistent = false;
    pthread_mutex_lock(&sh->mu);
    rec *r = gw_st_find(s, sh, h, key, klen, gw_st_wall_ms(), &pp);
    if (r) {
        persistent = r->persistent;
        *pp = r->next;
        gw_st_rec_free(r);
        sh->n--;
        atomic_fetch_sub(&s->count, 1);
    } else {
        op->status = GW_STORE_NOT_FOUND;
    }
    pthread_mutex_unlock(&sh->mu);
    if (persistent) gw_st_queue_persist(s, op);
    else complete_local(s, op);
    return op;
}

/* Exact token bucket: continuous fractional refill; a new or expired bucket starts full. */
static void bucket_take(rec *r, double cap, double rate, double cost, uint64_t now, gw_bucket_result *br)
{
    if (!r->bucket) {
        r->bucket = true;
        r->tokens = cap;
        r->last_ms = now;
    } else if (now > r->last_ms) {
        r->tokens = fmin(cap, r->tokens + (double)(now - r->last_ms) * rate / 1000.0);
        r->last_ms = now;
    }
    if (r->tokens > cap) r->tokens = cap;
    br->allowed = r->tokens >= cost;
    if (br->allowed) r->tokens -= cost;
    br->remaining = r->tokens;
    double to_full = rate > 0 ? (cap - r->tokens) / rate * 1000.0 : 0;
    br->reset_ms = now + (uint64_t)ceil(to_full);
    br->retry_ms = br->allowed || rate <= 0 ? 0 : (uint64_t)ceil((cost - r->tokens) / rate * 1000.0);
    if (!br->allowed && br->retry_ms == 0) br->retry_ms = 1;
    r->expires_ms = br->reset_ms + 1000; /* a full bucket is the same as none */
}

gw_store_op *gw_store_take(gw_store *s, unsigned worker, const char *key, size_t klen, double capacity,
                           double rate_per_s, double cost, uint64_t now_ms, gw_bucket_cb cb, void *arg)
{
    if (s->be) return s->be->take(s->impl, worker, key, klen, capacity, rate_per_s, cost, now_ms, cb, arg);
    gw_store_op *op = new_op(s, worker, OP_TAKE, NULL, cb, arg);
    if (!op) return NULL;
    if (!(capacity > 0) || !(rate_per_s >= 0) || !(cost >= 0)) {
        op->status = GW_STORE_ERROR;
        complete_local(s, op);
        return op;
    }
    uint64_t h = gw_st_hash(key, klen);
    shard *sh = gw_st_shard(s, h);
    pthread_mutex_lock(&sh->mu);
    rec *r = gw_st_find(s, sh, h, key, klen, now_ms, NULL);
    if (r && !r->bucket) r = NULL; /* never turn a value into a bucket */
    if (!r && !gw_st_find(s, sh, h, key, klen, now_ms, NULL)) r = gw_st_insert(s, sh, h, key, klen);
    if (r) bucket_take(r, capacity, rate_per_s, cost, now_ms, &op->br);
    else op->status = GW_STORE_ERROR;
    pthread_mutex_unlock(&sh->mu);
    complete_local(s, op);
    return op;
}

/* A counter is a value record holding decimal text (what GET returns, as on Redis). Under the shard lock,
 * so concurrent increments from any worker are exact. A new counter is memory-only, like any record with a
 * TTL; incrementing a stored integer value keeps that record's persistence (written with the next
 * persisted write, not waited for). */
static int counter_add(rec *r, bool fresh, int64_t delta, int64_t *out)
{
    long long cur = 0;
    if (!fresh) {
        char buf[24], *end;
        if (r->bucket || r->vlen == 0 || r->vlen >= sizeof buf) return -1;
        memcpy(buf, r->val, r->vlen);
        buf[r->vlen] = '\0';
        errno = 0;
        cur = strtoll(buf, &end, 10);
        if (errno || *end || buf[0] == '+' || buf[0] == ' ') return -1; /* not an integer: as Redis refuses */
    }
    int64_t v;
    if (__builtin_add_overflow((int64_t)cur, delta, &v)) return -1;
    char text[24];
    int n = snprintf(text, sizeof text, "%lld", (long long)v);
    char *copy = malloc((size_t)n + 1);
    if (!copy) return -1;
    memcpy(copy, text, (size_t)n + 1);
    free(r->val);
    r->val = copy;
    r->vlen = (size_t)n;
    *out = v;
    return 0;
}

gw_store_op *gw_store_incr(gw_store *s, unsigned worker, const char *key, size_t klen, int64_t delta,
                           uint64_t ttl_ms, uint64_t now_ms, gw_incr_cb cb, void *arg)
{
    if (s->be) return s->be->incr(s->impl, worker, key, klen, delta, ttl_ms, now_ms, cb, arg);
    gw_store_op *op = new_op(s, worker, OP_INCR, NULL, NULL, arg);
    if (!op) return NULL;
    op->icb = cb;
    uint64_t h = gw_st_hash(key, klen);
    shard *sh = gw_st_shard(s, h);
    pthread_mutex_lock(&sh->mu);
    rec *r = gw_st_find(s, sh, h, key, klen, now_ms, NULL);
    bool fresh = !r;
    if (fresh && (r = gw_st_insert(s, sh, h, key, klen))) r->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    if (!r || counter_add(r, fresh, delta, &op->ival) != 0) op->status = GW_STORE_ERROR;
    if (fresh && r && op->status != GW_STORE_OK) r->expires_ms = 1; /* gone at the next look */
    pthread_mutex_unlock(&sh->mu);
    complete_local(s, op);
    return op;
}

static bool list_add(gw_store_op *op, size_t *cap, const rec *r)
{
    if (op->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        gw_strv *k = realloc(op->keys, nc * sizeof *k), *v = k ? realloc(op->vals, nc * sizeof *v) : NULL;
        if (k) op->keys = k;
        if (!k || !v) return false;
        op->vals = v;
        *cap = nc;
    }
    char *kc = malloc(r->klen + 1), *vc = malloc(r->vlen + 1);
    if (!kc || !vc) {
        free(kc);
        free(vc);
        return false;
    }
    memcpy(kc, r->key, r->klen);
    kc[r->klen] = '\0';
    memcpy(vc, r->val, r->vlen);
    vc[r->vlen] = '\0';
    op->keys[op->n] = (gw_strv){kc, r->klen};
    op->vals[op->n++] = (gw_strv){vc, r->vlen};
    return true;
}

gw_store_op *gw_store_list(gw_store *s, unsigned worker, const char *prefix, size_t plen, gw_store_list_cb cb,
                           void *arg)
{
    if (s->be) return s->be->list(s->impl, worker, prefix, plen, cb, arg);
    gw_store_op *op = new_op(s, worker, OP_LIST, NULL, NULL, arg);
    if (!op) return NULL;
    op->lcb = cb;
    uint64_t now = gw_st_wall_ms();
    size_t cap = 0;
    bool ok = true;
    for (int i = 0; i < NSHARDS && ok; i++) {
        shard *sh = &s->shards[i];
        pthread_mutex_lock(&sh->mu);
        for (size_t b = 0; b < sh->cap && ok; b++)
            for (rec *r = sh->tab[b]; r && ok; r = r->next)
                if (!r->bucket && (!r->expires_ms || r->expires_ms > now) && r->klen >= plen &&
                    memcmp(r->key, prefix, plen) == 0)
                    ok = list_add(op, &cap, r);
        pthread_mutex_unlock(&sh->mu);
    }
    if (!ok) op->status = GW_STORE_ERROR;
    complete_local(s, op);
    return op;
}

/* Backends other than the embedded one cancel through their own op type: the first member of every op
 * says which. */
static const gw_store_backend *cancel_backend;

void gw_store_cancel(gw_store_op *op)
{
    if (!op) return;
    if (cancel_backend && op->kind < 0) {
        cancel_backend->cancel(op);
        return;
    }
    atomic_store(&op->cancelled, true);
}

gw_store *gw_store_wrap(const gw_store_backend *be, void *impl)
{
    gw_store *s = calloc(1, sizeof *s);
    if (!s) {
        be->free(impl);
        return NULL;
    }
    s->be = be;
    s->impl = impl;
    cancel_backend = be;
    return s;
}

const char *gw_store_kind(const gw_store *s)
{
    return s->be ? "redis" : "embedded";
}

bool gw_store_available(gw_store *s)
{
    return s->be ? (!s->be->available || s->be->available(s->impl)) : true;
}

size_t gw_store_count(gw_store *s)
{
    if (s->be) return s->be->count ? s->be->count(s->impl) : 0;
    return atomic_load(&s->count);
}

int gw_store_worker_attach(gw_store *s, unsigned worker, struct event_base *base)
{
    if (s->be) return s->be->attach(s->impl, worker, base);
    slot *sl = &s->slots[worker];
    sl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sl->efd < 0) return -1;
    sl->base = base;
    sl->ev = event_new(base, sl->efd, EV_READ | EV_PERSIST, on_ready, sl);
    return sl->ev ? event_add(sl->ev, NULL) : -1;
}

void gw_store_worker_detach(gw_store *s, unsigned worker)
{
    if (s->be) {
        s->be->detach(s->impl, worker);
        return;
    }
    slot *sl = &s->slots[worker];
    if (sl->ev) {
        on_ready(sl->efd, EV_READ, sl); /* deliver (or drop, if cancelled) what is left */
        event_free(sl->ev);
    }
    pthread_mutex_lock(&sl->mu);
    if (sl->efd >= 0) close(sl->efd);
    sl->efd = -1;
    sl->ev = NULL;
    pthread_mutex_unlock(&sl->mu);
}
