/* store_redis_script.c - the store's Lua scripts on Redis: token buckets (batched per loop turn, on the
 * server's clock) and counters (INCRBY with a TTL set only by the write that created the key), each one
 * atomic script called by SHA, reloaded and sent as EVAL when the server's script cache was flushed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_redis_internal.h"

/* KEYS[1] = bucket; ARGV = capacity, rate per second, cost, n. The arithmetic of store.c bucket_take,
 * applied to n takes in a row (the first `granted` succeed): several requests on one bucket from one loop
 * turn cost one round trip, with exactly the answers n separate calls would have had. Returns granted,
 * tokens after, reset (ms), retry (ms, for the refused), tokens before taking, now (ms). */
static const char take_script[] =
    "local cap, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local n = tonumber(ARGV[4] or '1')\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ty = redis.call('TYPE', KEYS[1])['ok']\n"
    "local tokens, last\n"
    "if ty == 'hash' then\n"
    "  local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "  tokens, last = tonumber(h[1]), tonumber(h[2])\n"
    "elseif ty ~= 'none' then\n"
    "  return redis.error_reply('WRONGTYPE not a bucket')\n"
    "end\n"
    "if tokens == nil or last == nil then tokens, last = cap, now\n"
    "elseif now > last then tokens = math.min(cap, tokens + (now - last) * rate / 1000.0); last = now end\n"
    "if tokens > cap then tokens = cap end\n"
    "local before = tokens\n"
    "local allowed = n\n"
    "if cost > 0 then allowed = math.min(n, math.floor(tokens / cost)) end\n"
    "while allowed > 0 and before - allowed * cost < 0 do allowed = allowed - 1 end\n"
    "tokens = before - allowed * cost\n"
    "local to_full = 0\n"
    "if rate > 0 then to_full = (cap - tokens) / rate * 1000.0 end\n"
    "local reset = now + math.ceil(to_full)\n"
    "local retry = 0\n"
    "if allowed < n and rate > 0 then retry = math.ceil((cost - tokens) / rate * 1000.0) end\n"
    "if allowed < n and retry == 0 then retry = 1 end\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', last))\n"
    "redis.call('PEXPIRE', KEYS[1], reset - now + 1000)\n"
    "return {allowed, string.format('%.17g', tokens), string.format('%d', reset), string.format('%d', retry),\n"
    "        string.format('%.17g', before), string.format('%d', now)}\n";

/* KEYS[1] = counter; ARGV = delta, ttl (ms, 0 = none). EXISTS first, so that only the write that creates
 * the key sets its TTL (a result equal to delta would not say that: a counter may come back to 0). Lua
 * numbers are doubles, so neither the TTL nor the result passes through one: the TTL goes to PEXPIRE as
 * the text it came as (the host bounds it), and the value comes back as GET's string, exact to int64. */
static const char incr_script[] =
    "local existed = redis.call('EXISTS', KEYS[1])\n"
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if existed == 0 and ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return redis.call('GET', KEYS[1])\n";

void gw_rs_load_scripts(rworker *w)
{
    const char *argv[3] = {"SCRIPT", "LOAD", take_script};
    size_t lens[3] = {6, 4, sizeof take_script - 1};
    redisAsyncCommandArgv(w->ac, gw_rs_on_script, w->sha, 3, argv, lens);
    argv[2] = incr_script, lens[2] = sizeof incr_script - 1;
    redisAsyncCommandArgv(w->ac, gw_rs_on_script, w->incr_sha, 3, argv, lens);
}

static void send_take(rop *op, bool by_sha)
{
    size_t n = 1;
    for (rop *f = op->follow; f; f = f->follow) n++;
    snprintf(op->nums[3], sizeof op->nums[3], "%zu", n);
    const char *argv[8] = {by_sha ? "EVALSHA" : "EVAL", by_sha ? op->w->sha : take_script, "1", op->key,
                           op->nums[0], op->nums[1], op->nums[2], op->nums[3]};
    size_t lens[8] = {strlen(argv[0]), by_sha ? strlen(op->w->sha) : sizeof take_script - 1, 1, op->klen,
                      strlen(op->nums[0]), strlen(op->nums[1]), strlen(op->nums[2]), strlen(op->nums[3])};
    if (gw_rs_issue(op, 8, argv, lens) != 0) {
        gw_rs_release_followers(op, GW_STORE_ERROR);
        gw_rs_finish(op, GW_STORE_ERROR);
    }
}

