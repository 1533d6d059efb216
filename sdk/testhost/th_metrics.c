/* th_metrics.c - metric families and series kept in memory and queryable by name and label values, and
 * host->metrics_render over them. Summaries keep the gateway's own sketch (core/metrics/sketch.c) on the
 * fake clock. */
#include "th_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sketch.h"

/* ------------------------------------------------------------------------------------------------------
 * metrics */

static bool metric_name_ok(const char *s, bool label)
{
    if (!s || !*s || (label && s[0] == '_' && s[1] == '_')) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
        if (!alpha && !(p > s && c >= '0' && c <= '9')) return false;
    }
    return true;
}

static gw_metric *family_find(const gw_th *th, const char *name)
{
    for (size_t i = 0; name && i < th->nfams; i++)
        if (strcmp(th->fams[i]->name, name) == 0) return th->fams[i];
    return NULL;
}

static th_series *series(gw_metric *m, const char *const *values);

static const double default_quantiles[] = {0.5, 0.9, 0.99}; /* as the gateway's */

static bool same_shape(const gw_metric *m, int type, const char *const *labels, const double *buckets,
                       size_t nbuckets)
{
    size_t n = 0;
    while (labels && labels[n])
        n++;
    if (m->type != type || n != m->nlabels) return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->labels[i], labels[i]) != 0) return false;
    if (type == GW_METRIC_SUMMARY && !nbuckets) {
        buckets = default_quantiles;
        nbuckets = 3;
    }
    if (type != GW_METRIC_HISTOGRAM && type != GW_METRIC_SUMMARY) return true;
    if (nbuckets != m->nbuckets) return false;
    for (size_t i = 0; i < nbuckets; i++)
        if (buckets[i] != m->buckets[i]) return false;
    return true;
}

static gw_metric *h_metric_register(gw_filter *self, int type, const char *name, const char *help,
                                    const char *const *labels, const double *buckets, size_t nbuckets)
{
    if (!self) return NULL;
    gw_th *th = self->th;
    if (th->creating != self) {
        th_violation(th, NULL, "filter '%s': metric_register('%s') outside create()", self->d.name,
                     name ? name : "");
        return NULL;
    }
    const char *bad = NULL;
    if (type != GW_METRIC_COUNTER && type != GW_METRIC_GAUGE && type != GW_METRIC_HISTOGRAM &&
        type != GW_METRIC_SUMMARY)
        bad = "unknown type";
    else if (!metric_name_ok(name, false))
        bad = "invalid name";
    for (size_t i = 0; !bad && labels && labels[i]; i++)
        if (!metric_name_ok(labels[i], true) ||
            strcmp(labels[i], type == GW_METRIC_SUMMARY ? "quantile" : "le") == 0)
            bad = "invalid label name";
    if (!bad && type == GW_METRIC_HISTOGRAM) {
        if (nbuckets && !buckets) bad = "no bucket array";
        for (size_t i = 0; !bad && i < nbuckets; i++)
            if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1]))
                bad = "buckets must be finite and ascending";
    }
    if (!bad && type == GW_METRIC_SUMMARY) {
        if (nbuckets > 32 || (nbuckets && !buckets)) bad = "no quantile array, or more than 32";
        for (size_t i = 0; !bad && i < nbuckets; i++)
            if (!(buckets[i] > 0 && buckets[i] < 1) || (i && buckets[i] <= buckets[i - 1]))
                bad = "quantiles must lie between 0 and 1, ascending";
    }
    gw_metric *m = bad ? NULL : family_find(th, name);
    if (!bad && m && !same_shape(m, type, labels, buckets, nbuckets))
        bad = "already registered with another type, labels or buckets";
    if (bad) {
        th_note(th, NULL, GW_LOG_ERROR, "filter '%s': metric_register('%s'): %s", self->d.name,
                name ? name : "", bad);
        return NULL;
    }
    if (m) return m;
    m = th_xcalloc(1, sizeof *m);
    m->th = th;
    m->type = type;
    m->name = th_xstrdup(name);
    m->help = th_xstrdup(help ? help : "");
    while (labels && labels[m->nlabels])
        m->nlabels++;
    m->labels = th_xcalloc(m->nlabels, sizeof *m->labels);
    for (size_t i = 0; i < m->nlabels; i++)
        m->labels[i] = th_xstrdup(labels[i]);
    if (type == GW_METRIC_SUMMARY && !nbuckets) {
        buckets = default_quantiles;
        nbuckets = 3;
    }
    if (type == GW_METRIC_HISTOGRAM || type == GW_METRIC_SUMMARY) {
        m->nbuckets = nbuckets;
        m->buckets = th_xcalloc(nbuckets, sizeof *m->buckets);
        if (nbuckets) memcpy(m->buckets, buckets, nbuckets * sizeof *buckets);
    }
    size_t cap = th->nfams;
    th->fams = th_grow(th->fams, &cap, th->nfams + 1, sizeof *th->fams);
    th->fams[th->nfams++] = m;
    if (!m->nlabels) series(m, NULL); /* as in the gateway: a family without labels shows at zero at once */
    return m;
}

