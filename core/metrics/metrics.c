/* metrics.c - the metrics registry: family registration (main thread, under a mutex) and the lock-free
 * per-slot update path (gw_metric_add/set/observe). Rendering lives in metrics_render.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_internal.h"
#include "util.h"

#define RELAXED memory_order_relaxed

static _Thread_local unsigned tl_slot = GW_METRICS_NO_SLOT;

void gw_metrics_set_thread_slot(unsigned slot)
{
    tl_slot = slot;
}

unsigned gw_metrics_thread_slot(void)
{
    return tl_slot;
}

/* --- registry ------------------------------------------------------------------------------------------- */

gw_metrics *gw_metrics_new(unsigned nworkers)
{
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->nslots = nworkers + 1;
    m->now_ms = gw_mono_ms;
    m->summary_window_ms = GW_SKETCH_WINDOW_MS;
    atomic_init(&m->head, NULL);
    return m;
}

static void slot_free(gw_mslot *s)
{
    uint32_t n = atomic_load_explicit(&s->n, RELAXED);
    for (uint32_t i = 0; i < n; i++) {
        gw_series *e = s->chunks[i / GW_METRICS_CHUNK][i % GW_METRICS_CHUNK];
        gw_sketch_free(e->sk);
        free(e);
    }
    for (size_t c = 0; c < GW_METRICS_NCHUNKS; c++)
        free(s->chunks[c]);
    free(s->tab);
    free(s);
}

