/* util.h - small helpers shared by the core's configuration-time code (not for the request path). */
#ifndef GW_UTIL_H
#define GW_UTIL_H

/* vasprintf into a fresh string; NULL when out of memory. */
char *gw_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
