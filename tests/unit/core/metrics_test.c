/* metrics_test.c - the metrics registry: registration rules, per-slot updates merged at render time, the
 * Prometheus text and JSON renderings, the series limit, and scrapes racing four writer threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics.h"

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define V(...) ((const char *const[]){__VA_ARGS__})

static char *render(gw_metrics *m, int format)
{
    size_t len = 0;
    char *s = gw_metrics_render(m, format, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

/* The value text of the sample line that starts with `series` (name and labels), or NULL. */
static const char *sample(const char *text, const char *series, char *out, size_t outlen)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) != 0 || p[n] != ' ') continue;
        const char *v = p + n + 1, *e = strchr(v, '\n');
        size_t len = e ? (size_t)(e - v) : strlen(v);
        if (len >= outlen) return NULL;
        memcpy(out, v, len);
        out[len] = '\0';
        return out;
    }
    return NULL;
}

static void expect_sample(const char *text, const char *series, const char *want)
{
    char buf[64];
    const char *got = sample(text, series, buf, sizeof buf);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s\n--- rendered:\n%s", series, got ? got : "(none)", want, text);
}

/* ---- registration ---- */

static void test_register_same_and_mismatch(void **state)
{
    gw_metrics *m = gw_metrics_new(2);
    const char *err = "x";
    static const double b1[] = {0.1, 1}, b2[] = {0.1, 2}, b3[] = {0.1, 1, 5};
    gw_metric *c =
        gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", "Requests.", L("a", "b"), NULL, 0, &err);
    assert_non_null(c);
    assert_null(err);
    /* The same shape again (a reload) is the same family; the help text may differ, the first one stays. */
    assert_ptr_equal(
        gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", "Other.", L("a", "b"), NULL, 0, &err), c);
    gw_metric_add(c, 0, V("1", "2"), 5);
    assert_ptr_equal(gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", NULL, L("a", "b"), NULL, 0, &err),
                     c);

    assert_null(gw_metrics_register(m, GW_METRIC_GAUGE, "req_total", "", L("a", "b"), NULL, 0, &err));
    assert_non_null(strstr(err, "type"));
    assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", "", L("a"), NULL, 0, &err));
    assert_non_null(strstr(err, "label"));
    assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", "", L("b", "a"), NULL, 0, &err));
    assert_non_null(strstr(err, "label"));
    assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", "", NULL, NULL, 0, &err));
    assert_non_null(strstr(err, "label"));

    gw_metric *h = gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat", "", NULL, b1, 2, &err);
    assert_non_null(h);
    assert_ptr_equal(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat", "", NULL, b1, 2, &err), h);
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat", "", NULL, b2, 2, &err));
    assert_non_null(strstr(err, "bucket"));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat", "", NULL, b3, 3, &err));
    assert_non_null(strstr(err, "bucket"));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat", "", NULL, b1, 1, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat", "", L("x"), b1, 2, &err));

    /* Values carry on across re-registration. */
    char *t = render(m, 0);
    expect_sample(t, "req_total{a=\"1\",b=\"2\"}", "5");
    free(t);
    gw_metrics_free(m);
}

