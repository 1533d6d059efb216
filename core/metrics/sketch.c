/* sketch.c - the summaries' quantile sketch: log-spaced bins per part of a rotating window (sketch.h). */
#include "sketch.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#define RELAXED memory_order_relaxed

typedef struct {
    _Atomic uint64_t stamp; /* 1 + the part's period number (now / part_ms); 0 while empty or recycled */
    _Atomic uint32_t zero;
    _Atomic uint32_t bins[GW_SKETCH_NBINS];
} part;

struct gw_sketch {
    uint64_t part_ms;
    part parts[GW_SKETCH_NPARTS];
};

/* ln(gamma) and the index of the first bin, computed once (the same in every thread). */
static double lngamma(void)
{
    return log((1 + GW_SKETCH_ALPHA) / (1 - GW_SKETCH_ALPHA));
}

static int kmin(void)
{
    return (int)ceil(log(GW_SKETCH_MIN) / lngamma());
}

gw_sketch *gw_sketch_new(uint64_t window_ms)
{
    gw_sketch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->part_ms = window_ms / GW_SKETCH_NPARTS ? window_ms / GW_SKETCH_NPARTS : 1;
    return s;
}

void gw_sketch_free(gw_sketch *s)
{
    free(s);
}

/* Bin of a value above GW_SKETCH_MIN. */
static size_t bin_of(double v)
{
    if (v > GW_SKETCH_MAX) v = GW_SKETCH_MAX;
    long k = (long)ceil(log(v) / lngamma()) - kmin();
    if (k < 0) k = 0;
    if (k >= GW_SKETCH_NBINS) k = GW_SKETCH_NBINS - 1;
    return (size_t)k;
}

static inline void bump(_Atomic uint32_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, RELAXED) + 1, RELAXED);
}

void gw_sketch_add(gw_sketch *s, double v, uint64_t now_ms)
{
    uint64_t e = now_ms / s->part_ms + 1;
    part *p = &s->parts[e % GW_SKETCH_NPARTS];
    if (atomic_load_explicit(&p->stamp, RELAXED) != e) {
        /* Recycle an old part: readers that see the stamp change while they read it drop what they read. */
        atomic_store_explicit(&p->stamp, 0, RELAXED);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&p->zero, 0, RELAXED);
        for (size_t i = 0; i < GW_SKETCH_NBINS; i++)
            atomic_store_explicit(&p->bins[i], 0, RELAXED);
        atomic_store_explicit(&p->stamp, e, memory_order_release);
    }
    if (!(v > GW_SKETCH_MIN)) /* NaN too */
        bump(&p->zero);
    else
        bump(&p->bins[bin_of(v)]);
}

void gw_sketch_merge(gw_sketch_view *v, const gw_sketch *s, uint64_t now_ms)
{
    uint64_t cur = now_ms / s->part_ms + 1;
    static _Thread_local uint32_t tmp[GW_SKETCH_NBINS];
    for (size_t k = 0; k < GW_SKETCH_NPARTS; k++) {
        const part *p = &s->parts[k];
        uint64_t e = atomic_load_explicit(&p->stamp, memory_order_acquire);
        /* the window: this period and the NPARTS-1 before it (a writer a tick ahead counts as now) */
        if (!e || e + GW_SKETCH_NPARTS <= cur || e > cur + 1) continue;
        uint32_t zero = atomic_load_explicit(&p->zero, RELAXED);
        for (size_t i = 0; i < GW_SKETCH_NBINS; i++)
            tmp[i] = atomic_load_explicit(&p->bins[i], RELAXED);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->stamp, RELAXED) != e) continue; /* recycled meanwhile */
        v->zero += zero;
        v->n += zero;
        for (size_t i = 0; i < GW_SKETCH_NBINS; i++) {
            v->bins[i] += tmp[i];
            v->n += tmp[i];
        }
    }
}

double gw_sketch_quantile(const gw_sketch_view *v, double q)
{
    if (!v->n || !(q >= 0 && q <= 1)) return NAN;
    /* the value of rank floor(q * (n - 1)) (0-based) among the n observations, as its bin estimates it */
    uint64_t rank = (uint64_t)(q * (double)(v->n - 1)), cum = v->zero;
    if (rank < cum) return 0;
    for (size_t i = 0; i < GW_SKETCH_NBINS; i++) {
        cum += v->bins[i];
        if (rank < cum) {
            double g = (1 + GW_SKETCH_ALPHA) / (1 - GW_SKETCH_ALPHA);
            return 2 * exp((double)((long)i + kmin()) * lngamma()) / (g + 1);
        }
    }
    return GW_SKETCH_MAX;
}
