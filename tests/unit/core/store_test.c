/* store_test.c - the embedded store: values, TTLs, exact token buckets, exact counters, durable writes
 * reported only after they are on disk, reload from the file, corrupt files refused, cancelled callbacks
 * never run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "store.h"

typedef struct {
    int calls, status;
    char val[256];
    size_t len;
    gw_bucket_result br;
    int64_t ival;
} result;

static void on_incr(void *arg, int status, int64_t v)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    r->ival = v;
}

static void on_value(void *arg, int status, const char *v, size_t n)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    r->len = n < sizeof r->val ? n : sizeof r->val - 1;
    if (v) memcpy(r->val, v, r->len);
    r->val[r->len] = '\0';
}

static void on_bucket(void *arg, int status, const gw_bucket_result *br)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    if (br) r->br = *br;
}

typedef struct {
    char dir[64];
    gw_store *s;
    struct event_base *base;
} fixture;

/* Runs the loop until the result has a callback (bounded: 5 s). */
static void wait_for(fixture *f, result *r)
{
    for (int i = 0; i < 500 && r->calls == 0; i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
    assert_int_equal(r->calls, 1);
}

static void open_store(fixture *f)
{
    char *err = NULL;
    f->s = gw_store_new(f->dir, 1, &err);
    assert_non_null(f->s);
    assert_int_equal(gw_store_worker_attach(f->s, 0, f->base), 0);
}

static void close_store(fixture *f)
{
    gw_store_worker_detach(f->s, 0);
    gw_store_free(f->s);
    f->s = NULL;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/gw-store-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->s) close_store(f);
    event_base_free(f->base);
    char path[128];
    snprintf(path, sizeof path, "%s/store.db", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_set_get_del(void **state)
{
    fixture *f = *state;
    result a = {0}, b = {0}, c = {0}, d = {0};
    assert_non_null(gw_store_set(f->s, 0, "k", 1, "v1", 2, 0, 1000, on_value, &a));
    assert_int_equal(a.calls, 0); /* never inside the call */
    wait_for(f, &a);
    assert_int_equal(a.status, GW_STORE_OK);
    gw_store_get(f->s, 0, "k", 1, on_value, &b);
    wait_for(f, &b);
    assert_int_equal(b.status, GW_STORE_OK);
    assert_string_equal(b.val, "v1");
    gw_store_del(f->s, 0, "k", 1, on_value, &c);
    wait_for(f, &c);
    assert_int_equal(c.status, GW_STORE_OK);
    gw_store_get(f->s, 0, "k", 1, on_value, &d);
    wait_for(f, &d);
    assert_int_equal(d.status, GW_STORE_NOT_FOUND);
}

static void test_persistent_survives_reopen(void **state)
{
    fixture *f = *state;
    result a = {0}, b = {0}, t = {0};
    gw_store_set(f->s, 0, "key:1", 5, "{\"name\":\"x\"}\n\0bin", 17, 0, 1000, on_value, &a);
    gw_store_set(f->s, 0, "tmp", 3, "gone", 4, 60000, 1000, on_value, &t);
    wait_for(f, &a);
    wait_for(f, &t);
    char path[128];
    snprintf(path, sizeof path, "%s/store.db", f->dir);
    assert_int_equal(access(path, R_OK), 0); /* on disk once reported done */
    close_store(f);
    open_store(f);
    gw_store_get(f->s, 0, "key:1", 5, on_value, &b);
    wait_for(f, &b);
    assert_int_equal(b.status, GW_STORE_OK);
    assert_int_equal(b.len, 17);
    assert_memory_equal(b.val, "{\"name\":\"x\"}\n\0bin", 17);
    result g = {0};
    gw_store_get(f->s, 0, "tmp", 3, on_value, &g);
    wait_for(f, &g);
    assert_int_equal(g.status, GW_STORE_NOT_FOUND); /* TTL records live in memory only */
}

static void test_ttl_expires(void **state)
{
    fixture *f = *state;
    result a = {0}, b = {0};
    /* Expiry is judged on the wall clock at read time: a TTL already in the past reads as absent. */
    gw_store_set(f->s, 0, "t", 1, "x", 1, 1, 1000, on_value, &a);
    wait_for(f, &a);
    gw_store_get(f->s, 0, "t", 1, on_value, &b);
    wait_for(f, &b);
    assert_int_equal(b.status, GW_STORE_NOT_FOUND);
}

static gw_bucket_result take(fixture *f, uint64_t now)
{
    result r = {0};
    gw_store_take(f->s, 0, "b", 1, 10, 1.0, 1, now, on_bucket, &r);
    wait_for(f, &r);
    assert_int_equal(r.status, GW_STORE_OK);
    return r.br;
}

static void test_bucket_exact(void **state)
{
    fixture *f = *state;
    uint64_t t0 = 4102444800000ull; /* far in the future: the record never counts as expired here */
    int allowed = 0;
    for (int i = 0; i < 20; i++) allowed += take(f, t0).allowed;
    assert_int_equal(allowed, 10); /* burst 10 */
    gw_bucket_result r = take(f, t0);
    assert_false(r.allowed);
    assert_int_equal(r.retry_ms, 1000); /* one token per second */
    r = take(f, t0 + 500);
    assert_false(r.allowed); /* half a token */
    assert_int_equal(r.retry_ms, 500);
    r = take(f, t0 + 1000);
    assert_true(r.allowed);
    assert_true(r.remaining < 1e-9);
    assert_int_equal(r.reset_ms, t0 + 1000 + 10000); /* full again after 10 s */
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    result a = {0}, b = {0};
    gw_store_op *op = gw_store_get(f->s, 0, "x", 1, on_value, &a);
    gw_store_cancel(op);
    gw_store_get(f->s, 0, "x", 1, on_value, &b);
    wait_for(f, &b);
    assert_int_equal(a.calls, 0);
}

static int64_t incr(fixture *f, const char *key, int64_t delta, uint64_t ttl, uint64_t now, int want_status)
{
    result r = {0};
    gw_store_incr(f->s, 0, key, strlen(key), delta, ttl, now, on_incr, &r);
    wait_for(f, &r);
    assert_int_equal(r.status, want_status);
    return r.ival;
}

/* The TTL is set by the write that creates the counter and never moved by later ones. */
static void test_incr_ttl_on_first_write(void **state)
{
    fixture *f = *state;
    uint64_t t0 = 4102444800000ull;
    assert_int_equal(incr(f, "c", 1, 1000, t0, GW_STORE_OK), 1);
    assert_int_equal(incr(f, "c", 2, 5000, t0 + 500, GW_STORE_OK), 3);
    assert_int_equal(incr(f, "c", -5, 5000, t0 + 999, GW_STORE_OK), -2);
    assert_int_equal(incr(f, "c", 1, 0, t0 + 1000, GW_STORE_OK), 1); /* expired at t0 + 1000: new counter */
    assert_int_equal(incr(f, "c", 1, 0, t0 + 100000, GW_STORE_OK), 2); /* ... without a TTL this time */
    result g = {0};
    gw_store_get(f->s, 0, "c", 1, on_value, &g);
    wait_for(f, &g);
    assert_string_equal(g.val, "2"); /* a counter reads as its decimal text */
}

static void test_incr_refuses_non_integers(void **state)
{
    fixture *f = *state;
    uint64_t t0 = 4102444800000ull;
    result a = {0};
    gw_store_set(f->s, 0, "v", 1, "12", 2, 60000, t0, on_value, &a);
    wait_for(f, &a);
    assert_int_equal(incr(f, "v", 3, 0, t0, GW_STORE_OK), 15); /* an integer value counts on */
    result b = {0};
    gw_store_set(f->s, 0, "w", 1, "abc", 3, 60000, t0, on_value, &b);
    wait_for(f, &b);
    incr(f, "w", 1, 0, t0, GW_STORE_ERROR);
    assert_int_equal(incr(f, "big", INT64_MAX, 0, t0, GW_STORE_OK), INT64_MAX);
    incr(f, "big", 1, 0, t0, GW_STORE_ERROR); /* overflow: refused, the value stays */
    assert_int_equal(incr(f, "big", 0, 0, t0, GW_STORE_OK), INT64_MAX);
    result c = {0};
    gw_store_take(f->s, 0, "bk", 2, 10, 1, 1, t0, on_bucket, &c);
    wait_for(f, &c);
    incr(f, "bk", 1, 0, t0, GW_STORE_ERROR); /* a bucket is not a counter */
}

/* Counters live in memory: a reopened store does not have them. */
static void test_incr_not_persisted(void **state)
{
    fixture *f = *state;
    incr(f, "n", 7, 0, 4102444800000ull, GW_STORE_OK);
    close_store(f);
    open_store(f);
    result g = {0};
    gw_store_get(f->s, 0, "n", 1, on_value, &g);
    wait_for(f, &g);
    assert_int_equal(g.status, GW_STORE_NOT_FOUND);
}

#define PER_THREAD 2000

typedef struct {
    gw_store *s;
    unsigned worker;
    int64_t got[PER_THREAD];
    int done;
} incr_thread;

static void on_thread_incr(void *arg, int status, int64_t v)
{
    incr_thread *t = arg;
    assert_int_equal(status, GW_STORE_OK);
    t->got[t->done++] = v;
}

/* Each thread is a worker with its own loop; every increment is issued before any result comes back. */
static void *incr_main(void *arg)
{
    incr_thread *t = arg;
    struct event_base *base = event_base_new();
    assert_int_equal(gw_store_worker_attach(t->s, t->worker, base), 0);
    for (int i = 0; i < PER_THREAD; i++)
        assert_non_null(
            gw_store_incr(t->s, t->worker, "shared", 6, 1, 0, 4102444800000ull, on_thread_incr, t));
    for (int i = 0; i < 500 && t->done < PER_THREAD; i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    gw_store_worker_detach(t->s, t->worker);
    event_base_free(base);
    return NULL;
}

/* Two workers incrementing one counter at once: every value 1..2N handed out exactly once. */
static void test_incr_exact_across_workers(void **state)
{
    fixture *f = *state;
    close_store(f);
    char *err = NULL;
    f->s = gw_store_new(f->dir, 2, &err);
    assert_non_null(f->s);
    static incr_thread th[2];
    pthread_t tid[2];
    for (unsigned i = 0; i < 2; i++) {
        th[i] = (incr_thread){.s = f->s, .worker = i};
        assert_int_equal(pthread_create(&tid[i], NULL, incr_main, &th[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(tid[i], NULL);
    static bool seen[2 * PER_THREAD + 1];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(th[i].done, PER_THREAD);
        for (int k = 0; k < PER_THREAD; k++) {
            int64_t v = th[i].got[k];
            assert_true(v >= 1 && v <= 2 * PER_THREAD);
            assert_false(seen[v]);
            seen[v] = true;
            if (k) assert_true(v > th[i].got[k - 1]); /* in call order on each worker */
        }
    }
    gw_store_free(f->s);
    f->s = NULL;
}

static void test_corrupt_file_refused(void **state)
{
    fixture *f = *state;
    close_store(f);
    char path[128];
    snprintf(path, sizeof path, "%s/store.db", f->dir);
    FILE *fp = fopen(path, "w");
    fputs("gateway-store 1\n5 3\nabc", fp);
    fclose(fp);
    char *err = NULL;
    gw_store *s = gw_store_new(f->dir, 1, &err);
    assert_null(s);
    assert_non_null(strstr(err, "corrupt at byte 16"));
    free(err);
    unlink(path);
    open_store(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_get_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistent_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr_ttl_on_first_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr_refuses_non_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr_not_persisted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr_exact_across_workers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
