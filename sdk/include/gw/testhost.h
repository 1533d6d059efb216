/* gw/testhost.h - a test host for gateway filters: the complete gw_host table of <gw/filter.h> over fake
 * requests, a fake upstream, a fake clock, an in-memory store, and captured logs and metrics. No sockets,
 * no threads: a filter's unit tests (cmocka or anything else) drive it one call at a time.
 *
 * A typical test:
 *
 *     gw_th *th = gw_th_new();
 *     assert_int_equal(gw_th_load(th, "build/example.so",
 *                                 "name: example\nresponse_header: {name: X-A, value: 1}\n"), 0);
 *     gw_req *r = gw_th_request(th, "GET", "/api/users/1?x=1");
 *     gw_th_request_header(r, "Authorization", "Bearer abc");
 *     gw_th_upstream_reply(r, 200, "Content-Type: text/plain\n", "hello");
 *     assert_int_equal(gw_th_run(r), GW_TH_DONE);
 *     assert_int_equal(gw_th_status(r), 200);
 *     assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-A"), "1");
 *     gw_th_free(th);
 *
 * What the host does for one request, as the gateway does it:
 *   1. routing: a registered endpoint (method and path) first, then the longest route prefix (see
 *      gw_th_route; with no route configured every path belongs to the route "default"). No match: the
 *      host answers 404 (405 for an endpoint path with another method, 400 for a bad target); the request
 *      phase does not run, the response and log phases do.
 *   2. request phase, pipeline order; then request_body over the test body, if any (ABI 1.1, see
 *      gw_th_request_body_pieces); for an endpoint, then the endpoint's handler (GW_CONTINUE from a
 *      handler: 500).
 *   3. per upstream attempt: upstream_request (pipeline order), the fake upstream answers with the next
 *      scripted reply, upstream_response (reverse order). A refused connection ("connect") fails before
 *      anything is sent, so upstream_request does not run for that attempt. GW_RETRY makes another attempt
 *      (at most 16 attempts, only while the body is replayable; otherwise it counts as GW_CONTINUE): the
 *      delay given with host->retry_after() is recorded and passes on the fake clock (timers due
 *      meanwhile fire). A failed attempt that nobody retries is answered 502/504 with the error JSON.
 *   4. response phase (reverse order, every filter of the pipeline), then, for the upstream's response,
 *      response_body over its body (reverse order), then log (reverse order), then the
 *      request ends: timers are cancelled, on_cleanup callbacks run (last registered first), and the
 *      memory from host->alloc() and the per-request states are freed.
 * A result other than GW_CONTINUE ends its phase. GW_RESPOND (after host->respond()) answers with the
 * filter's response, which then goes through the response phase; GW_ERROR answers 500 with the error JSON.
 * In the response phase, a filter's answer or a failure replacing the upstream's response goes through
 * the response phase once more; one replacing an answer of ours goes out as it is.
 * GW_WAIT pauses the request until host->resume(), which continues it at once, inside the call (so a
 * filter must not touch the request, its state or alloc'd memory after calling resume).
 *
 * Header sets: GW_HDR_REQUEST can change in the request phase (and an endpoint's handler), GW_HDR_UPSTREAM
 * (a copy of the request headers made per attempt) in upstream_request, GW_HDR_RESPONSE in every phase but
 * log. Response headers set before the upstream answered are kept, after the upstream's own.
 *
 * Misuse the host detects (resume twice, on a request that is not waiting, or from inside the phase call
 * (its result is then taken, as the gateway does); respond() without GW_RESPOND; WAIT in the log phase;
 * writing a header set outside its phases; timer_cancel on a timer that fired; register_endpoint or
 * metric_register outside create(); ...) is logged at GW_LOG_ERROR under "[testhost]" and counted: assert
 * gw_th_violations(th) == 0 at the end of a test.
 *
 * All names, paths and header values taken by these functions are copied; strings returned stay valid
 * until the object they describe changes or is freed. Not thread-safe: one thread per test host. */
