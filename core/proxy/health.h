/* health.h - active health checks of upstream targets, run on the main thread's event base. */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include "server.h"

void gw_health_start(gw_server *srv); /* schedules checks for services with a health_check path */
void gw_health_stop(void);            /* no new checks (shutdown) */
void gw_health_free(void);
/* Reload: targets of `next` whose service name and URL are unchanged take over what `prev` knew of them
 * (state, streaks, reason, passive counts), so a reload does not flip them to unknown. Main thread,
 * before `next` is published to the workers. */
void gw_health_adopt(gw_gen *next, const gw_gen *prev);

/* passive.c: called by the request path of any worker. A failed attempt (GW_PASSIVE_*); true when it
 * took the target out (the caller counts the ejection). now_ms: gw_mono_ms(). */
bool gw_passive_failure(gw_target *t, int kind, int64_t now_ms);
/* A response head arrived from the target. */
void gw_passive_success(gw_target *t);
/* May a request go to t? True when it is in the rotation, or when it is out on passive health alone, its
 * cool-down has passed and this caller won the one trial request. *now_ms: 0, or gw_mono_ms() (filled in
 * when needed, so a picker reads the clock at most once). */
bool gw_target_pickable(gw_target *t, int64_t *now_ms);
/* How long until t may be tried again (0: now or unknown), for a Retry-After. */
int64_t gw_target_retry_in_ms(const gw_target *t, int64_t now_ms);

#endif
