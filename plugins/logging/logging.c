/* logging.c - the filter "logging": one JSON access-log line per request, and W3C trace context.
 *
 *   pipeline:
 *     - name: logging          # first in the pipeline: its log phase runs last, after everyone's
 *       output: stdout         # stdout (fd 1), stderr, or a file path (O_APPEND; SIGUSR1 reopens it)
 *       level: info            # info | warn | error: lines below are not written (5xx error, 4xx warn)
 *       include: []            # path prefixes to log (at a '/' boundary); [] = every path
 *       exclude: [/health]     # path prefixes never logged
 *       sample: 1              # share of 1xx/2xx/3xx lines kept (0..1); others always
 *       queue_size: 1024       # records per worker waiting for the writer; full: dropped and counted
 *       flush: 100ms           # under load, lines wait up to this long and are written in one batch
 *       trace_context: true    # traceparent kept when valid, else started; forwarded with our span id
 *       trace_sampled: true    # the sampled flag of the traces started here
 *
 * Request phase (trace context): a valid client traceparent keeps its trace id and flags; an invalid or
 * absent one starts a trace (random trace id) and drops tracestate. Either way this hop gets a new span
 * id and the request goes upstream with traceparent 00-<trace id>-<our span id>-<flags>.
 * Log phase: the worker copies the fields into a record of its ring (strings cut at the caps in
 * logging.h) and wakes the writer only if it sleeps deeply or the ring is half full; lg_writer.c does the
 * rest. A full ring drops the line and counts it in gateway_access_log_dropped_total. Destroy (reload,
 * shutdown) writes every queued line before it returns. */
#include "logging.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)
#define LG_MAX_PREFIXES 256

static const char *const level_names[] = {"info", "warn", "error", NULL};

#define LG_SET(key, type, field, def, lo, hi, names, help)                                                   \
    {                                                                                                        \
        key, type, offsetof(lg_conf, field), def, lo, hi, names, 0, help                                     \
    }
static const gw_setting lg_settings_table[] = {
    LG_SET(
        "output", GW_SET_STRING, output, "stdout", 0, 0, NULL,
        "Where lines go: stdout (the gateway's fd 1), stderr, or a file path (appended; SIGUSR1 reopens it)"),
    LG_SET("level", GW_SET_ENUM, level, "info", 0, 0, level_names,
           "Lowest level written; a line's level comes from its status: 5xx error, 4xx warn, else info"),
    LG_SET("include", GW_SET_PREFIXES, include, NULL, 0, LG_MAX_PREFIXES, NULL,
           "Path prefixes (at a '/' boundary) to log; [] logs every path"),
    LG_SET("exclude", GW_SET_PREFIXES, exclude, NULL, 0, LG_MAX_PREFIXES, NULL,
           "Path prefixes (at a '/' boundary) never logged, e.g. [/health]"),
    LG_SET("sample", GW_SET_NUMBER, sample, "1", 0, 1, NULL,
           "Share of 1xx/2xx/3xx lines written (0..1, random per request); 4xx, 5xx and aborted always"),
    LG_SET("queue_size", GW_SET_INT, queue_size, "1024", 16, 1 << 20, NULL,
           "Lines each worker can queue for the writer thread (rounded up to a power of two; 256 bytes of "
           "memory each, long paths and user agents take more); when full, lines are dropped and counted "
           "in gateway_access_log_dropped_total"),
    LG_SET("flush", GW_SET_DURATION, flush_ms, "100ms", 0, 10000, NULL,
           "Under load, how long lines may wait to be written together (the writer thread then wakes a few "
           "times a second, not once per request); a worker whose queue is half full wakes it sooner; 0 "
           "writes at once"),
    LG_SET("trace_context", GW_SET_BOOL, trace_context, "true", 0, 0, NULL,
           "W3C traceparent: kept when valid, else a new trace; forwarded upstream with this hop's span id"),
    LG_SET("trace_sampled", GW_SET_BOOL, trace_sampled, "true", 0, 0, NULL,
           "The sampled flag of the traces this gateway starts"),
    {.name = NULL},
};