static void test_invalid_names(void **state)
{
    gw_metrics *m = gw_metrics_new(1);
    const char *err = NULL;
    static const char *const bad_names[] = {"", "1abc", "a-b", "a b", "a.b", "é"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        err = NULL;
        assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, bad_names[i], "", NULL, NULL, 0, &err));
        assert_non_null(strstr(err, "metric name"));
    }
    assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, NULL, "", NULL, NULL, 0, &err));
    assert_null(gw_metrics_register(m, 7, "ok", "", NULL, NULL, 0, &err));
    assert_non_null(strstr(err, "type"));
    assert_non_null(gw_metrics_register(m, GW_METRIC_COUNTER, "a:b_c1", "", NULL, NULL, 0, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_COUNTER, "_x", "", NULL, NULL, 0, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_COUNTER, ":x", "", NULL, NULL, 0, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_COUNTER, "Z9", "", L("_a", "B9", "_"), NULL, 0, &err));

    static const char *const bad_labels[] = {"1a", "a:b", "__x", "a-b", ""};
    for (size_t i = 0; i < sizeof bad_labels / sizeof *bad_labels; i++) {
        err = NULL;
        assert_null(gw_metrics_register(m, GW_METRIC_GAUGE, "g", "", L("ok", bad_labels[i]), NULL, 0, &err));
        assert_non_null(strstr(err, "label name"));
    }
    assert_null(gw_metrics_register(m, GW_METRIC_GAUGE, "g", "", L("a", "a"), NULL, 0, &err));
    assert_non_null(strstr(err, "duplicate"));
    assert_null(gw_metrics_register(m, GW_METRIC_GAUGE, "g", "",
                                    L("a", "b", "c", "d", "e", "f", "g", "h", "i"), NULL, 0, &err));
    assert_non_null(strstr(err, "8"));
    assert_non_null(gw_metrics_register(m, GW_METRIC_GAUGE, "g8", "",
                                        L("a", "b", "c", "d", "e", "f", "g", "h"), NULL, 0, &err));
    /* "le" is only reserved in histograms. */
    assert_non_null(gw_metrics_register(m, GW_METRIC_GAUGE, "g_le", "", L("le"), NULL, 0, &err));
    static const double b[] = {1, 2};
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", L("le"), b, 2, &err));
    assert_non_null(strstr(err, "le"));

    /* Buckets: strictly ascending, finite, at most 32; none at all is allowed (+Inf only). */
    static const double down[] = {2, 1}, same[] = {1, 1};
    const double nan[] = {1, NAN}, inf[] = {1, INFINITY};
    double many[33];
    for (int i = 0; i < 33; i++)
        many[i] = i;
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", NULL, down, 2, &err));
    assert_non_null(strstr(err, "ascending"));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", NULL, same, 2, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", NULL, nan, 2, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", NULL, inf, 2, &err));
    assert_non_null(strstr(err, "finite"));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", NULL, many, 33, &err));
    assert_non_null(strstr(err, "32"));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h", "", NULL, NULL, 2, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h32", "", NULL, many, 32, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "h0", "", NULL, NULL, 0, &err));

    /* A histogram's _bucket/_sum/_count names are taken, both ways round. */
    assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, "h0_count", "", NULL, NULL, 0, &err));
    assert_non_null(strstr(err, "histogram"));
    assert_non_null(gw_metrics_register(m, GW_METRIC_GAUGE, "x_sum", "", NULL, NULL, 0, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "x", "", NULL, b, 2, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_HISTOGRAM, "x_summary", "", NULL, b, 2, &err));
    gw_metrics_free(m);
}

/* ---- updates and merging ---- */

static void test_counters_merged_over_slots(void **state)
{
    gw_metrics *m = gw_metrics_new(3); /* slots 0..2 workers, 3 the main thread */
    gw_metric *c =
        gw_metrics_register(m, GW_METRIC_COUNTER, "hits_total", "Hits.", L("route"), NULL, 0, NULL);
    gw_metric *plain = gw_metrics_register(m, GW_METRIC_COUNTER, "plain_total", "", NULL, NULL, 0, NULL);
    for (unsigned s = 0; s < 4; s++) {
        gw_metric_add(c, s, V("a"), 1 + s);
        gw_metric_add(c, s, V("b"), 0.5);
        gw_metric_add(plain, s, NULL, 10);
    }
    gw_metric_add(c, 2, V(NULL), 7); /* NULL reads as "" */
    gw_metric_add(c, 1, V("a"), -3); /* counters only grow: ignored */
    gw_metric_add(c, 1, V("a"), NAN);
    gw_metric_set(c, 1, V("a"), 100); /* not a gauge: ignored */
    gw_metric_observe(c, 1, V("a"), 1);
    assert_int_equal(gw_metric_dropped(c), 0);
    gw_metric_add(c, 4, V("a"), 1); /* no such slot: dropped */
    gw_metric_add(c, GW_METRICS_NO_SLOT, V("a"), 1);
    assert_int_equal(gw_metric_dropped(c), 2);

    char *t = render(m, 0);
    expect_sample(t, "hits_total{route=\"a\"}", "10");
    expect_sample(t, "hits_total{route=\"b\"}", "2");
    expect_sample(t, "hits_total{route=\"\"}", "7");
    expect_sample(t, "plain_total", "40");
    assert_non_null(strstr(t, "# hits_total: 2 updates dropped"));
    assert_null(strstr(t, "# plain_total:"));
    free(t);
    gw_metrics_free(m);
}