#ifndef GW_TESTHOST_H
#define GW_TESTHOST_H

#include <gw/filter.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_th gw_th;

/* The fake clock starts at these values for the first test host created in a process (and again whenever
 * a new test host is created while no other exists). The clock is process-wide because host->now_ms()
 * takes no argument. */
#define GW_TH_CLOCK_START_MS 1000000u
#define GW_TH_UNIX_START_MS 1700000000000u

/* File names used in configuration messages ("pipeline.yaml:2:3: ..."). */
#define GW_TH_PIPELINE_FILE "pipeline.yaml"
#define GW_TH_ROUTES_FILE "routes.yaml"

/* The target every upstream attempt goes to (host->upstream()); its authority is the upstream Host. */
#define GW_TH_UPSTREAM_URL "http://upstream.test:8080"

/* ------------------------------------------------------------------------------------------------------
 * Test host lifecycle */

/* A new, empty test host (no filter, no route). Aborts the process if out of memory. */
gw_th *gw_th_new(void);

/* Ends every request still running (as if each client went away), runs worker_fini, route_destroy and
 * destroy for every filter (reverse pipeline order), unloads the shared objects, frees everything. */
void gw_th_free(gw_th *th);

/* The host API table the filters get (every member non-NULL); handy for calling host functions from a
 * test, e.g. gw_th_host(th)->now_ms(). */
const gw_host *gw_th_host(gw_th *th);

/* The message of the last call that failed (gw_th_load, gw_th_add, gw_th_route, ...), "" if none. */
const char *gw_th_error(const gw_th *th);

/* ------------------------------------------------------------------------------------------------------
 * Filters and routes */

/* Loads a filter shared object and appends it to the pipeline, configured with `entry_yaml`: the pipeline
 * entry mapping as it would appear in the gateway's configuration, e.g. "name: example\nheader: X-A\n"
 * (NULL or "" = just the name). The descriptor gets the gateway's checks (major equal, minor not newer,
 * size sane, name and version present, reserved members NULL; messages name the file and both ABI
 * versions); then, for a filter with a settings table (ABI 1.1), the gateway's own table checks and the
 * filled struct (host->settings()); then config_check, create and worker_init(inst, 0, 1) run. `name:` must
 * match the descriptor's name when given; `enabled: false` adds nothing and returns 0. The same filter may be
 * added more than once (each entry an instance with its own settings).
 * Returns 0, or -1 with the message in gw_th_error() ("pipeline.yaml:line:col: ..." for settings). */
int gw_th_load(gw_th *th, const char *so_path, const char *entry_yaml);

/* Like gw_th_load for a descriptor linked into the test (e.g. &gw_filter_descriptor). */
int gw_th_add(gw_th *th, const gw_filter_desc *desc, const char *entry_yaml);

/* Adds a route: requests whose normalised path is `prefix` or below it (at a '/' boundary; the longest
 * prefix wins; "/" matches every path) belong to it. host->route() and host->service() return `name`.
 * `filters_yaml` is the route's `filters:` mapping (per-route settings keyed by filter name, e.g.
 * "example:\n  header: X-B\n"; NULL = none): each filter named runs route_check (with inst NULL, as in
 * the gateway) and route_create (for every instance of it); a table filter without route_create gets the
 * table's per-route checks and a struct merged over the pipeline's instead. Add the filters first: a filter
 * added later has no settings on routes added before it.
 * Returns 0 or -1 (gw_th_error(): "routes.yaml:line:col: ..."). */
int gw_th_route(gw_th *th, const char *name, const char *prefix, const char *filters_yaml);

/* The instance create() returned for the (first) filter `name` in the pipeline, or NULL. */
void *gw_th_instance(const gw_th *th, const char *name);

/* ------------------------------------------------------------------------------------------------------
 * Requests. A request belongs to the test host, which frees it in gw_th_free. */

