/* util.c - small helpers shared by the core's configuration-time code. */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>

char *gw_strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}
