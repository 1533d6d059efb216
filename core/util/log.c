/* log.c - formats one line and writes it with a single write(2), so lines from different threads never
 * interleave. Text form: "<UTC time> [level] message"; JSON form (log.format: json):
 * {"time","level",["filter",]"msg"[,"request_id"]}, strings escaped so that no message can break a line. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048

int gw_log_threshold = GW_LOG_INFO;
static _Atomic int log_format = GW_LOG_TEXT; /* may change on reload while workers log */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gw_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0) {
            gw_log_threshold = i;
            return;
        }
    gw_log_threshold = GW_LOG_INFO;
}

void gw_log_set_format(int format)
{
    log_format = format == GW_LOG_JSON ? GW_LOG_JSON : GW_LOG_TEXT;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : lo;
        hi = c == 0xed ? 0x9f : hi;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : lo;
        hi = c == 0xf4 ? 0x8f : hi;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

size_t gw_json_escape(char *out, size_t cap, const char *in, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        char esc[8];
        const char *piece = esc;
        size_t k = 1, adv = 1;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            esc[0] = (char)c;
        else if (c >= 0x80) {
            size_t len = utf8_len(s + i, n - i);
            if (len)
                piece = in + i, k = adv = len;
            else
                piece = "\\ufffd", k = 6;
        } else if (c == '"' || c == '\\')
            esc[0] = '\\', esc[1] = (char)c, k = 2;
        else if (c == '\n')
            piece = "\\n", k = 2;
        else if (c == '\r')
            piece = "\\r", k = 2;
        else if (c == '\t')
            piece = "\\t", k = 2;
        else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            k = 6;
        }
        if (o + k > cap) break; /* cut at a whole character or escape */
        memcpy(out + o, piece, k);
        o += k;
        i += adv;
    }
    return o;
}

static int put_time(char *line, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, cap - (size_t)n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    return n;
}

/* {"time":..,"level":..,["filter":..,]"msg":..[,"request_id":..]}\n; the message is cut to fit. */
static void write_json(int level, const char *filter, const char *request_id, const char *msg)
{
    char line[LINE_MAX_BYTES * 2];
    size_t cap = sizeof line, n = 0;
    n += (size_t)snprintf(line, cap, "{\"time\":\"");
    n += (size_t)put_time(line + n, cap - n);
    n += (size_t)snprintf(line + n, cap - n, "\",\"level\":\"%s\"", level_names[level]);
    if (filter) {
        n += (size_t)snprintf(line + n, cap - n, ",\"filter\":\"");
        n += gw_json_escape(line + n, 128, filter, strlen(filter));
        line[n++] = '"';
    }
    size_t tail = request_id ? 16 + 2 * 128 : 0;
    n += (size_t)snprintf(line + n, cap - n, ",\"msg\":\"");
    n += gw_json_escape(line + n, cap - n - tail - 4, msg, strlen(msg));
    line[n++] = '"';
    if (request_id) {
        n += (size_t)snprintf(line + n, cap - n, ",\"request_id\":\"");
        n += gw_json_escape(line + n, 2 * 128, request_id, strnlen(request_id, 128));
        line[n++] = '"';
    }
    line[n++] = '}';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static void write_text(int level, const char *msg)
{
    char line[LINE_MAX_BYTES];
    int n = put_time(line, sizeof line);
    n += snprintf(line + n, sizeof line - (size_t)n, " [%s] %s", level_names[level], msg);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void gw_log_write(int level, const char *fmt, ...)
{
    char msg[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0) msg[0] = '\0';
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    if (log_format == GW_LOG_JSON)
        write_json(level, NULL, NULL, msg);
    else
        write_text(level, msg);
}

void gw_log_filter(int level, const char *filter, const char *request_id, const char *msg)
{
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    if (!filter) filter = "?";
    if (log_format == GW_LOG_JSON) {
        write_json(level, filter, request_id, msg);
        return;
    }
    if (request_id)
        gw_log_write(level, "[filter:%s] %s (request %s)", filter, msg, request_id);
    else
        gw_log_write(level, "[filter:%s] %s", filter, msg);
}