int gw_rs_take_result(rop *op, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) { /* script cache flushed */
        const char *argv[3] = {"SCRIPT", "LOAD", take_script};
        size_t lens[3] = {6, 4, sizeof take_script - 1};
        if (op->w->ac) redisAsyncCommandArgv(op->w->ac, gw_rs_on_script, op->w->sha, 3, argv, lens);
        send_take(op, false);
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 || r->element[0]->type != REDIS_REPLY_INTEGER)
        return -1;
    for (int i = 1; i < 6; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING) return -1;
    long long granted = r->element[0]->integer;
    double after = strtod(r->element[1]->str, NULL), before = strtod(r->element[4]->str, NULL);
    uint64_t reset = strtoull(r->element[2]->str, NULL, 10), retry = strtoull(r->element[3]->str, NULL, 10);
    uint64_t now = strtoull(r->element[5]->str, NULL, 10);
    /* The i-th take in order: the first `granted` succeeded, each leaving one cost less. */
    long long i = 0;
    for (rop *t = op, *nx; t; t = nx, i++) {
        nx = t->follow;
        gw_bucket_result *br = &t->br;
        br->allowed = i < granted;
        br->remaining = br->allowed ? before - (double)(i + 1) * op->bcost : after;
        if (br->remaining < 0) br->remaining = 0;
        br->reset_ms = br->allowed && op->brate > 0
                           ? now + (uint64_t)ceil((op->bcap - br->remaining) / op->brate * 1000.0)
                           : reset;
        br->retry_ms = br->allowed ? 0 : retry;
        if (t != op) {
            t->refs--;
            t->follow = NULL;
            gw_rs_finish(t, GW_STORE_OK);
            gw_rs_maybe_free(t);
        }
    }
    op->follow = NULL;
    gw_rs_finish(op, GW_STORE_OK);
    return 0;
}

/* The ops riding on op's call get `status` (they are done waiting for it). */
void gw_rs_release_followers(rop *op, int status)
{
    for (rop *t = op->follow, *nx; t; t = nx) {
        nx = t->follow;
        t->follow = NULL;
        t->refs--;
        gw_rs_finish(t, status);
        gw_rs_maybe_free(t);
    }
    op->follow = NULL;
}

gw_store_op *gw_rs_take(void *impl, unsigned w, const char *k, size_t kl, double cap, double rate,
                        double cost, uint64_t now_ms, gw_bucket_cb cb, void *arg)
{
    rop *op = gw_rs_new_op(impl, w, K_TAKE, arg);
    if (!op) return NULL;
    op->bcb = cb;
    if (!(cap > 0) || !(rate >= 0) || !(cost >= 0) || !(op->key = gw_rs_dup_mem(k, kl))) {
        gw_rs_finish(op, GW_STORE_ERROR);
        return (gw_store_op *)op;
    }
    op->klen = kl;
    op->bcap = cap, op->brate = rate, op->bcost = cost;
    snprintf(op->nums[0], sizeof op->nums[0], "%.17g", cap);
    snprintf(op->nums[1], sizeof op->nums[1], "%.17g", rate);
    snprintf(op->nums[2], sizeof op->nums[2], "%.17g", cost);
    rworker *wk = op->w;
    op->bnext = NULL;
    op->refs++; /* the batch holds it until flushed (a cancel meanwhile must not free it) */
    if (wk->batch_tail) wk->batch_tail->bnext = op;
    else wk->batch_head = op;
    wk->batch_tail = op;
    event_active(wk->flush_ev, EV_TIMEOUT, 1);
    return (gw_store_op *)op;
}

