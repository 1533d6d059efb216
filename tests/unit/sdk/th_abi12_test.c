/* th_abi12_test.c - the SDK test host's ABI 1.2 members: shared blocks that outlive a "reload" (a second
 * test host) and are freed with the last one, service names, attempt_sent and upstream_status per attempt,
 * the microsecond clock and request start, and the reopen hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

typedef struct {
    const gw_host *h;
    gw_filter *self;
    unsigned *block; /* shared: [0] counts creates, [1] requests */
    unsigned reopens;
} inst_t;

/* what the last request saw */
static struct {
    bool sent[4];
    int up_status[4];
    unsigned n;
    uint64_t start_us, log_us;
} seen;

static void *create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    inst_t *in = calloc(1, sizeof *in);
    in->h = h;
    in->self = self;
    in->block = h->shared_block(self, "state", 2 * sizeof(unsigned));
    if (!in->block) {
        snprintf(err, errlen, "no block");
        free(in);
        return NULL;
    }
    in->block[0]++;
    return in;
}

static void destroy(void *p)
{
    free(p);
}

static void reopen(void *p)
{
    ((inst_t *)p)->reopens++;
}

static gw_result on_request(void *p, void *rc, void *st, gw_req *req)
{
    inst_t *in = p;
    in->block[1]++;
    memset(&seen, 0, sizeof seen);
    seen.start_us = in->h->start_us(req);
    return GW_CONTINUE;
}

static gw_result on_upstream_response(void *p, void *rc, void *st, gw_req *req)
{
    inst_t *in = p;
    if (seen.n < 4) {
        seen.sent[seen.n] = in->h->attempt_sent(req);
        seen.up_status[seen.n] = in->h->upstream_status(req);
        seen.n++;
    }
    if (in->h->status(req) >= 500 && in->h->attempts(req) < 3) {
        in->h->retry_after(req, 10);
        return GW_RETRY;
    }
    return GW_CONTINUE;
}

static gw_result on_log(void *p, void *rc, void *st, gw_req *req)
{
    seen.log_us = ((inst_t *)p)->h->now_us();
    return GW_CONTINUE;
}

static const gw_filter_desc desc = {.abi_major = GW_ABI_MAJOR,
                                    .abi_minor = GW_ABI_MINOR,
                                    .struct_size = sizeof(gw_filter_desc),
                                    .name = "probe12",
                                    .version = "1.0.0",
                                    .create = create,
                                    .destroy = destroy,
                                    .on_request = on_request,
                                    .on_upstream_response = on_upstream_response,
                                    .on_log = on_log,
                                    .reopen = reopen};

static void shared_blocks_outlive_a_reload(void **state)
{
    gw_th *a = gw_th_new();
    assert_int_equal(gw_th_add(a, &desc, NULL), 0);
    inst_t *ia = gw_th_instance(a, "probe12");
    assert_int_equal(ia->block[0], 1);
    gw_th_run(gw_th_request(a, "GET", "/x"));
    gw_th *b = gw_th_new(); /* the next generation while the old one lives */
    assert_int_equal(gw_th_add(b, &desc, NULL), 0);
    inst_t *ib = gw_th_instance(b, "probe12");
    assert_ptr_equal(ib->block, ia->block);
    assert_int_equal(ib->block[0], 2);
    assert_int_equal(ib->block[1], 1);
    assert_null(gw_th_host(b)->shared_block(ib->self, "state", 3)); /* another size */
    gw_th_free(a);
    gw_th_run(gw_th_request(b, "GET", "/x"));
    assert_int_equal(ib->block[1], 2);
    gw_th_free(b);
    gw_th *c = gw_th_new(); /* no test host lived in between: blocks start again */
    assert_int_equal(gw_th_add(c, &desc, NULL), 0);
    assert_int_equal(((inst_t *)gw_th_instance(c, "probe12"))->block[0], 1);
    gw_th_free(c);
}

static void services_are_the_route_names(void **state)
{
    gw_th *th = gw_th_new();
    assert_int_equal(gw_th_add(th, &desc, NULL), 0);
    assert_int_equal(gw_th_route(th, "auth-service", "/api/auth", NULL), 0);
    assert_int_equal(gw_th_route(th, "user-service", "/api/users", NULL), 0);
    inst_t *in = gw_th_instance(th, "probe12");
    assert_string_equal(in->h->service_name(in->self, 0), "auth-service");
    assert_string_equal(in->h->service_name(in->self, 1), "user-service");
    assert_null(in->h->service_name(in->self, 2));
    gw_th_free(th);
}

static void attempts_say_whether_they_were_sent(void **state)
{
    gw_th *th = gw_th_new();
    assert_int_equal(gw_th_add(th, &desc, NULL), 0);
    gw_req *r = gw_th_request(th, "GET", "/x");
    gw_th_upstream_fail(r, "connect");
    gw_th_upstream_reply(r, 503, NULL, "busy");
    gw_th_upstream_reply(r, 200, NULL, "ok");
    gw_th_advance(th, 5);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_int_equal(seen.n, 3);
    assert_false(seen.sent[0]);
    assert_int_equal(seen.up_status[0], 0);
    assert_true(seen.sent[1]);
    assert_int_equal(seen.up_status[1], 503);
    assert_true(seen.sent[2]);
    assert_int_equal(seen.up_status[2], 200);
    assert_int_equal(seen.start_us, (uint64_t)gw_th_host(th)->now_ms() * 1000u - 20000u); /* two 10 ms delays */
    assert_int_equal(seen.log_us - seen.start_us, 20000u);
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
}

static void reopen_reaches_every_instance(void **state)
{
    gw_th *th = gw_th_new();
    assert_int_equal(gw_th_add(th, &desc, NULL), 0);
    gw_th_reopen(th);
    gw_th_reopen(th);
    assert_int_equal(((inst_t *)gw_th_instance(th, "probe12"))->reopens, 2);
    gw_th_free(th);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shared_blocks_outlive_a_reload),
        cmocka_unit_test(services_are_the_route_names),
        cmocka_unit_test(attempts_say_whether_they_were_sent),
        cmocka_unit_test(reopen_reaches_every_instance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