static void test_gauges(void **state)
{
    gw_metrics *m = gw_metrics_new(2);
    gw_metric *g = gw_metrics_register(m, GW_METRIC_GAUGE, "inflight", "In flight.", L("svc"), NULL, 0, NULL);
    gw_metric_set(g, 0, V("x"), 3);
    gw_metric_set(g, 0, V("x"), 5); /* set replaces this slot's value */
    gw_metric_set(g, 1, V("x"), 2);
    gw_metric_add(g, 2, V("x"), -1.5); /* gauges go down */
    gw_metric_add(g, 1, V("y"), 0.25);
    gw_metric_observe(g, 1, V("y"), 9); /* not a histogram: ignored */
    char *t = render(m, 0);
    expect_sample(t, "inflight{svc=\"x\"}", "5.5");
    expect_sample(t, "inflight{svc=\"y\"}", "0.25");
    free(t);
    gw_metrics_free(m);
}

static void test_histogram(void **state)
{
    gw_metrics *m = gw_metrics_new(2);
    static const double b[] = {0.1, 1, 10};
    gw_metric *h = gw_metrics_register(m, GW_METRIC_HISTOGRAM, "lat_seconds", "Latency.", L("r"), b, 3, NULL);
    const double obs[] = {0.05, 0.1, 0.5, 1, 5, 50, 1000};
    for (size_t i = 0; i < sizeof obs / sizeof *obs; i++)
        gw_metric_observe(h, (unsigned)(i % 3), V("x"), obs[i]);
    gw_metric_add(h, 0, V("x"), 1); /* histograms only observe */
    gw_metric_set(h, 0, V("x"), 1);
    char *t = render(m, 0);
    expect_sample(t, "lat_seconds_bucket{r=\"x\",le=\"0.1\"}", "2"); /* le is inclusive */
    expect_sample(t, "lat_seconds_bucket{r=\"x\",le=\"1\"}", "4");
    expect_sample(t, "lat_seconds_bucket{r=\"x\",le=\"10\"}", "5");
    expect_sample(t, "lat_seconds_bucket{r=\"x\",le=\"+Inf\"}", "7");
    expect_sample(t, "lat_seconds_count{r=\"x\"}", "7");
    char buf[64];
    assert_non_null(sample(t, "lat_seconds_sum{r=\"x\"}", buf, sizeof buf));
    assert_true(fabs(strtod(buf, NULL) - 1056.65) < 1e-9);
    free(t);
    gw_metrics_free(m);
}

