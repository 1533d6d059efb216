/* store_redis.c - the store on Redis (hiredis async, one connection per worker on its own loop): timeouts,
 * reconnect with backoff, fail-fast while down, values. Listings are in store_redis_list.c, the scripts
 * (token buckets, counters) in store_redis_script.c. */
#include "store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "store_redis_internal.h"
#include "util.h"

struct timeval gw_rs_tv_ms(uint64_t ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static void set_state(rworker *w, int st)
{
    w->state = st;
    atomic_store(&w->up, st == W_UP);
}

/* --- logging: once per state change ---------------------------------------------------------------- */

static void log_up(rworker *w)
{
    if (w->logged != W_UP) gw_info("store: redis %s:%u connected (worker %u)", w->s->host, w->s->port, w->id);
    w->logged = W_UP;
}

static void log_down(rworker *w, const char *why)
{
    if (w->logged != W_DOWN)
        gw_warn("store: redis %s:%u unavailable (worker %u): %s; reconnecting with backoff", w->s->host,
                w->s->port, w->id, why && *why ? why : "connection lost");
    w->logged = W_DOWN;
}

/* --- op lifetime and delivery ---------------------------------------------------------------------- */

static void op_free(rop *op)
{
    for (size_t i = 0; i < op->n; i++) {
        free((char *)op->keys[i].p);
        free((char *)op->vals[i].p);
    }
    free(op->keys);
    free(op->vals);
    free(op->val);
    free(op->key);
    if (op->timer) event_free(op->timer);
    free(op);
}

void gw_rs_maybe_free(rop *op)
{
    if (op->refs == 0 && op->user_done && !op->queued) op_free(op);
}

static void deliver(rop *op)
{
    op->queued = false;
    if (!op->cancelled) {
        bool ok = op->status == GW_STORE_OK;
        if (op->kind == K_TAKE)
            op->bcb(op->arg, op->status, ok ? &op->br : NULL);
        else if (op->kind == K_LIST)
            op->lcb(op->arg, op->status, ok ? op->n : 0, op->keys, op->vals);
        else if (op->kind == K_INCR)
            op->icb(op->arg, op->status, ok ? op->ival : 0);
        else
            op->cb(op->arg, op->status, op->val, op->vlen);
    }
    op->user_done = true;
    gw_rs_maybe_free(op);
}

static void run_ready(rworker *w)
{
    for (int round = 0; round < 64 && w->ready_head; round++) {
        rop *list = w->ready_head;
        w->ready_head = w->ready_tail = NULL;
        for (rop *op = list, *nx; op; op = nx) {
            nx = op->next;
            deliver(op);
        }
    }
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    run_ready(arg);
}

/* The op's result is known (or it timed out): its callback runs from the loop. May free op. */
void gw_rs_finish(rop *op, int status)
{
    if (op->finished) return;
    op->finished = true;
    if (op->timer) event_del(op->timer);
    if (op->cancelled) {
        op->user_done = true;
        gw_rs_maybe_free(op);
        return;
    }
    rworker *w = op->w;
    op->status = status;
    op->queued = true;
    op->next = NULL;
    if (w->ready_tail)
        w->ready_tail->next = op;
    else
        w->ready_head = op;
    w->ready_tail = op;
    if (w->ready_ev) event_active(w->ready_ev, EV_READ, 1);
}

static void on_redis_cancel(gw_store_op *h)
{
    rop *op = (rop *)h;
    op->cancelled = true;
    if (!op->finished) {
        op->finished = true;
        if (op->timer) event_del(op->timer);
    }
    if (!op->queued) op->user_done = true;
    gw_rs_maybe_free(op);
}

/* --- connection ------------------------------------------------------------------------------------ */

static void start_connect(rworker *w);

static void schedule_reconnect(rworker *w)
{
    w->first = false; /* from now on, fail fast until connected */
    if (w->detaching || !w->retry_ev) return;
    unsigned b = w->backoff_ms ? w->backoff_ms : BACKOFF_MIN_MS;
    unsigned delay = b - (unsigned)rand_r(&w->seed) % (b / 4 + 1); /* jitter: up to a quarter less */
    w->backoff_ms = b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
    struct timeval tv = gw_rs_tv_ms(delay);
    evtimer_add(w->retry_ev, &tv);
}

/* Drops the connection (never from inside a hiredis callback): pending replies complete with errors. */
static void drop_conn(rworker *w, const char *why)
{
    redisAsyncContext *ac = w->ac;
    if (!ac) return;
    w->ac = NULL;
    set_state(w, W_DOWN);
    event_del(w->conn_tmo);
    ac->data = NULL; /* our disconnect callback ignores it */
    if (why) log_down(w, why);
    redisAsyncFree(ac);
    schedule_reconnect(w);
}

static void on_drop(evutil_socket_t fd, short what, void *arg)
{
    rworker *w = arg;
    if (w->bad) drop_conn(w, NULL);
}

static void on_conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    rworker *w = arg;
    if (w->state == W_CONNECTING) drop_conn(w, "connect timed out");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    start_connect(arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rworker *w = ac->data;
    if (!w || status == REDIS_OK) return; /* ready once SELECT answers */
    w->ac = NULL;                         /* hiredis frees it after this */
    set_state(w, W_DOWN);
    event_del(w->conn_tmo);
    log_down(w, ac->errstr);
    schedule_reconnect(w);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rworker *w = ac->data;
    if (!w) return;
    w->ac = NULL;
    set_state(w, W_DOWN);
    event_del(w->conn_tmo);
    log_down(w, ac->err ? ac->errstr : "connection closed");
    schedule_reconnect(w);
}

static void setup_failed(rworker *w, const char *cmd, const redisReply *r)
{
    if (!w->bad) {
        char why[160];
        snprintf(why, sizeof why, "%s failed: %.*s", cmd, (int)(r->len < 100 ? r->len : 100), r->str);
        log_down(w, why);
    }
    w->bad = true;
    event_active(w->drop_ev, EV_TIMEOUT, 1);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR) setup_failed(priv, "AUTH", r);
}

