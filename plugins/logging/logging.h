/* logging.h - the filter "logging": shared types of the access-log path. Workers copy each request's
 * fields into a fixed-size record in their own single-producer ring (no lock, no allocation); one writer
 * thread per instance drains every ring, formats the JSON lines and writes them in large batches. */
#ifndef LG_LOGGING_H
#define LG_LOGGING_H

#include <gw/filter.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LG_NAME "logging"

/* Caps of the copied strings (bytes, before escaping); longer values are cut at a UTF-8 boundary. */
#define LG_CAP_METHOD 32
#define LG_CAP_PATH 2048 /* normalised path plus "?query" as received */
#define LG_CAP_ROUTE 128
#define LG_CAP_UPSTREAM 256
#define LG_CAP_IP 64
#define LG_CAP_KEY 128
#define LG_CAP_UA 512
#define LG_CAP_RID 128

enum { LG_LVL_INFO = 0, LG_LVL_WARN = 1, LG_LVL_ERROR = 2 };

/* The settings table's struct (host->settings()). */
typedef struct {
    const char *output; /* "stdout", "stderr" or a file path */
    int level;          /* LG_LVL_*: lines below it are not written */
    gw_list include;    /* path prefixes; empty = every path */
    gw_list exclude;    /* path prefixes never logged */
    double sample;      /* share of 2xx/3xx lines kept, 0..1 */
    int64_t queue_size; /* records per worker ring */
    uint64_t flush_ms;  /* the writer's nap between drains under load */
    bool trace_context; /* W3C traceparent handling */
    bool trace_sampled; /* the sampled flag of traces this hop starts */
} lg_conf;

/* One access-log line, as copied by the worker. Strings are not NUL-terminated. */
typedef struct {
    uint64_t unix_ms;
    uint64_t dur_us;
    uint64_t bytes_in, bytes_out;
    uint32_t retries;
    uint16_t status, upstream_status; /* 0 = none */
    uint8_t level;
    bool has_trace, has_key;
    uint8_t trace[16];
    uint16_t n_method, n_path, n_route, n_upstream, n_ip, n_key, n_ua, n_rid;
    bool has_ua;
    char method[LG_CAP_METHOD];
    char path[LG_CAP_PATH];
    char route[LG_CAP_ROUTE];
    char upstream[LG_CAP_UPSTREAM];
    char ip[LG_CAP_IP];
    char key[LG_CAP_KEY];
    char ua[LG_CAP_UA];
    char rid[LG_CAP_RID];
} lg_rec;

/* Single producer (one worker), single consumer (the writer): a ring of bytes holding records packed to
 * what they use (the fixed fields, then the strings back to back; a typical line takes ~250 bytes of the
 * 3.3 KiB an lg_rec reserves). head/tail count bytes forever, head_n/tail_n records; a record never wraps
 * (a zero size word at the end says "continue at 0"). At most queue_size records (rounded up to a power
 * of two) and LG_RING_BYTES_PER_REC bytes a record on average; either limit full: the line is dropped.
 * The worker fills `fill` (lg_ring_slot), lg_ring_push packs it. Each side's indexes on a cache line. */
#define LG_RING_BYTES_PER_REC 256u
#define LG_RING_MIN_BYTES (64u << 10) /* the longest record fits in any ring, wrap included */
typedef struct {
    _Alignas(64) _Atomic uint64_t head; /* bytes, written by the worker */
    _Atomic uint64_t head_n;            /* records, written by the worker */
    _Alignas(64) _Atomic uint64_t tail; /* bytes, written by the writer */
    _Atomic uint64_t tail_n;            /* records, written by the writer */
    _Alignas(64) uint64_t mask;         /* bytes - 1 */
    uint64_t rec_mask;                  /* record capacity - 1 */
    uint64_t rng[2]; /* the worker's PRNG (sampling, trace and span ids); worker only */
    char *bytes;
    lg_rec fill; /* the record being filled (worker only) */
} lg_ring;

typedef struct {
    size_t n;
    _Atomic(lg_ring *) r[];
} lg_rings;

typedef struct lg_writer lg_writer;

