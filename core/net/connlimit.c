/* connlimit.c - process-wide connection accounting (see connlimit.h). Touched once when a connection is
 * accepted and once when it closes, never per request: the budget is one atomic counter, the per-address
 * counts live in a small hash split into locked shards so that workers rarely meet on a lock. */
#include "connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "log.h"
#include "util.h"

#define NSHARDS 16
#define NBUCKETS 256 /* per shard; chains stay short up to tens of thousands of addresses */
#define LOG_EVERY_MS 10000

struct gw_client_slot {
    gw_client_slot *next;
    unsigned char addr[16]; /* IPv6, or IPv4 as v4-mapped IPv6 */
    unsigned count;
    unsigned shard;
};

typedef struct {
    pthread_mutex_t mu;
    gw_client_slot *buckets[NBUCKETS];
} shard;

struct gw_connlimit {
    atomic_uint open;
    uint64_t seed; /* keeps remote peers from choosing colliding addresses */
    shard shards[NSHARDS];
    atomic_uint_fast64_t since[GW_LIMIT_NREASONS];      /* hits not yet in any log line */
    atomic_int_fast64_t last_log_ms[GW_LIMIT_NREASONS]; /* start of the current interval */
    atomic_uint limit[GW_LIMIT_NREASONS];               /* the limit as last hit, for the summary */
    gw_metric *m_limited, *m_open;
};

static const char *const reason_names[GW_LIMIT_NREASONS] = {"max_connections", "per_client", "descriptors"};

gw_connlimit *gw_connlimit_new(gw_metrics *m)
{
    gw_connlimit *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (RAND_bytes((unsigned char *)&l->seed, sizeof l->seed) != 1) l->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15u;
    for (int i = 0; i < NSHARDS; i++) pthread_mutex_init(&l->shards[i].mu, NULL);
    for (int i = 0; i < GW_LIMIT_NREASONS; i++) atomic_init(&l->last_log_ms[i], INT64_MIN / 2);
    static const char *const reason_label[] = {"reason", NULL};
    const char *err = NULL;
    if (m) {
        l->m_limited = gw_metrics_register(m, GW_METRIC_COUNTER, "gateway_connections_limited_total",
                                           "Connection limits reached: max_connections (a worker paused "
                                           "accepting), per_client (closed at accept), descriptors (accept "
                                           "failed for lack of file descriptors)",
                                           reason_label, NULL, 0, &err);
        l->m_open = gw_metrics_register(m, GW_METRIC_GAUGE, "gateway_connections_open",
                                        "Client connections open", NULL, NULL, 0, &err);
    }
    return l;
}

void gw_connlimit_free(gw_connlimit *l)
{
    if (!l) return;
    gw_connlimit_flush(l, true); /* what the last interval counted */
    for (int i = 0; i < NSHARDS; i++) {
        for (int b = 0; b < NBUCKETS; b++) {
            gw_client_slot *s = l->shards[i].buckets[b];
            while (s) {
                gw_client_slot *next = s->next;
                free(s);
                s = next;
            }
        }
        pthread_mutex_destroy(&l->shards[i].mu);
    }
    free(l);
}

bool gw_connlimit_take(gw_connlimit *l, unsigned max)
{
    if (max && atomic_load(&l->open) >= max) return false;
    if (atomic_fetch_add(&l->open, 1) < max || !max) return true;
    atomic_fetch_sub(&l->open, 1); /* another worker took the last slot first */
    return false;
}

void gw_connlimit_put(gw_connlimit *l)
{
    atomic_fetch_sub(&l->open, 1);
}

unsigned gw_connlimit_open(gw_connlimit *l)
{
    return atomic_load(&l->open);
}

