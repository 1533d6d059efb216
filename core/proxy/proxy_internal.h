/* proxy_internal.h - what the files of core/proxy/ share (the request forwarding in proxy*.c, the pools in
 * upstream.c, host->http_call in http_call.c). Private to core/proxy/. */
#ifndef GW_PROXY_INTERNAL_H
#define GW_PROXY_INTERNAL_H

#include "proxy.h"
#include "server.h"

/* proxy.c: upstream connection events while a request owns the connection */
void gw_proxy_up_read(gw_io *bev, void *arg);
void gw_proxy_up_write(gw_io *bev, void *arg);
void gw_proxy_up_event(gw_io *bev, int what, void *arg);
void gw_proxy_up_timeout(gw_upconn *u);

/* upstream.c */
gw_upconn *gw_upstream_acquire(gw_worker *w, gw_pool *pool, bool fresh, char **why);
void gw_upstream_release(gw_upconn *u, bool reusable);
/* Logs that a connection could not be started (what: "upstream", "http_call"), rate-limited per worker;
 * gw_upstream_log_flush (the worker's periodic sweep) reports how many more an ended interval had. */
void gw_upstream_log_failure(const char *what, const char *url, const char *why);
int gw_upstream_connect(gw_worker *w, gw_upconn *u);
SSL *gw_upstream_ssl(const gw_target *t);

/* proxy.c */
void gw_proxy_arm(struct event *ev, uint64_t ms);
void gw_proxy_fail(gw_conn *c, int status, const char *message);
void gw_proxy_attempt_failed(gw_conn *c, int status, const char *why, const char *message);
/* Counts one upstream attempt in gateway_backend_requests_total (and _errors_total when error). */
void gw_proxy_count_attempt(gw_conn *c, bool error);
void gw_proxy_request_timer(gw_conn *c, gw_upconn *u);

/* proxy_body.c */
void gw_proxy_body_continue(gw_conn *c);

/* proxy_response.c */
void gw_proxy_response_eof(gw_conn *c);
void gw_proxy_tunnel_move(gw_conn *c, bool from_client);
void gw_proxy_tunnel_closed(gw_conn *c);

#endif
