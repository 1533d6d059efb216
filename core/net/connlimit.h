/* connlimit.h - process-wide connection accounting: the max_connections budget shared by all workers,
 * the per-client-address connection count, and the rate-limited warning + metric when a limit bites. */
#ifndef GW_CONNLIMIT_H
#define GW_CONNLIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

#include "metrics.h"

typedef struct gw_connlimit gw_connlimit;
typedef struct gw_client_slot gw_client_slot; /* one client address's count; held by its connections */

typedef enum {
    GW_LIMIT_MAX_CONNECTIONS = 0, /* the process-wide budget is full: accepting paused */
    GW_LIMIT_PER_CLIENT,          /* one address has too many connections: closed at accept */
    GW_LIMIT_DESCRIPTORS,         /* accept failed with EMFILE/ENFILE: accepting paused briefly */
    GW_LIMIT_NREASONS
} gw_limit_reason;

gw_connlimit *gw_connlimit_new(gw_metrics *m);
void gw_connlimit_free(gw_connlimit *l);

/* Takes one slot of the budget unless `max` are taken (0 = no limit; the count is kept anyway). */
bool gw_connlimit_take(gw_connlimit *l, unsigned max);
void gw_connlimit_put(gw_connlimit *l);
unsigned gw_connlimit_open(gw_connlimit *l);

/* Counts one more connection from sa's address. NULL with *over set when the address already has `max`
 * (nothing counted then); NULL with *over clear when not counted at all (max 0, no IP address, no memory). */
gw_client_slot *gw_connlimit_client_take(gw_connlimit *l, const struct sockaddr *sa, unsigned max, bool *over);
void gw_connlimit_client_put(gw_connlimit *l, gw_client_slot *s);

/* A limit was hit: counted in gateway_connections_limited_total{reason} (from the calling worker's
 * metrics slot). The first hit of a 10 s interval is logged at once; the rest are counted. */
void gw_connlimit_hit(gw_connlimit *l, gw_limit_reason why, unsigned limit, const char *detail);
/* Logs, per reason, how many hits the interval that has ended counted since its first line (called
 * every few seconds from the workers; now_anyway at exit); with it the lines add up to the metric. */
void gw_connlimit_flush(gw_connlimit *l, bool now_anyway);

/* gateway_connections_open, one series per worker (the scrape sums them). */
gw_metric *gw_connlimit_open_gauge(gw_connlimit *l);

#endif
