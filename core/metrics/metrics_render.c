/* metrics_render.c - scrapes of the metrics registry: every slot's series merged by label values, rendered
 * as Prometheus text format 0.0.4 or JSON, while the workers keep writing. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics_internal.h"

#define RELAXED memory_order_relaxed

/* --- UTF-8 ---------------------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (no overlongs, surrogates or code points past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return n;
}

bool gw_metrics_utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (!n) return false;
        p += n;
    }
    return true;
}

char *gw_metrics_utf8_dup(const char *s)
{
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (n) {
            memcpy(o, p, n);
            o += n;
            p += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

/* --- collecting and merging ----------------------------------------------------------------------------- */

typedef struct {
    const char *const *vals; /* the series' values, or a UTF-8-safe copy of them (fixed) */
    const gw_series *s;
    unsigned slot;
    char **fixed;
} entry;

typedef struct {
    double v;                               /* value, or histogram/summary sum */
    uint64_t b[GW_METRICS_MAX_BUCKETS + 1]; /* histogram: per bucket, not cumulative; summary: b[0] count */
    gw_sketch_view *view;                   /* summary: the slots' windows merged (the render's buffer) */
    double q[GW_METRICS_MAX_BUCKETS];       /* summary: the quantiles' values */
} merged;

static int vals_cmp(const char *const *a, const char *const *b)
{
    for (size_t i = 0; i < GW_METRICS_MAX_LABELS && a[i]; i++) {
        int c = strcmp(a[i], b[i]);
        if (c) return c;
    }
    return 0;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    int c = vals_cmp(a->vals, b->vals);
    if (c) return c;
    return a->slot < b->slot ? -1 : a->slot > b->slot; /* a fixed summing order: stable output */
}

static void fixed_free(char **v)
{
    for (size_t k = 0; v && k < GW_METRICS_MAX_LABELS; k++)
        free(v[k]);
    free(v);
}

/* UTF-8-safe copies of a series' values, NULL-terminated like the originals. */
static char **fix_values(const gw_series *s)
{
    char **v = calloc(GW_METRICS_MAX_LABELS, sizeof *v);
    for (size_t i = 0; v && i < GW_METRICS_MAX_LABELS && s->vals[i]; i++)
        if (!(v[i] = gw_metrics_utf8_dup(s->vals[i]))) {
            fixed_free(v);
            return NULL;
        }
    return v;
}

static void entries_free(entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fixed_free(e[i].fixed);
    free(e);
}

/* Snapshot of every published series of f, sorted by label values. Returns -1 when out of memory. */
static int collect(const gw_metric *f, entry **out, size_t *nout, uint64_t *dropped)
{
    uint32_t *counts = calloc(f->nslots, sizeof *counts);
    const gw_mslot **slots = calloc(f->nslots, sizeof *slots);
    size_t total = 0, n = 0;
    entry *e = NULL;
    int rc = -1;
    *dropped = 0;
    if (!counts || !slots) goto out;
    *dropped = atomic_load_explicit(&f->stray, RELAXED);
    for (unsigned i = 0; i < f->nslots; i++) {
        slots[i] = atomic_load_explicit(&f->slots[i], memory_order_acquire);
        counts[i] = slots[i] ? atomic_load_explicit(&slots[i]->n, memory_order_acquire) : 0;
        if (slots[i]) *dropped += atomic_load_explicit(&slots[i]->dropped, RELAXED);
        total += counts[i];
    }
    if (total && !(e = calloc(total, sizeof *e))) goto out;
    for (unsigned i = 0; i < f->nslots; i++)
        for (uint32_t k = 0; k < counts[i]; k++) {
            const gw_series *s = slots[i]->chunks[k / GW_METRICS_CHUNK][k % GW_METRICS_CHUNK];
            e[n] = (entry){.vals = s->vals, .s = s, .slot = i};
            for (size_t l = 0; l < f->nlabels; l++)
                if (!gw_metrics_utf8_valid(s->vals[l])) {
                    if (!(e[n].fixed = fix_values(s))) goto out;
                    e[n].vals = (const char *const *)e[n].fixed;
                    break;
                }
            n++;
        }
    if (n) qsort(e, n, sizeof *e, entry_cmp);
    rc = 0;
out:
    free(counts);
    free(slots);
    if (rc != 0) {
        entries_free(e, n);
        e = NULL;
        n = 0;
    }
    *out = e;
    *nout = n;
    return rc;
}

