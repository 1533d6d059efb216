/* aa_throttle.c - adminauth's failure table: wrong-credential counts per (client address, username) and
 * per address across usernames, shared by every worker of the instance behind one mutex. Only requests
 * below the protected path that carry Basic credentials take the lock (for a few hundred nanoseconds),
 * never the proxy's requests.
 *
 * The table is fixed (AA_SETS sets of AA_WAYS entries) so no client can make it grow: a new entry takes a
 * free or expired slot of its set, else the unblocked one whose last failure is oldest. A blocked entry is
 * never evicted: otherwise a blocked client could push its own block out by failing with other usernames.
 * The address's own count (an entry with a reserved username digest) bounds what one address can put in
 * the table: per_address failures within `block`, then the address is blocked for every username. When a
 * wrong attempt finds no slot it could be counted in (its set all blocked), it is refused as blocked
 * (fail-closed): counting nothing would give unlimited guesses. One address cannot bring that about (its
 * entries are bounded as above and the seeded hash spreads them); it takes hundreds of addresses.
 *
 * An IPv6 client's address count keys on its /64 (one host usually has the whole /64); IPv4 and
 * IPv4-mapped addresses on the full address. The set comes from a hash seeded per instance, so a client
 * cannot aim its entries at the set of someone else's. */
#include "aa_throttle.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AA_SETS 1024
#define AA_WAYS 4
#define AA_IP_MAX                                                                                            \
    48 /* an IPv6 text address is at most 45 bytes; longer ones are cut (the hash covers all)                \
        */

typedef struct {
    uint64_t hash;
    uint64_t last_ms;  /* now_ms of the last counted failure */
    uint32_t failures; /* 0 = free slot */
    uint32_t limit;    /* failures that block: max_failures, or per_address for an address entry */
    uint8_t iplen;
    char ip[AA_IP_MAX];
    unsigned char user[AA_USER_MD_LEN];
} aa_entry;

struct aa_throttle {
    pthread_mutex_t lock;
    uint32_t max_failures, per_address;
    uint64_t block_ms, seed;
    aa_entry e[AA_SETS * AA_WAYS];
};