/* A new request that has not run yet. `target` is the request-target: a path with an optional query
 * ("/a/b?x=1"); it is normalised as the gateway does (a target the gateway refuses answers 400 when run).
 * Defaults: client IP 127.0.0.1, request id "req-<n>" (n counts from 1 per test host) unless a sane
 * X-Request-Id header is added, body empty and replayable, no scripted upstream reply. */
gw_req *gw_th_request(gw_th *th, const char *method, const char *target);

/* Adds a client request header (before gw_th_run). Returns 0, or -1 for an invalid name or a value with
 * CR, LF or NUL. */
int gw_th_request_header(gw_req *r, const char *name, const char *value);

/* The client's request body (copied; complete before the upstream is contacted). */
void gw_th_request_body(gw_req *r, const void *body, size_t len);

/* The client's address (host->client_ip()). */
void gw_th_request_client_ip(gw_req *r, const char *ip);

/* false: the body counts as streamed, host->replayable() is false and GW_RETRY is refused (treated as
 * GW_CONTINUE). Default true. */
void gw_th_request_replayable(gw_req *r, bool replayable);

/* Body phases (ABI 1.1). The test body (gw_th_request_body) gives the request a Content-Length field (or
 * Transfer-Encoding: chunked after gw_th_request_chunked(r, true)) unless the test added one. It goes to
 * on_request_body (pipeline order) once the request phase is done, before the upstream is contacted, as the
 * gateway does for a body it buffers: in pieces of the sizes given here, cycled (default: one piece), the
 * last marked; a request without a body does not run the phase. GW_RESPOND there answers (after
 * respond()), except for a body marked streamed (gw_th_request_replayable(r, false)): then, as in the
 * gateway, it counts as GW_ERROR (500). A body over what host->body_buffer asked for is answered 413 before
 * the phase. The upstream reply's body goes to on_response_body (reverse order) after the response phase,
 * in the pieces given for it; GW_ERROR there answers 500 (the gateway sends that 500 when none of the
 * response left yet, else cuts both connections). Sizes must be > 0. */
void gw_th_request_body_pieces(gw_req *r, const size_t *sizes, size_t n);
void gw_th_response_body_pieces(gw_req *r, const size_t *sizes, size_t n);
void gw_th_request_chunked(gw_req *r, bool chunked);
/* The largest max a filter passed to host->body_buffer for this request (0 = not asked). */
uint64_t gw_th_body_buffer_max(const gw_req *r);

/* Queues the reply of the next upstream attempt: status, header lines "Name: value\n..." (NULL = none;
 * '\r' before '\n' allowed), body (NUL-terminated, NULL = empty). Each attempt takes the next queued reply;
 * when the queue is exhausted the last one is used again, and with none queued the upstream answers 200
 * with no header and an empty body. Returns 0 or -1 (bad status or header line). */
int gw_th_upstream_reply(gw_req *r, int status, const char *headers, const char *body);

/* Queues a failed attempt: `why` is what host->attempt_error() returns: "connect" (refused: nothing is
 * sent), "closed" or "invalid" (status 502), or "timeout" (504). Returns 0 or -1 (unknown reason). */
int gw_th_upstream_fail(gw_req *r, const char *why);

typedef enum {
    GW_TH_WAITING = 0, /* a phase returned GW_WAIT and nobody resumed it yet */
    GW_TH_DONE = 1,    /* the request ended (log phase and cleanup done) */
} gw_th_state;

/* Runs the request as far as it goes: until it ends, or until a phase waits. Store callbacks queued
 * meanwhile are delivered before returning (unless gw_th_store_auto(th, false)), so a filter that waits
 * only for the store finishes within this call. Calling it again on a waiting request only delivers
 * pending store callbacks. Returns the request's state. */
gw_th_state gw_th_run(gw_req *r);

/* The state of a request that was run. */
gw_th_state gw_th_state_of(const gw_req *r);

