/* store.h - the embedded store behind the host API's store_* calls: one in-process table shared by all
 * workers (sharded locks held for a few hundred nanoseconds, never across I/O), records with a TTL in
 * memory only, records without one persisted to a file by a background thread (write-temp, fsync, rename)
 * before their write is reported done. Results always arrive later, on the calling worker's loop. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gw/filter.h>

struct event_base;

typedef struct gw_store gw_store;
typedef struct gw_store_op gw_store_op;

enum { GW_STORE_OK = 0, GW_STORE_NOT_FOUND = 1, GW_STORE_ERROR = -1 };

/* dir: where the persisted file lives (created if missing). NULL + *err (malloc'd) on failure, e.g. an
 * unreadable or corrupt file (named, with the byte offset). */
gw_store *gw_store_new(const char *dir, unsigned nworkers, char **err);
/* The Redis store (store_redis.c): the same operations, one async connection per worker. */
struct gw_store_conf_s;
gw_store *gw_store_new_redis(const char *host, unsigned port, const char *password, int db,
                             uint64_t connect_timeout_ms, uint64_t command_timeout_ms, unsigned nworkers,
                             char **err);
/* Main thread, after the workers stopped: flushes and joins the persistence thread. */
void gw_store_free(gw_store *s);

/* Each worker attaches its loop once (completions from the persistence thread come through an eventfd). */
int gw_store_worker_attach(gw_store *s, unsigned worker, struct event_base *base);
void gw_store_worker_detach(gw_store *s, unsigned worker);

/* Operations, from worker `worker`. The callback runs later on that worker, exactly once, unless the
 * operation is cancelled first. The returned handle is valid until the callback starts or cancel returns.
 * now_ms: the caller's wall clock (unix ms), so tests can drive time. */
gw_store_op *gw_store_get(gw_store *s, unsigned worker, const char *key, size_t klen, gw_store_cb cb, void *arg);
gw_store_op *gw_store_set(gw_store *s, unsigned worker, const char *key, size_t klen, const char *val,
                          size_t vlen, uint64_t ttl_ms, uint64_t now_ms, gw_store_cb cb, void *arg);
gw_store_op *gw_store_del(gw_store *s, unsigned worker, const char *key, size_t klen, gw_store_cb cb, void *arg);
gw_store_op *gw_store_take(gw_store *s, unsigned worker, const char *key, size_t klen, double capacity,
                           double rate_per_s, double cost, uint64_t now_ms, gw_bucket_cb cb, void *arg);
/* Adds delta to the integer at key (a missing key starts at 0 and expires ttl_ms after this first write;
 * 0 = never); the callback gets the new value. Counters are kept in memory, not persisted. */
gw_store_op *gw_store_incr(gw_store *s, unsigned worker, const char *key, size_t klen, int64_t delta,
                           uint64_t ttl_ms, uint64_t now_ms, gw_incr_cb cb, void *arg);
gw_store_op *gw_store_list(gw_store *s, unsigned worker, const char *prefix, size_t plen, gw_store_list_cb cb,
                           void *arg);
/* Drops a pending operation's callback (the request it belonged to ended). Its effect may still happen. */
void gw_store_cancel(gw_store_op *op);

/* For /info: records held (embedded; 0 for Redis), the backend's name, and whether it serves now. */
size_t gw_store_count(gw_store *s);
const char *gw_store_kind(const gw_store *s);
bool gw_store_available(gw_store *s);

#endif
