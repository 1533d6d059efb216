/* rt_budget.c - the filter "retry": the retry budget. Per service, each worker counts the requests it
 * received and the retries it started in one-second slots (budget_window seconds of them, a ring). A
 * retry may start when, summed over every worker's slots of the window,
 *     retries < budget_ratio * requests          (the share: 0.2 = one retry per five requests)
 * or when the retries started in the current second are fewer than budget_min_per_second (the floor, so a
 * service with little traffic can still retry). Over T seconds of a full outage with R requests the
 * upstream sees about R + budget_ratio * R + budget_min_per_second * T attempts. Only the owning worker
 * writes its slots; the deciding worker reads the others' with relaxed atomics: no lock, exact but for
 * decisions made at the same moment on two workers. Services are numbered at create() from the host's list;
 * a name not in it (none: an older host) counts in a shared "other" row. */
#include "retry.h"

#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int rt_services_init(rt_inst *in)
{
    const gw_host *h = in->h;
    size_t n = 0;
    bool has = h->abi_minor >= 2 && h->service_name;
    while (has && h->service_name(in->self, n))
        n++;
    in->nsvc = n + 1;
    in->hash_size = 8;
    while (in->hash_size < 2 * n)
        in->hash_size *= 2;
    in->svc_names = calloc(n ? n : 1, sizeof *in->svc_names);
    in->svc_hash = calloc(in->hash_size, sizeof *in->svc_hash);
    if (!in->svc_names || !in->svc_hash) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *name = h->service_name(in->self, i);
        in->svc_names[i] = name;
        size_t len = strlen(name);
        if (rt_service_index(in, (gw_strv){name, len}) != (int)n) continue; /* a duplicate: first wins */
        size_t j = fnv1a(name, len) & (in->hash_size - 1);
        while (in->svc_hash[j])
            j = (j + 1) & (in->hash_size - 1);
        in->svc_hash[j] = (uint32_t)i + 1;
    }
    return 0;
}

int rt_service_index(const rt_inst *in, gw_strv name)
{
    size_t other = in->nsvc - 1;
    if (!in->svc_hash) return (int)other;
    size_t j = fnv1a(name.p, name.n) & (in->hash_size - 1);
    for (size_t k = 0; k < in->hash_size && in->svc_hash[j]; k++) {
        uint32_t i = in->svc_hash[j] - 1;
        const char *s = in->svc_names[i];
        if (strlen(s) == name.n && memcmp(s, name.p, name.n) == 0) return (int)i;
        j = (j + 1) & (in->hash_size - 1);
    }
    return (int)other;
}

/* This worker's slot of svc for the current second, emptied first when it held an older second. */
static rt_slot *slot_now(const rt_inst *in, rt_worker *w, int svc, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000u + 1u;
    rt_slot *s = &w->slots[(size_t)svc * in->nwin + sec % in->nwin];
    if (atomic_load_explicit(&s->sec, memory_order_relaxed) != sec) {
        atomic_store_explicit(&s->requests, 0, memory_order_relaxed);
        atomic_store_explicit(&s->retries, 0, memory_order_relaxed);
        atomic_store_explicit(&s->sec, sec, memory_order_release);
    }
    return s;
}

void rt_budget_count_request(const rt_inst *in, rt_worker *w, int svc, uint64_t now_ms)
{
    if (!w || svc < 0) return;
    rt_slot *s = slot_now(in, w, svc, now_ms);
    atomic_store_explicit(&s->requests, atomic_load_explicit(&s->requests, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void rt_budget_count_retry(const rt_inst *in, rt_worker *w, int svc, uint64_t now_ms)
{
    if (!w || svc < 0) return;
    rt_slot *s = slot_now(in, w, svc, now_ms);
    atomic_store_explicit(&s->retries, atomic_load_explicit(&s->retries, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

bool rt_budget_allows(const rt_inst *in, int svc, uint64_t now_ms)
{
    const rt_conf *s = in->s;
    if (!s->budget) return true;
    rt_workers *ws = atomic_load(&((rt_inst *)in)->workers);
    if (!ws || svc < 0) return true;
    uint64_t sec = now_ms / 1000u + 1u;
    uint64_t requests = 0, retries = 0, retries_now = 0;
    for (unsigned i = 0; i < ws->n; i++) {
        const rt_worker *w = atomic_load_explicit(&ws->w[i], memory_order_acquire);
        if (!w) continue;
        for (unsigned k = 0; k < in->nwin; k++) {
            const rt_slot *sl = &w->slots[(size_t)svc * in->nwin + k];
            uint64_t at = atomic_load_explicit(&sl->sec, memory_order_acquire);
            if (at == 0 || at > sec || sec - at >= in->nwin) continue; /* outside the window */
            uint32_t rq = atomic_load_explicit(&sl->requests, memory_order_relaxed);
            uint32_t rt = atomic_load_explicit(&sl->retries, memory_order_relaxed);
            requests += rq;
            retries += rt;
            if (at == sec) retries_now += rt;
        }
    }
    if ((double)retries < s->budget_ratio * (double)requests) return true;
    return retries_now < (uint64_t)s->budget_min_per_second;
}