static int lg_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, "output");
    const char *v = n ? h->conf_str(n) : NULL;
    if (n && (!v || !*v))
        return h->conf_error(n, err, errlen, LG_NAME ".output: expected stdout, stderr or a path");
    if (!v || strcmp(v, "stdout") == 0 || strcmp(v, "stderr") == 0) return 0;
    /* As nginx -t does for its logs, `gateway -t` tells whether the file can be written (without
     * creating it: create() opens it). */
    if (access(v, W_OK) == 0) return 0;
    if (errno == ENOENT) {
        char dir[4096];
        const char *slash = strrchr(v, '/');
        size_t len = slash ? (size_t)(slash - v) : 0;
        if (len >= sizeof dir) len = sizeof dir - 1;
        memcpy(dir, v, len);
        dir[len] = '\0';
        if (access(slash ? (len ? dir : "/") : ".", W_OK | X_OK) == 0) return 0;
    }
    return h->conf_error(n, err, errlen, LG_NAME ".output: cannot write '%s': %s", v, strerror(errno));
}

static lg_ring *ring_of(lg_inst *in, const gw_req *req)
{
    lg_rings *rs = atomic_load_explicit(&in->rings, memory_order_acquire);
    unsigned w = in->h->worker(req);
    return rs && w < rs->n ? atomic_load_explicit(&rs->r[w], memory_order_relaxed) : NULL;
}

static uint64_t now_us(const gw_host *h)
{
    return HAS(h, now_us) ? h->now_us() : h->now_ms() * 1000u;
}

/* --- request phase: trace context ------------------------------------------------------------------ */

static void random_bytes(uint64_t rng[2], uint8_t *out, size_t n)
{
    do {
        uint8_t any = 0;
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = lg_rand(rng);
            size_t k = n - i < 8 ? n - i : 8;
            memcpy(out + i, &v, k);
        }
        for (size_t i = 0; i < n; i++)
            any |= out[i];
        if (any) return; /* all zero is invalid in traceparent */
    } while (1);
}

/* Two traceparent fields read as one comma-joined value (RFC 9110 5.3), which no version parses: as the
 * specification treats an unparseable header, the trace starts anew. */
static bool only_one(const gw_host *h, const gw_req *req, const char *name)
{
    size_t n = h->header_count(req, GW_HDR_REQUEST), found = 0, len = strlen(name);
    gw_strv k, v;
    for (size_t i = 0; i < n && found < 2; i++)
        if (h->header_at(req, GW_HDR_REQUEST, i, &k, &v) && k.n == len && strncasecmp(k.p, name, len) == 0)
            found++;
    return found == 1;
}

static gw_result lg_on_request(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    lg_inst *in = inst;
    const gw_host *h = in->h;
    lg_state *st = state;
    if (!HAS(h, start_us)) st->t0_us = now_us(h);
    if (!in->s->trace_context) return GW_CONTINUE;
    lg_ring *r = ring_of(in, req);
    if (!r) return GW_CONTINUE;
    gw_strv v;
    uint8_t flags = 0;
    if (h->header_get(req, GW_HDR_REQUEST, "traceparent", &v) && only_one(h, req, "traceparent") &&
        lg_trace_parse(v.p, v.n, st->trace, &flags) == 0) {
        flags &= 0x03; /* sampled, random: the flags this version defines; the rest must be zero */
    } else {
        random_bytes(r->rng, st->trace, sizeof st->trace);
        flags = in->s->trace_sampled ? 0x01 : 0x00;
        h->header_remove(req, GW_HDR_REQUEST, "tracestate"); /* it belonged to a parent we cannot read */
    }
    uint8_t span[8];
    random_bytes(r->rng, span, sizeof span);
    char tp[56];
    lg_trace_format(tp, st->trace, span, flags);
    h->header_set(req, GW_HDR_REQUEST, "traceparent", tp, 55);
    st->has_trace = true;
    return GW_CONTINUE;
}

