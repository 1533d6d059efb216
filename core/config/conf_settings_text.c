/* conf_settings_text.c - settings tables in words: type names and allowed ranges or names ("1..100",
 * "1ms..1m", "64k..1g", "legacy, ietf"), for the refusal messages, --describe-filter and docs/filters.md. */
#include "conf_settings.h"

#include <stdint.h>
#include <stdio.h>

static bool is_list(int type)
{
    return type == GW_SET_STRINGS || type == GW_SET_CIDRS || type == GW_SET_PREFIXES;
}

const char *gw_settings_type_name(int type)
{
    static const char *const names[] = {
        "end",  "integer", "number",      "boolean",   "duration",         "size",
        "enum", "string",  "string list", "CIDR list", "path prefix list", "raw"};
    return type >= 0 && type <= GW_SET_RAW ? names[type] : "?";
}

/* "250ms", "10s", "2m", "1h": the largest unit that divides exactly. */
static void fmt_ms(double v, char *out, size_t cap)
{
    uint64_t ms = (uint64_t)v;
    if (ms && ms % 3600000 == 0)
        snprintf(out, cap, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms && ms % 60000 == 0)
        snprintf(out, cap, "%llum", (unsigned long long)(ms / 60000));
    else if (ms && ms % 1000 == 0)
        snprintf(out, cap, "%llus", (unsigned long long)(ms / 1000));
    else if (ms)
        snprintf(out, cap, "%llums", (unsigned long long)ms);
    else
        snprintf(out, cap, "0");
}

static void fmt_bytes(double v, char *out, size_t cap)
{
    uint64_t b = (uint64_t)v;
    if (b && b % (1u << 30) == 0)
        snprintf(out, cap, "%llug", (unsigned long long)(b >> 30));
    else if (b && b % (1u << 20) == 0)
        snprintf(out, cap, "%llum", (unsigned long long)(b >> 20));
    else if (b && b % 1024 == 0)
        snprintf(out, cap, "%lluk", (unsigned long long)(b >> 10));
    else
        snprintf(out, cap, "%llu", (unsigned long long)b);
}

static void fmt_num(const gw_setting *s, double v, char *out, size_t cap)
{
    if (s->type == GW_SET_DURATION)
        fmt_ms(v, out, cap);
    else if (s->type == GW_SET_SIZE)
        fmt_bytes(v, out, cap);
    else
        snprintf(out, cap, "%.15g", v);
}

void gw_settings_allowed_text(const gw_setting *s, char *out, size_t cap)
{
    if (!cap) return;
    out[0] = '\0';
    if (s->type == GW_SET_ENUM) {
        size_t o = 0;
        for (size_t i = 0; s->names && s->names[i] && o < cap; i++)
            o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", s->names[i]);
        return;
    }
    if (!(s->min < s->max)) return;
    char a[48], b[48];
    if (is_list(s->type)) {
        snprintf(out, cap, "%.0f..%.0f items", s->min, s->max);
        return;
    }
    fmt_num(s, s->min, a, sizeof a);
    fmt_num(s, s->max, b, sizeof b);
    snprintf(out, cap, "%s..%s", a, b);
}
