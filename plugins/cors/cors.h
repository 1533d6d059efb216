/* cors.h - internals shared by the files of the filter "cors": cors.c (settings, lifecycle, phases) and
 * cors_policy.c (origins, lists, the compiled policy). Not part of any public interface. */
#ifndef GW_CORS_H
#define GW_CORS_H

#include <gw/filter.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORS_NAME "cors"
#define CORS_MAX_ITEMS 256    /* origins, methods, headers per list */
#define CORS_MAX_ORIGIN 256   /* longest origin accepted, in configuration or in a request */
#define CORS_MAX_REFLECT 1024 /* longest Access-Control-Request-Headers reflected when allow_headers is * */

/* The settings, filled by the host from the table in cors.c (the pipeline's). */
typedef struct {
    gw_list origins; /* const char *: "*", "null", or origins (see cors_origin_invalid) */
    gw_list methods;
    gw_list headers;
    gw_list expose;
    bool credentials;
    uint64_t max_age_ms;
    bool disabled; /* per route only */
} cors_conf;

/* One allowed origin: exact (lower case), or a wildcard subdomain: `prefix` "https://" and `suffix`
 * ".example.com[:port]" (lower case) with at least one label between. */
typedef struct {
    char *exact;
    char *prefix, *suffix;
    size_t prefix_n, suffix_n, exact_n;
} cors_origin;

/* What the phases use, compiled once per instance and per route with settings: lists for the checks and
 * the header values already joined. */
typedef struct {
    bool disabled;
    bool any_origin;  /* "*" */
    bool credentials; /* Access-Control-Allow-Credentials: true */
    bool any_method;  /* "*": the requested method is allowed and echoed */
    bool any_header;  /* "*": the requested headers are allowed and echoed */
    cors_origin *origins;
    size_t norigins;
    char **methods, **headers; /* for the preflight checks */
    size_t nmethods, nheaders;
    char *methods_v, *headers_v, *expose_v; /* joined with ", "; NULL when empty */
    size_t methods_n, headers_n, expose_n;
    char max_age_v[24]; /* seconds, "" when 0 (no Max-Age header) */
    size_t max_age_n;
} cors_policy;

/* A list read from a node: a YAML sequence of scalars, or one scalar with items separated by ','. The
 * items point into the node (or into `buf`, which the caller frees); NULL items and err when invalid. */
typedef struct {
    const char **items;
    size_t n;
    char *buf;
} cors_list;

int cors_list_read(const gw_host *h, const gw_conf *node, const char *key, cors_list *out, char *err,
                   size_t errlen);
void cors_list_free(cors_list *l);

/* Checks an origin as configured: "*", "null", or scheme://host[:port] with no path (a host may start with
 * "*." for every subdomain). NULL if fine, else why not. */
const char *cors_origin_invalid(const char *s);

/* Compiles a policy; on failure -1 and a message (without position) in err. The policy owns copies. */
int cors_policy_build(cors_policy *p, const char *const *origins, size_t norigins, const char *const *methods,
                      size_t nmethods, const char *const *headers, size_t nheaders, const char *const *expose,
                      size_t nexpose, bool credentials, uint64_t max_age_ms, bool disabled, char *err,
                      size_t errlen);
void cors_policy_free(cors_policy *p);

/* Is the request's Origin value allowed by p? */
bool cors_origin_allowed(const cors_policy *p, gw_strv origin);

/* Is `name` in the list (header names: case-insensitive; methods: exact, as HTTP says)? */
bool cors_in_list(char *const *list, size_t n, gw_strv name, bool nocase);

/* Does the comma-separated field value contain the token (case-insensitive)? */
bool cors_has_token(gw_strv value, const char *token);

#endif