/* --- log phase: the record ------------------------------------------------------------------------- */

static bool under(gw_strv path, const char *p)
{
    size_t n = strlen(p);
    if (n == 1 && p[0] == '/') return true;
    return path.n >= n && memcmp(path.p, p, n) == 0 && (path.n == n || path.p[n] == '/');
}

static bool any_under(gw_strv path, const gw_list *l)
{
    const char *const *v = l->v;
    for (size_t i = 0; i < l->n; i++)
        if (under(path, v[i])) return true;
    return false;
}

static uint16_t copy_cut(char *dst, gw_strv v, size_t cap)
{
    size_t n = lg_cut(v.p, v.n, cap);
    if (n) memcpy(dst, v.p, n);
    return (uint16_t)n;
}

static uint32_t retries_of(const gw_host *h, const gw_req *req)
{
    gw_strv v;
    if (h->req_get(req, "retry.count", &v) && v.n > 0 && v.n < 10) {
        uint32_t n = 0;
        size_t i = 0;
        for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++)
            n = n * 10 + (uint32_t)(v.p[i] - '0');
        if (i == v.n) return n;
    }
    unsigned a = h->attempts(req);
    return a > 0 ? a - 1 : 0;
}

static void fill(lg_inst *in, lg_state *st, gw_req *req, gw_strv path, int status, int level, lg_rec *r)
{
    const gw_host *h = in->h;
    r->unix_ms = h->unix_ms();
    uint64_t now = now_us(h), t0 = HAS(h, start_us) ? h->start_us(req) : st->t0_us;
    r->dur_us = t0 && now > t0 ? now - t0 : 0;
    r->bytes_in = h->bytes_in(req);
    r->bytes_out = h->bytes_out(req);
    r->retries = retries_of(h, req);
    /* no status: the client went away before an answer went out; 499, as nginx logs it and as the metrics
     * filter counts it, so the log and /metrics agree */
    r->status = (uint16_t)(status > 0 && status < 1000 ? status : 499);
    int us = HAS(h, upstream_status) ? h->upstream_status(req) : 0;
    r->upstream_status = (uint16_t)(us > 0 && us < 1000 ? us : 0);
    r->level = (uint8_t)level;
    r->has_trace = st->has_trace;
    if (st->has_trace) memcpy(r->trace, st->trace, 16);
    r->n_method = copy_cut(r->method, h->method(req), LG_CAP_METHOD);
    r->n_path = copy_cut(r->path, path, LG_CAP_PATH);
    gw_strv q = h->query(req);
    if (q.n && r->n_path < LG_CAP_PATH - 1 && r->n_path == path.n) {
        r->path[r->n_path++] = '?';
        r->n_path = (uint16_t)(r->n_path + copy_cut(r->path + r->n_path, q, LG_CAP_PATH - r->n_path));
    }
    r->n_route = copy_cut(r->route, h->route(req), LG_CAP_ROUTE);
    r->n_upstream = copy_cut(r->upstream, h->upstream(req), LG_CAP_UPSTREAM);
    r->n_ip = copy_cut(r->ip, h->client_ip(req), LG_CAP_IP);
    r->n_rid = copy_cut(r->rid, h->request_id(req), LG_CAP_RID);
    gw_strv v;
    r->has_key = h->req_get(req, "consumer.id", &v);
    r->n_key = r->has_key ? copy_cut(r->key, v, LG_CAP_KEY) : 0;
    r->has_ua = h->header_get(req, GW_HDR_REQUEST, "User-Agent", &v);
    r->n_ua = r->has_ua ? copy_cut(r->ua, v, LG_CAP_UA) : 0;
}

