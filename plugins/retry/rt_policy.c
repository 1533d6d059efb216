/* rt_policy.c - the filter "retry": the settings checks the table cannot do (status codes, method tokens),
 * which statuses are retried, and the backoff: delay(k) = initial * multiplier^k, capped at max_delay, then
 * jitter: a uniform draw in [delay * (1 - jitter), delay * (1 + jitter)], kept within [0, max_delay]. The
 * draws come from a per-worker xorshift64* generator (no lock, no shared state). */
#include "retry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool rt_list_has(const gw_list *l, const char *s, size_t n)
{
    const char *const *v = l->v;
    for (size_t i = 0; i < l->n; i++)
        if (strlen(v[i]) == n && memcmp(v[i], s, n) == 0) return true;
    return false;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int check_statuses(const gw_host *h, const gw_conf *seq, char *err, size_t errlen)
{
    for (size_t i = 0; i < h->conf_len(seq); i++) {
        const gw_conf *n = h->conf_at(seq, i);
        const char *s = h->conf_str(n);
        char *end = NULL;
        long v = s ? strtol(s, &end, 10) : 0;
        if (!s || end == s || *end || v < 400 || v > 599)
            return h->conf_error(n, err, errlen,
                                 RT_NAME ".retry_on: expected HTTP status codes from 400 to 599 (e.g. 503)");
    }
    return 0;
}

static int check_methods(const gw_host *h, const gw_conf *seq, char *err, size_t errlen)
{
    for (size_t i = 0; i < h->conf_len(seq); i++) {
        const gw_conf *n = h->conf_at(seq, i);
        const char *s = h->conf_str(n);
        bool ok = s && *s;
        for (const char *p = s; ok && *p; p++)
            ok = is_tchar((unsigned char)*p);
        if (!ok)
            return h->conf_error(n, err, errlen,
                                 RT_NAME ".idempotent_methods: expected HTTP method names (e.g. GET, PUT)");
    }
    return 0;
}

/* The pipeline entry and a route's settings alike (the table already checked types and ranges). */
int rt_check_conf(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, "retry_on");
    if (n && h->conf_kind(n) == GW_CONF_SEQ && check_statuses(h, n, err, errlen) != 0) return -1;
    n = h->conf_get(conf, "idempotent_methods");
    if (n && h->conf_kind(n) == GW_CONF_SEQ && check_methods(h, n, err, errlen) != 0) return -1;
    return 0;
}

bool rt_status_retriable(const rt_conf *rc, int status)
{
    if (status < 100 || status > 999) return false; /* what a status line can carry */
    char buf[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10), (char)('0' + status % 10)};
    return rt_list_has(&rc->retry_on, buf, sizeof buf);
}

uint64_t rt_rng_next(uint64_t *rng)
{
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t rt_rng_seed(unsigned worker, const void *salt)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)worker << 48) ^
                 (uint64_t)(uintptr_t)salt;
    s ^= s >> 33; /* splitmix-style finaliser: close seeds give unrelated streams */
    s *= 0xff51afd7ed558ccdull;
    s ^= s >> 33;
    return s ? s : 0x9E3779B97F4A7C15ull;
}

uint64_t rt_delay_ms(const rt_conf *rc, unsigned k, uint64_t *rng)
{
    double cap = (double)rc->max_delay_ms;
    double d = (double)rc->initial_delay_ms * pow(rc->multiplier, (double)k);
    if (!(d <= cap)) d = cap; /* also catches an overflow to inf */
    if (rc->jitter > 0 && d > 0) {
        double u = (double)(rt_rng_next(rng) >> 11) * 0x1.0p-53; /* [0, 1) */
        d += d * rc->jitter * (2.0 * u - 1.0);
        if (d < 0) d = 0;
        if (d > cap) d = cap;
    }
    return (uint64_t)llround(d);
}
