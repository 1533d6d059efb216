/* rl_local.c - the local buckets of the filter "ratelimit": when the store fails or is late and
 * on_store_error is local, each worker decides alone with the store's token-bucket arithmetic in a small
 * fixed table (no allocation per request); also the hash the filter keys by. */
#include "ratelimit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

uint64_t rl_fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static void bucket_math(double *tokens, uint64_t *last_ms, bool fresh, double cap, double rate, uint64_t now,
                        gw_bucket_result *br)
{
    if (fresh) {
        *tokens = cap;
        *last_ms = now;
    } else if (now > *last_ms) {
        *tokens = fmin(cap, *tokens + (double)(now - *last_ms) * rate / 1000.0);
        *last_ms = now;
    }
    if (*tokens > cap) *tokens = cap;
    br->allowed = *tokens >= 1.0;
    if (br->allowed) *tokens -= 1.0;
    br->remaining = *tokens;
    br->reset_ms = now + (uint64_t)ceil((cap - *tokens) / rate * 1000.0);
    br->retry_ms = br->allowed ? 0 : (uint64_t)ceil((1.0 - *tokens) / rate * 1000.0);
    if (!br->allowed && br->retry_ms == 0) br->retry_ms = 1;
}

void rl_local_take(rl_worker *w, const char *key, double cap, double rate, uint64_t now, gw_bucket_result *br)
{
    char k[RL_LOCAL_KEY];
    size_t klen = strlen(key);
    if (klen >= RL_LOCAL_KEY) /* long keys: by their hash */
        snprintf(k, sizeof k, "#%016llx%016llx", (unsigned long long)rl_fnv1a(key, klen),
                 (unsigned long long)rl_fnv1a(key, klen / 2));
    else
        memcpy(k, key, klen + 1);
    uint64_t hsh = rl_fnv1a(k, strlen(k));
    rl_slot *found = NULL, *victim = NULL;
    for (unsigned i = 0; i < RL_LOCAL_PROBE && !found; i++) {
        rl_slot *s = &w->slots[(hsh + i) & (RL_LOCAL_SLOTS - 1)];
        if (s->used && s->expires_ms <= now) s->used = 0; /* full again: the same as no bucket */
        if (s->used && strcmp(s->key, k) == 0)
            found = s;
        else if (!s->used && !victim)
            victim = s;
    }
    bool fresh = false;
    if (!found) {
        if (!victim) { /* all taken: the one closest to full goes */
            victim = &w->slots[hsh & (RL_LOCAL_SLOTS - 1)];
            for (unsigned i = 1; i < RL_LOCAL_PROBE; i++) {
                rl_slot *s = &w->slots[(hsh + i) & (RL_LOCAL_SLOTS - 1)];
                if (s->expires_ms < victim->expires_ms) victim = s;
            }
        }
        found = victim;
        memcpy(found->key, k, strlen(k) + 1);
        found->used = 1;
        fresh = true;
    }
    bucket_math(&found->tokens, &found->last_ms, fresh, cap, rate, now, br);
    found->expires_ms = br->reset_ms + 1000;
}
