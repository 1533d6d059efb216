/* proxy.h - the upstream side's entry points: what the client connection (core/net/conn.c) and the worker
 * call to forward a request, feed it the client's events, and free per-generation upstream state.
 * See "Calls between folders" in docs/architecture.md. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "server.h"

/* proxy_body.c */
void gw_proxy_start(gw_conn *c);
void gw_proxy_timer(gw_conn *c);
void gw_proxy_client_readable(gw_conn *c);
/* The most of a request body held before the upstream is contacted: host->body_buffer's max if a filter
 * asked (413 above), else limits.body_buffer (the body streams above). */
uint64_t gw_proxy_buffer_limit(const gw_conn *c);

/* proxy.c */
void gw_proxy_connect(gw_conn *c);
void gw_proxy_client_drained(gw_conn *c);
void gw_proxy_abort(gw_conn *c);
void gw_proxy_tunnel_client_eof(gw_conn *c);

/* passive.c: why a target is out, for /services/health ("" when it is not) */
void gw_target_reason(const gw_target *t, char *buf, size_t n);

/* upstream.c: the worker's sweep and generation retirement */
void gw_upstream_log_flush(void);
void gw_upstream_pools_free(gw_worker *w, gw_gen *g);
/* On reload: the idle connections of `old` to targets `next` still has move to next's pools. */
void gw_upstream_pools_carry(gw_worker *w, gw_gen *old, gw_gen *next);

/* http_call.c: host->http_call's URL pools: idle connections closed (drain), everything freed (retire) */
void gw_http_call_pools_idle_free(gw_worker *w, gw_gen *g);
void gw_http_call_origins_free(gw_worker *w, gw_gen *g);

/* http_call.c: host->http_call for the host API table, and the calls of a request that ends */
void gw_host_http_call_fill(gw_host *h);
void gw_http_call_cancel_all(gw_req *r);

#endif