static void family_free(gw_metric *f)
{
    for (unsigned i = 0; i < f->nslots; i++) {
        gw_mslot *s = atomic_load_explicit(&f->slots[i], RELAXED);
        if (s) slot_free(s);
    }
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void gw_metrics_free(gw_metrics *m)
{
    if (!m) return;
    gw_metric *f = atomic_load_explicit(&m->head, memory_order_acquire);
    while (f) {
        gw_metric *next = atomic_load_explicit(&f->next, memory_order_acquire);
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static bool name_ok(const char *s, bool label)
{
    if (!s || !*s) return false;
    if (label && s[0] == '_' && s[1] == '_') return false; /* reserved for Prometheus itself */
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':') ||
                  (p > s && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

/* Is `name` one of the series names a histogram (or summary) called `base` produces? */
static bool histogram_series_name(const char *name, const char *base, int type)
{
    size_t n = strlen(base);
    if (type != GW_METRIC_HISTOGRAM && type != GW_METRIC_SUMMARY) return false;
    if (strncmp(name, base, n) != 0) return false;
    return (type == GW_METRIC_HISTOGRAM && !strcmp(name + n, "_bucket")) || !strcmp(name + n, "_sum") ||
           !strcmp(name + n, "_count");
}

void gw_metrics_set_clock(gw_metrics *m, uint64_t (*now_ms)(void))
{
    m->now_ms = now_ms ? now_ms : gw_mono_ms;
}

void gw_metrics_set_summary_window(gw_metrics *m, uint64_t window_ms)
{
    m->summary_window_ms = window_ms >= GW_SKETCH_NPARTS ? window_ms : GW_SKETCH_WINDOW_MS;
}

static const double default_quantiles[] = {0.5, 0.9, 0.99};

static const char *check_shape(int type, const char *name, const char *const *labels, size_t *nlabels,
                               const double *buckets, size_t nbuckets)
{
    if (type != GW_METRIC_COUNTER && type != GW_METRIC_GAUGE && type != GW_METRIC_HISTOGRAM &&
        type != GW_METRIC_SUMMARY)
        return "unknown metric type";
    if (!name_ok(name, false)) return "invalid metric name (want [a-zA-Z_:][a-zA-Z0-9_:]*)";
    size_t n = 0;
    for (; labels && labels[n]; n++) {
        if (n == GW_METRICS_MAX_LABELS) return "more than 8 label names";
        if (!name_ok(labels[n], true))
            return "invalid label name (want [a-zA-Z_][a-zA-Z0-9_]*, no leading __)";
        if (type == GW_METRIC_HISTOGRAM && !strcmp(labels[n], "le"))
            return "a histogram cannot have a label named \"le\"";
        if (type == GW_METRIC_SUMMARY && !strcmp(labels[n], "quantile"))
            return "a summary cannot have a label named \"quantile\"";
        for (size_t k = 0; k < n; k++)
            if (!strcmp(labels[k], labels[n])) return "duplicate label name";
    }
    *nlabels = n;
    if (type == GW_METRIC_SUMMARY) {
        if (nbuckets > GW_METRICS_MAX_BUCKETS) return "more than 32 quantiles";
        if (nbuckets && !buckets) return "summary quantiles missing";
        for (size_t i = 0; i < nbuckets; i++) {
            if (!(buckets[i] > 0 && buckets[i] < 1)) return "summary quantiles must lie between 0 and 1";
            if (i && !(buckets[i] > buckets[i - 1])) return "summary quantiles must be strictly ascending";
        }
        return NULL;
    }
    if (type != GW_METRIC_HISTOGRAM) return NULL;
    if (nbuckets > GW_METRICS_MAX_BUCKETS) return "more than 32 histogram buckets";
    if (nbuckets && !buckets) return "histogram buckets missing";
    for (size_t i = 0; i < nbuckets; i++) {
        if (!isfinite(buckets[i])) return "histogram buckets must be finite (+Inf is implied)";
        if (i && !(buckets[i] > buckets[i - 1])) return "histogram buckets must be strictly ascending";
    }
    return NULL;
}

static const char *same_shape(const gw_metric *f, int type, const char *const *labels, size_t nlabels,
                              const double *buckets, size_t nbuckets)
{
    if (f->type != type) return "metric already registered with another type";
    if (f->nlabels != nlabels) return "metric already registered with other label names";
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0) return "metric already registered with other label names";
    if (type == GW_METRIC_SUMMARY && !nbuckets) {
        buckets = default_quantiles;
        nbuckets = sizeof default_quantiles / sizeof *default_quantiles;
    }
    if (type != GW_METRIC_HISTOGRAM && type != GW_METRIC_SUMMARY) return NULL;
    if (f->nbuckets != nbuckets) return "metric already registered with other buckets";
    for (size_t i = 0; i < nbuckets; i++)
        if (f->buckets[i] != buckets[i]) return "metric already registered with other buckets";
    return NULL;
}

static gw_metric *family_new(const gw_metrics *m, int type, const char *name, const char *help,
                             const char *const *labels, size_t nlabels, const double *buckets,
                             size_t nbuckets)
{
    gw_metric *f = calloc(1, sizeof *f + m->nslots * sizeof f->slots[0]);
    if (!f) return NULL;
    atomic_init(&f->next, NULL);
    atomic_init(&f->stray, 0);
    for (unsigned i = 0; i < m->nslots; i++)
        atomic_init(&f->slots[i], NULL);
    f->type = type;
    f->nslots = m->nslots;
    f->name = strdup(name);
    f->help = gw_metrics_utf8_dup(help ? help : "");
    bool ok = f->name && f->help;
    for (size_t i = 0; i < nlabels; i++, f->nlabels++)
        ok = (f->labels[i] = strdup(labels[i])) != NULL && ok;
    if (type == GW_METRIC_SUMMARY && !nbuckets) {
        buckets = default_quantiles;
        nbuckets = sizeof default_quantiles / sizeof *default_quantiles;
    }
    if (type == GW_METRIC_HISTOGRAM || type == GW_METRIC_SUMMARY) {
        f->nbuckets = nbuckets;
        if (nbuckets) memcpy(f->buckets, buckets, nbuckets * sizeof *buckets);
    }
    f->now_ms = m->now_ms;
    f->window_ms = m->summary_window_ms;
    if (!ok) {
        family_free(f);
        return NULL;
    }
    return f;
}

static gw_metric *register_family(gw_metrics *m, int type, const char *name, const char *help,
                                  const char *const *labels, const double *buckets, size_t nbuckets,
                                  double (*fn)(void *), void *fn_arg, const char **err)
{
    static const char *unused;
    if (!err) err = &unused;
    *err = NULL;
    if (!m) return *err = "no metrics registry", NULL;
    size_t nlabels = 0;
    if ((*err = check_shape(type, name, labels, &nlabels, buckets, nbuckets)) != NULL) return NULL;

    pthread_mutex_lock(&m->lock);
    gw_metric *f = atomic_load_explicit(&m->head, RELAXED);
    for (; f; f = atomic_load_explicit(&f->next, RELAXED)) {
        if (!strcmp(f->name, name)) break;
        if (histogram_series_name(name, f->name, f->type) || histogram_series_name(f->name, name, type)) {
            *err = "metric name clashes with a histogram's or summary's _bucket/_sum/_count series";
            break;
        }
    }
    if (f && !*err) {
        *err = same_shape(f, type, labels, nlabels, buckets, nbuckets);
        if (!*err && fn && !f->fn) *err = "metric already registered as a plain family";
    } else if (!f) {
        f = family_new(m, type, name, help, labels, nlabels, buckets, nbuckets);
        if (f) {
            f->fn = fn;
            f->fn_arg = fn_arg;
        }
        if (!f) {
            *err = "out of memory";
        } else if (m->tail) {
            atomic_store_explicit(&m->tail->next, f, memory_order_release);
            m->tail = f;
        } else {
            atomic_store_explicit(&m->head, f, memory_order_release);
            m->tail = f;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return *err ? NULL : f;
}

gw_metric *gw_metrics_register(gw_metrics *m, int type, const char *name, const char *help,
                               const char *const *labels, const double *buckets, size_t nbuckets,
                               const char **err)
{
    return register_family(m, type, name, help, labels, buckets, nbuckets, NULL, NULL, err);
}

gw_metric *gw_metrics_register_func(gw_metrics *m, int type, const char *name, const char *help,
                                    double (*fn)(void *arg), void *arg, const char **err)
{
    static const char *unused;
    if (!err) err = &unused;
    if (!fn || (type != GW_METRIC_COUNTER && type != GW_METRIC_GAUGE))
        return *err = "a computed metric is a counter or a gauge with a function", NULL;
    return register_family(m, type, name, help, NULL, NULL, 0, fn, arg, err);
}

uint64_t gw_metric_dropped(const gw_metric *f)
{
    uint64_t n = atomic_load_explicit(&f->stray, RELAXED);
    for (unsigned i = 0; i < f->nslots; i++) {
        gw_mslot *s = atomic_load_explicit(&f->slots[i], memory_order_acquire);
        if (s) n += atomic_load_explicit(&s->dropped, RELAXED);
    }
    return n;
}

/* --- updates (the owning slot's thread only) ------------------------------------------------------------ */

static inline const char *value_at(const char *const *values, size_t i)
{
    return values && values[i] ? values[i] : "";
}

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a, with the value boundaries mixed in */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)value_at(values, i); *p; p++)
            h = (h ^ *p) * 0x100000001b3u;
        h = (h ^ 0xff) * 0x100000001b3u;
    }
    return h ^ (h >> 31);
}

static bool same_values(const gw_series *e, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e->vals[i], value_at(values, i)) != 0) return false;
    return true;
}

