/* store_redis_list.c - the Redis store's listing (store_list): SCAN pages under a glob-escaped prefix,
 * then the values fetched by MGET in batches; keys sorted and repeats dropped as the embedded table does. */
#include <stdlib.h>
#include <string.h>

#include "store_redis_internal.h"

static void send_scan(rop *op)
{
    const char *argv[6] = {"SCAN", op->cursor, "MATCH", op->key, "COUNT", "1000"};
    size_t lens[6] = {4, strlen(op->cursor), 5, op->klen, 5, 4};
    if (gw_rs_issue(op, 6, argv, lens) != 0) gw_rs_finish(op, GW_STORE_ERROR);
}

static void send_mget(rop *op)
{
    size_t nb = op->n - op->pos < MGET_BATCH ? op->n - op->pos : MGET_BATCH;
    const char *argv[MGET_BATCH + 1];
    size_t lens[MGET_BATCH + 1];
    argv[0] = "MGET", lens[0] = 4;
    for (size_t i = 0; i < nb; i++) argv[i + 1] = op->keys[op->pos + i].p, lens[i + 1] = op->keys[op->pos + i].n;
    if (gw_rs_issue(op, (int)nb + 1, argv, lens) != 0) gw_rs_finish(op, GW_STORE_ERROR);
}

static int cmp_strv(const void *a, const void *b)
{
    const gw_strv *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* A SCAN page: collect keys; at cursor 0, sort them (SCAN may repeat a key), drop repeats, fetch values. */
static int list_scan(rop *op, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len >= sizeof op->cursor || r->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    const redisReply *ks = r->element[1];
    for (size_t i = 0; i < ks->elements; i++) {
        if (ks->element[i]->type != REDIS_REPLY_STRING) continue;
        if (op->n == op->cap) {
            size_t nc = op->cap ? op->cap * 2 : 64;
            gw_strv *k = realloc(op->keys, nc * sizeof *k);
            if (!k) return -1;
            op->keys = k;
            op->cap = nc;
        }
        char *c = gw_rs_dup_mem(ks->element[i]->str, ks->element[i]->len);
        if (!c) return -1;
        op->keys[op->n++] = (gw_strv){c, ks->element[i]->len};
    }
    memcpy(op->cursor, r->element[0]->str, r->element[0]->len);
    op->cursor[r->element[0]->len] = '\0';
    if (strcmp(op->cursor, "0") != 0) {
        send_scan(op);
        return 0;
    }
    if (op->n) qsort(op->keys, op->n, sizeof *op->keys, cmp_strv);
    size_t m = 0;
    for (size_t i = 0; i < op->n; i++) {
        if (m && cmp_strv(&op->keys[m - 1], &op->keys[i]) == 0) free((char *)op->keys[i].p);
        else op->keys[m++] = op->keys[i];
    }
    op->n = m;
    if (!(op->vals = calloc(op->n ? op->n : 1, sizeof *op->vals))) return -1;
    op->cursor[0] = '\0'; /* now fetching values */
    if (op->n == 0) gw_rs_finish(op, GW_STORE_OK);
    else send_mget(op);
    return 0;
}

/* An MGET batch: strings kept, anything else (nil: expired, or a bucket hash) dropped at the end. */
static int list_mget(rop *op, const redisReply *r)
{
    size_t nb = op->n - op->pos < MGET_BATCH ? op->n - op->pos : MGET_BATCH;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != nb) return -1;
    for (size_t i = 0; i < nb; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        char *c = gw_rs_dup_mem(e->str, e->len);
        if (!c) return -1;
        op->vals[op->pos + i] = (gw_strv){c, e->len};
    }
    op->pos += nb;
    if (op->pos < op->n) {
        send_mget(op);
        return 0;
    }
    size_t m = 0;
    for (size_t i = 0; i < op->n; i++) {
        if (op->vals[i].p) {
            op->keys[m] = op->keys[i];
            op->vals[m++] = op->vals[i];
        } else {
            free((char *)op->keys[i].p);
        }
    }
    op->n = m;
    gw_rs_finish(op, GW_STORE_OK);
    return 0;
}

int gw_rs_list_result(rop *op, const redisReply *r)
{
    return op->cursor[0] ? list_scan(op, r) : list_mget(op, r);
}

gw_store_op *gw_rs_list(void *impl, unsigned w, const char *prefix, size_t plen, gw_store_list_cb cb,
                        void *arg)
{
    rop *op = gw_rs_new_op(impl, w, K_LIST, arg);
    if (!op) return NULL;
    op->lcb = cb;
    if (!(op->key = malloc(plen * 2 + 2))) {
        gw_rs_finish(op, GW_STORE_ERROR);
        return (gw_store_op *)op;
    }
    for (size_t i = 0; i < plen; i++) { /* glob-escape the prefix */
        if (prefix[i] && strchr("*?[]\\", prefix[i])) op->key[op->klen++] = '\\';
        op->key[op->klen++] = prefix[i];
    }
    op->key[op->klen++] = '*';
    op->key[op->klen] = '\0';
    strcpy(op->cursor, "0");
    send_scan(op);
    return (gw_store_op *)op;
}
