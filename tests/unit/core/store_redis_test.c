/* store_redis_test.c - the Redis store against a real redis-server on a free loopback port: values, TTLs,
 * exact shared token buckets and counters, listing, cancel, and a server killed, restarted and frozen
 * (SIGSTOP). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include <hiredis/hiredis.h>

#include "store.h"

#define REDIS_BIN "/usr/bin/redis-server"
#define CMD_TIMEOUT_MS 300

static pid_t redis_pid = -1;
static unsigned redis_port;
static struct event_base *base;
static gw_store *s1, *s2;

typedef struct {
    int calls, status;
    char val[256];
    size_t len, n;
    char keys[8][32];
    gw_bucket_result br;
    int64_t ival;
} result;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- the server ------------------------------------------------------------------------------------ */

static void stop_redis(void)
{
    if (redis_pid <= 0) return;
    kill(redis_pid, SIGCONT);
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len))
        return 0;
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)redis_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static void start_redis(void)
{
    char port[16];
    snprintf(port, sizeof port, "%u", redis_port);
    redis_pid = fork();
    assert_true(redis_pid >= 0);
    if (redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* even if the test aborts */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(REDIS_BIN, REDIS_BIN, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 250 && !port_open(); i++) usleep(20000);
    assert_true(port_open());
}

/* --- driving the loop ------------------------------------------------------------------------------ */

static void run_ms(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Runs the loop until r has its callback (bounded). */
static void wait_for(result *r, unsigned limit_ms)
{
    uint64_t end = mono_ms() + limit_ms;
    while (r->calls == 0 && mono_ms() < end) run_ms(5);
    assert_int_equal(r->calls, 1);
}

static void on_value(void *arg, int status, const char *v, size_t n)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    r->len = n < sizeof r->val ? n : sizeof r->val;
    if (v) memcpy(r->val, v, r->len);
}

static void on_bucket(void *arg, int status, const gw_bucket_result *br)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    if (br) r->br = *br;
}

static void on_list(void *arg, int status, size_t n, const gw_strv *keys, const gw_strv *values)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    r->n = n;
    for (size_t i = 0; i < n && i < 8; i++) snprintf(r->keys[i], sizeof r->keys[i], "%.*s", (int)keys[i].n, keys[i].p);
}

static result do_get(gw_store *s, const char *k)
{
    result r = {0};
    assert_non_null(gw_store_get(s, 0, k, strlen(k), on_value, &r));
    assert_int_equal(r.calls, 0); /* never inside the call */
    wait_for(&r, 3000);
    return r;
}

static int do_set(gw_store *s, const char *k, const char *v, size_t vl, uint64_t ttl)
{
    result r = {0};
    assert_non_null(gw_store_set(s, 0, k, strlen(k), v, vl, ttl, wall_ms(), on_value, &r));
    wait_for(&r, 3000);
    return r.status;
}

static int do_del(gw_store *s, const char *k)
{
    result r = {0};
    assert_non_null(gw_store_del(s, 0, k, strlen(k), on_value, &r));
    wait_for(&r, 3000);
    return r.status;
}

static result do_take(gw_store *s, const char *k, double cap, double rate, double cost)
{
    result r = {0};
    assert_non_null(gw_store_take(s, 0, k, strlen(k), cap, rate, cost, wall_ms(), on_bucket, &r));
    wait_for(&r, 3000);
    return r;
}

static void on_incr(void *arg, int status, int64_t v)
{
    result *r = arg;
    r->calls++;
    r->status = status;
    r->ival = v;
}

static result do_incr(gw_store *s, const char *k, int64_t delta, uint64_t ttl)
{
    result r = {0};
    assert_non_null(gw_store_incr(s, 0, k, strlen(k), delta, ttl, wall_ms(), on_incr, &r));
    assert_int_equal(r.calls, 0); /* never inside the call */
    wait_for(&r, 3000);
    return r;
}

/* A command straight to the server (what an operator or another client would do). */
static long long redis_cmd(const char *cmd)
{
    redisContext *rc = redisConnect("127.0.0.1", (int)redis_port);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    freeReplyObject(redisCommand(rc, "SELECT 3")); /* the stores' database (open_store) */
    redisReply *r = redisCommand(rc, cmd);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    redisFree(rc);
    return v;
}