static bool client_key(const struct sockaddr *sa, unsigned char key[16])
{
    if (sa->sa_family == AF_INET) {
        memset(key, 0, 10);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static uint64_t key_hash(const gw_connlimit *l, const unsigned char key[16])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    uint64_t h = (a ^ l->seed) * 0xff51afd7ed558ccdu;
    h = (h ^ (h >> 33) ^ b) * 0xc4ceb9fe1a85ec53u;
    return h ^ (h >> 29);
}

gw_client_slot *gw_connlimit_client_take(gw_connlimit *l, const struct sockaddr *sa, unsigned max, bool *over)
{
    unsigned char key[16];
    *over = false;
    if (!max || !client_key(sa, key)) return NULL;
    uint64_t h = key_hash(l, key);
    unsigned si = (unsigned)(h % NSHARDS);
    shard *sh = &l->shards[si];
    gw_client_slot **head = &sh->buckets[(h / NSHARDS) % NBUCKETS];
    pthread_mutex_lock(&sh->mu);
    gw_client_slot *s = *head;
    while (s && memcmp(s->addr, key, 16) != 0) s = s->next;
    if (s && s->count >= max) {
        *over = true;
        s = NULL;
    } else if (s) {
        s->count++;
    } else if ((s = calloc(1, sizeof *s))) {
        memcpy(s->addr, key, 16);
        s->count = 1;
        s->shard = si;
        s->next = *head;
        *head = s;
    }
    pthread_mutex_unlock(&sh->mu);
    return s;
}

void gw_connlimit_client_put(gw_connlimit *l, gw_client_slot *s)
{
    if (!s) return;
    shard *sh = &l->shards[s->shard];
    pthread_mutex_lock(&sh->mu);
    if (--s->count == 0) {
        gw_client_slot **head = &sh->buckets[(key_hash(l, s->addr) / NSHARDS) % NBUCKETS];
        while (*head != s) head = &(*head)->next;
        *head = s->next;
        free(s);
    }
    pthread_mutex_unlock(&sh->mu);
}

/* The first hit of an interval is logged at once; later ones are counted and reported by
 * gw_connlimit_flush at the interval's end, so the figures of all lines add up to the metric. n: this
 * hit and those of the previous interval that no flush reported yet. */
static void log_first(gw_limit_reason why, unsigned limit, const char *detail, uint_fast64_t n)
{
    unsigned long long c = (unsigned long long)n;
    const char *s = n == 1 ? "" : "s", *d = detail ? detail : "?";
    int iv = LOG_EVERY_MS / 1000;
    switch (why) {
    case GW_LIMIT_MAX_CONNECTIONS:
        gw_warn("max_connections (%u) reached: accepting paused, new clients wait in the listen backlog "
                "(%llu time%s; more in the next %d s are counted and reported then)",
                limit, c, s, iv);
        break;
    case GW_LIMIT_PER_CLIENT:
        gw_warn("client %s: limits.max_connections_per_client (%u) reached, connection closed (%llu "
                "connection%s refused; more in the next %d s are counted and reported then)",
                d, limit, c, s, iv);
        break;
    default:
        gw_warn(
            "accept: %s: out of file descriptors, accepting paused briefly (%llu time%s; more in the next "
            "%d s are counted and reported then); raise the file limit (ulimit -n) or lower max_connections",
            d, c, s, iv);
        break;
    }
}

static void log_summary(gw_limit_reason why, unsigned limit, uint_fast64_t n)
{
    unsigned long long c = (unsigned long long)n;
    const char *s = n == 1 ? "" : "s";
    switch (why) {
    case GW_LIMIT_MAX_CONNECTIONS:
        gw_warn("max_connections (%u): hit %llu more time%s in the last %d s", limit, c, s,
                LOG_EVERY_MS / 1000);
        break;
    case GW_LIMIT_PER_CLIENT:
        gw_warn("limits.max_connections_per_client (%u): %llu more connection%s refused in the last %d s",
                limit, c, s, LOG_EVERY_MS / 1000);
        break;
    default:
        gw_warn("accept: out of file descriptors %llu more time%s in the last %d s", c, s,
                LOG_EVERY_MS / 1000);
        break;
    }
}

void gw_connlimit_hit(gw_connlimit *l, gw_limit_reason why, unsigned limit, const char *detail)
{
    if (l->m_limited)
        gw_metric_add(l->m_limited, gw_metrics_thread_slot(), (const char *const[]){reason_names[why]}, 1);
    atomic_store(&l->limit[why], limit);
    int64_t now = (int64_t)gw_mono_ms(), last = atomic_load(&l->last_log_ms[why]);
    if (now - last >= LOG_EVERY_MS && atomic_compare_exchange_strong(&l->last_log_ms[why], &last, now)) {
        log_first(why, limit, detail, 1 + atomic_exchange(&l->since[why], 0));
        return;
    }
    atomic_fetch_add(&l->since[why], 1);
}

void gw_connlimit_flush(gw_connlimit *l, bool now_anyway)
{
    for (int why = 0; why < GW_LIMIT_NREASONS; why++) {
        if (atomic_load(&l->since[why]) == 0) continue;
        int64_t now = (int64_t)gw_mono_ms(), last = atomic_load(&l->last_log_ms[why]);
        if (!now_anyway &&
            (now - last < LOG_EVERY_MS || !atomic_compare_exchange_strong(&l->last_log_ms[why], &last, now)))
            continue;
        uint_fast64_t n = atomic_exchange(&l->since[why], 0);
        if (n) log_summary((gw_limit_reason)why, atomic_load(&l->limit[why]), n);
    }
}

gw_metric *gw_connlimit_open_gauge(gw_connlimit *l)
{
    return l->m_open;
}