static bool same_take(const rop *a, const rop *b)
{
    return a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0 && a->bcap == b->bcap && a->brate == b->brate &&
           a->bcost == b->bcost;
}

/* End of the loop turn: one script call per bucket for the takes made meanwhile (in their order). */
void gw_rs_flush(evutil_socket_t fd, short what, void *arg)
{
    rworker *w = arg;
    rop *list = w->batch_head;
    w->batch_head = w->batch_tail = NULL;
    struct timeval tv = gw_rs_tv_ms(w->s->command_timeout_ms ? w->s->command_timeout_ms : 1000);
    while (list) {
        rop *lead = list;
        list = lead->bnext;
        lead->bnext = NULL;
        lead->refs--; /* the batch's hold */
        if (lead->finished) { /* cancelled while waiting for the flush */
            gw_rs_maybe_free(lead);
            continue;
        }
        /* This bucket's takes ride on the leader's call (their batch hold becomes the ride's); the rest
         * wait for a later round of this loop. */
        rop *rest = NULL, **rest_tail = &rest, *tail = lead;
        size_t n = 1;
        for (rop *t = list, *nx; t; t = nx) {
            nx = t->bnext;
            t->bnext = NULL;
            if (t->finished) {
                t->refs--;
                gw_rs_maybe_free(t);
            } else if (n < 512 && same_take(lead, t)) {
                tail->follow = t;
                tail = t;
                evtimer_add(t->timer, &tv);
                n++;
            } else {
                *rest_tail = t;
                rest_tail = &t->bnext;
            }
        }
        list = rest;
        send_take(lead, w->sha[0] != '\0');
    }
}

static void send_incr(rop *op, bool by_sha)
{
    const char *argv[6] = {by_sha ? "EVALSHA" : "EVAL", by_sha ? op->w->incr_sha : incr_script, "1", op->key,
                           op->nums[0], op->nums[1]};
    size_t lens[6] = {strlen(argv[0]), by_sha ? strlen(op->w->incr_sha) : sizeof incr_script - 1, 1, op->klen,
                      strlen(op->nums[0]), strlen(op->nums[1])};
    if (gw_rs_issue(op, 6, argv, lens) != 0) gw_rs_finish(op, GW_STORE_ERROR);
}

gw_store_op *gw_rs_incr(void *impl, unsigned w, const char *k, size_t kl, int64_t delta, uint64_t ttl_ms,
                        uint64_t now_ms, gw_incr_cb cb, void *arg)
{
    rop *op = gw_rs_new_op(impl, w, K_INCR, arg);
    if (!op) return NULL;
    op->icb = cb;
    if (!(op->key = gw_rs_dup_mem(k, kl))) {
        gw_rs_finish(op, GW_STORE_ERROR);
        return (gw_store_op *)op;
    }
    op->klen = kl;
    snprintf(op->nums[0], sizeof op->nums[0], "%lld", (long long)delta);
    snprintf(op->nums[1], sizeof op->nums[1], "%llu", (unsigned long long)ttl_ms);
    send_incr(op, op->w->incr_sha[0] != '\0');
    return (gw_store_op *)op;
}

int gw_rs_incr_result(rop *op, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) { /* script cache flushed */
        const char *argv[3] = {"SCRIPT", "LOAD", incr_script};
        size_t lens[3] = {6, 4, sizeof incr_script - 1};
        if (op->w->ac) redisAsyncCommandArgv(op->w->ac, gw_rs_on_script, op->w->incr_sha, 3, argv, lens);
        send_incr(op, false);
        return 0;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        op->ival = r->integer;
    } else if (r->type == REDIS_REPLY_STRING) { /* the script's GET: the exact value */
        char *end;
        errno = 0;
        long long v = strtoll(r->str, &end, 10);
        if (errno || end == r->str || *end) return -1;
        op->ival = v;
    } else {
        return -1; /* e.g. not an integer value: an error reply */
    }
    gw_rs_finish(op, GW_STORE_OK);
    return 0;
}