aa_throttle *aa_throttle_new(uint32_t max_failures, uint32_t per_address, uint64_t block_ms, uint64_t seed)
{
    aa_throttle *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->max_failures = max_failures;
    t->per_address = per_address;
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
static aa_entry *entry_find(aa_throttle *t, uint64_t hash, gw_strv ip, const unsigned char *user,
                            uint64_t now)
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

static bool blocked(const aa_throttle *t, const aa_entry *e, uint64_t now)
{
    return e->failures >= e->limit && !expired(t, e, now);
}

/* A slot for a new entry: a free or expired one of its set, else the unblocked one with the oldest
 * failure; never `keep` (the other entry of this attempt). NULL when every other slot is blocked. */
static aa_entry *slot_find(aa_throttle *t, uint64_t hash, uint64_t now, const aa_entry *keep)
{
    aa_entry *set = &t->e[(hash % AA_SETS) * AA_WAYS];
    aa_entry *victim = NULL;
    for (int i = 0; i < AA_WAYS; i++) {
        aa_entry *e = &set[i];
        if (e == keep) continue;
        if (!e->failures || expired(t, e, now)) return e;
        if (!blocked(t, e, now) && (!victim || e->last_ms < victim->last_ms)) victim = e;
    }
    return victim;
}

static void entry_init(aa_entry *e, uint64_t hash, gw_strv ip, const unsigned char *user, uint32_t limit)
{
    size_t klen = key_len(ip);
    memset(e, 0, sizeof *e);
    e->hash = hash;
    e->limit = limit;
    e->iplen = (uint8_t)klen;
    memcpy(e->ip, ip.p, klen);
    memcpy(e->user, user, AA_USER_MD_LEN);
}

/* The key of the address count: "/64:" and the first 8 bytes in hex for IPv6 (not IPv4-mapped), else
 * the address as given. */
static gw_strv address_key(gw_strv ip, char *buf, size_t len)
{
    char text[64];
    unsigned char a[16];
    if (ip.n >= sizeof text || !memchr(ip.p, ':', ip.n)) return ip;
    memcpy(text, ip.p, ip.n);
    text[ip.n] = '\0';
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (inet_pton(AF_INET6, text, a) != 1 || memcmp(a, mapped, sizeof mapped) == 0) return ip;
    int n = snprintf(buf, len, "/64:%02x%02x%02x%02x%02x%02x%02x%02x", a[0], a[1], a[2], a[3], a[4], a[5],
                     a[6], a[7]);
    return (gw_strv){buf, (size_t)n};
}

/* The username digest of an address entry: no SHA-256 of a presented username is all zero bytes. */
static const unsigned char any_user[AA_USER_MD_LEN];

static aa_throttle_verdict refuse(const aa_throttle *t, const aa_entry *e, uint64_t now, aa_throttle_scope sc,
                                  aa_throttle_info *info)
{
    /* refused attempts do not extend the block: it counts from the last counted failure */
    info->failures = e->failures;
    info->left_ms = e->last_ms + t->block_ms - now;
    info->scope = sc;
    return AA_T_BLOCKED;
}

/* A set with no slot to count in: blocked until its first entry's block ends. */
static aa_throttle_verdict refuse_full(const aa_throttle *t, uint64_t hash, uint64_t now,
                                       aa_throttle_info *info)
{
    const aa_entry *set = &t->e[(hash % AA_SETS) * AA_WAYS], *first = &set[0];
    for (int i = 1; i < AA_WAYS; i++)
        if (set[i].last_ms < first->last_ms) first = &set[i];
    return refuse(t, first, now, AA_SCOPE_FULL, info);
}

static aa_throttle_verdict count_failure(const aa_throttle *t, aa_entry *e, aa_entry *a, uint64_t now,
                                         aa_throttle_info *info)
{
    e->failures++;
    a->failures++;
    e->last_ms = a->last_ms = now;
    if (a->failures == a->limit) { /* the wider block first: it is the one that lasts for every username */
        info->failures = a->failures;
        info->scope = AA_SCOPE_ADDRESS;
        return AA_T_BLOCKS;
    }
    info->failures = e->failures;
    info->scope = AA_SCOPE_USER;
    return e->failures == e->limit ? AA_T_BLOCKS : AA_T_FAILED;
}

aa_throttle_verdict aa_throttle_attempt(aa_throttle *t, gw_strv ip,
                                        const unsigned char user_md[AA_USER_MD_LEN], bool ok, uint64_t now,
                                        aa_throttle_info *info)
{
    char abuf[32];
    gw_strv akey = address_key(ip, abuf, sizeof abuf);
    uint64_t hash = pair_hash(t, ip, user_md), ahash = pair_hash(t, akey, any_user);
    aa_throttle_verdict v;
    *info = (aa_throttle_info){0};
    pthread_mutex_lock(&t->lock);
    aa_entry *a = entry_find(t, ahash, akey, any_user, now);
    aa_entry *e = entry_find(t, hash, ip, user_md, now);
    aa_entry *na = a ? a : slot_find(t, ahash, now, e);
    aa_entry *ne = e ? e : slot_find(t, hash, now, na);
    if (a && a->failures >= a->limit) {
        v = refuse(t, a, now, AA_SCOPE_ADDRESS, info);
    } else if (e && e->failures >= e->limit) {
        v = refuse(t, e, now, AA_SCOPE_USER, info);
    } else if (!na || !ne) {
        /* correct credentials included: otherwise guesses in a full set would go uncounted until right */
        v = refuse_full(t, na ? hash : ahash, now, info);
    } else if (ok) {
        if (e) e->failures = 0; /* a success clears the pair's count, not the address's */
        v = AA_T_PASS;
    } else {
        if (!a) entry_init(na, ahash, akey, any_user, t->per_address);
        if (!e) entry_init(ne, hash, ip, user_md, t->max_failures);
        v = count_failure(t, ne, na, now, info);
    }
    pthread_mutex_unlock(&t->lock);
    return v;
}
