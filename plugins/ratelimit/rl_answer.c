/* rl_answer.c - what the filter "ratelimit" adds to an answer: the rate-limit headers (legacy X-RateLimit-*,
 * IETF RateLimit / RateLimit-Policy), Retry-After, and its JSON refusals (429, 503). */
#include "ratelimit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Decimal digits of v at the end of buf[24]; returns where they start (every answer carries three such
 * fields: no printf on that path). */
static char *u64_digits(char buf[24], uint64_t v)
{
    char *p = buf + 24;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

void rl_set_header_u64(const gw_host *h, gw_req *req, const char *name, uint64_t v)
{
    char buf[24];
    char *p = u64_digits(buf, v);
    h->header_set(req, GW_HDR_RESPONSE, name, p, (size_t)(buf + sizeof buf - p));
}

static uint64_t ceil_div_1000(uint64_t ms)
{
    return ms / 1000 + (ms % 1000 ? 1 : 0);
}

/* The rate-limit fields for a decision, on the response. */
static void put_headers(const rl_inst *in, gw_req *req, double cap, double rate, const gw_bucket_result *br)
{
    const gw_host *h = in->h;
    uint64_t now = h->unix_ms();
    double rem = br->remaining < 0 ? 0 : floor(br->remaining + 1e-9);
    if (in->headers & RL_HDR_LEGACY) {
        rl_set_header_u64(h, req, "X-RateLimit-Limit", (uint64_t)cap);
        rl_set_header_u64(h, req, "X-RateLimit-Remaining", (uint64_t)rem);
        rl_set_header_u64(h, req, "X-RateLimit-Reset", ceil_div_1000(br->reset_ms));
    }
    if (in->headers & RL_HDR_IETF) {
        char buf[128];
        uint64_t window = (uint64_t)ceil(cap / rate);
        if (window == 0) window = 1;
        int n = snprintf(buf, sizeof buf, "\"default\";q=%llu;w=%llu", (unsigned long long)cap,
                         (unsigned long long)window);
        h->header_set(req, GW_HDR_RESPONSE, "RateLimit-Policy", buf, (size_t)n);
        uint64_t t = br->reset_ms > now ? ceil_div_1000(br->reset_ms - now) : 0;
        n = snprintf(buf, sizeof buf, "\"default\";r=%llu;t=%llu", (unsigned long long)rem,
                     (unsigned long long)t);
        h->header_set(req, GW_HDR_RESPONSE, "RateLimit", buf, (size_t)n);
    }
}

/* {"error":..., "message":..., "request_id":...} with the request id escaped. */
gw_result rl_respond_json(const rl_inst *in, gw_req *req, int status, const char *error, const char *message)
{
    const gw_host *h = in->h;
    gw_strv id = h->request_id(req);
    char rid[256];
    size_t o = 0;
    for (size_t i = 0; i < id.n && o + 7 < sizeof rid; i++) {
        unsigned char c = (unsigned char)id.p[i];
        if (c == '"' || c == '\\') {
            rid[o++] = '\\';
            rid[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(rid + o, sizeof rid - o, "\\u%04x", c);
        } else {
            rid[o++] = (char)c;
        }
    }
    rid[o] = '\0';
    char body[512];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}", error,
                     message, rid);
    if (n < 0 || (size_t)n >= sizeof body) return GW_ERROR;
    return h->respond(req, status, "application/json", body, (size_t)n) == 0 ? GW_RESPOND : GW_ERROR;
}

/* The verdict for a bucket result: headers, and 429 when refused. */
gw_result rl_verdict(rl_inst *in, gw_req *req, double cap, double rate, const gw_bucket_result *br)
{
    const gw_host *h = in->h;
    put_headers(in, req, cap, rate, br);
    if (br->allowed) return GW_CONTINUE;
    uint64_t secs = ceil_div_1000(br->retry_ms);
    if (secs == 0) secs = 1;
    rl_set_header_u64(h, req, "Retry-After", secs);
    if (in->m_limited) h->metric_add(in->m_limited, req, NULL, 1);
    char msg[96];
    snprintf(msg, sizeof msg, "Too many requests; try again in %llu second%s", (unsigned long long)secs,
             secs == 1 ? "" : "s");
    return rl_respond_json(in, req, 429, "Rate limit exceeded", msg);
}
