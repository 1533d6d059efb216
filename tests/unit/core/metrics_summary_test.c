/* metrics_summary_test.c - summaries (core/metrics/sketch.c and the registry's summary type): the quantile
 * error bound on known distributions, the sliding window's expiry on a fake clock, merging across writer
 * slots and across threads racing a scrape, registration rules, and the text and JSON renderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics.h"
#include "sketch.h"

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define V(...) ((const char *const[]){__VA_ARGS__})

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The exact quantile as the sketch defines it: the value of rank floor(q * (n - 1)). */
static double exact_q(double *sorted, size_t n, double q)
{
    return sorted[(size_t)(q * (double)(n - 1))];
}

static void check_bound(double *vals, size_t n)
{
    gw_sketch *s = gw_sketch_new(60000);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        gw_sketch_add(s, vals[i], 5000);
    gw_sketch_view *v = calloc(1, sizeof *v);
    gw_sketch_merge(v, s, 5000);
    assert_int_equal(v->n, n);
    qsort(vals, n, sizeof *vals, cmp_double);
    static const double qs[] = {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        double want = exact_q(vals, n, qs[i]), got = gw_sketch_quantile(v, qs[i]);
        if (!(fabs(got - want) <= GW_SKETCH_ALPHA * want * 1.0000001))
            fail_msg("q%g: got %g, exact %g (relative error %g)", qs[i], got, want, fabs(got - want) / want);
    }
    free(v);
    gw_sketch_free(s);
}

static void test_error_bound_distributions(void **state)
{
    (void)state;
    enum { N = 20000 };
    double *vals = malloc(N * sizeof *vals);
    srand(7);
    for (size_t i = 0; i < N; i++) /* uniform 1..1000 ms */
        vals[i] = 1 + 999.0 * rand() / RAND_MAX;
    check_bound(vals, N);
    for (size_t i = 0; i < N; i++) /* exponential, mean 50 */
        vals[i] = -50 * log((rand() + 1.0) / ((double)RAND_MAX + 2.0));
    check_bound(vals, N);
    for (size_t i = 0; i < N; i++) /* log-normal-ish, spanning six decades (µs to s, in seconds) */
        vals[i] = exp(-13.8 + 13.8 * rand() / RAND_MAX);
    check_bound(vals, N);
    for (size_t i = 0; i < N; i++) /* bimodal: 90 % fast, 10 % slow */
        vals[i] = i % 10 ? 2 + (double)(i % 7) / 10 : 800 + (double)(i % 13);
    check_bound(vals, N);
    free(vals);
}

static void test_edges(void **state)
{
    (void)state;
    gw_sketch *s = gw_sketch_new(60000);
    gw_sketch_view *v = calloc(1, sizeof *v);
    gw_sketch_merge(v, s, 0);
    assert_true(isnan(gw_sketch_quantile(v, 0.5))); /* empty */
    gw_sketch_add(s, 0, 0);
    gw_sketch_add(s, -3, 0);
    gw_sketch_add(s, NAN, 0);
    gw_sketch_add(s, 1e30, 0);
    memset(v, 0, sizeof *v);
    gw_sketch_merge(v, s, 0);
    assert_int_equal(v->n, 4);
    assert_true(gw_sketch_quantile(v, 0.5) == 0);
    assert_true(fabs(gw_sketch_quantile(v, 1) - GW_SKETCH_MAX) <= GW_SKETCH_ALPHA * GW_SKETCH_MAX);
    assert_true(isnan(gw_sketch_quantile(v, 1.5)));
    free(v);
    gw_sketch_free(s);
}

static void test_window_expiry(void **state)
{
    (void)state;
    gw_sketch *s = gw_sketch_new(60000); /* parts of 10 s */
    gw_sketch_view *v = calloc(1, sizeof *v);
    uint64_t t0 = 600000;
    for (int i = 0; i < 100; i++)
        gw_sketch_add(s, 100, t0); /* old: 100 ms */
    for (int i = 0; i < 100; i++)
        gw_sketch_add(s, 5, t0 + 30000); /* newer: 5 ms */
    gw_sketch_merge(v, s, t0 + 30000);
    assert_int_equal(v->n, 200);
    memset(v, 0, sizeof *v);
    gw_sketch_merge(v, s, t0 + 59999); /* the first part is still in the window */
    assert_int_equal(v->n, 200);
    memset(v, 0, sizeof *v);
    gw_sketch_merge(v, s, t0 + 60000); /* ... and out now, without a write */
    assert_int_equal(v->n, 100);
    assert_true(fabs(gw_sketch_quantile(v, 0.99) - 5) <= 0.05);
    memset(v, 0, sizeof *v);
    gw_sketch_merge(v, s, t0 + 100000);
    assert_int_equal(v->n, 0);
    /* a part is recycled by a write one window later: old counts do not come back */
    gw_sketch_add(s, 7, t0 + 120000);
    memset(v, 0, sizeof *v);
    gw_sketch_merge(v, s, t0 + 120000);
    assert_int_equal(v->n, 1);
    free(v);
    gw_sketch_free(s);
}

