/* apikey_cache.c - each worker's cache of what the store said about a key (valid, revoked or unknown).
 *
 * An entry is fresh for cache_ttl: it answers without asking the store. After that it is asked again, but
 * the entry is kept until stale_if_error has passed since the store last confirmed it: while the store
 * fails (Redis down or frozen), that verdict still answers (stale-if-error, RFC 5861), so keys in use keep
 * working through an outage and keys never seen still fail.
 *
 * A revoke or delete through this gateway must apply at once on every worker, outage or not. The admin
 * call records the key's digest in a small ring under the instance's lock and bumps a generation; a worker
 * that sees a new generation drops exactly those keys (all of its cache if it missed more than the ring
 * holds), so the other keys keep their stale-if-error cover. Only revokes and deletes take the lock, and a
 * worker takes it once per revoke it catches up with: never on the per-request path otherwise. */
#include "apikey.h"

#include <openssl/crypto.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define AK_CACHE_SETS 256 /* indexed by the digest's first byte */
#define AK_CACHE_WAYS 4

struct ak_cache {
    uint64_t generation;
    ak_ident e[AK_CACHE_SETS][AK_CACHE_WAYS];
};

struct ak_caches {
    unsigned n;
    ak_cache *c[];
};

struct ak_forgets {
    pthread_mutex_t lock;
    uint8_t digest[AK_FORGET_RING][AK_DIGEST_LEN]; /* slot g % ring: the key of generation g */
};

int ak_cache_create(ak_inst *in)
{
    atomic_init(&in->generation, 0);
    atomic_init(&in->caches, NULL);
    in->forgets = calloc(1, sizeof *in->forgets);
    if (!in->forgets) return -1;
    if (pthread_mutex_init(&in->forgets->lock, NULL) != 0) {
        free(in->forgets);
        in->forgets = NULL;
        return -1;
    }
    return 0;
}

void ak_cache_destroy(ak_inst *in)
{
    ak_caches *cs = atomic_load(&in->caches);
    if (cs) {
        for (unsigned i = 0; i < cs->n; i++)
            free(cs->c[i]);
        free(cs);
    }
    if (in->forgets) {
        pthread_mutex_destroy(&in->forgets->lock);
        free(in->forgets);
    }
}

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void ak_cache_forget(ak_inst *in, const char *store_key)
{
    uint8_t digest[AK_DIGEST_LEN];
    bool known = strlen(store_key) == AK_STORE_KEY_LEN;
    for (size_t i = 0; known && i < AK_DIGEST_LEN; i++) {
        int hi = unhex(store_key[2 + 2 * i]), lo = unhex(store_key[3 + 2 * i]);
        known = hi >= 0 && lo >= 0;
        digest[i] = (uint8_t)(hi << 4 | lo);
    }
    pthread_mutex_lock(&in->forgets->lock);
    uint64_t g = atomic_load(&in->generation);
    if (known) {
        g++;
        memcpy(in->forgets->digest[g % AK_FORGET_RING], digest, AK_DIGEST_LEN);
    } else {
        g += AK_FORGET_RING + 1; /* not a key we can name: every worker drops its whole cache */
    }
    atomic_store(&in->generation, g);
    pthread_mutex_unlock(&in->forgets->lock);
}

static void drop(ak_cache *c, const uint8_t *digest)
{
    ak_ident *set = c->e[digest[0] % AK_CACHE_SETS];
    for (int i = 0; i < AK_CACHE_WAYS; i++)
        if (set[i].state != AK_C_EMPTY && CRYPTO_memcmp(set[i].digest, digest, AK_DIGEST_LEN) == 0)
            memset(&set[i], 0, sizeof set[i]);
}

