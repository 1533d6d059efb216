/* connlimit_test.c - process-wide connection accounting: the shared budget, per-address counts (IPv4 and
 * its v4-mapped IPv6 form are one address), counts taken from several threads at once, the limit metric
 * and gauge as a scrape renders them, and limit warnings whose figures add up to the metric. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connlimit.h"

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    return ss;
}

static void test_budget(void **state)
{
    gw_connlimit *l = gw_connlimit_new(NULL);
    assert_true(gw_connlimit_take(l, 2));
    assert_true(gw_connlimit_take(l, 2));
    assert_false(gw_connlimit_take(l, 2));
    assert_int_equal(gw_connlimit_open(l), 2);
    gw_connlimit_put(l);
    assert_true(gw_connlimit_take(l, 2));
    assert_true(gw_connlimit_take(l, 0)); /* no limit: counted anyway */
    assert_int_equal(gw_connlimit_open(l), 3);
    gw_connlimit_free(l);
}

static void test_per_client(void **state)
{
    gw_connlimit *l = gw_connlimit_new(NULL);
    struct sockaddr_storage a = v4("10.0.0.1"), mapped = v6("::ffff:10.0.0.1"), b = v6("2001:db8::1");
    bool over;
    gw_client_slot *s1 = gw_connlimit_client_take(l, (struct sockaddr *)&a, 2, &over);
    assert_non_null(s1);
    gw_client_slot *s2 = gw_connlimit_client_take(l, (struct sockaddr *)&mapped, 2, &over);
    assert_ptr_equal(s1, s2); /* the same address in either form */
    assert_null(gw_connlimit_client_take(l, (struct sockaddr *)&a, 2, &over));
    assert_true(over);
    gw_client_slot *o = gw_connlimit_client_take(l, (struct sockaddr *)&b, 2, &over);
    assert_non_null(o);
    assert_false(over);
    gw_connlimit_client_put(l, s1);
    gw_client_slot *s3 = gw_connlimit_client_take(l, (struct sockaddr *)&a, 2, &over);
    assert_non_null(s3);
    gw_connlimit_client_put(l, s2);
    gw_connlimit_client_put(l, s3);
    gw_connlimit_client_put(l, o);
    /* max 0: nothing counted, never over */
    assert_null(gw_connlimit_client_take(l, (struct sockaddr *)&a, 0, &over));
    assert_false(over);
    gw_connlimit_free(l); /* leak checkers see whether the slots went away */
}

typedef struct {
    gw_connlimit *l;
    int base;
} worker_arg;

static void *churn(void *p)
{
    worker_arg *w = p;
    gw_client_slot *held[64];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 64; i++) {
            char ip[32];
            snprintf(ip, sizeof ip, "10.%d.0.%d", w->base, i % 8);
            struct sockaddr_storage a = v4(ip);
            bool over;
            held[i] = gw_connlimit_client_take(w->l, (struct sockaddr *)&a, 1000, &over);
        }
        for (int i = 0; i < 64; i++) gw_connlimit_client_put(w->l, held[i]);
    }
    return NULL;
}

static void test_threads(void **state)
{
    gw_connlimit *l = gw_connlimit_new(NULL);
    pthread_t t[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){l, i % 2}; /* two threads share each address range */
        pthread_create(&t[i], NULL, churn, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    /* every count went back to zero: a cap of 1 admits exactly one again */
    struct sockaddr_storage a = v4("10.0.0.3");
    bool over;
    gw_client_slot *s = gw_connlimit_client_take(l, (struct sockaddr *)&a, 1, &over);
    assert_non_null(s);
    assert_null(gw_connlimit_client_take(l, (struct sockaddr *)&a, 1, &over));
    assert_true(over);
    gw_connlimit_client_put(l, s);
    gw_connlimit_free(l);
}

static void test_metrics(void **state)
{
    gw_metrics *m = gw_metrics_new(2);
    gw_metrics_set_thread_slot(1);
    gw_connlimit *l = gw_connlimit_new(m);
    for (int i = 0; i < 3; i++) gw_connlimit_hit(l, GW_LIMIT_PER_CLIENT, 4, "10.0.0.1");
    gw_connlimit_hit(l, GW_LIMIT_MAX_CONNECTIONS, 100, NULL);
    gw_metric_set(gw_connlimit_open_gauge(l), 0, NULL, 5);
    gw_metric_set(gw_connlimit_open_gauge(l), 1, NULL, 2);
    size_t len;
    char *text = gw_metrics_render(m, 0, &len);
    assert_non_null(text);
    if (!strstr(text, "gateway_connections_limited_total{reason=\"per_client\"} 3\n") ||
        !strstr(text, "gateway_connections_limited_total{reason=\"max_connections\"} 1\n") ||
        !strstr(text, "gateway_connections_open 7\n"))
        fail_msg("rendered:\n%s", text);
    free(text);
    gw_connlimit_free(l);
    gw_metrics_free(m);
}

/* The warnings go to stderr: catch them in a file. */
static char *logged_while(void (*fn)(gw_connlimit *), gw_connlimit *l)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn(l);
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(tmp);
    char *text = calloc(1, (size_t)n + 1);
    rewind(tmp);
    assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return text;
}

static void burst(gw_connlimit *l)
{
    for (int i = 0; i < 76; i++) gw_connlimit_hit(l, GW_LIMIT_PER_CLIENT, 4, "10.0.0.1");
    gw_connlimit_flush(l, false); /* the interval is not over: nothing yet */
}

static void at_exit(gw_connlimit *l)
{
    gw_connlimit_flush(l, true);
}

static void test_warnings_add_up(void **state)
{
    gw_connlimit *l = gw_connlimit_new(NULL);
    char *first = logged_while(burst, l), *rest = logged_while(at_exit, l);
    unsigned a = 0, b = 0;
    const char *p = strstr(first, "connection closed (");
    if (!p || sscanf(p, "connection closed (%u connection", &a) != 1 || strstr(p + 1, "connection closed ("))
        fail_msg("one warning at once expected:\n%s", first);
    p = strstr(rest, "max_connections_per_client (4): ");
    if (!p || sscanf(p, "max_connections_per_client (4): %u more", &b) != 1) fail_msg("no summary:\n%s", rest);
    assert_int_equal(a, 1);
    assert_int_equal(a + b, 76);
    free(first);
    free(rest);
    gw_connlimit_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_per_client),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_warnings_add_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