static gw_result lg_on_log(void *inst, void *route_conf, void *state, gw_req *req)
{
    (void)route_conf;
    lg_inst *in = inst;
    const gw_host *h = in->h;
    const lg_conf *s = in->s;
    int status = h->status(req);
    /* no status: the client went away before an answer */
    int level = status >= 500 || status <= 0 ? (status <= 0 ? LG_LVL_WARN : LG_LVL_ERROR)
                : status >= 400              ? LG_LVL_WARN
                                             : LG_LVL_INFO;
    if (level < s->level) return GW_CONTINUE;
    gw_strv path = h->path(req);
    if (s->include.n && !any_under(path, &s->include)) return GW_CONTINUE;
    if (s->exclude.n && any_under(path, &s->exclude)) return GW_CONTINUE;
    lg_ring *r = ring_of(in, req);
    if (!r) return GW_CONTINUE;
    if (status > 0 && status < 400 && s->sample < 1.0 &&
        (double)(lg_rand(r->rng) >> 11) * 0x1p-53 >= s->sample)
        return GW_CONTINUE;
    lg_rec *rec = lg_ring_slot(r);
    if (rec) fill(in, state, req, path, status, level, rec);
    if (!rec || lg_ring_push(r) != 0) { /* as many records as it may hold, or their bytes do not fit */
        if (in->m_dropped) h->metric_add(in->m_dropped, req, NULL, 1);
        return GW_CONTINUE;
    }
    lg_writer_kick(in->w, r);
    return GW_CONTINUE;
}

/* --- lifecycle ------------------------------------------------------------------------------------- */

static int lg_worker_init(void *inst, unsigned worker, unsigned workers)
{
    lg_inst *in = inst;
    lg_rings *rs = atomic_load(&in->rings);
    if (!rs) {
        lg_rings *mine = calloc(1, sizeof *mine + (size_t)workers * sizeof mine->r[0]);
        if (!mine) return -1;
        mine->n = workers;
        for (unsigned i = 0; i < workers; i++)
            atomic_init(&mine->r[i], NULL);
        if (atomic_compare_exchange_strong(&in->rings, &rs, mine))
            rs = mine;
        else
            free(mine); /* another worker was first: rs is its table */
    }
    if (worker >= rs->n) return -1;
    if (atomic_load(&rs->r[worker])) return 0;
    lg_ring *r = lg_ring_new((size_t)in->s->queue_size);
    if (!r) return -1;
    atomic_store(&rs->r[worker], r);
    return 0;
}

static void *lg_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    (void)conf;
    lg_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, LG_NAME ": out of memory");
        return NULL;
    }
    in->h = h;
    in->self = self;
    in->s = h->settings(self);
    atomic_init(&in->rings, NULL);
    if (HAS(h, metric_register))
        in->m_dropped = h->metric_register(self, GW_METRIC_COUNTER, "gateway_access_log_dropped_total",
                                           "Access-log lines dropped because a worker's queue to the log "
                                           "writer was full",
                                           NULL, NULL, 0);
    if (!(in->w = lg_writer_new(in, in->s->output, (int)in->s->flush_ms, err, errlen))) {
        free(in);
        return NULL;
    }
    return in;
}

static void lg_destroy(void *inst)
{
    lg_inst *in = inst;
    lg_writer_free(in->w); /* writes what the workers queued, then stops */
    lg_rings *rs = atomic_load(&in->rings);
    if (rs) {
        for (size_t i = 0; i < rs->n; i++)
            lg_ring_free(atomic_load(&rs->r[i]));
        free(rs);
    }
    free(in);
}

static void lg_reopen(void *inst)
{
    lg_inst *in = inst;
    lg_writer_reopen(in->w);
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = LG_NAME,
    .version = "1.0.0",
    .description = "Access log: one JSON line per request, written by a thread of its own; W3C trace context",
    .config_check = lg_config_check,
    .create = lg_create,
    .worker_init = lg_worker_init,
    .destroy = lg_destroy,
    .on_request = lg_on_request,
    .on_log = lg_on_log,
    .req_state_size = sizeof(lg_state),
    .settings = lg_settings_table,
    .settings_size = sizeof(lg_conf),
    .reopen = lg_reopen,
};
