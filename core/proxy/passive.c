/* passive.c - passive health: live requests mark targets too. `failures` failed attempts in a row (a
 * connect failure, a timeout before the response head, a fresh connection closed before any response)
 * take a target out of the rotation; any response head resets the run. A target taken out comes back
 * through its service's active check (health.c, with its hysteresis) or, without one, after a cool-down:
 * then one request is let through, and its outcome decides. Everything lives in atomics on the shared
 * gw_target, so counts are exact across workers without a lock. 5xx answers are no failures here. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

static bool passive_only(const gw_target *t)
{
    return t->service->passive.failures && !t->service->health.path;
}

static const char *kind_name(int kind)
{
    return kind == GW_PASSIVE_CONNECT   ? "connect failure"
           : kind == GW_PASSIVE_TIMEOUT ? "timeout"
           : kind == GW_PASSIVE_CLOSED  ? "connection closed before a response"
                                        : "failure";
}

bool gw_passive_failure(gw_target *t, int kind, int64_t now_ms)
{
    const gw_passive_conf *pc = &t->service->passive;
    if (!pc->failures) return false;
    atomic_store(&t->passive_last, kind);
    unsigned n = atomic_fetch_add(&t->passive_fails, 1) + 1;
    if (n < pc->failures) return false;
    int health = atomic_load(&t->health);
    if (n > pc->failures) {
        /* out already: a failed trial (or a request sent while every target was out) starts another
         * cool-down */
        if (passive_only(t) && health == GW_HEALTH_UNHEALTHY)
            atomic_store(&t->retry_at_ms, now_ms + (int64_t)pc->cooldown_ms);
        return false;
    }
    /* Only the attempt that completes the run gets here (fetch_add hands out each count once). */
    if (health == GW_HEALTH_UNHEALTHY) return false; /* the active check has it out already */
    atomic_store(&t->retry_at_ms, now_ms + (int64_t)pc->cooldown_ms);
    atomic_store(&t->down_detail, (int)n);
    atomic_store(&t->down_reason, GW_DOWN_PASSIVE);
    atomic_store(&t->down_since, (int64_t)time(NULL));
    atomic_fetch_add(&t->ejections, 1);
    atomic_store(&t->health, GW_HEALTH_UNHEALTHY);
    if (passive_only(t))
        gw_warn("health: %s target %s is out after %u failed requests in a row (last: %s); tried again in "
                "%llu ms",
                t->service->name, t->conf->url, n, kind_name(kind), (unsigned long long)pc->cooldown_ms);
    else
        gw_warn("health: %s target %s is out after %u failed requests in a row (last: %s) until its health "
                "check passes",
                t->service->name, t->conf->url, n, kind_name(kind));
    return true;
}

void gw_passive_success(gw_target *t)
{
    if (atomic_load(&t->passive_fails)) atomic_store(&t->passive_fails, 0);
    if (!passive_only(t) || atomic_load(&t->health) != GW_HEALTH_UNHEALTHY) return;
    int expect = GW_HEALTH_UNHEALTHY;
    atomic_store(&t->down_reason, GW_DOWN_NONE);
    atomic_store(&t->down_since, (int64_t)time(NULL));
    if (atomic_compare_exchange_strong(&t->health, &expect, GW_HEALTH_HEALTHY))
        gw_info("health: %s target %s answered again and is back", t->service->name, t->conf->url);
}

bool gw_target_pickable(gw_target *t, int64_t *now_ms)
{
    if (atomic_load(&t->health) != GW_HEALTH_UNHEALTHY) return true;
    if (!passive_only(t)) return false;
    int64_t at = atomic_load(&t->retry_at_ms);
    if (*now_ms == 0) *now_ms = (int64_t)gw_mono_ms();
    if (*now_ms < at) return false;
    /* One trial per cool-down: the request that moves the time on is it. */
    return atomic_compare_exchange_strong(&t->retry_at_ms, &at,
                                          *now_ms + (int64_t)t->service->passive.cooldown_ms);
}

int64_t gw_target_retry_in_ms(const gw_target *t, int64_t now_ms)
{
    if (atomic_load(&t->health) != GW_HEALTH_UNHEALTHY) return 0;
    if (!passive_only(t)) return (int64_t)(t->service->health.path ? t->service->health.interval_ms : 0);
    int64_t left = atomic_load(&t->retry_at_ms) - now_ms;
    return left > 0 ? left : 0;
}

void gw_target_reason(const gw_target *t, char *buf, size_t n)
{
    int detail = atomic_load(&t->down_detail);
    switch (atomic_load(&t->down_reason)) {
    case GW_DOWN_NO_ADDRESS:
        snprintf(buf, n, "active check failed: no address for the host");
        break;
    case GW_DOWN_CONNECT:
        snprintf(buf, n, "active check failed: connect: %s", detail ? strerror(detail) : "error");
        break;
    case GW_DOWN_TIMEOUT:
        snprintf(buf, n, "active check failed: no answer within the timeout");
        break;
    case GW_DOWN_STATUS:
        snprintf(buf, n, "active check failed: status %d", detail);
        break;
    case GW_DOWN_CLOSED:
        snprintf(buf, n, "active check failed: connection closed without a response");
        break;
    case GW_DOWN_PASSIVE:
        snprintf(buf, n, "passive: %d consecutive failed requests (last: %s)", detail,
                 kind_name(atomic_load(&t->passive_last)));
        break;
    default:
        snprintf(buf, n, "%s", "");
        break;
    }
}
