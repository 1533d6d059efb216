/* th_body_test.c - the test host's body phases (ABI 1.1): pieces as the test chooses them, offsets and the
 * last mark, pipeline order for the request body and reverse order for the response body, an answer from
 * request_body (and its refusal for a streamed body), host->body_buffer, errors, and the Content-Length a
 * test body gives the request. The filter under test ("piece") is defined here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gw/testhost.h>

/* Every body call appends "<id>.<q|r><offset>+<len>[!]" ('!' = last) to `trace`. */
static char trace[4096];

typedef struct {
    const gw_host *h;
    char id[8];
    int64_t limit, buffer;
    bool fail_response;
    char seen_length[24]; /* Content-Length the request phase saw */
} piece;

static int piece_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    static const char *const keys[] = {"id", "limit", "buffer", "fail_response", NULL};
    return h->conf_only(conf, keys, err, errlen);
}

static void *piece_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)self;
    piece *p = calloc(1, sizeof *p);
    p->h = h;
    const char *id = h->conf_str(h->conf_get(conf, "id"));
    snprintf(p->id, sizeof p->id, "%s", id ? id : "p");
    const gw_conf *n = h->conf_get(conf, "limit");
    if (n && h->conf_int(n, 0, 1 << 30, &p->limit, err, errlen) != 0) goto fail;
    n = h->conf_get(conf, "buffer");
    if (n && h->conf_int(n, 0, 1 << 30, &p->buffer, err, errlen) != 0) goto fail;
    n = h->conf_get(conf, "fail_response");
    if (n && h->conf_bool(n, &p->fail_response, err, errlen) != 0) goto fail;
    return p;
fail:
    free(p);
    return NULL;
}

static void piece_destroy(void *inst)
{
    free(inst);
}

static gw_result piece_request(void *inst, void *rc, void *state, gw_req *req)
{
    (void)rc;
    (void)state;
    piece *p = inst;
    gw_strv v;
    if (p->h->header_get(req, GW_HDR_REQUEST, "Content-Length", &v))
        snprintf(p->seen_length, sizeof p->seen_length, "%.*s", (int)v.n, v.p);
    if (p->buffer) assert_int_equal(p->h->body_buffer(req, (uint64_t)p->buffer), 0);
    return GW_CONTINUE;
}

static gw_result piece_upstream_request(void *inst, void *rc, void *state, gw_req *req)
{
    (void)rc;
    (void)state;
    piece *p = inst;
    assert_int_equal(p->h->body_buffer(req, 100), -1); /* only the request phase may ask */
    return GW_CONTINUE;
}

static void note(const piece *p, char side, const gw_body_chunk *ch)
{
    size_t n = strlen(trace);
    snprintf(trace + n, sizeof trace - n, "%s%s.%c%llu+%zu%s", n ? " " : "", p->id, side,
             (unsigned long long)ch->offset, ch->data.n, ch->last ? "!" : "");
}

static gw_result piece_request_body(void *inst, void *rc, void *state, gw_req *req, const gw_body_chunk *ch)
{
    (void)rc;
    (void)state;
    piece *p = inst;
    note(p, 'q', ch);
    if (p->limit && ch->offset + ch->data.n > (uint64_t)p->limit) {
        p->h->respond_error(req, 413, "over the limit");
        return GW_RESPOND;
    }
    return GW_CONTINUE;
}

static gw_result piece_response_body(void *inst, void *rc, void *state, gw_req *req, const gw_body_chunk *ch)
{
    (void)rc;
    (void)state;
    (void)req;
    piece *p = inst;
    note(p, 'r', ch);
    return p->fail_response && ch->last ? GW_ERROR : GW_CONTINUE;
}

static const gw_filter_desc piece_desc = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = "piece",
    .version = "1.0.0",
    .config_check = piece_check,
    .create = piece_create,
    .destroy = piece_destroy,
    .on_request = piece_request,
    .on_upstream_request = piece_upstream_request,
    .on_request_body = piece_request_body,
    .on_response_body = piece_response_body,
};

