/* fuzz_http.c - libFuzzer target for the HTTP codec: a head parsed whole and as prefixes must agree, and
 * the chunked decoder must give the same payload and verdict however its input is split.
 * Input: byte 0 = mode, byte 1 = knob (limits profile and split seed), then the message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "fuzz_http: check failed at line %d: %s\n", __LINE__, #c);                       \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

enum { M_REQUEST, M_RESP_GET, M_RESP_HEAD, M_RESP_CONNECT, M_RESP_POST, M_CHUNKED, M_HELPERS, M_REQUEST2 };

static const gw_http_limits profiles[4] = {
    {.max_line = 8192, .max_head = 65536, .max_fields = 100},
    {.max_line = 32, .max_head = 128, .max_fields = 4},
    {.max_line = 64, .max_head = 512, .max_fields = 16},
    {.max_line = 100000, .max_head = 1 << 20, .max_fields = 100000}, /* clamped to the hard maximum */
};

#define ALL_PREFIXES_MAX 160 /* shorter messages get every prefix checked */
#define RANDOM_CUTS 16

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n) memcpy(c, p, n);
    return c;
}

static ssize_t parse(int mode, const uint8_t *buf, size_t n, const gw_http_limits *lim, gw_http_head *h)
{
    static const int method[] = {[M_RESP_GET] = GW_METHOD_GET,
                                 [M_RESP_HEAD] = GW_METHOD_HEAD,
                                 [M_RESP_CONNECT] = GW_METHOD_CONNECT,
                                 [M_RESP_POST] = GW_METHOD_POST};
    if (mode == M_REQUEST || mode == M_REQUEST2) return gw_http_parse_request((const char *)buf, n, lim, h);
    return gw_http_parse_response((const char *)buf, n, lim, method[mode], h);
}

/* Parses an exact-size copy of the first k bytes, so any read past k is caught. */
static ssize_t parse_prefix(int mode, const uint8_t *msg, size_t k, const gw_http_limits *lim,
                            gw_http_head *h)
{
    uint8_t *c = dup_exact(msg, k);
    ssize_t r = parse(mode, c, k, lim, h);
    free(c);
    return r;
}

static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool digits_value(gw_str v, uint64_t *out)
{
    uint64_t n = 0;
    if (v.n == 0 || v.n > 19) return false;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return false;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    *out = n;
    return n <= INT64_MAX;
}

static void check_fields(const gw_http_head *h, const uint8_t *buf, ssize_t r, const gw_http_limits *lim)
{
    const char *lo = (const char *)buf, *hi = lo + r;
    size_t max_fields = lim->max_fields < GW_HTTP_MAX_FIELDS_HARD ? lim->max_fields : GW_HTTP_MAX_FIELDS_HARD;
    CHECK(h->nfields <= max_fields);
    for (size_t i = 0; i < h->nfields; i++) {
        gw_str n = h->fields[i].name, v = h->fields[i].value;
        CHECK(n.n > 0 && n.p >= lo && n.p + n.n <= hi);
        CHECK(v.p >= lo && v.p + v.n <= hi);
        for (size_t j = 0; j < n.n; j++)
            CHECK(is_tchar((uint8_t)n.p[j]));
        for (size_t j = 0; j < v.n; j++)
            CHECK(v.p[j] != '\r' && v.p[j] != '\n' && v.p[j] != '\0');
        if (v.n) CHECK(v.p[0] != ' ' && v.p[0] != '\t' && v.p[v.n - 1] != ' ' && v.p[v.n - 1] != '\t');
        if (gw_str_eq_ci(n, "connection") || gw_str_eq_ci(n, "transfer-encoding"))
            CHECK(gw_http_is_hop_by_hop(n));
        if (gw_str_eq_ci(n, "host") || gw_str_eq_ci(n, "content-length")) CHECK(!gw_http_is_hop_by_hop(n));
        (void)gw_http_conn_lists(h, n);
    }
    CHECK(gw_http_find(h, "") == NULL);
}