static char *render(gw_metrics *m, int format)
{
    size_t len = 0;
    char *s = gw_metrics_render(m, format, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

static void test_register_rules(void **state)
{
    (void)state;
    gw_metrics *m = gw_metrics_new(2);
    const char *err = NULL;
    const double q[] = {0.5, 0.95, 0.99};
    gw_metric *f = gw_metrics_register(m, GW_METRIC_SUMMARY, "lat_ms", "h", NULL, q, 3, &err);
    assert_non_null(f);
    assert_ptr_equal(gw_metrics_register(m, GW_METRIC_SUMMARY, "lat_ms", "h", NULL, q, 3, &err), f);
    assert_null(gw_metrics_register(m, GW_METRIC_SUMMARY, "lat_ms", "h", NULL, q, 2, &err));
    assert_non_null(strstr(err, "buckets"));
    assert_null(gw_metrics_register(m, GW_METRIC_COUNTER, "lat_ms_count", "h", NULL, NULL, 0, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_GAUGE, "lat_ms_sum", "h", NULL, NULL, 0, &err));
    assert_non_null(gw_metrics_register(m, GW_METRIC_GAUGE, "lat_ms_bucket", "h", NULL, NULL, 0, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_SUMMARY, "x1", "h", L("quantile"), q, 3, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_SUMMARY, "x2", "h", NULL, (const double[]){0.5, 1}, 2, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_SUMMARY, "x3", "h", NULL, (const double[]){0.9, 0.5}, 2, &err));
    assert_null(gw_metrics_register(m, GW_METRIC_SUMMARY, "x4", "h", NULL, (const double[]){0}, 1, &err));
    /* no quantiles: 0.5, 0.9, 0.99 */
    gw_metric *d = gw_metrics_register(m, GW_METRIC_SUMMARY, "x5", "h", NULL, NULL, 0, &err);
    assert_non_null(d);
    char *t = render(m, 0);
    assert_non_null(strstr(t, "x5{quantile=\"0.5\"} NaN\nx5{quantile=\"0.9\"} NaN\nx5{quantile=\"0.99\"} NaN\n"
                              "x5_sum 0\nx5_count 0\n"));
    free(t);
    /* add and set are ignored on a summary */
    gw_metric_add(f, 0, NULL, 5);
    gw_metric_set(f, 0, NULL, 5);
    t = render(m, 0);
    assert_non_null(strstr(t, "lat_ms_count 0\n"));
    free(t);
    gw_metrics_free(m);
}

static void test_merge_slots_and_render(void **state)
{
    (void)state;
    gw_metrics *m = gw_metrics_new(3);
    gw_metrics_set_clock(m, fake_clock);
    const double q[] = {0.5, 0.99};
    gw_metric *f = gw_metrics_register(m, GW_METRIC_SUMMARY, "d_ms", "Durations \\ in \"ms\"", L("route"), q, 2, NULL);
    assert_non_null(f);
    /* slot 0 sees 1..100, slot 1 sees 101..200, slot 3 (main) 201..300 on route "a"; one on "b\"q" */
    for (int i = 1; i <= 100; i++) {
        gw_metric_observe(f, 0, V("a"), i);
        gw_metric_observe(f, 1, V("a"), 100 + i);
        gw_metric_observe(f, 3, V("a"), 200 + i);
    }
    gw_metric_observe(f, 2, V("b\"q\n"), 42);
    char *t = render(m, 0);
    assert_non_null(strstr(t, "# TYPE d_ms summary\n"));
    double p50 = NAN, p99 = NAN, sum = NAN, count = NAN;
    const char *p = strstr(t, "d_ms{route=\"a\",quantile=\"0.5\"} ");
    assert_non_null(p);
    sscanf(p + strlen("d_ms{route=\"a\",quantile=\"0.5\"} "), "%lf", &p50);
    p = strstr(t, "d_ms{route=\"a\",quantile=\"0.99\"} ");
    assert_non_null(p);
    sscanf(p + strlen("d_ms{route=\"a\",quantile=\"0.99\"} "), "%lf", &p99);
    p = strstr(t, "d_ms_sum{route=\"a\"} ");
    sscanf(p + strlen("d_ms_sum{route=\"a\"} "), "%lf", &sum);
    p = strstr(t, "d_ms_count{route=\"a\"} ");
    sscanf(p + strlen("d_ms_count{route=\"a\"} "), "%lf", &count);
    /* merged over the three slots: 300 values 1..300; rank floor(0.5 * 299) = 149 -> 150 */
    assert_true(fabs(p50 - 150) <= 150 * GW_SKETCH_ALPHA);
    assert_true(fabs(p99 - 297) <= 297 * GW_SKETCH_ALPHA);
    assert_true(sum == 45150);
    assert_true(count == 300);
    assert_non_null(strstr(t, "d_ms{route=\"b\\\"q\\n\",quantile=\"0.5\"} "));
    free(t);

    /* JSON: the same figures */
    t = render(m, 1);
    cJSON *root = cJSON_Parse(t);
    assert_non_null(root);
    cJSON *fam = NULL, *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "metrics")) if (!strcmp(cJSON_GetObjectItem(it, "name")->valuestring,
                                                                             "d_ms")) fam = it;
    assert_non_null(fam);
    assert_string_equal(cJSON_GetObjectItem(fam, "type")->valuestring, "summary");
    cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItem(fam, "series"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s0, "labels"), "route")->valuestring, "a");
    assert_true(cJSON_GetObjectItem(s0, "count")->valuedouble == 300);
    assert_true(cJSON_GetObjectItem(s0, "sum")->valuedouble == 45150);
    cJSON *q0 = cJSON_GetArrayItem(cJSON_GetObjectItem(s0, "quantiles"), 0);
    assert_true(cJSON_GetObjectItem(q0, "quantile")->valuedouble == 0.5);
    assert_true(cJSON_GetObjectItem(q0, "value")->valuedouble == p50);
    cJSON_Delete(root);
    free(t);

    /* a minute later the quantiles are NaN, sum and count stay (all time) */
    fake_now += 60000;
    t = render(m, 0);
    assert_non_null(strstr(t, "d_ms{route=\"a\",quantile=\"0.5\"} NaN\n"));
    assert_non_null(strstr(t, "d_ms_count{route=\"a\"} 300\n"));
    free(t);
    t = render(m, 1);
    assert_non_null(strstr(t, "\"value\":\"NaN\""));
    free(t);
    gw_metrics_free(m);
}