static void table_put(gw_series **tab, uint32_t cap, gw_series *e)
{
    uint32_t i = (uint32_t)e->hash & (cap - 1);
    while (tab[i])
        i = (i + 1) & (cap - 1);
    tab[i] = e;
}

static int table_grow(gw_mslot *s)
{
    uint32_t cap = s->tcap ? s->tcap * 2 : 16;
    gw_series **tab = calloc(cap, sizeof *tab);
    if (!tab) return -1;
    for (uint32_t i = 0; i < s->tcap; i++)
        if (s->tab[i]) table_put(tab, cap, s->tab[i]);
    free(s->tab);
    s->tab = tab;
    s->tcap = cap;
    return 0;
}

static void count_drop(gw_mslot *s)
{
    atomic_store_explicit(&s->dropped, atomic_load_explicit(&s->dropped, RELAXED) + 1, RELAXED);
}

/* First use of a label-value combination on this slot: copy it, then publish it to readers. */
static gw_series *series_new(const gw_metric *f, gw_mslot *s, const char *const *values, uint64_t h)
{
    uint32_t n = atomic_load_explicit(&s->n, RELAXED);
    if (n >= GW_METRICS_MAX_SERIES || ((n + 1) * 2 > s->tcap && table_grow(s) != 0)) return NULL;
    gw_series ***chunk = &s->chunks[n / GW_METRICS_CHUNK];
    if (!*chunk && !(*chunk = malloc(GW_METRICS_CHUNK * sizeof **chunk))) return NULL;

    size_t nb = f->type == GW_METRIC_HISTOGRAM ? f->nbuckets + 1 : f->type == GW_METRIC_SUMMARY ? 1 : 0;
    gw_sketch *sk = NULL;
    if (f->type == GW_METRIC_SUMMARY && !(sk = gw_sketch_new(f->window_ms))) return NULL;
    size_t head = sizeof(gw_series) + nb * sizeof(_Atomic uint64_t), lens[GW_METRICS_MAX_LABELS], total = 0;
    for (size_t i = 0; i < f->nlabels; i++)
        total += lens[i] = strlen(value_at(values, i)) + 1;
    gw_series *e = malloc(head + total);
    if (!e) {
        gw_sketch_free(sk);
        return NULL;
    }
    e->hash = h;
    e->sk = sk;
    char *p = (char *)e + head;
    for (size_t i = 0; i < GW_METRICS_MAX_LABELS; i++) {
        e->vals[i] = NULL;
        if (i >= f->nlabels) continue;
        memcpy(p, value_at(values, i), lens[i]);
        e->vals[i] = p;
        p += lens[i];
    }
    atomic_init(&e->v, 0.0);
    for (size_t i = 0; i < nb; i++)
        atomic_init(&e->b[i], 0);

    (*chunk)[n % GW_METRICS_CHUNK] = e;
    table_put(s->tab, s->tcap, e);
    atomic_store_explicit(&s->n, n + 1, memory_order_release);
    return e;
}

