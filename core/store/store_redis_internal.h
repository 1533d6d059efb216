/* store_redis_internal.h - what store_redis.c (connections, values), store_redis_list.c (listings) and
 * store_redis_script.c (the Lua scripts: token buckets, counters) share. Private to those three files. */
#ifndef GW_STORE_REDIS_INTERNAL_H
#define GW_STORE_REDIS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "store_internal.h"

enum { K_GET = -2, K_SET = -3, K_DEL = -4, K_TAKE = -5, K_LIST = -6, K_INCR = -7 };
enum { W_DOWN, W_CONNECTING, W_UP };
/* Backoff capped at 1 s: requests that need the store are back within about a second of Redis returning. */
enum { BACKOFF_MIN_MS = 100, BACKOFF_MAX_MS = 1000, MAX_TIMEOUTS = 3, SCAN_COUNT = 1000, MGET_BATCH = 1000 };

typedef struct rstore rstore;
typedef struct rworker rworker;
typedef struct rop rop;

struct rop {
    int kind; /* first, negative (store_internal.h) */
    rop *next; /* in the worker's ready queue */
    rworker *w;
    struct event *timer;
    int refs; /* replies hiredis still owes us */
    bool finished, queued, user_done, cancelled;
    int status;
    gw_store_cb cb;
    gw_bucket_cb bcb;
    gw_store_list_cb lcb;
    gw_incr_cb icb;
    int64_t ival; /* incr */
    void *arg;
    char *val;
    size_t vlen;
    gw_bucket_result br;
    char *key; /* take: kept for the EVAL fallback; list: the MATCH pattern */
    size_t klen;
    char nums[4][40];
    double bcap, brate, bcost; /* take */
    rop *follow;            /* take: the ops riding on this one's script call, in order */
    rop *bnext;             /* in the worker's batch of takes not sent yet */
    char cursor[32];
    gw_strv *keys, *vals;
    size_t n, cap, pos;
};

struct rworker {
    rstore *s;
    unsigned id;
    struct event_base *base;
    redisAsyncContext *ac;
    int state;
    atomic_bool up; /* state == W_UP, readable from any thread (for /info) */
    bool first, bad, detaching;
    int logged; /* last state logged: -1 none, W_DOWN, W_UP */
    struct event *ready_ev, *conn_tmo, *retry_ev, *drop_ev;
    rop *ready_head, *ready_tail;
    rop *batch_head, *batch_tail; /* takes of this loop turn, sent together by flush_ev */
    struct event *flush_ev;
    unsigned backoff_ms, timeouts, seed;
    char sha[48];      /* the take script, once loaded */
    char incr_sha[48]; /* the counter script */
};

struct rstore {
    char *host, *addr, *password;
    unsigned port;
    int db;
    uint64_t connect_timeout_ms, command_timeout_ms;
    rworker *w;
    unsigned nw;
};

struct timeval gw_rs_tv_ms(uint64_t ms);
char *gw_rs_dup_mem(const char *p, size_t n);
rop *gw_rs_new_op(rstore *s, unsigned worker, int kind, void *arg);
/* Sends one command of op; -1 when the connection is not usable (fail fast). */
int gw_rs_issue(rop *op, int argc, const char **argv, const size_t *lens);
/* The op's result is known (or it timed out): its callback runs from the loop. May free op. */
void gw_rs_finish(rop *op, int status);
void gw_rs_maybe_free(rop *op);
/* SCRIPT LOAD reply: keeps the SHA in priv (a char[48]). */
void gw_rs_on_script(redisAsyncContext *ac, void *reply, void *priv);

/* store_redis_list.c */
gw_store_op *gw_rs_list(void *impl, unsigned w, const char *prefix, size_t plen, gw_store_list_cb cb,
                        void *arg);
int gw_rs_list_result(rop *op, const redisReply *r); /* a SCAN or MGET reply; 0 = handled (maybe re-sent) */

/* store_redis_script.c */
void gw_rs_load_scripts(rworker *w); /* pipelined on a new connection */
gw_store_op *gw_rs_take(void *impl, unsigned w, const char *k, size_t kl, double cap, double rate,
                        double cost, uint64_t now_ms, gw_bucket_cb cb, void *arg);
void gw_rs_flush(evutil_socket_t fd, short what, void *arg); /* end of the loop turn: send batched takes */
int gw_rs_take_result(rop *op, const redisReply *r);        /* 0 = handled (maybe re-sent) */
void gw_rs_release_followers(rop *op, int status);
gw_store_op *gw_rs_incr(void *impl, unsigned w, const char *k, size_t kl, int64_t delta, uint64_t ttl_ms,
                        uint64_t now_ms, gw_incr_cb cb, void *arg);
int gw_rs_incr_result(rop *op, const redisReply *r); /* 0 = handled (maybe re-sent) */

#endif
