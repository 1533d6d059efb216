/* log.h - leveled logging to stderr, one line per event, safe from any thread. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <gw/filter.h> /* GW_LOG_DEBUG..GW_LOG_ERROR, shared with filters */

extern int gw_log_threshold;

void gw_log_set_level(const char *name); /* "debug" | "info" | "warn" | "error"; unknown = info */
void gw_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level check happens before any argument is evaluated or formatted. */
#define gw_log(level, ...)                                                                              \
    do {                                                                                                \
        if ((level) >= gw_log_threshold) gw_log_write((level), __VA_ARGS__);                           \
    } while (0)
#define gw_debug(...) gw_log(GW_LOG_DEBUG, __VA_ARGS__)
#define gw_info(...) gw_log(GW_LOG_INFO, __VA_ARGS__)
#define gw_warn(...) gw_log(GW_LOG_WARN, __VA_ARGS__)
#define gw_error(...) gw_log(GW_LOG_ERROR, __VA_ARGS__)

#endif
