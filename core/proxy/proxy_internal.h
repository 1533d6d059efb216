/* proxy_internal.h - what proxy.c, proxy_body.c and proxy_response.c share. Private to the proxy. */
#ifndef GW_PROXY_INTERNAL_H
#define GW_PROXY_INTERNAL_H

#include "server.h"

void gw_proxy_arm(struct event *ev, uint64_t ms);
void gw_proxy_fail(gw_conn *c, int status, const char *message);
void gw_proxy_attempt_failed(gw_conn *c, int status, const char *why, const char *message);
void gw_proxy_request_timer(gw_conn *c, gw_upconn *u);

/* proxy_body.c */
uint64_t gw_proxy_now_ms(void); /* monotonic */
void gw_proxy_body_continue(gw_conn *c);

/* proxy_response.c */
void gw_proxy_response_eof(gw_conn *c);
void gw_proxy_tunnel_move(gw_conn *c, bool from_client);
void gw_proxy_tunnel_closed(gw_conn *c);

#endif