static int setup(void **state)
{
    trace[0] = '\0';
    *state = gw_th_new();
    return 0;
}

static int teardown(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_violations(th), 0);
    gw_th_free(th);
    return 0;
}

static void test_pieces_order_and_offsets(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nid: a\n"), 0);
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nid: b\n"), 0);
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "0123456789", 10);
    gw_th_request_body_pieces(r, (size_t[]){4, 3}, 2);
    gw_th_response_body_pieces(r, (size_t[]){5}, 1);
    gw_th_upstream_reply(r, 200, NULL, "abcdefghijkl");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(trace, "a.q0+4 b.q0+4 a.q4+3 b.q4+3 a.q7+3! b.q7+3! "
                               "b.r0+5 a.r0+5 b.r5+5 a.r5+5 b.r10+2! a.r10+2!");
    piece *a = gw_th_instance(th, "piece");
    assert_string_equal(a->seen_length, "10"); /* the test body's Content-Length */
}

static void test_no_body_no_phase(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\n"), 0);
    gw_req *r = gw_th_request(th, "GET", "/x");
    gw_th_upstream_reply(r, 204, NULL, NULL);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_string_equal(trace, "");
    piece *p = gw_th_instance(th, "piece");
    assert_string_equal(p->seen_length, "");
    r = gw_th_request(th, "GET", "/y");
    gw_th_upstream_reply(r, 200, NULL, NULL);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_string_equal(trace, "p.r0+0!"); /* an empty body: one empty last piece */
}

static void test_chunked_body_refused_before_upstream(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nlimit: 1000\n"), 0);
    gw_req *r = gw_th_request(th, "POST", "/x");
    char body[2000];
    memset(body, 'x', sizeof body);
    gw_th_request_body(r, body, sizeof body);
    gw_th_request_chunked(r, true);
    gw_th_request_body_pieces(r, (size_t[]){600}, 1);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 413);
    assert_false(gw_th_upstream_called(r));
    assert_string_equal(trace, "p.q0+600 p.q600+600");
    assert_string_equal(gw_th_header(r, GW_HDR_REQUEST, "Transfer-Encoding"), "chunked");
    assert_null(gw_th_header(r, GW_HDR_REQUEST, "Content-Length"));
}

static void test_streamed_body_answer_is_error(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nlimit: 5\n"), 0);
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "0123456789", 10);
    gw_th_request_replayable(r, false);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 500);
    assert_false(gw_th_upstream_called(r));
}

static void test_body_buffer(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nbuffer: 8\n"), 0);
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "0123456789", 10);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 413);
    assert_int_equal(gw_th_body_buffer_max(r), 8);
    assert_string_equal(trace, ""); /* refused before the body phase */
    r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "01234567", 8);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_true(gw_th_upstream_called(r));
}

static void test_response_body_error_is_500(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nfail_response: true\n"), 0);
    gw_req *r = gw_th_request(th, "GET", "/x");
    gw_th_upstream_reply(r, 200, NULL, "hello");
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 500);
    assert_string_equal(trace, "p.r0+5!");
}

/* A filter built against the 1.0 header (tests/fixtures/abi10) runs next to a body-phase filter. */
static void test_abi10_filter_alongside(void **state)
{
    gw_th *th = *state;
    assert_int_equal(gw_th_load(th, GW_ABI10_SO, "name: abi10\ntag: old\n"), 0);
    assert_int_equal(gw_th_add(th, &piece_desc, "name: piece\nlimit: 4\n"), 0);
    gw_req *r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "abc", 3);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 200);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Abi10"), "old");
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Abi10-Phases"), "2");
    assert_string_equal(gw_th_header(r, GW_HDR_UPSTREAM, "X-Abi10-Request"), "old");
    r = gw_th_request(th, "POST", "/x");
    gw_th_request_body(r, "abcdef", 6);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    assert_int_equal(gw_th_status(r), 413);
    assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Abi10"), "old");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pieces_order_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_no_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body_refused_before_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streamed_body_answer_is_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_body_error_is_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi10_filter_alongside, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
