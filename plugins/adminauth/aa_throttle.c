/* aa_throttle.c - adminauth's failure table: wrong-credential counts per (client address, username),
 * shared by every worker of the instance behind one mutex. Only requests below the protected path that
 * carry Basic credentials take the lock (for a few hundred nanoseconds), never the proxy's requests.
 *
 * The table is fixed (AA_SETS sets of AA_WAYS entries) so no client can make it grow: a new pair takes a
 * free or expired slot of its set, else the one whose last failure is oldest. The set comes from a hash
 * seeded per instance, so a client cannot aim its pairs at the set of someone else's entry. */
#include "aa_throttle.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define AA_SETS 1024
#define AA_WAYS 4
#define AA_IP_MAX 48 /* an IPv6 text address is at most 45 bytes; longer ones are cut (the hash covers all) */

typedef struct {
    uint64_t hash;
    uint64_t last_ms;  /* now_ms of the last counted failure */
    uint32_t failures; /* 0 = free slot */
    uint8_t iplen;
    char ip[AA_IP_MAX];
    unsigned char user[AA_USER_MD_LEN];
} aa_entry;

struct aa_throttle {
    pthread_mutex_t lock;
    uint32_t max_failures;
    uint64_t block_ms, seed;
    aa_entry e[AA_SETS * AA_WAYS];
};

aa_throttle *aa_throttle_new(uint32_t max_failures, uint64_t block_ms, uint64_t seed)
{
    aa_throttle *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->max_failures = max_failures;
    t->block_ms = block_ms;
    t->seed = seed;
    return t;
}

void aa_throttle_free(aa_throttle *t)
{
    if (!t) return;
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static uint64_t pair_hash(const aa_throttle *t, gw_strv ip, const unsigned char *user)
{
    uint64_t h = fnv(0xcbf29ce484222325u ^ t->seed, ip.p, ip.n); /* FNV-1a, seeded per instance */
    h = fnv(h ^ 0xff, user, AA_USER_MD_LEN);
    h ^= h >> 29; /* spread the high bits over the set index */
    return h;
}

static size_t key_len(gw_strv ip)
{
    return ip.n < AA_IP_MAX ? ip.n : AA_IP_MAX;
}

static bool expired(const aa_throttle *t, const aa_entry *e, uint64_t now)
{
    return now - e->last_ms >= t->block_ms;
}

static bool same_pair(const aa_entry *e, uint64_t hash, gw_strv ip, const unsigned char *user)
{
    size_t klen = key_len(ip);
    return e->failures && e->hash == hash && e->iplen == klen && memcmp(e->ip, ip.p, klen) == 0 &&
           memcmp(e->user, user, AA_USER_MD_LEN) == 0;
}

/* The live entry of the pair, or NULL; an entry whose last failure is `block` old is freed on the way. */
static aa_entry *entry_find(aa_throttle *t, uint64_t hash, gw_strv ip, const unsigned char *user, uint64_t now)
{
    aa_entry *set = &t->e[(hash % AA_SETS) * AA_WAYS];
    for (int i = 0; i < AA_WAYS; i++) {
        aa_entry *e = &set[i];
        if (!same_pair(e, hash, ip, user)) continue;
        if (expired(t, e, now)) {
            e->failures = 0;
            return NULL;
        }
        return e;
    }
    return NULL;
}

/* A slot for a new pair: a free or expired one of its set, else the one with the oldest failure. */
static aa_entry *entry_new(aa_throttle *t, uint64_t hash, gw_strv ip, const unsigned char *user, uint64_t now)
{
    aa_entry *set = &t->e[(hash % AA_SETS) * AA_WAYS];
    aa_entry *victim = &set[0];
    for (int i = 0; i < AA_WAYS; i++) {
        aa_entry *e = &set[i];
        if (!e->failures || expired(t, e, now)) {
            victim = e;
            break;
        }
        if (e->last_ms < victim->last_ms) victim = e;
    }
    size_t klen = key_len(ip);
    memset(victim, 0, sizeof *victim);
    victim->hash = hash;
    victim->iplen = (uint8_t)klen;
    memcpy(victim->ip, ip.p, klen);
    memcpy(victim->user, user, AA_USER_MD_LEN);
    return victim;
}

aa_throttle_verdict aa_throttle_attempt(aa_throttle *t, gw_strv ip, const unsigned char user_md[AA_USER_MD_LEN],
                                        bool ok, uint64_t now, aa_throttle_info *info)
{
    uint64_t hash = pair_hash(t, ip, user_md);
    aa_throttle_verdict v;
    *info = (aa_throttle_info){0};
    pthread_mutex_lock(&t->lock);
    aa_entry *e = entry_find(t, hash, ip, user_md, now);
    if (e && e->failures >= t->max_failures) {
        /* refused attempts do not extend the block: it counts from the last counted failure */
        info->failures = e->failures;
        info->left_ms = e->last_ms + t->block_ms - now;
        v = AA_T_BLOCKED;
    } else if (ok) {
        if (e) e->failures = 0; /* a success clears the pair's count */
        v = AA_T_PASS;
    } else {
        if (!e) e = entry_new(t, hash, ip, user_md, now);
        e->failures++;
        e->last_ms = now;
        info->failures = e->failures;
        v = e->failures == t->max_failures ? AA_T_BLOCKS : AA_T_FAILED;
    }
    pthread_mutex_unlock(&t->lock);
    return v;
}