typedef struct {
    const gw_host *h;
    gw_filter *self;
    const lg_conf *s;
    gw_metric *m_dropped;
    _Atomic(lg_rings *) rings;
    lg_writer *w;
} lg_inst;

/* Per-request state (req_state_size). */
typedef struct {
    uint64_t t0_us; /* on_request's clock, when the host has no start_us */
    uint8_t trace[16];
    bool has_trace;
} lg_state;

/* lg_writer.c */
/* Opens the output (a file with O_APPEND|O_CREAT, 0640) and starts the writer thread. NULL + err. */
lg_writer *lg_writer_new(lg_inst *in, const char *output, int nap_ms, char *err, size_t errlen);
/* The worker's side, after a push to r: wake the writer if it sleeps deeply, or naps while r is half
 * full. Lock-free; a syscall only then. */
void lg_writer_kick(lg_writer *w, const lg_ring *r);
/* SIGUSR1: the writer reopens the file before its next write. */
void lg_writer_reopen(lg_writer *w);
/* Drains every ring, writes, joins the thread, closes the file. */
void lg_writer_free(lg_writer *w);

/* lg_ring.c */
lg_ring *lg_ring_new(size_t records);
void lg_ring_free(lg_ring *r);
/* The record to fill, or NULL when the ring holds as many records as it may; lg_ring_push publishes it. */
lg_rec *lg_ring_slot(lg_ring *r);
/* Packs the filled record into the ring: 0, or -1 when its bytes do not fit (the line is dropped). */
int lg_ring_push(lg_ring *r);
/* Writer: unpacks the record at byte position *tail (< head) into out and moves *tail past it. */
void lg_ring_unpack(const lg_ring *r, uint64_t *tail, lg_rec *out);
/* Records queued and not yet taken by the writer. */
static inline uint64_t lg_ring_used(const lg_ring *r)
{
    return atomic_load_explicit(&r->head_n, memory_order_relaxed) -
           atomic_load_explicit(&r->tail_n, memory_order_relaxed);
}
/* More than half of its records or of its bytes in use. */
static inline bool lg_ring_half_full(const lg_ring *r)
{
    uint64_t bytes = atomic_load_explicit(&r->head, memory_order_relaxed) -
                     atomic_load_explicit(&r->tail, memory_order_relaxed);
    return lg_ring_used(r) > r->rec_mask / 2 || bytes > r->mask / 2;
}
uint64_t lg_rand(uint64_t s[2]);
void lg_rand_seed(uint64_t s[2]);

/* lg_json.c: the writer's formatting. */
/* Bytes an escaped copy of n input bytes can take at most (each byte as \u00XX or \ufffd). */
#define LG_ESC_MAX(n) ((n)*6u)
/* The longest line lg_format writes. */
#define LG_LINE_MAX                                                                                          \
    (512u + LG_ESC_MAX(LG_CAP_METHOD + LG_CAP_PATH + LG_CAP_ROUTE + LG_CAP_UPSTREAM + LG_CAP_IP +            \
                       LG_CAP_KEY + LG_CAP_UA + LG_CAP_RID))
/* JSON string contents of s (quotes, backslash, controls, invalid UTF-8 as \ufffd); returns bytes written
 * (at most LG_ESC_MAX(n)). */
size_t lg_escape(char *out, const char *s, size_t n);
/* One line with its '\n' into out (room for LG_LINE_MAX); returns its length. */
size_t lg_format(char *out, const lg_rec *r);
/* How many bytes of s (at most cap) keep UTF-8 sequences whole. */
size_t lg_cut(const char *s, size_t n, size_t cap);

/* lg_trace.c */
/* Parses a traceparent value (W3C Trace Context, any version but ff); 0 = valid. */
int lg_trace_parse(const char *v, size_t n, uint8_t trace[16], uint8_t *flags);
/* Writes "00-<trace>-<span>-<flags>" (55 chars, NUL-terminated) into out[56]. */
void lg_trace_format(char out[56], const uint8_t trace[16], const uint8_t span[8], uint8_t flags);
void lg_hex(char *out, const uint8_t *b, size_t n);

#endif
