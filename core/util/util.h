/* util.h - small helpers shared by the core: string formatting for configuration-time code (not for the
 * request path) and the monotonic clock. */
#ifndef GW_UTIL_H
#define GW_UTIL_H

#include <stdint.h>

/* vasprintf into a fresh string; NULL when out of memory. */
char *gw_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic milliseconds (CLOCK_MONOTONIC): timers, deadlines, log intervals; host->now_ms. */
uint64_t gw_mono_ms(void);
uint64_t gw_mono_us(void);

#endif
