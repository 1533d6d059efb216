/* metrics.h - the process-wide metrics registry behind the host API's metric_* calls: families live for
 * the whole process (values survive reloads), each worker writes only its own series, and a scrape merges
 * all workers without stopping them. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gw/filter.h>

typedef struct gw_metrics gw_metrics;

/* nworkers writer slots + 1 for the main thread (slot nworkers). */
gw_metrics *gw_metrics_new(unsigned nworkers);
void gw_metrics_free(gw_metrics *m);

/* Registers (or finds) a family. type: GW_METRIC_COUNTER/GAUGE/HISTOGRAM/SUMMARY. labels NULL-terminated
 * or NULL. Histogram buckets ascending (+Inf implied); summary: `buckets` are the quantiles to report,
 * ascending, each in (0, 1) (none: 0.5, 0.9, 0.99), over a sketch per slot and series (sketch.h) whose
 * window is the registry's summary window; _sum and _count cover all time. Returns NULL with *err (static
 * text) on a name clash with a different type/labels/buckets, an invalid name (Prometheus:
 * [a-zA-Z_:][a-zA-Z0-9_:]*), or invalid labels. */
gw_metric *gw_metrics_register(gw_metrics *m, int type, const char *name, const char *help,
                               const char *const *labels, const double *buckets, size_t nbuckets,
                               const char **err);

/* A label-less family whose value fn(arg) computes at each scrape (from any thread; fn must be cheap and
 * thread-safe), e.g. the uptime. Registering the name again, as a function or as a plain family of the
 * same type without labels, returns this family; updates to it are ignored. */
gw_metric *gw_metrics_register_func(gw_metrics *m, int type, const char *name, const char *help,
                                    double (*fn)(void *arg), void *arg, const char **err);

/* The summaries' clock (default: gw_mono_ms) and window (default GW_SKETCH_WINDOW_MS, at least 6 ms), for
 * families registered afterwards. Main thread, before the workers start (tests: a fake clock). */
void gw_metrics_set_clock(gw_metrics *m, uint64_t (*now_ms)(void));
void gw_metrics_set_summary_window(gw_metrics *m, uint64_t window_ms);

/* Updates from writer slot `slot` (a worker id, or the main thread's slot). Only that thread may use
 * that slot. Label values in the order of the names (NULL entries read as ""). Misuse is ignored: add on
 * a histogram, a negative or NaN add on a counter, set on anything but a gauge, observe on anything but a
 * histogram or a summary. At most 10000 series per family and slot: updates with new label values past that
 * are dropped and counted (gw_metric_dropped; rendered as a comment line / a "dropped" member). */
void gw_metric_add(gw_metric *f, unsigned slot, const char *const *values, double v);
void gw_metric_set(gw_metric *f, unsigned slot, const char *const *values, double v);
void gw_metric_observe(gw_metric *f, unsigned slot, const char *const *values, double v);

/* Renders everything merged over slots: counters and histograms summed, summaries' sketches merged, gauges
 * summed too (a gauge set from several workers is per-worker state that adds up, e.g. requests in flight).
 * format 0 = Prometheus text 0.0.4 (HELP/TYPE lines, escaped label values, _bucket/_sum/_count for
 * histograms, {quantile="q"}/_sum/_count for summaries; a quantile of an empty window is NaN), 1 = JSON.
 * Returns a malloc'd NUL-terminated string (caller frees) and its length. Safe while workers write. */
char *gw_metrics_render(gw_metrics *m, int format, size_t *len);

/* Updates dropped so far: series limit reached, out of memory, or a slot out of range. */
uint64_t gw_metric_dropped(const gw_metric *f);

/* The slot of the calling thread, set once per thread (workers: their id; main: nworkers). A thread that
 * never set it gets GW_METRICS_NO_SLOT, whose updates are dropped. */
#define GW_METRICS_NO_SLOT ((unsigned)-1)
void gw_metrics_set_thread_slot(unsigned slot);
unsigned gw_metrics_thread_slot(void);

#endif
