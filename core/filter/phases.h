/* phases.h - running the filter pipeline's phases for a request, pausing on WAIT and continuing on
 * resume, and the per-request helpers (memory, header views) the host API is built on. */
#ifndef GW_PHASES_H
#define GW_PHASES_H

#include <gw/filter.h>

#include "server.h"

enum {
    GW_PH_ENDPOINT = 5,      /* a registered endpoint's handler, run like a one-filter phase */
    GW_PH_REQUEST_BODY = 6,  /* body phases: synchronous, over pieces of a body (gw_phase_body) */
    GW_PH_RESPONSE_BODY = 7,
};

/* Per-request memory and lifetime (host.c). */
void *gw_req_alloc(gw_req *r, size_t n);
void gw_req_end(gw_req *r);  /* timers cancelled, cleanups run, memory released (first chunk kept) */
void gw_req_free(gw_req *r); /* gw_req_end + the kept chunk */

/* Header views (headers.c). */
gw_hlist *gw_hdr_view(gw_req *r, gw_hdr_set set);
int gw_hdr_put(gw_req *r, gw_hdr_set set, const char *name, const char *value, size_t len, bool replace);
/* Appends a field that is valid already, its strings in the request's memory (no check, no copy). */
int gw_hdr_append(gw_req *r, gw_hdr_set set, gw_str name, gw_str value);
void gw_host_headers_fill(gw_host *h);

/* Store calls (host_store.c). */
void gw_host_store_fill(gw_host *h);
void gw_host_store_cancel_all(gw_req *r);

/* Starts a request's filter context (state block) when its generation has filters. */
int gw_phase_request_init(gw_conn *c);

/* Runs `phase` for the request from its first filter; the result goes to the phase's continuation
 * (gw_after_phase), now or after a WAIT is resumed. */
void gw_phase_start(gw_conn *c, int phase);
void gw_phase_resume(gw_req *r, gw_result result);
/* True if any filter of the request's generation implements `phase`. */
bool gw_phase_present(const gw_conn *c, int phase);
/* A body phase over the first n bytes of `buf` (not consumed), one piece per buffer segment, the last piece
 * marked when `last`; n == 0 with `last` runs one empty last piece. Pipeline order for the request body,
 * reverse for the response body. Synchronous: WAIT and RETRY count as ERROR, and RESPOND as ERROR on the
 * response side or without host->respond(). Returns CONTINUE, RESPOND or ERROR. Callers test the phase bit
 * first: a generation without body filters pays nothing. */
gw_result gw_phase_body(gw_conn *c, int phase, struct evbuffer *buf, size_t n, uint64_t offset, bool last);
/* The log phase: synchronous, reverse order, WAIT not allowed. */
void gw_phase_log(gw_conn *c);

/* Continuations, implemented where the work continues (conn.c, proxy.c, proxy_response.c, respond.c). */
void gw_after_request_phase(gw_conn *c, gw_result r);
void gw_after_endpoint(gw_conn *c, gw_result r);
void gw_after_upstream_request(gw_conn *c, gw_result r);
void gw_after_upstream_response(gw_conn *c, gw_result r);
void gw_after_response_phase(gw_conn *c, gw_result r);

#endif