/* Polls with writes until the store works (reconnected), bounded. */
static void wait_up(gw_store *s, unsigned limit_ms)
{
    uint64_t end = mono_ms() + limit_ms;
    int st = -1;
    while (mono_ms() < end && (st = do_set(s, "probe", "1", 1, 0)) != 0) run_ms(50);
    assert_int_equal(st, 0);
}

/* --- tests ----------------------------------------------------------------------------------------- */

static void test_values(void **state)
{
    wait_up(s1, 5000);
    wait_up(s2, 5000);
    assert_int_equal(do_set(s1, "v:a", "hello", 5, 0), 0);
    result r = do_get(s2, "v:a");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.val, "hello", 5);
    assert_int_equal(do_get(s1, "v:missing").status, 1);
    static const char bin[] = {'a', 0, '\xff', '%', 'b', 0};
    assert_int_equal(do_set(s1, "v:bin", bin, sizeof bin, 0), 0);
    r = do_get(s1, "v:bin");
    assert_int_equal(r.len, sizeof bin);
    assert_memory_equal(r.val, bin, sizeof bin);
    assert_int_equal(do_set(s1, "v:empty", "", 0, 0), 0);
    r = do_get(s1, "v:empty");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.len, 0);
    assert_int_equal(do_del(s1, "v:a"), 0);
    assert_int_equal(do_del(s1, "v:a"), 1);
    assert_int_equal(do_get(s1, "v:a").status, 1);
}

static void test_ttl(void **state)
{
    assert_int_equal(do_set(s1, "t:x", "soon gone", 9, 150), 0);
    assert_int_equal(do_get(s1, "t:x").status, 0);
    run_ms(300);
    assert_int_equal(do_get(s1, "t:x").status, 1);
}

static void test_list(void **state)
{
    assert_int_equal(do_set(s1, "l*x:1", "one", 3, 0), 0);
    assert_int_equal(do_set(s1, "l*x:2", "two", 3, 60000), 0);
    assert_int_equal(do_set(s1, "lyx:3", "three", 5, 0), 0);
    assert_int_equal(do_take(s1, "l*x:bucket", 5, 1, 1).status, 0); /* buckets are not listed */
    assert_int_equal(do_get(s1, "l*x:bucket").status, 1);
    result r = {0};
    assert_non_null(gw_store_list(s2, 0, "l*x:", 4, on_list, &r));
    wait_for(&r, 3000);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, 2);
    assert_true(strncmp(r.keys[0], "l*x:", 4) == 0 && strncmp(r.keys[1], "l*x:", 4) == 0);
    result none = {0};
    assert_non_null(gw_store_list(s2, 0, "nothing[", 8, on_list, &none));
    wait_for(&none, 3000);
    assert_int_equal(none.status, 0);
    assert_int_equal(none.n, 0);
}

static void test_take_exact(void **state)
{
    uint64_t before = wall_ms();
    for (int i = 0; i < 10; i++) {
        result r = do_take(s1, "b:burst", 10, 1, 1);
        assert_int_equal(r.status, 0);
        assert_true(r.br.allowed);
        if (i == 0) {
            assert_true(r.br.remaining > 8.99 && r.br.remaining < 9.01);
            assert_true(r.br.reset_ms >= before + 900 && r.br.reset_ms <= wall_ms() + 1100);
        }
    }
    result r = do_take(s1, "b:burst", 10, 1, 1);
    assert_int_equal(r.status, 0);
    assert_false(r.br.allowed);
    assert_true(r.br.remaining < 0.5);
    assert_true(r.br.retry_ms >= 800 && r.br.retry_ms <= 1000);
    assert_true(r.br.reset_ms >= before + 9000 && r.br.reset_ms <= wall_ms() + 10100);
    assert_int_equal(do_take(s1, "v:bin", 10, 1, 1).status, -1); /* a value never becomes a bucket */
}

static void test_shared_bucket(void **state)
{
    int allowed = 0;
    for (int i = 0; i < 20; i++) {
        result r = do_take(i % 2 ? s2 : s1, "b:shared", 10, 0.0001, 1);
        assert_int_equal(r.status, 0);
        allowed += r.br.allowed;
    }
    assert_int_equal(allowed, 10);
}