/* Where the request is: "new", "request", "endpoint", "upstream_request", "upstream_response", "response",
 * "log" or "done". */
const char *gw_th_phase(const gw_req *r);

/* The client goes away: a request that has not ended ends now (the log phase runs, then cleanup).
 * A store or timer callback that later resumes it is reported as a violation. */
void gw_th_abort(gw_req *r);

/* ------------------------------------------------------------------------------------------------------
 * Inspecting a request */

/* The response status (0 while none is known). */
int gw_th_status(const gw_req *r);

/* The first header `name` (case-insensitive) of a set as a NUL-terminated string, or NULL.
 * GW_HDR_REQUEST: the client's request with the filters' edits; GW_HDR_RESPONSE: the response (with the
 * X-Request-Id the gateway adds); GW_HDR_UPSTREAM: the head of the last request actually sent upstream,
 * as the gateway writes it: Host (the target's), the filters' upstream view without hop-by-hop fields,
 * X-Forwarded-For/-Proto/-Host, X-Request-Id, Content-Length (NULL if nothing was sent). */
const char *gw_th_header(const gw_req *r, gw_hdr_set set, const char *name);

/* How many headers named `name` a set holds (name NULL: all of them). Same sets as gw_th_header. */
size_t gw_th_header_count(const gw_req *r, gw_hdr_set set, const char *name);

/* The response body (NUL-terminated; *len receives its length if len is not NULL). */
const char *gw_th_body(const gw_req *r, size_t *len);

/* Whether an upstream attempt was sent, and how many attempts were made (host->attempts()). */
bool gw_th_upstream_called(const gw_req *r);
unsigned gw_th_attempts(const gw_req *r);

/* Method and target (normalised path plus "?query") of the last request sent upstream, NULL if none. */
const char *gw_th_upstream_method(const gw_req *r);
const char *gw_th_upstream_target(const gw_req *r);

/* The retry delay recorded after attempt `attempt` (1-based) returned GW_RETRY; 0 if it did not. */
uint64_t gw_th_retry_delay(const gw_req *r, unsigned attempt);

/* ------------------------------------------------------------------------------------------------------
 * ABI 1.2 */

/* Calls every filter's reopen hook (the gateway does on SIGUSR1), in pipeline order. host->service_name()
 * lists the test host's route names (a route stands for its service here), in the order they were added.
 * host->shared_block() blocks live while any test host does: a second test host created while the first
 * lives, loading the same filter, gets the same blocks (as a reloaded generation does); they are freed with
 * the last test host. host->attempt_sent() is false for a "connect" failure, true for every other attempt;
 * host->upstream_status() is the last scripted reply's status that was not a failure; host->now_us() and
 * host->start_us() read the fake clock (the start is when gw_th_run first ran the request). */
void gw_th_reopen(gw_th *th);

/* ------------------------------------------------------------------------------------------------------
 * The fake clock */

/* Moves the clock forward by `ms`, firing the timers that fall due on the way in due order (the clock
 * reads each timer's due time while it runs), then delivers pending store callbacks (unless
 * gw_th_store_auto(th, false)). host->now_ms() and host->unix_ms() read this clock. */
void gw_th_advance(gw_th *th, uint64_t ms);

/* ------------------------------------------------------------------------------------------------------
 * The store (host->store_get/set/del/take/incr/list), in memory, with TTLs on the fake clock. Keys are
 * namespaced
 * by filter name (the filter whose phase, timer or store callback makes the call). Results are computed
 * when the call is made; callbacks are queued and delivered later, in call order: by gw_th_run_pending(),
 * and automatically at the end of gw_th_run() and gw_th_advance() (and after each timer callback) unless
 * turned off with gw_th_store_auto(th, false). store_del reports 1 when the key did not exist.
 * store_take is an exact token bucket: a new bucket is full; it refills continuously (fractions count) at
 * rate_per_s up to capacity; a take of `cost` is allowed when that many tokens are there. remaining = the
 * tokens left; reset_ms = unix time when the bucket is full again; retry_ms (refused) = ms until the take
 * would succeed, i.e. until one token is back for the usual cost 1 (until full if cost > capacity).
 * capacity <= 0, rate_per_s <= 0 or cost < 0: the call returns -1.
 * store_incr keeps a counter as a value holding its decimal text (gw_th_store_peek reads it): a missing
 * key starts at 0 and expires ttl_ms after that first write (on the fake clock; later calls do not move
 * it); a value that is not an integer, or an overflow, gets status -1; a NULL callback returns -1. */

