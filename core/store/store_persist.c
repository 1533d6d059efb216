/* store_persist.c - the embedded store's persistence thread (every record without a TTL written to one
 * file: write-temp, fsync, rename, fsync dir, before the writes that changed it are reported done; expired
 * records swept every 5 s), loading the file at start, and the store's creation and teardown. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_file.h"
#include "store_table.h"
#include "util.h"

void gw_st_queue_persist(gw_store *s, gw_store_op *op)
{
    pthread_mutex_lock(&s->pmu);
    op->next = s->pending;
    s->pending = op;
    pthread_cond_signal(&s->pcv);
    pthread_mutex_unlock(&s->pmu);
}

static void sweep(gw_store *s, uint64_t now)
{
    for (int i = 0; i < NSHARDS; i++) {
        shard *sh = &s->shards[i];
        pthread_mutex_lock(&sh->mu);
        for (size_t b = 0; b < sh->cap; b++)
            for (rec **p = &sh->tab[b]; *p;) {
                rec *r = *p;
                if (r->expires_ms && r->expires_ms <= now) {
                    *p = r->next;
                    gw_st_rec_free(r);
                    sh->n--;
                    atomic_fetch_sub(&s->count, 1);
                } else {
                    p = &r->next;
                }
            }
        pthread_mutex_unlock(&sh->mu);
    }
}

/* Copies every persistent record (under each shard's lock, briefly) and writes the file. */
static int persist(gw_store *s)
{
    gw_store_file_writer wr;
    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) return -1; /* made on the first durable write */
    if (gw_store_file_begin(&wr, s->tmp) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < NSHARDS && rc == 0; i++) {
        shard *sh = &s->shards[i];
        pthread_mutex_lock(&sh->mu);
        for (size_t b = 0; b < sh->cap && rc == 0; b++)
            for (rec *r = sh->tab[b]; r && rc == 0; r = r->next)
                if (r->persistent) rc = gw_store_file_record(&wr, r->key, r->klen, r->val, r->vlen);
        pthread_mutex_unlock(&sh->mu);
    }
    if (gw_store_file_commit(&wr, rc == 0, s->file, s->dir) != 0) rc = -1;
    return rc;
}

static void post(gw_store *s, gw_store_op *op, int status)
{
    if (status != 0) op->status = GW_STORE_ERROR;
    slot *sl = &s->slots[op->worker];
    pthread_mutex_lock(&sl->mu);
    op->next = sl->inbox;
    sl->inbox = op;
    int efd = sl->efd;
    pthread_mutex_unlock(&sl->mu);
    uint64_t one = 1;
    if (efd >= 0 && write(efd, &one, sizeof one) != sizeof one) gw_warn("store: cannot wake worker %u", op->worker);
}

static void *persist_main(void *arg)
{
    gw_store *s = arg;
    uint64_t last_sweep = gw_st_wall_ms();
    pthread_mutex_lock(&s->pmu);
    for (;;) {
        while (!s->pending && !s->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 5;
            pthread_cond_timedwait(&s->pcv, &s->pmu, &until);
            if (gw_st_wall_ms() - last_sweep >= 5000) break;
        }
        gw_store_op *batch = s->pending;
        s->pending = NULL;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->pmu);
        if (batch) {
            int rc = persist(s);
            if (rc != 0) gw_error("store: cannot write %s: %s", s->file, strerror(errno));
            for (gw_store_op *op = batch, *nx; op; op = nx) {
                nx = op->next;
                post(s, op, rc);
            }
        }
        if (gw_st_wall_ms() - last_sweep >= 5000) {
            sweep(s, gw_st_wall_ms());
            last_sweep = gw_st_wall_ms();
        }
        pthread_mutex_lock(&s->pmu);
        if (stop && !s->pending) break;
    }
    pthread_mutex_unlock(&s->pmu);
    return NULL;
}

static int load_record(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    gw_store *s = arg;
    uint64_t h = gw_st_hash(k, kl);
    shard *sh = gw_st_shard(s, h);
    rec *r = gw_st_find(s, sh, h, k, kl, 0, NULL);
    if (!r && !(r = gw_st_insert(s, sh, h, k, kl))) return -1;
    free(r->val);
    if (!(r->val = malloc(vl ? vl : 1))) return -1;
    memcpy(r->val, v, vl);
    r->vlen = vl;
    r->persistent = true;
    return 0;
}

gw_store *gw_store_new(const char *dir, unsigned nworkers, char **err)
{
    gw_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    for (int i = 0; i < NSHARDS; i++) pthread_mutex_init(&s->shards[i].mu, NULL);
    pthread_mutex_init(&s->pmu, NULL);
    pthread_cond_init(&s->pcv, NULL);
    s->nslots = nworkers + 1;
    s->slots = calloc(s->nslots, sizeof *s->slots);
    s->dir = strdup(dir && *dir ? dir : ".");
    s->file = gw_strdupf("%s/store.db", s->dir);
    s->tmp = gw_strdupf("%s/store.db.tmp", s->dir);
    if (!s->slots || !s->dir || !s->file || !s->tmp) goto fail_oom;
    for (unsigned i = 0; i < s->nslots; i++) {
        pthread_mutex_init(&s->slots[i].mu, NULL);
        s->slots[i].efd = -1;
    }
    if (gw_store_file_load(s->file, load_record, s, err) != 0) goto fail;
    if (pthread_create(&s->thread, NULL, persist_main, s) != 0) {
        *err = gw_strdupf("store: cannot start its thread");
        goto fail;
    }
    return s;
fail_oom:
    *err = gw_strdupf("store: out of memory");
fail:
    s->thread = 0;
    gw_store_free(s);
    return NULL;
}

void gw_store_free(gw_store *s)
{
    if (!s) return;
    if (s->be) {
        s->be->free(s->impl);
        free(s);
        return;
    }
    if (s->thread) {
        pthread_mutex_lock(&s->pmu);
        s->stop = true;
        pthread_cond_signal(&s->pcv);
        pthread_mutex_unlock(&s->pmu);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < NSHARDS; i++) {
        shard *sh = &s->shards[i];
        for (size_t b = 0; b < sh->cap; b++)
            for (rec *r = sh->tab[b], *nx; r; r = nx) {
                nx = r->next;
                gw_st_rec_free(r);
            }
        free(sh->tab);
        pthread_mutex_destroy(&sh->mu);
    }
    for (unsigned i = 0; s->slots && i < s->nslots; i++) {
        gw_store_op *l[2] = {s->slots[i].inbox, s->slots[i].ready};
        for (int k = 0; k < 2; k++)
            for (gw_store_op *op = l[k], *nx; op; op = nx) {
                nx = op->next;
                gw_st_op_free(op);
            }
        pthread_mutex_destroy(&s->slots[i].mu);
    }
    free(s->slots);
    free(s->dir);
    free(s->file);
    free(s->tmp);
    free(s);
}
