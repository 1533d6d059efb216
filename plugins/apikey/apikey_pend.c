/* apikey_pend.c - the contexts of requests waiting for the store: a per-thread table addressed by tokens
 * (slot index + sequence number), so a store callback or cleanup that comes after its request ended (or
 * never comes) finds nothing instead of freed memory. */
#include "apikey.h"

#include <openssl/crypto.h>

#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(uintptr_t) >= 8, "tokens need 64-bit pointers");

#define AK_SLOT_BITS 20
#define AK_MAX_SLOTS ((1u << AK_SLOT_BITS) - 1)

typedef struct {
    uint64_t seq;
    ak_pend *p; /* NULL = free */
    uint32_t next_free;
} ak_slot;

static _Thread_local ak_slot *tl_slots;
static _Thread_local uint32_t tl_nslots, tl_cap, tl_live, tl_free = UINT32_MAX;
static _Thread_local uint64_t tl_seq;

static void pend_cleanup(void *token)
{
    ak_pend *p = ak_pend_find(token);
    if (p) ak_pend_release(p);
}

ak_pend *ak_pend_find(void *token)
{
    uintptr_t t = (uintptr_t)token;
    uint32_t idx = (uint32_t)(t & AK_MAX_SLOTS);
    if (idx == 0 || idx > tl_nslots) return NULL;
    ak_slot *s = &tl_slots[idx - 1];
    return s->p && s->seq == (uint64_t)(t >> AK_SLOT_BITS) ? s->p : NULL;
}

void ak_pend_release(ak_pend *p)
{
    uint32_t idx = (uint32_t)(p->token & AK_MAX_SLOTS);
    ak_slot *s = &tl_slots[idx - 1];
    s->p = NULL;
    s->next_free = tl_free;
    tl_free = idx - 1;
    if (p->response) {
        OPENSSL_cleanse(p->response, strlen(p->response)); /* it held a raw key */
        free(p->response);
    }
    free(p->record_json);
    OPENSSL_cleanse(p->digest, sizeof p->digest);
    free(p);
    if (--tl_live == 0) { /* nothing pending on this thread: give the table back */
        free(tl_slots);
        tl_slots = NULL;
        tl_nslots = tl_cap = 0;
        tl_free = UINT32_MAX;
    }
}

ak_pend *ak_pend_new(ak_inst *in, gw_req *req, int op)
{
    uint32_t idx;
    if (tl_free != UINT32_MAX) {
        idx = tl_free;
        tl_free = tl_slots[idx].next_free;
    } else {
        if (tl_nslots == AK_MAX_SLOTS) return NULL;
        if (tl_nslots == tl_cap) {
            uint32_t cap = tl_cap ? tl_cap * 2 : 16;
            if (cap > AK_MAX_SLOTS) cap = AK_MAX_SLOTS;
            ak_slot *ns = realloc(tl_slots, cap * sizeof *ns);
            if (!ns) return NULL;
            tl_slots = ns;
            tl_cap = cap;
        }
        idx = tl_nslots++;
    }
    ak_pend *p = calloc(1, sizeof *p);
    if (!p) {
        tl_slots[idx].p = NULL;
        tl_slots[idx].next_free = tl_free;
        tl_free = idx;
        if (tl_live == 0) {
            free(tl_slots);
            tl_slots = NULL;
            tl_nslots = tl_cap = 0;
            tl_free = UINT32_MAX;
        }
        return NULL;
    }
    tl_seq = (tl_seq + 1) & ((UINT64_C(1) << (64 - AK_SLOT_BITS)) - 1);
    if (tl_seq == 0) tl_seq = 1;
    tl_slots[idx] = (ak_slot){.seq = tl_seq, .p = p, .next_free = UINT32_MAX};
    tl_live++;
    p->in = in;
    p->req = req;
    p->op = op;
    p->token = ((uintptr_t)tl_seq << AK_SLOT_BITS) | (uintptr_t)(idx + 1);
    if (in->h->on_cleanup(req, pend_cleanup, (void *)p->token) != 0) {
        ak_pend_release(p);
        return NULL;
    }
    return p;
}

void ak_finish(ak_pend *p, gw_result res)
{
    const gw_host *h = p->in->h;
    gw_req *req = p->req;
    ak_pend_release(p);
    h->resume(req, res); /* may end the request: nothing of it is touched afterwards */
}