static void test_escaping_and_utf8(void **state)
{
    gw_metrics *m = gw_metrics_new(1);
    gw_metric *c = gw_metrics_register(m, GW_METRIC_COUNTER, "esc_total",
                                       "Back\\slash and\nnewline \"kept\".", L("v"), NULL, 0, NULL);
    gw_metric_add(c, 0, V("a\"b\\c\nd"), 1);
    gw_metric_add(c, 0, V("caf\xc3\xa9"), 1);     /* valid UTF-8 as is */
    gw_metric_add(c, 0, V("bad\xff"), 1);         /* invalid bytes become U+FFFD ... */
    gw_metric_add(c, 1, V("bad\xef\xbf\xbd"), 1); /* ... and then merge with the same text */
    char *t = render(m, 0);
    assert_non_null(strstr(t, "# HELP esc_total Back\\\\slash and\\nnewline \"kept\".\n"));
    expect_sample(t, "esc_total{v=\"a\\\"b\\\\c\\nd\"}", "1");
    expect_sample(t, "esc_total{v=\"caf\xc3\xa9\"}", "1");
    expect_sample(t, "esc_total{v=\"bad\xef\xbf\xbd\"}", "2");
    assert_null(strstr(t, "\xff"));
    free(t);

    t = render(m, 1);
    cJSON *j = cJSON_Parse(t);
    assert_non_null(j);
    cJSON *series = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "metrics"), 0), "series");
    assert_int_equal(cJSON_GetArraySize(series), 3);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(series, 0), "labels"), "v")->valuestring,
        "a\"b\\c\nd");
    cJSON_Delete(j);
    free(t);
    gw_metrics_free(m);
}