/* This worker's cache, after dropping the keys revoked or deleted since it was last used. */
static ak_cache *cache_of(ak_inst *in, gw_req *req)
{
    ak_caches *cs = atomic_load(&in->caches);
    unsigned w = in->h->worker(req);
    if (!cs || w >= cs->n || !cs->c[w]) return NULL;
    ak_cache *c = cs->c[w];
    if (c->generation == atomic_load(&in->generation)) return c;
    pthread_mutex_lock(&in->forgets->lock);
    uint64_t g = atomic_load(&in->generation);
    if (g - c->generation > AK_FORGET_RING) {
        memset(c->e, 0, sizeof c->e);
    } else {
        for (uint64_t k = c->generation + 1; k <= g; k++)
            drop(c, in->forgets->digest[k % AK_FORGET_RING]);
    }
    c->generation = g;
    pthread_mutex_unlock(&in->forgets->lock);
    return c;
}

/* The entry of `digest` if it is still usable for `fresh` (cache_ttl) or stale-if-error use. */
static const ak_ident *lookup(ak_inst *in, gw_req *req, const uint8_t *digest, bool fresh)
{
    ak_cache *c = cache_of(in, req);
    if (!c) return NULL;
    uint64_t now = in->h->now_ms();
    ak_ident *set = c->e[digest[0] % AK_CACHE_SETS];
    for (int i = 0; i < AK_CACHE_WAYS; i++) {
        ak_ident *e = &set[i];
        if (e->state == AK_C_EMPTY || CRYPTO_memcmp(e->digest, digest, AK_DIGEST_LEN) != 0) continue;
        if (e->stale_ms <= now && e->until_ms <= now) {
            memset(e, 0, sizeof *e);
            return NULL;
        }
        return !fresh || e->until_ms > now ? e : NULL;
    }
    return NULL;
}

const ak_ident *ak_cache_fresh(ak_inst *in, gw_req *req, const uint8_t *digest)
{
    return lookup(in, req, digest, true);
}

const ak_ident *ak_cache_stale(ak_inst *in, gw_req *req, const uint8_t *digest)
{
    return in->s.stale_ms ? lookup(in, req, digest, false) : NULL;
}

void ak_cache_put(ak_inst *in, gw_req *req, const ak_ident *id, uint64_t generation)
{
    if (generation != atomic_load(&in->generation)) return; /* a revoke or delete came meanwhile */
    ak_cache *c = cache_of(in, req);
    if (!c) return;
    uint64_t now = in->h->now_ms();
    ak_ident *set = c->e[id->digest[0] % AK_CACHE_SETS];
    ak_ident *slot = NULL;
    for (int i = 0; i < AK_CACHE_WAYS && !slot; i++)
        if (set[i].state == AK_C_EMPTY || memcmp(set[i].digest, id->digest, AK_DIGEST_LEN) == 0)
            slot = &set[i];
    if (!slot) { /* all taken: replace the one the store confirmed longest ago */
        slot = &set[0];
        for (int i = 1; i < AK_CACHE_WAYS; i++)
            if (set[i].until_ms < slot->until_ms) slot = &set[i];
    }
    *slot = *id;
    slot->until_ms = now + in->s.cache_ttl_ms;
    slot->stale_ms = now + in->s.stale_ms;
}

int ak_cache_worker_init(ak_inst *in, unsigned worker, unsigned workers)
{
    if (in->s.cache_ttl_ms == 0 && in->s.stale_ms == 0) return 0;
    ak_caches *cs = atomic_load(&in->caches);
    if (!cs) {
        ak_caches *mine = calloc(1, sizeof *mine + (size_t)workers * sizeof mine->c[0]);
        if (!mine) return -1;
        mine->n = workers;
        if (atomic_compare_exchange_strong(&in->caches, &cs, mine)) cs = mine;
        else free(mine); /* another worker was first; cs is its table */
    }
    if (worker >= cs->n) return -1;
    free(cs->c[worker]); /* a repeated init on the same worker starts afresh */
    cs->c[worker] = calloc(1, sizeof(ak_cache));
    if (!cs->c[worker]) return -1;
    cs->c[worker]->generation = atomic_load(&in->generation);
    return 0;
}

void ak_cache_worker_fini(ak_inst *in, unsigned worker)
{
    ak_caches *cs = atomic_load(&in->caches);
    if (!cs || worker >= cs->n) return;
    free(cs->c[worker]);
    cs->c[worker] = NULL;
}