/* Sums the run of entries starting at e[0] with the same label values; returns its length. */
static size_t merge_run(const gw_metric *f, const entry *e, size_t n, merged *m, uint64_t now)
{
    gw_sketch_view *view = m->view;
    memset(m, 0, sizeof *m);
    m->view = view;
    bool summary = f->type == GW_METRIC_SUMMARY;
    if (summary) memset(view, 0, sizeof *view);
    size_t nb = f->type == GW_METRIC_HISTOGRAM ? f->nbuckets + 1 : summary ? 1 : 0, len = 0;
    for (; len < n; len++) {
        if (len && vals_cmp(e[0].vals, e[len].vals) != 0) break;
        m->v += atomic_load_explicit(&e[len].s->v, RELAXED);
        for (size_t k = 0; k < nb; k++)
            m->b[k] += atomic_load_explicit(&e[len].s->b[k], RELAXED);
        if (summary) gw_sketch_merge(view, e[len].s->sk, now);
    }
    for (size_t k = 0; summary && k < f->nbuckets; k++)
        m->q[k] = gw_sketch_quantile(view, f->buckets[k]);
    return len;
}

/* A family with no series yet: its label-less series, zero (summary: NaN quantiles), or computed. */
static void merge_empty(const gw_metric *f, merged *m)
{
    gw_sketch_view *view = m->view;
    memset(m, 0, sizeof *m);
    m->view = view;
    for (size_t k = 0; f->type == GW_METRIC_SUMMARY && k < f->nbuckets; k++)
        m->q[k] = NAN;
    if (f->fn) m->v = f->fn(f->fn_arg);
}

/* Shortest text that reads back as v; integers without exponent or decimals; Prometheus' NaN and Inf. */
static void fmt_num(char out[40], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v > -9e18 && v < 9e18 && v == (double)(long long)v) {
        snprintf(out, 40, "%lld", (long long)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, 40, "%.*g", prec, v);
            if (strtod(out, NULL) == v) break;
        }
    }
}

/* --- Prometheus text ------------------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void put_escaped(sbuf *b, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : *s == '"' && quote ? "\\\"" : NULL;
        if (!esc) continue;
        put(b, run, (size_t)(s - run));
        put(b, esc, 2);
        run = s + 1;
    }
    put(b, run, (size_t)(s - run));
}

static void put_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" PRIu64, v));
}

static void put_num(sbuf *b, double v)
{
    char tmp[40];
    fmt_num(tmp, v);
    puts_(b, tmp);
}

/* name{l1="v1",...,le="x"} (or quantile="x") followed by the space before the value. */
static void put_sample_name_ex(sbuf *b, const gw_metric *f, const char *suffix, const char *const *vals,
                               const char *extra, const char *le)
{
    puts_(b, f->name);
    puts_(b, suffix);
    if (!f->nlabels && !le) {
        put(b, " ", 1);
        return;
    }
    put(b, "{", 1);
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i) put(b, ",", 1);
        puts_(b, f->labels[i]);
        put(b, "=\"", 2);
        put_escaped(b, vals[i], true);
        put(b, "\"", 1);
    }
    if (le) {
        if (f->nlabels) put(b, ",", 1);
        puts_(b, extra);
        put(b, "=\"", 2);
        puts_(b, le);
        put(b, "\"", 1);
    }
    put(b, "} ", 2);
}

static void put_sample_name(sbuf *b, const gw_metric *f, const char *suffix, const char *const *vals,
                            const char *le)
{
    put_sample_name_ex(b, f, suffix, vals, "le", le);
}