static void test_number_format(void **state)
{
    gw_metrics *m = gw_metrics_new(0);
    gw_metric *g = gw_metrics_register(m, GW_METRIC_GAUGE, "n", "", L("k"), NULL, 0, NULL);
    struct {
        const char *k;
        double v;
        const char *want;
    } cases[] = {
        {"a", 3, "3"},
        {"b", -2.5, "-2.5"},
        {"c", 0.1, "0.1"},
        {"d", 1.0 / 3, "0.3333333333333333"},
        {"e", 1e-7, "1e-07"},
        {"f", 1e20, "1e+20"},
        {"g", 123456789012, "123456789012"},
        {"h", INFINITY, "+Inf"},
        {"i", -INFINITY, "-Inf"},
        {"j", NAN, "NaN"},
        {"k", -0.0, "0"},
        {"l", 0.30000000000000004, "0.30000000000000004"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        gw_metric_set(g, 0, V(cases[i].k), cases[i].v);
    char *t = render(m, 0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char series[32];
        snprintf(series, sizeof series, "n{k=\"%s\"}", cases[i].k);
        expect_sample(t, series, cases[i].want);
    }
    free(t);
    gw_metrics_free(m);
}

/* ---- whole renderings ---- */

static gw_metrics *small_registry(void)
{
    gw_metrics *m = gw_metrics_new(2);
    static const double b[] = {0.005, 0.5};
    gw_metric *c = gw_metrics_register(m, GW_METRIC_COUNTER, "http_requests_total",
                                       "Requests by method/code.", L("method", "code"), NULL, 0, NULL);
    gw_metric *up = gw_metrics_register(m, GW_METRIC_GAUGE, "up", "", NULL, NULL, 0, NULL);
    gw_metric *e =
        gw_metrics_register(m, GW_METRIC_COUNTER, "errors_total", "Never seen.", L("kind"), NULL, 0, NULL);
    gw_metric *h = gw_metrics_register(m, GW_METRIC_HISTOGRAM, "dur_seconds", "Duration.", NULL, b, 2, NULL);
    gw_metrics_register(m, GW_METRIC_COUNTER, "idle_total", "Label-less, untouched.", NULL, NULL, 0, NULL);
    (void)e;
    gw_metric_add(c, 1, V("POST", "201"), 1);
    gw_metric_add(c, 0, V("GET", "200"), 2);
    gw_metric_add(c, 2, V("GET", "200"), 3);
    gw_metric_add(c, 0, V("GET", "404"), 1);
    gw_metric_set(up, 2, NULL, 1);
    gw_metric_observe(h, 0, NULL, 0.00390625);
    gw_metric_observe(h, 1, NULL, 0.25);
    gw_metric_observe(h, 1, NULL, 2);
    return m;
}

static void test_exact_text(void **state)
{
    gw_metrics *m = small_registry();
    char *t = render(m, 0);
    const char *want = "# HELP http_requests_total Requests by method/code.\n"
                       "# TYPE http_requests_total counter\n"
                       "http_requests_total{method=\"GET\",code=\"200\"} 5\n"
                       "http_requests_total{method=\"GET\",code=\"404\"} 1\n"
                       "http_requests_total{method=\"POST\",code=\"201\"} 1\n"
                       "# TYPE up gauge\n"
                       "up 1\n"
                       "# HELP errors_total Never seen.\n"
                       "# TYPE errors_total counter\n"
                       "# HELP dur_seconds Duration.\n"
                       "# TYPE dur_seconds histogram\n"
                       "dur_seconds_bucket{le=\"0.005\"} 1\n"
                       "dur_seconds_bucket{le=\"0.5\"} 2\n"
                       "dur_seconds_bucket{le=\"+Inf\"} 3\n"
                       "dur_seconds_sum 2.25390625\n"
                       "dur_seconds_count 3\n"
                       "# HELP idle_total Label-less, untouched.\n"
                       "# TYPE idle_total counter\n"
                       "idle_total 0\n";
    assert_string_equal(t, want);
    char *again = render(m, 0);
    assert_string_equal(again, t); /* deterministic */
    free(again);
    free(t);
    gw_metrics_free(m);

    m = gw_metrics_new(1);
    t = render(m, 0);
    assert_string_equal(t, "");
    free(t);
    assert_null(gw_metrics_render(m, 2, NULL));
    gw_metrics_free(m);
}

static cJSON *family(cJSON *root, const char *name)
{
    cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(root, "metrics"))
    {
        if (!strcmp(cJSON_GetObjectItem(f, "name")->valuestring, name)) return f;
    }
    fail_msg("family %s missing", name);
    return NULL;
}

static void test_json_shape(void **state)
{
    gw_metrics *m = small_registry();
    char *t = render(m, 1);
    cJSON *j = cJSON_Parse(t);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "metrics")), 5);

    cJSON *c = family(j, "http_requests_total");
    assert_string_equal(cJSON_GetObjectItem(c, "type")->valuestring, "counter");
    assert_string_equal(cJSON_GetObjectItem(c, "help")->valuestring, "Requests by method/code.");
    cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "series"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s0, "labels"), "method")->valuestring, "GET");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s0, "labels"), "code")->valuestring, "200");
    assert_true(cJSON_GetObjectItem(s0, "value")->valuedouble == 5);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c, "series")), 3);

    cJSON *up = family(j, "up");
    assert_string_equal(cJSON_GetObjectItem(up, "help")->valuestring, "");
    cJSON *us = cJSON_GetArrayItem(cJSON_GetObjectItem(up, "series"), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(us, "labels")), 0);
    assert_true(cJSON_GetObjectItem(us, "value")->valuedouble == 1);

    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(family(j, "errors_total"), "series")), 0);

    cJSON *h = family(j, "dur_seconds");
    assert_string_equal(cJSON_GetObjectItem(h, "type")->valuestring, "histogram");
    cJSON *hs = cJSON_GetArrayItem(cJSON_GetObjectItem(h, "series"), 0);
    cJSON *bk = cJSON_GetObjectItem(hs, "buckets");
    assert_int_equal(cJSON_GetArraySize(bk), 3);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 0), "le")->valuedouble == 0.005);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 0), "count")->valuedouble == 1);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 1), "count")->valuedouble == 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 2), "le")->valuestring, "+Inf");
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(bk, 2), "count")->valuedouble == 3);
    assert_true(cJSON_GetObjectItem(hs, "count")->valuedouble == 3);
    assert_true(cJSON_GetObjectItem(hs, "sum")->valuedouble == 2.25390625);
    cJSON_Delete(j);
    free(t);

    /* Non-finite values are strings. */
    gw_metric *g = gw_metrics_register(m, GW_METRIC_GAUGE, "up", NULL, NULL, NULL, 0, NULL);
    gw_metric_set(g, 0, NULL, INFINITY);
    t = render(m, 1);
    j = cJSON_Parse(t);
    assert_non_null(j);
    cJSON *v =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(family(j, "up"), "series"), 0), "value");
    assert_string_equal(v->valuestring, "+Inf");
    cJSON_Delete(j);
    free(t);
    gw_metrics_free(m);
}