static double fourty_two(void *arg)
{
    return *(double *)arg;
}

static void test_computed_gauge(void **state)
{
    (void)state;
    gw_metrics *m = gw_metrics_new(2);
    double v = 42.5;
    const char *err = NULL;
    gw_metric *f = gw_metrics_register_func(m, GW_METRIC_GAUGE, "up_s", "uptime", fourty_two, &v, &err);
    assert_non_null(f);
    /* a filter registering the same gauge gets the computed family; its sets change nothing */
    assert_ptr_equal(gw_metrics_register(m, GW_METRIC_GAUGE, "up_s", "x", NULL, NULL, 0, &err), f);
    gw_metric_set(f, 0, NULL, 1000);
    gw_metric_set(f, 1, NULL, 1000);
    char *t = render(m, 0);
    assert_non_null(strstr(t, "# TYPE up_s gauge\nup_s 42.5\n"));
    free(t);
    v = 43;
    t = render(m, 0);
    assert_non_null(strstr(t, "up_s 43\n"));
    free(t);
    assert_null(gw_metrics_register_func(m, GW_METRIC_HISTOGRAM, "h", "x", fourty_two, &v, &err));
    gw_metrics_register(m, GW_METRIC_GAUGE, "plain", "x", NULL, NULL, 0, &err);
    assert_null(gw_metrics_register_func(m, GW_METRIC_GAUGE, "plain", "x", fourty_two, &v, &err));
    gw_metrics_free(m);
}

typedef struct {
    gw_metric *f;
    unsigned slot;
} wr;

static void *writer(void *p)
{
    wr *w = p;
    gw_metrics_set_thread_slot(w->slot);
    for (int i = 0; i < 200000; i++)
        gw_metric_observe(w->f, w->slot, NULL, 1 + i % 100);
    return NULL;
}

/* Two writers and scrapes at once (ASan/TSan-friendly): counts only grow, the last scrape is exact. */
static void test_concurrent(void **state)
{
    (void)state;
    gw_metrics *m = gw_metrics_new(2);
    gw_metric *f = gw_metrics_register(m, GW_METRIC_SUMMARY, "c_ms", "h", NULL, (const double[]){0.5}, 1, NULL);
    pthread_t t[2];
    wr w[2] = {{f, 0}, {f, 1}};
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, writer, &w[i]);
    unsigned long long last = 0;
    for (int k = 0; k < 50; k++) {
        char *s = render(m, 0);
        unsigned long long n = 0;
        const char *p = strstr(s, "c_ms_count ");
        assert_non_null(p);
        sscanf(p + 11, "%llu", &n);
        assert_true(n >= last);
        last = n;
        free(s);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    char *s = render(m, 0);
    assert_non_null(strstr(s, "c_ms_count 400000\n"));
    double p50 = 0;
    sscanf(strstr(s, "c_ms{quantile=\"0.5\"} ") + strlen("c_ms{quantile=\"0.5\"} "), "%lf", &p50);
    assert_true(fabs(p50 - 50) <= 50 * GW_SKETCH_ALPHA + 1e-9);
    free(s);
    gw_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_bound_distributions),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_window_expiry),
        cmocka_unit_test(test_register_rules),
        cmocka_unit_test(test_merge_slots_and_render),
        cmocka_unit_test(test_computed_gauge),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
