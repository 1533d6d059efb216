/* admin.h - the core's admin endpoints (admin.c): POST /admin/reload and GET /admin/config, and the reload
 * queue between the workers that take the request and the main thread that reloads. */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <stdbool.h>

#define GW_ADMIN_RELOAD_PATH "/admin/reload"
#define GW_ADMIN_CONFIG_PATH "/admin/config"

typedef struct gw_server gw_server;
typedef struct gw_gen gw_gen;
typedef struct gw_reload_ticket gw_reload_ticket;

/* Adds the two endpoints to a freshly built generation (main thread), unless a filter serves them. */
int gw_admin_register(gw_gen *g);
/* Main thread, on the reload eventfd: the requests queued so far (a list), emptied. */
gw_reload_ticket *gw_admin_reload_take(gw_server *srv);
/* Main thread: the outcome for every ticket of the list; the waiting requests answer with it. */
void gw_admin_reload_done(gw_reload_ticket *list, bool ok, unsigned generation, const char *msg);

#endif