/* Label value i; as in the gateway, a NULL array or NULL entry reads as "". */
static const char *label_value(const char *const *values, size_t i)
{
    return values && values[i] ? values[i] : "";
}

static th_series *series_find(const gw_metric *m, const char *const *values)
{
    for (size_t i = 0; i < m->nseries; i++) {
        size_t k = 0;
        while (k < m->nlabels && strcmp(m->series[i].values[k], label_value(values, k)) == 0)
            k++;
        if (k == m->nlabels) return &m->series[i];
    }
    return NULL;
}

/* The series for these label values, created on first use. */
static th_series *series(gw_metric *m, const char *const *values)
{
    th_series *s = series_find(m, values);
    if (s) return s;
    m->series = th_grow(m->series, &m->cseries, m->nseries + 1, sizeof *m->series);
    s = &m->series[m->nseries++];
    s->values = th_xcalloc(m->nlabels, sizeof *s->values);
    for (size_t i = 0; i < m->nlabels; i++)
        s->values[i] = th_xstrdup(label_value(values, i));
    s->bucket_counts = th_xcalloc(m->nbuckets, sizeof *s->bucket_counts);
    if (m->type == GW_METRIC_SUMMARY && !(s->sk = gw_sketch_new(GW_SKETCH_WINDOW_MS))) {
        fputs("gwtesthost: out of memory\n", stderr);
        abort();
    }
    return s;
}

static void h_metric_add(gw_metric *m, gw_req *req, const char *const *label_values, double v)
{
    if (!m) return;
    bool observed = m->type == GW_METRIC_HISTOGRAM || m->type == GW_METRIC_SUMMARY;
    if (observed || (m->type == GW_METRIC_COUNTER && !(v >= 0))) {
        th_violation(m->th, req, "metric_add('%s', %g): %s", m->name, v,
                     observed ? "histograms and summaries take metric_observe" : "counters only grow");
        return;
    }
    series(m, label_values)->value += v;
}

static void h_metric_set(gw_metric *m, gw_req *req, const char *const *label_values, double v)
{
    if (!m) return;
    if (m->type != GW_METRIC_GAUGE) {
        th_violation(m->th, req, "metric_set('%s'): only gauges can be set", m->name);
        return;
    }
    series(m, label_values)->value = v;
}

static void h_metric_observe(gw_metric *m, gw_req *req, const char *const *label_values, double v)
{
    if (!m) return;
    if (m->type != GW_METRIC_HISTOGRAM && m->type != GW_METRIC_SUMMARY) {
        th_violation(m->th, req, "metric_observe('%s'): not a histogram or summary", m->name);
        return;
    }
    th_series *s = series(m, label_values);
    s->count++;
    s->value += v;
    if (s->sk) gw_sketch_add(s->sk, v, th_clock_now());
    for (size_t i = 0; i < m->nbuckets; i++)
        if (v <= m->buckets[i]) {
            s->bucket_counts[i]++;
            break;
        }
}

static const th_series *query(const gw_th *th, const char *name, const char *const *values,
                              const gw_metric **fam)
{
    const gw_metric *m = family_find(th, name);
    *fam = m;
    return m ? series_find(m, values) : NULL;
}

double gw_th_metric(const gw_th *th, const char *name, const char *const *label_values)
{
    const gw_metric *m;
    const th_series *s = query(th, name, label_values, &m);
    if (!m) return NAN;
    return s ? s->value : 0;
}

uint64_t gw_th_metric_count(const gw_th *th, const char *name, const char *const *label_values)
{
    const gw_metric *m;
    const th_series *s = query(th, name, label_values, &m);
    return s ? s->count : 0;
}

uint64_t gw_th_metric_bucket(const gw_th *th, const char *name, const char *const *label_values, double le)
{
    const gw_metric *m;
    const th_series *s = query(th, name, label_values, &m);
    if (!s) return 0;
    uint64_t n = 0, in_buckets = 0;
    for (size_t i = 0; i < m->nbuckets; i++) {
        in_buckets += s->bucket_counts[i];
        if (m->buckets[i] <= le) n += s->bucket_counts[i];
    }
    if (isinf(le) && le > 0) n += s->count - in_buckets; /* the +Inf bucket */
    return n;
}

double gw_th_metric_quantile(const gw_th *th, const char *name, const char *const *label_values, double q)
{
    const gw_metric *m;
    const th_series *s = query(th, name, label_values, &m);
    if (!s || !s->sk) return NAN;
    gw_sketch_view *v = th_xcalloc(1, sizeof *v);
    gw_sketch_merge(v, s->sk, th_clock_now());
    double r = gw_sketch_quantile(v, q);
    free(v);
    return r;
}