enum {
    GW_TH_STORE_OK = 0,   /* normal operation */
    GW_TH_STORE_FAIL = 1, /* calls are accepted (return 0); callbacks get status -1 (value NULL; bucket NULL) */
    GW_TH_STORE_DOWN = 2, /* calls return -1 at once; no callback */
};
void gw_th_store_mode(gw_th *th, int mode);

/* true (default): callbacks are delivered by the run functions; false: only by gw_th_run_pending(). */
void gw_th_store_auto(gw_th *th, bool on);

/* Callbacks queued and not delivered yet. */
size_t gw_th_store_pending(const gw_th *th);

/* Delivers queued callbacks, including those queued by the callbacks themselves, until none is left.
 * Callbacks of requests that have ended are dropped, as in the gateway. Returns how many were taken off
 * the queue (delivered or dropped). */
size_t gw_th_run_pending(gw_th *th);

/* Reads a value of filter `filter` directly (no callback); NULL if absent or expired. *len gets its
 * length when len is not NULL. The result is NUL-terminated. */
const char *gw_th_store_peek(gw_th *th, const char *filter, const char *key, size_t *len);

/* Writes a value of filter `filter` directly (ttl_ms 0 = persistent). Returns 0 or -1. */
int gw_th_store_put(gw_th *th, const char *filter, const char *key, const char *value, size_t len,
                    uint64_t ttl_ms);

/* Tokens in a bucket of filter `filter` now (refilled with the capacity and rate of its last store_take),
 * or -1 if the bucket does not exist (a missing bucket counts as full at the next store_take). */
double gw_th_bucket_tokens(gw_th *th, const char *filter, const char *key);

/* ------------------------------------------------------------------------------------------------------
 * Outbound calls (host->http_call). No network: a call is answered from what the test registered for its
 * target, the call's service name or URL (exact, or a registered target ending in '*' as a prefix; the
 * longest such prefix wins). The answer is worked out when the call is made and delivered later, as in the
 * gateway: with the store callbacks (see gw_th_store_auto), or after the target's latency on the fake
 * clock (gw_th_advance). The gateway's rules apply: an answer body over max_body (default 1 MiB) fails
 * with GW_CALL_TOO_LARGE; a latency of timeout_ms or more (default 30 s) fails with GW_CALL_TIMEOUT once
 * timeout_ms has passed; a call still pending when its request ends is dropped, never called back. A
 * target with nothing registered answers GW_CALL_CONNECT (and logs a warning). Misuse is reported like
 * the rest (calls from the log phase or on a request that ended, neither service nor URL, a method that
 * is not a token, a path not starting with '/', a header with CR/LF/NUL, body_len without body): the call
 * returns -1, as in the gateway. */

/* A canned answer for `target`: status, header lines "Name: value\n..." (NULL = none), body (NULL =
 * empty). Registering a target again replaces its answer (its latency stays). Returns 0 or -1. */
int gw_th_call_reply(gw_th *th, const char *target, int status, const char *headers, const char *body);
/* Calls to `target` fail with `code` (GW_CALL_CONNECT ... GW_CALL_CLOSED). Returns 0 or -1. */
int gw_th_call_fail(gw_th *th, const char *target, int code);

/* What a handler answers: status (default 200), header lines, body (body_len 0: strlen(body)). The strings
 * are copied when the handler returns. */