/* Takes made in one loop turn go to Redis as one script call; each still gets the answer it would have
 * had alone: the first ten pass with 9, 8, ... 0 tokens left, the others are refused. A take cancelled
 * while it waits for the flush (its request ended) is dropped without disturbing the others. */
static void test_batched_takes(void **state)
{
    result r[21];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 21; i++)
        assert_non_null(gw_store_take(s1, 0, "b:batch", 7, 10, 0.0001, 1, wall_ms(), on_bucket, &r[i]));
    gw_store_op *gone = gw_store_take(s1, 0, "b:batch", 7, 10, 0.0001, 1, wall_ms(), on_bucket, &r[20]);
    gw_store_cancel(gone);
    for (int i = 0; i < 20; i++) wait_for(&r[i], 3000);
    int allowed = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].br.allowed, i < 10); /* in call order */
        if (i < 10) assert_true(r[i].br.remaining > 8.99 - i && r[i].br.remaining < 9.01 - i);
        else assert_true(r[i].br.retry_ms >= 1);
        allowed += r[i].br.allowed;
    }
    assert_int_equal(allowed, 10);
    wait_for(&r[20], 3000); /* the 21st (not cancelled) one: refused too */
    assert_false(r[20].br.allowed);
}

/* Two gateways (two stores) on one counter, increments interleaved and all in flight at once: every value
 * 1..N handed out exactly once. */
static void test_incr_shared(void **state)
{
    enum { N = 60 };
    result r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        assert_non_null(gw_store_incr(i % 2 ? s2 : s1, 0, "c:shared", 8, 1, 0, wall_ms(), on_incr, &r[i]));
    bool seen[N + 1] = {false};
    for (int i = 0; i < N; i++) {
        wait_for(&r[i], 3000);
        assert_int_equal(r[i].status, 0);
        assert_true(r[i].ival >= 1 && r[i].ival <= N);
        assert_false(seen[r[i].ival]);
        seen[r[i].ival] = true;
    }
    assert_int_equal(do_incr(s1, "c:shared", -N, 0).ival, 0);
}

/* The TTL comes with the write that creates the key, and only with it; counters also work after the
 * server's script cache was flushed (NOSCRIPT: loaded again, sent as EVAL). */
static void test_incr_ttl_and_noscript(void **state)
{
    assert_int_equal(do_incr(s1, "c:ttl", 5, 60000).ival, 5);
    long long pttl = redis_cmd("PTTL c:ttl");
    assert_true(pttl > 50000 && pttl <= 60000);
    assert_int_equal(do_incr(s2, "c:ttl", -5, 1000).ival, 0);
    assert_true(redis_cmd("PTTL c:ttl") > 50000); /* not moved by the second write */
    assert_int_equal(do_incr(s1, "c:none", 1, 0).ival, 1);
    assert_int_equal(redis_cmd("PTTL c:none"), -1); /* ttl 0: no expiry */
    redis_cmd("SCRIPT FLUSH");
    assert_int_equal(do_incr(s1, "c:none", 2, 0).ival, 3);
    assert_int_equal(do_incr(s1, "c:none", 2, 0).ival, 5); /* by SHA again */
    assert_int_equal(do_set(s1, "c:text", "abc", 3, 0), 0);
    assert_int_equal(do_incr(s1, "c:text", 1, 0).status, -1); /* not an integer */
    assert_int_equal(do_get(s2, "c:none").status, 0);
}

/* Counters are exact over the whole int64 range, as on the embedded store (Lua numbers are doubles: the
 * value used to come back through one, so INT64_MAX read back as INT64_MIN), and the longest TTL the host
 * lets through is one Redis takes, so a created key always gets its expiry. */
static void test_incr_int64_and_long_ttl(void **state)
{
    assert_int_equal(do_incr(s1, "c:big", INT64_MAX - 1, 0).ival, INT64_MAX - 1);
    assert_true(do_incr(s2, "c:big", 1, 0).ival == INT64_MAX);
    assert_int_equal(do_incr(s1, "c:big", 1, 0).status, -1); /* overflow: Redis refuses, nothing changes */
    assert_true(do_incr(s1, "c:big", -(INT64_MAX - 7), 0).ival == 7);
    assert_int_equal(do_incr(s1, "c:long", 1, GW_STORE_TTL_MAX_MS).ival, 1);
    assert_true(redis_cmd("PTTL c:long") > 3000000000000ll);
}

