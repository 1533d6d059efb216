/* config.h - the gateway configuration: YAML file -> validated, immutable gw_config.
 * Loaded on the main thread; shared read-only by all workers. Every error is "file:line:col: message". */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "yaml_tree.h"

typedef struct {
    char *address; /* numeric IPv4/IPv6 or a host name resolved at start-up, e.g. "0.0.0.0", "::1" */
    uint16_t port;
    bool tls;
    char *cert_file; /* PEM, when tls */
    char *key_file;  /* PEM, when tls */
    int line;        /* position in the file, for messages at bind time */
} gw_listener_conf;

typedef struct {
    char *url;  /* as written, e.g. "http://localhost:8080" */
    bool https;
    char *host; /* host part (no brackets for IPv6) */
    uint16_t port;
    char *authority; /* "host:port" as it goes into Host when the route does not keep the client's */
} gw_target_conf;

typedef struct {
    char *path;          /* GET this path on each target; NULL = no active checks */
    uint64_t interval_ms;
    uint64_t timeout_ms;
    unsigned healthy;   /* consecutive successes to mark a target healthy */
    unsigned unhealthy; /* consecutive failures to mark it unhealthy */
} gw_health_conf;

/* Passive health: live requests mark targets too (core/proxy/passive.c). */
typedef struct {
    unsigned failures;    /* consecutive failed attempts that take a target out; 0 = off */
    uint64_t cooldown_ms; /* without active checks: out this long, then one request is tried */
} gw_passive_conf;

/* What a request does when every target of its service is out. */
enum { GW_ALL_DOWN_TRY = 0, GW_ALL_DOWN_REFUSE };

typedef struct {
    char *name;
    gw_target_conf *targets;
    size_t ntargets;
    gw_health_conf health;
    gw_passive_conf passive;
    int when_all_down; /* GW_ALL_DOWN_* */
    bool tls_verify;   /* https targets: verify the certificate (default true) */
    char *tls_ca_file; /* NULL = system store */
    int line;
} gw_service_conf;

typedef struct {
    char *name;    /* for logs and metrics labels; defaults to the prefix */
    char *prefix;  /* normalised: starts with '/', no trailing '/' unless it is "/" */
    size_t prefix_len;
    size_t service; /* index into gw_config.services */
    unsigned methods; /* bit (1u << enum gw_http_method) per allowed method; 0 = any */
    bool strip_prefix;
    bool preserve_host; /* forward the client's Host (default false: the target's authority) */
    const gw_yaml_node *filters; /* routes[].filters mapping (per-route filter settings), or NULL */
    int line;
} gw_route_conf;

/* An address block; IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d), its prefix length plus 96. */
typedef struct {
    uint8_t addr[16];
    unsigned bits;
} gw_addr_block;

typedef enum { GW_STORE_EMBEDDED = 0, GW_STORE_REDIS } gw_store_type;

typedef struct {
    gw_store_type type;
    char *path; /* embedded: directory for persisted records */
    char *host;
    uint16_t port;
    char *password; /* NULL = none */
    int db;
    uint64_t connect_timeout_ms;
    uint64_t command_timeout_ms;
} gw_store_conf;

typedef struct {
    char *name;
    bool enabled;
    const gw_yaml_node *settings; /* the whole list item (mapping) */
    int line;
} gw_pipeline_entry;

typedef struct {
    char *file;      /* path the config was loaded from */
    gw_yaml_doc *doc; /* owned: the parsed tree, kept for filters' settings */

    gw_listener_conf *listeners;
    size_t nlisteners;
    unsigned workers; /* resolved: "auto" -> number of online CPUs */
    unsigned max_connections; /* whole process; 0 = unlimited */

    /* limits */
    size_t max_request_line;   /* 8 KiB */
    size_t max_header_block;   /* 32 KiB */
    size_t max_header_fields;  /* 100 */
    uint64_t max_body;         /* 413 above; 0 = unlimited; default 10 MiB? see docs */
    size_t body_buffer;        /* request bodies up to this are buffered before the upstream is contacted */
    unsigned max_connections_per_client; /* open connections per client address; 0 = unlimited */

    /* timeouts, milliseconds */
    uint64_t request_head_ms;   /* 10 s: whole request head -> 408 */
    uint64_t body_idle_ms;      /* 30 s: no body byte from the client -> 408 */
    uint64_t request_body_ms;   /* 30 s: a buffered request body must be complete by then -> 408 */
    uint64_t body_min_rate;     /* 1 KiB/s: streamed bodies, bytes per second over each window; 0 = off */
    uint64_t body_rate_window_ms; /* 10 s: the window body_min_rate is measured over (first check at its end) */
    uint64_t send_idle_ms;      /* 60 s: the client takes none of a paused response -> closed */
    uint64_t keepalive_idle_ms; /* 60 s: idle client connection between requests */
    uint64_t upstream_connect_ms;  /* 5 s -> 504 (refused -> 502) */
    uint64_t upstream_response_ms; /* 30 s: response head -> 504 */
    uint64_t upstream_idle_ms;     /* 30 s: no body byte from the upstream -> abort */
    uint64_t shutdown_ms;          /* 25 s */

    /* upstream pools */
    unsigned upstream_keepalive;       /* idle connections kept per target per worker (default 64) */
    uint64_t upstream_keepalive_ms;    /* idle pooled connection lifetime (default 60 s) */

    /* proxy: what the gateway believes of the client's forwarding fields */
    gw_addr_block *trusted_proxies; /* peers whose X-Forwarded-For / X-Real-IP name the client */
    size_t ntrusted_proxies;
    bool trust_request_id;       /* keep a sane client X-Request-Id (default true) */
    bool underscores_in_headers; /* forward fields whose names contain '_' (default false) */

    gw_service_conf *services;
    size_t nservices;
    gw_route_conf *routes;
    size_t nroutes;

    gw_store_conf store;

    char *plugin_dir; /* NULL = default search path */
    gw_pipeline_entry *pipeline;
    size_t npipeline;

    char *log_level; /* "debug" | "info" | "warn" | "error" */
    int log_format;  /* GW_LOG_TEXT | GW_LOG_JSON (util/log.h) */
} gw_config;

/* Loads and validates `path`. On failure returns NULL and sets *err to a malloc'd "file:line:col: msg"
 * (caller frees). Environment variables are read through getenv() at load time. */
gw_config *gw_config_load(const char *path, char **err);
void gw_config_free(gw_config *cfg);

/* Parses "250ms", "10s", "2m", "1h" or a bare number of seconds. Returns false on junk/overflow. */
bool gw_parse_duration_ms(const char *s, uint64_t *out);
/* Parses "512", "64k"/"64KiB", "10m"/"10MiB", "1g" (binary units). */
bool gw_parse_size(const char *s, uint64_t *out);

#endif
