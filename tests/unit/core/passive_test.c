/* passive_test.c - the passive health state machine of core/proxy/passive.c: the run of failures that
 * takes a target out (reset by a response), the one trial request after the cool-down and what its outcome
 * does, targets of services with active checks (no trial; the check decides), exact counts when several
 * threads fail the same target at once, and the reason text /services/health shows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "health.h"
#include "proxy.h"

static gw_target_conf tconf = {.url = "http://127.0.0.1:9", .host = "127.0.0.1", .port = 9};

static void setup_target(gw_target *t, gw_service_conf *s, unsigned failures, const char *check_path)
{
    memset(s, 0, sizeof *s);
    s->name = "svc";
    s->passive.failures = failures;
    s->passive.cooldown_ms = 1000;
    s->health.path = (char *)check_path;
    s->health.interval_ms = 5000;
    memset(t, 0, sizeof *t);
    t->conf = &tconf;
    t->service = s;
}

static bool pickable_at(gw_target *t, int64_t now)
{
    return gw_target_pickable(t, &now);
}

static void test_run_resets_and_ejects(void **state)
{
    gw_service_conf s;
    gw_target t;
    setup_target(&t, &s, 3, NULL);
    assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 100));
    assert_false(gw_passive_failure(&t, GW_PASSIVE_TIMEOUT, 100));
    gw_passive_success(&t); /* a response: the run starts again */
    assert_int_equal(atomic_load(&t.passive_fails), 0);
    assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 100));
    assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 100));
    assert_true(pickable_at(&t, 100));
    assert_true(gw_passive_failure(&t, GW_PASSIVE_CLOSED, 100));
    assert_int_equal(atomic_load(&t.health), GW_HEALTH_UNHEALTHY);
    assert_int_equal(atomic_load(&t.ejections), 1);
    assert_int_equal(atomic_load(&t.down_reason), GW_DOWN_PASSIVE);
    assert_true(atomic_load(&t.down_since) > 0);
    char why[160];
    gw_target_reason(&t, why, sizeof why);
    assert_string_equal(why,
                        "passive: 3 consecutive failed requests (last: connection closed before a response)");
}

static void test_cooldown_trial(void **state)
{
    gw_service_conf s;
    gw_target t;
    setup_target(&t, &s, 2, NULL);
    gw_passive_failure(&t, GW_PASSIVE_CONNECT, 1000);
    assert_true(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 1000));
    assert_int_equal(gw_target_retry_in_ms(&t, 1400), 600);
    assert_false(pickable_at(&t, 1999)); /* cooling down */
    assert_true(pickable_at(&t, 2000));  /* the one trial */
    assert_false(pickable_at(&t, 2000)); /* ... and only one */
    assert_false(pickable_at(&t, 2500));
    /* the trial failed: another cool-down from then, no second ejection */
    assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 2600));
    assert_int_equal(atomic_load(&t.ejections), 1);
    assert_false(pickable_at(&t, 3000));
    assert_true(pickable_at(&t, 3600));
    /* the next trial answered: back in, and the run starts from zero */
    gw_passive_success(&t);
    assert_int_equal(atomic_load(&t.health), GW_HEALTH_HEALTHY);
    assert_int_equal(atomic_load(&t.down_reason), GW_DOWN_NONE);
    assert_true(pickable_at(&t, 3601));
    assert_int_equal(gw_target_retry_in_ms(&t, 3601), 0);
    assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 4000));
    assert_true(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 4000));
    assert_int_equal(atomic_load(&t.ejections), 2);
}

static void test_with_active_checks(void **state)
{
    gw_service_conf s;
    gw_target t;
    setup_target(&t, &s, 2, "/health");
    atomic_store(&t.health, GW_HEALTH_HEALTHY);
    gw_passive_failure(&t, GW_PASSIVE_TIMEOUT, 10);
    assert_true(gw_passive_failure(&t, GW_PASSIVE_TIMEOUT, 10));
    assert_false(pickable_at(&t, 1000000)); /* no trial: the active check brings it back */
    gw_passive_success(&t);                 /* a late answer resets the run but does not bring it back */
    assert_int_equal(atomic_load(&t.health), GW_HEALTH_UNHEALTHY);
    assert_int_equal(gw_target_retry_in_ms(&t, 10), 5000);
    /* out by the active check already: failures take nothing out a second time */
    setup_target(&t, &s, 2, "/health");
    atomic_store(&t.health, GW_HEALTH_UNHEALTHY);
    atomic_store(&t.down_reason, GW_DOWN_STATUS);
    atomic_store(&t.down_detail, 503);
    for (int i = 0; i < 5; i++)
        assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 10));
    assert_int_equal(atomic_load(&t.ejections), 0);
    char why[160];
    gw_target_reason(&t, why, sizeof why);
    assert_string_equal(why, "active check failed: status 503");
}

static void test_disabled(void **state)
{
    gw_service_conf s;
    gw_target t;
    setup_target(&t, &s, 0, NULL);
    for (int i = 0; i < 100; i++)
        assert_false(gw_passive_failure(&t, GW_PASSIVE_CONNECT, 10));
    assert_int_equal(atomic_load(&t.health), GW_HEALTH_UNKNOWN);
    assert_true(pickable_at(&t, 10));
}

#define THREADS 4
#define PER_THREAD 5000

static atomic_uint ejected;

static void *hammer(void *arg)
{
    gw_target *t = arg;
    for (int i = 0; i < PER_THREAD; i++)
        if (gw_passive_failure(t, GW_PASSIVE_CONNECT, 10)) atomic_fetch_add(&ejected, 1);
    return NULL;
}

static void test_threads_count_exactly(void **state)
{
    gw_service_conf s;
    gw_target t;
    setup_target(&t, &s, 3, NULL);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &t), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&ejected), 1);
    assert_int_equal(atomic_load(&t.ejections), 1);
    assert_int_equal(atomic_load(&t.passive_fails), THREADS * PER_THREAD);
    assert_int_equal(atomic_load(&t.down_detail), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_resets_and_ejects), cmocka_unit_test(test_cooldown_trial),
        cmocka_unit_test(test_with_active_checks),    cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_threads_count_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