static void put_sample_name_q(sbuf *b, const gw_metric *f, const char *const *vals, const char *q)
{
    put_sample_name_ex(b, f, "", vals, "quantile", q);
}

static void text_series(sbuf *b, const gw_metric *f, const char *const *vals, const merged *m)
{
    if (f->type == GW_METRIC_SUMMARY) {
        char q[40];
        for (size_t i = 0; i < f->nbuckets; i++) {
            fmt_num(q, f->buckets[i]);
            put_sample_name_q(b, f, vals, q);
            put_num(b, m->q[i]);
            put(b, "\n", 1);
        }
        put_sample_name(b, f, "_sum", vals, NULL);
        put_num(b, m->v);
        put(b, "\n", 1);
        put_sample_name(b, f, "_count", vals, NULL);
        put_u64(b, m->b[0]);
        put(b, "\n", 1);
        return;
    }
    if (f->type != GW_METRIC_HISTOGRAM) {
        put_sample_name(b, f, "", vals, NULL);
        put_num(b, m->v);
        put(b, "\n", 1);
        return;
    }
    uint64_t cum = 0;
    char le[40];
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cum += m->b[i];
        if (i < f->nbuckets)
            fmt_num(le, f->buckets[i]);
        else
            strcpy(le, "+Inf");
        put_sample_name(b, f, "_bucket", vals, le);
        put_u64(b, cum);
        put(b, "\n", 1);
    }
    put_sample_name(b, f, "_sum", vals, NULL);
    put_num(b, m->v);
    put(b, "\n", 1);
    put_sample_name(b, f, "_count", vals, NULL);
    put_u64(b, cum);
    put(b, "\n", 1);
}

static const char *const type_names[] = {"counter", "gauge", "histogram", "summary"};

static void text_family_head(sbuf *b, const gw_metric *f)
{
    if (f->help[0]) {
        puts_(b, "# HELP ");
        puts_(b, f->name);
        put(b, " ", 1);
        put_escaped(b, f->help, false);
        put(b, "\n", 1);
    }
    puts_(b, "# TYPE ");
    puts_(b, f->name);
    put(b, " ", 1);
    puts_(b, type_names[f->type]);
    put(b, "\n", 1);
}

static void text_dropped(sbuf *b, const gw_metric *f, uint64_t dropped)
{
    char tmp[120];
    snprintf(tmp, sizeof tmp, ": %" PRIu64 " updates dropped (over %d series per worker, or out of memory)\n",
             dropped, GW_METRICS_MAX_SERIES);
    puts_(b, "# ");
    puts_(b, f->name);
    puts_(b, tmp);
}

/* --- JSON ----------------------------------------------------------------------------------------------- */

/* Adds item to obj under key (to an array when key is NULL); clears *ok on any failure. */
static cJSON *jadd(bool *ok, cJSON *obj, const char *key, cJSON *item)
{
    if (!item || !obj || !(key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item))) {
        cJSON_Delete(item);
        *ok = false;
        return NULL;
    }
    return item;
}

/* JSON has no NaN or infinities: those go as the strings Prometheus uses. */
static cJSON *jnum(double v)
{
    if (isfinite(v)) return cJSON_CreateNumber(v);
    char tmp[40];
    fmt_num(tmp, v);
    return cJSON_CreateString(tmp);
}