/* Cross-checks the derived members against the fields, with independent code. */
static void check_derived(int mode, const gw_http_head *h)
{
    unsigned ncl = 0, nhost = 0, nte = 0;
    bool close = false;
    uint64_t cl = 0;
    for (size_t i = 0; i < h->nfields; i++) {
        const gw_http_field *f = &h->fields[i];
        uint64_t v;
        if (gw_str_eq_ci(f->name, "content-length")) {
            CHECK(digits_value(f->value, &v));
            CHECK(ncl++ == 0 || v == cl);
            cl = v;
        }
        if (gw_str_eq_ci(f->name, "host")) nhost++;
        if (gw_str_eq_ci(f->name, "transfer-encoding")) nte++;
        if (gw_str_eq_ci(f->name, "connection") && gw_http_list_has(f->value, "close")) close = true;
    }
    CHECK(h->minor_version == 0 || h->minor_version == 1);
    CHECK(!(ncl && nte));
    CHECK(nte <= 1);
    CHECK(!close || !h->keep_alive);
    CHECK(close == !!(h->conn_tokens & GW_CONN_CLOSE));
    if (h->body == GW_BODY_CHUNKED) CHECK(nte == 1 && h->minor_version == 1);
    if (h->body == GW_BODY_LENGTH) CHECK(ncl > 0 && h->content_length == cl);
    if (h->body == GW_BODY_CLOSE) CHECK(!h->keep_alive);
    if (mode == M_REQUEST || mode == M_REQUEST2) {
        CHECK(h->method.n > 0 && h->target.n > 0);
        CHECK(h->method_id == gw_http_method_id(h->method));
        CHECK(h->host_count == (int)nhost && nhost <= 1);
        CHECK(h->minor_version == 0 || nhost == 1);
        CHECK(h->body != GW_BODY_CLOSE);
        CHECK(h->body != GW_BODY_NONE || (ncl == 0 && nte == 0));
    } else {
        CHECK(h->status >= 100 && h->status <= 599);
        CHECK(gw_http_reason(h->status) != NULL);
        if (h->status < 200 || h->status == 204 || h->status == 304 || mode == M_RESP_HEAD)
            CHECK(h->body == GW_BODY_NONE);
        else if (mode == M_RESP_CONNECT && h->status < 300)
            CHECK(h->body == GW_BODY_CLOSE);
        else
            CHECK(h->body != GW_BODY_NONE);
    }
}

static void same_head(const gw_http_head *a, const gw_http_head *b)
{
    CHECK(a->nfields == b->nfields && a->body == b->body && a->content_length == b->content_length);
    CHECK(a->conn_tokens == b->conn_tokens && a->keep_alive == b->keep_alive && a->upgrade == b->upgrade);
    CHECK(a->expect_continue == b->expect_continue && a->host_count == b->host_count);
    CHECK(a->minor_version == b->minor_version && a->status == b->status && a->method_id == b->method_id);
}

/* The verdict on a prefix of k bytes given the verdict `whole` on all n bytes. */
static void check_prefix(ssize_t whole, size_t k, ssize_t rk)
{
    if (whole > 0)
        CHECK(rk == ((ssize_t)k >= whole ? whole : GW_HTTP_INCOMPLETE));
    else
        CHECK(rk == GW_HTTP_INCOMPLETE || rk == whole);
}