static void test_series_limit(void **state)
{
    gw_metrics *m = gw_metrics_new(1);
    gw_metric *c = gw_metrics_register(m, GW_METRIC_COUNTER, "boom_total", "", L("id"), NULL, 0, NULL);
    char v[16];
    for (int i = 0; i < 10005; i++) {
        snprintf(v, sizeof v, "%d", i);
        gw_metric_add(c, 0, V(v), 1);
    }
    assert_int_equal(gw_metric_dropped(c), 5);
    gw_metric_add(c, 0, V("17"), 1);    /* existing series still count */
    gw_metric_add(c, 1, V("10004"), 1); /* another slot has its own budget */
    assert_int_equal(gw_metric_dropped(c), 5);
    char *t = render(m, 0);
    expect_sample(t, "boom_total{id=\"17\"}", "2");
    expect_sample(t, "boom_total{id=\"9999\"}", "1");
    expect_sample(t, "boom_total{id=\"10004\"}", "1");
    char buf[8];
    assert_null(sample(t, "boom_total{id=\"10003\"}", buf, sizeof buf));
    assert_non_null(strstr(t, "# boom_total: 5 updates dropped"));
    free(t);
    t = render(m, 1);
    cJSON *j = cJSON_Parse(t);
    assert_true(cJSON_GetObjectItem(family(j, "boom_total"), "dropped")->valuedouble == 5);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(family(j, "boom_total"), "series")), 10001);
    cJSON_Delete(j);
    free(t);
    gw_metrics_free(m);
}

static void *slot_reader(void *arg)
{
    *(unsigned *)arg = gw_metrics_thread_slot();
    return NULL;
}

static void test_thread_slot(void **state)
{
    gw_metrics_set_thread_slot(3);
    assert_int_equal(gw_metrics_thread_slot(), 3);
    unsigned other = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slot_reader, &other), 0);
    pthread_join(t, NULL);
    assert_int_equal(other, GW_METRICS_NO_SLOT);
    assert_int_equal(gw_metrics_thread_slot(), 3);
}

/* ---- four writers and a scraper ---- */

#define WRITERS 4
#define UPDATES 100000
#define COMBOS 50

typedef struct {
    gw_metric *c, *g, *h;
    unsigned slot;
    atomic_int *done;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    gw_metrics_set_thread_slot(a->slot);
    unsigned slot = gw_metrics_thread_slot();
    char route[16], code[8];
    for (int i = 0; i < UPDATES; i++) {
        int k = i % COMBOS;
        snprintf(route, sizeof route, "/r%d", k);
        snprintf(code, sizeof code, "%d", 200 + k % 5);
        gw_metric_add(a->c, slot, V(route, code), 1);
        gw_metric_set(a->g, slot, V(route), i);
        gw_metric_observe(a->h, slot, V(route), (double)(i % 100) / 10);
    }
    atomic_fetch_add(a->done, 1);
    return NULL;
}

/* Registration on another thread while scrapes run (reloads register on the main thread, scrapes run on
 * workers); the registering thread also writes as the main thread's slot. */
#define EXTRA 100

typedef struct {
    gw_metrics *m;
    unsigned slot;
    int failed; /* cmocka asserts belong on the main thread */
} registrar_arg;

static void *registrar(void *p)
{
    registrar_arg *a = p;
    char name[32];
    for (int i = 0; i < EXTRA; i++) {
        snprintf(name, sizeof name, "extra_%d_total", i);
        gw_metric *f = gw_metrics_register(a->m, GW_METRIC_COUNTER, name, "Extra.", L("k"), NULL, 0, NULL);
        if (!f) {
            a->failed = 1;
            return NULL;
        }
        for (int k = 0; k < 20; k++)
            gw_metric_add(f, a->slot, V(name + 6), 1);
    }
    return NULL;
}

