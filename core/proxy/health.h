/* health.h - active health checks of upstream targets, run on the main thread's event base. */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include "server.h"

void gw_health_start(gw_server *srv); /* schedules checks for services with a health_check path */
void gw_health_stop(void);            /* no new checks (shutdown) */
void gw_health_free(void);

#endif