static void fuzz_head(int mode, const gw_http_limits *lim, uint32_t seed, const uint8_t *msg, size_t n)
{
    static gw_http_head whole, part;
    uint8_t *buf = dup_exact(msg, n);
    ssize_t r = parse(mode, buf, n, lim, &whole);
    CHECK(r >= -505 && r <= (ssize_t)n);
    if (r < 0) CHECK(r == -400 || r == -414 || r == -431 || r == -501 || r == -505);
    if (mode != M_REQUEST && mode != M_REQUEST2) CHECK(r != -414);
    if (r > 0) {
        CHECK((size_t)r <= lim->max_head && r >= 4 && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
        check_fields(&whole, buf, r, lim);
        check_derived(mode, &whole);
        CHECK(parse_prefix(mode, msg, (size_t)r, lim, &part) == r);
        same_head(&whole, &part);
        check_prefix(r, (size_t)r - 1, parse_prefix(mode, msg, (size_t)r - 1, lim, &part));
    }
    if (n <= ALL_PREFIXES_MAX) {
        for (size_t k = 0; k < n; k++)
            check_prefix(r, k, parse_prefix(mode, msg, k, lim, &part));
    } else {
        for (int i = 0; i < RANDOM_CUTS; i++) {
            size_t k = next_rand(&seed) % n;
            check_prefix(r, k, parse_prefix(mode, msg, k, lim, &part));
        }
    }
    free(buf);
}

typedef struct {
    int verdict;
    size_t end;
    uint64_t total;
    uint8_t *payload;
    size_t plen;
} chunk_run;

enum { FEED_ONCE, FEED_BYTES, FEED_RANDOM };

/* Feeds msg in pieces (all at once, byte by byte, or sizes drawn from seed), each an exact-size copy. */
static void run_chunked(const uint8_t *msg, size_t n, int how, uint32_t seed, chunk_run *out)
{
    gw_chunked c;
    gw_chunked_init(&c);
    out->verdict = GW_CHUNKED_AGAIN;
    out->plen = 0;
    out->end = 0;
    for (size_t a = 0; a < n;) {
        size_t len = how == FEED_ONCE ? n : how == FEED_BYTES ? 1 : 1 + next_rand(&seed) % 64, off = 0;
        if (len > n - a) len = n - a;
        uint8_t *buf = dup_exact(msg + a, len);
        while (off < len && out->verdict == GW_CHUNKED_AGAIN) {
            if (gw_chunked_in_data(&c)) {
                size_t take = c.remaining < len - off ? (size_t)c.remaining : len - off;
                memcpy(out->payload + out->plen, buf + off, take);
                out->plen += take;
                off += take;
                gw_chunked_consumed(&c, take);
                continue;
            }
            size_t used = SIZE_MAX;
            int r = gw_chunked_feed(&c, (const char *)buf + off, len - off, &used);
            CHECK(used <= len - off);
            off += used;
            CHECK(r >= GW_CHUNKED_ERROR && r <= GW_CHUNKED_DONE);
            if (r == GW_CHUNKED_DONE || r == GW_CHUNKED_ERROR) {
                out->verdict = r;
                out->end = a + off;
            } else if (r == GW_CHUNKED_AGAIN)
                CHECK(off == len);
            else
                CHECK(gw_chunked_in_data(&c));
        }
        free(buf);
        a += len;
        if (out->verdict != GW_CHUNKED_AGAIN) break;
    }
    out->total = c.total;
    CHECK(out->total == out->plen);
}

static void fuzz_chunked(uint32_t seed, const uint8_t *msg, size_t n)
{
    chunk_run once = {.payload = malloc(n + 1)}, split = {.payload = malloc(n + 1)};
    CHECK(once.payload && split.payload);
    run_chunked(msg, n, FEED_ONCE, 0, &once);
    if (once.verdict == GW_CHUNKED_DONE) {
        CHECK(once.end >= 5 && once.end <= n && memcmp(msg + once.end - 4, "\r\n\r\n", 4) == 0);
    }
    for (int how = FEED_RANDOM; how >= (n <= 512 ? FEED_BYTES : FEED_RANDOM); how--) {
        run_chunked(msg, n, how, seed, &split);
        CHECK(split.verdict == once.verdict && split.total == once.total && split.plen == once.plen);
        CHECK(memcmp(split.payload, once.payload, once.plen) == 0);
        if (once.verdict == GW_CHUNKED_DONE) CHECK(split.end == once.end);
    }
    free(once.payload);
    free(split.payload);
}

/* The list and name helpers on arbitrary bytes: no crash, and simple consistency. */
static void fuzz_helpers(const uint8_t *msg, size_t n)
{
    uint8_t *buf = dup_exact(msg, n);
    gw_str v = {(const char *)buf, n};
    static const char *const tokens[] = {"close", "keep-alive", "upgrade", "chunked", "x"};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        bool has = gw_http_list_has(v, tokens[i]);
        if (has) CHECK(n >= strlen(tokens[i]));
        if (gw_str_eq_ci(v, tokens[i])) CHECK(has);
    }
    int id = gw_http_method_id(v);
    CHECK(id >= GW_METHOD_OTHER && id <= GW_METHOD_TRACE);
    (void)gw_http_is_hop_by_hop(v);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int mode = data[0] & 7;
    const gw_http_limits *lim = &profiles[data[1] & 3];
    uint32_t seed = (uint32_t)(data[1] >> 2) * 2654435761u + (uint32_t)size;
    if (seed == 0) seed = 1;
    const uint8_t *msg = data + 2;
    size_t n = size - 2;
    if (mode == M_CHUNKED)
        fuzz_chunked(seed, msg, n);
    else if (mode == M_HELPERS)
        fuzz_helpers(msg, n);
    else
        fuzz_head(mode, lim, seed, msg, n);
    return 0;
}
