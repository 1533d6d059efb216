/* store_internal.h - how store.c hands operations to another backend (Redis) behind the same API. */
#ifndef GW_STORE_INTERNAL_H
#define GW_STORE_INTERNAL_H

#include "store.h"

struct event_base;

/* A backend other than the embedded table. Every function has the meaning of its gw_store_* twin. */
typedef struct {
    void (*free)(void *impl);
    int (*attach)(void *impl, unsigned worker, struct event_base *base);
    void (*detach)(void *impl, unsigned worker);
    gw_store_op *(*get)(void *impl, unsigned w, const char *k, size_t kl, gw_store_cb cb, void *arg);
    gw_store_op *(*set)(void *impl, unsigned w, const char *k, size_t kl, const char *v, size_t vl, uint64_t ttl_ms,
                        uint64_t now_ms, gw_store_cb cb, void *arg);
    gw_store_op *(*del)(void *impl, unsigned w, const char *k, size_t kl, gw_store_cb cb, void *arg);
    gw_store_op *(*take)(void *impl, unsigned w, const char *k, size_t kl, double cap, double rate, double cost,
                         uint64_t now_ms, gw_bucket_cb cb, void *arg);
    gw_store_op *(*list)(void *impl, unsigned w, const char *prefix, size_t plen, gw_store_list_cb cb, void *arg);
    void (*cancel)(gw_store_op *op);
    gw_store_op *(*incr)(void *impl, unsigned w, const char *k, size_t kl, int64_t delta, uint64_t ttl_ms,
                         uint64_t now_ms, gw_incr_cb cb, void *arg);
    size_t (*count)(void *impl);
    bool (*available)(void *impl); /* can serve operations now (for /info) */
} gw_store_backend;

/* A backend's operation handles (gw_store_op *) must point at a struct whose first member is an `int`
 * holding a negative value: gw_store_cancel tells them from the embedded table's by it. */

/* Wraps a backend in a gw_store (takes ownership of impl). */
gw_store *gw_store_wrap(const gw_store_backend *be, void *impl);

#endif