/* ------------------------------------------------------------------------------------------------------
 * rendering (host->metrics_render) */

typedef struct {
    char *p;
    size_t n, cap;
} th_buf;

static void buf_put(th_buf *b, const char *s, size_t n)
{
    b->p = th_grow(b->p, &b->cap, b->n + n + 1, 1);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_printf(th_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(th_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = th_vformat(fmt, ap);
    va_end(ap);
    buf_put(b, s, strlen(s));
    free(s);
}

static void buf_number(th_buf *b, double v)
{
    if (isnan(v))
        buf_printf(b, "NaN");
    else if (isinf(v))
        buf_printf(b, "%sInf", v > 0 ? "+" : "-");
    else if (v == (double)(long long)v && v > -1e15 && v < 1e15)
        buf_printf(b, "%lld", (long long)v);
    else {
        char tmp[40];
        for (int prec = 15; prec <= 17; prec++) { /* the shortest text that reads back as v */
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v) break;
        }
        buf_printf(b, "%s", tmp);
    }
}

/* Prometheus escaping: label values escape \\, \" and newline; HELP text escapes \\ and newline. */
static void buf_escaped(th_buf *b, const char *s, bool quotes)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_put(b, "\\\\", 2);
        else if (*s == '\n')
            buf_put(b, "\\n", 2);
        else if (*s == '"' && quotes)
            buf_put(b, "\\\"", 2);
        else
            buf_put(b, s, 1);
    }
}

static void buf_labels_ex(th_buf *b, const gw_metric *m, const th_series *se, const char *extra,
                          const char *le_text)
{
    if (!m->nlabels && !le_text) return;
    buf_put(b, "{", 1);
    for (size_t i = 0; i < m->nlabels; i++) {
        buf_printf(b, "%s%s=\"", i ? "," : "", m->labels[i]);
        buf_escaped(b, se->values[i], true);
        buf_put(b, "\"", 1);
    }
    if (le_text) buf_printf(b, "%s%s=\"%s\"", m->nlabels ? "," : "", extra, le_text);
    buf_put(b, "}", 1);
}

static void buf_labels(th_buf *b, const gw_metric *m, const th_series *se, const char *le_text)
{
    buf_labels_ex(b, m, se, "le", le_text);
}

static void render_text(const gw_th *th, th_buf *b)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "summary"};
    for (size_t f = 0; f < th->nfams; f++) {
        const gw_metric *m = th->fams[f];
        if (m->help[0]) {
            buf_printf(b, "# HELP %s ", m->name);
            buf_escaped(b, m->help, false);
            buf_put(b, "\n", 1);
        }
        buf_printf(b, "# TYPE %s %s\n", m->name, types[m->type]);
        for (size_t k = 0; k < m->nseries; k++) {
            const th_series *se = &m->series[k];
            if (m->type == GW_METRIC_SUMMARY) {
                for (size_t i = 0; i < m->nbuckets; i++) {
                    th_buf q = {0};
                    buf_number(&q, m->buckets[i]);
                    buf_printf(b, "%s", m->name);
                    buf_labels_ex(b, m, se, "quantile", q.p);
                    free(q.p);
                    buf_put(b, " ", 1);
                    buf_number(b, gw_th_metric_quantile(th, m->name, (const char *const *)se->values,
                                                        m->buckets[i]));
                    buf_put(b, "\n", 1);
                }
            }
            if (m->type != GW_METRIC_HISTOGRAM && m->type != GW_METRIC_SUMMARY) {
                buf_printf(b, "%s", m->name);
                buf_labels(b, m, se, NULL);
                buf_put(b, " ", 1);
                buf_number(b, se->value);
                buf_put(b, "\n", 1);
                continue;
            }
            uint64_t cum = 0;
            for (size_t i = 0; m->type == GW_METRIC_HISTOGRAM && i <= m->nbuckets; i++) {
                char le[64];
                if (i < m->nbuckets) {
                    th_buf tmp = {0};
                    buf_number(&tmp, m->buckets[i]);
                    snprintf(le, sizeof le, "%s", tmp.p);
                    free(tmp.p);
                    cum += se->bucket_counts[i];
                } else {
                    snprintf(le, sizeof le, "+Inf");
                    cum = se->count;
                }
                buf_printf(b, "%s_bucket", m->name);
                buf_labels(b, m, se, le);
                buf_printf(b, " %llu\n", (unsigned long long)cum);
            }
            buf_printf(b, "%s_sum", m->name);
            buf_labels(b, m, se, NULL);
            buf_put(b, " ", 1);
            buf_number(b, se->value);
            buf_printf(b, "\n%s_count", m->name);
            buf_labels(b, m, se, NULL);
            buf_printf(b, " %llu\n", (unsigned long long)se->count);
        }
    }
}