/* One scrape's consistency: cumulative buckets never go down and end at the count; totals never shrink. */
static double check_scrape(gw_metrics *m, double last_total)
{
    char *t = render(m, 1);
    cJSON *j = cJSON_Parse(t);
    assert_non_null(j);
    double total = 0;
    cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(family(j, "req_total"), "series")) total +=
        cJSON_GetObjectItem(s, "value")->valuedouble;
    assert_true(total >= last_total && total <= WRITERS * UPDATES);
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(family(j, "obs"), "series"))
    {
        double prev = 0, last = 0;
        cJSON *b;
        cJSON_ArrayForEach(b, cJSON_GetObjectItem(s, "buckets"))
        {
            last = cJSON_GetObjectItem(b, "count")->valuedouble;
            assert_true(last >= prev);
            prev = last;
        }
        assert_true(last == cJSON_GetObjectItem(s, "count")->valuedouble);
    }
    cJSON_Delete(j);
    free(t);
    t = render(m, 0);
    free(t);
    return total;
}

static void test_concurrent_scrapes(void **state)
{
    gw_metrics *m = gw_metrics_new(WRITERS);
    static const double b[] = {1, 2.5, 5, 7.5};
    writer_arg args[WRITERS];
    atomic_int done = 0;
    gw_metric *c =
        gw_metrics_register(m, GW_METRIC_COUNTER, "req_total", "", L("route", "code"), NULL, 0, NULL);
    gw_metric *g = gw_metrics_register(m, GW_METRIC_GAUGE, "last", "", L("route"), NULL, 0, NULL);
    gw_metric *h = gw_metrics_register(m, GW_METRIC_HISTOGRAM, "obs", "", L("route"), b, 4, NULL);
    pthread_t th[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        args[i] = (writer_arg){.c = c, .g = g, .h = h, .slot = i, .done = &done};
        assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    registrar_arg ra = {.m = m, .slot = WRITERS};
    pthread_t reg;
    assert_int_equal(pthread_create(&reg, NULL, registrar, &ra), 0);
    double total = 0;
    int scrapes = 0;
    while (atomic_load(&done) < WRITERS || scrapes < 3) {
        total = check_scrape(m, total);
        scrapes++;
    }
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    pthread_join(reg, NULL);
    assert_int_equal(ra.failed, 0);
    assert_true(check_scrape(m, total) == WRITERS * UPDATES);

    char *t = render(m, 0);
    char series[64], want[32];
    for (int k = 0; k < COMBOS; k++) {
        snprintf(series, sizeof series, "req_total{route=\"/r%d\",code=\"%d\"}", k, 200 + k % 5);
        expect_sample(t, series, "8000");
        snprintf(series, sizeof series, "obs_count{route=\"/r%d\"}", k);
        expect_sample(t, series, "8000");
        snprintf(series, sizeof series, "obs_bucket{route=\"/r%d\",le=\"+Inf\"}", k);
        expect_sample(t, series, "8000");
        /* The last value each writer set for /rk is UPDATES - COMBOS + k. */
        snprintf(series, sizeof series, "last{route=\"/r%d\"}", k);
        snprintf(want, sizeof want, "%d", WRITERS * (UPDATES - COMBOS + k));
        expect_sample(t, series, want);
    }
    expect_sample(t, "extra_99_total{k=\"99_total\"}", "20");
    free(t);
    t = render(m, 1);
    cJSON *j = cJSON_Parse(t);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "metrics")), 3 + EXTRA);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "metrics"), 3 + EXTRA - 1), "name")
            ->valuestring,
        "extra_99_total");
    cJSON_Delete(j);
    free(t);
    assert_int_equal(gw_metric_dropped(c) + gw_metric_dropped(g) + gw_metric_dropped(h), 0);
    gw_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_same_and_mismatch),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_counters_merged_over_slots),
        cmocka_unit_test(test_gauges),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_escaping_and_utf8),
        cmocka_unit_test(test_number_format),
        cmocka_unit_test(test_exact_text),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_thread_slot),
        cmocka_unit_test(test_concurrent_scrapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