static void on_select(redisAsyncContext *ac, void *reply, void *priv)
{
    rworker *w = priv;
    redisReply *r = reply;
    if (!r || w->bad) return;
    if (r->type == REDIS_REPLY_ERROR) {
        setup_failed(w, "SELECT", r);
        return;
    }
    set_state(w, W_UP);
    w->first = false;
    w->timeouts = 0;
    w->backoff_ms = 0;
    event_del(w->conn_tmo);
    log_up(w);
}

void gw_rs_on_script(redisAsyncContext *ac, void *reply, void *priv)
{
    char *sha = priv; /* char[48] */
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_STRING && r->len < 48) {
        memcpy(sha, r->str, r->len);
        sha[r->len] = '\0';
    }
}

static void start_connect(rworker *w)
{
    rstore *s = w->s;
    if (w->ac || w->detaching) return;
    w->bad = false;
    redisAsyncContext *ac = redisAsyncConnect(s->addr, (int)s->port);
    if (!ac || ac->err) {
        log_down(w, ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(w);
        return;
    }
    ac->data = w;
    if (redisLibeventAttach(ac, w->base) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(w);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    w->ac = ac;
    set_state(w, W_CONNECTING);
    /* Pipelined ahead of everything else: written once the socket connects. */
    if (s->password) {
        const char *argv[2] = {"AUTH", s->password};
        size_t lens[2] = {4, strlen(s->password)};
        redisAsyncCommandArgv(ac, on_auth, w, 2, argv, lens);
    }
    char db[16];
    snprintf(db, sizeof db, "%d", s->db);
    const char *argv[3] = {"SELECT", db, NULL};
    size_t lens[3] = {6, strlen(db), 0};
    redisAsyncCommandArgv(ac, on_select, w, 2, argv, lens);
    gw_rs_load_scripts(w);
    struct timeval tv = gw_rs_tv_ms(s->connect_timeout_ms ? s->connect_timeout_ms : 1000);
    evtimer_add(w->conn_tmo, &tv);
}

/* --- commands -------------------------------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Sends one command of op; -1 when the connection is not usable (fail fast). */
int gw_rs_issue(rop *op, int argc, const char **argv, const size_t *lens)
{
    rworker *w = op->w;
    bool usable = w->ac && !w->bad && (w->state == W_UP || (w->state == W_CONNECTING && w->first));
    if (!usable || redisAsyncCommandArgv(w->ac, on_reply, op, argc, argv, lens) != REDIS_OK) return -1;
    op->refs++;
    if (op->timer) {
        struct timeval tv = gw_rs_tv_ms(w->s->command_timeout_ms ? w->s->command_timeout_ms : 1000);
        evtimer_add(op->timer, &tv);
    }
    return 0;
}

static void on_op_timeout(evutil_socket_t fd, short what, void *arg)
{
    rop *op = arg;
    rworker *w = op->w;
    gw_rs_finish(op, GW_STORE_ERROR); /* a late reply is dropped: op lives until hiredis hands it back */
    if (w->state == W_UP && ++w->timeouts >= MAX_TIMEOUTS) drop_conn(w, "commands time out");
}

rop *gw_rs_new_op(rstore *s, unsigned worker, int kind, void *arg)
{
    if (worker >= s->nw || !s->w[worker].base || s->w[worker].detaching) return NULL;
    rop *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->kind = kind;
    op->arg = arg;
    op->w = &s->w[worker];
    if (!(op->timer = evtimer_new(op->w->base, on_op_timeout, op))) {
        free(op);
        return NULL;
    }
    return op;
}

char *gw_rs_dup_mem(const char *p, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, p, n);
        c[n] = '\0';
    }
    return c;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rop *op = priv;
    redisReply *r = reply;
    op->refs--;
    if (r) op->w->timeouts = 0;
    if (!r) {
        gw_rs_release_followers(op, GW_STORE_ERROR);
        if (op->finished)
            gw_rs_maybe_free(op);
        else
            gw_rs_finish(op, GW_STORE_ERROR);
        return;
    }
    if (op->finished) { /* timed out or cancelled: its riders still get their answers */
        if (op->kind == K_TAKE && op->follow && gw_rs_take_result(op, r) != 0)
            gw_rs_release_followers(op, GW_STORE_ERROR);
        gw_rs_maybe_free(op);
        return;
    }
    int st = GW_STORE_ERROR;
    switch (op->kind) {
    case K_GET:
        if (r->type == REDIS_REPLY_STRING) {
            if ((op->val = gw_rs_dup_mem(r->str, r->len))) op->vlen = r->len, st = GW_STORE_OK;
        } else if (r->type == REDIS_REPLY_NIL ||
                   (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "WRONGTYPE", 9))) {
            st = GW_STORE_NOT_FOUND; /* a bucket is not a value */
        }
        break;
    case K_SET:
        st = r->type == REDIS_REPLY_STATUS ? GW_STORE_OK : GW_STORE_ERROR;
        break;
    case K_DEL:
        if (r->type == REDIS_REPLY_INTEGER) st = r->integer > 0 ? GW_STORE_OK : GW_STORE_NOT_FOUND;
        break;
    case K_TAKE:
        if (gw_rs_take_result(op, r) == 0) return;
        gw_rs_release_followers(op, GW_STORE_ERROR);
        break;
    case K_INCR:
        if (gw_rs_incr_result(op, r) == 0) return;
        break;
    case K_LIST:
        if (gw_rs_list_result(op, r) == 0) return;
        break;
    }
    gw_rs_finish(op, st);
}

