/* log.h - leveled logging to stderr, one line per event (text, or JSON with log.format: json), safe from any
 * thread. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <gw/filter.h> /* GW_LOG_DEBUG..GW_LOG_ERROR, shared with filters */

#include <stddef.h>

extern int gw_log_threshold;

enum { GW_LOG_TEXT = 0, GW_LOG_JSON = 1 }; /* log.format, in the order of the config schema's names */

void gw_log_set_level(const char *name); /* "debug" | "info" | "warn" | "error"; unknown = info */
void gw_log_set_format(int format);      /* GW_LOG_TEXT (default) | GW_LOG_JSON */
void gw_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A filter's line (host->log): text "[filter:NAME] msg (request ID)", JSON with "filter" and "request_id"
 * fields. request_id may be NULL. */
void gw_log_filter(int level, const char *filter, const char *request_id, const char *msg);
/* JSON string contents of in[0..n) into out (at most cap bytes, never a partial escape or character):
 * quotes, backslash and controls escaped, invalid UTF-8 as \ufffd. Returns the bytes written. */
size_t gw_json_escape(char *out, size_t cap, const char *in, size_t n);

/* The level check happens before any argument is evaluated or formatted. */
#define gw_log(level, ...)                                                                                   \
    do {                                                                                                     \
        if ((level) >= gw_log_threshold) gw_log_write((level), __VA_ARGS__);                                 \
    } while (0)
#define gw_debug(...) gw_log(GW_LOG_DEBUG, __VA_ARGS__)
#define gw_info(...) gw_log(GW_LOG_INFO, __VA_ARGS__)
#define gw_warn(...) gw_log(GW_LOG_WARN, __VA_ARGS__)
#define gw_error(...) gw_log(GW_LOG_ERROR, __VA_ARGS__)

#endif
