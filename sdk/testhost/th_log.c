/* th_log.c - the captured log: host->log, the host's own notes and the misuse it detects. */
#include "th_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------------
 * logs */

static void log_line(gw_th *th, int level, char *line)
{
    if (level < GW_LOG_DEBUG) level = GW_LOG_DEBUG;
    if (level > GW_LOG_ERROR) level = GW_LOG_ERROR;
    th->logs = th_grow(th->logs, &th->clogs, th->nlogs + 1, sizeof *th->logs);
    th->logs[th->nlogs++] = (th_log){.level = level, .line = line};
    if (th->echo) {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        fprintf(stderr, "%s %s\n", names[level], line);
    }
}

char *th_vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return th_xstrdup("(unprintable message)");
    char *s = th_xcalloc((size_t)n + 1, 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

void th_log_add(gw_th *th, int level, const char *filter, const gw_req *r, const char *fmt, va_list ap)
{
    char *msg = th_vformat(fmt, ap);
    const char *rid = r && r->request_id[0] ? r->request_id : NULL;
    size_t n = strlen(msg) + strlen(filter) + (rid ? strlen(rid) : 0) + 32;
    char *line = th_xcalloc(n, 1);
    bool host = strcmp(filter, "testhost") == 0;
    snprintf(line, n, "[%s%s] %s%s%s%s", host ? "" : "filter:", filter, msg, rid ? " (request " : "",
             rid ? rid : "", rid ? ")" : "");
    free(msg);
    log_line(th, level, line);
}

void th_note(gw_th *th, const gw_req *r, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    th_log_add(th, level, "testhost", r, fmt, ap);
    va_end(ap);
}

void th_violation(gw_th *th, const gw_req *r, const char *fmt, ...)
{
    th->violations++;
    va_list ap;
    va_start(ap, fmt);
    th_log_add(th, GW_LOG_ERROR, "testhost", r, fmt, ap);
    va_end(ap);
}

static void h_log(gw_filter *self, const gw_req *req, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void h_log(gw_filter *self, const gw_req *req, int level, const char *fmt, ...)
{
    gw_th *th = self ? self->th : req ? req->th : NULL;
    va_list ap;
    va_start(ap, fmt);
    if (th && fmt) {
        th_log_add(th, level, self ? self->d.name : "?", req, fmt, ap);
    } else if (fmt) {
        fputs("[filter:?] ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

size_t gw_th_log_count(const gw_th *th)
{
    return th->nlogs;
}

const char *gw_th_log_line(const gw_th *th, size_t i, int *level)
{
    if (i >= th->nlogs) return NULL;
    if (level) *level = th->logs[i].level;
    return th->logs[i].line;
}

size_t gw_th_log_find(const gw_th *th, int min_level, const char *substring)
{
    size_t n = 0;
    for (size_t i = 0; i < th->nlogs; i++)
        if (th->logs[i].level >= min_level && (!substring || strstr(th->logs[i].line, substring))) n++;
    return n;
}

void gw_th_log_echo(gw_th *th, bool on)
{
    th->echo = on;
}

unsigned gw_th_violations(const gw_th *th)
{
    return th->violations;
}

void gw_th_alloc_limit(gw_th *th, size_t bytes)
{
    th->alloc_limit = bytes;
}

void th_logs_free(gw_th *th)
{
    for (size_t i = 0; i < th->nlogs; i++)
        free(th->logs[i].line);
    free(th->logs);
}

void th_log_fill(gw_host *h)
{
    h->log = h_log;
}