/* --- backend operations ---------------------------------------------------------------------------- */

static gw_store_op *r_kv(void *impl, unsigned wk, int kind, const char *k, size_t kl, const char *v,
                         size_t vl, uint64_t ttl_ms, gw_store_cb cb, void *arg)
{
    rop *op = gw_rs_new_op(impl, wk, kind, arg);
    if (!op) return NULL;
    op->cb = cb;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *argv[5] = {kind == K_GET ? "GET" : kind == K_DEL ? "DEL" : "SET", k, v, "PX", ttl};
    size_t lens[5] = {3, kl, vl, 2, strlen(ttl)};
    int argc = kind != K_SET ? 2 : ttl_ms ? 5 : 3;
    if (gw_rs_issue(op, argc, argv, lens) != 0) gw_rs_finish(op, GW_STORE_ERROR);
    return (gw_store_op *)op;
}

static gw_store_op *r_get(void *impl, unsigned w, const char *k, size_t kl, gw_store_cb cb, void *arg)
{
    return r_kv(impl, w, K_GET, k, kl, NULL, 0, 0, cb, arg);
}

static gw_store_op *r_set(void *impl, unsigned w, const char *k, size_t kl, const char *v, size_t vl,
                          uint64_t ttl_ms, uint64_t now_ms, gw_store_cb cb, void *arg)
{
    return r_kv(impl, w, K_SET, k, kl, v ? v : "", vl, ttl_ms, cb, arg);
}

static gw_store_op *r_del(void *impl, unsigned w, const char *k, size_t kl, gw_store_cb cb, void *arg)
{
    return r_kv(impl, w, K_DEL, k, kl, NULL, 0, 0, cb, arg);
}

static size_t r_count(void *impl)
{
    return 0; /* not known without a round trip */
}

/* --- lifecycle ------------------------------------------------------------------------------------- */