static gw_mslot *slot_new(gw_metric *f, unsigned slot)
{
    gw_mslot *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    atomic_init(&s->n, 0);
    atomic_init(&s->dropped, 0);
    if (table_grow(s) != 0) {
        free(s);
        return NULL;
    }
    atomic_store_explicit(&f->slots[slot], s, memory_order_release);
    return s;
}

/* The series for `values` on `slot`, created on first use; NULL (and counted) when it cannot be. */
static gw_series *series_get(gw_metric *f, unsigned slot, const char *const *values)
{
    if (slot >= f->nslots) {
        atomic_fetch_add_explicit(&f->stray, 1, RELAXED);
        return NULL;
    }
    gw_mslot *s = atomic_load_explicit(&f->slots[slot], RELAXED); /* we are its only writer */
    if (!s && !(s = slot_new(f, slot))) {
        atomic_fetch_add_explicit(&f->stray, 1, RELAXED);
        return NULL;
    }
    if (f->nlabels == 0 && atomic_load_explicit(&s->n, RELAXED)) return s->chunks[0][0];
    uint64_t h = hash_values(values, f->nlabels);
    for (uint32_t i = (uint32_t)h & (s->tcap - 1);; i = (i + 1) & (s->tcap - 1)) {
        gw_series *e = s->tab[i];
        if (!e) break;
        if (e->hash == h && same_values(e, values, f->nlabels)) return e;
    }
    gw_series *e = series_new(f, s, values, h);
    if (!e) count_drop(s);
    return e;
}

static inline void add_double(_Atomic double *a, double v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, RELAXED) + v, RELAXED);
}

void gw_metric_add(gw_metric *f, unsigned slot, const char *const *values, double v)
{
    if (!f || f->fn || f->type == GW_METRIC_HISTOGRAM || f->type == GW_METRIC_SUMMARY ||
        (f->type == GW_METRIC_COUNTER && !(v >= 0)))
        return;
    gw_series *e = series_get(f, slot, values);
    if (e) add_double(&e->v, v);
}

void gw_metric_set(gw_metric *f, unsigned slot, const char *const *values, double v)
{
    if (!f || f->fn || f->type != GW_METRIC_GAUGE) return;
    gw_series *e = series_get(f, slot, values);
    if (e) atomic_store_explicit(&e->v, v, RELAXED);
}

void gw_metric_observe(gw_metric *f, unsigned slot, const char *const *values, double v)
{
    if (!f || (f->type != GW_METRIC_HISTOGRAM && f->type != GW_METRIC_SUMMARY)) return;
    gw_series *e = series_get(f, slot, values);
    if (!e) return;
    if (f->type == GW_METRIC_SUMMARY) {
        gw_sketch_add(e->sk, v, f->now_ms());
        atomic_store_explicit(&e->b[0], atomic_load_explicit(&e->b[0], RELAXED) + 1, RELAXED);
        add_double(&e->v, v);
        return;
    }
    size_t lo = 0, hi = f->nbuckets; /* first bucket with v <= le; NaN lands in +Inf */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= f->buckets[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_store_explicit(&e->b[lo], atomic_load_explicit(&e->b[lo], RELAXED) + 1, RELAXED);
    add_double(&e->v, v);
}