typedef struct {
    int status;
    const char *headers;
    const char *body;
    size_t body_len;
} gw_th_call_answer;
/* The handler sees the call as the filter made it and returns GW_CALL_OK (answer filled) or a failure. */
typedef int (*gw_th_call_fn)(void *arg, const gw_http_call *call, gw_th_call_answer *answer);
int gw_th_call_handler(gw_th *th, const char *target, gw_th_call_fn fn, void *arg);

/* Answers to `target` (registered first) arrive `ms` later on the fake clock (0: with the store
 * callbacks). */
int gw_th_call_latency(gw_th *th, const char *target, uint64_t ms);

/* Calls made so far, and the i-th one as the filter made it (strings copied; method never NULL), or NULL. */
size_t gw_th_call_count(const gw_th *th);
const gw_http_call *gw_th_call_made(const gw_th *th, size_t i);

/* ------------------------------------------------------------------------------------------------------
 * Metrics, as the filters record them with host->metric_*. `label_values` lists the values in the order of
 * the family's label names, e.g. (const char *[]){"GET", "200"} (NULL when the family has no labels; as in
 * the gateway, a NULL entry reads as ""). host->metrics_render renders the same families: format 0 is the
 * Prometheus text format 0.0.4, format 1 is {"metrics":[{"name","type","help","series":[{"labels":{...},
 * "value"} or, for histograms, {"labels","buckets":[{"le","count"}...],"sum","count"}, or, for summaries,
 * {"labels","quantiles":[{"quantile","value"}...],"sum","count"}]}]}, as the gateway
 * renders them. */

/* Counter or gauge value; for a histogram, the sum of the observations. 0 for a series never touched of a
 * registered family; NAN when no family has that name. */
double gw_th_metric(const gw_th *th, const char *name, const char *const *label_values);

/* Histogram: number of observations (all; or, with gw_th_metric_bucket, those in the buckets whose upper
 * bound is <= `le`: pass one of the family's bounds, or INFINITY for all). 0 when absent. */
uint64_t gw_th_metric_count(const gw_th *th, const char *name, const char *const *label_values);
uint64_t gw_th_metric_bucket(const gw_th *th, const char *name, const char *const *label_values, double le);

/* Summary (GW_METRIC_SUMMARY): gw_th_metric gives the sum, gw_th_metric_count the count (all time); this the
 * q-quantile of the observations in the window that ends now on the fake clock (the gateway's sketch and
 * window: 60 s in 6 rotating parts, 1 % relative error). NaN when absent or empty. */
double gw_th_metric_quantile(const gw_th *th, const char *name, const char *const *label_values, double q);

/* ------------------------------------------------------------------------------------------------------
 * Logs: every host->log() line is kept as the gateway writes it, "[filter:NAME] message" or, with a
 * request, "[filter:NAME] message (request REQUEST_ID)"; the host's own lines start with "[testhost]". */

size_t gw_th_log_count(const gw_th *th);

/* Line i (0-based) and its level (GW_LOG_*) in *level when level is not NULL; NULL past the end. */
const char *gw_th_log_line(const gw_th *th, size_t i, int *level);

/* Number of lines at `min_level` or above that contain `substring`. */
size_t gw_th_log_find(const gw_th *th, int min_level, const char *substring);

/* Also print every line to stderr as it is logged (default off). */
void gw_th_log_echo(gw_th *th, bool on);

/* Misuse of the host API detected so far (each one is also logged). */
unsigned gw_th_violations(const gw_th *th);

/* ------------------------------------------------------------------------------------------------------
 * Limits */

/* host->alloc() returns NULL once a request's allocations would exceed `bytes` (0 = no limit, default). */
void gw_th_alloc_limit(gw_th *th, size_t bytes);

/* A value a filter set with host->req_set on this request (e.g. "consumer.id"). */
bool gw_th_value(gw_req *r, const char *key, gw_strv *out);

#ifdef __cplusplus
}
#endif

#endif
