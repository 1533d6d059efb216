/* forward.h - which client fields go upstream, and the forwarding fields the gateway adds (X-Forwarded-*,
 * X-Real-IP, Forwarded). Used by the upstream request head writer in proxy.c. */
#ifndef GW_FORWARD_H
#define GW_FORWARD_H

#include <stdbool.h>

#include "head_buf.h"
#include "server.h"

/* The request fields as they go upstream: the client's, or the view filters changed. */
const gw_http_field *gw_fwd_fields(const gw_conn *c, size_t *n);
/* True when field f (from the request or a filter's view of it) must not be forwarded as is. */
bool gw_fwd_skip_field(const gw_conn *c, const gw_http_field *f);
/* Appends X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and Forwarded. */
void gw_fwd_add_fields(const gw_conn *c, gw_hbuf *b);

#endif