static int r_attach(void *impl, unsigned worker, struct event_base *base)
{
    rstore *s = impl;
    if (worker >= s->nw) return -1;
    rworker *w = &s->w[worker];
    w->base = base;
    w->first = true;
    w->logged = -1; /* nothing logged yet: the first outcome is, a failed first connect included */
    w->ready_ev = event_new(base, -1, 0, on_ready, w);
    w->conn_tmo = evtimer_new(base, on_conn_timeout, w);
    w->retry_ev = evtimer_new(base, on_retry, w);
    w->drop_ev = evtimer_new(base, on_drop, w);
    w->flush_ev = event_new(base, -1, 0, gw_rs_flush, w);
    if (!w->ready_ev || !w->conn_tmo || !w->retry_ev || !w->drop_ev || !w->flush_ev) return -1;
    start_connect(w);
    return 0;
}

static void r_detach(void *impl, unsigned worker)
{
    rstore *s = impl;
    if (worker >= s->nw) return;
    rworker *w = &s->w[worker];
    w->detaching = true;
    if (w->flush_ev) gw_rs_flush(-1, 0, w); /* takes not sent yet fail fast (or go out before the drop) */
    drop_conn(w, NULL);                     /* pending replies complete (-1) */
    run_ready(w);                           /* deliver (or drop, if cancelled) what is left */
    struct event **evs[5] = {&w->ready_ev, &w->conn_tmo, &w->retry_ev, &w->drop_ev, &w->flush_ev};
    for (int i = 0; i < 5; i++) {
        if (*evs[i]) event_free(*evs[i]);
        *evs[i] = NULL;
    }
    w->base = NULL;
}

static void r_free(void *impl)
{
    rstore *s = impl;
    if (!s) return;
    free(s->w);
    free(s->host);
    free(s->addr);
    free(s->password);
    free(s);
}

/* Usable when every worker's connection is up (workers that never attached do not count). */
static bool r_available(void *impl)
{
    rstore *s = impl;
    for (unsigned i = 0; i < s->nw; i++)
        if (s->w[i].base && !atomic_load(&s->w[i].up)) return false;
    return true;
}

static const gw_store_backend redis_backend = {
    .free = r_free,
    .attach = r_attach,
    .detach = r_detach,
    .get = r_get,
    .set = r_set,
    .del = r_del,
    .take = gw_rs_take,
    .list = gw_rs_list,
    .cancel = on_redis_cancel,
    .incr = gw_rs_incr,
    .count = r_count,
    .available = r_available,
};

/* hiredis resolves names synchronously: do it once here, on the main thread, preferring IPv4. */
static char *resolve(const char *host, char **err)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1) return strdup(host);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_INET}, *ai = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        hints.ai_family = AF_UNSPEC;
        rc = getaddrinfo(host, NULL, &hints, &ai);
    }
    char num[NI_MAXHOST];
    if (rc == 0) rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof num, NULL, 0, NI_NUMERICHOST);
    if (ai) freeaddrinfo(ai);
    if (rc != 0) {
        *err = gw_strdupf("store: cannot resolve redis host %s: %s", host, gai_strerror(rc));
        return NULL;
    }
    return strdup(num);
}

gw_store *gw_store_new_redis(const char *host, unsigned port, const char *password, int db,
                             uint64_t connect_timeout_ms, uint64_t command_timeout_ms, unsigned nworkers,
                             char **err)
{
    rstore *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->port = port ? port : 6379;
    s->db = db;
    s->connect_timeout_ms = connect_timeout_ms;
    s->command_timeout_ms = command_timeout_ms;
    s->nw = nworkers + 1; /* like the embedded store: one more slot than workers */
    s->w = calloc(s->nw, sizeof *s->w);
    s->host = strdup(host && *host ? host : "127.0.0.1");
    s->password = password && *password ? strdup(password) : NULL;
    if (!s->w || !s->host || (password && *password && !s->password)) goto oom;
    if (!(s->addr = resolve(s->host, err))) {
        r_free(s);
        return NULL;
    }
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)s;
    for (unsigned i = 0; i < s->nw; i++) {
        s->w[i].s = s;
        s->w[i].id = i;
        s->w[i].seed = seed + i * 7919u;
    }
    gw_store *st = gw_store_wrap(&redis_backend, s);
    if (!st) *err = gw_strdupf("store: out of memory");
    return st;
oom:
    r_free(s);
    *err = gw_strdupf("store: out of memory");
    return NULL;
}