/* JSON has no NaN or infinities: those go as the strings Prometheus uses. */
static cJSON *json_number(double v)
{
    if (isfinite(v)) return cJSON_CreateNumber(v);
    return cJSON_CreateString(isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
}

/* {"metrics":[{"name","type","help","series":[{"labels":{..},"value"} or
 *  {"labels","buckets":[{"le","count"} cumulative, the last le "+Inf"],"sum","count"}]}]} */
static char *render_json(const gw_th *th)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "summary"};
    cJSON *root = cJSON_CreateObject(), *fams = cJSON_AddArrayToObject(root, "metrics");
    for (size_t f = 0; fams && f < th->nfams; f++) {
        const gw_metric *m = th->fams[f];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(fams, o);
        cJSON_AddStringToObject(o, "name", m->name);
        cJSON_AddStringToObject(o, "type", types[m->type]);
        cJSON_AddStringToObject(o, "help", m->help);
        cJSON *arr = cJSON_AddArrayToObject(o, "series");
        for (size_t k = 0; arr && k < m->nseries; k++) {
            const th_series *se = &m->series[k];
            cJSON *so = cJSON_CreateObject(), *labels = cJSON_AddObjectToObject(so, "labels");
            cJSON_AddItemToArray(arr, so);
            for (size_t i = 0; labels && i < m->nlabels; i++)
                cJSON_AddStringToObject(labels, m->labels[i], se->values[i]);
            if (m->type == GW_METRIC_SUMMARY) {
                cJSON *qs = cJSON_AddArrayToObject(so, "quantiles");
                for (size_t i = 0; qs && i < m->nbuckets; i++) {
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddItemToArray(qs, e);
                    cJSON_AddNumberToObject(e, "quantile", m->buckets[i]);
                    cJSON_AddItemToObject(e, "value",
                                          json_number(gw_th_metric_quantile(
                                              th, m->name, (const char *const *)se->values, m->buckets[i])));
                }
                cJSON_AddItemToObject(so, "sum", json_number(se->value));
                cJSON_AddNumberToObject(so, "count", (double)se->count);
                continue;
            }
            if (m->type != GW_METRIC_HISTOGRAM) {
                cJSON_AddItemToObject(so, "value", json_number(se->value));
                continue;
            }
            cJSON *bk = cJSON_AddArrayToObject(so, "buckets");
            uint64_t cum = 0;
            for (size_t i = 0; bk && i <= m->nbuckets; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddItemToArray(bk, e);
                if (i < m->nbuckets) {
                    cum += se->bucket_counts[i];
                    cJSON_AddNumberToObject(e, "le", m->buckets[i]);
                } else {
                    cum = se->count;
                    cJSON_AddStringToObject(e, "le", "+Inf");
                }
                cJSON_AddNumberToObject(e, "count", (double)cum);
            }
            cJSON_AddItemToObject(so, "sum", json_number(se->value));
            cJSON_AddNumberToObject(so, "count", (double)se->count);
        }
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static int h_metrics_render(gw_req *req, int format, gw_strv *out)
{
    if (!req || !out || (format != 0 && format != 1)) return -1;
    const gw_th *th = req->th;
    th_buf b = {0};
    if (format == 0) {
        render_text(th, &b);
    } else {
        char *s = render_json(th);
        if (!s) return -1;
        buf_put(&b, s, strlen(s));
        cJSON_free(s);
    }
    char *mem = th_req_alloc(req, b.n + 1);
    if (mem) memcpy(mem, b.p ? b.p : "", b.n + 1);
    size_t n = b.n;
    free(b.p);
    if (!mem) return -1;
    *out = (gw_strv){mem, n};
    return 0;
}

void th_metrics_free(gw_th *th)
{
    for (size_t i = 0; i < th->nfams; i++) {
        gw_metric *m = th->fams[i];
        for (size_t k = 0; k < m->nseries; k++) {
            for (size_t j = 0; j < m->nlabels; j++)
                free(m->series[k].values[j]);
            free(m->series[k].values);
            free(m->series[k].bucket_counts);
            gw_sketch_free(m->series[k].sk);
        }
        free(m->series);
        for (size_t j = 0; j < m->nlabels; j++)
            free(m->labels[j]);
        free(m->labels);
        free(m->buckets);
        free(m->name);
        free(m->help);
        free(m);
    }
    free(th->fams);
}

void th_metrics_fill(gw_host *h)
{
    th_log_fill(h);
    h->metric_register = h_metric_register;
    h->metric_add = h_metric_add;
    h->metric_set = h_metric_set;
    h->metric_observe = h_metric_observe;
    h->metrics_render = h_metrics_render;
}
