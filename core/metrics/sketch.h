/* sketch.h - a quantile sketch of bounded relative error over a sliding window of time, for summaries.
 * Log-spaced bins (DDSketch-style): a value v > 0 falls in bin k with gamma^(k-1) < v <= gamma^k, and the
 * bin's estimate 2 gamma^k / (gamma + 1) is within GW_SKETCH_ALPHA (1 %) of every value in it. Fixed memory:
 * GW_SKETCH_NBINS bins cover [GW_SKETCH_MIN, GW_SKETCH_MAX]; values at or below GW_SKETCH_MIN (zero and
 * negatives included) count as 0, values above GW_SKETCH_MAX as GW_SKETCH_MAX.
 *
 * The window is GW_SKETCH_NPARTS rotating parts of window/NPARTS each: a quantile covers the part being
 * filled and the NPARTS-1 before it (between (NPARTS-1)/NPARTS of the window and all of it). One thread
 * writes a sketch (lock-free relaxed atomics); any thread may merge it into a view at the same time (a part
 * being recycled while it is read is skipped, seqlock-style). Self-contained: also built into the SDK test
 * host, which feeds it its fake clock. */
#ifndef GW_SKETCH_H
#define GW_SKETCH_H

#include <stdint.h>

#define GW_SKETCH_ALPHA 0.01
#define GW_SKETCH_MIN 1e-6
#define GW_SKETCH_MAX 1e9
#define GW_SKETCH_NBINS 1740 /* ceil(ln(MAX / MIN) / ln(gamma)) + 1, gamma = (1 + ALPHA) / (1 - ALPHA) */
#define GW_SKETCH_NPARTS 6
#define GW_SKETCH_WINDOW_MS 60000 /* the summaries' window (gateway and test host alike) */

typedef struct gw_sketch gw_sketch;

/* A merged picture of one or more sketches at one moment. */
typedef struct {
    uint64_t n, zero;
    uint64_t bins[GW_SKETCH_NBINS];
} gw_sketch_view;

gw_sketch *gw_sketch_new(uint64_t window_ms); /* NULL when out of memory; window_ms >= NPARTS */
void gw_sketch_free(gw_sketch *s);

/* The writer thread only. now_ms: a monotonic clock, the same for the writer and the readers. */
void gw_sketch_add(gw_sketch *s, double v, uint64_t now_ms);

/* Adds what s holds in the window ending at now_ms to v (zero it first). Any thread. */
void gw_sketch_merge(gw_sketch_view *v, const gw_sketch *s, uint64_t now_ms);

/* The q-quantile (0 <= q <= 1) of the view: NaN when it is empty. */
double gw_sketch_quantile(const gw_sketch_view *v, double q);

#endif
