/* conn.h - the client connection's calls for the other subsystems: the upstream side (core/proxy/) and
 * the filter phases (core/filter/) hand a request back through these, as nginx's upstream hands a request
 * back with ngx_http_finalize_request. See "Calls between folders" in docs/architecture.md. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "server.h"

/* conn.c */
/* Every call ends in exactly one gw_worker_conn_closed(w, client), at once on failure. */
void gw_conn_accept(gw_worker *w, int fd, struct sockaddr *sa, int salen, size_t listener,
                    struct gw_client_slot *client);
void gw_conn_free(gw_conn *c);
void gw_conn_drain(gw_conn *c);
void gw_conn_request_done(gw_conn *c);
void gw_conn_resume_read(gw_conn *c);
/* request_id.c: c->request_id for the request whose head is in c->req */
void gw_conn_set_request_id(gw_conn *c, const gw_config *cfg);

/* respond.c */
void gw_respond_own(gw_conn *c); /* the response a filter set with host->respond */
void gw_respond_own_after_phase(gw_conn *c, gw_result res);
char *gw_error_json(gw_conn *c, int status, const char *message, size_t *len); /* malloc'd */
void gw_respond_json(gw_conn *c, int status, const char *body, size_t len, const char *extra_headers);
void gw_respond_error(gw_conn *c, int status, const char *message);
void gw_respond_error_close(gw_conn *c, int status, const char *message);
void gw_respond_error_hdr(gw_conn *c, int status, const char *message, const char *extra_headers);

#endif
