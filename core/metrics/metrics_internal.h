/* metrics_internal.h - the metrics registry's data layout, shared by metrics.c (registration and updates)
 * and metrics_render.c (scrapes). Private to those two files. */
#ifndef GW_METRICS_INTERNAL_H
#define GW_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "metrics.h"
#include "sketch.h"

#define GW_METRICS_MAX_LABELS 8
#define GW_METRICS_MAX_BUCKETS 32
#define GW_METRICS_MAX_SERIES 10000 /* per family and writer slot; new label values past it are dropped */
#define GW_METRICS_CHUNK 128        /* series pointers per chunk */
#define GW_METRICS_NCHUNKS ((GW_METRICS_MAX_SERIES + GW_METRICS_CHUNK - 1) / GW_METRICS_CHUNK)

/* One label-value combination on one slot. Written only by the slot's thread; immutable apart from the
 * atomics once published. One allocation: the struct, the bucket counters, then the label value copies. */
typedef struct gw_series {
    uint64_t hash;
    const char *vals[GW_METRICS_MAX_LABELS]; /* the family's label order; unused entries NULL */
    _Atomic double v;     /* counter/gauge value; histogram, summary: sum of observations */
    gw_sketch *sk;        /* summary: the recent observations */
    _Atomic uint64_t b[]; /* histogram: observations per bucket (not cumulative);
                             b[nbuckets] is the +Inf bucket; the count is their sum;
                             summary: b[0] is the count (all time) */
} gw_series;

/* One family's series on one writer slot. */
typedef struct {
    _Atomic uint32_t n;       /* published series: release store by the writer, acquire load by readers */
    _Atomic uint64_t dropped; /* updates refused (series limit, out of memory); written by the writer */
    uint32_t tcap;            /* writer only: open-addressing table (power of two) of the series */
    gw_series **tab;
    gw_series **chunks[GW_METRICS_NCHUNKS]; /* series i is chunks[i / CHUNK][i % CHUNK]; never moves */
} gw_mslot;

struct gw_metric {
    _Atomic(gw_metric *) next; /* registration order; appended with a release store */
    int type;
    char *name, *help;
    size_t nlabels, nbuckets;
    char *labels[GW_METRICS_MAX_LABELS];
    double buckets[GW_METRICS_MAX_BUCKETS]; /* histogram: upper bounds; summary: the quantiles */
    uint64_t (*now_ms)(void);               /* summary: the sketches' clock */
    uint64_t window_ms;                     /* summary: the sketches' window */
    double (*fn)(void *arg);                /* computed at scrape (gw_metrics_register_func), or NULL */
    void *fn_arg;
    unsigned nslots;
    _Atomic uint64_t stray;      /* updates from a slot out of range (a thread that never set its slot) */
    _Atomic(gw_mslot *) slots[]; /* created by their writer on first use, published with a release store */
};

struct gw_metrics {
    pthread_mutex_t lock; /* serialises registration; readers walk the list without it */
    unsigned nslots;
    uint64_t (*now_ms)(void);
    uint64_t summary_window_ms;
    _Atomic(gw_metric *) head;
    gw_metric *tail; /* under lock */
};

/* metrics_render.c: a malloc'd copy of s with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD (Prometheus and JSON both require UTF-8); NULL when out of memory. */
char *gw_metrics_utf8_dup(const char *s);
bool gw_metrics_utf8_valid(const char *s);

#endif