static void test_cancel(void **state)
{
    result r = {0};
    gw_store_op *op = gw_store_get(s1, 0, "v:bin", 5, on_value, &r);
    assert_non_null(op);
    gw_store_cancel(op);
    result t = {0};
    op = gw_store_take(s2, 0, "b:c", 3, 5, 1, 1, wall_ms(), on_bucket, &t);
    gw_store_cancel(op); /* the command still goes out: its reply is dropped */
    run_ms(200);
    assert_int_equal(r.calls, 0);
    assert_int_equal(t.calls, 0);
}

static void test_killed_and_restarted(void **state)
{
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = mono_ms();
        result r = do_get(s1, "v:bin");
        assert_int_equal(r.status, -1);
        assert_true(mono_ms() - t0 <= CMD_TIMEOUT_MS + 200);
    }
    result c = {0};
    gw_store_cancel(gw_store_get(s1, 0, "v:bin", 5, on_value, &c)); /* failed fast, then cancelled */
    run_ms(20);
    assert_int_equal(c.calls, 0);
    start_redis();
    wait_up(s1, 8000);
    wait_up(s2, 8000);
    assert_int_equal(do_set(s1, "k:after", "x", 1, 0), 0);
    assert_int_equal(do_get(s2, "k:after").status, 0);
}

static void test_frozen(void **state)
{
    /* One timeout: the late reply after SIGCONT is ignored and the connection stays. */
    kill(redis_pid, SIGSTOP);
    uint64_t t0 = mono_ms();
    result r = do_get(s1, "k:after");
    assert_int_equal(r.status, -1);
    assert_true(mono_ms() - t0 >= CMD_TIMEOUT_MS - 20 && mono_ms() - t0 <= CMD_TIMEOUT_MS + 300);
    kill(redis_pid, SIGCONT);
    run_ms(200);
    assert_int_equal(r.calls, 1);
    assert_int_equal(do_get(s1, "k:after").status, 0);

    /* Frozen for longer: every op times out, the connection is dropped, then it recovers. */
    kill(redis_pid, SIGSTOP);
    for (int i = 0; i < 5; i++) {
        t0 = mono_ms();
        r = do_get(s1, "k:after");
        assert_int_equal(r.status, -1);
        assert_true(mono_ms() - t0 <= CMD_TIMEOUT_MS + 300);
    }
    kill(redis_pid, SIGCONT);
    wait_up(s1, 8000);
    assert_int_equal(do_get(s1, "k:after").status, 0);
}

static gw_store *open_store(void)
{
    char *err = NULL;
    gw_store *s = gw_store_new_redis("127.0.0.1", redis_port, NULL, 3, 300, CMD_TIMEOUT_MS, 1, &err);
    assert_non_null(s);
    assert_int_equal(gw_store_worker_attach(s, 0, base), 0);
    return s;
}

static int group_setup(void **state)
{
    redis_port = free_port();
    if (!redis_port) return -1;
    start_redis();
    base = event_base_new();
    s1 = open_store();
    s2 = open_store();
    return 0;
}

static int group_teardown(void **state)
{
    gw_store *ss[2] = {s1, s2};
    for (int i = 0; i < 2; i++) {
        if (!ss[i]) continue;
        gw_store_worker_detach(ss[i], 0);
        gw_store_free(ss[i]);
    }
    if (base) event_base_free(base);
    stop_redis();
    return 0;
}

int main(void)
{
    if (access(REDIS_BIN, X_OK) != 0) {
        printf("store_redis_test: skipped, %s not installed\n", REDIS_BIN);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_redis);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),      cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_list),        cmocka_unit_test(test_take_exact),
        cmocka_unit_test(test_shared_bucket), cmocka_unit_test(test_batched_takes), cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_incr_shared), cmocka_unit_test(test_incr_ttl_and_noscript),
        cmocka_unit_test(test_incr_int64_and_long_ttl),
        cmocka_unit_test(test_killed_and_restarted), cmocka_unit_test(test_frozen),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
