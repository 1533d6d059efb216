/* store_table.h - the embedded store's records, shards and operations, shared by store.c (the table and
 * its operations) and store_persist.c (the persistence thread, loading, start and stop). Private. */
#ifndef GW_STORE_TABLE_H
#define GW_STORE_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "store_internal.h"

#define NSHARDS 64

typedef struct rec rec;
struct rec {
    rec *next;
    uint64_t hash;
    char *key, *val;
    size_t klen, vlen;
    uint64_t expires_ms; /* 0 = never */
    bool persistent;
    bool bucket;
    double tokens;
    uint64_t last_ms;
};

typedef struct {
    pthread_mutex_t mu;
    rec **tab;
    size_t cap, n;
} shard;

enum { OP_GET, OP_SET, OP_DEL, OP_TAKE, OP_LIST, OP_INCR };

struct gw_store_op {
    int kind; /* first: negative for ops of another backend (see gw_store_cancel) */
    gw_store_op *next;
    int status;
    char *val;
    size_t vlen;
    gw_bucket_result br;
    gw_strv *keys, *vals; /* OP_LIST results (each string malloc'd) */
    size_t n;
    gw_store_cb cb;
    gw_bucket_cb bcb;
    gw_store_list_cb lcb;
    gw_incr_cb icb;
    int64_t ival; /* OP_INCR result */
    void *arg;
    unsigned worker;
    atomic_bool cancelled;
};

typedef struct {
    struct event_base *base;
    struct event *ev;
    int efd;
    pthread_mutex_t mu;
    gw_store_op *inbox; /* from the persistence thread */
    gw_store_op *ready; /* completed on this worker, delivered from the loop */
} slot;

struct gw_store {
    const gw_store_backend *be; /* NULL: the embedded table below */
    void *impl;
    shard shards[NSHARDS];
    slot *slots;
    unsigned nslots;
    char *dir, *file, *tmp;
    pthread_t thread;
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    gw_store_op *pending; /* waiting for the next write to disk */
    bool stop;
    atomic_size_t count;
};

uint64_t gw_st_hash(const char *k, size_t n);
shard *gw_st_shard(gw_store *s, uint64_t h);
void gw_st_rec_free(rec *r);
/* Finds a live record (removing it if expired) in a locked shard; *pp (if pp) is its link. */
rec *gw_st_find(gw_store *s, shard *sh, uint64_t h, const char *k, size_t n, uint64_t now, rec ***pp);
/* A new empty record in a locked shard; NULL when out of memory. */
rec *gw_st_insert(gw_store *s, shard *sh, uint64_t h, const char *k, size_t n);
uint64_t gw_st_wall_ms(void);
void gw_st_op_free(gw_store_op *op);
/* Hands a write to the persistence thread: its callback comes once the file is on disk. */
void gw_st_queue_persist(gw_store *s, gw_store_op *op);

#endif