static void json_series(bool *ok, cJSON *arr, const gw_metric *f, const char *const *vals, const merged *m)
{
    cJSON *o = jadd(ok, arr, NULL, cJSON_CreateObject());
    cJSON *labels = jadd(ok, o, "labels", cJSON_CreateObject());
    for (size_t i = 0; labels && i < f->nlabels; i++)
        jadd(ok, labels, f->labels[i], cJSON_CreateString(vals[i]));
    if (f->type == GW_METRIC_SUMMARY) {
        cJSON *qs = jadd(ok, o, "quantiles", cJSON_CreateArray());
        for (size_t i = 0; i < f->nbuckets; i++) {
            cJSON *e = jadd(ok, qs, NULL, cJSON_CreateObject());
            jadd(ok, e, "quantile", cJSON_CreateNumber(f->buckets[i]));
            jadd(ok, e, "value", jnum(m->q[i]));
        }
        jadd(ok, o, "sum", jnum(m->v));
        jadd(ok, o, "count", cJSON_CreateNumber((double)m->b[0]));
        return;
    }
    if (f->type != GW_METRIC_HISTOGRAM) {
        jadd(ok, o, "value", jnum(m->v));
        return;
    }
    cJSON *bk = jadd(ok, o, "buckets", cJSON_CreateArray());
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cum += m->b[i];
        cJSON *e = jadd(ok, bk, NULL, cJSON_CreateObject());
        jadd(ok, e, "le", i < f->nbuckets ? cJSON_CreateNumber(f->buckets[i]) : cJSON_CreateString("+Inf"));
        jadd(ok, e, "count", cJSON_CreateNumber((double)cum));
    }
    jadd(ok, o, "sum", jnum(m->v));
    jadd(ok, o, "count", cJSON_CreateNumber((double)cum));
}

static cJSON *json_family(bool *ok, cJSON *fams, const gw_metric *f, uint64_t dropped)
{
    cJSON *o = jadd(ok, fams, NULL, cJSON_CreateObject());
    jadd(ok, o, "name", cJSON_CreateString(f->name));
    jadd(ok, o, "type", cJSON_CreateString(type_names[f->type]));
    jadd(ok, o, "help", cJSON_CreateString(f->help));
    if (dropped) jadd(ok, o, "dropped", cJSON_CreateNumber((double)dropped));
    return jadd(ok, o, "series", cJSON_CreateArray());
}

/* --- the scrape ----------------------------------------------------------------------------------------- */

char *gw_metrics_render(gw_metrics *m, int format, size_t *len)
{
    if (!m || (format != 0 && format != 1)) return NULL;
    sbuf b = {0};
    bool ok = true;
    uint64_t now = m->now_ms();
    merged mg = {0};
    if (!(mg.view = malloc(sizeof *mg.view))) return NULL;
    cJSON *root = NULL, *fams = NULL;
    if (format == 1) {
        root = cJSON_CreateObject();
        fams = jadd(&ok, root, "metrics", cJSON_CreateArray());
    }
    for (gw_metric *f = atomic_load_explicit(&m->head, memory_order_acquire); f && ok && !b.oom;
         f = atomic_load_explicit(&f->next, memory_order_acquire)) {
        entry *e = NULL;
        size_t n = 0;
        uint64_t dropped = 0;
        if (!f->fn && collect(f, &e, &n, &dropped) != 0) {
            ok = false;
            break;
        }
        cJSON *series = format == 1 ? json_family(&ok, fams, f, dropped) : NULL;
        if (format == 0) text_family_head(&b, f);
        /* A family without labels always has its one series, zero until first used. */
        if (!n && !f->nlabels) {
            merge_empty(f, &mg);
            if (format == 0)
                text_series(&b, f, NULL, &mg);
            else
                json_series(&ok, series, f, NULL, &mg);
        }
        for (size_t i = 0, run; i < n; i += run) {
            run = merge_run(f, e + i, n - i, &mg, now);
            if (format == 0)
                text_series(&b, f, e[i].vals, &mg);
            else
                json_series(&ok, series, f, e[i].vals, &mg);
        }
        if (format == 0 && dropped) text_dropped(&b, f, dropped);
        entries_free(e, n);
    }
    free(mg.view);
    if (format == 1) { /* cJSON allocates with malloc unless someone installs hooks (nobody does) */
        char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
        cJSON_Delete(root);
        if (s && len) *len = strlen(s);
        return s;
    }
    if (!b.oom && !b.p) put(&b, "", 0);
    if (b.oom || !ok) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.n;
    return b.p;
}
